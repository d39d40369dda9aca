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
With --combine, then two backbones together: each pair's heads averaged, and one head on the
pair's features joined.
"""
import argparse
import itertools
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
COMBINE_RECIPE = (0.003, 30)  # the best out-of-fold recipe for lite0 and lite2 at 224 px
FOLDS = 3


def load(folder: Path, categories: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    pixels = np.stack([decode(p, PHOTO_CANVAS) for p in paths])
    return to_pixels(pixels), torch.tensor([categories.index(p.relative_to(folder).parts[0]) for p in paths])


def shop_features(name: str, size: int, x_shop, x_unseen, train: TrainParams, classes: int):
    """The backbone's features of the shop photos (plain and augmented) and the unseen photos, and the
    seconds they took."""
    start = time.perf_counter()
    cpu = torch.device("cpu")
    model = build_model(name, classes, pretrained=True, image_size=size).eval()
    gen = torch.Generator().manual_seed(train.seed)
    plain = frozen_features(model, x_shop, train.eval_batch_size, cpu)
    augmented = frozen_features(model, x_shop, train.eval_batch_size, cpu,
                                lambda batch: light_augment(batch, train, gen))
    unseen = frozen_features(model, x_unseen, train.eval_batch_size, cpu)
    return (plain, augmented, unseen), time.perf_counter() - start


def fit_heads(features, y_shop, train: TrainParams, lr: float, epochs: int):
    """Out-of-fold probabilities of the shop photos and the folds' mean on the unseen photos."""
    plain, augmented, unseen = features
    classes = int(y_shop.max()) + 1
    oof, votes = torch.zeros(len(y_shop), classes), []
    for fold, (fit, val) in enumerate(StratifiedKFold(FOLDS, shuffle=True, random_state=0).split(plain, y_shop)):
        fit, val = torch.from_numpy(fit), torch.from_numpy(val)
        head = torch.nn.Linear(plain.shape[1], classes)
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
        state = fit_classifier(head, torch.cat([plain[fit], augmented[fit]]), y_shop[fit].repeat(2),
                               plain[val], y_shop[val], 1, epochs, train, fold,
                               torch.Generator().manual_seed(train.seed + fold), lr)
        head.load_state_dict(state["best_state"])
        oof[val] = state["best_probs"]
        votes.append(head_probabilities(head, unseen, 1))
    return oof, torch.stack(votes).mean(0)


def row(label: str, probs, y_shop, y_unseen) -> str:
    oof, unseen = probs
    return (f"| {label} | {percent(int((oof.argmax(1) == y_shop).sum()), len(y_shop))} | "
            f"{percent(int((unseen.argmax(1) == y_unseen).sum()), len(y_unseen))} |")


def combinations(features: dict, y_shop, y_unseen, train: TrainParams) -> None:
    """Two backbones together, at COMBINE_RECIPE: each pair's heads averaged, one head on each pair's
    concatenated features, and one on all of them."""
    lr, epochs = COMBINE_RECIPE
    alone = {s: fit_heads(f, y_shop, train, lr, epochs) for s, f in features.items()}

    def joined(settings):  # (plain, augmented, unseen), each the settings' features side by side
        return [torch.cat([features[s][i] for s in settings], 1) for i in range(3)]

    print(f"\n| members (lr {lr}, {epochs} epochs) | out-of-fold accuracy % | unseen accuracy % |\n|---|---|---|")
    for setting, probs in alone.items():
        print(row(f"{setting} alone", probs, y_shop, y_unseen))
    for a, b in itertools.combinations(features, 2):
        mean = tuple((alone[a][i] + alone[b][i]) / 2 for i in range(2))
        print(row(f"average of the {a} and {b} heads", mean, y_shop, y_unseen))
        print(row(f"one head on {a} + {b} features", fit_heads(joined([a, b]), y_shop, train, lr, epochs),
                  y_shop, y_unseen), flush=True)
    if len(features) > 2:
        print(row("one head on all features", fit_heads(joined(list(features)), y_shop, train, lr, epochs),
                  y_shop, y_unseen))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shop", type=Path)
    parser.add_argument("unseen", type=Path)
    parser.add_argument("settings", nargs="+", help="backbone:size, e.g. efficientnet_lite0:224")
    parser.add_argument("--combine", action="store_true",
                        help="then the settings in pairs: heads averaged, and one head on both features")
    args = parser.parse_args()
    torch.manual_seed(0)
    categories = sorted(p.name for p in args.shop.iterdir() if p.is_dir())
    x_shop, y_shop = load(args.shop, categories)
    x_unseen, y_unseen = load(args.unseen, categories)
    train = TrainParams.model_validate(yaml.safe_load((ROOT / "params.yaml").read_text())["train"])
    print(f"{len(y_shop)} shop photos, {len(y_unseen)} unseen, {len(categories)} categories, canvas {PHOTO_CANVAS} px")
    print("| backbone | px | lr | epochs | out-of-fold accuracy % | unseen accuracy % | features s |")
    print("|---|---|---|---|---|---|---|")
    features = {}
    for setting in args.settings:
        name, size = setting.split(":")
        features[setting], took = shop_features(name, int(size), x_shop, x_unseen, train, len(categories))
        for lr, epochs in RECIPES:
            label = f"{name} | {size} | {lr} | {epochs}"
            print(f"{row(label, fit_heads(features[setting], y_shop, train, lr, epochs), y_shop, y_unseen)} "
                  f"{took:.0f} |", flush=True)
    if args.combine:
        combinations(features, y_shop, y_unseen, train)


if __name__ == "__main__":
    main()
