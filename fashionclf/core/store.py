"""Image sets on disk: one uint8 array (N, H, W, 3) plus a CSV manifest, written atomically.

Later stages train for many epochs, so images are decoded once (in clean) and
then only memory-mapped; a stage writes two files, not thousands.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

IMAGES = "images.npy"
MANIFEST = "manifest.csv"


def save_imageset(folder: Path | str, images: np.ndarray, manifest: pd.DataFrame) -> None:
    if len(images) != len(manifest):
        raise ValueError(f"{len(images)} images but {len(manifest)} manifest rows")
    with atomic_dir(folder) as tmp:
        np.save(tmp / IMAGES, np.ascontiguousarray(images, dtype=np.uint8))
        manifest.to_csv(tmp / MANIFEST, index=False)


def load_imageset(folder: Path | str, mmap: bool = True) -> tuple[np.ndarray, pd.DataFrame]:
    folder = Path(folder)
    images = np.load(folder / IMAGES, mmap_mode="r" if mmap else None)
    manifest = pd.read_csv(folder / MANIFEST, keep_default_na=False)
    return images, manifest


@contextmanager
def atomic_dir(folder: Path | str):
    """Yield a temp folder that replaces ``folder`` only if the block succeeds."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_atomic(path: Path | str, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path | str, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
