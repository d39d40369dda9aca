"""Training internals: grouped folds without leakage, determinism, resume after interruption."""
import numpy as np
import pytest
import torch
import yaml

from fashionclf.core.errors import DataError, LeakageError
from conftest import ROOT
from fashionclf.core.params import ModelParams, TrainParams

DEFAULT_TRAIN = yaml.safe_load((ROOT / "params.yaml").read_text())["train"]
from fashionclf.learn.inference import to_pixels, to_tensor
from fashionclf.learn.cv import grouped_folds
from fashionclf.learn.train import new_fold_state, record_epoch, train_fold


def toy_data(n_groups=30, variants=3, size=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_groups) % 3, variants)
    groups = np.repeat([f"g{i}" for i in range(n_groups)], variants)
    images = rng.integers(0, 255, (len(labels), size, size, 3), dtype=np.uint8)
    for i, label in enumerate(labels):  # a learnable signal: brightness by class
        images[i] = (images[i] // 4 + 60 * label).astype(np.uint8)
    return images, labels, groups


def test_folds_keep_groups_together_and_stratify():
    _, labels, groups = toy_data()
    splits = grouped_folds(labels, groups, 5, seed=1)
    assert len(splits) == 5
    seen_val = []
    for train_idx, val_idx in splits:
        assert not set(groups[train_idx]) & set(groups[val_idx])
        assert set(labels[val_idx]) == {0, 1, 2}
        seen_val += list(val_idx)
    assert sorted(seen_val) == list(range(len(labels)))


def test_too_few_groups_for_the_folds():
    _, labels, groups = toy_data(n_groups=6)
    with pytest.raises(DataError, match="fewer than train.folds=5"):
        grouped_folds(labels, groups, 5, seed=1)


def test_fold_leakage_check_fires(monkeypatch):
    _, labels, groups = toy_data()

    class Leaky:
        def __init__(self, **kw):
            pass

        def split(self, x, y, g):
            yield np.arange(0, 60), np.arange(58, 90)  # indices 58, 59 on both sides

    import sklearn.model_selection
    monkeypatch.setattr(sklearn.model_selection, "StratifiedGroupKFold", Leaky)
    with pytest.raises(LeakageError, match="fold 0"):
        grouped_folds(labels, groups, 2, seed=1)


TINY_TRAIN = TrainParams.model_validate({**DEFAULT_TRAIN, "models": {"resnet18": {"image_size": 16, "epochs": 1,
                                                                                "lr": 0.003, "ema_decay": 0.0}}})


def tiny_run(resume=None, epochs=3, pixels=False, ema_decay=0.9):
    images, labels, _ = toy_data(n_groups=24, variants=2)
    x, y = (to_pixels(images) if pixels else to_tensor(images)), torch.from_numpy(labels)
    mp = ModelParams(name="resnet18", image_size=16, epochs=epochs, lr=0.003, ema_decay=ema_decay)
    tp = TINY_TRAIN.model_copy(update={"folds": 2, "batch_size": 16, "patience": 5, "noise_aug_sigma": 0.1})
    return train_fold(mp, tp, ["a", "b", "c"], x[:36], y[:36], x[36:], y[36:], 0, torch.device("cpu"), resume)


def test_uint8_pixels_on_the_device_train_exactly_as_host_floats():
    """The device-resident path (uint8 pixels, converted a batch at a time where they live) is the
    host float path, bit for bit, on the CPU."""
    floats, a = tiny_run(epochs=2)
    pixels, b = tiny_run(epochs=2, pixels=True)
    assert a["history"] == b["history"] and torch.equal(a["best_probs"], b["best_probs"])
    assert all(torch.equal(v, pixels.state_dict()[k]) for k, v in floats.state_dict().items())


def test_weight_average_is_what_gets_validated_and_kept():
    averaged, a = tiny_run(epochs=2)
    raw, b = tiny_run(epochs=2, ema_decay=0.0)
    assert a["history"] != b["history"]  # validation saw the average, not the last weights
    assert "n_averaged" not in averaged.state_dict()  # a plain model: checkpoints load as before
    assert averaged.state_dict().keys() == raw.state_dict().keys()


def test_learning_rate_scales_linearly_with_the_batch():
    from fashionclf.learn.train import scaled_lr
    mp = ModelParams(name="resnet18", image_size=16, epochs=1, lr=0.004, ema_decay=0.0)
    assert scaled_lr(mp, TINY_TRAIN.model_copy(update={"batch_size": 32, "lr_reference_batch": 32})) == 0.004
    assert scaled_lr(mp, TINY_TRAIN.model_copy(update={"batch_size": 256, "lr_reference_batch": 32})) == 0.032


def test_training_is_deterministic():
    _, a = tiny_run(epochs=2)
    _, b = tiny_run(epochs=2)
    assert a["history"] == b["history"]


def test_skipping_the_fill_of_new_memory_changes_no_result(monkeypatch):
    """Deterministic mode without torch's fill of fresh memory (a quarter of a training step): were
    some op to read memory it had not written, the NaN fill would change the result."""
    import fashionclf.learn.train as T
    skipped, a = tiny_run(epochs=2)
    assert torch.utils.deterministic.fill_uninitialized_memory is False

    def filling():
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = True

    monkeypatch.setattr(T, "deterministic_kernels", filling)
    filled, b = tiny_run(epochs=2)
    assert torch.utils.deterministic.fill_uninitialized_memory is True
    monkeypatch.undo()
    T.deterministic_kernels()
    assert a["history"] == b["history"] and torch.equal(a["best_probs"], b["best_probs"])
    assert all(torch.equal(v, filled.state_dict()[k]) for k, v in skipped.state_dict().items())


def test_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    resume = tmp_path / "fold0.pt"
    whole, uninterrupted = tiny_run()
    import fashionclf.learn.train as T
    calls = {"n": 0}
    real = T.train_one_epoch

    def dies_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(T, "train_one_epoch", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        tiny_run(resume)
    saved = torch.load(resume, weights_only=False)
    assert saved["state"]["epoch"] == 1
    assert saved["state"]["best_state"] == T.BEST_IS_EVALUATED  # epoch 1 was the best: one copy saved
    monkeypatch.setattr(T, "train_one_epoch", real)
    model, resumed = tiny_run(resume)
    assert resumed["history"] == uninterrupted["history"]
    assert torch.equal(resumed["best_probs"], uninterrupted["best_probs"])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in whole.state_dict().items())
    # the last epoch writes no resume point: the finished fold goes to the caller
    assert torch.load(resume, weights_only=False)["state"]["epoch"] == 2


def test_batchnorm_recalibration_sees_every_category():
    """Rows arrive ordered by category; the statistics must come from all of them."""
    from torch import nn
    from fashionclf.learn.train import recalibrate_batchnorm
    model = nn.Sequential(nn.BatchNorm2d(3))
    x = torch.cat([torch.zeros(2000, 3, 2, 2), torch.ones(2000, 3, 2, 2)])  # two "categories"
    quiet = TINY_TRAIN.model_copy(update={"flip": 0.0, "shift": 0.0, "noise_aug_sigma": 0.0})
    recalibrate_batchnorm(model, x, quiet, torch.device("cpu"), limit=1024)
    assert torch.allclose(model[0].running_mean, torch.full((3,), 0.5), atol=0.02)
    assert model[0].momentum == 0.1


def fold_data():
    import pandas as pd

    images, labels, groups = toy_data(n_groups=36, variants=2)
    manifest = pd.DataFrame({"path": [f"img{i}.png" for i in range(len(labels))],
                             "category": np.array(["a", "b", "c"])[labels], "group": groups,
                             "copy": 0, "variant": 0})
    model = ModelParams(name="resnet18", image_size=16, epochs=2, lr=0.003, ema_decay=0.0)
    return images, manifest, model


def test_folds_trained_at_once_in_workers_equal_folds_trained_one_after_another(tmp_path):
    """Each fold is seeded on its own, so with the same thread counts the workers change the speed,
    never the result."""
    from fashionclf.learn.checkpoint import load_folds
    from fashionclf.learn.cv import cross_validate

    images, manifest, model = fold_data()
    train = TINY_TRAIN.model_copy(update={"folds": 2, "batch_size": 16, "threads": 1})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each worker uses
    try:
        one = cross_validate(model, train.model_copy(update={"fold_workers": 1}), images, manifest, tmp_path / "one")
    finally:
        torch.set_num_threads(threads)
    two = cross_validate(model, train.model_copy(update={"fold_workers": 2}), images, manifest, tmp_path / "two")
    assert one["metrics"] == two["metrics"] and one["history"] == two["history"]
    assert one["oof"].equals(two["oof"])
    for a, b in zip(load_folds(tmp_path / "one"), load_folds(tmp_path / "two"), strict=True):
        assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)


