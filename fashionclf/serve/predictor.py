"""The predicting core that `predict` (CSV) and `label` (Ray, Parquet) share.

``Predictor`` turns decoded images into the fold ensemble's raw probabilities; ``decide`` turns a
batch of them into labels, the review queue of a target precision, chosen over the whole batch
(report.calibration's conformal selection against the calibration split), and one row schema;
``count_summary`` counts a batch's outcomes the same way for both front ends; ``ShiftCheck`` says
when a batch looks unlike the calibration split.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import binom

from ..core import paths
from ..core.params import NEEDS_REVIEW
from ..data.imaging import IMAGE_STATISTICS
from ..learn.checkpoint import best_model_name
from ..learn.inference import Ensemble, pick_device
from ..learn.onnx_runner import OnnxEnsemble
from ..report.calibration import (Calibration, calibration_images_needed, highest_reachable_target,
                                  images_needed, scaled)


class Predictor:
    """A callable from [N, 3, canvas, canvas] uint8 to probabilities: a model's fold ensemble under
    torch, or the ONNX export under onnxruntime."""

    def __init__(self, model: str | None = None, exported: str | None = None, models_dir=paths.MODELS,
                 best=paths.BEST_MODEL, device: str = "auto", threads: int | None = None):
        self.device = pick_device(device, "--device")  # the torch ensemble's; onnxruntime runs on the CPU
        if exported:
            self.module = OnnxEnsemble(exported, threads)
            self.model_name = self.module.name
            self.name = f"{self.module.name} (exported)"
        else:
            self.model_name = model or best_model_name(best)
            self.module = Ensemble.load(Path(models_dir) / self.model_name)
            self.name = self.model_name
        self.calibration: Calibration | None = None  # set by calibrate()
        self.shift_check: ShiftCheck | None = None   # set by calibrate()
        self.categories = self.module.categories
        self.canvas_size = self.module.preprocessing["canvas_size"]

    @torch.inference_mode()
    def __call__(self, batch_uint8: torch.Tensor) -> np.ndarray:
        """The ensemble's raw probabilities (the review queue is chosen on these)."""
        x = (batch_uint8.float() / 255).contiguous(memory_format=torch.channels_last)
        if isinstance(self.module, Ensemble):
            return self.module.predict_proba(x, max(len(x), 1), self.device)
        return self.module(x)

    def score(self, pixels: torch.Tensor, errors) -> np.ndarray:
        """Raw probabilities [N, categories] of a decoded batch; zeros where ``errors`` names one."""
        ok = [k for k, error in enumerate(errors) if not error]
        probs = np.zeros((len(errors), len(self.categories)), np.float32)
        if ok:
            probs[ok] = self(pixels[ok])
        return probs

    def calibrate(self, calibration_csv, fit: bool = True) -> Calibration | None:
        """Read the ensemble's predictions of the calibration split (written by the test_clean stage)
        once: the shift check's reference whenever they exist, and with ``fit`` the temperature and
        the review queue, which need them."""
        table = calibration_table(calibration_csv)
        if table is None:
            if fit:
                raise FileNotFoundError(f"{calibration_csv} not found: --target-precision needs the model's "
                                        f"predictions of the calibration split (run `dvc repro`, or pass "
                                        f"--calibration)")
            return None
        self.shift_check = ShiftCheck.from_table(table)
        if fit:
            self.calibration = Calibration.from_table(table)
        return self.calibration


def calibration_csv(model_name: str) -> str:
    """Where the test_clean stage writes the model's predictions of the calibration split."""
    return paths.CALIBRATION_PREDICTIONS.format(model=model_name)


def calibration_table(path) -> pd.DataFrame | None:
    """The calibration split's predictions and image statistics, or None where there are none."""
    return pd.read_csv(path, keep_default_na=False) if Path(path).is_file() else None


def review_args_problems(target_precision, min_confidence, with_probability=None) -> list[str]:
    """What is wrong with --target-precision, --min-confidence and --with-probability (predict's and label's)."""
    problems = []
    if not 0 <= min_confidence <= 1:
        problems.append("--min-confidence must be within [0, 1]")
    if target_precision is not None and not (0 < target_precision <= 1 and min_confidence == 0):
        problems.append("--target-precision must be within (0, 1] and not combined with --min-confidence")
    if with_probability is not None and not (0 < with_probability < 1 and target_precision is not None):
        problems.append("--with-probability must be within (0, 1) and given with --target-precision")
    return problems


def queue_line(threshold: float, calibration: Calibration, target_precision: float, with_probability=None) -> str:
    """What predict and label print about a batch's review queue."""
    if threshold <= 1.0:
        return f"labelled automatically: raw ensemble confidence >= {threshold:.4f} in this batch"
    if with_probability:
        why = (f"no confidence threshold reaches precision {target_precision:g} with probability {with_probability:g} "
               f"on the {calibration.n} calibration images (an error-free run needs "
               f"{images_needed(target_precision, with_probability)} above it; a larger calibration split or a "
               f"lower probability labels more)")
    else:
        why = f"no image reaches precision {target_precision:g} against the {calibration.n} calibration images"
        needed = calibration_images_needed(target_precision)
        if calibration.n < needed:
            why += (f", under the {needed} with which any can: with {calibration.n}, a target of at most "
                    f"{highest_reachable_target(calibration.n)} can label some")
    return f"labelled automatically: none; {why}"


def row_columns(categories) -> list[str]:
    """The columns of a labelled row, in order: predict's CSV, and label's Parquet before its keys."""
    return ["path", "category", "confidence"] + [f"p_{c}" for c in categories] + ["error", "needs_review"]


