"""A shop's own photos: `fashionclf init`, the proportional split, calibration, the review threshold
and the label audit, on a generated photo-like folder (coloured objects on white, uneven category
sizes, one category of 20 photos)."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import make_blobs
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict

from conftest import ROOT, cli, make_image, make_project, python_cmd, run
from fashionclf.core import params
from fashionclf.report.audit import SUSPECT_COLUMNS, suspect_labels
from fashionclf.learn.inference import Ensemble
from fashionclf.core.scoring import probabilities_of
from fashionclf.report.calibration import (NOTHING, Calibration, categories_of, conformal_p_values,
                                           expected_calibration_error, fit_temperature, learn_then_test_threshold,
                                           scaled, select_automatic)
from fashionclf.report.evaluation import load_test_set
from fashionclf.learn.timing import Costs, Measured, Schedule, measure
from fashionclf.serve.init import PhotoFolder, plan, scan, unhashable_entries

SHOP = {"accessories": 45, "bags": 20, "clothing": 90, "shoes": 60}  # uneven; bags has 20 photos


@pytest.fixture(scope="module")
def shop_photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("shop") / "photos"
    for kind, (category, count) in enumerate(SHOP.items()):
        for n in range(count):
            make_image(root / category.capitalize() / f"photo_{n:03d}.jpg", kind, 7000 + 100 * kind + n,
                       size=(120, 100), fmt="JPEG")
    return root


def fake_costs(name, size, last_speedup=1.0):
    """Costs as if measured: they grow with pixels, the pretrained model the dearest; a fold of the
    last round ``last_speedup`` times faster than one beside another."""
    train = {"efficientnet_lite0": 4e-3, "efficientnet_lite1": 6e-3, "efficientnet_lite2": 8e-3, "mobilenet_v2": 2e-3,
             "resnet18": 3e-3, "efficientnet_lite0_tail": 3e-4}[name] * (size / 64) ** 2
    return Costs(fold=(train, train / 3), last=(train / last_speedup, train / 3 / last_speedup), test=train / 4)


def test_init_plan_fits_the_budget_and_validates(shop_photos):
    photos = scan(shop_photos)
    assert photos.counts == {"Accessories": 45, "Bags": 20, "Clothing": 90, "Shoes": 60}
    assert photos.median_long_side == 120
    template = yaml.safe_load(open(params.PARAMS_FILE))
    generous = plan(photos, template, budget_s_ref=900, speed=250, costs=fake_costs)
    tight = plan(photos, template, budget_s_ref=25, speed=250, costs=fake_costs)
    p = generous.params
    assert p["label"]["categories"] == ["accessories", "bags", "clothing", "shoes"]
    assert {"pattern": "^Bags/", "category": "bags"} in p["label"]["rules"]
    assert p["clean"]["canvas_size"] == 120 == p["train"]["models"]["efficientnet_lite0"]["image_size"]
    small = plan(dataclasses.replace(photos, median_long_side=80), template, 900, 250, fake_costs).params
    assert small["clean"]["canvas_size"] == 80 and small["train"]["models"]["efficientnet_lite0"]["image_size"] == 112
    large = plan(dataclasses.replace(photos, median_long_side=224), template, 900, 250, fake_costs).params
    assert large["clean"]["canvas_size"] == 128 == large["train"]["models"]["efficientnet_lite0"]["image_size"]
    # a faster last round leaves budget for more epochs
    sped = plan(photos, template, 100, 250, lambda name, size: fake_costs(name, size, last_speedup=1.6))
    plain = plan(photos, template, 100, 250, fake_costs)
    assert sped.params["train"]["models"]["efficientnet_lite0"]["epochs"] > plain.params["train"]["models"][
        "efficientnet_lite0"]["epochs"]
    assert set(generous.params["train"]["models"]) > set(tight.params["train"]["models"]) == {"efficientnet_lite0"}
    assert generous.estimate_s <= 900
    assert any("resnet18 left out" in r for r in tight.reasons)
    assert any(r.startswith("warning: even this smallest plan") for r in tight.reasons)
    short = [r for r in tight.reasons if "fewer than its 6 epochs" in r]
    assert len(short) == 1 and int(short[0].split("--budget-minutes ")[1].split()[0]) > 1  # a budget that would
    assert generous.params["train"]["models"]["efficientnet_lite0"]["epochs"] == 6  # the budget goes to it first
    assert generous.params["train"]["folds"] == 3 and generous.params["balance"]["calibration_fraction"] == 0.2
    # the fine-tuned tail: where half the budget pays for it, never over it
    tail = generous.params["train"]["models"]["efficientnet_lite0_tail"]
    assert tail["image_size"] == 224 and any(r.startswith("efficientnet_lite0_tail:") for r in generous.reasons)
    assert "efficientnet_lite0_tail" not in tight.params["train"]["models"]
    assert any(r.startswith("no fine-tuned tail") for r in tight.reasons)
    warnings = [r for r in generous.reasons if r.startswith("warning")]
    assert len(warnings) == 1 and "43 calibration photos, fewer than the 99" in warnings[0]  # a 215-photo shop's queue
    # a machine half as fast, measured as such, gets the same plan for a budget at the reference speed
    slow = plan(photos, template, budget_s_ref=900, speed=125,
                costs=lambda name, size: Costs(**{k: np.multiply(2, v) for k, v in
                                                  dataclasses.asdict(fake_costs(name, size)).items()}))
    assert slow.params["train"]["models"] == generous.params["train"]["models"]


def test_a_large_catalogue_holds_out_a_few_hundred_photos_a_category_and_plans_within_the_budget():
    """15% and 20% of 10,000 photos a category would be 3,500 held-out photos each for the test stages
    to predict with every fold model, which took the plan over the budget while the models trained on
    100 a category. Capped at the default pipeline's few hundred, the plan trains on 800 a category."""
    from fashionclf.serve.init import CALIBRATION_MAX_PER_CLASS, TEST_MAX_PER_CLASS
    template = yaml.safe_load(open(params.PARAMS_FILE))
    large = PhotoFolder(ROOT, dict.fromkeys(("bags", "dresses", "shoes", "watches"), 10_000), median_long_side=224)
    chosen = plan(large, template, budget_s_ref=900, speed=250, costs=fake_costs)
    balance = chosen.params["balance"]
    assert (balance["test_max_per_class"], balance["calibration_max_per_class"]) == (TEST_MAX_PER_CLASS,
                                                                                  CALIBRATION_MAX_PER_CLASS)
    assert balance["per_class"] == 800 and chosen.estimate_s <= 900
    assert not any(r.startswith("warning") or "cut to" in r for r in chosen.reasons), chosen.reasons
    assert any(f"{4 * (TEST_MAX_PER_CLASS + CALIBRATION_MAX_PER_CLASS)} photos in all" in r for r in chosen.reasons)


