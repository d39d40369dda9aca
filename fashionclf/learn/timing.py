"""Timing this machine as the stages run a model: the reference workload that time budgets are
stated against (250 img/s of bare ResNet18 steps), and each model's training and inference costs in
fold processes side by side, the short last round's fold alone, and the test stages. init plans
with them (serve/init.py); bench/ref_speed.py prints the reference reading."""
from __future__ import annotations

import contextlib
import functools
import os
import statistics
import time
from dataclasses import dataclass

from ..core.memory import SYSTEM_MALLOC
from ..core.params import parse

REFERENCE_SPEED = 250        # img/s at which time budgets are stated
MEASURE_ROUNDS = 4           # paired readings of each cost against the reference workload; init takes their median
MEASURE_WINDOW_S = 0.5       # seconds per timed window (a cost, a reference reading)
FOLD_START_DELAY_S = 1.0     # the fold workers' windows start together this long after they are handed out,
FOLD_RESTART_DELAY_S = 0.2   # ...or this long once each worker has built the candidate's workload


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

        from ..core.registry import TAIL_MODELS
        from .models import build_model
        from .train import make_optimizer
        torch.manual_seed(0)
        model = build_model(name, classes, pretrained=False, image_size=image_size).to(
            memory_format=torch.channels_last)
        x = torch.rand(batch, 3, image_size, image_size).contiguous(memory_format=torch.channels_last)
        if name in TAIL_MODELS:  # a tail's folds train and validate on the frozen part's activations
            from .models import LiteTail, lite_trunk
            with torch.inference_mode():
                shape = lite_trunk(model.eval())(x[:1]).shape[1:]
            x = torch.rand(batch, *shape).contiguous(memory_format=torch.channels_last)
            model = LiteTail(model.net)
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
    def of(cls, template: dict, folds: int) -> "Schedule":
        import torch

        from .folds import fold_threads, fold_workers  # import torch: not at init's start
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

    def cost(self, name: str, size: int) -> Costs:
        """A model's costs at ``size``: measured, or scaled from its measured size by the pixels (a
        network's multiply-adds grow with its input's pixels; init costs a frozen-feature head's
        inference at 224 px from the backbone's timing at the plan's size, without another minute
        of timing)."""
        if (name, size) in self.costs:
            return self.costs[(name, size)]
        measured = min((s for n, s in self.costs if n == name), key=lambda s: abs(s - size))
        factor = (size / measured) ** 2
        base = self.costs[(name, measured)]
        return Costs(tuple(v * factor for v in base.fold), tuple(v * factor for v in base.last), base.test * factor)


@functools.lru_cache(maxsize=None)
def _fold_workload(name: str, image_size: int, classes: int, threads: int) -> Workload:
    """A fold process's workload, built once per process as cv_train builds a fold's model once."""
    import torch

    from .train import deterministic_kernels
    torch.set_num_threads(threads)
    deterministic_kernels()  # a worker started from the fork server does not inherit it
    return Workload.of(name, image_size, classes)


def _fold_window(task) -> tuple[float, float]:
    key, classes, threads, window, start_at = task
    load = _fold_workload(*key, classes, threads)
    time.sleep(max(0.0, start_at - time.time()))  # all workers at once, as cv_train's folds train
    return load.seconds_per_image(window)


def measure(candidates: list[tuple[str, int]], classes: int, schedule: Schedule, rounds: int = MEASURE_ROUNDS,
            window: float = MEASURE_WINDOW_S, lone: int = 1) -> Measured:
    """Each candidate's costs as the stages run it: its folds training in ``schedule.workers``
    processes at once (two folds on 2 cores share more than one 2-thread process suggests), the
    lone last-round fold on its threads (for the first ``lone`` candidates, the pretrained ones; the
    others are costed as if beside another fold), and the test stages' inference.

    Steadied against the machine's drift: a shared machine's speed moves by a third within a minute
    (the reference workload read 272-413 img/s in six readings) and the costs move with it. A cost
    times the reference reading just before and after it varied 4% between rounds, where the cost
    alone varied 10% and the speed 8%. So every round times each cost between two readings, and each
    cost is the median of its products over the rounds, divided by the median speed."""
    import torch

    from .train import deterministic_kernels
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.utils.deterministic.fill_uninitialized_memory)
    deterministic_kernels()  # as the folds train
    try:
        return timed_rounds(candidates, classes, schedule, rounds, window, lone)
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.utils.deterministic.fill_uninitialized_memory = before[2]


