"""How the virtual bench is put together (device/bench.py; mutation target ``bench``): which board it hosts for each
``board_kind`` and what it says when QEMU cannot run, the URLs it hands out, and start/stop/unplug, also when a
part fails.  The QEMU board is a stand-in here (tests/device/test_firmware_qemu.py runs the real one)."""

from __future__ import annotations

import logging
import os

import pytest

import device.bench as B
import device.nucleo.qemu_board as Q
from device.bench import BOARD_KINDS, VirtualBench, load_board_emulator
from device.monitor import LPM01A_KIND
from device.nucleo.emulator import NucleoEmulator
from device.power_profiles import L496Profile


class FakeQemu:
    """QemuBoard's surface the bench uses; ``fail`` makes the constructor raise QemuBoardError."""

    fail: str | None = None
    made: list = []

    def __init__(self, clock, seed=0):
        if FakeQemu.fail is not None:
            raise Q.QemuBoardError(FakeQemu.fail)
        self.clock, self.seed, self.closed = clock, seed, 0
        FakeQemu.made.append(self)

    def horizon(self) -> float:
        return 1.0

    def close(self) -> None:
        self.closed += 1

    # the EmulatedDevice / CurrentSource surface the endpoint and the LPM01A emulator use
    def set_wakeup(self, fn) -> None:
        self.wakeup = fn

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def receive(self, data: bytes) -> None: ...

    def advance(self, now: float) -> None: ...

    def pending(self) -> bytes:
        return b""

    def consume(self, n: int) -> None: ...

    def current(self, t):
        return 0.0 * t

    def d7_edges(self, t0: float, t1: float):
        import numpy as np

        return np.zeros(0)


@pytest.fixture
def qemu(monkeypatch):
    FakeQemu.fail, FakeQemu.made = None, []
    monkeypatch.setattr(Q, "QemuBoard", FakeQemu)
    return FakeQemu


def test_the_board_kinds():
    assert BOARD_KINDS == ("auto", "qemu", "python")


def test_an_unknown_board_kind_is_refused():
    with pytest.raises(ValueError) as e:
        VirtualBench(board_kind="renode")
    assert str(e.value) == "board_kind 'renode' is not one of auto, qemu, python"


def test_a_pty_bench_without_ptys_is_refused(monkeypatch):
    monkeypatch.setattr(B, "HAVE_PTY", False)
    with pytest.raises(RuntimeError) as e:
        VirtualBench(pty=True)
    assert str(e.value) == "--pty needs a POSIX system; the socket:// URLs work everywhere"
    VirtualBench(pty=False).stop()  # sockets need no pty


@pytest.mark.parametrize("kind", ["auto", "qemu"])
def test_the_qemu_board_when_it_runs(qemu, kind):
    b = VirtualBench(board_kind=kind, seed=7, time_scale=3.0)
    (board,) = qemu.made
    assert (b.board, b.board_kind, b.board_note, b.source) == (board, "qemu", "", board)
    assert (board.clock, board.seed) == (b.clock, 7)
    assert b.clock.limit == board.horizon  # the bench clock waits for the firmware
    assert b.powershield.source is board and set(b.endpoints) == {"powershield", "board"}
    assert b.endpoints["board"].device is board and b.endpoints["powershield"].device is b.powershield
    b.stop()
    assert board.closed == 1 and b.clock.limit is None


def test_auto_falls_back_to_the_python_board_and_says_why(qemu, caplog):
    qemu.fail = "qemu-system-arm not found"
    with caplog.at_level(logging.INFO, logger="device.bench"):
        b = VirtualBench(board_kind="auto", seed=3)
    try:
        assert isinstance(b.board, NucleoEmulator) and b.board_kind == "python"
        assert b.board_note == "QEMU board unavailable (qemu-system-arm not found)"
        assert [r.getMessage() for r in caplog.records] == ["QEMU board unavailable (qemu-system-arm not found)"]
        assert b.clock.limit is None and b.board.seed == 3 and b.board.clock is b.clock
    finally:
        b.stop()


def test_qemu_asked_for_and_not_running_is_an_error(qemu):
    qemu.fail = "no firmware built"
    with pytest.raises(RuntimeError) as e:
        VirtualBench(board_kind="qemu")
    assert str(e.value) == "the QEMU board cannot run: no firmware built"
    assert e.value.__cause__ is None and e.value.__suppress_context__  # one sentence, no chained traceback