def test_init_says_what_it_leaves_of_a_budget_its_plan_cannot_use():
    """A small shop's plan, every model at its whole recipe, leaves most of 15 minutes: init says how
    much, and which smaller budget would have given the same plan."""
    template = yaml.safe_load(open(params.PARAMS_FILE))
    small = PhotoFolder(ROOT, dict.fromkeys(("bags", "shoes"), 60), median_long_side=224)
    chosen = plan(small, template, budget_s_ref=900, speed=250, costs=fake_costs)
    [left] = [r for r in chosen.reasons if "of the budget left over" in r]
    minutes = int(left.split("--budget-minutes ")[1].split()[0])
    assert minutes < 15 and plan(small, template, 60 * minutes, 250, fake_costs).params == chosen.params


def test_init_warns_where_the_calibration_split_is_too_small_for_the_target_precision():
    """A conformal p-value is at least 1 / (n + 1): with fewer than 99 calibration photos the queue
    labels nothing at 0.99 (ten small article types: 92, every unseen photo sent to review). init says
    so, and names a target the split can meet; with enough photos it says nothing."""
    from fashionclf.report.calibration import select_automatic
    template = yaml.safe_load(open(params.PARAMS_FILE))
    small = PhotoFolder(ROOT, {f"type{k}": 40 for k in range(10)}, median_long_side=224)
    [warning] = [r for r in plan(small, template, 900, 250, fake_costs).reasons if "calibration photos, fewer" in r]
    assert warning.startswith("warning: 80 calibration photos, fewer than the 99 with which")
    best = float(warning.split("a target of at most ")[1].split()[0])
    assert best == 0.987
    confident = np.full(5, 0.999)
    for target, labels in ((template["review"]["target_precision"], False), (best, True)):
        assert select_automatic(np.full(80, 0.9), np.ones(80, bool), confident, target)[0].any() == labels
    large = PhotoFolder(ROOT, {f"type{k}": 60 for k in range(10)}, median_long_side=224)  # 12 a category
    assert not any("calibration photos, fewer" in r for r in plan(large, template, 900, 250, fake_costs).reasons)


def test_init_costs_decoding_and_copying_the_shops_own_photos(shop_photos):
    """clean's decoding is timed on a sample of the shop's photos and spread over its threads, and
    fetch's copy is costed per byte: phone photos (27 ms a decode at 12 MP) cost the stages around
    the models minutes, where 224 px ones cost seconds. The same models, a larger estimate."""
    from fashionclf.data.clean import decode_threads
    from fashionclf.serve.init import COPY_S_PER_BYTE, fixed_seconds
    photos = scan(shop_photos)
    files = [f for f in shop_photos.rglob("*.jpg")]
    assert photos.total_bytes == sum(f.stat().st_size for f in files)
    assert 0 < photos.decode_s < 1
    template = yaml.safe_load(open(params.PARAMS_FILE))
    light = plan(photos, template, budget_s_ref=900, speed=250, costs=fake_costs)
    phone = dataclasses.replace(photos, decode_s=0.027, total_bytes=len(files) * 3_000_000)
    heavy = plan(phone, template, budget_s_ref=900, speed=250, costs=fake_costs)
    assert heavy.params["train"]["models"] == light.params["train"]["models"]
    extra = len(files) * (0.027 - photos.decode_s) / decode_threads() \
        + (phone.total_bytes - photos.total_bytes) * COPY_S_PER_BYTE
    assert fixed_seconds(phone) - fixed_seconds(photos) == pytest.approx(extra)
    assert heavy.estimate_s - light.estimate_s == pytest.approx(extra)
    assert any(r.startswith("the stages around the models: about") and "27.0 ms" in r for r in heavy.reasons)


def test_a_tails_cost_one_frozen_pass_per_view_and_its_steps_per_fold():
    """A fine-tuned tail (learn/tail.py): init costs the frozen part at two backbone passes per training
    photo, once for all folds; each fold's tail steps over both views an epoch and its validation;
    and the test stages at one backbone pass per held-out image and every fold's tail on its output
    (learn/inference.Ensemble)."""
    from fashionclf.serve.init import MEASURED_OVER_MODELLED, MODEL_STAGES_S, tail_seconds, testing_seconds
    tail, backbone = fake_costs("efficientnet_lite0_tail", 224), fake_costs("efficientnet_lite0", 224)
    schedule = Schedule(3, 2, 1, 2, 2)
    one_pass = testing_seconds(backbone, schedule, held_out=300, noise_levels=2, passes=1)
    assert one_pass == pytest.approx(300 * 4 * backbone.test)  # test, calibration and two noise levels
    tails = 3 * 300 * 4 * tail.test
    untested = tail_seconds(tail, backbone, schedule, 3, per_class=100, classes=4, held_out=0, noise_levels=2)
    assert tail_seconds(tail, backbone, schedule, 3, 100, 4, 300, 2) == pytest.approx(
        untested + (one_pass + tails) * MEASURED_OVER_MODELLED)
    one_fold = lambda cost: 3 * (2 * 400 * 2 / 3 * cost[0] + 400 / 3 * cost[1])  # 3 epochs, 400 images
    frozen = 2 * 400 * backbone.test
    assert untested == pytest.approx((frozen + one_fold(tail.fold) + one_fold(tail.last)) * MEASURED_OVER_MODELLED
                                     + MODEL_STAGES_S)  # its stages' start and writes, once
    assert tail_seconds(tail, backbone, schedule, 6, 100, 4, 0, 2) == pytest.approx(
        2 * untested - frozen - MODEL_STAGES_S)


