"""The virtual bench: in-process API, a 100 kS/s capture through it, and `odlstudio bench` as a process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import serial

from device.bench import VirtualBench, load_board_emulator
from device.power_profiles import L496Profile
from tests.device.test_endpoint import BANNER, ask, count_bin_samples, read_until

ROOT = Path(__file__).resolve().parents[2]
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="signals/pty semantics are POSIX here")


def test_bench_without_board_measures_the_l496_profile() -> None:
    with VirtualBench(seed=2, board=False) as bench:
        urls = bench.urls
        assert urls["board"] is None and urls["board_pty"] is None and bench.board is None
        assert isinstance(bench.powershield.source, L496Profile)
        assert urls["powershield"].startswith("socket://127.0.0.1:")
        with serial.serial_for_url(urls["powershield"], timeout=0.05) as port:
            for line in ("htc", "format bin_hexa", "freq 1k", "acqtime 0", "trigdelay 0"):
                ask(port, line)
            bench.clock.time_scale = 4.0  # 4 s of simulated time per wall second
            port.write(b"start\n")
            time.sleep(1.2)
            port.write(b"stop\n")
            data = read_until(port, BANNER, timeout=5.0)
    body = data.split(b"ack start\r\n\r\n", 1)[1]
    n, frames = count_bin_samples(body)
    assert 4400 <= n <= 5400  # ~1.2 wall s x 4 x 1 kHz
    events = [f for f in frames if f[1] == 0xF2 and f[2][2:7] == b"event"]
    assert len(events) >= 5  # the profile's training phase raises D7 every 100 ms


def test_bench_uses_the_board_emulator_when_available() -> None:
    cls = load_board_emulator()
    with VirtualBench(seed=0) as bench:
        if cls is None:
            assert bench.urls["board"] is None
        else:
            assert isinstance(bench.board, cls) and bench.powershield.source is bench.board
            assert bench.urls["board"].startswith("socket://127.0.0.1:")
            with serial.serial_for_url(bench.urls["board"], timeout=0.1):
                pass


@pytest.mark.slow
def test_100ksps_capture_through_the_bench_loses_nothing() -> None:
    seconds = 4
    with VirtualBench(seed=3) as bench:
        with serial.serial_for_url(bench.urls["powershield"], timeout=0.02) as port:
            for line in ("htc", "format bin_hexa", "freq 100k", f"acqtime {seconds}", "trigdelay 0"):
                ask(port, line)
            port.write(b"start\n")
            data = read_until(port, BANNER, timeout=seconds + 10)
            assert ask(port, "status") == b"\r\nPowerShield > ack status ok\r\n\r\n"
    body = data.split(b"ack start\r\n\r\n", 1)[1]
    n, frames = count_bin_samples(body)
    assert n == seconds * 100_000
    stamps = [f for f in frames if f[1] == 0xF3]
    assert [s[0] for s in stamps] == list(range(0, n, 1000))
    assert max(s[2][6] for s in stamps) < 50  # buffer load stayed well below overflow


def _read_json_line(proc: subprocess.Popen, timeout: float) -> dict:
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(timeout)
    assert box and box[0], (
        f"no JSON line within {timeout} s (stderr: {proc.stderr.read() if proc.poll() is not None else ''})"
    )
    return json.loads(box[0])


@posix_only
def test_cli_bench_json_serve_and_sigterm() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "bench", "--json", "--pty", "--seed", "5", "--time-scale", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        info = _read_json_line(proc, 60)
        assert set(info) >= {"powershield", "board", "powershield_pty", "board_pty"}
        assert info["powershield"].startswith("socket://127.0.0.1:") and info["time_scale"] == 2.0
        # the same monitor under neutral names; "powershield" stays for the scripts that read it
        assert (info["power_monitor"], info["power_monitor_kind"]) == (info["powershield"], "powershield")
        with serial.serial_for_url(info["powershield"], timeout=0.2) as port:
            assert ask(port, "htc") == b"\r\nPowerShield > ack htc\r\n\r\n"
        with serial.Serial(info["powershield_pty"], timeout=0.2) as port:
            assert ask(port, "version") == b"\r\nPowerShield > ack version: 1.0.7\r\n\r\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert not os.path.exists(info["powershield_pty"])  # pty symlink dir cleaned up
        assert proc.stdout.read() == ""  # exactly one line
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_cli_bench_reports_a_busy_port() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        res = subprocess.run(
            [sys.executable, "-m", "app.cli", "bench", "--json", "--port-lpm", str(port)],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert res.returncode == 2 and "cannot start the virtual bench" in res.stderr and res.stdout == ""


def test_cli_bench_rejects_bad_arguments() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "app.cli", "bench", "--port-lpm", "70000"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "out of range 0..65535" in res.stderr
