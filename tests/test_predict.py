"""Batch labelling and the ONNX export, on the tiny pipeline's models."""
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import cli, make_image, python_cmd, run


def catalogue(folder):
    """Good, corrupt, grayscale, RGBA, huge and tiny images, one level of nesting."""
    folder.mkdir()
    make_image(folder / "good.png", 0, 1)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    (folder / "notes.txt").write_text("hello")
    Image.fromarray(np.full((40, 30), 90, np.uint8), "L").save(folder / "gray.png")
    Image.new("RGBA", (50, 50), (20, 40, 200, 128)).save(folder / "rgba.png")
    Image.new("RGB", (3000, 2000), (10, 10, 10)).save(folder / "huge.jpg", quality=50)
    Image.new("RGB", (2, 2), (200, 0, 0)).save(folder / "tiny.png")
    make_image(folder / "sub" / "deeper.jpg", 1, 2, fmt="JPEG")
    return folder


def test_predict_writes_one_row_per_file(tiny_project, tmp_path):
    images = catalogue(tmp_path / "catalogue")
    out = tmp_path / "labels.csv"
    result = run(python_cmd("-m", "fashionclf", "predict", str(images), "--out", str(out), "--batch-size", "3"),
                 tiny_project)
    table = pd.read_csv(out, keep_default_na=False)
    assert len(table) == 8 and "wrote" in result.stdout
    assert list(table.columns) == ["path", "category", "confidence", "p_bags", "p_clothing", "p_shoes", "error",
                                   "needs_review"]
    errors = table.set_index(table["path"].str.rsplit("/", n=1).str[-1])["error"]
    assert errors["corrupt.jpg"].startswith("unreadable_or_truncated") or errors["corrupt.jpg"].startswith("not_an")
    assert errors["notes.txt"].startswith("not_an_image")
    good = table[table["error"] == ""].astype({"confidence": float, "p_bags": float, "p_clothing": float,
                                                "p_shoes": float})
    assert len(good) == 6
    assert set(good["category"]) <= {"bags", "clothing", "shoes"}
    probs = good[["p_bags", "p_clothing", "p_shoes"]].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-4)
    assert np.allclose(good["confidence"], probs.max(1), atol=1e-6)


def test_min_confidence_sends_doubtful_images_to_review(tiny_project, tmp_path):
    images = catalogue(tmp_path / "catalogue")
    out = tmp_path / "labels.csv"
    result = cli(tiny_project, "predict", images, "--out", out, "--min-confidence", "0.999", "--workers", "0")
    assert result.returncode == 0
    table = pd.read_csv(out, keep_default_na=False)
    good = table[table["error"] == ""]
    review = good["confidence"].astype(float) < 0.999
    assert review.any()
    assert (good.loc[review, "category"] == "needs_review").all()
    assert (good.loc[~review, "category"] != "needs_review").all()


