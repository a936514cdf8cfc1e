"""Host driver for the X-NUCLEO-LPM01A PowerShield shell (protocol reference §1–§2).

:class:`PowerShield` opens any pyserial URL (``/dev/ttyACM0``, ``COM5``, ``socket://127.0.0.1:PORT``,
a pty path) at 3 686 400 baud 8N1 without flow control and offers one method per shell command, each
validating its arguments *before* sending (an :class:`ArgumentError` names the argument and its allowed
range).  Replies are read **by grammar, not by line count** (§8 item 4): the driver waits for
``ack <cmd>`` or ``error <cmd>`` (+ an optional ``Error detail:`` line), ignores stale lines from earlier
exchanges, drops NUL bytes, and every wait has a timeout.

While an acquisition runs, the reader thread of :class:`device.lpm01a.capture.Capture` owns the port;
commands allowed during acquisition (``stop``, ``pwr``, ``targrst``, ``volt get``, ``temp``,
``status``) are written by the caller and their replies — ASCII ack lines inside an ``ascii_dec`` stream,
F6–F9 frames inside a ``bin_hexa`` stream — are routed back by the reader thread
(:meth:`PowerShield.deliver_stream_event`) to the waiting caller.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import serial

try:  # a pty or tty whose device side vanished raises termios.error (not an OSError) from tcdrain
    import termios as _termios

    _PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, _termios.error)
except ImportError:  # Windows
    _PORT_ERRORS = (serial.SerialException, OSError)

from device.lpm01a import spec
from device.lpm01a.decode import (
    ACK,
    COMPLETED,
    ERROR_DETAIL,
    INFO,
    PWR,
    REPLY_ERROR,
    TARGRST,
    TEMP,
    VOLT,
    StreamEvent,
    classify_text_line,
)
from device.monitor import (
    MonitorAcquisitionError,
    MonitorError,
    MonitorLinkError,
    MonitorSettingError,
    MonitorTimeout,
    ProtectiveStop,
)

__all__ = [
    "PowerShieldError",
    "ArgumentError",
    "CommandRejected",
    "NotAllowedWhileAcquiring",
    "PowerShieldTimeout",
    "Disconnected",
    "AcquisitionError",
    "Overcurrent",
    "BufferOverflow",
    "Reply",
    "PowerShield",
]

log = logging.getLogger(__name__)


# --- errors -------------------------------------------------------------------------------------
class PowerShieldError(MonitorError):
    """Base class of every error this driver raises."""


class ArgumentError(PowerShieldError, MonitorSettingError, spec.ArgumentError):
    """A command argument is outside the protocol's syntax or range (checked before sending)."""


class CommandRejected(PowerShieldError):
    """The shield answered ``error <cmd>`` (``detail`` = its ``Error detail:`` text, if any)."""

    def __init__(self, cmd: str, detail: str = "", line: str = "") -> None:
        self.cmd, self.detail, self.line = cmd, detail, line
        msg = f"PowerShield rejected {line or cmd!r}"
        super().__init__(msg + (f": {detail}" if detail else " (no detail given)"))


class NotAllowedWhileAcquiring(PowerShieldError):
    """Refused on the host side: the command is not accepted while an acquisition runs (§2.3)."""


class PowerShieldTimeout(PowerShieldError, MonitorTimeout):
    """No (complete) reply within the timeout."""


class Disconnected(PowerShieldError, MonitorLinkError):
    """The port went away (USB unplugged, socket closed, ``psrst``)."""


class AcquisitionError(PowerShieldError, MonitorAcquisitionError):
    """The shield stopped an acquisition with an error (voltage drop, static instability, …)."""


class Overcurrent(AcquisitionError, ProtectiveStop):
    """Dynamic-mode overcurrent protection tripped (≳ 59 mA; F5 frame / ``overcurrent`` text)."""


class BufferOverflow(AcquisitionError):
    """The shield's Tx buffer overflowed because the host read too slowly; acquisition stopped."""


def error_for_event(ev: StreamEvent) -> AcquisitionError:
    """The exception matching a device ``error`` stream event."""
    cls = {"overcurrent": Overcurrent, "overflow": BufferOverflow}.get(ev.code, AcquisitionError)
    return cls(f"PowerShield stopped the acquisition at sample {ev.index}: {ev.text or ev.code}")