def test_a_last_round_with_idle_workers_gives_its_folds_their_cores(tmp_path):
    from fashionclf.learn.cv import cross_validate
    from fashionclf.learn.folds import fold_threads

    assert fold_threads(3, 2, 1) == [1, 1, 2]
    assert fold_threads(5, 2, 1) == [1, 1, 1, 1, 2]
    assert fold_threads(4, 2, 1) == [1, 1, 1, 1]
    assert fold_threads(6, 4, 1) == [1, 1, 1, 1, 2, 2]
    assert fold_threads(7, 4, 2) == [2] * 7  # 3 folds left for 4 workers: no whole core to share
    images, manifest, model = fold_data()
    train = TINY_TRAIN.model_copy(update={"folds": 3, "batch_size": 16, "threads": 1, "fold_workers": 2})
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # a 2-thread op here once hung a worker forked after it in its first 2-thread op
    try:
        torch.nn.functional.conv2d(torch.rand(64, 32, 32, 32), torch.rand(32, 32, 3, 3))
    finally:
        torch.set_num_threads(threads)
    result = cross_validate(model, train, images, manifest, tmp_path / "models")
    # read in each worker while it trained
    assert [fold["threads"] for fold in result["metrics"]["folds"]] == [1, 1, 2]


def test_folds_on_ray_are_byte_identical_to_the_local_pool(tmp_path, monkeypatch):
    """cv_train with RAY_ADDRESS set: one Ray task per fold on a local 2-CPU Ray, the images through
    the object store, the last round's fold on 2 threads as locally; the same bytes as the pool."""
    import ray

    from fashionclf.learn.cv import cross_validate, fold_runner
    from fashionclf.learn.folds import run_locally
    from fashionclf.learn.ray_folds import run_on_ray

    images, manifest, model = fold_data()
    train = TINY_TRAIN.model_copy(update={"folds": 3, "batch_size": 16, "threads": 1, "fold_workers": 2})
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert fold_runner() is run_locally
    local = cross_validate(model, train, images, manifest, tmp_path / "local")
    monkeypatch.setenv("RAY_ADDRESS", "local")
    assert fold_runner() is run_on_ray
    # Ray runs its workers at nice 15 by default: beside another test's process they crawl (4x here)
    monkeypatch.setenv("RAY_worker_niceness", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = cross_validate(model, train, images, manifest, tmp_path / "ray")
    finally:
        ray.shutdown()
    assert [fold["threads"] for fold in on_ray["metrics"]["folds"]] == [1, 1, 2]
    assert on_ray["metrics"] == local["metrics"] and on_ray["history"] == local["history"]
    assert on_ray["oof"].equals(local["oof"])
    for k in range(3):
        assert (tmp_path / "ray" / f"fold{k}.pt").read_bytes() == (tmp_path / "local" / f"fold{k}.pt").read_bytes()


def coloured_toy(name: str, image_size: int, epochs: int, lr: float):
    """Toy images whose class is a colour, which ImageNet features see; the model's params and a
    train recipe with flip TTA, for a frozen-feature head or a tail: (images, x, y, mp, tp)."""
    images, labels, _ = toy_data(n_groups=24, variants=2)
    for i, label in enumerate(labels):
        images[i, :, :, label] = 200
    mp = ModelParams(name=name, image_size=image_size, epochs=epochs, lr=lr, ema_decay=0.0)
    tp = TINY_TRAIN.model_copy(update={"folds": 2, "batch_size": 16, "patience": 3, "noise_aug_sigma": 0.1,
                                       "flip_tta": True})
    return images, to_pixels(images), torch.from_numpy(labels).long(), mp, tp


def assert_kept_and_repeatable(fit, compute, images, x, y, mp, tp, model, state, features, atol):
    """The kept model, run whole on both views (flip TTA), gives the out-of-fold probabilities the
    fold reported; computing the shared features and fitting again give the same bytes."""
    from fashionclf.learn.inference import predict_proba
    cpu = torch.device("cpu")
    probs = (predict_proba(model, x[36:], 64, cpu) + predict_proba(model, x[36:].flip(-1), 64, cpu)) / 2
    assert torch.allclose(probs, state["best_probs"], atol=atol)
    again = compute(mp, tp, images, 3, cpu, threads=1)
    assert np.array_equal(again, features)
    _, refit = fit(mp, tp, ["a", "b", "c"], torch.from_numpy(again), y, np.arange(36), np.arange(36, len(images)),
                   0, cpu)
    assert refit["history"] == state["history"] and torch.equal(refit["best_probs"], state["best_probs"])


def test_a_frozen_feature_head_fits_only_the_classifier_and_predicts_what_it_validated():
    """efficientnet_lite0_head: the features are computed once for every fold (plain, augmented,
    mirrored with flip TTA), the ImageNet backbone stays as shipped, the classifier learns the toy
    signal, the kept model gives the out-of-fold probabilities the fold reported, and a rerun gives
    the same bytes."""
    from fashionclf.learn.head import AUGMENTED, MIRRORED, PLAIN, fit_head, head_features
    from fashionclf.learn.inference import predict_proba
    from fashionclf.learn.models import build_model
    images, x, y, mp, tp = coloured_toy("efficientnet_lite0_head", image_size=32, epochs=15, lr=0.05)
    cpu = torch.device("cpu")
    features = head_features(mp, tp, images, 3, cpu, threads=1)
    assert features.shape == (3, len(images), 1280) and features.dtype == np.float32
    assert not np.array_equal(features[PLAIN], features[AUGMENTED])
    backbone = build_model("efficientnet_lite0", 3, pretrained=True, image_size=32)
    backbone.net._fc = torch.nn.Identity()
    assert torch.allclose(predict_proba(backbone, x.flip(-1), 64, cpu, softmax=False),
                          torch.from_numpy(features[MIRRORED]), atol=1e-5)
    train_idx, val_idx = np.arange(36), np.arange(36, len(images))
    model, state = fit_head(mp, tp, ["a", "b", "c"], torch.from_numpy(features), y, train_idx, val_idx, 0, cpu)
    shipped = build_model("efficientnet_lite0", 3, pretrained=True, image_size=32).state_dict()
    fitted = model.state_dict()
    assert fitted.keys() == shipped.keys()
    assert all(torch.equal(v, shipped[k]) for k, v in fitted.items() if not k.startswith("net._fc."))
    assert fitted["net._fc.weight"].abs().sum() > 0
    assert state["best_accuracy"] > 0.8 and len(state["history"]) >= 2
    assert_kept_and_repeatable(fit_head, head_features, images, x, y, mp, tp, model, state, features, atol=1e-6)



def test_a_tail_fine_tunes_only_the_last_block_and_predicts_what_it_validated():
    """efficientnet_lite0_tail: the frozen part's activations are computed once for every fold (plain,
    augmented, mirrored with flip TTA) and are what the whole network computes up to its last block;
    only that block, the final convolution and the classifier change; the kept model, run whole,
    gives the out-of-fold probabilities the fold reported; a rerun gives the same bytes."""
    from fashionclf.learn.head import AUGMENTED, MIRRORED, PLAIN
    from fashionclf.learn.inference import predict_proba
    from fashionclf.learn.models import TAIL_BLOCKS, build_model, lite_trunk
    from fashionclf.learn.tail import fit_tail, tail_features
    images, x, y, mp, tp = coloured_toy("efficientnet_lite0_tail", image_size=64, epochs=6, lr=0.003)
    cpu = torch.device("cpu")
    features = tail_features(mp, tp, images, 3, cpu, threads=1)
    assert features.shape == (3, len(images), 192, 2, 2) and features.dtype == np.float32
    assert not np.array_equal(features[PLAIN], features[AUGMENTED])
    shipped_model = build_model("efficientnet_lite0", 3, pretrained=True, image_size=64).eval()
    assert torch.allclose(predict_proba(lite_trunk(shipped_model), x.flip(-1), 64, cpu, softmax=False),
                          torch.from_numpy(features[MIRRORED]), atol=1e-5)
    train_idx, val_idx = np.arange(36), np.arange(36, len(images))
    model, state = fit_tail(mp, tp, ["a", "b", "c"], torch.from_numpy(features), y, train_idx, val_idx, 0, cpu)
    shipped, fitted = shipped_model.state_dict(), model.state_dict()
    assert fitted.keys() == shipped.keys()
    last = len(shipped_model.net._blocks) - TAIL_BLOCKS
    tuned = (f"net._blocks.{last}.", "net._conv_head.", "net._bn1.", "net._fc.")
    assert all(torch.equal(v, shipped[k]) for k, v in fitted.items() if not k.startswith(tuned))
    assert all(not torch.equal(fitted[k], shipped[k]) for k in
               (f"net._blocks.{last}._project_conv.weight", "net._conv_head.weight", "net._fc.weight"))
    assert state["best_accuracy"] > 0.8 and len(state["history"]) >= 2
    assert_kept_and_repeatable(fit_tail, tail_features, images, x, y, mp, tp, model, state, features, atol=1e-5)

def kept_epoch(keep_epoch, epochs):
    """The epoch record_epoch keeps from (val_loss, val_accuracy) pairs, and the early-stop count."""
    state, model = new_fold_state(), torch.nn.Linear(2, 2)
    for val_loss, val_acc in epochs:
        record_epoch(state, 0, 0.001, 0.5, val_loss, val_acc, torch.zeros(3, 2), model, keep_epoch)
    return state["best_epoch"], state["bad_epochs"]


def test_a_fold_keeps_its_most_accurate_epoch_even_when_its_loss_rose():
    # a moving average grows confident faster than accurate: the later epoch is better, its loss higher
    epochs = [(0.20, 0.91), (0.25, 0.94), (0.24, 0.94), (0.30, 0.93)]
    assert kept_epoch("val_accuracy", epochs) == (3, 1)  # tie on accuracy: the lower loss
    assert kept_epoch("val_loss", epochs) == (1, 3)
