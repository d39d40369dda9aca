"""balance: a stratified test hold-out from each category's own distinct images, then per-category
under/oversampling of what remains for training."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.errors import DataError, assert_disjoint
from ..core.params import BalanceParams
from ..core.store import load_imageset, save_imageset


def test_count(n_sources: int, params: BalanceParams) -> int:
    """``test_fraction`` of the category's own distinct images, at most ``test_max_per_class``:
    a small category keeps most of its images for training, whatever the training count."""
    n_test = max(1, round(params.test_fraction * n_sources))
    return min(n_test, params.test_max_per_class) if params.test_max_per_class else n_test


def split_category(rows: pd.DataFrame, params: BalanceParams, rng) -> tuple[pd.DataFrame, pd.DataFrame]:
    category = rows["category"].iloc[0]
    n_test = test_count(len(rows), params)
    if len(rows) - n_test < 1:
        raise DataError(f"category {category!r} has {len(rows)} distinct images: too few to hold out "
                        f"balance.test_fraction={params.test_fraction} for the test set and train on the rest")
    order = rng.permutation(len(rows))
    test = rows.iloc[order[:n_test]]
    rest = rows.iloc[order[n_test:]]
    picks = np.arange(params.per_class) % len(rest)  # beyond the sources: repeat them, augment makes them new
    trainval = rest.iloc[picks].assign(copy=np.arange(params.per_class) // len(rest))
    return test, trainval


def balance(params: BalanceParams, clean_dir, labels_csv, out) -> dict:
    images, _ = load_imageset(clean_dir)
    labels = pd.read_csv(labels_csv, keep_default_na=False).sort_values("path", kind="stable")
    if labels.empty:
        raise DataError("no labelled images to balance (see metrics/label.json and data/unmatched.csv)")
    rng = np.random.default_rng(params.seed)
    tests, trainvals = [], []
    for _, rows in labels.groupby("category", sort=True):
        test, trainval = split_category(rows, params, rng)
        tests.append(test)
        trainvals.append(trainval)
    test, trainval = pd.concat(tests), pd.concat(trainvals)
    assert_disjoint(test["source_id"], trainval["source_id"], "the test split")
    cols = ["path", "source_id", "category"]
    save_imageset(f"{out}/test", images[test["row"].to_numpy()], test[cols].reset_index(drop=True))
    save_imageset(f"{out}/trainval", images[trainval["row"].to_numpy()],
                  trainval[cols + ["copy"]].reset_index(drop=True))
    count = lambda df: {k: int(v) for k, v in df["category"].value_counts().sort_index().items()}
    first_copies = trainval[trainval["copy"] == 0]
    return {"sources": count(labels), "test": count(test), "train_sources": count(first_copies),
            "trainval": count(trainval),
            "oversampled": {c: int(n) for c, n in
                            trainval.groupby("category")["copy"].apply(lambda s: (s > 0).sum()).items()}}
