"""Interfaces shared by every emulated device of the virtual bench, plus the device-side TX FIFO.

* :class:`EmulatedDevice` is what an endpoint (``device/endpoint.py``) drives: it feeds host bytes in,
  advances the device to the current simulated time, and sends whatever the device has queued, telling
  the device how much the OS accepted.  The endpoint never buffers on its own, so a host that stops
  reading makes the *device's* FIFO fill up, exactly like a USB CDC device whose host stopped polling.
* :class:`CurrentSource` is what the LPM01A emulator measures (the target's supply current and its D7
  marker line).
* :class:`ByteFifo` is a chunked byte FIFO with zero-copy ``pending()`` views, usable by any device.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, fields
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["EmulatedDevice", "CurrentSource", "ByteFifo"]


@runtime_checkable
class EmulatedDevice(Protocol):
    """A device model driven by one endpoint service thread (all calls come from that thread)."""

    def connect(self) -> None:
        """A host opened the endpoint."""

    def disconnect(self) -> None:
        """The host closed the endpoint or the link dropped."""

    def receive(self, data: bytes) -> None:
        """Bytes from the host, in any chunking."""

    def advance(self, now: float) -> None:
        """Generate output up to simulated time ``now``."""

    def pending(self) -> memoryview | bytes:
        """Bytes waiting in the device's TX FIFO (may be only the first part of them)."""

    def consume(self, n: int) -> None:
        """``n`` bytes of the last ``pending()`` were delivered to the host."""


@runtime_checkable
class CurrentSource(Protocol):
    """What the LPM01A measures: supply current and D7 marker edges, in simulated time."""

    def current(self, t: np.ndarray) -> np.ndarray:
        """Supply current in amps at simulated times ``t`` (vectorised, same shape)."""

    def d7_edges(self, t0: float, t1: float) -> np.ndarray:
        """Rising-edge times of the D7 line in ``(t0, t1]`` (sorted)."""


class ByteFifo:
    """Byte FIFO made of immutable chunks: ``append`` is O(1), ``pending`` is a zero-copy view.

    ``capacity`` is advisory (the owner decides what to do when ``len(fifo) >= capacity``); the FIFO
    itself never refuses data so that control messages (end tags, errors) are never lost.
    """

    def __init__(self, capacity: int = 65536) -> None:
        if int(capacity) < 1:
            raise ValueError(f"ByteFifo capacity must be >= 1 byte, got {capacity!r}")
        self.capacity = int(capacity)
        self._chunks: deque[bytes] = deque()
        self._head_off = 0
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def free(self) -> int:
        """Bytes left before the advisory capacity is reached (0 when full or over)."""
        return max(0, self.capacity - self._len)

    def fill_fraction(self) -> float:
        return self._len / self.capacity

    def append(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            b = bytes(data)
            self._chunks.append(b)
            self._len += len(b)

    def pending(self) -> memoryview:
        """A view of the oldest queued chunk (empty view when nothing is queued)."""
        if not self._chunks:
            return memoryview(b"")
        return memoryview(self._chunks[0])[self._head_off :]

    def consume(self, n: int) -> None:
        """Drop ``n`` delivered bytes from the front (may span several chunks)."""
        n = int(n)
        if n < 0 or n > self._len:
            raise ValueError(f"consume({n}) with {self._len} bytes pending")
        self._len -= n
        while n:
            head = self._chunks[0]
            left = len(head) - self._head_off
            if n < left:
                self._head_off += n
                return
            n -= left
            self._chunks.popleft()
            self._head_off = 0

    def clear(self) -> None:
        self._chunks.clear()
        self._head_off = 0
        self._len = 0

    def peek_all(self) -> bytes:
        """Copy of everything queued (tests, diagnostics)."""
        if not self._chunks:
            return b""
        return bytes(memoryview(self._chunks[0])[self._head_off :]) + b"".join(list(self._chunks)[1:])


@dataclass
class ByteFaults:
    """Byte-level fault switches shared by the emulated devices (change at any time).

    Each is a probability per byte the device emits from the moment it is set: ``nul_rate`` inserts a
    ``0x00`` after a byte, ``nul_burst_rate`` inserts ``nul_burst_len`` NULs, ``drop_rate`` deletes
    the byte, ``corrupt_rate`` flips some of its bits.  Device classes add their own switches."""

    nul_rate: float = 0.0
    nul_burst_rate: float = 0.0
    nul_burst_len: int = 16
    drop_rate: float = 0.0
    corrupt_rate: float = 0.0

    def __setattr__(self, name: str, value: Any) -> None:
        if name.endswith("_rate"):
            v = float(value)
            if not (0.0 <= v <= 1.0):
                raise ValueError(f"faults.{name} is a probability per byte: must be in [0, 1], got {value!r}")
            value = v
        elif name == "nul_burst_len":
            if int(value) < 1:
                raise ValueError(f"faults.nul_burst_len must be >= 1, got {value!r}")
            value = int(value)
        object.__setattr__(self, name, value)

    def byte_faults_active(self) -> bool:
        return bool(self.nul_rate or self.nul_burst_rate or self.drop_rate or self.corrupt_rate)

    def clear(self) -> None:
        for f in fields(self):
            setattr(self, f.name, f.default)


def apply_byte_faults(data: bytes, f: ByteFaults, rng: np.random.Generator) -> bytes:
    """``data`` with the byte faults of ``f`` applied (vectorised)."""
    arr = np.frombuffer(data, dtype=np.uint8).copy()
    if f.corrupt_rate:
        hit = rng.random(arr.size) < f.corrupt_rate
        arr[hit] ^= rng.integers(1, 256, size=int(hit.sum()), dtype=np.uint8)
    if f.drop_rate:
        arr = arr[rng.random(arr.size) >= f.drop_rate]
    if f.nul_rate or f.nul_burst_rate:
        pos = np.flatnonzero(rng.random(arr.size) < f.nul_rate) + 1
        bursts = np.flatnonzero(rng.random(arr.size) < f.nul_burst_rate) + 1
        pos = np.concatenate([pos, np.repeat(bursts, f.nul_burst_len)])
        if pos.size:
            arr = np.insert(arr, np.sort(pos), 0)
    return arr.tobytes()
