"""label: a whole catalogue on Ray Data, from one laptop to a cluster.

Ray does the distribution: it reads the image list, runs the model in an actor pool (one model per
actor, ``map_batches`` with a class), streams the scores to Parquet and shows the progress. This
module only says what each step computes:

1. ``list_paths``: image URIs from folders, globs or manifests (CSV or Parquet with a path
   column), on the local disk, pyarrow's filesystems (``s3://``, ``gs://``) or any fsspec one.
2. ``Scorer`` (the actor): stat and read each file, decode it with the imaging rules of training
   (canvas, letterbox), run the fold ensemble (torch) or its ONNX export, and return the raw
   probabilities, or an error for a file that is not a usable image. One row in, one row out.
3. The scores of each run go under ``OUT/scores/<model version>/``. A rerun skips every image whose
   key (path, size, mtime) is already scored by the same model version, so a killed job loses at
   most the batches in flight.
4. Deciding: every scored image not yet in ``OUT/labels`` is decided in one batch, as ``predict``
   decides its batch: the conformal review queue of ``--target-precision`` (report.calibration),
   which is a threshold on the raw ensemble confidence. The rows go to
   ``OUT/labels/batch=<stamp>/`` with predict's columns plus ``needs_review``.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch

from ..core.errors import DataError, ImageRejected
from ..core.params import NEEDS_REVIEW
from ..data.imaging import NOT_A_FILE, UNREADABLE, decode
from ..learn.onnx_runner import LABELS_FILE, ONNX_FILE
from .predict import Predictor, calibration_csv, decisions, review_args_problems

SCORES, LABELS = "scores", "labels"
MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")


# --- where the images are --------------------------------------------------------------------

def is_uri(path: str) -> bool:
    return "://" in path


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path inside it) for a local path or a URI: pyarrow's own filesystems
    (s3, gs, hdfs, file) where it has one, else any fsspec filesystem (http, memory, abfs, ...)
    through pyarrow's fsspec adapter."""
    if not is_uri(path):
        return pafs.LocalFileSystem(), str(Path(path).absolute())
    try:
        return pafs.FileSystem.from_uri(path)
    except pa.ArrowInvalid:  # "Unrecognized filesystem type": not one of pyarrow's own
        import fsspec

        fs, inside = fsspec.core.url_to_fs(path)
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), inside


class Filesystems:
    """One filesystem per URI scheme, made once per process (an S3 client is not free)."""

    def __init__(self):
        self.by_scheme = {}

    def resolve(self, uri: str) -> tuple[pafs.FileSystem, str]:
        if not is_uri(uri):
            return filesystem(uri)
        scheme = uri.split("://", 1)[0]
        if scheme not in self.by_scheme:
            self.by_scheme[scheme] = filesystem(uri)[0]
        fs = self.by_scheme[scheme]
        if isinstance(fs, pafs.PyFileSystem):
            return fs, fs.handler.fs._strip_protocol(uri)
        return fs, uri.split("://", 1)[1]


def as_given(item: str, found: str) -> str:
    """A listed file as the user would write it: with the URI's scheme, or, for local paths, absolute
    or relative to the working directory as ``item`` was (as predict writes them)."""
    if is_uri(item):
        return f"{item.split('://', 1)[0]}://{found}"
    return found if Path(item).is_absolute() else os.path.relpath(found)


def list_files(item: str) -> list[str]:
    """The files of a folder (recursively), a glob (``*``, ``?``, ``[``; ``**`` crosses folders) or
    a single file, sorted."""
    fs, inside = filesystem(item)
    if any(ch in inside for ch in "*?["):
        base = inside[:min(inside.index(ch) for ch in "*?[" if ch in inside)].rsplit("/", 1)[0]
        pattern = inside.replace("**/", "*")  # fnmatch's * already crosses '/'
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        return sorted(as_given(item, i.path) for i in infos
                      if i.type == pafs.FileType.File and fnmatch.fnmatchcase(i.path, pattern))
    info = fs.get_file_info(inside)
    if info.type == pafs.FileType.Directory:
        infos = fs.get_file_info(pafs.FileSelector(inside, recursive=True))
        return sorted(as_given(item, i.path) for i in infos if i.type != pafs.FileType.Directory)
    return [item]  # a file, or a path that does not exist (scored as an error, never dropped)


