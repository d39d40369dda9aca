"""The pieces of bench/gpu_reference.sh that run without DVC: the stage runner expands dvc.yaml as
DVC does, and the curve/confusion files written without DVCLive are DVCLive's, byte for byte."""
import subprocess
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
from run_stages import expanded_commands  # noqa: E402

from fashionclf.report import tracking  # noqa: E402


def test_stage_runner_lists_every_dvc_stage_in_a_runnable_order():
    commands = expanded_commands(ROOT / "dvc.yaml", ROOT / "params.yaml")
    listed = subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.split()
    assert sorted(name for name, _ in commands) == sorted(listed)
    order = [name.split("@")[0] for name, _ in commands]
    for before, after in [("fetch", "clean"), ("augment", "cv_train"), ("cv_train", "test_clean"),
                          ("test_clean", "test_noise"), ("test_noise", "aggregate"), ("aggregate", "review"),
                          ("review", "export")]:
        assert max(i for i, n in enumerate(order) if n == before) < min(i for i, n in enumerate(order) if n == after)
    assert all("${" not in cmd for _, cmd in commands)
    assert ("cv_train@resnet18", next(c for n, c in commands if n == "cv_train@resnet18")) in commands
    assert "--models models/resnet18" in dict(commands)["cv_train@resnet18"]


def written(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_files_without_dvclive_are_dvclives(tmp_path, monkeypatch):
    history = [{"fold": f, "epoch": e, "lr": 0.001 * e, "train_loss": 1 / e, "val_loss": 0.5 / e,
                "val_accuracy": 0.9 + e / 100} for f in (0, 1) for e in (1, 2, 3)]
    actual, predicted = ["bags", "shoes", "shoes"], ["bags", "bags", "shoes"]
    tracking.log_training_curves(history, tmp_path / "live" / "curves")
    tracking.log_confusion(actual, predicted, tmp_path / "live" / "confusion", "title")
    monkeypatch.setitem(sys.modules, "dvclive", None)  # `from dvclive import Live` now raises ImportError
    tracking.log_training_curves(history, tmp_path / "plain" / "curves")
    tracking.log_confusion(actual, predicted, tmp_path / "plain" / "confusion", "title")
    live, plain = written(tmp_path / "live"), written(tmp_path / "plain")
    assert live.keys() == plain.keys() and len(live) == 2 * 4 + 1
    assert live == plain
