"""Inference shared by training, the test stages, predict and export: tensors, devices and the
fold ensemble (the mean softmax of the fold models, written once)."""
from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import ParamError
from ..core.registry import HEAD_MODELS, TAIL_MODELS
from .checkpoint import FoldCheckpoint, load_folds
from .models import (LiteTail, Normalized, build_for_weights, fitted_prefixes, fuse_batchnorm, fused_network,
                     lite_trunk)


def set_threads(threads: int) -> None:
    """A fixed thread count: float results (and so metrics) depend on how work is split."""
    torch.set_num_threads(threads)


def pick_device(name: str, key: str = "device") -> torch.device:
    """auto: CUDA when present, else the CPU. Asking for CUDA where there is none is a parameter
    error naming ``key`` (a params.yaml key or a flag), not a traceback from deep inside torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not (torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()):
        raise ParamError(f"{key} is {name!r}, but this machine has no such CUDA device (use auto or cpu)")
    return device


def autocast(device: torch.device):
    """bf16 mixed precision on CUDA; plain fp32 on CPU (bf16 measured no faster there)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> uint8 (N, 3, H, W), channels-last, without a copy: a quarter of the float
    memory, so a training set fits on the device and is converted a batch at a time (as_float).
    ``images`` may be read-only (a stage's memory-mapped image set): the tensor is only read."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable", UserWarning)
        return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)


def as_float(x: torch.Tensor) -> torch.Tensor:
    """A batch of pixels as to_tensor gives them: uint8 -> float in [0, 1] (the same values, bit for
    bit, as converting the whole set first); float batches pass through."""
    if x.dtype != torch.uint8:
        return x
    return (x.float() / 255).contiguous(memory_format=torch.channels_last)


