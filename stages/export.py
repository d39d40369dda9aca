"""Stage export: the best model's fold ensemble as ONNX plus labels.json (no params)."""
import json
from pathlib import Path

from fashionclf.core.cli import stage_args, stage_main
from fashionclf.learn.onnx_runner import ONNX_FILE
from fashionclf.serve.export import export_onnx


def main():
    args = stage_args(__doc__, "models", "best", "out")
    name = json.loads(Path(args.best).read_text())["best_model"]
    labels = export_onnx(Path(args.models) / name, args.out)
    print(f"export: {name} ({labels['folds']} folds) -> {Path(args.out) / ONNX_FILE}")


if __name__ == "__main__":
    stage_main(main)
