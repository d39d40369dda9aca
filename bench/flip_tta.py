"""What flip test-time augmentation buys on photos the pipeline never saw: every trained model of a
project predicts an unseen folder (one sub-folder per category, as bench/real_photos.py takes) with
and without the mirrored view, and prints accuracy and macro F1 with 95% intervals for both.

    python bench/flip_tta.py PROJECT UNSEEN_DIR       # PROJECT: a project after `dvc repro`

No retraining: the flag only changes the ensemble's forward pass (learn/inference.py).
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fashionclf.report.review import share  # noqa: E402
from fashionclf.serve.init import category_name  # noqa: E402
from fashionclf.serve.predict import list_inputs, predict_paths  # noqa: E402
from fashionclf.serve.predictor import Predictor  # noqa: E402


def percent(hits: int, n: int) -> str:
    value, (low, high) = share(hits, n)
    return f"{100 * value:.1f} ({100 * low:.1f}-{100 * high:.1f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("project", type=Path)
    parser.add_argument("unseen", type=Path)
    args = parser.parse_args()
    paths = list_inputs([str(args.unseen)])
    actual = np.array([category_name(Path(p).parent.name) for p in paths])
    for model_dir in sorted(p for p in (args.project / "models").iterdir() if p.is_dir()):
        predictor = Predictor(model_dir.name, models_dir=args.project / "models", device="cpu")
        for flip in (False, True):
            predictor.module.flip_tta = flip
            probs = np.stack([probs for _, probs, _, _ in predict_paths(predictor, paths)])
            predicted = np.array(predictor.categories)[probs.argmax(1)]
            print(f"{model_dir.name:20s} flip {'on ' if flip else 'off'}: accuracy {percent(int((predicted == actual).sum()), len(paths))} %, "
                  f"macro F1 {f1_score(actual, predicted, average='macro'):.4f}", flush=True)


if __name__ == "__main__":
    main()
