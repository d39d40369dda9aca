"""Does the metrics gate tell "another machine" from "worse code"? Proves it without a second CPU.

In a fresh clone of HEAD (sharing this repo's DVC cache, so the data stages come from the run cache):
1. rebuild the default pipeline with unchanged code `--runs` times (default 8), each with another
   training seed and float order than the committed run and than the spread's runs
   (bench/seed_spread.py): seeds 50, 51, ..., alternately with the default threads and with 2 threads
   per training fold (one fold at a time) and 1 for evaluation, as another CPU sums in another order.
   Each is gated against HEAD: every one must pass;
2. then plant a real regression of about 1.5 points on top of the last (resnet18 one epoch instead of
   two, at a fortieth of its learning rate),
   rerun (only resnet18's stages and what follows them rerun), print what it cost against the
   committed metrics, and gate again: it must fail.

    python bench/gate_check.py [--runs 8] [--keep DIR] [--spread reports/spread.json]

Exits 0 when every verdict is as expected. Commit first: the clone is of HEAD. With --keep, an
interrupted run carries on where it stopped (each rebuild is a clone in DIR, kept when finished).
"""
import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

from fashionclf.core.preset import set_dotted

REGRESSED_MODEL = "resnet18"
# one epoch at a fraction of the rate, the whole pipeline on the AMD EPYC (docs/noise-and-gate.md):
# a twentieth -0.17 points of clean accuracy (one Xeon fold had lost 1.6), a fortieth -1.87, a hundredth -7.13
LR_FACTOR = 0.025
PLANTED_EPOCHS = 1
FIRST_SEED = 50  # the spread's runs use seeds 42-46
DEFAULT_ORDER = {"train.threads": 1, "train.fold_workers": 2, "evaluate.threads": 2}
OTHER_ORDER = {"train.threads": 2, "train.fold_workers": 1, "evaluate.threads": 1}


def sh(cmd, cwd, **kwargs):
    return subprocess.run(cmd, cwd=cwd, check=True, **kwargs)


