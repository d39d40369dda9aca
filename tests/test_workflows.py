"""DVC workflows users rely on, run for real in a temporary git repo: gate, metrics diff, exp, remote."""
import json
import shutil

from conftest import TINY, cli, run

MODEL = list(TINY["train.models"])[0]
CLEAN = f"metrics/test_clean/{MODEL}.json"


def gate(project, against="HEAD"):
    return cli(project, "gate", "--against", against)


def edit_json(project, path, change):
    doc = json.loads((project / path).read_text())
    change(doc)
    (project / path).write_text(json.dumps(doc))


def restore(project):
    run(["git", "checkout", "-q", "--", "."], project)
    run(["git", "clean", "-qfd", "metrics", "plots", "reports"], project)


def degrade(project, split, n):
    """Make ``n`` right test predictions of MODEL wrong, and recompute its metrics from them."""
    import pandas as pd
    from fashionclf.core.scoring import metrics_from_predictions
    path = project / f"plots/predictions/{split}/{MODEL}.csv"
    table = pd.read_csv(path, keep_default_na=False)
    categories = [c[2:] for c in table.columns if c.startswith("p_")]
    right = table.index[table["actual"] == table["predicted"]][:n]
    assert len(right) == n, "the tiny model has too few right answers to degrade"
    wrong = [next(c for c in categories if c != a) for a in table.loc[right, "actual"]]
    table.loc[right, "predicted"] = wrong
    for c in categories:  # the probabilities agree with the new answers
        table.loc[right, f"p_{c}"] = [1.0 if w == c else 0.0 for w in wrong]
    table.to_csv(path, index=False)
    metrics = json.loads((project / f"metrics/{split}/{MODEL}.json").read_text())
    metrics.update(metrics_from_predictions(table, categories))
    (project / f"metrics/{split}/{MODEL}.json").write_text(json.dumps(metrics))
    return metrics


def gate_line(result, path, key):
    return next(l for l in result.stdout.splitlines() if l.startswith(f"{path}:{key} "))


def test_gate_outside_a_project_says_where_to_run_it(tmp_path):
    out = cli(tmp_path, "gate")
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "error: gate: no metrics_gate.yaml here: run it in the project's root, or name the rules with --rules"]


