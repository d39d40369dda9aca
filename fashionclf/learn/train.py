"""Training one fold: a small train_one_epoch / validate pair, the weights' moving average, precise
BatchNorm and resume points. Cross-validation over folds is learn/cv.py; running fold jobs, learn/folds.py.

Images arrive as uint8 arrays decoded once by clean. They stay uint8, on the training device
(a GPU holds the whole set), and each batch is converted and augmented where it is; the loss is
summed on the device too, so a step never waits for the host (see bench/train_throughput.py).
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn

from ..core.params import ModelParams, TrainParams
from .inference import as_float, autocast, predict_proba
from .models import build_model


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    deterministic_kernels()


def deterministic_kernels() -> None:
    """Deterministic kernels, without torch's default in that mode of filling every new tensor's
    memory first: no op here reads memory it has not written, so the results are the same bytes,
    and the fill was a quarter of efficientnet_lite0's training step on CPU (measured)."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False


def light_augment(x: torch.Tensor, train: TrainParams, gen: torch.Generator,
                  noise_gen: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample horizontal flip, a small random shift per batch, optional Gaussian noise, on the
    batch's device. The few per-sample draws come from ``gen`` (on the CPU); the per-pixel noise
    from ``noise_gen``, a generator on the batch's device (default: ``gen``, for CPU batches)."""
    x = as_float(x)
    flip = (torch.rand(len(x), generator=gen) < train.flip).to(x.device, non_blocking=True)
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    pad = max(1, int(x.shape[-1] * train.shift))
    dx, dy = torch.randint(-pad, pad + 1, (2,), generator=gen).tolist()
    x = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
    if train.noise_aug_sigma > 0:
        sigma = (torch.rand(len(x), 1, 1, 1, generator=gen) * train.noise_aug_sigma).to(x.device, non_blocking=True)
        noise = torch.randn(x.shape, generator=noise_gen or gen, device=(noise_gen or gen).device)
        x = (x + noise.to(x.device) * sigma).clamp_(0, 1)
    return x.contiguous(memory_format=torch.channels_last)


def scaled_lr(model_params: ModelParams, train: TrainParams) -> float:
    """The linear scaling rule (Goyal et al. 2017): models.*.lr is for train.lr_reference_batch
    images a step; another batch size scales it in proportion."""
    return model_params.lr * train.batch_size / train.lr_reference_batch


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Adam:
    """Adam with its fused kernel: on CPU 9% (resnet18) to 17% (resnet50) faster per step at 28 px
    than the default multi-tensor Adam, the same update."""
    return torch.optim.Adam(model.parameters(), lr=lr, fused=True)


def weight_average(model: torch.nn.Module, decay: float) -> AveragedModel | None:
    """An exponential moving average of the weights (and BatchNorm buffers), or None for decay 0.

    A model trained for a few dozen steps lands wherever its last steps left it; the average of its
    last ~1/(1-decay) steps moves less with the seed and the float order (bench/seed_spread.py)."""
    if decay <= 0:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def take_step(loss, optimizer, scheduler, ema, model) -> None:
    """One optimizer and schedule step on ``loss``; the weight average follows ``model``."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    if ema is not None:
        ema.update_parameters(model)


def fold_generators(train: TrainParams, fold: int, device) -> tuple[torch.Generator, torch.Generator | None]:
    """Seeds everything for ``fold``: (the CPU generator of its per-sample draws, a generator on
    ``device`` for per-pixel noise, or None on the CPU)."""
    seed_everything(train.seed + fold)
    gen = torch.Generator().manual_seed(train.seed + fold)
    noise_gen = torch.Generator(device).manual_seed(train.seed + fold) if device.type != "cpu" else None
    return gen, noise_gen


def train_one_epoch(model, optimizer, scheduler, x, y, train: TrainParams, device, gen, ema=None,
                    noise_gen=None, step_model=None) -> float:
    """One pass over (x, y): uint8 or float pixels, on the host or on ``device``. ``step_model``: the
    module that runs the steps (a torch.compile'd ``model``), default ``model``."""
    model.train()
    step_model = step_model or model
    order = torch.randperm(len(x), generator=gen).to(x.device)
    # the loss is summed on the device, in float64 as Python floats would: no host sync per step
    total, seen = torch.zeros((), dtype=torch.float64, device=device), 0
    for start in range(0, len(x), train.batch_size):
        idx = order[start:start + train.batch_size]
        if len(idx) < 2:  # BatchNorm needs two samples
            continue
        xb = light_augment(x[idx].to(device, non_blocking=True), train, gen, noise_gen)
        yb = y[idx].to(device, non_blocking=True)
        with autocast(device):
            loss = F.cross_entropy(step_model(xb), yb)
        take_step(loss, optimizer, scheduler, ema, model)
        total += loss.detach().double() * len(idx)
        seen += len(idx)
    return total.item() / max(seen, 1)


def recalibrate_batchnorm(model, x, train: TrainParams, device, seed: int = 0, batch_size: int = 64,
                          limit: int = 256) -> None:
    """Recompute BatchNorm statistics for the current weights ("precise BN", torch's update_bn).

    Short schedules move the weights faster than the running averages follow; evaluation with
    stale statistics cost up to 15 points of accuracy here (efficientnet_lite0). The images get
    the training augmentation, noise included: statistics of clean images alone cost
    efficientnet_lite0 30 points of accuracy under noise.
    """
    # rows spread evenly over x (it is ordered by category), in equal batches: update_bn's
    # cumulative average weights batches, not rows
    n = max(min(len(x), limit) // batch_size * batch_size, min(len(x), batch_size))
    sample = x[torch.linspace(0, len(x) - 1, n).round().long().to(x.device)]
    gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator(sample.device).manual_seed(seed) if sample.device.type != "cpu" else None
    batches = [light_augment(sample[s:s + batch_size], train, gen, noise_gen) for s in range(0, len(sample), batch_size)]
    update_bn(batches, model, device)


def validate(model, x, y, batch_size, device) -> tuple[float, float, torch.Tensor]:
    """(mean cross-entropy, accuracy, probabilities) on the given tensors."""
    probs = predict_proba(model, x, batch_size, device)
    loss = F.nll_loss(torch.log(probs.clamp_min(1e-12)), y).item()
    return loss, (probs.argmax(1) == y).float().mean().item(), probs


BEST_IS_EVALUATED = "the evaluated model's weights"


def weights_copy(model) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def more_epochs(state: dict, epochs: int, train: TrainParams) -> bool:
    """Whether the fold trains on: epochs left and no early stop."""
    return state["epoch"] < epochs and state["bad_epochs"] < train.patience


def new_fold_state() -> dict:
    return {"epoch": 0, "best_loss": float("inf"), "best_accuracy": -1.0, "best_state": None, "bad_epochs": 0,
            "history": []}


def improves(state: dict, val_loss: float, val_acc: float, keep_epoch: str) -> bool:
    """Whether this epoch beats the kept one. By accuracy, ties go to the lower loss. Kept by loss, a
    short one-cycle run kept an earlier, less accurate epoch in 11 of 35 mobilenet_v2 folds: the
    weights' moving average grows confident faster than accurate (docs/noise-and-gate.md)."""
    if keep_epoch == "val_loss":
        return val_loss < state["best_loss"]
    best_acc = state["best_accuracy"]
    return val_acc > best_acc or (val_acc == best_acc and val_loss < state["best_loss"])


def record_epoch(state: dict, fold: int, lr: float, train_loss: float, val_loss: float, val_acc: float,
                 val_probs: torch.Tensor, evaluated, keep_epoch: str) -> None:
    """Counts the epoch into the fold's history; keeps the evaluated model's weights and its validation
    probabilities (the out-of-fold predictions, without a second pass) when it beats the kept epoch."""
    state["epoch"] += 1
    state["history"].append({"fold": fold, "epoch": state["epoch"], "lr": lr, "train_loss": train_loss,
                             "val_loss": val_loss, "val_accuracy": val_acc})
    if improves(state, val_loss, val_acc, keep_epoch):
        state.update(best_loss=val_loss, best_accuracy=val_acc, best_epoch=state["epoch"], bad_epochs=0,
                     best_probs=val_probs.cpu(), best_state=weights_copy(evaluated))
    else:
        state["bad_epochs"] += 1


def save_resume_point(path: Path, model, optimizer, scheduler, gen, state, ema=None, noise_gen=None) -> None:
    """Everything the next epoch needs. When this epoch was the best, its weights are the evaluated
    model's, already saved once: the point holds a marker instead of a second copy (a resume point
    is 4-5 copies of the weights, and writing them was a third of a small fold's time, measured)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    if state.get("best_epoch") == state["epoch"]:
        state = {**state, "best_state": BEST_IS_EVALUATED}
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(), "state": state,
                "ema": None if ema is None else ema.state_dict(),
                "noise_generator": None if noise_gen is None else noise_gen.get_state()}, tmp)
    os.replace(tmp, path)


def train_fold(model_params: ModelParams, train: TrainParams, categories, x_train, y_train, x_val, y_val,
               fold: int, device, resume_path: Path | None = None):
    """Train one fold with Adam + OneCycle + early stopping; resumes from ``resume_path`` if present.

    The images (uint8 or float pixels) move to ``device`` once; on a GPU the per-pixel noise is
    drawn there, from its own generator, so GPU runs are seeded too but differ from CPU runs."""
    gen, noise_gen = fold_generators(train, fold, device)
    x_train, y_train = x_train.to(device), y_train.to(device)
    x_val, y_val = x_val.to(device), y_val.to(device)
    model = build_model(model_params.name, len(categories), train.pretrained, model_params.image_size,
                        model_params.regularize)
    model = model.to(device).to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if train.compile else model
    lr = scaled_lr(model_params, train)
    optimizer = make_optimizer(model, lr)
    steps = max(1, sum(1 for s in range(0, len(x_train), train.batch_size) if len(x_train) - s >= 2))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, pct_start=train.pct_start,
                                                    total_steps=steps * model_params.epochs)
    ema = weight_average(model, model_params.ema_decay)
    evaluated = model if ema is None else ema.module  # the model that is validated and kept
    state = new_fold_state()
    if resume_path is not None and resume_path.is_file():
        saved = torch.load(resume_path, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["model"])
        if ema is not None:
            ema.load_state_dict(saved["ema"])
        if noise_gen is not None:
            noise_gen.set_state(saved["noise_generator"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        gen.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])  # dropout draws from the global generator
        state = saved["state"]
        if state["best_state"] == BEST_IS_EVALUATED:
            state["best_state"] = weights_copy(evaluated)
    while more_epochs(state, model_params.epochs, train):
        lr = scheduler.get_last_lr()[0]
        train_loss = train_one_epoch(model, optimizer, scheduler, x_train, y_train, train, device, gen, ema,
                                     noise_gen, step_model)
        recalibrate_batchnorm(evaluated, x_train, train, device, train.seed + fold)
        val_loss, val_acc, val_probs = validate(evaluated, x_val, y_val, train.eval_batch_size, device)
        record_epoch(state, fold, lr, train_loss, val_loss, val_acc, val_probs, evaluated, train.keep_epoch)
        # none after the last epoch: a finished fold's result goes to the caller
        if resume_path is not None and more_epochs(state, model_params.epochs, train):
            save_resume_point(resume_path, model, optimizer, scheduler, gen, state, ema, noise_gen)
    evaluated.load_state_dict(state["best_state"])
    return evaluated.cpu(), state
