"""How much do the published numbers move when nothing real changed? Reruns the default pipeline in
fresh clones of the current commit with other training seeds, and with another thread count
(2 per training fold instead of 1, 1 for evaluation instead of 2: float results change the way they
do on another CPU), and prints each metric's spread against the
committed metrics, the paired McNemar p-values, the best model each run picks, and what the metrics
gate says about each rerun. The slacks in metrics_gate.yaml are set from this spread.

    python bench/seed_spread.py [--variants seed43 seed44 threads] [--keep DIR]   # default: seed43 threads

Data stages come from DVC's run cache (the clones share this repo's cache); training reruns, so
each variant costs about one default `dvc repro` of the training stages. Commit first: the clones
are of HEAD. With --keep, an interrupted run carries on where it stopped, and variants can run in
parallel processes (each its own --variants) before one last run prints the comparison.
"""
import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from fashionclf.stats import mcnemar_exact

VARIANTS = {"seed43": {"train.seed": 43}, "seed44": {"train.seed": 44},
            "threads": {"train.threads": 2, "evaluate.threads": 1}}
METRICS = [("test_clean", "accuracy"), ("test_clean", "f1"), ("test_clean", "map"), ("test_noise", "accuracy"),
           ("test_noise", "f1"), ("cv", "oof.accuracy"), ("cv", "oof.f1"), ("cv", "oof.log_loss"),
           ("cv", "avg_val_loss")]
PREDICTIONS = {"test_clean": "test_clean", "test_noise": "test_noise", "cv": "oof"}


def sh(cmd, cwd):
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL if cmd[0] == "git" else None)


def clone_and_run(name: str, overrides: dict, root: Path, work: Path, rerun: bool = True) -> Path:
    repo = work / name
    if not (repo / ".git").is_dir():  # with --keep, a clone left by an earlier run carries on
        sh(["git", "clone", "-q", str(root), str(repo)], work)
        sh(["dvc", "cache", "dir", "--local", str((root / ".dvc" / "cache").resolve())], repo)
        doc = yaml.safe_load((repo / "params.yaml").read_text())
        for dotted, value in overrides.items():
            section, key = dotted.split(".")
            doc[section][key] = value
        (repo / "params.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    if rerun:
        print(f"=== {name}: dvc repro with {overrides}", flush=True)
        sh(["dvc", "repro", "aggregate"], repo)  # the export is not a metric
    return repo


def value(repo: Path, kind: str, model: str, key: str) -> float:
    node = json.loads((repo / "metrics" / kind / f"{model}.json").read_text())
    for part in key.split("."):
        node = node[part]
    return node


def correct(repo: Path, kind: str, model: str) -> pd.Series:
    table = pd.read_csv(repo / "plots" / "predictions" / PREDICTIONS[kind] / f"{model}.csv", keep_default_na=False)
    return table["actual"] == table["predicted"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", nargs="+", default=["seed43", "threads"], choices=list(VARIANTS))
    parser.add_argument("--keep", help="folder for the clones (default: a temporary one, removed)")
    parser.add_argument("--models", nargs="+", help="compare only these (default: every model)")
    parser.add_argument("--no-run", action="store_true", help="compare the clones in --keep as they are")
    args = parser.parse_args()
    root = Path.cwd()
    models = args.models or list(yaml.safe_load((root / "params.yaml").read_text())["train"]["models"])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        runs = {name: clone_and_run(name, VARIANTS[name], root, work, not args.no_run) for name in args.variants}
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
        table = pd.DataFrame(rows)
        print(table.to_markdown(index=False, floatfmt=".4f"))
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
