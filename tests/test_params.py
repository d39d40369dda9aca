"""Bad parameters: one clear error line naming the key and value, exit code 2, no partial outputs."""
import copy
import re
import sys

import pytest
import yaml

from conftest import ROOT, make_project, run
from fashionclf.core import params as P

DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())


def with_change(dotted, value):
    doc = copy.deepcopy(DEFAULT)
    node = doc
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    return doc


@pytest.mark.parametrize("section, dotted, value, message", [
    ("train", "train.models", {"vgg99": {}}, "train.models has an unknown model"),
    ("train", "train.folds", 1, "train.folds must be >= 2, got 1"),
    ("balance", "balance.per_class", 0, "balance.per_class must be >= 1, got 0"),
    ("balance", "balance.per_class", -5, "balance.per_class must be >= 1, got -5"),
    ("balance", "balance.test_fraction", 1.0, "balance.test_fraction must be < 1, got 1.0"),
    ("balance", "balance.test_fraction", 0, "balance.test_fraction must be > 0, got 0.0"),
    ("noise", "noise.sigma", -0.1, "noise.sigma must be >= 0, got -0.1"),
    ("noise", "noise.sigmas", [0.1, -1], "noise.sigmas must be >= 0, got -1"),
    ("train", "train.noise_aug_sigma", -1, "train.noise_aug_sigma must be >= 0"),
    ("label", "label.categories", ["bags"], "label.categories must name at least two distinct categories"),
    ("label", "label.categories", ["bags", "clothing", "shoes", "hats"], "has a category with no rule"),
    ("label", "label.rules", [{"pattern": "(", "category": "bags"}], "label.rules[0].pattern is not a valid regex"),
    ("augment", "augment.scale", [1.2, 0.8], "augment.scale must be [low, high]"),
    ("train", "train.batch_size", "64", "train.batch_size must be an integer, got '64'"),
    ("fetch", "fetch.per_class", 2.5, "fetch.per_class must be an integer"),
    ("train", "train.epochs", 3, "train.epochs is not a known key"),
    ("train", "train.threads", 0, "train.threads must be >= 1, got 0"),
    ("train", "train.device", "tpu", "train.device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    ("train", "train.pct_start", 1, "train.pct_start must be < 1, got 1.0"),
    ("train", "train.models", {"resnet18": {"image_size": 8, "epochs": 1, "lr": 0.1, "ema_decay": 0.0}},
     "train.models.resnet18.image_size must be >= 16, got 8"),
    ("clean", "clean.canvas_size", 4, "clean.canvas_size must be >= 8, got 4"),
    ("clean", "clean.size", 28, "clean.size is not a known key"),
    ("balance", "balance.test_max_per_class", -1, "balance.test_max_per_class must be >= 0, got -1"),
    ("evaluate", "evaluate.threads", "2", "evaluate.threads must be an integer, got '2'"),
    ("evaluate", "evaluate.device", "gpu", "evaluate.device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    ("train", "train.models", {"resnet18": {"image_size": 28, "epochs": 1, "lr": 0.1, "ema_decay": 1.0}},
     "train.models.resnet18.ema_decay must be < 1, got 1.0"),
    ("train", "train.lr_reference_batch", 0, "train.lr_reference_batch must be >= 1, got 0"),
    ("train", "train.compile", "yes", "train.compile must be true or false, got 'yes'"),
    ("label", "label.categories", ["bags", "drop"], "must not use the reserved names"),
    ("review", "review.with_probability", 1, "review.with_probability must be < 1, got 1.0"),
    ("train", "train.keep_epoch", "val_f1", "train.keep_epoch must be one of 'val_accuracy' or 'val_loss', got 'val_f1'"),
])
def test_bad_value_names_key_and_value(tmp_path, section, dotted, value, message):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(with_change(dotted, value)))
    with pytest.raises(P.ParamError) as info:
        P.load(section, path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_default_params_are_valid():
    for section in P.SECTIONS:
        P.load(section, ROOT / "params.yaml")


def test_a_missing_key_is_named_no_default_hides_it(tmp_path):
    doc = copy.deepcopy(DEFAULT)
    del doc["train"]["threads"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(P.ParamError, match="^params.yaml: train.threads is missing$"):
        P.load("train", path)


def test_known_models_come_from_the_model_registry():
    from fashionclf.learn.models import MODEL_NAMES
    doc = copy.deepcopy(DEFAULT["train"])
    doc["models"] = {name: {"image_size": 32, "epochs": 1, "lr": 0.001, "ema_decay": 0.0} for name in MODEL_NAMES}
    assert list(P.TrainParams.model_validate(doc).models) == list(MODEL_NAMES)


def test_stage_prints_one_error_line_and_writes_nothing(tmp_path):
    project = make_project(tmp_path / "repo", {"balance.test_fraction": 1.5})
    cmd = " ".join(yaml.safe_load((project / "dvc.yaml").read_text())["stages"]["balance"]["cmd"].split())
    result = run(cmd.replace("python", sys.executable, 1).split(), project, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: params.yaml: balance.test_fraction must be < 1, got 1.5"]
    assert not (project / "data/balance").exists() and not (project / "metrics/balance.json").exists()


def test_rule_matching_nothing_fails_label(tmp_path):
    rules = DEFAULT["label"]["rules"] + [{"pattern": "^hats/", "category": "bags"}]
    project = make_project(tmp_path / "repo", {"fetch.per_class": 3, "label.rules": rules})
    result = run(["dvc", "repro", "label"], project, check=False)
    assert result.returncode != 0
    assert "error: params.yaml: label.rules[3].pattern '^hats/' matches no image" in result.stderr + result.stdout
    assert not (project / "data/labels.csv").exists() and not (project / "metrics/label.json").exists()


def test_category_with_fewer_images_than_folds_fails_cv_train(tmp_path):
    project = make_project(tmp_path / "repo", {
        "fetch.per_class": 3, "balance.per_class": 4, "balance.test_fraction": 0.25, "augment.variants": 0,
        "train.folds": 5, "train.models": {"resnet18": {"image_size": 32, "epochs": 1, "lr": 0.001, "ema_decay": 0.0}}})
    result = run(["dvc", "repro", "cv_train@resnet18"], project, check=False)
    assert result.returncode != 0
    assert "source images for training, fewer than train.folds=5" in result.stderr + result.stdout
    assert re.search(r"category '(bags|clothing|shoes)' has", result.stderr + result.stdout)  # named, not an index
    assert not (project / "models/resnet18").exists() and not (project / "metrics/cv/resnet18.json").exists()
