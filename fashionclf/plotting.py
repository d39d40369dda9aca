"""Small plots people would rather see than read."""
from __future__ import annotations

from pathlib import Path

import pandas as pd


def plot_training_curves(curves: pd.DataFrame, title: str, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(8, 3.2))
    for fold, rows in curves.groupby("fold"):
        ax_loss.plot(rows["epoch"], rows["train_loss"], ls="--", color=f"C{fold}", alpha=0.6)
        ax_loss.plot(rows["epoch"], rows["val_loss"], color=f"C{fold}", label=f"fold {fold}")
        ax_acc.plot(rows["epoch"], rows["val_accuracy"] * 100, color=f"C{fold}", marker="o")
    ax_loss.set(xlabel="epoch", ylabel="loss (dashed: train)", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy %", title="accuracy")
    ax_loss.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
