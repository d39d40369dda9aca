"""Fold jobs and the local worker pool that runs them.

A fold job is everything one fold needs besides the images: its indices, params, device, thread
count and resume point. ``train_fold_job`` takes the job and the data as arguments, so the local
pool here and any other runner (a Ray task, this process) are peers over one function, and no
module state carries data from one process to another.
"""
from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.params import ModelParams, TrainParams
from ..core.registry import HEAD_MODELS, TAIL_MODELS
from .head import fit_head
from .inference import to_pixels
from .tail import fit_tail
from .train import train_fold


@dataclass(frozen=True)
class FoldJob:
    fold: int
    train_idx: np.ndarray
    val_idx: np.ndarray
    model_params: ModelParams
    train: TrainParams
    categories: list[str]
    device: torch.device
    threads: int
    resume: Path | None


def train_fold_job(job: FoldJob, data, labels: np.ndarray) -> tuple[int, dict, dict]:
    """One fold: (fold, weights of the best epoch, its state). ``data``, as an array or a
    (shared-memory) tensor: the uint8 pixels of every image, each batch of which becomes floats on the
    training device (as_float), bit for bit the values that converting the whole set first gives; for
    a frozen-feature head, every image's features (learn/head.head_features), since it fits only its
    classifier; for a tail, its frozen part's activations (learn/tail.tail_features)."""
    data = data.numpy() if isinstance(data, torch.Tensor) else data
    y = torch.from_numpy(np.array(labels)).long()
    torch.set_num_threads(job.threads)
    frozen = {**dict.fromkeys(HEAD_MODELS, fit_head), **dict.fromkeys(TAIL_MODELS, fit_tail)}
    if job.model_params.name in frozen:
        model, state = frozen[job.model_params.name](job.model_params, job.train, job.categories,
                                                     torch.from_numpy(data), y, job.train_idx, job.val_idx,
                                                     job.fold, job.device)
    else:
        model, state = train_fold(job.model_params, job.train, job.categories, to_pixels(data[job.train_idx]),
                                  y[job.train_idx], to_pixels(data[job.val_idx]), y[job.val_idx], job.fold,
                                  job.device, job.resume)
    state.pop("best_state")  # the model holds it
    state["threads"] = torch.get_num_threads()
    return job.fold, model.state_dict(), state


def fold_workers(train: TrainParams, folds: int, device) -> int:
    return min(train.fold_workers, folds) if device.type == "cpu" else 1


def fold_threads(folds: int, workers: int, threads: int) -> list[int]:
    """Each fold's thread count on CPU: ``threads``, but a last round with fewer folds than workers
    shares the idle workers' cores (3 folds on 2 workers: the third trains with 2 threads; on 2 cores
    that trained efficientnet_lite0 at 128 px 1.53x faster than 1 thread). Float results depend
    on the thread count, so this is a function of the params, not of the timing."""
    full = folds // workers * workers
    last = folds - full
    return [threads if k < full else threads * (workers // last) for k in range(folds)]


def die_with_parent() -> None:
    """Linux: a fold worker gets SIGKILL when the stage process dies (kill -9, the OOM killer),
    instead of training on, orphaned, and writing resume points that a rerun is about to use."""
    if sys.platform == "linux":
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


def start_worker() -> None:
    """Pool initializer. Ctrl-C is the stage process's to handle: it leaves the pool, which
    terminates the workers. A worker that died of the SIGINT itself would be replaced by one blocked
    on the task queue, whose lock Pool.terminate then waits for forever (seen: a Ctrl-C'd
    `dvc repro` hung under load)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()


def worker_context():
    """Where fold workers start: a fork server on Linux, spawn elsewhere. Not a plain fork: once a
    process has run a multi-threaded (OpenMP) op, a child forked from it hangs in its first
    multi-threaded op (seen: a last-round fold on 2 threads, forked from a test process that had
    trained on 2). The server imports torch once, and the modules that deterministic mode imports
    (1.2 s, measured), before it runs any op; the workers fork from it."""
    if sys.platform != "linux":
        return torch.multiprocessing.get_context("spawn")
    context = torch.multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, "torch._dynamo", "torch._inductor.config"])
    return context


def start_worker_server(workers: int) -> None:
    """Start the fork server now (Linux, more than one worker), so that its imports run while the
    caller splits the data (about 2 s of a small stage's start-up, measured); the pool reuses it."""
    if workers > 1 and sys.platform == "linux":
        from multiprocessing import forkserver
        worker_context()  # sets the server's preload
        forkserver.ensure_running()


def _run_packed(task: tuple) -> tuple[int, dict, dict]:
    return train_fold_job(*task)


def run_locally(jobs: list[FoldJob], data: np.ndarray, labels: np.ndarray,
                workers: int) -> Iterator[tuple[int, dict, dict]]:
    """Train the folds: ``workers`` processes at once, round by round, each fold with its job's
    threads; one after another in this process on a GPU (or with one worker). The data (train_fold_job)
    reach the workers in shared memory: each task carries a handle to them, not a copy."""
    if workers == 1:
        yield from (train_fold_job(job, data, labels) for job in jobs)
        return
    shared = torch.from_numpy(np.empty(data.shape, data.dtype)).share_memory_()
    shared.numpy()[...] = data  # one copy, not one per worker
    tasks = [(job, shared, labels) for job in jobs]
    full = len(jobs) // workers * workers
    with worker_context().Pool(workers, start_worker) as pool:
        yield from pool.imap_unordered(_run_packed, tasks[:full])
        # only now the last round: its folds' extra threads get cores of their own
        yield from pool.imap_unordered(_run_packed, tasks[full:])  # leaving the block terminates the workers
