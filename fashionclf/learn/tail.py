"""Fine-tuned tails: a pretrained EfficientNet-Lite frozen but for its last block and final 1x1
convolution, which are fine-tuned with the classifier (models.LiteTrunk and LiteTail).

A frozen-feature head (learn/head.py) fits only the classifier on ImageNet's pooled features, and
those features do not separate a catalogue's near-synonyms (casual against sports shoes, t-shirts
against tops): the ten article types stopped at about 92-93% however the heads were combined
(docs/own-photos.md). Fine-tuning the whole network at 128 px got no further, and at 224 px it costs
three times as much per epoch. The last block works on a 7x7 grid at 224 px: a training step of it
and the final convolution cost 6 ms per photo where one of the whole network cost 104 ms at 224 px
and 30 ms at 128 (one thread, learn/timing.Workload). The frozen part's activations, the bulk of
the work, are computed once per stage for every fold (head.shared_views: as it is, augmented once,
mirrored with flip_tta). Trained on the ten types' shop photos and tested on their unseen ones,
that reached 95.0% where the head got 92.4% (bench/tail_finetune.py; from block 11 on, the last two
stages: 95.2-95.4% for four times the training).

The fitted model is the same module as a fine-tuned one (the frozen weights are ImageNet's, the
same in every fold), so checkpoints, the test stages, predict and the ONNX export treat it like any
other; the fold ensemble runs the frozen part once per photo (learn/inference.Ensemble)."""
from __future__ import annotations

import numpy as np
import torch

from ..core.params import ModelParams, TrainParams
from .head import fit_head, frozen_backbone, shared_views
from .models import LiteTail, Normalized, lite_trunk


def tail_features(model_params: ModelParams, train: TrainParams, images: np.ndarray, classes: int, device,
                  threads: int) -> np.ndarray:
    """Every photo's trunk activations (head.shared_views): float32 (views, photos, C, H, W)."""
    model = frozen_backbone(model_params, classes, device)
    return shared_views(lite_trunk(model), train, images, device, threads, f"trunk {model_params.name}")


def fit_tail(model_params: ModelParams, train: TrainParams, categories, features: torch.Tensor, labels: torch.Tensor,
             train_idx: np.ndarray, val_idx: np.ndarray, fold: int, device) -> tuple[Normalized, dict]:
    """(the model with its fine-tuned tail, the fold's state), as head.fit_head fits a classifier:
    the same loop over the shared activations (both views an epoch), validated and stopped early
    as any fold."""
    return fit_head(model_params, train, categories, features, labels, train_idx, val_idx, fold, device,
                    trainable=LiteTail)
