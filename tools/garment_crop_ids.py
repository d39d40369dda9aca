"""Garment crops from street photos: the Clothing Co-Parsing set (CCP, Yang, Luo and Lin, CVPR 2014;
github.com/bearpaw/clothing-co-parsing), 1,004 street-fashion photos of people with a label per pixel.
Each photo gives one crop per garment it shows: the box around that label's pixels, with a margin.
Writes the CSV that tools/real_photo_folders.py turns into shop and unseen folders.

    python tools/garment_crop_ids.py GIT_DIR OUT_CSV --top 10 --min-side 48 --unseen-share 0.2 --seed 0
    python tools/real_photo_folders.py OUT_CSV GIT_DIR OUT --path 'photos/{id}.jpg'

bench/real_photo_ids/ccp_garments10.csv is the first command's output; ccp_garments8_merged.csv, the
same crops in a shop's coarser tree, is this one's:

    python tools/garment_crop_ids.py GIT_DIR bench/real_photo_ids/ccp_garments8_merged.csv --top 8 \\
        --merge purse=bags bag=bags jeans=trousers pants=trousers leggings=trousers blouse=tops \\
        shirt=tops t-shirt=tops top=tops coat=coats jacket=coats blazer=coats sweater=knitwear \\
        cardigan=knitwear jumper=knitwear dress=dresses skirt=skirts boots=shoes heels=shoes \\
        sandals=shoes sneakers=shoes flats=shoes pumps=shoes wedges=shoes loafers=shoes clogs=shoes hat=hats

A label is kept in a photo when its pixels' box is at least --min-side on its short side; --top keeps
the labels most often kept (skin, hair and the background never). Photos, not crops, are drawn into
the unseen role (--unseen-share of them, seeded), so no person or street appears on both sides.
--merge old=new renames a label first (e.g. purse=bag), for a shop whose tree is coarser.
"""
import argparse
import csv
import io
import random
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
from scipy.io import loadmat

from real_photo_folders import read_blobs  # tools/ is this script's folder, first on sys.path

NOT_GARMENTS = {"null", "skin", "hair"}
MARGIN = 0.1  # of the box's side, on each side: the garment's edge stays in the crop


def label_names(git_dir: str) -> list[str]:
    cells = loadmat(io.BytesIO(read_blobs(git_dir, ["label_list.mat"])["label_list.mat"]))["label_list"][0]
    return [str(cell[0]) for cell in cells]


def garment_boxes(mask: np.ndarray, names: list[str], min_side: int) -> dict[str, tuple[int, int, int, int]]:
    """label name -> (left, top, right, bottom) around its pixels (all of a merged name's labels) plus
    the margin, for every garment whose box is at least min_side on its short side."""
    boxes = {}
    height, width = mask.shape
    present = np.unique(mask)
    for name in sorted({names[label] for label in present} - NOT_GARMENTS):
        rows, cols = np.nonzero(np.isin(mask, [label for label in present if names[label] == name]))
        top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        if min(bottom - top, right - left) < min_side:
            continue
        pad_y, pad_x = round(MARGIN * (bottom - top)), round(MARGIN * (right - left))
        boxes[name] = (max(0, left - pad_x), max(0, top - pad_y), min(width, right + pad_x),
                       min(height, bottom + pad_y))
    return boxes


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("git_dir", help="a clone or mirror of bearpaw/clothing-co-parsing")
    parser.add_argument("out", type=Path)
    parser.add_argument("--top", type=int, default=10, help="keep the most frequent labels only")
    parser.add_argument("--min-side", type=int, default=48, help="pixels, the garment box's short side")
    parser.add_argument("--unseen-share", type=float, default=0.2, help="of the photos")
    parser.add_argument("--merge", nargs="*", default=[], metavar="OLD=NEW")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    renamed = dict(pair.split("=", 1) for pair in args.merge)
    names = [renamed.get(name, name) for name in label_names(args.git_dir)]
    listing = subprocess.run(["git", "-C", args.git_dir, "ls-tree", "--name-only", "HEAD",
                              "annotations/pixel-level/"], capture_output=True, text=True, check=True).stdout
    annotations = sorted(listing.split())
    boxes = {}
    for path, blob in read_blobs(args.git_dir, annotations).items():
        mask = loadmat(io.BytesIO(blob))["groundtruth"]
        boxes[Path(path).stem] = garment_boxes(mask, names, args.min_side)
    counts = Counter(name for found in boxes.values() for name in found)
    kept = {name for name, _ in counts.most_common(args.top)}
    photos = sorted(boxes)
    unseen = set(random.Random(args.seed).sample(photos, round(args.unseen_share * len(photos))))
    rows = [(photo, name, "unseen" if photo in unseen else "shop", " ".join(map(str, box)))
            for photo in photos for name, box in sorted(boxes[photo].items()) if name in kept]
    rows.sort(key=lambda row: (row[2], row[1], row[0]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "category", "role", "box"])
        writer.writerows(rows)
    by_role = {role: Counter(name for _, name, r, _ in rows if r == role) for role in ("shop", "unseen")}
    print(f"wrote {len(rows)} crops of {len(photos)} photos to {args.out}: "
          + ", ".join(f"{name} {by_role['shop'][name]}+{by_role['unseen'][name]}" for name in sorted(kept))
          + " (shop+unseen)")


if __name__ == "__main__":
    main()
