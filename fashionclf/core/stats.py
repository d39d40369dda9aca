"""Uncertainty beside every number: confidence intervals and paired tests between two runs.

scipy supplies the exact binomial test; the rest is a few lines of numpy on confusion counts.
"""
from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054
BOOTSTRAP_RESAMPLES = 2000


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval for a proportion (accuracy): sound near 0 and 1, unlike n·p ± z·se."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def per_class_scores(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 per class of one or many (..., K, K) confusion matrices (rows:
    actual, columns: predicted), as scikit-learn defines them; 0 where undefined."""
    tp = np.diagonal(counts, axis1=-2, axis2=-1).astype(float)
    predicted, actual = counts.sum(-2), counts.sum(-1)
    ratio = lambda a, b: np.divide(a, b, out=np.zeros_like(tp), where=b > 0)
    return ratio(tp, predicted), ratio(tp, actual), ratio(2 * tp, predicted + actual)


def macro_f1_from_confusion(counts: np.ndarray) -> np.ndarray:
    """Macro F1 of one or many (..., K, K) confusion matrices."""
    return per_class_scores(counts)[2].mean(-1)


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(np.asarray(y_true) * k + np.asarray(y_pred), minlength=k * k).reshape(k, k)


def bootstrap_macro_f1_interval(y_true, y_pred, k: int, seed: int = 0,
                                resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """95% percentile bootstrap interval of macro F1. Resampling images is the same as drawing the
    confusion matrix from a multinomial over its cells, which is what this does (fast, exact)."""
    counts = confusion_counts(y_true, y_pred, k)
    n = int(counts.sum())
    if n == 0:
        return 0.0, 1.0
    draws = np.random.default_rng(seed).multinomial(n, counts.ravel() / n, size=resamples)
    scores = macro_f1_from_confusion(draws.reshape(resamples, k, k))
    low, high = np.quantile(scores, [0.025, 0.975])
    return float(low), float(high)


def mcnemar_exact(baseline_correct: np.ndarray, new_correct: np.ndarray) -> dict:
    """Exact McNemar test on paired per-image outcomes: is the new run's accuracy different?

    Only discordant images count: b = right before and wrong now, c = wrong before and right now.
    Returns b, c and the two-sided p-value of the binomial test of b against c.
    """
    from scipy.stats import binomtest

    baseline_correct = np.asarray(baseline_correct, bool)
    new_correct = np.asarray(new_correct, bool)
    b = int((baseline_correct & ~new_correct).sum())
    c = int((~baseline_correct & new_correct).sum())
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    return {"worse": b, "better": c, "p_value": p}


def paired_loss_test(baseline_loss: np.ndarray, new_loss: np.ndarray) -> float:
    """Two-sided p-value that the mean per-image loss changed (paired t-test, thousands of images)."""
    from scipy.stats import ttest_rel

    diff = np.asarray(new_loss, float) - np.asarray(baseline_loss, float)
    if len(diff) < 2 or np.allclose(diff, 0):
        return 1.0
    return float(ttest_rel(new_loss, baseline_loss).pvalue)


def rounded_interval(interval) -> list[float]:
    return [round(float(interval[0]), 6), round(float(interval[1]), 6)]
