"""Which epoch should a fold keep? Reads the per-epoch validation curves (plots/train/MODEL/.../foldK)
of several runs of the pipeline, such as the clones `bench/gate_check.py --keep DIR` or
`bench/seed_spread.py --keep DIR` leaves, and prints per model the out-of-fold accuracy (the folds'
mean) each rule would have kept, its mean and sd over the runs, and how often the lowest validation
loss is not the last epoch. The rules: the lowest validation loss, the highest validation accuracy
(ties: the lower loss), the last epoch. No training: the curves hold every epoch's validation scores.

    python bench/epoch_selection.py /work/gate_runs/rebuild[0-6] .
"""
import argparse
import csv
import statistics
from pathlib import Path

from fashionclf.learn.train import improves, new_fold_state


def kept_by(keep_epoch: str):
    """The epoch train_fold keeps under train.keep_epoch, replayed on a fold's curves with its own rule."""
    def pick(acc: list[float], loss: list[float]) -> int:
        state, kept = new_fold_state(), 0
        for epoch, (val_acc, val_loss) in enumerate(zip(acc, loss)):
            if improves(state, val_loss, val_acc, keep_epoch):
                state.update(best_loss=val_loss, best_accuracy=val_acc)
                kept = epoch
        return kept
    return pick


RULES = {"val_loss": kept_by("val_loss"), "val_accuracy": kept_by("val_accuracy"),
         "last": lambda acc, loss: len(acc) - 1}


def curve(path: Path) -> list[float]:
    with path.open() as f:
        rows = csv.reader(f, delimiter="\t")
        next(rows)
        return [float(row[1]) for row in rows]


def fold_curves(run: Path, model: str):
    folds = sorted((run / "plots/train" / model / "plots/metrics").glob("fold*"))
    return [(curve(d / "val_accuracy.tsv"), curve(d / "val_loss.tsv")) for d in folds]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="pipeline checkouts that ran cv_train")
    args = parser.parse_args()
    models = sorted(p.name for p in (args.runs[0] / "plots/train").iterdir())
    print(f"{len(args.runs)} runs; out-of-fold accuracy % (mean of folds): mean, sd over runs")
    for model in models:
        per_rule = {rule: [] for rule in RULES}
        earlier = total = 0
        for run in args.runs:
            folds = fold_curves(run, model)
            for rule, pick in RULES.items():
                per_rule[rule].append(100 * statistics.mean(acc[pick(acc, loss)] for acc, loss in folds))
            earlier += sum(RULES["val_loss"](acc, loss) != len(acc) - 1 for acc, loss in folds)
            total += len(folds)
        cells = "; ".join(f"{rule} {statistics.mean(v):.2f}, sd {statistics.stdev(v):.2f}"
                          for rule, v in per_rule.items())
        print(f"{model:18s} lowest loss before the last epoch in {earlier}/{total} folds; {cells}")


if __name__ == "__main__":
    main()
