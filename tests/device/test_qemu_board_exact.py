"""The QEMU board's bench side (device/nucleo/qemu_board.py) without QEMU: exact values.

A :class:`QemuBoard` is built with ``_start_qemu`` replaced by its plumbing alone (the input files and the doorbell
pipe, made as ``_start_qemu`` makes them: no QEMU, no monitor, no reader thread) and the ELF's symbols given by hand.
The tests then feed ``_on_record`` the bench-link records exactly as firmware/targets/qemu-mps2-an386/board_qemu.c
builds them (type u8, len u8, payload; little-endian ticks of 1 µs since the boot) and check, by value, the supply
current (the ``paper`` profile: run I0 + k·f, sleep I0 + 28 µA/MHz·f) and the D7 edges at the firmware's timestamps,
the bench clock's horizon, the records the bench writes back (read from odl-in1.bin), the doorbell, the accelerometer
samples played in, SIM requests, the byte path and its faults, the counter file, QEMU's command line and where the
firmware is looked for.  The mutation target ``qemu_board`` (benchmarks/mutation.py) runs this file; the firmware
itself under QEMU is tests/device/test_firmware_qemu.py (slow)."""

from __future__ import annotations

import logging
import math
import os
import socket
import struct
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import device.nucleo.qemu_board as qb
from device.emulated import apply_byte_faults
from device.nucleo import protocol as P
from device.nucleo.elf import ElfError
from device.nucleo.emulator import NucleoFaults
from device.nucleo.qemu_board import (
    CYCLE_CLASSES,
    R_BOOT,
    R_CLOCK,
    R_IDLE,
    R_JOB,
    R_MARK,
    R_PACE,
    R_PROGRESS,
    R_SAMPLES,
    R_SENSOR,
    R_SIM_REQ,
    R_SIM_RSP,
    R_SYNC,
    R_TIME,
    R_TIME_REQ,
    FirmwareFiles,
    QemuBoard,
    QemuBoardError,
    find_firmware,
    qemu_available,
    read_counters,
)
from device.nucleo.sensor import LSM6DSO, Trace

# the paper profile (estimator/profiles.py) at the firmware's default SYSCLK, 8 MHz, and at 16 MHz
I0, K_RUN, K_SLEEP = 75.2e-6, 91e-12, 28e-12
RUN_8 = I0 + K_RUN * 8e6  # 803.2 µA
SLEEP_8 = I0 + K_SLEEP * 8e6  # 299.2 µA
RUN_16 = I0 + K_RUN * 16e6
SLEEP_16 = I0 + K_SLEEP * 16e6

FILES = FirmwareFiles(Path("/opt/qemu/bin/qemu-system-arm"), Path("/fw/odl.elf"), Path("/fw/odl_cycles.so"))
SYMS = {
    "__simonly_start": (0x1F000, 0),
    "__simonly_end": (0x20A40, 0),
    "odl_conv_fwd": (0x4120, 0x3C8),
    "odl_dense_fwd": (0x4800, 0x100),
    "odl_label": (0x5000, 0),
}
BOOT = 2.5  # the bench's time when the firmware's R_BOOT arrives


def _trace(names=("Walking", "Sitting", "Standing")) -> Trace:
    rng = np.random.default_rng(11)
    return Trace(10.0, {n: rng.normal(0, 0.5, (40, 3)).astype(np.float32) for n in names}, "test")


class Clock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


def _plumbing(self: QemuBoard) -> None:
    """``_start_qemu`` without QEMU: the input files and the doorbell, as _start_qemu makes them."""
    self._in = {name: open(self._tmp / f"odl-{name}.bin", "ab", buffering=0) for name in ("in0", "in1")}
    self._in_lock = threading.Lock()
    wake = self._tmp / "odl-wake.fifo"
    os.mkfifo(wake)
    self._out = {"wake_r": os.open(wake, os.O_RDONLY | os.O_NONBLOCK)}
    self._out["wake"] = os.open(wake, os.O_WRONLY | os.O_NONBLOCK)
    self._booted = threading.Event()


@pytest.fixture
def make(monkeypatch):
    seen: list[Path] = []

    def symbols(path):
        seen.append(Path(path))
        return SYMS

    monkeypatch.setattr(qb, "symbols", symbols)
    monkeypatch.setattr(QemuBoard, "_start_qemu", _plumbing)
    boards: list[QemuBoard] = []

    def make_board(t: float = 0.0, trace=None, **kw) -> QemuBoard:
        b = QemuBoard(Clock(t), seed=3, trace=_trace() if trace is None else trace, files=FILES, **kw)
        boards.append(b)
        return b

    make_board.symbol_files = seen  # type: ignore[attr-defined]
    yield make_board
    for b in boards:
        b._proc = None
        b.close()


@pytest.fixture
def board(make) -> QemuBoard:
    return make()


def records(b: QemuBoard, name: str = "in1") -> list[tuple[int, bytes]]:
    """What the bench wrote to the firmware's input file, as records (type, payload)."""
    data = (b._tmp / f"odl-{name}.bin").read_bytes()
    out = []
    while data:
        n = data[1]
        assert len(data) >= 2 + n, "a record cut short"
        out.append((data[0], data[2 : 2 + n]))
        data = data[2 + n :]
    return out


def rings(b: QemuBoard) -> int:
    try:
        return len(os.read(b._out["wake_r"], 4096))
    except BlockingIOError:
        return 0


def tick(v: int) -> bytes:
    return struct.pack("<Q", v)


def at(us: int) -> float:
    """The bench's time of a firmware tick (1 µs) of the boot at BOOT."""
    return BOOT + us * 1e-6


def boot(b: QemuBoard, t: float = BOOT) -> None:
    b.clock.t = t
    b._on_record(R_BOOT, bytes((0, 4, 2, 0, 0)))


def levels(b: QemuBoard) -> list[tuple[float, float]]:
    return list(zip(b._tl_t, b._tl_i))


# ------------------------------------------------------------------------------------------------------------------
# construction, ELF symbols, the command line
# ------------------------------------------------------------------------------------------------------------------
def test_a_new_board_before_its_boot(make):
    b = make(t=1.0, regions=("odl_conv_fwd", "odl_dense_fwd"))
    assert make.symbol_files == [FILES.elf, FILES.elf]
    assert b._sims == (0x1F000, 0x20A40)
    assert b.regions == {"odl_conv_fwd": (0x4120, 0x44E8), "odl_dense_fwd": (0x4800, 0x4900)}
    assert b.seed == 3 and b.sysclk_hz == 8_000_000 and b.boots == 0 and b.history_s == 120.0
    assert b.profile.name == "paper"
    assert b.horizon() == math.inf
    assert b._fifo.capacity == 64 * 1024 and b.pending() == b"" and not b.busy
    assert b._tmp.name.startswith("odl-qemu-") and b._tmp.is_dir()
    assert b.activities == ("Walking", "Sitting", "Standing")
    assert b.sensor.activity == "Walking"
    # no level yet: 0 A at any time; no edges
    assert b.current(np.array([-1.0, 0.0, 5.0])).tolist() == [0.0, 0.0, 0.0]
    assert b.d7_edges(-math.inf, math.inf).tolist() == []
    assert b.faults == NucleoFaults() and b.tx_tap is None and b._held == []


def test_constructor_arguments(make, monkeypatch):
    b = make(history_s=7, fifo_bytes=100, profile="paper")
    assert b.history_s == 7.0 and type(b.history_s) is float
    assert b._fifo.capacity == 100
    monkeypatch.setattr(qb, "default_trace_path", lambda: None)
    b2 = QemuBoard(Clock(), seed="5", trace=None, files=FILES)
    try:
        assert b2.trace is None and b2.seed == 5 and b2.activities == ()
    finally:
        b2.close()


