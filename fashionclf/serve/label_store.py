"""The label store's layout under OUT: ``scores/<model version>/`` (raw probabilities, appended per
run), ``labels/batch=<stamp>/`` (decided rows, one folder per batch) and ``runs/<stamp>.json``;
every batch appears whole or not at all (written in a hidden folder, then moved)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq


SCORES, LABELS = "scores", "labels"



def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")



def parquet_files(fs: pafs.FileSystem, folder: str) -> list[str]:
    """The Parquet files below ``folder``, leaving out hidden folders (a batch being written)."""
    infos = fs.get_file_info(pafs.FileSelector(folder, recursive=True, allow_not_found=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet")
                  and "/." not in i.path[len(folder):])



def readable(fs: pafs.FileSystem, files: list[str]) -> tuple[list[str], list[str]]:
    """(whole Parquet files, files a killed job left half written)."""
    good, broken = [], []
    for file in files:
        try:
            with fs.open_input_file(file) as fh:
                pq.read_metadata(fh)
            good.append(file)
        except (OSError, pa.ArrowInvalid):
            broken.append(file)
    return good, broken



def read_column(fs: pafs.FileSystem, files: list[str], columns: list[str]) -> pa.Table:
    if not files:
        return pa.table({c: pa.array([], pa.int64()) for c in columns})
    return pa.concat_tables([pq.read_table(f, columns=columns, filesystem=fs) for f in files])


def scored_keys(fs: pafs.FileSystem, scores_dir: str):
    """The keys of the images already scored; files a killed job left half written are removed, so
    their images are scored again."""
    good, broken = readable(fs, parquet_files(fs, scores_dir))
    for file in broken:
        fs.delete_file(file)
    return read_column(fs, good, ["key"]).column("key").to_numpy()


def undecided(fs: pafs.FileSystem, out: str, scores_dir: str) -> tuple[pa.Table | None, int]:
    """(the scored rows not yet in OUT/labels, how many images were labelled before)."""
    decided = read_column(fs, parquet_files(fs, f"{out}/{LABELS}"), ["key"]).column("key")
    files = parquet_files(fs, scores_dir)
    if not files:
        return None, len(decided)
    scores = pa.concat_tables([pq.read_table(f, filesystem=fs) for f in files])
    return scores.filter(pc.invert(pc.is_in(scores.column("key"), decided))), len(decided)


def write_batch(fs: pafs.FileSystem, out: str, table: pa.Table) -> tuple[str, str]:
    """(stamp, folder) of a new labels batch, written whole or not at all."""
    batch = now()
    tmp_dir, final_dir = f"{out}/{LABELS}/.batch={batch}", f"{out}/{LABELS}/batch={batch}"
    fs.create_dir(tmp_dir)
    pq.write_table(table, f"{tmp_dir}/part-0.parquet", filesystem=fs)
    fs.move(tmp_dir, final_dir)
    return batch, final_dir


def write_run_report(fs: pafs.FileSystem, out: str, batch: str, report: dict) -> None:
    fs.create_dir(f"{out}/runs")
    with fs.open_output_stream(f"{out}/runs/{batch}.json") as fh:
        fh.write((json.dumps(report, indent=2) + "\n").encode())
