"""DVCLive, the DVC ecosystem's logger, writes the training curves and the confusion matrices;
`dvc plots show` draws them. No timestamps and no experiment commits: the same run gives the
same bytes."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

TRAINING_METRICS = ("train_loss", "val_loss", "val_accuracy", "lr")


def live(folder):
    shutil.rmtree(folder, ignore_errors=True)  # a rerun leaves no stale folds behind
    try:
        from dvclive import Live
    except ImportError:  # a machine without DVC (bench/gpu_reference.sh): the same files, by hand
        return PlainLogger(folder)
    with contextlib.redirect_stdout(io.StringIO()):  # DVCLive's banner is no stage output
        return Live(dir=str(folder), save_dvc_exp=False, dvcyaml=None, report=None)


def finish(logger) -> None:
    logger.end()
    # DVCLive's summary of the last step: not a metric of ours (metrics/ holds those), and `dvc plots`
    # would draw it as a plot of its own
    Path(logger.dir, "metrics.json").unlink(missing_ok=True)


def log_training_curves(history: list[dict], folder) -> None:
    """One TSV per fold and metric: <folder>/plots/metrics/fold<k>/<metric>.tsv, step = epoch."""
    logger = live(folder)
    for row in history:
        logger.step = int(row["epoch"])
        for key in TRAINING_METRICS:
            logger.log_metric(f"fold{row['fold']}/{key}", round(float(row[key]), 6))
    finish(logger)


def log_confusion(actual, predicted, folder, title: str) -> None:
    """<folder>/plots/sklearn/confusion_matrix.json, drawn by DVC's confusion template."""
    logger = live(folder)
    logger.log_sklearn_plot("confusion_matrix", list(actual), list(predicted), name="confusion_matrix.json",
                            title=title)
    finish(logger)


class PlainLogger:
    """DVCLive's file layout without DVCLive, for a machine that lacks it (the GPU image: DVCLive
    imports DVC, git libraries and more than its carry budget allows). The same paths and formats
    (tab-separated steps per metric; the confusion rows as a JSON list), so `dvc plots` draws them
    alike; hand-written because the alternative is no training curves there at all."""

    def __init__(self, folder):
        self.dir = str(folder)
        self.step = 0
        self.rows: dict[str, list[tuple[int, float]]] = {}

    def log_metric(self, name: str, value: float) -> None:
        self.rows.setdefault(name, []).append((self.step, value))

    def log_sklearn_plot(self, kind, actual, predicted, name, title=None) -> None:
        path = Path(self.dir, "plots", "sklearn", name)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [{"actual": str(a), "predicted": str(p)} for a, p in zip(actual, predicted)]
        path.write_text(json.dumps(rows, indent=4) + "\n")

    def end(self) -> None:
        for name, rows in self.rows.items():
            path = Path(self.dir, "plots", "metrics", f"{name}.tsv")
            path.parent.mkdir(parents=True, exist_ok=True)
            leaf = name.rsplit("/", 1)[-1]
            path.write_text(f"step\t{leaf}\n" + "".join(f"{step}\t{value}\n" for step, value in rows))
