"""What a frozen-feature head (efficientnet_liteN_head, learn/head.py) gets on a shop's photos, for
several backbones, input sizes and head recipes, without a pipeline run per setting.

    python bench/frozen_head.py SHOP_DIR UNSEEN_DIR efficientnet_lite0:224 efficientnet_lite0:128 ...

Both folders hold one sub-folder per category (as bench/real_photos.py takes). The photos are
letterboxed onto init's 128 px canvas (clean's decode), the backbone computes each shop photo's
features twice (as it is, and with the training augmentation of params.yaml) and each unseen
photo's once: the passes that cv_train's folds make, done once instead of per fold. Then, per
recipe (lr, epochs), 3 stratified folds fit the classifier with cv_train's own loop
(head.fit_classifier, the params.yaml train recipe), and it prints out-of-fold accuracy and the
unseen photos' accuracy under the folds' mean, with 95% intervals and the seconds the features took.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from sklearn.model_selection import StratifiedKFold

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fashionclf.core.params import TrainParams  # noqa: E402
from fashionclf.data.imaging import decode  # noqa: E402
from fashionclf.learn.head import fit_classifier, frozen_features, head_probabilities  # noqa: E402
from fashionclf.learn.inference import to_pixels  # noqa: E402
from fashionclf.learn.models import build_model  # noqa: E402
from fashionclf.learn.train import light_augment  # noqa: E402
from fashionclf.serve.init import PHOTO_CANVAS  # noqa: E402
from flip_tta import percent  # noqa: E402  (bench/, this script's folder)

RECIPES = ((0.001, 30), (0.003, 30), (0.01, 30), (0.03, 30))
FOLDS = 3


def load(folder: Path, categories: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    pixels = np.stack([decode(p, PHOTO_CANVAS) for p in paths])
    return to_pixels(pixels), torch.tensor([categories.index(p.relative_to(folder).parts[0]) for p in paths])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shop", type=Path)
    parser.add_argument("unseen", type=Path)
    parser.add_argument("settings", nargs="+", help="backbone:size, e.g. efficientnet_lite0:224")
    args = parser.parse_args()
    torch.manual_seed(0)
    categories = sorted(p.name for p in args.shop.iterdir() if p.is_dir())
    x_shop, y_shop = load(args.shop, categories)
    x_unseen, y_unseen = load(args.unseen, categories)
    train = TrainParams.model_validate(yaml.safe_load((ROOT / "params.yaml").read_text())["train"])
    cpu = torch.device("cpu")
    print(f"{len(y_shop)} shop photos, {len(y_unseen)} unseen, {len(categories)} categories, canvas {PHOTO_CANVAS} px")
    print("| backbone | px | lr | epochs | out-of-fold accuracy % | unseen accuracy % | features s |")
    print("|---|---|---|---|---|---|---|")
    for setting in args.settings:
        name, size = setting.split(":")
        start = time.perf_counter()
        model = build_model(name, len(categories), pretrained=True, image_size=int(size)).eval()
        gen = torch.Generator().manual_seed(train.seed)
        plain = frozen_features(model, [x_shop], train.eval_batch_size, cpu)
        augmented = frozen_features(model, [x_shop], train.eval_batch_size, cpu,
                                    lambda batch: light_augment(batch, train, gen))
        unseen = frozen_features(model, [x_unseen], train.eval_batch_size, cpu)
        took = time.perf_counter() - start
        for lr, epochs in RECIPES:
            right, votes = 0, []
            for fold, (fit, val) in enumerate(StratifiedKFold(FOLDS, shuffle=True, random_state=0)
                                              .split(plain, y_shop)):
                fit, val = torch.from_numpy(fit), torch.from_numpy(val)
                head = torch.nn.Linear(plain.shape[1], len(categories))
                torch.nn.init.zeros_(head.weight)
                torch.nn.init.zeros_(head.bias)
                state = fit_classifier(head, torch.cat([plain[fit], augmented[fit]]), y_shop[fit].repeat(2),
                                       plain[val], y_shop[val], 1, epochs, train, fold,
                                       torch.Generator().manual_seed(train.seed + fold), lr)
                head.load_state_dict(state["best_state"])
                right += int((state["best_probs"].argmax(1) == y_shop[val]).sum())
                votes.append(head_probabilities(head, unseen, 1))
            unseen_right = int((torch.stack(votes).mean(0).argmax(1) == y_unseen).sum())
            print(f"| {name} | {size} | {lr} | {epochs} | {percent(right, len(y_shop))} | "
                  f"{percent(unseen_right, len(y_unseen))} | {took:.0f} |", flush=True)


if __name__ == "__main__":
    main()
