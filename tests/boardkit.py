"""Boards that are not the bench's: a port that never answers (a board without the ODL firmware) and a "real"
board added to the device manager behind a test URL (tests/device/test_flashing.py, tests/gui/test_gui_flash.py)."""

from __future__ import annotations

import contextlib
import socket
import threading


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
