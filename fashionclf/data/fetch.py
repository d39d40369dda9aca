"""fetch: materialise the raw images as one archive, data/raw.zip.

Default source: Fashion-MNIST from the Debian package ``dataset-fashion-mnist``, else the
official download (SHA-256 checked). Images are exported as PNGs whose path in the archive carries
the class name, so labelling by path pattern is real. A user folder is copied file by file (never
modified) under its relative paths.

One uncompressed ZIP instead of 20,000 files: DVC hashes it as one file, so a no-op `dvc repro`
need not stat every image (it did, twice, in every run). Fixed member timestamps and order make
the archive the same bytes for the same images.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import urllib.request
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..core.errors import FetchError

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
CACHE_DIR = Path(os.environ.get("FASHIONCLF_CACHE", Path.home() / ".cache" / "fashionclf"))
FILES = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
CLASSES = ("t-shirt_top", "trouser", "pullover", "dress", "coat",
           "sandal", "shirt", "sneaker", "bag", "ankle_boot")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def locate_fashion_mnist(system_dir: Path = SYSTEM_DIR, cache_dir: Path = CACHE_DIR,
                         url: str = DOWNLOAD_URL) -> Path:
    """Folder holding the four verified IDX files: the Debian package's, else a download."""
    if all((system_dir / name).is_file() for name in FILES):
        return system_dir
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    for name, expected in FILES.items():
        target = cache_dir / name
        if target.is_file() and sha256(target) == expected:
            continue
        try:
            with urllib.request.urlopen(url + name, timeout=30) as resp, open(target, "wb") as out:
                shutil.copyfileobj(resp, out)
        except OSError as exc:
            raise FetchError(
                f"Fashion-MNIST not found in {system_dir} and download of {url + name} failed ({exc}). "
                "Install it (apt-get install dataset-fashion-mnist) or allow the download.") from None
        if sha256(target) != expected:
            target.unlink()
            raise FetchError(f"downloaded {name} has a wrong SHA-256 checksum; refusing to use it")
    return cache_dir


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


@contextmanager
def raw_archive(out: Path):
    """A ZipFile that replaces ``out`` only if the block succeeds (no partial archive)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
            yield archive
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def add_member(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def export_fashion_mnist(src: Path, archive: zipfile.ZipFile, per_class: int) -> dict:
    """Add up to ``per_class`` PNGs per class as fashion-mnist/<class>/<split>-<index>.png."""
    counts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(src / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(src / f"{prefix}-labels-idx1-ubyte.gz")
        for index in tqdm(range(len(labels)), desc=f"fetch {split}", mininterval=1, leave=False):
            cls = CLASSES[labels[index]]
            if per_class and counts.get(cls, 0) >= per_class:
                continue
            png = io.BytesIO()
            Image.fromarray(images[index]).save(png, format="PNG", compress_level=1)
            add_member(archive, f"fashion-mnist/{cls}/{split}-{index:05d}.png", png.getvalue())
            counts[cls] = counts.get(cls, 0) + 1
    return {"files": sum(counts.values()), "per_class": counts, "skipped": {}}


def copy_user_folder(src: Path, archive: zipfile.ZipFile) -> dict:
    """Copy every regular file below ``src``; links that cannot be followed are skipped and counted."""
    if not src.is_dir():
        raise FetchError(f"params.yaml: fetch.source {str(src)!r} is neither 'fashion-mnist' nor an existing folder")
    files, skipped = 0, {}
    for root, dirs, names in os.walk(src, followlinks=False):
        dirs.sort()
        for name in sorted(names) + [d for d in dirs if (Path(root) / d).is_symlink()]:
            path = Path(root) / name
            rel = path.relative_to(src)
            try:
                if path.is_dir():  # symlinked folder: not followed, avoids loops
                    raise IsADirectoryError("symlinked folder not followed")
                add_member(archive, rel.as_posix(), path.read_bytes())
                files += 1
            except OSError as exc:
                reason = "symlink loop or broken link" if path.is_symlink() else "unreadable"
                skipped.setdefault(reason, []).append(f"{rel} ({exc.strerror or exc})")
    return {"files": files, "skipped": {k: len(v) for k, v in skipped.items()},
            "skipped_files": skipped}


def fetch(source: str, per_class: int, out: Path | str) -> dict:
    """Write the raw images into the archive ``out`` and return the report."""
    out = Path(out)
    src = locate_fashion_mnist() if source == "fashion-mnist" else Path(source).expanduser()
    with raw_archive(out) as archive:
        if source == "fashion-mnist":
            return export_fashion_mnist(src, archive, per_class)
        return copy_user_folder(src, archive)
