"""Calibrated confidence and the review queue: temperature scaling fitted on out-of-fold predictions,
the expected calibration error (torchmetrics), and the confidence threshold that reaches a target
precision on the images labelled automatically.

Temperature scaling is one scalar fitted by minimising the log loss (scipy); none of the project's
libraries ships it for plain probability arrays, so it is written here (Guo et al. 2017).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.optimize import minimize_scalar
from torchmetrics.functional.classification import multiclass_calibration_error

from ..core.errors import DataError
from ..core.scoring import probabilities_of
from ..core.stats import rounded_interval, wilson_interval

EPS = 1e-7  # predictions are stored rounded to 6 decimals: a stored 0 is "below 1e-6"


def scaled(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(p) / T): the probabilities a temperature makes of stored probabilities."""
    logits = np.log(np.clip(probs, EPS, 1.0)) / temperature
    logits -= logits.max(1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(1, keepdims=True)


def log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], EPS, 1.0)).mean())


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The temperature in [0.05, 20] that minimises the log loss of ``probs`` against labels ``y``."""
    result = minimize_scalar(lambda t: log_loss(scaled(probs, t), y), bounds=(0.05, 20.0), method="bounded",
                             options={"xatol": 1e-4})
    return round(float(result.x), 4)


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int) -> float:
    """Top-label ECE with equal-width confidence bins (torchmetrics' multiclass_calibration_error)."""
    value = multiclass_calibration_error(torch.tensor(probs, dtype=torch.float32), torch.tensor(y, dtype=torch.long),
                                         num_classes=probs.shape[1], n_bins=bins, norm="l1")
    return round(float(value), 6)


def reliability_bins(probs: np.ndarray, y: np.ndarray, bins: int) -> list[dict]:
    """Per equal-width confidence bin: mean confidence, accuracy and count (the reliability plot)."""
    confidence, correct = probs.max(1), probs.argmax(1) == y
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    return [{"low": k / bins, "high": (k + 1) / bins, "n": int((index == k).sum()),
             "confidence": float(confidence[index == k].mean()), "accuracy": float(correct[index == k].mean())}
            for k in range(bins) if (index == k).any()]


def threshold_for_precision(confidence: np.ndarray, correct: np.ndarray, target: float) -> float:
    """The lowest confidence threshold at which the images at or above it reach ``target`` precision,
    so that as many images as possible are labelled automatically. 1.0 + tiny (label nothing
    automatically) when no threshold reaches it."""
    order = np.argsort(-confidence, kind="stable")
    conf, hits = confidence[order], correct[order].astype(float)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    # a cut may only fall between distinct confidences: take the last row of each run of ties
    last_of_tie = np.append(conf[1:] != conf[:-1], True)
    ok = np.flatnonzero((precision >= target) & last_of_tie)
    if not len(ok):
        return float(np.nextafter(1.0, 2.0))
    return float(conf[ok[-1]])


def review_split(probs: np.ndarray, y: np.ndarray, threshold: float) -> dict:
    """Coverage (share at or above the threshold) and the precision there, each with a Wilson 95% CI."""
    confidence, correct = probs.max(1), probs.argmax(1) == y
    automatic = confidence >= threshold
    n_auto, hits = int(automatic.sum()), int(correct[automatic].sum())
    r = lambda v: round(float(v), 6)
    return {"n": int(len(y)), "labelled_automatically": n_auto, "needs_review": int(len(y) - n_auto),
            "coverage": r(n_auto / max(len(y), 1)),
            "coverage_ci95": rounded_interval(wilson_interval(n_auto, len(y))),
            "precision": r(hits / n_auto) if n_auto else None,
            "precision_ci95": rounded_interval(wilson_interval(hits, n_auto)) if n_auto else None,
            "errors_labelled_automatically": n_auto - hits}


def categories_of(table: pd.DataFrame) -> list[str]:
    return [c[2:] for c in table.columns if c.startswith("p_")]


def labelled(table: pd.DataFrame, categories) -> tuple[np.ndarray, np.ndarray]:
    unknown = sorted(set(table["actual"]) - set(categories))
    if unknown:
        raise DataError(f"predictions name categories without a probability column: {unknown}")
    y = table["actual"].map({c: i for i, c in enumerate(categories)}).to_numpy()
    return y, probabilities_of(table, categories)


def calibrated_threshold(oof: pd.DataFrame, target_precision: float) -> tuple[float, float]:
    """(temperature, threshold): temperature scaling fitted on the out-of-fold predictions, and the
    lowest calibrated confidence at which they reach ``target_precision``."""
    return fit_calibration(*labelled(oof, categories_of(oof)), target_precision)


def fit_calibration(y: np.ndarray, probs: np.ndarray, target_precision: float) -> tuple[float, float]:
    temperature = fit_temperature(probs, y)
    calibrated = scaled(probs, temperature)
    threshold = threshold_for_precision(calibrated.max(1), calibrated.argmax(1) == y, target_precision)
    return temperature, round(threshold, 6)
