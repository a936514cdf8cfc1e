"""Power monitors: the one interface every consumer of a current measurement uses, and the registry that
maps a discovered device kind to its implementation (no Qt, no app imports).

A *power monitor* supplies the target (the NUCLEO board) and measures the current it draws, sample by
sample, and reports the edges of the board's marker line (D7: raised at a round's start and at every batch
end) in the same stream.  Consumers — the app's device manager (live plot, recordings, training rounds),
``odlstudio power`` and ``odlstudio personalize`` — only use what is defined here:

* :class:`PowerMonitor` — one open link: :meth:`~PowerMonitor.prepare` (take control, say what it is),
  :meth:`~PowerMonitor.ping`, :meth:`~PowerMonitor.configure` (rate, supply voltage, marker events,
  monitor-specific options), :meth:`~PowerMonitor.supply_voltage`, :meth:`~PowerMonitor.start` (an
  :class:`Acquisition`), :meth:`~PowerMonitor.release`, :meth:`~PowerMonitor.close`; class-level facts
  (``kind``, ``name``, ``rates_hz``, USB ids) and :meth:`~PowerMonitor.describe` (a fault in plain words).
* :class:`Acquisition` — started by the monitor, read by any number of consumers through
  :meth:`~Acquisition.subscribe`: :class:`Block` s of samples (A) with *loss accounting* (``lost``: NaN
  samples lost in transit; ``overrun``: samples this consumer missed by falling behind) and the stream's
  events (``kind == MARKER`` for a marker edge).
* the errors below (a monitor's own errors derive from them, so consumers catch these).
* the registry: :func:`monitor_class` (kind -> implementation), :func:`monitor_kinds`,
  :func:`find_monitors` (USB discovery of every kind), :func:`open_monitor`, :func:`is_monitor`.

Adding a monitor is one new package (``device/<name>/`` with a :class:`PowerMonitor` subclass) plus one line
in :data:`REGISTRY`; docs/power-monitors.md walks through it.  The X-NUCLEO-LPM01A
(:mod:`device.lpm01a.monitor`) is the first implementation.
"""

from __future__ import annotations

import abc
import importlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Iterator, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from device.discovery import PortInfo

__all__ = [
    "LPM01A_KIND",
    "MARKER",
    "REGISTRY",
    "Acquisition",
    "Block",
    "MonitorAcquisitionError",
    "MonitorError",
    "MonitorLinkError",
    "MonitorSettingError",
    "MonitorTimeout",
    "PowerMonitor",
    "ProtectiveStop",
    "RunningStats",
    "Subscription",
    "find_monitors",
    "is_monitor",
    "monitor_class",
    "monitor_kinds",
    "open_monitor",
]

#: ``kind`` of the stream event a monitor reports for an edge of the board's marker line (D7).
MARKER = "event"

#: Device kind of the X-NUCLEO-LPM01A (the STM32 Power Shield: hence the name; also its key in the
#: virtual bench's URLs, ``odlstudio bench --json``).  Code that means "this monitor" names this constant.
LPM01A_KIND = "powershield"

#: Device kind -> ``"module:Class"`` of its :class:`PowerMonitor`.  Imported on first use, so listing the
#: kinds costs no driver import.  One line per monitor (docs/power-monitors.md); the first is the default.
REGISTRY: dict[str, str] = {
    LPM01A_KIND: "device.lpm01a.monitor:LPM01AMonitor",
}


# --- errors ---------------------------------------------------------------------------------------------
class MonitorError(Exception):
    """Base class of every error a power monitor raises."""


class MonitorSettingError(MonitorError, ValueError):
    """A setting the monitor cannot honour (checked before anything is sent); the message names it."""


class MonitorLinkError(MonitorError):
    """The link to the monitor is gone or cannot be opened (unplugged, port closed, monitor reset)."""


class MonitorTimeout(MonitorError, TimeoutError):
    """The monitor stopped answering or sending data."""


class MonitorAcquisitionError(MonitorError):
    """The monitor ended an acquisition with an error."""


class ProtectiveStop(MonitorAcquisitionError):
    """The monitor stopped measuring to protect the target (e.g. overcurrent): not retried, the user decides."""


