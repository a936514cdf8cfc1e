"""Run numpy's OpenBLAS single-threaded inside the engine's hot calls.

The engine's matrices are small (at most a few thousand rows), so BLAS threads bring nothing, and
when another thread pool is busy in the same process (TensorFlow, whose workers spin between ops)
OpenBLAS' own threads fight it for the 2 cores: a 0.25 ms step then takes ~25 ms.  Where the
OpenBLAS numpy ships exposes ``openblas_set_num_threads_local`` (0.3.27+) we set 1 thread for the
calling thread only and restore it afterwards, so nothing else in the process is affected; if it is
not available, or numpy uses another BLAS, this is a no-op.
"""

from __future__ import annotations

import ctypes
import glob
import os
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

_UNSET = object()
_setter: "Optional[Callable[[int], int]] | object" = _UNSET


def _find_openblas() -> Optional[str]:
    paths: list[str] = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                p = line.split()[-1] if line.strip() else ""
                if "openblas" in os.path.basename(p).lower() and os.path.isfile(p):
                    paths.append(p)
    except OSError:
        pass
    if not paths:
        import numpy

        base = os.path.dirname(os.path.dirname(numpy.__file__))
        for pattern in ("numpy.libs/*openblas*", "numpy/.dylibs/*openblas*", "numpy.libs/*openblas*.dll"):
            paths += glob.glob(os.path.join(base, pattern))
    return paths[0] if paths else None


def _local_setter() -> Optional[Callable[[int], int]]:
    global _setter
    if _setter is _UNSET:
        _setter = None
        path = _find_openblas()
        if path:
            try:
                lib = ctypes.CDLL(path)
                fn = getattr(lib, "openblas_set_num_threads_local", None)
                if fn is not None:
                    fn.argtypes = [ctypes.c_int]
                    fn.restype = ctypes.c_int
                    _setter = fn
            except OSError:
                _setter = None
    return _setter  # type: ignore[return-value]


@contextmanager
def blas_threads(n: int = 1) -> Iterator[None]:
    """Limit OpenBLAS to ``n`` threads for the calling thread inside the block (no-op if unsupported)."""
    fn = _local_setter()
    if fn is None:
        yield
        return
    prev = fn(int(n))
    try:
        yield
    finally:
        fn(prev)


def available() -> bool:
    return _local_setter() is not None
