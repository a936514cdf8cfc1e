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

Faults (docs/reliability.md): every session checks its link every 0.1 s without I/O (the driver's reader
thread saw EOF, the capture ended, the board sent BOOT) and with a short heartbeat request every 0.5 s,
so a fault is detected within 2 s.  The status message then says what happened in plain words
(:meth:`_Session.describe`), the fault is logged in :attr:`DeviceManager.faults`, and the session
reconnects with backoff (0.5 s → 5 s), following a port that came back under a new name, and resumes
streaming; the missing time is a marked gap.  An LPM01A overcurrent is not retried (the shield protects
the target; the user decides).  A fault during a training round fails the round at once (its client's
waiters are woken with the reason) instead of after the round's own timeout.

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

from app.core.energy import PowerTrace, TimelineFeed
from app.core.streams import SampleStream

__all__ = [
    "DeviceState",
    "DeviceInfo",
    "DeviceStatus",
    "DeviceManager",
    "DeviceError",
    "ACCEL_ODR_HZ",
    "ACCEL_FS_G",
    "POWER_MONITOR",
]

log = logging.getLogger(__name__)

#: Accelerometer choices offered in the UI (LSM6DSO ladder; mirrors device.nucleo.protocol).
ACCEL_ODR_HZ = (12.5, 26.0, 52.0, 104.0, 208.0, 417.0, 833.0, 1667.0)
ACCEL_FS_G = (2, 4, 8, 16)
#: ``DeviceManager.first(POWER_MONITOR)``: the first device of any power-monitor kind (device.monitor.REGISTRY).
POWER_MONITOR = "power-monitor"
G = 9.80665


class DeviceError(RuntimeError):
    """A device operation that cannot be done; the message names the device and the reason."""


class _BoardReset(DeviceError):
    """The board sent BOOT while connected: it reset itself (button, power glitch, watchdog)."""


class NeedsFirmware(DeviceError):
    """A real board that does not answer HELLO, or runs an older ODL firmware: flash it (Devices panel,
    "Flash ODL firmware…", or ``odlstudio flash``).  The status details carry ``needs_firmware``."""


