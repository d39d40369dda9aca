"""balance: a stratified test hold-out from distinct sources, then per-category under/oversampling."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .params import BalanceParams
from .store import load_imageset, save_imageset


class DataError(RuntimeError):
    """The data cannot satisfy the parameters (too few images, leakage)."""


class LeakageError(DataError):
    pass


def assert_disjoint(groups_a, groups_b, where: str) -> None:
    shared = set(groups_a) & set(groups_b)
    if shared:
        example = sorted(shared)[0]
        raise LeakageError(f"leakage: {len(shared)} source image(s) on both sides of {where}, e.g. {example}")


def split_category(rows: pd.DataFrame, params: BalanceParams, rng) -> tuple[pd.DataFrame, pd.DataFrame]:
    category = rows["category"].iloc[0]
    n_test = max(1, round(params.test_fraction * params.per_class))
    n_trainval = params.per_class - n_test
    if len(rows) <= n_test or n_trainval < 1:
        raise DataError(f"category {category!r} has {len(rows)} images: too few for balance.per_class="
                        f"{params.per_class} with balance.test_fraction={params.test_fraction} "
                        f"(needs more than {n_test} distinct images)")
    order = rng.permutation(len(rows))
    test = rows.iloc[order[:n_test]]
    rest = rows.iloc[order[n_test:]]
    picks = np.arange(n_trainval) % len(rest)  # beyond the sources: repeat them, augment makes them new
    trainval = rest.iloc[picks].assign(copy=np.arange(n_trainval) // len(rest))
    return test, trainval


def balance(params: BalanceParams, clean_dir="data/clean", labels_csv="data/labels.csv",
            out="data/balance") -> dict:
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
    return {"test": count(test), "trainval": count(trainval),
            "oversampled": {c: int(n) for c, n in
                            trainval.groupby("category")["copy"].apply(lambda s: (s > 0).sum()).items()}}
