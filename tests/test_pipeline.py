"""The whole DVC pipeline end to end on a tiny config: outputs, no-op reruns, selective reruns."""
import json

import numpy as np
import pandas as pd

from conftest import TINY, run

MODELS = list(TINY["train.models"])
CATEGORIES = ["bags", "clothing", "shoes"]


def load(project, path):
    return json.loads((project / path).read_text())


def accuracy_of(table: pd.DataFrame) -> float:
    return float((table["actual"] == table["predicted"]).mean())


def test_data_outputs(tiny_project):
    p = tiny_project
    clean = load(p, "metrics/clean.json")
    assert clean["raw"] == 300 and clean["raw"] == clean["kept"] + sum(clean["dropped"].values())
    label = load(p, "metrics/label.json")
    assert label["per_category"] == {"bags": 30, "clothing": 180, "shoes": 90}
    balance = load(p, "metrics/balance.json")
    # the test and calibration sets take their fractions of each category's own images; training gets
    # per_class each
    assert balance["test"] == {"bags": 8, "clothing": 45, "shoes": 22}
    assert balance["calibration"] == {"bags": 6, "clothing": 36, "shoes": 18}
    assert balance["trainval"] == {c: 45 for c in CATEGORIES}
    assert balance["oversampled"]["bags"] == 45 - 16  # 16 sources left for 45 train/val slots
    assert (p / "plots/augment_samples.png").stat().st_size > 1000


def test_training_outputs(tiny_project):
    p = tiny_project
    pool = len(pd.read_csv(p / "data/augment/manifest.csv"))
    for model in MODELS:
        assert sorted(f.name for f in (p / "models" / model).glob("fold*.pt")) == ["fold0.pt", "fold1.pt"]
        cv = load(p, f"metrics/cv/{model}.json")
        assert len(cv["folds"]) == 2 and cv["avg_val_loss"] > 0 and cv["best_fold_loss"] <= cv["avg_val_loss"]
        assert all(f["epochs"] == 1 and 0 <= f["val_accuracy"] <= 1 for f in cv["folds"])
        assert cv["parameters"] > 1e6 and cv["macs"] > 1e6
        oof = pd.read_csv(p / f"plots/predictions/oof/{model}.csv")
        assert len(oof) == pool and set(oof["fold"]) == {0, 1}  # every pool image predicted once, out of fold
        assert np.isclose(accuracy_of(oof), cv["oof"]["accuracy"], atol=1e-6)
        low, high = cv["oof"]["accuracy_ci95"]
        assert low <= cv["oof"]["accuracy"] <= high
        curve = pd.read_csv(p / f"plots/train/{model}/plots/metrics/fold0/val_loss.tsv", sep="\t")  # DVCLive
        assert list(curve.columns) == ["step", "val_loss"] and curve["step"].tolist() == [1]


def test_test_outputs_have_intervals_and_per_image_predictions(tiny_project):
    p = tiny_project
    for model in MODELS:
        for split in ("test_clean", "test_noise"):
            m = load(p, f"metrics/{split}/{model}.json")
            assert m["n"] == 75 and 0 <= m["map"] <= 1
            for key in ("accuracy", "f1"):
                low, high = m[f"{key}_ci95"]
                assert 0 <= low <= m[key] <= high <= 1 and high - low > 0.05  # 75 images: a wide interval
            assert set(m["per_class"]) == set(CATEGORIES)
            table = pd.read_csv(p / f"plots/predictions/{split}/{model}.csv")
            assert list(table.columns) == ["path", "actual", "predicted"] + [f"p_{c}" for c in CATEGORIES]
            assert len(table) == 75 and np.isclose(accuracy_of(table), m["accuracy"], atol=1e-6)
            confusion = load(p, f"plots/confusion/{split}/{model}/plots/sklearn/confusion_matrix.json")
            assert len(confusion) == 75 and set(confusion[0]) == {"actual", "predicted"}
        noise = load(p, f"metrics/test_noise/{model}.json")
        curve = pd.read_csv(p / f"plots/noise_curve/{model}.csv")
        assert curve["sigma"].tolist() == [0.0, 0.1, 0.2]  # from the clean point on
        n_test = load(p, f"metrics/test_clean/{model}.json")["n"]
        assert curve["n"].tolist()[:2] == [n_test, n_test] and 18 <= curve["n"].iloc[2] <= 22 < n_test
        assert curve["accuracy"].iloc[0] == load(p, f"metrics/test_clean/{model}.json")["accuracy"]
        assert curve["accuracy"].iloc[1] == noise["accuracy"] and noise["sigma"] == 0.1
        assert (curve["accuracy_low"] <= curve["accuracy"]).all() and (curve["accuracy"] <= curve["accuracy_high"]).all()


def test_best_model_is_chosen_on_out_of_fold_results(tiny_project):
    p = tiny_project
    summary = load(p, "metrics/summary.json")
    assert set(summary["models"]) == set(MODELS)
    oof_f1 = {m: load(p, f"metrics/cv/{m}.json")["oof"]["f1"] for m in MODELS}
    assert summary["best_model"] == max(oof_f1, key=oof_f1.get)
    best = load(p, "reports/best_model.json")
    assert best["best_model"] == summary["best_model"] and "out-of-fold" in best["chosen_by"]
    report = (p / "reports/summary.md").read_text()
    assert "out-of-fold" in report and "95% CI" in report and all(m in report for m in MODELS)
    assert (p / "plots/png/robustness.png").stat().st_size > 5000
    labels = load(p, "export/labels.json")
    assert labels["model"] == summary["best_model"] and labels["categories"] == CATEGORIES


def test_second_repro_does_nothing(tiny_project):
    out = run(["dvc", "repro"], tiny_project).stdout
    assert "Running stage" not in out
    assert "up to date" in run(["dvc", "status"], tiny_project).stdout


def test_metrics_and_plots_commands(tiny_project, tmp_path):
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], tiny_project).stdout)
    files = next(iter(shown.values()))["data"]
    assert "metrics/summary.json" in files and f"metrics/test_clean/{MODELS[0]}.json" in files
    html_dir = tmp_path / "html"
    run(["dvc", "plots", "show", "-o", str(html_dir)], tiny_project)
    html = (html_dir / "index.html").read_text()
    assert html.count('"actual": "bags"') >= 2 * len(MODELS)  # DVCLive's confusion data is embedded
    for model in MODELS:
        for split in ("test_clean", "test_noise"):
            assert f"plots_confusion_{split}_{model}_plots_sklearn_confusion_matrix_json" in html
        assert f"plots_train_{model}_plots_metrics_fold0_val_loss_tsv" in html
    assert (html_dir / "static" / "workspace_plots_png_robustness.png").is_file()