# --- replies ------------------------------------------------------------------------------------
@dataclass
class Reply:
    """A successful reply: ``text`` is what follows ``ack`` (command echo + data), ``lines`` extra lines."""

    cmd: str
    text: str = ""
    lines: list[str] = field(default_factory=list)
    value: float | None = None  # for binary F7/F8/F9 acks during acquisition

    @property
    def last_token(self) -> str:
        toks = self.text.replace(":", " ").split()
        return toks[-1] if toks else ""


class _AcquisitionOver(PowerShieldError):
    """Internal: the reader thread handed the port back while a command waited for its reply."""


class _Pending:
    """A command sent while the reader thread owns the port, waiting for its in-stream reply."""

    def __init__(self, name: str, line: str) -> None:
        self.name, self.line = name, line
        self.cond = threading.Condition()
        self.reply: Reply | None = None
        self.rejected_at: float | None = None
        self.detail = ""
        self.error: BaseException | None = None

    def done(self) -> bool:
        return self.reply is not None or self.error is not None or (self.rejected_at is not None and bool(self.detail))


#: stream events that answer a command during binary acquisition (F6–F9 frames)
_FRAME_ACK = {VOLT: "volt", TEMP: "temp", PWR: "pwr", TARGRST: "targrst"}

_NAME_ALIASES = {"currthres": "currthre"}


def _norm(name: str) -> str:
    name = name.lower()
    return _NAME_ALIASES.get(name, name)


