"""Issue 13 item 2: a capture killed with ``kill -9`` must open in plain HDF5 readers (``h5py.File(p, "r")``,
HDFView, pandas, MATLAB), not only with ``swmr=True``.  ``odlstudio repair FILE`` clears the flags a killed
writer leaves; the app clears them for its own recordings at start-up (``recording.recover``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from tests.diskkit import ROOT

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT), QT_QPA_PLATFORM="offscreen")


def _kill_capture(out, min_bytes=600_000) -> None:
    """Start ``odlstudio power --out`` (virtual bench), SIGKILL it once its file holds ``min_bytes``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "power", "--duration", "60", "--freq", "100k", "--out", str(out), "--quiet"],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            if out.exists() and out.stat().st_size >= min_bytes:
                break
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def test_killed_cli_capture_opens_in_plain_readers_after_repair(tmp_path):
    from device.lpm01a.recorder import read_capture, write_flags

    out = tmp_path / "killed.h5"
    _kill_capture(out)
    assert write_flags(out)  # the kill left the file marked open for write...
    with pytest.raises(OSError, match="already open for write"):
        h5py.File(out, "r")  # ...so a plain reader refuses it (the reported bug)
    before = read_capture(out)  # what the SWMR reader sees: the reference
    r = subprocess.run(
        [sys.executable, "-m", "app.cli", "repair", "--settle", "0", str(out)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "write flags cleared" in r.stdout and "was interrupted" in r.stdout
    assert write_flags(out) == 0
    with h5py.File(out, "r") as f:  # a plain reader, as HDFView/pandas/MATLAB use
        x = f["samples"][()]
        status = f["status"][()]
    n = int(status[2])
    assert n > 50_000 and int(status[3]) == 0  # an interrupted capture, and how much it holds
    np.testing.assert_array_equal(x[:n], before["samples"])
    assert not np.any(x[:n] == 0.0)
    # repairing again changes nothing; a file that is not HDF5 is refused with its name
    r2 = subprocess.run(
        [sys.executable, "-m", "app.cli", "repair", str(out), str(tmp_path / "nope.h5")],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r2.returncode == 2 and "was not flagged" in r2.stdout
    assert "nope.h5: no such file" in r2.stderr and "Traceback" not in r2.stderr


def test_repair_refuses_a_file_still_being_written(tmp_path):
    from app.commands.repair import repair_file

    out = tmp_path / "live.h5"
    f = h5py.File(out, "w", libver="latest")
    f.create_dataset("samples", shape=(0,), maxshape=(None,), chunks=(16,))
    f.swmr_mode = True
    f.flush()
    try:
        with pytest.raises(ValueError, match="may still be writing"):
            repair_file(out, settle_s=60.0)
    finally:
        f.close()


_APP_CHILD = r"""
import sys, time
import numpy as np
from app.core.recording import StreamRecorder
from app.core.store import Store
from app.core.streams import SampleStream
store = Store(sys.argv[1])
s = SampleStream("current", 10_000.0, 1, recent_s=1.0, history_s=100)
rec = StreamRecorder(store, s, "power", "run", voltage=3.3)
print(rec.path, flush=True)
while True:
    s.append(np.full(1000, 2e-4, np.float32))
    time.sleep(0.01)
"""


def test_app_recording_killed_is_repaired_at_the_next_start(tmp_path):
    from app.core.recording import recover
    from app.core.store import Store
    from device.lpm01a.recorder import write_flags

    proc = subprocess.Popen(
        [sys.executable, "-c", _APP_CHILD, str(tmp_path)], cwd=ROOT, env=_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        path = proc.stdout.readline().strip()
        time.sleep(1.5)  # a few flushes (every 0.5 s)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    assert write_flags(path)
    store = Store(tmp_path)
    fixed = recover(store)
    assert [r.status for r in fixed] == ["recovered"]
    assert write_flags(path) == 0
    with h5py.File(path, "r") as f:  # plain reader
        y = f["current"][()]
    assert len(y) == fixed[0].n_samples > 0 and np.all(y == np.float32(2e-4))
    store.close()


def test_clear_write_flags_checksum_matches_hdf5(tmp_path):
    """The superblock checksum we write is HDF5's own (lookup3): a clean file's stored sum is reproduced."""
    from device.lpm01a.recorder import _find_superblock, _lookup3

    p = tmp_path / "clean.h5"
    with h5py.File(p, "w", libver="latest") as f:
        f["x"] = np.arange(10)
    _base, block, flags = _find_superblock(p)
    assert flags == 0 and _lookup3(block[:-4]) == int.from_bytes(block[-4:], "little")