RESET_CAUSES = {0: "power-on or reset button", 1: "reset request", 2: "watchdog"}


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
    kind: str  # 'board' | a power-monitor kind of device.monitor.REGISTRY ('powershield': the LPM01A)
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

    heartbeat_s = 0.5
    #: Heartbeat request timeout and retries: a dead link is declared within 0.5 + 2 * 0.6 s.
    beat_timeout_s = 0.6

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
        self.state_lock = threading.RLock()  # state changes racing between the session thread and a round
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._next_try = 0.0
        self._backoff = 0.5
        self._last_beat = 0.0
        self.lost_at: float | None = None
        #: Samples known lost while streaming (dropped in transit or on the device), excluding the time
        #: the device was disconnected or not streaming (that time is a marked gap, not a loss).
        self.lost_samples = 0

    # --- called from any thread ---------------------------------------------------------------------
    def submit(self, cmd: str, *args: Any) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"dev-{self.info.kind}", daemon=True)
            self._thread.start()
        self._q.put((cmd, args))

    def shutdown(self, timeout: float = 3.0) -> None:
        self.request_shutdown()
        self.join_shutdown(time.monotonic() + timeout)

    def request_shutdown(self) -> None:
        """Ask the session thread to disconnect and end (returns at once; see :meth:`join_shutdown`)."""
        if self._thread and self._thread.is_alive():
            self._q.put(("disconnect", ()))
            self._q.put(("quit", ()))

    def join_shutdown(self, deadline: float) -> None:
        if self._thread and self._thread.is_alive():
            self._thread.join(max(0.0, deadline - time.monotonic()))
        self._stop.set()

    def status(self) -> DeviceStatus:
        return DeviceStatus(
            self.info, self.state, self.message, dict(self.details), self.auto_reconnect, self.reconnects
        )

    # --- a training round (DeviceManager.board_session, under state_lock) ----------------------------
    def enter_training(self) -> None:
        """State TRAINING: the heartbeat pauses while a round owns the client (caller holds ``state_lock``)."""
        self._last_beat = time.monotonic()
        self._set(DeviceState.TRAINING, "training round")

    def leave_training(self, prev: DeviceState) -> None:
        """Back to ``prev`` after a round, unless the link failed meanwhile: a round that ended because its link
        broke leaves the state TRAINING, and the session thread's next check (within 0.1 s) reports the fault
        and reconnects.  Handing the dead link back as READY let the next round start on it at once."""
        with self.state_lock:
            if self.state == DeviceState.TRAINING and not self.link_broken():
                self._set(prev)

    def link_broken(self) -> bool:
        """Known without I/O that the link failed, before the session thread has handled it."""
        return False

    # --- session thread ---------------------------------------------------------------------------
    def _set(self, state: DeviceState, message: str = "") -> None:
        self.state, self.message = state, message
        self.m.notify_changed()

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
                self.fault(exc)

    def _tick(self) -> None:
        now = time.monotonic()
        if self.state in (DeviceState.READY, DeviceState.STREAMING, DeviceState.TRAINING):
            self.fast_check()
        if self.state in (DeviceState.READY, DeviceState.STREAMING) and now - self._last_beat >= self.heartbeat_s:
            self._last_beat = now
            if not self.alive():
                raise DeviceError(f"{self.info.name}: link lost")
        elif self.state == DeviceState.TRAINING and now - self._last_beat >= self.heartbeat_s:
            self._last_beat = now
            self.training_beat()
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
            url = self.m.current_url(self)
            if url is None:
                raise DeviceError("its port is not there (unplugged?)")
            self.open()
        except Exception as exc:  # noqa: BLE001
            self._next_try = time.monotonic() + self._backoff
            self._backoff = min(5.0, self._backoff * 2)
            why = self.describe(exc)  # before close_link: the words may depend on what the link saw
            self.close_link()
            self._set(
                DeviceState.ERROR,
                f"{'reconnect' if reconnect else 'connect'} failed: {why}"
                + (f"; next try in {self._backoff / 2:.1f} s" if self.want_connected and self.auto_reconnect else ""),
            )
            return
        self._backoff = 0.5
        self._last_beat = time.monotonic()
        if reconnect:
            gap = "" if self.lost_at is None else f" after {self.m.now() - self.lost_at:.1f} s"
            text = f"reconnected{gap}" + (
                "; streaming resumed, the missing time is marked as a gap" if self.want_stream else ""
            )
            self.m.log(f"{self.info.name}: {text}")
        else:
            text = ""
        self._set(DeviceState.READY, text)
        if self.want_stream:
            self._cmd_stream(True)
            if reconnect:
                self._set(self.state, text)

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

    def fault(self, exc: BaseException) -> None:
        """A fault was detected (any state): say what happened, then recover (see the module doc)."""
        if self.state in (DeviceState.DISCONNECTED, DeviceState.CONNECTING) and not self.want_connected:
            log.info("%s: %s (not connected)", self.info.name, exc)
            return
        if self.handle_fault(exc):
            return
        self._link_lost(exc)

    def _link_lost(self, exc: BaseException) -> None:
        why = self.describe(exc)
        log.warning("%s: %s (%r)", self.info.name, why, exc)
        self.lost_at = self.m.now()
        with self.state_lock:  # ERROR first, so a round ending now cannot restore READY over a dead link
            training = self.state == DeviceState.TRAINING
            self._set(
                DeviceState.ERROR,
                why
                + (
                    "; reconnecting automatically"
                    if self.auto_reconnect and self.want_connected
                    else "; press Connect to try again"
                ),
            )
        if training:
            self.fail_round(f"{self.info.name}: {why}")
        self.m.fault(self.info.key, why)
        self.close_link()
        self._next_try = time.monotonic() + self._backoff

    # --- driver hooks ------------------------------------------------------------------------------
    def open(self) -> None: ...
    def close_link(self) -> None: ...
    def alive(self) -> bool:
        return True

    def start_stream(self) -> None: ...
    def stop_stream(self) -> None: ...

    def fast_check(self) -> None:
        """Every 0.1 s while connected, no device I/O: raise if the link or the stream is known dead."""

    def training_beat(self) -> None:
        """Heartbeat while a training round holds the device (board only)."""

    def fail_round(self, reason: str) -> None:
        """Wake a training round waiting on this device with ``reason`` (board only)."""

    def handle_fault(self, exc: BaseException) -> bool:
        """Faults that are not a lost link (e.g. overcurrent): handle and return True."""
        return False

    def describe(self, exc: BaseException) -> str:
        """What happened, in plain words (shown in the Devices panel and the status bar)."""
        return str(exc) or type(exc).__name__


