"""clean: decode every raw file once into the canonical RGB square; drop and count the rest."""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from . import imaging
from .store import save_imageset, write_atomic


def list_raw_files(raw: Path) -> list[str]:
    """Every entry below ``raw`` that is not a folder, as sorted POSIX paths relative to it."""
    found = []
    for root, dirs, names in os.walk(raw, followlinks=False):
        dirs.sort()
        for name in names + [d for d in dirs if (Path(root) / d).is_symlink()]:
            found.append((Path(root) / name).relative_to(raw).as_posix())
    return sorted(found)


def clean(raw: Path | str, size: int, min_side: int, max_pixels: int, out: Path | str,
          dropped_csv: Path | str) -> dict:
    raw = Path(raw)
    files = list_raw_files(raw)
    images, kept, dropped = [], [], []
    seen: dict[str, str] = {}
    for rel in tqdm(files, desc="clean", mininterval=1):
        try:
            pixels = imaging.decode(raw / rel, size, min_side, max_pixels)
        except imaging.ImageRejected as exc:
            dropped.append((rel, exc.reason, exc.detail))
            continue
        # duplicates are judged on the canonical pixels, so re-encodes of one photo count too
        digest = hashlib.sha1(pixels.tobytes()).hexdigest()
        if digest in seen:
            dropped.append((rel, imaging.DUPLICATE, f"same pixels as {seen[digest]}"))
            continue
        seen[digest] = rel
        images.append(pixels)
        kept.append((rel, digest))
    stack = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    save_imageset(out, stack, pd.DataFrame(kept, columns=["path", "source_id"]))
    write_atomic(dropped_csv, pd.DataFrame(dropped, columns=["path", "reason", "detail"]).to_csv(index=False))
    reasons = Counter(reason for _, reason, _ in dropped)
    return {"raw": len(files), "kept": len(kept), "dropped": dict(sorted(reasons.items()))}
