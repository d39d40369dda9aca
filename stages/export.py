"""Stage export: the best model's fold ensemble as ONNX plus labels.json (no params)."""
import json
from pathlib import Path

from fashionclf.cli import stage_args, stage_main
from fashionclf.export import ONNX_FILE, export_onnx


def main():
    args = stage_args(__doc__, "models", "best", "out")
    name = json.loads(Path(args.best).read_text())["best_model"]
    labels = export_onnx(Path(args.models) / name, args.out)
    print(f"export: {name} ({labels['folds']} folds) -> {Path(args.out) / ONNX_FILE}")


if __name__ == "__main__":
    stage_main(main)
