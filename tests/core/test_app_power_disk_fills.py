"""The desktop app's power recordings (``StreamRecorder``, kind "power") on a disk that fills within milliseconds of
the start, or between two flushes so that the flush that saves the file fails too.

Was: HDF5 met the full disk while it started the file (``f.swmr_mode = True``: "cannot start the recording: Unable
to start swmr writing (file write failed: …)") or could flush neither the samples nor the salvage, then its
handles' release printed "Exception ignored in: 'h5py._objects.ObjectID.__dealloc__'" tracebacks and the app died
of a segmentation fault (exit -11).  Now the file's layout is the start's own plain write
(:func:`device.lpm01a.recorder.start_hdf5`), a failed write cuts the file back to its last good flush, and a file
HDF5 can no longer flush is let go of (:func:`device.lpm01a.recorder.let_go`): the recording stops by itself with
the full-disk reason, as the look-ahead's full disk does, and opens (in the same session and at the next start).

The child lowers the file-size limit (SIGXFSZ ignored) to the recording file's size plus ``room`` bytes: right
after HDF5 opens the file for writing ("start"), or after two flushes of samples ("later").  The recorder's
look-ahead is blinded (a quota it cannot see), so the refusal comes from HDF5's own write."""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from tests.diskkit import ROOT

_CHILD = r"""
import json, os, resource, signal, sys, time
import numpy as np
import h5py
import app.core.recording as recording
from app.core.store import Store
from app.core.streams import SampleStream

data_dir, when, room = sys.argv[1], sys.argv[2], int(sys.argv[3])
recording.room_left = lambda path: 1 << 40  # a quota the recorder's look-ahead cannot see
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def fill(path):
    resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path) + room, resource.RLIM_INFINITY))


real_file = h5py.File


def hooked(name, mode="r", *args, **kw):
    f = real_file(name, mode, *args, **kw)
    if isinstance(name, (str, os.PathLike)) and str(name).endswith(".h5") and mode in ("w", "r+"):
        h5py.File = real_file
        fill(name)  # the disk fills as soon as HDF5 has the recording's file open for writing
    return f


if when == "start":
    h5py.File = hooked
store = Store(data_dir)
s = SampleStream("current", 10_000.0, 1, recent_s=1.0, history_s=100)
rec = recording.StreamRecorder(store, s, "power", "run", voltage=3.3)
x = np.full(1000, 3e-4, np.float32)
if when == "later":
    for _ in range(20):
        s.append(x)
    time.sleep(1.2)  # two flushes
    fill(rec.path)
t0 = time.monotonic()
while not rec.finished and time.monotonic() - t0 < 30:
    s.append(x)
    time.sleep(0.01)
row = rec.stop()  # stopped by itself: returns the row, does not raise
again = recording.open_power(store, row)  # the app opens it again in the same session
y = again._read(0, again.n_total)
print(json.dumps({"reason": rec.stop_reason, "status": row.status, "n": row.n_samples, "error": row.meta["error"],
                  "let_go": rec._stuck, "path": str(rec.path), "again": [again.n_total, y.tolist()]}))
sys.stdout.flush()
"""


def _run(tmp_path, when: str, room: int) -> dict:
    r = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path), when, str(room)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert (r.returncode, r.stderr) == (0, "")  # was: -11 after "Exception ignored in …ObjectID.__dealloc__"
    return json.loads(r.stdout)


def _reopened(tmp_path) -> tuple:
    """What the next start of the app finds: recover() (a row the full disk kept from its final update), then
    open_power; and a plain HDF5 reader opens the file (no write flags left)."""
    from app.core.recording import open_power, recover
    from app.core.store import Store

    store = Store(tmp_path)
    try:
        recover(store)
        (row,) = store.recordings("power")
        replay = open_power(store, row)
        y = replay._read(0, replay.n_total)
        with h5py.File(store.resolve(row.path), "r") as f:
            plain = len(f["current"])
        return row, replay.n_total, y, plain
    finally:
        store.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("room", [0, 100, 2000, 5000])
def test_power_recording_on_a_disk_that_fills_right_after_the_start_stops_cleanly(tmp_path, room):
    res = _run(tmp_path, "start", room)
    message = (
        f"disk full: the disk filled up while writing for {res['path']}; stopped writing after 0 samples "
        "(the file is complete up to there)"
    )
    assert (res["reason"], res["error"], res["status"], res["n"]) == (message, message, "recovered", 0)
    # nothing was flushed: the recording is shown as the row says, 0 samples (was: as many NaN positions -
    # a gap - as the failed write had left in the file, past the row's 0 samples)
    assert res["again"] == [0, []]
    row, n, y, plain = _reopened(tmp_path)
    assert (row.status, row.n_samples, n, y.size) == ("recovered", 0, 0, 0)
    assert plain >= 0  # (the file itself may hold such positions; a plain reader opens it)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("room", [0, 5000])
