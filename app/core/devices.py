"""Device manager: discovery, per-device state machine, I/O threads, auto-reconnect (Qt-free).

Devices are the NUCLEO board (accelerometer stream, training rounds; :mod:`device.nucleo.client`) and the
X-NUCLEO-LPM01A power shield (current at up to 100 kS/s; :mod:`device.lpm01a`).  Real ones are found by
USB VID:PID (:mod:`device.discovery`); without hardware the manager starts the in-process
:class:`device.bench.VirtualBench` and lists its endpoints as *virtual* devices.  The same driver code
serves both.

Threads: each connected device has one *session thread* that executes the commands the GUI enqueues
(connect, configure, start/stop stream), watches the link (a heartbeat request every second) and
reconnects after a loss.  The drivers' own reader threads push samples straight into the
:class:`~app.core.streams.SampleStream` buffers.  The GUI never calls device I/O: it calls the
non-blocking methods here and *pulls* :meth:`DeviceManager.snapshot` / :attr:`DeviceManager.version` on
its frame timer.

Timeline: both streams share the manager's clock (seconds since the manager started).  A stream starts
where the host clock is when streaming first starts; after a reconnect the missing time is appended as a
marked gap (:meth:`SampleStream.append_gap`), so earlier data stay where they were.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

import numpy as np

from app.core.streams import SampleStream

__all__ = ["DeviceState", "DeviceInfo", "DeviceStatus", "DeviceManager", "DeviceError", "ACCEL_ODR_HZ",
           "ACCEL_FS_G", "POWER_RATES_HZ"]

log = logging.getLogger(__name__)

#: Accelerometer choices offered in the UI (LSM6DSO ladder; mirrors device.nucleo.protocol).
ACCEL_ODR_HZ = (12.5, 26.0, 52.0, 104.0, 208.0, 417.0, 833.0, 1667.0)
ACCEL_FS_G = (2, 4, 8, 16)
POWER_RATES_HZ = (1_000, 10_000, 50_000, 100_000)
G = 9.80665


class DeviceError(RuntimeError):
    """A device operation that cannot be done; the message names the device and the reason."""


class DeviceState(str, enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    READY = "ready"
    STREAMING = "streaming"
    TRAINING = "training"
    ERROR = "error"


@dataclass(frozen=True)
class DeviceInfo:
    """A discovered device (real or virtual).  ``key`` is stable for the app session."""

    key: str
    kind: str  # 'board' | 'powershield'
    url: str
    name: str
    virtual: bool = False
    vid_pid: str = ""
    serial_number: str | None = None


@dataclass(frozen=True)
class DeviceStatus:
    """What the GUI shows for a device (an immutable snapshot)."""

    info: DeviceInfo
    state: DeviceState
    message: str = ""
    details: dict = field(default_factory=dict)  # firmware, sensor config, counters...
    auto_reconnect: bool = True
    reconnects: int = 0


class _Session:
    """One device's connection, driven by its session thread.  Subclasses implement the driver calls."""

    heartbeat_s = 1.0

    def __init__(self, manager: "DeviceManager", info: DeviceInfo):
        self.m = manager
        self.info = info
        self.state = DeviceState.DISCONNECTED
        self.message = ""
        self.details: dict = {}
        self.auto_reconnect = True
        self.reconnects = 0
        self.want_stream = False
        self.want_connected = False
        self._q: queue.Queue[tuple[str, tuple]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._next_try = 0.0
        self._backoff = 0.5
        self._last_beat = 0.0
        self.lost_at: float | None = None

    # --- called from any thread ---------------------------------------------------------------------
    def submit(self, cmd: str, *args: Any) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"dev-{self.info.kind}", daemon=True)
            self._thread.start()
        self._q.put((cmd, args))

    def shutdown(self, timeout: float = 3.0) -> None:
        if self._thread and self._thread.is_alive():
            self._q.put(("disconnect", ()))
            self._q.put(("quit", ()))
            self._thread.join(timeout)
        self._stop.set()

    def status(self) -> DeviceStatus:
        return DeviceStatus(self.info, self.state, self.message, dict(self.details), self.auto_reconnect,
                            self.reconnects)

    # --- session thread ---------------------------------------------------------------------------
    def _set(self, state: DeviceState, message: str = "") -> None:
        self.state, self.message = state, message
        self.m._changed()  # noqa: SLF001

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                cmd, args = self._q.get(timeout=0.1)
            except queue.Empty:
                cmd, args = "", ()
            if cmd == "quit":
                return
            try:
                if cmd:
                    getattr(self, "_cmd_" + cmd)(*args)
                self._tick()
            except Exception as exc:  # noqa: BLE001 - any driver error is a link problem for the user
                self._link_lost(exc)

    def _tick(self) -> None:
        now = time.monotonic()
        if self.state in (DeviceState.READY, DeviceState.STREAMING) and now - self._last_beat >= self.heartbeat_s:
            self._last_beat = now
            if not self.alive():
                raise DeviceError(f"{self.info.name}: link lost")
        if self.want_connected and self.state == DeviceState.ERROR and self.auto_reconnect and now >= self._next_try:
            self.reconnects += 1
            self._connect(reconnect=True)

    def _cmd_connect(self) -> None:
        self.want_connected = True
        if self.state in (DeviceState.DISCONNECTED, DeviceState.ERROR):
            self._connect(reconnect=False)

    def _connect(self, reconnect: bool) -> None:
        self._set(DeviceState.CONNECTING, "reconnecting…" if reconnect else "opening…")
        try:
            self.close_link()
            self.open()
        except Exception as exc:  # noqa: BLE001
            self._next_try = time.monotonic() + self._backoff
            self._backoff = min(5.0, self._backoff * 2)
            self.close_link()
            self._set(DeviceState.ERROR, f"{'reconnect' if reconnect else 'connect'} failed: {exc}")
            return
        self._backoff = 0.5
        self._last_beat = time.monotonic()
        self._set(DeviceState.READY, "reconnected" if reconnect else "")
        if self.want_stream:
            self._cmd_stream(True)

    def _cmd_disconnect(self) -> None:
        self.want_connected = False
        self.want_stream = False
        try:
            if self.state == DeviceState.STREAMING:
                self.stop_stream()
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        self.close_link()
        self._set(DeviceState.DISCONNECTED)

    def _cmd_stream(self, on: bool) -> None:
        self.want_stream = bool(on)
        if self.state not in (DeviceState.READY, DeviceState.STREAMING):
            return
        if on and self.state == DeviceState.READY:
            self.start_stream()
            self._set(DeviceState.STREAMING)
        elif not on and self.state == DeviceState.STREAMING:
            self.stop_stream()
            self._set(DeviceState.READY)

    def _cmd_call(self, fn: Callable[[], Any], done: Callable[[Any, BaseException | None], None] | None) -> None:
        try:
            result, err = fn(), None
        except Exception as exc:  # noqa: BLE001
            result, err = None, exc
        if done is not None:
            done(result, err)

    def _link_lost(self, exc: BaseException) -> None:
        log.warning("%s: %s", self.info.name, exc)
        self.lost_at = self.m.now()
        self.close_link()
        self._next_try = time.monotonic() + self._backoff
        self._set(DeviceState.ERROR, f"link lost: {exc}" + ("; reconnecting" if self.auto_reconnect else ""))

    # --- driver hooks ------------------------------------------------------------------------------
    def open(self) -> None: ...
    def close_link(self) -> None: ...
    def alive(self) -> bool: return True
    def start_stream(self) -> None: ...
    def stop_stream(self) -> None: ...


