"""Keep freed memory in the process instead of handing it back to the OS after every song.

glibc's malloc serves a request above its mmap threshold (128 KB to start with, raised as such blocks are freed)
with a fresh ``mmap`` and unmaps it on ``free``; it also gives the top of the heap back once more than the trim
threshold lies free there. A stage that runs the same large computation song after song -- the CNN's
activations are 1 MB per slice in the first layer, log-mel buffers a few MB per song -- then page-faults its
working memory in again on every call: with 32-slice forward passes the CNN spent more time in page faults than
in arithmetic (1,750 minor faults and 2.9 ms of system time per song against 4.9 ms of CPU without them;
``benchmarks/RESULTS.md``, "Issue 7, second pass"). Each stage calls :func:`keep_freed_memory` when it is built, so both
the Ray workers and a single-process loop over the same stages run this way. The cost is that a process keeps
its peak working set (blocks up to 32 MB) until it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1    # mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20   # glibc's largest allowed value: blocks up to 32 MB come from the heap
TRIM_THRESHOLD_BYTES = 1 << 30    # give the heap's top back only when a GB of it lies free


@functools.cache
def keep_freed_memory() -> bool:
    """Raise this process's glibc mmap and trim thresholds (once); False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
