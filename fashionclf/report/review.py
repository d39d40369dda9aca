"""The labelling loop of the best model: the temperature and the review queue fitted on the fold
ensemble's predictions of the calibration split, the queue applied to the test set as to a batch of
new photos and reported there, overall and per category, and the label audit.

The calibration split is held out of every fold, so its predictions come from the same ensemble,
with the same confidence, as predict's on new photos; the test set is used only to report.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.errors import DataError
from ..core.stats import rounded_interval, wilson_interval
from .audit import suspect_labels
from .calibration import (Calibration, categories_of, expected_calibration_error, labelled, reliability_bins, scaled,
                          select_automatic)

METHOD = "conformal selection (Benjamini-Hochberg on conformal p-values)"
METHOD_WITH_PROBABILITY = "learn-then-test (Clopper-Pearson bounds tested from the highest confidence down)"


def promise_text(target_precision: float, with_probability: float | None) -> str:
    wrong = f"{100 * (1 - target_precision):.1f}%"
    if with_probability:
        return (f"the share of wrong automatic labels is at most {wrong} with probability {with_probability:g} "
                f"over calibration splits")
    return f"the expected share of wrong automatic labels is at most {wrong}"


def share(hits: int, n: int) -> tuple[float | None, list[float] | None]:
    if not n:
        return None, None
    return round(hits / n, 6), rounded_interval(wilson_interval(hits, n))


def queue_split(y: np.ndarray, predicted: np.ndarray, automatic: np.ndarray) -> dict:
    """Coverage (share labelled automatically) and the precision of those labels, each with a
    Wilson 95% CI."""
    n_auto, hits = int(automatic.sum()), int((automatic & (predicted == y)).sum())
    coverage, coverage_ci = share(n_auto, len(y))
    precision, precision_ci = share(hits, n_auto)
    return {"n": int(len(y)), "labelled_automatically": n_auto, "needs_review": int(len(y) - n_auto),
            "coverage": coverage, "coverage_ci95": coverage_ci, "precision": precision,
            "precision_ci95": precision_ci, "errors_labelled_automatically": n_auto - hits}


def per_category(y: np.ndarray, predicted: np.ndarray, automatic: np.ndarray, categories) -> dict:
    """For each category: the share of its images labelled automatically, and the precision of the
    automatic labels naming it (what a shop manager reads: where the queue grows, which labels to trust)."""
    result = {}
    for k, category in enumerate(categories):
        mine, named = y == k, automatic & (predicted == k)
        coverage, coverage_ci = share(int(automatic[mine].sum()), int(mine.sum()))
        precision, precision_ci = share(int((y[named] == k).sum()), int(named.sum()))
        result[category] = {"n": int(mine.sum()), "labelled_automatically": int(automatic[mine].sum()),
                            "coverage": coverage, "coverage_ci95": coverage_ci,
                            "labelled_as": int(named.sum()), "precision": precision, "precision_ci95": precision_ci}
    return result


def if_corrected(calibration: pd.DataFrame, y_cal: np.ndarray, p_cal: np.ndarray, suspects: pd.DataFrame,
                 categories, p_test: np.ndarray, y_test: np.ndarray, target_precision: float,
                 with_probability: float | None = None) -> dict:
    """The calibration images the audit suspects (``suspects``: its calibration rows), and the queue
    on the test set were their labels the suggested ones. A confident "error" of the ensemble on a
    mislabelled calibration photo holds back every new photo below its confidence (on real catalogue
    photos: a handbag filed under accessories and a wallet under shoes kept the queue at 82% where
    96% was in reach)."""
    if suspects.empty:
        return {"n": 0, "test": None}
    suggested = dict(zip(suspects["path"], suspects["category"].map({c: k for k, c in enumerate(categories)})))
    relabelled = calibration["path"].map(suggested)
    fixed = np.where(relabelled.notna(), relabelled, y_cal).astype(int)
    automatic, _ = select_automatic(p_cal.max(1), p_cal.argmax(1) == fixed, p_test.max(1), target_precision,
                                    with_probability)
    return {"n": len(suggested), "test": queue_split(y_test, p_test.argmax(1), automatic)}


def review_report(model: str, oof: pd.DataFrame, calibration: pd.DataFrame, test: pd.DataFrame,
                  target_precision: float, bins: int, with_probability: float | None = None):
    """metrics/review.json's content, the reliability curves to plot and the suspect labels."""
    categories = categories_of(test)
    for name, table in [("out-of-fold", oof), ("calibration", calibration)]:
        if categories_of(table) != categories:
            raise DataError(f"{name} and test predictions have different categories: "
                            f"{categories_of(table)} vs {categories}")
    y_cal, p_cal = labelled(calibration, categories)
    y_test, p_test = labelled(test, categories)
    fit = Calibration(y_cal, p_cal)
    automatic, threshold = fit.select(p_test, target_precision, with_probability)
    c_cal, c_test = scaled(p_cal, fit.temperature), scaled(p_test, fit.temperature)
    ece = lambda p, y: expected_calibration_error(p, y, bins)
    # calibration first: its labels set the queue
    calibration_suspects = suspect_labels(calibration, categories, "calibration")
    audits = [calibration_suspects, suspect_labels(oof, categories, "training")]
    suspects = pd.concat([a for a in audits if len(a)] or audits[:1], ignore_index=True)
    predicted = p_test.argmax(1)
    report = {
        "model": model, "target_precision": target_precision, "with_probability": with_probability,
        "method": METHOD_WITH_PROBABILITY if with_probability else METHOD,
        "fitted_on": f"fold ensemble on the calibration split ({fit.n} images, in no fold)",
        "temperature": fit.temperature, "threshold": round(threshold, 6) if automatic.any() else None,
        "ece_bins": bins,
        "ece": {"calibration_before": ece(p_cal, y_cal), "calibration_after": ece(c_cal, y_cal),
                "test_before": ece(p_test, y_test), "test_after": ece(c_test, y_test)},
        "test": queue_split(y_test, predicted, automatic),
        "test_per_category": per_category(y_test, predicted, automatic, categories),
        "suspect_labels": int(len(suspects)),
        "calibration_suspects": if_corrected(calibration, y_cal, p_cal, calibration_suspects, categories, p_test,
                                             y_test, target_precision, with_probability),
    }
    curves = {f"test, raw (ECE {100 * report['ece']['test_before']:.2f}%)": reliability_bins(p_test, y_test, bins),
              f"test, T = {fit.temperature:g} (ECE {100 * report['ece']['test_after']:.2f}%)":
                  reliability_bins(c_test, y_test, bins)}
    return report, curves, suspects


