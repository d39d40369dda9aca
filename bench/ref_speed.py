#!/usr/bin/env python3
"""How fast this machine is right now, as one number: bare ResNet18 training steps (32 px inputs,
batch 64, Adam, channels-last, 15 s) in images per second.

Machines of the same kind differ by 2x or more, and so does one machine from hour to hour. A time
budget is therefore stated at a reference speed of 250 img/s: on a machine that reads R, the budget
is budget_at_250 * 250 / R. Run it right before (and after) the timing it normalises. The reading
does not carry across CPU generations (an AVX-512 machine reads 3x an AVX2 one but runs this
pipeline's small convolutions only about 2x faster); bench/pipeline_overhead.py measures the
pipeline against its own bare compute instead.

    python bench/ref_speed.py [--seconds 15]     # prints e.g. 314
"""
import argparse
import time

import torch
import torchvision


def reference_speed(seconds: float = 15.0) -> float:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters())
    x = torch.rand(64, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 3, (64,))

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(5):
        step()
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        images += 64
    return images / (time.perf_counter() - start)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15.0)
    print(round(reference_speed(parser.parse_args().seconds)))
