"""``fashionclf init PHOTO_DIR``: a working params.yaml for a shop's folder of photos, one sub-folder
per category. It measures the photos and this machine, chooses sizes, models and epochs that fit a
time budget stated at the reference speed (250 img/s of bench/ref_speed.py), and says why.
"""
from __future__ import annotations

import functools
import math
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from PIL import Image

from ..core.errors import ParamError
from ..core.params import PARAMS_FILE, RESERVED_CATEGORIES, SECTIONS, parse
from ..core.registry import LITE0
from ..data.balance import held_out_count

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
REFERENCE_SPEED = 250        # img/s at which time budgets are stated
PHOTO_CANVAS = 128           # letterbox canvas, at most: on real 224 px photos 128 (lite0 at 128) beat 96 (lite0
                             # at 112), accuracy 0.983 against 0.979 (docs/own-photos.md)
PRETRAINED_SIZE = 112        # ImageNet features of EfficientNet-Lite0 need roughly 100+ px objects
SCRATCH_SIZE = 64            # models trained from scratch on a few thousand photos: detail costs, buys little
TEST_FRACTION = 0.15         # of each category's own photos: reports accuracy with its interval
CALIBRATION_FRACTION = 0.2   # of each category's own photos, in no fold: where the review queue is chosen
FOLDS = 3                    # a shop's plan: 5 cost too much, 2 measured worse (docs/own-photos.md)
PRETRAINED_EPOCHS = (2, 6)   # the pretrained model's epochs: at least, and at most (9 were worse than 6 on thumbnails)
MARGIN = 0.05                # budget share kept back for what the estimate misses (runs took 14% less to 7% more)
MEASURED_OVER_MODELLED = 1.15  # cv_train and test stages, measured / modelled: BatchNorm recalibration, augmentation,
                             # checkpoints, workers' start (1.08, 1.21 and 1.15 for lite0 at 128 px 5 and 4 epochs and
                             # mobilenet_v2 at 64 px 4 epochs on real 224 px photos; docs/own-photos.md)
SCRATCH_CANDIDATES = (("mobilenet_v2", 0.006), ("resnet18", 0.004))
MAX_PER_CLASS = 800          # training images per category, beyond which time grows faster than accuracy
SIZE_SAMPLE = 40             # photos per category whose sizes are read
MEASURE_ROUNDS = 4           # paired readings of each cost against the reference workload; init takes their median
MEASURE_WINDOW_S = 0.5       # seconds per timed window (a cost, a reference reading)
FOLD_START_DELAY_S = 1.0     # the fold workers' windows start together this long after they are handed out


@dataclass
class PhotoFolder:
    root: Path
    counts: dict[str, int] = field(default_factory=dict)
    median_short_side: int = 0


def category_name(folder: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "_", folder.strip().lower()).strip("_") or "category"


