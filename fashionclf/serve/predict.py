"""Batch labelling of new product images with a trained fold ensemble or its ONNX export.

Preprocessing comes from the checkpoint (canvas size, model input size): the same letterbox as
clean, then the same resize as training. Decoding runs in DataLoader workers beside the model.
With a target precision, the review queue is chosen over the whole batch (report.calibration's
conformal selection against the calibration split), so rows are written once every image is scored.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..core import paths
from ..core.errors import ImageRejected
from ..core.params import DEVICE_PATTERN, NEEDS_REVIEW
from ..data.imaging import decode
from ..learn.checkpoint import best_model_name
from ..learn.inference import Ensemble, pick_device
from ..learn.onnx_runner import OnnxEnsemble
from ..report.calibration import Calibration, scaled


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


class Predictor:
    """A callable from [N, 3, canvas, canvas] uint8 to probabilities: a model's fold ensemble under
    torch, or the ONNX export under onnxruntime."""

    def __init__(self, model: str | None = None, exported: str | None = None, models_dir=paths.MODELS,
                 best=paths.BEST_MODEL, device: str = "auto", threads: int | None = None):
        self.device = pick_device(device, "--device")  # the torch ensemble's; onnxruntime runs on the CPU
        if exported:
            self.module = OnnxEnsemble(exported, threads)
            self.model_name = self.module.name
            self.name = f"{self.module.name} (exported)"
        else:
            self.model_name = model or best_model_name(best)
            self.module = Ensemble.load(Path(models_dir) / self.model_name)
            self.name = self.model_name
        self.calibration: Calibration | None = None  # set by calibrate()
        self.categories = self.module.categories
        self.canvas_size = self.module.preprocessing["canvas_size"]

    @torch.inference_mode()
    def __call__(self, batch_uint8: torch.Tensor) -> np.ndarray:
        """The ensemble's raw probabilities (the review queue is chosen on these)."""
        x = (batch_uint8.float() / 255).contiguous(memory_format=torch.channels_last)
        if isinstance(self.module, Ensemble):
            return self.module.predict_proba(x, max(len(x), 1), self.device)
        return self.module(x)

    def calibrate(self, calibration_csv) -> Calibration:
        """Fit the temperature and the review queue on the ensemble's predictions of the calibration
        split (written by the test_clean stage)."""
        if not Path(calibration_csv).is_file():
            raise FileNotFoundError(f"{calibration_csv} not found: --target-precision needs the model's predictions "
                                    f"of the calibration split (run `dvc repro`, or pass --calibration)")
        self.calibration = Calibration.from_table(pd.read_csv(calibration_csv, keep_default_na=False))
        return self.calibration


def predict_paths(predictor: Predictor, paths, batch_size=64, workers=2):
    """Yield (path, raw probabilities or None, error) per path, in input order."""
    loader = torch.utils.data.DataLoader(DecodedImages(paths, predictor.canvas_size), batch_size=batch_size,
                                         num_workers=workers, shuffle=False,
                                         persistent_workers=False, prefetch_factor=4 if workers else None)
    for pixels, indices, errors in loader:
        ok = [k for k, e in enumerate(errors) if not e]
        probs = predictor(pixels[ok]) if ok else np.zeros((0, len(predictor.categories)))
        row_probs = dict(zip(ok, probs))
        for k, (index, error) in enumerate(zip(indices.tolist(), errors)):
            yield paths[index], row_probs.get(k), error


def review_args_problems(target_precision, min_confidence) -> list[str]:
    """What is wrong with a --target-precision / --min-confidence pair (predict's and label's)."""
    problems = []
    if not 0 <= min_confidence <= 1:
        problems.append("--min-confidence must be within [0, 1]")
    if target_precision is not None and not (0 < target_precision <= 1 and min_confidence == 0):
        problems.append("--target-precision must be within (0, 1] and not combined with --min-confidence")
    return problems


def calibration_csv(model_name: str) -> str:
    """Where the test_clean stage writes the model's predictions of the calibration split."""
    return paths.CALIBRATION_PREDICTIONS.format(model=model_name)


def decisions(raw: np.ndarray, calibration: Calibration | None, min_confidence=0.0, target_precision=None):
    """(labelled automatically, the threshold, the probabilities to show) for a batch of raw ensemble
    probabilities: below ``min_confidence``, or outside the review queue of ``target_precision``
    chosen over this whole batch, an image needs review. Shown probabilities are temperature-scaled
    when calibrated."""
    if target_precision is not None:
        automatic, threshold = calibration.select(raw, target_precision)
    else:
        automatic, threshold = raw.max(1, initial=0.0) >= min_confidence, min_confidence
    return automatic, threshold, scaled(raw, calibration.temperature) if calibration else raw


def labelled_rows(predictor: Predictor, scored, min_confidence=0.0, target_precision=None):
    """predict's CSV rows from predict_paths' results (``decisions`` over the readable images)."""
    good = [k for k, (_, p, error) in enumerate(scored) if not error]
    raw = np.array([scored[k][1] for k in good]).reshape(len(good), len(predictor.categories))
    automatic, threshold, shown = decisions(raw, predictor.calibration, min_confidence, target_precision)
    decided = {k: (shown[i], automatic[i]) for i, k in enumerate(good)}
    rows = []
    for k, (path, _, error) in enumerate(scored):
        row = {"path": str(path), "category": "", "confidence": "", "error": error}
        if not error:
            p, auto = decided[k]
            best = int(p.argmax())
            row["confidence"] = round(float(p[best]), 6)
            row["category"] = predictor.categories[best] if auto else NEEDS_REVIEW
            row.update({f"p_{c}": round(float(v), 6) for c, v in zip(predictor.categories, p)})
        rows.append(row)
    return rows, threshold


def run_predict(args) -> int:
    problems = (["--batch-size must be >= 1"] if args.batch_size < 1 else []) + \
        review_args_problems(args.target_precision, args.min_confidence)
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return 2
    if not DEVICE_PATTERN.fullmatch(args.device):
        print(f"error: --device must be auto, cpu, cuda or cuda:N, got {args.device!r}", file=sys.stderr)
        return 2
    predictor = Predictor(args.model, args.exported, device=args.device)
    if args.target_precision is not None:
        calibration = args.calibration or calibration_csv(predictor.model_name)
        fit = predictor.calibrate(calibration)
        print(f"target precision {args.target_precision:g}: the review queue is chosen over this batch against "
              f"{fit.n} calibration images ({calibration}); shown probabilities at temperature {fit.temperature:g}")
    paths = list_inputs(args.inputs)
    scored = list(tqdm(predict_paths(predictor, paths, args.batch_size, args.workers), total=len(paths),
                       desc=f"predict ({predictor.name})", mininterval=1))
    rows, threshold = labelled_rows(predictor, scored, args.min_confidence, args.target_precision)
    columns = ["path", "category", "confidence"] + [f"p_{c}" for c in predictor.categories] + ["error"]
    counts = {}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            key = "error" if row["error"] else row["category"]
            counts[key] = counts.get(key, 0) + 1
    if args.target_precision is not None:
        print(f"labelled automatically: raw ensemble confidence >= {threshold:.4f} in this batch")
    print(f"wrote {args.out}: {len(paths)} images, " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
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
    parser.add_argument("--calibration", help="the model's predictions of the calibration split, for "
                                              "--target-precision (default: the test_clean stage's, "
                             f"{paths.CALIBRATION_PREDICTIONS.format(model='<model>')})")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto",
                        help="where the torch ensemble runs: auto (CUDA when present), cpu, cuda or cuda:N")


run = run_predict