def test_init_chooses_the_largest_backbone_the_budget_trains_long_enough():
    from fashionclf.serve.init import LARGER_BACKBONE_EPOCHS, pretrained_choice
    enough = LARGER_BACKBONE_EPOCHS
    lite = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
    assert pretrained_choice(dict(zip(lite, (6, enough + 1, enough)))) == "efficientnet_lite2"
    assert pretrained_choice(dict(zip(lite, (6, enough, enough - 1)))) == "efficientnet_lite1"
    assert pretrained_choice(dict(zip(lite, (enough - 1, 2, 2)))) == "efficientnet_lite0"
    template = yaml.safe_load(open(params.PARAMS_FILE))
    photos = PhotoFolder(ROOT, {"bags": 300, "shoes": 300}, median_long_side=128)
    for budget, expected in ((60, "efficientnet_lite0"), (1500, "efficientnet_lite2")):
        chosen = plan(photos, template, budget, 250, fake_costs, backbones=lite)
        assert next(iter(chosen.params["train"]["models"])) == expected, (budget, chosen.reasons)
        assert chosen.estimate_s <= budget or budget == 60


def test_init_leaves_a_baseline_out_only_where_it_would_not_fit_beside_the_rest():
    """What the tail and the fine-tuned model leave goes to the from-scratch baselines: one is left
    out only where its cost would take the plan over the budget (the tail counted once)."""
    from fashionclf.serve.init import MARGIN
    template = yaml.safe_load(open(params.PARAMS_FILE))
    photos = PhotoFolder(ROOT, {"bags": 300, "shoes": 300}, median_long_side=128)
    with_tail_and_baseline = 0
    for budget in range(80, 320, 5):
        chosen = plan(photos, template, budget, 250, fake_costs)
        models = chosen.params["train"]["models"]
        assert chosen.estimate_s <= budget * (1 - MARGIN) + 1e-6
        with_tail_and_baseline += "efficientnet_lite0_tail" in models and "mobilenet_v2" in models
        for reason in (r for r in chosen.reasons if " left out: " in r):
            cost = float(re.search(r"would take about (\d+) s", reason).group(1))
            assert chosen.estimate_s + cost + 0.5 > budget * (1 - MARGIN), (budget, reason)
    assert with_tail_and_baseline


def test_costs_at_an_unmeasured_size_scale_with_the_pixels():
    measured = Measured(300.0, {("efficientnet_lite0", 112): Costs((2e-3, 1e-3), (1.5e-3, 8e-4), 5e-4),
                                ("efficientnet_lite0", 128): Costs((3e-3, 1e-3), (2e-3, 1e-3), 6e-4)})
    assert measured.cost("efficientnet_lite0", 112) == measured.costs[("efficientnet_lite0", 112)]
    scaled = measured.cost("efficientnet_lite0", 256)  # from the nearest measured size, 128: 4x the pixels
    assert scaled.fold == pytest.approx((12e-3, 4e-3)) and scaled.last == pytest.approx((8e-3, 4e-3))
    assert scaled.test == pytest.approx(2.4e-3)


def test_init_trains_on_fewer_photos_rather_than_plan_over_the_budget(tmp_path):
    """A shop with more photos than its budget's least epochs can train on gets fewer training
    images per category, and a plan that fits; one that fits anyway keeps them all."""
    template = yaml.safe_load(open(params.PARAMS_FILE))
    photos = PhotoFolder(tmp_path, {"bags": 1500, "shoes": 1500}, median_long_side=128)
    roomy = plan(photos, template, budget_s_ref=5000, speed=250, costs=fake_costs)
    assert roomy.params["balance"]["per_class"] == 800 and not any("cut to" in r for r in roomy.reasons)
    tight = plan(photos, template, budget_s_ref=160, speed=250, costs=fake_costs)
    assert 100 < tight.params["balance"]["per_class"] < 800
    assert tight.params["train"]["models"]["efficientnet_lite0"]["epochs"] == 2
    assert tight.estimate_s <= 160 and not any(r.startswith("warning") for r in tight.reasons)
    assert sum("training images per category cut to" in r for r in tight.reasons) == 1


