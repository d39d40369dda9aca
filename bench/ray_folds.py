"""Fold throughput on Ray against the local pool: the same fold jobs (the default data's shape and
the params' recipe for one model) trained by the local pool with 1 and 2 workers, and as Ray tasks
on a local Ray with 1 and 2 CPUs. Prints seconds and folds per minute, and each runner's 2-over-1
speed-up; all four give the same bytes (tests/test_train.py). Ray's start is outside the timing.

    python bench/ray_folds.py [--model mobilenet_v2] [--folds 4] [--images 1680] [--epochs 1]
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fashionclf.core import params
from fashionclf.learn.cv import cross_validate
from fashionclf.learn.folds import run_locally
from fashionclf.learn.ray_folds import run_on_ray


def workload(images: int, canvas: int = 28):
    rng = np.random.default_rng(0)
    labels = np.arange(images) % 3
    pixels = rng.integers(0, 255, (images, canvas, canvas, 3), dtype=np.uint8)
    pixels = (pixels // 4 + 60 * labels[:, None, None, None]).astype(np.uint8)  # learnable
    manifest = pd.DataFrame({"path": [f"img{i}.png" for i in range(images)], "category": np.array(["a", "b", "c"])[labels],
                             "group": [f"g{i}" for i in range(images)], "copy": 0, "variant": 0})
    return pixels, manifest


def timed(model_params, train, pixels, manifest, runner) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        cross_validate(model_params, train, pixels, manifest, Path(tmp) / "models", runner=runner)
        return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--folds", type=int, default=4, help="an even number: no short last round")
    parser.add_argument("--images", type=int, default=1680)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    import ray

    train = params.load("train")
    model_params = train.model(args.model).model_copy(update={"epochs": args.epochs})
    pixels, manifest = workload(args.images)
    rows = []
    for workers in (1, 2):
        setup = train.model_copy(update={"folds": args.folds, "fold_workers": workers, "threads": 1})
        rows.append(("local pool", workers, timed(model_params, setup, pixels, manifest, run_locally)))
        os.environ["RAY_worker_niceness"] = "0"  # as the local pool's workers: no lower priority
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        ray.get([ray.remote(lambda: None).remote() for _ in range(workers)])  # workers up before timing
        rows.append(("Ray tasks", workers, timed(model_params, setup, pixels, manifest, run_on_ray)))
        ray.shutdown()
    print(f"{args.folds} folds of {args.model}, {args.images} images, {args.epochs} epoch(s), 1 thread per fold")
    print("| runner | workers / Ray CPUs | s | folds per minute |")
    print("|---|---|---|---|")
    for runner, workers, seconds in rows:
        print(f"| {runner} | {workers} | {seconds:.1f} | {60 * args.folds / seconds:.2f} |")
    for runner in ("local pool", "Ray tasks"):
        one, two = (s for r, _, s in rows if r == runner)
        print(f"{runner}: 2 over 1 = {one / two:.2f}x")


if __name__ == "__main__":
    main()
