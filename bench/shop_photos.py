"""A shop's catalogue of generated photos, end to end: bench/real_photos.py's protocol (`fashionclf
init`, `dvc repro`, `fashionclf predict --target-precision 0.99` on photos the pipeline never saw)
on photos that need no download, for a machine without the real photo sets.

The photos are generated: Fashion-MNIST objects, upscaled, coloured and composited onto white backgrounds of
uneven size, at a random scale, place and angle, saved as JPEG. The catalogue comes from
Fashion-MNIST's train split (uneven categories: bags 185, like the smallest of the shop that filed
the issue); the unseen photos come from its t10k split.

    python bench/shop_photos.py --work /tmp/shop [--budget-minutes 15]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fashionclf.data.fetch import CLASSES, locate_fashion_mnist, read_idx  # noqa: E402

CATEGORIES = {"bags": ["bag"], "clothing": ["t-shirt_top", "trouser", "pullover", "dress", "coat", "shirt"],
              "shoes": ["sandal", "sneaker", "ankle_boot"]}
CATALOGUE = {"bags": 185, "clothing": 900, "shoes": 500}
UNSEEN_PER_CATEGORY = 200


def photo(item: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """One 28 px Fashion-MNIST item as a product photo: coloured object on an off-white background."""
    w, h = (int(v) for v in rng.integers(120, 220, 2))
    side = int(min(w, h) * rng.uniform(0.55, 0.9))
    gray = Image.fromarray(item).resize((side, side), Image.BICUBIC).rotate(float(rng.uniform(-12, 12)),
                                                                             resample=Image.BICUBIC)
    g = np.asarray(gray, dtype=float) / 255
    colour = rng.uniform(20, 200, 3)
    obj = colour * (0.45 + 0.55 * g[..., None])
    alpha = np.clip(g * 1.6, 0, 1)[..., None]
    background = np.full((h, w, 3), rng.uniform(236, 255), dtype=float)
    background += np.linspace(0, rng.uniform(-10, 0), h)[:, None, None]  # a soft studio gradient
    x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    patch = background[y0:y0 + side, x0:x0 + side]
    background[y0:y0 + side, x0:x0 + side] = patch * (1 - alpha) + obj * alpha
    pixels = np.clip(background + rng.normal(0, 2.0, background.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def write_photos(out: Path, split: str, counts: dict[str, int], seed: int) -> None:
    src = locate_fashion_mnist()
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(src / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(src / f"{prefix}-labels-idx1-ubyte.gz")
    rng = np.random.default_rng(seed)
    for category, count in counts.items():
        members = [CLASSES.index(c) for c in CATEGORIES[category]]
        pool = np.flatnonzero(np.isin(labels, members))
        for n, index in enumerate(rng.choice(pool, count, replace=False)):
            path = out / category / f"{category}_{n:04d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            photo(images[index], rng).save(path, quality=int(rng.integers(80, 96)))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="an empty folder for photos and the project copy")
    parser.add_argument("--budget-minutes", type=float, default=15.0)
    args = parser.parse_args()
    catalogue, unseen = args.work / "catalogue", args.work / "unseen"
    write_photos(catalogue, "train", CATALOGUE, seed=1)
    write_photos(unseen, "test", {c: UNSEEN_PER_CATEGORY for c in CATEGORIES}, seed=2)
    subprocess.run([sys.executable, str(ROOT / "bench" / "real_photos.py"), str(catalogue), str(unseen),
                    "--work", str(args.work), "--budget-minutes", str(args.budget_minutes)], check=True)


if __name__ == "__main__":
    main()
