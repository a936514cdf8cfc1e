"""Emulated NUCLEO-L496ZG + X-NUCLEO-IKS01A3 speaking NUCLEO wire protocol v1 (docs/protocol.md §8).

``NucleoEmulator(clock, seed=0, trace=None, profile='odl-firmware')`` implements the virtual bench's
:class:`~device.emulated.EmulatedDevice` (bytes in/out, driven by an endpoint service thread) and
:class:`~device.emulated.CurrentSource` (its supply current and D7 batch marker, measured by the
emulated LPM01A).  What it does:

* **Sensor**: an LSM6DSO playing back a real recording (:mod:`device.nucleo.sensor`), int16 counts at
  the configured ODR / full scale, in SAMPLES blocks timed in simulated time.  The activity of the
  emulated person is switched with the SIM_SET_ACTIVITY message or :meth:`NucleoEmulator.set_activity`.
* **Training** with the reference engine (:mod:`device.engine`) on a worker thread, batch by batch.
  Each batch lasts, in simulated time, exactly what the estimator's cost model predicts
  (:func:`estimator.core.time_per_batch_s` with the board's :class:`~estimator.profiles.DeviceProfile`
  at the current SYSCLK; by default ``odl-firmware``, the ODL firmware's measured costs, as it stands for a
  board running it), so a virtual round and the estimate agree.  Rounds whose memory does not fit
  the 320 KiB SRAM (the estimator's paper accounting + firmware reserve + stored datasets) are refused
  with OUT_OF_RAM.
* **Power**: the supply current is I0 + k·f (the profile's run-mode model) while training or
  evaluating, I0 + k_sleep·f when idle (WFI between interrupts) and idle plus a short run burst per
  accelerometer sample while streaming.  The D7 line gets a rising edge at the start of a round and at
  the end of every batch.  The timeline of levels and edges is kept for the last ``history_s``
  simulated seconds, so the LPM01A can query the past.
* **Time scale**: all durations are simulated; with ``clock.time_scale = 100`` a 7.9 s batch takes
  79 ms of wall time.  The batch *numerics* run on the worker while simulated time elapses; if the host
  machine is slower than the requested time scale, reports come late but the timeline (current, D7,
  ticks) is unchanged.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from device.emulated import ByteFaults, ByteFifo, apply_byte_faults

from . import protocol as P
from .crc import crc32
from .fwimage import FIRMWARE_VERSION
from .sensor import LSM6DSO, Trace, TraceError, default_trace_path, load_trace
from .shuffle import epoch_order

FW_VERSION = FIRMWARE_VERSION  # the emulated board runs the firmware version this app ships
TICK_HZ = 1_000_000
K_SLEEP_A_PER_HZ = 28e-12  # Sleep mode (WFI), 28 µA/MHz (same figure as device/power_profiles.L496Profile)
STREAM_CYCLES_PER_SAMPLE = 2400  # I2C read + packing + UART DMA set-up per accelerometer sample [I]
DEFAULT_FIFO_BYTES = 64 * 1024
HISTORY_MIN_ENTRIES = 1024  # level changes / D7 edges always kept
MAX_BLOCKS_PER_ADVANCE = 2000  # beyond this (host stalled for long) blocks are counted as dropped


class _Refuse(Exception):
    """Internal: a request is answered with ERROR."""

    def __init__(self, code: P.ErrorCode, message: str, arg0: int = 0, arg1: int = 0):
        super().__init__(message)
        self.code, self.message, self.arg0, self.arg1 = code, message, arg0, arg1


@dataclass
class _Transfer:
    kind: str  # 'model' | 'data'
    total: int
    crc: int
    desc_len: int = 0
    slot: int = 0
    buf: bytearray = field(default_factory=bytearray)
    arch: Any = None


@dataclass
class _Slot:
    x: np.ndarray  # (n, T, C) float32 values as the model sees them
    y: np.ndarray  # (n,) int64
    nbytes: int  # bytes the board stores (labels + values in the uploaded dtype)
    dtype: P.DType


@dataclass
class _Batch:
    phase: int
    epoch: int
    index: int
    per_epoch: int
    idx: np.ndarray
    trainable: frozenset
    lr: float
    start: float  # simulated seconds
    end: float
    cycles: int
    kind: str = "train"  # 'train' | 'val' (protocol v2: a validation pass; epoch = epochs completed)


@dataclass
class _Job:
    kind: str  # 'train' | 'eval'
    round_id: int
    abort: threading.Event = field(default_factory=threading.Event)
    abort_t: float | None = None
    thread: threading.Thread | None = None


# ----------------------------------------------------------------------------------------------------
# Fault switches (virtual bench; docs/reliability.md).  Kept apart from the board model: nothing below
# changes behaviour while every switch is at its default.
# ----------------------------------------------------------------------------------------------------
@dataclass
class NucleoFaults(ByteFaults):
    """Fault switches of the emulated board (``emulator.faults``; change at any time).

    * ``corrupt_rate``, ``drop_rate``, ``nul_rate``, ``nul_burst_rate`` (+ ``nul_burst_len``): byte
      faults on everything the board sends from now on (probability per byte; same model as the LPM01A's).
    * ``garbage``: the board answers every request with random bytes (wrong firmware, wrong baud rate).
    * ``silent``: the board neither reads nor sends (hung firmware); output queued meanwhile is sent
      once it is cleared.
    * ``host_not_reading``: nothing is delivered to the host (its TX FIFO fills, SAMPLES are dropped
      and counted) while requests are still executed.
    * ``reset_now``: the board resets on its own (reset button, power glitch): round aborted, state
      lost, BOOT event with reset cause 0; the ST-LINK port stays (then resets to False).
    """

    garbage: bool = False
    silent: bool = False
    host_not_reading: bool = False
    reset_now: bool = False


class NucleoEmulator:
    """Emulated NUCLEO-L496ZG + IKS01A3 (EmulatedDevice + CurrentSource).  Thread-safe."""

    def __init__(
        self,
        clock: Any,
        seed: int = 0,
        trace: Trace | str | Path | None = None,
        profile: Any = "odl-firmware",
        sysclk_hz: float | None = None,
        fifo_bytes: int = DEFAULT_FIFO_BYTES,
        history_s: float = 120.0,
    ):
        from estimator.profiles import get_profile

        self.clock = clock
        self.seed = int(seed)
        self.profile = get_profile(profile)
        self._default_clock = int(round(sysclk_hz if sysclk_hz is not None else self.profile.clock_hz))
        try:
            self._check_clock(self._default_clock)
        except _Refuse as exc:
            raise ValueError(exc.message) from None
        if trace is None:
            path = default_trace_path()
            trace = load_trace(path) if path is not None else None
        elif not isinstance(trace, Trace):
            trace = load_trace(trace)
        self.trace: Trace | None = trace
        self.history_s = float(history_s)
        self._lock = threading.RLock()
        self._tl_lock = threading.Lock()
        self._fifo = ByteFifo(fifo_bytes)
        self._decoder = P.FrameDecoder(on_error=self._on_decode_error)
        self._decode_errors: list[P.ProtocolError] = []
        self._event_seq = 0
        # timeline (simulated seconds): piecewise-constant current + D7 rising edges
        self._tl_t: list[float] = [-math.inf]
        self._tl_i: list[float] = [0.0]
        self._edges: list[float] = []
        self.faults = NucleoFaults()
        self._fault_rng = np.random.default_rng([self.seed, 7])
        self._power_on(reset_cause=0, t=float(clock.now()))

    # ------------------------------------------------------------------------------------------------
    # state
    # ------------------------------------------------------------------------------------------------
    def _power_on(self, reset_cause: int, t: float) -> None:
        self._t_boot = t
        self.sysclk_hz = self._default_clock
        self.sensor = LSM6DSO(self.trace, seed=self.seed)
        self.streaming = False
        self.block_len = 26
        self._stream_t0 = t
        self._stream_k = 0
        self._stream_block = 0
        self._stream_dropped = 0
        self.tx_dropped = 0
        self.marker_enabled = True
        self.marker_pulse_s = 100e-6
        self.model: Any = None
        self.arch: Any = None
        self._model_blob_crc = 0
        self.slots: dict[int, _Slot] = {}
        self._xfer: _Transfer | None = None
        self._weights_snapshot: bytes | None = None
        self._job: _Job | None = None
        self._round_id = 0
        self._cache: tuple[bytes, bytes] | None = None  # (request body, reply wire bytes)
        self.rx_frames = 0
        self.rx_errors = 0
        self._set_level(t, self._base_level())
        self._emit(P.Boot(reset_cause, *FW_VERSION))

    @property
    def state(self) -> P.BoardState:
        if self._job is not None:
            return P.BoardState.TRAINING if self._job.kind == "train" else P.BoardState.EVALUATING
        if self._xfer is not None:
            return P.BoardState.TRANSFER
        return P.BoardState.STREAMING if self.streaming else P.BoardState.IDLE

    def _tick(self, t: float) -> int:
        return max(0, int(round((t - self._t_boot) * TICK_HZ)))

    def sim_time(self, tick: int) -> float:
        """Simulated time (the bench's clock) of a board tick of the current boot."""
        return self._t_boot + tick / TICK_HZ

    @property
    def reserve_bytes(self) -> int:
        return int(self.profile.firmware_reserve_bytes)

    @property
    def ram_total(self) -> int:
        return int(self.profile.ram_bytes)

    def _data_bytes(self) -> int:
        return sum(s.nbytes for s in self.slots.values())

    def _model_bytes(self) -> int:
        return 4 * self.arch.params if self.arch is not None else 0

    @property
    def ram_free(self) -> int:
        return max(0, self.ram_total - self.reserve_bytes - self._model_bytes() - self._data_bytes())

    # ------------------------------------------------------------------------------------------------
    # EmulatedDevice
    # ------------------------------------------------------------------------------------------------
    def connect(self) -> None:
        with self._lock:
            self._decoder.reset()
            self._cache = None
            self._fifo = ByteFifo(self._fifo.capacity)  # the host flushes its input on open

    def disconnect(self) -> None:
        with self._lock:
            self._decoder.reset()

    def receive(self, data: bytes) -> None:
        with self._lock:
            if self.faults.silent:  # fault: hung firmware reads nothing
                return
            now = float(self.clock.now())
            self._advance_locked(now)
            self._decode_errors.clear()
            frames = self._decoder.feed(data)
            if self._decode_errors:
                self.rx_errors += len(self._decode_errors)
                e = self._decode_errors[-1]
                code = P.ErrorCode.BAD_CRC if e.code == P.ErrorCode.BAD_CRC else P.ErrorCode.BAD_FRAME
                self._send(
                    P.SEQ_UNATTRIBUTED, P.error_message(code, 0, f"{len(self._decode_errors)} frame(s) dropped: {e}")
                )
            for frame in frames:
                self.rx_frames += 1
                self._on_frame(frame, now)

    def advance(self, now: float) -> None:
        with self._lock:
            if self.faults.reset_now:  # fault: spontaneous reset (button, power glitch)
                self.faults.reset_now = False
                self._reboot(float(now), reset_cause=0)
            self._advance_locked(float(now))

    def pending(self) -> memoryview | bytes:
        with self._lock:
            if self.faults.silent or self.faults.host_not_reading:  # fault: nothing reaches the host
                return b""
            return self._fifo.pending()

    def consume(self, n: int) -> None:
        with self._lock:
            self._fifo.consume(n)

    @property
    def tx_backlog(self) -> int:
        with self._lock:
            return len(self._fifo)

    # ------------------------------------------------------------------------------------------------
    # CurrentSource
    # ------------------------------------------------------------------------------------------------
    def current(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, np.float64)
        with self._tl_lock:
            times = np.asarray(self._tl_t)
            levels = np.asarray(self._tl_i)
        idx = np.searchsorted(times, t, side="right") - 1
        return levels[np.clip(idx, min(1, len(levels) - 1), len(levels) - 1)]  # before boot: boot level

    def d7_edges(self, t0: float, t1: float) -> np.ndarray:
        with self._tl_lock:
            e = np.asarray(self._edges, np.float64)
        return e[(e > t0) & (e <= t1)]

    def _set_level(self, t: float, amps: float) -> None:
        """Current ``amps`` from ``t`` on; drops any scheduled change after ``t``."""
        with self._tl_lock:
            self._set_level_locked(t, amps)

    def _set_level_locked(self, t: float, amps: float) -> None:
        k = int(np.searchsorted(self._tl_t, t, side="left"))
        del self._tl_t[k:], self._tl_i[k:]
        self._tl_t.append(t)
        self._tl_i.append(float(amps))

    def _schedule_level(self, t: float, amps: float) -> None:
        with self._tl_lock:
            self._tl_t.append(t)
            self._tl_i.append(float(amps))

    def _drop_edges_after(self, t: float) -> None:
        with self._tl_lock:
            self._edges = [e for e in self._edges if e <= t]

    def _prune(self, now: float) -> None:
        """Forget levels/edges older than ``history_s`` simulated seconds, but always keep the last
        :data:`HISTORY_MIN_ENTRIES` of each (at large time scales a minute passes in milliseconds)."""
        cut = now - self.history_s
        with self._tl_lock:
            k = min(int(np.searchsorted(self._tl_t, cut, side="right")) - 1, len(self._tl_t) - HISTORY_MIN_ENTRIES)
            if k > 1:
                del self._tl_t[1:k], self._tl_i[1:k]  # keep the -inf sentinel and the level at the cut
            j = min(int(np.searchsorted(self._edges, cut, side="left")), len(self._edges) - HISTORY_MIN_ENTRIES)
            if j > 0:
                del self._edges[:j]

    def run_current_a(self) -> float:
        return float(self.profile.current_a(self.sysclk_hz))

    def _base_level(self) -> float:
        f = float(self.sysclk_hz)
        sleep = self.profile.i0_a + K_SLEEP_A_PER_HZ * f
        if not self.streaming:
            return sleep
        duty = min(1.0, self.sensor.odr_hz * STREAM_CYCLES_PER_SAMPLE / f)
        return sleep + duty * (self.run_current_a() - sleep)

    # ------------------------------------------------------------------------------------------------
    # output
    # ------------------------------------------------------------------------------------------------
    def _send(self, seq: int, msg: P.Message) -> bytes:
        wire = P.DELIMITER + msg.encode(seq)
        with self._lock:
            self._fifo.append(self._faulty(wire))
        return wire

    def _faulty(self, wire: bytes) -> bytes:
        """Fault switches: ``wire`` as it leaves the board (byte faults applied)."""
        if not self.faults.byte_faults_active():
            return wire

        return apply_byte_faults(wire, self.faults, self._fault_rng)

    def _emit(self, msg: P.Message) -> None:
        with self._lock:
            self._event_seq = (self._event_seq + 1) % 0xFFFF
            self._send(self._event_seq, msg)

    def _on_decode_error(self, exc: P.ProtocolError) -> None:
        self._decode_errors.append(exc)

    # ------------------------------------------------------------------------------------------------
    # sensor stream
    # ------------------------------------------------------------------------------------------------
    def _advance_locked(self, now: float) -> None:
        self._prune(now)
        if not self.streaming or self.trace is None:
            return
        period = 1.0 / self.sensor.odr_hz
        n = self.block_len
        odr_mhz = P.odr_to_mhz(self.sensor.odr_hz)
        produced = 0
        while self._stream_t0 + (self._stream_k + n - 1) * period <= now:
            if produced >= MAX_BLOCKS_PER_ADVANCE or len(self._fifo) >= self._fifo.capacity:
                self._stream_dropped += 1
                self.tx_dropped += 1
            else:
                times = self._stream_t0 + (self._stream_k + np.arange(n)) * period
                xyz = self.sensor.samples(times)
                self._emit(
                    P.Samples(
                        self._stream_block & 0xFFFFFFFF,
                        self._tick(times[0]),
                        odr_mhz,
                        self.sensor.fs_g,
                        min(self._stream_dropped, 255),
                        n,
                        xyz,
                    )
                )
                self._stream_dropped = 0
            produced += 1
            self._stream_k += n
            self._stream_block += 1

    def _start_stream(self, now: float) -> None:
        self.streaming = True
        self._stream_t0 = now
        self._stream_k = 0
        self._stream_block = 0
        self._stream_dropped = 0
        self._set_level(now, self._base_level())

    def set_activity(self, activity: str) -> None:
        """What the emulated person does from now on (an activity of the trace)."""
        with self._lock:
            try:
                self.sensor.set_activity(activity, float(self.clock.now()))
            except P.ProtocolError as exc:
                raise ValueError(str(exc)) from None

    @property
    def activities(self) -> tuple[str, ...]:
        return self.trace.activities if self.trace is not None else ()

    # ------------------------------------------------------------------------------------------------
    # requests
    # ------------------------------------------------------------------------------------------------
    def _on_frame(self, frame: P.Frame, now: float) -> None:
        if self.faults.garbage:  # fault: random bytes instead of an answer (nothing is executed)
            n = int(self._fault_rng.integers(1, 64))
            with self._lock:
                self._fifo.append(self._fault_rng.integers(0, 256, n, dtype=np.uint8).tobytes())
            return
        key = P.frame_body(frame.type, frame.seq, frame.payload)
        if self._cache is not None and self._cache[0] == key:
            with self._lock:
                self._fifo.append(self._cache[1])  # a retry: same answer, not executed twice
            return
        try:
            if not P.is_request(frame.type):
                raise _Refuse(P.ErrorCode.UNKNOWN_TYPE, f"type 0x{frame.type:02X} is not a request")
            try:
                msg = P.decode_message(frame)
            except P.ProtocolError as exc:
                raise _Refuse(exc.code, str(exc), exc.arg0, exc.arg1) from None
            handler = self._HANDLERS.get(type(msg))
            if handler is None:
                raise _Refuse(P.ErrorCode.UNSUPPORTED, f"{type(msg).__name__} is not implemented by this firmware")
            reply, after = handler(self, msg, now), None
            if isinstance(reply, tuple):
                reply, after = reply
        except _Refuse as r:
            reply, after = P.error_message(r.code, frame.type, r.message, r.arg0, r.arg1), None
        except P.ProtocolError as exc:
            reply, after = P.error_message(exc.code, frame.type, str(exc), exc.arg0, exc.arg1), None
        wire = self._send(frame.seq, reply)
        self._cache = (key, wire)
        if after is not None:
            after()

    def _not_busy(self, what: str) -> None:
        if self._job is not None:
            raise _Refuse(
                P.ErrorCode.BUSY,
                f"cannot {what}: {'round' if self._job.kind == 'train' else 'evaluation'} {self._job.round_id} is running",
                self._job.round_id,
            )

    @staticmethod
    def _check_clock(hz: int) -> None:
        if not (P.SYSCLK_MIN_HZ <= hz <= P.SYSCLK_MAX_HZ) or hz % 1_000_000:
            raise _Refuse(P.ErrorCode.BAD_PARAM, f"sysclk_hz {hz} must be a whole number of MHz in 4..80 MHz", hz)

    def _h_hello(self, m: P.Hello, now: float) -> P.Message:
        proto = min(P.PROTOCOL_VERSION, m.proto_max)  # the highest version both speak
        if m.magic != P.MAGIC or proto < max(m.proto_min, P.PROTOCOL_MIN):
            raise _Refuse(
                P.ErrorCode.BAD_VERSION,
                f"board speaks {P.MAGIC.decode()} v{P.PROTOCOL_MIN}..{P.PROTOCOL_VERSION}; host offered magic {m.magic.hex().upper()} v{m.proto_min}..{m.proto_max}",
                P.PROTOCOL_VERSION,
            )
        return P.HelloRsp(P.MAGIC, proto, 0, P.MAX_PAYLOAD, *FW_VERSION, 1, TICK_HZ)

    def _h_ping(self, m: P.Ping, now: float) -> P.Message:
        return P.Pong(m.data)

    def _h_info(self, m: P.GetInfo, now: float) -> P.Message:
        return P.Info(
            *FW_VERSION,
            P.PROTOCOL_VERSION,
            0x461,
            0x1000,
            self.sysclk_hz,
            TICK_HZ,
            self.ram_total,
            self.ram_free,
            int(self.profile.flash_bytes),
            0x6C,
            1,
            0,
            "NUCLEO-L496ZG",
            "STM32L496ZG",
            "LSM6DSO",
            self.profile.name[:16],
        )

    def _reboot(self, now: float, reset_cause: int) -> None:
        if self._job is not None:
            self._abort_job(now)
        self._power_on(reset_cause=reset_cause, t=now)
        self._drop_edges_after(now)

    def _h_reset(self, m: P.Reset, now: float) -> Any:
        return P.Ack(P.MsgType.RESET), lambda: self._reboot(now, reset_cause=1)

    def _h_set_clock(self, m: P.SetClock, now: float) -> P.Message:
        self._not_busy("change the clock")
        self._check_clock(m.sysclk_hz)
        self.sysclk_hz = int(m.sysclk_hz)
        self._set_level(now, self._base_level())
        return P.Clock(self.sysclk_hz)

    def _h_status(self, m: P.GetStatus, now: float) -> P.Message:
        s0, s1 = self.slots.get(0), self.slots.get(1)
        return P.Status(
            int(self.state),
            int(self.model is not None),
            self._round_id,
            self._tick(now),
            self.ram_free,
            len(s0.y) if s0 else 0,
            len(s1.y) if s1 else 0,
            self.rx_frames & 0xFFFFFFFF,
            self.rx_errors & 0xFFFFFFFF,
            self.tx_dropped & 0xFFFFFFFF,
            0,
        )

    def _h_marker(self, m: P.SetMarker, now: float) -> P.Message:
        if not 1 <= m.pulse_us <= 10_000:
            raise _Refuse(P.ErrorCode.BAD_PARAM, f"pulse_us {m.pulse_us} outside 1..10000", m.pulse_us)
        self.marker_enabled = bool(m.enable)
        self.marker_pulse_s = m.pulse_us * 1e-6
        return P.Ack(P.MsgType.SET_MARKER)

    def _sensor_state(self) -> P.SensorState:
        return P.SensorState(
            P.odr_to_mhz(self.sensor.odr_hz),
            self.sensor.fs_g,
            int(self.streaming),
            self.block_len,
            P.LSM6DSO_SENS_NG[self.sensor.fs_g],
        )

    def _h_sensor_config(self, m: P.SensorConfig, now: float) -> P.Message:
        odr = P.check_odr_mhz(m.odr_mhz)
        self.sensor.configure(odr, P.check_fs_g(m.fs_g))
        if self.streaming:
            self._start_stream(now)  # the sample clock restarts at the new rate
        return self._sensor_state()

    def _h_stream_start(self, m: P.StreamStart, now: float) -> P.Message:
        self._not_busy("start the sensor stream")
        if not 1 <= m.block_len <= P.MAX_BLOCK_SAMPLES:
            raise _Refuse(
                P.ErrorCode.BAD_PARAM, f"block_len {m.block_len} outside 1..{P.MAX_BLOCK_SAMPLES}", m.block_len
            )
        if self.trace is None:
            raise _Refuse(P.ErrorCode.NO_DATA, "the emulated sensor has no recorded trace to play (pass trace=...)")
        self.block_len = int(m.block_len)
        self._start_stream(now)
        return self._sensor_state()

    def _h_stream_stop(self, m: P.StreamStop, now: float) -> P.Message:
        if self.streaming:
            self._advance_locked(now)
            self.streaming = False
            self._set_level(now, self._base_level())
        return self._sensor_state()

    def _h_get_sensor(self, m: P.GetSensor, now: float) -> P.Message:
        return self._sensor_state()

    def _activity_msg(self) -> P.Message:
        return P.Activity(self.sensor.activity, tuple(a[:16] for a in self.activities))

    def _h_sim_set_activity(self, m: P.SimSetActivity, now: float) -> P.Message:
        try:
            self.sensor.set_activity(m.activity, now)
        except P.ProtocolError as exc:
            raise _Refuse(P.ErrorCode.BAD_PARAM, str(exc)) from None
        return self._activity_msg()

    def _h_sim_get_activity(self, m: P.SimGetActivity, now: float) -> P.Message:
        return self._activity_msg()

    # --- transfers ---------------------------------------------------------------------------------
    def _h_model_begin(self, m: P.ModelBegin, now: float) -> P.Message:
        self._not_busy("replace the model")
        self._xfer = None
        self.model = self.arch = None  # the old model is freed first
        self._weights_snapshot = None
        if m.desc_len < P.DESC_HEADER.size or m.total_len < m.desc_len:
            raise _Refuse(
                P.ErrorCode.BAD_PARAM,
                f"desc_len {m.desc_len} / total_len {m.total_len} inconsistent (descriptor >= 16 bytes, total >= descriptor)",
            )
        avail = self.ram_free
        if m.total_len - m.desc_len > avail:
            raise _Refuse(
                P.ErrorCode.OUT_OF_RAM,
                f"model weights need {m.total_len - m.desc_len} B of RAM, {avail} B free "
                f"({self.ram_total} B SRAM - {self.reserve_bytes} B firmware - {self._data_bytes()} B datasets)",
                m.total_len - m.desc_len,
                avail,
            )
        self._xfer = _Transfer("model", m.total_len, m.crc32, desc_len=m.desc_len)
        return P.XferAck(0)

    def _chunk(self, kind: str, offset: int, data: bytes) -> _Transfer:
        x = self._xfer
        if x is None or x.kind != kind:
            raise _Refuse(P.ErrorCode.BAD_STATE, f"{kind} chunk without a {kind.upper()}_BEGIN")
        have = len(x.buf)
        if offset < have and offset + len(data) <= have:
            return x  # duplicate of a chunk already stored
        if offset != have:
            raise _Refuse(P.ErrorCode.BAD_OFFSET, f"chunk at offset {offset}, expected {have}", have, offset)
        if have + len(data) > x.total:
            self._xfer = None
            raise _Refuse(
                P.ErrorCode.TOO_LARGE,
                f"chunk ends at {have + len(data)}, beyond the announced {x.total} bytes",
                have + len(data),
                x.total,
            )
        x.buf += data
        return x

    def _h_model_chunk(self, m: P.ModelChunk, now: float) -> P.Message:
        x = self._chunk("model", m.offset, m.data)
        if x.arch is None and len(x.buf) >= x.desc_len:
            try:
                x.arch = self._parse_descriptor(bytes(x.buf[: x.desc_len]), x.total - x.desc_len)
            except _Refuse:
                self._xfer = None
                raise
        return P.XferAck(len(x.buf))

    def _parse_descriptor(self, desc: bytes, weight_bytes: int) -> Any:
        from device.engine.graph import lower
        from estimator.arch import ArchError
        from estimator.memory import training_memory

        try:
            arch = P.decode_arch(desc)
        except P.UnknownLayerError as exc:
            raise _Refuse(P.ErrorCode.UNKNOWN_LAYER, str(exc), exc.index, exc.kind_code) from None
        except P.ProtocolError as exc:
            raise _Refuse(exc.code, f"architecture descriptor: {exc}", exc.arg0, exc.arg1) from None
        try:
            lower(arch, None)
        except (ArchError, ValueError) as exc:
            idx = P.named_layer_index(exc, arch.layers, 0xFFFFFFFF)
            kind = P.KIND_CODES.get(arch.layers[idx].kind, 0) if idx != 0xFFFFFFFF else 0
            raise _Refuse(P.ErrorCode.UNKNOWN_LAYER, f"unsupported network: {exc}", idx, kind) from None
        if weight_bytes != 4 * arch.params:
            raise _Refuse(
                P.ErrorCode.BAD_PARAM,
                f"blob carries {weight_bytes} weight bytes, the architecture has {arch.params} float32 parameters ({4 * arch.params} B)",
                weight_bytes,
                4 * arch.params,
            )
        need = training_memory(arch, frozenset()).paper_bytes + self.reserve_bytes + self._data_bytes()
        if need > self.ram_total:
            raise _Refuse(
                P.ErrorCode.OUT_OF_RAM,
                f"model needs {need} B for inference (weights + activations + {self.reserve_bytes} B firmware + {self._data_bytes()} B datasets), SRAM is {self.ram_total} B",
                need,
                self.ram_total,
            )
        return arch

    def _h_model_end(self, m: P.ModelEnd, now: float) -> P.Message:
        from device.engine.model import Model

        x = self._xfer
        if x is None or x.kind != "model":
            raise _Refuse(P.ErrorCode.BAD_STATE, "MODEL_END without a MODEL_BEGIN")
        self._xfer = None
        if len(x.buf) != x.total or x.arch is None:
            raise _Refuse(
                P.ErrorCode.BAD_OFFSET,
                f"model transfer incomplete: {len(x.buf)} of {x.total} bytes",
                len(x.buf),
                x.total,
            )
        c = crc32(x.buf)
        if c != x.crc:
            raise _Refuse(
                P.ErrorCode.BLOB_CRC, f"model blob CRC-32 0x{c:08X} does not match announced 0x{x.crc:08X}", x.crc, c
            )
        weights = P.decode_weights(x.arch, bytes(x.buf[x.desc_len :]))
        self.model = Model(x.arch, weights, seed=self.seed)
        self.arch = x.arch
        self._model_blob_crc = c
        s = tuple(x.arch.input_shape) + (0, 0)
        from estimator.memory import training_memory

        return P.ModelInfo(
            len(x.arch.layers),
            x.arch.n_classes,
            len(x.arch.input_shape),
            P.PREPROCESSING_CODES[x.arch.preprocessing],
            s[0],
            s[1],
            s[2],
            0,
            x.arch.params,
            4 * x.arch.params,
            training_memory(x.arch, frozenset()).paper_bytes,
            self.ram_free,
            c,
        )

    def _data_state(self, slot: int) -> P.DataState:
        s = self.slots.get(slot)
        if s is None:
            return P.DataState(slot, 0, 0, 0, 0, 0, 0, self.ram_free)
        return P.DataState(slot, 0, len(s.y), s.x.shape[1], s.x.shape[2], int(s.dtype), s.nbytes, self.ram_free)

    def _h_data_clear(self, m: P.DataClear, now: float) -> P.Message:
        self._not_busy("clear the datasets")
        if m.slot not in (0, 1, 0xFF):
            raise _Refuse(P.ErrorCode.BAD_PARAM, f"slot {m.slot} is not 0 (training), 1 (held) or 255 (both)", m.slot)
        for s in (0, 1) if m.slot == 0xFF else (m.slot,):
            self.slots.pop(s, None)
        return self._data_state(0 if m.slot == 0xFF else m.slot)

    def _h_data_begin(self, m: P.DataBegin, now: float) -> P.Message:
        self._not_busy("upload data")
        if m.slot not in (0, 1):
            raise _Refuse(P.ErrorCode.BAD_PARAM, f"slot {m.slot} is not 0 (training) or 1 (held)", m.slot)
        avail = self.ram_free
        if m.total_len > avail:
            raise _Refuse(
                P.ErrorCode.OUT_OF_RAM, f"dataset of {m.total_len} B does not fit: {avail} B free", m.total_len, avail
            )
        self._xfer = _Transfer("data", m.total_len, m.crc32, slot=m.slot)
        return P.XferAck(0)

    def _h_data_chunk(self, m: P.DataChunk, now: float) -> P.Message:
        return P.XferAck(len(self._chunk("data", m.offset, m.data).buf))

    def _h_data_end(self, m: P.DataEnd, now: float) -> P.Message:
        x = self._xfer
        if x is None or x.kind != "data":
            raise _Refuse(P.ErrorCode.BAD_STATE, "DATA_END without a DATA_BEGIN")
        self._xfer = None
        if len(x.buf) != x.total:
            raise _Refuse(
                P.ErrorCode.BAD_OFFSET,
                f"dataset transfer incomplete: {len(x.buf)} of {x.total} bytes",
                len(x.buf),
                x.total,
            )
        c = crc32(x.buf)
        if c != x.crc:
            raise _Refuse(
                P.ErrorCode.BLOB_CRC, f"dataset blob CRC-32 0x{c:08X} does not match announced 0x{x.crc:08X}", x.crc, c
            )
        xs, ys, dt, _ = P.decode_dataset(bytes(x.buf))
        nbytes = len(ys) + xs.size * (4 if dt == P.DType.F32 else 2)
        old = self.slots.get(x.slot)
        if old is not None:
            if old.x.shape[1:] != xs.shape[1:]:
                raise _Refuse(
                    P.ErrorCode.BAD_PARAM,
                    f"windows of shape {xs.shape[1:]} cannot join slot {x.slot} holding {old.x.shape[1:]}",
                )
            xs, ys, nbytes = np.concatenate([old.x, xs]), np.concatenate([old.y, ys]), old.nbytes + nbytes
            if len(ys) > 0xFFFF:
                raise _Refuse(
                    P.ErrorCode.TOO_LARGE, f"slot {x.slot} would hold {len(ys)} windows (max 65535)", len(ys), 0xFFFF
                )
        self.slots[x.slot] = _Slot(xs, ys, nbytes, dt)
        return self._data_state(x.slot)

    def _h_weights_info(self, m: P.WeightsInfo, now: float) -> P.Message:
        self._not_busy("read the weights")
        if self.model is None:
            raise _Refuse(P.ErrorCode.NO_MODEL, "no model loaded")
        self._weights_snapshot = P.encode_weights(self.arch, self.model.get_weights())
        n_tensors = sum(len(v) for v in self.arch.param_shapes().values())
        return P.WeightsMeta(len(self._weights_snapshot), crc32(self._weights_snapshot), n_tensors, 0)

    def _h_weights_read(self, m: P.WeightsRead, now: float) -> P.Message:
        snap = self._weights_snapshot
        if snap is None:
            raise _Refuse(P.ErrorCode.BAD_STATE, "WEIGHTS_READ before WEIGHTS_INFO")
        if m.offset > len(snap) or m.length == 0 or m.length > P.MAX_PAYLOAD - 4:
            raise _Refuse(
                P.ErrorCode.BAD_PARAM,
                f"read of {m.length} B at {m.offset} outside the {len(snap)}-byte blob (length 1..{P.MAX_PAYLOAD - 4})",
                m.offset,
                m.length,
            )
        return P.WeightsData(m.offset, snap[m.offset : m.offset + m.length])

    # --- training and evaluation --------------------------------------------------------------------
    def _trainable(self, m: P.TrainStart) -> frozenset:
        from estimator.arch import ArchError, resolve_trainable

        try:
            if m.mode == P.TrainMode.MASK:
                names = [l.name for i, l in enumerate(self.arch.layers) if m.layer_mask >> i & 1]
                if not names or m.layer_mask >> len(self.arch.layers):
                    raise _Refuse(
                        P.ErrorCode.BAD_PARAM,
                        f"layer_mask 0x{m.layer_mask:X} selects no layer or layers beyond {len(self.arch.layers)}",
                        m.mode,
                    )
                return resolve_trainable(self.arch, names)
            modes: dict[int, str] = {P.TrainMode.FULL: "full", P.TrainMode.TL: "tl", P.TrainMode.LAST: "last"}
            mode = modes.get(m.mode)
            if mode is None:
                raise _Refuse(
                    P.ErrorCode.BAD_PARAM, f"training mode {m.mode} is not 0 full, 1 tl, 2 last or 3 mask", m.mode
                )
            return resolve_trainable(self.arch, mode)
        except ArchError as exc:
            raise _Refuse(P.ErrorCode.BAD_PARAM, str(exc), m.mode) from None

    def _slot_for_model(self, slot: int) -> _Slot:
        s = self.slots.get(slot)
        if s is None or len(s.y) == 0:
            raise _Refuse(
                P.ErrorCode.NO_DATA, f"slot {slot} ({'training' if slot == 0 else 'held'} set) is empty", slot
            )
        want = tuple(self.arch.input_shape)
        flat = (want[0], int(np.prod(want[1:])))
        if s.x.shape[1:] != flat:
            raise _Refuse(P.ErrorCode.BAD_PARAM, f"slot {slot} windows are {s.x.shape[1:]}, the model takes {want}")
        if int(s.y.max()) >= self.arch.n_classes:
            raise _Refuse(
                P.ErrorCode.BAD_PARAM,
                f"slot {slot} has label {int(s.y.max())}, the model has {self.arch.n_classes} classes",
                int(s.y.max()),
                self.arch.n_classes,
            )
        return s

    def round_memory_bytes(self, trainable: frozenset, warmup: bool, m: P.TrainStart | None = None) -> int:
        """The round's training memory, ROUND_INFO's mem_bytes: the estimator's paper accounting (model +
        gradients + buffers, the paper's Table III), the maximum over the round's phases, + what a robust
        round (protocol v2) keeps besides: the best epoch's weights, the L2-SP anchor, the confusion counts
        (``estimator.memory.robust_round_bytes``)."""
        from estimator.arch import resolve_trainable
        from estimator.memory import robust_round_bytes, training_memory

        paper = training_memory(self.arch, trainable).paper_bytes
        if warmup:
            paper = max(paper, training_memory(self.arch, resolve_trainable(self.arch, "last")).paper_bytes)
        if m is not None and m.extended:
            paper += robust_round_bytes(
                self.arch,
                trainable,
                warmup,
                validate=m.n_val > 0,
                restore_best=bool(m.n_val and m.val_flags & P.ValFlags.RESTORE_BEST),
                l2sp=m.l2sp > 0 and m.epochs > 0,
            )
        return int(paper)

    def training_memory_bytes(self, trainable: frozenset, warmup: bool, m: P.TrainStart | None = None) -> int:
        """RAM a round needs (what OUT_OF_RAM checks): its training memory + firmware reserve + stored
        datasets (both slots, in the bytes the board actually holds)."""
        return self.round_memory_bytes(trainable, warmup, m) + self.reserve_bytes + self._data_bytes()

    def batch_seconds(self, trainable: frozenset, n: int) -> float:
        """Simulated duration of one batch of ``n`` windows: the estimator's cost model at the current clock."""
        from estimator.core import time_per_batch_s

        return float(time_per_batch_s(self.arch, trainable, n, self.profile, float(self.sysclk_hz)))

    def _h_train_start(self, m: P.TrainStart, now: float) -> Any:
        self._not_busy("start a round")
        if self.streaming:
            raise _Refuse(P.ErrorCode.BUSY, "cannot train while the sensor streams: send STREAM_STOP first")
        if self.model is None:
            raise _Refuse(P.ErrorCode.NO_MODEL, "no model loaded: upload one first")
        slot = self._slot_for_model(0)
        if m.epochs + m.warmup_epochs < 1 or m.batch < 1:
            raise _Refuse(
                P.ErrorCode.BAD_PARAM,
                f"epochs {m.epochs} + warmup {m.warmup_epochs} must be >= 1 and batch {m.batch} >= 1",
            )
        for name, lr in (("lr", m.lr), ("warmup_lr", m.warmup_lr)):
            if not (math.isfinite(lr) and 0 <= lr <= 10):
                raise _Refuse(P.ErrorCode.BAD_PARAM, f"{name} {lr} outside 0..10")
        self._check_robust(m, len(slot.y))
        trainable = self._trainable(m)
        from estimator.arch import resolve_trainable

        last = resolve_trainable(self.arch, "last") if m.warmup_epochs else frozenset()
        need = self.training_memory_bytes(trainable, bool(m.warmup_epochs), m)
        if need > self.ram_total:
            raise _Refuse(
                P.ErrorCode.OUT_OF_RAM,
                f"round needs {need} B (training buffers + {self.reserve_bytes} B firmware + {self._data_bytes()} B datasets), SRAM is {self.ram_total} B",
                need,
                self.ram_total,
            )
        n_val = int(m.n_val)
        n = len(slot.y) - n_val  # protocol v2: the last n_val windows are the validation set
        per_epoch = math.ceil(n / m.batch)
        f = float(self.sysclk_hz)
        batches: list[_Batch] = []
        t = 0.0  # relative to the round start; made absolute when the plan is registered (below)
        phases = [(P.Phase.WARMUP, e, last, m.warmup_lr) for e in range(m.warmup_epochs)]
        phases += [(P.Phase.MAIN, e, trainable, m.lr) for e in range(m.epochs)]
        val_idx = np.arange(n, n + n_val)
        d_val = n_val * self.val_seconds_per_window() if n_val else 0.0

        def val_pass(done_epochs: int) -> None:
            nonlocal t
            batches.append(
                _Batch(-1, done_epochs, 0, 1, val_idx, frozenset(), 0.0, t, t + d_val, int(round(d_val * f)), "val")
            )
            t += d_val

        if n_val:
            val_pass(0)
        for gepoch, (phase, epoch, names, lr) in enumerate(phases):
            # the firmware's memory-free permutation (docs/protocol.md §5.4), so both boards visit the same order
            order = epoch_order(m.seed, gepoch, n) if m.flags & 1 else np.arange(n)
            for ib in range(per_epoch):
                idx = order[ib * m.batch : (ib + 1) * m.batch]
                d = self.batch_seconds(names, len(idx))
                batches.append(
                    _Batch(int(phase), epoch, ib, per_epoch, idx, names, float(lr), t, t + d, int(round(d * f)))
                )
                t += d
            if n_val:
                val_pass(gepoch + 1)
        self._round_id = (self._round_id + 1) & 0xFFFF
        job = _Job("train", self._round_id)
        self._job = job
        # Timeline: run current for the whole round, D7 edge at the start and at every batch end.  The
        # round starts when its plan is registered, read from the clock under the timeline lock: the
        # LPM01A measures on another thread and may already be past the time the request arrived, and
        # an edge stamped in its past would never be reported (a lost D7 event).
        run, base = self.run_current_a(), self._base_level()
        with self._tl_lock:
            now = max(now, float(self.clock.now()))
            for b in batches:
                b.start += now
                b.end += now
            t += now
            self._set_level_locked(now, run)
            self._tl_t.append(t)
            self._tl_i.append(float(base))
            if self.marker_enabled:
                self._edges.extend([now] + [b.end for b in batches])
        info = P.RoundInfo(
            job.round_id,
            per_epoch,
            sum(1 for b in batches if b.kind == "train"),
            self.round_memory_bytes(trainable, bool(m.warmup_epochs), m),
            self.ram_total,
            sum(b.cycles for b in batches),
            self._tick(t) - self._tick(now),
        )

        def start() -> None:
            job.thread = threading.Thread(
                target=self._run_round,
                args=(job, batches, slot, now, m, trainable),
                name=f"nucleo-round-{job.round_id}",
                daemon=True,
            )
            job.thread.start()

        return info, start

    def _check_robust(self, m: P.TrainStart, n: int) -> None:
        """Protocol v2 fields of TRAIN_START (all off in a 28-byte request)."""
        if m.n_val and m.n_val >= n:
            raise _Refuse(
                P.ErrorCode.BAD_PARAM, f"n_val {m.n_val} leaves no training window (slot 0 holds {n})", m.n_val, n
            )
        if (m.patience or m.val_flags) and not m.n_val:
            raise _Refuse(P.ErrorCode.BAD_PARAM, "patience and val_flags need validation windows (n_val > 0)")
        if m.val_flags & ~0x3:
            raise _Refuse(
                P.ErrorCode.BAD_PARAM, f"val_flags 0x{m.val_flags:X}: only bits 0, 1 are defined", m.val_flags
            )
        for name, v, hi in (("feature_lr_scale", m.feature_lr_scale, 10.0), ("clip_norm", m.clip_norm, 1e6)):
            if not (math.isfinite(v) and 0 <= v <= hi):
                raise _Refuse(P.ErrorCode.BAD_PARAM, f"{name} {v} outside 0..{hi:g}")
        if not (math.isfinite(m.l2sp) and 0 <= m.l2sp <= 100):
            raise _Refuse(P.ErrorCode.BAD_PARAM, f"l2sp {m.l2sp} outside 0..100")
        if m.n_val and self.arch.n_classes > 255:
            raise _Refuse(P.ErrorCode.TOO_LARGE, f"{self.arch.n_classes} classes: validation supports up to 255")

    def val_seconds_per_window(self) -> float:
        """Simulated duration of one validation window: a forward pass (the estimator's cost model)."""
        from estimator.core import time_per_sample_s

        return float(time_per_sample_s(self.arch, frozenset(), self.profile, float(self.sysclk_hz)))

    def _wait_until(self, t_sim: float, job: _Job) -> bool:
        """Sleep until simulated time ``t_sim``; False if the job was aborted meanwhile."""
        while True:
            if job.abort.is_set():  # a batch that ended before the abort still completed
                return job.abort_t is not None and t_sim <= job.abort_t
            now = float(self.clock.now())
            if now >= t_sim:
                return True
            wall = (t_sim - now) / float(self.clock.time_scale)
            job.abort.wait(min(max(wall, 0.0005), 0.05))

    def _run_round(
        self,
        job: _Job,
        batches: list[_Batch],
        slot: _Slot,
        t0: float,
        m: P.TrainStart | None = None,
        trainable: frozenset = frozenset(),
    ) -> None:
        from device.engine import StepOptions
        from device.engine.train import _better

        model = self.model
        x_all = slot.x.reshape((len(slot.y), *self.arch.input_shape))
        y_all = slot.y
        n_train = len(y_all) - (int(m.n_val) if m is not None else 0)
        done = 0
        cycles = 0
        epoch_stats: dict[tuple[int, int], list[float]] = {}
        status, error = P.RoundStatus.DONE, 0
        step = None
        if m is not None and m.epochs and (m.feature_lr_scale != 1.0 or m.clip_norm > 0 or m.l2sp > 0):
            anchor = model.anchor(trainable) if m.l2sp > 0 else None
            step = StepOptions(float(m.feature_lr_scale), float(m.clip_norm), float(m.l2sp), anchor)
        restore = m is not None and bool(m.n_val) and bool(m.val_flags & P.ValFlags.RESTORE_BEST)
        metric = "f1" if m is not None and m.val_flags & P.ValFlags.SELECT_F1 else "loss"
        best: tuple[float, float] | None = None
        best_w = None
        best_epoch = 0
        at_best = True
        since = 0
        stopped_at: float | None = None
        try:
            for k, b in enumerate(batches):
                if b.kind == "val":
                    xv, yv = x_all[b.idx], y_all[b.idx]
                    v = model.val_scores(xv, model.targets(yv, len(yv)))
                    is_best = best is None or _better(v, best, metric)
                    if is_best:
                        best, best_epoch, since, at_best = v, b.epoch, 0, True
                        if restore:
                            best_w = model.get_weights()
                    else:
                        since += 1
                    if not self._wait_until(b.end, job):
                        break
                    cycles += b.cycles
                    self._emit(
                        P.ValReport(
                            job.round_id,
                            b.epoch,
                            len(yv),
                            int(is_best),
                            0,
                            v[0],
                            v[1],
                            self._tick(b.start),
                            self._tick(b.end),
                            b.cycles,
                        )
                    )
                    if m is not None and m.patience and since >= m.patience and k + 1 < len(batches):
                        stopped_at = b.end  # early stop: the rest of the plan never runs
                        break
                    continue
                snapshot = model.get_weights()
                res = model.train_batch(
                    x_all[b.idx], y_all[b.idx], b.lr, b.trainable, step=step if b.phase == P.Phase.MAIN else None
                )
                at_best = False
                if not self._wait_until(b.end, job):
                    model.set_weights(snapshot)  # the interrupted batch never reached its update
                    break
                s = epoch_stats.setdefault((b.phase, b.epoch), [0.0, 0, 0])
                s[0] += res.loss * res.n
                s[1] += res.n
                s[2] += res.correct
                done += 1
                cycles += b.cycles
                self._emit(
                    P.BatchReport(
                        job.round_id,
                        b.phase,
                        0,
                        b.epoch,
                        b.index,
                        b.per_epoch,
                        res.n,
                        res.loss,
                        self._tick(b.start),
                        self._tick(b.end),
                        b.cycles,
                    )
                )
            if restore and best_w is not None and not at_best and not job.abort.is_set():
                model.set_weights(best_w)  # the board copies the best epoch's weights back
        except Exception as exc:  # noqa: BLE001 - reported to the host, never kills the bench
            status, error = P.RoundStatus.FAILED, P.ErrorCode.INTERNAL
            self._emit(P.Log(3, f"round {job.round_id} failed: {exc}"[:200]))
        n_items = sum(1 for b in batches if b.kind == "train")
        with self._lock:
            trained = [b for b in batches if b.kind == "train"][:done]
            end = trained[-1].end if trained else t0
            if stopped_at is not None:
                end = stopped_at
                self._set_level(end, self._base_level())
                self._drop_edges_after(end)
            elif m is not None and m.n_val and done == n_items and not job.abort.is_set():
                end = batches[-1].end
            if job.abort.is_set():
                status = P.RoundStatus.ABORTED
                end = job.abort_t if job.abort_t is not None else end
                if done < n_items:
                    nxt = [b for b in batches if b.kind == "train"][done]
                    cycles += int(round(max(0.0, end - nxt.start) * self.sysclk_hz))
            elif status == P.RoundStatus.FAILED:
                end = float(self.clock.now())
                self._set_level(end, self._base_level())
                self._drop_edges_after(end)
            full_epochs = sum(1 for k, v in epoch_stats.items() if v[1] == n_train)
            last = epoch_stats[max(epoch_stats)] if epoch_stats else [0.0, 0, 0]
            loss = last[0] / last[1] if last[1] else 0.0
            acc = last[2] / last[1] if last[1] else 0.0
            if self._job is job:
                self._job = None
            self._emit(
                P.RoundDone(
                    job.round_id,
                    int(status),
                    int(error),
                    full_epochs,
                    best_epoch if best is not None else 0,
                    done,
                    loss,
                    acc,
                    self._tick(t0),
                    self._tick(end),
                    cycles,
                )
            )

    def _abort_job(self, now: float) -> None:
        job = self._job
        if job is None:
            return
        job.abort_t = now
        self._set_level(now, self._base_level())
        self._drop_edges_after(now)
        job.abort.set()

    def _h_train_abort(self, m: P.TrainAbort, now: float) -> P.Message:
        if self._job is not None and self._job.kind == "train":
            self._abort_job(now)
        return P.Ack(P.MsgType.TRAIN_ABORT)

    def _h_evaluate(self, m: P.Evaluate, now: float) -> Any:
        from estimator.core import time_per_sample_s

        self._not_busy("evaluate")
        if self.model is None:
            raise _Refuse(P.ErrorCode.NO_MODEL, "no model loaded")
        if m.slot not in (0, 1):
            raise _Refuse(P.ErrorCode.BAD_PARAM, f"slot {m.slot} is not 0 or 1", m.slot)
        if self.arch.n_classes > 22:
            raise _Refuse(
                P.ErrorCode.TOO_LARGE,
                f"{self.arch.n_classes} classes: the confusion matrix would not fit one frame (max 22)",
            )
        slot = self._slot_for_model(m.slot)
        n = len(slot.y)
        d = n * float(time_per_sample_s(self.arch, frozenset(), self.profile, float(self.sysclk_hz)))
        self._round_id = (self._round_id + 1) & 0xFFFF
        job = _Job("eval", self._round_id)
        self._job = job
        self._set_level(now, self.run_current_a())
        self._schedule_level(now + d, self._base_level())
        cycles = int(round(d * self.sysclk_hz))

        def start() -> None:
            job.thread = threading.Thread(
                target=self._run_eval, args=(job, slot, m.slot, now + d, cycles), name="nucleo-eval", daemon=True
            )
            job.thread.start()

        return P.Ack(P.MsgType.EVALUATE), start

    def _run_eval(self, job: _Job, slot: _Slot, slot_id: int, t_end: float, cycles: int) -> None:
        try:
            x = slot.x.reshape((len(slot.y), *self.arch.input_shape))
            probs = self.model.predict(x)
            eps = 1e-7
            loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(slot.y)), slot.y], eps, 1.0))))
            k = self.arch.n_classes
            conf = np.zeros((k, k), np.int64)
            np.add.at(conf, (slot.y, probs.argmax(axis=1)), 1)
            self._wait_until(t_end, job)
            msg: P.Message = P.EvalResult(
                slot_id, k, len(slot.y), loss, cycles, np.minimum(conf, 0xFFFF).astype(np.uint16).ravel()
            )
        except Exception as exc:  # noqa: BLE001
            msg = P.Log(3, f"evaluation failed: {exc}"[:200])
        with self._lock:
            if self._job is job:
                self._job = None
            self._emit(msg)

    def wait_idle(self, timeout: float) -> bool:
        """Test helper: wait (wall seconds) until no round/evaluation runs."""
        job = self._job
        if job is None or job.thread is None:
            return True
        job.thread.join(timeout)
        return not job.thread.is_alive()

    _HANDLERS: dict[type, Callable[..., Any]] = {
        P.Hello: _h_hello,
        P.Ping: _h_ping,
        P.GetInfo: _h_info,
        P.Reset: _h_reset,
        P.SetClock: _h_set_clock,
        P.GetStatus: _h_status,
        P.SetMarker: _h_marker,
        P.SensorConfig: _h_sensor_config,
        P.StreamStart: _h_stream_start,
        P.StreamStop: _h_stream_stop,
        P.GetSensor: _h_get_sensor,
        P.ModelBegin: _h_model_begin,
        P.ModelChunk: _h_model_chunk,
        P.ModelEnd: _h_model_end,
        P.DataClear: _h_data_clear,
        P.DataBegin: _h_data_begin,
        P.DataChunk: _h_data_chunk,
        P.DataEnd: _h_data_end,
        P.TrainStart: _h_train_start,
        P.TrainAbort: _h_train_abort,
        P.Evaluate: _h_evaluate,
        P.WeightsInfo: _h_weights_info,
        P.WeightsRead: _h_weights_read,
        P.SimSetActivity: _h_sim_set_activity,
        P.SimGetActivity: _h_sim_get_activity,
    }


__all__ = ["NucleoEmulator", "NucleoFaults", "TraceError", "TICK_HZ", "K_SLEEP_A_PER_HZ", "STREAM_CYCLES_PER_SAMPLE"]
