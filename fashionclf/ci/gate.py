"""Metrics gate: compare workspace metrics with a git revision and fail on real regressions only.

DVC reads both sides (``dvc metrics diff --all --json``); metrics_gate.yaml says, per metric (file
glob + key), which direction is better. Which question the gate asks depends on the models behind
the metric:

- **paired** (the same trained models: the fold checkpoints' hash in dvc.lock equals the
  baseline's, as after an evaluation-only change): a drop beyond the rule's slack fails if it is
  significant on the paired per-image predictions of the two revisions (exact McNemar test for
  accuracy-like metrics, paired t-test of the per-image log loss). Same models, so a significant
  difference can only come from the code that evaluates them.
- **spread** (retrained models: another seed, thread count, CPU, or a training change): a paired
  test would ask "is this a different model?", and it always is. The drop is judged against the
  measured spread of that model's metric across seeds and float orders (reports/spread.json, from
  bench/seed_spread.py): it fails beyond ``k`` standard deviations of the difference of two runs,
  ``k * sqrt(2) * sd``, with sd floored (a handful of runs can under-estimate it). Only the
  decision metrics are judged this way; the others are reported beside them. ``k`` holds the
  family-wise false-alarm rate: with m decision metrics judged by spread and sd from n runs, a
  rerun of unchanged code fails any of them with probability at most ``family_false_alarm``
  (Bonferroni over m, Student's t with n - 1 degrees of freedom).
- **slack**: neither applies (no models behind the metric, no spread measured for it, or no
  predictions to pair): the slack alone decides.
"""
from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from ..core.errors import ParamError
from .revisions import PairedPredictions, TrainedModels, metrics_diff

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
    models: str | None = None       # the dvc.lock output that trained the metric, "{name}" = its stem
    floor: float = 0.0              # the smallest sd the spread rule uses (relative if ``relative``)
    decision: bool = True           # False: retrained, it is reported beside the decision metrics, never fails

    def matches(self, path: str, key: str) -> bool:
        return fnmatch.fnmatch(path, self.files) and (key == self.key or fnmatch.fnmatch(key, self.key))

    def allowed(self, baseline: float) -> float:
        return abs(baseline) * self.slack if self.relative else self.slack

    def describe(self) -> str:
        sign = "-" if self.direction == "higher" else "+"
        return f"{sign}{self.slack:.0%}" if self.relative else f"{sign}{self.slack:g}"

    def sd_floor(self, baseline: float) -> float:
        return abs(baseline) * self.floor if self.relative else self.floor


@dataclass(frozen=True)
class Spread:
    """Measured run-to-run standard deviations: {metric file: {key: sd}}, the number of runs they
    come from, and the k of the rule."""
    sd: dict
    k: float
    source: str = ""
    runs: int = 0

    def of(self, path: str, key: str) -> float | None:
        value = self.sd.get(path, {}).get(key)
        return None if value is None or not is_number(value) or math.isnan(value) else float(value)


def load_spread(path: Path | str) -> Spread | None:
    """The spread file, with k still to be set for the family it judges (``family_k``)."""
    path = Path(path)
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    return Spread({f: {key: v["sd"] for key, v in keys.items()} for f, keys in doc["metrics"].items()}, math.nan,
                  f"{path} ({doc.get('runs', '?')} runs at {doc.get('commit', '?')})", int(doc.get("runs", 0)))


def family_k(false_alarm: float, metrics: int, runs: int) -> float:
    """The k for which m metrics judged by ``drop > k * sqrt(2) * sd`` fail together at most at rate
    ``false_alarm`` on unchanged code: under the null the difference of two runs over sqrt(2) sd
    (sd from ``runs`` runs) is Student-t with runs - 1 degrees of freedom; Bonferroni over m, one-sided.
    Bonferroni holds whatever the metrics' correlation (accuracy and F1 of one model move together),
    so the rate is at most this."""
    from scipy.stats import t
    if runs < 3:
        raise ValueError(f"a spread from {runs} runs cannot set the gate (at least 3)")
    return float(t.ppf(1 - false_alarm / max(metrics, 1), df=runs - 1))