def test_gate_passes_on_unchanged_and_better_metrics(tiny_project):
    result = gate(tiny_project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "p (paired)" in result.stdout and "verdict" in result.stdout and "0 regression(s)" in result.stdout
    assert " rule " in result.stdout.splitlines()[1]
    edit_json(tiny_project, CLEAN, lambda d: d.update(accuracy=min(1.0, d["accuracy"] + 0.05)))
    try:
        assert gate(tiny_project).returncode == 0
    finally:
        restore(tiny_project)


def test_gate_fails_on_a_significant_regression_in_a_branch_naming_the_metric(tiny_project):
    p = tiny_project
    base = run(["git", "rev-parse", "HEAD"], p).stdout.strip()
    run(["git", "checkout", "-qb", "worse"], p)
    try:
        before = json.loads((p / CLEAN).read_text())["accuracy"]
        after = degrade(p, "test_clean", 12)["accuracy"]  # 12 of 75 images newly wrong, none newly right
        run(["git", "commit", "-qam", "a worse model"], p)
        result = gate(p, base)
        assert result.returncode == 1, result.stdout
        line = gate_line(result, CLEAN, "accuracy")
        assert "REGRESSION" in line and f"{after - before:+.4f}" in line
        assert line.split()[4] == "paired"  # the same trained models: the paired test judges
        assert float(line.split()[6]) < 0.001  # exact McNemar: 12 worse, 0 better
    finally:
        run(["git", "checkout", "-qf", "-"], p)
        run(["git", "branch", "-qD", "worse"], p)
        restore(p)


def test_gate_passes_a_drop_within_the_noise(tiny_project):
    """Beyond the slack, but two images of 75: McNemar p = 0.5, so not a regression."""
    p = tiny_project
    try:
        degrade(p, "test_clean", 2)
        result = gate(p)
        assert result.returncode == 0, result.stdout
        line = gate_line(result, CLEAN, "accuracy")
        assert "ok (not significant)" in line and line.split()[4] == "paired" and line.split()[6] == "0.5"
    finally:
        restore(p)


def test_gate_without_predictions_to_pair_falls_back_to_the_slack(tiny_project):
    p = tiny_project
    try:
        (p / f"plots/predictions/test_clean/{MODEL}.csv").unlink()
        edit_json(p, CLEAN, lambda d: d.update(accuracy=d["accuracy"] - 0.02))
        result = gate(p)
        line = gate_line(result, CLEAN, "accuracy")
        assert result.returncode == 1 and "REGRESSION" in line and line.split()[4] == "slack"
        edit_json(p, CLEAN, lambda d: d.update(accuracy=d["accuracy"] + 0.017))  # 0.3 points: within
        assert gate(p).returncode == 0
    finally:
        restore(p)


def retrained(project, sd):
    """The workspace as after retraining MODEL (its checkpoints' hash in dvc.lock changed), with a
    measured spread of ``sd`` for its clean test accuracy, F1 and mAP."""
    lock = project / "dvc.lock"
    text = lock.read_text()
    start = text.index(f"path: models/{MODEL}\n")
    md5 = text.index("md5: ", start) + len("md5: ")
    lock.write_text(text[:md5] + "0" * 32 + text[md5 + 32:])
    (project / "reports").mkdir(exist_ok=True)
    (project / "reports/spread.json").write_text(json.dumps(
        {"commit": "test", "runs": 4, "metrics": {CLEAN: {key: {"values": [], "sd": sd} for key in ("accuracy", "f1", "map")}}}))


def test_gate_judges_retrained_models_by_their_spread_not_the_paired_test(tiny_project):
    p = tiny_project
    try:
        # decision metrics judged by spread: accuracy and F1 (mAP is reported); sd from 4 runs:
        # k = t(3 df) at 1 - 0.05 / 2 = 3.18, allowed drop 3.18 x sqrt(2) x 0.05 = 0.225
        retrained(p, sd=0.05)
        degrade(p, "test_clean", 12)  # a paired test calls this a different model (p < 0.001)
        result = gate(p)
        line = gate_line(result, CLEAN, "accuracy")
        assert result.returncode == 0, result.stdout
        assert line.split()[4] == "spread" and line.split()[5] == "-0.225" and line.endswith(" ok")
        assert gate_line(result, CLEAN, "map").split()[4] == "reported"
        assert "family-wise false-alarm rate at 0.05 over 2 decision metrics" in result.stdout
        restore(p)
        retrained(p, sd=0.003)  # allowed drop: 3.18 x sqrt(2) x 0.003 = 0.0135
        degrade(p, "test_clean", 2)  # two images: not significant for a paired test, beyond this spread
        result = gate(p)
        line = gate_line(result, CLEAN, "accuracy")
        assert result.returncode == 1 and line.split()[4] == "spread" and "REGRESSION" in line
        # other metrics of the retrained model without a measured spread fall back to the slack
        assert gate_line(result, f"metrics/cv/{MODEL}.json", "oof.accuracy").split()[4] == "slack"
    finally:
        restore(p)


def test_gate_fails_on_missing_file_dropped_model_and_nan(tiny_project):
    p = tiny_project
    try:
        (p / f"metrics/cv/{MODEL}.json").unlink()
        result = gate(p)
        assert result.returncode == 1 and "disappeared" in result.stdout
        restore(p)
        edit_json(p, "metrics/summary.json", lambda d: d["models"].pop(MODEL))
        result = gate(p)
        assert result.returncode == 1 and f"models.{MODEL}.test_clean.accuracy" in result.stdout
        restore(p)
        text = (p / CLEAN).read_text()
        (p / CLEAN).write_text(text.replace('"f1": ', '"f1": NaN, "old_f1": ', 1))
        result = gate(p)
        assert result.returncode == 1 and "NaN" in result.stdout
    finally:
        restore(p)


def test_metrics_diff_after_a_param_change_then_remote_push_pull(tiny_project, tmp_path):
    """On a copy: it wipes .dvc/cache, and with it the run cache that later tests on this worker's
    project restore from (seen: the run-cache test retrained when this one ran first)."""
    p = tmp_path / "repo"
    shutil.copytree(tiny_project, p, symlinks=True)
    base = run(["git", "rev-parse", "HEAD"], p).stdout.strip()
    out = run(["dvc", "exp", "run", "-S", "noise.sigma=0.3"], p).stdout
    ran = sorted(l.split("'")[1] for l in out.splitlines() if l.startswith("Running stage"))
    assert ran == sorted([f"test_noise@{m}" for m in TINY["train.models"]] + ["aggregate"]), ran
    shown = run(["dvc", "exp", "show", "--json"], p).stdout
    assert "noise.sigma" in shown or '"sigma": 0.3' in shown or "0.3" in shown
    run(["git", "commit", "-qam", "noisier test"], p)
    diff = json.loads(run(["dvc", "metrics", "diff", base, "HEAD", "--json"], p).stdout)
    sigma = diff[f"metrics/test_noise/{MODEL}.json"]["sigma"]
    assert (sigma["old"], sigma["new"]) == (0.1, 0.3) and abs(sigma["diff"] - 0.2) < 1e-9
    assert f"metrics/test_clean/{MODEL}.json" not in diff  # clean results did not move
    # share the cached outputs through a local remote, wipe the cache, pull them back
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-d", "local", str(remote)], p)
    run(["dvc", "push"], p)
    # the model registry entry: a version tag (GTO's format) makes `dvc artifacts get` find it
    run(["git", "commit", "-qam", "a shared remote"], p)
    run(["git", "tag", "-a", "fashion-classifier@v0.1.0", "-m", "Registering fashion-classifier v0.1.0"], p)
    got = tmp_path / "got"
    run(["dvc", "artifacts", "get", str(p), "fashion-classifier", "-o", str(got)], tmp_path)
    assert (got / "model.onnx").read_bytes() == (p / "export/model.onnx").read_bytes()
    assert json.loads((got / "labels.json").read_text())["categories"] == ["bags", "clothing", "shoes"]
    shutil.rmtree(p / ".dvc" / "cache")
    shutil.rmtree(p / "models")
    shutil.rmtree(p / "data" / "augment")
    run(["dvc", "pull"], p)
    assert (p / "models" / MODEL / "fold0.pt").is_file() and (p / "export" / "model.onnx").is_file()
    assert "up to date" in run(["dvc", "status"], p).stdout
