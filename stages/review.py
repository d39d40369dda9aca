"""Stage review: the best model's labelling loop (reads params: review). Temperature scaling and the
review queue for review.target_precision (on average, or review.with_probability) are fitted on its
fold ensemble's predictions of the calibration split and reported on its test predictions, per
category; confident learning on the out-of-fold predictions lists the training labels to audit."""
from pathlib import Path

import pandas as pd

from fashionclf.core import params
from fashionclf.core.cli import stage_args, stage_main
from fashionclf.core.store import write_atomic, write_json
from fashionclf.learn.checkpoint import best_model_name
from fashionclf.report.plotting import plot_reliability
from fashionclf.report.review import review_markdown, review_report


def main():
    args = stage_args(__doc__, "best", "oof", "calibration-predictions", "test-predictions", "metrics", "report",
                      "reliability-png", "suspects")
    p = params.load("review")
    model = best_model_name(args.best)
    oof = pd.read_csv(Path(args.oof) / f"{model}.csv", keep_default_na=False)
    calibration = pd.read_csv(Path(args.calibration_predictions) / f"{model}.csv", keep_default_na=False)
    test = pd.read_csv(Path(args.test_predictions) / f"{model}.csv", keep_default_na=False)
    report, curves, suspects = review_report(model, oof, calibration, test, p.target_precision, p.ece_bins,
                                             p.with_probability or None)
    write_json(args.metrics, report)
    write_atomic(args.suspects, suspects.to_csv(index=False))
    plot_reliability(curves, f"Reliability of {model} on the test set", args.reliability_png)
    markdown = review_markdown(report)
    write_atomic(args.report, markdown)
    print(markdown)


if __name__ == "__main__":
    stage_main(main)
