"""A small sweep through DVC's experiment queue, as docs/pipeline.md documents it: two queued
experiments (two learning rates of one model) run by `dvc queue start -j 2` on the tiny project."""
import json
import time

from conftest import run


def test_a_queued_sweep_of_two_learning_rates_runs_both(tiny_project):
    rates = {"lr-low": 0.002, "lr-high": 0.006}
    for name, lr in rates.items():
        run(["dvc", "exp", "run", "--queue", "-n", name, "-S", f"train.models.mobilenet_v2.lr={lr}",
             "cv_train@mobilenet_v2"], tiny_project)  # to the stage whose metrics compare them
    run(["dvc", "queue", "start", "-j", "2"], tiny_project)
    deadline = time.monotonic() + 480
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], tiny_project).stdout
        if all(f"{name}" in status for name in rates) and "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    assert status.count("Success") == 2, status
    shown = json.loads(run(["dvc", "exp", "show", "--json"], tiny_project).stdout)
    experiments = {exp["name"]: exp for row in shown for exp in (row.get("experiments") or [])
                   for exp in (exp.get("revs") or [])}
    assert set(rates) <= set(experiments), list(experiments)
    for name, lr in rates.items():
        data = experiments[name]["data"]
        assert data["params"]["params.yaml"]["data"]["train"]["models"]["mobilenet_v2"]["lr"] == lr
        assert "metrics/cv/mobilenet_v2.json" in data["metrics"]
    accuracy = {name: experiments[name]["data"]["metrics"]["metrics/cv/mobilenet_v2.json"]["data"]["oof"]["accuracy"]
                for name in rates}
    assert accuracy["lr-low"] != accuracy["lr-high"]  # each trained with its own rate
