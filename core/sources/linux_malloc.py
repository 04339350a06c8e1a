"""Keep the sampler's big, short-lived numpy arrays out of glibc's heap.

glibc serves allocations of 128 KiB and more with mmap and gives them back on free, but
after such a block is freed it raises that threshold to the block's size (up to 32 MiB).
A sample's temporaries at 100k sockets are 0.1-6 MB each, so from the second sample on
they came from the heap, whose freed space the process keeps: the sampler's resident
memory crept from ~55 to ~75 MB (benchmarks/sampling.py). Setting the threshold
explicitly turns that adjustment off.
"""

from __future__ import annotations

import ctypes
import sys

# Linux only: mypy --platform win32 treats the rest of this module as unreachable.
assert sys.platform.startswith("linux")

M_MMAP_THRESHOLD = -3  # malloc.h
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value


def pin_mmap_threshold() -> bool:
    """True when glibc took the setting (False elsewhere, e.g. musl: nothing to do)."""
    try:
        # The C library this process already uses (ctypes.util.find_library would
        # import shutil, tempfile, bz2, lzma: ~1.5 MB resident).
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
