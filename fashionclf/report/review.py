"""The labelling loop of the best model: calibration fitted on out-of-fold predictions, the review
threshold for a target precision chosen there, both checked on the test set, and the label audit.

Choosing on out-of-fold predictions and reporting on the test set keeps the test numbers honest.
The test predictions come from the fold ensemble, which is a little better than each fold model
the threshold was chosen on, so the test precision tends to land above the target, not below.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.errors import DataError
from .audit import suspect_labels
from .calibration import (categories_of, expected_calibration_error, fit_calibration, labelled, reliability_bins,
                          review_split, scaled)


def review_report(model: str, oof: pd.DataFrame, test: pd.DataFrame, target_precision: float, bins: int):
    """metrics/review.json's content, the reliability curves to plot and the suspect labels."""
    categories = categories_of(oof)
    if categories_of(test) != categories:
        raise DataError(f"out-of-fold and test predictions have different categories: "
                         f"{categories} vs {categories_of(test)}")
    y_oof, p_oof = labelled(oof, categories)
    y_test, p_test = labelled(test, categories)
    temperature, threshold = fit_calibration(y_oof, p_oof, target_precision)
    c_oof, c_test = scaled(p_oof, temperature), scaled(p_test, temperature)
    ece = lambda p, y: expected_calibration_error(p, y, bins)
    suspects = suspect_labels(oof, categories)
    report = {
        "model": model, "temperature": temperature, "fitted_on": "out-of-fold CV predictions",
        "target_precision": target_precision, "threshold": threshold, "ece_bins": bins,
        "ece": {"oof_before": ece(p_oof, y_oof), "oof_after": ece(c_oof, y_oof),
                "test_before": ece(p_test, y_test), "test_after": ece(c_test, y_test)},
        "test": review_split(c_test, y_test, threshold),
        "oof": review_split(c_oof, y_oof, threshold),
        "suspect_labels": int(len(suspects)),
    }
    curves = {f"test, raw (ECE {100 * report['ece']['test_before']:.2f}%)": reliability_bins(p_test, y_test, bins),
              f"test, T = {temperature:g} (ECE {100 * report['ece']['test_after']:.2f}%)":
                  reliability_bins(c_test, y_test, bins)}
    return report, curves, suspects


def review_markdown(report: dict) -> str:
    test, ece = report["test"], report["ece"]
    pct = lambda v: f"{100 * v:.1f}"
    ci = lambda pair: f"{pct(pair[0])}–{pct(pair[1])}"
    precision = (f"{pct(test['precision'])}% precision (95% CI {ci(test['precision_ci95'])})"
                 if test["precision"] is not None else "no image above the threshold")
    return (f"## Labelling loop ({report['model']}, test set of {test['n']} images)\n\n"
            f"At a target precision of {pct(report['target_precision'])}% (threshold chosen on out-of-fold "
            f"predictions: calibrated confidence >= {report['threshold']:.4f}), the model **labels "
            f"{pct(test['coverage'])}% of a catalogue automatically at {precision}**; the other "
            f"{test['needs_review']} images get `needs_review`.\n\n"
            f"| calibration | ECE out-of-fold | ECE test |\n|---|---|---|\n"
            f"| raw probabilities | {pct(ece['oof_before'])}% | {pct(ece['test_before'])}% |\n"
            f"| temperature scaling, T = {report['temperature']:g} (fitted out-of-fold) | "
            f"{pct(ece['oof_after'])}% | {pct(ece['test_after'])}% |\n\n"
            f"Label audit: {report['suspect_labels']} training images are likely mislabelled "
            f"(`data/suspect_labels.csv`, confident learning on out-of-fold probabilities).\n")