def test_the_default_trace_and_a_trace_file(make, monkeypatch, tmp_path):
    path = tmp_path / "t.npz"
    np.savez(path, acc_g=np.zeros((4, 3), np.float32) + 0.5, labels=np.array(["Jogging"] * 4), rate_hz=20.0)
    monkeypatch.setattr(qb, "default_trace_path", lambda: path)
    b = QemuBoard(Clock(), trace=None, files=FILES)
    try:
        assert b.trace is not None and b.activities == ("Jogging",) and b.trace.rate_hz == 20.0
        assert b.sensor.trace is b.trace
    finally:
        b.close()
    b = QemuBoard(Clock(), trace=str(path), files=FILES)
    try:
        assert b.activities == ("Jogging",)
    finally:
        b.close()


def test_sim_ranges_and_regions_refuse_what_the_elf_lacks(make, monkeypatch):
    b = make()
    assert b._region_ranges(()) == {}
    assert b._region_ranges(("odl_dense_fwd",)) == {"odl_dense_fwd": (0x4800, 0x4900)}
    with pytest.raises(QemuBoardError) as e:
        b._region_ranges(("odl_dense_fwd", "odl_nope"))
    assert str(e.value) == "/fw/odl.elf: no function 'odl_nope' to profile"
    with pytest.raises(QemuBoardError) as e:
        b._region_ranges(("odl_label",))  # a symbol of size 0 is no function
    assert str(e.value) == "/fw/odl.elf: no function 'odl_label' to profile"
    for missing in ("__simonly_start", "__simonly_end"):
        syms = {k: v for k, v in SYMS.items() if k != missing}
        monkeypatch.setattr(qb, "symbols", lambda p, s=syms: s)
        with pytest.raises(QemuBoardError) as e:
            b._sim_ranges()
        assert str(e.value) == "/fw/odl.elf: no __simonly_start/__simonly_end symbols (rebuild the firmware)"

    def bad(path):
        raise ElfError(f"{path}: not a 32-bit little-endian ELF file")

    monkeypatch.setattr(qb, "symbols", bad)
    with pytest.raises(QemuBoardError) as e:
        b._sim_ranges()
    assert str(e.value) == "/fw/odl.elf: not a 32-bit little-endian ELF file"
    assert e.value.__cause__ is None and e.value.__suppress_context__


def test_command_line(make):
    b = make(regions=("odl_conv_fwd", "odl_dense_fwd"))
    d = b._tmp
    assert b.command() == [
        "/opt/qemu/bin/qemu-system-arm", "-M", "mps2-an386", "-nodefaults", "-display", "none",
        "-chardev", f"socket,id=mon,path={d}/qmp.sock", "-mon", "chardev=mon,mode=control",
        "-semihosting-config", "enable=on,target=native",
        "-icount", "shift=0,align=off,sleep=on",
        "-plugin", f"/fw/odl_cycles.so,out={d}/odl-cycles.bin,exclude=1f000:20a40,region=4120:44e8,region=4800:4900",
        "-kernel", "/fw/odl.elf",
    ]  # fmt: skip
    plain = make()
    assert plain.command()[15] == f"/fw/odl_cycles.so,out={plain._tmp}/odl-cycles.bin,exclude=1f000:20a40"


# ------------------------------------------------------------------------------------------------------------------
# the cycle plugin's counter file
# ------------------------------------------------------------------------------------------------------------------
def _counter_file(path: Path, magic=0x43594C4F, ncls=len(CYCLE_CLASSES), regions=((1000, 300), (50, 20))) -> None:
    data = struct.pack("<II", magic, ncls) + struct.pack("<QQQ", 123456789, 23456, 34567)
    data += struct.pack(f"<{ncls}Q", *range(10, 10 + ncls)) + struct.pack(f"<{ncls}Q", *range(100, 100 + ncls))
    data += struct.pack("<II", len(regions), 0)
    for c, n in regions:
        data += struct.pack("<QQ", c, n)
    path.write_bytes(data)


def test_read_counters(tmp_path):
    f = tmp_path / "odl-cycles.bin"
    _counter_file(f)
    got = read_counters(f, ("conv", "dense", "extra"))
    assert got == {
        "cycles": 123456789,
        "insns": 23456,
        "insns_all": 34567,
        "classes": {
            "alu": {"insns": 10, "cycles": 100}, "mul": {"insns": 11, "cycles": 101},
            "div": {"insns": 12, "cycles": 102}, "load": {"insns": 13, "cycles": 103},
            "store": {"insns": 14, "cycles": 104}, "ldrd_strd": {"insns": 15, "cycles": 105},
            "ldm_stm": {"insns": 16, "cycles": 106}, "branch": {"insns": 17, "cycles": 107},
            "vldr_vstr": {"insns": 18, "cycles": 108}, "vldm_vstm": {"insns": 19, "cycles": 109},
            "fp_alu": {"insns": 20, "cycles": 110}, "fp_mac": {"insns": 21, "cycles": 111},
            "fp_div_sqrt": {"insns": 22, "cycles": 112}, "vmov_core": {"insns": 23, "cycles": 113},
            "other": {"insns": 24, "cycles": 114},
        },
        "regions": {"conv": {"cycles": 1000, "insns": 300}, "dense": {"cycles": 50, "insns": 20}},
    }  # fmt: skip
    assert read_counters(str(f))["regions"] == {}
    assert read_counters(f, ("conv",))["regions"] == {"conv": {"cycles": 1000, "insns": 300}}


def test_read_counters_refuses_another_file(tmp_path):
    f = tmp_path / "c.bin"
    for kw in ({"magic": 0x43594C4E}, {"ncls": 14}, {"ncls": 16}):
        _counter_file(f, **kw)
        with pytest.raises(QemuBoardError) as e:
            read_counters(f)
        assert str(e.value) == f"{f}: not a counter file of this cycle plugin"


def test_counters_reads_the_boards_file(board):
    _counter_file(board._tmp / "odl-cycles.bin", regions=((7, 3),))
    board.regions = {"conv": (0, 4)}
    got = board.counters()
    assert got["cycles"] == 123456789 and got["regions"] == {"conv": {"cycles": 7, "insns": 3}}


# ------------------------------------------------------------------------------------------------------------------
# where the firmware is looked for
# ------------------------------------------------------------------------------------------------------------------
def test_firmware_dirs(monkeypatch, tmp_path):
    packaged = Path(qb.__file__).resolve().parent / "firmware"
    monkeypatch.setattr(qb, "REPO", tmp_path / "repo")
    monkeypatch.delenv("ODL_FIRMWARE_DIR", raising=False)
    assert qb._firmware_dirs() == [tmp_path / "repo" / "firmware" / "build", packaged]
    monkeypatch.setenv("ODL_FIRMWARE_DIR", "")
    assert qb._firmware_dirs() == [tmp_path / "repo" / "firmware" / "build", packaged]
    monkeypatch.setenv("ODL_FIRMWARE_DIR", str(tmp_path / "mine"))
    assert qb._firmware_dirs() == [tmp_path / "mine", tmp_path / "repo" / "firmware" / "build", packaged]


def _fw(d: Path, elf=True, plugin=True) -> None:
    if elf:
        (d / "qemu-mps2-an386").mkdir(parents=True)
        (d / "qemu-mps2-an386" / "odl.elf").write_bytes(b"\x7fELF")
    if plugin:
        (d / "qemu-cycles").mkdir(parents=True)
        (d / "qemu-cycles" / "odl_cycles.so").write_bytes(b"so")


