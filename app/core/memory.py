"""Keep the long-running app's resident memory flat (glibc only; a no-op elsewhere).

Two glibc behaviours made the app's RSS creep up over an hour of streaming and training rounds although
nothing was leaked (measured with ``benchmarks/soak.py``: the growth sat in the main heap and in the
per-thread malloc arenas, not in live Python objects):

* **Dynamic mmap threshold.**  A block above ``M_MMAP_THRESHOLD`` (128 KiB) is served by its own
  ``mmap`` and unmapped on ``free`` -- but the first time such a block is freed, glibc raises the
  threshold to its size (up to 32 MiB).  From then on the stream's decoded blocks, recorder batches and a
  round's window arrays all come from the heap arenas, where they interleave with small long-lived objects
  and leave holes that cannot be handed back.  :func:`tune_allocator` fixes the threshold (which also
  switches the dynamic adjustment off), so large arrays keep going to the OS and back.
* **One arena per thread.**  glibc gives threads their own arenas (up to 8 x cores); every capture,
  recorder, device and round thread fragments its own.  :func:`tune_allocator` caps them at
  :data:`ARENA_MAX`.

A training round also loads all labelled windows (growing with every label) plus models, then frees
them; :func:`release_memory` (called after every round) has ``malloc_trim`` return the free pages.  It does
not collect garbage: a round ends on a worker thread, and cycles are collected on the GUI thread only
(app/ui/gc_guard.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

MMAP_THRESHOLD = 256 * 1024  # bytes; blocks at least this large are mmap'ed and unmapped on free
TRIM_THRESHOLD = 4 * 1024 * 1024  # free bytes at the top of the heap that trigger giving them back
ARENA_MAX = 2


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_size_t)
        for n in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


_libc = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _libc.malloc_trim.argtypes = [ctypes.c_size_t]
        _libc.malloc_trim.restype = ctypes.c_int
        _libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        _libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):  # not glibc
        _libc = None
_mallinfo2 = getattr(_libc, "mallinfo2", None)  # glibc >= 2.33
if _mallinfo2 is not None:
    _mallinfo2.restype = _MallInfo2

_tuned: dict[str, int] | None = None


def heap_stats() -> dict[str, int]:
    """glibc's ``mallinfo2`` as a dict of bytes/counts (``uordblks`` in use, ``fordblks`` free, ``hblks`` /
    ``hblkhd`` mmap'ed blocks / bytes, ...); empty where it does not exist (not glibc, glibc < 2.33)."""
    if _mallinfo2 is None:
        return {}
    mi = _mallinfo2()
    return {name: int(getattr(mi, name)) for name, *_ in _MallInfo2._fields_}


def tune_allocator() -> dict[str, int]:
    """Fix glibc's mmap and trim thresholds and cap its arenas (see the module doc); call once, early,
    before the device threads start.  Settings given by the user in the environment
    (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_ARENA_MAX``) are left alone.
    Returns what was set (empty where the allocator is not glibc's)."""
    global _tuned
    if _tuned is not None:
        return dict(_tuned)
    done: dict[str, int] = {}
    if _libc is not None:
        for env, param, value in (
            ("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            ("MALLOC_TRIM_THRESHOLD_", M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            ("MALLOC_ARENA_MAX", M_ARENA_MAX, ARENA_MAX),
        ):
            if env in os.environ:
                continue
            if _libc.mallopt(param, value) == 1:
                done[env.rstrip("_").lower()] = value
    _tuned = done
    return dict(done)


def release_memory() -> bool:
    """Return free heap pages to the OS (``malloc_trim``, which releases the GIL, so it may run in the
    background); True if the allocator released any.  No ``gc.collect``: off the GUI thread a collection may
    finalize Qt objects there and deadlock (app/ui/gc_guard.py)."""
    if _libc is None:
        return False
    return bool(_libc.malloc_trim(0))
