"""The data half (clean, label, balance, augment) on small generated images in temp dirs."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import make_class_folders, make_image, make_project, run
from fashionclf.core import params as P
from fashionclf.data.augment import augment
from fashionclf.data.balance import balance
from fashionclf.core.errors import DataError, LeakageError, assert_disjoint
from fashionclf.data.clean import clean
from fashionclf.data.label import label
from fashionclf.core.store import load_imageset

CATS4 = ["accessories", "bags", "clothing", "shoes"]
RULES4 = [{"pattern": f"^{c}/", "category": c} for c in CATS4]


def label_params(categories=CATS4, rules=RULES4):
    return P.LabelParams.model_validate({"categories": categories, "rules": rules})


def balance_params(per_class, test_fraction=0.25, seed=1, test_max_per_class=0, calibration_fraction=0.0,
                   calibration_max_per_class=0):
    return P.BalanceParams(per_class=per_class, test_fraction=test_fraction, test_max_per_class=test_max_per_class,
                           calibration_fraction=calibration_fraction,
                           calibration_max_per_class=calibration_max_per_class, seed=seed)


def run_data_half(raw, work, per_class=16, variants=2, corrections=None, seed=1):
    report = {"clean": clean(raw, 24, 4, 10_000_000, work / "clean", work / "dropped.csv")}
    report["label"] = label(label_params(), work / "clean", corrections or work / "none.csv", work / "labels.csv",
                            work / "unmatched.csv")
    report["balance"] = balance(balance_params(per_class, seed=seed), work / "clean", work / "labels.csv",
                                work / "balance")
    ap = P.AugmentParams(variants=variants, rotation=20, hflip=0.5, scale=(0.9, 1.1), seed=seed)
    augment(ap, work / "balance/trainval", work / "augment")
    return report


def test_folder_per_class_with_four_categories(tmp_path):
    raw = make_class_folders(tmp_path / "raw", CATS4, per_category=14)
    (tmp_path / "raw" / "notes.txt").write_text("not an image")
    (tmp_path / "raw" / "bags" / "empty.png").write_bytes(b"")
    make_image(tmp_path / "raw" / "misc" / "stray.png", 0, 99)  # matches no rule
    report = run_data_half(raw, tmp_path / "work")
    c = report["clean"]
    assert c["raw"] == 14 * 4 + 3
    assert c["raw"] == c["kept"] + sum(c["dropped"].values())
    assert c["dropped"] == {"not_an_image": 1, "zero_bytes": 1}
    assert report["label"]["per_category"] == {cat: 14 for cat in CATS4}
    assert report["label"]["unmatched"] == 1
    assert pd.read_csv(tmp_path / "work/unmatched.csv")["path"].tolist() == ["misc/stray.png"]
    b = report["balance"]
    assert b["sources"] == {cat: 14 for cat in CATS4}
    assert b["test"] == {cat: 4 for cat in CATS4}  # round(0.25 * 14) of each category's own images
    assert b["trainval"] == {cat: 16 for cat in CATS4}  # the training count does not move the test count
    assert b["oversampled"] == {cat: 6 for cat in CATS4}  # 10 sources left for 16 slots
    dropped = pd.read_csv(tmp_path / "work/dropped.csv")
    assert set(dropped["reason"]) == {"not_an_image", "zero_bytes"}


def test_test_and_trainval_groups_are_disjoint_and_variants_keep_group(tmp_path):
    raw = make_class_folders(tmp_path / "raw", CATS4, per_category=14)
    run_data_half(raw, tmp_path / "work", variants=2)
    _, test = load_imageset(tmp_path / "work/balance/test")
    _, trainval = load_imageset(tmp_path / "work/balance/trainval")
    assert not set(test["source_id"]) & set(trainval["source_id"])
    images, pool = load_imageset(tmp_path / "work/augment")
    assert not set(test["source_id"]) & set(pool["group"])
    # every original appears once, plus two variants each; oversampled copies are all variants
    originals = trainval[trainval["copy"] == 0]
    copies = trainval[trainval["copy"] > 0]
    assert len(pool) == len(originals) * 3 + len(copies) * 3
    assert (pool["variant"] == 0).sum() == len(originals)
    for (path, group), rows in pool.groupby(["path", "group"]):
        assert trainval[trainval["path"] == path]["source_id"].iloc[0] == group
    # variants differ from their original
    first = pool.index[(pool["variant"] == 0)][0]
    variant = pool.index[(pool["group"] == pool.at[first, "group"]) & (pool["variant"] == 1)][0]
    assert not np.array_equal(images[first], images[variant])


def test_seeded_runs_are_identical(tmp_path):
    raw = make_class_folders(tmp_path / "raw", CATS4, per_category=12)
    run_data_half(raw, tmp_path / "a", per_class=12)
    run_data_half(raw, tmp_path / "b", per_class=12)
    for sub in ("clean", "balance/test", "balance/trainval", "augment"):
        for name in ("images.npy", "manifest.csv"):
            assert (tmp_path / "a" / sub / name).read_bytes() == (tmp_path / "b" / sub / name).read_bytes()
    run_data_half(raw, tmp_path / "c", per_class=12, seed=2)
    assert (tmp_path / "a/balance/test/manifest.csv").read_bytes() != (tmp_path / "c/balance/test/manifest.csv").read_bytes()


def test_rules_first_match_wins_and_corrections_apply(tmp_path):
    raw = make_class_folders(tmp_path / "raw", ["bags", "shoes"], per_category=6)
    make_image(tmp_path / "raw" / "bags" / "shoe_in_bag_folder.png", 1, 500)
    work = tmp_path / "work"
    clean(raw, 24, 4, 10_000_000, work / "clean", work / "dropped.csv")
    corrections = tmp_path / "corrections.csv"
    corrections.write_text("path,category\nbags/shoe_in_bag_folder.png,shoes\nshoes/img_000.jpg,drop\n")
    rules = [{"pattern": "shoe_in", "category": "shoes"}, {"pattern": "^bags/", "category": "bags"},
             {"pattern": "^shoes/", "category": "shoes"}]
    report = label(label_params(["bags", "shoes"], rules), work / "clean", tmp_path / "none.csv", work / "l.csv",
                   work / "u.csv")
    assert report["per_category"] == {"bags": 6, "shoes": 7}  # the first rule wins over the folder
    report = label(label_params(["bags", "shoes"], rules[1:]), work / "clean", corrections, work / "l.csv",
                   work / "u.csv")
    labels = pd.read_csv(work / "l.csv").set_index("path")["category"]
    assert labels["bags/shoe_in_bag_folder.png"] == "shoes"
    assert "shoes/img_000.jpg" not in labels.index
    assert report["corrected"] == 2 and report["dropped_by_correction"] == 1
    assert report["per_category"] == {"bags": 6, "shoes": 6}


def test_leakage_check_fires():
    with pytest.raises(LeakageError, match="both sides of the test split"):
        assert_disjoint(["a", "b"], ["b", "c"], "the test split")


def test_too_few_images_for_the_test_split(tmp_path):
    raw = make_class_folders(tmp_path / "raw", CATS4, per_category=1)
    with pytest.raises(DataError, match="category 'accessories' has 1 distinct images"):
        run_data_half(raw, tmp_path / "work", per_class=40)


def test_test_split_is_proportional_to_each_category_and_capped():
    """A small category keeps most of its images for training, whatever the training count."""
    from fashionclf.data.balance import held_out_count
    assert held_out_count(185, 0.2, 0) == 37  # not 0.2 x 2000 = 400 of its 185
    assert held_out_count(20, 0.2, 0) == 4
    assert held_out_count(12000, 0.5, 1000) == 1000
    assert held_out_count(2, 0.1, 0) == 1  # at least one test image
    assert held_out_count(50, 0.0, 0, minimum=0) == 0  # no calibration split


def test_calibration_split_is_held_out_of_training_and_leaves_the_test_set_alone(tmp_path):
    """The calibration images are distinct images of their own, in no fold; adding the split moves no
    test image, nor any training image where the category has images to spare."""
    raw = make_class_folders(tmp_path / "raw", CATS4, per_category=20)
    clean(raw, 24, 4, 10_000_000, tmp_path / "clean", tmp_path / "dropped.csv")
    label(label_params(), tmp_path / "clean", tmp_path / "none.csv", tmp_path / "labels.csv", tmp_path / "u.csv")
    manifests = {}
    for name, fraction in [("without", 0.0), ("with", 0.2)]:
        report = balance(balance_params(30, 0.25, calibration_fraction=fraction), tmp_path / "clean",
                         tmp_path / "labels.csv", tmp_path / name)
        manifests[name] = {split: load_imageset(tmp_path / name / split)[1]
                           for split in ["test", "calibration", "trainval"]}
        assert report["calibration"] == ({c: 4 for c in CATS4} if fraction else {})
    with_cal = manifests["with"]
    assert len(with_cal["calibration"]) == 16 and manifests["without"]["calibration"].empty
    assert not set(with_cal["calibration"]["source_id"]) & set(with_cal["trainval"]["source_id"])
    assert not set(with_cal["calibration"]["source_id"]) & set(with_cal["test"]["source_id"])
    pd.testing.assert_frame_equal(with_cal["test"], manifests["without"]["test"])
    assert with_cal["trainval"]["source_id"].nunique() == 4 * (20 - 5 - 4)
    spare = {}
    for name, fraction in [("without", 0.0), ("with", 0.2)]:  # 8 training images of 15 per category
        balance(balance_params(8, 0.25, calibration_fraction=fraction), tmp_path / "clean", tmp_path / "labels.csv",
                tmp_path / f"spare_{name}")
        spare[name] = load_imageset(tmp_path / f"spare_{name}" / "trainval")
    assert (spare["with"][0] == spare["without"][0]).all()
    pd.testing.assert_frame_equal(spare["with"][1], spare["without"][1])


def test_dvc_repro_augment_on_user_folder_then_selective_rerun(tmp_path):
    raw = make_class_folders(tmp_path / "photos", CATS4, per_category=10)
    project = make_project(tmp_path / "repo", {
        "fetch.source": str(raw), "clean.canvas_size": 24, "label.categories": CATS4, "label.rules": RULES4,
        "balance.per_class": 10, "balance.test_fraction": 0.2})
    run(["dvc", "repro", "augment"], project)
    assert json.loads((project / "metrics/label.json").read_text())["per_category"] == {c: 10 for c in CATS4}
    assert "Running stage" not in run(["dvc", "repro", "augment"], project).stdout
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["augment"]["rotation"] = 5
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro", "augment"], project).stdout
    assert [l.split("'")[1] for l in out.splitlines() if l.startswith("Running stage")] == ["augment"]