def test_init_plans_the_tail_alone_where_the_backbone_would_get_only_its_least_epochs(tmp_path):
    """Fine-tuned whole for 2 epochs, the backbone lost to the tail out of fold and bought nothing
    (docs/own-photos.md): where the budget gives it no more beside the tail, the tail is planned
    alone, on every training photo, at a canvas of up to its 224 px input, and what is left goes to
    the baselines. A backbone is never planned at its least epochs beside a tail, nor in its place
    where the tail fits."""
    from fashionclf.serve.init import MARGIN, PRETRAINED_EPOCHS, available_for_models
    template = yaml.safe_load(open(params.PARAMS_FILE))
    photos = PhotoFolder(tmp_path, {"bags": 1500, "shoes": 1500}, median_long_side=278)
    alone, with_baseline = [], 0
    for budget in range(200, 700, 10):
        chosen = plan(photos, template, budget, 250, fake_costs)
        models = chosen.params["train"]["models"]
        assert chosen.estimate_s <= budget * (1 - MARGIN) + 1e-6 or "efficientnet_lite0_tail" not in models
        if "efficientnet_lite0_tail" in models and "efficientnet_lite0" in models:
            assert models["efficientnet_lite0"]["epochs"] > PRETRAINED_EPOCHS[0], budget
            assert chosen.params["clean"]["canvas_size"] == 128
        if "efficientnet_lite0_tail" in models and "efficientnet_lite0" not in models:
            alone.append(budget)
            assert chosen.params["clean"]["canvas_size"] == 224 and chosen.params["balance"]["per_class"] == 800
            assert sum("efficientnet_lite0 not fine-tuned whole" in r for r in chosen.reasons) == 1
            assert any("--budget-minutes" in r for r in chosen.reasons)  # the budget that would train it
            with_baseline += "mobilenet_v2" in models  # what the tail leaves goes to the baselines
        if "efficientnet_lite0_tail" not in models:  # only where it does not fit at all
            cost = float(re.search(r"no fine-tuned tail: .* would take about (\d+) s, over the budget",
                                   "\n".join(chosen.reasons)).group(1))
            assert cost + 0.5 > available_for_models(budget, photos), budget  # at 250 img/s: budget in s
    assert alone and with_baseline, "no budget in the sweep planned the tail alone, with a baseline"
    before = plan(photos, template, alone[0] - 10, 250, fake_costs).params["train"]["models"]
    assert "efficientnet_lite0_tail" not in before  # one step less: the tail over the budget


@pytest.mark.parametrize("fold_workers, threads, expected", [
    (2, 1, (3, 2, 1, 2, 1)),   # two folds side by side, the third alone on both workers' threads
    (3, 1, (3, 3, 1, 0, 1)),   # one round, no last one
    (1, 2, (3, 1, 2, 0, 3)),   # one fold after another
])
def test_init_times_the_schedule_cv_train_runs(fold_workers, threads, expected):
    template = yaml.safe_load(open(params.PARAMS_FILE))
    template["train"].update(fold_workers=fold_workers, threads=threads)
    template["evaluate"]["threads"] = expected[-1]
    schedule = Schedule.of(template, folds=3)
    assert dataclasses.astuple(schedule) == expected
    assert schedule.full_rounds == 3 // expected[1]


def test_init_measures_folds_side_by_side():
    """The fold workers time their steps at once (a barrier, one task each) and the costs come back
    for every candidate; only the first gets a last-round cost of its own."""
    schedule = Schedule(folds=3, workers=2, threads=1, last_threads=2, eval_threads=1)
    measured = measure([("mobilenet_v2", 32), ("resnet18", 32)], classes=3, schedule=schedule, rounds=1,
                       window=0.01)
    assert measured.speed > 0 and set(measured.costs) == {("mobilenet_v2", 32), ("resnet18", 32)}
    first, second = measured.costs.values()
    assert min(*first.fold, *first.last, first.test, *second.fold, second.test) > 0
    assert first.last != first.fold and second.last == second.fold


def test_init_command_then_the_split_is_proportional(shop_photos, tmp_path, monkeypatch):
    """The command end to end, with the machine's timing as measured elsewhere (the real timing runs
    in test_init_measures_folds_side_by_side): the plan, the params it writes, and balance's split."""
    import fashionclf.serve.init as init_command

    def measured(candidates, classes, schedule, rounds, lone):
        assert rounds == 1 and classes == len(SHOP) and lone == 4  # the three backbones and the tail
        assert candidates[:lone] == [("efficientnet_lite0", 120), ("efficientnet_lite1", 120),
                                     ("efficientnet_lite2", 120), ("efficientnet_lite0_tail", 224)]
        return Measured(250.0, {key: fake_costs(*key) for key in candidates})

    monkeypatch.setattr(init_command, "measure", measured)
    project = make_project(tmp_path / "repo", {})
    out = cli(project, "init", shop_photos, "--budget-minutes", "10", "--measure-rounds", "1")
    assert out.returncode == 0, out.stderr
    assert "lite0" in out.stdout and "canvas 120 px" in out.stdout
    for section in params.SECTIONS:
        params.load(section, project / "params.yaml")  # every section validates
    run(["dvc", "repro", "balance"], project)
    report = json.loads((project / "metrics/balance.json").read_text())
    for category, count in SHOP.items():
        test, calibration = round(0.15 * count), round(0.2 * count)
        assert report["sources"][category] == count
        assert report["test"][category] == test and report["calibration"][category] == calibration
        assert report["train_sources"][category] == count - test - calibration  # never starved by fixed counts
    assert report["train_sources"]["bags"] == 13 and report["oversampled"]["bags"] > 0


