"""Accuracy versus training time, to choose the default epochs and image sizes for a time budget.

Trains one fold (80% of data/augment, seeded) per model and epoch count with the project's own
train_fold, evaluates on the held-out test set (data/balance/test), and prints a table.
Run after `dvc repro augment`:

    python bench/accuracy_tradeoff.py --models resnet18 efficientnet_lite0 --epochs 1 2 4
"""
import argparse
import time

import numpy as np
import torch

from fashionclf import params
from fashionclf.store import load_imageset
from fashionclf.evaluation import add_noise
from fashionclf.inference import pick_device, set_threads, to_tensor
from fashionclf.train import train_fold, validate


def main():
    train = params.load("train")
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=list(train.models))
    parser.add_argument("--epochs", nargs="+", type=int, default=[1, 2, 4])
    args = parser.parse_args()
    images, manifest = load_imageset("data/augment")
    test_images, test_manifest = load_imageset("data/balance/test")
    categories = sorted(manifest["category"].unique())
    index = {c: i for i, c in enumerate(categories)}
    y = torch.from_numpy(manifest["category"].map(index).to_numpy().copy())
    y_test = torch.from_numpy(test_manifest["category"].map(index).to_numpy().copy())
    groups = manifest["group"].unique()
    rng = np.random.default_rng(0)
    val_groups = set(rng.choice(groups, size=len(groups) // 5, replace=False))
    is_val = manifest["group"].isin(val_groups).to_numpy()
    set_threads(train.threads)
    device = pick_device(train.device)
    print(f"{len(categories)} categories, {(~is_val).sum()} train / {is_val.sum()} val images, "
          f"{len(y_test)} test images, one fold, device {device}")
    print("| model | px | epochs | lr | train s | test accuracy % | with noise sigma 0.1 % |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        base = train.model(name)
        x, x_test = to_tensor(images), to_tensor(test_images)  # the model resizes to base.image_size
        tr, va = torch.from_numpy(np.flatnonzero(~is_val)), torch.from_numpy(np.flatnonzero(is_val))
        for epochs in args.epochs:
            mp = base.model_copy(update={"epochs": epochs})
            start = time.perf_counter()
            model, _ = train_fold(mp, train, categories, x[tr], y[tr], x[va], y[va], 0, device)
            seconds = time.perf_counter() - start
            _, accuracy, _ = validate(model, x_test, y_test, train.eval_batch_size, device)
            _, noisy, _ = validate(model, add_noise(x_test, 0.1, 7), y_test, train.eval_batch_size, device)
            print(f"| {name} | {base.image_size} | {epochs} | {base.lr:g} | {seconds:.0f} | {100 * accuracy:.2f} | "
                  f"{100 * noisy:.2f} |", flush=True)


if __name__ == "__main__":
    main()
