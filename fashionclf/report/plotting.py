"""Every matplotlib figure of the project: pictures people would rather see than read.
Training curves and confusion matrices are written by DVCLive and drawn by `dvc plots`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save(fig, path, dpi=90) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, metadata={"Software": None})  # no version stamp: same bytes everywhere
    pyplot().close(fig)


def plot_robustness(curves: pd.DataFrame, path) -> None:
    """Accuracy against Gaussian noise sigma for every model, from sigma 0, with 95% bands."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for i, (model, rows) in enumerate(curves.groupby("model", sort=False)):
        rows = rows.sort_values("sigma")
        ax.plot(rows["sigma"], rows["accuracy"] * 100, marker="o", color=f"C{i}", label=model)
        ax.fill_between(rows["sigma"], rows["accuracy_low"] * 100, rows["accuracy_high"] * 100,
                        color=f"C{i}", alpha=0.15, linewidth=0)
    ax.set_xlabel("Gaussian noise sigma (on [0, 1] pixels)")
    ax.set_ylabel("test accuracy % (95% CI)")
    ax.set_title("Robustness to Gaussian noise, fold ensembles", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, path)


def plot_image_grid(rows: list[tuple[str, list[tuple[np.ndarray, str]]]], title: str, path) -> None:
    """One row per label, each a list of (image, caption) cells."""
    plt = pyplot()
    columns = max((len(cells) for _, cells in rows), default=1)
    fig, axes = plt.subplots(len(rows), columns, figsize=(columns * 1.1, len(rows) * 1.3), squeeze=False)
    for r, (label, cells) in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            ax.axis("off")
            if c < len(cells):
                ax.imshow(cells[c][0])
                ax.set_title(cells[c][1], fontsize=7)
        axes[r][0].text(-0.15, 0.5, label, transform=axes[r][0].transAxes, ha="right", va="center")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save(fig, path, dpi=80)


def plot_reliability(curves: dict[str, list[dict]], title: str, path) -> None:
    """Reliability diagram: accuracy against mean confidence per confidence bin, one line per
    curve (e.g. before and after temperature scaling); the diagonal is perfect calibration."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    for i, (label, bins) in enumerate(curves.items()):
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", color=f"C{i}",
                label=label)
    ax.set_xlabel("confidence (top class probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(min(0.3, ax.get_xlim()[0]), 1.0)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, path)
