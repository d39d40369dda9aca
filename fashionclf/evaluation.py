"""Test-set evaluation: metrics with 95% intervals, per-image predictions, Gaussian noise."""
from __future__ import annotations

import numpy as np
import torch

from .inference import Ensemble, to_tensor
from .scoring import classification_metrics, predictions_table
from .store import load_imageset


def add_noise(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """Additive Gaussian noise on [0, 1] pixels, clipped, from a fixed seed."""
    if sigma == 0:
        return x
    gen = torch.Generator().manual_seed(seed)
    return (x + torch.randn(x.shape, generator=gen) * sigma).clamp(0, 1).contiguous(
        memory_format=torch.channels_last)


def load_test_set(test_dir, categories) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    images, manifest = load_imageset(test_dir)
    index = {c: i for i, c in enumerate(categories)}
    unknown = set(manifest["category"]) - set(index)
    if unknown:
        raise ValueError(f"test set has categories the model was not trained on: {sorted(unknown)}")
    return to_tensor(images), manifest["category"].map(index).to_numpy(), manifest["path"].tolist()


def evaluate(ensemble: Ensemble, test_dir, batch_size: int, sigmas=(0.0,), seed: int = 0) -> dict:
    """{sigma: (metrics, predictions table)} for the fold ensemble on the test set at each noise level."""
    x, y, paths = load_test_set(test_dir, ensemble.categories)
    results = {}
    for sigma in sigmas:
        probs = ensemble.predict_proba(add_noise(x, sigma, seed), batch_size)
        results[sigma] = (classification_metrics(y, probs, ensemble.categories),
                          predictions_table(paths, y, probs, ensemble.categories))
    return results


def curve_row(sigma: float, metrics: dict) -> dict:
    return {"sigma": sigma, "accuracy": metrics["accuracy"], "accuracy_low": metrics["accuracy_ci95"][0],
            "accuracy_high": metrics["accuracy_ci95"][1], "f1": metrics["f1"],
            "f1_low": metrics["f1_ci95"][0], "f1_high": metrics["f1_ci95"][1]}
