"""Accuracy versus training time: what it would cost each model to reach the accuracy goal.

Trains one fold (80% of the source images of data/augment, grouped, seeded) per model and
configuration with the project's own train_fold, evaluates that single fold model on the held-out
test set (data/balance/test), clean and with Gaussian noise, and prints a table. The pipeline trains
``train.folds`` such folds per model, so its training time is about folds x the one-fold time; the
table scales that to the reference speed (250 img/s of bench/ref_speed.py), measured in
the same run. A fold ensemble is usually a little more accurate than its single folds.
Run after `dvc repro augment`:

    python bench/accuracy_tradeoff.py --models resnet18 efficientnet_lite0 --epochs 1 2 4 8
    python bench/accuracy_tradeoff.py --models efficientnet_b0 --lr-factors 0.3 1 --sizes 28 56
    python bench/accuracy_tradeoff.py --models resnet18 --train-fractions 0.5 1   # data per category
"""
import argparse
import itertools
import time

import numpy as np
import torch

from fashionclf.core import params
from fashionclf.report.evaluation import add_noise
from fashionclf.learn.inference import pick_device, set_threads, to_tensor
from fashionclf.learn.timing import REFERENCE_SPEED, reference_reader
from fashionclf.core.stats import wilson_interval
from fashionclf.core.store import load_imageset
from fashionclf.learn.train import train_fold, validate

GOAL_ACCURACY = 0.985  # every model, clean test set (the goal; the best model: 0.99)


def split_one_fold(manifest, train_fraction: float, seed: int = 0):
    """Grouped 80/20 split (an image and its variants stay on one side), then a grouped subsample
    of the training side: ``train_fraction`` of its source images."""
    groups = manifest["group"].astype(str).unique()
    rng = np.random.default_rng(seed)
    val_groups = set(rng.choice(groups, size=len(groups) // 5, replace=False))
    train_groups = [g for g in groups if g not in val_groups]
    kept = set(rng.choice(train_groups, size=max(1, round(len(train_groups) * train_fraction)), replace=False))
    in_val = manifest["group"].astype(str).isin(val_groups).to_numpy()
    in_train = manifest["group"].astype(str).isin(kept).to_numpy()
    return torch.from_numpy(np.flatnonzero(in_train)), torch.from_numpy(np.flatnonzero(in_val))


def accuracy_cell(correct: torch.Tensor) -> str:
    low, high = wilson_interval(int(correct.sum()), len(correct))
    return f"{100 * correct.float().mean():.2f} ({100 * low:.1f}–{100 * high:.1f})"


def main():
    train = params.load("train")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(train.models))
    parser.add_argument("--epochs", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--sizes", nargs="+", type=int, help="input px (default: each model's params.yaml size)")
    parser.add_argument("--lr-factors", nargs="+", type=float, default=[1.0], help="times params.yaml's lr")
    parser.add_argument("--data", default="data/augment", help="train/val image set (e.g. another per_class)")
    parser.add_argument("--test", default="data/balance/test")
    parser.add_argument("--train-fractions", nargs="+", type=float, default=[1.0],
                        help="share of the fold's training source images (data per category)")
    args = parser.parse_args()
    set_threads(train.threads)
    device = pick_device(train.device)
    with reference_reader() as read:
        speed = read(2.0)
    images, manifest = load_imageset(args.data)
    test_images, test_manifest = load_imageset(args.test)
    categories = sorted(manifest["category"].unique())
    index = {c: i for i, c in enumerate(categories)}
    y = torch.from_numpy(manifest["category"].map(index).to_numpy().copy())
    y_test = torch.from_numpy(test_manifest["category"].map(index).to_numpy().copy())
    x, x_test = to_tensor(images), to_tensor(test_images)  # the model resizes to its image_size
    x_noisy = add_noise(x_test, 0.1, 7)
    print(f"{len(categories)} categories, {len(y)} train/val images, {len(y_test)} test images, one fold per row, "
          f"device {device}, {torch.get_num_threads()} threads, reference speed {speed:.0f} img/s here")
    print(f"| model | px | epochs | lr | train images | one fold s | {train.folds} folds s at 250 img/s "
          f"| test accuracy % (95% CI) | noise 0.1 % | gap to {100 * GOAL_ACCURACY:g} |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        base = train.model(name)
        for size, fraction, factor, epochs in itertools.product(args.sizes or [base.image_size], args.train_fractions,
                                                                args.lr_factors, args.epochs):
            config = base.model_copy(update={"epochs": epochs, "image_size": size, "lr": base.lr * factor})
            tr, va = split_one_fold(manifest, fraction)
            start = time.perf_counter()
            model, _ = train_fold(config, train, categories, x[tr], y[tr], x[va], y[va], 0, device)
            seconds = time.perf_counter() - start
            _, _, probs = validate(model, x_test, y_test, train.eval_batch_size, device)
            _, _, noisy = validate(model, x_noisy, y_test, train.eval_batch_size, device)
            correct = probs.argmax(1) == y_test
            gap = max(0.0, GOAL_ACCURACY - correct.float().mean().item())
            print(f"| {name} | {size} | {epochs} | {config.lr:.2g} | {len(tr)} | {seconds:.0f} | "
                  f"{seconds * train.folds * speed / REFERENCE_SPEED:.0f} | {accuracy_cell(correct)} | "
                  f"{100 * (noisy.argmax(1) == y_test).float().mean():.2f} | "
                  f"{f'{100 * gap:.2f} pt' if gap else 'met'} |", flush=True)
    with reference_reader() as read:
        print(f"reference speed after: {read(2.0):.0f} img/s")


if __name__ == "__main__":
    main()