# --- blocks ---------------------------------------------------------------------------------------------
@dataclass
class Block:
    """A run of consecutive samples handed to one consumer.

    ``values[k]`` is device sample number ``first_index + k`` (0-based), taken at time
    ``(first_index + k + 1) / rate_hz`` seconds after the start (sample *k* (1-based) is at *k/f*); NaN
    marks a sample known to be lost.  ``events`` are the stream's metadata items (objects with ``kind``,
    ``index``, ``text``) whose sample index falls in this block: marker edges (``kind ==`` :data:`MARKER`),
    the end tag, device errors, …"""

    first_index: int
    values: np.ndarray
    rate_hz: float
    events: list[Any] = field(default_factory=list)
    lost: int = 0  # NaN samples in this block (device samples lost in transit)
    lost_total: int = 0  # acquisition-wide lost samples so far
    overrun: int = 0  # samples this consumer missed by falling behind the ring buffer
    buffer_pct: int | None = None  # latest monitor transmit-buffer load
    final: bool = False  # last block of the acquisition

    @property
    def next_index(self) -> int:
        return self.first_index + len(self.values)

    @property
    def t0(self) -> float:
        return (self.first_index + 1) / self.rate_hz

    @property
    def times(self) -> np.ndarray:
        return (self.first_index + 1 + np.arange(len(self.values), dtype=np.float64)) / self.rate_hz


class RunningStats:
    """Streaming statistics of an acquisition (NaN-aware): count, lost, mean, min, max, sum."""

    def __init__(self) -> None:
        self.samples = 0
        self.lost = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.first_index: int | None = None
        self.next_index = 0

    def update(self, block: Block) -> None:
        v = block.values
        if not len(v):
            return
        if self.first_index is None:
            self.first_index = block.first_index
        self.next_index = block.next_index
        good = v[~np.isnan(v)] if block.lost else v
        self.lost += len(v) - len(good)
        if len(good):
            self.samples += len(good)
            self.total += float(good.sum())
            self.min = min(self.min, float(good.min()))
            self.max = max(self.max, float(good.max()))

    @property
    def mean(self) -> float:
        return self.total / self.samples if self.samples else math.nan


# --- acquisition ----------------------------------------------------------------------------------------
@runtime_checkable
class Subscription(Protocol):
    """One consumer's cursor into an :class:`Acquisition`."""

    done: bool

    def get(self, timeout: float = 0.5) -> Block | None:
        """The next block (waits up to ``timeout``), None if nothing new yet; after the end, one ``final``
        block, then None with :attr:`done` set."""

    def __iter__(self) -> Iterator[Block]: ...


