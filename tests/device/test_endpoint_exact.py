"""Exact tests of device/endpoint.py (the mutation target ``endpoint``, benchmarks/mutation.py).

A tiny fake device behind a real endpoint and a real pyserial client (``socket://`` and a pty): the bytes
delivered both ways in order and complete, the stats counted exactly, the state before start / after stop,
one host at a time, unplug / replug (same port, new port, the device's own request), the guard around device
calls, the service loop's tick and the stall catch-up (the latter on faked wall time, no thread).  Waits poll
with deadlines; the only timing assertions are bounds that a loaded machine cannot break (a port stays away at
least as long as asked; the loop never ticks faster than its timeout allows).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import sys
import threading
import time
import types

import pytest
import serial

import device.endpoint as endpoint_mod
from device.endpoint import IDLE_TICK_S, EndpointStats, PtyEndpoint, SerialEndpoint, SocketEndpoint
from device.simclock import SimClock
from tests.clockkit import OwnThreadTime

posix_only = pytest.mark.skipif(sys.platform == "win32" or not hasattr(os, "openpty"), reason="pty needs POSIX")
LOGGER = "device.endpoint"


class FakeDevice:
    """An EmulatedDevice that records what the endpoint does to it; ``echo`` sends every byte back."""

    def __init__(self, *, echo: bool = False, chunk: int | None = None, busy: bool = True) -> None:
        self.lock = threading.Lock()
        self.rx = bytearray()
        self.tx = bytearray()
        self.events: list[tuple[str, object]] = []  # ("connect"|"disconnect", ep.plugged at that moment)
        self.advances: list[float] = []
        self.echo = echo
        self.chunk = chunk  # pending() returns at most this many bytes (None: everything)
        self.busy = busy
        self.raise_in: set[str] = set()
        self.unplug_with: tuple[bytes, float] | None = None  # (last words, seconds) handed out by take_unplug_request
        self.wakeup = None
        self.ep: SerialEndpoint | None = None

    def set_wakeup(self, fn) -> None:  # noqa: ANN001
        self.wakeup = fn

    def _maybe_raise(self, name: str) -> None:
        if name in self.raise_in:
            raise RuntimeError(f"{name} failed")

    def connect(self) -> None:
        self.events.append(("connect", None if self.ep is None else self.ep.plugged))
        self._maybe_raise("connect")

    def disconnect(self) -> None:
        self.events.append(("disconnect", None if self.ep is None else self.ep.plugged))

    def receive(self, data: bytes) -> None:
        self._maybe_raise("receive")
        with self.lock:
            self.rx += data
            if self.echo:
                self.tx += data

    def advance(self, now: float) -> None:
        self.advances.append(now)

    def pending(self) -> bytes:
        with self.lock:
            return bytes(self.tx if self.chunk is None else self.tx[: self.chunk])

    def consume(self, n: int) -> None:
        with self.lock:
            del self.tx[:n]

    def say(self, data: bytes) -> None:
        with self.lock:
            self.tx += data

    def take_unplug_request(self) -> float | None:
        with self.lock:
            if self.unplug_with is None:
                return None
            words, seconds = self.unplug_with
            self.unplug_with = None
            self.tx += words
            return seconds


class NoBusyDevice(FakeDevice):
    """A device without the optional ``busy`` attribute (the endpoint then ticks as if it were busy)."""

    def __getattribute__(self, name: str):  # noqa: ANN204
        if name == "busy":
            raise AttributeError(name)
        return super().__getattribute__(name)


def poll(cond, timeout: float = 5.0, what: str = "condition") -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout} s"
        time.sleep(0.005)


def read_exactly(port: serial.Serial, n: int, timeout: float = 5.0) -> bytes:
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while len(buf) < n and time.monotonic() < deadline:
        buf += port.read(n - len(buf))
    assert len(buf) == n, f"got {len(buf)} of {n} bytes: {bytes(buf[-50:])!r}"
    return bytes(buf)


def expect_eof(port: serial.Serial, timeout: float = 5.0) -> bytes:
    """Read until the endpoint closes the connection; return what came before (a byte at a time: pyserial
    drops what a read got when the same read then finds the connection closed)."""
    buf = bytearray()
    deadline = time.monotonic() + timeout
    with pytest.raises(serial.SerialException):
        while time.monotonic() < deadline:
            buf += port.read(1)
    return bytes(buf)


def gone(ep: SerialEndpoint) -> bool:
    """The unplug is complete: no port, no host, nothing left of either transport."""
    link_gone = ep._pty_link is None or not os.path.lexists(ep._pty_link)
    idle = not ep._requests and ep._listener is None and ep._master is None and ep._client is None
    return not ep.plugged and not ep.host_connected and idle and link_gone


def endpoint(dev: FakeDevice, **kw: object) -> SerialEndpoint:
    ep = SocketEndpoint(dev, SimClock(), name="dev", **kw)  # type: ignore[arg-type]
    dev.ep = ep
    return ep


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


@pytest.fixture()
def echo_ep():
    dev = FakeDevice(echo=True)
    ep = endpoint(dev)
    ep.start()
    yield dev, ep
    ep.stop()


# --- construction, start, stop ----------------------------------------------------------------------------


def test_constructor_refusals_name_the_argument(monkeypatch) -> None:
    dev, clk = FakeDevice(), SimClock()
    cases = [
        (dict(port=None), ValueError, "SerialEndpoint needs a TCP port (0 = ephemeral) or pty=True"),
        (dict(port=-1), ValueError, "port must be 0..65535 (0 = ephemeral), got -1"),
        (dict(port=65536), ValueError, "port must be 0..65535 (0 = ephemeral), got 65536"),
        (dict(tick_s=0.00049), ValueError, "tick_s must be in [0.0005, 0.1] s, got 0.00049"),
        (dict(tick_s=0.11), ValueError, "tick_s must be in [0.0005, 0.1] s, got 0.11"),
    ]
    for kw, exc, msg in cases:
        with pytest.raises(exc) as info:
            SerialEndpoint(dev, clk, **kw)  # type: ignore[arg-type]
        assert str(info.value) == msg
    for kw in (dict(port=0), dict(port=65535), dict(tick_s=0.0005), dict(tick_s=0.1)):
        SerialEndpoint(dev, clk, **kw).stop()  # type: ignore[arg-type]
    monkeypatch.setattr(endpoint_mod, "HAVE_PTY", False)
    with pytest.raises(RuntimeError) as info:
        SerialEndpoint(dev, clk, None, pty=True)
    assert str(info.value) == "pty endpoints need a POSIX system (os.openpty); use the socket:// URL instead"


def test_state_before_start_after_start_and_after_stop() -> None:
    dev = FakeDevice()
    ep = SocketEndpoint(dev, SimClock())
    dev.ep = ep
    assert (ep.name, ep.tick_s, ep.sndbuf, ep.stats, ep.catchups) == ("device", 0.002, 16384, EndpointStats(), 0)
    assert dev.wakeup == ep._wake  # the device can have its output sent at once
    assert ep._wake_r.getblocking() is False and ep._wake_w.getblocking() is False  # a wake-up never blocks
    assert (ep.url, ep.port, ep.pty_path, ep.plugged, ep.host_connected) == (None, None, None, False, False)
    assert ep.wait_plugged(0) is False
    ep.start()
    thread = ep._thread
    assert thread is not None and thread.name == "endpoint-device" and thread.daemon and thread.is_alive()
    assert ep.port is not None and ep.port > 0 and ep.url == f"socket://127.0.0.1:{ep.port}"
    assert ep._listener.getsockname() == ("127.0.0.1", ep.port) and ep._listener.getblocking() is False
    assert (ep.pty_path, ep.plugged, ep.host_connected) == (None, True, False)
    assert ep.wait_plugged(0) is True
    t0 = time.monotonic()
    assert ep.wait_plugged(3.0) is True and time.monotonic() - t0 < 2.0  # plugged: at once
    ep.start()  # a second start is a no-op
    assert ep._thread is thread
    poll(lambda: ep.stats.cpu_s > 0, what="the service thread's CPU time")
    assert isinstance(ep.stats.cpu_s, float)
    ep.stop()
    assert ep._thread is None and not thread.is_alive()
    assert (ep.plugged, ep.host_connected, ep._listener, ep.stats.unplugs) == (False, False, None, 0)
    assert ep._wake_r.fileno() == -1 and ep._wake_w.fileno() == -1
    ep.stop()  # idempotent
    ep._wake()  # a device waking a stopped endpoint is ignored
    assert dev.events == []


def test_the_two_kinds_pass_their_arguments_on() -> None:
    dev, clk = FakeDevice(), SimClock()
    tcp = SocketEndpoint(dev, clk, tick_s=0.05, name="t", sndbuf=4096)
    assert (tcp._want_port, tcp._want_pty, tcp.tick_s, tcp.name, tcp.sndbuf) == (0, False, 0.05, "t", 4096)
    tcp.stop()
    tcp = SocketEndpoint(dev, clk, 0)
    assert (tcp._want_port, tcp._want_pty, tcp.tick_s, tcp.name) == (0, False, 0.002, "device")
    tcp.stop()
    base = SerialEndpoint(dev, clk)
    assert (base._want_port, base._want_pty, base.tick_s, base.name) == (0, False, 0.002, "device")
    base.stop()
    if endpoint_mod.HAVE_PTY:
        pty = PtyEndpoint(dev, clk, tick_s=0.05, name="p", sndbuf=4096)
        assert (pty._want_port, pty._want_pty, pty._pty_link, pty.tick_s, pty.name, pty.sndbuf) == (
            None,
            True,
            None,
            0.05,
            "p",
            4096,
        )
        assert (pty.url, pty.pty_path, pty.port) == (None, None, None)  # no pty before start
        pty.stop()


def test_context_manager_starts_and_stops() -> None:
    dev = FakeDevice()
    with endpoint(dev) as ep:
        assert isinstance(ep, SocketEndpoint) and ep.plugged and ep._thread is not None
        thread = ep._thread
    assert not ep.plugged and ep._thread is None and not thread.is_alive()


def test_fixed_port_and_a_port_already_taken(caplog) -> None:
    want = free_port()
    dev = FakeDevice()
    ep = endpoint(dev, port=want)
    ep.start()
    try:
        assert ep.port == want and ep.url == f"socket://127.0.0.1:{want}"
        other = SocketEndpoint(FakeDevice(), SimClock(), port=want, name="ps2")
        with pytest.raises(OSError) as info:
            other.start()
        assert info.value.errno == errno.EADDRINUSE
        in_use = f"{os.strerror(errno.EADDRINUSE)} (while attempting to bind on address ('127.0.0.1', {want}))"
        assert str(info.value) == f"[Errno {errno.EADDRINUSE}] ps2: cannot listen on 127.0.0.1:{want}: {in_use}"
        other.stop()
        # the port taken while it was unplugged: it comes back on a new one, with a warning
        ep.unplug(None)
        poll(lambda: gone(ep), what="unplugged")
        with socket.create_server(("127.0.0.1", want)):
            with caplog.at_level(logging.WARNING, logger=LOGGER):
                ep.replug()
                assert ep.wait_plugged(5.0)
        assert ep.port != want and ep.port > 1024 and ep.url == f"socket://127.0.0.1:{ep.port}"  # an ephemeral one
        msgs = [r.getMessage() for r in caplog.records if r.name == LOGGER]
        assert msgs == [
            f"dev: port {want} unavailable after replug ([Errno {errno.EADDRINUSE}] {in_use}); using a new port"
        ]
    finally:
        ep.stop()


def test_a_new_port_that_cannot_be_had_is_an_error_naming_it(monkeypatch, caplog) -> None:
    def refuse(addr, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise OSError(errno.EMFILE, "Too many open files")

    ep = SocketEndpoint(FakeDevice(), SimClock(), name="dev")
    ep._port = 4242  # plugged before, now coming back on a new port
    monkeypatch.setattr(endpoint_mod.socket, "create_server", refuse)
    with caplog.at_level(logging.WARNING, logger=LOGGER), pytest.raises(OSError) as info:
        ep._plug(new_port=True)
    assert str(info.value) == f"[Errno {errno.EMFILE}] dev: cannot listen on 127.0.0.1:0: Too many open files"
    assert caplog.records == [] and ep._port == 4242 and not ep.plugged
    ep.stop()


# --- bytes both ways --------------------------------------------------------------------------------------


def test_bytes_both_ways_complete_in_order_and_counted(echo_ep) -> None:
    dev, ep = echo_ep
    dev.chunk = 1000  # the device hands out its FIFO a chunk at a time
    data = bytes(range(256)) * 200  # 51,200 bytes
    with serial.serial_for_url(ep.url, timeout=0.05) as port:
        poll(lambda: ep.host_connected, what="host connected")
        client = ep._client
        ref = socket.socket()
        ref.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        assert client.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == ref.getsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF
        )
        ref.close()
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0 and client.getblocking() is False
        for i in range(0, len(data), 4096):
            port.write(data[i : i + 4096])
        got = read_exactly(port, len(data), timeout=10.0)
    assert got == data and bytes(dev.rx) == data
    poll(lambda: not ep.host_connected, what="host gone")
    assert (ep.stats.bytes_in, ep.stats.bytes_out, ep.stats.connections, ep.stats.unplugs) == (
        len(data),
        len(data),
        1,
        0,
    )
    assert dev.events == [("connect", True), ("disconnect", True)]


def test_output_queued_before_a_host_connects_waits_for_it(echo_ep) -> None:
    dev, ep = echo_ep
    dev.say(b"hello")
    time.sleep(0.05)  # some ticks without a host: nothing is sent, nothing breaks
    assert ep.stats.bytes_out == 0
    # a plain socket: pyserial's open() discards what arrived while it opened (reset_input_buffer)
    with socket.create_connection(("127.0.0.1", ep.port), timeout=5.0) as s:
        got = b""
        while len(got) < 5:
            got += s.recv(5 - len(got))
        assert got == b"hello"
    poll(lambda: ep.stats.bytes_out == 5, what="bytes counted")  # counted just after the send
    assert ep.stats.bytes_in == 0


def test_device_wakeup_sends_output_made_on_another_thread() -> None:
    dev = FakeDevice(busy=False)
    with endpoint(dev, tick_s=0.1) as ep:
        with serial.serial_for_url(ep.url, timeout=0.05) as port:
            poll(lambda: ep.host_connected, what="host connected")
            dev.say(b"async")
            dev.wakeup()
            assert read_exactly(port, 5) == b"async"


# --- hosts ------------------------------------------------------------------------------------------------


def test_newest_tcp_client_wins(echo_ep) -> None:
    dev, ep = echo_ep
    p1 = serial.serial_for_url(ep.url, timeout=0.05)
    p1.write(b"one")
    assert read_exactly(p1, 3) == b"one"
    with serial.serial_for_url(ep.url, timeout=0.05) as p2:
        assert expect_eof(p1) == b""
        p2.write(b"two")
        assert read_exactly(p2, 3) == b"two"
        assert ep.host_connected and ep.stats.connections == 2
        assert dev.events == [("connect", True), ("disconnect", True), ("connect", True)]
    p1.close()
    assert bytes(dev.rx) == b"onetwo"


def test_client_that_disconnects_and_reconnects(echo_ep) -> None:
    dev, ep = echo_ep
    with serial.serial_for_url(ep.url, timeout=0.05) as port:
        port.write(b"a")
        assert read_exactly(port, 1) == b"a"
    poll(lambda: not ep.host_connected, what="host gone")
    assert dev.events == [("connect", True), ("disconnect", True)]
    # a client that resets the connection (RST, not FIN) is a disconnect too, and delivers nothing
    s = socket.create_connection(("127.0.0.1", ep.port))
    poll(lambda: ep.stats.connections == 2, what="second connection")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    poll(lambda: not ep.host_connected, what="reset host gone")
    with serial.serial_for_url(ep.url, timeout=0.05) as port:
        port.write(b"b")
        assert read_exactly(port, 1) == b"b"
    poll(lambda: not ep.host_connected, what="host gone")
    assert bytes(dev.rx) == b"ab" and ep.stats.bytes_in == 2 and ep.stats.connections == 3
    assert dev.events == [("connect", True), ("disconnect", True)] * 3


def test_a_device_call_that_raises_is_logged_and_the_endpoint_goes_on(echo_ep, caplog) -> None:
    dev, ep = echo_ep
    dev.raise_in = {"receive", "connect"}
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        with serial.serial_for_url(ep.url, timeout=0.05) as port:
            port.write(b"lost")
            poll(lambda: ep.stats.bytes_in == 4, what="bytes counted")
            poll(lambda: len(caplog.records) >= 2, what="two log records")
            dev.raise_in = set()
            port.write(b"kept")
            assert read_exactly(port, 4) == b"kept"
            assert ep.host_connected
    msgs = [(r.getMessage(), r.exc_info is not None) for r in caplog.records if r.name == LOGGER]
    assert msgs == [("dev: emulated device raised in connect", True), ("dev: emulated device raised in receive", True)]
    poll(lambda: ep.stats.bytes_out == 4, what="bytes counted")
    assert bytes(dev.rx) == b"kept" and ep.stats.bytes_in == 8


def test_a_device_callable_without_a_name_is_named_by_its_repr(caplog) -> None:
    class Raiser:
        def __call__(self, data: bytes) -> None:
            raise RuntimeError("no")

        def __repr__(self) -> str:
            return "<raiser>"

    ep = SocketEndpoint(FakeDevice(), SimClock(), name="dev")
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        assert ep._call(Raiser(), b"x") is None
    assert [r.getMessage() for r in caplog.records] == ["dev: emulated device raised in <raiser>"]
    ep.stop()


def test_a_loop_error_is_logged_and_the_loop_goes_on(caplog) -> None:
    class Flaky(FakeDevice):
        fail = 0

        def __getattribute__(self, name: str):  # noqa: ANN204
            if name == "busy" and object.__getattribute__(self, "fail"):
                self.fail -= 1
                raise RuntimeError("busy failed")
            return super().__getattribute__(name)

    dev = Flaky(echo=True)
    with caplog.at_level(logging.ERROR, logger=LOGGER), endpoint(dev) as ep:
        dev.fail = 1
        poll(lambda: dev.fail == 0, what="the failing tick")
        with serial.serial_for_url(ep.url, timeout=0.05) as port:
            port.write(b"after")
            assert read_exactly(port, 5) == b"after"
        assert ep._thread.is_alive()
    msgs = [(r.getMessage(), r.exc_info is not None) for r in caplog.records if r.name == LOGGER]
    assert msgs == [("dev: endpoint loop error", True)]


# --- unplug / replug --------------------------------------------------------------------------------------


def test_unplug_for_seconds_drops_the_host_and_returns_on_the_same_port(echo_ep) -> None:
    dev, ep = echo_ep
    url = ep.url
    with serial.serial_for_url(url, timeout=0.05) as port:
        port.write(b"x")
        assert read_exactly(port, 1) == b"x"
        t0 = time.monotonic()
        ep.unplug(1.0)
        assert expect_eof(port) == b""
    poll(lambda: gone(ep), what="unplugged")
    assert ep.host_connected is False and ep.plugged is False and ep._listener is None
    with pytest.raises(serial.SerialException):
        serial.serial_for_url(url, timeout=0.05)
    assert ep.wait_plugged(5.0) is True
    assert time.monotonic() - t0 >= 1.0 and ep.url == url and ep.stats.unplugs == 1
    # the device saw the host go while the port was already gone
    assert dev.events == [("connect", True), ("disconnect", False)]
    with serial.serial_for_url(url, timeout=0.05) as port:
        port.write(b"y")
        assert read_exactly(port, 1) == b"y"
    assert ep.stats.connections == 2


def test_unplug_until_replug_on_a_new_port(echo_ep) -> None:
    dev, ep = echo_ep
    old = ep.port
    ep.unplug(None, new_port=True)
    poll(lambda: gone(ep), what="unplugged")
    t0 = time.monotonic()
    assert ep.wait_plugged(0.3) is False
    assert 0.3 <= time.monotonic() - t0 < 3.0
    ep.unplug(None, new_port=True)  # unplugging an unplugged port is not another unplug
    poll(lambda: not ep._requests, what="request handled")
    assert ep.wait_plugged(0.1) is False and ep.stats.unplugs == 1
    ep.replug()
    assert ep.wait_plugged(5.0) is True
    assert ep.port != old and ep.port > 1024 and ep.url == f"socket://127.0.0.1:{ep.port}"  # a new ephemeral one
    with serial.serial_for_url(ep.url, timeout=0.05) as port:
        port.write(b"z")
        assert read_exactly(port, 1) == b"z"
    poll(lambda: not ep.host_connected, what="host gone")
    assert ep.stats.unplugs == 1 and dev.events == [("connect", True), ("disconnect", True)]


def test_unplug_zero_seconds_and_replug_while_plugged(echo_ep) -> None:
    dev, ep = echo_ep
    port0 = ep.port
    with serial.serial_for_url(ep.url, timeout=0.05) as port:
        port.write(b"1")
        assert read_exactly(port, 1) == b"1"
        ep.replug()  # plugged already: nothing happens
        poll(lambda: not ep._requests, what="replug handled")
        assert ep._unplugged_until is None  # (else the loop would tick as if waiting to come back)
        port.write(b"2")
        assert read_exactly(port, 1) == b"2"
        assert ep.stats.unplugs == 0 and ep.stats.connections == 1
        ep.unplug(0)
        assert expect_eof(port) == b""
    assert ep.wait_plugged(5.0) and ep.port == port0 and ep.stats.unplugs == 1 and ep._unplugged_until is None


def test_unplug_refuses_negative_and_nan_seconds() -> None:
    ep = SocketEndpoint(FakeDevice(), SimClock())
    for bad in (-0.5, float("nan")):
        with pytest.raises(ValueError) as info:
            ep.unplug(bad)
        assert str(info.value) == f"unplug seconds must be >= 0 or None, got {bad!r}"
    assert ep._requests == []
    ep.unplug(0.0)
    ep.replug()
    assert ep._requests == [("unplug", 0.0, False), ("replug", None, False)]
    ep.stop()


def test_wait_plugged_times_out_without_oversleeping() -> None:
    ep = SocketEndpoint(FakeDevice(), SimClock())
    t0 = time.monotonic()
    assert ep.wait_plugged(0.05) is False
    assert 0.05 <= time.monotonic() - t0 < 0.9
    ep.stop()


def test_the_device_asks_to_be_unplugged_after_its_last_words(echo_ep) -> None:
    dev, ep = echo_ep
    url = ep.url
    with serial.serial_for_url(url, timeout=0.05) as port:
        port.write(b"go")
        assert read_exactly(port, 2) == b"go"
        dev.unplug_with = (b"bye", 0.3)
        assert expect_eof(port) == b"bye"
    poll(lambda: ep.stats.unplugs == 1, what="the device's unplug")
    assert ep.wait_plugged(5.0) and ep.url == url and ep.stats.bytes_out == 5
    assert dev.events == [("connect", True), ("disconnect", False)]


# --- the service loop's tick ------------------------------------------------------------------------------


def advances_per_window(ep: SerialEndpoint, dev: FakeDevice, window: float = 0.5) -> tuple[int, float]:
    n0, t0 = len(dev.advances), time.monotonic()
    ep._wake()  # a wake-up is drained: it does not make the loop spin
    time.sleep(window)
    return len(dev.advances) - n0, time.monotonic() - t0


@pytest.mark.parametrize(
    "busy, tick_s, unplugged, period",
    [
        (True, 0.1, False, 0.1),  # busy: the endpoint's tick
        (False, 0.0005, False, IDLE_TICK_S),  # idle: never faster than the idle tick
        (False, 0.1, True, 0.1),  # waiting to come back: the endpoint's tick
        (None, 0.1, False, 0.1),  # a device without `busy` counts as busy
    ],
)
def test_the_loop_ticks_no_faster_than_its_timeout(busy, tick_s, unplugged, period) -> None:
    dev = NoBusyDevice() if busy is None else FakeDevice(busy=busy)
    with endpoint(dev, tick_s=tick_s) as ep:
        if unplugged:
            ep.unplug(None)
            poll(lambda: gone(ep), what="unplugged")
        n, wall = advances_per_window(ep, dev)
        assert 1 <= n <= wall / period + 3, (n, wall)


def test_a_host_not_reading_makes_the_loop_wait_for_writability(monkeypatch) -> None:
    calls: list = []

    def spy(r, w, x, timeout):  # noqa: ANN001, ANN202
        calls.append((list(w), timeout))
        return real.select(r, w, x, timeout)

    real = endpoint_mod.select
    monkeypatch.setattr(
        endpoint_mod,
        "select",
        types.SimpleNamespace(select=spy, poll=real.poll, POLLIN=real.POLLIN, POLLHUP=real.POLLHUP),
    )
    dev = FakeDevice(busy=False, chunk=65536)
    with endpoint(dev) as ep:
        dev.say(bytes(8_000_000))  # more than the socket buffers hold: the rest stays pending in the device
        with socket.create_connection(("127.0.0.1", ep.port)) as s:
            poll(lambda: ep._client is not None and ([ep._client], IDLE_TICK_S) in calls, what="select on writability")
            assert ([], IDLE_TICK_S) in calls  # before the host came: nothing to wait for
            s.recv(1)


# --- pty --------------------------------------------------------------------------------------------------


@posix_only
def test_pty_endpoint_raw_bytes_host_presence_and_link(tmp_path) -> None:
    link = str(tmp_path / "dev")
    stale = f"{link}.tmp{os.getpid()}"
    open(stale, "w").close()  # a leftover of a killed run is replaced
    dev = FakeDevice(echo=False)
    ep = PtyEndpoint(dev, SimClock(), link=link, name="dev")
    dev.ep = ep
    assert (ep.url, ep.port, ep.pty_path, ep.tick_s, ep.name) == (link, None, link, 0.002, "dev")
    with ep:
        assert os.readlink(link) == ep._slave_path and ep._slave_path.startswith("/dev/")
        assert os.get_blocking(ep._master) is False  # a host that stops reading must not block the loop
        assert os.listdir(tmp_path) == ["dev"] and not ep.host_connected
        with serial.Serial(link, timeout=0.05) as port:
            poll(lambda: ep.host_connected, what="pty host")
            port.write(b"a\rb")  # raw: no CR/LF translation, no signals, no flow control
            poll(lambda: len(dev.rx) >= 3, what="bytes in")
            port.write(b"\x03\x04\x11\n")  # (a second read: counted on top of the first)
            poll(lambda: len(dev.rx) >= 7, what="bytes in")
            dev.say(b"x\ny\r\n\x00")
            assert read_exactly(port, 6) == b"x\ny\r\n\x00"
            big = bytes(range(256)) * 800  # more than the pty buffers: sent as the host reads
            dev.say(big)
            assert read_exactly(port, len(big), timeout=10.0) == big
        assert bytes(dev.rx) == b"a\rb\x03\x04\x11\n"
        poll(lambda: not ep.host_connected, what="pty host gone")
        assert dev.events == [("connect", True), ("disconnect", True)]
        assert (ep.stats.bytes_in, ep.stats.bytes_out, ep.stats.connections) == (7, 6 + 204_800, 1)
        ep.unplug(None)
        poll(lambda: gone(ep), what="unplugged")
        assert not os.path.lexists(link) and ep._master is None
        ep.replug()
        assert ep.wait_plugged(5.0) and os.readlink(link) == ep._slave_path
        os.unlink(link)  # someone removed the link: unplugging does not mind
        ep.unplug(None)
        poll(lambda: gone(ep), what="unplugged again")
    assert ep.stats.unplugs == 2


@posix_only
def test_pty_without_link_and_tcp_taking_over_from_it(tmp_path) -> None:
    dev = FakeDevice(echo=True)
    ep = SerialEndpoint(dev, SimClock(), 0, pty=True, name="dev")
    dev.ep = ep
    with ep:
        assert ep.pty_path == ep._slave_path and ep.url == f"socket://127.0.0.1:{ep.port}"
        with serial.Serial(ep.pty_path, timeout=0.05) as tty:
            tty.write(b"p")
            assert read_exactly(tty, 1) == b"p"
            assert dev.events == [("connect", True)]
            with serial.serial_for_url(ep.url, timeout=0.05) as tcp:
                poll(lambda: len(dev.events) == 3, what="tcp takes over")
                assert dev.events == [("connect", True), ("disconnect", True), ("connect", True)]
                tty.write(b"ignored")
                time.sleep(0.05)
                tcp.write(b"t")
                assert read_exactly(tcp, 1) == b"t"
                tcp.write(b"u")
                assert read_exactly(tcp, 1) == b"u"
                assert bytes(dev.rx) == b"ptu" and ep.stats.bytes_in == 3
            # the TCP host left: the pty host, still there, is the host again
            poll(lambda: len(dev.events) == 5, what="pty host again")
            tty.reset_input_buffer()
            tty.write(b"q")
            assert read_exactly(tty, 1) == b"q"
        poll(lambda: not ep.host_connected, what="pty host gone")
    assert bytes(dev.rx) == b"ptuq"
    assert dev.events == [("connect", True), ("disconnect", True)] * 3


@posix_only
def test_a_pty_host_coming_or_going_leaves_a_tcp_host_alone() -> None:
    dev = FakeDevice(echo=True)
    ep = SerialEndpoint(dev, SimClock(), 0, pty=True, name="dev")
    dev.ep = ep
    with ep, serial.serial_for_url(ep.url, timeout=0.05) as tcp:
        tcp.write(b"a")
        assert read_exactly(tcp, 1) == b"a"
        tty = serial.Serial(ep.pty_path, timeout=0.05)
        poll(lambda: ep._pty_host, what="pty host seen")
        tcp.write(b"b")
        assert read_exactly(tcp, 1) == b"b"
        tty.close()
        poll(lambda: not ep._pty_host, what="pty host gone")
        tcp.write(b"c")
        assert read_exactly(tcp, 1) == b"c"
        assert dev.events == [("connect", True)] and ep._host == "tcp"


@posix_only
def test_a_pty_endpoint_without_a_host_does_not_spin_nor_send() -> None:
    dev = FakeDevice(busy=True)
    ep = SerialEndpoint(dev, SimClock(), None, pty=True, tick_s=0.1, name="dev")
    with ep:
        dev.say(b"kept")  # nobody to send it to: it stays in the device
        n, wall = advances_per_window(ep, dev)
        assert 1 <= n <= wall / 0.1 + 3, (n, wall)
        assert dev.tx == bytearray(b"kept") and ep.stats.bytes_out == 0


@posix_only
def test_a_pty_only_endpoint_has_no_url_while_unplugged() -> None:
    """Was: the old /dev/pts path, although that pty is gone (the docstring said None)."""
    ep = SerialEndpoint(FakeDevice(), SimClock(), None, pty=True, name="dev")
    assert ep.url is None  # not started: nothing to open yet
    with ep:
        first = ep.url
        assert first is not None and first == ep.pty_path and os.path.exists(first)
        ep.unplug(None)
        deadline = time.monotonic() + 5
        while ep.plugged and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (ep.plugged, ep.url) == (False, None)
        ep.replug()
        assert ep.wait_plugged(5)
        assert ep.url == ep.pty_path and ep.url is not None


def test_wait_plugged_never_sees_an_unplug_half_done(monkeypatch) -> None:
    """Was: the loop took the requests off the list before handling them, so wait_plugged() could return True
    between an unplug being taken and the port going away."""
    ep = SerialEndpoint(FakeDevice(), SimClock(), 0, name="dev")
    ep._plugged = True
    seen = []
    # what wait_plugged() reads, while the port is being taken away: not yet "plugged and nothing asked"
    monkeypatch.setattr(ep, "_unplug_now", lambda: seen.append((ep._plugged, list(ep._requests))))
    ep.unplug(5.0)
    ep.replug()
    ep._handle_requests()
    assert seen == [(True, [("unplug", 5.0, False), ("replug", None, False)])]
    assert ep._requests == [] and ep.stats.unplugs == 1
    ep.unplug(1.0)  # one asked for while the loop handles others stays for the next pass
    monkeypatch.setattr(ep, "_unplug_now", lambda: ep._request(("replug", None, False)))
    ep._handle_requests()
    assert ep._requests == [("replug", None, False)]
    ep._wake_r.close()
    ep._wake_w.close()


class MinimalDevice:
    """Only the EmulatedDevice protocol: no busy, no take_unplug_request, no set_wakeup."""

    def __init__(self) -> None:
        self.tx = bytearray()

    def connect(self) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def receive(self, data: bytes) -> None:
        self.tx += data

    def advance(self, now: float) -> None:
        pass

    def pending(self) -> bytes:
        return bytes(self.tx)

    def consume(self, n: int) -> None:
        del self.tx[:n]


def test_a_failed_select_is_a_pass_without_input(monkeypatch, caplog) -> None:
    real = endpoint_mod.select
    fail = [True]

    def flaky(r, w, x, timeout):  # noqa: ANN001, ANN202
        if fail and len(r) > 1:  # once, while the listener is there
            fail.clear()
            raise InterruptedError(errno.EINTR, "Interrupted system call")
        return real.select(r, w, x, timeout)

    monkeypatch.setattr(
        endpoint_mod,
        "select",
        types.SimpleNamespace(select=flaky, poll=real.poll, POLLIN=real.POLLIN, POLLHUP=real.POLLHUP),
    )
    dev = FakeDevice(echo=True)
    with caplog.at_level(logging.ERROR, logger=LOGGER), endpoint(dev) as ep:
        poll(lambda: not fail, what="the failed select")
        with serial.serial_for_url(ep.url, timeout=0.05) as port:
            port.write(b"ok")
            assert read_exactly(port, 2) == b"ok"
    assert caplog.records == []


def test_a_device_with_only_the_protocol_is_served(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER), SocketEndpoint(MinimalDevice(), SimClock()) as ep:
        with serial.serial_for_url(ep.url, timeout=0.05) as port:
            port.write(b"min")
            assert read_exactly(port, 3) == b"min"
    assert caplog.records == []


def test_the_loop_counts_its_cpu_time_and_sleeps_a_tick_after_an_error(monkeypatch, caplog) -> None:
    class Clock(FakeTime):
        def __init__(self) -> None:
            super().__init__()
            self.cpu = iter([100.0, 100.25, 100.5])
            self.slept: list[float] = []

        def thread_time(self) -> float:
            return next(self.cpu)

        def sleep(self, s: float) -> None:
            self.slept.append(s)

    ft = Clock()
    monkeypatch.setattr(endpoint_mod, "time", ft)
    ep = SocketEndpoint(FakeDevice(), SimClock(), tick_s=0.05, name="dev")
    seen = []

    def once() -> None:  # the first pass fails, the second stops the loop
        seen.append(ep.stats.cpu_s)
        if len(seen) == 2:
            ep._stop.set()
        else:
            raise RuntimeError("loop failed")

    ep._loop_once = once  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        ep._run()
    assert seen == [0.0, 0.25] and ep.stats.cpu_s == 0.5 and ft.slept == [0.05]
    assert [r.getMessage() for r in caplog.records] == ["dev: endpoint loop error"]
    ep.stop()


# --- pieces driven without the thread (faked wall time, fake sockets) --------------------------------------


class FakeTime(OwnThreadTime):
    """The endpoint module's ``time`` for this test's thread (tests/clockkit.py: other threads keep the real one)."""

    def __init__(self) -> None:
        super().__init__()
        self.wall = 0.0

    def monotonic(self) -> float:
        return self.wall

    def thread_time(self) -> float:
        return 0.0

    def sleep(self, s: float) -> None:
        self.wall += s


class FakeSock:
    def __init__(self, log: list, accept: int | None = None, error: Exception | None = None) -> None:
        self.log, self.accept, self.error, self.closed = log, accept, error, False

    def send(self, b) -> int:  # noqa: ANN001
        if self.error is not None:
            raise self.error
        n = len(b) if self.accept is None else min(self.accept, len(b))
        self.log.append(("send", bytes(b[:n])))
        return n

    def close(self) -> None:
        self.closed = True


class LoggingDevice(FakeDevice):
    """Says one byte per advance (its time's hundredths), logging the advance in the shared log;
    ``busy = None`` makes the attribute missing."""

    def __init__(self, log: list, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.log = log

    def __getattribute__(self, name: str):  # noqa: ANN204
        value = super().__getattribute__(name)
        if name == "busy" and value is None:
            raise AttributeError(name)
        return value

    def advance(self, now: float) -> None:
        self.log.append(("advance", now))
        self.say(bytes([round(now * 100) % 256]))


@pytest.fixture()
def bare(monkeypatch):
    """An endpoint that is never started, with a TCP host on a fake socket and faked wall time."""
    ft = FakeTime()
    ft.wall = 0.03  # (not 0: a sum of wall times must not pass for their difference)
    monkeypatch.setattr(endpoint_mod, "time", ft)
    log: list = []
    dev = LoggingDevice(log)
    ep = SocketEndpoint(dev, SimClock(), name="dev")
    ep._client = FakeSock(log)
    ep._host = "tcp"
    yield ep, dev, log, ft
    ep._client = None
    ep._host = None
    ep.stop()


def test_advance_after_a_stall_catches_up_in_steps_with_sends_between(bare) -> None:
    ep, dev, log, ft = bare
    ep._advance_to(1.0)
    ft.wall = 0.13
    ep._advance_to(1.1)
    steps = [1.0 + (1.1 - 1.0) * k / 10 for k in range(1, 10)]
    want: list = [("advance", 1.0)]
    for t in steps:  # the first send also carries what the advance to 1.0 said
        said = bytes([round(t * 100)])
        want += [("advance", t), ("send", b"\x64" + said if t == steps[0] else said)]
    assert log == want + [("advance", 1.1)]
    assert ep.catchups == 1 and ep._last_advance == (0.13, 1.1)
    assert ep.stats.bytes_out == 10 and dev.tx == bytearray([110])  # the last byte waits for the loop's send
    ft.wall = 0.23
    ep._advance_to(1.2)
    assert ep.catchups == 2  # stalls are counted


@pytest.mark.parametrize(
    "dwall, t1, busy, host, n_advances",
    [
        (0.03, 1.5, True, "tcp", 1),  # not a stall (exactly the threshold)
        (0.5, 1.5, None, "tcp", 50),  # a device without `busy` counts as busy
        (0.031, 1.5, True, "tcp", 3),  # a stall: 3 steps
        (0.5, 1.0, True, "tcp", 1),  # simulated time stood still
        (0.5, 1.5, False, "tcp", 1),  # an idle device
        (0.5, 1.5, True, None, 1),  # no host: nobody to send to
        (10.0, 11.0, True, "tcp", 500),  # at most 500 steps
    ],
)
def test_catch_up_only_after_a_stall_of_a_busy_device_with_a_host(bare, dwall, t1, busy, host, n_advances) -> None:
    ep, dev, log, ft = bare
    dev.busy = busy
    ep._host = host
    ep._advance_to(1.0)
    del log[:]
    ft.wall = 0.03 + dwall
    ep._advance_to(t1)
    advances = [t for kind, t in log if kind == "advance"]
    assert len(advances) == n_advances and advances[-1] == t1
    assert ep.catchups == (n_advances > 1)
    if n_advances > 1:
        assert advances[0] == 1.0 + (t1 - 1.0) / n_advances


def test_send_hands_out_at_most_64_chunks_per_call(bare) -> None:
    ep, dev, log, ft = bare
    dev.chunk = 1
    dev.say(bytes(100))
    ep._send()
    assert len(log) == 64 and ep.stats.bytes_out == 64 and len(dev.tx) == 36


def test_send_stops_at_a_partial_write(bare) -> None:
    ep, dev, log, ft = bare
    ep._client = FakeSock(log, accept=1)
    dev.say(b"abc")
    ep._send()
    assert log == [("send", b"a")] and ep.stats.bytes_out == 1 and dev.tx == bytearray(b"bc")
    ep._client = FakeSock(log, error=BlockingIOError())
    ep._send()
    assert ep.stats.bytes_out == 1 and dev.tx == bytearray(b"bc") and ep._host == "tcp"


def test_a_failed_tcp_write_drops_the_host(bare) -> None:
    ep, dev, log, ft = bare
    sock = FakeSock(log, error=BrokenPipeError())
    ep._client = sock
    dev.say(b"abc")
    ep._send()
    assert sock.closed and ep._client is None and ep._host is None
    assert dev.events == [("disconnect", None)] and dev.tx == bytearray(b"abc") and ep.stats.bytes_out == 0


@posix_only
def test_a_failed_pty_write_drops_the_host_but_keeps_the_pty(bare) -> None:
    ep, dev, log, ft = bare
    ep._client = None
    r, w = os.pipe()
    os.close(r)  # writing to w now fails (EPIPE)
    ep._host, ep._master = "pty", w
    dev.say(b"abc")
    try:
        ep._send()
        assert ep._host is None and ep._master == w and dev.events == [("disconnect", None)]
        assert dev.tx == bytearray(b"abc") and ep.stats.bytes_out == 0
    finally:
        ep._master = None
        os.close(w)
    assert ep._pty_host_present() is False