def test_init_names_categories_in_any_script_and_a_photo_added_later_reruns_fetch(tmp_path, monkeypatch):
    """A shop's sub-folders as they come: accented (as macOS writes them, decomposed), another script,
    punctuation. Each keeps its letters as a category name, and label matches every photo by its folder.
    init lists the folder among fetch's deps in dvc.yaml (one line added, the rest as it was), so a
    photo added to it afterwards reruns fetch and what follows."""
    import unicodedata

    import fashionclf.serve.init as init_command
    folders = {unicodedata.normalize("NFD", "Röcke"): "röcke", "靴": "靴", "Hosen & Jeans": "hosen_jeans"}
    for kind, folder in enumerate(folders):
        for n in range(6):
            make_image(tmp_path / "photos" / folder / f"{n}.png", kind, 100 * kind + n)
    monkeypatch.setattr(init_command, "measure", lambda candidates, *_, **__: Measured(
        250.0, {key: fake_costs(*key) for key in candidates}))
    project = make_project(tmp_path / "repo", {})
    out = cli(project, "init", tmp_path / "photos", "--measure-rounds", "1")
    assert out.returncode == 0, out.stderr
    assert sorted(params.load("label", project / "params.yaml").categories) == sorted(folders.values())
    run(["dvc", "repro", "label"], project)
    report = json.loads((project / "metrics/label.json").read_text())
    assert report["unmatched"] == 0 and report["per_category"] == {name: 6 for name in folders.values()}
    added = [line for line in run(["git", "diff", "-U0", "dvc.yaml"], project).stdout.splitlines()
             if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))]
    assert added == [f"+      - {tmp_path / 'photos'}"]
    make_image(tmp_path / "photos" / "靴" / "new.png", 1, 999)
    assert "modified" in run(["dvc", "status", "fetch"], project).stdout
    run(["dvc", "repro", "label"], project)
    assert json.loads((project / "metrics/label.json").read_text())["per_category"]["靴"] == 7
    shutil.copytree(tmp_path / "photos", tmp_path / "moved")  # init again, on another folder: it replaces the first
    assert cli(project, "init", tmp_path / "moved", "--measure-rounds", "1").returncode == 0
    fetch_deps = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]["fetch"]["deps"]
    assert str(tmp_path / "moved") in fetch_deps and str(tmp_path / "photos") not in fetch_deps
    # a link that leads nowhere (or a named pipe): fetch counts it and goes on, but DVC's hash of the
    # folder fails (or hangs), so init takes the folder out of the deps and says why
    (tmp_path / "odd").mkdir()
    os.mkfifo(tmp_path / "odd" / "pipe")
    assert unhashable_entries(sorted((tmp_path / "odd").rglob("*"))) == [tmp_path / "odd" / "pipe"]
    (tmp_path / "moved" / "靴" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    out = cli(project, "init", tmp_path / "moved", "--measure-rounds", "1")
    assert out.returncode == 0 and f"warning: 1 entries in {tmp_path / 'moved'} are links that lead nowhere" in out.stdout
    assert str(tmp_path / "moved") not in yaml.safe_load((project / "dvc.yaml").read_text())["stages"]["fetch"]["deps"]
    run(["dvc", "repro", "label"], project)
    assert json.loads((project / "data/fetch_report.json").read_text())["skipped"] == {"symlink loop or broken link": 1}


@pytest.mark.parametrize("setup, why", [("one", "at least 2 categories"), ("empty", "no images"),
                                        ("few", "too few photos in 'bags' (4): each category needs at least 5"),
                                        ("rounds", "--measure-rounds must be at least 1"),
                                        ("budget", "--budget-minutes must be a number of minutes above 0, got nan"),
                                        ("elsewhere", "no params.yaml to start from")])
def test_init_refuses_unusable_folders_and_flags(tmp_path, setup, why):
    """Each with one line and exit code 2, before the machine is timed; a category too small to give
    each fold a photo to validate on, rather than a cv_train that fails after the data stages."""
    if setup == "one":
        make_image(tmp_path / "shoes" / "a.png", 0, 1)
    if setup in ("few", "rounds", "budget", "elsewhere"):
        for kind, category in enumerate(("shoes", "bags")):
            for n in range(5 - (setup == "few" and category == "bags")):
                make_image(tmp_path / category / f"{n}.png", kind, n)
    flags = {"rounds": ["--measure-rounds", "0"], "budget": ["--budget-minutes", "nan"]}.get(setup, [])
    out = cli(tmp_path if setup == "elsewhere" else ROOT, "init", tmp_path, "--out", tmp_path / "p.yaml", *flags)
    assert out.returncode == 2 and why in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "p.yaml").exists()


def overconfident(n=3000, k=4, true_temperature=3.0, seed=0):
    """Labels drawn from softmax(logits); the model reports softmax(logits * T): overconfident."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, k))
    truth = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(k, p=p) for p in truth])
    reported = np.exp(logits * true_temperature)
    return reported / reported.sum(1, keepdims=True), y


def test_temperature_scaling_recovers_the_temperature_and_lowers_ece():
    probs, y = overconfident()
    temperature = fit_temperature(probs, y)
    assert temperature == pytest.approx(3.0, rel=0.1)
    before = expected_calibration_error(probs, y, 15)
    after = expected_calibration_error(scaled(probs, temperature), y, 15)
    assert after < before / 3 and after < 0.03


def planted(n, rng, temperature=3.0, k=4, scale=4.0):
    """(reported probabilities, labels): labels drawn from softmax(logits), a model reporting
    softmax(logits * temperature), overconfident by the planted temperature."""
    softmax = lambda z: np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)
    logits = rng.normal(0, scale, (n, k))
    y = (softmax(logits).cumsum(1) < rng.uniform(size=(n, 1))).sum(1)
    return softmax(logits * temperature), y


def test_review_queue_holds_the_target_precision_on_fresh_data_at_a_planted_temperature():
    """Calibration images and fresh batches from the same distribution, 200 times over: the share of
    wrong automatic labels stays under 1 - target on average (the guarantee), where trusting the
    overconfident model's own 0.99 does not; the temperature is recovered."""
    rng = np.random.default_rng(5)
    fdp, coverage, naive_fdp, temperatures = [], [], [], []
    for _ in range(200):
        probs_cal, y_cal = planted(500, rng)
        fit = Calibration(y_cal, probs_cal)
        probs, y = planted(500, rng)
        automatic, threshold = fit.select(probs, 0.99)
        wrong = probs.argmax(1) != y
        assert automatic.tolist() == (probs.max(1) >= threshold).tolist()  # a threshold on the batch
        fdp.append(wrong[automatic].sum() / max(1, automatic.sum()))
        coverage.append(automatic.mean())
        naive = probs.max(1) >= 0.99
        naive_fdp.append(wrong[naive].sum() / max(1, naive.sum()))
        temperatures.append(fit.temperature)
    assert np.mean(fdp) <= 0.01, f"mean share of wrong automatic labels {np.mean(fdp):.4f}"
    # and not by labelling next to nothing: knowing the truth, the best 1%-error share is 0.31 (200,000 draws)
    assert np.mean(coverage) > 0.2
    assert np.mean(naive_fdp) > 0.02
    assert np.median(temperatures) == pytest.approx(3.0, rel=0.1)


