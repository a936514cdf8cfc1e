"""The virtual bench's board running the real ODL firmware under QEMU (docs/firmware.md, "The QEMU board").

``QemuBoard(clock, seed=0, trace=None)`` starts ``qemu-system-arm -M mps2-an386`` with the firmware ELF
(``firmware/build/qemu-mps2-an386/odl.elf``) and the ``odl_cycles`` plugin, and is, for the bench, what
:class:`~device.nucleo.emulator.NucleoEmulator` is: an :class:`~device.emulated.EmulatedDevice` (the
protocol bytes of CMSDK UART0, passed through unchanged) and a :class:`~device.emulated.CurrentSource`
(the supply current and D7 edges the emulated LPM01A measures).  The host cannot tell it from a board:
only the bench knows it is QEMU.

What the bench adds around the firmware (over UART1, the "bench link"):

* **Time.**  The firmware's clock is its modelled cycles / SYSCLK while it runs and the bench's time while
  it sleeps (it asks when it wakes).  The bench clock may not run past what the firmware has reported
  (:meth:`horizon`, used as :attr:`SimClock.limit`): if QEMU computes a batch more slowly than the bench's
  time scale, simulated time waits for it, so D7 edges and current levels are never in the LPM01A's past.
  If QEMU is faster, the firmware waits (``PACE``) until the bench catches up.
* **Current**: run mode (I0 + k·f of the ``paper`` profile) from when the firmware wakes or starts a round to
  when it reports going idle; sleep mode (I0 + 28 µA/MHz·f) otherwise; D7 rising edges where it pulses
  the marker.  All with the firmware's own timestamps.
* **Accelerometer**: the same LSM6DSO model and recordings as the Python board (:mod:`device.nucleo.sensor`),
  its samples sent to the firmware at the configured rate; ``SIM_SET_ACTIVITY`` is forwarded here.
* **Faults**: :class:`~device.nucleo.emulator.NucleoFaults` (byte noise on what the board sends, garbage,
  silent, host not reading, spontaneous reset through QEMU's ``system_reset``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.emulated import ByteFifo, apply_byte_faults

from . import protocol as P
from .elf import ElfError, symbols
from .emulator import K_SLEEP_A_PER_HZ, NucleoFaults
from .sensor import LSM6DSO, Trace, default_trace_path, load_trace

__all__ = ["QemuBoard", "QemuBoardError", "find_firmware", "FirmwareFiles", "qemu_available", "read_counters"]

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
# bench link records (firmware/targets/qemu-mps2-an386/board_qemu.c)
R_BOOT, R_TIME_REQ, R_PACE, R_MARK, R_JOB, R_SENSOR, R_CLOCK, R_IDLE, R_PROGRESS, R_SIM_REQ = range(1, 11)
R_TIME, R_SAMPLES, R_SIM_RSP, R_SYNC = 0x81, 0x82, 0x83, 0x84
SLACK_S = 0.020  # firmware: SLACK_US
MAX_SAMPLES_PER_RECORD = 40
HISTORY_MIN_ENTRIES = 1024
#: A running firmware that reports nothing for this long (wall seconds) no longer holds the bench clock.
STALL_RELEASE_S = 10.0


class QemuBoardError(RuntimeError):
    """QEMU or the firmware could not be started; the message says what is missing and how to get it."""


@dataclass(frozen=True)
class FirmwareFiles:
    qemu: Path
    elf: Path
    plugin: Path


def _firmware_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("ODL_FIRMWARE_DIR"):
        dirs.append(Path(os.environ["ODL_FIRMWARE_DIR"]))
    dirs.append(REPO / "firmware" / "build")
    dirs.append(Path(__file__).resolve().parent / "firmware")  # packaged copy (wheel / frozen app)
    return dirs


def find_firmware() -> FirmwareFiles:
    """The QEMU binary, the firmware ELF and the cycle plugin, or :class:`QemuBoardError` naming what is
    missing and how to get it."""
    qemu = shutil.which("qemu-system-arm")
    if qemu is None:
        raise QemuBoardError(
            "qemu-system-arm is not installed (Debian/Ubuntu: sudo apt-get install qemu-system-arm); "
            "the bench uses the Python board instead"
        )
    for d in _firmware_dirs():
        elf = d / "qemu-mps2-an386" / "odl.elf"
        plugin = d / "qemu-cycles" / "odl_cycles.so"
        if elf.is_file() and plugin.is_file():
            return FirmwareFiles(Path(qemu), elf, plugin)
    raise QemuBoardError(
        "the ODL firmware is not built (run `make firmware`; it needs "
        "sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)"
    )


def qemu_available() -> bool:
    try:
        find_firmware()
    except QemuBoardError:
        return False
    return True


#: Instruction classes of the cycle plugin (firmware/tools/qemu-cycles/odl_cycles.c, enum cls).
CYCLE_CLASSES = (
    "alu", "mul", "div", "load", "store", "ldrd_strd", "ldm_stm", "branch", "vldr_vstr", "vldm_vstm",
    "fp_alu", "fp_mac", "fp_div_sqrt", "vmov_core", "other",
)  # fmt: skip


def read_counters(path: str | Path, regions: tuple[str, ...] = ()) -> dict[str, Any]:
    """Parse the cycle plugin's counter file (layout: struct odl_counters in odl_cycles.c)."""
    data = Path(path).read_bytes()
    magic, ncls = struct.unpack_from("<II", data, 0)
    if magic != 0x43594C4F or ncls != len(CYCLE_CLASSES):
        raise QemuBoardError(f"{path}: not a counter file of this cycle plugin")
    cycles, insns, insns_all = struct.unpack_from("<QQQ", data, 8)
    off = 32
    ci = struct.unpack_from(f"<{ncls}Q", data, off)
    cc = struct.unpack_from(f"<{ncls}Q", data, off + 8 * ncls)
    off += 16 * ncls
    nreg, _ = struct.unpack_from("<II", data, off)
    off += 8
    reg = {}
    for i, name in enumerate(regions[:nreg]):
        c, n = struct.unpack_from("<QQ", data, off + 16 * i)
        reg[name] = {"cycles": c, "insns": n}
    return {
        "cycles": cycles,
        "insns": insns,
        "insns_all": insns_all,
        "classes": {k: {"insns": a, "cycles": b} for k, a, b in zip(CYCLE_CLASSES, ci, cc)},
        "regions": reg,
    }