class _BoardSession(_Session):
    """NUCLEO board through :class:`device.nucleo.client.NucleoClient`; samples -> the accel stream."""

    def __init__(self, manager: "DeviceManager", info: DeviceInfo):
        super().__init__(manager, info)
        self.client: Any = None
        self.odr_hz, self.fs_g = manager.accel_default  # the settings last asked for (the app's remembered ones)
        self._tick0: int | None = None
        self._t_origin = 0.0
        self._tick_hz = 1_000_000
        self._sens = 122_000e-9 * G
        self._boot: Any = None
        self._lost_seen = 0
        self._last_sample = 0.0
        self._junk0 = (0, 0, 0)

    def open(self) -> None:
        from app.core.flashing import needs_firmware
        from device.nucleo.client import NucleoClient

        self._boot = None
        # details["needs_firmware"] stays while this try asks for HELLO (it is replaced below once HELLO proves
        # the firmware right): the Devices panel keeps showing why, and its Flash button stays in bold
        self.client = NucleoClient.open(self.info.url, timeout=1.0, on_event=self._on_event)
        self._junk0 = _junk_state(self.client)
        try:
            hello = self.client.hello()
        except Exception as exc:
            if self.info.virtual:  # the bench's fault switches: described as link faults
                raise
            why = needs_firmware(None)
            self.details = {"needs_firmware": why, "firmware": "needs the ODL firmware"}
            raise NeedsFirmware(f"needs the ODL firmware: {why}") from exc
        why = needs_firmware((hello.fw_major, hello.fw_minor, hello.fw_patch))
        if why:
            self.details = {"needs_firmware": why, "firmware": "needs the ODL firmware"}
            raise NeedsFirmware(f"needs the ODL firmware: {why}")
        info = self.client.info()
        self._tick_hz = int(info.tick_hz) or 1_000_000
        self.details = {
            "firmware": f"{info.fw_major}.{info.fw_minor}.{info.fw_patch}",
            "protocol": info.proto,
            "board": info.board,
            "mcu": info.mcu,
            "sensor": info.sensor,
            "build": info.build,
            "sysclk_MHz": info.sysclk_hz / 1e6,
            "ram_free": info.ram_free,
            "emulated": bool(hello.flags & 1),
        }
        self._abort_orphan_round()
        self._apply_config()

    def _abort_orphan_round(self) -> None:
        """The board keeps training while its USB link is gone; the round's host side has failed since, so
        a round still running after a reconnect is an orphan: abort it (the board keeps its old weights)."""
        from device.nucleo import protocol as P

        st = self.client.status()
        if st.state in (P.BoardState.TRAINING, P.BoardState.EVALUATING, P.BoardState.TRANSFER):
            try:
                self.client.abort()
            except Exception:  # noqa: BLE001 - nothing to abort after all (it just ended)
                pass
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and self.client.status().state in (
                P.BoardState.TRAINING,
                P.BoardState.EVALUATING,
            ):
                time.sleep(0.05)
            self.client.drain_events()
            self.m.log(f"{self.info.name}: aborted the round its previous connection had left running")

    def _apply_config(self) -> None:
        st = self.client.sensor_config(self.odr_hz, self.fs_g)
        self._sens = st.sens_ng * 1e-9 * G
        self.details.update({"odr_hz": st.odr_mhz / 1000.0, "fs_g": st.fs_g})
        self.m.ensure_accel_stream(st.odr_mhz / 1000.0)

    def close_link(self) -> None:
        if self.client is not None:
            c, self.client = self.client, None
            c.on_event = None
            c.close()

    def _beat(self) -> Any:
        from device.nucleo import protocol as P

        self._junk0 = _junk_state(self.client)
        return self.client.request(P.GetStatus(), P.Status, timeout=self.beat_timeout_s, retries=1)

    def alive(self) -> bool:
        st = self._beat()
        self.details.update({"tx_dropped": st.tx_dropped, "rx_errors": st.rx_errors})
        return True

    def training_beat(self) -> None:
        self._beat()

    def link_broken(self) -> bool:
        c = self.client
        return c is None or c.link_error is not None or self._boot is not None

    def fast_check(self) -> None:
        from device.nucleo import protocol as P

        c = self.client
        if c is None:
            return
        err = getattr(c, "link_error", None) or getattr(c, "_reader_error", None)
        if err is not None:
            raise err if isinstance(err, BaseException) else DeviceError(str(err))
        if self._boot is not None:
            boot, self._boot = self._boot, None
            raise _BoardReset(f"reset cause {boot.reset_cause}")
        if self.lost_samples > self._lost_seen:
            n, self._lost_seen = self.lost_samples - self._lost_seen, self.lost_samples
            text = (
                f"{n:,} accelerometer samples lost (corrupted bytes on the USB link, or the board's "
                f"transmit buffer was full; {self.lost_samples:,} in total): marked as gaps, streaming continues"
            )
            self.m.fault(self.info.key, text)
            self._set(self.state, text)
        if self.state != DeviceState.TRAINING:
            c.drain_events(P.Samples)  # delivered through on_event already: keep the client's queue short
            if (
                self.state == DeviceState.STREAMING
                and self._last_sample
                and time.monotonic() - self._last_sample > max(1.0, 3.0 / max(self.odr_hz, 1e-3))
            ):
                self._last_sample = time.monotonic()
                self._beat()  # raises if the board is gone; else it stopped streaming on its own
                raise DeviceError("the accelerometer stream stopped")

    def fail_round(self, reason: str) -> None:
        c = self.client
        if c is not None and hasattr(c, "fail_waiters"):
            c.fail_waiters(DeviceError(reason))  # wake the round's waiters now instead of after its own timeout

    def describe(self, exc: BaseException) -> str:
        from device.nucleo.client import NucleoTimeout

        if isinstance(exc, _BoardReset):
            cause = str(exc).rsplit(" ", 1)[-1]
            why = RESET_CAUSES.get(int(cause), "unknown cause") if cause.isdigit() else "unknown cause"
            return f"the board reset itself ({why}): its model and data are gone"
        if isinstance(exc, NucleoTimeout):
            c = self.client
            if c is not None and _garbage_since(c, self._junk0):
                return "the board answers with garbage (wrong firmware, or another program on its port?)"
            return "the board does not answer (firmware hung, or the USB link stalled)"
        if isinstance(exc, OSError) or "link lost" in str(exc).lower() or type(exc).__name__ == "SerialException":
            return "USB link to the board lost (unplugged, or its port closed)"
        if isinstance(exc, DeviceError):
            return str(exc)
        return f"board error: {exc}"

    def start_stream(self) -> None:
        self._tick0 = None
        self._last_sample = time.monotonic()
        self.client.stream_start(block_len=max(1, min(160, int(self.odr_hz / 4) or 1)))

    def stop_stream(self) -> None:
        self.client.stream_stop()

    def _cmd_config(self, odr_hz: float, fs_g: int) -> None:
        same = (float(odr_hz), int(fs_g)) == (self.odr_hz, self.fs_g)
        self.odr_hz, self.fs_g = float(odr_hz), int(fs_g)
        if self.client is None or same:  # (the Live panel applies the remembered settings when it opens: a
            return  # stream going on is kept; a connected board was given them when it connected)
        was = self.state == DeviceState.STREAMING
        if was:
            self.client.stream_stop()
        self._apply_config()
        if was:
            self.start_stream()
        self.m.notify_changed()

    def _on_event(self, msg: Any) -> None:
        """Reader thread of the client: convert sample blocks and append them on the shared timeline."""
        from device.nucleo import protocol as P

        if isinstance(msg, P.Samples):
            self._last_sample = time.monotonic()
            stream = self.m.accel_stream
            if stream is None or msg.n == 0:
                return
            if self._tick0 is None:  # first block after (re)start: anchor the board clock to the host clock
                self._tick0 = msg.tick
                self._t_origin = self.m.now()
                stream.extend_to(self._t_origin, mark=stream.n_total > 0)
            expect = int(round(((msg.tick - self._tick0) / self._tick_hz + self._t_origin) * stream.rate_hz))
            if expect > stream.n_total:  # dropped blocks (TX FIFO full) or a late start
                self.lost_samples += expect - stream.n_total
                stream.append_gap(expect - stream.n_total)
            xyz = np.asarray(msg.xyz, np.float32) * np.float32(self._sens)
            stream.append(xyz)
        elif isinstance(msg, P.Log):
            self.m.log(f"{self.info.name}: {msg.text}")
        elif isinstance(msg, P.Boot):
            self._boot = msg


