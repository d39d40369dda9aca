"""Interrupted training (Ctrl-C and kill -9) resumes on the next `dvc repro`; reruns are byte-identical."""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import make_project, run

MODEL = "resnet18"
SMALL = {"fetch.per_class": 24, "balance.per_class": 48, "balance.test_fraction": 0.25, "augment.variants": 1,
         "train.folds": 2, "train.batch_size": 16,
         "train.models": {MODEL: {"image_size": 32, "epochs": 4, "lr": 0.003}}}


def start_repro(project):
    return subprocess.Popen(["dvc", "repro", f"cv_train@{MODEL}"], cwd=project, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_for_epoch_checkpoint(project, proc, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if list((project / ".fashionclf-resume" / MODEL).glob("*/fold0.pt")):
            return
        if proc.poll() is not None:
            pytest.fail(f"training ended before its first checkpoint:\n{proc.stdout.read()}")
        time.sleep(0.2)
    pytest.fail("no epoch checkpoint appeared")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A small project with its data stages already run (copied per test)."""
    project = make_project(tmp_path_factory.mktemp("interrupt") / "repo", SMALL)
    run(["dvc", "repro", "augment"], project)
    return project


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_killed_training_resumes_and_outputs_are_whole(prepared, tmp_path, sig):
    project = tmp_path / "repo"
    shutil.copytree(prepared, project, symlinks=True)
    proc = start_repro(project)
    wait_for_epoch_checkpoint(project, proc)
    os.killpg(proc.pid, sig)  # what Ctrl-C (SIGINT) or the OOM killer (SIGKILL) does to the group
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert not (project / "metrics/cv" / f"{MODEL}.json").exists()
    assert not list((project / "models" / MODEL).glob("fold*.pt"))  # nothing half-written
    saved = list((project / ".fashionclf-resume" / MODEL).glob("*/fold0.pt"))
    assert saved, "the epoch checkpoint must survive the interruption"
    out = run(["dvc", "repro", f"cv_train@{MODEL}"], project).stdout
    assert "Running stage" in out
    assert sorted(p.name for p in (project / "models" / MODEL).glob("fold*.pt")) == ["fold0.pt", "fold1.pt"]
    cv = json.loads((project / "metrics/cv" / f"{MODEL}.json").read_text())
    assert [f["epochs"] for f in cv["folds"]] == [4, 4] or all(f["epochs"] >= 1 for f in cv["folds"])
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
