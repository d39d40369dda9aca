"""Test-set evaluation: fold ensembles, metrics, Gaussian noise, confusion matrices and plots."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import average_precision_score, precision_recall_fscore_support

from .models import build_model
from .train import pick_device, predict_proba, to_tensor


class Ensemble:
    """The fold models of one trained model, averaged by softmax."""

    def __init__(self, checkpoints: list[dict]):
        if not checkpoints:
            raise FileNotFoundError("no fold checkpoints found")
        first = checkpoints[0]
        self.name = first["model_name"]
        self.categories = list(first["categories"])
        self.preprocessing = first["preprocessing"]
        self.models = []
        for ckpt in checkpoints:
            model = build_model(self.name, len(self.categories), pretrained=False,
                                image_size=self.preprocessing["image_size"])
            model.load_state_dict(ckpt["state_dict"])
            self.models.append(model.eval().to(memory_format=torch.channels_last))

    @classmethod
    def load(cls, model_dir: Path | str) -> "Ensemble":
        paths = sorted(Path(model_dir).glob("fold*.pt"))
        if not paths:
            raise FileNotFoundError(f"no fold*.pt checkpoints in {model_dir}: run `dvc repro` first")
        return cls([torch.load(p, map_location="cpu", weights_only=False) for p in paths])

    def prepare(self, images: np.ndarray) -> torch.Tensor:
        """Canonical uint8 images -> float tensor; each model resizes it to its own input size."""
        return to_tensor(images)

    def predict_proba(self, x: torch.Tensor, batch_size: int = 256, device="cpu") -> np.ndarray:
        device = pick_device(device)
        total = None
        for model in self.models:
            probs = predict_proba(model.to(device), x, batch_size, device)
            total = probs if total is None else total + probs
        return (total / len(self.models)).numpy()


def add_noise(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """Additive Gaussian noise on [0, 1] pixels, clipped, from a fixed seed."""
    if sigma == 0:
        return x
    gen = torch.Generator().manual_seed(seed)
    return (x + torch.randn(x.shape, generator=gen) * sigma).clamp(0, 1).contiguous(
        memory_format=torch.channels_last)


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, categories: list[str]) -> dict:
    y_pred = probs.argmax(1)
    labels = list(range(len(categories)))
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    ap = [average_precision_score(y_true == c, probs[:, c]) if (y_true == c).any() else 0.0 for c in labels]
    r = lambda v: round(float(v), 6)
    return {"accuracy": r((y_pred == y_true).mean()), "f1": r(np.mean(f1)), "map": r(np.mean(ap)),
            "n": int(len(y_true)),
            "per_class": {c: {"precision": r(precision[i]), "recall": r(recall[i]), "f1": r(f1[i])}
                          for i, c in enumerate(categories)}}


def confusion_table(y_true, y_pred, categories) -> pd.DataFrame:
    names = np.asarray(categories)
    return pd.DataFrame({"actual": names[y_true], "predicted": names[y_pred]})


def plot_confusion(table: pd.DataFrame, categories, title: str, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = pd.crosstab(pd.Categorical(table["actual"], categories),
                         pd.Categorical(table["predicted"], categories), dropna=False).to_numpy()
    fig, ax = plt.subplots(figsize=(1.2 + len(categories) * 0.9, 1.0 + len(categories) * 0.8))
    ax.imshow(matrix, cmap="Blues")
    for i in range(len(categories)):
        for j in range(len(categories)):
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(categories)), categories, rotation=45, ha="right")
    ax.set_yticks(range(len(categories)), categories)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_noise_curve(curve: pd.DataFrame, title: str, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.plot(curve["sigma"], curve["accuracy"] * 100, marker="o", label="accuracy")
    ax.plot(curve["sigma"], curve["f1"] * 100, marker="s", label="macro F1")
    ax.set_xlabel("Gaussian noise sigma (on [0, 1] pixels)")
    ax.set_ylabel("%")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def load_test_set(ensemble: Ensemble, test_dir="data/balance/test"):
    from .store import load_imageset
    images, manifest = load_imageset(test_dir)
    index = {c: i for i, c in enumerate(ensemble.categories)}
    unknown = set(manifest["category"]) - set(index)
    if unknown:
        raise ValueError(f"test set has categories the model was not trained on: {sorted(unknown)}")
    return ensemble.prepare(images), manifest["category"].map(index).to_numpy()


def evaluate_test_set(name: str, batch_size: int, sigma: float, seed: int, split: str, curve_sigmas=(),
                      models_dir="models", test_dir="data/balance/test") -> dict:
    """Write metrics/<split>/<name>.json, plots/confusion/<split>/<name>.csv and its PNG; with
    ``curve_sigmas`` also the robustness curve plots/noise_curve/<name>.csv and its PNG."""
    from .store import write_atomic, write_json
    ensemble = Ensemble.load(Path(models_dir) / name)
    x, y = load_test_set(ensemble, test_dir)
    probs_at = {}

    def probs(s):
        if s not in probs_at:  # each noise level is predicted once, shared by the metrics and the curve
            probs_at[s] = ensemble.predict_proba(add_noise(x, s, seed), batch_size)
        return probs_at[s]

    report = classification_metrics(y, probs(sigma), ensemble.categories)
    if split == "test_noise":
        report["sigma"] = sigma
    table = confusion_table(y, probs(sigma).argmax(1), ensemble.categories)
    write_atomic(f"plots/confusion/{split}/{name}.csv", table.to_csv(index=False))
    title = f"{name}: {split.replace('_', ' ')}" + (f" (sigma {sigma})" if sigma else "")
    plot_confusion(table, ensemble.categories, f"{title}, accuracy {report['accuracy']:.2%}",
                   f"plots/png/confusion_{split}/{name}.png")
    write_json(f"metrics/{split}/{name}.json", report)
    if curve_sigmas:
        rows = []
        for s in curve_sigmas:
            m = classification_metrics(y, probs(s), ensemble.categories)
            rows.append({"sigma": s, "accuracy": m["accuracy"], "f1": m["f1"], "map": m["map"]})
        curve = pd.DataFrame(rows)
        write_atomic(f"plots/noise_curve/{name}.csv", curve.to_csv(index=False))
        plot_noise_curve(curve, f"{name}: robustness to Gaussian noise", f"plots/png/noise_curve/{name}.png")
    return report
