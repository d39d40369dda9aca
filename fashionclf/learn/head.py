"""Frozen-feature heads: a pretrained backbone as it is, and only its classifier fitted.

The backbone's features are computed once per stage, for every photo the folds train or validate
on (head_features): each photo as it is, once with the training augmentation (flip, shift, noise),
and mirrored where ``train.flip_tta`` is set. Each fold then fits a linear classifier, from zero, on
its training photos' plain and augmented features (fit_head), with the fold recipe of
learn/train.py (Adam, one-cycle schedule, early stopping, optional weight average): seconds, no
backbone pass. So a head costs two forward passes per photo in all (three with flip_tta), where its
folds used to compute their own, five with 3 folds; fine-tuning costs about three per photo and
epoch (forward and backward). On 2,682 real photos of ten article types a linear model on
efficientnet_lite0's features at 224 px labelled unseen photos as well as lite0 fine-tuned at
128 px for 5 epochs (92.4 against 92.8%, docs/own-photos.md). Resume points are not written: a
fold's cost is seconds.

The fitted model is the same module as a fine-tuned one (the backbone's weights unchanged), so
checkpoints, the test stages, predict and the ONNX export treat it like any other.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..core.params import ModelParams, TrainParams
from .inference import as_float, predict_proba, to_pixels
from .models import Normalized, build_model
from .train import (fold_generators, light_augment, make_optimizer, more_epochs, new_fold_state, record_epoch,
                    scaled_lr, take_step, weight_average, weights_copy)


def encoded(encoder: nn.Module, pixels: torch.Tensor, batch_size: int, device,
            augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
            progress: Callable[[int], object] | None = None) -> torch.Tensor:
    """``encoder``'s output for each photo, on the host; ``augment`` maps each batch first, where
    given; ``progress(n)`` is called after each batch of n photos."""
    augment = augment or (lambda batch: batch)
    out = []
    for start in range(0, len(pixels), batch_size):
        batch = pixels[start:start + batch_size]
        out.append(predict_proba(encoder, augment(batch.to(device)), len(batch), device, softmax=False))
        if progress:
            progress(len(batch))
    return torch.cat(out)


def frozen_features(model: Normalized, pixels: torch.Tensor, batch_size: int, device,
                    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    progress: Callable[[int], object] | None = None) -> torch.Tensor:
    """The backbone's pooled features of each photo (the classifier bypassed), as ``encoded``."""
    head, model.net._fc = model.net._fc, nn.Identity()
    try:
        return encoded(model, pixels, batch_size, device, augment, progress)
    finally:
        model.net._fc = head


def head_probabilities(head: nn.Module, features: torch.Tensor, views: int, batch_size: int = 256) -> torch.Tensor:
    """Mean softmax over the views of each photo (features stacked view after view), in eval mode."""
    head.eval()
    with torch.inference_mode():
        probs = torch.cat([torch.softmax(head(features[start:start + batch_size]).float(), dim=1)
                           for start in range(0, len(features), batch_size)])
    return probs.view(views, -1, probs.shape[1]).mean(0)


PLAIN, AUGMENTED, MIRRORED = 0, 1, 2  # the views head_features stacks


def frozen_backbone(model_params: ModelParams, classes: int, device) -> Normalized:
    """The pretrained model in eval mode, nothing trainable, its classifier started at zero (a
    deterministic start at chance, as learn/models.py start_steady)."""
    model = build_model(model_params.name, classes, pretrained=True, image_size=model_params.image_size)
    model = model.to(device).to(memory_format=torch.channels_last).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    nn.init.zeros_(model.net._fc.weight)
    nn.init.zeros_(model.net._fc.bias)
    return model


def shared_views(encoder: nn.Module, train: TrainParams, images: np.ndarray, device, threads: int,
                 desc: str) -> np.ndarray:
    """``encoder``'s output for every photo, for all folds at once: float32 (views, photos, ...), the
    views PLAIN, AUGMENTED (one draw of the training augmentation, seeded by ``train.seed``) and, with
    ``train.flip_tta``, MIRRORED. Computed with ``threads`` torch threads (the cores the folds would
    use: a fixed count, since float results depend on it)."""
    gen, noise_gen = fold_generators(train, 0, device)  # one draw for every fold, seeded by train.seed
    views = [None, lambda x: light_augment(x, train, gen, noise_gen)]  # PLAIN, AUGMENTED
    if train.flip_tta:
        views.append(lambda x: as_float(x.flip(-1)))  # MIRRORED
    pixels, before = to_pixels(images), torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tqdm(total=len(views) * len(images), desc=desc, unit="img") as bar:
            return torch.stack([encoded(encoder, pixels, train.eval_batch_size, device, view, bar.update)
                                for view in views]).numpy()
    finally:
        torch.set_num_threads(before)


def head_features(model_params: ModelParams, train: TrainParams, images: np.ndarray, classes: int, device,
                  threads: int) -> np.ndarray:
    """Every photo's frozen features (shared_views): float32 (views, photos, features)."""
    model = frozen_backbone(model_params, classes, device)
    model.net._fc = nn.Identity()
    return shared_views(model, train, images, device, threads, f"features {model_params.name}")


def fit_head(model_params: ModelParams, train: TrainParams, categories, features: torch.Tensor, labels: torch.Tensor,
             train_idx: np.ndarray, val_idx: np.ndarray, fold: int, device,
             trainable: Callable[[nn.Module], nn.Module] = lambda net: net._fc) -> tuple[Normalized, dict]:
    """(the model with its fitted classifier, the fold's state), as learn/train.py's train_fold
    returns them; ``features`` are head_features' for every photo, ``labels`` every photo's.
    ``trainable(model.net)`` is the module fitted on them (a tail's, learn/tail.py)."""
    gen, _ = fold_generators(train, fold, device)
    features, train_idx, val_idx = features.to(device), torch.as_tensor(train_idx), torch.as_tensor(val_idx)
    f_train = torch.cat([features[PLAIN, train_idx], features[AUGMENTED, train_idx]])
    val_views = [PLAIN, MIRRORED] if train.flip_tta else [PLAIN]
    f_val = torch.cat([features[view, val_idx] for view in val_views])
    model = frozen_backbone(model_params, len(categories), device)
    head = trainable(model.net)
    for p in head.parameters():
        p.requires_grad_(True)
    state = fit_classifier(head, f_train, labels[train_idx].repeat(2).to(device), f_val, labels[val_idx],
                           len(val_views), model_params.epochs, train, fold, gen, scaled_lr(model_params, train),
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
        head.train()  # a tail's BatchNorm and dropout (learn/tail.py); nothing for a linear classifier
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
