"""aggregate: the reference study's three tables for all models, plus size and speed."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torch import nn

from .models import build_model, count_parameters


def count_macs(model: nn.Module, image_size: int) -> int:
    """Multiply-accumulates of one forward pass on one image (convolutions and linear layers)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, image_size, image_size))
    for h in handles:
        h.remove()
    return int(total)


def latency_ms(model: nn.Module, image_size: int, batch: int, repeats: int = 5) -> float:
    """Median CPU milliseconds per image for one forward pass at this batch size."""
    x = torch.rand(batch, 3, image_size, image_size).contiguous(memory_format=torch.channels_last)
    model = model.eval()
    times = []
    with torch.no_grad():
        model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1000 / batch


def load_fold0(name: str) -> tuple[nn.Module, dict]:
    """One fold's model (all folds share the architecture) and its preprocessing."""
    ckpt = torch.load(Path("models") / name / "fold0.pt", map_location="cpu", weights_only=False)
    pre = ckpt["preprocessing"]
    model = build_model(ckpt["model_name"], len(ckpt["categories"]), pretrained=False, image_size=pre["image_size"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval().to(memory_format=torch.channels_last), pre


def read_json(path) -> dict | None:
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


def collect(models) -> dict:
    summary = {}
    for name in models:
        cv = read_json(f"metrics/cv/{name}.json")
        clean = read_json(f"metrics/test_clean/{name}.json")
        noise = read_json(f"metrics/test_noise/{name}.json")
        if not (cv and clean and noise):
            raise FileNotFoundError(f"metrics for {name} are missing: run its cv_train and test stages")
        model, pre = load_fold0(name)
        summary[name] = {
            "cv": {"avg_val_loss": cv["avg_val_loss"], "best_fold_loss": cv["best_fold_loss"]},
            "test_clean": {k: clean[k] for k in ("accuracy", "f1", "map")},
            "test_noise": {k: noise[k] for k in ("accuracy", "f1", "map", "sigma")},
            "parameters": count_parameters(model),
            "macs": count_macs(model, pre["image_size"]),
            "image_size": pre["image_size"],
        }
    return summary


def best_model(summary: dict) -> str:
    return max(summary, key=lambda m: (summary[m]["test_clean"]["f1"], summary[m]["test_clean"]["accuracy"],
                                       -summary[m]["cv"]["avg_val_loss"]))


def measure_timing(models) -> dict:
    timing = {}
    for name in models:
        model, pre = load_fold0(name)
        size = pre["canvas_size"]  # what predict feeds it: the model's own resize is part of its latency
        info = read_json(Path("reports/timing") / f"train_{name}.json") or {}
        timing[name] = {"train_seconds": info.get("seconds"), "train_device": info.get("device"),
                        "latency_ms_batch1": round(latency_ms(model, size, 1), 3),
                        "latency_ms_batch64": round(latency_ms(model, size, 64), 3)}
    return timing


def pct(x) -> str:
    return f"{100 * x:.2f}"


def summary_markdown(summary: dict, best: str) -> str:
    names = list(summary)
    sigma = summary[names[0]]["test_noise"]["sigma"]
    lines = ["## Cross-validation loss", "", "| model | avg val loss | best fold loss |", "|---|---|---|"]
    lines += [f"| {m} | {summary[m]['cv']['avg_val_loss']:.4f} | {summary[m]['cv']['best_fold_loss']:.4f} |"
              for m in names]
    for key, title in (("test_clean", "Clean test set (fold ensemble)"),
                       ("test_noise", f"Test set with Gaussian noise, sigma {sigma}")):
        lines += ["", f"## {title}", "", "| model | accuracy % | macro F1 % | mAP % |", "|---|---|---|---|"]
        lines += [f"| {m} | {pct(summary[m][key]['accuracy'])} | {pct(summary[m][key]['f1'])} | "
                  f"{pct(summary[m][key]['map'])} |" for m in names]
    lines += ["", "## Size", "", "| model | input px | parameters (M) | MACs per image (M) |", "|---|---|---|---|"]
    lines += [f"| {m} | {summary[m]['image_size']} | {summary[m]['parameters'] / 1e6:.2f} | "
              f"{summary[m]['macs'] / 1e6:.1f} |" for m in names]
    lines += ["", f"Best model (clean-test macro F1): **{best}**", ""]
    return "\n".join(lines)


def timing_markdown(timing: dict) -> str:
    lines = ["| model | training time, all folds (s) | device | CPU ms/image, batch 1 | CPU ms/image, batch 64 |",
             "|---|---|---|---|---|"]
    lines += [f"| {m} | {t['train_seconds']} | {t['train_device']} | {t['latency_ms_batch1']:.2f} | "
              f"{t['latency_ms_batch64']:.3f} |" for m, t in timing.items()]
    return "\n".join(lines) + "\n"
