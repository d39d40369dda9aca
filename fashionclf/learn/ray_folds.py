"""Fold jobs as Ray tasks: the peer of learn/folds.py's local pool, for a cluster.

One task per fold, each with its job's CPU threads (``num_cpus``) or one GPU, so the results are the
bytes the local pool gives on the same machine type: the same seeds, thread counts and job. The
images go into the object store once; every task reads them from there, zero-copy on its node.
DVC stays on the driver: it hashes deps, collects outs and writes dvc.lock as for a local run.
Resume points are written where the tasks run: on a shared filesystem (or one node) an interrupted
run resumes; elsewhere its folds start over.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from .folds import FoldJob, train_fold_job

ADDRESS_VARIABLE = "RAY_ADDRESS"  # Ray's own: "auto", "ray://head:10001", "host:6379", "local"


def ray_address() -> str | None:
    """The cluster cv_train sends its folds to, or None for the local pool."""
    return os.environ.get(ADDRESS_VARIABLE) or None


def run_on_ray(jobs: list[FoldJob], data: np.ndarray, labels: np.ndarray, workers: int,
               address: str | None = None) -> Iterator[tuple[int, dict, dict]]:
    """Yield (fold, weights, state) as the fold tasks finish; ``workers`` is the local pool's and is
    not used (Ray schedules the tasks by their resources)."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address or ray_address(), include_dashboard=False, log_to_driver=False)
    task = ray.remote(train_fold_job)
    data_ref, labels_ref = ray.put(data), ray.put(labels)
    pending = [task.options(num_cpus=job.threads, num_gpus=int(job.device.type == "cuda"), max_retries=0)
               .remote(job, data_ref, labels_ref) for job in jobs]
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        for ref in pending:  # an interrupted driver leaves no fold training on
            ray.cancel(ref, force=True)
