"""Interrupted training (Ctrl-C and kill -9) resumes on the next `dvc repro`; reruns are byte-identical."""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import make_project, run

MODEL = "resnet18"
SMALL = {"fetch.per_class": 16, "balance.per_class": 32, "balance.test_fraction": 0.25, "augment.variants": 1,
         "train.folds": 2, "train.batch_size": 16,
         "train.models": {MODEL: {"image_size": 16, "epochs": 3, "lr": 0.003}}}


def start_repro(project):
    return subprocess.Popen(["dvc", "repro", f"cv_train@{MODEL}"], cwd=project, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_for_checkpoint(project, proc, name="fold0.pt", timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if list((project / ".fashionclf-resume" / MODEL).glob(f"*/{name}")):
            return
        if proc.poll() is not None:
            pytest.fail(f"training ended before its checkpoint {name}:\n{proc.stdout.read()}")
        time.sleep(0.2)
    pytest.fail(f"no epoch checkpoint {name} appeared")


def interrupt(project, sig, checkpoint):
    """Start training, wait for an epoch checkpoint, send ``sig`` to the whole process group."""
    proc = start_repro(project)
    wait_for_checkpoint(project, proc, checkpoint)
    os.killpg(proc.pid, sig)  # what Ctrl-C (SIGINT) or the OOM killer (SIGKILL) does to the group
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert not (project / "metrics/cv" / f"{MODEL}.json").exists()
    assert not list((project / "models" / MODEL).glob("fold*.pt"))  # nothing half-written
    assert list((project / ".fashionclf-resume" / MODEL).glob(f"*/{checkpoint}")), "the checkpoint must survive"


def test_ctrl_c_then_kill_9_then_a_rerun_completes_with_whole_outputs(tmp_path):
    """SIGINT in fold 0, then SIGKILL in fold 1 of the resumed run; the third run finishes."""
    project = make_project(tmp_path / "repo", SMALL)
    run(["dvc", "repro", "augment"], project)
    interrupt(project, signal.SIGINT, "fold0.pt")
    interrupt(project, signal.SIGKILL, "fold1.pt")  # resumed fold 0 from its checkpoint, then died in fold 1
    out = run(["dvc", "repro", f"cv_train@{MODEL}"], project).stdout
    assert "Running stage" in out
    assert sorted(p.name for p in (project / "models" / MODEL).glob("fold*.pt")) == ["fold0.pt", "fold1.pt"]
    cv = json.loads((project / "metrics/cv" / f"{MODEL}.json").read_text())
    assert all(1 <= f["epochs"] <= 3 for f in cv["folds"])
    assert not list((project / ".fashionclf-resume" / MODEL).glob("*/*.pt"))  # cleaned after success
    assert "up to date" in run(["dvc", "status", f"cv_train@{MODEL}"], project).stdout


def test_retraining_is_byte_identical(tiny_project):
    """Same params, same machine: retraining gives the same bytes, so nothing downstream reruns."""
    model = next(iter(json.loads((tiny_project / "metrics/summary.json").read_text())["models"]))
    before = (tiny_project / f"metrics/cv/{model}.json").read_bytes()
    run(["dvc", "repro", "--force", "--single-item", f"cv_train@{model}"], tiny_project)
    assert (tiny_project / f"metrics/cv/{model}.json").read_bytes() == before
    out = run(["dvc", "repro"], tiny_project).stdout
    assert "Running stage" not in out  # identical model files: test, aggregate and export stay valid
    changed = run(["git", "status", "--porcelain", "--", "dvc.lock", "metrics", "plots"], tiny_project).stdout
    assert changed == ""
