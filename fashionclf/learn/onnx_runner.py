"""The exported fold ensemble under onnxruntime: the second runner of a trained model, beside the
torch Ensemble (inference.py). serve/export writes the file this reads."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

ONNX_FILE = "model.onnx"
LABELS_FILE = "labels.json"
INPUT, OUTPUT = "image", "probabilities"


class OnnxEnsemble:
    """The exported ensemble under onnxruntime: [N, 3, canvas, canvas] float32 in [0, 1] -> probabilities."""

    def __init__(self, path: Path | str, threads: int | None = None):
        import onnxruntime as ort

        path = Path(path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        labels = json.loads((path.parent / LABELS_FILE).read_text())
        self.name = labels["model"]
        self.categories = labels["categories"]
        self.preprocessing = labels["preprocessing"]

    def __call__(self, x) -> np.ndarray:
        x = x.numpy() if isinstance(x, torch.Tensor) else x
        return self.session.run(None, {INPUT: np.ascontiguousarray(x, dtype=np.float32)})[0]
