"""Endpoints: the emulated LPM01A over a real loopback socket and a real pty, with a raw pyserial client."""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest
import serial

from device.endpoint import PtyEndpoint, SerialEndpoint, SocketEndpoint
from device.lpm01a.emulator import OVERFLOW_ERROR, LPM01AEmulator, bin_frame_text
from device.power_profiles import ConstantCurrent
from device.simclock import SimClock

posix_only = pytest.mark.skipif(sys.platform == "win32" or not hasattr(os, "openpty"), reason="pty needs POSIX")
BANNER = b"\r\nPowerShield > Acquisition completed\r\n"


def read_until(port: serial.Serial, marker: bytes, timeout: float = 5.0, into: bytearray | None = None) -> bytes:
    buf = into if into is not None else bytearray()
    deadline = time.monotonic() + timeout
    while marker not in buf and time.monotonic() < deadline:
        buf += port.read(65536)
    assert marker in buf, f"{marker!r} not received within {timeout} s; got {bytes(buf[-200:])!r}"
    return bytes(buf)


def ask(port: serial.Serial, line: str) -> bytes:
    port.write(line.encode() + b"\n")
    return read_until(port, b"\r\n\r\n", 3.0)


def count_bin_samples(stream: bytes) -> tuple[int, list[tuple[int, int, bytes]]]:
    """Number of samples in a bin_hexa stream body and its frames [(samples before, tag, bytes)] -
    vectorised: sample runs are skipped with numpy, frames walked one by one."""
    a = np.frombuffer(stream, dtype=np.uint8)
    i, n, frames = 0, 0, []
    while i < len(a):
        if a[i] == 0x0D:  # ASCII banner
            frames.append((n, 0x0D, bytes(a[i:])))
            break
        hi = np.flatnonzero(a[i::2] >= 0xF0)
        if len(hi) == 0:
            n += (len(a) - i) // 2
            break
        j = i + 2 * int(hi[0])
        n += (j - i) // 2
        tag = int(a[j + 1])
        length = {0xF3: 9, 0xF4: 4, 0xF5: 4, 0xF6: 4, 0xF7: 6, 0xF8: 6, 0xF9: 5}.get(tag)
        if length is None:
            length = stream.index(b"\xff\xff", j + 2) + 2 - j
        frames.append((n, tag, stream[j : j + length]))
        i = j + length
    return n, frames


@pytest.fixture()
def lpm():
    clk = SimClock()
    dev = LPM01AEmulator(clk, ConstantCurrent(1e-3), seed=1)
    dev.model.psrst_seconds = 0.4
    ep = SocketEndpoint(dev, clk)
    ep.start()
    yield dev, ep
    ep.stop()


def test_socket_roundtrip_binds_loopback_only(lpm) -> None:
    dev, ep = lpm
    assert ep.url.startswith("socket://127.0.0.1:") and ep._listener.getsockname()[0] == "127.0.0.1"
    with serial.serial_for_url(ep.url, timeout=0.2) as port:
        assert ask(port, "htc") == b"\r\nPowerShield > ack htc\r\n\r\n"
        assert ask(port, "freq 7").startswith(b"\r\nPowerShield > error freq 7\r\nError detail:")


def test_second_connection_replaces_first_and_settings_persist(lpm) -> None:
    dev, ep = lpm
    p1 = serial.serial_for_url(ep.url, timeout=0.2)
    ask(p1, "htc")
    ask(p1, "freq 5k")
    with serial.serial_for_url(ep.url, timeout=0.2) as p2:
        assert ask(p2, "htc") == b"\r\nPowerShield > ack htc\r\n\r\n"
        with pytest.raises(serial.SerialException):
            for _ in range(20):
                p1.read(100)
    p1.close()
    assert dev.settings.freq == 5000 and ep.stats.connections == 2


def test_unplug_refuses_connections_then_returns_on_same_port(lpm) -> None:
    dev, ep = lpm
    url = ep.url
    with serial.serial_for_url(url, timeout=0.2) as port:
        ask(port, "htc")
        ep.unplug(0.5)
        with pytest.raises(serial.SerialException):
            for _ in range(20):
                port.read(100)
    time.sleep(0.1)
    with pytest.raises(serial.SerialException):
        serial.serial_for_url(url, timeout=0.2)
    assert ep.wait_plugged(3.0) and ep.url == url
    with serial.serial_for_url(url, timeout=0.2) as port:
        assert ask(port, "status") == b"\r\nPowerShield > ack status ok\r\n\r\n"  # state kept: host mode
    ep.unplug(None, new_port=True)
    time.sleep(0.1)
    assert not ep.plugged
    ep.replug()
    assert ep.wait_plugged(3.0) and ep.url != url


