"""Validators for ``odlstudio`` options, shared by every sub-command (issue 13 item 8).

Each is (or returns) an ``argparse`` ``type=`` callable that refuses, at parse time, what would otherwise fail deep
inside (a NaN learning rate that trains a model of NaN weights, a batch size of 0 that divides by zero, a
time scale of 1e-9 that never ends).  argparse names the option in its message
(``odlstudio pretrain: error: argument --lr: 'nan' is not a finite number``) and exits with status 2.
Every sub-command takes its validators from here (none defines its own), so one kind of value is checked
and worded one way everywhere.
"""

from __future__ import annotations

import argparse
import math

__all__ = [
    "finite_float",
    "int_range",
    "seed",
    "fraction",
    "nonneg",
    "positive",
    "port",
    "int_list",
    "mode_list",
    "lpm01a_freq",
]


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
            if lo is not None and hi is not None:
                raise argparse.ArgumentTypeError(f"{text} is out of range: {_range(lo, hi, lo_open, hi_open)}")
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite number {_bound(lo, hi, lo_open, hi_open)}")
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
#: A finite number >= 0 (a budget, a delay, an acquisition time where 0 means "until stopped").
nonneg = finite_float(0.0)
#: A finite number > 0 (a duration, a rate, a clock, a size cap, a timeout).
positive = finite_float(0.0, lo_open=True)


def port(text: str) -> int:
    """A TCP port, 0..65535 (0: the system picks a free one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port {text!r} is not an integer (0 = pick a free port)") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} out of range 0..65535 (0 = pick a free port)")
    return value


def int_list(text: str) -> list[int]:
    """A comma list of integers >= 1 (``20,40,60``); empty items are skipped, at least one is needed."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            v = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not an integer (expected e.g. 20,40,60)") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"{v} must be >= 1")
        out.append(v)
    if not out:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return out


def mode_list(text: str) -> list[str | list[str]]:
    """A comma list of trainable sets: a mode name (``tl``, ``full``, ``last``) or layer names joined by ``+``
    (``dense1+dense2``, returned as a list).  The names are checked against the model later."""
    out: list[str | list[str]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        out.append([n.strip() for n in part.split("+") if n.strip()] if "+" in part else part)
    if not out:
        raise argparse.ArgumentTypeError("expected at least one mode (tl, full, last, or layer1+layer2)")
    return out


def lpm01a_freq(text: str) -> int:
    """A sampling rate the LPM01A has, in Hz (``100``, ``1k``, ``100k``): a rate it lacks used to be found only
    when the capture started, after the work it was to measure."""
    from device.lpm01a.spec import ArgumentError, parse_freq_user  # noqa: PLC0415

    try:
        return parse_freq_user(text)
    except ArgumentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _range(lo, hi, lo_open, hi_open) -> str:
    if lo is not None and hi is not None:
        return f"allowed {'(' if lo_open else '['}{_num(lo)}, {_num(hi)}{')' if hi_open else ']'}"
    return f"must be {_bound(lo, hi, lo_open, hi_open)}"


def _bound(lo, hi, lo_open, hi_open) -> str:
    """The one bound of a one-sided range: ``>= 0``, ``< 5``."""
    if lo is not None:
        return f"{'>' if lo_open else '>='} {_num(lo)}"
    return f"{'<' if hi_open else '<='} {_num(hi)}"


def _num(x) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"
