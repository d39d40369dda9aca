"""How much of a pretrained EfficientNet-Lite to fine-tune on a shop's photos, when the frozen part's
activations are computed once (learn/tail.py fine-tunes the last block, TAIL_BLOCKS).

    python bench/tail_finetune.py SHOP_DIR UNSEEN_DIR --first-tuned 15 11 --epochs 5 --lr 0.001

Both folders hold one sub-folder per category (as bench/real_photos.py takes). The photos are
letterboxed onto init's 128 px canvas (clean's decode) and the network sees them at 224 px. For each
first tuned block, the frozen part computes each shop photo's activations as it is and once with the
training augmentation of params.yaml, and each unseen photo's once; then the blocks from there on,
the final convolution and a classifier started at zero (learn/models.py LiteTrunk and LiteTail from
that block) train on all the shop photos (Adam, the one-cycle schedule, batch 32, one of the two
views of each photo an epoch, where cv_train's folds take both), and it prints the unseen
photos' accuracy with its 95% interval after each epoch, and the seconds each part took. One
split, no folds: what the recipe reaches, not what the pipeline reports.
"""
import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fashionclf.core.params import TrainParams  # noqa: E402
from fashionclf.learn.models import LiteTail, build_model, lite_trunk  # noqa: E402
from fashionclf.learn.train import light_augment  # noqa: E402
from frozen_head import load  # noqa: E402  (bench/, this script's folder)
from flip_tta import percent  # noqa: E402

SIZE, BATCH = 224, 32


def run(first: int, x_shop, y_shop, x_unseen, y_unseen, classes: int, train: TrainParams, args) -> None:
    torch.manual_seed(0)
    model = build_model(args.model, classes, pretrained=True, image_size=SIZE).eval()
    net = model.net

    trunk = lite_trunk(model, first)
    tail = LiteTail(net, first)

    def activations(x, augment=None):
        with torch.inference_mode():
            return torch.cat([trunk(augment(b) if augment else b) for b in x.split(64)])

    start = time.perf_counter()
    gen = torch.Generator().manual_seed(train.seed)
    views = [activations(x_shop), activations(x_shop, lambda b: light_augment(b, train, gen))]
    unseen = activations(x_unseen)
    print(f"first tuned block {first}: activations {tuple(unseen.shape[1:])}, {time.perf_counter() - start:.0f} s")
    for p in net.parameters():
        p.requires_grad_(False)
    torch.nn.init.zeros_(net._fc.weight)
    torch.nn.init.zeros_(net._fc.bias)
    for p in tail.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(tail.parameters(), lr=args.lr)
    steps = -(-len(x_shop) // BATCH)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, pct_start=train.pct_start,
                                                    total_steps=steps * args.epochs)
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        tail.train()
        order, view = torch.randperm(len(x_shop), generator=gen), torch.randint(0, 2, (len(x_shop),), generator=gen)
        for idx in order.split(BATCH):
            x = torch.stack([views[v][i] for v, i in zip(view[idx].tolist(), idx.tolist())])
            loss = F.cross_entropy(tail(x), y_shop[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        tail.eval()
        with torch.inference_mode():
            correct = int((torch.cat([tail(a) for a in unseen.split(128)]).argmax(1) == y_unseen).sum())
        print(f"  epoch {epoch}: {time.perf_counter() - start:.0f} s, unseen accuracy "
              f"{percent(correct, len(y_unseen))}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shop", type=Path)
    parser.add_argument("unseen", type=Path)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--first-tuned", type=int, nargs="+", default=[15, 11])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    categories = sorted(p.name for p in args.shop.iterdir() if p.is_dir())
    (x_shop, y_shop), (x_unseen, y_unseen) = load(args.shop, categories), load(args.unseen, categories)
    x_shop, x_unseen = x_shop.float() / 255, x_unseen.float() / 255
    train = TrainParams(**yaml.safe_load((ROOT / "params.yaml").read_text())["train"])
    for first in args.first_tuned:
        run(first, x_shop, y_shop, x_unseen, y_unseen, len(categories), train, args)


if __name__ == "__main__":
    main()
