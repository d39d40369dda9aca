"""Metrics gate: compare workspace metrics with a git revision and fail on real regressions only.

DVC reads both sides (``dvc metrics diff --all --json``); metrics_gate.yaml says, per metric (file
glob + key), which direction is better and how much slack is allowed. A metric that got worse by
more than its slack is a regression only if the change is also statistically significant on the
paired per-image predictions of the two revisions (exact McNemar test for accuracy-like metrics,
paired t-test for the per-image log loss), where the rule names those predictions. Seeds, thread
counts and CPUs move an unconverged model's numbers; they rarely move them significantly.
"""
from __future__ import annotations

import fnmatch
import functools
import io
import json
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .stats import mcnemar_exact, paired_loss_test

RULES_FILE = Path("metrics_gate.yaml")
SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class Rule:
    files: str
    key: str
    direction: str  # "higher" or "lower" is better
    slack: float
    relative: bool
    predictions: str | None = None  # per-image predictions of the metric file, "{name}" = its stem
    test: str = "mcnemar"           # or "loss": a paired t-test of the per-image log loss

    def matches(self, path: str, key: str) -> bool:
        return fnmatch.fnmatch(path, self.files) and (key == self.key or fnmatch.fnmatch(key, self.key))

    def allowed(self, baseline: float) -> float:
        return abs(baseline) * self.slack if self.relative else self.slack

    def describe(self) -> str:
        sign = "-" if self.direction == "higher" else "+"
        return f"{sign}{self.slack:.0%}" if self.relative else f"{sign}{self.slack:g}"


def load_rules(path: Path | str = RULES_FILE) -> list[Rule]:
    doc = yaml.safe_load(Path(path).read_text()) or {}
    rules = []
    for i, raw in enumerate(doc.get("rules", [])):
        direction = raw.get("better")
        if direction not in ("higher", "lower"):
            raise ValueError(f"{path}: rules[{i}].better must be 'higher' or 'lower', got {direction!r}")
        slack = str(raw.get("slack", 0))
        relative = slack.endswith("%")
        rules.append(Rule(raw["files"], raw["key"], direction, float(slack.rstrip("%")) / (100 if relative else 1),
                          relative, raw.get("predictions"), raw.get("test", "mcnemar")))
    return rules


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
        shown = subprocess.run(["git", "show", f"{self.against}:{path}"], cwd=self.cwd, capture_output=True,
                               text=True)
        workspace = self.cwd / path
        if shown.returncode != 0 or not workspace.is_file():
            return None
        old = pd.read_csv(io.StringIO(shown.stdout), keep_default_na=False)
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


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def judge(path: str, key: str, old, new, rules: list[Rule], paired: PairedPredictions | None = None) -> dict:
    rule = next((r for r in rules if r.matches(path, key)), None)
    row = {"metric": f"{path}:{key}", "baseline": old, "now": new, "change": None, "allowed": "", "p": None,
           "verdict": "ok"}
    if old is None:
        row["verdict"] = "new" if new is not None else "ok"
        return row
    if new is None:
        row["verdict"] = "REGRESSION (disappeared)"
        return row
    if not (is_number(old) and is_number(new)):
        return row
    if math.isnan(new) and not math.isnan(old):
        row["verdict"] = "REGRESSION (NaN)"
        return row
    row["change"] = new - old
    if rule is None:
        row["verdict"] = "ok (no rule)"
        return row
    row["allowed"] = rule.describe()
    worse_by = (old - new) if rule.direction == "higher" else (new - old)
    if worse_by <= rule.allowed(old) + 1e-12:
        return row
    if rule.predictions and paired is not None:
        row["p"] = paired.p_value(rule.predictions.format(name=Path(path).stem), rule.test)
    if row["p"] is not None and row["p"] >= SIGNIFICANCE:
        row["verdict"] = "ok (not significant)"
    else:
        row["verdict"] = "REGRESSION"
    return row


def evaluate_gate(diff: dict, rules: list[Rule], paired: PairedPredictions | None = None) -> list[dict]:
    return [judge(path, key, old, new, rules, paired)
            for path, keys in sorted(diff.items()) for key, (old, new) in sorted(keys.items())]


def fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def render(rows: list[dict], against: str, show_all: bool = False) -> str:
    shown = [r for r in rows if show_all or r["verdict"] != "ok (no rule)"]
    header = ("metric", "baseline", "now", "change", "allowed", "p (paired)", "verdict")
    table = [header] + [(r["metric"], fmt(r["baseline"]), fmt(r["now"]),
                         "-" if r["change"] is None else f"{r['change']:+.4f}", r["allowed"] or "-",
                         "-" if r["p"] is None else f"{r['p']:.3g}", r["verdict"]) for r in shown]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [f"metrics gate against {against} (a drop beyond its slack fails only if significant, p < {SIGNIFICANCE})"]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    bad = [r for r in rows if r["verdict"].startswith("REGRESSION")]
    lines.append(f"{len(bad)} regression(s) in {len(rows)} metrics" + (": " + ", ".join(r["metric"] for r in bad)
                                                                        if bad else ""))
    return "\n".join(lines)


def run_gate(against: str = "HEAD", rules_file: Path | str = RULES_FILE, show_all: bool = False,
             cwd=".") -> int:
    rows = evaluate_gate(metrics_diff(against, cwd), load_rules(Path(cwd) / rules_file),
                         PairedPredictions(against, cwd))
    print(render(rows, against, show_all))
    return 1 if any(r["verdict"].startswith("REGRESSION") for r in rows) else 0
