"""Metrics gate: compare workspace metrics with a git revision and fail on regressions.

DVC reads both sides (``dvc metrics diff --all --json``); metrics_gate.yaml says, per metric
(file glob + key), which direction is better and how much slack is allowed.
"""
from __future__ import annotations

import fnmatch
import json
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

RULES_FILE = Path("metrics_gate.yaml")


@dataclass(frozen=True)
class Rule:
    files: str
    key: str
    direction: str  # "higher" or "lower" is better
    slack: float
    relative: bool

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
        rules.append(Rule(raw["files"], raw["key"], direction,
                          float(slack.rstrip("%")) / (100 if relative else 1), relative))
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


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def judge(path: str, key: str, old, new, rules: list[Rule]) -> dict:
    rule = next((r for r in rules if r.matches(path, key)), None)
    row = {"metric": f"{path}:{key}", "baseline": old, "now": new, "change": None, "allowed": "", "verdict": "ok"}
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
    if worse_by > rule.allowed(old) + 1e-12:
        row["verdict"] = "REGRESSION"
    return row


def evaluate_gate(diff: dict, rules: list[Rule]) -> list[dict]:
    return [judge(path, key, old, new, rules)
            for path, keys in sorted(diff.items()) for key, (old, new) in sorted(keys.items())]


def fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def render(rows: list[dict], against: str, show_all: bool = False) -> str:
    shown = [r for r in rows if show_all or r["verdict"] != "ok (no rule)"]
    header = ("metric", "baseline", "now", "change", "allowed", "verdict")
    table = [header] + [(r["metric"], fmt(r["baseline"]), fmt(r["now"]),
                         "-" if r["change"] is None else f"{r['change']:+.4f}", r["allowed"] or "-", r["verdict"])
                        for r in shown]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [f"metrics gate against {against}"]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    bad = [r for r in rows if r["verdict"].startswith("REGRESSION")]
    lines.append(f"{len(bad)} regression(s) in {len(rows)} metrics" + (": " + ", ".join(r["metric"] for r in bad)
                                                                        if bad else ""))
    return "\n".join(lines)


def run_gate(against: str = "HEAD", rules_file: Path | str = RULES_FILE, show_all: bool = False,
             cwd=".") -> int:
    rows = evaluate_gate(metrics_diff(against, cwd), load_rules(Path(cwd) / rules_file))
    print(render(rows, against, show_all))
    return 1 if any(r["verdict"].startswith("REGRESSION") for r in rows) else 0
