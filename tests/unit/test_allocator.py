"""genre_core.allocator: after keep_freed_memory(), a process that allocates and frees the same large arrays over
and over stops page-faulting them in again (measured in fresh processes, so the test's own heap does not count)."""

from __future__ import annotations

import subprocess
import sys

import pytest

LOOP = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from genre_core.allocator import keep_freed_memory
    assert keep_freed_memory()
def forward():  # a few layers' worth of 6 MB activations alive at once, then all freed
    layers = [np.ones(3 << 19, np.float32) for _ in range(4)]
    del layers
forward()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    forward()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def minor_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", LOOP, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    default, kept = minor_faults("default"), minor_faults("keep")
    assert default > 50 * 1000       # the freed heap top handed back and faulted in again on every call
    assert kept < default / 20
