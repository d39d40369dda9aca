"""How much do the published numbers move when nothing real changed? Reruns the default pipeline in
fresh clones of the current commit with other training seeds, and with another thread count
(2 per training fold instead of 1, one fold at a time so that its threads have the cores to
themselves, and 1 for evaluation instead of 2: float results change the way they do on another
CPU), and prints each metric's spread against the
committed metrics, the paired McNemar p-values, the best model each run picks, and what the metrics
gate says about each rerun. With --write, it records each gated metric's standard deviation over the
committed run and the variants in reports/spread.json, which the gate's spread rule reads.

    python bench/seed_spread.py [--variants seed43 ...] [--keep DIR] [--write reports/spread.json]
    python bench/seed_spread.py --models efficientnet_b0 --write reports/spread.json  # one recipe changed

With --models, each clone reruns only those models' stages and the review queue (it follows the best
model, which may be one of them), and --write replaces only their entries in the spread file (and the
queue's where every run's best model is one of them): the other models' runs are unchanged by a
change to these models' recipes (same params, same code, same bytes), so their recorded values
still stand.

By default 7 variants: with the committed run, 8 runs (the gate's family-wise k needs their number).

Data stages come from DVC's run cache (the clones share this repo's cache); training reruns, so
each variant costs about one default `dvc repro` of the training stages. Commit first: the clones
are of HEAD. With --keep, an interrupted run carries on where it stopped, and variants can run in
parallel processes (each its own --variants) before one last run prints the comparison.
"""
import argparse
import itertools
import json
import math
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from fashionclf.ci.gate import family_k, load_gate_config
from fashionclf.ci.platform import fingerprint
from fashionclf.core.preset import set_dotted
from fashionclf.core.stats import mcnemar_exact
from fashionclf.learn.checkpoint import best_model_name

# another float order: 2 threads per fold, one fold at a time (2 workers x 2 threads on 2 cores
# oversubscribe them), and 1 evaluation thread instead of 2, as another CPU sums in another order
FLOAT_ORDER = {"train.threads": 2, "train.fold_workers": 1, "evaluate.threads": 1}
# with the committed run, 8 runs: 4 seeds, each also in the other float order (gate_check uses others)
VARIANTS = {"seed43": {"train.seed": 43}, "seed44": {"train.seed": 44}, "seed46": {"train.seed": 46},
            "threads": FLOAT_ORDER, "seed43-threads": {"train.seed": 43, **FLOAT_ORDER},
            "seed44-threads": {"train.seed": 44, **FLOAT_ORDER}, "seed46-threads": {"train.seed": 46, **FLOAT_ORDER}}
METRICS = [("test_clean", "accuracy"), ("test_clean", "f1"), ("test_clean", "map"), ("test_noise", "accuracy"),
           ("test_noise", "f1"), ("cv", "oof.accuracy"), ("cv", "oof.f1"), ("cv", "oof.log_loss"),
           ("cv", "avg_val_loss")]
REVIEW_METRICS = ["test.precision", "test.coverage"]
PREDICTIONS = {"test_clean": "test_clean", "test_noise": "test_noise", "cv": "oof"}


def sh(cmd, cwd):
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL if cmd[0] == "git" else None)


