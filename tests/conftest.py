"""Shared fixtures: small generated image folders and a tiny copy of the whole DVC project."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """Under pytest-xdist each worker computes in-process with one torch thread. With the default, a
    thread per core, two workers on two cores keep descheduling each other's OpenMP threads: the
    in-process training tests ran 4-5x slower than alone (measured), against 2x for a fair share.
    Stage and command subprocesses set their own thread counts, from params and flags, as always.

    Their OpenMP threads wait passively (OMP_WAIT_POLICY): by default an idle thread spins before it
    sleeps, which on a core shared with the other worker burns that worker's time. The policy
    changes no result, only who gets the core."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # inherited by every subprocess from here on
        import torch
        torch.set_num_threads(1)


PROJECT_FILES = ["dvc.yaml", "params.yaml", "stages", "fashionclf", "data/corrections.csv", "metrics_gate.yaml",
                 ".dvcignore"]


def make_image(path: Path, kind: int, seed: int, size=(40, 40), fmt=None) -> Path:
    """A small synthetic product photo whose shape depends on ``kind`` (so classes are learnable)."""
    rng = np.random.default_rng(seed)
    w, h = size
    arr = np.full((h, w, 3), 235, np.uint8)
    colour = rng.integers(0, 200, 3)
    if kind == 0:  # a wide block
        arr[h // 3: 2 * h // 3, w // 8: 7 * w // 8] = colour
    elif kind == 1:  # a tall block
        arr[h // 8: 7 * h // 8, w // 3: 2 * w // 3] = colour
    elif kind == 2:  # a diagonal band
        for i in range(h):
            j = int(i * w / h)
            arr[i, max(0, j - w // 6): j + w // 6] = colour
    else:  # a ring
        yy, xx = np.mgrid[:h, :w]
        r = np.hypot(yy - h / 2, xx - w / 2)
        arr[(r > min(w, h) / 5) & (r < min(w, h) / 2.5)] = colour
    arr = np.clip(arr.astype(int) + rng.integers(-12, 13, arr.shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)
    return path


def make_class_folders(root: Path, categories, per_category: int, start_seed: int = 0) -> Path:
    """Folder-per-class dataset: root/<category>/img_<n>.png (or .jpg every third image)."""
    for k, category in enumerate(categories):
        for n in range(per_category):
            ext = ".jpg" if n % 3 == 0 else ".png"
            make_image(root / category / f"img_{n:03d}{ext}", k, start_seed + 1000 * k + n)
    return root


def run(cmd, cwd, check=True, env=None, timeout=600):
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env or os.environ.copy(),
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def cli(cwd, *args) -> subprocess.CompletedProcess:
    """`python -m fashionclf ARGS` run in this process, in ``cwd``: the same entry point, exit code and
    output as a subprocess, without a new interpreter importing torch (about 3 s a call here)."""
    import contextlib
    import io

    from fashionclf.__main__ import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def make_project(tmp: Path, overrides: dict) -> Path:
    """A git + DVC repo holding this project's code and params with ``overrides`` applied."""
    tmp.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tmp / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, tmp / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for dotted, value in overrides.items():
        node = params
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    (tmp / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], tmp)
    run(["git", "config", "user.email", "test@example.com"], tmp)
    run(["git", "config", "user.name", "test"], tmp)
    run(["dvc", "init", "-q"], tmp)
    run(["dvc", "config", "core.analytics", "false"], tmp)
    # DVCLive 3.49 fails in a git repo without commits (scm.get_rev before its no_commits check)
    run(["git", "add", "-A"], tmp)
    run(["git", "commit", "-qm", "project"], tmp)
    return tmp


TINY = {
    "fetch.per_class": 30,
    "balance.per_class": 45,
    "balance.test_fraction": 0.25,
    "augment.variants": 1,
    "train.folds": 2,
    "train.batch_size": 32,
    "train.models": {"mobilenet_v2": {"image_size": 32, "epochs": 1, "lr": 0.003, "ema_decay": 0.0},
                     "efficientnet_lite0": {"image_size": 32, "epochs": 1, "lr": 0.001, "ema_decay": 0.0}},
    "noise.sigmas": [0.1, 0.2],
    "noise.curve_max_images": 20,
}


LONGEST_FIRST = ("test_catalogue.py", "test_interruptions.py", "test_labelling.py", "test_workflows.py")


def pytest_collection_modifyitems(config, items):
    """Tests on the tiny project run last: under pytest-xdist one worker builds it while the others
    run everything else. Within each group the modules with the longest tests go first, so that no
    long test starts when the others are done and leaves a core idle at the end."""
    def order(item):
        return "tiny_project" in getattr(item, "fixturenames", ()), item.path.name not in LONGEST_FIRST
    items.sort(key=order)
    if os.environ.get("PYTEST_XDIST_WORKER") and any("tiny_project" in getattr(i, "fixturenames", ()) for i in items):
        start_tiny_build(tiny_shared_dir(config))


_background_build: subprocess.Popen | None = None


def tiny_shared_dir(config) -> Path:
    return config._tmp_path_factory.getbasetemp().parent  # common to all workers of this run


def start_tiny_build(shared: Path) -> None:
    """The first worker starts building the tiny project in a background process at collection, so
    no core waits for it: measured, the worker that asked for it first built it while the other
    waited on the lock for a minute. The marker file makes sure one worker of the run starts it."""
    global _background_build
    try:
        os.close(os.open(shared / "tiny.started", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return
    log = open(shared / "tiny.log", "w")
    _background_build = subprocess.Popen([sys.executable, __file__, str(shared)], stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)


def pytest_unconfigure(config):
    """A run stopped early (-x, Ctrl-C) stops the build too, with the stages it started."""
    if _background_build is not None and _background_build.poll() is None:
        os.killpg(_background_build.pid, signal.SIGKILL)


def build_tiny_project(repo: Path) -> Path:
    project = make_project(repo, TINY)
    run(["dvc", "repro"], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "tiny pipeline"], project)
    return project


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory):
    """The whole pipeline, reproduced once on a tiny config of the embedded Fashion-MNIST data. Under
    pytest-xdist the first worker builds it behind a file lock and every worker gets its own copy
    (tests change and restore it), so it is built once per run, not once per worker; a background
    process starts the build at collection (start_tiny_build)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build_tiny_project(tmp_path_factory.mktemp("tiny") / "repo")
    built = build_tiny_project_once(tmp_path_factory.getbasetemp().parent)
    project = tmp_path_factory.mktemp("tiny") / "repo"
    shutil.copytree(built, project, symlinks=True)
    return project


def build_tiny_project_once(shared: Path) -> Path:
    """Behind a file lock, so the background build and a worker that asks first never both build."""
    from filelock import FileLock
    built = shared / "tiny" / "repo"
    with FileLock(str(shared / "tiny.lock")):
        if not (shared / "tiny" / "built").exists():
            shutil.rmtree(built, ignore_errors=True)  # what a killed build left
            build_tiny_project(built)
            (shared / "tiny" / "built").touch()
    return built


def python_cmd(*args):
    return [sys.executable, *args]


if __name__ == "__main__":  # the background build of start_tiny_build
    build_tiny_project_once(Path(sys.argv[1]))