def test_the_python_board_is_the_default(qemu):
    b = VirtualBench(seed=5)
    try:
        assert qemu.made == [] and isinstance(b.board, NucleoEmulator) and b.board_kind == "python"
        assert (b.board_note, b.board.seed, b.seed, b.source) == ("", 5, 5, b.board)
    finally:
        b.stop()


@pytest.mark.parametrize("kind", BOARD_KINDS)
def test_without_a_board_the_lpm01a_measures_the_l496_profile(qemu, kind):
    b = VirtualBench(board=False, board_kind=kind)
    assert qemu.made == [] and (b.board, b.board_kind) == (None, None)
    assert isinstance(b.source, L496Profile) and b.powershield.source is b.source
    assert set(b.endpoints) == {"powershield"}
    b.stop()


def test_no_board_emulator_module_means_no_board(monkeypatch):
    monkeypatch.setattr(B, "load_board_emulator", lambda: None)
    b = VirtualBench()
    assert (b.board, b.board_kind, set(b.endpoints)) == (None, None, {"powershield"})
    assert isinstance(b.source, L496Profile)


def test_the_board_emulator_is_found_or_its_absence_said(monkeypatch):
    assert load_board_emulator() is NucleoEmulator
    monkeypatch.setattr(B, "BOARD_MODULE", "device.nucleo.no_such_emulator")
    assert load_board_emulator() is None  # the module is not there: no board
    monkeypatch.setattr(B, "BOARD_MODULE", "device.nucleo.cobs")
    assert load_board_emulator() is None  # there, without a NucleoEmulator
    monkeypatch.setattr(B, "BOARD_MODULE", "tests.device._broken_board")
    with pytest.raises(ModuleNotFoundError) as e:  # a module that imports something missing: not hidden
        load_board_emulator()
    assert e.value.name == "a_module_that_does_not_exist_anywhere"


def test_the_urls_before_and_after_start(qemu):
    b = VirtualBench(seed=2, time_scale=4.0)
    assert b.urls == {
        "powershield": None,
        "board": None,
        "powershield_pty": None,
        "board_pty": None,
        "time_scale": 4.0,
        "seed": 2,
        "board_kind": "python",
        "power_monitor": None,
        "power_monitor_kind": LPM01A_KIND,
    }
    try:
        urls = b.start()
        ps, bd = b.endpoints["powershield"].port, b.endpoints["board"].port
        assert (
            urls
            == b.urls
            == {
                "powershield": f"socket://127.0.0.1:{ps}",
                "board": f"socket://127.0.0.1:{bd}",
                "powershield_pty": None,
                "board_pty": None,
                "time_scale": 4.0,
                "seed": 2,
                "board_kind": "python",
                "power_monitor": f"socket://127.0.0.1:{ps}",
                "power_monitor_kind": LPM01A_KIND,
            }
        )
        assert b.start() == urls  # started once
    finally:
        b.stop()


def test_a_pty_bench_links_its_ptys_in_a_private_folder_removed_at_stop():
    b = VirtualBench(pty=True, board=False)
    folder = b._tmpdir  # noqa: SLF001
    assert os.path.isdir(folder) and os.path.basename(folder).startswith("odl-bench-")
    assert b._link("powershield") == os.path.join(folder, "powershield")  # noqa: SLF001
    try:
        urls = b.start()
        assert urls["powershield_pty"] == os.path.join(folder, "powershield") and urls["board_pty"] is None
        assert os.path.islink(urls["powershield_pty"])
    finally:
        b.stop()
    assert not os.path.exists(folder) and b._tmpdir is None and b._link("board") is None  # noqa: SLF001
    b.stop()  # twice: nothing left to remove


def test_a_failed_start_stops_what_started(monkeypatch):
    b = VirtualBench()
    stopped = []
    monkeypatch.setattr(b.endpoints["board"], "start", lambda: (_ for _ in ()).throw(OSError("port in use")))
    real_stop = b.endpoints["powershield"].stop
    monkeypatch.setattr(b.endpoints["powershield"], "stop", lambda: (stopped.append("powershield"), real_stop()))
    with pytest.raises(OSError, match="^port in use$"):
        b.start()
    assert stopped == ["powershield"] and b._started is False  # noqa: SLF001


