"""glibc malloc as the system sets it against fashionclf's (core/memory.py: freed blocks kept for
the next batch), back to back, each measurement in a fresh process.

    python bench/malloc_reuse.py [--cases efficientnet_lite0:128 resnet50:28 ...] [--repeats 3]

Per model and input size: a training step (batch 32, 1 thread, channels-last, fused Adam,
deterministic kernels without the memory fill, as a fold process runs it; the median of 8 steps
after 3) and a 3-fold ensemble's inference (batch 256, evaluate.threads, BatchNorm fused, as the
test stages run it; 1,024 images, the input at the size itself: the model's own resize is part of
it). Prints the median ms of each, the ratio system / fashionclf (> 1: keeping freed memory is
faster) and whether the two give the same bits (the weights after the steps, the probabilities).
"""
import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import time

CASES = ["efficientnet_lite0:128", "efficientnet_lite0:48", "mobilenet_v2:28", "resnet18:28", "resnet50:28",
         "efficientnet_b0:28"]
CANVAS = {28: 28, 48: 28}  # the default pipeline's canvas for its 48 px lite0; shops' canvas is the size


def digest(tensor) -> str:
    return hashlib.sha1(tensor.detach().contiguous().numpy().tobytes()).hexdigest()[:12]


def train_step_ms(name: str, size: int) -> tuple[float, str]:
    import torch

    from fashionclf.learn.models import build_model
    from fashionclf.learn.train import deterministic_kernels, make_optimizer
    torch.set_num_threads(1)
    deterministic_kernels()
    torch.manual_seed(0)
    model = build_model(name, 10, pretrained=False, image_size=size).to(memory_format=torch.channels_last).train()
    optimizer = make_optimizer(model, 0.001)
    x = torch.rand(32, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (32,))
    times = []
    for step in range(11):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        if step >= 3:
            times.append(time.perf_counter() - start)
    weights = torch.cat([p.flatten() for p in model.parameters()])
    return statistics.median(times) * 1000, digest(weights)


def inference_ms(name: str, size: int) -> tuple[float, str]:
    import numpy as np
    import torch

    from fashionclf.core import params
    from fashionclf.core.params import ModelParams
    from fashionclf.learn.checkpoint import FoldCheckpoint
    from fashionclf.learn.cv import preprocessing_of
    from fashionclf.learn.inference import Ensemble, set_threads
    from fashionclf.learn.models import build_model
    evaluate = params.load("evaluate")
    set_threads(evaluate.threads)
    canvas = CANVAS.get(size, size)
    model_params = ModelParams(name=name, image_size=size, epochs=1, lr=0.001, ema_decay=0.0)
    preprocessing = preprocessing_of(model_params, np.zeros((1, canvas, canvas, 3)))
    folds = []
    for fold in range(3):
        torch.manual_seed(fold)
        state = build_model(name, 10, pretrained=False, image_size=size).state_dict()
        folds.append(FoldCheckpoint(name, state, [f"c{k}" for k in range(10)], preprocessing, {}, fold, 1, 0.5))
    ensemble = Ensemble(folds)
    x = torch.rand(1024, 3, canvas, canvas, generator=torch.Generator().manual_seed(0))
    ensemble.predict_proba(x[:256], evaluate.batch_size)  # warm-up
    start = time.perf_counter()
    probs = ensemble.predict_proba(x, evaluate.batch_size)
    return (time.perf_counter() - start) * 1000, digest(torch.from_numpy(probs))


def measure(case: str, kind: str, system: bool) -> tuple[float, str]:
    env = dict(os.environ, FASHIONCLF_SYSTEM_MALLOC="1" if system else "0")
    out = subprocess.run([sys.executable, __file__, "--one", case, kind], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[-2]), out[-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=CASES, help="model:size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        (name, size), kind = args.one[0].split(":"), args.one[1]
        ms, bits = (train_step_ms if kind == "train" else inference_ms)(name, int(size))
        print(f"{ms:.1f} {bits}")
        return
    print("| model | px | what | system ms | fashionclf ms | ratio | same bits |\n|---|---|---|---|---|---|---|")
    for case in args.cases:
        name, size = case.split(":")
        for kind, label in (("train", "training step"), ("infer", "3-fold inference, 1,024 images")):
            runs = {True: [], False: []}
            for _ in range(args.repeats):
                for system in (True, False):
                    runs[system].append(measure(case, kind, system))
            system_ms = statistics.median(ms for ms, _ in runs[True])
            ours_ms = statistics.median(ms for ms, _ in runs[False])
            same = len({bits for r in runs.values() for _, bits in r}) == 1
            print(f"| {name} | {size} | {label} | {system_ms:.0f} | {ours_ms:.0f} | {system_ms / ours_ms:.2f} | "
                  f"{'yes' if same else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
