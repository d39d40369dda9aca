"""augment: rotated, flipped and scaled variants; each keeps its source image as ``group``."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from ..core.params import AugmentParams
from ..core.store import load_imageset, save_imageset


def random_affine(pixels: np.ndarray, params: AugmentParams, rng) -> np.ndarray:
    angle = math.radians(rng.uniform(-params.rotation, params.rotation))
    scale = rng.uniform(*params.scale)
    flip = rng.random() < params.hflip
    img = Image.fromarray(pixels)
    if flip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    cx, cy = img.width / 2, img.height / 2
    a, b = math.cos(angle) / scale, math.sin(angle) / scale
    d, e = -b, a
    matrix = (a, b, cx - a * cx - b * cy, d, e, cy - d * cx - e * cy)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    fill = tuple(int(v) for v in border.mean(axis=0).round())
    out = img.transform(img.size, Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR, fillcolor=fill)
    return np.asarray(out, dtype=np.uint8)


def augment(params: AugmentParams, trainval_dir, out):
    """Each original once (first copy) plus ``variants`` variants; oversampled copies are all variants."""
    images, manifest = load_imageset(trainval_dir)
    rng = np.random.default_rng(params.seed)
    pool, rows = [], []
    for i, row in enumerate(tqdm(manifest.itertuples(index=False), total=len(manifest),
                                 desc="augment", mininterval=1)):
        n_variants = params.variants + (1 if row.copy > 0 else 0)
        if row.copy == 0:
            pool.append(np.asarray(images[i]))
            rows.append((row.path, row.source_id, row.category, row.copy, 0))
        for k in range(1, n_variants + 1):
            pool.append(random_affine(np.asarray(images[i]), params, rng))
            rows.append((row.path, row.source_id, row.category, row.copy, k))
    table = pd.DataFrame(rows, columns=["path", "group", "category", "copy", "variant"])
    save_imageset(out, np.stack(pool), table)
    return table, np.stack(pool)


def sample_grid(images: np.ndarray, table: pd.DataFrame, params: AugmentParams, sources: int = 2,
                variants: int = 3) -> list[tuple[str, list[tuple[np.ndarray, str]]]]:
    """Per category: a few source images, each followed by variants drawn with the augment params."""
    rng = np.random.default_rng(params.seed)
    rows = []
    for category in sorted(table["category"].unique()):
        originals = table.index[(table["category"] == category) & (table["variant"] == 0)][:sources]
        cells = []
        for i in originals:
            cells.append((np.asarray(images[i]), "original"))
            cells += [(random_affine(np.asarray(images[i]), params, rng), "variant") for _ in range(variants)]
        rows.append((category, cells))
    return rows


def describe(params: AugmentParams) -> str:
    return (f"Augmentation: rotation ±{params.rotation:g}°, flip p={params.hflip:g}, "
            f"scale {params.scale[0]:g}–{params.scale[1]:g}")
