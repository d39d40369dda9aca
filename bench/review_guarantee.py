"""The review queue's promise, kept on average or with high probability: what each costs in photos
labelled automatically, on a shop's unseen photos.

    python bench/review_guarantee.py PROJECT PREDICTIONS [PROJECT PREDICTIONS ...] [--target-precision 0.99]
                                     [--delta 0.1 0.2]

PROJECT is a project that `dvc repro` built (bench/real_photos.py's WORK/project) and PREDICTIONS the
CSV that `fashionclf predict` wrote there for labelled folders (WORK/unseen.csv: the sub-folder is
the true category). The queue is chosen on the best model's calibration predictions, three ways:
- as built (report/calibration.select_automatic): conformal p-values and Benjamini-Hochberg, so the
  precision of the automatic labels is at least the target *on average* over calibration splits;
- the same with each photo's p-value counted among the calibration photos of its predicted
  category only (Mondrian), which a shift in the mix of categories does not bias;
- learn-then-test (Angelopoulos et al., 2021), as `review.with_probability` and predict's
  `--with-probability` build it (report/calibration.learn_then_test_threshold): confidence
  thresholds tested from the highest down, each by the Clopper-Pearson bound on the calibration
  errors above it, and the lowest that passes before the first that fails is kept, so the precision
  is at least the target *with probability 1 - delta*.
Prints one markdown row per project and way: the photos labelled automatically and their precision,
with 95% Wilson intervals.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fashionclf.core.scoring import probabilities_of  # noqa: E402
from fashionclf.report.calibration import (Calibration, categories_of, conformal_p_values, scaled,  # noqa: E402
                                           select_automatic)
from fashionclf.serve.init import category_name  # noqa: E402
from real_photos import share  # noqa: E402  (bench/, this script's folder)


def per_category(calibration: Calibration, predicted_cal: np.ndarray, confidence: np.ndarray,
                 predicted: np.ndarray, target: float) -> np.ndarray:
    p = np.ones(len(confidence))
    for k in np.unique(predicted):
        mine, theirs = predicted == k, predicted_cal == k
        p[mine] = conformal_p_values(calibration.confidence[theirs], calibration.correct[theirs], confidence[mine])
    return false_discovery_control(p, method="bh") <= 1.0 - target


def unseen_probabilities(predictions: pd.DataFrame, categories: list[str], temperature: float) -> np.ndarray:
    """predict writes probabilities at the calibration's temperature; the queue is chosen on the raw ones."""
    return scaled(probabilities_of(predictions, categories), 1.0 / temperature)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pairs", nargs="+", type=Path, help="PROJECT PREDICTIONS, one pair per run")
    parser.add_argument("--target-precision", type=float, default=0.99)
    parser.add_argument("--delta", type=float, nargs="+", default=[0.1, 0.2])
    args = parser.parse_args()
    if len(args.pairs) % 2:
        parser.error("give PROJECT PREDICTIONS pairs")
    target = args.target_precision
    print("| project | best model | the queue | labelled automatically % | precision there % |")
    print("|---|---|---|---|---|")
    for project, predictions_csv in zip(args.pairs[::2], args.pairs[1::2]):
        best = json.loads((project / "reports" / "best_model.json").read_text())["best_model"]
        table = pd.read_csv(project / "plots" / "predictions" / "calibration" / f"{best}.csv", keep_default_na=False)
        calibration = Calibration.from_table(table)
        categories = categories_of(table)
        predicted_cal = probabilities_of(table, categories).argmax(1)
        predictions = pd.read_csv(predictions_csv, keep_default_na=False)
        probs = unseen_probabilities(predictions, categories, calibration.temperature)
        truth = predictions["path"].map(lambda p: categories.index(category_name(Path(p).parent.name))).to_numpy()
        confidence, predicted = probs.max(1), probs.argmax(1)
        right = predicted == truth
        ways = {"on average (as built)": select_automatic(calibration.confidence, calibration.correct, confidence,
                                                          target)[0],
                "on average, per predicted category": per_category(calibration, predicted_cal, confidence,
                                                                   predicted, target)}
        ways |= {f"with probability {1 - d:g} (learn-then-test)":
                 select_automatic(calibration.confidence, calibration.correct, confidence, target, 1 - d)[0]
                 for d in args.delta}
        for way, automatic in ways.items():
            print(f"| {project} | {best} | {way} | {share(int(automatic.sum()), len(automatic))} | "
                  f"{share(int(right[automatic].sum()), int(automatic.sum()))} |")


if __name__ == "__main__":
    main()
