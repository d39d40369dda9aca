"""The gate's two questions on crafted metrics and predictions: the same trained models are judged by
the paired test, retrained ones by their measured spread; missing or NaN metrics fail either way
(a null ratio that is no decision metric is shown, not judged)."""
import math
import subprocess

import numpy as np
import pytest

from fashionclf.ci import gate

RULES = [gate.Rule("metrics/test_clean/*.json", "accuracy", "higher", 0.0075, False,
                   "plots/predictions/test_clean/{name}.csv", "mcnemar", "models/{name}", 0.002),
         gate.Rule("metrics/cv/*.json", "oof.log_loss", "lower", 0.5, True, None, "mcnemar", "models/{name}", 0.02)]
PATH = "metrics/test_clean/resnet18.json"
SPREAD = gate.Spread({PATH: {"accuracy": 0.004}, "metrics/cv/resnet18.json": {"oof.log_loss": 0.01}}, k=4)


class Trained:
    def __init__(self, same: bool):
        self.same_models = same

    def same(self, path):
        assert path == "models/resnet18"
        return self.same_models


class Paired:
    """Per-image predictions where the new model gets ``worse`` images wrong that the old got right."""
    def __init__(self, worse: int, better: int = 0, n: int = 3000):
        old = np.ones(n, bool)
        old[:better] = False
        new = old.copy()
        new[:better] = True
        new[better:better + worse] = False
        self.old, self.new = old, new

    def p_value(self, path, test):
        from fashionclf.core.stats import mcnemar_exact
        return mcnemar_exact(self.old, self.new)["p_value"]


def judge(old, new, same, paired=None, key="accuracy", path=PATH):
    return gate.judge(path, key, old, new, RULES, paired, SPREAD, Trained(same))


def test_retrained_model_inside_its_spread_passes_though_a_paired_test_would_fail():
    # 1.5 points: 45 images newly wrong, none newly right, so McNemar says "a different model"
    # (p < 1e-13); the spread allows 4 x sqrt(2) x 0.004 = 2.26 points
    row = judge(0.970, 0.955, same=False, paired=Paired(worse=45))
    assert row["rule"] == "spread" and row["verdict"] == "ok" and row["allowed"] == "-0.02263"
    assert Paired(worse=45).p_value(PATH, "mcnemar") < 1e-10


def test_retrained_model_beyond_its_spread_fails():
    row = judge(0.970, 0.945, same=False, paired=Paired(worse=75))
    assert row["rule"] == "spread" and row["verdict"] == "REGRESSION"


def test_spread_below_its_floor_uses_the_floor():
    spread = gate.Spread({PATH: {"accuracy": 0.0}}, k=4)  # four identical runs: sd 0
    row = gate.judge(PATH, "accuracy", 0.970, 0.960, RULES, None, spread, Trained(False))
    assert row["verdict"] == "ok" and row["allowed"] == "-0.01131"  # 4 x sqrt(2) x the 0.002 floor
    row = gate.judge(PATH, "accuracy", 0.970, 0.958, RULES, None, spread, Trained(False))
    assert row["verdict"] == "REGRESSION"


def test_relative_floor_and_lower_is_better_for_losses():
    loss = "metrics/cv/resnet18.json"
    assert judge(0.10, 0.11, same=False, key="oof.log_loss", path=loss)["verdict"] == "ok"  # 4√2 x 0.01
    assert judge(0.10, 0.16, same=False, key="oof.log_loss", path=loss)["verdict"] == "REGRESSION"
    assert judge(0.10, 0.01, same=False, key="oof.log_loss", path=loss)["verdict"] == "ok"  # better


def test_same_models_are_judged_by_the_paired_test():
    # an evaluation-only change: the same 1.5-point drop is significant, so it fails
    row = judge(0.970, 0.955, same=True, paired=Paired(worse=45))
    assert row["rule"] == "paired" and row["verdict"] == "REGRESSION" and row["p"] < 1e-10
    # beyond the slack but two images either way: not significant
    row = judge(0.970, 0.960, same=True, paired=Paired(worse=16, better=14))
    assert row["rule"] == "paired" and row["verdict"] == "ok (not significant)" and row["p"] > 0.5
    # within the slack: ok without a test
    assert judge(0.970, 0.966, same=True, paired=Paired(worse=12))["p"] is None