class _BoardSession(_Session):
    """NUCLEO board through :class:`device.nucleo.client.NucleoClient`; samples -> the accel stream."""

    def __init__(self, manager: "DeviceManager", info: DeviceInfo):
        super().__init__(manager, info)
        self.client: Any = None
        self.odr_hz = 52.0
        self.fs_g = 4
        self._tick0: int | None = None
        self._t_origin = 0.0
        self._tick_hz = 1_000_000
        self._sens = 122_000e-9 * G

    def open(self) -> None:
        from device.nucleo.client import NucleoClient

        self.client = NucleoClient.open(self.info.url, timeout=1.0, on_event=self._on_event)
        hello = self.client.hello()
        info = self.client.info()
        self._tick_hz = int(info.tick_hz) or 1_000_000
        self.details = {
            "firmware": f"{info.fw_major}.{info.fw_minor}.{info.fw_patch}", "protocol": info.proto,
            "board": info.board, "mcu": info.mcu, "sensor": info.sensor, "build": info.build,
            "sysclk_MHz": info.sysclk_hz / 1e6, "ram_free": info.ram_free, "emulated": bool(hello.flags & 1),
        }
        self._apply_config()

    def _apply_config(self) -> None:
        st = self.client.sensor_config(self.odr_hz, self.fs_g)
        self._sens = st.sens_ng * 1e-9 * G
        self.details.update({"odr_hz": st.odr_mhz / 1000.0, "fs_g": st.fs_g})
        self.m._ensure_accel_stream(st.odr_mhz / 1000.0)  # noqa: SLF001

    def close_link(self) -> None:
        if self.client is not None:
            c, self.client = self.client, None
            c.on_event = None
            c.close()

    def alive(self) -> bool:
        st = self.client.status()
        self.details.update({"tx_dropped": st.tx_dropped, "rx_errors": st.rx_errors})
        return True

    def start_stream(self) -> None:
        self._tick0 = None
        self.client.stream_start(block_len=max(1, min(160, int(self.odr_hz / 4) or 1)))

    def stop_stream(self) -> None:
        self.client.stream_stop()

    def _cmd_config(self, odr_hz: float, fs_g: int) -> None:
        self.odr_hz, self.fs_g = float(odr_hz), int(fs_g)
        if self.client is None:
            return
        was = self.state == DeviceState.STREAMING
        if was:
            self.client.stream_stop()
        self._apply_config()
        if was:
            self.start_stream()
        self.m._changed()  # noqa: SLF001

    def _on_event(self, msg: Any) -> None:
        """Reader thread of the client: convert sample blocks and append them on the shared timeline."""
        from device.nucleo import protocol as P

        if isinstance(msg, P.Samples):
            stream = self.m.accel_stream
            if stream is None or msg.n == 0:
                return
            if self._tick0 is None:  # first block after (re)start: anchor the board clock to the host clock
                self._tick0 = msg.tick
                self._t_origin = self.m.now()
                stream.extend_to(self._t_origin, mark=stream.n_total > 0)
            expect = int(round(((msg.tick - self._tick0) / self._tick_hz + self._t_origin) * stream.rate_hz))
            if expect > stream.n_total:  # dropped blocks (TX FIFO full) or a late start
                stream.append_gap(expect - stream.n_total)
            xyz = np.asarray(msg.xyz, np.float32) * np.float32(self._sens)
            stream.append(xyz)
        elif isinstance(msg, P.Log):
            self.m._log(f"{self.info.name}: {msg.text}")  # noqa: SLF001