def test_find_firmware(monkeypatch, tmp_path):
    monkeypatch.setattr(qb.shutil, "which", lambda name: f"/usr/local/bin/{name}")
    monkeypatch.setattr(qb, "REPO", tmp_path / "repo")
    monkeypatch.setenv("ODL_FIRMWARE_DIR", str(tmp_path / "mine"))
    _fw(tmp_path / "mine", plugin=False)  # an ELF without the plugin is not the firmware
    _fw(tmp_path / "repo" / "firmware" / "build")
    got = find_firmware()
    assert got == FirmwareFiles(
        Path("/usr/local/bin/qemu-system-arm"),
        tmp_path / "repo/firmware/build/qemu-mps2-an386/odl.elf",
        tmp_path / "repo/firmware/build/qemu-cycles/odl_cycles.so",
    )
    assert isinstance(got.qemu, Path)
    _fw(tmp_path / "mine", elf=False)  # now complete: the first directory wins
    assert find_firmware().elf == tmp_path / "mine/qemu-mps2-an386/odl.elf"
    assert qemu_available() is True


def test_find_firmware_names_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(qb, "REPO", tmp_path / "repo")
    monkeypatch.setenv("ODL_FIRMWARE_DIR", str(tmp_path / "mine"))
    _fw(tmp_path / "mine", elf=False)  # a plugin without the ELF is not the firmware either
    monkeypatch.setattr(qb.shutil, "which", lambda name: f"/usr/bin/{name}")
    with pytest.raises(QemuBoardError) as e:
        find_firmware()
    assert str(e.value) == (
        "the ODL firmware is not built (run `make firmware`; it needs "
        "sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)"
    )
    assert qemu_available() is False
    monkeypatch.setattr(qb.shutil, "which", lambda name: None if name == "qemu-system-arm" else "/bin/x")
    with pytest.raises(QemuBoardError) as e:
        find_firmware()
    assert str(e.value) == (
        "qemu-system-arm is not installed (Debian/Ubuntu: sudo apt-get install qemu-system-arm); "
        "the bench uses the Python board instead"
    )
    assert qemu_available() is False


def test_the_constructor_finds_the_firmware_itself(monkeypatch, tmp_path):
    monkeypatch.setattr(qb, "find_firmware", lambda: FILES)
    monkeypatch.setattr(qb, "symbols", lambda p: SYMS)
    monkeypatch.setattr(QemuBoard, "_start_qemu", _plumbing)
    b = QemuBoard(Clock(), trace=_trace())
    try:
        assert b.files is FILES
    finally:
        b.close()


# ------------------------------------------------------------------------------------------------------------------
# the bench link: boot, time, pace
# ------------------------------------------------------------------------------------------------------------------
def test_boot_answers_sync_and_starts_the_timeline(board):
    boot(board)
    assert records(board) == [(R_SYNC, struct.pack("<I", 1))]
    assert rings(board) == 1
    assert board.boots == 1 and board._booted.is_set()
    assert board._boot_sim == BOOT and board.horizon() == BOOT
    assert levels(board) == [(-math.inf, 0.0), (BOOT, RUN_8)]
    assert board.sim_time(0) == BOOT and board.sim_time(1_500_000) == pytest.approx(4.0, abs=1e-12)
    # the level before the first change is the first level (not the 0 A placeholder)
    assert board.current(np.array([0.0, BOOT, 3.0])).tolist() == [RUN_8, RUN_8, RUN_8]
    assert board._awake and not board._running and board._stream is None and board._pending_pace is None


def test_a_second_boot_resets_what_the_first_set(board):
    boot(board)
    board._on_record(R_CLOCK, struct.pack("<QI", 1000, 16_000_000))
    board._on_record(R_SENSOR, struct.pack("<QIBBH", 2000, 52000, 4, 1, 1))
    board._on_record(R_JOB, tick(3000) + b"\x01")
    board._on_record(R_MARK, tick(4000))
    board._on_record(R_MARK, tick(9000))
    board._on_record(R_PACE, tick(500_000))  # far ahead: answered later
    assert board._pending_pace is not None and board._stream is not None and board._running
    board.clock.t = at(5000)  # the reset: the timeline after it and the edges after it are the new boot's
    board._on_record(R_BOOT, bytes((0, 4, 2, 1, 0)))
    assert records(board)[-1] == (R_SYNC, struct.pack("<I", 2))
    assert board.boots == 2 and board._boot_sim == at(5000) and board.horizon() == at(5000)
    assert board.sysclk_hz == 8_000_000 and board._stream is None and board._pending_pace is None
    assert not board._running and board._awake
    assert board.d7_edges(0, 10).tolist() == [at(4000)]
    assert levels(board)[-1] == (at(5000), RUN_8)
    assert levels(board)[-2] == (at(3000), RUN_16)


def test_time_request_answers_the_bench_time(board):
    boot(board)
    board.clock.t = 3.75
    board._on_record(R_TIME_REQ, tick(200))  # the firmware's clock is behind the bench's: it slept
    assert records(board)[1:] == [(R_TIME, struct.pack("<Q", 1_250_000))]
    assert rings(board) == 2
    assert board.horizon() == 3.75
    assert levels(board)[-1] == (3.75, RUN_8)
    board._awake = False
    board.clock.t = 4.0
    board._on_record(R_TIME_REQ, tick(1_600_000))  # ahead of the bench (it ran): its own time
    assert records(board)[-1] == (R_TIME, struct.pack("<Q", 1_500_000))
    assert board._awake and board.horizon() == 4.0
    assert levels(board)[-1] == (pytest.approx(at(1_600_000), abs=1e-12), RUN_8)


def test_pace_waits_for_the_bench(board):
    boot(board)
    board.clock.t = 3.0
    board._on_record(R_PACE, tick(520_000))  # 20 ms ahead of the bench: within the slack, answered now
    assert records(board)[1:] == [(R_TIME, struct.pack("<Q", 500_000))]
    assert board.horizon() == pytest.approx(at(520_000), abs=1e-12) and board._pending_pace is None
    board._on_record(R_PACE, tick(521_000))  # 21 ms ahead: the bench answers when it gets there
    assert len(records(board)) == 2 and board._pending_pace == pytest.approx(at(521_000), abs=1e-12)
    assert board.busy
    board.advance(3.0009)
    assert len(records(board)) == 2 and board._pending_pace is not None
    board.advance(3.0011)
    assert records(board)[2:] == [(R_TIME, struct.pack("<Q", 501_100))]
    assert board._pending_pace is None and not board.busy
    board.advance(3.5)
    assert len(records(board)) == 3


def test_progress_and_marks_extend_the_horizon_and_marks_are_d7_edges(board):
    boot(board)
    board._on_record(R_JOB, tick(1000) + b"\x01")
    assert board.horizon() == pytest.approx(at(1000), abs=1e-12)
    board._on_record(R_PROGRESS, tick(6000))
    assert board.horizon() == pytest.approx(at(6000), abs=1e-12)
    board._on_record(R_MARK, tick(7000))
    assert board.horizon() == pytest.approx(at(7000), abs=1e-12)
    board._on_record(R_PROGRESS, tick(6500))  # never back
    assert board.horizon() == pytest.approx(at(7000), abs=1e-12)
    board._on_record(R_MARK, tick(8000))
    assert board.d7_edges(0, 10).tolist() == [at(7000), at(8000)]
    assert board.d7_edges(at(7000), at(8000)).tolist() == [at(8000)]  # (t0, t1]
    assert board.d7_edges(at(6999), at(7000)).tolist() == [at(7000)]
    assert board.d7_edges(at(8000), 10).tolist() == []
    board._horizon = math.inf  # asleep: a mark or progress starts the horizon again
    board._on_record(R_MARK, tick(9000))
    assert board.horizon() == pytest.approx(at(9000), abs=1e-12)
    board._horizon = math.inf
    board._on_record(R_PROGRESS, tick(100))
    assert board.horizon() == pytest.approx(at(100), abs=1e-12)
    assert len(board.d7_edges(0, 10)) == 3
    assert len(records(board)) == 1  # nothing answered


