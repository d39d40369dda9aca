"""How much of `dvc repro` is model compute? Pipeline wall time / bare compute time (goal <= 1.3).

Reads what the last `dvc repro` trained and evaluated (params.yaml; per fold, the epochs it ran from
metrics/cv/*.json; the train/val and test image counts from metrics/balance.json), times the bare
forward+backward+step and the bare forward pass of each model for that many images on this
machine, at the pipeline's batch sizes, thread counts and fold workers (the fold processes timed side
by side, in deterministic mode, as cv_train runs them: init's timing, learn/timing.py), and divides the
pipeline's wall time by that. The rest is overhead: process start-up, imports, data loading, DVC.

    python bench/pipeline_overhead.py --wall 1184     # seconds a `dvc repro --force` took here
    python bench/pipeline_overhead.py --run           # time `dvc repro --force` itself first
"""
import argparse
import json
import subprocess
import time
from pathlib import Path

import torch
import yaml

from fashionclf.core import params
from fashionclf.learn.inference import set_threads
from fashionclf.learn.models import build_model, fuse_batchnorm
from fashionclf.learn.timing import Schedule, measure

BN_IMAGES = 256  # recalibrate_batchnorm's forward passes per epoch
FOLD_ROUNDS, FOLD_WINDOW_S = 2, 2.0  # measure()'s rounds and windows: the median of 2 readings of 2 s


def rate(step, images_per_step: int, min_seconds: float = 2.0) -> float:
    """Images per second of ``step``, after one warm-up call, over at least min_seconds."""
    step()
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < min_seconds or done < 3:
        step()
        done += 1
    return done * images_per_step / elapsed


def fold_rates(name: str, image_size: int, classes: int, schedule: Schedule) -> tuple[float, float]:
    """(train img/s, forward img/s) of one fold process while the other workers' folds train beside
    it, in deterministic mode: init's own timing of a model as cv_train runs it (learn/timing.py)."""
    costs = measure([(name, image_size)], classes, schedule, FOLD_ROUNDS, FOLD_WINDOW_S, lone=0).cost(name, image_size)
    return 1 / costs.fold[0], 1 / costs.fold[1]


def test_rate(name: str, image_size: int, canvas: int, evaluate, classes: int) -> float:
    """Forward img/s of the fused model on the canvas, at evaluate.batch_size and evaluate.threads, as
    the test stages run it."""
    torch.manual_seed(0)
    model = fuse_batchnorm(build_model(name, classes, False, image_size).eval()).to(memory_format=torch.channels_last)
    x = torch.rand(evaluate.batch_size, 3, canvas, canvas).contiguous(memory_format=torch.channels_last)
    set_threads(evaluate.threads)
    with torch.inference_mode():
        return rate(lambda: model(x), evaluate.batch_size)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--wall", type=float, help="seconds the pipeline took on this machine")
    source.add_argument("--run", action="store_true", help="time `dvc repro --force` first")
    args = parser.parse_args()
    wall = args.wall
    if args.run:
        start = time.perf_counter()
        subprocess.run(["dvc", "repro", "--force"], check=True)
        wall = time.perf_counter() - start
    train, evaluate, noise = params.load("train"), params.load("evaluate"), params.load("noise")
    canvas = params.load("clean").canvas_size
    balance = json.loads(Path("metrics/balance.json").read_text())
    trainval, test = sum(balance["trainval"].values()), sum(balance["test"].values())
    calibration = sum(balance.get("calibration", {}).values())  # test_clean predicts it too
    classes = len(balance["test"])
    curve = len(set(noise.sigmas) - {0.0, noise.sigma})
    curve_images = min(test, noise.curve_max_images or test)
    workers = min(train.fold_workers, train.folds)
    schedule = Schedule.of(yaml.safe_load(params.PARAMS_FILE.read_text()), train.folds)
    print(f"{trainval} train/val, {test} test and {calibration} calibration images, {train.folds} folds on "
          f"{workers} workers x {train.threads} thread(s), evaluation on {evaluate.threads} thread(s), "
          f"{torch.__version__}")
    print("| model | epochs run | trained images | train img/s | forward images (folds / test) | bare s |")
    print("|---|---|---|---|---|---|")
    bare_total = 0.0
    for name, model_params in train.models.items():
        cv = json.loads(Path(f"metrics/cv/{name}.json").read_text())
        epochs = [fold["epochs"] for fold in cv["folds"]]
        val = trainval / train.folds
        trained = sum(e * (trainval - val) for e in epochs)
        fold_forward = sum(e * (val + BN_IMAGES) for e in epochs)
        test_forward = train.folds * (test * (1 + (noise.sigma > 0)) + calibration + curve * curve_images)
        train_rate, fold_rate = fold_rates(name, model_params.image_size, classes, schedule)
        test_forward_rate = test_rate(name, model_params.image_size, canvas, evaluate, classes)
        seconds = (trained / train_rate + fold_forward / fold_rate) / workers + test_forward / test_forward_rate
        bare_total += seconds
        print(f"| {name} | {sum(epochs)} | {trained:.0f} | {train_rate:.0f} | {fold_forward:.0f} / {test_forward:.0f} "
              f"| {seconds:.0f} |", flush=True)
    print(f"\npipeline wall time {wall:.0f} s / bare compute {bare_total:.0f} s = overhead ratio "
          f"{wall / bare_total:.2f} (goal <= 1.3)")


if __name__ == "__main__":
    main()