class _PowerSession(_Session):
    """X-NUCLEO-LPM01A through :class:`device.lpm01a.driver.PowerShield` and
    :class:`device.lpm01a.capture.Capture`; a pump thread moves capture blocks into the power stream."""

    def __init__(self, manager: "DeviceManager", info: DeviceInfo):
        super().__init__(manager, info)
        self.rate_hz = 100_000
        self.voltage = 3.3
        self.ps: Any = None
        self.cap: Any = None
        self._pump: threading.Thread | None = None
        self._pump_stop = threading.Event()

    def open(self) -> None:
        from device.lpm01a.driver import PowerShield

        self.ps = PowerShield(self.info.url, timeout=2.0)
        self.ps.htc()
        self.details = {"firmware": self.ps.version(), "board": self.ps.powershield(),
                        "rate_hz": self.rate_hz, "voltage": self.voltage}

    def close_link(self) -> None:
        self._stop_capture()
        if self.ps is not None:
            ps, self.ps = self.ps, None
            try:
                ps.close()
            except Exception:  # noqa: BLE001 - closing a dead port
                pass

    def alive(self) -> bool:
        if self.cap is not None:
            if self.cap.finished and self.want_stream:
                raise DeviceError(f"acquisition ended ({self.cap.ended_by}): {self.cap.error}")
            self.details.update({"lost": int(self.cap.lost), "buffer_pct": self.cap.buffer_pct})
            return True
        self.ps.status()
        return True

    def start_stream(self) -> None:
        from device.lpm01a.capture import Capture

        stream = self.m._ensure_power_stream(self.rate_hz, self.voltage)  # noqa: SLF001
        try:
            self.ps.configure(freq=self.rate_hz, fmt="bin_hexa", acqtime=0, volt=self.voltage,
                              eventsrc=("d7", "ris"))
        except Exception:  # noqa: BLE001 - older firmware without eventsrc: stream without D7 events
            self.ps.configure(freq=self.rate_hz, fmt="bin_hexa", acqtime=0, volt=self.voltage)
        self.cap = Capture(self.ps, self.rate_hz, "bin_hexa")
        sub = self.cap.subscribe(from_start=True)
        self._pump_stop.clear()
        self._pump = threading.Thread(target=self._pump_loop, args=(sub, stream), name="lpm01a-pump", daemon=True)
        self.cap.start()
        self._pump.start()

    def _pump_loop(self, sub: Any, stream: SampleStream) -> None:
        origin: int | None = None
        while not sub.done and not self._pump_stop.is_set():
            b = sub.get(0.25)
            if b is None:
                continue
            if len(b.values) == 0 and not b.events:
                continue
            if origin is None:  # anchor device sample 0 on the shared timeline
                t = self.m.now() - b.first_index / b.rate_hz
                stream.extend_to(t, mark=stream.n_total > 0)
                origin = stream.n_total - b.first_index
            if b.overrun:
                stream.append_gap(b.overrun)
            expect = origin + b.first_index
            if expect > stream.n_total:
                stream.append_gap(expect - stream.n_total)
            if len(b.values):
                stream.append(b.values)
            for ev in b.events:
                self.m._power_event((origin + ev.index) / stream.rate_hz, ev.kind, ev.text)  # noqa: SLF001

    def _stop_capture(self) -> None:
        cap, self.cap = self.cap, None
        if cap is not None:
            try:
                cap.stop(timeout=3.0)
            except Exception:  # noqa: BLE001 - a dead link: the reader thread ends by itself
                pass
        if self._pump is not None:
            self._pump.join(timeout=2.0)
            self._pump_stop.set()
            self._pump = None

    def stop_stream(self) -> None:
        self._stop_capture()

    def _cmd_config(self, rate_hz: int, voltage: float) -> None:
        was = self.state == DeviceState.STREAMING
        if was:
            self.stop_stream()
        self.rate_hz, self.voltage = int(rate_hz), float(voltage)
        self.details.update({"rate_hz": self.rate_hz, "voltage": self.voltage})
        if was:
            self.start_stream()
        self.m._changed()  # noqa: SLF001