def read_manifest(item: str, path_column: str) -> list[str]:
    """The path column of a CSV or Parquet manifest, on any pyarrow filesystem."""
    import pyarrow.csv as pacsv

    fs, inside = filesystem(item)
    if item.lower().endswith(".csv"):
        with fs.open_input_stream(inside) as stream:
            table = pacsv.read_csv(stream, convert_options=pacsv.ConvertOptions(
                column_types={path_column: pa.string()}))
    else:
        table = pq.read_table(inside, filesystem=fs)
    if path_column not in table.column_names:
        raise ValueError(f"manifest {item} has no {path_column!r} column (--path-column)")
    return [str(p) for p in table.column(path_column).to_pylist() if p is not None and str(p).strip()]


def list_paths(inputs, path_column: str = "path") -> list[str]:
    """Every image path or URI named by ``inputs``: folders, globs, files and manifests."""
    paths = []
    for item in inputs:
        if item.lower().endswith(MANIFEST_SUFFIXES) and not any(ch in item for ch in "*?["):
            paths += read_manifest(item, path_column)
        else:
            paths += list_files(item)
    return paths


def as_dataset(paths: list[str], rows_per_block: int):
    """The paths as a Ray Dataset of blocks of ``rows_per_block`` rows (the unit the actors take).

    Listing and manifests are read here, not in Ray read tasks: with every CPU of a small machine
    held by model actors, a read (or repartition) task that needs a CPU never starts."""
    import ray.data

    column = pa.array(paths, pa.string())
    blocks = [pa.table({"path": column.slice(start, rows_per_block)}) for start in range(0, len(paths), rows_per_block)]
    return ray.data.from_arrow(blocks) if blocks else None


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


def read_image(path: str, canvas: int, filesystems: Filesystems) -> np.ndarray:
    """Decode one image (local path or URI) with the imaging rules of training."""
    if not is_uri(path):
        return decode(path, canvas)
    try:
        fs, inside = filesystems.resolve(path)
        with fs.open_input_stream(inside) as stream:
            data = stream.read()
    except FileNotFoundError:
        raise ImageRejected(NOT_A_FILE, "not found") from None
    except (OSError, ValueError) as exc:
        raise ImageRejected(UNREADABLE, f"{type(exc).__name__}: {exc}") from None
    return decode(data, canvas)


def stat(path: str, filesystems: Filesystems) -> tuple[int, int]:
    """(size, mtime in ns) of a file, (-1, -1) when it cannot be stat'ed (it is then scored as an error)."""
    try:
        fs, inside = filesystems.resolve(path)
        info = fs.get_file_info(inside)
    except (OSError, ValueError):
        return -1, -1
    if info.type != pafs.FileType.File:
        return -1, -1
    return int(info.size if info.size is not None else -1), int(info.mtime_ns or 0)


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
        pixels, errors = [], []
        for path in batch["path"]:
            try:
                pixels.append(read_image(str(path), canvas, self.filesystems))
                errors.append("")
            except ImageRejected as exc:
                pixels.append(None)
                errors.append(str(exc))
        ok = [k for k, e in enumerate(errors) if not e]
        probs = np.zeros((len(errors), len(self.predictor.categories)), np.float32)
        if ok:
            x = torch.from_numpy(np.stack([pixels[k] for k in ok])).permute(0, 3, 1, 2)
            probs[ok] = self.predictor(x)
        for j, category in enumerate(self.predictor.categories):
            batch[f"raw_{category}"] = probs[:, j]
        batch["error"] = np.array(errors, dtype=object)
        return batch


# --- runs ---------------------------------------------------------------------------------------

