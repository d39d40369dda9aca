"""Is the trainer compute-bound? Times the project's train_one_epoch against the bare
forward + backward + step of the same model on tensors already in memory, in one process.

    python bench/train_throughput.py [--models resnet18 ...] [--images 256] [--repeats 9]

Each model runs at its params.yaml image size and with the train section's augmentation. Prints
the median images/s of both and the median ratio of back-to-back pairs (target >= 0.9 on CPU)
for every model.
"""
import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from fashionclf import params
from fashionclf.inference import pick_device, set_threads, to_tensor
from fashionclf.models import build_model
from fashionclf.train import make_optimizer, train_one_epoch


def measure(name: str, image_size: int, train, images: int, repeats: int, device) -> tuple[float, float, float]:
    """(project images/s, bare images/s, their ratio) for one model on canonical 28 px images it
    resizes itself; the ratio is the median over back-to-back pairs, so drift cancels."""
    rng = np.random.default_rng(0)
    x = to_tensor(rng.integers(0, 255, (images, 28, 28, 3), dtype=np.uint8))
    y = torch.from_numpy(rng.integers(0, 3, images))

    def fresh():
        torch.manual_seed(0)
        model = build_model(name, 3, False, image_size).to(device).to(memory_format=torch.channels_last)
        opt = make_optimizer(model, 1e-3)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=10_000)
        return model, opt, sched

    def project_loop():
        model, opt, sched = fresh()
        gen = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        train_one_epoch(model, opt, sched, x, y, train, device, gen)
        return time.perf_counter() - start

    def bare_loop():
        model, opt, sched = fresh()
        model.train()
        batches = [(x[s:s + train.batch_size].to(device), y[s:s + train.batch_size].to(device))
                   for s in range(0, len(x), train.batch_size)]
        start = time.perf_counter()
        for xb, yb in batches:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    project_loop(), bare_loop()  # warm-up
    project, bare = [], []
    for _ in range(repeats):  # short loops in pairs: a shared machine's speed drifts by 25% within minutes
        project.append(project_loop())
        bare.append(bare_loop())
    ratio = statistics.median(b / p for p, b in zip(project, bare))
    return images / statistics.median(project), images / statistics.median(bare), ratio


def main():
    train = params.load("train")
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=list(train.models))
    parser.add_argument("--images", type=int, default=256, help="per timed loop")
    parser.add_argument("--repeats", type=int, default=9, help="timed pairs of loops per model")
    args = parser.parse_args()
    set_threads(train.threads)
    device = pick_device(train.device)
    print(f"{args.images} images, batch {train.batch_size}, noise {train.noise_aug_sigma}, device {device}, "
          f"{torch.get_num_threads()} threads")
    print("| model | px | project train_one_epoch img/s | bare fwd+bwd+step img/s | ratio (target >= 0.9) |")
    print("|---|---|---|---|---|")
    for name in args.models:
        size = train.model(name).image_size
        project, bare, ratio = measure(name, size, train, args.images, args.repeats, device)
        print(f"| {name} | {size} | {project:.1f} | {bare:.1f} | {ratio:.3f} |", flush=True)


if __name__ == "__main__":
    main()
