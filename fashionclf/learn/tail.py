"""Fine-tuned tails: a pretrained EfficientNet-Lite frozen but for its last block and final 1x1
convolution, which are fine-tuned with the classifier.

A frozen-feature head (learn/head.py) fits only the classifier on ImageNet's pooled features, and
those features do not separate a catalogue's near-synonyms (casual against sports shoes, t-shirts
against tops): the ten article types stopped at about 92-93% however the heads were combined
(docs/own-photos.md). Fine-tuning the whole network at 128 px got no further, and at 224 px it costs
three times as much per epoch. The last block works on a 7x7 grid at 224 px, so tuning it and the
final convolution costs a sixth of a full training step per photo (measured: 6-7 s an epoch over
2,682 photos on 2 threads), while the frozen part's activations, the bulk of the work, are computed
once per stage for every fold (head.shared_views: as it is, augmented once, mirrored with flip_tta).
Trained on the ten types' shop photos and tested on their unseen ones, that reached 95.0% where the
head got 92.4% (bench/frozen_head.py; the whole network from block 11 on: 95.4% at four times the
training cost).

The fitted model is the same module as a fine-tuned one (the frozen weights are ImageNet's, the
same in every fold), so checkpoints, the test stages, predict and the ONNX export treat it like any
other."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..core.params import ModelParams, TrainParams
from .head import fit_head, frozen_backbone, shared_views
from .models import Normalized

TAIL_BLOCKS = 1  # the network's last blocks that are fine-tuned (lite0-lite2: its one 320/352-channel block)


class Trunk(nn.Module):
    """The frozen part of a lite model: resize and normalise (as Normalized), the stem and every block
    but the last TAIL_BLOCKS, in eval mode; its output is what the tail trains on."""

    def __init__(self, model: Normalized):
        super().__init__()
        self.model = model
        self.image_size = model.image_size  # for the inference batch cap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.model.net
        x = net._swish(net._bn0(net._conv_stem(self.model.prepare(x))))
        for block in net._blocks[:-TAIL_BLOCKS]:
            x = block(x)
        return x


class Tail(nn.Module):
    """The fine-tuned end of a lite network, its own modules (not copies): the last TAIL_BLOCKS blocks,
    the final convolution, pooling and the classifier, run as the network's forward runs them."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.blocks = nn.ModuleList(net._blocks[-TAIL_BLOCKS:])
        self.first = len(net._blocks) - TAIL_BLOCKS
        self.drop_connect_rate = net._global_params.drop_connect_rate or 0.0
        self.count = len(net._blocks)
        self.conv_head, self.bn1, self.swish = net._conv_head, net._bn1, net._swish
        self.pool, self.dropout, self.fc = net._avg_pooling, net._dropout, net._fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k, block in enumerate(self.blocks, start=self.first):
            x = block(x, drop_connect_rate=self.drop_connect_rate * k / self.count)
        x = self.swish(self.bn1(self.conv_head(x)))
        return self.fc(self.dropout(self.pool(x).flatten(1)))


def tail_features(model_params: ModelParams, train: TrainParams, images: np.ndarray, classes: int, device,
                  threads: int) -> np.ndarray:
    """Every photo's trunk activations (head.shared_views): float32 (views, photos, C, H, W)."""
    model = frozen_backbone(model_params, classes, device)
    return shared_views(Trunk(model), train, images, device, threads, f"trunk {model_params.name}")


def fit_tail(model_params: ModelParams, train: TrainParams, categories, features: torch.Tensor, labels: torch.Tensor,
             train_idx: np.ndarray, val_idx: np.ndarray, fold: int, device) -> tuple[Normalized, dict]:
    """(the model with its fine-tuned tail, the fold's state), as head.fit_head fits a classifier:
    the same loop over the shared activations (both views an epoch), validated and stopped early
    as any fold."""
    return fit_head(model_params, train, categories, features, labels, train_idx, val_idx, fold, device,
                    trainable=Tail)