def test_learn_then_test_holds_the_target_precision_with_the_stated_probability():
    """200 calibration splits of 2,000 planted images: the threshold fixed on each one gives automatic
    labels whose precision (on 200,000 fresh images) is under the target in at most 10% of splits,
    where the batch-wise queue (on average) leaves a batch under it far more often."""
    rng = np.random.default_rng(11)
    probs, y = planted(200_000, rng)
    order = np.argsort(-probs.max(1))
    confidence = probs.max(1)[order]
    precision_down_to = np.cumsum(probs.argmax(1)[order] == y[order]) / np.arange(1, len(y) + 1)
    under, coverage, batch_under = [], [], []
    for _ in range(200):
        fit = Calibration(*planted(2000, rng)[::-1])
        threshold = learn_then_test_threshold(fit.confidence, fit.correct, 0.99, 0.9)
        above = np.searchsorted(-confidence, -threshold, side="right")
        under.append(above > 0 and precision_down_to[above - 1] < 0.99)
        coverage.append(above / len(y))
        batch, batch_y = planted(500, rng)
        automatic, _ = fit.select(batch, 0.99)
        batch_under.append((batch.argmax(1) == batch_y)[automatic].mean() < 0.99 if automatic.any() else False)
        assert fit.select(batch, 0.99, 0.9)[0].tolist() == (batch.max(1) >= threshold).tolist()  # not the batch's
    assert np.mean(under) <= 0.1, f"under the target in {np.mean(under):.1%} of calibration splits"
    # the best share at 1% errors is 0.32 (knowing the truth); the promise costs about half of it here
    assert np.mean(coverage) > 0.1
    assert np.mean(batch_under) > 0.2


def test_learn_then_test_threshold_by_hand():
    """Target 0.9 with probability 0.9: an error-free run passes from 22 images on (1 - 0.1 ** (1 / 22) <
    0.1); 30 right answers then a wrong one stop the sequence at the 30th."""
    confidence = np.linspace(0.99, 0.5, 40)
    correct = np.arange(40) != 30
    assert learn_then_test_threshold(confidence, correct, 0.9, 0.9) == confidence[29]
    assert learn_then_test_threshold(confidence[:21], correct[:21], 0.9, 0.9) == NOTHING  # too few to pass
    early = np.arange(40) != 5  # an error before 22 images: the first test fails, nothing passes
    assert learn_then_test_threshold(confidence, early, 0.9, 0.9) == NOTHING
    assert learn_then_test_threshold(confidence, correct, 1.0, 0.9) == NOTHING
    ties = np.repeat(confidence[:20], 2)  # thresholds are distinct confidences: both images of a tie or neither
    assert learn_then_test_threshold(ties, np.arange(40) != 30, 0.9, 0.9) == ties[29]
    nothing, threshold = select_automatic(confidence, early, np.array([0.99, 0.97]), 0.9, 0.9)
    assert not nothing.any() and threshold == NOTHING


def test_conformal_p_values_and_the_empty_cases():
    cal_confidence = np.array([0.99, 0.95, 0.9, 0.8, 0.6])
    cal_correct = np.array([True, False, True, False, True])
    p = conformal_p_values(cal_confidence, cal_correct, np.array([1.0, 0.95, 0.85, 0.5]))
    assert p.tolist() == pytest.approx([1 / 6, 2 / 6, 2 / 6, 3 / 6])  # 1 + wrong at or above, over n + 1
    nothing, threshold = select_automatic(cal_confidence, cal_correct, np.array([0.99, 0.97]), 1.0)
    assert not nothing.any() and threshold > 1.0
    assert select_automatic(cal_confidence, cal_correct, np.zeros(0), 0.9)[0].shape == (0,)
    with pytest.raises(Exception, match="balance.calibration_fraction"):
        Calibration(np.zeros(0, int), np.zeros((0, 3)))