def review_markdown(report: dict) -> str:
    test, ece = report["test"], report["ece"]
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}"
    ci = lambda pair: "" if pair is None else f" ({pct(pair[0])}–{pct(pair[1])})"
    target = pct(report["target_precision"])
    rows = "".join(f"| {c} | {m['n']} | {pct(m['coverage'])}{ci(m['coverage_ci95'])} | {m['labelled_as']} | "
                   f"{pct(m['precision'])}{ci(m['precision_ci95'])} |\n"
                   for c, m in report["test_per_category"].items())
    if test["labelled_automatically"]:
        outcome = (f"the model **labels {pct(test['coverage'])}%{ci(test['coverage_ci95'])} of the test images "
                   f"automatically, at {pct(test['precision'])}% precision{ci(test['precision_ci95'])}**; the other "
                   f"{test['needs_review']} get `needs_review` (95% intervals in brackets). On this test batch the "
                   f"lowest confidence labelled automatically was {report['threshold']:.4f}.")
    else:
        outcome = f"the model labels **none** of the {test['n']} test images automatically: all get `needs_review`."
    return (f"## Labelling loop ({report['model']}, test set of {test['n']} images)\n\n"
            f"At a target precision of {target}%, {outcome}\n\n"
            f"| category | test images | labelled automatically % | automatic labels naming it | "
            f"their precision % |\n|---|---|---|---|---|\n{rows}\n"
            f"How: {report['method']}, fitted on the {report['fitted_on']}. If the calibration images and new "
            f"photos come from the same distribution, "
            f"{promise_text(report['target_precision'], report.get('with_probability'))}.\n\n"
            f"| calibration | ECE calibration split | ECE test |\n|---|---|---|\n"
            f"| raw probabilities | {pct(ece['calibration_before'])}% | {pct(ece['test_before'])}% |\n"
            f"| temperature scaling, T = {report['temperature']:g} | "
            f"{pct(ece['calibration_after'])}% | {pct(ece['test_after'])}% |\n\n"
            f"{audit_markdown(report, pct, ci)}\n")


def audit_markdown(report: dict, pct, ci) -> str:
    calibration = report["calibration_suspects"]
    training = report["suspect_labels"] - calibration["n"]
    text = (f"Label audit: {training} training and {calibration['n']} calibration images are likely mislabelled "
            f"(`data/suspect_labels.csv`, calibration images first; confident learning on held-out probabilities).")
    if calibration["n"]:
        fixed, now = calibration["test"], report["test"]
        text += (f" The calibration labels set the queue: were those {calibration['n']} as suggested, it would "
                 f"label {pct(fixed['coverage'])}%{ci(fixed['coverage_ci95'])} of the test images automatically "
                 f"(now {pct(now['coverage'])}%), at {pct(fixed['precision'])}% precision"
                 + (" (under the target: many of them are likely the model's errors, not wrong labels)"
                    if fixed["precision"] is not None and fixed["precision"] < report["target_precision"] else "")
                 + ". Correct a label only where the photo shows it wrong: taking the model's word for all of "
                   "them removes its real errors from the count, and with them the precision promise.")
    return text
