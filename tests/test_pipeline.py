"""The whole DVC pipeline end to end on a tiny config: outputs, no-op reruns, selective reruns."""
import json

import numpy as np
import pandas as pd

from conftest import TINY, run

MODELS = list(TINY["train.models"])


def load(project, path):
    return json.loads((project / path).read_text())


def test_every_output_is_written(tiny_project):
    p = tiny_project
    clean = load(p, "metrics/clean.json")
    assert clean["raw"] == 300 and clean["raw"] == clean["kept"] + sum(clean["dropped"].values())
    label = load(p, "metrics/label.json")
    assert label["per_category"] == {"bags": 30, "clothing": 180, "shoes": 90}
    balance = load(p, "metrics/balance.json")
    for cat in ("bags", "clothing", "shoes"):
        assert balance["test"][cat] + balance["trainval"][cat] == 60
    assert balance["oversampled"]["bags"] == 45 - 15  # 15 test, 15 sources left for 45 train/val slots
    assert (p / "plots/augment_samples.png").stat().st_size > 1000
    for model in MODELS:
        assert sorted(f.name for f in (p / "models" / model).glob("fold*.pt")) == ["fold0.pt", "fold1.pt"]
        cv = load(p, f"metrics/cv/{model}.json")
        assert len(cv["folds"]) == 2 and cv["avg_val_loss"] > 0 and cv["best_fold_loss"] <= cv["avg_val_loss"]
        assert all(f["epochs"] == 1 and 0 <= f["val_accuracy"] <= 1 for f in cv["folds"])
        curves = pd.read_csv(p / f"plots/train/{model}.csv")
        assert {"fold", "epoch", "train_loss", "val_loss", "val_accuracy", "lr"} <= set(curves.columns)
        for split in ("test_clean", "test_noise"):
            m = load(p, f"metrics/{split}/{model}.json")
            assert m["n"] == 45 and 0 <= m["accuracy"] <= 1 and 0 <= m["f1"] <= 1 and 0 <= m["map"] <= 1
            assert set(m["per_class"]) == {"bags", "clothing", "shoes"}
            confusion = pd.read_csv(p / f"plots/confusion/{split}/{model}.csv")
            assert list(confusion.columns) == ["actual", "predicted"] and len(confusion) == 45
            assert np.isclose((confusion.actual == confusion.predicted).mean(), m["accuracy"], atol=1e-6)
            assert (p / f"plots/png/confusion_{split}/{model}.png").stat().st_size > 1000
        assert load(p, f"metrics/test_noise/{model}.json")["sigma"] == 0.1
        curve = pd.read_csv(p / f"plots/noise_curve/{model}.csv")
        assert curve["sigma"].tolist() == [0.1, 0.2]
        assert curve["accuracy"].iloc[0] == load(p, f"metrics/test_noise/{model}.json")["accuracy"]
    summary = load(p, "metrics/summary.json")
    assert set(summary["models"]) == set(MODELS) and summary["best_model"] in MODELS
    report = (p / "reports/summary.md").read_text()
    assert "Cross-validation loss" in report and all(m in report for m in MODELS)


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
    assert html.count('"actual": "bags"') >= 2 * len(MODELS)  # confusion data is embedded
    for model in MODELS:
        for split in ("test_clean", "test_noise"):
            assert f'id = "plots_confusion_{split}_{model}_csv"' in html
            assert (html_dir / "static" / f"workspace_plots_png_confusion_{split}_{model}.png").is_file()
