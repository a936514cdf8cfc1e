"""Issue 13 item 1: a capture or recording on a full disk stops cleanly, says so, and leaves a file whose status
and sample count say exactly what was written (never HDF5 fill values presented as data); the app keeps
working and the database speaks plain words (no raw sqlite3 error).

Full disks: a child process with a file-size limit (``tests/diskkit.py``: portable, what CI runs) and, where
mounting is allowed, a real 5 MB tmpfs (ENOSPC)."""

from __future__ import annotations

import json
import sys

import h5py
import numpy as np
import pytest

from tests.diskkit import fill_disk, python_limited, run_limited, small_tmpfs

CLI = [sys.executable, "-m", "app.cli"]


def _check_capture_file(path, out_samples):
    """The file opens in a plain reader, /status says how many positions it holds and that the capture
    stopped early, and every position is a measured sample (the virtual shield's current is > 0) or NaN
    counted as lost — never a 0.0 fill value."""
    with h5py.File(path, "r") as f:  # plain reader: no swmr=True needed after a clean stop
        status = f["status"][()]
        x = f["samples"][()]
    received, lost, n, finished = (int(v) for v in status)
    assert finished == 2, status
    assert n == out_samples == len(x) > 0
    assert int(np.count_nonzero(np.isnan(x))) == lost
    assert received + lost == n
    assert not np.any(x == 0.0), "fill values presented as data"
    assert np.all(x[~np.isnan(x)] > 0)


def test_power_cli_h5_on_full_disk_stops_cleanly(tmp_path):
    out = tmp_path / "x.h5"
    r = run_limited(
        [*CLI, "power", "--duration", "10", "--freq", "100k", "--out", str(out), "--json", "--quiet"], 3_000_000
    )
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    res = json.loads(lines[0])
    assert "disk full" in res["error"] and str(out) in res["error"]
    assert res["out_complete"] is False
    assert res["samples"] >= res["out_samples"]
    assert "need about" in r.stderr  # warned before starting: 10 s at 100 kHz do not fit
    _check_capture_file(out, res["out_samples"])


def test_power_cli_csv_on_full_disk_keeps_whole_rows(tmp_path):
    out = tmp_path / "x.csv"
    r = run_limited(
        [*CLI, "power", "--duration", "10", "--freq", "100k", "--out", str(out), "--json", "--quiet"], 1_000_000
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert "disk full" in res["error"] and res["out_complete"] is False
    text = out.read_text()
    rows = text.splitlines()[2:]
    assert text.endswith("\n") and len(rows) == res["out_rows"] > 0
    assert all(len(row.split(",")) == 2 for row in rows)


_HARD = r"""
import sys
import numpy as np
from device.lpm01a.capture import Block
from device.lpm01a.recorder import DiskFull, Hdf5Writer
# check_space=False: no look-ahead, the write itself hits the limit (a disk filled by someone else)
w = Hdf5Writer(sys.argv[1], 1000.0, check_space=False, flush_s=0.0, chunk=4096)
i = 0
try:
    while i < 10_000_000:
        w.write(Block(i, np.full(5000, 1.5), 1000.0))
        i += 5000
except DiskFull as exc:
    print("DISKFULL", exc.written)
w.close()
print("CLOSED", w.samples_on_disk)
"""


def test_hdf5_writer_hard_write_error_never_leaves_fill_values(tmp_path):
    out = tmp_path / "hard.h5"
    r = python_limited(_HARD, 1_000_000, str(out))
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])  # was: tracebacks, then a segfault (-11)
    assert "Traceback" not in r.stderr
    written = int(r.stdout.split("DISKFULL")[1].split()[0])
    _check_capture_file(out, written)


def test_hdf5_writer_on_a_real_full_tmpfs(tmp_path):
    with small_tmpfs("5m") as disk:
        out = disk / "x.h5"
        r = run_limited(
            [*CLI, "power", "--duration", "10", "--freq", "100k", "--out", str(out), "--json", "--quiet"], 1 << 40
        )
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
        res = json.loads(r.stdout.strip().splitlines()[-1])
        assert "disk full" in res["error"]
        _check_capture_file(out, res["out_samples"])


