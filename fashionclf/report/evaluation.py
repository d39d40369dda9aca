"""Test-set evaluation: metrics with 95% intervals, per-image predictions, Gaussian noise."""
from __future__ import annotations

import numpy as np
import torch

from ..core.scoring import classification_metrics, predictions_table
from ..core.store import load_imageset
from ..learn.inference import Ensemble, pick_device, to_tensor


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


def stratified_subset(y: np.ndarray, size: int) -> np.ndarray:
    """Indices of about ``size`` rows, the same share of each class, evenly spread within it."""
    share = min(1.0, size / max(len(y), 1))
    picked = [np.flatnonzero(y == c) for c in np.unique(y)]
    picked = [rows[np.linspace(0, len(rows) - 1, max(1, round(share * len(rows)))).round().astype(int)]
              for rows in picked]
    return np.sort(np.concatenate(picked))


def evaluate(ensemble: Ensemble, test_set, batch_size: int, sigmas=(0.0,), seed: int = 0,
             max_images: int = 0, device: str = "cpu") -> dict:
    """{sigma: (metrics, predictions table)} for the fold ensemble on ``test_set`` (load_test_set's
    tensors, labels and paths) at each noise level, on a stratified subset of ``max_images`` test
    images when that is set and smaller. ``device``: auto, cpu, cuda or cuda:N (the noise is drawn
    on the CPU either way, so every device sees the same noisy images)."""
    x, y, paths = test_set
    if 0 < max_images < len(y):
        keep = stratified_subset(y, max_images)
        x, y, paths = x[torch.from_numpy(keep)], y[keep], [paths[i] for i in keep]
    device = pick_device(device, "params.yaml: evaluate.device")
    results = {}
    for sigma in sigmas:
        probs = ensemble.predict_proba(add_noise(x, sigma, seed), batch_size, device)
        results[sigma] = (classification_metrics(y, probs, ensemble.categories),
                          predictions_table(paths, y, probs, ensemble.categories))
    return results


def predict_table(ensemble: Ensemble, image_set, batch_size: int, device: str = "cpu"):
    """The fold ensemble's predictions table of a held-out split (load_test_set's tensors, labels and
    paths), which may be empty."""
    x, y, paths = image_set
    probs = ensemble.predict_proba(x, batch_size, pick_device(device, "params.yaml: evaluate.device"))
    return predictions_table(paths, y, probs.reshape(len(y), len(ensemble.categories)), ensemble.categories)


def curve_row(sigma: float, metrics: dict) -> dict:
    return {"sigma": sigma, "n": metrics["n"], "accuracy": metrics["accuracy"], "accuracy_low": metrics["accuracy_ci95"][0],
            "accuracy_high": metrics["accuracy_ci95"][1], "f1": metrics["f1"],
            "f1_low": metrics["f1_ci95"][0], "f1_high": metrics["f1_ci95"][1]}
