"""Devices that are not the bench's: a port that never answers (a board without the ODL firmware), a "real"
board added to the device manager behind a test URL (tests/device/test_flashing.py, tests/gui/test_gui_flash.py),
and a second kind of power monitor whose facts differ from the LPM01A's (tests/core/test_device_manager.py,
tests/gui/test_gui_power.py)."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import ClassVar

from device.monitor import PowerMonitor


@contextlib.contextmanager
def silent_server():
    """A port that accepts the connection and never answers (a board without the ODL firmware)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    conns = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                pass

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"socket://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        for c in conns:
            c.close()
        srv.close()


def add_real_board(dm, url: str, key: str = "board:test"):
    from app.core.devices import DeviceInfo

    info = DeviceInfo(key, "board", url, "NUCLEO test", False, "0483:374B", None)
    dm._sessions[key] = dm._make(info)  # noqa: SLF001 - a "real" board behind a test URL
    dm.notify_changed()
    return key


class OtherMonitor(PowerMonitor):
    """A power-monitor kind registered by :func:`add_other_monitor` (facts only: it is never opened)."""

    kind: ClassVar[str] = "other-pm"
    name: ClassVar[str] = "Other PM"
    short_name: ClassVar[str] = "OPM"
    rates_hz: ClassVar[tuple[int, ...]] = (20, 500)
    default_rate_hz: ClassVar[int] = 500
    voltage_range: ClassVar[tuple[float, float]] = (1.0, 5.0)


def add_other_monitor(dm, monkeypatch, key: str = "other-pm:test") -> str:
    """Register :class:`OtherMonitor` in device.monitor.REGISTRY and add one to the device manager."""
    from app.core.devices import DeviceInfo
    from device import monitor

    monkeypatch.setitem(monitor.REGISTRY, OtherMonitor.kind, "tests.boardkit:OtherMonitor")
    info = DeviceInfo(key, OtherMonitor.kind, "socket://127.0.0.1:9", "Other PM test", False)
    dm._sessions[key] = dm._make(info)  # noqa: SLF001 - a monitor of another kind behind a test URL
    dm.notify_changed()
    return key
