"""What a git revision holds, beside the workspace: its metrics (through ``dvc metrics diff``), its
dvc.lock's output hashes (were the models retrained?) and its per-image predictions, paired image by
image with the workspace's for the gate's paired tests."""
from __future__ import annotations

import fnmatch
import functools
import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..core.stats import mcnemar_exact, paired_loss_test

LOCK_FILE = "dvc.lock"


def lock_hashes(text: str) -> dict:
    """{output path: its md5} of a dvc.lock text."""
    doc = yaml.safe_load(text) or {}
    return {out["path"]: out.get("md5") for stage in (doc.get("stages") or {}).values()
            for out in stage.get("outs", [])}


def at_revision(revision: str, path: str, cwd=".") -> str | None:
    """A file's text at a git revision, or None where it has none."""
    shown = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=cwd, capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else None


class TrainedModels:
    """Whether an output (the fold checkpoints) is the same at the baseline and in the workspace."""

    def __init__(self, against: str, cwd="."):
        workspace = Path(cwd) / LOCK_FILE
        self.old = lock_hashes(at_revision(against, LOCK_FILE, cwd) or "")
        self.new = lock_hashes(workspace.read_text()) if workspace.is_file() else {}

    def same(self, path: str) -> bool:
        """``path`` (a glob matches several outputs: all of them) is in both locks, unchanged."""
        paths = sorted({p for p in self.old.keys() | self.new.keys() if fnmatch.fnmatch(p, path)})
        return bool(paths) and all(self.old.get(p) is not None and self.old.get(p) == self.new.get(p) for p in paths)


def metrics_diff(against: str, cwd=".") -> dict:
    """{file: {key: (old, new)}} for every metric on either side, via DVC."""
    out = subprocess.run(["dvc", "metrics", "diff", against, "--all", "--json"], cwd=cwd,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"dvc metrics diff {against} failed: {out.stderr.strip()}")
    raw = json.loads(out.stdout or "{}")
    return {path: {key: (v.get("old"), v.get("new")) for key, v in keys.items()}
            for path, keys in raw.items()}


class PairedPredictions:
    """Per-image predictions of one metric file at the baseline revision and in the workspace."""

    def __init__(self, against: str, cwd="."):
        self.against = against
        self.cwd = Path(cwd)

    @functools.cache  # several metrics of one file share its predictions
    def read(self, path: str) -> pd.DataFrame | None:
        """Both revisions' rows of the same images side by side, or None if they cannot be paired."""
        shown = at_revision(self.against, path, self.cwd)
        workspace = self.cwd / path
        if shown is None or not workspace.is_file():
            return None
        old = pd.read_csv(io.StringIO(shown), keep_default_na=False)
        new = pd.read_csv(workspace, keep_default_na=False)
        keys = [c for c in ("path", "copy", "variant") if c in old.columns and c in new.columns]
        both = old.merge(new, on=keys, suffixes=("_old", "_new"))
        if len(both) < 0.9 * max(len(old), len(new)):  # a different data set: no pairing
            return None
        return both

    def p_value(self, path: str, test: str) -> float | None:
        both = self.read(path)
        if both is None:
            return None
        if test == "loss":
            return paired_loss_test(image_loss(both, "_old"), image_loss(both, "_new"))
        return mcnemar_exact(both["actual_old"] == both["predicted_old"],
                             both["actual_new"] == both["predicted_new"])["p_value"]


def image_loss(both: pd.DataFrame, suffix: str) -> np.ndarray:
    """Per-image cross-entropy from a merged predictions table."""
    actual = both[f"actual{suffix}"].to_numpy()
    probability = np.ones(len(both))
    for category in np.unique(actual):
        mask = actual == category
        probability[mask] = both.loc[mask, f"p_{category}{suffix}"].to_numpy(float)
    return -np.log(np.clip(probability, 1e-12, None))
