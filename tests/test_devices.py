"""Every model-running stage and predict picks its device from a parameter: CUDA when present with
auto, the CPU otherwise, and one clear error line where CUDA is asked for and missing."""
import pytest
import torch
import yaml

from conftest import TINY, cli, python_cmd, run
from fashionclf.core.errors import ParamError
from fashionclf.learn.inference import pick_device

MODEL = list(TINY["train.models"])[0]


def test_auto_is_cuda_when_present_else_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("cuda")
    assert pick_device("cpu") == torch.device("cpu")


def test_cuda_without_a_gpu_is_a_parameter_error_naming_the_key(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ParamError, match=r"^params.yaml: evaluate.device is 'cuda:1', but this machine has no"):
        pick_device("cuda:1", "params.yaml: evaluate.device")


def with_evaluate_device(project, device):
    doc = yaml.safe_load((project / "params.yaml").read_text())
    doc["evaluate"]["device"] = device
    (project / "params.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only machine's error path")
def test_test_stages_run_on_evaluate_device(tiny_project, tmp_path):
    p = tiny_project
    clean = ["-m", "stages.evaluate_clean", MODEL, "--models", f"models/{MODEL}", "--test", "data/balance/test",
             "--calibration", "data/balance/calibration", "--metrics", str(tmp_path / "m.json"),
             "--predictions", str(tmp_path / "p.csv"), "--calibration-predictions", str(tmp_path / "cal.csv"),
             "--confusion", str(tmp_path / "c")]
    noise = ["-m", "stages.evaluate_noise", MODEL, "--models", f"models/{MODEL}", "--test", "data/balance/test",
             "--clean-predictions", f"plots/predictions/test_clean/{MODEL}.csv", "--metrics", str(tmp_path / "n.json"),
             "--predictions", str(tmp_path / "np.csv"), "--confusion", str(tmp_path / "nc"),
             "--curve", str(tmp_path / "curve.csv")]
    try:
        with_evaluate_device(p, "cuda")
        for cmd in (clean, noise):
            result = run(python_cmd(*cmd), p, check=False)
            assert result.returncode == 2, result.stdout + result.stderr
            assert result.stderr.strip().splitlines() == [
                "error: params.yaml: evaluate.device is 'cuda', but this machine has no such CUDA device (use auto or cpu)"]
        assert not any(tmp_path.iterdir())  # no partial outputs
        with_evaluate_device(p, "cpu")
        run(python_cmd(*clean), p)
        committed = (p / f"metrics/test_clean/{MODEL}.json").read_text()
        assert (tmp_path / "m.json").read_text() == committed  # the CPU is what auto picked here
    finally:
        run(["git", "checkout", "-q", "--", "params.yaml"], p)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only machine's error path")
def test_predict_device_flag(tiny_project, tmp_path):
    from conftest import make_image
    image = make_image(tmp_path / "one.png", 0, 1)
    result = cli(tiny_project, "predict", image, "--out", tmp_path / "x.csv", "--device", "cuda")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: --device is 'cuda', but this machine has no such CUDA device (use auto or cpu)"]
    assert not (tmp_path / "x.csv").exists()
    cpu = cli(tiny_project, "predict", image, "--out", tmp_path / "cpu.csv", "--device", "cpu")
    auto = cli(tiny_project, "predict", image, "--out", tmp_path / "auto.csv")
    assert cpu.returncode == auto.returncode == 0
    assert (tmp_path / "cpu.csv").read_text() == (tmp_path / "auto.csv").read_text()
