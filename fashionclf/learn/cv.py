"""Grouped stratified cross-validation: splits, one fold job per split, the fold checkpoints, and the
out-of-fold predictions (the data the best model is chosen on, and calibration fits on)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..core.errors import DataError, assert_disjoint
from ..core.params import ModelParams, TrainParams
from ..core.registry import HEAD_MODELS, TAIL_MODELS
from ..core.scoring import classification_metrics, predictions_table
from ..core.store import atomic_dir
from .checkpoint import FoldCheckpoint
from .folds import FoldJob, fold_threads, fold_workers, run_locally, start_worker_server
from .head import head_features
from .inference import pick_device
from .models import build_for_weights, count_macs, count_parameters, normalization
from .tail import tail_features


def grouped_folds(labels: np.ndarray, groups: np.ndarray, folds: int, seed: int, categories=None):
    """StratifiedGroupKFold splits; every category needs at least ``folds`` source images. Label k is
    ``categories[k]`` (the name an error gives; without them, the index)."""
    for category in np.unique(labels):
        n_groups = len(np.unique(groups[labels == category]))
        if n_groups < folds:
            name = repr(categories[category]) if categories is not None else f"index {category}"
            raise DataError(f"category {name} has {n_groups} source images for training, fewer than "
                            f"train.folds={folds}")
    from sklearn.model_selection import StratifiedGroupKFold  # slow import: only where needed
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    splits = list(splitter.split(np.zeros(len(labels)), labels, groups))
    for k, (train_idx, val_idx) in enumerate(splits):
        assert_disjoint(groups[train_idx], groups[val_idx], f"fold {k}")
    return splits


def fingerprint(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def fold_jobs(model_params: ModelParams, train: TrainParams, images: np.ndarray, splits, categories,
              device, resume_dir: Path | None) -> tuple[list[FoldJob], Path | None]:
    """One job per split, and the folder of their resume points (keyed by everything that decides
    the result, so a changed param never resumes a stale fold)."""
    threads = fold_threads(len(splits), fold_workers(train, len(splits), device), train.threads)
    sample = np.ascontiguousarray(images[:: max(1, len(images) // 64)]).tobytes()
    key = fingerprint(run_params_of(model_params, train), threads, len(images), hashlib.sha1(sample).hexdigest())
    resume = resume_dir / key if resume_dir else None
    jobs = [FoldJob(k, train_idx, val_idx, model_params, train, categories, device, threads[k],
                    resume / f"fold{k}.pt" if resume else None)
            for k, (train_idx, val_idx) in enumerate(splits)]
    return jobs, resume


def run_params_of(model_params: ModelParams, train: TrainParams) -> dict:
    return {"model": model_params.model_dump(), "train": train.model_dump(exclude={"models", "fold_workers"})}


def preprocessing_of(model_params: ModelParams, images: np.ndarray, flip_tta: bool = False) -> dict:
    mean, std = normalization(model_params.name)
    return {"canvas_size": int(images.shape[1]), "image_size": model_params.image_size,
            "input": "RGB float in [0, 1], letterboxed to canvas_size; the model resizes to image_size",
            "mean": list(mean), "std": list(std)} | ({"flip_tta": True} if flip_tta else {})


def fold_runner():
    """Where the folds train: Ray tasks when RAY_ADDRESS names a cluster, else the local pool."""
    from .ray_folds import ray_address, run_on_ray
    return run_on_ray if ray_address() else run_locally


def cross_validate(model_params: ModelParams, train: TrainParams, images: np.ndarray, manifest: pd.DataFrame,
                   out_dir: Path, resume_dir: Path | None = None, runner=None) -> dict:
    """Train ``train.folds`` models into out_dir/fold<k>.pt; return CV metrics (out-of-fold accuracy
    and macro F1 with 95% intervals), the training curves and the out-of-fold predictions.
    ``runner(jobs, data, labels, workers)`` (default ``fold_runner()``) yields (fold, weights,
    state) as folds finish; ``data`` are the images, or a frozen-feature head's features of them."""
    runner = runner or fold_runner()
    categories = sorted(manifest["category"].unique())
    labels = manifest["category"].map({c: i for i, c in enumerate(categories)}).to_numpy()
    device = pick_device(train.device, "params.yaml: train.device")
    if runner is run_locally:
        start_worker_server(fold_workers(train, train.folds, device))
    splits = grouped_folds(labels, manifest["group"].astype(str).to_numpy(), train.folds, train.seed, categories)
    jobs, resume = fold_jobs(model_params, train, images, splits, categories, device, resume_dir)
    workers = fold_workers(train, len(splits), device)
    data = images
    if model_params.name in HEAD_MODELS:  # its folds share one backbone pass per photo and view
        data = head_features(model_params, train, images, len(categories), device, workers * train.threads)
    elif model_params.name in TAIL_MODELS:  # ...and a tail's folds one pass of the frozen part
        data = tail_features(model_params, train, images, len(categories), device, workers * train.threads)
    oof = np.zeros((len(images), len(categories)))
    oof_fold = np.zeros(len(images), dtype=int)
    states = {}
    with atomic_dir(out_dir) as tmp:  # the fold checkpoints appear together or not at all
        finished = runner(jobs, data, labels, workers)
        for k, weights, state in tqdm(finished, total=len(jobs), desc=f"cv {model_params.name}"):
            FoldCheckpoint(model_params.name, weights, categories,
                           preprocessing_of(model_params, images, train.flip_tta), run_params_of(model_params, train),
                           k, state["best_epoch"], state["best_loss"], state["history"]).save(tmp / f"fold{k}.pt")
            oof[splits[k][1]] = state["best_probs"].numpy()
            oof_fold[splits[k][1]] = k
            states[k] = state
    if resume and resume.is_dir():
        for f in resume.iterdir():
            f.unlink()
        resume.rmdir()
    ordered = [states[k] for k in range(len(jobs))]
    table = predictions_table(manifest["path"], labels, oof, categories)
    for position, column in enumerate(["copy", "variant"], start=1):
        table.insert(position, column, manifest[column].to_numpy())
    table.insert(3, "fold", oof_fold)
    return {"metrics": cv_metrics(model_params, labels, oof, categories, ordered), "oof": table,
            "history": [row for s in ordered for row in s["history"]], "device": str(device)}


def cv_metrics(model_params: ModelParams, labels: np.ndarray, oof: np.ndarray, categories, states) -> dict:
    per_image_loss = -np.log(np.clip(oof[np.arange(len(labels)), labels], 1e-12, None))
    out_of_fold = classification_metrics(labels, oof, categories)
    out_of_fold.pop("per_class")
    model = build_for_weights(model_params.name, len(categories), model_params.image_size)
    return {"avg_val_loss": round(float(np.mean([s["best_loss"] for s in states])), 6),
            "best_fold_loss": min(round(s["best_loss"], 6) for s in states),
            "oof": {"log_loss": round(float(per_image_loss.mean()), 6), **out_of_fold},
            "parameters": count_parameters(model), "macs": count_macs(model, model_params.image_size),
            "image_size": model_params.image_size,
            "folds": [{"val_loss": round(s["best_loss"], 6), "val_accuracy": round(s["best_accuracy"], 6),
                       "epochs": s["epoch"], "threads": s["threads"]} for s in states]}