def test_onnx_export_matches_the_pytorch_ensemble(tiny_project):
    """Parity on the same batch: onnxruntime against the fold ensemble in torch, and a dynamic batch."""
    import torch
    from fashionclf.learn.onnx_runner import OnnxEnsemble
    from fashionclf.learn.inference import Ensemble
    labels = json.loads((tiny_project / "export/labels.json").read_text())
    ensemble = Ensemble.load(tiny_project / "models" / labels["model"])
    onnx = OnnxEnsemble(tiny_project / "export/model.onnx")
    canvas = labels["preprocessing"]["canvas_size"]
    for batch in (1, 7):
        x = torch.rand(batch, 3, canvas, canvas, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = ensemble(x).numpy()
        got = onnx(x)
        assert got.shape == (batch, 3) and np.abs(got - expected).max() < 1e-4
    import onnx as onnx_lib
    from fashionclf.serve.export import STACK_TRACE
    proto = onnx_lib.load(str(tiny_project / "export/model.onnx"))  # no line numbers in its bytes
    assert not any(entry.key == STACK_TRACE for node in proto.graph.node for entry in node.metadata_props)
    assert any(entry.key == "namespace" for entry in proto.graph.node[0].metadata_props)


def test_flip_tta_is_mirror_invariant_and_exports_the_same(tiny_project):
    """train.flip_tta: the ensemble averages each fold model over the image and its mirror, so a
    mirrored photo gets the same probabilities; the ONNX graph computes the same numbers (exported
    from a small convolutional model: the mirror is what is tested, and a fold model's export is 15 s)."""
    import onnxruntime
    import torch
    from fashionclf.learn.inference import Ensemble
    from fashionclf.learn.onnx_runner import INPUT
    from fashionclf.serve.export import FoldProbabilities, ensemble_graph, export_fold_graph
    labels = json.loads((tiny_project / "export/labels.json").read_text())
    plain = Ensemble.load(tiny_project / "models" / labels["model"])
    flipped = Ensemble.load(tiny_project / "models" / labels["model"])
    flipped.flip_tta = True
    canvas = labels["preprocessing"]["canvas_size"]
    x = torch.rand(5, 3, canvas, canvas, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        both = flipped(x).numpy()
        assert np.abs(both - flipped(x.flip(-1)).numpy()).max() < 1e-5
        assert np.abs(both - (plain(x).numpy() + plain(x.flip(-1)).numpy()) / 2).max() < 1e-5
        assert np.abs(both - plain(x).numpy()).max() > 1e-4  # the tiny models are not mirror-symmetric
    torch.manual_seed(0)
    small = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3)).eval()
    proto = ensemble_graph(export_fold_graph(small, 8, flip_tta=True), [small.state_dict()])
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = FoldProbabilities(small, flip_tta=True)(x).numpy()
        assert np.abs(expected - FoldProbabilities(small)(x).numpy()).max() > 1e-4
    assert np.abs(session.run(None, {INPUT: x.numpy()})[0] - expected).max() < 1e-5


def test_exported_model_agrees_with_the_checkpoints(tiny_project, tmp_path):
    labels = json.loads((tiny_project / "export/labels.json").read_text())
    best = json.loads((tiny_project / "metrics/summary.json").read_text())["best_model"]
    assert labels["model"] == best and labels["categories"] == ["bags", "clothing", "shoes"]
    images = catalogue(tmp_path / "catalogue")
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert cli(tiny_project, "predict", images, "--out", a).returncode == 0
    assert cli(tiny_project, "predict", images, "--out", b, "--exported", "export/model.onnx").returncode == 0
    ta, tb = pd.read_csv(a, keep_default_na=False), pd.read_csv(b, keep_default_na=False)
    assert ta["category"].tolist() == tb["category"].tolist()
    ok = ta["error"] == ""
    cols = ["p_bags", "p_clothing", "p_shoes"]
    assert np.allclose(ta.loc[ok, cols].astype(float), tb.loc[ok, cols].astype(float), atol=1e-4)


def test_decompression_bomb_is_reported_not_decoded(tiny_project, tmp_path):
    from test_bad_images import png_header_only
    folder = tmp_path / "bomb"
    folder.mkdir()
    png_header_only(folder / "bomb.png", 100_000, 100_000)
    out = tmp_path / "labels.csv"
    assert cli(tiny_project, "predict", folder, "--out", out, "--workers", "0").returncode == 0
    row = pd.read_csv(out, keep_default_na=False).iloc[0]
    assert row["error"].startswith("decompression_bomb") and row["category"] == ""


