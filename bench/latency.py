"""Inference latency of each trained model, measured with torch.utils.benchmark.Timer (which warms
up, picks the repeat count and reports the median). Machine-dependent, so it lives here and not in
a DVC stage: run it after `dvc repro`, on the machine you serve from.

    python bench/latency.py [--models resnet18 ...]

Prints one Markdown row per model: CPU ms per image of one fold model and of the fold ensemble
(what predict runs), at batch 1 and batch 64, on canonical letterboxed input.
"""
import argparse
from pathlib import Path

import torch
from torch.utils.benchmark import Timer

from fashionclf.core import params
from fashionclf.learn.inference import Ensemble, set_threads


def ms_per_image(module, canvas: int, batch: int) -> float:
    x = torch.rand(batch, 3, canvas, canvas).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        timer = Timer("module(x)", globals={"module": module, "x": x}, num_threads=torch.get_num_threads())
        return timer.blocked_autorange(min_run_time=1.0).median * 1000 / batch


def main():
    train = params.load("train")
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=list(train.models))
    parser.add_argument("--models-dir", default="models")
    args = parser.parse_args()
    set_threads(params.load("evaluate").threads)
    print(f"CPU, {torch.get_num_threads()} threads; ms per image (median of torch.utils.benchmark.Timer)")
    print("| model | one fold, batch 1 | one fold, batch 64 | fold ensemble, batch 1 | fold ensemble, batch 64 |")
    print("|---|---|---|---|---|")
    for name in args.models:
        ensemble = Ensemble.load(Path(args.models_dir) / name)
        canvas = ensemble.preprocessing["canvas_size"]
        fold = ensemble.models[0]
        cells = [ms_per_image(module, canvas, batch) for module in (fold, ensemble) for batch in (1, 64)]
        print(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
