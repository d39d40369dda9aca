"""How steady is a training recipe? Trains one fold of the pipeline's own split (train.folds, seed 42)
per seed, with the pipeline's train_fold, and prints the fold's validation accuracy and the single
fold model's accuracy on the test set (data/balance/test), with each epoch's training loss and
validation accuracy. A single fold moves more than the pipeline's 5-fold numbers; this ranks
recipes in minutes where bench/seed_spread.py measures the published spread in an hour.
Run after `dvc repro augment`; two processes at once use two cores:

    python bench/recipe_spread.py efficientnet_b0 --folds 3 --set model.lr=0.003 model.image_size=28
    python bench/recipe_spread.py mobilenet_v2 --seeds 42 43 44 --set model.epochs=4 train.batch_size=16
"""
import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import yaml

from fashionclf.core import params
from fashionclf.core.preset import set_dotted
from fashionclf.core.store import load_imageset
from fashionclf.learn.cv import grouped_folds
from fashionclf.learn.inference import set_threads, to_pixels, to_tensor
from fashionclf.learn.train import train_fold, validate


def recipe(name: str, overrides: list[str]):
    """params.yaml's train section with model.KEY=JSON (this model's recipe) and train.KEY=JSON
    overrides, validated as params.yaml is."""
    doc = yaml.safe_load(Path(params.PARAMS_FILE).read_text())
    for item in overrides:
        key, value = item.split("=", 1)
        dotted = f"train.models.{name}.{key.removeprefix('model.')}" if key.startswith("model.") else key
        set_dotted(doc, dotted, json.loads(value), "recipe_spread --set")
    train = params.parse("train", doc["train"])
    return train, train.model(name)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    parser.add_argument("--folds", nargs="+", type=int, default=[3], help="which folds of the split")
    parser.add_argument("--set", nargs="*", default=[], metavar="SCOPE.KEY=JSON")
    args = parser.parse_args()
    split_seed = params.load("train").seed  # the pipeline's split, whatever the overrides
    train, model_params = recipe(args.model, args.set)
    set_threads(train.threads)
    device = torch.device("cpu")
    images, manifest = load_imageset("data/augment")
    test_images, test_manifest = load_imageset("data/balance/test")
    categories = sorted(manifest["category"].unique())
    index = {c: i for i, c in enumerate(categories)}
    labels = manifest["category"].map(index).to_numpy()
    y = torch.from_numpy(labels).long()
    y_test = torch.from_numpy(test_manifest["category"].map(index).to_numpy().copy()).long()
    x_test = to_tensor(test_images)
    splits = grouped_folds(labels, manifest["group"].astype(str).to_numpy(), train.folds, split_seed)
    print(f"{args.model} {model_params.model_dump()} {args.set}")
    tests = []
    for seed, fold in ((s, k) for s in args.seeds for k in args.folds):
        train_idx, val_idx = splits[fold]
        start = time.perf_counter()
        model, state = train_fold(model_params, train.model_copy(update={"seed": seed}), categories,
                                  to_pixels(images[train_idx]), y[train_idx], to_pixels(images[val_idx]),
                                  y[val_idx], fold, device)
        seconds = time.perf_counter() - start
        _, test_accuracy, _ = validate(model, x_test, y_test, train.eval_batch_size, device)
        tests.append(test_accuracy)
        curve = " ".join(f"{h['train_loss']:.2f}/{h['val_accuracy']:.3f}" for h in state["history"])
        print(f"seed {seed} fold {fold}: val {100 * state['best_accuracy']:.2f} test {100 * test_accuracy:.2f} "
              f"{seconds:.0f} s; per epoch train loss/val accuracy: {curve}", flush=True)
    if len(tests) > 1:
        print(f"test accuracy: mean {100 * statistics.mean(tests):.2f}, sd {100 * statistics.stdev(tests):.2f} pt")


if __name__ == "__main__":
    main()
