"""Training: a small train_one_epoch / evaluate pair, grouped stratified CV, resumable folds.

Images arrive as uint8 arrays decoded once by clean; each model converts them once to a float
tensor at its own size, so an epoch is pure model work (see bench/train_throughput.py).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .balance import DataError, assert_disjoint
from .models import build_model, normalization
from .params import ModelParams, TrainParams
from .store import atomic_dir


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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


def light_augment(x: torch.Tensor, noise_sigma: float, gen: torch.Generator) -> torch.Tensor:
    """Per-sample horizontal flip, a small random shift per batch, optional Gaussian noise."""
    flip = torch.rand(len(x), generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    pad = max(1, x.shape[-1] // 16)
    dx, dy = (int(v) for v in torch.randint(-pad, pad + 1, (2,), generator=gen))
    x = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
    if noise_sigma > 0:
        sigma = torch.rand(len(x), 1, 1, 1, generator=gen) * noise_sigma
        x = (x + torch.randn(x.shape, generator=gen) * sigma).clamp_(0, 1)
    return x.contiguous(memory_format=torch.channels_last)


def autocast(device: torch.device):
    """bf16 mixed precision on CUDA; plain fp32 on CPU (bf16 measured no faster there)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def train_one_epoch(model, optimizer, scheduler, x, y, batch_size, device, noise_sigma, gen) -> float:
    model.train()
    order = torch.randperm(len(x), generator=gen)
    total, seen = 0.0, 0
    for start in range(0, len(x), batch_size):
        idx = order[start:start + batch_size]
        if len(idx) < 2:  # BatchNorm needs two samples
            continue
        xb = light_augment(x[idx], noise_sigma, gen).to(device, non_blocking=True)
        yb = y[idx].to(device, non_blocking=True)
        with autocast(device):
            loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(idx)
        seen += len(idx)
    return total / max(seen, 1)


@torch.no_grad()
def recalibrate_batchnorm(model, x, batch_size, device, noise_sigma: float = 0.0, seed: int = 0,
                          limit: int = 512) -> None:
    """Recompute BatchNorm running statistics for the current weights ("precise BN").

    Short schedules move the weights faster than the running averages follow; evaluation
    with stale statistics cost up to 15 points of accuracy here (efficientnet_lite0). The
    images get the training augmentation, noise included: statistics of clean images alone
    cost efficientnet_lite0 30 points of accuracy under noise.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    # rows spread evenly over x (it is ordered by category), in equal batches: the cumulative
    # average weights batches, not rows
    n = max(min(len(x), limit) // batch_size * batch_size, min(len(x), batch_size))
    sample = x[torch.linspace(0, len(x) - 1, n).round().long()]
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, len(sample), batch_size):
        batch = light_augment(sample[start:start + batch_size], noise_sigma, gen)
        with autocast(device):
            model(batch.to(device, non_blocking=True))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


@torch.no_grad()
def predict_proba(model, x, batch_size, device) -> torch.Tensor:
    model.eval()
    out = []
    for start in range(0, len(x), batch_size):
        with autocast(device):
            logits = model(x[start:start + batch_size].to(device, non_blocking=True))
        out.append(torch.softmax(logits.float(), dim=1).cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


def evaluate(model, x, y, batch_size, device) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) on the given tensors."""
    probs = predict_proba(model, x, batch_size, device)
    loss = F.nll_loss(torch.log(probs.clamp_min(1e-12)), y).item()
    return loss, (probs.argmax(1) == y).float().mean().item()


def grouped_folds(labels: np.ndarray, groups: np.ndarray, folds: int, seed: int):
    """StratifiedGroupKFold splits; every category needs at least ``folds`` source images."""
    for category in np.unique(labels):
        n_groups = len(np.unique(groups[labels == category]))
        if n_groups < folds:
            raise DataError(f"category index {category} has {n_groups} source images, fewer than "
                            f"train.folds={folds}")
    from sklearn.model_selection import StratifiedGroupKFold  # slow import: only where needed
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    splits = list(splitter.split(np.zeros(len(labels)), labels, groups))
    for k, (train_idx, val_idx) in enumerate(splits):
        assert_disjoint(groups[train_idx], groups[val_idx], f"fold {k}")
    return splits