def to_tensor(images: np.ndarray, image_size: int | None = None) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, S, S) in [0, 1], channels-last (faster convs on CPU);
    resized to ``image_size`` if given (models resize their input themselves)."""
    chunks = []
    for start in range(0, len(images), 2048):
        x = torch.from_numpy(np.array(images[start:start + 2048])).permute(0, 3, 1, 2).float() / 255
        if image_size is not None and x.shape[-1] != image_size:
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True,
                              align_corners=False).clamp_(0, 1)
        chunks.append(x)
    x = torch.cat(chunks) if chunks else torch.zeros(0, 3, images.shape[1], images.shape[2])
    return x.contiguous(memory_format=torch.channels_last)


INFERENCE_PIXELS = 64 * 224 * 224  # the most pixels one inference batch holds at a model's working size


def inference_batch(model: nn.Module, x: torch.Tensor, batch_size: int) -> int:
    """``batch_size``, capped at INFERENCE_PIXELS of the model's working size (its input, or the size
    it resizes that to, where larger): per image, efficientnet_lite0 at 224 px ran 3x slower at
    batch 256 than at 32-128, where one layer's activations reach gigabytes (bench/inference_batch.py).
    The default pipeline's 28-48 px models keep their batch."""
    side = max(x.shape[-1], getattr(model, "image_size", None) or 0)
    return max(1, min(batch_size, INFERENCE_PIXELS // (side * side)))


@torch.inference_mode()
def predict_proba(model: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device,
                  softmax: bool = True) -> torch.Tensor:
    """Class probabilities (or the model's own output with ``softmax=False``) for float or uint8
    pixels (as_float), on the host or already on ``device``, ``batch_size`` at a time at most
    (inference_batch)."""
    model.eval()
    batch_size = inference_batch(model, x, batch_size)
    out = []
    for start in range(0, len(x), batch_size):
        with autocast(device):
            y = model(as_float(x[start:start + batch_size].to(device, non_blocking=True)))
        out.append((torch.softmax(y.float(), dim=1) if softmax else y.float()).cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


def shares_frozen_part(checkpoints: list[FoldCheckpoint], architecture: Normalized) -> bool:
    """Whether the folds differ only where they were fitted, sharing every other weight bit for bit:
    a frozen-feature head's classifier (learn/head.py) or a fine-tuned tail's end (learn/tail.py).
    Then the shared part serves every fold in one pass, a ``folds``-th of its cost."""
    name = checkpoints[0].model_name
    if len(checkpoints) < 2 or name not in HEAD_MODELS + TAIL_MODELS:
        return False
    fitted = fitted_prefixes(name, architecture.net)
    first = checkpoints[0].state_dict
    return all(ckpt.state_dict.keys() == first.keys()
               and all(torch.equal(value, first[key]) for key, value in ckpt.state_dict.items()
                       if not key.startswith(fitted))
               for ckpt in checkpoints[1:])


def fold_end(checkpoint: FoldCheckpoint, architecture: Normalized, fused: bool) -> nn.Module:
    """One fold's own part: a head's classifier, or a tail (BatchNorm folded in, where ``fused``)."""
    model = copy.deepcopy(architecture)
    model.load_state_dict(checkpoint.state_dict)
    if checkpoint.model_name in HEAD_MODELS:
        return model.net._fc.eval()
    tail = LiteTail(model.net).eval()
    return (fused_network(tail) if fused else tail).to(memory_format=torch.channels_last)


class Ensemble(nn.Module):
    """The fold models of one trained model: [N, 3, canvas, canvas] floats in [0, 1] -> the mean
    softmax. Each fold model resizes and normalises its input itself, so this module is all a
    server needs (export traces it as it is).

    ``fused``: each BatchNorm folded into its convolution, for inference in PyTorch. Export keeps
    the unfused modules, whose state_dict keys it relies on (onnxruntime fuses them itself).

    ``flip_tta`` (the checkpoint's preprocessing, from train.flip_tta): every fold model also sees
    the mirrored image, and the mean is over both; twice the inference, for the test stages, predict
    and the export alike, so the review threshold is chosen on what serving computes.

    Frozen-feature heads (learn/head.py) are fold models that share their backbone bit for bit, and
    fine-tuned tails (learn/tail.py) all but their last block and final convolution: that shared
    part runs once per image and each fold's own part reads its output (``shared``), the same
    probabilities as running every fold model, for a ``folds``-th of the shared part's work."""

    def __init__(self, checkpoints: list[FoldCheckpoint], fused: bool = True):
        super().__init__()
        if not checkpoints:
            raise FileNotFoundError("no fold checkpoints found")
        first = checkpoints[0]
        self.name = first.model_name
        self.categories = list(first.categories)
        self.preprocessing = dict(first.preprocessing)
        self.folds = len(checkpoints)
        self.image_size = self.preprocessing["image_size"]
        architecture = build_for_weights(self.name, len(self.categories), self.image_size)
        shared = shares_frozen_part(checkpoints, architecture)
        models = []
        for ckpt in checkpoints[:1] if shared else checkpoints:
            model = copy.deepcopy(architecture)  # 4x faster than another random initialisation (resnet50)
            model.load_state_dict(ckpt.state_dict)
            if shared and self.name in TAIL_MODELS:
                model = lite_trunk(model)
            model = fuse_batchnorm(model.eval()) if fused else model.eval()
            models.append(model.to(memory_format=torch.channels_last))
        self.models = nn.ModuleList(models)
        # shared folds: their common part once (models[0]), then each fold's own part on its output
        self.fold_ends = nn.ModuleList([fold_end(ckpt, architecture, fused) for ckpt in checkpoints]
                                       if shared else [])
        if shared and self.name in HEAD_MODELS:
            models[0].net._fc = nn.Identity()
        self.flip_tta = bool(self.preprocessing.get("flip_tta", False))
        self.eval()

    @classmethod
    def load(cls, model_dir: Path | str, fused: bool = True) -> "Ensemble":
        return cls(load_folds(model_dir), fused)

    @property
    def shared(self) -> bool:
        """Whether the folds share their backbone (heads) or its frozen part (tails), run once per image."""
        return len(self.fold_ends) > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = [x, x.flip(-1)] if self.flip_tta else [x]
        if self.shared:  # the same outputs, in the same order, as running every fold model
            features = [self.models[0](view) for view in views]
            return torch.stack([torch.softmax(end(f).float(), dim=1)
                                for end in self.fold_ends for f in features]).mean(0)
        return torch.stack([torch.softmax(model(view).float(), dim=1)
                            for model in self.models for view in views]).mean(0)

    def predict_proba(self, x: torch.Tensor, batch_size: int = 256, device="cpu") -> np.ndarray:
        device = pick_device(device) if isinstance(device, str) else device
        return predict_proba(self.to(device), x, batch_size, device, softmax=False).numpy()