_APP = r"""
import json, sys, time
import numpy as np
from app.core.recording import StreamRecorder
from app.core.labels import LabelError, LabelModel
from app.core.store import Store, StoreError
from app.core.streams import SampleStream

store = Store(sys.argv[1])
s = SampleStream("current", 100_000.0, 1, recent_s=1.0, history_s=100)
rec = StreamRecorder(store, s, "power", "run", voltage=3.3)
x = np.full(50_000, 3e-4, np.float32)
t0 = time.monotonic()
while not rec.finished and time.monotonic() - t0 < 60:
    s.append(x)
    time.sleep(0.005)
row = rec.stop()  # stopped by itself: returns the row, does not raise
print(json.dumps({"finished": rec.finished, "reason": rec.stop_reason, "status": row.status,
                  "n": row.n_samples, "meta": row.meta, "path": str(rec.path)}))
sys.stdout.flush()
"""


def test_app_power_recorder_on_full_disk(tmp_path):
    from app.core.recording import open_power, recover
    from app.core.store import Store

    r = python_limited(_APP, 14_000_000, str(tmp_path))  # the recorder keeps 8 MB free: ~6 MB of samples
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["finished"] and "disk full" in res["reason"]
    assert res["status"] == "recovered" and "disk full" in res["meta"]["error"]
    with h5py.File(res["path"], "r") as f:  # closed cleanly: plain readers open it
        y = f["current"][()]
    assert len(y) == res["n"] > 0
    assert not np.any(y == 0.0) and not np.any(np.isnan(y))
    store = Store(tmp_path)  # the next start finds the row as the recorder left it
    recover(store)
    row = store.recordings("power")[0]
    assert row.n_samples == res["n"] and row.status == "recovered"
    assert open_power(store, row).n_total == res["n"]
    store.close()


def test_app_recorder_and_labels_on_a_real_full_tmpfs():
    """Everything on one full disk: the recorder stops by itself with the reason, the database row says
    what was written, a label that cannot be saved is a LabelError in plain words (was: a raw
    sqlite3.OperationalError 'database or disk is full'), and what was saved before stays."""
    from app.core.labels import LabelError, LabelModel
    from app.core.recording import StreamRecorder, load_accel
    from app.core.store import Store
    from app.core.streams import SampleStream

    with small_tmpfs("12m") as disk:  # the recorder keeps 8 MB free: ~4 MB of samples
        store = Store(disk)
        s = SampleStream("accel", 1000.0, 3, recent_s=1.0, history_s=100)
        rec = StreamRecorder(store, s, "accel", "walk")
        block = np.full((5000, 3), 9.81, np.float32)
        import time

        t0 = time.monotonic()
        while not rec.finished and time.monotonic() - t0 < 60:
            s.append(block)
            time.sleep(0.001)
        row = rec.stop()
        assert "disk full" in rec.stop_reason and row.status == "recovered"
        data = load_accel(store, row)
        assert len(data) == row.n_samples > 0 and np.all(data == np.float32(9.81))
        lm = LabelModel(store, row.id, ("Walking",), row.duration)
        first = lm.add(0.0, 0.5, "Walking")
        filler = disk / "filler"
        fill_disk(filler)  # take every byte left
        with pytest.raises(LabelError, match="disk is full|cannot be read or written"):
            for k in range(2000):  # enough to need a new page
                lm.add(1.0 + k * 1e-3, 1.0 + k * 1e-3 + 5e-4, "Walking")
        filler.unlink()
        assert first.id in {lab.id for lab in lm.labels}
        store.close()
        store = Store(disk)
        assert [lab.start_s for lab in store.labels(row.id)][0] == 0.0
        store.close()


def test_store_errors_are_plain_words_on_a_full_disk(tmp_path):
    """The database on a disk that refuses writes: StoreError naming the file, never sqlite3's own error."""
    from app.core.store import Store

    st = Store(tmp_path)
    st.close()
    code = r"""
import sys
from app.core.store import Store, StoreError
store = Store(sys.argv[1])
rid = store.add_recording("accel", "r", "recordings/accel/1.f32", 50.0, 3).id
try:
    for k in range(100_000):
        store.add_label(rid, k, k + 0.5, "Walking" * 20)
    print("NO ERROR")
except StoreError as exc:
    print("STOREERROR", exc)
"""
    r = python_limited(code, 200_000, str(tmp_path))
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "STOREERROR" in r.stdout and "odlstudio.sqlite" in r.stdout, r.stdout


def test_space_warning_before_a_long_recording(tmp_path):
    from app.core.recording import space_warning
    from app.core.store import Store

    store = Store(tmp_path)
    assert space_warning(store, "accel", 52.0) == ""  # minutes of accel fit anywhere
    with small_tmpfs("20m") as disk:
        small = Store(disk)
        msg = space_warning(small, "power", 100_000.0)  # 10 min at 100 kS/s = 240 MB > 20 MB
        assert "MB free" in msg and "stops by itself" in msg
        small.close()
    store.close()
