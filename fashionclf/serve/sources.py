"""Where a catalogue's images are: folders, globs and manifests (CSV or Parquet with a path column),
on the local disk, pyarrow's filesystems (``s3://``, ``gs://``) or any fsspec one; and reading one
image from there with the imaging rules of training."""
from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..core.errors import ImageRejected
from ..data.imaging import NOT_A_FILE, UNREADABLE, decode


MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")



def is_uri(path: str) -> bool:
    return "://" in path



def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path inside it) for a local path or a URI: pyarrow's own filesystems
    (s3, gs, hdfs, file) where it has one, else any fsspec filesystem (http, memory, abfs, ...)
    through pyarrow's fsspec adapter."""
    if not is_uri(path):
        return pafs.LocalFileSystem(), str(Path(path).absolute())
    try:
        return pafs.FileSystem.from_uri(path)
    except pa.ArrowInvalid:  # "Unrecognized filesystem type": not one of pyarrow's own
        import fsspec

        fs, inside = fsspec.core.url_to_fs(path)
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), inside



class Filesystems:
    """One filesystem per URI scheme, made once per process (an S3 client is not free)."""

    def __init__(self):
        self.by_scheme = {}

    def resolve(self, uri: str) -> tuple[pafs.FileSystem, str]:
        if not is_uri(uri):
            return filesystem(uri)
        scheme = uri.split("://", 1)[0]
        if scheme not in self.by_scheme:
            self.by_scheme[scheme] = filesystem(uri)[0]
        fs = self.by_scheme[scheme]
        if isinstance(fs, pafs.PyFileSystem):
            return fs, fs.handler.fs._strip_protocol(uri)
        return fs, uri.split("://", 1)[1]



def as_given(item: str, found: str) -> str:
    """A listed file as the user would write it: with the URI's scheme, or, for local paths, absolute
    or relative to the working directory as ``item`` was (as predict writes them)."""
    if is_uri(item):
        return f"{item.split('://', 1)[0]}://{found}"
    return found if Path(item).is_absolute() else os.path.relpath(found)



def list_files(item: str) -> list[str]:
    """The files of a folder (recursively), a glob (``*``, ``?``, ``[``; ``**`` crosses folders) or
    a single file, sorted."""
    fs, inside = filesystem(item)
    if any(ch in inside for ch in "*?["):
        base = inside[:min(inside.index(ch) for ch in "*?[" if ch in inside)].rsplit("/", 1)[0]
        pattern = inside.replace("**/", "*")  # fnmatch's * already crosses '/'
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        return sorted(as_given(item, i.path) for i in infos
                      if i.type == pafs.FileType.File and fnmatch.fnmatchcase(i.path, pattern))
    info = fs.get_file_info(inside)
    if info.type == pafs.FileType.Directory:
        infos = fs.get_file_info(pafs.FileSelector(inside, recursive=True))
        return sorted(as_given(item, i.path) for i in infos if i.type != pafs.FileType.Directory)
    return [item]  # a file, or a path that does not exist (scored as an error, never dropped)



def read_manifest(item: str, path_column: str) -> list[str]:
    """The path column of a CSV or Parquet manifest, on any pyarrow filesystem."""
    import pyarrow.csv as pacsv

    fs, inside = filesystem(item)
    if item.lower().endswith(".csv"):
        with fs.open_input_stream(inside) as stream:
            table = pacsv.read_csv(stream, convert_options=pacsv.ConvertOptions(
                column_types={path_column: pa.string()}))
    else:
        table = pq.read_table(inside, filesystem=fs)
    if path_column not in table.column_names:
        raise ValueError(f"manifest {item} has no {path_column!r} column (--path-column)")
    return [str(p) for p in table.column(path_column).to_pylist() if p is not None and str(p).strip()]



def list_paths(inputs, path_column: str = "path") -> list[str]:
    """Every image path or URI named by ``inputs``: folders, globs, files and manifests."""
    paths = []
    for item in inputs:
        if item.lower().endswith(MANIFEST_SUFFIXES) and not any(ch in item for ch in "*?["):
            paths += read_manifest(item, path_column)
        else:
            paths += list_files(item)
    return paths



def as_dataset(paths: list[str], rows_per_block: int):
    """The paths as a Ray Dataset of blocks of ``rows_per_block`` rows (the unit the actors take).

    Listing and manifests are read here, not in Ray read tasks: with every CPU of a small machine
    held by model actors, a read (or repartition) task that needs a CPU never starts."""
    import ray.data

    column = pa.array(paths, pa.string())
    blocks = [pa.table({"path": column.slice(start, rows_per_block)}) for start in range(0, len(paths), rows_per_block)]
    return ray.data.from_arrow(blocks) if blocks else None



def read_image(path: str, canvas: int, filesystems: Filesystems) -> np.ndarray:
    """Decode one image (local path or URI) with the imaging rules of training."""
    if not is_uri(path):
        return decode(path, canvas)
    try:
        fs, inside = filesystems.resolve(path)
        with fs.open_input_stream(inside) as stream:
            data = stream.read()
    except FileNotFoundError:
        raise ImageRejected(NOT_A_FILE, "not found") from None
    except (OSError, ValueError) as exc:
        raise ImageRejected(UNREADABLE, f"{type(exc).__name__}: {exc}") from None
    return decode(data, canvas)



def stat(path: str, filesystems: Filesystems) -> tuple[int, int]:
    """(size, mtime in ns) of a file, (-1, -1) when it cannot be stat'ed (it is then scored as an error)."""
    try:
        fs, inside = filesystems.resolve(path)
        info = fs.get_file_info(inside)
    except (OSError, ValueError):
        return -1, -1
    if info.type != pafs.FileType.File:
        return -1, -1
    return int(info.size if info.size is not None else -1), int(info.mtime_ns or 0)
