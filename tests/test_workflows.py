"""DVC workflows users rely on, run for real in a temporary git repo: gate, metrics diff, exp, remote."""
import json
import shutil

from conftest import TINY, python_cmd, run

MODEL = list(TINY["train.models"])[0]
CLEAN = f"metrics/test_clean/{MODEL}.json"


def gate(project, against="HEAD"):
    return run(python_cmd("-m", "fashionclf", "gate", "--against", against), project, check=False)


def edit_json(project, path, change):
    doc = json.loads((project / path).read_text())
    change(doc)
    (project / path).write_text(json.dumps(doc))


def restore(project):
    run(["git", "checkout", "-q", "--", "."], project)
    run(["git", "clean", "-qfd", "metrics", "plots"], project)


def test_gate_passes_on_unchanged_and_better_metrics(tiny_project):
    result = gate(tiny_project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "metric" in result.stdout and "verdict" in result.stdout and "0 regression(s)" in result.stdout
    edit_json(tiny_project, CLEAN, lambda d: d.update(accuracy=min(1.0, d["accuracy"] + 0.05)))
    try:
        assert gate(tiny_project).returncode == 0
    finally:
        restore(tiny_project)


def test_gate_fails_on_a_regression_in_a_branch_naming_the_metric(tiny_project):
    p = tiny_project
    base = run(["git", "rev-parse", "HEAD"], p).stdout.strip()
    run(["git", "checkout", "-qb", "worse"], p)
    try:
        edit_json(p, CLEAN, lambda d: d.update(accuracy=d["accuracy"] - 0.02))
        run(["git", "commit", "-qam", "a worse model"], p)
        result = gate(p, base)
        assert result.returncode == 1
        line = next(l for l in result.stdout.splitlines() if l.startswith(f"{CLEAN}:accuracy"))
        assert "REGRESSION" in line and "-0.0200" in line
        assert "1 regression(s)" in result.stdout
        # within the slack: 0.3 points of accuracy is allowed
        edit_json(p, CLEAN, lambda d: d.update(accuracy=d["accuracy"] + 0.017))
        assert gate(p, base).returncode == 0
    finally:
        run(["git", "checkout", "-qf", "-"], p)
        run(["git", "branch", "-qD", "worse"], p)
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
    p = tiny_project
    base = run(["git", "rev-parse", "HEAD"], p).stdout.strip()
    try:
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
        shutil.rmtree(p / ".dvc" / "cache")
        shutil.rmtree(p / "models")
        shutil.rmtree(p / "data" / "augment")
        run(["dvc", "pull"], p)
        assert (p / "models" / MODEL / "fold0.pt").is_file()
        assert "up to date" in run(["dvc", "status"], p).stdout
    finally:
        run(["git", "reset", "-q", "--hard", base], p)
        run(["dvc", "checkout", "-q"], p, check=False)
        restore(p)