def clone_and_run(name: str, overrides: dict, root: Path, work: Path, rerun: bool = True,
                  models: list[str] | None = None) -> Path:
    repo = work / name
    if not (repo / ".git").is_dir():  # with --keep, a clone left by an earlier run carries on
        sh(["git", "clone", "-q", str(root), str(repo)], work)
        sh(["dvc", "cache", "dir", "--local", str((root / ".dvc" / "cache").resolve())], repo)
        doc = yaml.safe_load((repo / "params.yaml").read_text())
        for dotted, value in overrides.items():
            set_dotted(doc, dotted, value, "seed_spread")
        (repo / "params.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    if rerun:
        print(f"=== {name}: dvc repro with {overrides}", flush=True)
        if models:
            sh(["dvc", "repro", *[f"{stage}@{m}" for m in models for stage in ("test_clean", "test_noise")]], repo)
            # the review queue follows the best model, which may be one of the rerun models. The seed is
            # every model's param: a plain `dvc repro review` would retrain the other models too, so
            # these two stages run alone, on the other models' committed predictions
            for stage in ("aggregate", "review"):
                sh(["dvc", "repro", "--single-item", stage], repo)
        else:
            sh(["dvc", "repro", "review"], repo)  # the export is not a metric
    return repo


def value(repo: Path, kind: str, model: str, key: str) -> float:
    """A metric of metrics/<kind>/<model>.json, or of metrics/review.json when model is None."""
    node = json.loads((repo / "metrics" / (f"{kind}/{model}.json" if model else f"{kind}.json")).read_text())
    for part in key.split("."):
        node = node[part]
    return node


def correct(repo: Path, kind: str, model: str) -> pd.Series:
    table = pd.read_csv(repo / "plots" / "predictions" / PREDICTIONS[kind] / f"{model}.csv", keep_default_na=False)
    return table["actual"] == table["predicted"]


def queue_rerun(root: Path, runs: dict[str, Path], models: list[str] | None) -> bool:
    """Whether the review queue's spread is measured: always over every model; with --models, when
    every run's best model is one of them (then the queue moved with them alone)."""
    if not models:
        return True
    best = {name: best_model_name(repo / "reports" / "best_model.json")
            for name, repo in {"committed": root, **runs}.items()}
    rerun = {name for name, model in best.items() if model in models}
    if rerun and len(rerun) < len(best):
        raise SystemExit(f"the best model is a rerun model in {sorted(rerun)} only ({best}): "
                         "the review queue's spread needs every model rerun")
    if not rerun:
        print(f"the review queue follows {sorted(set(best.values()))}, not rerun: its spread stays as recorded")
    return bool(rerun)


def write_spread(path: Path, table: pd.DataFrame, runs: list[str], root: Path, measured: Path,
                 partial: bool = False) -> None:
    """{metrics file: {key: {values, sd}}}: the standard deviation of each metric over the runs
    (ddof 1), keyed as `dvc metrics diff` names them, for the gate's spread rule. ``partial``: the
    table holds some models only; the file's other entries stay (its runs must be these runs)."""
    old = json.loads(path.read_text()) if partial else {"metrics": {}, "measured_at": {}}
    if partial and set(old["variants"]) != set(runs):
        raise SystemExit(f"{path} has the runs {list(old['variants'])}, not {runs}: rerun every model")
    metrics = old["metrics"]
    for row in table.to_dict("records"):
        kind_model, key = row["metric"].split(":")
        metrics.setdefault(f"metrics/{kind_model}.json", {})[key] = {
            "values": [round(float(row[r]), 6) for r in runs], "sd": round(float(row["sd"]), 6)}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=measured, capture_output=True,
                            text=True).stdout.strip()  # the clones' commit (with --no-run, maybe not HEAD's)
    models = sorted({m.split(":")[0].split("/")[-1] for m in table["metric"] if "/" in m})
    measured_at = old.get("measured_at", {}) | {m: commit for m in models}
    doc = {"commit": commit, "runs": len(runs), "variants": {r: VARIANTS.get(r, "the committed metrics") for r in runs},
           "measured_at": measured_at, "platform": fingerprint(root / "params.yaml"), "metrics": metrics}
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path}: the spread of {sum(map(len, metrics.values()))} metrics over {len(runs)} runs")


def held_out_gates(table: pd.DataFrame, runs: list[str], root: Path) -> list[dict]:
    """The family-wise false-alarm rate, measured out of sample at no extra cost: every ordered pair of
    runs (baseline a, rerun b) judged as the gate judges a rerun, on the decision metrics, with the sd
    of the other runs only (neither a nor b) and the k for that many runs."""
    rules, settings = load_gate_config(root / "metrics_gate.yaml")
    decisions = []
    for row in table.to_dict("records"):
        kind_model, key = row["metric"].split(":")
        path = f"metrics/{kind_model}.json"
        rule = next((r for r in rules if r.matches(path, key)), None)
        if rule is not None and rule.decision:
            decisions.append((row, rule))
    k = family_k(settings["family_false_alarm"], len(decisions), len(runs) - 2)
    verdicts = []
    for a, b in itertools.permutations(runs, 2):
        others = [r for r in runs if r not in (a, b)]
        failed = []
        for row, rule in decisions:
            sd = max(float(pd.Series([row[r] for r in others]).std(ddof=1)), rule.sd_floor(row[a]))
            worse = row[a] - row[b] if rule.direction == "higher" else row[b] - row[a]
            if worse > k * math.sqrt(2) * sd + 1e-12:
                failed.append(row["metric"])
        verdicts.append({"baseline": a, "rerun": b, "k": round(k, 3), "metrics": len(decisions), "failed": failed})
    return verdicts


