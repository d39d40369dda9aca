"""Frozen-feature heads: a pretrained backbone as it is, and only its classifier fitted.

The backbone runs once per fold over each training photo twice (as it is, and once with the
training augmentation: flip, shift, noise) and over each validation photo once; the classifier, a
linear layer from zero, then trains on those features for ``epochs`` passes with the fold recipe of
learn/train.py (Adam, one-cycle schedule, early stopping on validation loss, optional weight
average), which takes seconds. A fold costs about three forward passes per photo, where
fine-tuning costs about three per photo and epoch (forward and backward): on 2,682 real photos of
ten article types a linear model on efficientnet_lite0's features at 224 px labelled unseen photos
as well as lite0 fine-tuned at 128 px for 5 epochs (92.4 against 92.8%, docs/own-photos.md).
Resume points are not written: a fold's cost is its forward passes, not an epoch loop.

The fitted model is the same module as a fine-tuned one (the backbone's weights unchanged), so
checkpoints, the test stages, predict and the ONNX export treat it like any other.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..core.params import ModelParams, TrainParams
from .inference import predict_proba
from .models import Normalized, build_model
from .train import (fold_generators, light_augment, make_optimizer, more_epochs, new_fold_state, record_epoch,
                    scaled_lr, take_step, weight_average, weights_copy)


def frozen_features(model: Normalized, views: list[torch.Tensor], batch_size: int, device,
                    augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """The backbone's pooled features of each view (the classifier bypassed), the views one after
    another; ``augment`` maps each batch of a view first, where given."""
    head, model.net._fc = model.net._fc, nn.Identity()
    try:
        if augment is None:
            return torch.cat([predict_proba(model, view, batch_size, device, softmax=False) for view in views])
        return torch.cat([predict_proba(model, augment(view[s:s + batch_size].to(device)), batch_size, device,
                                        softmax=False)
                          for view in views for s in range(0, len(view), batch_size)])
    finally:
        model.net._fc = head


def head_probabilities(head: nn.Module, features: torch.Tensor, views: int) -> torch.Tensor:
    """Mean softmax over the views of each photo (features stacked view after view)."""
    with torch.inference_mode():
        probs = torch.softmax(head(features).float(), dim=1)
    return probs.view(views, -1, probs.shape[1]).mean(0)


def fit_head(model_params: ModelParams, train: TrainParams, categories, x_train, y_train, x_val, y_val,
             fold: int, device, resume_path: Path | None = None) -> tuple[Normalized, dict]:
    """(the model with its fitted classifier, the fold's state), as learn/train.py's train_fold
    returns them and with its arguments; ``resume_path`` is not used (see the module's note)."""
    gen, noise_gen = fold_generators(train, fold, device)
    x_train, y_train = x_train.to(device), y_train.to(device)
    x_val, y_val = x_val.to(device), y_val.to(device)
    model = build_model(model_params.name, len(categories), pretrained=True, image_size=model_params.image_size)
    model = model.to(device).to(memory_format=torch.channels_last).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    head = model.net._fc
    nn.init.zeros_(head.weight)  # a deterministic start at chance, as learn/models.py start_steady
    nn.init.zeros_(head.bias)
    head.weight.requires_grad_(True)
    head.bias.requires_grad_(True)

    batch = train.eval_batch_size
    augment = lambda pixels: light_augment(pixels, train, gen, noise_gen)  # noqa: E731
    f_train = torch.cat([frozen_features(model, [x_train], batch, device),
                         frozen_features(model, [x_train], batch, device, augment)])
    val_views = [x_val, x_val.flip(-1)] if train.flip_tta else [x_val]
    f_val = frozen_features(model, val_views, batch, device)

    state = fit_classifier(head, f_train, y_train.repeat(2), f_val, y_val.cpu(), len(val_views), model_params.epochs,
                           train, fold, gen, scaled_lr(model_params, train),
                           weight_average(head, model_params.ema_decay))
    with torch.no_grad():
        head.load_state_dict(state["best_state"])
    state["best_state"] = weights_copy(model)
    return model.cpu(), state


def fit_classifier(head: nn.Module, f_train, y_train, f_val, y_val, val_views: int, epochs: int, train: TrainParams,
                   fold: int, gen: torch.Generator, lr: float, ema=None) -> dict:
    """``epochs`` passes of Adam over the training features with the one-cycle schedule, validated
    after each (``val_views`` views of each validation photo, averaged) and stopped early as a fine-tuned
    fold is; the state of train_fold, the best epoch's classifier weights in ``best_state``."""
    optimizer = make_optimizer(head, lr)
    steps = max(1, -(-len(f_train) // train.batch_size))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, pct_start=train.pct_start,
                                                    total_steps=steps * epochs)
    evaluated = head if ema is None else ema.module
    state = new_fold_state()
    while more_epochs(state, epochs, train):
        lr_now = scheduler.get_last_lr()[0]
        order = torch.randperm(len(f_train), generator=gen).to(f_train.device)
        total = 0.0
        for start in range(0, len(order), train.batch_size):
            idx = order[start:start + train.batch_size]
            loss = F.cross_entropy(head(f_train[idx]), y_train[idx])
            take_step(loss, optimizer, scheduler, ema, head)
            total += loss.item() * len(idx)
        probs = head_probabilities(evaluated, f_val, val_views).cpu()
        val_loss = F.nll_loss(torch.log(probs.clamp_min(1e-12)), y_val).item()
        val_acc = (probs.argmax(1) == y_val).float().mean().item()
        record_epoch(state, fold, lr_now, total / len(f_train), val_loss, val_acc, probs, evaluated,
                     train.keep_epoch)
    return state
