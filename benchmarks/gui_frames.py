"""GUI frame time while the virtual bench streams 100 kS/s power and 52 Hz accel with 1 h of history,
and cold start to the first painted window.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/gui_frames.py [--frames 300] [--history-s 3600]

A frame = the main window's frame-clock work for the visible panel (pull from the stream, setData) plus a
full software paint of the plot (``QWidget.grab``).  Scenarios: power panel following live (2 s window),
power panel zoomed out over the whole hour (envelope from the pyramid), accel panel following live.
Peer in the same run: pyqtgraph's own pipeline (``autoDownsample`` peak + ``clipToView``) given the raw
samples of the same 2 s window.  Goals: p95 <= 16 ms (60 Hz), cold start <= 1.5 s, no TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pct(ms: list[float]) -> tuple[float, float]:
    a = np.asarray(ms)
    return float(np.percentile(a, 50)), float(np.percentile(a, 95))


def cold_start() -> dict:
    code = (
        "import time, sys; t0 = time.perf_counter()\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from app.core.context import AppContext\n"
        "from app.ui.app import build_window\n"
        f"ctx = AppContext.create({tempfile.mkdtemp(prefix='odl-cold-')!r}, bench=True)\n"
        "win = build_window(ctx); win.show(); app.processEvents(); win.grab()\n"
        "t1 = time.perf_counter() - t0\n"
        "tf = any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules)\n"
        "print(t1, tf); win.close(); ctx.close()\n"
    )
    peer = (
        "import time; t0 = time.perf_counter()\n"
        "from PySide6.QtWidgets import QApplication\n"
        "import pyqtgraph as pg\n"
        "app = QApplication([]); w = pg.PlotWidget(); w.show(); app.processEvents(); w.grab()\n"
        "print(time.perf_counter() - t0, False)\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")}
    out = {}
    for name, c in (("app", code), ("peer_bare_plotwidget", peer)):
        runs = []
        for _ in range(3):
            r = subprocess.run(
                [sys.executable, "-c", c], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
            )
            if r.returncode:
                raise SystemExit(f"cold start run failed: {r.stderr[-2000:]}")
            t, tf = r.stdout.split()[-2:]
            runs.append(float(t))
            out[f"{name}_tensorflow_imported"] = tf == "True"
        out[f"{name}_s"] = min(runs)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300, help="frames per scenario (default 300)")
    ap.add_argument("--history-s", type=float, default=3600.0, help="power/accel history to pre-fill (s)")
    args = ap.parse_args()
    if args.frames < 10:
        ap.error("--frames must be >= 10")

    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    from app.core.context import AppContext
    from app.ui.app import build_window

    app = QApplication.instance() or QApplication([])
    ctx = AppContext.create(tempfile.mkdtemp(prefix="odl-bench-"), bench=True, history_s=args.history_s + 600)
    dm = ctx.devices
    # 1 h of history, at the real rates, before the live data (synthetic: 300 uA idle + 3 mA bursts)
    t = time.perf_counter()
    ps = dm.ensure_power_stream(100_000, 3.3)
    rng = np.random.default_rng(0)
    block = np.full(1_000_000, 300e-6, np.float32)
    block[::50_000] = 3e-3
    for _ in range(int(args.history_s * 100_000 // len(block))):
        ps.append(block + rng.normal(0, 2e-6, len(block)).astype(np.float32))
    acc = dm.ensure_accel_stream(52.0)
    acc.append(rng.normal(0, 3, (int(args.history_s * 52), 3)).astype(np.float32))
    fill_s = time.perf_counter() - t
    win = build_window(ctx)
    win.resize(1600, 900)
    win.show()
    for key in ("powershield:virtual", "board:virtual"):
        if key in {s.info.key for s in dm.snapshot()}:
            dm.connect(key)
            dm.set_streaming(key, True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and ps.n_total < args.history_s * 100_000 + 100_000:
        app.processEvents()
        time.sleep(0.01)
    live = ps.n_total > args.history_s * 100_000
    win.timer.stop()  # we drive frames ourselves

    def run(panel_key: str, setup) -> list[float]:
        panel = win.show_panel(panel_key)
        setup(panel)
        ms = []
        for _ in range(args.frames):
            t0 = time.perf_counter()
            panel.tick()
            panel.plot.grab()
            ms.append((time.perf_counter() - t0) * 1e3)
            app.processEvents()
            time.sleep(max(0.0, 1 / 60 - ms[-1] / 1e3))
        return ms

    res = {}
    power = win.panels["power"]
    res["power_follow_2s"] = run("power", lambda p: (p.window.setValue(2.0), p.follow.setChecked(True)))
    res["power_whole_hour"] = run(
        "power", lambda p: (p.follow.setChecked(False), p.plot.setXRange(0, ps.duration, padding=0))
    )
    res["accel_follow_10s"] = run("live_accel", lambda p: (p.window.setValue(10.0), p.follow.setChecked(True)))

    # peer: pyqtgraph's own decimation on the raw 2 s window (same size widget)
    w = pg.PlotWidget()
    w.resize(power.plot.width(), power.plot.height())
    w.show()
    item = w.plot(pen="y")
    item.setDownsampling(auto=True, method="peak")
    item.setClipToView(True)
    w.getPlotItem().getViewBox().disableAutoRange(axis="x")
    peer = []
    for _ in range(args.frames):
        t0 = time.perf_counter()
        x, y = ps.samples(ps.duration - 2.0, ps.duration)
        item.setData(x, y[:, 0])
        w.setXRange(x[0], x[-1], padding=0)
        w.grab()
        peer.append((time.perf_counter() - t0) * 1e3)
        app.processEvents()
    res["peer_pyqtgraph_autodownsample_2s"] = peer

    summary = {k: {"p50_ms": round(pct(v)[0], 2), "p95_ms": round(pct(v)[1], 2)} for k, v in res.items()}
    summary["ratio_p95_power_follow_vs_peer"] = round(pct(res["power_follow_2s"])[1] / pct(peer)[1], 2)
    summary["history_s"] = args.history_s
    summary["history_fill_s"] = round(fill_s, 1)
    summary["power_samples_in_history"] = ps.n_total
    summary["bench_streaming_during_run"] = live
    summary["rss_mb"] = (
        round(int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20)
        if os.path.exists("/proc/self/statm")
        else None
    )
    win.close()
    ctx.close()
    summary["cold_start"] = cold_start()
    print(json.dumps(summary, indent=2))
    ok = all(summary[k]["p95_ms"] <= 16 for k in ("power_follow_2s", "power_whole_hour", "accel_follow_10s"))
    ok = ok and summary["cold_start"]["app_s"] <= 1.5 and not summary["cold_start"]["app_tensorflow_imported"]
    print("GOALS MET" if ok else "GOALS NOT MET (see figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
