"""Soak: the whole app (offscreen main window) on the virtual bench for a long time.

The bench streams the LPM01A at 100 kS/s and the NUCLEO accelerometer at 1667 Hz; both streams are recorded
to disk the whole time (accel in segments, power continuously); every ``--label-every`` seconds the emulated
person changes activity and the last segment is labelled through :class:`app.core.labels.LabelModel`;
every ``--round-every`` seconds a training round runs on a worker thread (:class:`app.core.rounds.RoundRunner`
on the labelled data, the accel stream stopped for it, then restarted).  The frame clock paints the
Power or the Live accelerometer panel (alternating every report interval).

Every ``--interval`` seconds one line: elapsed time, RSS, frame (tick) time p50/p95 and frame period p95 of
that interval, lost samples (power, accel), recorder drops, rounds ok/failed, labels, endpoint catch-ups,
the longest stall of the process (ms in which no Python ran: :class:`StallWatch`), and where the memory
sits: anonymous vs file-backed RSS, glibc heap in use vs free (fragmentation), threads, live Python objects.
``--tracemalloc N`` also traces Python allocations and prints the N largest growths per interval (a
diagnosis mode: it slows the app down enough to cause board timeouts).
At the end one JSON object (``--json``) with the verdict against the goals: RSS growth after the first
interval < 50 MB, 0 lost samples, p95 frame time of the last interval <= 1.5 x the first (+1 ms).

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/soak.py --duration 3600 --interval 60

Exit code 0 when every goal is met, 1 otherwise (2 for bad arguments).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ACTIVITIES = ("walking", "jogging", "sitting", "standing")


def _proc_status() -> dict[str, int]:
    """Numeric fields of /proc/self/status (kB for the memory ones); empty where there is no /proc."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    out[key] = int(parts[0])
    except OSError:
        pass
    return out


def rss_mb() -> float:
    """Resident set size of this process (MB), from /proc (Linux) or resource (elsewhere: peak RSS)."""
    rss = _proc_status().get("VmRSS")
    if rss is not None:
        return rss / 1024.0
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024.0 * 1024.0) if sys.platform == "darwin" else r / 1024.0


class StallWatch:
    """The longest time this process ran no Python in a report interval: a thread that sleeps 10 ms and
    measures how late it wakes.  A call that holds the interpreter lock (the first ``import tensorflow`` held
    it ~0.85 s) stops every device reader for that long; see app/core/child.py."""

    PERIOD = 0.01

    def __init__(self) -> None:
        self.worst = 0.0
        self._lock = threading.Lock()  # take() must not lose a stall the thread records between its read and reset
        self._stop = threading.Event()
        threading.Thread(target=self._run, name="soak-stalls", daemon=True).start()

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.PERIOD):
            now = time.monotonic()
            with self._lock:
                self.worst = max(self.worst, now - last - self.PERIOD)
            last = now

    def take(self) -> float:
        """The longest stall (s) since the last call."""
        with self._lock:
            worst, self.worst = self.worst, 0.0
        return worst

    def stop(self) -> None:
        self._stop.set()


def mem_detail() -> dict:
    """Where the RSS is: anonymous vs file-backed pages (/proc), glibc heap in use vs free (mallinfo2),
    live Python objects.  Empty fields where the platform does not have them."""
    import gc

    from app.core.memory import heap_stats

    st = _proc_status()
    out: dict = {}
    for key in ("RssAnon", "RssFile"):
        if key in st:
            out[key.lower().replace("rss", "rss_") + "_mb"] = round(st[key] / 1024.0, 1)
    if "Threads" in st:
        out["threads"] = st["Threads"]
    heap = heap_stats()
    if heap:
        out["heap_used_mb"] = round((heap["uordblks"] + heap["hblkhd"]) / 2**20, 1)
        out["heap_free_mb"] = round(heap["fordblks"] / 2**20, 1)
    out["py_objects"] = len(gc.get_objects())
    return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(q / 100.0 * len(v)))]