def test_retrained_model_without_a_measured_spread_falls_back_to_the_slack():
    row = gate.judge(PATH, "accuracy", 0.970, 0.955, RULES, Paired(worse=45), None, Trained(False))
    assert row["rule"] == "slack" and row["verdict"] == "REGRESSION" and row["p"] is None
    row = gate.judge(PATH, "accuracy", 0.970, 0.965, RULES, Paired(worse=15), None, Trained(False))
    assert row["rule"] == "slack" and row["verdict"] == "ok"


@pytest.mark.parametrize("same", [True, False])
def test_missing_and_nan_metrics_fail_under_either_rule(same):
    assert judge(0.97, None, same)["verdict"] == "REGRESSION (disappeared)"
    assert judge(0.97, math.nan, same)["verdict"] == "REGRESSION (NaN)"
    assert judge(None, 0.97, same)["verdict"] == "new"


def test_a_ratio_with_nothing_to_count_is_not_a_regression_unless_it_is_a_decision_metric(tmp_path):
    """The review queue labelling no image as clothing makes that category's precision null: the
    file still has the key. A key that is gone, or a decision metric turned null, still fails."""
    review = tmp_path / "metrics" / "review.json"
    review.parent.mkdir()
    review.write_text('{"test": {"precision": null}, "test_per_category": {"clothing": {"precision": null}}}')
    diff = {"metrics/review.json": {"test_per_category.clothing.precision": (0.99, None),
                                    "test_per_category.bags.precision": (0.98, None),
                                    "test.precision": (0.995, None)}}
    rules = [gate.Rule("metrics/review.json", "test.precision", "higher", 0.01, False)]
    undefined = gate.undefined_metrics(diff, tmp_path)
    assert undefined == {("metrics/review.json", "test_per_category.clothing.precision"),
                         ("metrics/review.json", "test.precision")}
    verdicts = {row["metric"].split(":")[1]: row["verdict"]
                for row in gate.evaluate_gate(diff, rules, undefined=undefined)}
    assert verdicts == {"test_per_category.clothing.precision": "undefined now (not judged)",
                        "test_per_category.bags.precision": "REGRESSION (disappeared)",
                        "test.precision": "REGRESSION (disappeared)"}


