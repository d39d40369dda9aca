"""`fashionclf predict`: label new product images into a CSV, with a fold ensemble or its ONNX export.

Preprocessing comes from the checkpoint (canvas size, model input size): the same letterbox as
clean, then the same resize as training. Decoding runs in DataLoader workers beside the model.
Scoring and deciding are serve/predictor.py's, shared with `label`; with a target precision the
review queue is chosen over the whole batch, so rows are written once every image is scored.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..core import paths
from ..core.errors import ImageRejected
from ..core.params import DEVICE_PATTERN
from ..data.imaging import decode, image_statistics
from .predictor import (Predictor, calibration_csv, count_summary, decide, queue_line, review_args_problems,
                        row_columns, shift_warning)


def list_inputs(inputs) -> list[Path]:
    """Files named directly, plus every file below named folders (recursively, sorted)."""
    found = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if not p.is_dir() or p.is_symlink())
        else:
            found.append(path)
    return found


class DecodedImages(torch.utils.data.Dataset):
    def __init__(self, paths, canvas_size: int):
        self.paths = paths
        self.canvas_size = canvas_size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            pixels = decode(self.paths[i], self.canvas_size)  # bombs are reported, never decoded
            return torch.from_numpy(pixels).permute(2, 0, 1), i, ""
        except ImageRejected as exc:
            return torch.zeros(3, self.canvas_size, self.canvas_size, dtype=torch.uint8), i, str(exc)


def predict_paths(predictor: Predictor, paths, batch_size=64, workers=2):
    """Yield (path, raw probabilities, error, image statistics) per path, in input order (zeros for an
    unreadable one)."""
    loader = torch.utils.data.DataLoader(DecodedImages(paths, predictor.canvas_size), batch_size=batch_size,
                                         num_workers=workers, shuffle=False,
                                         persistent_workers=False, prefetch_factor=4 if workers else None)
    for pixels, indices, errors in loader:
        statistics = pd.DataFrame(image_statistics(pixels.numpy())).to_dict("records")
        for index, probs, error, stats in zip(indices.tolist(), predictor.score(pixels, errors), errors, statistics):
            yield paths[index], probs, error, stats


def labelled_table(predictor: Predictor, scored, min_confidence=0.0, target_precision=None, with_probability=None):
    """(predict's rows as a DataFrame, the threshold) from predict_paths' results."""
    raw = np.array([row[1] for row in scored], np.float32).reshape(len(scored), len(predictor.categories))
    columns, threshold = decide([row[0] for row in scored], raw, [row[2] for row in scored], predictor.categories,
                                predictor.calibration, min_confidence, target_precision, with_probability)
    return pd.DataFrame(columns, columns=row_columns(predictor.categories)), threshold


def promise_of(with_probability) -> str:
    if with_probability:
        return f" with probability {with_probability:g}: the review queue is one threshold chosen"
    return ": the review queue is chosen over this batch"


def batch_shift_warning(predictor: Predictor, scored) -> str | None:
    raw = np.array([row[1] for row in scored], np.float32).reshape(len(scored), len(predictor.categories))
    statistics = pd.DataFrame([row[3] for row in scored]).to_dict("list")
    return shift_warning(predictor.shift_check, statistics, raw, [row[2] for row in scored])


def problems_with(args) -> list[str]:
    problems = (["--batch-size must be >= 1"] if args.batch_size < 1 else []) + \
        review_args_problems(args.target_precision, args.min_confidence, args.with_probability)
    if not DEVICE_PATTERN.fullmatch(args.device):
        problems.append(f"--device must be auto, cpu, cuda or cuda:N, got {args.device!r}")
    return problems


def run_predict(args) -> int:
    if problems := problems_with(args):
        print("error: " + "; ".join(problems), file=sys.stderr)
        return 2
    predictor = Predictor(args.model, args.exported, device=args.device)
    calibration = args.calibration or calibration_csv(predictor.model_name)
    fit = predictor.calibrate(calibration, fit=args.target_precision is not None)
    if fit is not None:
        print(f"target precision {args.target_precision:g}{promise_of(args.with_probability)} against "
              f"{fit.n} calibration images ({calibration}); shown probabilities at temperature {fit.temperature:g}")
    paths = list_inputs(args.inputs)
    scored = list(tqdm(predict_paths(predictor, paths, args.batch_size, args.workers), total=len(paths),
                       desc=f"predict ({predictor.name})", mininterval=1))
    table, threshold = labelled_table(predictor, scored, args.min_confidence, args.target_precision,
                                      args.with_probability)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    if args.target_precision is not None:
        print(queue_line(threshold, fit, args.target_precision, args.with_probability))
    counts = count_summary(table["category"], table["error"])
    print(f"wrote {args.out}: {len(paths)} images, " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if warning := batch_shift_warning(predictor, scored):
        print(warning, file=sys.stderr)
    return 0


def add_arguments(parser) -> None:
    parser.add_argument("inputs", nargs="+", help="image files or folders (searched recursively)")
    parser.add_argument("--out", required=True, help="CSV to write")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", help="model name under models/ (default: the best, reports/best_model.json)")
    source.add_argument("--exported", help="an ONNX model written by the export stage (export/model.onnx)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--min-confidence", type=float, default=0.0,
                        help="label images below this confidence needs_review")
    parser.add_argument("--target-precision", type=float,
                        help="label automatically the images whose expected precision reaches this (e.g. 0.99), "
                             "chosen over the batch against the calibration split; the rest get needs_review")
    parser.add_argument("--with-probability", type=float,
                        help="with --target-precision: reach it with this probability (e.g. 0.9) rather than on "
                             "average, by one threshold fixed on the calibration split (learn-then-test); "
                             "fewer images are labelled automatically")
    parser.add_argument("--calibration", help="the model's predictions of the calibration split, for "
                                              "--target-precision (default: the test_clean stage's, "
                             f"{paths.CALIBRATION_PREDICTIONS.format(model='<model>')})")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto",
                        help="where the torch ensemble runs: auto (CUDA when present), cpu, cuda or cuda:N")


run = run_predict