class DeviceManager:
    """All devices of the app session.  Non-blocking API for the GUI; see the module documentation.

    ``bench``: True = start the in-process virtual bench, False = never, None = only if no real device is
    found.  ``bench_factory`` builds the bench (default ``device.bench.VirtualBench``).
    """

    def __init__(self, *, bench: bool | None = None, bench_kwargs: dict | None = None,
                 bench_factory: Callable[..., Any] | None = None, history_s: float = 3600.0,
                 power_recent_s: float = 30.0):
        self._t0 = time.monotonic()
        self._lock = threading.RLock()
        self._sessions: dict[str, _Session] = {}
        self.version = 0
        self.bench: Any = None
        self.bench_error: str | None = None
        self._bench_mode = bench
        self._bench_kwargs = bench_kwargs or {}
        self._bench_factory = bench_factory
        self.history_s = history_s
        self.power_recent_s = power_recent_s
        self.accel_stream: SampleStream | None = None
        self.power_stream: SampleStream | None = None
        self.voltage = 3.3
        self.messages: list[str] = []
        #: (time on the shared timeline, kind, text) of power-shield stream events (D7 edges, errors...).
        self.power_events: list[tuple[float, str, str]] = []

    # --- clock, change tracking ----------------------------------------------------------------------
    def now(self) -> float:
        """Seconds since the manager started (the shared timeline of all streams)."""
        return time.monotonic() - self._t0

    def _changed(self) -> None:
        with self._lock:
            self.version += 1

    def _log(self, text: str) -> None:
        with self._lock:
            self.messages.append(text)
            del self.messages[:-200]
            self.version += 1

    def _power_event(self, t: float, kind: str, text: str) -> None:
        with self._lock:
            self.power_events.append((t, kind, text))
            del self.power_events[:-10_000]

    # --- discovery -----------------------------------------------------------------------------------
    def discover(self) -> list[DeviceInfo]:
        """Scan USB serial ports for our VID:PIDs; start the virtual bench if so configured.  Blocking but
        short (no device I/O); call it from a worker thread or at start-up."""
        found: list[DeviceInfo] = []
        try:
            from device import discovery

            for p in discovery.find_powershield():
                found.append(DeviceInfo(f"powershield:{p.serial_number or p.device}", "powershield", p.device,
                                        f"LPM01A {p.device}", False, p.vid_pid, p.serial_number))
            for p in discovery.find_nucleo():
                found.append(DeviceInfo(f"board:{p.serial_number or p.device}", "board", p.device,
                                        f"NUCLEO {p.device}", False, p.vid_pid, p.serial_number))
        except Exception as exc:  # noqa: BLE001 - a broken port lister must not stop the app
            self._log(f"port scan failed: {exc}")
        with self._lock:
            for info in found:
                s = self._sessions.get(info.key)
                if s is None:
                    self._sessions[info.key] = self._make(info)
                elif s.info.url != info.url:  # re-enumerated under a new path (after a reset)
                    s.info = replace(s.info, url=info.url, name=info.name)
        if self._bench_mode or (self._bench_mode is None and not found):
            self.start_bench()
        self._changed()
        return [s.info for s in self._sessions.values()]

    def start_bench(self) -> bool:
        """Start the in-process virtual bench (idempotent); False with :attr:`bench_error` set on failure."""
        if self.bench is not None:
            return True
        try:
            factory = self._bench_factory
            if factory is None:
                from device.bench import VirtualBench as factory  # noqa: N813
            bench = factory(**self._bench_kwargs)
            urls = bench.start()
        except Exception as exc:  # noqa: BLE001
            self.bench_error = f"virtual bench unavailable: {exc}"
            self._log(self.bench_error)
            return False
        self.bench = bench
        with self._lock:
            if urls.get("powershield"):
                info = DeviceInfo("powershield:virtual", "powershield", urls["powershield"], "LPM01A (virtual)", True)
                self._sessions[info.key] = self._make(info)
            if urls.get("board"):
                info = DeviceInfo("board:virtual", "board", urls["board"], "NUCLEO-L496ZG (virtual)", True)
                self._sessions[info.key] = self._make(info)
        self._changed()
        return True

    def _make(self, info: DeviceInfo) -> _Session:
        return _BoardSession(self, info) if info.kind == "board" else _PowerSession(self, info)

    # --- GUI-facing, non-blocking --------------------------------------------------------------------
    def snapshot(self) -> list[DeviceStatus]:
        with self._lock:
            return [s.status() for s in self._sessions.values()]

    def status(self, key: str) -> DeviceStatus:
        return self._session(key).status()

    def first(self, kind: str) -> DeviceStatus | None:
        """The first device of a kind ('board' | 'powershield'), connected ones first."""
        snap = [s for s in self.snapshot() if s.info.kind == kind]
        snap.sort(key=lambda s: s.state in (DeviceState.DISCONNECTED, DeviceState.ERROR))
        return snap[0] if snap else None

    def connect(self, key: str) -> None:
        self._session(key).submit("connect")

    def disconnect(self, key: str) -> None:
        self._session(key).submit("disconnect")

    def set_streaming(self, key: str, on: bool) -> None:
        self._session(key).submit("stream", bool(on))

    def set_auto_reconnect(self, key: str, on: bool) -> None:
        self._session(key).auto_reconnect = bool(on)
        self._changed()

    def configure_accel(self, key: str, odr_hz: float, fs_g: int) -> None:
        if odr_hz not in ACCEL_ODR_HZ:
            raise DeviceError(f"accelerometer ODR {odr_hz} Hz is not one of {ACCEL_ODR_HZ}")
        if fs_g not in ACCEL_FS_G:
            raise DeviceError(f"accelerometer full scale ±{fs_g} g is not one of {ACCEL_FS_G}")
        self._session(key).submit("config", odr_hz, fs_g)

    def configure_power(self, key: str, rate_hz: int, voltage: float = 3.3) -> None:
        if rate_hz not in POWER_RATES_HZ:
            raise DeviceError(f"power sampling rate {rate_hz} Hz is not one of {POWER_RATES_HZ}")
        if not 1.8 <= voltage <= 3.3:
            raise DeviceError(f"supply voltage {voltage} V outside 1.8..3.3 V")
        self._session(key).submit("config", rate_hz, voltage)

    def call(self, key: str, fn: Callable[[Any], Any],
             done: Callable[[Any, BaseException | None], None] | None = None) -> None:
        """Run ``fn(driver)`` on the device's session thread (``driver`` = NucleoClient or LPM01A link) and
        report with ``done(result, error)`` on that thread.  For one-off requests from panels."""
        s = self._session(key)
        s.submit("call", lambda: fn(getattr(s, "client", None) or getattr(s, "impl", None)), done)

    @contextmanager
    def board_session(self, key: str | None = None) -> Iterator[Any]:
        """Exclusive use of the board's client for a training round (call from a worker thread, never
        the GUI thread): state TRAINING while inside; the heartbeat pauses."""
        st = self.first("board") if key is None else self.status(key)
        if st is None or st.state not in (DeviceState.READY, DeviceState.STREAMING):
            raise DeviceError("no connected NUCLEO board (connect one in the Devices panel)")
        s = self._session(st.info.key)
        prev = s.state
        s._set(DeviceState.TRAINING, "training round")  # noqa: SLF001
        try:
            yield s.client  # type: ignore[attr-defined]
        finally:
            if s.state == DeviceState.TRAINING:
                s._set(prev)  # noqa: SLF001

    def unplug(self, key: str, seconds: float = 1.0) -> None:
        """Virtual devices only: simulate a USB glitch (the bench drops the link for ``seconds``)."""
        s = self._session(key)
        if not s.info.virtual or self.bench is None:
            raise DeviceError(f"{s.info.name} is not a virtual device")
        self.bench.unplug(s.info.kind, seconds)

    def shutdown(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
        for s in sessions:
            s.shutdown()
        if self.bench is not None:
            try:
                self.bench.stop()
            finally:
                self.bench = None

    def _session(self, key: str) -> _Session:
        with self._lock:
            try:
                return self._sessions[key]
            except KeyError:
                raise DeviceError(f"no device {key!r} (known: {', '.join(self._sessions) or 'none'})") from None

    # --- streams ---------------------------------------------------------------------------------------
    def _ensure_accel_stream(self, rate_hz: float) -> SampleStream:
        with self._lock:
            s = self.accel_stream
            if s is None or s.rate_hz != rate_hz:
                s = SampleStream("accel", rate_hz, 3, unit="m/s²", channel_names=("x", "y", "z"),
                                 recent_s=self.history_s, history_s=self.history_s, base=16, factor=8)
                if self.accel_stream is not None:  # a new rate: keep the timeline position
                    s.extend_to(self.accel_stream.duration, mark=False)
                self.accel_stream = s
                self.version += 1
            return s

    def _ensure_power_stream(self, rate_hz: float, voltage: float) -> SampleStream:
        with self._lock:
            self.voltage = voltage
            s = self.power_stream
            if s is None or s.rate_hz != rate_hz:
                s = SampleStream("current", rate_hz, 1, unit="A", channel_names=("I",),
                                 recent_s=self.power_recent_s, history_s=self.history_s)
                if self.power_stream is not None:
                    s.extend_to(self.power_stream.duration, mark=False)
                self.power_stream = s
                self.version += 1
            return s
