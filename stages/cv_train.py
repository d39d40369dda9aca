"""Stage cv_train@<model>: grouped stratified k-fold training (reads params: train)."""
from pathlib import Path

from fashionclf.core import params
from fashionclf.core.cli import stage_args, stage_main
from fashionclf.core.store import load_imageset, write_atomic, write_json
from fashionclf.learn.inference import set_threads
from fashionclf.learn.cv import cross_validate
from fashionclf.report.tracking import log_training_curves

RESUME_DIR = Path(".fashionclf-resume")


def main():
    args = stage_args(__doc__, "data", "models", "metrics", "curves", "oof", model=True)
    train = params.load("train")
    model_params = train.model(args.model)
    set_threads(train.threads)
    images, manifest = load_imageset(args.data)
    result = cross_validate(model_params, train, images, manifest, Path(args.models), RESUME_DIR / args.model)
    write_json(args.metrics, result["metrics"])
    log_training_curves(result["history"], args.curves)
    write_atomic(args.oof, result["oof"].to_csv(index=False))
    oof = result["metrics"]["oof"]
    print(f"cv_train {args.model}: out-of-fold accuracy {oof['accuracy']:.4f}, macro F1 {oof['f1']:.4f}, "
          f"avg val loss {result['metrics']['avg_val_loss']:.4f}")


if __name__ == "__main__":
    stage_main(main)
