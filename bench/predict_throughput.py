"""How fast does `predict` label a folder? Images/s of the predict pipeline (decode in DataLoader
workers, batch, ensemble) on generated JPEGs, for the PyTorch fold ensemble and for its ONNX export
under onnxruntime, each against its bare forward on the same images already decoded, in one run.

    python bench/predict_throughput.py [--model NAME] [--exported export/model.onnx] [--images 512]

Uses models/<NAME> (default: the best model of the last aggregate, which is the one exported).
Prints pipeline/bare ratios (target >= 0.7) and ONNX/PyTorch (target >= 1: the export must be at
least as fast as the PyTorch path).
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fashionclf.data.imaging import decode
from fashionclf.serve.predict import list_inputs, predict_paths
from fashionclf.serve.predictor import Predictor


def throughput(predictor, paths, decoded, batch_size, workers) -> tuple[float, float]:
    """(pipeline images/s, bare forward images/s), best of two runs after a warm-up."""
    def bare():
        start = time.perf_counter()
        for s in range(0, len(decoded), batch_size):
            predictor(decoded[s:s + batch_size])
        return time.perf_counter() - start

    def pipeline():
        start = time.perf_counter()
        rows = list(predict_paths(predictor, paths, batch_size, workers))
        assert len(rows) == len(paths)
        return time.perf_counter() - start

    bare(), pipeline()  # warm-up
    return len(paths) / min(pipeline() for _ in range(2)), len(paths) / min(bare() for _ in range(2))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--exported", default="export/model.onnx")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--side", type=int, default=256, help="generated JPEG size in pixels")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch_predictor = Predictor(args.model)
    onnx_predictor = Predictor(exported=args.exported)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.images):
            arr = rng.integers(0, 255, (args.side, args.side, 3), dtype=np.uint8)
            Image.fromarray(arr).save(Path(tmp) / f"img_{i:05d}.jpg", quality=85)
        paths = list_inputs([tmp])
        canvas = torch_predictor.canvas_size
        decoded = torch.stack([torch.from_numpy(decode(p, canvas)).permute(2, 0, 1) for p in paths])
        results = {name: throughput(p, paths, decoded, args.batch_size, args.workers)
                   for name, p in (("pytorch", torch_predictor), ("onnx", onnx_predictor))}
    print(f"model {torch_predictor.name}, {args.images} JPEGs of {args.side}px, batch {args.batch_size}, "
          f"{args.workers} workers, {torch.get_num_threads()} torch threads")
    print("| runtime | predict pipeline img/s | bare forward img/s | ratio (target >= 0.7) |")
    print("|---|---|---|---|")
    for name, (pipe, bare) in results.items():
        print(f"| {name} | {pipe:.1f} | {bare:.1f} | {pipe / bare:.3f} |")
    print(f"ONNX / PyTorch predict pipeline (target >= 1): {results['onnx'][0] / results['pytorch'][0]:.2f}")


if __name__ == "__main__":
    main()