def test_job_and_idle_set_run_and_sleep_current(board):
    boot(board)
    board.clock.t = 3.0
    board._on_record(R_JOB, tick(600_000) + b"\x01")
    assert board._running and board._awake and board.busy
    board._on_record(R_JOB, tick(900_000) + b"\x00")
    assert not board._running and board._awake and not board.busy
    assert board.horizon() == pytest.approx(at(900_000), abs=1e-12)
    board._on_record(R_IDLE, tick(1_000_000))
    assert not board._awake and not board._running and board.horizon() == math.inf
    assert levels(board)[-1] == (at(1_000_000), SLEEP_8)
    t = np.array([BOOT, at(999_999), at(1_000_000), 100.0])
    assert board.current(t).tolist() == [RUN_8, RUN_8, SLEEP_8, SLEEP_8]
    board._on_record(R_JOB, tick(2_000_000) + b"\x07")  # any non-zero byte is running
    assert board._running and levels(board)[-1] == (at(2_000_000), RUN_8)
    board._on_record(R_IDLE, tick(2_500_000))
    assert not board._running and len(records(board)) == 1


def test_clock_changes_the_levels(board):
    boot(board)
    board._on_record(R_CLOCK, struct.pack("<QI", 1000, 16_000_000))
    assert board.sysclk_hz == 16_000_000 and levels(board)[-1] == (at(1000), RUN_16)
    assert board._run_level() == RUN_16 and board._sleep_level() == SLEEP_16
    board._on_record(R_IDLE, tick(2000))
    assert levels(board)[-1] == (at(2000), SLEEP_16)
    board._on_record(R_CLOCK, struct.pack("<QI", 3000, 8_000_000))  # asleep: the sleep level at the new clock
    assert levels(board)[-1] == (at(3000), SLEEP_8)
    board._running = True  # a round's clock change while the host woke nobody (awake False, running)
    board._on_record(R_CLOCK, struct.pack("<QI", 4000, 16_000_000))
    assert levels(board)[-1] == (at(4000), RUN_16)
    board._running, board._awake = False, True
    board._on_record(R_CLOCK, struct.pack("<QI", 5000, 8_000_000))
    assert levels(board)[-1] == (at(5000), RUN_8)
    assert len(records(board)) == 1


def test_a_level_set_in_the_past_replaces_the_later_ones(board):
    board._set_level(1.0, 5.0)
    board._set_level(2.0, 6.0)
    board._set_level(3.0, 7.0)
    board._set_level(2.0, 8.0)  # the same instant: replaced
    assert levels(board) == [(-math.inf, 0.0), (1.0, 5.0), (2.0, 8.0)]
    board._set_level(1.5, 9)
    assert levels(board) == [(-math.inf, 0.0), (1.0, 5.0), (1.5, 9.0)] and type(board._tl_i[-1]) is float
    assert board.current(np.array([0.5, 1.0, 1.49, 1.5, 2.0])).tolist() == [5.0, 5.0, 5.0, 9.0, 9.0]
    assert board.current([1.2]).tolist() == [5.0]


def test_drop_edges_after(board):
    board._edges = [1.0, 2.0, 3.0]
    board._drop_edges_after(2.0)
    assert board._edges == [1.0, 2.0]
    board._drop_edges_after(0.5)
    assert board._edges == []


def test_prune_keeps_the_history_and_at_least_1024_entries(board):
    for i in range(2000):
        board._set_level(float(i), float(i) + 0.5)
    board._edges = [float(i) for i in range(2000)]
    board._prune(620.0)  # history 120 s: cut at 500 s (the level in force then is kept, and the edge at it)
    assert board._tl_t[:3] == [-math.inf, 500.0, 501.0] and board._tl_i[:2] == [0.0, 500.5]
    assert len(board._tl_t) == 1 + 1500
    assert board._edges[0] == 500.0 and len(board._edges) == 1500
    board._prune(10_000.0)  # everything is old: the last 1024 stay
    assert board._tl_t[:2] == [-math.inf, 976.0] and len(board._tl_t) == 1025
    assert board._edges[0] == 976.0 and len(board._edges) == 1024
    board._prune(10_000.0)
    assert len(board._tl_t) == 1025 and len(board._edges) == 1024


def test_prune_keeps_a_short_history(board):
    for i in range(10):
        board._set_level(float(i), 1.0)
    board._edges = [0.0, 1.0]
    board._prune(1000.0)
    assert len(board._tl_t) == 11 and board._edges == [0.0, 1.0]
    board.history_s = 0.0
    for i in range(10, 1030):
        board._set_level(float(i), 2.0)
    board._prune(2.5)  # cut at 2.5: the level from 2.0 is kept, 0.0 and 1.0 go (1031 entries: 7 removable)
    assert board._tl_t[:3] == [-math.inf, 2.0, 3.0] and len(board._tl_t) == 1029
    board._edges = [float(i) for i in range(1026)]
    board._prune(1.0)
    assert board._edges[:2] == [1.0, 2.0] and len(board._edges) == 1025


def test_advance_prunes(board):
    board.history_s = 1.0
    for i in range(1100):
        board._set_level(float(i), 1.0)
    board.advance(50.5)
    assert board._tl_t[1] == 49.0


def test_current_with_one_level(board):
    board._set_level(5.0, 2.0)
    assert board.current(np.array([0.0, 5.0, 6.0])).tolist() == [2.0, 2.0, 2.0]
    assert board.current(np.array([1.0])).dtype == np.float64


# ------------------------------------------------------------------------------------------------------------------
# the bench clock's horizon
# ------------------------------------------------------------------------------------------------------------------
def test_bench_us_and_sim(board):
    board._boot_sim = 2.0
    assert board._bench_us(3.25) == 1_250_000
    assert board._bench_us(2.0 + 1.7e-6) == 2  # rounded, not truncated
    assert board._bench_us(1.0) == 0  # before the boot: 0
    assert board._bench_us(2.0) == 0
    assert board._sim(0) == 2.0 and board._sim(250_000) == 2.25
    board._send_time(2.5)
    assert records(board) == [(R_TIME, struct.pack("<Q", 500_000))]


class FakeTime:
    def __init__(self, t: float) -> None:
        self.t = t

    def monotonic(self) -> float:
        return self.t

    sleep = staticmethod(time.sleep)


def test_a_stalled_firmware_releases_the_bench_clock(board, monkeypatch, caplog):
    clock = FakeTime(1000.0)
    monkeypatch.setattr(qb, "time", clock)
    boot(board)
    assert board._last_report_wall == 1000.0
    clock.t = 1010.0
    board._check_stall()
    assert board.horizon() == BOOT and caplog.records == []
    clock.t = 1010.5
    with caplog.at_level(logging.WARNING, logger="device.nucleo.qemu_board"):
        board._check_stall()
    assert board.horizon() == math.inf
    assert [r.getMessage() for r in caplog.records] == [
        "QEMU board reported nothing for 10 s: releasing the bench clock"
    ]
    board._check_stall()  # released already: said once
    assert len(caplog.records) == 1


def test_input_wakes_a_sleeping_firmware_and_holds_the_clock(board, monkeypatch):
    clock = FakeTime(50.0)
    monkeypatch.setattr(qb, "time", clock)
    boot(board)
    board._on_record(R_IDLE, tick(10_000))
    clock.t = 70.0
    board.clock.t = 5.0
    board.receive(b"\x00abc\x00")
    assert board.horizon() == 5.0 and board._awake and board._last_report_wall == 70.0
    assert levels(board)[-1] == (5.0, RUN_8)
    assert (board._tmp / "odl-in0.bin").read_bytes() == b"\x00abc\x00"
    assert rings(board) == 2
    board.clock.t = 6.0  # awake already: no change
    board.receive(b"de")
    assert board.horizon() == 5.0 and levels(board)[-1] == (5.0, RUN_8)
    assert (board._tmp / "odl-in0.bin").read_bytes() == b"\x00abc\x00de"
    board._on_record(R_JOB, tick(10_000) + b"\x01")
    board._awake = False  # running but not awake: a running firmware is not frozen
    board.clock.t = 7.0
    board._freeze()
    assert not board._awake and levels(board)[-1][0] != 7.0


