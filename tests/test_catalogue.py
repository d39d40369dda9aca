"""fashionclf label: a catalogue on a real (local) Ray, against predict on the same images."""
from __future__ import annotations

import os
import shutil
import zipfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageOps

from conftest import make_image, python_cmd, run
from fashionclf.__main__ import main
from fashionclf.report.calibration import Calibration
from fashionclf.serve import catalogue, predict
from fashionclf.serve.predictor import row_columns
from test_labelling import overconfident

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (each `fashionclf label` would otherwise start its own)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def catalogue_images(project, folder, n_per_kind=20):
    """Fashion-MNIST images of every category, a file that is not an image, and a PNG."""
    with zipfile.ZipFile(project / "data/raw.zip") as archive:
        names = sorted(archive.namelist())
        kinds = sorted({n.split("/")[1] for n in names if n.count("/") == 2})
        for kind in kinds:
            archive.extractall(folder, [n for n in names if n.startswith(f"fashion-mnist/{kind}/")][:n_per_kind])
    (folder / "fashion-mnist" / "broken.jpg").write_bytes(b"not a jpeg")
    make_image(folder / "fashion-mnist" / "drawn.png", 1, 7)
    return folder / "fashion-mnist"


def labels_of(out):
    table = pd.read_parquet(out / "labels")
    return table.set_index("path").sort_index()


def test_label_agrees_with_predict_and_a_rerun_scores_only_what_changed(tiny_project, tmp_path, local_ray,
                                                                         monkeypatch, capsys):
    images = catalogue_images(tiny_project, tmp_path / "shop")
    monkeypatch.chdir(tiny_project)
    assert main(["predict", str(images), "--out", str(tmp_path / "p.csv"), "--min-confidence", "0.45",
                 "--workers", "0"]) == 0
    predicted = pd.read_csv(tmp_path / "p.csv", keep_default_na=False).set_index("path").sort_index()
    out = tmp_path / "labels"
    assert main(["label", str(images), "--out", str(out), "--runner", "torch", "--min-confidence", "0.45",
                 "--batch-size", "16"]) == 0
    labelled = labels_of(out)
    assert list(labelled.index) == list(predicted.index)  # every file has a row, the broken one too
    assert (labelled["category"] == predicted["category"]).all()
    assert set(labelled["category"]) - {"", "needs_review"}  # some labelled automatically
    probabilities = [c for c in predicted.columns if c.startswith("p_")]
    good = predicted["error"] == ""
    assert np.abs(labelled.loc[good, probabilities].to_numpy() - predicted.loc[good, probabilities].astype(float)
                  .to_numpy()).max() <= 1e-5
    assert labelled.loc[str(images / "broken.jpg"), "error"].startswith("not_an_image")
    assert (labelled["needs_review"] == (labelled["category"] == "needs_review")).all()
    capsys.readouterr()

    make_image(images / "new" / "a.png", 0, 1)
    make_image(images / "new" / "b.png", 2, 2)
    changed = sorted(images.glob("*/*.png"))[0]
    changed.write_bytes((images / "new" / "a.png").read_bytes())
    os.utime(changed, ns=(1, 10**18))
    assert main(["label", str(images), "--out", str(out), "--runner", "torch", "--min-confidence", "0.45",
                 "--actors", "1"]) == 0
    printed = capsys.readouterr().out  # only the new and the changed files: nothing else is scored again
    assert "scored 3 images" in printed and f"{len(predicted)} scored before" in printed and "decided 3" in printed
    assert len(pq.ParquetDataset(out / "labels").read()) == len(predicted) + 3
    assert len(labels_of(out).index.unique()) == len(predicted) + 2  # the changed file: a row per version

    # a killed job: a half-written scores file is scored again; scored but undecided rows get decided
    part = sorted((out / "scores").rglob("*.parquet"))[-1]  # the last run's: 3 images
    lost = pq.read_metadata(part).num_rows
    part.write_bytes(part.read_bytes()[:100])
    for batch in list((out / "labels").iterdir()):
        for file in batch.iterdir():
            file.unlink()
        batch.rmdir()
    assert main(["label", str(images), "--out", str(out), "--runner", "torch", "--min-confidence", "0.45",
                 "--actors", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"scored {lost} images" in printed and f"decided {len(predicted) + 3}" in printed


def test_manifest_and_glob_on_a_running_ray_with_the_runner_chosen_by_measurement(tiny_project, tmp_path,
                                                                                   local_ray):
    images = catalogue_images(tiny_project, tmp_path / "shop", n_per_kind=6)
    files = sorted(p for p in images.rglob("*.png"))
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"image": [str(p) for p in files[:5]] + [str(tmp_path / "gone.png")]}).to_csv(manifest, index=False)
    inverted = tmp_path / "inverted"  # photos unlike the training ones: one warning line, labels kept
    inverted.mkdir()
    for k, path in enumerate(files[5:35]):
        ImageOps.invert(Image.open(path).convert("L")).save(inverted / f"{k}.png")
    out = tmp_path / "labels"
    result = run(python_cmd("-m", "fashionclf", "label", str(manifest), str(images / "*" / "*.jpg"), str(inverted),
                            "--path-column", "image", "--out", str(out), "--address", local_ray, "--actors", "1"),
                 tiny_project)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and int(warnings[0].split()[1]) >= 25, result.stderr  # of 30 inverted
    assert "runner onnx (" in result.stdout or "runner torch (" in result.stdout
    assert "img/s per actor" in result.stdout  # both runners timed here, the faster one used
    assert f"Ray at {local_ray}" in result.stdout
    labelled = labels_of(out)
    jpgs = sorted(str(p) for p in images.glob("*/*.jpg"))
    assert sorted(labelled.index) == sorted([str(p) for p in files[:5]] + [str(tmp_path / "gone.png")] + jpgs
                                            + [str(p) for p in inverted.glob("*.png")])
    assert labelled.loc[str(tmp_path / "gone.png"), "error"].startswith("not_a_regular_file")
    runs = list((out / "runs").glob("*.json"))
    assert len(runs) == 1 and '"images_per_second"' in runs[0].read_text()


