"""How the C allocator keeps freed memory in a server process (glibc only).

An upload arrives as socket reads of up to about 256 KiB, each a new bytes object that
lives until its batch is written. With glibc's defaults the heap's free top is given back
to the kernel once it passes twice the largest such block (about 512 KiB): the next reads
grow the heap again, and every new page costs a page fault and zeroing. A profile of the
event loop during 16 MiB PATCHes spent about a quarter of its time there (README,
Profiling, "the event loop, and pushes a fifth time"). Keeping up to TRIM_THRESHOLD of
free heap, and serving blocks below MMAP_THRESHOLD from the heap rather than from fresh
mappings, holds that memory for the next request instead.
"""

from __future__ import annotations

import ctypes
import os
import platform

# mallopt(3) parameters
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

# The most free heap kept back from the kernel; bounded, so a process never holds more
# than this beyond what it uses.
TRIM_THRESHOLD = 32 << 20
# Larger blocks are mapped and unmapped on their own, as by default.
MMAP_THRESHOLD = 4 << 20
# glibc's own environment variables for these: an operator who sets one keeps glibc's way.
OPERATOR_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


def keep_freed_memory(libc: ctypes.CDLL | None = None) -> bool:
    """Set the thresholds above; False where the C library is not glibc or refuses, or
    where the environment sets glibc's own variables for them."""
    if any(name in os.environ for name in OPERATOR_SETTINGS):
        return False
    if libc is None:
        if platform.libc_ver()[0] != "glibc":
            return False
        libc = ctypes.CDLL(None)
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    # mallopt returns 1 on success, 0 on error.
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    )