def set_params(repo: Path, overrides: dict) -> None:
    doc = yaml.safe_load((repo / "params.yaml").read_text())
    for dotted, value in overrides.items():
        set_dotted(doc, dotted, value, "gate_check")
    (repo / "params.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def repro(repo: Path, label: str) -> float:
    print(f"=== {label}: dvc repro review", flush=True)
    start = time.perf_counter()
    sh(["dvc", "repro", "review"], repo)  # the export is not a metric
    return time.perf_counter() - start


def gate(repo: Path, label: str, spread: Path | None = None) -> tuple[int, str]:
    if spread is not None:  # judge by this spread file instead of the one committed at HEAD
        while not spread.is_file():  # bench/seed_spread.py --write may still be measuring it
            time.sleep(10)
        shutil.copy(spread, repo / "reports" / "spread.json")
    result = subprocess.run([sys.executable, "-m", "fashionclf", "gate", "--against", "HEAD"], cwd=repo,
                            capture_output=True, text=True)
    out = result.stdout + result.stderr
    rows = [line for line in out.splitlines() if line.startswith("metrics/")]
    rules = Counter(next((w for w in line.split() if w in ("paired", "spread", "reported", "slack")), "none")
                    for line in rows)
    print(f"\n--- gate, {label}: exit {result.returncode}; rows judged by rule: {dict(rules)}")
    shown = [line for line in rows if "REGRESSION" in line or "beyond" in line
             or f"/{REGRESSED_MODEL}.json" in line and "metrics/review" not in line]
    header = next((line for line in out.splitlines() if line.startswith("metric ")), "")
    print("\n".join([header, *shown]))
    print(out.strip().splitlines()[-1])
    return result.returncode, out


def accuracy(repo: Path, model: str) -> float:
    return json.loads((repo / "metrics" / "test_clean" / f"{model}.json").read_text())["accuracy"]


def models_spread(repos: list[Path], head: Path) -> None:
    """The rebuilds are also a spread on this CPU: per model, clean test and out-of-fold accuracy
    over the rebuilds with the default threads (seed sd) and over all of them, beside HEAD's."""
    def read(repo: Path, model: str) -> tuple[float, float]:
        clean = accuracy(repo, model)
        oof = json.loads((repo / "metrics" / "cv" / f"{model}.json").read_text())["oof"]["accuracy"]
        return 100 * clean, 100 * oof

    def sd(values: list[float]) -> str:
        return f"{statistics.stdev(values):.2f}" if len(values) > 1 else "-"

    models = yaml.safe_load((head / "params.yaml").read_text())["train"]["models"]
    print("\n| model | HEAD clean % | rebuilds' clean % mean (min-max) | seed sd, default threads | sd, all |"
          " HEAD out-of-fold % | rebuilds' out-of-fold % mean | seed sd | sd, all |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model in models:
        committed = read(head, model)
        runs = [read(repo, model) for repo in repos]
        default = runs[::2]  # rebuilds() alternates: default threads first
        clean, oof = [r[0] for r in runs], [r[1] for r in runs]
        print(f"| {model} | {committed[0]:.2f} | {statistics.mean(clean):.2f} ({min(clean):.2f}-{max(clean):.2f}) | "
              f"{sd([r[0] for r in default])} | {sd(clean)} | {committed[1]:.2f} | {statistics.mean(oof):.2f} | "
              f"{sd([r[1] for r in default])} | {sd(oof)} |")


def rebuilds(runs: int) -> list[dict]:
    return [{"train.seed": FIRST_SEED + i, **(DEFAULT_ORDER if i % 2 == 0 else OTHER_ORDER)} for i in range(runs)]


def clone(root: Path, work: Path, name: str) -> Path:
    repo = work / name
    if not (repo / ".git").is_dir():
        repo.parent.mkdir(parents=True, exist_ok=True)
        sh(["git", "clone", "-q", str(root), str(repo)], root)
        sh(["dvc", "cache", "dir", "--local", str((root / ".dvc" / "cache").resolve())], repo)
    return repo


def unchanged_code(root: Path, work: Path, runs: int, spread: Path | None) -> tuple[list[dict], Path]:
    """Rebuild each run in its own clone, then gate them all (so the gate can wait for a spread file
    still being measured); every rebuild and verdict is kept under work/ as it comes."""
    repos = []
    for i, overrides in enumerate(rebuilds(runs)):
        repo = clone(root, work, f"rebuild{i}")
        done = repo / ".rebuilt"
        if not done.is_file():
            set_params(repo, overrides)
            done.write_text(str(round(repro(repo, f"unchanged code, {overrides}"))))
        repos.append((repo, overrides, int(done.read_text())))
    verdicts = []
    for repo, overrides, took in repos:
        code, out = gate(repo, f"{overrides} (must pass)", spread)
        verdicts.append({"params": overrides, "exit": code, "gate": out.strip().splitlines()[-1],
                         "reported_beyond": len(re.findall(r"beyond \(not judged\)", out)), "seconds": took,
                         "resnet18_accuracy": accuracy(repo, REGRESSED_MODEL)})
    (work / "verdicts.json").write_text(json.dumps(verdicts, indent=1))
    return verdicts, repos[-1][0]


def planted(root: Path, repo: Path, spread: Path | None) -> tuple[bool, float]:
    lr = yaml.safe_load((root / "params.yaml").read_text())["train"]["models"][REGRESSED_MODEL]["lr"]
    set_params(repo, {f"train.models.{REGRESSED_MODEL}.lr": round(lr * LR_FACTOR, 8),
                      f"train.models.{REGRESSED_MODEL}.epochs": PLANTED_EPOCHS})
    repro(repo, f"planted regression: {REGRESSED_MODEL} lr {lr} -> {lr * LR_FACTOR:g}, {PLANTED_EPOCHS} epoch")
    cost = accuracy(root, REGRESSED_MODEL) - accuracy(repo, REGRESSED_MODEL)
    print(f"\nthe planted regression cost {REGRESSED_MODEL} {100 * cost:.2f} points of clean test accuracy "
          f"against HEAD: {accuracy(root, REGRESSED_MODEL):.4f} -> {accuracy(repo, REGRESSED_MODEL):.4f}")
    failed, out = gate(repo, "planted regression (must fail)", spread)
    caught = [m for m in re.findall(r"(metrics/\S+)\s.*REGRESSION", out) if f"/{REGRESSED_MODEL}.json" in m]
    print(f"planted regression {'failed' if failed else 'PASSED'} (expected fail) on {len(caught)} "
          f"{REGRESSED_MODEL} metrics; cost {100 * cost:.2f} points (planted to cost about 1.5)")
    return failed == 1 and bool(caught) and cost > 0, cost


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=8, help="rebuilds of unchanged code (default 8)")
    parser.add_argument("--keep", help="folder for the clone (default: a temporary one, removed)")
    parser.add_argument("--spread", type=Path, help="a spread file to gate with (default: the one at HEAD); "
                        "read when the gate runs, so it may still be being written while this rebuilds")
    parser.add_argument("--no-planted", action="store_true", help="only the rebuilds of unchanged code")
    args = parser.parse_args()
    root = Path.cwd()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    spread = args.spread.resolve() if args.spread else None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        verdicts, repo = unchanged_code(root, work, args.runs, spread)
        print(f"\n| rebuild of {head} | gate exit | gate | reported beyond (not judged) | resnet18 clean accuracy | s |")
        print("|---|---|---|---|---|---|")
        for v in verdicts:
            print(f"| {v['params']} | {v['exit']} | {v['gate']} | {v['reported_beyond']} | "
                  f"{v['resnet18_accuracy']:.4f} | {v['seconds']} |")
        passed = sum(v["exit"] == 0 for v in verdicts)
        print(f"\ngate_check: {passed}/{len(verdicts)} rebuilds of unchanged code passed the gate")
        ok = passed == len(verdicts)
        models_spread([work / f"rebuild{i}" for i in range(args.runs)], root)
        if not args.no_planted:
            caught, _ = planted(root, repo, spread)
            ok = ok and caught
        print(f"gate_check at {head}: {'OK' if ok else 'NOT OK'}")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