def _listen(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(1)
    return s


class QemuBoard:
    """The ODL firmware under QEMU as a virtual-bench device (EmulatedDevice + CurrentSource)."""

    def __init__(
        self,
        clock: Any,
        seed: int = 0,
        trace: Trace | str | Path | None = None,
        profile: Any = "paper",
        files: FirmwareFiles | None = None,
        history_s: float = 120.0,
        fifo_bytes: int = 64 * 1024,
        regions: tuple[str, ...] = (),
    ) -> None:
        from estimator.profiles import get_profile

        self.clock = clock
        self.seed = int(seed)
        self.profile = get_profile(profile)
        self.files = files or find_firmware()
        if trace is None:
            path = default_trace_path()
            trace = load_trace(path) if path is not None else None
        elif not isinstance(trace, Trace):
            trace = load_trace(trace)
        self.trace: Trace | None = trace
        self.history_s = float(history_s)
        self.faults = NucleoFaults()
        #: called with every chunk of bytes the firmware sends, before the fault switches damage it
        self.tx_tap: Callable[[bytes], None] | None = None
        self._fault_rng = np.random.default_rng([self.seed, 7])
        self._lock = threading.RLock()
        self._tl_lock = threading.Lock()
        self._fifo = ByteFifo(fifo_bytes)
        self._held: list[bytes] = []  # output kept while `silent`
        self._tl_t: list[float] = [-math.inf]
        self._tl_i: list[float] = [0.0]
        self._edges: list[float] = []
        self._horizon = math.inf
        self._last_report_wall = time.monotonic()
        self._pending_pace: float | None = None
        self.sysclk_hz = 8_000_000
        self._boot_sim = 0.0
        self._awake = True
        self._running = False
        self.boots = 0
        self.sensor = LSM6DSO(self.trace, seed=self.seed)
        self._stream: dict[str, Any] | None = None
        self._closed = False
        self._wakeup: Any = None
        self._sims = self._sim_ranges()
        self.regions = self._region_ranges(regions)
        self._tmp = Path(tempfile.mkdtemp(prefix="odl-qemu-"))
        self._proc: subprocess.Popen | None = None
        self._socks: dict[str, socket.socket] = {}
        self._start_qemu()

    # ------------------------------------------------------------------------------------------------
    # QEMU process
    # ------------------------------------------------------------------------------------------------
    def _sim_ranges(self) -> tuple[int, int]:
        try:
            sym = symbols(self.files.elf)
        except ElfError as exc:
            raise QemuBoardError(str(exc)) from None
        if "__simonly_start" not in sym or "__simonly_end" not in sym:
            raise QemuBoardError(f"{self.files.elf}: no __simonly_start/__simonly_end symbols (rebuild the firmware)")
        return sym["__simonly_start"][0], sym["__simonly_end"][0]

    def _region_ranges(self, names: tuple[str, ...]) -> dict[str, tuple[int, int]]:
        """Address ranges of the functions to count separately (the benchmark's per-kernel figures)."""
        if not names:
            return {}
        sym = symbols(self.files.elf)
        out = {}
        for n in names:
            if n not in sym or not sym[n][1]:
                raise QemuBoardError(f"{self.files.elf}: no function {n!r} to profile")
            out[n] = (sym[n][0], sym[n][0] + sym[n][1])
        return out

    def counters(self) -> dict[str, Any]:
        """The cycle plugin's counters now: modelled cycles and instructions (total, per instruction class,
        per region).  Consistent when the firmware is idle."""
        return read_counters(self._tmp / "odl-cycles.bin", tuple(self.regions))

    def command(self) -> list[str]:
        s, e = self._sims
        d = self._tmp
        plugin = f"{self.files.plugin},out={d / 'odl-cycles.bin'},exclude={s:x}:{e:x}"
        for a, b in self.regions.values():
            plugin += f",region={a:x}:{b:x}"
        return [
            str(self.files.qemu), "-M", "mps2-an386", "-nodefaults", "-display", "none",
            "-chardev", f"socket,id=mon,path={d / 'qmp.sock'}", "-mon", "chardev=mon,mode=control",
            "-semihosting-config", "enable=on,target=native",
            # 1 ns of virtual time per instruction while running; while the CPU naps (idle, polling for
            # input every 200 us of SysTick) virtual time follows real time
            "-icount", "shift=0,align=off,sleep=on",
            "-plugin", plugin,
            "-kernel", str(self.files.elf),
        ]  # fmt: skip

    def _start_qemu(self) -> None:
        # The firmware's links go through semihosting, not QEMU's CMSDK UARTs (board_qemu.c says why): what it
        # receives is appended to files it reads; what it sends comes through two pipes.
        self._in = {name: open(self._tmp / f"odl-{name}.bin", "ab", buffering=0) for name in ("in0", "in1")}
        self._in_lock = threading.Lock()
        self._out: dict[str, int] = {}
        for name in ("out0", "out1"):
            path = self._tmp / f"odl-{name}.fifo"
            os.mkfifo(path)
            self._out[name] = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            # our own writer end keeps the pipe from reading as closed before the firmware opens it
            self._out[name + "_w"] = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        # the doorbell: a byte after every input wakes a firmware blocked waiting for it
        wake = self._tmp / "odl-wake.fifo"
        os.mkfifo(wake)
        self._out["wake_r"] = os.open(wake, os.O_RDONLY | os.O_NONBLOCK)  # lets the writer open; never read
        self._out["wake"] = os.open(wake, os.O_WRONLY | os.O_NONBLOCK)
        listeners = {name: _listen(self._tmp / f"{name}.sock") for name in ("qmp",)}
        try:
            self._proc = subprocess.Popen(
                self.command(), cwd=self._tmp, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )  # fmt: skip
            for name, ls in listeners.items():
                ls.settimeout(10.0)
                try:
                    conn, _ = ls.accept()
                except TimeoutError:
                    err = self._proc_error()
                    raise QemuBoardError(f"QEMU did not connect its {name} channel within 10 s{err}") from None
                conn.setblocking(True)
                self._socks[name] = conn
        except BaseException:
            self._kill()
            raise
        finally:
            for ls in listeners.values():
                ls.close()
        self._qmp_init()
        self._booted = threading.Event()
        self._reader = threading.Thread(target=self._read_loop, name="qemu-board", daemon=True)
        self._reader.start()
        # like waiting for a board's power-on: what a host sends before the firmware runs is lost
        if not self._booted.wait(15.0):
            err = self._proc_error()
            self._kill()
            raise QemuBoardError(f"the firmware did not boot under QEMU within 15 s{err}")

    def _proc_error(self) -> str:
        p = self._proc
        if p is None or p.poll() is None:
            return ""
        err = (p.stderr.read() if p.stderr else b"").decode("utf-8", "replace").strip()
        return f" (QEMU exited with {p.returncode}: {err[-300:]})"

    def _qmp_init(self) -> None:
        s = self._socks["qmp"]
        s.settimeout(10.0)
        buf = b""
        while b"\n" not in buf:  # greeting
            chunk = s.recv(4096)
            if not chunk:
                raise QemuBoardError(f"QEMU closed its monitor{self._proc_error()}")
            buf += chunk
        self._qmp(("qmp_capabilities", None))

    def _qmp(self, cmd: tuple[str, dict | None]) -> None:
        s = self._socks.get("qmp")
        if s is None:
            return
        msg = {"execute": cmd[0]} if cmd[1] is None else {"execute": cmd[0], "arguments": cmd[1]}
        try:
            s.sendall(json.dumps(msg).encode() + b"\n")
        except OSError:
            pass

    def _kill(self) -> None:
        for f in getattr(self, "_in", {}).values():
            try:
                f.close()
            except OSError:
                pass
        for fd in getattr(self, "_out", {}).values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._out = {}
        for s in self._socks.values():
            try:
                s.close()
            except OSError:
                pass
        self._socks.clear()
        p = self._proc
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        if p is not None and p.stderr is not None:
            p.stderr.close()

    def close(self) -> None:
        """Stop QEMU and remove its temporary files."""
        with self._lock:
            self._closed = True
            self._horizon = math.inf
        self._kill()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __del__(self) -> None:  # pragma: no cover - safety net
        try:
            if not self._closed:
                self.close()
        except Exception:  # noqa: BLE001
            pass

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def reset(self) -> None:
        """Spontaneous reset (button, power glitch): QEMU's system_reset; the firmware reboots (cause 0)."""
        boots = self.boots
        self._qmp(("system_reset", None))

        def ring_until_boot() -> None:
            # QEMU takes the reset only when the CPU is not asleep in its doorbell read, and the monitor command
            # may be parsed after a first ring has been slept through: ring until the firmware boots (a loaded
            # host can take more than a second; a reset left pending would land at some later input instead)
            deadline = time.monotonic() + 10.0
            while self.boots == boots and not self._closed and time.monotonic() < deadline:
                with self._in_lock:
                    self._ring()
                time.sleep(0.005)
            if self.boots == boots and not self._closed:
                log.warning("QEMU board: no boot within 10 s of a reset")

        threading.Thread(target=ring_until_boot, name="qemu-reset", daemon=True).start()

    # ------------------------------------------------------------------------------------------------
    # the bench link
    # ------------------------------------------------------------------------------------------------
    def _write_in(self, name: str, data: bytes) -> None:
        with self._in_lock:
            f = self._in.get(name)
            if f is None or f.closed:
                return
            try:
                f.write(data)
            except (OSError, ValueError) as exc:
                log.error("QEMU board: cannot pass input to the firmware: %s", exc)
                return
            self._ring()

    def _ring(self) -> None:
        try:
            os.write(self._out["wake"], b"\x01")
        except (BlockingIOError, KeyError):
            pass  # the pipe is full of unread doorbells: the firmware wakes anyway
        except OSError:
            pass

    def _send_record(self, rtype: int, payload: bytes) -> None:
        self._write_in("in1", bytes((rtype, len(payload))) + payload)

    def _bench_us(self, t: float) -> int:
        return max(0, int(round((t - self._boot_sim) * 1e6)))

    def _sim(self, tick: int) -> float:
        return self._boot_sim + tick * 1e-6

    def sim_time(self, tick: int) -> float:
        """Simulated time (the bench's clock) of a board tick of the current boot."""
        return self._sim(tick)

    def _send_time(self, t: float) -> None:
        self._send_record(R_TIME, struct.pack("<Q", self._bench_us(t)))

    def _read_loop(self) -> None:
        """The bench link's reader thread: until QEMU ends or the board is closed; then, or when handling what
        the firmware sent fails, the board is said to have stopped and no longer holds the bench clock."""
        try:
            self._pump_link()
        except Exception:  # noqa: BLE001 - a record this side cannot handle: said, and the board stops
            log.exception("QEMU board: the bench link failed")
        finally:
            with self._lock:
                if not self._closed:
                    log.error("QEMU board stopped%s", self._proc_error())
                self._horizon = math.inf  # a dead board must not hold the bench clock

    def _pump_link(self) -> None:
        import select

        u0, u1 = self._out["out0"], self._out["out1"]
        rbuf = b""
        qmp = self._socks.get("qmp")
        while not self._closed:
            if not self.alive:
                break
            rl: list[Any] = [u0, u1] + ([qmp] if qmp is not None else [])
            try:
                ready, _, _ = select.select(rl, [], [], 0.05)
            except (OSError, ValueError):
                break
            if not ready:
                self._check_stall()
                continue
            if u0 in ready:
                try:
                    data = os.read(u0, 65536)
                except BlockingIOError:
                    data = b""
                except OSError:
                    break
                if data:
                    self._on_board_output(data)
            if u1 in ready:
                try:
                    data = os.read(u1, 65536)
                except BlockingIOError:
                    data = b""
                except OSError:
                    break
                rbuf += data
                while len(rbuf) >= 2 and len(rbuf) >= 2 + rbuf[1]:
                    rtype, n = rbuf[0], rbuf[1]
                    payload, rbuf = rbuf[2 : 2 + n], rbuf[2 + n :]
                    self._on_record(rtype, payload)
            if qmp is not None and qmp in ready:
                try:
                    if not qmp.recv(65536):
                        qmp = None
                except OSError:
                    qmp = None

    def _check_stall(self) -> None:
        with self._lock:
            if self._horizon != math.inf and time.monotonic() - self._last_report_wall > STALL_RELEASE_S:
                log.warning("QEMU board reported nothing for %.0f s: releasing the bench clock", STALL_RELEASE_S)
                self._horizon = math.inf

    def _on_record(self, rtype: int, p: bytes) -> None:
        now = float(self.clock.now())
        with self._lock:
            self._last_report_wall = time.monotonic()
            if rtype == R_BOOT:
                # first, the mark from which odl-in1.bin is this boot's: records appended since the reset (samples
                # of the old stream, time answers) count time from the old boot, and the firmware drops them
                self._send_record(R_SYNC, struct.pack("<I", self.boots + 1))
                self.boots += 1
                self._boot_sim = now
                self._pending_pace = None
                self._running = False
                self._awake = True
                self._stream = None
                self.sysclk_hz = 8_000_000
                self._horizon = now
                self._drop_edges_after(now)
                self._set_level(now, self._run_level())
                self._booted.set()
            elif rtype == R_TIME_REQ:
                self._awake = True
                self._send_time(now)
                self._set_level(max(now, self._sim(struct.unpack_from("<Q", p)[0])), self._run_level())
                self._horizon = now
            elif rtype == R_PACE:
                t = self._sim(struct.unpack_from("<Q", p)[0])
                self._horizon = t
                if now >= t - SLACK_S:
                    self._send_time(now)
                else:
                    self._pending_pace = t
            elif rtype in (R_PROGRESS, R_MARK):
                t = self._sim(struct.unpack_from("<Q", p)[0])
                self._horizon = max(t, self._horizon) if self._horizon != math.inf else t
                if rtype == R_MARK:
                    with self._tl_lock:
                        self._edges.append(t)
            elif rtype == R_JOB:
                t = self._sim(struct.unpack_from("<Q", p)[0])
                self._running = bool(p[8])
                self._awake = True
                self._horizon = t
                self._set_level(t, self._run_level())
            elif rtype == R_IDLE:
                t = self._sim(struct.unpack_from("<Q", p)[0])
                self._awake = False
                self._running = False
                self._set_level(t, self._sleep_level())
                self._horizon = math.inf
            elif rtype == R_CLOCK:
                tick, hz = struct.unpack_from("<QI", p)
                self.sysclk_hz = int(hz)
                t = self._sim(tick)
                self._set_level(t, self._run_level() if (self._awake or self._running) else self._sleep_level())
            elif rtype == R_SENSOR:
                tick, odr_mhz, fs, on, epoch = struct.unpack_from("<QIBBH", p)
                t = self._sim(tick)
                try:
                    self.sensor.configure(P.check_odr_mhz(odr_mhz), P.check_fs_g(fs))
                except P.ProtocolError as exc:
                    log.warning("firmware asked for an impossible sensor set-up: %s", exc)
                if on and self.trace is not None:
                    self._stream = {"t0": t, "odr": odr_mhz / 1000.0, "next": 0, "epoch": epoch}
                else:
                    self._stream = None
            elif rtype == R_SIM_REQ:
                self._answer_sim(p[0], p[1:], now)

    def _answer_sim(self, mtype: int, payload: bytes, now: float) -> None:
        def reply(status: int, body: bytes) -> None:
            self._send_record(R_SIM_RSP, struct.pack("<b", status) + body[:254])

        def refuse(exc: Exception) -> None:  # an ERROR reply with the exception's words, NUL-terminated
            reply(-2, str(exc).encode("utf-8", "replace")[:200] + b"\x00")

        if self.trace is None:
            reply(-2, b"the emulated sensor has no recorded trace to play (pass trace=...)\x00")
            return
        if mtype == P.MsgType.SIM_SET_ACTIVITY:
            name = payload[:16].split(b"\x00", 1)[0].decode("utf-8", "replace")
            try:
                self.sensor.set_activity(name, now)
            except P.ProtocolError as exc:
                refuse(exc)
                return
        try:  # (a current activity named with more than 16 bytes cannot be packed: said, as the Python board does)
            msg = P.Activity(self.sensor.activity, tuple(a[:16] for a in self.activities))
            body = msg.pack()
            if len(body) > 254:
                body = P.Activity(self.sensor.activity, tuple(a[:16] for a in self.activities[:14])).pack()
        except P.ProtocolError as exc:
            refuse(exc)
            return
        reply(0, body)

    # ------------------------------------------------------------------------------------------------
    # EmulatedDevice
    # ------------------------------------------------------------------------------------------------
    def _on_board_output(self, data: bytes) -> None:
        tap = self.tx_tap
        if tap is not None:  # the bytes as the firmware sent them, before any fault switch (fault tests)
            tap(data)
        with self._lock:
            if self.faults.byte_faults_active():
                data = apply_byte_faults(data, self.faults, self._fault_rng)
            if self.faults.silent:
                self._held.append(data)
                return
            if self._held:
                for h in self._held:
                    self._fifo.append(h)
                self._held.clear()
            self._fifo.append(data)

    def set_wakeup(self, fn: Any) -> None:
        """The endpoint's way to be woken when output arrives (it then sends it at once)."""
        self._wakeup = fn

    def connect(self) -> None:
        with self._lock:
            self._fifo = ByteFifo(self._fifo.capacity)  # the host flushes its input on open

    def disconnect(self) -> None:
        pass

    def _freeze(self) -> None:
        """Input reaches a sleeping firmware: it wakes (run mode) and simulated time waits until it reports."""
        if not self._awake and not self._running:
            now = float(self.clock.now())
            self._horizon = now
            self._awake = True
            self._last_report_wall = time.monotonic()
            self._set_level(now, self._run_level())

    def receive(self, data: bytes) -> None:
        with self._lock:
            if self.faults.silent or self._closed:
                return
            if self.faults.garbage:
                n = int(self._fault_rng.integers(1, 64))
                self._fifo.append(self._fault_rng.integers(0, 256, n, dtype=np.uint8).tobytes())
                return
            self._freeze()
        self._write_in("in0", data)

    def advance(self, now: float) -> None:
        with self._lock:
            if self.faults.reset_now:
                self.faults.reset_now = False
                self.reset()
            if self._pending_pace is not None and now >= self._pending_pace - SLACK_S:
                self._pending_pace = None
                self._send_time(now)
            self._prune(now)
            st = self._stream
            if st is None:
                return
            odr = st["odr"]
            due = int(math.floor((now - st["t0"]) * odr + 1e-9)) + 1
            # like the LSM6DSO's FIFO watermark: wake the firmware for a batch of samples, not for each
            if due - st["next"] < max(1.0, odr * 0.05):
                return
            first = st["next"]
            n = min(due - first, 4 * MAX_SAMPLES_PER_RECORD * 50)
            times = st["t0"] + (first + np.arange(n)) / odr
            xyz = self.sensor.samples(times).astype("<i2")
            st["next"] = first + n
            self._freeze()
            for k in range(0, n, MAX_SAMPLES_PER_RECORD):
                part = xyz[k : k + MAX_SAMPLES_PER_RECORD]
                hdr = struct.pack("<QHIB", self._bench_us(now), st["epoch"], first + k, len(part))
                self._send_record(R_SAMPLES, hdr + part.tobytes())

    def pending(self) -> memoryview | bytes:
        with self._lock:
            if self.faults.silent or self.faults.host_not_reading:
                return b""
            return self._fifo.pending()

    def consume(self, n: int) -> None:
        with self._lock:
            self._fifo.consume(n)

    @property
    def busy(self) -> bool:
        return self._stream is not None or self._running or self._pending_pace is not None or len(self._fifo) > 0

    # ------------------------------------------------------------------------------------------------
    # CurrentSource + the bench clock's limit
    # ------------------------------------------------------------------------------------------------
    def horizon(self) -> float:
        """Simulated time up to which the firmware's timeline is known (the bench clock waits here)."""
        return self._horizon

    def _run_level(self) -> float:
        return float(self.profile.current_a(float(self.sysclk_hz)))

    def _sleep_level(self) -> float:
        return float(self.profile.i0_a + K_SLEEP_A_PER_HZ * float(self.sysclk_hz))

    def _set_level(self, t: float, amps: float) -> None:
        with self._tl_lock:
            k = int(np.searchsorted(self._tl_t, t, side="left"))
            del self._tl_t[k:], self._tl_i[k:]
            self._tl_t.append(t)
            self._tl_i.append(float(amps))

    def _drop_edges_after(self, t: float) -> None:
        with self._tl_lock:
            self._edges = [e for e in self._edges if e <= t]

    def _prune(self, now: float) -> None:
        cut = now - self.history_s
        with self._tl_lock:
            k = min(int(np.searchsorted(self._tl_t, cut, side="right")) - 1, len(self._tl_t) - HISTORY_MIN_ENTRIES)
            if k > 1:
                del self._tl_t[1:k], self._tl_i[1:k]
            j = min(int(np.searchsorted(self._edges, cut, side="left")), len(self._edges) - HISTORY_MIN_ENTRIES)
            if j > 0:
                del self._edges[:j]

    def current(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, np.float64)
        with self._tl_lock:
            times = np.asarray(self._tl_t)
            levels = np.asarray(self._tl_i)
        idx = np.searchsorted(times, t, side="right") - 1
        return levels[np.clip(idx, min(1, len(levels) - 1), len(levels) - 1)]

    def d7_edges(self, t0: float, t1: float) -> np.ndarray:
        with self._tl_lock:
            e = np.asarray(self._edges, np.float64)
        return e[(e > t0) & (e <= t1)]

    # ------------------------------------------------------------------------------------------------
    # the emulated person (same API as NucleoEmulator)
    # ------------------------------------------------------------------------------------------------
    def set_activity(self, activity: str) -> None:
        with self._lock:
            try:
                self.sensor.set_activity(activity, float(self.clock.now()))
            except P.ProtocolError as exc:
                raise ValueError(str(exc)) from None

    @property
    def activities(self) -> tuple[str, ...]:
        return self.trace.activities if self.trace is not None else ()
