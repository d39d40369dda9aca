"""What `fashionclf label` (serve/label.py) computes, on Ray Data, from one laptop to a cluster.

Ray does the distribution: it reads the image list, runs the model in an actor pool (one model per
actor, ``map_batches`` with a class), streams the scores to Parquet and shows the progress. This
module only says what each step computes:

1. ``list_paths`` (serve/sources.py): image URIs from folders, globs or manifests (CSV or Parquet
   with a path column), on the local disk, pyarrow's filesystems (``s3://``, ``gs://``) or any fsspec one.
2. ``Scorer`` (the actor): stat and read each file, decode it with the imaging rules of training
   (canvas, letterbox), run the fold ensemble (torch) or its ONNX export, and return the raw
   probabilities, or an error for a file that is not a usable image. One row in, one row out.
3. The scores of each run go under ``OUT/scores/<model version>/`` (serve/label_store.py). A rerun skips every image whose
   key (path, size, mtime) is already scored by the same model version, so a killed job loses at
   most the batches in flight.
4. Deciding: every scored image not yet in ``OUT/labels`` is decided in one batch, as ``predict``
   decides its batch: the conformal review queue of ``--target-precision`` (report.calibration),
   which is a threshold on the raw ensemble confidence. The rows go to
   ``OUT/labels/batch=<stamp>/`` with predict's columns plus ``needs_review``.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ..core.errors import DataError, ImageRejected
from ..data.imaging import image_statistics
from ..learn.onnx_runner import LABELS_FILE, ONNX_FILE
from .label_store import now, parquet_files
from .predictor import Predictor, decide, row_columns
from .sources import Filesystems, is_uri, read_image, stat


# --- scoring (one model per Ray actor) ---------------------------------------------------------

def model_files(runner: str, model_dir: Path, exported: Path) -> dict[str, bytes]:
    """The files one runner loads: the fold checkpoints, or the ONNX file and its labels. They travel
    to the actors through Ray's object store, so a cluster's nodes need no copy of the project."""
    paths = [exported, exported.parent / LABELS_FILE] if runner == "onnx" else sorted(model_dir.glob("fold*.pt"))
    return {path.name: path.read_bytes() for path in paths}


def model_version(files: dict[str, bytes]) -> str:
    """A content hash of the weights that label."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name])
    return digest.hexdigest()[:16]


def keys_of(paths, sizes, mtimes) -> np.ndarray:
    """One int64 per (path, size, mtime): what a rerun compares to skip images already scored."""
    return np.array([int.from_bytes(hashlib.blake2b(f"{p}\0{s}\0{m}".encode(), digest_size=8).digest(),
                                    "little", signed=True) for p, s, m in zip(paths, sizes, mtimes)], np.int64)


def keyed_new(batch: dict, scored: np.ndarray) -> dict:
    """Ray Data task: add size, mtime and the key to each path, and keep only the paths whose key is
    not among the ``scored`` ones (sorted)."""
    filesystems = Filesystems()
    stats = [stat(str(p), filesystems) for p in batch["path"]]
    size = np.array([s for s, _ in stats], np.int64)
    mtime = np.array([m for _, m in stats], np.int64)
    key = keys_of(batch["path"], size, mtime)
    at = np.minimum(np.searchsorted(scored, key), max(len(scored) - 1, 0))
    new = ~(scored[at] == key) if len(scored) else np.ones(len(key), bool)
    return {"path": np.asarray(batch["path"])[new], "size": size[new], "mtime_ns": mtime[new], "key": key[new]}


class Scorer:
    """Ray Data actor: one model, loaded once; a batch of paths -> raw ensemble probabilities."""

    def __init__(self, files, runner: str, model_name: str, threads: int, device: str):
        import tempfile

        import ray

        torch.set_num_threads(threads)
        files = ray.get(files) if isinstance(files, ray.ObjectRef) else files
        with tempfile.TemporaryDirectory(prefix="fashionclf-model-") as tmp:  # both runners load into memory
            folder = Path(tmp) / model_name
            folder.mkdir()
            for name, data in files.items():
                (folder / name).write_bytes(data)
            if runner == "onnx":
                self.predictor = Predictor(exported=str(folder / ONNX_FILE), threads=threads)
            else:
                self.predictor = Predictor(model_name, models_dir=str(folder.parent), device=device, threads=threads)
        self.filesystems = Filesystems()

    def __call__(self, batch: dict) -> dict:
        canvas = self.predictor.canvas_size
        pixels = np.zeros((len(batch["path"]), canvas, canvas, 3), np.uint8)
        errors = []
        for k, path in enumerate(batch["path"]):
            try:
                pixels[k] = read_image(str(path), canvas, self.filesystems)
                errors.append("")
            except ImageRejected as exc:
                errors.append(str(exc))
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2)
        probs = self.predictor.score(x, errors)
        for j, category in enumerate(self.predictor.categories):
            batch[f"raw_{category}"] = probs[:, j]
        batch.update(image_statistics(x.numpy()))  # for the shift check
        batch["error"] = np.array(errors, dtype=object)
        return batch


