"""DVCLive, the DVC ecosystem's logger, writes the training curves and the confusion matrices;
`dvc plots show` draws them. No timestamps and no experiment commits: the same run gives the
same bytes."""
from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

TRAINING_METRICS = ("train_loss", "val_loss", "val_accuracy", "lr")


def live(folder):
    from dvclive import Live

    shutil.rmtree(folder, ignore_errors=True)  # a rerun leaves no stale folds behind
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