class _PowerSession(_Session):
    """A power monitor (:mod:`device.monitor`: the X-NUCLEO-LPM01A, or any registered kind) through its
    :class:`~device.monitor.PowerMonitor`; a pump thread moves the acquisition's blocks into the power stream."""

    def __init__(self, manager: "DeviceManager", info: DeviceInfo):
        from device.monitor import monitor_class

        super().__init__(manager, info)
        self.monitor_cls = monitor_class(info.kind)
        r = manager.power_rate_default  # the rate last asked for, where this monitor offers it
        self.rate_hz = int(r) if r in self.monitor_cls.rates_hz else int(self.monitor_cls.default_rate_hz)
        lo, hi = self.monitor_cls.voltage_range
        # the voltage last asked for, brought into this monitor's range (as the Power panel's box shows it)
        self.voltage = min(max(float(manager.power_voltage_default), float(lo)), float(hi))
        self.mon: Any = None
        self.cap: Any = None
        self._pump: threading.Thread | None = None
        self._pump_stop = threading.Event()
        self._lost_seen = 0

    def open(self) -> None:
        from device.monitor import open_monitor

        self.mon = open_monitor(self.info.kind, self.info.url, timeout=2.0)
        self.details = {**self.mon.prepare(), "rate_hz": self.rate_hz, "voltage": self.voltage}

    def close_link(self) -> None:
        self._stop_capture()
        if self.mon is not None:
            mon, self.mon = self.mon, None
            try:
                mon.close()
            except Exception:  # noqa: BLE001 - closing a dead port
                pass

    def alive(self) -> bool:
        if self.cap is not None:
            self.fast_check()
            self.details.update({"lost": int(self.cap.lost), "buffer_pct": self.cap.buffer_pct})
            return True
        self.mon.ping()
        return True

    def fast_check(self) -> None:
        cap = self.cap
        if cap is None:
            return
        if cap.finished and self.want_stream:
            if self._pump is not None:
                self._pump.join(timeout=1.0)  # every sample that reached the host goes into the stream first
            raise cap.error or DeviceError(f"the acquisition ended on its own ({cap.ended_by})")
        lost = int(cap.lost)
        if lost > self._lost_seen:
            n, self._lost_seen = lost - self._lost_seen, lost
            text = (
                f"{n:,} samples lost in transit (corrupted or dropped bytes on the USB link; "
                f"{lost:,} in total): marked as gaps, streaming continues"
            )
            self.m.fault(self.info.key, text)
            self._set(self.state, text)

    def handle_fault(self, exc: BaseException) -> bool:
        from device.monitor import ProtectiveStop

        if not isinstance(exc, ProtectiveStop):
            return False
        why = self.describe(exc)
        self.m.fault(self.info.key, why)
        self.want_stream = False
        self._stop_capture()
        self._last_beat = time.monotonic()
        self._set(DeviceState.READY if self.mon is not None else DeviceState.ERROR, why)
        return True

    def describe(self, exc: BaseException) -> str:
        if isinstance(exc, DeviceError):
            return str(exc)
        return self.monitor_cls.describe(exc)

    def start_stream(self) -> None:
        stream = self.m.ensure_power_stream(self.rate_hz, self.voltage)
        self.mon.configure(self.rate_hz, self.voltage, events=True)
        self.cap = self.mon.start()
        sub = self.cap.subscribe(from_start=True)
        self._pump_stop.clear()
        self._pump = threading.Thread(target=self._pump_loop, args=(sub, stream), name="power-pump", daemon=True)
        self._pump.start()

    def _pump_loop(self, sub: Any, stream: SampleStream) -> None:
        feed = TimelineFeed(stream, self.m.now, self.m.power_event)
        while not sub.done and not self._pump_stop.is_set():
            b = sub.get(0.25)
            if b is None:
                continue
            before = feed.lost_samples
            feed.feed(b)
            self.lost_samples += feed.lost_samples - before

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

    def _cmd_config(self, rate_hz: int | None, voltage: float) -> None:
        if (self.rate_hz if rate_hz is None else int(rate_hz), float(voltage)) == (self.rate_hz, self.voltage):
            return  # (the Power panel applies the remembered voltage when it opens: a stream going on is kept)
        was = self.state == DeviceState.STREAMING
        if was:
            self.stop_stream()
        self.rate_hz, self.voltage = self.rate_hz if rate_hz is None else int(rate_hz), float(voltage)
        self.details.update({"rate_hz": self.rate_hz, "voltage": self.voltage})
        if was:
            self.start_stream()
        self.m.notify_changed()


