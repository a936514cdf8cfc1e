"""Give memory back to the operating system after a burst of large temporary arrays.

A training round loads all labelled windows (growing with every label) plus models and exports, then
frees them.  glibc keeps freed heap pages in its arenas, so the process RSS ratchets up to the largest
round seen so far even though nothing is leaked; ``malloc_trim`` returns those pages.  No-op where it
does not exist (macOS, Windows, musl)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys

_libc = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _libc.malloc_trim.argtypes = [ctypes.c_size_t]
        _libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):  # not glibc
        _libc = None


def release_memory() -> bool:
    """Collect garbage and return free heap pages to the OS; True if the allocator released any."""
    gc.collect()
    if _libc is None:
        return False
    return bool(_libc.malloc_trim(0))
