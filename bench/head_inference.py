"""A frozen-feature head's fold ensemble (efficientnet_liteN_head) with one shared backbone pass, or a
fine-tuned tail's (efficientnet_liteN_tail) with one shared pass of its frozen part, against every
fold model run in turn, back to back.

    python bench/head_inference.py [--models efficientnet_lite0_head efficientnet_lite0_tail ...] [--folds 3]

Per model: fold checkpoints as learn/head.py and learn/tail.py write them (the shipped ImageNet
backbone, each fold's own classifier, and a tail's own last block and final convolution), the
ensemble over 512 random photos on init's 128 px canvas at 224 px
(batch 256, capped by learn/inference.inference_batch, evaluate.threads, BatchNorm fused, as the
test stages and predict run it). Prints the median seconds of each path, their ratio (> 1: sharing
is faster) and the largest difference between their probabilities (tests/test_predict.py checks
that the two give the same bits in torch's own mean).
"""
import argparse
import statistics
import time

import numpy as np
import torch

from fashionclf.core import params
from fashionclf.core.params import ModelParams
from fashionclf.core.registry import HEAD_MODELS, TAIL_MODELS
from fashionclf.learn.checkpoint import FoldCheckpoint
from fashionclf.learn.cv import preprocessing_of
from fashionclf.learn.inference import Ensemble, set_threads
from fashionclf.learn.models import build_model, fitted_prefixes
from fashionclf.serve.init import PHOTO_CANVAS, TAIL_SIZE

CATEGORIES = [f"c{k}" for k in range(10)]


def fold_checkpoints(name: str, folds: int) -> list[FoldCheckpoint]:
    model_params = ModelParams(name=name, image_size=TAIL_SIZE, epochs=30, lr=0.001, ema_decay=0.0)
    model = build_model(name, len(CATEGORIES), pretrained=True, image_size=TAIL_SIZE)
    state = model.state_dict()
    preprocessing = preprocessing_of(model_params, np.zeros((1, PHOTO_CANVAS, PHOTO_CANVAS, 3)))
    fitted = fitted_prefixes(name, model.net)
    checkpoints = []
    for k in range(folds):
        gen = torch.Generator().manual_seed(k)
        own = {key: value + torch.randn(value.shape, generator=gen) * 0.05 for key, value in state.items()
               if key.startswith(fitted) and key.endswith("weight")}
        checkpoints.append(FoldCheckpoint(name, state | own, CATEGORIES, preprocessing, {}, k, 1, 0.5))
    return checkpoints


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(HEAD_MODELS) + [TAIL_MODELS[0]])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    evaluate = params.load("evaluate")
    set_threads(evaluate.threads)
    x = torch.rand(512, 3, PHOTO_CANVAS, PHOTO_CANVAS, generator=torch.Generator().manual_seed(0))
    print(f"| model | folds | fold by fold, s per 512 | shared part, s | ratio | largest difference |\n|---|---|---|---|---|---|")
    for name in args.models:
        checkpoints = fold_checkpoints(name, args.folds)
        shared = Ensemble(checkpoints)
        singles = [Ensemble([ckpt]) for ckpt in checkpoints]  # one fold each: nothing to share

        def fold_by_fold():
            return np.mean([single.predict_proba(x, evaluate.batch_size) for single in singles], axis=0)

        difference = np.abs(shared.predict_proba(x, evaluate.batch_size) - fold_by_fold()).max()
        alone = median_seconds(fold_by_fold, args.repeats)
        together = median_seconds(lambda: shared.predict_proba(x, evaluate.batch_size), args.repeats)
        print(f"| {name} | {args.folds} | {alone:.2f} | {together:.2f} | {alone / together:.2f} | "
              f"{difference:.1e} |", flush=True)


if __name__ == "__main__":
    main()
