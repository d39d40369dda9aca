"""label: category from ordered regex rules on the raw-relative path, then manual corrections."""
from __future__ import annotations

import csv
from pathlib import Path

from ..core.errors import ParamError
from ..core.params import DROP, LabelParams
from ..core.store import load_imageset, write_atomic


def read_corrections(path: Path, categories) -> dict[str, str]:
    if not path.is_file():
        return {}
    corrections = {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None:
            return {}
        if [f.strip() for f in reader.fieldnames] != ["path", "category"]:
            raise ParamError(f"{path}: header must be 'path,category', got {','.join(reader.fieldnames)!r}")
        for line, row in enumerate(reader, start=2):
            category = (row["category"] or "").strip()
            if category != DROP and category not in categories:
                raise ParamError(f"{path}:{line}: category {category!r} is not in label.categories "
                                 f"{list(categories)} nor '{DROP}'")
            corrections[row["path"].strip()] = category
    return corrections


def apply_rules(paths, params: LabelParams) -> list[str | None]:
    labels = []
    hits = [0] * len(params.rules)
    for path in paths:
        label = None
        for i, rule in enumerate(params.rules):
            if rule.pattern.search(path):
                hits[i] += 1
                if label is None:
                    label = rule.category
        labels.append(label)
    for i, rule in enumerate(params.rules):
        if hits[i] == 0 and len(paths):
            raise ParamError(f"params.yaml: label.rules[{i}].pattern {rule.pattern.pattern!r} "
                             f"matches no image in the cleaned data")
    return labels


def label(params: LabelParams, clean_dir, corrections_csv, out, unmatched_csv) -> dict:
    """Label every cleaned image; ``corrections_csv`` (path,category; may be absent) overrides rules."""
    _, manifest = load_imageset(clean_dir)
    paths = manifest["path"].tolist()
    labels = apply_rules(paths, params)
    corrections = read_corrections(Path(corrections_csv), params.categories)
    corrected = 0
    for i, path in enumerate(paths):
        if path in corrections and corrections[path] != labels[i]:
            labels[i] = corrections[path]
            corrected += 1
    table = manifest.assign(row=range(len(manifest)), category=labels)
    unmatched = table[table["category"].isna()]
    dropped = table[table["category"] == DROP]
    labelled = table[table["category"].notna() & (table["category"] != DROP)]
    write_atomic(out, labelled[["row", "path", "source_id", "category"]].to_csv(index=False))
    write_atomic(unmatched_csv, unmatched[["path"]].to_csv(index=False))
    counts = labelled["category"].value_counts()
    return {"labelled": len(labelled), "unmatched": len(unmatched), "corrected": corrected,
            "dropped_by_correction": len(dropped),
            "unused_corrections": len(set(corrections) - set(paths)),
            "per_category": {c: int(counts.get(c, 0)) for c in params.categories}}