def test_inverted_photos_get_one_warning_line_with_a_count_and_keep_their_labels(tiny_project, tmp_path):
    """Inverted Fashion-MNIST (dark garments on white) against the calibration split's image statistics
    and confidences: one warning line with a count, and the labels the model gives, unchanged. The
    same kind of photos as the training ones get no warning."""
    import zipfile

    from PIL import ImageOps

    plain, inverted = tmp_path / "plain", tmp_path / "inverted"
    plain.mkdir()
    inverted.mkdir()
    with zipfile.ZipFile(tiny_project / "data/raw.zip") as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".png"))[::4]
        for k, name in enumerate(names):
            with archive.open(name) as fh:
                image = Image.open(fh).convert("L")
                image.save(plain / f"{k}.png")
                ImageOps.invert(image).save(inverted / f"{k}.png")
    outs = {}
    for folder in (plain, inverted):
        outs[folder.name] = tmp_path / f"{folder.name}.csv"
        result = cli(tiny_project, "predict", folder, "--out", outs[folder.name], "--workers", "0")
        assert result.returncode == 0
        warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
        if folder is plain:
            assert warnings == [], result.stderr
        else:
            assert len(warnings) == 1, result.stderr
            count = int(warnings[0].split()[1])
            assert f"of {len(names)} images look unlike" in warnings[0] and count >= 0.9 * len(names)
    table = pd.read_csv(outs["inverted"], keep_default_na=False)
    probs = table[["p_bags", "p_clothing", "p_shoes"]].to_numpy(float)
    assert table["category"].tolist() == [["bags", "clothing", "shoes"][k] for k in probs.argmax(1)]


def test_the_shift_check_warns_on_a_shifted_batch_only():
    from fashionclf.serve.predictor import ShiftCheck

    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"p_a": rng.uniform(0.6, 1.0, 1200), "brightness": rng.normal(0.3, 0.02, 1200),
                              "contrast": rng.normal(0.3, 0.02, 1200), "border": rng.normal(0.0, 0.01, 1200)})
    reference["p_b"] = 1 - reference["p_a"]
    check = ShiftCheck.from_table(reference)
    alike = {name: rng.normal(mean, sd, 500) for name, mean, sd in
             [("brightness", 0.3, 0.02), ("contrast", 0.3, 0.02), ("border", 0.0, 0.01)]}
    assert check.warning(alike, rng.uniform(0.6, 1.0, 500)) is None
    darker = dict(alike, brightness=alike["brightness"] - 0.2)
    assert check.warning(darker, rng.uniform(0.6, 1.0, 500)).startswith("warning: 500 of 500 images")
    unsure = check.warning(alike, rng.uniform(0.5, 0.7, 500))
    assert "lowest confidences" in unsure and "brightness" not in unsure


def frozen_folds(folder, kind, folds=3, canvas=32, differ_in=None):
    """Fold checkpoints of efficientnet_lite0_head or _tail (``kind``) as learn/head.py and
    learn/tail.py write them: the shipped backbone, and each fold's own classifier (and, for a tail,
    last block); ``differ_in``: one fold whose shared part was changed too."""
    import torch
    from fashionclf.learn.checkpoint import FoldCheckpoint
    from fashionclf.learn.cv import preprocessing_of
    from fashionclf.core.params import ModelParams
    from fashionclf.learn.models import build_model
    folder.mkdir()
    params = ModelParams(name=f"efficientnet_lite0_{kind}", image_size=canvas, epochs=1, lr=0.001, ema_decay=0.0)
    model = build_model(params.name, 3, pretrained=True, image_size=canvas)
    for k in range(folds):
        state = {key: value.clone() for key, value in model.state_dict().items()}
        gen = torch.Generator().manual_seed(k)
        own = ["net._fc.weight"] + (["net._blocks.15._project_conv.weight", "net._conv_head.weight"]
                                    if kind == "tail" else [])
        for key in own:
            state[key] = state[key] + torch.randn(state[key].shape, generator=gen) * 0.05
        if k == differ_in:
            state["net._blocks.3._project_conv.weight"] += 1e-3
        FoldCheckpoint(params.name, state, ["bags", "clothing", "shoes"],
                       preprocessing_of(params, np.zeros((1, canvas, canvas, 3))), {}, k, 1, 0.5).save(
            folder / f"fold{k}.pt")
    return folder