def decide(paths_, raw: np.ndarray, errors, categories, calibration: Calibration | None,
           min_confidence=0.0, target_precision=None, with_probability=None) -> tuple[dict[str, np.ndarray], float]:
    """(the labelled rows as columns, the threshold) for a batch of raw ensemble probabilities.

    Below ``min_confidence``, or outside the review queue of ``target_precision`` chosen over the
    readable images of this batch (or, with ``with_probability``, by the calibration split's fixed
    learn-then-test threshold), an image is ``needs_review``. Shown probabilities are
    temperature-scaled when calibrated; an unreadable image has no category and NaN probabilities.
    """
    good = np.array([not e for e in errors], bool)
    automatic = np.zeros(len(good), bool)
    shown = np.full(raw.shape, np.nan)
    readable = raw[good]
    if target_precision is not None:
        automatic[good], threshold = calibration.select(readable, target_precision, with_probability)
    else:
        automatic[good], threshold = readable.max(1, initial=0.0) >= min_confidence, min_confidence
    shown[good] = scaled(readable, calibration.temperature) if calibration else readable
    best = np.nan_to_num(shown, nan=-1).argmax(1)  # before rounding
    shown = np.round(shown, 6)
    names = np.array(categories, dtype=object)[best]
    columns = {"path": np.array([str(p) for p in paths_], dtype=object),
               "category": np.where(~good, "", np.where(automatic, names, NEEDS_REVIEW)).astype(object),
               "confidence": np.take_along_axis(shown, best[:, None], 1)[:, 0]}  # NaN where unreadable
    columns.update({f"p_{c}": shown[:, j] for j, c in enumerate(categories)})
    columns.update({"error": np.array(list(errors), dtype=object), "needs_review": good & ~automatic})
    return columns, float(threshold)


def count_summary(category, errors) -> dict[str, int]:
    """Images per outcome: each category, needs_review, and ``error <reason>`` per kind of error."""
    counts = {}
    for name, error in zip(category, errors):
        key = f"error {error.split(':', 1)[0]}" if error else name
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


FAR = 6.0                 # robust z (distance from the median in MADs scaled to sd) beyond which an image
                          # statistic is far outside the calibration split's
SCALE_FLOOR = 0.02        # the smallest scale of a statistic, on the [0, 1] pixel scale: Fashion-MNIST's
                          # black border has no spread at all
LOW_CONFIDENCE_SHARE = 0.05  # of the calibration split, below the confidence floor
FAR_OUTSIDE_P = 1e-3      # a batch is far outside when photos like the calibration split's would give
                          # that many such images with a binomial chance below this


def far_above(count: int, n: int, rate: float) -> bool:
    """Is ``count`` of ``n`` far more than the share ``rate`` expected (and at least twice it)?"""
    return count > 0 and count >= 2 * rate * n and binom.sf(count - 1, n, rate) < FAR_OUTSIDE_P


@dataclass
class ShiftCheck:
    """The calibration split's image statistics and raw confidences (the test_clean stage writes both),
    against which a batch of new photos is compared. It only warns: no label changes because of it.

    An image is outside when any statistic is over ``FAR`` robust standard deviations from the
    split's median; the rate expected from photos like the split's is the split's own share of such
    images (at least 1%), so heavy tails do not raise false alarms."""
    centres: dict[str, tuple[float, float]]  # statistic: (median, scale)
    outside_rate: float
    confidence_floor: float

    @staticmethod
    def far(values: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
        median, scale = centre
        return np.abs(np.asarray(values, float) - median) > FAR * scale

    @classmethod
    def from_table(cls, table: pd.DataFrame) -> "ShiftCheck":
        raw = table[[c for c in table.columns if c.startswith("p_")]].to_numpy(float)
        centres = {}
        for name in IMAGE_STATISTICS:
            if name in table.columns:  # older tables: confidence only
                values = table[name].to_numpy(float)
                median = float(np.median(values))
                centres[name] = (median, max(1.4826 * float(np.median(np.abs(values - median))), SCALE_FLOOR))
        outside = np.zeros(len(table), bool)
        for name, centre in centres.items():
            outside |= cls.far(table[name], centre)
        rate = max(0.01, (int(outside.sum()) + 1) / (len(table) + 1))
        return cls(centres, rate, float(np.quantile(raw.max(1), LOW_CONFIDENCE_SHARE)))

    def warning(self, statistics: dict[str, np.ndarray], confidence: np.ndarray) -> str | None:
        """One line when the batch's images or confidences fall far outside the calibration split's."""
        n = len(confidence)
        compared = [name for name in self.centres if name in statistics]  # scores of older runs lack them
        outside = np.zeros(n, bool)
        for name in compared:
            outside |= self.far(statistics[name], self.centres[name])
        unsure = confidence < self.confidence_floor
        found = []
        if compared and far_above(int(outside.sum()), n, self.outside_rate):
            found.append(f"{outside.sum()} with brightness, contrast or background far from the calibration "
                         f"split's (about {self.outside_rate * n:.0f} expected)")
        if far_above(int(unsure.sum()), n, LOW_CONFIDENCE_SHARE):
            found.append(f"{unsure.sum()} below its {LOW_CONFIDENCE_SHARE:.0%} lowest confidences "
                         f"(about {LOW_CONFIDENCE_SHARE * n:.0f} expected)")
        if not found:
            return None
        return (f"warning: {int((outside | unsure).sum())} of {n} images look unlike the photos the model was "
                f"checked on: {'; '.join(found)}. Labels are unchanged; review these, or retrain with such photos")


def shift_warning(check: ShiftCheck | None, statistics: dict, raw: np.ndarray, errors) -> str | None:
    """``check``'s line for the readable images of a batch (None without a calibration split)."""
    good = np.array([not e for e in errors], bool)
    if check is None or not good.any():
        return None
    return check.warning({k: np.asarray(v)[good] for k, v in statistics.items()}, raw[good].max(1))
