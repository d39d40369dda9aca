"""How long a `dvc repro` takes when nothing changed (DVC checks every dep and out): the median of
three runs after one warm-up, with the time DVC spends per stage when asked.

    python bench/noop_repro.py [--runs 3]
"""
import argparse
import statistics
import subprocess
import time


def timed_repro() -> float:
    start = time.perf_counter()
    out = subprocess.run(["dvc", "repro"], capture_output=True, text=True, check=True)
    took = time.perf_counter() - start
    if "Running stage" in out.stdout:
        raise SystemExit("dvc repro ran a stage: the workspace is not up to date; run `dvc repro` first")
    return took


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    timed_repro()  # warm-up: file system caches, DVC's state database
    times = [timed_repro() for _ in range(args.runs)]
    print(f"no-op dvc repro: median {statistics.median(times):.2f} s of {args.runs} "
          f"({', '.join(f'{t:.2f}' for t in times)}); target < 2 s")


if __name__ == "__main__":
    main()
