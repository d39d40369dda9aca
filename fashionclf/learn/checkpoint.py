"""The fold checkpoint format: training writes it, inference, export and bench read it."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch


@dataclass
class FoldCheckpoint:
    """One trained fold: weights plus everything needed to rebuild and feed the model."""
    model_name: str
    state_dict: dict
    categories: list[str]
    # canvas_size (the letterboxed square the model receives), image_size (its own resize), mean, std
    preprocessing: dict
    params: dict
    fold: int
    epoch: int
    val_loss: float
    history: list[dict] = field(default_factory=list)

    def save(self, path: Path | str) -> None:
        torch.save(asdict(self), path)

    @classmethod
    def load(cls, path: Path | str) -> "FoldCheckpoint":
        return cls(**torch.load(path, map_location="cpu", weights_only=False))


def fold_paths(model_dir: Path | str) -> list[Path]:
    paths = sorted(Path(model_dir).glob("fold*.pt"))
    if not paths:
        raise FileNotFoundError(f"no fold*.pt checkpoints in {model_dir}: run `dvc repro` first")
    return paths


def load_folds(model_dir: Path | str) -> list[FoldCheckpoint]:
    return [FoldCheckpoint.load(p) for p in fold_paths(model_dir)]


def best_model_name(best) -> str:
    """The best model of the last aggregate (chosen on out-of-fold cross-validation results)."""
    path = Path(best)
    if not path.is_file():
        raise FileNotFoundError(f"{best} not found: run `dvc repro` first or pass --model")
    return json.loads(path.read_text())["best_model"]