def test_psrst_drops_the_port_and_resets(lpm) -> None:
    dev, ep = lpm
    with serial.serial_for_url(ep.url, timeout=0.2) as port:
        ask(port, "htc")
        ask(port, "freq 1k")
        port.write(b"psrst\n")
        with pytest.raises(serial.SerialException):
            for _ in range(20):
                port.read(100)
    assert ep.wait_plugged(3.0)
    with serial.serial_for_url(ep.url, timeout=0.2) as port:
        assert ask(port, "freq 1k").startswith(b"\r\nPowerShield > error freq 1k")  # standalone again
    assert dev.settings.freq == 100


def test_100khz_binary_second_is_complete(lpm) -> None:
    dev, ep = lpm
    with serial.serial_for_url(ep.url, timeout=0.05) as port:
        for line in ("htc", "format bin_hexa", "freq 100k", "acqtime 1", "trigdelay 0"):
            ask(port, line)
        port.write(b"start\n")
        data = read_until(port, BANNER, timeout=10.0)
    body = data.split(b"\r\nPowerShield > ack start\r\n\r\n", 1)[1]
    assert body.startswith(bytes.fromhex("F0F30000000000FFFF"))
    n, frames = count_bin_samples(body)
    assert n == 100_000
    stamps = [f for f in frames if f[1] == 0xF3]
    assert [s[0] for s in stamps] == list(range(0, 100_000, 1000))
    assert [int.from_bytes(s[2][2:6], "big") for s in stamps] == list(range(0, 1000, 10))
    assert [f[1] for f in frames][-3:] == [0xF4, 0xF2, 0x0D]


def test_overflow_when_the_host_stops_reading(lpm) -> None:
    dev, ep = lpm
    with serial.serial_for_url(ep.url, timeout=0.05) as port:
        for line in ("htc", "format bin_hexa", "freq 100k", "acqtime 0"):
            ask(port, line)
        port.write(b"start\n")
        deadline = time.monotonic() + 15
        while dev.error is None and time.monotonic() < deadline:
            time.sleep(0.1)  # not reading: socket buffers, TX FIFO and the sample buffer fill up
        assert dev.error == OVERFLOW_ERROR
        data = read_until(port, BANNER, timeout=10.0)
        assert ask(port, "status") == f"\r\nPowerShield > ack status {OVERFLOW_ERROR}\r\n\r\n".encode()
    assert bin_frame_text(0xF1, OVERFLOW_ERROR) + b"\xf0\xf4\xff\xff\xf0\xf2summary beg" in data


@posix_only
def test_pty_endpoint_roundtrip_stream_and_unplug(tmp_path) -> None:
    clk = SimClock()
    dev = LPM01AEmulator(clk, ConstantCurrent(1e-3), seed=1)
    link = str(tmp_path / "powershield")
    with PtyEndpoint(dev, clk, link=link) as ep:
        assert ep.url == link and os.path.realpath(link).startswith("/dev/")
        with serial.Serial(link, baudrate=3_686_400, timeout=0.2) as port:
            assert ask(port, "htc") == b"\r\nPowerShield > ack htc\r\n\r\n"
            for line in ("format ascii_dec", "freq 1k", "acqtime 200m", "trigdelay 0"):
                ask(port, line)
            port.write(b"start\n")
            data = read_until(port, BANNER, timeout=5.0)
        assert data.count(b"-0") + data.count(b"-1") >= 200 and b"\r\nend\r\n" in data
        ep.unplug(0.3)
        time.sleep(0.1)
        assert not os.path.exists(link)
        assert ep.wait_plugged(3.0) and os.path.realpath(link).startswith("/dev/")  # a new pty (number may be reused)
        with serial.Serial(link, timeout=0.2) as port:
            assert ask(port, "version") == b"\r\nPowerShield > ack version: 1.0.7\r\n\r\n"


@posix_only
def test_socket_and_pty_on_one_device(tmp_path) -> None:
    clk = SimClock()
    dev = LPM01AEmulator(clk, ConstantCurrent(1e-3), seed=1)
    with SerialEndpoint(dev, clk, 0, pty=True, pty_link=str(tmp_path / "ps")) as ep:
        with serial.Serial(ep.pty_path, timeout=0.2) as port:
            assert ask(port, "htc") == b"\r\nPowerShield > ack htc\r\n\r\n"
        time.sleep(0.1)
        with serial.serial_for_url(ep.url, timeout=0.2) as port:
            assert ask(port, "freq 1k") == b"\r\nPowerShield > ack freq 1k\r\n\r\n"


def test_constructor_validation() -> None:
    clk = SimClock()
    dev = LPM01AEmulator(clk, ConstantCurrent(1e-3))
    with pytest.raises(ValueError, match="port"):
        SocketEndpoint(dev, clk, port=70000)
    with pytest.raises(ValueError, match="tick_s"):
        SocketEndpoint(dev, clk, tick_s=5)
    with pytest.raises(ValueError, match="time_scale"):
        SimClock(0)