# ------------------------------------------------------------------------------------------------------------------
# the accelerometer
# ------------------------------------------------------------------------------------------------------------------
def _sample_records(b: QemuBoard) -> list[tuple[int, int, int, int, np.ndarray]]:
    out = []
    for t, p in records(b):
        if t == R_SAMPLES:
            us, ep, first, n = struct.unpack_from("<QHIB", p)
            assert len(p) == 15 + 6 * n
            out.append((us, ep, first, n, np.frombuffer(p[15:], "<i2").reshape(n, 3)))
    return out


def test_sensor_stream_plays_samples_at_the_firmwares_start(board):
    ref = LSM6DSO(board.trace, seed=3)
    boot(board)
    board._on_record(R_SENSOR, struct.pack("<QIBBH", 1_000_000, 26000, 4, 1, 5))
    ref.configure(26.0, 4)
    t0 = at(1_000_000)
    assert board.sensor.odr_hz == 26.0 and board.sensor.fs_g == 4
    assert board._stream == {"t0": t0, "odr": 26.0, "next": 0, "epoch": 5}
    assert board.busy
    board._on_record(R_IDLE, tick(1_000_000))
    board.advance(t0 + 0.5 / 26)  # one sample due: less than the watermark (max(1, 5 % of the rate))
    assert _sample_records(board) == [] and board._stream["next"] == 0
    now = board.clock.t = t0 + 1 / 26  # (the bench advances its devices to its clock's time)
    board.advance(now)
    got = _sample_records(board)
    assert [g[:4] for g in got] == [(board._bench_us(now), 5, 0, 2)]
    assert board._bench_us(now) == 1_038_462
    assert np.array_equal(got[0][4], ref.samples(t0 + np.arange(2) / 26))
    assert board._awake and board.horizon() == now  # the samples woke the firmware
    assert levels(board)[-1] == (now, RUN_8)
    board._on_record(R_IDLE, tick(1_100_000))
    now = t0 + 100 / 26
    board.advance(now)
    got = _sample_records(board)[1:]
    assert [g[:4] for g in got] == [(board._bench_us(now), 5, 2, 40), (board._bench_us(now), 5, 42, 40),
                                    (board._bench_us(now), 5, 82, 19)]  # fmt: skip
    want = ref.samples(t0 + (2 + np.arange(99)) / 26)
    assert np.array_equal(np.concatenate([g[4] for g in got]), want)
    assert board._stream["next"] == 101
    now = t0 + 9000 / 26  # a long gap: at most 8000 samples at once
    board.advance(now)
    got = _sample_records(board)[4:]
    assert len(got) == 200 and got[0][2] == 101 and got[-1][2:4] == (101 + 199 * 40, 40)
    assert board._stream["next"] == 8101
    assert np.array_equal(np.concatenate([g[4] for g in got]), ref.samples(t0 + (101 + np.arange(8000)) / 26))


def test_sensor_watermark_at_a_high_rate(board):
    boot(board)
    board._on_record(R_SENSOR, struct.pack("<QIBBH", 0, 104000, 2, 1, 1))
    board.advance(BOOT + 5 / 104)  # 6 due, watermark 5.2
    assert [r[2:4] for r in _sample_records(board)] == [(0, 6)]
    board.advance(BOOT + 10 / 104)  # 5 more: fewer than 5.2
    assert len(_sample_records(board)) == 1
    board.advance(BOOT + 11 / 104)
    assert [r[2:4] for r in _sample_records(board)] == [(0, 6), (6, 6)]


def test_sensor_stop_and_bad_setups(board, caplog):
    boot(board)
    board._on_record(R_SENSOR, struct.pack("<QIBBH", 10, 52000, 8, 0, 1))  # configured, not started
    assert board._stream is None and board.sensor.odr_hz == 52.0 and board.sensor.fs_g == 8
    board._on_record(R_SENSOR, struct.pack("<QIBBH", 10, 52000, 8, 1, 2))
    assert board._stream is not None
    board._on_record(R_SENSOR, struct.pack("<QIBBH", 20, 52000, 8, 0, 2))
    assert board._stream is None and not board.busy
    with caplog.at_level(logging.WARNING, logger="device.nucleo.qemu_board"):
        board._on_record(R_SENSOR, struct.pack("<QIBBH", 30, 25000, 2, 1, 3))
    assert [r.getMessage() for r in caplog.records] == [
        "firmware asked for an impossible sensor set-up: odr_mhz 25000 is not an LSM6DSO rate (allowed mHz: "
        "12500, 26000, 52000, 104000, 208000, 417000, 833000, 1667000, 3333000, 6667000)"
    ]
    assert board._stream == {"t0": at(30), "odr": 25.0, "next": 0, "epoch": 3}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="device.nucleo.qemu_board"):
        board._on_record(R_SENSOR, struct.pack("<QIBBH", 30, 26000, 3, 0, 3))
    assert [r.getMessage() for r in caplog.records] == [
        "firmware asked for an impossible sensor set-up: fs_g 3 is not an LSM6DSO full scale (allowed: 2, 4, 8, 16)"
    ]


def test_no_stream_without_a_trace(make, monkeypatch):
    monkeypatch.setattr(qb, "default_trace_path", lambda: None)
    b = QemuBoard(Clock(), trace=None, files=FILES)
    try:
        boot(b)
        b._on_record(R_SENSOR, struct.pack("<QIBBH", 10, 26000, 2, 1, 1))
        assert b._stream is None
        b.advance(100.0)
        assert [r[0] for r in records(b)] == [R_SYNC]
    finally:
        b.close()


# ------------------------------------------------------------------------------------------------------------------
# SIM requests
# ------------------------------------------------------------------------------------------------------------------
def _names(*names: str) -> bytes:
    return b"".join(n.encode().ljust(16, b"\x00") for n in names)


def test_sim_get_and_set_activity(board):
    boot(board)
    board._on_record(R_SIM_REQ, bytes((P.MsgType.SIM_GET_ACTIVITY,)))
    want = _names("Walking", "Walking", "Sitting", "Standing")
    assert records(board)[1:] == [(R_SIM_RSP, b"\x00" + want)]
    board.clock.t = 7.0
    board._on_record(R_SIM_REQ, bytes((P.MsgType.SIM_SET_ACTIVITY,)) + _names("Sitting"))
    assert records(board)[2:] == [(R_SIM_RSP, b"\x00" + _names("Sitting", "Walking", "Sitting", "Standing"))]
    assert board.sensor.activity == "Sitting" and board.sensor._t_switch == 7.0
    board._on_record(R_SIM_REQ, bytes((P.MsgType.SIM_SET_ACTIVITY,)) + b"Standing\x00junk-after-nul")
    assert board.sensor.activity == "Standing"
    board._on_record(R_SIM_REQ, bytes((P.MsgType.SIM_SET_ACTIVITY,)) + _names("Running"))
    msg = b"activity 'Running' is not in the trace (available: Walking, Sitting, Standing)\x00"
    assert records(board)[4:] == [(R_SIM_RSP, b"\xfe" + msg)]
    assert board.sensor.activity == "Standing"


def test_sim_set_activity_longer_than_16_bytes_is_cut(board):
    boot(board)
    board._on_record(R_SIM_REQ, bytes((P.MsgType.SIM_SET_ACTIVITY,)) + b"SittingSittingSitXYZ")
    msg = b"activity 'SittingSittingSi' is not in the trace (available: Walking, Sitting, Standing)\x00"
    assert records(board)[1:] == [(R_SIM_RSP, b"\xfe" + msg)]


