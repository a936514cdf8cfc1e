"""User markers on a power timeline (Qt-free): the times a user types for them.  The markers themselves are
rows of the store (:class:`app.core.store.Marker`); the power panel draws and edits them."""

from __future__ import annotations

import math
import re

__all__ = ["MarkerTimeError", "parse_marker_time"]

_TIME_RE = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(s|ms|us|µs)?\s*$")
_TIME_UNITS = {None: 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}


class MarkerTimeError(ValueError):
    """A typed marker time that cannot be used; the message says why and what is allowed."""


def parse_marker_time(text: str | None, t_max: float | None) -> float:
    """Seconds from a typed time (``12.5``, ``12.5 s``, ``12500 ms``, ``3e-3``); must lie in ``[0, t_max]``
    (``t_max`` None: no upper bound).  Raises :class:`MarkerTimeError` with a plain-words message."""
    text = text or ""  # (an empty field may come as None)
    m = _TIME_RE.match(text)
    if not m:
        raise MarkerTimeError(f"{text.strip()!r} is not a time: type seconds, e.g. 12.5, 12.5 s or 12500 ms")
    t = float(m.group(1)) * _TIME_UNITS[m.group(2)]
    if not math.isfinite(t):
        raise MarkerTimeError(f"{text.strip()!r} is not a finite time")
    if t < 0 or (t_max is not None and t > t_max):
        hi = f"{t_max:.6f} s" if t_max is not None else "∞"
        raise MarkerTimeError(f"t = {t:.6g} s is outside the data (0 … {hi})")
    return t
