"""Expose an :class:`~device.emulated.EmulatedDevice` as a real serial endpoint.

* :class:`SocketEndpoint` - a TCP listener on 127.0.0.1 (never another interface) that pyserial opens as
  ``socket://127.0.0.1:PORT`` on every OS.
* :class:`PtyEndpoint` - POSIX only: a pseudo-terminal in raw mode; ``url`` is a path pyserial opens like
  any serial port (a stable symlink to the current ``/dev/pts/N`` when ``link`` is given).
* :class:`SerialEndpoint` - the common service: one thread, optionally both transports at once.

One service thread per endpoint does, in a ``select`` loop with a timeout (no busy loop): read host
bytes -> ``device.receive``; ``device.advance(clock.now())``; send ``device.pending()`` with non-blocking
writes through a small socket send buffer; ``device.consume(n)`` for exactly what the OS accepted.  The
endpoint never buffers data itself, so a host that stops reading fills the *device's* FIFO.

One host at a time: the newest connection wins - a second TCP client replaces the first (the old socket
is closed and the device sees ``disconnect()`` then ``connect()``).  A pty host is "connected" while some
process holds the slave open; a TCP client that connects while a pty host is present takes over (pty
input is then discarded until the TCP client leaves).

Faults: :meth:`SerialEndpoint.unplug` drops the connection and makes the port disappear (listener closed
/ pty destroyed) for ``seconds`` (or until :meth:`replug`), optionally coming back on a new port.  The
device can request the same (``take_unplug_request()``, used for ``psrst``).
"""

from __future__ import annotations

import logging
import os
import select
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable

from device.emulated import EmulatedDevice
from device.simclock import SimClock

__all__ = ["SerialEndpoint", "SocketEndpoint", "PtyEndpoint", "EndpointStats"]

log = logging.getLogger(__name__)
HAVE_PTY = sys.platform != "win32" and hasattr(os, "openpty")
IDLE_TICK_S = 0.02
#: After a stall of the service thread longer than this (wall seconds), the device is advanced in steps of
#: CATCHUP_STEP_S with sends in between (see :meth:`SerialEndpoint._advance_to`).
CATCHUP_AFTER_S = 0.03
CATCHUP_STEP_S = 0.01


@dataclass
class EndpointStats:
    bytes_in: int = 0
    bytes_out: int = 0
    connections: int = 0
    unplugs: int = 0
    cpu_s: float = 0.0  # CPU time of the service thread (device + transport work)


