"""export: the best model's fold ensemble as ONNX (dynamic batch) plus labels.json, so a shop can
serve it with onnxruntime alone. torch.export (dynamo) is PyTorch's path now that TorchScript is
deprecated; it also handles the antialiased resize inside each model, which TorchScript-based ONNX
export cannot."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .inference import Ensemble
from .store import atomic_dir

ONNX_FILE = "model.onnx"
LABELS_FILE = "labels.json"
OPSET = 18


def export_onnx(model_dir: Path | str, out_dir: Path | str) -> dict:
    ensemble = Ensemble.load(model_dir)
    canvas = ensemble.preprocessing["canvas_size"]
    example = (torch.rand(2, 3, canvas, canvas),)
    batch = torch.export.Dim("batch", min=1)
    labels = {"model": ensemble.name, "folds": len(ensemble.models), "categories": ensemble.categories,
              "preprocessing": ensemble.preprocessing, "input": "image", "output": "probabilities"}
    with atomic_dir(out_dir) as tmp:
        program = torch.onnx.export(ensemble, example, input_names=["image"], output_names=["probabilities"],
                                    dynamic_shapes=({0: batch},), opset_version=OPSET, dynamo=True,
                                    verbose=False)
        program.save(str(tmp / ONNX_FILE))
        (tmp / LABELS_FILE).write_text(json.dumps(labels, indent=2) + "\n")
    return labels


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
        return self.session.run(None, {"image": x.numpy() if hasattr(x, "numpy") else x})[0]