def test_stop_goes_on_when_a_part_fails_to_stop(qemu, monkeypatch, caplog):
    b = VirtualBench(board_kind="qemu")
    board, lpm = b.board, b.endpoints["powershield"]
    real_stop = lpm.stop
    monkeypatch.setattr(lpm, "stop", lambda: 1 / 0)
    monkeypatch.setattr(board, "close", lambda: (_ for _ in ()).throw(OSError("qemu gone")))
    b.start()
    try:
        with caplog.at_level(logging.ERROR, logger="device.bench"):
            b.stop()
        said = [r.getMessage() for r in caplog.records if r.name == "device.bench"]
        assert said == ["stopping endpoint powershield", "stopping the board"]
        assert b._started is False and b.clock.limit is None  # noqa: SLF001
        assert b.endpoints["board"]._thread is None or not b.endpoints["board"]._thread.is_alive()  # noqa: SLF001
    finally:
        real_stop()  # (its thread must not outlive the test: it ran on through the rest of a CI run)
    assert lpm._thread is None or not lpm._thread.is_alive()  # noqa: SLF001


def test_unplug_names_the_devices_this_bench_has(monkeypatch):
    b = VirtualBench(board=False)
    with pytest.raises(ValueError) as e:
        b.unplug("board", 1.0)
    assert str(e.value) == "unplug: no device 'board' on this bench (have powershield)"
    asked = []
    monkeypatch.setattr(b.endpoints["powershield"], "unplug", lambda s, new_port=False: asked.append((s, new_port)))
    b.unplug()
    b.unplug("powershield", 2.5, new_port=True)
    assert asked == [(None, False), (2.5, True)]


def test_the_bench_is_a_context_manager():
    with VirtualBench(board=False) as b:
        assert b._started and b.urls["powershield"].startswith("socket://127.0.0.1:")  # noqa: SLF001
    assert b._started is False  # noqa: SLF001


def test_each_endpoint_serves_its_device_on_the_bench_clock():
    import numpy as np

    b = VirtualBench(time_scale=2.5, pty=True, seed=7, port_lpm=0, port_board=0, tick_s=0.004)
    folder = b._tmpdir  # noqa: SLF001
    try:
        assert b._pty is True and b.clock.time_scale == 2.5  # noqa: SLF001
        assert b.powershield.clock is b.clock and b.powershield.source is b.board
        fresh = np.random.default_rng(7).bit_generator.state
        assert b.powershield._rng.bit_generator.state == fresh  # noqa: SLF001 - the bench's seed
        for name, device in (("powershield", b.powershield), ("board", b.board)):
            ep = b.endpoints[name]
            assert (ep.device, ep.clock, ep.name, ep.tick_s) == (device, b.clock, name, 0.004)
            assert (ep._want_port, ep._want_pty, ep._pty_link) == (0, True, os.path.join(folder, name))  # noqa: SLF001
    finally:
        b.stop()


def test_the_ports_asked_for_are_the_ports_served(unused_tcp_ports):
    lpm, board = unused_tcp_ports
    with VirtualBench(port_lpm=lpm, port_board=board) as b:
        assert (b.endpoints["powershield"].port, b.endpoints["board"].port) == (lpm, board)


@pytest.fixture
def unused_tcp_ports():
    import socket

    socks = [socket.socket() for _ in range(2)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_the_defaults():
    b = VirtualBench()
    try:
        assert (b.clock.time_scale, b.seed, b._pty, b._tmpdir, b._started) == (1.0, 0, False, None, False)  # noqa: SLF001
        assert b.endpoints["board"]._want_port == 0 and b.endpoints["board"].tick_s == 0.005  # noqa: SLF001
        assert b.endpoints["powershield"]._want_pty is False  # noqa: SLF001
    finally:
        b.stop()


def test_unplug_lists_every_device_of_the_bench():
    b = VirtualBench()
    with pytest.raises(ValueError) as e:
        b.unplug("scope")
    assert str(e.value) == "unplug: no device 'scope' on this bench (have powershield, board)"


def test_a_missing_device_nucleo_package_means_no_board(monkeypatch):
    import importlib

    def missing(name):
        raise ModuleNotFoundError("No module named 'device.nucleo'", name="device.nucleo")

    monkeypatch.setattr(importlib, "import_module", missing)
    assert load_board_emulator() is None


def test_stop_after_the_pty_folder_went_away_is_quiet():
    import shutil

    b = VirtualBench(pty=True, board=False)
    shutil.rmtree(b._tmpdir)  # noqa: SLF001 - a cleaner of /tmp was faster
    b.stop()
    assert b._tmpdir is None  # noqa: SLF001
