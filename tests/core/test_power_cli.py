"""``odlstudio power`` end to end: against ``odlstudio bench`` in another process (the acceptance run,
shortened to 2 s -> 200 000 samples, 0 lost), HDF5/CSV outputs, a capture killed with SIGKILL
leaving a readable file, argument errors, ASCII limits and ``--port auto``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from app.cli import main

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "app.cli"]
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def bench_url():
    proc = subprocess.Popen(
        CLI + ["bench", "--json"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        yield json.loads(line)["powershield"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(10) == 0
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def power(*args: str, timeout: float = 60) -> tuple[int, dict | None, str]:
    out = subprocess.run(CLI + ["power", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    data = json.loads(out.stdout) if out.stdout.strip().startswith("{") else None
    return out.returncode, data, out.stderr


def test_acceptance_100k_binary_two_processes(bench_url, tmp_path):
    code, res, err = power(
        "--port",
        bench_url,
        "--freq",
        "100k",
        "--format",
        "bin_hexa",
        "--duration",
        "2",
        "--json",
        "--out",
        str(tmp_path / "a.h5"),
    )
    assert code == 0, err
    assert res["samples"] == 200_000 and res["lost"] == 0 and res["rate_hz"] == 100_000
    assert res["duration_s"] == pytest.approx(2.0)
    assert 1e-4 < res["min_a"] <= res["mean_a"] <= res["max_a"] < 0.06
    assert res["energy_j"] == pytest.approx(res["mean_a"] * 3.3 * 2.0, rel=1e-9)
    from device.lpm01a.recorder import read_capture

    cap = read_capture(tmp_path / "a.h5")
    assert len(cap["samples"]) == 200_000 and not np.isnan(cap["samples"]).any()
    assert cap["samples"].mean() == pytest.approx(res["mean_a"], rel=1e-9)
    a = cap["attrs"]
    assert (
        a["units"] == "A"
        and a["rate_hz"] == 100_000
        and a["voltage_v"] == pytest.approx(3.3)
        and a["start_time_unix"] > 1e9
    )
    assert cap["status"] == {"received": 200_000, "lost": 0, "next_index": 200_000, "finished": 1}
    assert [e["kind"] for e in cap["events"]][-3:] == ["end", "summary", "completed"]


def test_human_summary_energy_output_and_capped_csv(bench_url, tmp_path, capsys):
    csv = tmp_path / "e.csv"
    code = main(
        [
            "power",
            "--port",
            bench_url,
            "--freq",
            "1k",
            "--output",
            "energy",
            "--duration",
            "0.5",
            "--out",
            str(csv),
            "--csv-max-mb",
            "0.002",
            "--quiet",
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert out.out.startswith("500 samples (0 lost) at 1000 Hz over 0.500 s: mean")
    assert "CSV capped at 0.002 MB" in out.err
    text = csv.read_text()
    assert text.startswith("# odlstudio LPM01A capture, rate_hz=1000, energy in J")
    assert len(text) <= 2000 and text.splitlines()[1] == "time_s,energy_j"
    t, v = text.splitlines()[2].split(",")
    assert float(t) == pytest.approx(0.001) and float(v) > 0


def test_ascii_beyond_its_limit_switches_or_refuses(bench_url):
    code, res, err = power(
        "--port", bench_url, "--freq", "10k", "--format", "ascii_dec", "--duration", "0.3", "--json", "--quiet"
    )
    assert code == 0 and res["format"] == "ascii_dec" and res["samples"] == 3000  # within the 1 s limit
    code, res, err = power("--port", bench_url, "--freq", "10k", "--format", "ascii_dec", "--duration", "1.5", "--json")
    assert code == 0 and res["format"] == "bin_hexa" and res["samples"] == 15_000 and res["lost"] == 0
    assert "switching to --format bin_hexa" in err
    code, res, err = power(
        "--port", bench_url, "--freq", "50k", "--format", "ascii_dec", "--duration", "0.1", "--strict-format", "--json"
    )
    assert code == 2 and "ascii_dec at freq 50000 Hz" in res["error"]


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--freq", "3k"], "--freq: freq '3k': must be one of 100k"),
        (["--volt", "5"], "--volt 5 V is out of range: allowed 1.8 .. 3.3 V"),
        (["--acqtime", "500"], "acqtime 500 s is out of range"),
        (["--out", "x.txt"], "unknown file type '.txt'"),
        (["--port", "socket://127.0.0.1:1"], "cannot open PowerShield port"),
    ],
)
def test_bad_arguments_name_the_argument(args, msg, capsys):
    code = main(["power", "--duration", "1", "--json", "--quiet", *args])
    out = capsys.readouterr()
    assert code in (1, 2)
    assert msg in json.loads(out.out)["error"] and msg in out.err


def test_capture_killed_at_any_moment_leaves_a_readable_file(bench_url, tmp_path):
    path = tmp_path / "killed.h5"
    proc = subprocess.Popen(
        CLI + ["power", "--port", bench_url, "--freq", "10k", "--acqtime", "0", "--out", str(path)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(4.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    from device.lpm01a.recorder import read_capture

    cap = read_capture(path)
    # ~1 s flush period: at least the samples of the first couple of seconds are there, all valid
    n = len(cap["samples"])
    assert n >= 10_000 and cap["status"]["received"] == n and cap["status"]["finished"] == 0
    assert not np.isnan(cap["samples"]).any()
    assert cap["attrs"]["rate_hz"] == 10_000


def test_port_auto_without_hardware_starts_a_virtual_bench(capsys):
    from device import discovery

    if discovery.find_powershield():
        pytest.skip("a real PowerShield is plugged in")
    code = main(["power", "--port", "auto", "--freq", "1k", "--duration", "0.3", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "started an in-process virtual bench" in out.err
    res = json.loads(out.out)
    assert res["samples"] == 300 and res["lost"] == 0 and res["port"].startswith("socket://127.0.0.1:")


# --- power CLI: a port that cannot be opened is "no device" (exit 2, documented), no fake summary ----
def test_power_unopenable_port_exits_2_without_a_summary(capsys) -> None:
    code = main(["power", "--port", "socket://127.0.0.1:1", "--duration", "1", "--quiet"])
    out = capsys.readouterr()
    assert code == 2
    assert "cannot open PowerShield port" in out.err
    assert "samples" not in out.out  # no "0 samples ... energy 0.0000 mJ" line for a capture that never ran


def test_power_unopenable_port_json(capsys) -> None:
    code = main(["power", "--port", "socket://127.0.0.1:1", "--duration", "1", "--quiet", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert code == 2 and "cannot open PowerShield port" in res["error"]


@pytest.mark.parametrize("suffix", [".h5", ".csv"])
def test_power_unopenable_port_leaves_no_out_file(tmp_path, capsys, suffix) -> None:
    """A capture that never started left an empty file behind, which the next run (with the port fixed) then
    refused as 'already exists'; a capture that started keeps its file whatever happens after."""
    out = tmp_path / f"cap{suffix}"
    code = main(["power", "--port", "socket://127.0.0.1:1", "--duration", "1", "--quiet", "--out", str(out)])
    assert code == 2 and "cannot open PowerShield port" in capsys.readouterr().err
    assert not out.exists()
