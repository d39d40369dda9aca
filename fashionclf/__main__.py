"""The ``fashionclf`` command: init, predict, label, gate, preset, readme, fingerprint."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fashionclf", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gate = sub.add_parser("gate", help="fail (exit 1) if workspace metrics regressed against a git revision")
    gate.add_argument("--against", default="HEAD", help="git revision holding the baseline metrics")
    gate.add_argument("--rules", default="metrics_gate.yaml")
    gate.add_argument("--all", action="store_true", help="also list metrics without a rule")

    predict = sub.add_parser("predict", help="label new product images with a trained model")
    predict.add_argument("inputs", nargs="+", help="image files or folders (searched recursively)")
    predict.add_argument("--out", required=True, help="CSV to write")
    source = predict.add_mutually_exclusive_group()
    source.add_argument("--model", help="model name under models/ (default: the best, reports/best_model.json)")
    source.add_argument("--exported", help="an ONNX model written by the export stage (export/model.onnx)")
    predict.add_argument("--batch-size", type=int, default=64)
    predict.add_argument("--min-confidence", type=float, default=0.0,
                         help="label images below this confidence needs_review")
    predict.add_argument("--target-precision", type=float,
                         help="label automatically the images whose expected precision reaches this (e.g. 0.99), "
                              "chosen over the batch against the calibration split; the rest get needs_review")
    predict.add_argument("--calibration", help="the model's predictions of the calibration split, for "
                                               "--target-precision (default: plots/predictions/calibration/<model>.csv)")
    predict.add_argument("--workers", type=int, default=2)
    predict.add_argument("--device", default="auto",
                         help="where the torch ensemble runs: auto (CUDA when present), cpu, cuda or cuda:N")

    label = sub.add_parser("label", help="label a whole catalogue on Ray Data (a local Ray, or a cluster)")
    label.add_argument("inputs", nargs="+", help="folders, globs or manifests (.csv/.parquet with a path column), "
                                                 "local or on any pyarrow filesystem (s3://, gs://)")
    label.add_argument("--out", required=True, help="folder (or URI) for scores/, labels/ and runs/")
    label.add_argument("--model", help="model name under models/ (default: the best, reports/best_model.json)")
    label.add_argument("--runner", choices=["auto", "torch", "onnx"], default="auto",
                       help="the torch fold ensemble or its ONNX export; auto times both here and takes the faster")
    label.add_argument("--exported", default="export/model.onnx", help="the ONNX export (the export stage's)")
    label.add_argument("--models", default="models", help=argparse.SUPPRESS)
    label.add_argument("--best", default="reports/best_model.json", help=argparse.SUPPRESS)
    label.add_argument("--path-column", default="path", help="the manifests' column of image paths or URIs")
    label.add_argument("--target-precision", type=float,
                       help="review queue as in predict: chosen over each batch of new images")
    label.add_argument("--calibration", help="as in predict (default: plots/predictions/calibration/<model>.csv)")
    label.add_argument("--min-confidence", type=float, default=0.0)
    label.add_argument("--batch-size", type=int, default=64, help="images per model call")
    label.add_argument("--rows-per-file", type=int, default=4096,
                       help="scores per Parquet file (a killed job loses at most the rows not yet written)")
    label.add_argument("--actors", type=int, default=2, help="model actors (each holds one copy of the model)")
    label.add_argument("--threads", type=int, default=1, help="intra-op threads (and CPUs reserved) per actor")
    label.add_argument("--gpus-per-actor", type=float, default=0, help="GPUs reserved per actor (a cluster's GPUs)")
    label.add_argument("--device", default="auto", help="where each actor's torch ensemble runs")
    label.add_argument("--address", default=None,
                       help="a Ray cluster to run on (default: $RAY_ADDRESS, else a local Ray on this machine)")

    init = sub.add_parser("init", help="write params.yaml for a folder of photos, one sub-folder per category")
    init.add_argument("photo_dir")
    init.add_argument("--budget-minutes", type=float, default=15.0,
                      help="time for the whole `dvc repro`, at the reference speed of 250 img/s (default 15)")
    init.add_argument("--out", default="params.yaml")
    init.add_argument("--measure-rounds", type=int, default=4,
                      help="rounds timing each model's costs between readings of the reference workload; init "
                           "takes their medians (default 4, about 20 s each on 2 cores; more: a steadier plan)")

    sub.add_parser("readme", help="copy reports/summary.md into README.md between its markers")

    preset = sub.add_parser("preset", help="apply a named configuration (configs/*.yaml) to params.yaml")
    preset.add_argument("file", help="a preset, e.g. configs/gpu_reference.yaml")
    preset.add_argument("--params", default="params.yaml")

    fp = sub.add_parser("fingerprint", help="print this platform's fingerprint (CPU, ISA flags, torch, threads)")
    fp_mode = fp.add_mutually_exclusive_group()
    fp_mode.add_argument("--write", metavar="FILE", help="record it (commit it with the metrics)")
    fp_mode.add_argument("--check", metavar="FILE", help="exit 1 unless it equals the recorded one")

    args = parser.parse_args(argv)
    if args.command == "gate":
        from .ci.gate import run_gate
        return run_gate(args.against, args.rules, args.all)
    if args.command == "predict":
        from .core.errors import ParamError
        from .serve.predict import run_predict
        try:
            return run_predict(args)
        except (FileNotFoundError, ParamError) as exc:  # no trained model or out-of-fold predictions; no CUDA
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.command == "label":
        from .core.errors import DataError, ParamError
        from .serve.catalogue import run_label
        try:
            return run_label(args)
        except (FileNotFoundError, ParamError, DataError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.command == "init":
        from .core.errors import ParamError
        from .serve.init import run_init
        try:
            return run_init(args.photo_dir, args.out, args.budget_minutes,
                            measure_rounds=args.measure_rounds)
        except ParamError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.command == "fingerprint":
        from .ci.platform import run_fingerprint
        return run_fingerprint(args.write, args.check)
    if args.command == "preset":
        from .core.errors import ParamError
        from .core.preset import run_preset
        try:
            return run_preset(args.file, args.params)
        except (ParamError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.command == "readme":
        from .report.readme import update_readme
        return update_readme()
    return 2


if __name__ == "__main__":
    sys.exit(main())