def labelled_table(scores: pa.Table, categories, calibration, target_precision, min_confidence,
                   with_probability=None) -> tuple[pa.Table, float]:
    """The labelled rows (serve/predictor.py's decide) of one batch of scored images, with their keys."""
    raw = np.stack([scores.column(f"raw_{c}").to_numpy(zero_copy_only=False) for c in categories], 1)
    columns, threshold = decide(scores.column("path").to_pylist(), raw, scores.column("error").to_pylist(),
                                categories, calibration, min_confidence, target_precision, with_probability)
    table = pa.table({name: pa.array(columns[name].tolist() if columns[name].dtype == object else columns[name])
                      for name in row_columns(categories)})
    for name in ["size", "mtime_ns", "key"]:
        table = table.append_column(name, scores.column(name))
    return table, threshold


def loaded(load, what: Path):
    """``load()``, with a model file that cannot be read turned into one clear error."""
    try:
        return load()
    except (FileNotFoundError, DataError):
        raise
    except Exception as exc:  # torch.load and onnxruntime raise many types for a damaged file
        raise DataError(f"cannot load the model in {what}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") \
            from None


def sample_pixels(paths: list[str], canvas: int, n: int) -> torch.Tensor | None:
    """Up to ``n`` decodable images among the first paths to label, for timing the runners."""
    pixels, filesystems = [], Filesystems()
    for path in paths[:4 * n]:
        try:
            pixels.append(read_image(path, canvas, filesystems))
        except ImageRejected:
            continue
        if len(pixels) == n:
            break
    return torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2) if pixels else None


def images_per_second(predictor, pixels, repeats: int = 3) -> float:
    predictor(pixels)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        predictor(pixels)
    return repeats * len(pixels) / (time.perf_counter() - start)


def choose_runner(args, torch_predictor, paths: list[str]) -> tuple[str, str]:
    """(runner, why): the ONNX export or the torch fold ensemble (``torch_predictor``). With --runner
    auto both are timed here, with each actor's thread count, on a batch of the inputs (or a
    generated one), and the faster labels."""
    model_name, exported = torch_predictor.model_name, Path(args.exported)
    has_export = exported.is_file() and json.loads((exported.parent / LABELS_FILE).read_text())["model"] == model_name
    if args.runner == "onnx" and not has_export:
        raise FileNotFoundError(f"--runner onnx: {exported} is not an export of {model_name} (run `dvc repro export`)")
    if args.runner != "auto":
        return args.runner, "chosen with --runner"
    if not has_export:
        return "torch", f"{exported} is not an export of {model_name}"
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        runners = {"torch": torch_predictor,
                   "onnx": loaded(lambda: Predictor(exported=str(exported), threads=args.threads), exported)}
        canvas = torch_predictor.canvas_size
        pixels = sample_pixels(paths, canvas, args.batch_size)
        if pixels is None:
            pixels = torch.randint(0, 256, (args.batch_size, 3, canvas, canvas), dtype=torch.uint8)
        speed = {name: images_per_second(runner, pixels) for name, runner in runners.items()}
    finally:
        torch.set_num_threads(threads)
    best = max(speed, key=speed.get)
    return best, ", ".join(f"{name} {rate:.0f} img/s" for name, rate in speed.items()) + \
        f" per actor ({args.threads} thread(s), batch {len(pixels)})"


def score_new(args, sources, runner: str, model_name: str, files, fs, scores_dir: str, scored) -> int:
    """Score every source not scored before into scores_dir/run-<stamp>/ (Ray streams it)."""
    import ray

    todo = sources.map_batches(
        keyed_new, fn_kwargs={"scored": np.sort(scored)}, batch_size=args.batch_size, batch_format="numpy")
    scored = todo.map_batches(
        Scorer, batch_size=args.batch_size, batch_format="numpy",
        fn_constructor_kwargs={"files": ray.put(files), "runner": runner, "model_name": model_name,
                               "threads": args.threads, "device": args.device},
        compute=ray.data.ActorPoolStrategy(size=args.actors), num_cpus=args.threads, num_gpus=args.gpus_per_actor)
    run_dir = f"{scores_dir}/run-{now()}"
    scored.write_parquet(args.out.split("://")[0] + "://" + run_dir if is_uri(args.out) else run_dir,
                         min_rows_per_file=args.rows_per_file, ray_remote_args={"num_cpus": 0})
    return sum(pq.read_metadata(f, filesystem=fs).num_rows for f in parquet_files(fs, run_dir))