def test_power_recording_whose_flush_and_salvage_fail_keeps_what_was_flushed(tmp_path, room):
    res = _run(tmp_path, "later", room)
    n = res["n"]
    message = (
        f"disk full: the disk filled up while writing for {res['path']}; stopped writing after {n:,} samples "
        "(the file is complete up to there)"
    )
    assert (res["reason"], res["error"], res["status"]) == (message, message, "recovered")
    assert res["let_go"] is True  # the salvage's flush failed too: the file was let go of, not closed
    assert n >= 20_000 and n % 1000 == 0  # what the last good flush wrote: whole blocks
    assert res["again"] == [n, [np.float32(3e-4).item()] * n]  # opened again in the same session: every sample
    row, n_next, y, plain = _reopened(tmp_path)
    assert (row.status, row.n_samples, n_next, plain) == ("recovered", n, n, n)
    assert np.all(y == np.float32(3e-4))


@pytest.mark.parametrize(
    "exc, said",
    [
        (OSError(27, "File too large"), "File too large"),
        (OSError(122, "Disk quota exceeded"), "Disk quota exceeded"),
        (RuntimeError("Unable to start swmr writing"), "Unable to start swmr writing"),
    ],
)
def test_a_refused_start_is_said_in_the_systems_words_and_leaves_no_row(tmp_path, monkeypatch, exc, said):
    """Was: "cannot start the recording: [Errno 27] File too large" (Python's form of the error)."""
    import app.core.recording as recording
    from app.core.store import Store
    from app.core.streams import SampleStream

    def refuse(*_a, **_k):
        raise exc

    monkeypatch.setattr(recording, "start_hdf5", refuse)
    store = Store(tmp_path / "data")
    s = SampleStream("current", 10_000.0, 1, recent_s=1.0, history_s=100)
    with pytest.raises(recording.RecordingError) as err:
        recording.StreamRecorder(store, s, "power", "run", voltage=3.3)
    assert str(err.value) == f"cannot start the recording: {said}"
    assert store.recordings() == [] and not list((tmp_path / "data").rglob("*.h5"))
    store.close()


@pytest.mark.parametrize(
    "values, step, counted",
    [
        ([1e-3] * 10 + [np.nan] * 7, 4, 10),  # the NaN tail of a write that never reached the disk: not counted
        ([1e-3] * 3 + [np.nan] * 4 + [2e-3] + [np.nan] * 9, 4, 8),  # a gap inside is kept, the tail is not
        ([np.nan] * 9, 4, 0),  # nothing reached the disk
        ([1e-3] * 8, 4, 8),  # whole blocks, no tail
        ([1e-3] * 4 + [np.nan] * 4, 4, 4),  # the last sample ends a block
        ([1e-3] + [np.nan] * 20, 4, 1),  # several blocks of NaN read back to the first sample
        ([], 4, 0),
    ],
)
def test_recover_counts_a_crashed_power_file_up_to_its_last_sample(tmp_path, monkeypatch, values, step, counted):
    """Was: recover() counted every position of a crashed session's file, so a disk that filled during a write
    left a row of as many samples as the failed write's NaN fill — shown as a gap past what was recorded."""
    import app.core.recording as recording
    from app.core.store import Store

    monkeypatch.setattr(recording, "_without_nan_tail", functools.partial(recording._without_nan_tail, step=step))
    store = Store(tmp_path)
    path = tmp_path / "crashed.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("current", data=np.asarray(values, np.float32), maxshape=(None,), fillvalue=np.nan)
        f.attrs["rate_hz"] = 1000.0
    rid = store.add_recording("power", "crashed", str(path), 1000.0, 1).id
    store.close()
    store = Store(tmp_path)  # the next session
    try:
        (row,) = recording.recover(store)
        assert (row.id, row.status, row.n_samples) == (rid, "recovered", counted)
        replay = recording.open_power(store, row)
        assert replay.n_total == counted
        np.testing.assert_array_equal(replay._read(0, counted), np.asarray(values[:counted], np.float32))
    finally:
        store.close()
