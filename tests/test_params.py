"""Bad parameters: one clear error line naming the key and value, exit code 2, no partial outputs."""
import copy

import pytest
import yaml

from conftest import ROOT, make_project, python_cmd, run
from fashionclf import params as P

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


def test_stage_prints_one_error_line_and_writes_nothing(tmp_path):
    project = make_project(tmp_path / "repo", {"balance.test_fraction": 1.5})
    result = run(python_cmd("-m", "stages.balance"), project, check=False)
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
        "train.folds": 5, "train.models": {"resnet18": {"image_size": 32, "epochs": 1, "lr": 0.001}}})
    result = run(["dvc", "repro", "cv_train@resnet18"], project, check=False)
    assert result.returncode != 0
    assert "fewer than train.folds=5" in result.stderr + result.stdout
    assert not (project / "models/resnet18").exists() and not (project / "metrics/cv/resnet18.json").exists()