@pytest.mark.parametrize("target, with_probability", [(0.95, None), (0.9, 0.8)])
def test_label_and_predict_write_the_same_rows(target, with_probability):
    """label's Arrow rows and predict's CSV rows from the same raw probabilities: one schema, one decision
    (the batch-wise queue, and the fixed threshold of --with-probability)."""
    probs, y = overconfident(n=1500)
    categories = ["a", "b", "c", "d"]
    calibration = Calibration(y[:500], probs[:500])
    new = probs[500:].astype(np.float32)
    errors = ["" if k % 50 else "not_an_image: no" for k in range(len(new))]
    predictor = type("P", (), {"categories": categories, "calibration": calibration})()
    scored = [(f"img{k}", np.zeros(4, np.float32) if e else p, e) for k, (p, e) in enumerate(zip(new, errors))]
    rows, threshold = predict.labelled_table(predictor, scored, target_precision=target,
                                             with_probability=with_probability)
    columns = {"path": [r[0] for r in scored], "error": errors, "size": [1] * len(new), "mtime_ns": [1] * len(new),
               "key": list(range(len(new)))}
    columns.update({f"raw_{c}": new[:, j] for j, c in enumerate(categories)})
    table, same_threshold = catalogue.labelled_table(pa.table(columns), categories, calibration, target, 0.0,
                                                     with_probability)
    assert same_threshold == threshold
    assert table.column_names == row_columns(categories) + ["size", "mtime_ns", "key"]
    pd.testing.assert_frame_equal(table.to_pandas()[row_columns(categories)], rows)
    decided = rows["category"].tolist()
    assert 0 < decided.count("needs_review") < len(decided) - errors.count("not_an_image: no")
    assert (rows["needs_review"] == (rows["category"] == "needs_review")).all()
    assert rows.loc[rows["error"] != "", "confidence"].isna().all()