def _junk_state(client: Any) -> tuple[int, int, int]:
    """(discarded bytes, undelimited bytes waiting in the decoder, valid frames) of the board's link."""
    st = client.decoder_stats
    dec = getattr(client, "_decoder", None)
    return int(st.get("discarded_bytes", 0)), len(getattr(dec, "_buf", b"")), int(st.get("frames", 0))


def _garbage_since(client: Any, before: tuple[int, int, int]) -> bool:
    """Junk came from the board since ``before`` instead of the answer: it answers with garbage."""
    now = _junk_state(client)
    if now[0] > before[0]:  # invalid frames were discarded (junk mixed into the stream)
        return True
    return now[1] > before[1] and now[2] == before[2]  # bytes without any frame delimiter, and no frame


def _recorder_of(stream: SampleStream | None) -> Any:
    """The recorder writing ``stream`` now (a Labelling segment, a Power recording, whoever started it), or None."""
    from app.core.recording import active_recorders

    if stream is None:
        return None
    return next((r for r in active_recorders() if r.stream is stream and not r.finished), None)


class DeviceManager:
    """All devices of the app session.  Non-blocking API for the GUI; see the module documentation.

    ``bench``: True = start the in-process virtual bench, False = never, None = only if no real device is
    found.  ``bench_factory`` builds the bench (default ``device.bench.VirtualBench``).
    """

    def __init__(
        self,
        *,
        bench: bool | None = None,
        bench_kwargs: dict | None = None,
        bench_factory: Callable[..., Any] | None = None,
        history_s: float = 3600.0,
        power_recent_s: float = 30.0,
    ):
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
        #: The supply voltage a power monitor found from now on starts with: the one last given to
        #: :meth:`configure_power` (the app sets the remembered one at start-up).
        self.power_voltage_default = 3.3
        #: The sampling rate (Hz) a power monitor found from now on starts with, where it offers it (None, or a rate
        #: it does not offer: its own default): the one last given to :meth:`configure_power`, as the voltage.
        self.power_rate_default: int | None = None
        #: (ODR Hz, full scale g) a board found from now on starts with: the ones last given to
        #: :meth:`configure_accel` (the app sets the remembered ones at start-up).
        self.accel_default: tuple[float, int] = (52.0, 4)
        self.messages: list[str] = []
        #: (time on the shared timeline, kind, text) of power-shield stream events (D7 edges, errors...).
        self.power_events: list[tuple[float, str, str]] = []
        #: (time on the shared timeline, device key, plain-words text) of every detected fault.
        self.faults: list[tuple[float, str, str]] = []
        self.fault_count = 0  # faults ever logged (the list keeps the last 1000)

    # --- clock, change tracking ----------------------------------------------------------------------
    def now(self) -> float:
        """Seconds since the manager started (the shared timeline of all streams)."""
        return time.monotonic() - self._t0

    def notify_changed(self) -> None:
        with self._lock:
            self.version += 1

    def log(self, text: str) -> None:
        with self._lock:
            self.messages.append(text)
            del self.messages[:-200]
            self.version += 1

    def fault(self, key: str, text: str) -> None:
        with self._lock:
            self.faults.append((self.now(), key, text))
            del self.faults[:-1000]
            self.fault_count += 1
        self.log(f"{self._sessions[key].info.name if key in self._sessions else key}: {text}")

    def current_url(self, s: "_Session") -> str | None:
        """Where the device is now: a virtual one's endpoint URL (None while unplugged; a new port after
        an unplug with ``new_port``), a real one found again by serial number if its path changed."""
        info = s.info
        url: str | None = info.url
        if info.virtual:
            ep = getattr(self.bench, "endpoints", {}).get(info.kind) if self.bench is not None else None
            if ep is None:
                return url
            url = ep.url if ep.plugged else None
        elif info.serial_number:
            try:
                from device import discovery
                from device.monitor import is_monitor, monitor_class

                ports = monitor_class(info.kind).find() if is_monitor(info.kind) else discovery.find_nucleo()
                url = next((p.device for p in ports if p.serial_number == info.serial_number), url)
            except Exception:  # noqa: BLE001 - keep the old path
                pass
        if url is not None and url != info.url:
            self.log(f"{info.name}: port is now {url} (was {info.url})")
            s.info = replace(info, url=url)
        return url

    def power_trace(self) -> PowerTrace | None:
        """The live power stream, its events and the supply voltage as one :class:`PowerTrace` (None before
        the first power sample)."""
        s = self.power_stream
        if s is None:
            return None

        def events() -> list[tuple[float, str, str]]:
            with self._lock:
                return list(self.power_events)

        return PowerTrace(s, events, float(self.voltage))

    def power_event(self, t: float, kind: str, text: str) -> None:
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
            from device.monitor import find_monitors, monitor_class

            for kind, p in find_monitors():
                found.append(
                    DeviceInfo(
                        f"{kind}:{p.serial_number or p.device}",
                        kind,
                        p.device,
                        f"{monitor_class(kind).short_name} {p.device}",
                        False,
                        p.vid_pid,
                        p.serial_number,
                    )
                )
            for p in discovery.find_nucleo():
                found.append(
                    DeviceInfo(
                        f"board:{p.serial_number or p.device}",
                        "board",
                        p.device,
                        f"NUCLEO {p.device}",
                        False,
                        p.vid_pid,
                        p.serial_number,
                    )
                )
        except Exception as exc:  # noqa: BLE001 - a broken port lister must not stop the app
            self.log(f"port scan failed: {exc}")
        with self._lock:
            for info in found:
                s = self._sessions.get(info.key)
                if s is None:
                    self._sessions[info.key] = self._make(info)
                elif s.info.url != info.url:  # re-enumerated under a new path (after a reset)
                    s.info = replace(s.info, url=info.url, name=info.name)
        if self._bench_mode or (self._bench_mode is None and not found):
            self.start_bench()
        self.notify_changed()
        return [s.info for s in self._sessions.values()]

    def start_bench(self) -> bool:
        """Start the in-process virtual bench (idempotent); False with :attr:`bench_error` set on failure."""
        if self.bench is not None:
            return True
        try:
            factory = self._bench_factory
            if factory is None:
                from device.bench import VirtualBench

                factory = VirtualBench
            bench = factory(**self._bench_kwargs)
            urls = bench.start()
        except Exception as exc:  # noqa: BLE001
            self.bench_error = f"virtual bench unavailable: {exc}"
            self.log(self.bench_error)
            return False
        self.bench = bench
        with self._lock:
            if urls.get("power_monitor"):
                from device.monitor import monitor_class

                kind = urls["power_monitor_kind"]
                name = f"{monitor_class(kind).short_name} (virtual)"
                info = DeviceInfo(f"{kind}:virtual", kind, urls["power_monitor"], name, True)
                self._sessions[info.key] = self._make(info)
            if urls.get("board"):
                what = "ODL firmware under QEMU" if urls.get("board_kind") == "qemu" else "Python emulator"
                info = DeviceInfo("board:virtual", "board", urls["board"], f"NUCLEO-L496ZG (virtual: {what})", True)
                self._sessions[info.key] = self._make(info)
        self.notify_changed()
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
        """The first device of a kind ('board', 'powershield', …; ``POWER_MONITOR``: any power monitor),
        connected ones first."""
        from device.monitor import is_monitor

        snap = [
            s for s in self.snapshot() if s.info.kind == kind or (kind == POWER_MONITOR and is_monitor(s.info.kind))
        ]
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
        self.notify_changed()

    def configure_accel(self, key: str, odr_hz: float, fs_g: int) -> None:
        if odr_hz not in ACCEL_ODR_HZ:
            raise DeviceError(f"accelerometer ODR {odr_hz} Hz is not one of {ACCEL_ODR_HZ}")
        if fs_g not in ACCEL_FS_G:
            raise DeviceError(f"accelerometer full scale ±{fs_g} g is not one of {ACCEL_FS_G}")
        s = self.accel_stream
        rec = _recorder_of(s)
        if s is not None and rec is not None and odr_hz != s.rate_hz:  # a new ODR is a new stream: the segment
            # being recorded got no sample more (7 s recorded, 2 s saved, without a word); a full scale may change
            raise DeviceError(
                f"The ODR stays {s.rate_hz:g} Hz while {rec.rec.name!r} is being recorded (a recording has one "
                "rate): stop it first (Labelling panel), then change the ODR"
            )
        self.accel_default = (float(odr_hz), int(fs_g))
        self._session(key).submit("config", odr_hz, fs_g)

    def power_rates_hz(self, key: str | None = None) -> tuple[int, ...]:
        """The sampling rates offered for power monitor ``key`` (its :class:`~device.monitor.PowerMonitor`'s
        ``rates_hz``); without a key, those of the first power monitor, or of the registry's default kind
        when there is none yet.  Class facts only: no I/O, safe on the GUI thread."""
        return self._monitor_cls(key).rates_hz

    def _monitor_cls(self, key: str | None):
        from device.monitor import REGISTRY, monitor_class

        if key is None:
            st = self.first(POWER_MONITOR)
            if st is None:
                return monitor_class(next(iter(REGISTRY)))
            key = st.info.key
        s = self._session(key)
        if not isinstance(s, _PowerSession):
            raise DeviceError(f"{s.info.name} is not a power monitor")
        return s.monitor_cls

    def power_voltage_range(self, key: str | None = None) -> tuple[float, float]:
        """The supply voltages (V, least and most) of power monitor ``key``: class facts, as
        :meth:`power_rates_hz`."""
        lo, hi = self._monitor_cls(key).voltage_range
        return float(lo), float(hi)

    def configure_power(self, key: str, rate_hz: int | None, voltage: float = 3.3) -> None:
        """Sampling rate (None: the one it has) and supply voltage of power monitor ``key``, applied on its session
        thread (a new rate or voltage starts a new power stream: one rate and one voltage per stream).  Refused
        while the power stream is recorded or a training round measures its batches on it, with another rate or
        voltage (one of each per stream)."""
        cls = self._monitor_cls(key)
        if rate_hz is not None and rate_hz not in cls.rates_hz:
            raise DeviceError(f"power sampling rate {rate_hz} Hz is not one of {cls.rates_hz} ({cls.short_name})")
        lo, hi = cls.voltage_range
        if not lo <= voltage <= hi:
            raise DeviceError(f"supply voltage {voltage} V outside {lo:g}..{hi:g} V ({cls.short_name})")
        self._refuse_while_measured(rate_hz, voltage)
        self.power_voltage_default = float(voltage)
        if rate_hz is not None:
            self.power_rate_default = int(rate_hz)
        self._session(key).submit("config", rate_hz, voltage)

    def _refuse_while_measured(self, rate_hz: float | None, voltage: float) -> None:
        """The power stream keeps its rate and voltage while something measures with it: a recording of it
        (whoever started it) or a training round (the energy of its batches).  Another rate or voltage starts a
        new stream: the recording got no sample more (its file ended without a word), the round's later
        batches no energy."""
        s = self.power_stream
        if s is None:
            return
        rec = _recorder_of(s)
        board = next((x.info.name for x in list(self._sessions.values()) if x.state == DeviceState.TRAINING), None)
        if rec is not None:
            volts, then = rec.voltage, "stop the recording first"

            def when(what: str) -> str:
                return f"while recording (a recording has one {what})"

        elif board is not None:
            volts, then = self.voltage, "wait for the round to end"

            def when(what: str) -> str:  # (the board's name is text: never a format string)
                return f"while a training round runs on {board} (its batches are measured at one {what})"

        else:
            return
        if rate_hz is not None and rate_hz != s.rate_hz:
            raise DeviceError(
                f"The sampling rate stays {s.rate_hz / 1000:g} kS/s {when('rate')}: {then}, then change the rate"
            )
        if voltage != volts:
            raise DeviceError(
                f"The supply voltage stays {volts:g} V {when('supply voltage')}: {then}, then change the voltage"
            )

    def call(
        self, key: str, fn: Callable[[Any], Any], done: Callable[[Any, BaseException | None], None] | None = None
    ) -> None:
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
        with s.state_lock:
            client = getattr(s, "client", None)
            if client is None or s.state not in (DeviceState.READY, DeviceState.STREAMING):
                raise DeviceError(f"{st.info.name} is reconnecting: try again in a moment")
            prev = s.state
            s.enter_training()
        try:
            yield client
        finally:
            s.leave_training(prev)

    def unplug(self, key: str, seconds: float = 1.0, new_port: bool = False) -> None:
        """Virtual devices only: simulate a USB glitch (the bench drops the link for ``seconds``; with
        ``new_port`` it comes back under a new port name, like a re-enumerated USB device)."""
        s = self._session(key)
        if not s.info.virtual or self.bench is None:
            raise DeviceError(f"{s.info.name} is not a virtual device")
        self.bench.unplug(s.info.kind, seconds, new_port=new_port)

    def shutdown(self, timeout: float = 3.0) -> None:
        """Disconnect every device and end its thread — all at once (each one's disconnect, a driver closing its
        port and reader thread, takes ~0.3 s: one after the other they made quitting slow)."""
        with self._lock:
            sessions = list(self._sessions.values())
        for s in sessions:
            s.request_shutdown()
        deadline = time.monotonic() + timeout
        for s in sessions:
            s.join_shutdown(deadline)
        if self.bench is not None:
            try:
                self.bench.stop()
            finally:
                self.bench = None

    def lost_samples(self) -> dict[str, int]:
        """Samples lost while streaming, per device kind ('board', 'powershield'); see ``_Session.lost_samples``."""
        out: dict[str, int] = {}
        with self._lock:
            for s in self._sessions.values():
                out[s.info.kind] = out.get(s.info.kind, 0) + s.lost_samples
        return out

    def _session(self, key: str) -> _Session:
        with self._lock:
            try:
                return self._sessions[key]
            except KeyError:
                raise DeviceError(f"no device {key!r} (known: {', '.join(self._sessions) or 'none'})") from None

    # --- streams ---------------------------------------------------------------------------------------
    def ensure_accel_stream(self, rate_hz: float) -> SampleStream:
        with self._lock:
            s = self.accel_stream
            if s is None or s.rate_hz != rate_hz:
                s = SampleStream(
                    "accel",
                    rate_hz,
                    3,
                    unit="m/s²",
                    channel_names=("x", "y", "z"),
                    recent_s=self.history_s,
                    history_s=self.history_s,
                    base=16,
                    factor=8,
                )
                if self.accel_stream is not None:  # a new rate: keep the timeline position
                    s.extend_to(self.accel_stream.duration, mark=False)
                self.accel_stream = s
                self.version += 1
            return s

    def ensure_power_stream(self, rate_hz: float, voltage: float) -> SampleStream:
        """The power stream at ``rate_hz``, its samples measured at supply ``voltage``: a new stream when either
        changed (energy = charge x the voltage of :attr:`voltage`, one per stream: the samples of another
        voltage would have been counted at the new one)."""
        with self._lock:
            s = self.power_stream
            if s is None or s.rate_hz != rate_hz or voltage != self.voltage:
                self.voltage = voltage
                s = SampleStream(
                    "current",
                    rate_hz,
                    1,
                    unit="A",
                    channel_names=("I",),
                    recent_s=self.power_recent_s,
                    history_s=self.history_s,
                )
                if self.power_stream is not None:
                    s.extend_to(self.power_stream.duration, mark=False)
                self.power_stream = s
                self.version += 1
            return s