def scan(root: Path) -> PhotoFolder:
    """Count the image files of each first-level sub-folder (recursively) and sample their sizes."""
    if not root.is_dir():
        raise ParamError(f"init: {root} is not a folder")
    found = PhotoFolder(root)
    sides = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in sub.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        if not files:
            continue
        found.counts[sub.name] = len(files)
        for f in files[:: max(1, len(files) // SIZE_SAMPLE)][:SIZE_SAMPLE]:
            try:
                with Image.open(f) as img:
                    sides.append(min(img.size))
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
    found.median_short_side = int(statistics.median(sides)) if sides else PHOTO_CANVAS
    return found


class Workload:
    """A training step and an inference pass on one random batch, built once and timed in windows:
    the mean seconds per image over at least ``window`` seconds (and 2 steps)."""

    def __init__(self, model, optimizer, x, y, warm_up: int = 1):
        self.model, self.opt, self.x, self.y = model, optimizer, x, y
        for _ in range(warm_up):  # the first steps allocate: not timed
            self.train_step()

    @classmethod
    def of(cls, name: str, image_size: int, classes: int, batch: int = 32) -> "Workload":
        """``name`` as cv_train trains it: the project's model and optimizer, channels-last."""
        import torch

        from ..learn.models import build_model
        from ..learn.train import make_optimizer
        torch.manual_seed(0)
        model = build_model(name, classes, pretrained=False, image_size=image_size).to(
            memory_format=torch.channels_last)
        x = torch.rand(batch, 3, image_size, image_size).contiguous(memory_format=torch.channels_last)
        return cls(model, make_optimizer(model, 1e-3), x, torch.arange(batch) % classes)

    def train_step(self):
        import torch
        self.model.train()
        self.opt.zero_grad()
        torch.nn.functional.cross_entropy(self.model(self.x), self.y).backward()
        self.opt.step()

    def infer(self):
        import torch
        self.model.eval()
        with torch.inference_mode():
            self.model(self.x)

    def seconds_per_image(self, window: float, threads: int | None = None, train: bool = True) -> tuple[float, float]:
        """(training, inference) seconds per image (training 0 unless ``train``), with this process's
        torch threads or ``threads``."""
        import torch
        before = torch.get_num_threads()
        torch.set_num_threads(threads or before)
        try:
            step = windowed(self.train_step, window) / len(self.x) if train else 0.0
            return step, windowed(self.infer, window / 2) / len(self.x)
        finally:
            torch.set_num_threads(before)


def windowed(fn, window: float) -> float:
    """Mean seconds of ``fn`` over at least ``window`` seconds and 2 calls."""
    calls, start = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - start < window:
        fn()
        calls += 1
    return (time.perf_counter() - start) / calls


@dataclass(frozen=True)
class Schedule:
    """How the stages run a model, which is what init times: ``workers`` fold processes at once with
    ``threads`` each, then the folds of a short last round alone with ``last_threads`` (0: no such
    round; learn.folds.fold_threads), and the test stages with ``eval_threads``."""
    folds: int
    workers: int
    threads: int
    last_threads: int
    eval_threads: int

    @classmethod
    def of(cls, template: dict, folds: int = FOLDS) -> "Schedule":
        import torch

        from ..learn.folds import fold_threads, fold_workers  # import torch: not at init's start
        train = parse("train", template["train"])
        workers = fold_workers(train, folds, torch.device("cpu"))
        threads = fold_threads(folds, workers, train.threads)
        last = threads[-1] if folds % workers else 0
        return cls(folds, workers, threads[0], last, template["evaluate"]["threads"])

    @property
    def full_rounds(self) -> int:
        return self.folds // self.workers


@dataclass
class Costs:
    """Seconds per image of one model as the stages run it, at the machine's median speed."""
    fold: tuple[float, float]   # (training, inference) in a fold process beside the other workers' folds
    last: tuple[float, float]   # the same for a fold of the short last round, alone on its threads
    test: float                 # inference in a test stage


@dataclass
class Measured:
    speed: float                              # img/s on the reference workload: the median reading
    costs: dict[tuple[str, int], Costs]


@functools.lru_cache(maxsize=None)
def _fold_workload(name: str, image_size: int, classes: int, threads: int) -> Workload:
    """A fold process's workload, built once per process as cv_train builds a fold's model once."""
    import torch

    from ..learn.train import deterministic_kernels
    torch.set_num_threads(threads)
    deterministic_kernels()  # a worker started from the fork server does not inherit it
    return Workload.of(name, image_size, classes)


def _fold_window(task) -> tuple[float, float]:
    key, classes, threads, window, start_at = task
    load = _fold_workload(*key, classes, threads)
    time.sleep(max(0.0, start_at - time.time()))  # all workers at once, as cv_train's folds train
    return load.seconds_per_image(window)


def measure(candidates: list[tuple[str, int]], classes: int, schedule: Schedule, rounds: int = MEASURE_ROUNDS,
            window: float = MEASURE_WINDOW_S) -> Measured:
    """Each candidate's costs as the stages run it: its folds training in ``schedule.workers``
    processes at once (two folds on 2 cores share more than one 2-thread process suggests), the
    pretrained model's lone last-round fold on its threads, and the test stages' inference.

    Steadied against the machine's drift: a shared machine's speed moves by a third within a minute
    (the reference workload read 272-413 img/s in six readings) and the costs move with it. A cost
    times the reference reading just before and after it varied 4% between rounds, where the cost
    alone varied 10% and the speed 8%. So every round times each cost between two readings, and each
    cost is the median of its products over the rounds, divided by the median speed."""
    import torch

    from ..learn.train import deterministic_kernels
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.utils.deterministic.fill_uninitialized_memory)
    deterministic_kernels()  # as the folds train
    try:
        return timed_rounds(candidates, classes, schedule, rounds, window)
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.utils.deterministic.fill_uninitialized_memory = before[2]


def timed_rounds(candidates, classes, schedule: Schedule, rounds: int, window: float) -> Measured:
    from ..learn.folds import start_worker, worker_context

    loads = {key: Workload.of(*key, classes) for key in candidates}
    speeds, products = [reference_speed(window)], {key: [] for key in candidates}

    def paired(values):  # the values against the reading before them and one now after them
        speeds.append(reference_speed(window))
        around = (speeds[-2] + speeds[-1]) / 2
        return [v * around for v in values]

    with worker_context().Pool(schedule.workers, start_worker) as pool:
        for _ in range(rounds):
            for k, (key, load) in enumerate(loads.items()):
                task = (key, classes, schedule.threads, window, time.time() + FOLD_START_DELAY_S)
                fold = pool.map(_fold_window, [task] * schedule.workers, chunksize=1)
                row = paired([statistics.mean(f[i] for f in fold) for i in (0, 1)])
                last = (load.seconds_per_image(window, schedule.last_threads)
                        if schedule.last_threads and k == 0 else None)
                row += paired(last) if last else row[:2]
                row += paired([load.seconds_per_image(window / 2, schedule.eval_threads, train=False)[1]])
                products[key].append(row)
    speed = statistics.median(speeds)
    median = [[statistics.median(column) / speed for column in zip(*rows)] for rows in products.values()]
    return Measured(speed, {key: Costs(tuple(m[0:2]), tuple(m[2:4]), m[4]) for key, m in zip(products, median)})


def reference_speed(seconds: float = 2.0) -> float:
    """This machine's img/s on the reference workload: bare ResNet18 training steps (32 px inputs,
    batch 64, Adam, channels-last). bench/ref_speed.py prints it over 15 s."""
    import torch

    from ..learn.models import torchvision_models
    torch.manual_seed(0)
    model = torchvision_models().resnet18(num_classes=3).to(memory_format=torch.channels_last)
    x = torch.rand(64, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    load = Workload(model, torch.optim.Adam(model.parameters()), x, torch.randint(0, 3, (64,)), warm_up=2)
    return len(x) / windowed(load.train_step, seconds)


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

    training = schedule.full_rounds * fold(costs.fold) + (fold(costs.last) if schedule.last_threads else 0.0)
    testing = schedule.folds * held_out * (2 + noise_levels) * costs.test
    return (training + testing) * MEASURED_OVER_MODELLED


def photo_canvas(photos: PhotoFolder) -> int:
    return min(PHOTO_CANVAS, max(28, photos.median_short_side))


def pretrained_size(canvas: int) -> int:
    return max(PRETRAINED_SIZE, canvas)


@dataclass
class Plan:
    params: dict
    reasons: list[str]
    estimate_s: float


def plan(photos: PhotoFolder, template: dict, budget_s_ref: float, speed: float, costs) -> Plan:
    """Choose params for ``photos``; ``costs(name, size)`` gives a model's measured Costs."""
    reasons = []
    budget = budget_s_ref * REFERENCE_SPEED / speed
    reasons.append(f"time budget {budget_s_ref:.0f} s at {REFERENCE_SPEED} img/s = {budget:.0f} s on this machine "
                   f"(it reads {speed:.0f} img/s)")
    names = {folder: category_name(folder) for folder in photos.counts}
    classes = len(names)
    held = {f: held_out_count(n, TEST_FRACTION, 0) + held_out_count(n, CALIBRATION_FRACTION, 0)
            for f, n in photos.counts.items()}  # as balance will split them
    train_counts = [n - held[f] for f, n in photos.counts.items()]
    per_class = int(min(MAX_PER_CLASS, max(50, max(train_counts))))
    test_total = sum(held.values())
    reasons.append(f"{classes} categories from the sub-folders; photos per category "
                   + ", ".join(f"{names[f]} {n}" for f, n in photos.counts.items())
                   + f"; of each, {TEST_FRACTION:.0%} held out for the test set and {CALIBRATION_FRACTION:.0%} for "
                   f"the calibration split ({test_total} photos), {per_class} training images per category (the "
                   f"largest category's, at most {MAX_PER_CLASS}: every other photo is used; smaller categories are "
                   f"oversampled with augmented variants)")
    reasons.append("calibration split: the review queue is chosen on the fold ensemble's predictions of photos "
                   "no fold saw; at a target precision of 0.99 a few hundred are needed (with n of them, "
                   "labelling a share c of new photos needs at most 0.01 c (n + 1) - 1 calibration errors above "
                   "them, so n >= 100 / c even with none)")
    reasons.append(f"{FOLDS} folds, not 5: half the training per epoch, spent on epochs of the pretrained model; "
                   f"not 2, whose models each train on half the photos (on real 224 px photos: docs/own-photos.md)")
    canvas = photo_canvas(photos)
    reasons.append(f"canvas {canvas} px: the photos' median short side is {photos.median_short_side} px")
    noise_levels = len(template["noise"]["sigmas"])
    fixed = sum(photos.counts.values()) * 0.01 + 40  # data stages, aggregate, review, export: 52-61 s measured
    available = budget * (1 - MARGIN) - fixed
    schedule = Schedule.of(template)

    models, spent = {}, 0.0
    lite_size = pretrained_size(canvas)
    lite_cost = costs(LITE0, lite_size)
    lite_seconds = lambda epochs: model_seconds(lite_cost, schedule, epochs, per_class, classes, test_total,
                                                noise_levels)
    lite_epochs = PRETRAINED_EPOCHS[0]  # the budget goes to the pretrained model first: it is the one that labels
    while lite_epochs < PRETRAINED_EPOCHS[1] and lite_seconds(lite_epochs + 1) <= available:
        lite_epochs += 1
    models[LITE0] = {"image_size": lite_size, "epochs": lite_epochs, "lr": 0.001, "ema_decay": 0.0}
    spent += lite_seconds(lite_epochs)
    reasons.append(f"{LITE0} (ImageNet weights, offline) at {lite_size} px, {lite_epochs} epochs: its pretrained "
                   f"features need about {PRETRAINED_SIZE} px; estimated {spent:.0f} s here")
    reasons.append(f"timed as the stages run it: {schedule.workers} folds at once, {schedule.threads} thread(s) each, "
                   f"{lite_cost.fold[0] * 1e3:.1f} ms per training image"
                   + (f"; the last round's fold alone on {schedule.last_threads} threads "
                      f"{lite_cost.last[0] * 1e3:.1f} ms" if schedule.last_threads else ""))
    if lite_epochs < PRETRAINED_EPOCHS[1]:
        enough = (lite_seconds(PRETRAINED_EPOCHS[1]) + fixed) / (1 - MARGIN) * speed / REFERENCE_SPEED
        reasons.append(f"the budget gives {LITE0} fewer than its {PRETRAINED_EPOCHS[1]} epochs: "
                       f"--budget-minutes {math.ceil(enough / 60)} would give them")
    for name, lr in SCRATCH_CANDIDATES:
        epochs = 4
        cost = model_seconds(costs(name, SCRATCH_SIZE), schedule, epochs, per_class, classes, test_total,
                             noise_levels)
        if spent + cost <= available:
            models[name] = {"image_size": SCRATCH_SIZE, "epochs": epochs, "lr": lr, "ema_decay": 0.95}
            spent += cost
            reasons.append(f"{name} from scratch at {SCRATCH_SIZE} px, {epochs} epochs: a baseline that fits "
                           f"the budget (estimated {cost:.0f} s)")
        else:
            reasons.append(f"{name} left out: {epochs} epochs would take about {cost:.0f} s, over what is left "
                           f"of the budget ({max(0.0, available - spent):.0f} s)")
    estimate = spent + fixed
    if estimate > budget:
        reasons.append(f"warning: even this smallest plan needs about {estimate * speed / REFERENCE_SPEED:.0f} s at "
                       f"{REFERENCE_SPEED} img/s, over the budget of {budget_s_ref:.0f} s")

    params = {k: (dict(v) if isinstance(v, dict) else v) for k, v in template.items()}
    params["fetch"] = {"source": str(photos.root.resolve()), "per_class": 0}
    params["clean"] = dict(template["clean"], canvas_size=canvas)
    params["label"] = {"categories": list(names.values()),
                       "rules": [{"pattern": f"^{re.escape(folder)}/", "category": name} for folder, name in names.items()]}
    params["balance"] = dict(template["balance"], per_class=per_class, test_fraction=TEST_FRACTION,
                             test_max_per_class=0, calibration_fraction=CALIBRATION_FRACTION,
                             calibration_max_per_class=0)
    params["augment"] = dict(template["augment"], variants=0)
    params["train"] = dict(template["train"], folds=FOLDS, models=models)
    for section in params:
        if section in SECTIONS:
            parse(section, params[section])  # a plan that does not validate is a bug here, not the user's
    return Plan(params, reasons, estimate * speed / REFERENCE_SPEED)


def run_init(photo_dir: str, out: str = str(PARAMS_FILE), budget_minutes: float = 15.0,
             template: str = str(PARAMS_FILE), measure_rounds: int = MEASURE_ROUNDS) -> int:
    photos = scan(Path(photo_dir).expanduser())
    if measure_rounds < 1:
        raise ParamError(f"init: --measure-rounds must be at least 1, got {measure_rounds}")
    if not Path(template).is_file():
        raise ParamError(f"init: no {template} to start from here: run it in the project's folder")
    base = yaml.safe_load(Path(template).read_text())
    classes, lite_size = len(photos.counts), pretrained_size(photo_canvas(photos))
    candidates = [(LITE0, lite_size)] + [(name, SCRATCH_SIZE) for name, _ in SCRATCH_CANDIDATES]
    print(f"measuring this machine ({', '.join(f'{n} at {s} px' for n, s in candidates)}; "
          f"{measure_rounds} rounds) ...", file=sys.stderr)
    measured = measure(candidates, classes, Schedule.of(base), measure_rounds)
    chosen = plan(photos, base, budget_minutes * 60, measured.speed, lambda name, size: measured.costs[(name, size)])
    header = "".join(f"# {line}\n" for line in
                     [f"written by `fashionclf init {photo_dir}`; why:"] + [f"- {r}" for r in chosen.reasons]
                     + [f"estimated dvc repro: {chosen.estimate_s:.0f} s at {REFERENCE_SPEED} img/s"])
    Path(out).write_text(header + yaml.safe_dump(chosen.params, sort_keys=False))
    for reason in chosen.reasons:
        print(f"- {reason}")
    print(f"wrote {out}: estimated `dvc repro` {chosen.estimate_s:.0f} s at the reference speed "
          f"(budget {budget_minutes * 60:.0f} s). Next: dvc repro")
    return 0
