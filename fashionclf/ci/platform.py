"""The platform fingerprint: what decides whether two machines give byte-identical metrics.

Float results depend on the CPU's instruction set (which kernels torch and oneDNN pick), the torch
build and the thread count. CI checks byte-for-byte drift only where the fingerprint equals the one
committed with the metrics; elsewhere the noise-aware gate decides.
"""
from __future__ import annotations

import json
import platform
from pathlib import Path

# the instruction-set extensions that change which float kernels run
KERNEL_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8", "avx_vnni", "asimd", "sve")


def cpu_info() -> tuple[str, list[str]]:
    """The CPU model and its feature flags, from the first processor in /proc/cpuinfo."""
    found: dict[str, str] = {}
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []:
        key, _, value = line.partition(":")
        found.setdefault(key.strip(), value.strip())
    model = found.get("model name") or found.get("Model") or platform.processor() or platform.machine()
    return model, (found.get("flags") or found.get("Features") or "").split()


def fingerprint(params_file: Path | str = "params.yaml") -> dict:
    import numpy
    import torch

    from ..core import params

    model, flags = cpu_info()
    return {"cpu": model, "machine": platform.machine(),
            "kernel_flags": sorted(f for f in flags if f in KERNEL_FLAGS),
            "torch": torch.__version__, "numpy": numpy.__version__, "python": platform.python_version(),
            "train_threads": params.load("train", params_file).threads,
            "evaluate_threads": params.load("evaluate", params_file).threads,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def run_fingerprint(write: str | None, check: str | None) -> int:
    current = fingerprint()
    text = json.dumps(current, indent=2) + "\n"
    if write:
        Path(write).write_text(text)
        print(f"wrote {write}")
        return 0
    if check:
        committed = json.loads(Path(check).read_text()) if Path(check).is_file() else {}
        differs = sorted(k for k in set(current) | set(committed) if current.get(k) != committed.get(k))
        if differs:
            changes = ", ".join(f"{k} ({committed.get(k)!r} -> {current.get(k)!r})" for k in differs)
            print(f"platform differs from the one that committed the metrics: {changes}")
            return 1
        print("platform matches the one that committed the metrics")
        return 0
    print(text, end="")
    return 0


def add_arguments(parser) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", metavar="FILE", help="record it (commit it with the metrics)")
    mode.add_argument("--check", metavar="FILE", help="exit 1 unless it equals the recorded one")


def run(args) -> int:
    return run_fingerprint(args.write, args.check)
