"""aggregate: one comparison of every model (cross-validation, clean and noisy test sets, size),
each number with its 95% interval, and the best model chosen on out-of-fold CV results only."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..core.stats import mcnemar_exact

TIE_P_VALUE = 0.05


def read_json(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the model's cv_train and test stages")
    return json.loads(path.read_text())


def collect(models, cv_dir, clean_dir, noise_dir) -> dict:
    keep = ("accuracy", "accuracy_ci95", "f1", "f1_ci95", "map")
    summary = {}
    for name in models:
        cv = read_json(Path(cv_dir) / f"{name}.json")
        clean = read_json(Path(clean_dir) / f"{name}.json")
        noise = read_json(Path(noise_dir) / f"{name}.json")
        summary[name] = {
            "cv": {"avg_val_loss": cv["avg_val_loss"], **{k: cv["oof"][k] for k in keep if k != "map"},
                   "log_loss": cv["oof"]["log_loss"], "n": cv["oof"]["n"]},
            "test_clean": {k: clean[k] for k in keep} | {"n": clean["n"]},
            "test_noise": {k: noise[k] for k in keep} | {"n": noise["n"], "sigma": noise["sigma"]},
            "parameters": cv["parameters"], "macs": cv["macs"], "image_size": cv["image_size"],
        }
    return summary


def ranking_key(summary: dict, name: str):
    """Higher out-of-fold macro F1, then accuracy, then lower log loss, then fewer MACs, then name."""
    cv = summary[name]["cv"]
    return (-cv["f1"], -cv["accuracy"], cv["log_loss"], summary[name]["macs"], name)


def choose_best(summary: dict, oof_dir) -> dict:
    """The best model on out-of-fold CV results (never the test set), and the models it is not
    significantly better than (exact McNemar test on the same out-of-fold images)."""
    ranked = sorted(summary, key=lambda m: ranking_key(summary, m))
    best = ranked[0]
    correct = {}
    for name in ranked:
        table = pd.read_csv(Path(oof_dir) / f"{name}.csv", keep_default_na=False)
        correct[name] = (table["actual"] == table["predicted"]).to_numpy()
    ties = {}
    for other in ranked[1:]:
        if len(correct[other]) == len(correct[best]):
            test = mcnemar_exact(correct[other], correct[best])
            if test["p_value"] >= TIE_P_VALUE:
                ties[other] = round(test["p_value"], 4)
    return {"best_model": best, "ranking": ranked,
            "chosen_by": "out-of-fold CV macro F1; ties broken by OOF accuracy, OOF log loss, fewer MACs, name",
            "statistical_ties": ties}


def pct(x) -> str:
    return f"{100 * x:.2f}"


def with_interval(block: dict, key: str) -> str:
    low, high = block[f"{key}_ci95"]
    return f"{pct(block[key])} ({pct(low)}–{pct(high)})"


def summary_markdown(summary: dict, choice: dict) -> str:
    names = list(summary)
    first = summary[names[0]]
    lines = [f"## Cross-validation, out-of-fold ({first['cv']['n']} train/val images)", "",
             "| model | accuracy % (95% CI) | macro F1 % (95% CI) | log loss | avg val loss |", "|---|---|---|---|---|"]
    lines += [f"| {m} | {with_interval(summary[m]['cv'], 'accuracy')} | {with_interval(summary[m]['cv'], 'f1')} | "
              f"{summary[m]['cv']['log_loss']:.4f} | {summary[m]['cv']['avg_val_loss']:.4f} |" for m in names]
    sigma = first["test_noise"]["sigma"]
    for key, title in (("test_clean", f"Clean test set, fold ensemble ({first['test_clean']['n']} images)"),
                       ("test_noise", f"Test set with Gaussian noise, sigma {sigma}")):
        lines += ["", f"## {title}", "", "| model | accuracy % (95% CI) | macro F1 % (95% CI) | mAP % |",
                  "|---|---|---|---|"]
        lines += [f"| {m} | {with_interval(summary[m][key], 'accuracy')} | {with_interval(summary[m][key], 'f1')} | "
                  f"{pct(summary[m][key]['map'])} |" for m in names]
    lines += ["", "## Size", "", "| model | input px | parameters (M) | MACs per image (M) |", "|---|---|---|---|"]
    lines += [f"| {m} | {summary[m]['image_size']} | {summary[m]['parameters'] / 1e6:.2f} | "
              f"{summary[m]['macs'] / 1e6:.1f} |" for m in names]
    best = choice["best_model"]
    lines += ["", f"Best model, chosen on out-of-fold CV macro F1 before the test set is looked at: **{best}**."]
    if choice["statistical_ties"]:
        tied = ", ".join(f"{m} (p = {p:.2f})" for m, p in choice["statistical_ties"].items())
        lines += [f"It is a statistical tie with {tied}: the exact McNemar test on the same out-of-fold "
                  "images finds no significant difference (p >= 0.05), so another seed or machine may rank them "
                  "the other way."]
    else:
        lines += ["It is significantly better than every other model on the out-of-fold images "
                  "(exact McNemar test, p < 0.05)."]
    return "\n".join(lines) + "\n"


def robustness_curves(models, curve_dir) -> pd.DataFrame:
    frames = [pd.read_csv(Path(curve_dir) / f"{m}.csv").assign(model=m) for m in models]
    return pd.concat(frames, ignore_index=True)
