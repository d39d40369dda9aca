"""Named configurations: the GPU reference preset validates and applies in one command; a bad one
changes nothing."""
import shutil

import yaml

from conftest import ROOT, python_cmd, run
from fashionclf.core import params as P


def test_gpu_reference_preset_applies_and_validates(tmp_path):
    target = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", target)
    result = run(python_cmd("-m", "fashionclf", "preset", str(ROOT / "configs/gpu_reference.yaml"), "--params",
                            str(target)), ROOT)
    assert "values from" in result.stdout
    for section in P.SECTIONS:
        P.load(section, target)
    train = P.load("train", target)
    assert set(train.models) == {"mobilenet_v2", "resnet18", "resnet50", "efficientnet_b0", "efficientnet_lite0"}
    assert train.models["efficientnet_lite0"].image_size == 224 and train.compile
    assert P.load("balance", target).test_max_per_class == 1000 and P.load("fetch", target).per_class == 0
    assert P.load("clean", target).canvas_size == 28  # models resize in their graph: no 224 px canvas on disk
    assert "# canonical square canvas: aspect kept" in target.read_text()  # ruamel keeps the comments


def test_a_bad_preset_is_one_error_line_and_leaves_params_alone(tmp_path):
    target = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", target)
    before = target.read_text()
    for overrides, message in (({"train.batch_size": 0}, "train.batch_size must be >= 2, got 0"),
                               ({"train.nonsense": 1}, "train.nonsense names no params.yaml key")):
        preset = tmp_path / "bad.yaml"
        preset.write_text(yaml.safe_dump({"overrides": overrides}))
        result = run(python_cmd("-m", "fashionclf", "preset", str(preset), "--params", str(target)), ROOT, check=False)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
        assert message in result.stderr
        assert target.read_text() == before