def test_sim_error_text_is_cut_to_200_bytes(make):
    b = make(trace=_trace(tuple(f"a{i:02d}" + "x" * 12 for i in range(15))))
    boot(b)
    b._on_record(R_SIM_REQ, bytes((P.MsgType.SIM_SET_ACTIVITY,)) + _names("nope"))
    (t, p), *_ = records(b)[1:]
    text = "activity 'nope' is not in the trace (available: " + ", ".join(b.activities) + ")"
    assert t == R_SIM_RSP and p == b"\xfe" + text.encode()[:200] + b"\x00"


def test_sim_reply_fits_a_record(make):
    names = ("walk",) + tuple(f"activity-{i:02d}-long-name" for i in range(1, 15))
    b = make(trace=_trace(names))
    boot(b)
    b._on_record(R_SIM_REQ, bytes((P.MsgType.SIM_GET_ACTIVITY,)))
    cut = [n[:16] for n in names]
    # 16 + 15 x 16 = 256 bytes do not fit a record: the first 14 names
    assert records(b)[1:] == [(R_SIM_RSP, b"\x00" + _names("walk", *cut[:14]))]
    b2 = make(trace=_trace(names[:14]))
    boot(b2)
    b2._on_record(R_SIM_REQ, bytes((P.MsgType.SIM_GET_ACTIVITY,)))
    assert records(b2)[1:] == [(R_SIM_RSP, b"\x00" + _names("walk", *cut[:14]))]


def test_a_current_activity_longer_than_16_bytes_is_an_error_not_a_dead_link(make):
    """A trace (``--trace`` npz) whose activity is named with more than 16 bytes: the ACTIVITY reply cannot carry
    it.  The bench answers the firmware's SIM request with that error (the firmware's ERROR BAD_PARAM, the Python
    board's text) instead of raising in its reader thread, which stopped the link and held the bench clock."""
    b = make(trace=_trace(("activity-00-long-name", "sit")))
    boot(b)
    b._on_record(R_SIM_REQ, bytes((P.MsgType.SIM_GET_ACTIVITY,)))
    msg = b"Activity.current: 'activity-00-long-name' is longer than 16 bytes\x00"
    assert records(b)[1:] == [(R_SIM_RSP, b"\xfe" + msg)]
    b._on_record(R_SIM_REQ, bytes((P.MsgType.SIM_SET_ACTIVITY,)) + _names("sit"))
    assert records(b)[2:] == [(R_SIM_RSP, b"\x00" + _names("sit", "activity-00-long", "sit"))]


def test_sim_request_without_a_trace(make, monkeypatch):
    monkeypatch.setattr(qb, "default_trace_path", lambda: None)
    b = QemuBoard(Clock(), trace=None, files=FILES)
    try:
        boot(b)
        b._on_record(R_SIM_REQ, bytes((P.MsgType.SIM_GET_ACTIVITY,)))
        msg = b"the emulated sensor has no recorded trace to play (pass trace=...)\x00"
        assert records(b)[1:] == [(R_SIM_RSP, b"\xfe" + msg)]
    finally:
        b.close()


def test_set_activity_from_the_bench(board):
    board.clock.t = 4.0
    board.set_activity("Standing")
    assert board.sensor.activity == "Standing" and board.sensor._t_switch == 4.0
    with pytest.raises(ValueError) as e:
        board.set_activity("Flying")
    assert str(e.value) == "activity 'Flying' is not in the trace (available: Walking, Sitting, Standing)"
    assert type(e.value) is ValueError and e.value.__suppress_context__


def test_unknown_records_are_ignored(board):
    boot(board)
    board._on_record(0x7F, b"\x01\x02")
    board._on_record(R_TIME, tick(5))
    assert records(board) == [(R_SYNC, struct.pack("<I", 1))] and board.horizon() == BOOT


# ------------------------------------------------------------------------------------------------------------------
# the byte path
# ------------------------------------------------------------------------------------------------------------------
def test_board_output_reaches_the_host(board):
    tapped = []
    board._on_board_output(b"\x00one\x00")
    board.tx_tap = tapped.append
    board._on_board_output(b"two")
    assert tapped == [b"two"]
    assert bytes(board.pending()) == b"\x00one\x00" and board.busy
    board.consume(3)
    assert bytes(board.pending()) == b"e\x00"
    board.consume(2)
    assert bytes(board.pending()) == b"two"
    board.faults.host_not_reading = True
    assert board.pending() == b"" and board.busy
    board.faults.host_not_reading = False
    board.consume(3)
    assert bytes(board.pending()) == b"" and not board.busy


def test_silent_holds_the_output_until_cleared(board):
    tapped = []
    board.tx_tap = tapped.append
    board.faults.silent = True
    board._on_board_output(b"ab")
    board._on_board_output(b"cd")
    assert board.pending() == b"" and len(board._fifo) == 0 and tapped == [b"ab", b"cd"]
    board.receive(b"lost")  # a silent board reads nothing
    assert (board._tmp / "odl-in0.bin").read_bytes() == b""
    board.faults.silent = False
    board._on_board_output(b"ef")
    assert board._held == [] and len(board._fifo) == 6
    out = b""
    while len(board._fifo):
        chunk = bytes(board.pending())
        out += chunk
        board.consume(len(chunk))
    assert out == b"abcdef"


def test_byte_faults_damage_the_output_after_the_tap(board):
    tapped = []
    board.tx_tap = tapped.append
    board.faults.corrupt_rate = 1.0
    data = bytes(range(40))
    board._on_board_output(data)
    want = apply_byte_faults(data, board.faults, np.random.default_rng([3, 7]))
    assert tapped == [data] and bytes(board.pending()) == want and want != data


def test_garbage_answers_random_bytes(board):
    board.faults.garbage = True
    board.receive(b"\x00req\x00")
    rng = np.random.default_rng([3, 7])
    n = int(rng.integers(1, 64))
    assert bytes(board.pending()) == rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    assert (board._tmp / "odl-in0.bin").read_bytes() == b""


def test_a_closed_board_reads_nothing(board):
    board._closed = True
    board.receive(b"x")
    assert (board._tmp / "odl-in0.bin").read_bytes() == b""


def test_connect_flushes_the_hosts_input(make):
    b = make(fifo_bytes=300)
    b._on_board_output(b"old")
    b.connect()
    assert b.pending() == b"" and b._fifo.capacity == 300
    b.disconnect()
    fn = object()
    b.set_wakeup(fn)
    assert b._wakeup is fn


def test_a_reset_fault_resets_once(board):
    calls = []
    board.reset = lambda: calls.append(1)  # type: ignore[method-assign]
    board.faults.reset_now = True
    board.advance(1.0)
    assert calls == [1] and board.faults.reset_now is False
    board.advance(2.0)
    assert calls == [1]


def test_write_in_after_close_and_on_a_broken_file(board, caplog):
    board._in["in1"].close()
    board._send_record(R_TIME, tick(1))  # closed: dropped, no doorbell
    assert rings(board) == 0 and (board._tmp / "odl-in1.bin").read_bytes() == b""
    del board._in["in1"]
    board._write_in("in1", b"x")
    assert rings(board) == 0

    class Broken:
        closed = False

        def write(self, data):
            raise OSError(28, "No space left on device")

    board._in["in1"] = Broken()
    with caplog.at_level(logging.ERROR, logger="device.nucleo.qemu_board"):
        board._write_in("in1", b"x")
    assert [r.getMessage() for r in caplog.records] == [
        "QEMU board: cannot pass input to the firmware: [Errno 28] No space left on device"
    ]
    assert rings(board) == 0
    del board._in["in1"]