class Soak:
    def __init__(self, args: argparse.Namespace):
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication

        from app.core.context import AppContext
        from app.ui.app import build_window

        self.args = args
        self.app = QApplication.instance() or QApplication([])
        self.data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="odl-soak-"))
        self.ctx = AppContext.create(self.data_dir, bench=True)
        self.win = build_window(self.ctx, fps=args.fps)
        self.win.resize(1280, 800)
        self.win.show()
        self.dm = self.ctx.devices
        self.board = next(s.info.key for s in self.dm.snapshot() if s.info.kind == "board")
        self.shield = next(s.info.key for s in self.dm.snapshot() if s.info.kind == "powershield")
        # frame timing: wrap the window's frame slot
        self.ticks: list[float] = []
        self.periods: list[float] = []
        self._last_frame: float | None = None
        self.win.timer.timeout.disconnect(self.win.frame)
        self.win.timer.timeout.connect(self._timed_frame)
        self.t0 = time.monotonic()
        self.stalls = StallWatch()
        self.rows: list[dict] = []
        self.labels = 0
        self.rounds_ok = 0
        self.rounds_failed: list[str] = []
        self.round_thread: threading.Thread | None = None
        self.accel_rec = None
        self.power_rec = None
        self.recorder_dropped = 0
        self.recorded = {"accel": 0, "power": 0}
        self._act = 0
        self._seg_start = 0.0
        self._next_label = args.warmup + args.label_every
        self._next_round = args.warmup + args.round_every
        self._next_report = args.interval
        self._panel_flip = False
        self.error: str | None = None
        self._snap = None
        if args.tracemalloc:
            import tracemalloc

            tracemalloc.start(int(args.trace_frames))
        self.timer = QTimer()
        self.timer.timeout.connect(self._step)

    # --- frame timing ------------------------------------------------------------------------------
    def _timed_frame(self) -> None:
        t = time.perf_counter()
        if self._last_frame is not None:
            self.periods.append((t - self._last_frame) * 1e3)
        self._last_frame = t
        self.win.frame()
        self.ticks.append((time.perf_counter() - t) * 1e3)

    # --- devices -----------------------------------------------------------------------------------
    def _wait(self, cond, timeout: float, what: str) -> None:
        from PySide6.QtCore import QCoreApplication

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            QCoreApplication.processEvents()
            time.sleep(0.01)
        raise RuntimeError(
            f"timed out after {timeout:g} s waiting for {what}: "
            f"{[(s.info.name, s.state.value, s.message) for s in self.dm.snapshot()]}"
        )

    def start(self) -> None:
        from app.core.devices import DeviceState

        self.dm.configure_power(self.shield, self.args.power_rate, 3.3)
        self.dm.configure_accel(self.board, self.args.odr, 4)
        for k in (self.shield, self.board):
            self.dm.connect(k)
            self.dm.set_streaming(k, True)
        self._wait(
            lambda: (
                all(self.dm.status(k).state == DeviceState.STREAMING for k in (self.shield, self.board))
                and self.dm.power_stream is not None
                and self.dm.accel_stream is not None
                and self.dm.power_stream.n_total > 0
                and self.dm.accel_stream.n_total > 0
            ),
            30.0,
            "streaming",
        )
        self.win.show_panel("power")
        self._start_power_rec()
        self._start_accel_rec()
        self.timer.start(200)

    def _start_power_rec(self) -> None:
        from app.core.recording import StreamRecorder

        self.power_rec = StreamRecorder(
            self.ctx.store, self.dm.power_stream, "power", "soak power", voltage=self.dm.voltage
        )

    def _start_accel_rec(self) -> None:
        from app.core.recording import StreamRecorder

        self._set_activity()
        self.accel_rec = StreamRecorder(
            self.ctx.store,
            self.dm.accel_stream,
            "accel",
            f"soak accel {len(self.ctx.store.recordings('accel')) + 1}",
            dataset_id=self.ctx.dataset.id,
        )
        self._seg_start = 0.0

    def _set_activity(self) -> None:
        name = ACTIVITIES[self._act % len(ACTIVITIES)]
        self.dm.call(self.board, lambda c: c.set_activity(name))

    def _stop_accel_rec(self) -> None:
        if self.accel_rec is None:
            return
        rec, self.accel_rec = self.accel_rec, None
        row = rec.stop()
        self.recorder_dropped += rec.dropped
        self.recorded["accel"] += row.n_samples

    # --- labelling ---------------------------------------------------------------------------------
    def _label(self) -> None:
        from app.core.labels import LabelModel

        rec = self.accel_rec
        if rec is None:
            return
        end = rec.duration
        if end - self._seg_start < 2.0:
            return
        model = LabelModel(self.ctx.store, rec.rec.id, self.ctx.dataset.classes)
        cls = {c.lower(): c for c in self.ctx.dataset.classes}
        name = ACTIVITIES[self._act % len(ACTIVITIES)]
        model.add(self._seg_start + 0.5, end, cls.get(name, self.ctx.dataset.classes[0]))
        self.labels += 1
        self._seg_start = end
        self._act += 1
        self._set_activity()

    # --- training rounds ---------------------------------------------------------------------------
    def _start_round(self) -> None:
        from app.core.rounds import RoundConfig, RoundRunner

        self._stop_accel_rec()  # the round stops the accel stream; this segment is complete
        runner = RoundRunner(
            self.ctx.store,
            self.dm,
            self.data_dir,
            RoundConfig(input_size=20, epochs=2),
            self.ctx.dataset.id,
            user=self.ctx.user.name,
            wait_power_s=5.0,
        )

        def work() -> None:
            try:
                runner.run()
                self.rounds_ok += 1
            except Exception as exc:  # noqa: BLE001 - counted and reported
                self.rounds_failed.append(str(exc)[:300])

        self.round_thread = threading.Thread(target=work, name="soak-round", daemon=True)
        self.round_thread.start()

    def _after_round(self) -> None:
        import numpy as np

        from app.core.devices import DeviceState

        self.round_thread = None
        self.dm.set_streaming(self.board, True)
        # record from the first fresh samples on: the time the stream was stopped for the round is a marked
        # gap (NaN) appended when the first block arrives, and must not end up inside a labelled segment
        n0 = self.dm.accel_stream.n_total

        def fresh() -> bool:
            s = self.dm.accel_stream
            if self.dm.status(self.board).state != DeviceState.STREAMING or s.n_total <= n0 or not s.gaps:
                return False
            got = s.samples(s.duration - 0.05, s.duration)
            return (
                got is not None
                and len(got[1]) > 0
                and bool(np.isfinite(got[1]).all())
                and s.gaps[-1][1] > n0 / s.rate_hz
            )

        self._wait(fresh, 15.0, "the accel stream to resume after the round")
        self._start_accel_rec()

    # --- scheduler (GUI thread, every 200 ms) ------------------------------------------------------
    def _step(self) -> None:
        try:
            t = time.monotonic() - self.t0
            if self.round_thread is not None and not self.round_thread.is_alive():
                self._after_round()
            if self.round_thread is None and t >= self._next_label:
                self._next_label = t + self.args.label_every
                self._label()
            if self.round_thread is None and t >= self._next_round:
                self._next_round = t + self.args.round_every
                self._label()
                self._start_round()
            if t >= self._next_report:
                self._next_report += self.args.interval
                self._report(t)
                self._panel_flip = not self._panel_flip
                self.win.show_panel("live_accel" if self._panel_flip else "power")
            if t >= self.args.duration and self.round_thread is None:
                self.timer.stop()
                self.app.quit()
        except Exception as exc:  # noqa: BLE001 - end the soak with the reason
            import traceback

            self.error = f"{exc!r}\n{traceback.format_exc()}"
            self.timer.stop()
            self.app.quit()

    def _report(self, t: float) -> None:
        lost = self.dm.lost_samples()
        pw = self.power_rec
        row = {
            "t_s": round(t, 1),
            "panel": "live_accel" if self._panel_flip else "power",
            "rss_mb": round(rss_mb(), 1),
            "tick_p50_ms": round(pct(self.ticks, 50), 2),
            "tick_p95_ms": round(pct(self.ticks, 95), 2),
            "period_p95_ms": round(pct(self.periods, 95), 1),
            "frames": len(self.ticks),
            "lost_power": lost.get("powershield", 0),
            "lost_accel": lost.get("board", 0),
            "rec_dropped": self.recorder_dropped
            + (pw.dropped if pw else 0)
            + (self.accel_rec.dropped if self.accel_rec else 0),
            "rounds_ok": self.rounds_ok,
            "rounds_failed": len(self.rounds_failed),
            "labels": self.labels,
            "faults": len(self.dm.faults),
            "catchups": sum(ep.catchups for ep in self.dm.bench.endpoints.values()) if self.dm.bench else 0,
            "stall_max_ms": round(1000 * self.stalls.take(), 1),
            "power_s": round(self.dm.power_stream.duration, 1) if self.dm.power_stream else 0.0,
            **mem_detail(),
        }
        self.ticks.clear()
        self.periods.clear()
        self.rows.append(row)
        print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        if self.args.tracemalloc:
            import tracemalloc

            snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
            if self._snap is not None:
                print(
                    f"  tracemalloc: {tracemalloc.get_traced_memory()[0] / 2**20:.1f} MB traced; "
                    f"largest growth since the last report:",
                    flush=True,
                )
                for st in snap.compare_to(self._snap, "lineno")[: self.args.tracemalloc]:
                    print(f"    {st}", flush=True)
            self._snap = snap

    # --- run ---------------------------------------------------------------------------------------
    def run(self) -> dict:
        self.start()
        print(
            f"soak: {self.args.duration:g} s, power {self.args.power_rate} S/s, accel {self.args.odr:g} Hz, "
            f"data dir {self.data_dir}",
            flush=True,
        )
        self.app.exec()
        if self.error is None and len(self.ticks) > 10:
            self._report(time.monotonic() - self.t0)
        self._stop_accel_rec()
        if self.power_rec is not None:
            rec, self.power_rec = self.power_rec, None
            row = rec.stop()
            self.recorder_dropped += rec.dropped
            self.recorded["power"] = row.n_samples
        self.win.close()
        faults = list(self.dm.faults)
        self.ctx.close()
        self.stalls.stop()
        return self.summary(faults)

    def summary(self, faults: list) -> dict:
        # baseline: the first interval that ends after the first round finished (what the first round loads
        # and keeps is a one-off, not growth); without rounds, the first interval
        rows = self.rows
        warm = [r for r in rows if r["rounds_ok"] + r["rounds_failed"] >= 1] or rows
        first, last = (warm[0], rows[-1]) if rows else ({}, {})
        growth = (last.get("rss_mb", 0) - first.get("rss_mb", 0)) if rows else float("nan")
        lost = last.get("lost_power", 0) + last.get("lost_accel", 0) + self.recorder_dropped
        # frame times depend on the panel shown (they alternate per interval): compare like with like, the
        # first intervals after the warm-up with the last ones, per panel, and keep the worse ratio
        p95_first = p95_last = float("nan")
        worst = -math.inf
        for panel in ("power", "live_accel"):
            pr = [r for r in warm if r.get("panel") == panel and r["frames"] > 10]
            if len(pr) < 2:
                continue
            k = max(1, min(3, len(pr) // 3))
            a = pct([r["tick_p95_ms"] for r in pr[:k]], 50)
            b = pct([r["tick_p95_ms"] for r in pr[-k:]], 50)
            if b - (1.5 * a + 1.0) > worst:
                worst, p95_first, p95_last = b - (1.5 * a + 1.0), a, b
        goals = {
            "rss_growth_lt_50MB": bool(growth < 50.0),
            "zero_lost_samples": lost == 0,
            "p95_frame_unchanged": bool(not p95_last > 1.5 * p95_first + 1.0),  # NaN (too short): not judged
            "rounds_ran": self.rounds_ok >= 1 or self.args.duration < self.args.warmup + self.args.round_every,
            "no_error": self.error is None,
        }
        return {
            "duration_s": self.args.duration,
            "rss_start_mb": rows[0]["rss_mb"] if rows else None,
            "rss_first_mb": first.get("rss_mb"),
            "rss_last_mb": last.get("rss_mb"),
            "rss_growth_mb": round(growth, 1),
            "tick_p95_first_ms": p95_first,
            "tick_p95_last_ms": p95_last,
            "lost_samples": lost,
            "lost_power": last.get("lost_power"),
            "lost_accel": last.get("lost_accel"),
            "recorder_dropped": self.recorder_dropped,
            "recorded": self.recorded,
            "rounds_ok": self.rounds_ok,
            "rounds_failed": self.rounds_failed,
            "labels": self.labels,
            "faults": [f[2] for f in faults][:20],
            "catchups": last.get("catchups"),
            "stall_max_ms": max((r.get("stall_max_ms", 0.0) for r in rows), default=None),
            "error": self.error,
            "goals": goals,
            "ok": all(goals.values()),
            "intervals": rows,
        }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=3600.0, help="seconds to run (default 3600)")
    p.add_argument("--interval", type=float, default=None, help="report interval, s (default duration/30, 10..300)")
    p.add_argument("--label-every", type=float, default=20.0, help="label a segment every N s (default 20)")
    p.add_argument("--round-every", type=float, default=180.0, help="a training round every N s (default 180)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds before the first label/round (default 5)")
    p.add_argument("--power-rate", type=int, default=100_000, choices=(1_000, 10_000, 50_000, 100_000))
    p.add_argument("--odr", type=float, default=1667.0, help="accelerometer ODR, Hz (default 1667)")
    p.add_argument("--fps", type=int, default=60)
    p.add_argument("--data-dir", default=None, help="data directory (default: a new temporary directory)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the summary JSON to FILE")
    p.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="N",
        help="diagnosis: trace Python allocations and print the N largest growths per report (slows the app)",
    )
    p.add_argument("--trace-frames", type=int, default=1, help="stack frames kept per traced allocation (default 1)")
    a = p.parse_args(argv)
    if a.duration <= 0:
        p.error(f"--duration must be > 0 s, got {a.duration}")
    if a.interval is None:
        a.interval = min(300.0, max(10.0, a.duration / 30.0))
    if a.interval <= 0 or a.label_every <= 0 or a.round_every <= 0:
        p.error("--interval, --label-every and --round-every must be > 0 s")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    result = Soak(args).run()
    text = json.dumps(result)
    print("SOAK_RESULT " + text, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
