"""Stage cv_train@<model>: grouped stratified k-fold training (reads params: train)."""
import sys
from pathlib import Path

import pandas as pd

from fashionclf import params
from fashionclf.cli import stage_main
from fashionclf.plotting import plot_training_curves
from fashionclf.store import load_imageset, write_atomic, write_json
from fashionclf.train import cross_validate

RESUME_DIR = Path(".fashionclf-resume")


def main():
    name = sys.argv[1]
    train = params.load("train")
    model_params = train.model(name)
    images, manifest = load_imageset("data/augment")
    result = cross_validate(model_params, train, images, manifest, Path("models") / name, RESUME_DIR / name)
    write_json(f"metrics/cv/{name}.json", result["metrics"])
    # machine-dependent, so outside the DVC-tracked outputs (the model files stay byte-identical)
    write_json(f"reports/timing/train_{name}.json", {"seconds": round(result["seconds"], 1),
                                                      "device": result["device"]})
    curves = pd.DataFrame(result["history"]).round(6)
    write_atomic(f"plots/train/{name}.csv", curves.to_csv(index=False))
    plot_training_curves(curves, f"{name}: {train.folds}-fold CV", f"plots/png/train/{name}.png")
    print(f"cv_train {name}: avg val loss {result['metrics']['avg_val_loss']:.4f} in {result['seconds']:.0f}s")


if __name__ == "__main__":
    stage_main(main)
