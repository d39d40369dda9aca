"""Typed schema for params.yaml (pydantic v2): every stage loads its section through here.

params.yaml is the one source of values: no field has a default here. A bad value raises
ParamError with one line naming the key and the value; ``cli.stage_main`` prints that line and
exits with code 2.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .errors import ParamError
from .registry import MODEL_NAMES

PARAMS_FILE = Path("params.yaml")
DROP = "drop"                  # a correction that removes an image
NEEDS_REVIEW = "needs_review"  # predict's label for an image below the confidence threshold
RESERVED_CATEGORIES = (DROP, NEEDS_REVIEW)
PIL_PIXEL_LIMIT = 89_478_485   # PIL's decompression-bomb limit, the default for clean.max_pixels
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def invalid(why: str, value: Any, key: str | None = None) -> PydanticCustomError:
    """An error whose text becomes '<key> <why>, got <value>'; ``key`` is relative to the section."""
    return PydanticCustomError("param", "{why}", {"why": why, "value": value, "key": key})


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]


class FetchParams(Section):
    source: str = Field(min_length=1)
    per_class: int = Field(ge=0)


class CleanParams(Section):
    # not "size": DVC leaves params named size or nfiles out of its run-cache key (treeverse/dvc#10296)
    canvas_size: int = Field(ge=8)
    min_side: int = Field(ge=1)
    max_pixels: int = Field(ge=1)


class Rule(Section):
    pattern: re.Pattern
    category: str

    @field_validator("pattern", mode="before")
    @classmethod
    def compile_pattern(cls, value):
        if not isinstance(value, str) or not value:
            raise invalid("must be a non-empty string", value)
        try:
            return re.compile(value)
        except re.error as exc:
            raise invalid(f"is not a valid regex ({exc})", value) from None


class LabelParams(Section):
    categories: list[Annotated[str, Field(min_length=1)]]
    rules: list[Rule] = Field(min_length=1)

    @model_validator(mode="after")
    def categories_and_rules_agree(self):
        cats = self.categories
        if len(set(cats)) < 2:
            raise invalid("must name at least two distinct categories", cats, "categories")
        if set(cats) & set(RESERVED_CATEGORIES):
            raise invalid(f"must not use the reserved names {RESERVED_CATEGORIES}", cats, "categories")
        for i, rule in enumerate(self.rules):
            if rule.category not in cats:
                raise invalid(f"must be one of label.categories {cats}", rule.category, f"rules[{i}].category")
        for cat in cats:
            if not any(r.category == cat for r in self.rules):
                raise invalid("has a category with no rule in label.rules", cat, "categories")
        return self


class BalanceParams(Section):
    per_class: int = Field(ge=1)           # train/val images per category (oversampled if needed)
    test_fraction: float = Field(gt=0.0, lt=1.0)  # of each category's distinct images
    test_max_per_class: int = Field(ge=0)  # cap on the test images per category (0: no cap)
    calibration_fraction: float = Field(ge=0.0, lt=1.0)  # of each category's distinct images, out of every fold
    calibration_max_per_class: int = Field(ge=0)  # cap on the calibration images per category (0: no cap)
    seed: int


class AugmentParams(Section):
    variants: int = Field(ge=0)
    rotation: float = Field(ge=0.0, le=180.0)
    hflip: Fraction
    scale: tuple[float, float]
    seed: int

    @field_validator("scale", mode="before")
    @classmethod
    def ordered_scale(cls, value):
        ok = (isinstance(value, (list, tuple)) and len(value) == 2
              and all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in value)
              and 0 < value[0] <= value[1])
        if not ok:
            raise invalid("must be [low, high] with 0 < low <= high", value)
        return tuple(float(s) for s in value)


class ModelParams(Section):
    name: str
    image_size: int = Field(ge=16)
    epochs: int = Field(ge=1)
    lr: float = Field(gt=0.0)
    ema_decay: float = Field(ge=0.0, lt=1.0)  # exponential moving average of the weights per step (0: off)
    regularize: bool = True  # the architecture's dropout and stochastic depth (false: off, for short schedules)


class TrainParams(Section):
    folds: int = Field(ge=2)
    batch_size: int = Field(ge=2)
    eval_batch_size: int = Field(ge=1)
    patience: int = Field(ge=1)
    # the epoch each fold keeps, and the one early stopping waits to beat: val_accuracy (ties: the lower
    # validation loss) or val_loss
    keep_epoch: Literal["val_accuracy", "val_loss"]
    pct_start: float = Field(gt=0.0, lt=1.0)  # share of the one-cycle schedule spent warming up
    flip: Fraction                           # on-the-fly horizontal flip probability
    flip_tta: bool = False                   # the fold ensemble also predicts the mirrored image (2x inference)
    shift: float = Field(ge=0.0, le=0.5)     # on-the-fly shift, as a fraction of the side
    noise_aug_sigma: NonNegative
    lr_reference_batch: int = Field(ge=1)     # models.*.lr is for this batch size; lr scales linearly with batch_size
    compile: bool                             # torch.compile the training step
    pretrained: bool
    device: str
    threads: int = Field(ge=1)
    fold_workers: int = Field(ge=1)
    seed: int
    models: dict[str, ModelParams]

    @field_validator("models", mode="before")
    @classmethod
    def known_models(cls, value):
        if not isinstance(value, dict) or not value:
            raise invalid("must name at least one model", value)
        for name, spec in value.items():
            if name not in MODEL_NAMES:
                raise invalid(f"has an unknown model (known: {', '.join(MODEL_NAMES)})", name)
            if not isinstance(spec, dict):
                raise invalid("must be a mapping of image_size, epochs, lr, ema_decay", spec, f"models.{name}")
        return {name: {"name": name, **spec} for name, spec in value.items()}

    @field_validator("device")
    @classmethod
    def known_device(cls, value):
        if not DEVICE_PATTERN.fullmatch(value):
            raise invalid("must be auto, cpu, cuda or cuda:N", value)
        return value

    def model(self, name: str) -> ModelParams:
        if name not in self.models:
            raise ParamError(f"params.yaml: train.models has no entry for {name!r} (have: {', '.join(self.models)})")
        return self.models[name]


class EvaluateParams(Section):
    batch_size: int = Field(ge=1)
    threads: int = Field(ge=1)
    device: str

    _device = field_validator("device")(lambda cls, value: TrainParams.known_device(value))


class NoiseParams(Section):
    sigma: NonNegative
    sigmas: list[float] = Field(min_length=1)  # the robustness curve, besides sigma 0 (the clean test)
    curve_max_images: int = Field(ge=0)        # curve levels other than sigma: a stratified subset (0: all)
    seed: int

    @field_validator("sigmas")
    @classmethod
    def non_negative(cls, value):
        for s in value:
            if s < 0:
                raise invalid("must be >= 0", float(s))
        return value


class ReviewParams(Section):
    target_precision: float = Field(gt=0.0, le=1.0)  # precision wanted on the automatically labelled share
    with_probability: float = Field(ge=0.0, lt=1.0)  # 0: on average; else with this probability (learn-then-test)
    ece_bins: int = Field(ge=2)                      # equal-width confidence bins of the calibration error


SECTIONS = {"fetch": FetchParams, "clean": CleanParams, "label": LabelParams, "balance": BalanceParams,
            "augment": AugmentParams, "train": TrainParams, "evaluate": EvaluateParams, "noise": NoiseParams,
            "review": ReviewParams}

MESSAGES = {"greater_than_equal": "must be >= {ge:g}", "greater_than": "must be > {gt:g}",
            "less_than_equal": "must be <= {le:g}", "less_than": "must be < {lt:g}",
            "int_type": "must be an integer", "float_type": "must be a number", "bool_type": "must be true or false",
            "string_type": "must be a string", "string_too_short": "must be a non-empty string",
            "too_short": "must not be empty", "list_type": "must be a list", "dict_type": "must be a mapping",
            "model_type": "must be a mapping", "tuple_type": "must be a list", "missing": "is missing",
            "literal_error": "must be one of {expected}"}


def dotted(section: str, loc) -> str:
    key = section
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else f".{part}"
    return key


def describe(section: str, error: dict, known_keys) -> str:
    """One pydantic error as the one line the user sees: 'params.yaml: <key> <why>, got <value>'."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    loc = [p for p in error["loc"] if p not in ("function-after", "function-before")]
    if kind == "param":
        key = dotted(section, loc) + (f".{ctx['key']}" if ctx.get("key") else "")
        return f"params.yaml: {key} {ctx['why']}, got {ctx['value']!r}"
    key = dotted(section, loc)
    if kind == "extra_forbidden":
        return f"params.yaml: {key} is not a known key (known: {', '.join(known_keys)}), got {value!r}"
    if kind == "missing":
        return f"params.yaml: {key} is missing"
    why = MESSAGES.get(kind, error["msg"]).format(**ctx) if kind in MESSAGES else error["msg"]
    if any(isinstance(ctx.get(k), float) for k in ("ge", "gt", "le", "lt")) and isinstance(value, int):
        value = float(value)  # a float key shows its value as a float
    return f"params.yaml: {key} {why}, got {value!r}"


def parse(section: str, raw: Any):
    schema = SECTIONS[section]
    if not isinstance(raw, dict):
        raise ParamError(f"params.yaml: {section} must be a mapping, got {raw!r}")
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        raise ParamError(describe(section, exc.errors()[0], list(schema.model_fields))) from None


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
    return parse(section, doc[section])