def test_the_doorbell_never_blocks(board):
    for _ in range(70_000):  # more than a pipe holds: the full pipe is not an error
        board._ring()
    assert rings(board) == 4096
    os.close(board._out.pop("wake"))
    board._ring()  # no doorbell: ignored
    os.close(board._out["wake_r"])
    board._out = {"wake": 999_999}  # a closed descriptor: ignored
    board._ring()


# ------------------------------------------------------------------------------------------------------------------
# the reader: records and output from the firmware's pipes
# ------------------------------------------------------------------------------------------------------------------
class FakeProc:
    def __init__(self) -> None:
        self.code: int | None = None
        self.returncode = 0
        self.stderr = None

    def poll(self):
        return self.code


def _wait(cond, s: float = 5.0) -> None:
    end = time.monotonic() + s
    while not cond():
        assert time.monotonic() < end, "the reader did not get there"
        time.sleep(0.005)


def test_read_loop_frames_records_and_passes_output(board, caplog):
    r0, w0 = os.pipe()
    r1, w1 = os.pipe()
    os.set_blocking(r0, False)
    os.set_blocking(r1, False)
    board._out.update(out0=r0, out1=r1)
    proc = board._proc = FakeProc()  # type: ignore[assignment]
    got: list[tuple[int, bytes]] = []
    out: list[bytes] = []
    board._on_record = lambda t, p: got.append((t, bytes(p)))  # type: ignore[method-assign]
    board._on_board_output = lambda d: out.append(d)  # type: ignore[method-assign]
    board._horizon = 3.0
    th = threading.Thread(target=board._read_loop, daemon=True)
    th.start()
    try:
        os.write(w1, b"\x09\x08" + tick(77) + b"\x05\x09" + tick(88)[:3])
        _wait(lambda: len(got) == 1)
        os.write(w1, tick(88)[3:] + b"\x01" + b"\x0a\x00" + b"\x0a")
        os.write(w0, b"\x00hello\x00")
        _wait(lambda: len(got) == 3 and out)
        assert got == [(R_PROGRESS, tick(77)), (R_JOB, tick(88) + b"\x01"), (R_SIM_REQ, b"")]
        assert out == [b"\x00hello\x00"]
        os.write(w1, b"\x07")
        time.sleep(0.1)
        assert len(got) == 3  # half a header waits for the rest
        assert board.horizon() == 3.0
        proc.code = 1
        with caplog.at_level(logging.ERROR, logger="device.nucleo.qemu_board"):
            th.join(5)
        assert not th.is_alive()
        assert board.horizon() == math.inf  # a dead board does not hold the bench clock
        assert [r.getMessage() for r in caplog.records] == ["QEMU board stopped (QEMU exited with 0: )"]
    finally:
        proc.code = 1
        th.join(5)
        for fd in (w0, w1):
            os.close(fd)


def test_read_loop_releases_a_stalled_clock_and_stops_quietly_when_closed(board, monkeypatch, caplog):
    r0, w0 = os.pipe()
    r1, w1 = os.pipe()
    board._out.update(out0=r0, out1=r1)
    board._proc = FakeProc()  # type: ignore[assignment]
    board._horizon = 3.0
    board._last_report_wall = time.monotonic() - 60.0
    th = threading.Thread(target=board._read_loop, daemon=True)
    with caplog.at_level(logging.WARNING, logger="device.nucleo.qemu_board"):
        th.start()
        try:
            _wait(lambda: board.horizon() == math.inf)
            board._closed = True
            th.join(5)
            assert not th.is_alive()
        finally:
            board._closed = True
            th.join(5)
            for fd in (w0, w1):
                os.close(fd)
    assert [r.getMessage() for r in caplog.records] == [
        "QEMU board reported nothing for 10 s: releasing the bench clock"
    ]
    board._closed = False


def _start_reader(board: QemuBoard, qmp=None, out0: int | None = None) -> SimpleNamespace:
    """Run ``_read_loop`` on two pipes standing for the firmware's odl-out0/odl-out1 (and a QMP socket)."""
    r0, w0 = os.pipe()
    r1, w1 = os.pipe()
    os.set_blocking(r0, False)
    os.set_blocking(r1, False)
    board._out.update(out0=r0 if out0 is None else out0, out1=r1, r0=r0)
    if qmp is not None:
        board._socks["qmp"] = qmp
    proc = board._proc = FakeProc()  # type: ignore[assignment]
    got: list[tuple[int, bytes]] = []
    out: list[bytes] = []
    board._on_record = lambda t, p: got.append((t, bytes(p)))  # type: ignore[method-assign]
    board._on_board_output = out.append  # type: ignore[method-assign]
    th = threading.Thread(target=board._read_loop, daemon=True)
    th.start()
    return SimpleNamespace(r0=r0, r1=r1, w0=w0, w1=w1, proc=proc, got=got, out=out, th=th)


def _stop(r: SimpleNamespace) -> None:
    r.proc.code = 1
    r.th.join(5)
    for fd in (r.w0, r.w1):
        os.close(fd)
    assert not r.th.is_alive()


