"""A shop's protocol on any two photo folders: `fashionclf init SHOP_DIR` in a clone of this project,
`dvc repro`, then `fashionclf predict UNSEEN_DIR --target-precision 0.99` on photos the pipeline never
saw. Both folders hold one sub-folder per category; the sub-folder is the true label of an unseen
photo. Prints accuracy, macro F1, and the review queue's coverage and precision at the target, overall
and per category (95% Wilson intervals), plus the repro time at the reference speed.

    python bench/real_photos.py SHOP_DIR UNSEEN_DIR --work DIR [--budget-minutes 15] [--backbone auto]
                                [--set key=value ...] [--corrections CSV]

--set overrides a dotted params key after init (for example train.folds=3), to measure a plan
against init's own. It prints the calibration photos the label audit suspects (reports/review.md).
--corrections takes a reviewer's verdict on them (path,category, as data/corrections.csv) and
labels the unseen photos again against the corrected calibration split: no model changes, as no
fold trains on that split. The clone is of HEAD: commit first.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml
from sklearn.metrics import accuracy_score, f1_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fashionclf.core.params import DROP, NEEDS_REVIEW  # noqa: E402
from fashionclf.data.label import read_corrections  # noqa: E402
from fashionclf.core.preset import set_dotted  # noqa: E402
from fashionclf.report.review import share as share_with_interval  # noqa: E402
from fashionclf.learn.timing import REFERENCE_SPEED  # noqa: E402
from fashionclf.serve.init import category_name  # noqa: E402


def sh(cmd, cwd):
    print("$", " ".join(map(str, cmd)), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


def ref_speed() -> float:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "ref_speed.py")], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.split()[-1])


def timed_repro(project: Path) -> dict[str, float]:
    """`dvc repro --force`, its output passed through; the seconds of each stage, from one
    'Running stage' line to the next."""
    print("$ dvc repro --force", flush=True)
    proc = subprocess.Popen(["dvc", "repro", "--force"], cwd=project, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    stages, current, since = {}, None, time.perf_counter()
    for line in proc.stdout:
        print(line, end="", flush=True)
        if line.startswith("Running stage '"):
            now = time.perf_counter()
            if current:
                stages[current] = now - since
            current, since = line.split("'")[1], now
    if proc.wait() != 0:
        raise subprocess.CalledProcessError(proc.returncode, "dvc repro --force")
    if current:
        stages[current] = time.perf_counter() - since
    return stages


def share(hits: int, n: int) -> str:
    """'97.1 (95.0–98.3)': a percentage and its 95% Wilson interval (the review report's)."""
    value, interval = share_with_interval(hits, n)
    return "–" if value is None else f"{100 * value:.1f} ({100 * interval[0]:.1f}–{100 * interval[1]:.1f})"


def scores(table: pd.DataFrame) -> tuple[dict, list[str]]:
    """Overall numbers and a per-category markdown table for predict's CSV of labelled folders."""
    actual = table["path"].map(lambda p: category_name(Path(p).parent.name))
    predicted = table[[c for c in table.columns if c.startswith("p_")]].idxmax(axis=1).str[2:]
    automatic = table["category"] != NEEDS_REVIEW
    right = automatic & (table["category"] == actual)
    overall = {"photos": len(table), "accuracy": accuracy_score(actual, predicted),
               "macro_f1": f1_score(actual, predicted, average="macro"),
               "coverage": share(int(automatic.sum()), len(table)),
               "precision": share(int(right.sum()), int(automatic.sum()))}
    rows = ["| category | photos | accuracy % | labelled automatically % | precision of its automatic labels % |",
            "|---|---|---|---|---|"]
    for category in sorted(set(actual)):
        mine = actual == category
        labelled_as = automatic & (table["category"] == category)
        rows.append(f"| {category} | {int(mine.sum())} | {share(int((predicted[mine] == category).sum()), int(mine.sum()))} "
                    f"| {share(int(automatic[mine].sum()), int(mine.sum()))} "
                    f"| {share(int(right[labelled_as].sum()), int(labelled_as.sum()))} |")
    return overall, rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shop", type=Path)
    parser.add_argument("unseen", type=Path)
    parser.add_argument("--work", type=Path, required=True, help="an empty folder for the project clone")
    parser.add_argument("--budget-minutes", type=float, default=15.0)
    parser.add_argument("--backbone", default="auto", help="init's --backbone (default auto)")
    parser.add_argument("--target-precision", type=float, default=0.99)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a dotted params key after init (YAML value)")
    parser.add_argument("--corrections", type=Path, help="a reviewer's calibration labels (path,category)")
    args = parser.parse_args()
    project = args.work / "project"
    args.work.mkdir(parents=True, exist_ok=True)
    sh(["git", "clone", "-q", str(ROOT), str(project)], args.work)
    sh([sys.executable, "-m", "fashionclf", "init", str(args.shop.resolve()), "--budget-minutes",
        str(args.budget_minutes), "--backbone", args.backbone], project)
    if args.set:
        doc = yaml.safe_load((project / "params.yaml").read_text())
        for item in args.set:
            key, value = item.split("=", 1)
            set_dotted(doc, key, yaml.safe_load(value), "--set")
        (project / "params.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    before = ref_speed()
    start = time.perf_counter()
    stages = timed_repro(project)
    took = time.perf_counter() - start
    speed = (before + ref_speed()) / 2
    out = args.work / "unseen.csv"
    sh([sys.executable, "-m", "fashionclf", "predict", str(args.unseen.resolve()), "--out", str(out),
        "--target-precision", str(args.target_precision)], project)
    overall, rows = scores(pd.read_csv(out, keep_default_na=False))
    print(f"\nshop {args.shop} ({sum(1 for p in args.shop.rglob('*') if p.is_file())} photos), "
          f"unseen {args.unseen} ({overall['photos']} photos); overrides: {args.set or 'none'}")
    print(f"dvc repro: {took:.0f} s here at {speed:.0f} img/s = {took * speed / REFERENCE_SPEED:.0f} s at "
          f"{REFERENCE_SPEED} img/s (budget {args.budget_minutes * 60:.0f} s)")
    print(f"unseen photos: accuracy {overall['accuracy']:.4f}, macro F1 {overall['macro_f1']:.4f}; at target "
          f"precision {args.target_precision:g}: labelled automatically {overall['coverage']} %, precision "
          f"{overall['precision']} % (95% CI)")
    print("\n".join(rows))
    audit(project)
    if args.corrections:
        corrected = corrected_calibration(project, args.corrections, args.work)
        again = args.work / "unseen_corrected.csv"
        sh([sys.executable, "-m", "fashionclf", "predict", str(args.unseen.resolve()), "--out", str(again),
            "--target-precision", str(args.target_precision), "--calibration", str(corrected)], project)
        fixed, rows = scores(pd.read_csv(again, keep_default_na=False))
        print(f"with the calibration labels of {args.corrections}: labelled automatically {fixed['coverage']} %, "
              f"precision {fixed['precision']} %")
        print("\n".join(rows))
    print("\nstage times at the reference speed (where init's time model is right or wrong):")
    print(", ".join(f"{name} {seconds * speed / REFERENCE_SPEED:.0f} s" for name, seconds in stages.items()))
    print(f"\nparams chosen by init:\n{(project / 'params.yaml').read_text().split(chr(10) + 'fetch:')[0]}")


def audit(project: Path) -> None:
    """The calibration photos the review stage suspects of a wrong label, for a reviewer to look at."""
    suspects = pd.read_csv(project / "data" / "suspect_labels.csv", keep_default_na=False)
    calibration = suspects[suspects["split"] == "calibration"]
    review = json.loads((project / "metrics" / "review.json").read_text())["calibration_suspects"]
    queue = review["test"] or {}
    precision = "–" if queue.get("precision") is None else f"{100 * queue['precision']:.1f}"  # none labelled
    print(f"\nlabel audit: {len(calibration)} calibration photos suspected mislabelled" + (
        f"; were all as suggested, the test split's queue: {100 * queue['coverage']:.1f} % at "
        f"{precision} % precision" if queue else ""))
    for row in calibration.itertuples():
        print(f"  {row.path}: given {row.given}, suggested {row.category} (label quality {row.label_quality:g})")


def corrected_calibration(project: Path, corrections: Path, work: Path) -> Path:
    """The best model's calibration predictions with the reviewer's labels."""
    best = json.loads((project / "reports" / "best_model.json").read_text())["best_model"]
    table = pd.read_csv(project / "plots" / "predictions" / "calibration" / f"{best}.csv", keep_default_na=False)
    verdict = read_corrections(corrections, sorted(table["actual"].unique()))
    unknown = set(verdict) - set(table["path"])
    if unknown:
        raise SystemExit(f"error: {corrections}: not calibration photos: {sorted(unknown)}")
    table["actual"] = [verdict.get(path, actual) for path, actual in zip(table["path"], table["actual"])]
    table = table[table["actual"] != DROP]
    out = work / "calibration_corrected.csv"
    table.to_csv(out, index=False)
    return out


if __name__ == "__main__":
    main()
