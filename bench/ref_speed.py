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

from fashionclf.learn.timing import reference_reader  # the workload and its process, defined once: init reads it too

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15.0)
    with reference_reader() as read:  # under the system's malloc, as a plain process runs it (core/memory.py)
        print(round(read(parser.parse_args().seconds)))