def timed_rounds(candidates, classes, schedule: Schedule, rounds: int, window: float, lone: int = 1) -> Measured:
    from .folds import start_worker, worker_context

    loads = {key: Workload.of(*key, classes) for key in candidates}
    with reference_reader() as read, worker_context().Pool(schedule.workers, start_worker) as pool:
        speeds, products = [read(window)], {key: [] for key in candidates}

        def paired(values):  # the values against the reading before them and one now after them
            speeds.append(read(window))
            around = (speeds[-2] + speeds[-1]) / 2
            return [v * around for v in values]

        for round_ in range(rounds):
            delay = FOLD_RESTART_DELAY_S if round_ else FOLD_START_DELAY_S
            for k, (key, load) in enumerate(loads.items()):
                task = (key, classes, schedule.threads, window, time.time() + delay)
                fold = pool.map(_fold_window, [task] * schedule.workers, chunksize=1)
                row = paired([statistics.mean(f[i] for f in fold) for i in (0, 1)])
                last = (load.seconds_per_image(window, schedule.last_threads)
                        if schedule.last_threads and k < lone else None)
                row += paired(last) if last else row[:2]
                row += paired([load.seconds_per_image(window / 2, schedule.eval_threads, train=False)[1]])
                products[key].append(row)
    speed = statistics.median(speeds)
    median = [[statistics.median(column) / speed for column in zip(*rows)] for rows in products.values()]
    return Measured(speed, {key: Costs(tuple(m[0:2]), tuple(m[2:4]), m[4]) for key, m in zip(products, median)})


@contextlib.contextmanager
def reference_reader():
    """``read(seconds)``: reference_speed in a helper process under the system's malloc. This process
    keeps freed memory (core/memory.py), which runs the reference workload itself about 1.13x faster
    (bench/ref_speed.py, back to back): read here, the yardstick would move with the code it
    measures."""
    import multiprocessing

    before = os.environ.get(SYSTEM_MALLOC)
    os.environ[SYSTEM_MALLOC] = "1"  # the helper reads it when it imports fashionclf
    try:
        pool = multiprocessing.get_context("spawn").Pool(1)
    finally:
        if before is None:
            del os.environ[SYSTEM_MALLOC]
        else:
            os.environ[SYSTEM_MALLOC] = before
    with pool:
        yield lambda seconds: pool.apply(reference_speed, (seconds,))


def reference_speed(seconds: float = 2.0) -> float:
    """This machine's img/s on the reference workload: bare ResNet18 training steps (32 px inputs,
    batch 64, Adam, channels-last), in a process under the system's malloc (reference_reader;
    bench/ref_speed.py prints it over 15 s). One untimed step first: a reading follows a pause."""
    load = reference_workload()
    load.train_step()
    return len(load.x) / windowed(load.train_step, seconds)


@functools.lru_cache(maxsize=None)
def reference_workload() -> Workload:
    """Built once per process: init reads the yardstick about 70 times, and building it (the model
    and its first, allocating steps) took 0.3 s of each 1-second reading; the readings of a kept
    and a new workload agree (median 480 against 476 img/s, 12 interleaved pairs)."""
    import torch

    from .models import torchvision_models
    torch.manual_seed(0)
    model = torchvision_models().resnet18(num_classes=3).to(memory_format=torch.channels_last)
    x = torch.rand(64, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    return Workload(model, torch.optim.Adam(model.parameters()), x, torch.randint(0, 3, (64,)), warm_up=2)
