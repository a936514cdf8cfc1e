"""Validators for ``odlstudio`` options, shared by every sub-command (issue 13 item 8).

Each returns an ``argparse`` ``type=`` callable that refuses, at parse time, what would otherwise fail deep
inside (a NaN learning rate that trains a model of NaN weights, a batch size of 0 that divides by zero, a
time scale of 1e-9 that never ends).  argparse names the option in its message
(``odlstudio pretrain: error: argument --lr: 'nan' is not a finite number``) and exits with status 2.
"""

from __future__ import annotations

import argparse
import math

__all__ = ["finite_float", "int_range", "seed", "fraction"]


def finite_float(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False):
    """A finite float in ``[lo, hi]`` (``lo_open``/``hi_open``: the bound itself is excluded)."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        low_bad = lo is not None and (v <= lo if lo_open else v < lo)
        high_bad = hi is not None and (v >= hi if hi_open else v > hi)
        if low_bad or high_bad:
            raise argparse.ArgumentTypeError(f"{text} is out of range: {_range(lo, hi, lo_open, hi_open)}")
        return v

    parse.__name__ = "number"  # argparse says "invalid number value" for a bare ValueError
    return parse


def int_range(lo: int | None = None, hi: int | None = None):
    """An integer in ``[lo, hi]``."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"{v} is out of range: {_range(lo, hi, False, False)}")
        return v

    parse.__name__ = "integer"
    return parse


#: A random seed: what numpy and TensorFlow accept (0 .. 2**32 - 1).
seed = int_range(0, 2**32 - 1)
#: A fraction strictly between 0 and 1.
fraction = finite_float(0.0, 1.0, lo_open=True, hi_open=True)


def _range(lo, hi, lo_open, hi_open) -> str:
    def f(x) -> str:
        return str(x) if isinstance(x, int) else f"{x:g}"

    if lo is not None and hi is not None:
        return f"allowed {'(' if lo_open else '['}{f(lo)}, {f(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f"must be {'>' if lo_open else '>='} {f(lo)}"
    return f"must be {'<' if hi_open else '<='} {f(hi)}"