@pytest.mark.parametrize("kind", ["head", "tail"])
def test_frozen_folds_share_one_pass_of_their_common_part_with_the_same_probabilities(tmp_path, kind):
    """A frozen-feature head's folds differ only in their classifier, a tail's in their last block,
    final convolution and classifier: the ensemble runs the common part once per image (and per
    flipped view) and gives what every fold model run alone gives (the same bits for a head; a
    tail's end is fused apart from its trunk, to float rounding); folds whose shared parts differ
    run one by one. The export computes the same (checked on the tail, whose shared path holds the
    head's and more: an export costs seconds)."""
    import torch
    from fashionclf.learn.checkpoint import load_folds
    from fashionclf.learn.inference import Ensemble
    from fashionclf.learn.onnx_runner import OnnxEnsemble
    from fashionclf.serve.export import export_onnx

    def fold_by_fold(singles, x, flip_tta):
        views = [x, x.flip(-1)] if flip_tta else [x]
        with torch.no_grad():
            return torch.stack([torch.softmax(single.models[0](view).float(), dim=1)
                                for single in singles for view in views]).mean(0)

    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for differ_in in (None, 1):
        folder = frozen_folds(tmp_path / f"differ_{differ_in}", kind, differ_in=differ_in)
        checkpoints = load_folds(folder)
        ensemble = Ensemble(checkpoints)
        assert ensemble.shared == (differ_in is None) and ensemble.folds == 3
        assert len(ensemble.models) == (1 if differ_in is None else 3)
        singles = [Ensemble([ckpt]) for ckpt in checkpoints]  # one fold each: nothing to share
        for flip_tta in (False, True):
            ensemble.flip_tta = flip_tta
            with torch.no_grad():
                shared, alone = ensemble(x), fold_by_fold(singles, x, flip_tta)
            assert torch.equal(shared, alone) if kind == "head" else torch.allclose(shared, alone, atol=1e-6)
    if kind == "head":
        return
    shared = tmp_path / "differ_None"
    labels = export_onnx(shared, tmp_path / "export")
    assert labels["folds"] == 3
    with torch.no_grad():
        expected = Ensemble.load(shared, fused=False)(x).numpy()
    assert np.abs(OnnxEnsemble(tmp_path / "export" / "model.onnx")(x) - expected).max() < 1e-5


def test_inference_batches_hold_at_most_64_photos_at_224_px_and_give_the_same_probabilities():
    """learn/inference.inference_batch caps a batch by the pixels at the model's working size (its
    input, or the larger size it resizes to): 64 photos at 224 px, 196 at 128, the asked batch for the
    default 28-48 px models; predict_proba gives the same probabilities in capped batches."""
    from unittest import mock

    import torch
    from fashionclf.learn import inference
    from fashionclf.learn.models import build_model

    def batch(image_size, canvas, asked=256):
        model = build_model("efficientnet_lite0", 3, pretrained=False, image_size=image_size)
        return inference.inference_batch(model, torch.zeros(1, 3, canvas, canvas), asked)

    assert batch(224, 128) == 64 == batch(128, 224)  # upscaled inside the model, or fed large
    assert batch(128, 128) == 196 and batch(48, 28) == 256 and batch(48, 28, asked=16) == 16
    assert inference.inference_batch(torch.nn.Identity(), torch.zeros(1, 3, 4000, 4000), 256) == 1
    model = build_model("efficientnet_lite0", 3, pretrained=False, image_size=64).eval()
    x = torch.rand(40, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with mock.patch.object(inference, "INFERENCE_PIXELS", 7 * 64 * 64):  # 6 batches of 7 photos or fewer
        capped = inference.predict_proba(model, x, 256, torch.device("cpu"))
    assert torch.allclose(capped, inference.predict_proba(model, x, 256, torch.device("cpu")), atol=1e-6)