@runtime_checkable
class Acquisition(Protocol):
    """A running measurement (one reader thread inside the monitor's implementation)."""

    rate_hz: float
    error: BaseException | None  # why it ended, if it ended with an error
    ended_by: str  # completed | stopped | limit | error | disconnected | timeout ('' while running)
    buffer_pct: int | None

    @property
    def finished(self) -> bool: ...

    @property
    def lost(self) -> int:
        """Samples lost in transit so far (counted, and NaN in the blocks)."""

    @property
    def samples_total(self) -> int:
        """Device samples accounted so far (received + lost): the next sample number."""

    def subscribe(self, max_block: int | None = None, from_start: bool = True) -> Subscription: ...

    def stop(self, timeout: float | None = None) -> None:
        """End the acquisition and wait (bounded) for the reader to finish."""

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the acquisition ended (True) or ``timeout`` passed (False)."""

    def diagnostics(self) -> dict[str, Any]:
        """Link-quality counters for reports (e.g. ``buffer_max_pct``, ``corrupt_bytes``, ``excess``)."""


# --- the monitor ----------------------------------------------------------------------------------------
class PowerMonitor(abc.ABC):
    """One open link to a power monitor.  Not thread-safe: one owner (a session thread, a CLI command) calls
    it; the :class:`Acquisition` it starts has its own reader thread.  Use as a context manager."""

    #: Registry key and ``DeviceInfo.kind`` of devices of this type.
    kind: ClassVar[str]
    #: Product name (``"X-NUCLEO-LPM01A"``) and the short name used in device names (``"LPM01A"``).
    name: ClassVar[str]
    short_name: ClassVar[str]
    #: USB (VID, PID) pairs that identify it (discovery).
    usb_ids: ClassVar[tuple[tuple[int, int], ...]] = ()
    #: Sampling rates the app offers (Hz), the default one, and the supply voltage range (V).
    rates_hz: ClassVar[tuple[int, ...]]
    default_rate_hz: ClassVar[int]
    voltage_range: ClassVar[tuple[float, float]]

    url: str

    # -- class-level facts --------------------------------------------------------------------------------
    @classmethod
    def find(cls, lister: Callable[[], Iterable] | None = None) -> list[PortInfo]:
        """Enumerated ports of this monitor (by USB VID:PID)."""
        from device import discovery

        return discovery.find_ports(cls.usb_ids, lister) if lister is not None else discovery.find_ports(cls.usb_ids)

    @classmethod
    def parse_rate(cls, text: str | int | float) -> int:
        """A sampling rate typed by a user (``"100k"``, ``1000``) in Hz; :class:`MonitorSettingError` otherwise."""
        try:
            hz = int(float(str(text).strip()))
        except ValueError:
            raise MonitorSettingError(f"sampling rate {text!r} is not a number") from None
        if hz not in cls.rates_hz:
            raise MonitorSettingError(f"sampling rate {text!r}: allowed {', '.join(map(str, cls.rates_hz))} Hz")
        return hz

    @classmethod
    def check(cls, rate_hz: int, *, max_seconds: float = 0.0, **options: Any) -> None:
        """Refuse a configuration the monitor cannot honour, before anything is sent
        (:class:`MonitorSettingError` naming the setting).  ``max_seconds`` 0: until stopped."""
        if rate_hz not in cls.rates_hz:
            raise MonitorSettingError(f"sampling rate {rate_hz} Hz: allowed {', '.join(map(str, cls.rates_hz))} Hz")

    @classmethod
    def describe(cls, exc: BaseException) -> str:
        """What a fault means, in plain words (Devices panel, status bar, CLI)."""
        if isinstance(exc, ProtectiveStop):
            return f"{cls.short_name} stopped measuring to protect the target: {exc}"
        if isinstance(exc, MonitorTimeout):  # before OSError: a MonitorTimeout is a TimeoutError, an OSError
            return f"the {cls.short_name} stopped answering or sending data"
        if isinstance(exc, MonitorLinkError | OSError) or type(exc).__name__ == "SerialException":
            return f"USB link to the {cls.short_name} lost (unplugged, or it reset itself)"
        if isinstance(exc, MonitorAcquisitionError):
            return f"the {cls.short_name} stopped the acquisition: {exc}"
        return f"{cls.short_name} error: {exc}"

    # -- one link -----------------------------------------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def open(cls, url: str, timeout: float = 2.0) -> PowerMonitor:
        """Open the link at ``url`` (a pyserial URL); :class:`MonitorLinkError` if it cannot be opened."""

    @abc.abstractmethod
    def prepare(self) -> dict[str, Any]:
        """Take host control from whatever state the monitor was left in (a previous host may have died
        mid-acquisition) and return what it is, for the device details (``firmware``, ``board``…)."""

    @abc.abstractmethod
    def ping(self) -> None:
        """A short request; raises :class:`MonitorError` if the link is dead."""

    @abc.abstractmethod
    def configure(
        self, rate_hz: int, voltage: float = 3.3, *, events: bool = True, max_seconds: float = 0.0, **options: Any
    ) -> None:
        """Set everything an acquisition relies on: ``rate_hz``, the target's supply ``voltage``, marker edges
        reported as events (``events``; a monitor that cannot may ignore it), ``max_seconds`` of acquisition
        (0 = until stopped) and monitor-specific ``options`` (unknown ones are a :class:`MonitorSettingError`)."""

    @abc.abstractmethod
    def supply_voltage(self) -> float:
        """The target's supply voltage (V): measured if the monitor can, else the configured one."""

    @abc.abstractmethod
    def start(self, *, max_samples: int | None = None, stall_timeout: float | None = None) -> Acquisition:
        """Start the configured acquisition (its reader thread runs at once).  ``max_samples``: stop after that
        many samples; ``stall_timeout``: give up when no data arrive for that long (default: the monitor's)."""

    def release(self) -> None:  # noqa: B027 - optional: most monitors have no front panel to give back
        """Give the instrument back to its own front panel after an acquisition (default: nothing)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the link (stop first any acquisition that still runs)."""

    def __enter__(self) -> PowerMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- registry -------------------------------------------------------------------------------------------
def monitor_kinds() -> tuple[str, ...]:
    """Every registered kind, in registry order."""
    return tuple(REGISTRY)


def is_monitor(kind: str) -> bool:
    """True for a device kind that is a power monitor."""
    return kind in REGISTRY


def monitor_class(kind: str) -> type[PowerMonitor]:
    """The :class:`PowerMonitor` implementation of ``kind`` (:class:`KeyError` naming the known kinds)."""
    try:
        target = REGISTRY[kind]
    except KeyError:
        raise KeyError(f"no power monitor of kind {kind!r} (known: {', '.join(REGISTRY) or 'none'})") from None
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, PowerMonitor)) or cls.kind != kind:
        raise TypeError(f"REGISTRY[{kind!r}] = {target!r} is not a PowerMonitor of kind {kind!r}")
    return cls


def open_monitor(kind: str, url: str, timeout: float = 2.0) -> PowerMonitor:
    """Open the link to a monitor of ``kind`` at ``url`` (a pyserial URL); :class:`MonitorLinkError` if it
    cannot be opened."""
    return monitor_class(kind).open(url, timeout=timeout)


def find_monitors(lister: Callable[[], Iterable] | None = None) -> list[tuple[str, PortInfo]]:
    """``(kind, port)`` of every enumerated monitor of every registered kind."""
    return [(kind, p) for kind in REGISTRY for p in monitor_class(kind).find(lister)]
