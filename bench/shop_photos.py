"""A shop's catalogue, end to end, the way the README's own-photos recipe runs it: `fashionclf init`
on a folder of photos, `dvc repro`, then `fashionclf predict --target-precision 0.99` on photos the
pipeline never saw. Prints accuracy, macro F1 and coverage there, and the repro time at the
reference speed.

No real product photos under an open licence were found in the package registries, so the photos
are generated: Fashion-MNIST objects, upscaled, coloured and composited onto white backgrounds of
uneven size, at a random scale, place and angle, saved as JPEG. The catalogue comes from
Fashion-MNIST's train split (uneven categories: bags 185, like the smallest of the shop that filed
the issue); the unseen photos come from its t10k split.

    python bench/shop_photos.py --work /tmp/shop [--budget-minutes 15]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.metrics import accuracy_score, f1_score

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


def sh(cmd, cwd):
    print("$", " ".join(map(str, cmd)), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


def ref_speed() -> float:
    script = ROOT / "bench" / "ref_speed.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="an empty folder for photos and the project copy")
    parser.add_argument("--budget-minutes", type=float, default=15.0)
    args = parser.parse_args()
    catalogue, unseen, project = args.work / "catalogue", args.work / "unseen", args.work / "project"
    write_photos(catalogue, "train", CATALOGUE, seed=1)
    write_photos(unseen, "test", {c: UNSEEN_PER_CATEGORY for c in CATEGORIES}, seed=2)
    sh(["git", "clone", "-q", str(ROOT), str(project)], args.work)
    sh([sys.executable, "-m", "fashionclf", "init", str(catalogue), "--budget-minutes", str(args.budget_minutes)],
       project)
    before = ref_speed()
    start = time.perf_counter()
    sh(["dvc", "repro", "--force"], project)
    took = time.perf_counter() - start
    speed = (before + ref_speed()) / 2
    sh([sys.executable, "-m", "fashionclf", "predict", str(unseen), "--out", str(args.work / "unseen.csv"),
        "--target-precision", "0.99"], project)
    table = pd.read_csv(args.work / "unseen.csv", keep_default_na=False)
    actual = table["path"].map(lambda p: Path(p).parent.name)
    predicted = table[[c for c in table.columns if c.startswith("p_")]].idxmax(axis=1).str[2:]
    automatic = table["category"] != "needs_review"
    review = json.loads((project / "metrics/review.json").read_text())
    summary = json.loads((project / "metrics/summary.json").read_text())
    best = summary["best_model"]
    print(f"\nGenerated catalogue: {sum(CATALOGUE.values())} photos {CATALOGUE}; unseen: {len(table)} photos")
    print(f"dvc repro: {took:.0f} s here at {speed:.0f} img/s = {took * speed / 250:.0f} s at 250 img/s "
          f"(budget {args.budget_minutes * 60:.0f} s)")
    print("| measured on | model | accuracy | macro F1 | coverage at 99% target precision | precision there | ECE before → after |")
    print("|---|---|---|---|---|---|---|")
    t = summary["models"][best]["test_clean"]
    print(f"| pipeline test split ({t['n']} photos) | {best} | {t['accuracy']:.4f} | {t['f1']:.4f} | "
          f"{review['test']['coverage']:.3f} | {review['test']['precision']:.4f} | "
          f"{review['ece']['test_before']:.4f} → {review['ece']['test_after']:.4f} |")
    auto_precision = (actual[automatic] == table.loc[automatic, "category"]).mean() if automatic.any() else float("nan")
    print(f"| unseen photos ({len(table)}) | {best} | {accuracy_score(actual, predicted):.4f} | "
          f"{f1_score(actual, predicted, average='macro'):.4f} | {automatic.mean():.3f} | {auto_precision:.4f} | – |")
    for name, m in summary["models"].items():
        print(f"  {name}: test accuracy {m['test_clean']['accuracy']:.4f}, OOF F1 {m['cv']['f1']:.4f}")


if __name__ == "__main__":
    main()
