"""Scores of a set of predictions: classification metrics with 95% intervals, and the per-image
predictions table that DVC versions (so two revisions can be compared image by image).

Precision, recall, F1 (stats.per_class_scores) and average precision follow scikit-learn's
definitions and are checked against sklearn.metrics by tests/test_stats.py, but are not imported
from it: importing sklearn.metrics costs 1.5-2.7 s (scipy.stats), paid by each of the ten test
stages of a `dvc repro`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .stats import bootstrap_macro_f1_interval, confusion_counts, per_class_scores, rounded_interval, wilson_interval


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, categories: list[str]) -> dict:
    """Accuracy and macro F1 with 95% intervals (Wilson; bootstrap), mAP and per-class scores."""
    y_true = np.asarray(y_true)
    y_pred = probs.argmax(1)
    labels = list(range(len(categories)))
    precision, recall, f1 = per_class_scores(confusion_counts(y_true, y_pred, len(categories)))
    ap = [average_precision(y_true == c, probs[:, c]) if (y_true == c).any() else 0.0 for c in labels]
    correct = int((y_pred == y_true).sum())
    r = lambda v: round(float(v), 6)
    return {"accuracy": r(correct / max(len(y_true), 1)),
            "accuracy_ci95": rounded_interval(wilson_interval(correct, len(y_true))),
            "f1": r(np.mean(f1)),
            "f1_ci95": rounded_interval(bootstrap_macro_f1_interval(y_true, y_pred, len(categories))),
            "map": r(np.mean(ap)), "n": int(len(y_true)),
            "per_class": {c: {"precision": r(precision[i]), "recall": r(recall[i]), "f1": r(f1[i]),
                              "n": int((y_true == i).sum())} for i, c in enumerate(categories)}}


def average_precision(is_positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve as the step sum over distinct score thresholds, from
    the highest: sum of (recall gained) x (precision there)."""
    order = np.argsort(-scores, kind="mergesort")
    hits = np.asarray(is_positive, float)[order]
    last_of_each_score = np.r_[np.flatnonzero(np.diff(scores[order])), len(hits) - 1]
    true_positives = np.cumsum(hits)[last_of_each_score]
    precision = true_positives / (last_of_each_score + 1)
    recall_gained = np.diff(np.r_[0.0, true_positives]) / true_positives[-1]
    return float(np.sum(recall_gained * precision))


def predictions_table(paths, y_true: np.ndarray, probs: np.ndarray, categories) -> pd.DataFrame:
    """One row per image: path, actual, predicted, then each class probability (versioned by DVC,
    so two revisions can be compared image by image)."""
    names = np.asarray(categories)
    table = pd.DataFrame({"path": list(paths), "actual": names[np.asarray(y_true)],
                          "predicted": names[probs.argmax(1)]})
    for i, c in enumerate(categories):
        table[f"p_{c}"] = probs[:, i].round(6)
    return table


def probabilities_of(table: pd.DataFrame, categories) -> np.ndarray:
    return table[[f"p_{c}" for c in categories]].to_numpy(float)


def metrics_from_predictions(table: pd.DataFrame, categories) -> dict:
    y = table["actual"].map({c: i for i, c in enumerate(categories)}).to_numpy()
    return classification_metrics(y, probabilities_of(table, categories), categories)