class SerialEndpoint:
    """Serve ``device`` on a loopback TCP port (``port`` not None; 0 = ephemeral) and/or a pty."""

    def __init__(
        self,
        device: EmulatedDevice,
        clock: SimClock,
        port: int | None = 0,
        *,
        pty: bool = False,
        pty_link: str | None = None,
        tick_s: float = 0.002,
        sndbuf: int = 16384,
        name: str = "device",
    ) -> None:
        if port is None and not pty:
            raise ValueError("SerialEndpoint needs a TCP port (0 = ephemeral) or pty=True")
        if port is not None and not (0 <= int(port) <= 65535):
            raise ValueError(f"port must be 0..65535 (0 = ephemeral), got {port!r}")
        if pty and not HAVE_PTY:
            raise RuntimeError("pty endpoints need a POSIX system (os.openpty); use the socket:// URL instead")
        if not (0.0005 <= tick_s <= 0.1):
            raise ValueError(f"tick_s must be in [0.0005, 0.1] s, got {tick_s!r}")
        self.device = device
        self.clock = clock
        self.name = name
        self.tick_s = float(tick_s)
        self.sndbuf = int(sndbuf)
        self.stats = EndpointStats()
        self._want_port = None if port is None else int(port)
        self._want_pty = bool(pty)
        self._pty_link = pty_link
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None
        self._master: int | None = None
        self._slave_path: str | None = None
        self._pty_host = False
        self._host: str | None = None  # "tcp" | "pty" | None
        self._port: int | None = None
        self._plugged = False
        self._unplugged_until: float | None = None  # monotonic; inf = until replug()
        self._new_port_on_replug = False
        self._requests: list[tuple[str, float | None, bool]] = []
        self._req_lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._last_advance: tuple[float, float] | None = None  # (wall monotonic, simulated time)
        self.catchups = 0  # stalls of this thread that were caught up (diagnostics)
        # A device that produces output on its own thread (the QEMU board) calls this to have it sent now
        # rather than at the next tick.
        set_wakeup = getattr(device, "set_wakeup", None)
        if set_wakeup is not None:
            set_wakeup(self._wake)

    # --- public API -------------------------------------------------------------------------------
    @property
    def url(self) -> str | None:
        """``socket://127.0.0.1:PORT`` (or the pty path for a pty-only endpoint); None while unplugged on a
        pty-only endpoint without a link (its /dev/pts name is gone; a link keeps its name, as
        /dev/serial/by-id does)."""
        if self._want_port is not None:
            return None if self._port is None else f"socket://127.0.0.1:{self._port}"
        return self.pty_path if self._plugged or self._pty_link else None

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def pty_path(self) -> str | None:
        if not self._want_pty:
            return None
        return self._pty_link or self._slave_path

    @property
    def plugged(self) -> bool:
        return self._plugged

    @property
    def host_connected(self) -> bool:
        return self._host is not None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._plug(new_port=False)
        self._thread = threading.Thread(target=self._run, name=f"endpoint-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        self._unplug_now()
        for s in (self._wake_r, self._wake_w):
            try:
                s.close()
            except OSError:
                pass

    def unplug(self, seconds: float | None = None, new_port: bool = False) -> None:
        """Fault: drop the host and make the port disappear for ``seconds`` (None = until :meth:`replug`);
        with ``new_port`` the TCP port comes back as a new ephemeral port (pty: always a new /dev/pts)."""
        if seconds is not None and not (seconds >= 0):
            raise ValueError(f"unplug seconds must be >= 0 or None, got {seconds!r}")
        self._request(("unplug", seconds, new_port))

    def replug(self) -> None:
        self._request(("replug", None, False))

    def wait_plugged(self, timeout: float) -> bool:
        """Block until the port is present again (after an unplug), at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._plugged and not self._requests:
                return True
            time.sleep(0.01)
        return self._plugged

    def __enter__(self) -> "SerialEndpoint":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- plumbing ---------------------------------------------------------------------------------
    def _request(self, req: tuple[str, float | None, bool]) -> None:
        with self._req_lock:
            self._requests.append(req)
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _plug(self, new_port: bool) -> None:
        if self._want_port is not None:
            if new_port:
                want = 0
            elif self._port is not None:
                want = self._port  # come back where the host expects the port
            else:
                want = self._want_port
            try:
                lst = socket.create_server(("127.0.0.1", want))
            except OSError as exc:
                if want == 0 or self._port is None:  # the first bind must honour the requested port
                    raise OSError(exc.errno, f"{self.name}: cannot listen on 127.0.0.1:{want}: {exc.strerror}") from exc
                log.warning("%s: port %d unavailable after replug (%s); using a new port", self.name, want, exc)
                lst = socket.create_server(("127.0.0.1", 0))
            lst.setblocking(False)
            self._listener = lst
            self._port = lst.getsockname()[1]
        if self._want_pty:
            import tty

            master, slave = os.openpty()
            tty.setraw(slave)
            self._slave_path = os.ttyname(slave)
            os.close(slave)  # the host's open/close of the slave is then visible as POLLHUP on the master
            os.set_blocking(master, False)
            self._master = master
            self._pty_host = False
            if self._pty_link:
                tmp = f"{self._pty_link}.tmp{os.getpid()}"
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
                os.symlink(self._slave_path, tmp)
                os.replace(tmp, self._pty_link)
        self._plugged = True

    def _unplug_now(self) -> None:
        self._plugged = False  # first: a host that sees its socket close must not find the port "plugged"
        self._drop_host()
        if self._client is not None:
            self._close_client()
        if self._listener is not None:
            try:
                self._listener.close()
            except OSError:
                pass
            self._listener = None
        if self._master is not None:
            try:
                os.close(self._master)
            except OSError:
                pass
            self._master = None
            self._pty_host = False
            if self._pty_link:
                try:
                    os.unlink(self._pty_link)
                except FileNotFoundError:
                    pass
        self._plugged = False

    def _close_client(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except OSError:
                pass
            self._client = None

    def _set_host(self, host: str | None) -> None:
        if host == self._host:
            return
        if self._host is not None:
            self._call(self.device.disconnect)
        self._host = host
        if host is not None:
            self.stats.connections += 1
            self._call(self.device.connect)

    def _drop_host(self) -> None:
        self._set_host(None)

    def _call(self, fn, *args):  # noqa: ANN001, ANN202 - thin guard around device calls
        try:
            return fn(*args)
        except Exception:
            log.exception("%s: emulated device raised in %s", self.name, getattr(fn, "__name__", fn))
            return None

    def _pty_host_present(self) -> bool:
        if self._master is None:
            return False
        p = select.poll()
        p.register(self._master, select.POLLIN | select.POLLHUP)
        for _, ev in p.poll(0):
            if ev & select.POLLHUP:
                return False
        return True

    def _handle_requests(self) -> None:
        with self._req_lock:
            reqs = list(self._requests)  # (left in the list until done: wait_plugged must not see them gone)
        for kind, seconds, new_port in reqs:
            if kind == "unplug":
                if self._plugged:
                    self._unplug_now()
                    self.stats.unplugs += 1
                self._new_port_on_replug = new_port
                self._unplugged_until = float("inf") if seconds is None else time.monotonic() + seconds
            elif kind == "replug" and not self._plugged:
                self._unplugged_until = time.monotonic()
        if reqs:
            with self._req_lock:
                del self._requests[: len(reqs)]
        if not self._plugged and self._unplugged_until is not None and time.monotonic() >= self._unplugged_until:
            self._plug(self._new_port_on_replug)
            self._unplugged_until = None

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        if self._client is not None:  # newest connection wins
            self._close_client()
            self._set_host(None)
        elif self._host == "pty":
            self._set_host(None)
        conn.setblocking(False)
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self._client = conn
        self._set_host("tcp")

    def _read_client(self) -> None:
        assert self._client is not None
        try:
            data = self._client.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close_client()
            self._set_host(None)
            return
        self.stats.bytes_in += len(data)
        self._call(self.device.receive, data)

    def _read_pty(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EIO: host went away; noticed by the HUP poll
        if data and self._host == "pty":
            self.stats.bytes_in += len(data)
            self._call(self.device.receive, data)

    def _send(self) -> None:
        write: Callable[[bytes], int]
        if self._host == "tcp" and self._client is not None:
            write = self._client.send
        elif self._host == "pty" and self._master is not None:
            master = self._master
            write = lambda b: os.write(master, b)  # noqa: E731
        else:
            return
        for _ in range(64):
            pend = self._call(self.device.pending)
            if not pend:
                return
            try:
                n = write(pend)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                if self._host == "tcp":
                    self._close_client()
                self._set_host(None)
                return
            if n <= 0:
                return
            self._call(self.device.consume, n)
            self.stats.bytes_out += n
            if n < len(pend):
                return

    def _has_pending(self) -> bool:
        pend = self._call(self.device.pending)
        return bool(pend)

    def _run(self) -> None:
        cpu0 = time.thread_time()
        while not self._stop.is_set():
            try:
                self._loop_once()
            except Exception:
                log.exception("%s: endpoint loop error", self.name)
                time.sleep(self.tick_s)
            self.stats.cpu_s = time.thread_time() - cpu0

    def _loop_once(self) -> None:
        self._handle_requests()
        if self._want_pty and self._plugged:
            present = self._pty_host_present()
            if present != self._pty_host:
                self._pty_host = present
                if present and self._host is None:
                    self._set_host("pty")
                elif not present and self._host == "pty":
                    self._set_host(None)
            elif present and self._host is None:
                self._set_host("pty")
        take = getattr(self.device, "take_unplug_request", None)
        rlist: list = [self._wake_r]
        wlist: list = []
        if self._listener is not None:
            rlist.append(self._listener)
        if self._client is not None:
            rlist.append(self._client)
        if self._master is not None and self._pty_host:
            rlist.append(self._master)
        pending = self._host is not None and self._has_pending()
        if pending:
            wlist.append(self._client if self._host == "tcp" else self._master)
        busy = getattr(self.device, "busy", True)
        timeout = self.tick_s if (busy or self._unplugged_until is not None) else IDLE_TICK_S
        try:
            r, _w, _ = select.select(rlist, wlist, [], timeout)
        except (OSError, ValueError):
            r = []
        if self._wake_r in r:
            try:
                while self._wake_r.recv(4096):
                    pass
            except (BlockingIOError, OSError):
                pass
        if self._listener is not None and self._listener in r:
            self._accept()
        if self._client is not None and self._client in r:
            self._read_client()
        if self._master is not None and self._master in r:
            self._read_pty()
        self._advance_to(self.clock.now())
        if take is not None:
            seconds = self._call(take)
            if seconds is not None:
                self._send()  # whatever the device said before it went away
                self._request(("unplug", float(seconds), False))
                return
        self._send()

    def _advance_to(self, now: float) -> None:
        """Advance the device to simulated time ``now``.

        The in-process bench shares the CPU and the GIL with the app: when this thread was not scheduled
        for a while (GIL held by a painting GUI thread, the whole process descheduled on a loaded machine),
        a single ``advance`` would produce the whole interval's output at once against a TX FIFO that
        nobody drained meanwhile, and the emulated LPM01A would report a TX overflow that real hardware
        never shows - its USB link is drained by the host OS, not by the app.  So after a stall the device
        is advanced in small steps with a send between them: the bytes go to the host's socket buffer as
        the USB host controller would have moved them.  A host that really stops reading (socket buffer
        full) still fills the device's FIFO and overflows it, exactly as before."""
        wall = time.monotonic()
        last = self._last_advance
        self._last_advance = (wall, now)
        if (
            last is not None
            and self._host is not None
            and wall - last[0] > CATCHUP_AFTER_S
            and now > last[1]
            and getattr(self.device, "busy", True)
        ):
            steps = min(int((wall - last[0]) / CATCHUP_STEP_S), 500)
            if steps > 1:
                self.catchups += 1
                for k in range(1, steps):
                    self._call(self.device.advance, last[1] + (now - last[1]) * k / steps)
                    self._send()
        self._call(self.device.advance, now)


class SocketEndpoint(SerialEndpoint):
    """``socket://127.0.0.1:PORT`` endpoint (binds 127.0.0.1 only; port 0 = ephemeral)."""

    def __init__(
        self, device: EmulatedDevice, clock: SimClock, port: int = 0, tick_s: float = 0.002, **kw: object
    ) -> None:
        super().__init__(device, clock, port, pty=False, tick_s=tick_s, **kw)  # type: ignore[arg-type]


class PtyEndpoint(SerialEndpoint):
    """POSIX pseudo-terminal endpoint; ``url`` is the slave path (or the stable ``link`` symlink)."""

    def __init__(
        self, device: EmulatedDevice, clock: SimClock, tick_s: float = 0.002, link: str | None = None, **kw: object
    ) -> None:
        super().__init__(device, clock, None, pty=True, pty_link=link, tick_s=tick_s, **kw)  # type: ignore[arg-type]
