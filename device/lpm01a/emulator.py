"""X-NUCLEO-LPM01A (PowerShield) emulator: the device side of ``lpm01a-protocol.md``.

It implements :class:`device.emulated.EmulatedDevice`, so an endpoint (``device/endpoint.py``) exposes it
as a real serial port, and measures a pluggable :class:`device.emulated.CurrentSource`.

Model (every choice marked [I] in the reference is documented in ``docs/virtual-bench.md``):

* **Shell** - lines end at ``\\n`` (``\\r`` and ``\\0`` dropped); replies are
  ``\\r\\nPowerShield > ack <line verbatim>[ <data>]\\r\\n\\r\\n`` or
  ``\\r\\nPowerShield > error <line>\\r\\nError detail: <why>\\r\\n\\r\\n``; state machine of section 2.3
  (STANDALONE -> ``htc`` -> IDLE -> ``start`` -> ACQUIRING/ARMED -> ... ).
* **Stream** - sample ``n`` (1-based) of an acquisition is the current at ``t0 + n/f`` in simulated time,
  where ``t0`` is the ``start`` (or D7 trigger) time plus ``trigdelay``; only samples whose time is
  ``<= now`` exist.  A timestamp precedes sample 1 (t = 0) and every 1000th sample after it.
* **Transmit path** - an acquisition buffer of ``TxModel.acq_capacity`` samples is drained by a
  formatter limited to ``ascii_rate`` / ``binary_rate`` samples/s into a byte TX FIFO of
  ``tx_capacity`` bytes, which the host drains through the endpoint.  The formatter stalls while the TX
  FIFO is full, so a host that stops reading fills the acquisition buffer; beyond its capacity the
  acquisition aborts with ``error: Tx buffer overflow. Acquisition stopped.`` and the end sequence.
  ``buff`` % = max(acquisition-buffer fill, TX-FIFO fill).  With the defaults ascii_dec sustains 5 kHz
  forever, 10 kHz for ~1.8 s and 20 kHz for ~0.55 s (UM2269 Table 2 guarantees 1 s and 0.5 s);
  bin_hexa sustains 100 kHz forever.
* **Noise** - gaussian relative noise (0.5 % rms) plus an additive floor (2 nA rms), seeded; the 12-bit
  (binary) / 4-digit (ASCII) encodings quantise.
* **Faults** - :class:`LPM01AFaults` (``emulator.faults``), settable at any time.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable

import numpy as np

from device.emulated import ByteFaults, ByteFifo, CurrentSource, apply_byte_faults
from device.lpm01a import spec
from device.simclock import SimClock

__all__ = [
    "LPM01AEmulator",
    "LPM01AFaults",
    "apply_byte_faults",
    "TxModel",
    "State",
    "encode_bin_words",
    "encode_ascii_samples",
    "bin_frame_text",
    "OVERFLOW_ERROR",
    "OVERCURRENT_ERROR",
    "STATIC_ERROR_HIGH",
    "STATIC_ERROR_LOW",
]

log = logging.getLogger(__name__)

CRLF = b"\r\n"
OVERFLOW_ERROR = "error: Tx buffer overflow. Acquisition stopped."
OVERCURRENT_ERROR = "error: Overcurrent detected. Acquisition stopped."
STATIC_ERROR_HIGH = "error: Static acquisition: current not constant (current peak high). Acquisition stopped."
STATIC_ERROR_LOW = "error: Static acquisition: current not constant (current peak low). Acquisition stopped."
OVERCURRENT_SPIKE_A = 75e-3  # instantaneous trip level (UM2243: spikes up to 75 mA tolerated < few ms)
OVERCURRENT_HOLD_S = 2e-3  # > 59 mA for this long trips the protection
STATIC_MAX_A = 200e-3
FORCED_OVERCURRENT_A = 65e-3
DEFAULT_UID = "540554545-1430736921-1900587"
DEFAULT_VERSION = "1.0.7"

HELP_LINES = (
    "help                       : list commands",
    "echo <string>              : loopback",
    "powershield                : presence and board UID",
    "version                    : firmware version",
    "range                      : current range min max",
    "status                     : ok or latched error (clears it)",
    "htc | hrc                  : take / release host control",
    'lcd <1|2> "<text>"         : LCD line (16 chars)',
    "psrst                      : reset the PowerShield",
    "volt <1800m..3300m> | get  : target supply voltage",
    "freq <1..100k>             : sampling frequency",
    "acqtime <100u..100> | 0    : acquisition time, 0 or inf = infinite",
    "acqmode <dyn|stat>         : dynamic or static measurement",
    "funcmode <optim|high>      : measurement mode",
    "output <current|energy>    : sample quantity",
    "format <ascii_dec|bin_hexa>: stream format",
    "trigsrc <sw|d7>            : trigger source",
    "trigdelay <0..600>         : trigger delay",
    "currthre <0..50m>          : current threshold",
    "eventsrc <d7|off> [ris|fal]: report D7 edges in the stream",
    "pwr <auto|on|off|get> [nostatus|status] : target power",
    "pwrend <on|off>            : target power after acquisition",
    "start | stop               : start / stop acquisition",
    "targrst <0|1m..1>          : target reset (power cycle)",
    "temp [degc|degf]           : board temperature",
    "autotest [start|status]    : self test",
    "calib                      : self calibration",
)


class State(Enum):
    STANDALONE = "standalone"
    IDLE = "idle"  # host-controlled, no acquisition
    ARMED = "armed"  # trigsrc d7, waiting for an edge
    ACQUIRING = "acquiring"
    DRAINING = "draining"  # acquisition over (stop / acqtime), buffered samples still going out


@dataclass
class TxModel:
    """Transmit-path and measurement parameters of the emulated board (all settable)."""

    acq_capacity: int = 8000  # samples the acquisition buffer holds before overflow
    ascii_rate: float = 5500.0  # samples/s the ascii_dec formatter sustains
    binary_rate: float = 200_000.0  # samples/s the bin_hexa formatter sustains
    tx_capacity: int = 65536  # bytes of the USB TX FIFO
    min_chunk_s: float = 0.005  # generate at least this much simulated time per batch
    noise_rel: float = 0.005  # gaussian relative noise, rms
    noise_floor_a: float = 2e-9  # additive noise, rms amps
    min_reading_a: float = 1e-10  # readings clamp to this floor
    static_window_s: float = 0.1  # static mode integrates over this window
    temperature_c: float = 28.0
    psrst_seconds: float = 3.0  # wall seconds the port is gone after psrst


@dataclass
class LPM01AFaults(ByteFaults):
    """Fault switches (change at any time; ``faults.drop_rate = 1e-4``).

    Byte faults apply to every byte the board emits from the moment they are set: ``nul_rate`` inserts a
    ``0x00`` after a byte with that probability, ``nul_burst_rate`` inserts ``nul_burst_len`` NULs,
    ``drop_rate`` deletes bytes, ``corrupt_rate`` flips bits (each a probability per byte).
    ``overcurrent`` adds 65 mA to the measured current (trips the protection after 2 ms);
    ``force_overflow`` aborts the running acquisition as a TX overflow at once;
    ``host_not_reading`` stops delivery (the TX FIFO fills up, then the acquisition buffer overflows);
    ``static_unstable`` makes the next static acquisition fail the +-10 % rule;
    ``disconnect_s`` (seconds) asks the endpoint to unplug the port for that long (then resets to None);
    ``reset_now`` resets the shield on its own (reset button, brown-out): exactly what ``psrst`` does
    (defaults, standalone, port gone for ``model.psrst_seconds``) without any command (then resets to False).
    """

    overcurrent: bool = False
    force_overflow: bool = False
    host_not_reading: bool = False
    static_unstable: bool = False
    disconnect_s: float | None = None
    reset_now: bool = False

    def __setattr__(self, name: str, value: object) -> None:
        if name == "disconnect_s" and value is not None and not (float(value) >= 0):  # type: ignore[arg-type]
            raise ValueError(f"faults.disconnect_s must be None or >= 0 seconds, got {value!r}")
        super().__setattr__(name, value)


@dataclass
class Settings:
    """Shell settings; they persist across host connections until ``psrst``."""

    volt: float = 3.3
    freq: int = 100
    acqtime: float = 10.0  # 0 = infinite
    acqmode: str = "dyn"
    funcmode: str = "optim"
    output: str = "current"
    format: str = "ascii_dec"
    trigsrc: str = "sw"
    trigdelay: float = 1e-3
    currthre: float = 1e-3
    eventsrc: bool = True
    pwr: str = "auto"
    pwr_status: bool = False
    pwrend: str = "on"
    lcd: list[str] = field(default_factory=lambda: ["", ""])


class CommandError(Exception):
    """A refused command; the message becomes the ``Error detail:`` line."""


# --- vectorised encoders (must equal spec.bin_word / spec.ascii_sample element-wise) ---------------
_POW16 = np.array([16.0**e for e in range(15)])
_BIN_THRESH = 4095.5 / _POW16  # value <= _BIN_THRESH[e]  <=>  value * 16**e <= 4095.5 (exact: powers of 2)
_BIN_THRESH_ASC = _BIN_THRESH[1:][::-1].copy()
_POW10_OFF = 120
_POW10 = np.array([10.0**k for k in range(-_POW10_OFF, _POW10_OFF + 1)])


def encode_bin_words(values: np.ndarray) -> np.ndarray:
    """bin_hexa words (uint16) for an array of values: element-wise equal to :func:`spec.bin_word`."""
    v = np.asarray(values, dtype=np.float64)
    good = np.isfinite(v) & (v > 0)
    vv = np.where(good, v, 1.0)
    # largest e in 0..14 with vv * 16**e <= 4095.5 = number of thresholds 4095.5/16**k (k = 1..14) >= vv
    e = 14 - np.searchsorted(_BIN_THRESH_ASC, vv, side="left")
    m = np.rint(vv * _POW16[e])
    for _ in range(2):
        over = (m > 4095) & (e > 0)
        if not over.any():
            break
        e = np.where(over, e - 1, e)
        m = np.where(over, np.rint(vv * _POW16[e]), m)
    m = np.minimum(m, 4095)
    words = (e.astype(np.uint16) << 12) | m.astype(np.uint16)
    return np.where(good, words, 0).astype(np.uint16)


def _ascii_parts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(values, dtype=np.float64)
    good = np.isfinite(v) & (v > 0)
    vv = np.where(good, v, 1.0)
    exp = 3 - np.floor(np.log10(vv)).astype(np.int64)
    mant = np.rint(vv * _POW10[np.clip(exp, -_POW10_OFF, _POW10_OFF) + _POW10_OFF])
    big = mant >= 10000
    if big.any():
        exp = np.where(big, exp - 1, exp)
        mant = np.where(big, np.rint(vv * _POW10[np.clip(exp, -_POW10_OFF, _POW10_OFF) + _POW10_OFF]), mant)
    small = exp > 10
    if small.any():
        exp = np.where(small, 10, exp)
        mant = np.where(small, np.rint(vv * 1e10), mant)
    huge = exp < -99
    if huge.any():
        exp = np.where(huge, -99, exp)
        mant = np.where(huge, 9999, mant)
    mant = np.where(good, mant, 0).astype(np.int64)
    exp = np.where(good, exp, 10)
    return mant, exp


def encode_ascii_samples(values: np.ndarray) -> np.ndarray:
    """ascii_dec sample lines as a ``(n, 9)`` uint8 array ``DDDD-EE\\r\\n``; row i equals
    ``spec.ascii_sample(values[i]) + "\\r\\n"``."""
    mant, exp = _ascii_parts(values)
    n = mant.shape[0]
    out = np.empty((n, 9), dtype=np.uint8)
    out[:, 0] = mant // 1000 % 10 + 48
    out[:, 1] = mant // 100 % 10 + 48
    out[:, 2] = mant // 10 % 10 + 48
    out[:, 3] = mant % 10 + 48
    out[:, 4] = np.where(exp >= 0, ord("-"), ord("+"))
    ae = np.abs(exp)
    out[:, 5] = ae // 10 % 10 + 48
    out[:, 6] = ae % 10 + 48
    out[:, 7] = 13
    out[:, 8] = 10
    return out


def bin_frame_text(tag: int, text: str) -> bytes:
    """``F0 <tag> <text> [space] 0D 0A FF FF``: text padded with one space to an even length so that the
    whole frame has even length and 2-byte sample alignment survives it."""
    body = text.encode("ascii", "replace")
    if len(body) % 2:
        body += b" "
    return bytes((0xF0, tag)) + body + b"\r\n\xff\xff"


def _bin_timestamp(ms: int, load_pct: int) -> bytes:
    flag = 0x80000000 if ms > 0x7FFFFFFF else 0
    return bytes((0xF0, 0xF3)) + ((ms & 0x7FFFFFFF) | flag).to_bytes(4, "big") + bytes((load_pct & 0xFF, 0xFF, 0xFF))


def _ascii_timestamp(ms: int, load_pct: int) -> bytes:
    return f"\r\nTimeStamp: {ms // 1000:03d}s {ms % 1000:03d}ms, buff {load_pct:02d}%\r\n".encode()


# --- acquisition bookkeeping ----------------------------------------------------------------------
@dataclass
class _Acquisition:
    t0: float
    freq: int
    binary: bool
    output: str
    volt: float
    n_total: int | None  # None = infinite
    static: bool
    events: bool
    n_acquired: int = 0
    n_formatted: int = 0
    stop_time: float | None = None
    last_t: float = 0.0
    budget: float = 0.0
    edge_t: float = 0.0
    edges: deque = field(default_factory=deque)
    event_count: int = 0
    over_run: int = 0
    vmin: float = math.inf
    vmax: float = -math.inf

    @property
    def end_time(self) -> float:
        return math.inf if self.n_total is None else self.t0 + self.n_total / self.freq


class LPM01AEmulator:
    """The emulated PowerShield (see module doc).  Thread-safe; driven by one endpoint thread."""

    def __init__(
        self,
        clock: SimClock,
        source: CurrentSource | None = None,
        seed: int = 0,
        *,
        uid: str = DEFAULT_UID,
        version: str = DEFAULT_VERSION,
        model: TxModel | None = None,
    ) -> None:
        if source is None:
            from device.power_profiles import L496Profile

            source = L496Profile()
        self.clock = clock
        self.source: CurrentSource = source
        self.uid = uid
        self.version = version
        self.model = model or TxModel()
        self.faults = LPM01AFaults()
        self._rng = np.random.default_rng(seed)
        self._fault_rng = np.random.default_rng([seed, 1])
        self._lock = threading.RLock()
        self.tx = ByteFifo(self.model.tx_capacity)
        self._rx = bytearray()
        self._queued: deque[str] = deque()
        self._unplug_request: float | None = None
        self.connected = False
        self.host_lines: list[str] = []  # every command line received (diagnostics / tests), bounded
        self._power_up()

    # --- life cycle -------------------------------------------------------------------------------
    def _power_up(self) -> None:
        self.settings = Settings()
        self.state = State.STANDALONE
        self.error: str | None = None  # latched error (cleared by `status`)
        self._acq: _Acquisition | None = None
        self._arm_t = 0.0
        self._power_t = np.array([-math.inf])  # target power transitions (time, on)
        self._power_on = np.array([True])
        self._queued.clear()
        self._rx.clear()
        self.tx.clear()

    @property
    def target_powered(self) -> bool:
        return bool(self._power_on[-1])

    def _set_target_power(self, on: bool, t: float) -> None:
        keep = self._power_t < t
        self._power_t = np.append(self._power_t[keep][-31:], t)
        self._power_on = np.append(self._power_on[keep][-31:], on)
        hook: Callable[[bool, float], None] | None = getattr(self.source, "set_target_power", None)
        if hook is not None:
            try:
                hook(on, t)
            except Exception:  # the source's problem must not break the shell
                log.exception("current source set_target_power hook failed")

    def _power_mask(self, t: np.ndarray) -> np.ndarray:
        i = np.searchsorted(self._power_t, t, side="right") - 1
        return self._power_on[np.clip(i, 0, len(self._power_on) - 1)]

    # --- EmulatedDevice ---------------------------------------------------------------------------
    def connect(self) -> None:
        with self._lock:
            self.connected = True
            self._rx.clear()
            if self.state not in (State.ACQUIRING, State.DRAINING, State.ARMED):
                self.tx.clear()  # stale replies of a previous host are not replayed

    def disconnect(self) -> None:
        with self._lock:
            self.connected = False
            self._rx.clear()

    def receive(self, data: bytes) -> None:
        with self._lock:
            self._rx += bytes(data).replace(b"\0", b"")
            while True:
                nl = self._rx.find(b"\n")
                if nl < 0:
                    break
                raw = bytes(self._rx[:nl]).replace(b"\r", b"")
                del self._rx[: nl + 1]
                if len(self._rx) > 4096:  # garbage without newline: keep the tail only
                    del self._rx[:-4096]
                line = raw.decode("ascii", "replace")
                if not line.strip():
                    continue
                self.host_lines.append(line)
                if len(self.host_lines) > 1000:
                    del self.host_lines[:500]
                self._on_line(line)

    def advance(self, now: float) -> None:
        with self._lock:
            if self.faults.disconnect_s is not None:
                self._unplug_request = float(self.faults.disconnect_s)
                self.faults.disconnect_s = None
            if self.faults.reset_now:  # fault: spontaneous reset, same effect as a psrst command
                self.faults.reset_now = False
                self._cmd_psrst("", "", now)
            if self.state == State.ARMED:
                self._advance_armed(now)
            if self.state in (State.ACQUIRING, State.DRAINING) and self._acq is not None:
                if self._acq.static:
                    self._advance_static(now)
                else:
                    self._advance_stream(now)

    def pending(self) -> memoryview:
        with self._lock:
            if self.faults.host_not_reading:
                return memoryview(b"")
            return self.tx.pending()

    def consume(self, n: int) -> None:
        with self._lock:
            self.tx.consume(n)

    @property
    def busy(self) -> bool:
        """True while the endpoint should tick fast (stream running/armed or output queued)."""
        return self.state in (State.ARMED, State.ACQUIRING, State.DRAINING) or len(self.tx) > 0

    def take_unplug_request(self) -> float | None:
        """Seconds the endpoint should unplug the port for (``psrst``, ``faults.disconnect_s``), once."""
        with self._lock:
            s, self._unplug_request = self._unplug_request, None
            return s

    # --- output -----------------------------------------------------------------------------------
    def _emit(self, data: bytes) -> None:
        if data and self.faults.byte_faults_active():
            data = self._apply_byte_faults(data)
        self.tx.append(data)

    def _apply_byte_faults(self, data: bytes) -> bytes:
        return apply_byte_faults(data, self.faults, self._fault_rng)

    def _in_stream(self) -> bool:
        return self.state in (State.ARMED, State.ACQUIRING, State.DRAINING)

    def _binary_stream(self) -> bool:
        return self._in_stream() and self.settings.format == "bin_hexa"

    def _ack(self, line: str, data: str | None = None) -> None:
        text = f"ack {line}" if data is None else f"ack {line} {data}"
        if self._binary_stream():
            self._emit(bin_frame_text(0xF2, text))
        else:
            self._emit(b"\r\n" + spec.PROMPT_B + text.encode("ascii", "replace") + b"\r\n\r\n")

    def _error(self, line: str, detail: str) -> None:
        if self._binary_stream():
            self._emit(bin_frame_text(0xF1, f"error {line}\r\nError detail: {detail}"))
        else:
            self._emit(
                b"\r\n"
                + spec.PROMPT_B
                + f"error {line}".encode("ascii", "replace")
                + b"\r\n"
                + f"Error detail: {detail}".encode("ascii", "replace")
                + b"\r\n\r\n"
            )

    # --- shell ------------------------------------------------------------------------------------
    def _on_line(self, line: str) -> None:
        now = self.clock.now()
        acq = self._acq
        if self.state == State.ACQUIRING and acq is not None and not acq.static and acq.end_time <= now:
            self.state = State.DRAINING  # acqtime over: later commands wait for the end of the stream
        if self.state == State.DRAINING:
            self._queued.append(line)
            return
        name, _, args = line.strip().partition(" ")
        args = args.strip()
        try:
            self._dispatch(name, args, line, now)
        except CommandError as exc:
            self._error(line, str(exc))
        except spec.ArgumentError as exc:
            self._error(line, str(exc))

    def _dispatch(self, name: str, args: str, line: str, now: float) -> None:
        handler = self._handlers().get(name)
        if handler is None:
            raise CommandError(f"unknown command {name!r} (see help)")
        if self.state == State.STANDALONE and name not in spec.ALLOWED_STANDALONE:
            raise CommandError("command requires host control: send htc first")
        if self._in_stream() and name not in spec.ALLOWED_WHILE_ACQUIRING:
            if name == "start":
                raise CommandError("acquisition already running (send stop first)")
            raise CommandError(
                f"{name} not allowed during acquisition (allowed: stop, pwr, targrst, volt get, temp, status)"
            )
        handler(args, line, now)

    def _handlers(self) -> dict[str, Callable[[str, str, float], None]]:
        return {
            "help": self._cmd_help,
            "echo": self._cmd_echo,
            "powershield": lambda a, l, n: self._no_args(a, l, self.uid),
            "version": self._cmd_version,
            "range": lambda a, l, n: self._no_args(
                a, l, f"{spec.ascii_sample(spec.DYN_CURRENT_MIN)} {spec.ascii_sample(spec.DYN_CURRENT_MAX)}"
            ),
            "status": self._cmd_status,
            "htc": self._cmd_htc,
            "hrc": self._cmd_hrc,
            "lcd": self._cmd_lcd,
            "psrst": self._cmd_psrst,
            "volt": self._cmd_volt,
            "freq": self._cmd_freq,
            "acqtime": self._cmd_acqtime,
            "acqmode": self._choice_setter("acqmode"),
            "funcmode": self._choice_setter("funcmode"),
            "output": self._choice_setter("output"),
            "format": self._choice_setter("format"),
            "trigsrc": self._choice_setter("trigsrc"),
            "pwrend": self._choice_setter("pwrend"),
            "trigdelay": self._range_setter("trigdelay"),
            "currthre": self._range_setter("currthre"),
            "currthres": self._range_setter("currthre"),
            "eventsrc": self._cmd_eventsrc,
            "pwr": self._cmd_pwr,
            "start": self._cmd_start,
            "stop": self._cmd_stop,
            "targrst": self._cmd_targrst,
            "temp": self._cmd_temp,
            "autotest": self._cmd_autotest,
            "calib": lambda a, l, n: self._no_args(a, l, None),
        }

    def _no_args(self, args: str, line: str, data: str | None) -> None:
        if args:
            raise CommandError(f"unexpected argument {args!r}")
        self._ack(line, data)

    def _cmd_help(self, args: str, line: str, now: float) -> None:
        self._ack(line)
        self._emit("\r\n".join(HELP_LINES).encode() + b"\r\n")

    def _cmd_echo(self, args: str, line: str, now: float) -> None:
        self._emit(b"\r\n" + spec.PROMPT_B + line.encode("ascii", "replace") + b"\r\n")

    def _cmd_version(self, args: str, line: str, now: float) -> None:
        if args:
            raise CommandError(f"unexpected argument {args!r}")
        self._emit(b"\r\n" + spec.PROMPT_B + f"ack {line}: {self.version}".encode() + b"\r\n\r\n")

    def _cmd_status(self, args: str, line: str, now: float) -> None:
        if args:
            raise CommandError(f"unexpected argument {args!r}")
        err, self.error = self.error, None
        self._ack(line, "ok" if err is None else err)

    def _cmd_htc(self, args: str, line: str, now: float) -> None:
        if args:
            raise CommandError(f"unexpected argument {args!r}")
        self.state = State.IDLE
        self._ack(line)

    def _cmd_hrc(self, args: str, line: str, now: float) -> None:
        if args:
            raise CommandError(f"unexpected argument {args!r}")
        self.state = State.STANDALONE
        self._ack(line)

    def _cmd_lcd(self, args: str, line: str, now: float) -> None:
        num, _, text = args.partition(" ")
        text = text.strip()
        if num not in ("1", "2"):
            raise CommandError(f"lcd line {num!r}: must be 1 or 2")
        if len(text) < 2 or not (text.startswith('"') and text.endswith('"')):
            raise CommandError('lcd text must be double-quoted, e.g. lcd 1 "hello"')
        if len(text) - 2 > spec.LCD_MAX_CHARS:
            raise CommandError(f"lcd text has {len(text) - 2} characters: at most {spec.LCD_MAX_CHARS}")
        self.settings.lcd[int(num) - 1] = text[1:-1]
        self._ack(line)

    def _cmd_psrst(self, args: str, line: str, now: float) -> None:
        self._power_up()  # no reply: the board resets and its USB port disappears
        self._unplug_request = self.model.psrst_seconds

    def _measured_volt(self) -> float:
        return self.settings.volt * (1.0 - 0.0024) + float(self._rng.normal(0.0, 0.0005))

    def _cmd_volt(self, args: str, line: str, now: float) -> None:
        if args == "get":
            v = self._measured_volt()
            if self._binary_stream():
                self._emit(bytes((0xF0, 0xF7)) + int(round(v * 1000)).to_bytes(2, "big") + b"\xff\xff")
            else:
                self._ack(line, spec.ascii_sample(v))
            return
        if self._in_stream():
            raise CommandError("volt can only be read (volt get) during acquisition")
        if not args:
            raise CommandError("volt needs a value (1800m..3300m) or get")
        self.settings.volt = spec.RANGES["volt"].check(spec.parse_number(args))
        self._ack(line)

    def _cmd_freq(self, args: str, line: str, now: float) -> None:
        self.settings.freq = spec.parse_freq(args)
        self._ack(line)

    def _cmd_acqtime(self, args: str, line: str, now: float) -> None:
        value = 0.0 if args == "inf" else spec.parse_number(args)
        self.settings.acqtime = spec.RANGES["acqtime"].check(value)
        self._ack(line)

    def _choice_setter(self, name: str) -> Callable[[str, str, float], None]:
        def setter(args: str, line: str, now: float) -> None:
            allowed = spec.CHOICES[name]
            if args not in allowed:
                raise CommandError(f"{name} {args!r}: must be one of {' | '.join(allowed)}")
            setattr(self.settings, name, args)
            self._ack(line)

        return setter

    def _range_setter(self, name: str) -> Callable[[str, str, float], None]:
        def setter(args: str, line: str, now: float) -> None:
            setattr(self.settings, name, spec.RANGES[name].check(spec.parse_number(args)))
            self._ack(line)

        return setter

    def _cmd_eventsrc(self, args: str, line: str, now: float) -> None:
        parts = args.split()
        if parts == ["off"]:
            self.settings.eventsrc = False
        elif parts and parts[0] == "d7" and len(parts) <= 2 and (len(parts) == 1 or parts[1] in ("ris", "fal")):
            self.settings.eventsrc = True
        else:
            raise CommandError(f"eventsrc {args!r}: must be d7 [ris|fal] or off")
        self._ack(line)

    def _cmd_pwr(self, args: str, line: str, now: float) -> None:
        parts = args.split()
        if not parts or parts[0] not in spec.CHOICES["pwr"] or len(parts) > 2:
            raise CommandError(f"pwr {args!r}: must be auto | on | off | get [nostatus | status]")
        if len(parts) == 2:
            if parts[0] == "get" or parts[1] not in ("nostatus", "status"):
                raise CommandError(f"pwr {args!r}: second argument must be nostatus or status")
            self.settings.pwr_status = parts[1] == "status"
        mode = parts[0]
        if mode != "get":
            self.settings.pwr = mode
            if mode in ("on", "off"):
                self._set_target_power(mode == "on", now)
            elif mode == "auto" and self.state in (State.ACQUIRING, State.DRAINING):
                self._set_target_power(True, now)
        if self._binary_stream():
            self._emit(bytes((0xF0, 0xF9, int(self.target_powered), 0xFF, 0xFF)))
        else:
            self._ack(line, ("on" if self.target_powered else "off") if mode == "get" else None)

    def _cmd_targrst(self, args: str, line: str, now: float) -> None:
        dur = spec.RANGES["targrst"].check(spec.parse_number(args))
        self._set_target_power(False, now)
        if dur > 0:
            # power comes back after `dur`: record the future transition
            self._power_t = np.append(self._power_t, now + dur)
            self._power_on = np.append(self._power_on, True)
        if self._binary_stream():
            self._emit(b"\xf0\xf6\xff\xff")
        else:
            self._ack(line)

    def _cmd_temp(self, args: str, line: str, now: float) -> None:
        unit = args or "degc"
        if unit not in spec.CHOICES["temp"]:
            raise CommandError(f"temp {args!r}: must be degc or degf")
        c = self.model.temperature_c + float(self._rng.normal(0.0, 0.1))
        value = c if unit == "degc" else c * 9.0 / 5.0 + 32.0
        if self._binary_stream():
            self._emit(b"\xf0\xf8" + int(round(value)).to_bytes(2, "big", signed=True) + b"\xff\xff")
        else:
            self._ack(line, f"{value:.1f}")

    def _cmd_autotest(self, args: str, line: str, now: float) -> None:
        parts = args.split()
        if (
            len(parts) > 2
            or (parts and parts[0] not in ("start", "status"))
            or (len(parts) == 2 and parts[1] not in ("stat_all", "stat_min"))
        ):
            raise CommandError(f"autotest {args!r}: must be [start|status] [stat_all|stat_min]")
        self._ack(line, "ok" if parts and parts[0] == "status" else None)

    # --- acquisition control ----------------------------------------------------------------------
    def _cmd_start(self, args: str, line: str, now: float) -> None:
        if args:
            raise CommandError(f"unexpected argument {args!r}")
        s = self.settings
        if s.format == "ascii_dec" and s.acqmode == "dyn":
            limit = spec.ascii_duration_limit(s.freq)
            if limit == 0.0:
                raise CommandError(
                    f"ascii_dec supports at most 20k (freq is {spec.format_freq(s.freq)}): use format bin_hexa"
                )
        if s.output == "energy" and s.freq > spec.ENERGY_MAX_HZ:
            raise CommandError(f"output energy supports at most 10k (freq is {spec.format_freq(s.freq)})")
        self._ack(line)
        if s.trigsrc == "d7":
            self.state = State.ARMED
            self._arm_t = now
        else:
            self._begin(now + s.trigdelay, now)

    def _begin(self, t0: float, now: float) -> None:
        s = self.settings
        static = s.acqmode == "stat"
        n_total = None if s.acqtime == 0 else max(1, int(round(s.acqtime * s.freq)))
        self._acq = _Acquisition(
            t0=t0,
            freq=s.freq,
            binary=s.format == "bin_hexa",
            output=s.output,
            volt=s.volt,
            n_total=1 if static else n_total,
            static=static,
            events=s.eventsrc and s.trigsrc == "sw",
            last_t=now,
            edge_t=t0,
        )
        if s.pwr == "auto":
            self._set_target_power(True, now)
        self.state = State.ACQUIRING
        self._emit(_bin_timestamp(0, 0) if self._acq.binary else _ascii_timestamp(0, 0))
        if s.pwr_status:
            self._emit_power_state()

    def _emit_power_state(self) -> None:
        on = self.target_powered
        if self._acq is not None and self._acq.binary:
            self._emit(bytes((0xF0, 0xF9, int(on), 0xFF, 0xFF)))
        else:
            self._emit(b"\r\npwr on\r\n" if on else b"\r\npwr off\r\n")

    def _cmd_stop(self, args: str, line: str, now: float) -> None:
        if args:
            raise CommandError(f"unexpected argument {args!r}")
        if self.state == State.ACQUIRING and self._acq is not None:
            self._acq.stop_time = now  # at once, also during trigdelay (ref. section 8.7)
            self.state = State.DRAINING  # no ack: the end sequence answers
            return
        if self.state == State.ARMED:
            self.state = State.IDLE
            self._acq = None
        self._ack(line)

    def _advance_armed(self, now: float) -> None:
        edges = np.asarray(self.source.d7_edges(self._arm_t, now), dtype=np.float64)
        self._arm_t = now
        if edges.size:
            self._begin(float(edges[0]) + self.settings.trigdelay, now)

    def _buffer_load(self, acq: _Acquisition, formatting: int = 0) -> int:
        """Tx buffer load % reported in timestamps: samples still waiting after the ``formatting`` batch,
        or the TX FIFO fill, whichever is higher."""
        backlog = acq.n_acquired - acq.n_formatted - formatting
        load = max(backlog / self.model.acq_capacity, self.tx.fill_fraction())
        return int(min(99, max(0, load * 100)))

    def _measure(self, t: np.ndarray) -> np.ndarray:
        """Measured current at times t: source x target power + forced faults + noise, clamped."""
        i = np.asarray(self.source.current(t), dtype=np.float64) * self._power_mask(t)
        if self.faults.overcurrent:
            i = i + FORCED_OVERCURRENT_A
        m = self.model
        noisy = i * (
            1.0 + m.noise_rel * self._rng.standard_normal(i.shape)
        ) + m.noise_floor_a * self._rng.standard_normal(i.shape)
        return np.maximum(noisy, m.min_reading_a)

    def _advance_stream(self, now: float) -> None:
        acq = self._acq
        assert acq is not None
        m = self.model
        rate = m.binary_rate if acq.binary else m.ascii_rate
        dt = max(0.0, now - acq.last_t)
        acq.last_t = now
        t_lim = now if acq.stop_time is None else min(now, acq.stop_time)
        n_acq = int(math.floor((t_lim - acq.t0) * acq.freq + 1e-9)) if t_lim > acq.t0 else 0
        if acq.n_total is not None:
            n_acq = min(n_acq, acq.n_total)
        acq.n_acquired = max(acq.n_acquired, n_acq)
        done = (acq.stop_time is not None and now >= acq.stop_time) or (
            acq.n_total is not None and acq.n_acquired >= acq.n_total
        )
        if done and self.state == State.ACQUIRING:
            self.state = State.DRAINING
        if acq.events and t_lim > acq.edge_t:
            new = np.asarray(self.source.d7_edges(acq.edge_t, t_lim), dtype=np.float64)
            acq.edges.extend(float(x) for x in new if x > acq.t0)
            acq.edge_t = t_lim
        if self.faults.force_overflow:
            self.faults.force_overflow = False
            self._finish(OVERFLOW_ERROR)
            return
        acq.budget += dt * rate
        backlog = acq.n_acquired - acq.n_formatted
        min_chunk = max(1, int(acq.freq * m.min_chunk_s))
        want = backlog if (backlog >= min_chunk or done) else 0
        bps = 2 if acq.binary else 9
        n = min(want, int(acq.budget), self.tx.free() // bps)
        if n > 0:
            tripped = self._format(acq, n)
            acq.budget -= n
            if tripped:
                self._finish(OVERCURRENT_ERROR, overcurrent=True)
                return
        if n < want or want == 0:  # formatter idle or blocked: it cannot bank time
            acq.budget = min(acq.budget, rate * m.min_chunk_s + 1)
        backlog = acq.n_acquired - acq.n_formatted
        if backlog > m.acq_capacity:
            self._finish(OVERFLOW_ERROR)
        elif done and backlog == 0:
            self._finish(None)

    def _format(self, acq: _Acquisition, n: int) -> bool:
        """Format samples [n_formatted, n_formatted + n) into the TX FIFO; True if overcurrent tripped."""
        a = acq.n_formatted
        idx = np.arange(a, a + n, dtype=np.int64)
        t = acq.t0 + (idx + 1) / acq.freq
        cur = self._measure(t)
        tripped = False
        over = cur > spec.OVERCURRENT_A
        if over.any():
            pos = np.arange(n)
            last_ok = np.maximum.accumulate(np.where(over, -1, pos))
            run = np.where(last_ok >= 0, pos - last_ok, pos + 1 + acq.over_run)
            trip = over & ((run / acq.freq >= OVERCURRENT_HOLD_S) | (cur > OVERCURRENT_SPIKE_A))
            if trip.any():
                j = int(np.argmax(trip))
                n, idx, cur, tripped = j + 1, idx[: j + 1], cur[: j + 1], True
            else:
                acq.over_run = int(run[-1]) if over[-1] else 0
        else:
            acq.over_run = 0
        values = cur if acq.output == "current" else cur * acq.volt / acq.freq
        acq.vmin = min(acq.vmin, float(values.min()))
        acq.vmax = max(acq.vmax, float(values.max()))
        load = self._buffer_load(acq, n)
        # metadata inserted before sample index k: timestamps (k % 1000 == 0) then events
        inserts: list[tuple[int, int, bytes]] = []
        first_ts = ((a + spec.TIMESTAMP_EVERY - 1) // spec.TIMESTAMP_EVERY) * spec.TIMESTAMP_EVERY
        for k in range(max(first_ts, spec.TIMESTAMP_EVERY), a + n, spec.TIMESTAMP_EVERY):
            ms = k * 1000 // acq.freq
            inserts.append((k, 0, _bin_timestamp(ms, load) if acq.binary else _ascii_timestamp(ms, load)))
        while acq.edges:
            te = acq.edges[0]
            k = max(a, math.ceil((te - acq.t0) * acq.freq - 1e-9) - 1)
            if k >= a + n:
                break
            acq.edges.popleft()
            inserts.append((k, 1, self._event_bytes(acq)))
        if acq.binary:
            body = encode_bin_words(values).astype(">u2").tobytes()
            bps = 2
        else:
            body = encode_ascii_samples(values).tobytes()
            bps = 9
        if inserts:
            inserts.sort(key=lambda x: (x[0], x[1]))
            parts, prev = [], a
            for k, _, meta in inserts:
                parts.append(body[(prev - a) * bps : (k - a) * bps])
                parts.append(meta)
                prev = k
            parts.append(body[(prev - a) * bps :])
            body = b"".join(parts)
        self._emit(body)
        acq.n_formatted += n
        return tripped

    def _event_bytes(self, acq: _Acquisition) -> bytes:
        text = f"event {acq.event_count:02d} ris"
        acq.event_count += 1
        return bin_frame_text(0xF2, text) if acq.binary else f"\r\n{text}\r\n".encode()

    def _advance_static(self, now: float) -> None:
        acq = self._acq
        assert acq is not None
        window = self.model.static_window_s
        t_end = acq.t0 + window
        if acq.stop_time is not None and acq.stop_time < t_end:
            self._finish(None)  # stopped before the measurement completed: no sample
            return
        if now < t_end:
            return
        t = acq.t0 + (np.arange(1000) + 1) * (window / 1000)
        cur = self._measure(t)
        mean = float(cur.mean())
        if self.faults.static_unstable:
            self.faults.static_unstable = False
            cur = cur * np.where(np.arange(cur.size) % 2 == 0, 1.25, 1.0)
        if float(cur.max()) > STATIC_MAX_A:
            self._finish(OVERCURRENT_ERROR, overcurrent=True)
            return
        if float(cur.max()) > 1.1 * mean:
            self._finish(STATIC_ERROR_HIGH)
            return
        if float(cur.min()) < 0.9 * mean:
            self._finish(STATIC_ERROR_LOW)
            return
        value = mean if acq.output == "current" else mean * acq.volt * window
        acq.vmin = acq.vmax = value
        self._emit(
            encode_bin_words(np.array([value])).astype(">u2").tobytes()
            if acq.binary
            else encode_ascii_samples(np.array([value])).tobytes()
        )
        acq.n_acquired = acq.n_formatted = 1
        self._finish(None)

    def _finish(self, error: str | None, overcurrent: bool = False) -> None:
        """End sequence: [error], end tag, summary, banner; then re-arm or idle and run queued lines."""
        acq = self._acq
        assert acq is not None
        now = self.clock.now()
        out: list[bytes] = []
        if error is None and acq.events:
            while acq.edges:  # edges after the last sample but within the acquisition
                acq.edges.popleft()
                out.append(self._event_bytes(acq))
        if acq.binary:
            if overcurrent:
                out.append(b"\xf0\xf5\xff\xff")
            if error:
                out.append(bin_frame_text(0xF1, error))
        elif error:
            out.append(f"\r\n{error}\r\n".encode())
        if self.settings.pwr_status:
            out.append(
                bytes((0xF0, 0xF9, int(self.target_powered), 0xFF, 0xFF))
                if acq.binary
                else (b"\r\npwr on\r\n" if self.target_powered else b"\r\npwr off\r\n")
            )
        if acq.vmin > acq.vmax:
            lo = hi = "0000-10"
        else:
            lo, hi = spec.ascii_sample(acq.vmin), spec.ascii_sample(acq.vmax)
        summary = f"summary beg\r\n{lo}\r\n{hi}\r\nsummary end"
        if acq.binary:
            out.append(b"\xf0\xf4\xff\xff")
            out.append(bin_frame_text(0xF2, summary))
        else:
            out.append(b"\r\nend\r\n")
            out.append(f"\r\n{summary}\r\n".encode())
        out.append(b"\r\n" + spec.PROMPT_B + b"Acquisition completed\r\n")
        if error:
            self.error = error
        if self.settings.pwr == "auto" and self.settings.pwrend == "off":
            self._set_target_power(False, now)
        self._acq = None
        if self.settings.trigsrc == "d7" and error is None and acq.stop_time is None:
            self.state = State.ARMED
            self._arm_t = max(now, acq.end_time)
        else:
            self.state = State.IDLE
        self._emit(b"".join(out))
        while self._queued and self.state != State.DRAINING:
            self._on_line(self._queued.popleft())
