"""Intervals and paired tests against values worked out by hand or by scipy, and the fingerprint."""
import json

import numpy as np
import pytest

from conftest import ROOT
from fashionclf.core import stats


def test_wilson_interval_matches_scipy():
    from scipy.stats import binomtest
    for k, n in ((81, 100), (2990, 3000), (0, 20)):
        expected = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert stats.wilson_interval(k, n) == pytest.approx((expected.low, expected.high), abs=1e-6)
    assert stats.wilson_interval(100, 100)[1] == 1.0 and stats.wilson_interval(100, 100)[0] < 1.0


def test_bootstrap_interval_of_macro_f1_brackets_it_and_narrows_with_more_images():
    rng = np.random.default_rng(0)
    def interval(n):
        y = rng.integers(0, 3, n)
        pred = np.where(rng.random(n) < 0.9, y, (y + 1) % 3)
        f1 = stats.macro_f1_from_confusion(stats.confusion_counts(y, pred, 3))
        low, high = stats.bootstrap_macro_f1_interval(y, pred, 3, seed=1)
        assert low <= f1 <= high
        return high - low
    assert interval(3000) < interval(300) / 2.5  # width shrinks like 1 / sqrt(n)
    y = np.array([0, 1, 2] * 50)
    assert stats.bootstrap_macro_f1_interval(y, y, 3) == (1.0, 1.0)


def test_mcnemar_counts_only_discordant_images():
    before = np.array([True] * 90 + [False] * 10)
    after = before.copy()
    after[:9] = False  # nine newly wrong, none newly right
    result = stats.mcnemar_exact(before, after)
    assert (result["worse"], result["better"]) == (9, 0)
    assert result["p_value"] == pytest.approx(2 * 0.5 ** 9)
    assert stats.mcnemar_exact(before, before)["p_value"] == 1.0
    after[90:92] = True  # two newly right: 9 against 2
    assert stats.mcnemar_exact(before, after)["p_value"] == pytest.approx(0.0654, abs=1e-4)


def test_paired_loss_test_sees_a_shift_but_not_noise():
    rng = np.random.default_rng(0)
    base = rng.exponential(0.2, 2000)
    assert stats.paired_loss_test(base, base + rng.normal(0, 0.01, 2000)) > 0.01
    assert stats.paired_loss_test(base, base * 1.2) < 1e-6


def test_platform_fingerprint_is_recorded_with_the_metrics():
    from fashionclf.ci.platform import fingerprint
    recorded = json.loads((ROOT / "reports/platform.json").read_text())
    assert set(recorded) == set(fingerprint(ROOT / "params.yaml"))
    assert recorded["train_threads"] >= 1 and recorded["torch"]


def test_stratified_subset_keeps_each_class_share():
    from fashionclf.report.evaluation import stratified_subset
    y = np.repeat([0, 1, 2], [100, 600, 300])
    picked = stratified_subset(y, 100)
    assert np.bincount(y[picked]).tolist() == [10, 60, 30] and len(set(picked)) == 100
    assert len(stratified_subset(y, 5000)) == len(y)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_class_scores_and_average_precision_match_sklearn(seed):
    from sklearn.metrics import average_precision_score, precision_recall_fscore_support

    from fashionclf.core.scoring import average_precision
    from fashionclf.core.stats import confusion_counts, per_class_scores

    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 4, 500)
    y_pred = np.where(rng.random(500) < 0.7, y_true, rng.integers(0, 3, 500))  # class 3 never predicted
    expected = precision_recall_fscore_support(y_true, y_pred, labels=range(4), zero_division=0)[:3]
    for ours, theirs in zip(per_class_scores(confusion_counts(y_true, y_pred, 4)), expected):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    for scores in (rng.integers(0, 20, 500) / 20, rng.random(500)):  # many tied scores, then none
        positive = (scores + rng.random(500) * 0.5) > 0.7
        assert average_precision(positive, scores) == pytest.approx(average_precision_score(positive, scores),
                                                                    abs=1e-12)
