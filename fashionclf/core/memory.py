"""Keep freed memory for the next batch, rather than handing it back to the kernel.

glibc's malloc serves every block above its mmap threshold (at most 32 MB, adjusted as blocks are
freed) with a fresh mmap and unmaps it on free, and trims the heap's freed top. A network's
activations on a 128 px canvas are such blocks (efficientnet_lite0, batch 256: over 100 MB a
layer), so every batch paid for new pages: the kernel zeroes each one on first touch. Kept instead
(bench/malloc_reuse.py, docs/benchmarks.md), efficientnet_lite0 trains 1.34x faster at 128 px and
1.22x at 48 px and its 3-fold ensemble predicts 2.08x faster at 128 px; the 28 px models train
1.05-1.27x faster. Only where memory is reused changes, not what is computed: the same bytes.

The price: a process keeps its peak memory until it exits, as PyTorch's CUDA allocator does on a GPU.
Set FASHIONCLF_SYSTEM_MALLOC=1 to leave malloc as the system sets it. The reference workload that
time budgets are stated against runs that way (learn/timing.reference_reader): it is a yardstick,
and this setting runs it about 1.13x faster too.
"""
from __future__ import annotations

import ctypes
import os
import platform
import sys

SYSTEM_MALLOC = "FASHIONCLF_SYSTEM_MALLOC"  # "1": leave malloc as the system sets it
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
KEEP_BELOW = 2**31 - 1  # bytes: every block of a batch comes from, and returns to, the heap


def keep_freed_memory() -> bool:
    """Set this process's malloc to reuse freed blocks (glibc on Linux; elsewhere nothing changes).
    Children forked from it inherit the setting. True if it was set."""
    if (os.environ.get(SYSTEM_MALLOC) == "1" or not sys.platform.startswith("linux")
            or platform.libc_ver()[0] != "glibc"):
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, KEEP_BELOW)) and bool(libc.mallopt(M_TRIM_THRESHOLD, KEEP_BELOW))
