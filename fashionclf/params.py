"""Typed schema for params.yaml: every stage loads its section through here.

A bad value raises ParamError with one line naming the key and the value;
``fashionclf.cli.stage_main`` turns it into that line on stderr and exit code 2.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

PARAMS_FILE = Path("params.yaml")
KNOWN_MODELS = ("mobilenet_v2", "resnet18", "resnet50", "efficientnet_b0", "efficientnet_lite0")


class ParamError(ValueError):
    """A parameter in params.yaml is missing or invalid."""


def _fail(key: str, value: Any, why: str) -> None:
    raise ParamError(f"params.yaml: {key} {why}, got {value!r}")


def _int(key, value, minimum=None):
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(key, value, "must be an integer")
    if minimum is not None and value < minimum:
        _fail(key, value, f"must be >= {minimum}")
    return value


def _float(key, value, low=None, high=None, low_open=False, high_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        _fail(key, value, "must be a number")
    value = float(value)
    if low is not None and (value < low or (low_open and value == low)):
        _fail(key, value, f"must be {'>' if low_open else '>='} {low}")
    if high is not None and (value > high or (high_open and value == high)):
        _fail(key, value, f"must be {'<' if high_open else '<='} {high}")
    return value


def _str(key, value):
    if not isinstance(value, str) or not value:
        _fail(key, value, "must be a non-empty string")
    return value


def _bool(key, value):
    if not isinstance(value, bool):
        _fail(key, value, "must be true or false")
    return value


def _mapping(key, value):
    if not isinstance(value, dict):
        _fail(key, value, "must be a mapping")
    return value


def _check_keys(section: str, raw: dict, allowed) -> None:
    for key in raw:
        if key not in allowed:
            _fail(f"{section}.{key}", raw[key], f"is not a known key (known: {', '.join(allowed)})")


@dataclass(frozen=True)
class FetchParams:
    source: str = "fashion-mnist"
    per_class: int = 2000

    @classmethod
    def parse(cls, raw):
        _check_keys("fetch", raw, [f.name for f in fields(cls)])
        return cls(source=_str("fetch.source", raw.get("source", cls.source)),
                   per_class=_int("fetch.per_class", raw.get("per_class", cls.per_class), 0))


@dataclass(frozen=True)
class CleanParams:
    size: int = 32
    min_side: int = 8
    max_pixels: int = 89478485

    @classmethod
    def parse(cls, raw):
        _check_keys("clean", raw, [f.name for f in fields(cls)])
        return cls(size=_int("clean.size", raw.get("size", cls.size), 8),
                   min_side=_int("clean.min_side", raw.get("min_side", cls.min_side), 1),
                   max_pixels=_int("clean.max_pixels", raw.get("max_pixels", cls.max_pixels), 1))


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern
    category: str


@dataclass(frozen=True)
class LabelParams:
    categories: tuple[str, ...]
    rules: tuple[Rule, ...]
    corrections: str | None = None

    @classmethod
    def parse(cls, raw):
        _check_keys("label", raw, ["categories", "rules", "corrections"])
        cats = raw.get("categories")
        if not isinstance(cats, list) or not all(isinstance(c, str) and c for c in cats):
            _fail("label.categories", cats, "must be a list of names")
        if len(set(cats)) < 2:
            _fail("label.categories", cats, "must name at least two distinct categories")
        if "drop" in cats or "needs_review" in cats:
            _fail("label.categories", cats, "must not use the reserved names 'drop' or 'needs_review'")
        rules_raw = raw.get("rules")
        if not isinstance(rules_raw, list) or not rules_raw:
            _fail("label.rules", rules_raw, "must be a non-empty list of {pattern, category}")
        rules = []
        for i, rule in enumerate(rules_raw):
            key = f"label.rules[{i}]"
            if not isinstance(rule, dict) or set(rule) != {"pattern", "category"}:
                _fail(key, rule, "must be a mapping with exactly 'pattern' and 'category'")
            if rule["category"] not in cats:
                _fail(f"{key}.category", rule["category"], f"must be one of label.categories {cats}")
            try:
                pattern = re.compile(_str(f"{key}.pattern", rule["pattern"]))
            except re.error as exc:
                _fail(f"{key}.pattern", rule["pattern"], f"is not a valid regex ({exc})")
            rules.append(Rule(pattern, rule["category"]))
        for cat in cats:
            if not any(r.category == cat for r in rules):
                _fail("label.categories", cat, "has a category with no rule in label.rules")
        corrections = raw.get("corrections")
        if corrections is not None:
            corrections = _str("label.corrections", corrections)
        return cls(tuple(cats), tuple(rules), corrections)


@dataclass(frozen=True)
class BalanceParams:
    per_class: int = 1000
    test_fraction: float = 0.2
    seed: int = 42

    @classmethod
    def parse(cls, raw):
        _check_keys("balance", raw, [f.name for f in fields(cls)])
        return cls(per_class=_int("balance.per_class", raw.get("per_class", cls.per_class), 1),
                   test_fraction=_float("balance.test_fraction", raw.get("test_fraction", cls.test_fraction),
                                        0, 1, low_open=True, high_open=True),
                   seed=_int("balance.seed", raw.get("seed", cls.seed)))


@dataclass(frozen=True)
class AugmentParams:
    variants: int = 1
    rotation: float = 15.0
    hflip: float = 0.5
    scale: tuple[float, float] = (0.9, 1.1)
    seed: int = 42

    @classmethod
    def parse(cls, raw):
        _check_keys("augment", raw, [f.name for f in fields(cls)])
        scale = raw.get("scale", list(cls.scale))
        if (not isinstance(scale, list) or len(scale) != 2
                or not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in scale)
                or not 0 < scale[0] <= scale[1]):
            _fail("augment.scale", scale, "must be [low, high] with 0 < low <= high")
        return cls(variants=_int("augment.variants", raw.get("variants", cls.variants), 0),
                   rotation=_float("augment.rotation", raw.get("rotation", cls.rotation), 0, 180),
                   hflip=_float("augment.hflip", raw.get("hflip", cls.hflip), 0, 1),
                   scale=(float(scale[0]), float(scale[1])),
                   seed=_int("augment.seed", raw.get("seed", cls.seed)))


@dataclass(frozen=True)
class ModelParams:
    name: str
    image_size: int
    epochs: int
    lr: float


@dataclass(frozen=True)
class TrainParams:
    folds: int = 5
    batch_size: int = 64
    patience: int = 2
    noise_aug_sigma: float = 0.0
    pretrained: bool = False
    device: str = "auto"
    seed: int = 42
    models: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, raw):
        _check_keys("train", raw, [f.name for f in fields(cls)])
        models_raw = _mapping("train.models", raw.get("models"))
        if not models_raw:
            _fail("train.models", models_raw, "must name at least one model")
        models = {}
        for name, spec in models_raw.items():
            if name not in KNOWN_MODELS:
                _fail("train.models", name, f"has an unknown model (known: {', '.join(KNOWN_MODELS)})")
            key = f"train.models.{name}"
            spec = _mapping(key, spec)
            _check_keys(key, spec, ["image_size", "epochs", "lr"])
            models[name] = ModelParams(
                name=name,
                image_size=_int(f"{key}.image_size", spec.get("image_size", 32), 16),
                epochs=_int(f"{key}.epochs", spec.get("epochs", 5), 1),
                lr=_float(f"{key}.lr", spec.get("lr", 1e-3), 0, low_open=True))
        device = _str("train.device", raw.get("device", cls.device))
        if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
            _fail("train.device", device, "must be auto, cpu, cuda or cuda:N")
        return cls(folds=_int("train.folds", raw.get("folds", cls.folds), 2),
                   batch_size=_int("train.batch_size", raw.get("batch_size", cls.batch_size), 1),
                   patience=_int("train.patience", raw.get("patience", cls.patience), 1),
                   noise_aug_sigma=_float("train.noise_aug_sigma", raw.get("noise_aug_sigma", 0.0), 0),
                   pretrained=_bool("train.pretrained", raw.get("pretrained", cls.pretrained)),
                   device=device,
                   seed=_int("train.seed", raw.get("seed", cls.seed)),
                   models=models)

    def model(self, name: str) -> ModelParams:
        if name not in self.models:
            _fail("train.models", name, f"has no entry for this model (have: {', '.join(self.models)})")
        return self.models[name]


@dataclass(frozen=True)
class EvaluateParams:
    batch_size: int = 256

    @classmethod
    def parse(cls, raw):
        _check_keys("evaluate", raw, [f.name for f in fields(cls)])
        return cls(batch_size=_int("evaluate.batch_size", raw.get("batch_size", cls.batch_size), 1))


@dataclass(frozen=True)
class NoiseParams:
    sigma: float = 0.1
    sigmas: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3)
    seed: int = 7

    @classmethod
    def parse(cls, raw):
        _check_keys("noise", raw, [f.name for f in fields(cls)])
        sigmas = raw.get("sigmas", list(cls.sigmas))
        if not isinstance(sigmas, list) or not sigmas:
            _fail("noise.sigmas", sigmas, "must be a non-empty list of numbers >= 0")
        return cls(sigma=_float("noise.sigma", raw.get("sigma", cls.sigma), 0),
                   sigmas=tuple(_float("noise.sigmas", s, 0) for s in sigmas),
                   seed=_int("noise.seed", raw.get("seed", cls.seed)))


SECTIONS = {"fetch": FetchParams, "clean": CleanParams, "label": LabelParams,
            "balance": BalanceParams, "augment": AugmentParams, "train": TrainParams,
            "evaluate": EvaluateParams, "noise": NoiseParams}


def load(section: str, path: Path | str = PARAMS_FILE):
    """Read and validate one section of params.yaml."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ParamError(f"{path}: file not found (run from the project root)") from None
    except yaml.YAMLError as exc:
        raise ParamError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if section not in doc:
        raise ParamError(f"params.yaml: section '{section}' is missing")
    return SECTIONS[section].parse(_mapping(section, doc[section]))
