"""core/memory.py: a process that imports fashionclf reuses a freed batch's memory instead of
mapping fresh pages for the next one (counted in page faults, not timed)."""
import os
import sys

import pytest

from conftest import ROOT, python_cmd, run

BATCHES = """
import resource
import fashionclf, numpy
faults = []
for _ in range(5):  # five batches' activations of 64 MB each, allocated, written and freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = numpy.ones(16 * 2**20, numpy.float32)
    del block
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(faults[1:]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")
def test_a_freed_batch_is_reused_not_mapped_again():
    def later_faults(system: bool) -> int:
        env = dict(os.environ, FASHIONCLF_SYSTEM_MALLOC="1" if system else "0")
        return int(run(python_cmd("-c", BATCHES), ROOT, env=env).stdout.split()[-1])

    system, kept = later_faults(system=True), later_faults(system=False)
    # every later batch faulted its pages in again (64 MB: 16,384 pages of 4 KB, or 32 huge pages)...
    assert system >= 4 * 32
    assert kept < system / 20  # ...where fashionclf's process reused the first batch's
