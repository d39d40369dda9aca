"""Draw a shop's and an unseen sample of real-photo ids from the shared labels.csv, by any of its
category columns, into the CSV that tools/real_photo_folders.py turns into photo folders.

    python tools/real_photo_ids.py LABELS_CSV OUT_CSV --column articleType --top 10 --in-ganesh \\
        --unseen 50 --shop 300 --seed 0

--column picks the category (the four-way ``category``, or Kaggle's ``articleType``, ``subCategory``);
--top keeps that many of its most frequent values, after leaving out the --skip most frequent (a
second slice of types: --skip 10 --top 12 is the 11th to the 22nd). Of each value's ids, a seeded
sample of --unseen goes to the unseen role and at most --shop of the rest to the shop: the two never
share an id.
Category names are the values lower-cased, spaces as underscores (sub-folder names).
"""
import argparse
import csv
import random
from collections import Counter, defaultdict
from pathlib import Path


def folder_name(value: str) -> str:
    return value.strip().lower().replace(" ", "_")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("labels", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--column", default="category")
    parser.add_argument("--top", type=int, default=0, help="keep the most frequent values only (0: all)")
    parser.add_argument("--skip", type=int, default=0, help="leave out this many of the most frequent values first")
    parser.add_argument("--in-ganesh", action="store_true", help="only ids the 224 px repository holds")
    parser.add_argument("--unseen", type=int, required=True, help="unseen ids per category")
    parser.add_argument("--shop", type=int, default=0, help="shop ids per category, at most (0: all the rest)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = list(csv.DictReader(args.labels.open(newline="")))
    if args.column not in rows[0]:
        raise SystemExit(f"error: --column {args.column!r} is not a column of {args.labels} ({', '.join(rows[0])})")
    if args.in_ganesh:
        rows = [r for r in rows if r["in_ganesh"] == "1"]
    counts = Counter(r[args.column] for r in rows)
    ranked = [value for value, _ in counts.most_common()][args.skip:]
    kept = ranked[: args.top or None]
    ids = defaultdict(list)
    for r in rows:
        ids[r[args.column]].append(r["id"])
    rng = random.Random(args.seed)
    out = []
    for value in sorted(kept):
        drawn = rng.sample(sorted(ids[value], key=int), len(ids[value]))
        if len(drawn) <= args.unseen:
            raise SystemExit(f"error: {value!r} has {len(drawn)} ids, not more than --unseen {args.unseen}")
        shop = drawn[args.unseen:][: args.shop or None]
        out += [(i, folder_name(value), "unseen") for i in drawn[: args.unseen]]
        out += [(i, folder_name(value), "shop") for i in shop]
    out.sort(key=lambda row: (row[2], row[1], int(row[0])))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "category", "role"])
        writer.writerows(out)
    shop = Counter(c for _, c, role in out if role == "shop")
    print(f"wrote {len(out)} ids to {args.out}: {len(kept)} categories of {args.column}; shop "
          + ", ".join(f"{c} {n}" for c, n in sorted(shop.items())) + f"; unseen {args.unseen} each")


if __name__ == "__main__":
    main()