def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def parquet_files(fs: pafs.FileSystem, folder: str) -> list[str]:
    """The Parquet files below ``folder``, leaving out hidden folders (a batch being written)."""
    infos = fs.get_file_info(pafs.FileSelector(folder, recursive=True, allow_not_found=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet")
                  and "/." not in i.path[len(folder):])


def readable(fs: pafs.FileSystem, files: list[str]) -> tuple[list[str], list[str]]:
    """(whole Parquet files, files a killed job left half written)."""
    good, broken = [], []
    for file in files:
        try:
            with fs.open_input_file(file) as fh:
                pq.read_metadata(fh)
            good.append(file)
        except (OSError, pa.ArrowInvalid):
            broken.append(file)
    return good, broken


def read_column(fs: pafs.FileSystem, files: list[str], columns: list[str]) -> pa.Table:
    if not files:
        return pa.table({c: pa.array([], pa.int64()) for c in columns})
    return pa.concat_tables([pq.read_table(f, columns=columns, filesystem=fs) for f in files])


def decide(scores: pa.Table, categories, calibration, target_precision, min_confidence) -> tuple[pa.Table, float]:
    """predict's rows for one batch of scored images (report.calibration's review queue)."""
    raw = np.stack([scores.column(f"raw_{c}").to_numpy(zero_copy_only=False) for c in categories], 1)
    good = np.array([not e for e in scores.column("error").to_pylist()])
    automatic = np.zeros(len(good), bool)
    shown = np.zeros(raw.shape)
    automatic[good], threshold, shown[good] = decisions(raw[good], calibration, min_confidence, target_precision)
    best = shown.argmax(1)  # before rounding, as predict
    shown = np.round(shown, 6)
    category = np.where(~good, "", np.where(automatic, np.array(categories, dtype=object)[best], NEEDS_REVIEW))
    columns = {"path": scores.column("path"),
               "category": pa.array(category.tolist(), pa.string()),
               "confidence": pa.array(np.where(good, shown.max(1), np.nan))}
    for j, c in enumerate(categories):
        columns[f"p_{c}"] = pa.array(np.where(good, shown[:, j], np.nan))
    columns.update({"error": scores.column("error"), "needs_review": pa.array(good & ~automatic),
                    "size": scores.column("size"), "mtime_ns": scores.column("mtime_ns"),
                    "key": scores.column("key")})
    return pa.table(columns), threshold


def error_reason(error: str) -> str:
    return error.split(":", 1)[0]


def summary(table: pa.Table) -> dict:
    counts = {}
    for category, error in zip(table.column("category").to_pylist(), table.column("error").to_pylist()):
        key = f"error {error_reason(error)}" if error else category
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def loaded(load, what: Path):
    """``load()``, with a model file that cannot be read turned into one clear error."""
    try:
        return load()
    except (FileNotFoundError, DataError):
        raise
    except Exception as exc:  # torch.load and onnxruntime raise many types for a damaged file
        raise DataError(f"cannot load the model in {what}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") \
            from None


def check_args(args) -> list[str]:
    return [f"--{name} must be >= 1" for name in ("batch-size", "actors", "threads", "rows-per-file")
            if getattr(args, name.replace("-", "_")) < 1] + \
        review_args_problems(args.target_precision, args.min_confidence)


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


def score_new(args, sources, runner: str, model_name: str, files, fs, scores_dir: str, scored_keys) -> int:
    """Score every source not scored before into scores_dir/run-<stamp>/ (Ray streams it)."""
    import ray

    todo = sources.map_batches(
        keyed_new, fn_kwargs={"scored": np.sort(scored_keys)}, batch_size=args.batch_size, batch_format="numpy")
    scored = todo.map_batches(
        Scorer, batch_size=args.batch_size, batch_format="numpy",
        fn_constructor_kwargs={"files": ray.put(files), "runner": runner, "model_name": model_name,
                               "threads": args.threads, "device": args.device},
        compute=ray.data.ActorPoolStrategy(size=args.actors), num_cpus=args.threads, num_gpus=args.gpus_per_actor)
    run_dir = f"{scores_dir}/run-{now()}"
    scored.write_parquet(args.out.split("://")[0] + "://" + run_dir if is_uri(args.out) else run_dir,
                         min_rows_per_file=args.rows_per_file, ray_remote_args={"num_cpus": 0})
    return sum(pq.read_metadata(f, filesystem=fs).num_rows for f in parquet_files(fs, run_dir))


def run_label(args) -> int:
    import ray

    from ..learn.checkpoint import best_model_name

    problems = check_args(args)
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return 2
    paths = list_paths(args.inputs, args.path_column)
    if not paths:
        raise DataError(f"no images in {' '.join(args.inputs)} (empty folders, no glob match, or empty manifests)")
    model_name = args.model or best_model_name(args.best)
    model_dir = Path(args.models) / model_name
    if not any(model_dir.glob("fold*.pt")):
        raise FileNotFoundError(f"{model_dir} holds no fold checkpoints: run `dvc repro` first")
    local = loaded(lambda: Predictor(model_name, models_dir=args.models, device=args.device), model_dir)
    runner, why = choose_runner(args, local, paths)
    print(f"label: runner {runner} ({why})")
    files = model_files(runner, model_dir, Path(args.exported))
    version = model_version(files)
    calibration = None
    if args.target_precision is not None:
        calibration = local.calibrate(args.calibration or calibration_csv(model_name))

    fs, out = filesystem(args.out)
    scores_dir = f"{out}/{SCORES}/{version}"
    good_files, broken = readable(fs, parquet_files(fs, scores_dir))
    for file in broken:  # a killed job's half-written part: its images are scored again
        fs.delete_file(file)
    scored_keys = read_column(fs, good_files, ["key"]).column("key").to_numpy()

    if not ray.is_initialized():
        ray.init(address=args.address, include_dashboard=False, log_to_driver=False)
    print(f"label: Ray at {ray.get_runtime_context().gcs_address}, {ray.cluster_resources().get('CPU', 0):g} CPUs; "
          f"{args.actors} actor(s) x {args.threads} thread(s)")
    rows_per_block = min(args.batch_size * 16, max(args.batch_size, -(-len(paths) // (4 * args.actors))))
    sources = as_dataset(paths, rows_per_block)
    started = time.perf_counter()
    new = score_new(args, sources, runner, model_name, files, fs, scores_dir, scored_keys) if sources is not None else 0
    seconds = time.perf_counter() - started
    rate = round(new / seconds, 1) if seconds and new else None
    print(f"label: scored {new} images in {seconds:.1f} s ({rate} img/s); {len(scored_keys)} scored before")

    labels_dir = f"{out}/{LABELS}"
    decided = read_column(fs, parquet_files(fs, labels_dir), ["key"]).column("key")
    all_scores = parquet_files(fs, scores_dir)
    undecided = pa.concat_tables([pq.read_table(f, filesystem=fs) for f in all_scores]) if all_scores else None
    if undecided is not None:
        undecided = undecided.filter(pc.invert(pc.is_in(undecided.column("key"), decided)))
    if undecided is None or not len(undecided):
        print(f"label: nothing new to decide; {len(decided)} images labelled before under {args.out}")
        return 0
    table, threshold = decide(undecided, local.categories, calibration, args.target_precision,
                              args.min_confidence)
    batch = now()
    tmp_dir, final_dir = f"{labels_dir}/.batch={batch}", f"{labels_dir}/batch={batch}"
    fs.create_dir(tmp_dir)
    pq.write_table(table, f"{tmp_dir}/part-0.parquet", filesystem=fs)
    fs.move(tmp_dir, final_dir)  # a batch appears whole or not at all
    counts = summary(table)
    report = {"model": model_name, "model_version": version, "runner": runner, "runner_choice": why,
              "scored_this_run": new, "skipped_already_scored": int(len(scored_keys)), "decided": len(table),
              "seconds": round(seconds, 1), "images_per_second": rate,
              "threshold": threshold, "counts": counts, "batch": final_dir}
    fs.create_dir(f"{out}/runs")
    with fs.open_output_stream(f"{out}/runs/{batch}.json") as fh:
        fh.write((json.dumps(report, indent=2) + "\n").encode())
    print(f"label: decided {len(table)} in {final_dir}")
    if args.target_precision is not None:
        print(f"labelled automatically: raw ensemble confidence >= {threshold:.4f} in this batch")
    print("counts: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0
