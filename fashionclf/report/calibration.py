"""Calibrated confidence and the review queue, both fitted on the fold ensemble's predictions of the
calibration split (images held out of every fold, so new to the ensemble as a shop's photos are).

- Temperature scaling: one scalar fitted by minimising the log loss (scipy); none of the project's
  libraries ships it for plain probability arrays, so it is written here (Guo et al. 2017). It
  changes the probabilities shown, not which images are labelled automatically.
- The review queue: conformal selection (Jin & Candes 2023, "Selection by prediction with conformal
  p-values"). Each new image gets a conformal p-value from the calibration images the ensemble got
  wrong at the same or a higher confidence; Benjamini-Hochberg (scipy's false_discovery_control) at
  level 1 - target over the batch of new images labels the selected ones automatically. If the
  calibration images and the new ones are exchangeable, the expected share of wrong labels among
  those labelled automatically is at most 1 - target, for any calibration size (finite sample).
  The score is the ensemble's raw confidence: a score fitted on the calibration images (through
  the temperature) would void the guarantee.
- Or, where a shop wants the precision promised with high probability rather than on average
  (review.with_probability, predict's --with-probability): learn-then-test (Angelopoulos et al.
  2021), one confidence threshold fixed on the calibration split alone. It labels fewer photos:
  docs/labelling.md has the measured cost.
- The expected calibration error (torchmetrics).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from scipy.optimize import minimize_scalar
from scipy.stats import beta, false_discovery_control

from ..core.errors import DataError
from ..core.scoring import probabilities_of

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
    # imported here: torchmetrics imports torchvision and torch._dynamo (about 2 s), which predict
    # and label, who never compute an ECE, would pay at every start
    from torchmetrics.functional.classification import multiclass_calibration_error

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


def conformal_p_values(cal_confidence: np.ndarray, cal_correct: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """For each new image, (1 + calibration images wrong at its confidence or above) / (n + 1): the
    conformal p-value of "this label is wrong" (the deterministic, conservative form)."""
    wrong = np.sort(cal_confidence[~cal_correct.astype(bool)])
    wrong_above = len(wrong) - np.searchsorted(wrong, confidence, side="left")
    return (1 + wrong_above) / (len(cal_confidence) + 1)


NOTHING = float(np.nextafter(1.0, 2.0))  # a threshold no confidence reaches


def calibration_images_needed(target_precision: float) -> int:
    """Calibration images without which the queue (select_automatic's default) labels nothing at
    ``target_precision``: a conformal p-value is at least 1 / (n + 1), and Benjamini-Hochberg passes
    none above 1 - target_precision."""
    alpha = 1.0 - target_precision
    if alpha <= 0.0:
        return math.inf
    n = max(0, math.ceil(1.0 / alpha) - 2)
    while 1.0 / (n + 1) > alpha:  # the same float comparison as the selection's
        n += 1
    return n


def highest_reachable_target(images: int) -> float:
    """The highest target precision, to 3 decimals, at which ``images`` calibration images let the
    queue label any photo (the inverse of calibration_images_needed)."""
    return math.floor((1.0 - 1.0 / (images + 1)) * 1000) / 1000


def images_needed(target_precision: float, probability: float) -> int:
    """Calibration images above a threshold, all right, for it to pass at ``probability``: the
    Clopper-Pearson bound of n error-free images, 1 - (1 - probability) ** (1 / n), reaches 1 - target."""
    return int(np.ceil(np.log(1.0 - probability) / np.log(target_precision)))


def learn_then_test_threshold(cal_confidence: np.ndarray, cal_correct: np.ndarray, target_precision: float,
                              probability: float) -> float:
    """The lowest confidence threshold whose automatic labels reach ``target_precision`` with
    ``probability``: the calibration confidences are tested from the highest down, each by the
    Clopper-Pearson bound of the errors at or above it, and the sequence stops at the first that
    fails (fixed-sequence testing: the chance that any passed threshold is in truth under the target
    stays within 1 - probability). It starts where an error-free count could pass (images_needed):
    every higher threshold would fail for want of images and end the sequence at once. ``NOTHING``
    when none passes."""
    alpha = 1.0 - target_precision
    if alpha <= 0.0 or not len(cal_confidence):
        return NOTHING
    enough = images_needed(target_precision, probability)
    order = np.argsort(-cal_confidence, kind="stable")
    confidence, wrong = cal_confidence[order], np.cumsum(~cal_correct[order].astype(bool))
    last = np.r_[confidence[1:] != confidence[:-1], True]  # the last image at each distinct confidence
    n, errors = np.flatnonzero(last) + 1, wrong[last]      # images and errors at or above it
    tested = n >= enough
    n, errors, thresholds = n[tested], errors[tested], confidence[last][tested]
    bound = np.where(errors < n, beta.ppf(probability, errors + 1, np.maximum(n - errors, 1)), 1.0)
    failed = np.flatnonzero(bound > alpha)
    passed = failed[0] if len(failed) else len(bound)
    return float(thresholds[passed - 1]) if passed else NOTHING


def select_automatic(cal_confidence: np.ndarray, cal_correct: np.ndarray, confidence: np.ndarray,
                     target_precision: float, with_probability: float | None = None) -> tuple[np.ndarray, float]:
    """(mask of the new images labelled automatically, the lowest confidence among them).

    By default, Benjamini-Hochberg at 1 - target_precision on their conformal p-values: the threshold
    depends on the batch (more confident batches earn a lower one). With ``with_probability``, the
    learn-then-test threshold, which the batch does not move. 1.0 + tiny when nothing is selected."""
    if not len(confidence) or target_precision >= 1.0:
        return np.zeros(len(confidence), bool), NOTHING
    if with_probability:
        selected = confidence >= learn_then_test_threshold(cal_confidence, cal_correct, target_precision,
                                                           with_probability)
    else:
        p = conformal_p_values(cal_confidence, cal_correct, confidence)
        selected = false_discovery_control(p, method="bh") <= 1.0 - target_precision
    threshold = float(confidence[selected].min()) if selected.any() else NOTHING
    return selected, threshold


def categories_of(table: pd.DataFrame) -> list[str]:
    return [c[2:] for c in table.columns if c.startswith("p_")]


def labelled(table: pd.DataFrame, categories) -> tuple[np.ndarray, np.ndarray]:
    unknown = sorted(set(table["actual"]) - set(categories))
    if unknown:
        raise DataError(f"predictions name categories without a probability column: {unknown}")
    y = table["actual"].map({c: i for i, c in enumerate(categories)}).to_numpy()
    return y, probabilities_of(table, categories)


class Calibration:
    """What the calibration split's ensemble predictions fix: the temperature, and the confidences
    and hits that the conformal p-values of new images are counted against."""

    def __init__(self, y: np.ndarray, probs: np.ndarray):
        if not len(y):
            raise DataError("no calibration predictions: the review queue needs the calibration split "
                            "(set balance.calibration_fraction above 0 and run dvc repro)")
        self.n = len(y)
        self.temperature = fit_temperature(probs, y)
        self.confidence, self.correct = probs.max(1), probs.argmax(1) == y

    @classmethod
    def from_table(cls, table: pd.DataFrame) -> "Calibration":
        return cls(*labelled(table, categories_of(table)))

    def select(self, probs: np.ndarray, target_precision: float,
               with_probability: float | None = None) -> tuple[np.ndarray, float]:
        """Which rows of ``probs`` (raw ensemble probabilities) are labelled automatically, and the
        lowest raw confidence among them."""
        return select_automatic(self.confidence, self.correct, probs.max(1), target_precision, with_probability)
