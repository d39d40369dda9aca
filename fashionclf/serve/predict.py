"""Batch labelling of new product images with a trained fold ensemble or its ONNX export.

Preprocessing comes from the checkpoint (canvas size, model input size): the same letterbox as
clean, then the same resize as training. Decoding runs in DataLoader workers beside the model.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..core.errors import ImageRejected
from ..core.params import DEVICE_PATTERN, NEEDS_REVIEW
from ..data.imaging import decode
from ..learn.checkpoint import best_model_name
from ..learn.inference import Ensemble, pick_device
from ..learn.onnx_runner import OnnxEnsemble
from ..report.calibration import calibrated_threshold, scaled


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

    def __init__(self, model: str | None = None, exported: str | None = None, models_dir="models",
                 best="reports/best_model.json", device: str = "auto"):
        self.device = pick_device(device, "--device")  # the torch ensemble's; onnxruntime runs on the CPU
        if exported:
            self.module = OnnxEnsemble(exported)
            self.model_name = self.module.name
            self.name = f"{self.module.name} (exported)"
        else:
            self.model_name = model or best_model_name(best)
            self.module = Ensemble.load(Path(models_dir) / self.model_name)
            self.name = self.model_name
        self.temperature = 1.0  # set by calibrate()
        self.categories = self.module.categories
        self.canvas_size = self.module.preprocessing["canvas_size"]

    @torch.inference_mode()
    def __call__(self, batch_uint8: torch.Tensor) -> np.ndarray:
        x = (batch_uint8.float() / 255).contiguous(memory_format=torch.channels_last)
        if isinstance(self.module, Ensemble):
            probs = self.module.predict_proba(x, max(len(x), 1), self.device)
        else:
            probs = self.module(x)
        return probs if self.temperature == 1.0 else scaled(probs, self.temperature)

    def calibrate(self, oof_csv, target_precision: float) -> float:
        """Temperature-scale the probabilities as fitted on the model's out-of-fold predictions and
        return the confidence threshold at which those reach ``target_precision``."""
        if not Path(oof_csv).is_file():
            raise FileNotFoundError(f"{oof_csv} not found: --target-precision needs the model's out-of-fold "
                                    f"predictions (run `dvc repro`, or pass --oof)")
        self.temperature, threshold = calibrated_threshold(pd.read_csv(oof_csv, keep_default_na=False),
                                                           target_precision)
        return threshold


def predict_paths(predictor: Predictor, paths, batch_size=64, workers=2, min_confidence=0.0):
    """Yield one result dict per path, in input order."""
    loader = torch.utils.data.DataLoader(DecodedImages(paths, predictor.canvas_size), batch_size=batch_size,
                                         num_workers=workers, shuffle=False,
                                         persistent_workers=False, prefetch_factor=4 if workers else None)
    for pixels, indices, errors in loader:
        ok = [k for k, e in enumerate(errors) if not e]
        probs = predictor(pixels[ok]) if ok else np.zeros((0, len(predictor.categories)))
        row_probs = dict(zip(ok, probs))
        for k, (index, error) in enumerate(zip(indices.tolist(), errors)):
            row = {"path": str(paths[index]), "category": "", "confidence": "", "error": error}
            if not error:
                p = row_probs[k]
                best = int(p.argmax())
                row["confidence"] = round(float(p[best]), 6)
                row["category"] = predictor.categories[best] if p[best] >= min_confidence else NEEDS_REVIEW
                row.update({f"p_{c}": round(float(v), 6) for c, v in zip(predictor.categories, p)})
            yield row


def run_predict(args) -> int:
    if args.batch_size < 1 or not 0 <= args.min_confidence <= 1:
        print("error: --batch-size must be >= 1 and --min-confidence within [0, 1]", file=sys.stderr)
        return 2
    if args.target_precision is not None and not (0 < args.target_precision <= 1 and args.min_confidence == 0):
        print("error: --target-precision must be within (0, 1] and not combined with --min-confidence",
              file=sys.stderr)
        return 2
    if not DEVICE_PATTERN.fullmatch(args.device):
        print(f"error: --device must be auto, cpu, cuda or cuda:N, got {args.device!r}", file=sys.stderr)
        return 2
    predictor = Predictor(args.model, args.exported, device=args.device)
    if args.target_precision is not None:
        oof = args.oof or f"plots/predictions/oof/{predictor.model_name}.csv"
        args.min_confidence = predictor.calibrate(oof, args.target_precision)
        print(f"target precision {args.target_precision:g}: temperature {predictor.temperature:g} and threshold "
              f"{args.min_confidence:.4f}, both fitted on {oof}; confidences below are {NEEDS_REVIEW}")
    paths = list_inputs(args.inputs)
    columns = ["path", "category", "confidence"] + [f"p_{c}" for c in predictor.categories] + ["error"]
    counts = {}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        rows = predict_paths(predictor, paths, args.batch_size, args.workers, args.min_confidence)
        for row in tqdm(rows, total=len(paths), desc=f"predict ({predictor.name})", mininterval=1):
            writer.writerow(row)
            key = "error" if row["error"] else row["category"]
            counts[key] = counts.get(key, 0) + 1
    print(f"wrote {args.out}: {len(paths)} images, " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0