def load_gate_config(path: Path | str = RULES_FILE) -> tuple[list[Rule], dict]:
    """(rules, settings); settings: ``spread`` (the spread file) and ``family_false_alarm``."""
    doc = yaml.safe_load(Path(path).read_text()) or {}
    settings = {"spread": doc.get("spread"), "family_false_alarm": float(doc.get("family_false_alarm", 0.05))}
    rules = []
    for i, raw in enumerate(doc.get("rules", [])):
        direction = raw.get("better")
        if direction not in ("higher", "lower"):
            raise ValueError(f"{path}: rules[{i}].better must be 'higher' or 'lower', got {direction!r}")
        slack = str(raw.get("slack", 0))
        relative = slack.endswith("%")
        scale = 100 if relative else 1
        floor = float(str(raw.get("floor", 0)).rstrip("%")) / scale
        rules.append(Rule(raw["files"], raw["key"], direction, float(slack.rstrip("%")) / scale,
                          relative, raw.get("predictions"), raw.get("test", "mcnemar"), raw.get("models"), floor,
                          bool(raw.get("decision", True))))
    return rules, settings


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def judge(path: str, key: str, old, new, rules: list[Rule], paired: PairedPredictions | None = None,
          spread: Spread | None = None, trained: TrainedModels | None = None, undefined_now: bool = False) -> dict:
    """One metric's row. ``undefined_now``: the metric file still has the key, as null (a ratio with
    nothing to count, such as the precision of a category the review queue labelled no image as)."""
    rule = next((r for r in rules if r.matches(path, key)), None)
    row = {"metric": f"{path}:{key}", "baseline": old, "now": new, "change": None, "rule": "", "allowed": "",
           "p": None, "verdict": "ok"}
    if old is None:
        row["verdict"] = "new" if new is not None else "ok"
        return row
    if new is None:
        judged = rule is not None and rule.decision
        row["verdict"] = "undefined now (not judged)" if undefined_now and not judged else "REGRESSION (disappeared)"
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
    worse_by = (old - new) if rule.direction == "higher" else (new - old)
    name = Path(path).stem
    sd = spread_sd(path, key, rule, spread, trained)
    retrained = sd is not None or retrained_behind(path, rule, trained)
    if sd is not None:
        row["rule"] = "spread" if rule.decision else "reported"
        allowed = spread.k * math.sqrt(2) * max(sd, rule.sd_floor(old))
        row["allowed"] = f"{'-' if rule.direction == 'higher' else '+'}{allowed:.4g}"
        beyond = worse_by > allowed + 1e-12
        row["verdict"] = ("REGRESSION" if rule.decision else "beyond (not judged)") if beyond else "ok"
        return row
    row["rule"] = "paired" if rule.predictions and paired is not None and not retrained else "slack"
    row["allowed"] = rule.describe()
    if worse_by <= rule.allowed(old) + 1e-12:
        return row
    if row["rule"] == "paired":
        row["p"] = paired.p_value(rule.predictions.format(name=name), rule.test)
        row["rule"] = "paired" if row["p"] is not None else "slack"  # nothing to pair with
    if row["p"] is not None and row["p"] >= SIGNIFICANCE:
        row["verdict"] = "ok (not significant)"
    else:
        row["verdict"] = "REGRESSION"
    return row


def retrained_behind(path: str, rule: Rule, trained: TrainedModels | None) -> bool:
    return (rule.models is not None and trained is not None
            and not trained.same(rule.models.format(name=Path(path).stem)))


def spread_sd(path: str, key: str, rule: Rule, spread: Spread | None, trained: TrainedModels | None) -> float | None:
    """The measured sd that judges this metric, or None where the spread rule does not apply."""
    if spread is None or not retrained_behind(path, rule, trained):
        return None
    return spread.of(path, key)


def judged_by_spread(diff: dict, rules: list[Rule], spread: Spread | None, trained: TrainedModels | None) -> int:
    """How many decision metrics of this diff the spread rule judges: the family k must hold."""
    count = 0
    for path, keys in diff.items():
        for key, (old, new) in keys.items():
            rule = next((r for r in rules if r.matches(path, key)), None)
            count += bool(rule and rule.decision and is_number(old) and is_number(new)
                          and spread_sd(path, key, rule, spread, trained) is not None)
    return count