@pytest.mark.parametrize("flag, value", [("--actors", "0"), ("--batch-size", "0"), ("--target-precision", "1.5"),
                                         ("--with-probability", "0.9")])
def test_bad_label_parameters_fail_before_any_work(tmp_path, flag, value, capsys):
    out = tmp_path / "labels"
    assert main(["label", str(tmp_path), "--out", str(out), flag, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0] and not out.exists()


@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server over tmp_path/www: a filesystem other than the disk, as s3:// would be."""
    import functools
    import http.server
    import threading

    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_manifest_in_memory_naming_images_over_http(tiny_project, tmp_path, local_ray, http_server, monkeypatch):
    """The manifest is read through fsspec's memory filesystem, the images through its HTTP one, by
    actors in other processes."""
    import fsspec

    root, url = http_server
    images = catalogue_images(tiny_project, root, n_per_kind=2)
    names = sorted(str(p.relative_to(root)) for p in images.rglob("*.*"))
    uris = [f"{url}/{name}" for name in names] + [f"{url}/missing.png"]
    with fsspec.open("memory://shop/manifest.csv", "w") as fh:
        pd.DataFrame({"path": uris}).to_csv(fh, index=False)
    monkeypatch.chdir(tiny_project)
    out = tmp_path / "labels"
    assert main(["label", "memory://shop/manifest.csv", "--out", str(out), "--runner", "torch", "--actors", "1"]) == 0
    labelled = labels_of(out)
    assert sorted(labelled.index) == sorted(uris)
    assert labelled.loc[f"{url}/missing.png", "error"].startswith("not_a_regular_file")
    assert labelled.loc[f"{url}/fashion-mnist/broken.jpg", "error"].startswith("not_an_image")
    good = labelled[labelled["error"] == ""]
    assert len(good) == len(uris) - 2 and (good["confidence"] > 0).all() and (good["size"] > 0).all()


def test_bad_manifests_and_models_fail_with_one_line(tiny_project, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tiny_project)
    (tmp_path / "empty.csv").write_text("path\n")
    (tmp_path / "other.csv").write_text("file\nx.png\n")
    models = tmp_path / "models"
    shutil.copytree(tiny_project / "models", models)
    model = sorted(p.name for p in models.iterdir() if p.is_dir())[0]
    (models / model / "fold1.pt").write_bytes(b"not a checkpoint")
    cases = [([str(tmp_path / "empty.csv")], "no images"),
             ([str(tmp_path / "other.csv")], "no 'path' column"),
             ([str(tmp_path / "other.csv"), "--path-column", "file", "--models", str(models), "--model", model],
              "cannot load the model")]
    for args, why in cases:
        out = tmp_path / "labels"
        assert main(["label", *args, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and why in err[0], err
        assert not out.exists()


@pytest.mark.parametrize("runner", ["torch", "onnx"])
def test_an_actor_keeps_no_copy_of_the_weights_on_disk(tiny_project, tmp_path, monkeypatch, runner):
    """The weights reach an actor as bytes; it loads them from a temporary folder that it removes
    (each actor of each run once left its copy, 18-214 MB, in the system temp folder)."""
    import tempfile

    import torch
    from fashionclf.learn.checkpoint import best_model_name
    from fashionclf.serve.catalogue import Scorer, model_files
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    model = best_model_name(tiny_project / "reports/best_model.json")
    files = model_files(runner, tiny_project / "models" / model, tiny_project / "export/model.onnx")
    scorer = Scorer(files, runner, model, threads=torch.get_num_threads(), device="cpu")  # this worker's, kept
    assert scorer.predictor.categories and not list(tmp_path.iterdir())
