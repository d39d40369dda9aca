"""Is the trainer compute-bound? Times the project's train_one_epoch against the bare
forward + backward + step of the same model on tensors already in memory, in one process.

    python bench/train_throughput.py [--models resnet18 ...] [--images 256] [--repeats 9]
    python bench/train_throughput.py --size 224 --batch-sizes 64 256 --images 4096   # on a GPU

Each model runs at its params.yaml image size (or --size) and with the train section's
augmentation, at each batch size. The project loop keeps uint8 images on the device and augments
there, as cross_validate does; the bare loop gets float batches already on the device. Prints the
median images/s of both and the median ratio of back-to-back pairs (target >= 0.9 on CPU, >= 0.8 on
a GPU) for every model. train.compile compiles both loops' model.
"""
import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from fashionclf.core import params
from fashionclf.learn.inference import autocast, pick_device, set_threads, to_pixels, to_tensor
from fashionclf.learn.models import build_model
from fashionclf.learn.train import make_optimizer, train_one_epoch


def measure(name: str, image_size: int, train, images: int, repeats: int, device,
            canvas: int = 28) -> tuple[float, float, float]:
    """(project images/s, bare images/s, their ratio) for one model on canonical 28 px images it
    resizes itself; the ratio is the median over back-to-back pairs, so drift cancels."""
    rng = np.random.default_rng(0)
    images_uint8 = rng.integers(0, 255, (images, canvas, canvas, 3), dtype=np.uint8)
    pixels = to_pixels(images_uint8).to(device)  # the project's path: uint8 on the device
    x = to_tensor(images_uint8).to(device)      # the bare loop's: floats, converted beforehand
    y = torch.from_numpy(rng.integers(0, 3, images))

    def fresh():
        torch.manual_seed(0)
        model = build_model(name, 3, False, image_size).to(device).to(memory_format=torch.channels_last)
        opt = make_optimizer(model, 1e-3)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=10_000)
        return (torch.compile(model) if train.compile else model), opt, sched

    def project_loop():
        model, opt, sched = fresh()
        gen = torch.Generator().manual_seed(0)
        noise_gen = torch.Generator(device).manual_seed(0) if device.type != "cpu" else None
        start = time.perf_counter()
        train_one_epoch(model, opt, sched, pixels, y.to(device), train, device, gen, noise_gen=noise_gen)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def bare_loop():
        model, opt, sched = fresh()
        model.train()
        batches = [(x[s:s + train.batch_size], y[s:s + train.batch_size].to(device))
                   for s in range(0, len(x), train.batch_size)]
        start = time.perf_counter()
        for xb, yb in batches:
            with autocast(device):
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
    parser.add_argument("--size", type=int, help="model input px for every model (default: params.yaml's)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, help="default: train.batch_size")
    args = parser.parse_args()
    set_threads(train.threads)
    device = pick_device(train.device)
    print(f"{args.images} images, batch {train.batch_size}, noise {train.noise_aug_sigma}, device {device}, "
          f"{torch.get_num_threads()} threads")
    print("| model | px | batch | project train_one_epoch img/s | bare fwd+bwd+step img/s | ratio |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        size = args.size or train.model(name).image_size
        for batch in args.batch_sizes or [train.batch_size]:
            config = train.model_copy(update={"batch_size": batch})
            project, bare, ratio = measure(name, size, config, args.images, args.repeats, device)
            print(f"| {name} | {size} | {batch} | {project:.1f} | {bare:.1f} | {ratio:.3f} |", flush=True)


if __name__ == "__main__":
    main()
