"""EfficientNet-Lite as the PyPI package builds it (a ZeroPad2d before each "same" convolution, a
ReLU6 that makes a new tensor) against learn/models.lean_lite_network (the convolution's own padding,
ReLU6 in place), back to back.

    python bench/lite_network.py [--sizes 48 128] [--models efficientnet_lite0 ...] [--repeats 5]

Per model and input size, on canonical 28 px images (or the size itself above 64 px, as init's
128 px canvas): a training step (batch 32, 1 thread, channels-last, fused Adam, deterministic kernels
without the memory fill, as a fold process runs it) and the 5-fold ensemble's inference (batch 256, evaluate.threads, BatchNorm
fused, as the test stages run it). Prints each median time, the ratio package / lean (> 1: the
lean network is faster) and whether the two give the same bits after 6 training steps and in
inference.
"""
import argparse
import copy
import statistics
import time

import torch
from torch import nn

from fashionclf.core import params
from fashionclf.learn.checkpoint import FoldCheckpoint
from fashionclf.learn.inference import Ensemble, set_threads
from fashionclf.learn.models import build_model
from fashionclf.learn.train import deterministic_kernels, make_optimizer


def package_network(net: nn.Module) -> nn.Module:
    """Undo lean_lite_network: a ZeroPad2d before every padded "same" convolution and a ReLU6 that
    makes a new tensor, as the package builds them."""
    from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding

    for module in net.modules():
        if isinstance(module, Conv2dStaticSamePadding) and module.padding != (0, 0):
            top, left = module.padding
            module.static_padding = nn.ZeroPad2d((left, left, top, top))
            module.padding = (0, 0)
        if isinstance(module, nn.ReLU6):
            module.inplace = False
    return net


def both(model: nn.Module) -> dict[str, nn.Module]:
    package = copy.deepcopy(model)
    package.net = package_network(package.net)
    return {"package": package, "lean": model}


def back_to_back(runs: dict, repeats: int) -> tuple[dict, float]:
    """Median ms of each run, and the median ratio package / lean over back-to-back pairs, so that
    a shared machine's drift cancels."""
    times = {kind: [] for kind in runs}
    for run in runs.values():
        run()
    for _ in range(repeats):
        for kind, run in runs.items():
            start = time.perf_counter()
            run()
            times[kind].append((time.perf_counter() - start) * 1000)
    ratio = statistics.median(p / n for p, n in zip(times["package"], times["lean"]))
    return {kind: statistics.median(t) for kind, t in times.items()}, ratio


def training(name: str, size: int, canvas: int, repeats: int) -> tuple[dict, float, bool]:
    set_threads(1)
    deterministic_kernels()  # as the folds train
    x = torch.rand(64, 3, canvas, canvas, generator=torch.Generator().manual_seed(0))
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 3, (64,), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    start = build_model(name, 3, True, size, regularize=False).to(memory_format=torch.channels_last)

    def stepper(model):
        optimizer = make_optimizer(model.train(), 1e-3)
        count = [0]

        def step():
            half = count[0] % 2 * 32
            count[0] += 1
            loss = nn.functional.cross_entropy(model(x[half:half + 32]), y[half:half + 32])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return step

    steps = {kind: stepper(model) for kind, model in both(copy.deepcopy(start)).items()}
    times, ratio = back_to_back(steps, repeats)
    states = {}
    for kind, model in both(copy.deepcopy(start)).items():  # the same 6 steps from the same start
        step = stepper(model)
        for _ in range(6):
            step()
        states[kind] = model.state_dict()
    same = all(torch.equal(v, states["package"][k]) for k, v in states["lean"].items())
    return times, ratio, same


def inference(name: str, size: int, canvas: int, repeats: int, threads: int) -> tuple[dict, float, bool]:
    set_threads(threads)
    torch.manual_seed(0)
    folds = [FoldCheckpoint(name, build_model(name, 3, True, size).state_dict(), ["a", "b", "c"],
                            {"image_size": size}, {}, fold, 0, 0.0) for fold in range(5)]
    lean = Ensemble(folds)  # the test stages' runner: fused fold models, the mean softmax
    package = copy.deepcopy(lean)
    for model in package.models:
        package_network(model.net)
    x = torch.rand(256, 3, canvas, canvas, generator=torch.Generator().manual_seed(2))
    x = x.contiguous(memory_format=torch.channels_last)
    runs = {"package": lambda: package(x), "lean": lambda: lean(x)}
    with torch.inference_mode():
        times, ratio = back_to_back(runs, repeats)
        same = torch.equal(runs["package"](), runs["lean"]())
    return times, ratio, same


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[48, 128])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    threads = params.load("evaluate").threads
    print("| model | px | train step ms, package / lean | ratio | same bits | ensemble of 5, ms per 256, package / lean | ratio | same bits |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        for size in args.sizes:
            canvas = 28 if size <= 64 else size
            train_ms, train_ratio, train_same = training(name, size, canvas, args.repeats)
            infer_ms, infer_ratio, infer_same = inference(name, size, canvas, args.repeats, threads)
            print(f"| {name} | {size} | {train_ms['package']:.0f} / {train_ms['lean']:.0f} | {train_ratio:.2f} | "
                  f"{train_same} | {infer_ms['package']:.0f} / {infer_ms['lean']:.0f} | {infer_ratio:.2f} | "
                  f"{infer_same} |", flush=True)


if __name__ == "__main__":
    main()