def test_review_stage_and_predict_with_probability(tiny_project, tmp_path):
    """review.with_probability and predict's --with-probability: one threshold, fixed on the
    calibration split alone, decides the test set in the stage and a batch in predict. The tiny
    models rank their answers too poorly to pass any test, so the calibration split is the test
    predictions, right above their median confidence and wrong below it."""
    model = json.loads((tiny_project / "reports/best_model.json").read_text())["best_model"]
    test = pd.read_csv(tiny_project / f"plots/predictions/test_clean/{model}.csv", keep_default_na=False)
    categories = categories_of(test)
    probs = probabilities_of(test, categories)
    confidence, predicted = probs.max(1), probs.argmax(1)
    wrong = np.array(categories)[(predicted + 1) % len(categories)]
    planted_calibration = test.assign(actual=np.where(confidence >= np.median(confidence),
                                                      np.array(categories)[predicted], wrong))
    (tmp_path / "calibration").mkdir()
    planted_calibration.to_csv(tmp_path / "calibration" / f"{model}.csv", index=False)
    fit = Calibration.from_table(planted_calibration)
    threshold = learn_then_test_threshold(fit.confidence, fit.correct, 0.9, 0.8)
    assert np.median(confidence) > threshold > confidence.min()

    params_file, original = tiny_project / "params.yaml", (tiny_project / "params.yaml").read_text()
    changed = yaml.safe_load(original)
    changed["review"] |= {"target_precision": 0.9, "with_probability": 0.8}
    try:
        params_file.write_text(yaml.safe_dump(changed, sort_keys=False))
        run(python_cmd("-m", "stages.review", "--best", "reports/best_model.json", "--oof", "plots/predictions/oof",
                       "--calibration-predictions", tmp_path / "calibration", "--test-predictions",
                       "plots/predictions/test_clean", "--metrics", tmp_path / "review.json", "--report",
                       tmp_path / "review.md", "--reliability-png", tmp_path / "r.png", "--suspects",
                       tmp_path / "s.csv"), cwd=tiny_project)
    finally:
        params_file.write_text(original)
    review = json.loads((tmp_path / "review.json").read_text())
    assert review["with_probability"] == 0.8 and review["method"].startswith("learn-then-test")
    assert "at most 10.0% with probability 0.8" in (tmp_path / "review.md").read_text()
    assert review["test"]["labelled_automatically"] == int((confidence >= threshold).sum())

    images = tmp_path / "bags"
    with zipfile.ZipFile(tiny_project / "data/raw.zip") as archive:
        archive.extractall(images, [n for n in archive.namelist() if n.startswith("fashion-mnist/bag/")])
    out = cli(tiny_project, "predict", images, "--out", tmp_path / "p.csv", "--target-precision", "0.9",
              "--with-probability", "0.8", "--calibration", tmp_path / "calibration" / f"{model}.csv",
              "--workers", "0")
    assert out.returncode == 0, out.stderr
    assert "target precision 0.9 with probability 0.8: the review queue is one threshold" in out.stdout
    from fashionclf.serve.predict import list_inputs, predict_paths
    from fashionclf.serve.predictor import Predictor
    predictor = Predictor(model, models_dir=tiny_project / "models")
    raw_confidence = np.array([row[1].max() for row in predict_paths(predictor, list_inputs([images]), workers=0)])
    table = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    assert table["needs_review"].tolist() == (raw_confidence < threshold).tolist()
    assert 0 < table["needs_review"].sum() < len(table)
    tiny = cli(tiny_project, "predict", images, "--out", tmp_path / "t.csv", "--target-precision", "0.9",
               "--with-probability", "0.8", "--workers", "0")  # the tiny models' own calibration split
    assert tiny.returncode == 0 and (pd.read_csv(tmp_path / "t.csv")["needs_review"]).all()
    assert ("labelled automatically: none; no confidence threshold reaches precision 0.9 with probability 0.8 on "
            "the 60 calibration images (an error-free run needs 16 above it;") in tiny.stdout
    alone = cli(tiny_project, "predict", images, "--out", tmp_path / "q.csv", "--with-probability", "0.8")
    assert alone.returncode == 2 and alone.stderr.strip().splitlines() == [
        "error: --with-probability must be within (0, 1) and given with --target-precision"]
    assert not (tmp_path / "q.csv").exists()


def test_label_audit_finds_labels_flipped_on_purpose():
    x, y = make_blobs(n_samples=600, centers=3, cluster_std=1.2, random_state=3)
    categories = ["bags", "clothing", "shoes"]
    rng = np.random.default_rng(3)
    flipped = rng.choice(len(y), 20, replace=False)
    given = y.copy()
    given[flipped] = (y[flipped] + rng.integers(1, 3, 20)) % 3
    oof = cross_val_predict(LogisticRegression(max_iter=500), x, given, cv=5, method="predict_proba")
    paths = [f"raw/{categories[c]}/img_{i:03d}.png" for i, c in enumerate(y)]
    rows = []
    for i, path in enumerate(paths):  # two augmented variants per image: audited once, averaged
        for variant in (0, 1):
            p = oof[i] if variant == 0 else (oof[i] * 0.9 + 0.1 / 3)
            rows.append({"path": path, "copy": 0, "variant": variant, "fold": i % 5,
                         "actual": categories[given[i]], "predicted": categories[p.argmax()],
                         **{f"p_{c}": p[k] for k, c in enumerate(categories)}})
    suspects = suspect_labels(pd.DataFrame(rows), categories)
    assert list(suspects.columns[:2]) == list(pd.read_csv("data/corrections.csv").columns) == ["path", "category"]
    assert list(suspects.columns) == SUSPECT_COLUMNS and suspects["path"].is_unique
    found = set(suspects["path"]) & {paths[i] for i in flipped}
    assert len(found) >= 17, f"found {len(found)} of 20 flipped labels"
    assert len(suspects) <= 30  # and few false alarms
    for _, row in suspects[suspects["path"].isin([paths[i] for i in flipped])].iterrows():
        i = paths.index(row["path"])
        assert row["given"] == categories[given[i]] and row["category"] == categories[y[i]]
    assert suspects["label_quality"].is_monotonic_increasing


def predictions(x, y, model, categories, name):
    probs = model.predict_proba(x)
    return pd.DataFrame({"path": [f"{name}/{i:04d}.png" for i in range(len(y))],
                         "actual": [categories[k] for k in y],
                         **{f"p_{c}": probs[:, k] for k, c in enumerate(categories)}})


def test_mislabelled_calibration_photos_are_listed_first_with_the_queue_they_hold_back():
    """Four calibration photos filed under the wrong category, which the model gets right with
    confidence, count as its confident errors and hold the queue back; the audit lists them first
    and says how much the queue would label were they corrected."""
    from fashionclf.report.review import review_report
    categories = ["bags", "clothing", "shoes"]
    x, y = make_blobs(n_samples=4000, centers=[[0, 0], [5, 0], [0, 5]], cluster_std=1.0, random_state=5)
    model = LogisticRegression(max_iter=500).fit(x[:1000], y[:1000])
    oof = predictions(x[:1000], y[:1000], model, categories, "train")
    calibration = predictions(x[1000:1400], y[1000:1400], model, categories, "calibration")
    test = predictions(x[1500:], y[1500:], model, categories, "test")
    confidence = calibration[[f"p_{c}" for c in categories]].max(axis=1).to_numpy()
    planted = np.argsort(-confidence)[[3, 7, 12, 20]]  # among the most confident calibration photos
    for i in planted:
        calibration.loc[i, "actual"] = categories[(categories.index(calibration.loc[i, "actual"]) + 1) % 3]
    report, _, suspects = review_report("m", oof, calibration, test, 0.99, 10)
    assert list(suspects.columns) == SUSPECT_COLUMNS
    assert set(suspects.loc[suspects["split"] == "calibration", "path"]) >= set(calibration.loc[planted, "path"])
    assert suspects["split"].iloc[0] == "calibration"
    held_back, corrected = report["test"], report["calibration_suspects"]["test"]
    assert report["calibration_suspects"]["n"] >= 4
    assert held_back["coverage"] < 0.2 < 0.9 < corrected["coverage"] and corrected["precision"] >= 0.985
    clean, _, _ = review_report("m", oof, predictions(x[1000:1400], y[1000:1400], model, categories, "c"), test,
                                0.99, 10)
    assert clean["test"]["coverage"] > 0.9  # the labels as they should be: the queue as the corrected one


