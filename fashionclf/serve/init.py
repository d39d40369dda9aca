"""``fashionclf init PHOTO_DIR``: a working params.yaml for a shop's folder of photos, one sub-folder
per category. It measures the photos and this machine, chooses sizes, models and epochs that fit a
time budget stated at the reference speed (250 img/s of bench/ref_speed.py), and says why.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import statistics
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from PIL import Image

from ..core.errors import ImageRejected, ParamError
from ..core.params import PARAMS_FILE, RESERVED_CATEGORIES, SECTIONS, parse
from ..core.registry import LITE0, LITE_MODELS, TAIL_SUFFIX
from ..data.balance import held_out_count
from ..data.clean import decode_threads
from ..data.imaging import decode
from ..learn.timing import MEASURE_ROUNDS, REFERENCE_SPEED, Costs, Schedule, measure
from ..report.calibration import calibration_images_needed, highest_reachable_target

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif", ".avif"}
PHOTO_CANVAS = 128           # letterbox canvas, at most (128 beat 96 on real photos: docs/own-photos.md)
PRETRAINED_SIZE = 112        # ImageNet features of EfficientNet-Lite need roughly 100+ px objects
SCRATCH_SIZE = 64            # models trained from scratch on a few thousand photos: detail costs, buys little
TEST_FRACTION = 0.15         # of each category's own photos: reports accuracy with its interval
CALIBRATION_FRACTION = 0.2   # of each category's own photos, in no fold: where the review queue is chosen
# ...at most this many of each category's: a large catalogue's 15% and 20% would go to the test stages,
# where a few hundred a category already give intervals of a point or two (the default pipeline's caps)
TEST_MAX_PER_CLASS, CALIBRATION_MAX_PER_CLASS = 500, 400
FOLDS = 3                    # a shop's plan: 5 cost too much, 2 train each model on half the photos
PRETRAINED_EPOCHS = (2, 6)   # the pretrained model's epochs: at least, and at most (more overfit thumbnails)
MARGIN = 0.08                # budget share kept back for what the estimate misses (runs came within ±10%)
# the stages around the models: fetch to augment per photo, aggregate, review, export and the plots'
# template together; measured on 2,682 real photos (two runs): 11 s and 20 s of this machine's time.
# Beyond that, clean's decoding is timed on a sample of the shop's own photos (a 12 MP phone photo
# takes 27 ms, a 224 px one under 1), and fetch's copy, DVC's hash and its cache copy of the archive
# cost per byte (954 MB of phone photos: 2.3 s, on top of a stage's start), and so does DVC's hash of the
# photo folder, a dep of fetch (track_photo_folder; 960 MB: 1.3 s, md5 at 1.3 ns a byte)
FIXED_PER_PHOTO_S, FIXED_S = 0.005, 20.0
COPY_S_PER_BYTE = 2.5e-9 + 1.3e-9
DECODE_SAMPLE = 60           # photos whose decoding init times, spread over the categories
# cv_train and test stages, measured / modelled, both at the reference speed: what the step timing leaves
# out (BatchNorm recalibration, augmentation, checkpoints, workers' start). It was 1.15 in this machine's
# seconds, but that was mostly the yardstick: half-second windows (init's timing) mostly read the
# reference workload faster than 15-second ones (bench/ref_speed.py, with which runs are stated; 3 of
# 4 pairs, by 3-27%), and in reference seconds the 10 runs of docs/own-photos.md took 0.79-1.05
# (median 0.86) of the estimates.
MEASURED_OVER_MODELLED = 1.0
# each model's three stages (cv_train, test_clean, test_noise) beyond their compute: processes and
# fold workers started, torch imported, checkpoints and predictions written and hashed. On 400 phone
# photos, where the compute is small, four models' stages took 16-21 s each over their estimates when
# run one by one (less about 1.7 s of dvc's own start per stage, in one `dvc repro`)
MODEL_STAGES_S = 13.0
SCRATCH_CANDIDATES = (("mobilenet_v2", 0.006), ("resnet18", 0.004))
BACKBONES = LITE_MODELS         # init --backbone auto chooses among these: the largest that the budget
LARGER_BACKBONE_EPOCHS = 6      # gives this many epochs. Epochs first: on 96x128 studio photos lite0 with 6
                                # epochs labelled 0.990 correctly where lite2 with 4 got 0.978; on ten
                                # article types lite0 with 5, 0.928, lite1 with 4, 0.922 (docs/own-photos.md)
TAIL_SIZE = 224              # a fine-tuned tail sees the canvas at ImageNet's size, where its frozen part's
TAIL_EPOCHS, TAIL_LR = 3, 0.001  # features were learned; each epoch goes over both views (learn/tail.py)
MAX_PER_CLASS = 800          # training images per category, beyond which time grows faster than accuracy
MIN_PER_CLASS = 100          # ...and at least, where the budget cannot train on all photos
SIZE_SAMPLE = 40             # photos per category whose sizes are read


@dataclass
class PhotoFolder:
    root: Path
    counts: dict[str, int] = field(default_factory=dict)
    median_long_side: int = 0
    decode_s: float = 0.0    # seconds to decode one photo onto a 224 px canvas, on one thread (a sample's mean)
    total_bytes: int = 0
    unhashable: list[Path] = field(default_factory=list)  # entries DVC's hash of the folder fails on


def category_name(folder: str) -> str:
    """A sub-folder's name as a category: lower case, letters and digits of any script kept ("Röcke" is
    "röcke", not "r_cke"), in the composed form, since macOS writes "ö" as "o" and a combining mark
    that no word character matches; every other run of characters is one "_"."""
    name = unicodedata.normalize("NFC", folder).strip().lower()
    return re.sub(r"[^\w-]+", "_", name).strip("_") or "category"


def scan(root: Path) -> PhotoFolder:
    """Count the image files of each first-level sub-folder (recursively) and their bytes, sample
    their sizes, and time decoding a sample of them."""
    if not root.is_dir():
        raise ParamError(f"init: {root} is not a folder")
    entries = sorted(root.rglob("*"))  # one walk: the categories' photos and what DVC cannot hash
    found = PhotoFolder(root, unhashable=unhashable_entries(entries))
    by_folder: dict[str, list[Path]] = {}
    for f in entries:
        folder, *inside = f.relative_to(root).parts
        if inside and not folder.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES and f.is_file():
            by_folder.setdefault(folder, []).append(f)
    sides, sampled = [], []
    for sub, files in by_folder.items():
        found.counts[sub] = len(files)
        found.total_bytes += sum(f.stat().st_size for f in files)
        sample = files[:: max(1, len(files) // SIZE_SAMPLE)][:SIZE_SAMPLE]
        sampled += sample
        for f in sample:
            try:
                with Image.open(f) as img:
                    sides.append(max(img.size))
            except OSError:
                pass  # clean counts and drops it later; here it only does not inform the size
    if not found.counts:
        raise ParamError(f"init: no images in sub-folders of {root} (expected one sub-folder of photos per category)")
    if len(found.counts) < 2:
        raise ParamError(f"init: {root} has images in only {len(found.counts)} sub-folder "
                         f"({', '.join(found.counts)}); need at least 2 categories, one sub-folder each")
    names = [category_name(n) for n in found.counts]
    if len(set(names)) < len(names) or set(names) & set(RESERVED_CATEGORIES):
        raise ParamError(f"init: sub-folder names {list(found.counts)} do not give distinct category names "
                         f"(reserved: {', '.join(RESERVED_CATEGORIES)})")
    few = {name: n for name, n in found.counts.items() if training_photos(n) < FOLDS}
    if few:
        least = next(n for n in range(FOLDS, 10 * FOLDS) if training_photos(n) >= FOLDS)
        raise ParamError(f"init: too few photos in {', '.join(f'{name!r} ({n})' for name, n in few.items())}: each "
                         f"category needs at least {least}, its test and calibration photos and one for each of "
                         f"the {FOLDS} folds to validate on")
    found.median_long_side = int(statistics.median(sides)) if sides else PHOTO_CANVAS
    found.decode_s = decode_seconds(sampled[:: max(1, len(sampled) // DECODE_SAMPLE)][:DECODE_SAMPLE])
    return found


def decode_seconds(files: list[Path]) -> float:
    """Mean seconds to decode one of ``files`` as clean does, onto the largest canvas init plans (the
    file already read: fetch's copy is costed per byte)."""
    seconds = []
    for f in files:
        data = f.read_bytes()
        start = time.perf_counter()
        try:
            decode(data, TAIL_SIZE)
        except ImageRejected:
            pass  # clean drops it after as much work
        seconds.append(time.perf_counter() - start)
    return statistics.fmean(seconds) if seconds else 0.0


def fixed_seconds(photos: PhotoFolder) -> float:
    """The stages around the models, in this machine's seconds: per photo and per byte for fetch to
    augment, clean's decoding on its threads as timed, and the stages after the models."""
    photo = FIXED_PER_PHOTO_S + photos.decode_s / decode_threads()
    return sum(photos.counts.values()) * photo + photos.total_bytes * COPY_S_PER_BYTE + FIXED_S


def model_seconds(costs: Costs, schedule: Schedule, epochs: int, per_class: int, classes: int, held_out: int,
                  noise_levels: int) -> float:
    """One model's cv_train and test stages: each fold's training steps and its validation, BatchNorm
    and out-of-fold passes, round after round of folds; every fold model on the held-out images
    (test, noisy test, calibration); scaled by what measured runs took beyond this count."""
    trainval = per_class * classes

    def fold(cost):
        train_s, infer_s = cost
        return epochs * trainval * (schedule.folds - 1) / schedule.folds * train_s \
            + (epochs + 2) * trainval / schedule.folds * infer_s

    return (in_rounds(schedule, costs, fold) + testing_seconds(costs, schedule, held_out, noise_levels)) \
        * MEASURED_OVER_MODELLED + MODEL_STAGES_S


def in_rounds(schedule: Schedule, costs: Costs, fold) -> float:
    """``fold(cost)`` seconds of one fold, summed over the rounds of folds: the full rounds beside
    each other at ``costs.fold``, a short last round alone at ``costs.last``."""
    return schedule.full_rounds * fold(costs.fold) + (fold(costs.last) if schedule.last_threads else 0.0)


def testing_seconds(costs: Costs, schedule: Schedule, held_out: int, noise_levels: int,
                    passes: int | None = None) -> float:
    """The test stages: ``passes`` models (every fold model, unless given) over the held-out photos,
    clean, calibration and each noise level."""
    return (schedule.folds if passes is None else passes) * held_out * (2 + noise_levels) * costs.test


def tail_seconds(tail: Costs, backbone: Costs, schedule: Schedule, epochs: int, per_class: int, classes: int,
                 held_out: int, noise_levels: int) -> float:
    """A fine-tuned tail's cv_train and test stages (learn/tail.py): the frozen part over every
    training photo twice (as it is and augmented) in the stage process on the folds' cores, costed as
    the whole backbone's inference on as many threads (the test stages'), which it nearly is; each
    fold's tail steps over both views an epoch and its validation (``tail``'s costs, measured on the
    frozen part's activations), round after round; in the test stages the frozen part once per
    held-out image and every fold's tail on its output (learn/inference.Ensemble)."""
    trainval = per_class * classes

    def fold(cost):
        train_s, infer_s = cost
        return epochs * (2 * trainval * (schedule.folds - 1) / schedule.folds * train_s
                         + trainval / schedule.folds * infer_s)

    training = in_rounds(schedule, tail, fold)
    frozen = 2 * trainval * backbone.test
    testing = testing_seconds(backbone, schedule, held_out, noise_levels, passes=1) \
        + testing_seconds(tail, schedule, held_out, noise_levels)
    return (frozen + training + testing) * MEASURED_OVER_MODELLED + MODEL_STAGES_S


def photo_canvas(photos: PhotoFolder, largest: int = PHOTO_CANVAS) -> int:
    """The letterbox fits a photo's long side into the square canvas: a canvas of the short side
    would shrink every 96x128 photo to 72x96. With no backbone fine-tuned whole, the small canvas buys
    no epochs, so a tail alone gets up to its input size, TAIL_SIZE (on street photos, 224 against
    128 px: 74.7 against 73.1% out of fold; docs/own-photos.md)."""
    return min(largest, max(28, photos.median_long_side))


def pretrained_size(canvas: int) -> int:
    return max(PRETRAINED_SIZE, canvas)


@dataclass
class Plan:
    params: dict
    reasons: list[str]
    estimate_s: float


@dataclass
class Split:
    """How balance will split a shop's photos: category names, training images per category, and
    the photos held out of every fold (test and calibration)."""
    names: dict[str, str]
    per_class: int
    held_out: int
    calibration: int         # of the held-out photos, the calibration split's


def calibration_photos(photos: int) -> int:
    """Of a category's photos, those balance holds out for the calibration split."""
    return held_out_count(photos, CALIBRATION_FRACTION, CALIBRATION_MAX_PER_CLASS)


def training_photos(photos: int) -> int:
    """Of a category's photos, those balance leaves for the folds (the rest: test and calibration)."""
    return photos - held_out_count(photos, TEST_FRACTION, TEST_MAX_PER_CLASS) - calibration_photos(photos)


def split_of(photos: PhotoFolder, reasons: list[str]) -> Split:
    names = {folder: category_name(folder) for folder in photos.counts}
    per_class = int(min(MAX_PER_CLASS, max(50, max(map(training_photos, photos.counts.values())))))
    split = Split(names, per_class, sum(n - training_photos(n) for n in photos.counts.values()),
                  sum(map(calibration_photos, photos.counts.values())))
    reasons.append(f"{len(names)} categories from the sub-folders; photos per category "
                   + ", ".join(f"{names[f]} {n}" for f, n in photos.counts.items())
                   + f"; of each, {TEST_FRACTION:.0%} held out for the test set (at most {TEST_MAX_PER_CLASS}) and "
                   f"{CALIBRATION_FRACTION:.0%} for the calibration split (at most {CALIBRATION_MAX_PER_CLASS}; "
                   f"{split.held_out} photos in all), {per_class} training images per category (the "
                   f"largest category's, at most {MAX_PER_CLASS}: every other photo is used; smaller categories are "
                   f"oversampled with augmented variants)")
    reasons.append("calibration split: the review queue is chosen on the fold ensemble's predictions of photos "
                   "no fold saw; at a target precision of 0.99 a few hundred are needed (with n of them, "
                   "labelling a share c of new photos needs at most 0.01 c (n + 1) - 1 calibration errors above "
                   "them, so n >= 100 / c even with none)")
    reasons.append(f"{FOLDS} folds, not 5: half the training per epoch, spent on epochs of the pretrained model; "
                   f"not 2, whose models each train on half the photos (on real 224 px photos: docs/own-photos.md)")
    return split


def queue_warning(split: Split, target: float, reasons: list[str]) -> None:
    """Warn where the calibration split is too small for the review queue to label anything at the
    target precision, and say which target it could meet."""
    calibration, needed = split.calibration, calibration_images_needed(target)
    if calibration < needed:
        best = highest_reachable_target(calibration)
        reasons.append(f"warning: {calibration} calibration photos, fewer than the {needed} with which the review "
                       f"queue can label any photo automatically at review.target_precision {target} (a conformal "
                       f"p-value is at least 1 / (n + 1)): every photo will go to review. With {calibration}, a "
                       f"target of at most {best} can label some (predict --target-precision); more photos a "
                       f"category raise it")


def pretrained_choice(fits: dict[str, int]) -> str:
    """The backbone, from the epochs each of them fits into the budget (``fits``, smallest first):
    the largest that still gets LARGER_BACKBONE_EPOCHS, else the smallest with as many as fit."""
    larger = [name for name, epochs in fits.items() if epochs >= LARGER_BACKBONE_EPOCHS]
    return larger[-1] if larger else next(iter(fits))


@dataclass
class ModelPlan:
    models: dict
    spent: float          # estimated seconds of the planned models
    backbone: str         # the fine-tuned pretrained model: planned, or left to the tail alone
    backbone_most_s: float  # seconds of the pretrained models with the backbone at its most epochs
    tail_alone: bool


def available_for_models(budget: float, photos: PhotoFolder) -> float:
    """Seconds of ``budget`` (this machine's) that the model stages may take: the margin and the
    stages around the models (fixed_seconds) come off first."""
    return budget * (1 - MARGIN) - fixed_seconds(photos)


def choose_models(split: Split, canvas: int, schedule: Schedule, noise_levels: int, costs, available: float,
                  reasons: list[str], backbones: tuple[str, ...] = (LITE0,)) -> ModelPlan:
    """A fine-tuned tail first, wherever it fits the budget, since it is cheap and strong; then the
    fine-tuned model with as many epochs as fit beside it, unless that is only its least epochs,
    where the tail is planned alone; then each from-scratch baseline that still fits. Out of fold on
    the dev sets, the fine-tuned model beat the tail only with 6 epochs, by 0.1-0.5 points, and lost
    with 2-6 (docs/own-photos.md): it never takes the tail's place."""
    seconds = lambda cost, epochs: model_seconds(cost, schedule, epochs, split.per_class, len(split.names),
                                                 split.held_out, noise_levels)
    lite_size = pretrained_size(canvas)

    def most_epochs(name, within):
        epochs = PRETRAINED_EPOCHS[0]
        while epochs < PRETRAINED_EPOCHS[1] and seconds(costs(name, lite_size), epochs + 1) <= within:
            epochs += 1
        return epochs

    tail = backbones[0] + TAIL_SUFFIX
    tail_cost = tail_seconds(costs(tail, TAIL_SIZE), costs(backbones[0], TAIL_SIZE), schedule, TAIL_EPOCHS,
                             split.per_class, len(split.names), split.held_out, noise_levels)
    tail_fits = tail_cost <= available
    fits = {name: most_epochs(name, available - (tail_cost if tail_fits else 0.0)) for name in backbones}
    lite = pretrained_choice(fits)
    lite_cost, lite_epochs = costs(lite, lite_size), fits[lite]
    fitted = "" if len(fits) == 1 else (" (epochs that fit: " + ", ".join(f"{n} {e}" for n, e in fits.items())
                                        + f"; the largest with {LARGER_BACKBONE_EPOCHS} or more is chosen)")
    tail_alone = lite_epochs <= PRETRAINED_EPOCHS[0] and tail_fits
    models, spent = {}, 0.0
    if tail_alone:
        reasons.append(f"{lite} not fine-tuned whole: the budget gives it only its least {lite_epochs} epochs{fitted}, "
                       f"where on street photos it labelled 4-6 points fewer correctly than the tail out of fold, and "
                       f"the tail alone gave the same predictions in half the time (docs/own-photos.md), so the "
                       f"tail is planned alone")
    else:
        if not tail_fits:
            reasons.append(f"no fine-tuned tail: {backbones[0]}'s at {TAIL_SIZE} px would take about "
                           f"{tail_cost:.0f} s, over the budget")
        models[lite] = {"image_size": lite_size, "epochs": lite_epochs, "lr": 0.001, "ema_decay": 0.0}
        spent = seconds(lite_cost, lite_epochs)
        reasons.append(f"{lite} (ImageNet weights, offline) at {lite_size} px, {lite_epochs} epochs: its pretrained "
                       f"features need about {PRETRAINED_SIZE} px; estimated {spent:.0f} s here{fitted}")
        reasons.append(f"timed as the stages run it: {schedule.workers} folds at once, {schedule.threads} thread(s) "
                       f"each, {lite_cost.fold[0] * 1e3:.1f} ms per training image"
                       + (f"; the last round's fold alone on {schedule.last_threads} threads "
                          f"{lite_cost.last[0] * 1e3:.1f} ms" if schedule.last_threads else ""))
    if tail_fits:  # alone or with the fine-tuned model
        models[tail] = {"image_size": TAIL_SIZE, "epochs": TAIL_EPOCHS, "lr": TAIL_LR, "ema_decay": 0.0}
        spent += tail_cost
        reasons.append(f"{tail}: {backbones[0]} at {TAIL_SIZE} px, frozen but for its last block and final "
                       f"convolution, which are fine-tuned with the classifier on the frozen part's activations "
                       f"(computed once for all folds); on ten article types of real photos it labelled 94% of "
                       f"unseen photos correctly, where fine-tuning the whole network at 128 px got 91-93% "
                       f"(docs/own-photos.md); "
                       f"estimated {tail_cost:.0f} s")
    for name, lr in SCRATCH_CANDIDATES:
        epochs = 4
        cost = seconds(costs(name, SCRATCH_SIZE), epochs)
        if spent + cost <= available:
            models[name] = {"image_size": SCRATCH_SIZE, "epochs": epochs, "lr": lr, "ema_decay": 0.95}
            spent += cost
            reasons.append(f"{name} from scratch at {SCRATCH_SIZE} px, {epochs} epochs: a baseline that fits "
                           f"the budget (estimated {cost:.0f} s)")
        else:
            reasons.append(f"{name} left out: {epochs} epochs would take about {cost:.0f} s, over what is left "
                           f"of the budget ({max(0.0, available - spent):.0f} s)")
    most = seconds(lite_cost, PRETRAINED_EPOCHS[1]) + (tail_cost if tail_fits else 0.0)
    return ModelPlan(models, spent, lite, most, tail_alone)


def planned_params(photos: PhotoFolder, template: dict, split: Split, canvas: int, models: dict) -> dict:
    params = {k: (dict(v) if isinstance(v, dict) else v) for k, v in template.items()}
    params["fetch"] = {"source": str(photos.root.resolve()), "per_class": 0}
    params["clean"] = dict(template["clean"], canvas_size=canvas)
    params["label"] = {"categories": list(split.names.values()),
                       "rules": [{"pattern": f"^{re.escape(folder)}/", "category": name}
                                 for folder, name in split.names.items()]}
    params["balance"] = dict(template["balance"], per_class=split.per_class, test_fraction=TEST_FRACTION,
                             test_max_per_class=TEST_MAX_PER_CLASS, calibration_fraction=CALIBRATION_FRACTION,
                             calibration_max_per_class=CALIBRATION_MAX_PER_CLASS)
    params["augment"] = dict(template["augment"], variants=0)
    params["train"] = dict(template["train"], folds=FOLDS, models=models)
    for section in params:
        if section in SECTIONS:
            parse(section, params[section])  # a plan that does not validate is a bug here, not the user's
    return params


def plan(photos: PhotoFolder, template: dict, budget_s_ref: float, speed: float, costs,
         backbones: tuple[str, ...] = (LITE0,)) -> Plan:
    """Choose params for ``photos``; ``costs(name, size)`` gives a model's measured Costs; the
    pretrained model is one of ``backbones`` (pretrained_choice)."""
    budget = budget_s_ref * REFERENCE_SPEED / speed
    reasons = [f"time budget {budget_s_ref:.0f} s at {REFERENCE_SPEED} img/s = {budget:.0f} s on this machine "
               f"(it reads {speed:.0f} img/s)"]
    split = split_of(photos, reasons)
    queue_warning(split, template["review"]["target_precision"], reasons)
    canvas = photo_canvas(photos)
    fixed = fixed_seconds(photos)
    reasons.append(f"the stages around the models: about {fixed:.0f} s here, with clean decoding a photo in "
                   f"{photos.decode_s * 1e3:.1f} ms (timed on a sample) on {decode_threads()} thread(s) and fetch "
                   f"copying {photos.total_bytes / 1e6:.0f} MB")
    available = available_for_models(budget, photos)
    schedule, noise_levels = Schedule.of(template, FOLDS), len(template["noise"]["sigmas"])
    wanted = split.per_class
    while True:  # never a plan over the budget: fewer training images before fewer than the least epochs
        model_reasons = []
        chosen = choose_models(split, canvas, schedule, noise_levels, costs, available, model_reasons, backbones)
        if chosen.spent <= available or split.per_class <= MIN_PER_CLASS:
            break
        split = dataclasses.replace(split, per_class=max(MIN_PER_CLASS, int(split.per_class * 0.9)))
    largest = TAIL_SIZE if chosen.tail_alone else PHOTO_CANVAS
    canvas = photo_canvas(photos, largest)
    reasons.append(f"canvas {canvas} px: the photos' median long side is {photos.median_long_side} px"
                   + (", which the letterbox keeps whole" if canvas == photos.median_long_side
                      else f"; {largest} px at most"
                      + (", the tail's input, with no backbone fine-tuned whole" if chosen.tail_alone else "")))
    if split.per_class < wanted:
        reasons.append(f"training images per category cut to {split.per_class} (from {wanted}): the pretrained "
                       f"model's {PRETRAINED_EPOCHS[0]} epochs on all of them would not fit the budget")
    reasons += model_reasons
    models, spent = chosen.models, chosen.spent
    if models.get(chosen.backbone, {}).get("epochs", 0) < PRETRAINED_EPOCHS[1]:
        enough = (chosen.backbone_most_s + fixed) / (1 - MARGIN) * speed / REFERENCE_SPEED
        reasons.append(f"the budget gives {chosen.backbone} fewer than its {PRETRAINED_EPOCHS[1]} epochs: "
                       f"--budget-minutes {math.ceil(enough / 60)} would give them")
    estimate = spent + fixed
    left = budget * (1 - MARGIN) - estimate
    if left > 0.1 * budget and models.get(chosen.backbone, {}).get("epochs", 0) >= PRETRAINED_EPOCHS[1]:
        enough = estimate / (1 - MARGIN) * speed / REFERENCE_SPEED
        reasons.append(f"{left * speed / REFERENCE_SPEED:.0f} s of the budget left over: every model planned has its "
                       f"whole recipe on every training photo ({chosen.backbone} {PRETRAINED_EPOCHS[1]} epochs, "
                       f"beyond which the dev sets measured worse), and nothing measured buys accuracy with the "
                       f"rest; --budget-minutes {math.ceil(enough / 60)} would have given the same plan")
    if estimate > budget:
        reasons.append(f"warning: even this smallest plan needs about {estimate * speed / REFERENCE_SPEED:.0f} s at "
                       f"{REFERENCE_SPEED} img/s, over the budget of {budget_s_ref:.0f} s")
    return Plan(planned_params(photos, template, split, canvas, models), reasons, estimate * speed / REFERENCE_SPEED)


def run_init(photo_dir: str, out: str = str(PARAMS_FILE), budget_minutes: float = 15.0,
             template: str = str(PARAMS_FILE), measure_rounds: int = MEASURE_ROUNDS, backbone: str = "auto") -> int:
    photos = scan(Path(photo_dir).expanduser())
    if measure_rounds < 1:
        raise ParamError(f"init: --measure-rounds must be at least 1, got {measure_rounds}")
    if not 0 < budget_minutes < math.inf:
        raise ParamError(f"init: --budget-minutes must be a number of minutes above 0, got {budget_minutes}")
    if not Path(template).is_file():
        raise ParamError(f"init: no {template} to start from here: run it in the project's folder")
    base = yaml.safe_load(Path(template).read_text())
    classes, lite_size = len(photos.counts), pretrained_size(photo_canvas(photos))
    backbones = BACKBONES if backbone == "auto" else (backbone,)
    candidates = ([(name, lite_size) for name in backbones] + [(backbones[0] + TAIL_SUFFIX, TAIL_SIZE)]
                  + [(name, SCRATCH_SIZE) for name, _ in SCRATCH_CANDIDATES])
    print(f"measuring this machine ({', '.join(f'{n} at {s} px' for n, s in candidates)}; "
          f"{measure_rounds} rounds) ...", file=sys.stderr)
    measured = measure(candidates, classes, Schedule.of(base, FOLDS), measure_rounds, lone=len(backbones) + 1)
    chosen = plan(photos, base, budget_minutes * 60, measured.speed, measured.cost, backbones)
    header = "".join(f"# {line}\n" for line in
                     [f"written by `fashionclf init {photo_dir}`; why:"] + [f"- {r}" for r in chosen.reasons]
                     + [f"estimated dvc repro: {chosen.estimate_s:.0f} s at {REFERENCE_SPEED} img/s"])
    Path(out).write_text(header + yaml.safe_dump(chosen.params, sort_keys=False))
    chosen.reasons.append(depend_on_photos(Path(out).parent / "dvc.yaml", photos, base["fetch"].get("source")))
    for reason in chosen.reasons:
        print(f"- {reason}")
    print(f"wrote {out}: estimated `dvc repro` {chosen.estimate_s:.0f} s at the reference speed "
          f"(budget {budget_minutes * 60:.0f} s). Next: dvc repro")
    return 0


def unhashable_entries(entries: list[Path]) -> list[Path]:
    """Of a folder's entries, what DVC's hash of it as a dep stops at (a link that leads nowhere: an
    error) or hangs on (a named pipe, measured), and fetch counts and goes on past: anything not a
    folder or a readable file."""
    return [path for path in entries if not (path.is_dir() or path.is_file() and os.access(path, os.R_OK))]


def depend_on_photos(dvc_file: Path, photos: PhotoFolder, replacing: str | None) -> str:
    """Make the photo folder a dep of fetch in ``dvc_file`` where DVC can hash it; say what was done."""
    if photos.unhashable:
        if dvc_file.is_file():
            track_photo_folder(dvc_file, photos.root, replacing, listed=False)
        return (f"warning: {len(photos.unhashable)} entries in {photos.root} are links that lead nowhere, unreadable "
                f"files or no files at all (the first: {photos.unhashable[0]}); DVC cannot hash a folder holding "
                "them, so it is not among the fetch stage's deps and `dvc repro` will not notice new photos: "
                "remove them and run init again")
    if not dvc_file.is_file():
        return (f"no {dvc_file}: list {photos.root} among the fetch stage's deps, or `dvc repro` will not notice "
                "when its photos change")
    track_photo_folder(dvc_file, photos.root, replacing)
    return (f"{photos.root} is a dependency of the fetch stage in {dvc_file}: `dvc repro` reruns what follows "
            "when a photo there is added, removed or changed")


def track_photo_folder(dvc_file: Path, folder: Path, replacing: str | None = None, listed: bool = True) -> None:
    """List the photo folder among the fetch stage's deps in ``dvc_file`` (``listed``; else only take
    it out), where ``replacing`` (the folder an earlier init listed) was. fetch reads the folder named
    in params, which DVC does not look into: without the dep, photos added to the folder leave `dvc
    repro` saying nothing changed. DVC hashes a dep folder once and then only files whose size or time
    changed. Written with ruamel.yaml, DVC's own YAML library, which keeps dvc.yaml's comments and layout."""
    from ruamel.yaml import YAML

    project = dvc_file.parent.resolve()

    def as_dep(path) -> str:  # inside the project: relative, as dvc.yaml's other paths
        path = Path(path).expanduser().resolve()
        return str(path.relative_to(project) if path.is_relative_to(project) else path)

    editor = YAML()
    editor.indent(mapping=2, sequence=4, offset=2)
    editor.width = 4096  # no re-wrapped lines
    document = editor.load(dvc_file)
    deps = document["stages"]["fetch"]["deps"]
    gone = {as_dep(replacing)} if replacing and replacing != "fashion-mnist" else set()
    deps[:] = [dep for dep in deps if dep not in gone | {as_dep(folder)}] + [as_dep(folder)] * listed
    editor.dump(document, dvc_file)


def add_arguments(parser) -> None:
    parser.add_argument("photo_dir")
    parser.add_argument("--budget-minutes", type=float, default=15.0,
                        help="time for the whole `dvc repro`, at the reference speed of 250 img/s (default 15)")
    parser.add_argument("--out", default=str(PARAMS_FILE))
    parser.add_argument("--measure-rounds", type=int, default=MEASURE_ROUNDS,
                        help="rounds timing each model's costs between readings of the reference workload; init "
                             "takes their medians (default 4, about 20 s each on 2 cores; more: a steadier plan)")
    parser.add_argument("--backbone", choices=("auto",) + BACKBONES, default="auto",
                        help="the pretrained model; auto: the largest the budget gives "
                             f"{LARGER_BACKBONE_EPOCHS} epochs or more, else {LITE0}")


def run(args) -> int:
    if args.backbone not in ("auto",) + BACKBONES:
        raise ParamError(f"init: --backbone must be auto or one of {', '.join(BACKBONES)}, got {args.backbone!r}")
    return run_init(args.photo_dir, args.out, args.budget_minutes, measure_rounds=args.measure_rounds,
                    backbone=args.backbone)
