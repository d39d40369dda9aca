"""Is the trainer compute-bound? Times the project's train_one_epoch against the bare
forward + backward + step of the same model on tensors already in memory, in one process.

    python bench/train_throughput.py [--model resnet18] [--size 32] [--images 1024]

Prints images/s of both and their ratio (target >= 0.9 on CPU).
"""
import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from fashionclf.models import build_model
from fashionclf.train import pick_device, to_tensor, train_one_epoch


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = pick_device("auto")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (args.images, 32, 32, 3), dtype=np.uint8)
    x = to_tensor(images, args.size)
    y = torch.from_numpy(rng.integers(0, 3, args.images))

    def fresh():
        torch.manual_seed(0)
        model = build_model(args.model, 3, False).to(device).to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=10_000)
        return model, opt, sched

    def project_loop():
        model, opt, sched = fresh()
        gen = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        train_one_epoch(model, opt, sched, x, y, args.batch_size, device, args.noise, gen)
        return time.perf_counter() - start

    def bare_loop():
        model, opt, sched = fresh()
        model.train()
        batches = [(x[s:s + args.batch_size].to(device), y[s:s + args.batch_size].to(device))
                   for s in range(0, len(x), args.batch_size)]
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
    project = min(project_loop() for _ in range(args.repeats))
    bare = min(bare_loop() for _ in range(args.repeats))
    print(f"model {args.model} at {args.size}px, batch {args.batch_size}, {args.images} images, device {device}")
    print(f"project train_one_epoch: {args.images / project:8.1f} images/s")
    print(f"bare fwd+bwd+step:       {args.images / bare:8.1f} images/s")
    print(f"ratio (target >= 0.9):   {bare / project:8.3f}")


if __name__ == "__main__":
    main()
