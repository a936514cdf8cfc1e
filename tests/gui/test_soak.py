"""2-minute version of the soak (benchmarks/soak.py): the offscreen app with the virtual bench streaming
100 kS/s power and 1667 Hz accel, recording both, labelling every 15 s and a training round after 45 s.

Runs the benchmark in a subprocess (a crash of Qt or TF fails the test instead of the session) and checks
its JSON verdict: no lost sample, no recorder drop, at least one round and some labels, no error, and
RSS growth after the first round < 50 MB.  The frame-time goal is reported but not asserted here (two
minutes on a shared 2-core CI machine are too noisy for a p95 comparison; the 1 h figures are in
docs/reliability.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.gui]

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(420)
def test_soak_two_minutes(tmp_path):
    out = tmp_path / "soak.json"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "soak.py"),
            "--duration",
            "120",
            "--interval",
            "15",
            "--label-every",
            "15",
            "--round-every",
            "45",
            "--data-dir",
            str(tmp_path / "data"),
            "--json",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert out.exists(), f"soak wrote no result (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    r = json.loads(out.read_text())
    print(json.dumps({k: v for k, v in r.items() if k != "intervals"}, indent=1))
    assert r["error"] is None, r["error"]
    assert r["lost_samples"] == 0 and r["recorder_dropped"] == 0, r
    assert r["recorded"]["power"] > 100_000 * 100, r["recorded"]  # ~2 min of 100 kS/s reached the disk
    assert r["labels"] >= 4 and r["rounds_ok"] >= 1, (r["labels"], r["rounds_ok"], r["rounds_failed"])
    assert not r["rounds_failed"], r["rounds_failed"]
    assert r["rss_growth_mb"] < 50, r["intervals"]


def _verdict(rows: list[dict]) -> dict:
    """benchmarks/soak.py's summary of hand-made interval rows (no app, no devices)."""
    import importlib.util
    from types import SimpleNamespace

    spec = importlib.util.spec_from_file_location("soak_bench", ROOT / "benchmarks" / "soak.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    fake = SimpleNamespace(
        rows=rows,
        recorder_dropped=0,
        rounds_ok=1,
        rounds_failed=[],
        labels=1,
        recorded={},
        error=None,
        args=SimpleNamespace(duration=600.0, warmup=5.0, round_every=180.0),
    )
    return mod.Soak.summary(fake, [])


def _rows(power_p95: list[float], accel_p95: list[float]) -> list[dict]:
    rows = []
    for p, a in zip(power_p95, accel_p95):
        for panel, v in (("power", p), ("live_accel", a)):
            rows.append(
                {
                    "t_s": 60.0 * len(rows),
                    "panel": panel,
                    "rss_mb": 800.0,
                    "tick_p95_ms": v,
                    "frames": 3000,
                    "lost_power": 0,
                    "lost_accel": 0,
                    "rounds_ok": 1,
                    "rounds_failed": 0,
                    "catchups": 0,
                }
            )
    return rows


def test_soak_verdict_judges_frame_times_when_they_improve_or_hold():
    # frames faster at the end than at the start (the 1 h run's Live accel panel): judged, and met
    r = _verdict(_rows([7.0, 6.9, 7.1, 7.5, 7.8, 7.9], [3.6, 3.3, 3.5, 0.4, 0.5, 0.4]))
    assert r["goals"]["p95_frame_unchanged"] is True
    assert r["tick_p95_first_ms"] == r["tick_p95_first_ms"]  # a number, not NaN: the goal was judged
    assert r["tick_p95_last_ms"] >= 7.5  # the worse panel (power) is the one reported


def test_soak_verdict_catches_slower_frames():
    r = _verdict(_rows([7.0, 6.9, 7.1, 15.0, 16.0, 17.0], [0.4, 0.4, 0.4, 0.4, 0.4, 0.4]))
    assert r["goals"]["p95_frame_unchanged"] is False and r["ok"] is False
    assert r["tick_p95_last_ms"] >= 15.0
