"""How much of `dvc repro` is model compute? Pipeline wall time / bare compute time (goal <= 1.3).

Reads what the last `dvc repro` trained and evaluated (params.yaml; per fold, the epochs it ran from
metrics/cv/*.json; the train/val and test image counts from metrics/balance.json), times the bare
forward+backward+step and the bare forward pass of each model for that many images on this
machine, at the pipeline's batch sizes, thread counts and fold workers (the fold processes timed side
by side, in deterministic mode, as cv_train runs them), and divides the pipeline's wall time by that.
The rest is overhead: process start-up, imports, data loading, DVC.

    python bench/pipeline_overhead.py --wall 1184     # seconds a `dvc repro --force` took here
    python bench/pipeline_overhead.py --run           # time `dvc repro --force` itself first
"""
import argparse
import copy
import json
import subprocess
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from fashionclf.core import params
from fashionclf.learn.folds import worker_context
from fashionclf.learn.inference import set_threads
from fashionclf.learn.models import build_model, fuse_batchnorm
from fashionclf.learn.train import deterministic_kernels, make_optimizer

BN_IMAGES = 256  # recalibrate_batchnorm's forward passes per epoch
FOLD_START_DELAY_S = 5.0  # the fold processes build their models, then time together


def rate(step, images_per_step: int, min_seconds: float = 2.0) -> float:
    """Images per second of ``step``, after one warm-up call, over at least min_seconds."""
    step()
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < min_seconds or done < 3:
        step()
        done += 1
    return done * images_per_step / elapsed


def workloads(name: str, image_size: int, canvas: int, train, evaluate, classes: int):
    """(training step, fused forward pass, forward batch size) of ``name`` on random data, as the
    stages run it: channels-last, fused Adam, the canvas in and the model's own resize."""
    torch.manual_seed(0)
    model = build_model(name, classes, False, image_size).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, 1e-3)
    x = torch.rand(train.batch_size, 3, canvas, canvas).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (train.batch_size,))

    def train_step():
        model.train()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    fused = fuse_batchnorm(copy.deepcopy(model).eval())
    xe = torch.rand(evaluate.batch_size, 3, canvas, canvas).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def forward():
        fused(xe)

    return train_step, forward, evaluate.batch_size


def fold_process_rates(task) -> tuple[float, float]:
    """In one of the fold workers, started together: (train img/s, forward img/s) at train.threads, in
    deterministic mode, as a fold trains beside the others."""
    name, image_size, canvas, train, evaluate, classes, start_at = task
    set_threads(train.threads)
    deterministic_kernels()
    train_step, forward, eval_batch = workloads(name, image_size, canvas, train, evaluate, classes)
    time.sleep(max(0.0, start_at - time.time()))
    return rate(train_step, train.batch_size), rate(forward, eval_batch)


def bare_rates(name: str, image_size: int, canvas: int, train, evaluate, classes: int,
               workers: int) -> tuple[float, float, float]:
    """(train img/s, forward img/s) per fold process, with ``workers`` of them at once (two folds on
    2 cores share caches and memory bandwidth: that is compute, not the pipeline's overhead), and
    forward img/s at evaluate.threads in one process, as the test stages run."""
    task = (name, image_size, canvas, train, evaluate, classes, time.time() + FOLD_START_DELAY_S)
    with worker_context().Pool(workers) as pool:
        per_process = pool.map(fold_process_rates, [task] * workers, chunksize=1)
    train_rate, fold_forward = (sum(r[i] for r in per_process) / workers for i in (0, 1))
    set_threads(evaluate.threads)
    _, forward, eval_batch = workloads(name, image_size, canvas, train, evaluate, classes)
    return train_rate, fold_forward, rate(forward, eval_batch)


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
        train_rate, fold_rate, test_rate = bare_rates(name, model_params.image_size, canvas, train, evaluate,
                                                      classes, workers)
        seconds = (trained / train_rate + fold_forward / fold_rate) / workers + test_forward / test_rate
        bare_total += seconds
        print(f"| {name} | {sum(epochs)} | {trained:.0f} | {train_rate:.0f} | {fold_forward:.0f} / {test_forward:.0f} "
              f"| {seconds:.0f} |", flush=True)
    print(f"\npipeline wall time {wall:.0f} s / bare compute {bare_total:.0f} s = overhead ratio "
          f"{wall / bare_total:.2f} (goal <= 1.3)")


if __name__ == "__main__":
    main()