def spread_table(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """A spread file's runs as the table held_out_gates reads: after a --models rerun, its models'
    new runs beside the others' recorded ones."""
    doc = json.loads(path.read_text())
    runs = list(doc["variants"])
    rows = [{"metric": f"{file.removeprefix('metrics/').removesuffix('.json')}:{key}",
             **dict(zip(runs, entry["values"]))}
            for file, keys in doc["metrics"].items() for key, entry in keys.items()]
    return pd.DataFrame(rows), runs


def print_held_out(table: pd.DataFrame, runs: list[str], root: Path) -> None:
    held_out = held_out_gates(table, runs, root)
    failing = [v for v in held_out if v["failed"]]
    print(f"\nheld-out gates: {len(held_out) - len(failing)}/{len(held_out)} ordered pairs of runs pass on "
          f"{held_out[0]['metrics']} decision metrics (sd of the other {len(runs) - 2} runs, "
          f"k = {held_out[0]['k']}); failing: {[(v['baseline'], v['rerun'], v['failed']) for v in failing]}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--write", help="record the per-model, per-metric spread here (reports/spread.json)")
    parser.add_argument("--keep", help="folder for the clones (default: a temporary one, removed)")
    parser.add_argument("--models", nargs="+", help="compare only these (default: every model)")
    parser.add_argument("--no-run", action="store_true", help="compare the clones in --keep as they are")
    args = parser.parse_args()
    root = Path.cwd()
    models = args.models or list(yaml.safe_load((root / "params.yaml").read_text())["train"]["models"])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        runs = {name: clone_and_run(name, VARIANTS[name], root, work, not args.no_run, args.models)
                for name in args.variants}
        rows = []
        for kind, key in METRICS:
            for model in models:
                base = value(root, kind, model, key)
                row = {"metric": f"{kind}/{model}:{key}", "committed": base}
                for name, repo in runs.items():
                    row[name] = value(repo, kind, model, key)
                    if key != "avg_val_loss" and "loss" not in key and key != "map":
                        row[f"p {name}"] = mcnemar_exact(correct(root, kind, model), correct(repo, kind, model))["p_value"]
                row["max |change|"] = max(abs(row[n] - base) for n in runs)
                rows.append(row)
        # the best model's review queue: its spread is measured only where each run's best model was rerun
        # (with --models, a queue that follows a model that was not rerun keeps the file's entries)
        for key in REVIEW_METRICS if queue_rerun(root, runs, args.models) else []:
            row = {"metric": f"review:{key}", "committed": value(root, "review", None, key)}
            row |= {name: value(repo, "review", None, key) for name, repo in runs.items()}
            row["max |change|"] = max(abs(row[n] - row["committed"]) for n in runs)
            rows.append(row)
        table = pd.DataFrame(rows)
        table["sd"] = table[["committed", *runs]].std(axis=1, ddof=1)
        print(table.to_markdown(index=False, floatfmt=".4f"))
        if args.write:
            write_spread(Path(args.write), table, ["committed", *runs], root, next(iter(runs.values())),
                         partial=bool(args.models))
        # the held-out gates need every model: with --models, from the file written (the rerun models'
        # runs beside the others' recorded ones)
        held = None if args.models else (table, ["committed", *runs])
        if args.write:
            held = spread_table(Path(args.write))
        if held and len(held[1]) >= 5:  # the other runs of a pair must give an sd (3 at least)
            print_held_out(*held, root)
        print("\nlargest change per metric kind (absolute; losses also as % of the committed value):")
        for kind, key in METRICS:
            part = table[table["metric"].str.startswith(f"{kind}/") & table["metric"].str.endswith(f":{key}")]
            rel = (part["max |change|"] / part["committed"].abs()).max()
            print(f"  {kind}:{key}: {part['max |change|'].max():.4f}" + (f" ({rel:.1%})" if "loss" in key else ""))
        if args.models:  # a partial rerun: its summary and gate would mix in the committed models
            return
        print("\nbest model:", {"committed": json.loads((root / "metrics/summary.json").read_text())["best_model"]}
              | {n: json.loads((r / "metrics/summary.json").read_text())["best_model"] for n, r in runs.items()})
        for name, repo in runs.items():
            gate = subprocess.run(["python", "-m", "fashionclf", "gate", "--against", "HEAD"], cwd=repo,
                                  capture_output=True, text=True)
            print(f"gate, {name} rerun against the committed metrics: exit {gate.returncode}: "
                  f"{gate.stdout.strip().splitlines()[-1]}")


if __name__ == "__main__":
    main()
