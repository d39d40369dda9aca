"""Does `predict` approach the bare model? Images/s of the predict pipeline (decode in DataLoader
workers, batch, ensemble) on a folder of generated JPEGs, against the bare forward of the same
ensemble on the same images already decoded into tensors, in one run.

    python bench/predict_throughput.py [--model NAME] [--images 512] [--workers 2]

Uses models/<NAME> (default: the best model of the last aggregate); prints the ratio (target >= 0.7).
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fashionclf.imaging import decode
from fashionclf.predict import Predictor, list_inputs, predict_paths


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--side", type=int, default=256, help="generated JPEG size in pixels")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    predictor = Predictor(args.model)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.images):
            arr = rng.integers(0, 255, (args.side, args.side, 3), dtype=np.uint8)
            Image.fromarray(arr).save(Path(tmp) / f"img_{i:05d}.jpg", quality=85)
        paths = list_inputs([tmp])
        decoded = torch.stack([torch.from_numpy(decode(p, predictor.canvas_size)).permute(2, 0, 1) for p in paths])

        def bare():
            start = time.perf_counter()
            for s in range(0, len(decoded), args.batch_size):
                predictor(decoded[s:s + args.batch_size])
            return time.perf_counter() - start

        def pipeline():
            start = time.perf_counter()
            rows = list(predict_paths(predictor, paths, args.batch_size, args.workers))
            assert len(rows) == len(paths)
            return time.perf_counter() - start

        bare(), pipeline()  # warm-up
        bare_s = min(bare() for _ in range(2))
        pipe_s = min(pipeline() for _ in range(2))
    print(f"model {predictor.name}, {args.images} JPEGs of {args.side}px, batch {args.batch_size}, "
          f"{args.workers} workers, {torch.get_num_threads()} torch threads")
    print(f"predict pipeline:     {args.images / pipe_s:8.1f} images/s")
    print(f"bare model forward:   {args.images / bare_s:8.1f} images/s")
    print(f"ratio (target >= 0.7): {bare_s / pipe_s:7.3f}")


if __name__ == "__main__":
    main()