def fingerprint(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train_fold(model_params: ModelParams, train: TrainParams, categories, x_train, y_train, x_val, y_val,
               fold: int, device, resume_path: Path | None = None):
    """Train one fold with Adam + OneCycle + early stopping; resumes from ``resume_path`` if present."""
    seed_everything(train.seed + fold)
    gen = torch.Generator().manual_seed(train.seed + fold)
    model = build_model(model_params.name, len(categories), train.pretrained, model_params.image_size)
    model = model.to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=model_params.lr)
    steps = max(1, sum(1 for s in range(0, len(x_train), train.batch_size) if len(x_train) - s >= 2))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=model_params.lr,
                                                    total_steps=steps * model_params.epochs, pct_start=0.25)
    state = {"epoch": 0, "best_loss": float("inf"), "best_state": None, "bad_epochs": 0, "history": []}
    if resume_path is not None and resume_path.is_file():
        saved = torch.load(resume_path, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        gen.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])  # dropout draws from the global generator
        state = saved["state"]
    while state["epoch"] < model_params.epochs and state["bad_epochs"] < train.patience:
        lr = scheduler.get_last_lr()[0]
        train_loss = train_one_epoch(model, optimizer, scheduler, x_train, y_train, train.batch_size,
                                     device, train.noise_aug_sigma, gen)
        recalibrate_batchnorm(model, x_train, 64, device, train.noise_aug_sigma, train.seed + fold)
        val_loss, val_acc = evaluate(model, x_val, y_val, 256, device)
        state["epoch"] += 1
        state["history"].append({"fold": fold, "epoch": state["epoch"], "lr": lr, "train_loss": train_loss,
                                 "val_loss": val_loss, "val_accuracy": val_acc})
        if val_loss < state["best_loss"]:
            state.update(best_loss=val_loss, best_accuracy=val_acc, best_epoch=state["epoch"], bad_epochs=0,
                         best_state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
        else:
            state["bad_epochs"] += 1
        if resume_path is not None:
            resume_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = resume_path.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "generator": gen.get_state(),
                        "torch_rng": torch.get_rng_state(), "state": state}, tmp)
            os.replace(tmp, resume_path)
    model.load_state_dict(state["best_state"])
    return model.cpu(), state


def cross_validate(model_params: ModelParams, train: TrainParams, images: np.ndarray, manifest,
                   out_dir: Path, resume_dir: Path | None = None) -> dict:
    """Train ``train.folds`` models; write out_dir/fold<k>.pt; return metrics and curves."""
    categories = sorted(manifest["category"].unique())
    labels = manifest["category"].map({c: i for i, c in enumerate(categories)}).to_numpy()
    groups = manifest["group"].astype(str).to_numpy()
    splits = grouped_folds(labels, groups, train.folds, train.seed)
    device = pick_device(train.device)
    x = to_tensor(images)  # canonical size: augmentation and noise apply before the model's resize
    y = torch.from_numpy(labels.copy()).long()
    mean, std = normalization(model_params.name)
    preprocessing = {"canvas_size": int(images.shape[1]), "image_size": model_params.image_size,
                     "input": "RGB float in [0, 1], letterboxed to canvas_size; the model resizes to image_size",
                     "mean": list(mean), "std": list(std)}
    key = fingerprint(asdict(model_params), asdict(train) | {"models": None}, len(x),
                      hashlib.sha1(np.ascontiguousarray(images[:: max(1, len(images) // 64)]).tobytes()).hexdigest())
    folds, history = [], []
    started = time.perf_counter()
    with atomic_dir(out_dir) as tmp:  # the fold checkpoints appear together or not at all
        for k, (train_idx, val_idx) in enumerate(tqdm(splits, desc=f"cv {model_params.name}")):
            resume = resume_dir / key / f"fold{k}.pt" if resume_dir else None
            t_idx, v_idx = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
            model, state = train_fold(model_params, train, categories, x[t_idx], y[t_idx], x[v_idx], y[v_idx],
                                      k, device, resume)
            torch.save({"model_name": model_params.name, "state_dict": model.state_dict(),
                        "categories": categories, "preprocessing": preprocessing,
                        "params": {"model": asdict(model_params), "train": asdict(train) | {"models": None}},
                        "fold": k, "epoch": state["best_epoch"], "val_loss": state["best_loss"],
                        "history": state["history"]}, tmp / f"fold{k}.pt")
            folds.append({"val_loss": round(state["best_loss"], 6), "val_accuracy": round(state["best_accuracy"], 6),
                          "epochs": state["epoch"]})
            history.extend(state["history"])
        seconds = time.perf_counter() - started
    if resume_dir and (resume_dir / key).is_dir():
        for f in (resume_dir / key).iterdir():
            f.unlink()
        (resume_dir / key).rmdir()
    metrics = {"avg_val_loss": round(float(np.mean([f["val_loss"] for f in folds])), 6),
               "best_fold_loss": min(f["val_loss"] for f in folds), "folds": folds}
    return {"metrics": metrics, "history": history, "seconds": seconds, "device": str(device)}
