"""The virtual bench: emulated devices on one simulated clock, each exposed as a real serial endpoint.

``VirtualBench`` hosts the LPM01A emulator and a NUCLEO-L496ZG, whose supply current and D7 marker the
LPM01A then measures.  The board is one of (``board_kind``):

* ``"qemu"``: the ODL firmware itself, running under ``qemu-system-arm`` (:mod:`device.nucleo.qemu_board`);
  the bench's clock then waits for the firmware when QEMU is slower than the time scale;
* ``"python"``: the Python emulated board (:mod:`device.nucleo.emulator`, batch times from the estimator);
* ``"auto"``: QEMU when ``qemu-system-arm`` and a built firmware are available, else Python (the reason is
  in :attr:`VirtualBench.board_note`).

Without a board (``board=False``) the LPM01A measures the documented STM32L496 profile
(:class:`device.power_profiles.L496Profile`) and the board slot is ``None``.  Every endpoint listens on 127.0.0.1 only; with ``pty=True`` each device is
also reachable through a pty (a stable symlink in a private temporary directory).

    with VirtualBench(seed=1) as bench:
        urls = bench.urls          # {"powershield": "socket://127.0.0.1:PORT", "board": ..., ...}

``urls["power_monitor"]`` and ``urls["power_monitor_kind"]`` name the power monitor without naming the
LPM01A (its device kind in :data:`device.monitor.REGISTRY`); ``urls["powershield"]`` is the same URL, kept
because scripts read it from ``odlstudio bench --json``.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import tempfile
from typing import Any

from device.endpoint import HAVE_PTY, SerialEndpoint
from device.lpm01a.emulator import LPM01AEmulator
from device.monitor import LPM01A_KIND
from device.power_profiles import L496Profile
from device.simclock import SimClock

__all__ = ["VirtualBench", "load_board_emulator", "BOARD_KINDS", "BOARD_NAMES"]

log = logging.getLogger(__name__)
BOARD_MODULE = "device.nucleo.emulator"
BOARD_KINDS = ("auto", "qemu", "python")
BOARD_NAMES = {"qemu": "the ODL firmware under QEMU", "python": "Python emulated board"}  # what a started bench runs


def load_board_emulator() -> type | None:
    """``NucleoEmulator`` if ``device.nucleo.emulator`` exists, else None (other import errors propagate)."""
    try:
        module = importlib.import_module(BOARD_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name in (BOARD_MODULE, "device.nucleo"):
            return None
        raise
    return getattr(module, "NucleoEmulator", None)


class VirtualBench:
    """Emulated PowerShield (+ NUCLEO when available) on a shared :class:`SimClock`."""

    def __init__(
        self,
        time_scale: float = 1.0,
        pty: bool = False,
        seed: int = 0,
        board: bool = True,
        *,
        port_lpm: int = 0,
        port_board: int = 0,
        tick_s: float = 0.005,
        board_kind: str = "python",
    ) -> None:
        if pty and not HAVE_PTY:
            raise RuntimeError("--pty needs a POSIX system; the socket:// URLs work everywhere")
        self.clock = SimClock(time_scale)
        self.seed = int(seed)
        self._pty = bool(pty)
        self._tmpdir: str | None = None
        self.board: Any | None = None
        self.board_kind: str | None = None
        self.board_note = ""
        if board_kind not in BOARD_KINDS:
            raise ValueError(f"board_kind {board_kind!r} is not one of {', '.join(BOARD_KINDS)}")
        if board and board_kind in ("auto", "qemu"):
            from device.nucleo.qemu_board import QemuBoard, QemuBoardError

            try:
                self.board = QemuBoard(clock=self.clock, seed=self.seed)
                self.board_kind = "qemu"
                self.clock.limit = self.board.horizon
            except QemuBoardError as exc:
                if board_kind == "qemu":
                    raise RuntimeError(f"the QEMU board cannot run: {exc}") from None
                self.board_note = f"QEMU board unavailable ({exc})"
                log.info(self.board_note)
        if board and self.board is None:
            board_cls = load_board_emulator()
            if board_cls is not None:
                self.board = board_cls(clock=self.clock, seed=self.seed)
                self.board_kind = "python"
        if self.board is not None:
            source: Any = self.board
        else:
            source = L496Profile()
        self.source = source
        self.powershield = LPM01AEmulator(self.clock, source, seed=self.seed)
        if pty:
            self._tmpdir = tempfile.mkdtemp(prefix="odl-bench-")
        self.endpoints: dict[str, SerialEndpoint] = {
            "powershield": SerialEndpoint(
                self.powershield,
                self.clock,
                port_lpm,
                pty=pty,
                pty_link=self._link("powershield"),
                tick_s=tick_s,
                name="powershield",
            )
        }
        if self.board is not None:
            self.endpoints["board"] = SerialEndpoint(
                self.board, self.clock, port_board, pty=pty, pty_link=self._link("board"), tick_s=tick_s, name="board"
            )
        self._started = False

    def _link(self, name: str) -> str | None:
        return None if self._tmpdir is None else os.path.join(self._tmpdir, name)

    @property
    def urls(self) -> dict[str, Any]:
        ps = self.endpoints["powershield"]
        bd = self.endpoints.get("board")
        return {
            "powershield": ps.url,
            "board": bd.url if bd is not None else None,
            "powershield_pty": ps.pty_path,
            "board_pty": bd.pty_path if bd is not None else None,
            "time_scale": self.clock.time_scale,
            "seed": self.seed,
            "board_kind": self.board_kind,
            # the same monitor under neutral names (consumers that must not assume an LPM01A read these)
            "power_monitor": ps.url,
            "power_monitor_kind": LPM01A_KIND,
        }

    def start(self) -> dict[str, Any]:
        """Start every endpoint; returns :attr:`urls`."""
        if not self._started:
            try:
                for ep in self.endpoints.values():
                    ep.start()
            except Exception:
                self.stop()
                raise
            self._started = True
        return self.urls

    def stop(self) -> None:
        for ep in self.endpoints.values():
            try:
                ep.stop()
            except Exception:  # keep stopping the others
                log.exception("stopping endpoint %s", ep.name)
        self._started = False
        close = getattr(self.board, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # keep stopping
                log.exception("stopping the board")
            self.clock.limit = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def unplug(self, which: str = "powershield", seconds: float | None = None, new_port: bool = False) -> None:
        """Fault: make ``which`` ("powershield" | "board") disappear for ``seconds``."""
        if which not in self.endpoints:
            raise ValueError(f"unplug: no device {which!r} on this bench (have {', '.join(self.endpoints)})")
        self.endpoints[which].unplug(seconds, new_port=new_port)

    def __enter__(self) -> "VirtualBench":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
