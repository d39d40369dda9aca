"""clean: decode every raw file once into the canonical RGB square; drop and count the rest."""
from __future__ import annotations

import hashlib
import os
import threading
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..core.errors import DataError
from ..core.store import save_imageset, write_atomic
from . import imaging

MAX_DECODE_THREADS = 8  # a cap, not measured past 2 cores: each thread holds a photo's bytes and its decode


def list_raw_files(raw: Path) -> list[str]:
    """Every entry below ``raw`` that is not a folder, as sorted POSIX paths relative to it."""
    found = []
    for root, dirs, names in os.walk(raw, followlinks=False):
        dirs.sort()
        for name in names + [d for d in dirs if (Path(root) / d).is_symlink()]:
            found.append((Path(root) / name).relative_to(raw).as_posix())
    return sorted(found)


def clean(raw: Path | str, size: int, min_side: int, max_pixels: int, out: Path | str,
          dropped_csv: Path | str, threads: int | None = None) -> dict:
    """Decode every raw image: the members of fetch's archive, or the files below a folder, on
    ``threads`` (default: decode_threads())."""
    raw = Path(raw)
    with ExitStack() as stack:
        try:
            archive = stack.enter_context(zipfile.ZipFile(raw)) if raw.is_file() else None
        except zipfile.BadZipFile:
            raise DataError(f"{raw} is neither a folder nor a zip archive of raw images") from None
        files = sorted(n for n in archive.namelist() if not n.endswith("/")) if archive else list_raw_files(raw)
        read = archive.read if archive else (lambda rel: raw / rel)
        return clean_files(files, read, size, min_side, max_pixels, out, dropped_csv, threads)


def decode_threads() -> int:
    """Every core this process may use: a phone photo's decode (27 ms at 12 MP, even at the JPEG's
    reduced draft scale) is most of clean's time, and PIL decodes and resizes with the GIL released."""
    return min(MAX_DECODE_THREADS, len(os.sched_getaffinity(0)))


def decoded_in_order(files, read, size, min_side, max_pixels, threads):
    """(path, pixels or the ImageRejected) per file, in the files' order: the same result on any
    number of threads, as each image's decode is independent of the others."""
    lock = threading.Lock()  # one reader of the archive at a time; decoding runs in parallel

    def decoded(rel):
        with lock:
            source = read(rel)
        try:
            return imaging.decode(source, size, min_side, max_pixels)
        except imaging.ImageRejected as exc:
            return exc

    with ThreadPoolExecutor(threads) as pool:
        yield from zip(files, pool.map(decoded, files))


def clean_files(files, read, size, min_side, max_pixels, out, dropped_csv, threads: int | None = None) -> dict:
    images, kept, dropped = [], [], []
    seen: dict[str, str] = {}
    results = decoded_in_order(files, read, size, min_side, max_pixels, threads or decode_threads())
    for rel, pixels in tqdm(results, total=len(files), desc="clean", mininterval=1):
        if isinstance(pixels, imaging.ImageRejected):
            dropped.append((rel, pixels.reason, pixels.detail))
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