def test_review_queue_is_chosen_on_the_ensembles_predictions_of_images_no_fold_trained_on(tiny_project):
    model = json.loads((tiny_project / "reports/best_model.json").read_text())["best_model"]
    calibration = pd.read_csv(tiny_project / f"plots/predictions/calibration/{model}.csv", keep_default_na=False)
    oof = pd.read_csv(tiny_project / f"plots/predictions/oof/{model}.csv", keep_default_na=False)
    test = pd.read_csv(tiny_project / f"plots/predictions/test_clean/{model}.csv", keep_default_na=False)
    assert len(calibration) > 0
    assert not set(calibration["path"]) & set(oof["path"]) and not set(calibration["path"]) & set(test["path"])
    ensemble = Ensemble.load(tiny_project / "models" / model)
    x, _, paths = load_test_set(tiny_project / "data/balance/calibration", ensemble.categories)
    assert paths == calibration["path"].tolist()
    expected = ensemble.predict_proba(x, 64)
    assert np.abs(expected - calibration[[f"p_{c}" for c in ensemble.categories]].to_numpy()).max() < 1e-5
    review = json.loads((tiny_project / "metrics/review.json").read_text())
    assert review["fitted_on"].endswith(f"({len(calibration)} images, in no fold)")


def test_review_stage_and_predict_with_a_target_precision(tiny_project, tmp_path):
    review = json.loads((tiny_project / "metrics/review.json").read_text())
    assert review["model"] == json.loads((tiny_project / "reports/best_model.json").read_text())["best_model"]
    assert review["temperature"] > 0 and set(review["ece"]) == {"calibration_before", "calibration_after",
                                                                 "test_before", "test_after"}
    calibration = pd.read_csv(tiny_project / f"plots/predictions/calibration/{review['model']}.csv")
    categories = [c[2:] for c in calibration.columns if c.startswith("p_")]
    y = calibration["actual"].map(categories.index).to_numpy()
    assert review["temperature"] == fit_temperature(calibration[[f"p_{c}" for c in categories]].to_numpy(), y)
    test = review["test"]
    assert test["labelled_automatically"] + test["needs_review"] == test["n"] > 0
    per_category = review["test_per_category"]
    assert sum(c["n"] for c in per_category.values()) == test["n"]
    assert sum(c["labelled_automatically"] for c in per_category.values()) == test["labelled_automatically"]
    assert sum(c["labelled_as"] for c in per_category.values()) == test["labelled_automatically"]
    assert (tiny_project / "plots/png/reliability.png").stat().st_size > 5000
    suspects = pd.read_csv(tiny_project / "data/suspect_labels.csv")
    assert list(suspects.columns) == SUSPECT_COLUMNS
    markdown = (tiny_project / "reports/review.md").read_text()
    assert "labels" in markdown and all(f"| {c} |" in markdown for c in per_category)

    images = tmp_path / "bags"
    with zipfile.ZipFile(tiny_project / "data/raw.zip") as archive:
        archive.extractall(images, [n for n in archive.namelist() if n.startswith("fashion-mnist/bag/")])
    out = cli(tiny_project, "predict", images, "--out", tmp_path / "p.csv", "--target-precision", "0.99",
              "--workers", "0")
    assert out.returncode == 0, out.stderr
    assert f"against {len(calibration)} calibration images" in out.stdout
    assert f"temperature {review['temperature']:g}" in out.stdout  # the stage's, from the same split
    queue = next(line for line in out.stdout.splitlines() if line.startswith("labelled automatically: "))
    threshold = float(queue.split("confidence >= ")[1].split()[0]) if ">=" in queue else np.inf
    assert ">=" in queue or f"none; no image reaches precision 0.99 against the {len(calibration)}" in queue
    if len(calibration) < 99:  # too few for any label at 0.99: predict says which target they allow
        from fashionclf.report.calibration import highest_reachable_target
        assert f"a target of at most {highest_reachable_target(len(calibration))} can label some" in queue
    table = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    missing = cli(tiny_project, "predict", images, "--out", tmp_path / "q.csv", "--target-precision", "0.99",
                  "--calibration", "nowhere.csv")
    assert missing.returncode == 2 and missing.stderr.strip().splitlines() == [
        "error: nowhere.csv not found: --target-precision needs the model's predictions of the calibration "
        "split (run `dvc repro`, or pass --calibration)"]
    from fashionclf.serve.predict import list_inputs, predict_paths
    from fashionclf.serve.predictor import Predictor
    predictor = Predictor(review["model"], models_dir=tiny_project / "models")
    scored = list(predict_paths(predictor, list_inputs([images]), workers=0))
    assert [str(row[0]) for row in scored] == table["path"].tolist()
    raw_confidence = pd.Series([row[1].max() for row in scored])
    confident = raw_confidence >= threshold - 1e-6  # the queue is a threshold on the raw confidence
    assert (table.loc[~confident, "category"] == "needs_review").all()
    assert (table.loc[confident, "category"] != "needs_review").all()