def test_trained_models_compares_dvc_lock_hashes(tmp_path):
    lock = ("schema: '2.0'\nstages:\n  cv_train@resnet18:\n    cmd: x\n    outs:\n    - path: models/resnet18\n"
            "      md5: {md5}.dir\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "dvc.lock").write_text(lock.format(md5="aaa"))
    subprocess.run(["git", "add", "dvc.lock"], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x"], cwd=tmp_path, check=True)
    assert gate.TrainedModels("HEAD", tmp_path).same("models/resnet18")
    (tmp_path / "dvc.lock").write_text(lock.format(md5="bbb"))
    trained = gate.TrainedModels("HEAD", tmp_path)
    assert not trained.same("models/resnet18") and not trained.same("models/resnet50")
    assert not trained.same("models/*")  # a glob: every matching output must be unchanged
    (tmp_path / "dvc.lock").write_text(lock.format(md5="aaa"))
    assert gate.TrainedModels("HEAD", tmp_path).same("models/*")


def test_spread_file_round_trip(tmp_path):
    import json
    (tmp_path / "spread.json").write_text(json.dumps({"commit": "abc", "runs": 4, "metrics": {
        PATH: {"accuracy": {"values": [0.97, 0.968, 0.972, 0.97], "sd": 0.001633}, "f1": {"values": [], "sd": None}}}}))
    spread = gate.load_spread(tmp_path / "spread.json")
    assert spread.of(PATH, "accuracy") == 0.001633 and spread.of(PATH, "f1") is None and spread.runs == 4
    assert spread.of("metrics/cv/x.json", "accuracy") is None
    assert gate.load_spread(tmp_path / "missing.json") is None
    rules, settings = gate.load_gate_config("metrics_gate.yaml")
    assert settings == {"spread": "reports/spread.json", "family_false_alarm": 0.05}
    decisions = {(r.files, r.key) for r in rules if r.decision}
    assert decisions == {("metrics/test_clean/*.json", "accuracy"), ("metrics/test_clean/*.json", "f1"),
                         ("metrics/test_noise/*.json", "accuracy"), ("metrics/test_noise/*.json", "f1"),
                         ("metrics/cv/*.json", "oof.f1"), ("metrics/review.json", "test.precision"),
                         ("metrics/review.json", "test.coverage")}
    assert all(r.models == "models/{name}" for r in rules if r.files.startswith(("metrics/test_", "metrics/cv")))
    assert all(r.models == "models/*" for r in rules if r.files == "metrics/review.json")


def test_k_holds_the_family_wise_false_alarm_rate():
    from scipy.stats import t
    k = gate.family_k(0.05, 27, runs=8)
    assert 4.2 < k < 4.3 and math.isclose(27 * t.sf(k, df=7), 0.05)
    assert gate.family_k(0.05, 1, runs=8) < k < gate.family_k(0.05, 27, runs=4)  # fewer runs: wider
    with pytest.raises(ValueError, match="2 runs"):
        gate.family_k(0.05, 27, runs=2)


def test_simulated_reruns_of_unchanged_code_fail_at_most_at_the_family_rate():
    """Draw 8 'runs' to measure sd, a baseline and a rerun per metric, for 27 metrics with the true
    sd; count gates that fail any metric. Bonferroni promises <= 5%; independent metrics come close."""
    rng = np.random.default_rng(0)
    trials, metrics, runs = 4000, 27, 8
    k = gate.family_k(0.05, metrics, runs)
    sd = rng.normal(size=(trials, metrics, runs)).std(axis=2, ddof=1)
    baseline, rerun = rng.normal(size=(2, trials, metrics))
    failed = ((baseline - rerun) > k * np.sqrt(2) * sd).any(axis=1).mean()
    assert 0.02 < failed <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / trials)


def test_non_decision_metrics_are_reported_not_judged():
    rule = gate.Rule("metrics/cv/*.json", "oof.accuracy", "higher", 0.025, False, None, "mcnemar",
                     "models/{name}", 0.002, decision=False)
    spread = gate.Spread({"metrics/cv/resnet18.json": {"oof.accuracy": 0.002}}, k=4)
    row = gate.judge("metrics/cv/resnet18.json", "oof.accuracy", 0.97, 0.90, [rule], None, spread, Trained(False))
    assert row["rule"] == "reported" and row["verdict"] == "beyond (not judged)"
    assert not row["verdict"].startswith("REGRESSION")
    assert gate.judged_by_spread({"metrics/cv/resnet18.json": {"oof.accuracy": (0.97, 0.9)},
                                  PATH: {"accuracy": (0.97, 0.96)}}, [rule, *RULES], SPREAD, Trained(False)) == 1


def test_the_gate_names_no_k_where_no_model_was_retrained():
    """Byte-identical rebuilds are judged by the paired rule only: no metric needs the spread's k,
    which stays unset (NaN), and the header says so instead of printing it."""
    spread = gate.Spread({PATH: {"accuracy": 0.004}}, k=math.nan, source="reports/spread.json (8 runs)")
    header = gate.render([], "HEAD", spread=spread).splitlines()[0]
    assert "nan" not in header.lower() and "no model was retrained" in header
    judged = gate.render([], "HEAD", spread=gate.Spread({PATH: {"accuracy": 0.004}}, k=3.5, source="s"),
                         spread_note="0.05 over 27 decision metrics").splitlines()[0]
    assert "beyond 3.5 x sqrt(2)" in judged and "0.05 over 27 decision metrics" in judged
