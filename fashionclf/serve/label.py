"""``fashionclf label``: a whole catalogue on Ray Data, from one laptop to a cluster; the command's
arguments and its run. What each step computes is serve/catalogue.py's; where the images are,
serve/sources.py's; the scores and labels layout, serve/label_store.py's."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ..core import paths
from ..core.errors import DataError
from ..data.imaging import IMAGE_STATISTICS
from .catalogue import choose_runner, labelled_table, loaded, model_files, model_version, score_new
from .label_store import SCORES, scored_keys, undecided, write_batch, write_run_report
from .predictor import (Predictor, calibration_csv, count_summary, queue_line, review_args_problems,
                        shift_warning)
from .sources import as_dataset, filesystem, list_paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="folders, globs or manifests (.csv/.parquet with a path column), "
                                                  "local or on any pyarrow filesystem (s3://, gs://)")
    parser.add_argument("--out", required=True, help="folder (or URI) for scores/, labels/ and runs/")
    parser.add_argument("--model", help="model name under models/ (default: the best, reports/best_model.json)")
    parser.add_argument("--runner", choices=["auto", "torch", "onnx"], default="auto",
                        help="the torch fold ensemble or its ONNX export; auto times both here and takes the faster")
    parser.add_argument("--exported", default=paths.EXPORTED_MODEL, help="the ONNX export (the export stage's)")
    parser.add_argument("--models", default=paths.MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--best", default=paths.BEST_MODEL, help=argparse.SUPPRESS)
    parser.add_argument("--path-column", default="path", help="the manifests' column of image paths or URIs")
    parser.add_argument("--target-precision", type=float,
                        help="review queue as in predict: chosen over each batch of new images")
    parser.add_argument("--with-probability", type=float, help="as in predict: the target precision with this "
                                                                 "probability, by one threshold")
    parser.add_argument("--calibration", help="as in predict (default: the test_clean stage's calibration predictions)")
    parser.add_argument("--min-confidence", type=float, default=0.0)
    parser.add_argument("--batch-size", type=int, default=64, help="images per model call")
    parser.add_argument("--rows-per-file", type=int, default=4096,
                        help="scores per Parquet file (a killed job loses at most the rows not yet written)")
    parser.add_argument("--actors", type=int, default=2, help="model actors (each holds one copy of the model)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (and CPUs reserved) per actor")
    parser.add_argument("--gpus-per-actor", type=float, default=0, help="GPUs reserved per actor (a cluster's GPUs)")
    parser.add_argument("--device", default="auto", help="where each actor's torch ensemble runs")
    parser.add_argument("--address", default=None,
                        help="a Ray cluster to run on (default: $RAY_ADDRESS, else a local Ray on this machine)")


def check_args(args) -> list[str]:
    return [f"--{name} must be >= 1" for name in ("batch-size", "actors", "threads", "rows-per-file")
            if getattr(args, name.replace("-", "_")) < 1] + \
        review_args_problems(args.target_precision, args.min_confidence, args.with_probability)


def batch_shift_warning(pending, predictor: Predictor) -> str | None:
    """serve/predictor.py's shift check on the scored rows decided in this batch."""
    raw = np.stack([pending.column(f"raw_{c}").to_numpy(zero_copy_only=False) for c in predictor.categories], 1)
    statistics = {name: pending.column(name).to_numpy(zero_copy_only=False) for name in IMAGE_STATISTICS
                  if name in pending.column_names}
    return shift_warning(predictor.shift_check, statistics, raw, pending.column("error").to_pylist())


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
    calibration = local.calibrate(args.calibration or calibration_csv(model_name),
                                  fit=args.target_precision is not None)

    fs, out = filesystem(args.out)
    scores_dir = f"{out}/{SCORES}/{version}"
    scored_before = scored_keys(fs, scores_dir)  # a killed job's half-written part is scored again

    if not ray.is_initialized():
        ray.init(address=args.address, include_dashboard=False, log_to_driver=False)
    print(f"label: Ray at {ray.get_runtime_context().gcs_address}, {ray.cluster_resources().get('CPU', 0):g} CPUs; "
          f"{args.actors} actor(s) x {args.threads} thread(s)")
    rows_per_block = min(args.batch_size * 16, max(args.batch_size, -(-len(paths) // (4 * args.actors))))
    sources = as_dataset(paths, rows_per_block)
    started = time.perf_counter()
    new = score_new(args, sources, runner, model_name, files, fs, scores_dir, scored_before) if sources is not None else 0
    seconds = time.perf_counter() - started
    rate = round(new / seconds, 1) if seconds and new else None
    print(f"label: scored {new} images in {seconds:.1f} s ({rate} img/s); {len(scored_before)} scored before")

    pending, labelled_before = undecided(fs, out, scores_dir)
    if pending is None or not len(pending):
        print(f"label: nothing new to decide; {labelled_before} images labelled before under {args.out}")
        return 0
    table, threshold = labelled_table(pending, local.categories, calibration, args.target_precision,
                                      args.min_confidence, args.with_probability)
    batch, final_dir = write_batch(fs, out, table)
    counts = count_summary(table.column("category").to_pylist(), table.column("error").to_pylist())
    report = {"model": model_name, "model_version": version, "runner": runner, "runner_choice": why,
              "scored_this_run": new, "skipped_already_scored": int(len(scored_before)), "decided": len(table),
              "seconds": round(seconds, 1), "images_per_second": rate,
              "threshold": threshold, "counts": counts, "batch": final_dir}
    write_run_report(fs, out, batch, report)
    print(f"label: decided {len(table)} in {final_dir}")
    if args.target_precision is not None:
        print(queue_line(threshold, calibration, args.target_precision, args.with_probability))
    print("counts: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if warning := batch_shift_warning(pending, local):
        print(warning, file=sys.stderr)
    return 0


run = run_label
