"""Find our USB serial devices by VID:PID and wait for them to come back after a reset.

* X-NUCLEO-LPM01A PowerShield: 0483:5740 (ST generic virtual COM port)
* NUCLEO-L496ZG ST-LINK/V2-1 virtual COM port: 0483:374B

After ``psrst`` or a USB replug the port path may change (``/dev/ttyACM0`` -> ``/dev/ttyACM1``,
``COM5`` -> ``COM7``): :func:`wait_for_port` polls the port list until a device with the same VID:PID
(and, when known, the same USB serial number) is enumerated again, with a timeout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable

from serial.tools import list_ports

__all__ = ["PortInfo", "LPM01A_IDS", "NUCLEO_IDS", "find_ports", "find_powershield", "find_nucleo", "wait_for_port"]

LPM01A_IDS = ((0x0483, 0x5740),)
NUCLEO_IDS = ((0x0483, 0x374B),)


@dataclass(frozen=True)
class PortInfo:
    """One enumerated serial port of interest."""

    device: str  # what pyserial opens: /dev/ttyACM0, COM5, ...
    vid: int
    pid: int
    serial_number: str | None = None
    description: str = ""

    @property
    def vid_pid(self) -> str:
        return f"{self.vid:04X}:{self.pid:04X}"


def _default_lister() -> Iterable:
    return list_ports.comports()


def find_ports(ids: Iterable[tuple[int, int]], lister: Callable[[], Iterable] = _default_lister) -> list[PortInfo]:
    """All ports whose USB VID:PID is in ``ids``, sorted by device name.

    ``lister`` returns objects with pyserial's ``ListPortInfo`` attributes (tests inject their own)."""
    wanted = {(int(v), int(p)) for v, p in ids}
    found = []
    for p in lister():
        vid, pid = getattr(p, "vid", None), getattr(p, "pid", None)
        if vid is None or pid is None or (vid, pid) not in wanted:
            continue
        found.append(
            PortInfo(p.device, vid, pid, getattr(p, "serial_number", None), getattr(p, "description", "") or "")
        )
    return sorted(found, key=lambda i: i.device)


def find_powershield(lister: Callable[[], Iterable] = _default_lister) -> list[PortInfo]:
    """Enumerated X-NUCLEO-LPM01A shields (0483:5740)."""
    return find_ports(LPM01A_IDS, lister)


def find_nucleo(lister: Callable[[], Iterable] = _default_lister) -> list[PortInfo]:
    """Enumerated NUCLEO ST-LINK/V2-1 virtual COM ports (0483:374B)."""
    return find_ports(NUCLEO_IDS, lister)


def wait_for_port(
    ids: Iterable[tuple[int, int]],
    timeout: float,
    serial_number: str | None = None,
    gone_first: str | None = None,
    poll_s: float = 0.25,
    lister: Callable[[], Iterable] = _default_lister,
) -> PortInfo | None:
    """Poll until a port with one of ``ids`` (and ``serial_number`` if given) is enumerated.

    ``gone_first``: a device path that must disappear before a port counts (use it after a reset so
    the old, dying enumeration is not returned).  Returns None after ``timeout`` seconds."""
    ids = tuple(ids)
    deadline = time.monotonic() + max(0.0, timeout)
    seen_gone = gone_first is None
    while True:
        ports = find_ports(ids, lister)
        if not seen_gone and all(p.device != gone_first for p in ports):
            seen_gone = True
        if seen_gone:
            for p in ports:
                if serial_number is None or p.serial_number == serial_number:
                    return p
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll_s)
