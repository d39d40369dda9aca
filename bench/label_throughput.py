"""Does `fashionclf label` scale with actors, and what does Ray cost against `predict` on the same cores?

    python bench/label_throughput.py [--model NAME] [--runner torch|onnx] [--images 12288] [--small 4096]

Generates JPEGs, then runs `predict` and `label` (1 actor, then one per core, one intra-op thread
each) as a user would, each on --small and on --images images. The steady-state rate is the slope,
(images - small) / (time - time_small): start-up (Ray, actors importing torch, loading the model)
cancels out. Prints the ratios against their targets: 2 actors / 1 actor >= 1.7 on a 2-core machine,
and predict / label on the same cores <= 1.15 (the overhead of Ray at most 15%).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_jpegs(folder: Path, n: int, side: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(n):
        arr = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"img_{i:05d}.jpg", quality=85)
    return folder


def seconds(cmd) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def steady_rate(command, small: Path, large: Path, n_small: int, n_large: int, tmp: Path) -> float:
    """Images per second past start-up: the slope between a small and a large run."""
    t_small = seconds(command(small, tmp / f"s{time.monotonic_ns()}"))
    t_large = seconds(command(large, tmp / f"l{time.monotonic_ns()}"))
    return (n_large - n_small) / max(t_large - t_small, 1e-9)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--runner", default="torch", choices=["torch", "onnx"])
    parser.add_argument("--images", type=int, default=12288)
    parser.add_argument("--small", type=int, default=4096)
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    model = ["--model", args.model] if args.model else []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        small = make_jpegs(tmp / "small", args.small, args.side, seed=1)
        large = make_jpegs(tmp / "large", args.images, args.side, seed=2)

        def predict(folder, out):
            extra = ["--exported", "export/model.onnx"] if args.runner == "onnx" else model
            return [sys.executable, "-m", "fashionclf", "predict", str(folder), "--out", f"{out}.csv",
                    "--batch-size", str(args.batch_size), "--workers", str(cores), *extra]

        def label(actors):
            return lambda folder, out: [sys.executable, "-m", "fashionclf", "label", str(folder), "--out", str(out),
                                        "--runner", args.runner, "--actors", str(actors), "--threads", "1",
                                        "--batch-size", str(args.batch_size), *model]

        rates = {"predict": steady_rate(predict, small, large, args.small, args.images, tmp),
                 "label, 1 actor": steady_rate(label(1), small, large, args.small, args.images, tmp),
                 f"label, {cores} actors": steady_rate(label(cores), small, large, args.small, args.images, tmp)}
    print(f"{args.runner} runner, {args.images} - {args.small} JPEGs of {args.side} px, batch {args.batch_size}, "
          f"{cores} cores; steady-state images/s (slope between the two runs)")
    print("| command | img/s |")
    print("|---|---|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:.1f} |")
    scaling = rates[f"label, {cores} actors"] / rates["label, 1 actor"]
    overhead = rates["predict"] / rates[f"label, {cores} actors"]
    print(f"scaling, {cores} actors / 1 actor: {scaling:.2f} (target >= {0.85 * cores:.2f})")
    print(f"predict / label on the same {cores} cores: {overhead:.2f} (target <= 1.15)")


if __name__ == "__main__":
    main()