def evaluate_gate(diff: dict, rules: list[Rule], paired: PairedPredictions | None = None,
                  spread: Spread | None = None, trained: TrainedModels | None = None,
                  undefined: set = frozenset()) -> list[dict]:
    return [judge(path, key, old, new, rules, paired, spread, trained, (path, key) in undefined)
            for path, keys in sorted(diff.items()) for key, (old, new) in sorted(keys.items())]


def undefined_metrics(diff: dict, cwd=".") -> set[tuple[str, str]]:
    """The (file, key) pairs that the diff shows as gone but whose workspace file holds as null."""
    found = set()
    for path, keys in diff.items():
        gone = [key for key, (old, new) in keys.items() if old is not None and new is None]
        if not gone or not (Path(cwd) / path).is_file():
            continue
        content = json.loads((Path(cwd) / path).read_text())
        for key in gone:
            value, present = content, True
            for part in key.split("."):
                present = isinstance(value, dict) and part in value
                value = value[part] if present else None
                if not present:
                    break
            if present and value is None:
                found.add((path, key))
    return found


def fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def render(rows: list[dict], against: str, show_all: bool = False, spread: Spread | None = None,
           spread_note: str = "") -> str:
    shown = [r for r in rows if show_all or r["verdict"] != "ok (no rule)"]
    header = ("metric", "baseline", "now", "change", "rule", "allowed", "p (paired)", "verdict")
    table = [header] + [(r["metric"], fmt(r["baseline"]), fmt(r["now"]),
                         "-" if r["change"] is None else f"{r['change']:+.4f}", r["rule"] or "-", r["allowed"] or "-",
                         "-" if r["p"] is None else f"{r['p']:.3g}", r["verdict"]) for r in shown]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    judging = spread is not None and not math.isnan(spread.k)  # k is set only where a metric needs it
    k = f"{spread.k:.3g}" if judging else "k"
    if spread is None:
        source = " (no spread file)"
    elif judging:
        source = f" (sd from {spread.source}; k holds the family-wise false-alarm rate at {spread_note})"
    else:
        source = f" (sd from {spread.source}; no model was retrained, so no metric is judged by it)"
    lines = [f"metrics gate against {against}. Rules: paired = same trained models, a drop beyond the slack fails "
             f"if significant on the paired predictions (p < {SIGNIFICANCE}); spread = retrained models, a drop "
             f"of a decision metric beyond {k} x sqrt(2) x the measured run-to-run sd fails" + source
             + "; reported = retrained, not a decision metric: shown against the same allowance, never fails"
             + "; slack = neither applies, the slack decides"]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    bad = [r for r in rows if r["verdict"].startswith("REGRESSION")]
    lines.append(f"{len(bad)} regression(s) in {len(rows)} metrics" + (": " + ", ".join(r["metric"] for r in bad)
                                                                        if bad else ""))
    return "\n".join(lines)


def run_gate(against: str = "HEAD", rules_file: Path | str = RULES_FILE, show_all: bool = False,
             cwd=".") -> int:
    if not (Path(cwd) / rules_file).is_file():
        raise ParamError(f"gate: no {rules_file} here: run it in the project's root, or name the rules with --rules")
    rules, settings = load_gate_config(Path(cwd) / rules_file)
    spread = load_spread(Path(cwd) / settings["spread"]) if settings["spread"] else None
    diff, trained = metrics_diff(against, cwd), TrainedModels(against, cwd)
    note = ""
    if spread is not None:
        family = judged_by_spread(diff, rules, spread, trained)
        alarm = settings["family_false_alarm"]
        if family:  # only a spread that judges something needs its runs' count
            spread = replace(spread, k=family_k(alarm, family, spread.runs))
        note = f"{alarm:g} over {family} decision metrics"
    rows = evaluate_gate(diff, rules, PairedPredictions(against, cwd), spread, trained, undefined_metrics(diff, cwd))
    print(render(rows, against, show_all, spread, note))
    return 1 if any(r["verdict"].startswith("REGRESSION") for r in rows) else 0


def add_arguments(parser) -> None:
    parser.add_argument("--against", default="HEAD", help="git revision holding the baseline metrics")
    parser.add_argument("--rules", default=str(RULES_FILE))
    parser.add_argument("--all", action="store_true", help="also list metrics without a rule")


def run(args) -> int:
    return run_gate(args.against, args.rules, args.all)