class PowerShield:
    """Client of one PowerShield.  Use as a context manager or call :meth:`open`/:meth:`close`.

    ``timeout``: default seconds to wait for a reply; ``read_timeout``: per-read port timeout (short;
    socket URLs read fixed-size blocks, §8 item 11)."""

    DETAIL_WAIT_S = 0.5  # how long to wait for "Error detail:" after an error line
    LONG_COMMANDS = {"calib": 30.0, "autotest": 60.0, "volt": 10.0, "psrst": 5.0, "help": 3.0}

    def __init__(
        self,
        url: str,
        timeout: float = 2.0,
        read_timeout: float = 0.02,
        open_now: bool = True,
        serial_factory: Callable[..., serial.SerialBase] = serial.serial_for_url,
    ) -> None:
        self.url = url
        self.timeout = float(timeout)
        self.read_timeout = float(read_timeout)
        self._factory = serial_factory
        self.port: serial.SerialBase | None = None
        self._rx = bytearray()
        self._lock = threading.RLock()  # serialises commands
        self._pending: collections.deque[_Pending] = collections.deque()
        self._pending_lock = threading.Lock()
        self.unsolicited: collections.deque[str] = collections.deque(maxlen=200)
        self.state = "closed"  # closed | unknown | host | acquiring
        self.settings: dict[str, Any] = {}  # what the setters sent: numbers, names, (source, edge)
        self.firmware: str | None = None
        self.uid: str | None = None
        self.block_size = 16384
        if open_now:
            self.open()

    # --- port -------------------------------------------------------------------------------------
    @property
    def is_socket(self) -> bool:
        return self.url.startswith("socket://")

    def open(self) -> None:
        """Open the port (3 686 400 baud, 8N1, no flow control)."""
        try:
            self.port = self._factory(
                self.url,
                baudrate=spec.BAUDRATE,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                xonxoff=False,
                rtscts=False,
                dsrdtr=False,
                timeout=self.read_timeout,
                write_timeout=max(1.0, self.timeout),
            )
        except _PORT_ERRORS + (ValueError,) as exc:
            raise Disconnected(f"cannot open PowerShield port {self.url!r}: {exc}") from exc
        self._rx.clear()
        self.state = "unknown"

    def close(self) -> None:
        port, self.port = self.port, None
        self.state = "closed"
        if port is not None:
            try:
                port.close()
            except _PORT_ERRORS:
                pass

    def reconnect(self, wait_s: float = 10.0, url: str | None = None) -> None:
        """Reopen the port after :class:`Disconnected` (USB unplug/replug, a reset shield): wait up to
        ``wait_s`` seconds for it to come back (under ``url`` if its name changed), reopen it and stop a
        stream the shield kept running meanwhile (:meth:`drain_stale_stream`).  Settings are not
        assumed to have survived: call :meth:`configure` again."""
        self.close()
        if url is not None:
            self.url = url
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.open()
                break
            except Disconnected as exc:
                if time.monotonic() >= deadline:
                    raise Disconnected(
                        f"PowerShield port {self.url!r} did not come back within {wait_s:g} s ({exc})"
                    ) from None
                time.sleep(0.1)
        self.drain_stale_stream()

    def __enter__(self) -> "PowerShield":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read_raw(self) -> bytes:
        """Read what is available (at most one block) with the short port timeout; b'' if nothing.

        Raises :class:`Disconnected` if the port is gone.  Used by the capture reader thread."""
        port = self.port
        if port is None:
            raise Disconnected(f"PowerShield port {self.url!r} is closed")
        try:
            if self.is_socket:
                return port.read(self.block_size)
            n = port.in_waiting
            return port.read(min(max(n, 1), 1 << 20))
        except _PORT_ERRORS + (TypeError, AttributeError) as exc:
            self.state = "closed"
            raise Disconnected(f"PowerShield on {self.url!r} disconnected: {exc}") from exc

    def _read_reply_bytes(self) -> bytes:
        """Low-latency read for replies: on sockets a fixed-size block read would wait for the whole
        timeout, so block for the first byte and then take whatever else is already there."""
        if not self.is_socket:
            return self.read_raw()
        port = self.port
        if port is None:
            raise Disconnected(f"PowerShield port {self.url!r} is closed")
        try:
            first = port.read(1)
            if not first:
                return b""
            port.timeout = 0
            try:
                return first + port.read(1 << 16)
            finally:
                port.timeout = self.read_timeout
        except _PORT_ERRORS + (TypeError, AttributeError) as exc:
            self.state = "closed"
            raise Disconnected(f"PowerShield on {self.url!r} disconnected: {exc}") from exc

    def _write(self, line: str) -> None:
        port = self.port
        if port is None:
            raise Disconnected(f"PowerShield port {self.url!r} is closed")
        try:
            port.write(line.encode("ascii") + b"\n")
            port.flush()
        except serial.SerialTimeoutException as exc:
            raise PowerShieldTimeout(f"writing {line!r} to {self.url!r} timed out") from exc
        except _PORT_ERRORS as exc:
            self.state = "closed"
            raise Disconnected(f"PowerShield on {self.url!r} disconnected while sending {line!r}: {exc}") from exc

    def _next_line(self, deadline: float, what: str) -> str:
        while True:
            nl = self._rx.find(b"\n")
            if nl >= 0:
                raw = bytes(self._rx[:nl])
                del self._rx[: nl + 1]
                return raw.replace(b"\x00", b"").decode("ascii", "replace").strip("\r\n ")
            if time.monotonic() >= deadline:
                raise PowerShieldTimeout(f"no reply to {what!r} from {self.url!r} (waited {self.timeout:g} s or more)")
            self._rx += self._read_reply_bytes()

    # --- grammar ----------------------------------------------------------------------------------
    def command(self, line: str, timeout: float | None = None, check: bool = True) -> Reply:
        """Send one command line and wait for its reply (by grammar).

        Raises :class:`CommandRejected` on ``error``, :class:`PowerShieldTimeout` without a reply,
        :class:`NotAllowedWhileAcquiring` (if ``check``) for commands the shield refuses while
        acquiring."""
        line = line.strip()
        if not line or any(ord(c) < 0x20 or ord(c) > 0x7E for c in line):
            raise ArgumentError(f"command line {line!r} must be non-empty printable ASCII without line breaks")
        name = _norm(line.split()[0])
        if timeout is None:
            timeout = max(self.timeout, self.LONG_COMMANDS.get(name, 0.0))
        if self.state == "acquiring":
            if check and name not in spec.ALLOWED_WHILE_ACQUIRING:
                raise NotAllowedWhileAcquiring(
                    f"{name!r} is not accepted while an acquisition runs; allowed: {', '.join(sorted(spec.ALLOWED_WHILE_ACQUIRING))} (stop first)"
                )
            return self._command_in_stream(name, line, timeout)
        with self._lock:
            self._write(line)
            return self._await_reply(name, line, timeout)

    def _await_reply(self, name: str, line: str, timeout: float) -> Reply:
        deadline = time.monotonic() + timeout
        while True:
            text = self._next_line(deadline, line)
            ev = classify_text_line(text)
            if ev is None:
                continue
            if ev.kind == ACK and _norm(ev.cmd) == name:
                self.state = "host" if self.state in ("unknown", "closed") and name == "htc" else self.state
                rest = ev.text[len(ev.cmd) :].lstrip(": ").strip()  # ev.cmd is ev.text's first word, lowercased
                reply = Reply(name, rest)
                if name == "help":
                    reply.lines = self._drain_lines(0.2, deadline)
                return reply
            if ev.kind == REPLY_ERROR and (_norm(ev.cmd) == name or not ev.cmd):
                detail = self._error_detail(min(deadline, time.monotonic() + self.DETAIL_WAIT_S))
                raise CommandRejected(name, detail, line)
            if ev.kind == INFO and name == "echo" and ev.text.lower().startswith("echo"):
                return Reply(name, ev.text[4:].strip())
            if ev.kind == INFO and name == "powershield" and ev.text.lower().startswith("powershield"):
                return Reply(name, ev.text)
            if ev.kind == COMPLETED:
                self.state = "host" if self.state == "acquiring" else self.state
            self.unsolicited.append(text)
            log.debug("unsolicited line while waiting for %r: %r", line, text)

    def _error_detail(self, deadline: float) -> str:
        try:
            while True:
                text = self._next_line(deadline, "Error detail")
                ev = classify_text_line(text)
                if ev is None:
                    continue
                if ev.kind == ERROR_DETAIL:
                    return ev.text
                self._rx[:0] = text.encode("ascii", "replace") + b"\n"  # not ours: put it back
                return ""
        except PowerShieldTimeout:
            return ""

    def _drain_lines(self, quiet_s: float, deadline: float) -> list[str]:
        lines: list[str] = []
        last = time.monotonic()
        while time.monotonic() - last < quiet_s and time.monotonic() < deadline:
            nl = self._rx.find(b"\n")
            if nl < 0:
                data = self._read_reply_bytes()
                if data:
                    self._rx += data
                    last = time.monotonic()
                continue
            raw = bytes(self._rx[:nl]).replace(b"\x00", b"").decode("ascii", "replace").strip("\r\n ")
            del self._rx[: nl + 1]
            if raw:
                lines.append(raw)
            last = time.monotonic()
        return lines

    # --- commands during acquisition (the reader thread owns the port) ----------------------------
    def _command_in_stream(self, name: str, line: str, timeout: float) -> Reply:
        pend = _Pending(name, line)
        with self._pending_lock:
            self._pending.append(pend)
        try:
            self._write(line)
            deadline = time.monotonic() + timeout
            with pend.cond:
                while not pend.done():
                    now = time.monotonic()
                    if pend.rejected_at is not None and now - pend.rejected_at >= self.DETAIL_WAIT_S:
                        break
                    if now >= deadline:
                        raise PowerShieldTimeout(
                            f"no in-stream reply to {line!r} from {self.url!r} within {timeout:g} s"
                        )
                    pend.cond.wait(min(0.05, deadline - now))
            if isinstance(pend.error, _AcquisitionOver) and pend.reply is None and pend.rejected_at is None:
                # the stream ended first (the shield queues commands that arrive while it drains its
                # buffer and answers them afterwards as ordinary replies): read that reply now
                with self._lock:
                    return self._await_reply(name, line, max(0.2, deadline - time.monotonic()))
            # a rejection that came in the stream before its end stays a rejection (not the internal
            # _AcquisitionOver, which fail_pending also sets on it when the stream ended meanwhile)
            if pend.error is not None and not (
                isinstance(pend.error, _AcquisitionOver) and pend.rejected_at is not None
            ):
                raise pend.error
            if pend.reply is not None:
                return pend.reply
            raise CommandRejected(name, pend.detail, line)
        finally:
            with self._pending_lock:
                if pend in self._pending:
                    self._pending.remove(pend)

    def deliver_stream_event(self, ev: StreamEvent) -> bool:
        """Called by the reader thread for each stream event; returns True if it answered a command."""
        with self._pending_lock:
            if not self._pending:
                return False
            target: _Pending | None = None
            if ev.kind == ACK:
                target = next((p for p in self._pending if p.name == _norm(ev.cmd)), None)
                if target is not None:
                    rest = ev.text[len(ev.cmd) :].lstrip(": ").strip()
                    with target.cond:
                        target.reply = Reply(target.name, rest)
                        target.cond.notify_all()
            elif ev.kind in _FRAME_ACK:
                target = next((p for p in self._pending if p.name == _FRAME_ACK[ev.kind]), None)
                if target is not None:
                    with target.cond:
                        target.reply = Reply(target.name, ev.text, value=ev.value)
                        target.cond.notify_all()
            elif ev.kind == REPLY_ERROR:
                target = next((p for p in self._pending if p.name == _norm(ev.cmd) or not ev.cmd), None)
                if target is not None:
                    with target.cond:
                        target.rejected_at = time.monotonic()
                        target.cond.notify_all()
            elif ev.kind == ERROR_DETAIL:
                target = next((p for p in self._pending if p.rejected_at is not None and not p.detail), None)
                if target is not None:
                    with target.cond:
                        target.detail = ev.text or "(empty detail)"
                        target.cond.notify_all()
            return target is not None

    def fail_pending(self, exc: BaseException) -> None:
        """Wake every waiting in-stream command with ``exc`` (acquisition ended / port lost)."""
        with self._pending_lock:
            for p in self._pending:
                with p.cond:
                    if p.reply is None:
                        p.error = exc
                    p.cond.notify_all()

    # --- acquisition hand-over (used by Capture) --------------------------------------------------
    def begin_acquisition(self) -> bytes:
        """Send ``start``; on ``ack start`` the reader thread takes the port.  Returns the stream
        bytes already received after the ack line."""
        self.check_settings()
        with self._lock:
            if self.state == "acquiring":
                raise NotAllowedWhileAcquiring("an acquisition is already running (stop it first)")
            self._write("start")
            self._await_reply("start", "start", self.timeout)
            self.state = "acquiring"
            leftover = bytes(self._rx)
            self._rx.clear()
            return leftover

    def end_acquisition(self, trailing: bytes = b"") -> None:
        """The reader thread gives the port back; ``trailing`` = bytes after ``Acquisition completed``."""
        self.fail_pending(_AcquisitionOver("the acquisition ended before the reply arrived"))
        if self.state == "acquiring":
            self.state = "host"
        self._rx[:0] = trailing

    def send_stop(self) -> None:
        """Write ``stop`` (during an acquisition the reader thread waits for ``Acquisition completed``)."""
        self._write("stop")

    # --- typed commands -------------------------------------------------------------------------------
    def htc(self) -> None:
        """Take host control (needed before any measurement command).  The first command a session
        sends: a port that does not answer it is said not to look like an LPM01A."""
        try:
            self.command("htc")
        except PowerShieldTimeout as exc:
            if self.state != "unknown" or self.firmware is not None:
                raise
            raise PowerShieldTimeout(
                f"{exc}: the device on {self.url!r} does not look like an X-NUCLEO-LPM01A (wrong port, another "
                "device, or a shield with other firmware)"
            ) from None
        self.state = "host"

    def hrc(self) -> None:
        """Release host control (back to standalone)."""
        self.command("hrc")
        self.state = "unknown"

    def help(self) -> list[str]:
        r = self.command("help")
        return ([r.text] if r.text else []) + r.lines

    def echo(self, text: str) -> str:
        return self.command(f"echo {text}").text

    def powershield(self) -> str:
        """Board UID (``ack powershield <uid>`` or a ``PowerShield present …`` line)."""
        r = self.command("powershield")
        self.uid = r.last_token or r.text
        return self.uid

    def version(self) -> str:
        """Firmware version, e.g. ``1.0.7``."""
        r = self.command("version")
        self.firmware = r.last_token
        return self.firmware

    def range(self) -> str:
        return self.command("range").text

    def status(self) -> str:
        """``ok`` or the latched error text (querying clears it)."""
        r = self.command("status")
        text = r.text.strip()
        return "ok" if text.lower() in ("ok", "status ok") else text.removeprefix("status").strip() or text

    def lcd(self, line: int, text: str) -> None:
        if line not in (1, 2):
            raise ArgumentError(f"lcd line {line!r}: must be 1 or 2")
        if len(text) > spec.LCD_MAX_CHARS or '"' in text or any(ord(c) < 0x20 or ord(c) > 0x7E for c in text):
            raise ArgumentError(
                f"lcd text {text!r}: at most {spec.LCD_MAX_CHARS} printable ASCII characters, no double quote"
            )
        self.command(f'lcd {line} "{text}"')

    def set_volt(self, volts: float) -> None:
        """Supply voltage, 1.8 … 3.3 V (sent in mV: ``volt 3300m``)."""
        v = self._number("volt", volts)
        self.command(f"volt {spec.format_number(round(v * 1000))}m")
        self.settings["volt"] = v

    def volt_get(self) -> float:
        """Measured supply voltage in volts (works during an acquisition too: F7 frame)."""
        r = self.command("volt get")
        if r.value is not None:
            return float(r.value)
        return _parse_value(r.last_token, "volt get")

    def set_freq(self, freq: int | str) -> None:
        """Sampling rate: one of the 16 rates 1 Hz … 100 kHz (``100k``, ``1000``, 100000)."""
        try:
            hz = spec.parse_freq_user(freq) if isinstance(freq, str) else spec.parse_freq_user(str(int(freq)))
        except (spec.ArgumentError, ValueError) as exc:
            raise ArgumentError(str(exc)) from None
        self.command(f"freq {spec.format_freq(hz)}")
        self.settings["freq"] = hz

    def set_acqtime(self, seconds: float | None) -> None:
        """Acquisition time 100 µs … 100 s; 0, None or inf = until ``stop``."""
        if seconds is None or seconds == 0 or (isinstance(seconds, float) and math.isinf(seconds)):
            self.command("acqtime 0")
            self.settings["acqtime"] = 0.0
            return
        s = self._number("acqtime", seconds)
        self.command(f"acqtime {spec.format_number(s)}")
        self.settings["acqtime"] = s

    def set_acqmode(self, mode: str) -> None:
        self._choice("acqmode", mode)

    def set_funcmode(self, mode: str) -> None:
        self._choice("funcmode", mode)

    def set_output(self, output: str) -> None:
        self._choice("output", output)

    def set_format(self, fmt: str) -> None:
        self._choice("format", fmt)

    def set_trigsrc(self, src: str) -> None:
        self._choice("trigsrc", src)

    def set_trigdelay(self, seconds: float) -> None:
        s = self._number("trigdelay", seconds)
        self.command(f"trigdelay {spec.format_number(s)}")
        self.settings["trigdelay"] = s

    def set_currthre(self, amps: float) -> None:
        a = self._number("currthre", amps)
        self.command(f"currthre {spec.format_number(a)}")
        self.settings["currthre"] = a

    def pwr(self, state: str, report: str | None = None) -> str | None:
        """Target supply: ``auto|on|off|get``, optional ``status|nostatus``; ``get`` returns ``on``/``off``."""
        self._check_choice("pwr", state)
        if report not in (None, "status", "nostatus"):
            raise ArgumentError(f"pwr report {report!r}: must be 'status' or 'nostatus'")
        r = self.command(f"pwr {state}" + (f" {report}" if report else ""))
        if state == "get":
            if r.value is not None:
                return "on" if r.value else "off"
            return r.last_token
        return None

    def set_pwrend(self, on: bool | str) -> None:
        val = on if isinstance(on, str) else ("on" if on else "off")
        self._choice("pwrend", val)

    def targrst(self, seconds: float) -> None:
        """Power-cycle the target for ``seconds`` (1 ms … 1 s; 0 = leave it off).  OK during acquisition."""
        s = self._number("targrst", seconds)
        self.command(f"targrst {spec.format_number(s)}")

    def temp(self, unit: str = "degc") -> float:
        """Board temperature (°C or °F); works during an acquisition (F8 frame)."""
        self._check_choice("temp", unit)
        r = self.command(f"temp {unit}")
        if r.value is not None:
            return float(r.value)
        return float(r.last_token)

    def autotest(self, action: str = "start", scope: str | None = None) -> str:
        self._check_choice("autotest", action)
        if scope not in (None, "stat_all", "stat_min"):
            raise ArgumentError(f"autotest scope {scope!r}: must be 'stat_all' or 'stat_min'")
        return self.command(f"autotest {action}" + (f" {scope}" if scope else "")).text

    def calib(self) -> None:
        self.command("calib")

    def eventsrc(self, source: str = "d7", edge: str = "ris") -> None:
        """Report edges on Arduino D7 as ``event NN ris`` in the stream (FW 1.0.7, undocumented)."""
        if source not in ("d7", "off"):
            raise ArgumentError(f"eventsrc source {source!r}: must be 'd7' or 'off'")
        if source == "off":
            self.command("eventsrc off")
            self.settings["eventsrc"] = None
            return
        if edge not in ("ris", "fal"):
            raise ArgumentError(f"eventsrc edge {edge!r}: must be 'ris' or 'fal'")
        self.command(f"eventsrc {source} {edge}")
        self.settings["eventsrc"] = (source, edge)

    def stop(self) -> None:
        """Idle ``stop`` (the shield acks it); during an acquisition use ``Capture.stop``."""
        if self.state == "acquiring":
            raise PowerShieldError("an acquisition is running: stop it through its Capture (Capture.stop)")
        try:
            self.command("stop")
        except CommandRejected:
            pass

    def psrst(self, reopen: bool = True, timeout: float = 30.0) -> None:
        """Hardware-reset the shield; it re-enumerates (path may change: found again by VID:PID)."""
        from device import discovery

        with self._lock:
            try:
                self._write("psrst")
                try:
                    self._await_reply("psrst", "psrst", 1.0)
                except (PowerShieldTimeout, Disconnected):
                    pass
            except Disconnected:
                pass
            old = self.url
            # The USB serial number survives the reset; with two shields plugged in, it is what tells
            # ours apart from the other one when the path changes.
            serial = next((p.serial_number for p in discovery.find_powershield() if p.device == old), None)
            self.close()
            self.settings.clear()
            if not reopen:
                return
            deadline = time.monotonic() + timeout
            if not self.url.startswith(("socket://", "loop://", "rfc2217://")) and discovery.find_powershield():
                found = discovery.wait_for_port(discovery.LPM01A_IDS, timeout, serial_number=serial, gone_first=old)
                if found is None:
                    raise Disconnected(f"PowerShield did not re-enumerate within {timeout:g} s after psrst")
                self.url = found.device
            last: Exception | None = None
            while time.monotonic() < deadline:
                try:
                    self.open()
                    break
                except Disconnected as exc:
                    last = exc
                    time.sleep(0.25)
            else:
                raise Disconnected(f"PowerShield did not come back within {timeout:g} s after psrst: {last}")
            while True:  # autotest + calibration run at power-up: poll status until ok
                try:
                    if self.status() == "ok":
                        return
                except (PowerShieldTimeout, CommandRejected):
                    pass
                if time.monotonic() >= deadline:
                    raise PowerShieldTimeout(f"PowerShield status not ok within {timeout:g} s after psrst")
                time.sleep(0.25)

    # --- high level ---------------------------------------------------------------------------
    def configure(
        self,
        freq: int | str = 1000,
        fmt: str = "bin_hexa",
        acqtime: float | None = 0.0,
        output: str = "current",
        volt: float | None = 3.3,
        acqmode: str = "dyn",
        funcmode: str | None = "optim",
        trigsrc: str = "sw",
        trigdelay: float | None = None,
        eventsrc: tuple[str, str] | None = None,
        pwrend: bool | None = None,
    ) -> None:
        """Take host control and set everything an acquisition relies on (settings persist on the
        board between connections, §8 item 10, so never assume defaults).  Combination rules are
        checked before anything is sent."""
        try:
            hz = spec.parse_freq_user(str(freq))
        except spec.ArgumentError as exc:  # the driver's ArgumentError (a MonitorSettingError), as set_freq's
            raise ArgumentError(str(exc)) from None
        self._check_choice("format", fmt)
        self._check_choice("output", output)
        self.check_combination(hz, fmt, acqtime, output, funcmode)
        if volt is not None:
            self._number("volt", volt)
        self.drain_stale_stream()
        self.htc()
        self.set_acqmode(acqmode)
        self.set_output(output)
        if funcmode is not None and output == "current":
            self.set_funcmode(funcmode)
        self.set_format(fmt)
        self.set_freq(hz)
        self.set_acqtime(acqtime)
        self.set_trigsrc(trigsrc)
        if trigdelay is not None:
            self.set_trigdelay(trigdelay)
        if eventsrc is not None:
            self.eventsrc(*eventsrc)
        if pwrend is not None:
            self.set_pwrend(pwrend)
        if volt is not None:
            self.set_volt(volt)

    def drain_stale_stream(self, quiet_s: float = 0.3, timeout: float = 10.0) -> bool:
        """If the shield is still streaming (e.g. a previous host died mid-acquisition, settings and
        state persist on the board), send ``stop`` and discard bytes until ``Acquisition completed``
        or silence.  Returns True if a stale stream was found.  Costs one short read when idle."""
        if self.state == "acquiring":
            raise NotAllowedWhileAcquiring("an acquisition of this driver is running (stop its Capture)")
        with self._lock:
            data = bytes(self._rx) + self.read_raw()
            self._rx.clear()
            if not data:
                return False
            self._write("stop")
            deadline = time.monotonic() + timeout
            last = time.monotonic()
            tail = data[-64:]
            while time.monotonic() < deadline and time.monotonic() - last < quiet_s:
                if b"Acquisition completed" in tail:
                    idx = tail.rfind(b"Acquisition completed")
                    self._rx += tail[idx:].split(b"\n", 1)[1] if b"\n" in tail[idx:] else b""
                    break
                chunk = self.read_raw()
                if chunk:
                    last = time.monotonic()
                    tail = (tail + chunk)[-4096:]
            self.unsolicited.append(f"discarded a stale stream ({len(data)}+ bytes) before configuring")
            return True

    @staticmethod
    def check_combination(
        freq_hz: int, fmt: str, acqtime: float | None, output: str = "current", funcmode: str | None = None
    ) -> None:
        """Refuse combinations the shield cannot honour (§2.4, §4), naming the arguments."""
        if output == "energy" and freq_hz > spec.ENERGY_MAX_HZ:
            raise ArgumentError(
                f"freq {freq_hz} Hz with output energy: energy output allows at most {spec.ENERGY_MAX_HZ} Hz"
            )
        if funcmode == "high" and output != "current":
            raise ArgumentError("funcmode high requires output current")
        if fmt == "ascii_dec":
            limit = spec.ascii_duration_limit(freq_hz)
            endless = acqtime is None or acqtime == 0 or math.isinf(acqtime)
            if limit is not None and (endless or (acqtime is not None and acqtime > limit + 1e-12)):
                allowed = "not supported at all" if limit == 0 else f"at most {limit:g} s"
                raise ArgumentError(
                    f"format ascii_dec at freq {freq_hz} Hz: acqtime {'infinite' if endless else f'{acqtime:g} s'} is beyond the "
                    f"ASCII throughput limit ({allowed}, UM2269 Table 2); use format bin_hexa"
                )

    def check_settings(self) -> None:
        """Re-check the combination of the settings this driver sent (before ``start``)."""
        s = self.settings
        if "freq" in s and "format" in s:
            self.check_combination(
                int(s["freq"]),
                str(s["format"]),
                s.get("acqtime", 0.0),
                str(s.get("output", "current")),
                s.get("funcmode"),
            )

    # --- helpers ------------------------------------------------------------------------------
    def _number(self, name: str, value: float) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ArgumentError(f"{name} {value!r}: not a number") from None
        if not math.isfinite(v):
            raise ArgumentError(f"{name} {value!r}: must be finite")
        try:
            return spec.RANGES[name].check(v)
        except spec.ArgumentError as exc:
            raise ArgumentError(str(exc)) from None

    def _check_choice(self, name: str, value: str) -> None:
        if value not in spec.CHOICES[name]:
            raise ArgumentError(f"{name} {value!r}: must be one of {', '.join(spec.CHOICES[name])}")

    def _choice(self, name: str, value: str) -> None:
        self._check_choice(name, value)
        self.command(f"{name} {value}")
        self.settings[name] = value


def _parse_value(token: str, what: str) -> float:
    """A number in the shield's output syntax (``3292-03``, ``28.0``, ``3300m``)."""
    t = token.strip()
    try:
        return float(t)
    except ValueError:
        pass
    try:
        return spec.parse_number(t)
    except spec.ArgumentError:
        raise PowerShieldError(f"cannot read the value in the reply to {what!r}: {token!r}") from None
