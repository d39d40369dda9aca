"""Interrupted training (Ctrl-C and kill -9) resumes on the next `dvc repro`; reruns are byte-identical."""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, make_project, run

HOOKS = ROOT / "tests" / "hooks"  # sitecustomize.py: training pauses after chosen resume points

MODEL = "mobilenet_v2"  # a fifth of resnet18's weights (2.2M against 11.2M) to checkpoint
SMALL = {"fetch.per_class": 16, "balance.per_class": 32, "balance.test_fraction": 0.25, "augment.variants": 1,
         "train.folds": 2, "train.batch_size": 16,
         "train.models": {MODEL: {"image_size": 16, "epochs": 3, "lr": 0.003, "ema_decay": 0.0}}}


def start_repro(project, pause_at: str):
    """`dvc repro` of the training stage, whose training stops for good after writing a resume point
    named in ``pause_at`` ("*": any): the run waits at a known point for the signal, however fast
    the machine, so it cannot finish first."""
    env = os.environ | {"FASHIONCLF_TEST_PAUSE_AT": pause_at,
                        "PYTHONPATH": os.pathsep.join(filter(None, [str(HOOKS), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(["dvc", "repro", f"cv_train@{MODEL}"], cwd=project, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env,
                            preexec_fn=deliverable_sigint)


def deliverable_sigint():
    """The run gets Ctrl-C as a terminal would deliver it, whatever the test process inherited: a
    child keeps its parent's blocked-signal mask and ignored signals across exec, and a test runner's
    worker process may have SIGINT blocked or ignored (seen: a Ctrl-C'd run never noticed, in CI only)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def signal_state(pgid: int) -> str:
    """Each process of the group: state, blocked, ignored and pending signals (for a failure message)."""
    lines = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(l.split(":", 1) for l in status.read_text().splitlines() if ":" in l)
            if os.getpgid(int(status.parent.name)) == pgid:
                lines.append(f"{status.parent.name} {fields['Name'].strip()} {fields['State'].strip()} "
                             + " ".join(f"{k}={fields[k].strip()}" for k in ("SigBlk", "SigIgn", "SigPnd", "ShdPnd")))
        except (OSError, KeyError, ValueError):
            pass
    return "\n".join(lines)


def resume_points(project, name):
    return {p: p.stat().st_mtime_ns for p in (project / ".fashionclf-resume" / MODEL).glob(f"*/{name}")}


def wait_for_checkpoint(project, proc, name, before, timeout=240):
    """Until this run writes the resume point ``name`` (``before``: those an earlier run left)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if resume_points(project, name).items() - before.items():
            return
        if proc.poll() is not None:
            pytest.fail(f"training ended before its checkpoint {name}:\n{proc.stdout.read()}")
        time.sleep(0.2)
    pytest.fail(f"no epoch checkpoint {name} appeared")


def interrupt(project, sig, checkpoint, pause_at):
    """Start training, wait for an epoch checkpoint, send ``sig`` to the whole process group."""
    before = resume_points(project, checkpoint)
    proc = start_repro(project, pause_at)
    wait_for_checkpoint(project, proc, checkpoint, before)
    os.killpg(proc.pid, sig)  # what Ctrl-C (SIGINT) or the OOM killer (SIGKILL) does to the group
    try:
        proc.communicate(timeout=120)  # read its output as it comes: a full pipe would block its exit
    except subprocess.TimeoutExpired:
        state = signal_state(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"dvc repro did not end after signal {sig}:\n{state}\n{proc.communicate()[0][-3000:]}")
    assert proc.returncode != 0
    assert not (project / "metrics/cv" / f"{MODEL}.json").exists()
    assert not list((project / "models" / MODEL).glob("fold*.pt"))  # nothing half-written
    assert list((project / ".fashionclf-resume" / MODEL).glob(f"*/{checkpoint}")), "the checkpoint must survive"


def test_ctrl_c_then_kill_9_then_a_rerun_completes_with_whole_outputs(tmp_path):
    """SIGINT in fold 0, then SIGKILL in fold 1 of the resumed run; the third run finishes."""
    project = make_project(tmp_path / "repo", SMALL)
    run(["dvc", "repro", "augment"], project)
    # every fold pauses at its first resume point, so none is past epoch 1 when SIGINT arrives
    interrupt(project, signal.SIGINT, "fold0.pt", pause_at="*")
    # fold 0 resumes from its checkpoint; fold 1 (at most 1 of 3 epochs done) pauses at its next one
    interrupt(project, signal.SIGKILL, "fold1.pt", pause_at="fold1.pt")
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
