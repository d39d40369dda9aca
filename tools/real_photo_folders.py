"""The shop and unseen folders that docs/own-photos.md measured, rebuilt from a git directory of the
public repository that holds the photos (a clone or a mirror; photos are never committed here).

    python tools/real_photo_folders.py bench/real_photo_ids/thumbnails_60x80.csv GIT_DIR OUT \\
        --path 'data/images/{id}.jpg'      # tanmay0401/multimodal-recommendation-engine
    python tools/real_photo_folders.py bench/real_photo_ids/photos_224px.csv GIT_DIR OUT \\
        --path 'images/{id}.jpg'           # GaneshNeupane01/Fashion-Recommendation-System

writes OUT/shop/<category>/<id>.jpg and OUT/unseen/<category>/<id>.jpg, the folders
bench/real_photos.py takes. --size WxH resizes every photo (for example 96x128: the 224 px set,
stretched from 3:4 in its repository, back to 3:4 with a 128 px long side, as a shop's smaller photos).
A ``box`` column ("left top right bottom", from tools/garment_crop_ids.py) crops each photo to it first:

    python tools/real_photo_folders.py bench/real_photo_ids/ccp_garments10.csv GIT_DIR OUT \\
        --path 'photos/{id}.jpg'           # bearpaw/clothing-co-parsing
"""
import argparse
import csv
import io
import subprocess
from pathlib import Path

from PIL import Image


def read_blobs(git_dir: str, paths) -> dict[str, bytes | None]:
    """Each distinct path's bytes at HEAD (None where the repository lacks it), from one
    `git cat-file --batch`: per file a header line, then exactly that many bytes."""
    unique = list(dict.fromkeys(paths))
    out = subprocess.run(["git", "-C", git_dir, "cat-file", "--batch"], capture_output=True, check=True,
                         input="".join(f"HEAD:{path}\n" for path in unique).encode()).stdout
    blobs, at = {}, 0
    for path in unique:
        end = out.index(b"\n", at)
        header = out[at:end].split()
        at = end + 1
        if header[-1] == b"missing":
            blobs[path] = None
            continue
        size = int(header[2])
        blobs[path] = out[at:at + size]
        at += size + 1
    return blobs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ids", type=Path, help="CSV with id, category, role (shop or unseen) and optionally box")
    parser.add_argument("git_dir")
    parser.add_argument("out", type=Path)
    parser.add_argument("--path", required=True, help="the photo's path in the repository, with {id}")
    parser.add_argument("--size", help="WxH: resize every photo to this (Lanczos, JPEG quality 95)")
    args = parser.parse_args()
    size_to = tuple(int(side) for side in args.size.lower().split("x")) if args.size else None
    rows = list(csv.DictReader(args.ids.open(newline="")))
    photo_paths = [args.path.format(id=row["id"]) for row in rows]
    blobs = read_blobs(args.git_dir, photo_paths)  # a photo with several crops is read once
    missing = 0
    for row, photo_path in zip(rows, photo_paths):
        data = blobs[photo_path]
        if data is None:
            missing += 1
            continue
        target = args.out / row["role"] / row["category"] / f"{row['id']}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        if size_to or row.get("box"):
            image = Image.open(io.BytesIO(data)).convert("RGB")
            if row.get("box"):
                image = image.crop(tuple(int(side) for side in row["box"].split()))
            if size_to:
                image = image.resize(size_to, Image.Resampling.LANCZOS)
            image.save(target, quality=95)
        else:
            target.write_bytes(data)
    print(f"wrote {len(rows) - missing} photos under {args.out} (missing in the repository: {missing})")


if __name__ == "__main__":
    main()
