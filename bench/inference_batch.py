"""Inference at batch 256 against the batch that learn/inference.inference_batch caps it to, back to back.

    python bench/inference_batch.py [--threads 2] [--photos 512] [--repeats 3]

Per model and size: random photos on a canvas (init's 128 px for the pretrained models, 28 px for a
default-pipeline model), predict_proba as the test stages, validation and a head's features run it,
once with the batch capped at INFERENCE_PIXELS of the model's working size and once at 256 (the cap
lifted). Prints the median seconds of each, their ratio (> 1: the cap is faster) and the largest
difference between their probabilities.
"""
import argparse
import statistics
import time
from unittest import mock

import torch

from fashionclf.learn import inference
from fashionclf.learn.models import build_model

CASES = [("efficientnet_lite0", 224, 128), ("efficientnet_lite2", 224, 128), ("efficientnet_lite0", 160, 128),
         ("efficientnet_lite0", 128, 128), ("efficientnet_lite0", 48, 28), ("resnet50", 28, 28)]
BATCH = 256


def timed(model, x, repeats: int, capped: bool):
    cap = inference.INFERENCE_PIXELS if capped else 10 ** 12
    with mock.patch.object(inference, "INFERENCE_PIXELS", cap):
        batch = inference.inference_batch(model, x, BATCH)
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            probs = inference.predict_proba(model, x, BATCH, torch.device("cpu"))
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), batch, probs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--photos", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    inference.set_threads(args.threads)
    print(f"{args.photos} photos, {args.threads} thread(s), median of {args.repeats}")
    print("| model | px (canvas) | batch | s | batch 256, s | ratio | largest difference |")
    print("|---|---|---|---|---|---|---|")
    for name, size, canvas in CASES:
        model = build_model(name, 10, pretrained=False, image_size=size).eval().to(memory_format=torch.channels_last)
        x = torch.rand(args.photos, 3, canvas, canvas, generator=torch.Generator().manual_seed(0))
        capped, batch, p_capped = timed(model, x, args.repeats, capped=True)
        full, _, p_full = timed(model, x, args.repeats, capped=False)
        print(f"| {name} | {size} ({canvas}) | {batch} | {capped:.2f} | {full:.2f} | {full / capped:.2f} | "
              f"{(p_capped - p_full).abs().max().item():.1e} |", flush=True)


if __name__ == "__main__":
    main()