def _unread(s: socket.socket) -> int:
    try:
        return len(s.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return 0


def test_read_loop_takes_records_that_fill_the_buffer_exactly(board):
    r = _start_reader(board)
    try:
        os.write(r.w1, b"\x0a\x00")  # a record without payload, alone
        _wait(lambda: len(r.got) == 1)
        os.write(r.w1, b"\x09\x08" + tick(5))  # a record, alone
        _wait(lambda: len(r.got) == 2)
        assert r.got == [(R_SIM_REQ, b""), (R_PROGRESS, tick(5))]
    finally:
        _stop(r)


def test_read_loop_drains_the_monitor_and_survives_its_end(board):
    a, b = socket.socketpair()
    r = _start_reader(board, qmp=a)
    try:
        b.sendall(b'{"return": {}}\r\n')
        _wait(lambda: _unread(a) == 0)  # QMP's answers are read, or QEMU would block on a full socket
        b.sendall(b'{"event": "RESET"}\r\n')
        _wait(lambda: _unread(a) == 0)
        os.write(r.w1, b"\x04\x08" + tick(9))
        _wait(lambda: len(r.got) == 1)
        os.write(r.w1, b"\x04\x08" + tick(10))  # (the monitor is read only when it has something)
        _wait(lambda: len(r.got) == 2)
        b.close()  # the monitor ends: the records go on
        time.sleep(0.1)
        os.write(r.w1, b"\x04\x08" + tick(11))
        _wait(lambda: len(r.got) == 3)
        assert r.got == [(R_MARK, tick(9)), (R_MARK, tick(10)), (R_MARK, tick(11))]
    finally:
        b.close()
        _stop(r)


def test_read_loop_survives_a_monitor_error(board):
    a, b = socket.socketpair()

    class ResetSock:  # the monitor's socket reset by QEMU
        def fileno(self) -> int:
            return a.fileno()

        def recv(self, n: int) -> bytes:
            raise ConnectionResetError(104, "Connection reset by peer")

        def close(self) -> None:
            a.close()

    r = _start_reader(board, qmp=ResetSock())
    try:
        b.sendall(b"x")
        time.sleep(0.1)
        os.write(r.w1, b"\x04\x08" + tick(9))
        _wait(lambda: len(r.got) == 1)
        assert r.th.is_alive()
    finally:
        b.close()
        _stop(r)


def test_read_loop_checks_for_a_stall_every_50_ms(board):
    calls: list[int] = []
    board._check_stall = lambda: calls.append(1)  # type: ignore[method-assign]
    r = _start_reader(board)
    try:
        time.sleep(0.6)
        assert len(calls) >= 3
    finally:
        _stop(r)


class _OS:
    """``os`` for the reader, with a ``read`` of our own."""

    def __init__(self, read) -> None:
        self.read = read

    def __getattr__(self, name: str):
        return getattr(os, name)


def test_read_loop_a_read_that_would_block_is_nothing(board, monkeypatch):
    blocked: set[int] = set()

    def read(fd: int, n: int) -> bytes:
        if fd not in blocked:  # select said ready, the read would block (once per pipe)
            blocked.add(fd)
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return os.read(fd, n)

    monkeypatch.setattr(qb, "os", _OS(read))
    r = _start_reader(board)
    try:
        os.write(r.w0, b"hi")
        os.write(r.w1, b"\x04\x08" + tick(9))
        _wait(lambda: len(r.got) == 1 and len(r.out) == 1)
        time.sleep(0.1)
        assert r.got == [(R_MARK, tick(9))] and r.out == [b"hi"] and len(blocked) == 2
    finally:
        _stop(r)


@pytest.mark.parametrize("pipe", ["out0", "out1"])
def test_read_loop_ends_on_a_read_error(board, monkeypatch, caplog, pipe):
    def read(fd: int, n: int) -> bytes:
        if fd == board._out[pipe]:
            raise OSError(5, "Input/output error")
        return os.read(fd, n)

    monkeypatch.setattr(qb, "os", _OS(read))
    board._horizon = 3.0
    with caplog.at_level(logging.ERROR, logger="device.nucleo.qemu_board"):
        r = _start_reader(board)
        try:
            os.write(r.w0 if pipe == "out0" else r.w1, b"\x04\x08" + tick(9))
            r.th.join(5)
            assert not r.th.is_alive()
        finally:
            _stop(r)
    assert board.horizon() == math.inf
    assert [x.getMessage() for x in caplog.records] == ["QEMU board stopped"]


def test_read_loop_ends_when_it_cannot_wait(board, caplog):
    board._horizon = 3.0
    with caplog.at_level(logging.ERROR, logger="device.nucleo.qemu_board"):
        r = _start_reader(board, out0=999_999)  # a descriptor select refuses
        try:
            r.th.join(5)
            assert not r.th.is_alive()
        finally:
            _stop(r)
    assert board.horizon() == math.inf
    assert [x.getMessage() for x in caplog.records] == ["QEMU board stopped"]


# ------------------------------------------------------------------------------------------------------------------
# values at the edges of their types and ranges
# ------------------------------------------------------------------------------------------------------------------
def test_read_counters_reads_unsigned_fields(tmp_path):
    f = tmp_path / "odl-cycles.bin"
    data = struct.pack("<II", 0x43594C4F, 15) + struct.pack("<QQQ", 2**63 + 5, 2**64 - 1, 2**63)
    data += (
        struct.pack("<15Q", *range(15)) * 2 + struct.pack("<II", 2**32 - 1, 0) + struct.pack("<QQ", 2**63, 2**63 + 1)
    )
    f.write_bytes(data)
    got = read_counters(f, ("conv",))
    assert (got["cycles"], got["insns"], got["insns_all"]) == (2**63 + 5, 2**64 - 1, 2**63)
    assert got["regions"] == {"conv": {"cycles": 2**63, "insns": 2**63 + 1}}


def test_defaults_before_the_first_boot(monkeypatch):
    monkeypatch.setattr(qb, "symbols", lambda p: SYMS)
    monkeypatch.setattr(QemuBoard, "_start_qemu", _plumbing)
    b = QemuBoard(Clock(4.0), trace=_trace(), files=FILES)
    try:
        assert b.seed == 0
        assert b.sim_time(0) == 0.0 and b._bench_us(0.5) == 500_000
        b.receive(b"x")  # a firmware starting up is awake: input does not move the (unset) horizon
        assert b.horizon() == math.inf and len(b._tl_t) == 1
    finally:
        b.close()


def test_a_stream_epoch_past_32767(board):
    boot(board)
    board._on_record(R_SENSOR, struct.pack("<QIBBH", 0, 26000, 2, 1, 40000))
    assert board._stream["epoch"] == 40000
    board.clock.t = BOOT + 2 / 26
    board.advance(board.clock.t)
    assert [r[1:4] for r in _sample_records(board)] == [(40000, 0, 3)]


def test_one_sample_is_a_batch_at_low_rates(board):
    boot(board)
    board._on_record(R_SENSOR, struct.pack("<QIBBH", 0, 12500, 2, 1, 1))
    board.advance(BOOT + 0.5 / 12.5)
    assert [r[2:4] for r in _sample_records(board)] == [(0, 1)]
    board.advance(BOOT + 1 / 12.5)
    assert [r[2:4] for r in _sample_records(board)] == [(0, 1), (1, 1)]


def test_pending_pace_is_answered_at_exactly_the_slack(board):
    boot(board)
    board._pending_pace = 3.5
    board.advance(3.5 - qb.SLACK_S)
    assert records(board)[1:] == [(R_TIME, struct.pack("<Q", board._bench_us(3.5 - qb.SLACK_S)))]


def test_prune_at_1026_entries_removes_one(board):
    board.history_s = 0.0
    for i in range(1025):
        board._set_level(float(i), 1.0)
    board._prune(5000.0)
    assert board._tl_t[:3] == [-math.inf, 1.0, 2.0] and len(board._tl_t) == 1025


def test_garbage_is_random_in_length_and_value(board):
    board.faults.garbage = True
    rng = np.random.default_rng([3, 7])
    want = b""
    for _ in range(50):
        board.receive(b"\x00req\x00")
        want += rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    got = b""
    while len(board._fifo):
        chunk = bytes(board.pending())
        got += chunk
        board.consume(len(chunk))
    assert got == want


def test_sim_names_that_are_not_utf8(make):
    b = make(trace=_trace(("Walking", "x\udc80y")))
    boot(b)
    b._on_record(R_SIM_REQ, bytes((P.MsgType.SIM_SET_ACTIVITY,)) + b"W\xffalk")
    msg = "activity 'W\ufffdalk' is not in the trace (available: Walking, x?y)\x00".encode()
    assert records(b)[1:] == [(R_SIM_RSP, b"\xfe" + msg)]


def test_a_long_packing_error_is_cut_to_200_bytes(make):
    name = "a" * 300
    b = make(trace=_trace((name,)))
    boot(b)
    b._on_record(R_SIM_REQ, bytes((P.MsgType.SIM_GET_ACTIVITY,)))
    text = f"Activity.current: {name!r} is longer than 16 bytes"
    assert records(b)[1:] == [(R_SIM_RSP, b"\xfe" + text.encode()[:200] + b"\x00")]


def test_a_record_this_side_cannot_handle_stops_the_board_and_frees_the_clock(board, caplog):
    """Was: an exception while handling a record ended the reader thread silently past its clean-up, so the board
    kept holding the bench clock at its last horizon and nothing said why it no longer answered."""
    r0, w0 = os.pipe()
    r1, w1 = os.pipe()
    board._out.update(out0=r0, out1=r1)
    board._proc = FakeProc()  # type: ignore[assignment]
    board._horizon = 3.0

    def broken(rtype, payload):
        raise KeyError(rtype)

    board._on_record = broken  # type: ignore[method-assign]
    th = threading.Thread(target=board._read_loop, daemon=True)
    try:
        with caplog.at_level(logging.ERROR, logger="device.nucleo.qemu_board"):
            th.start()
            os.write(w1, b"\x0a\x00")
            th.join(5)
        assert not th.is_alive()
        assert board.horizon() == math.inf
        said = [(r.getMessage(), r.exc_info is not None) for r in caplog.records]
        assert said == [
            ("QEMU board: the bench link failed", True),
            ("QEMU board stopped", False),  # (QEMU still runs: nothing of its own to add)
        ]
    finally:
        for fd in (w0, w1):
            os.close(fd)
