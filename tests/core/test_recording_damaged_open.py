"""Opening a power file that is cut short or damaged (the Power panel's Open…, ``open_power``).

Was: the app read every power file with an SWMR reader, which retries a metadata read whose checksum fails for
minutes on end: Open… of a capture cut short (a copy that stopped) or with a damaged header froze the app's
GUI thread for more than five minutes; a damaged object header raised HDF5's RuntimeError past the panel's
handler; a capture of the older HDF5 format cut short said "truncated file: eof = …, sblock->base_addr = 0,
stored_eof = …"."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from app.core.recording import RecordingError, StreamRecorder, open_power, power_file_info
from app.core.store import Store
from app.core.streams import SampleStream
from device.lpm01a.recorder import recorded_end, write_flags

DAMAGED = "its HDF5 structure is damaged: the file was changed, or not copied whole"


def _recording(tmp_path: Path, killed: bool = False) -> Path:
    """A finished app power recording (40,000 samples at 10 kS/s), or (``killed``) a copy of one taken while
    it was written, its writer's flags still set (what a crash leaves)."""
    store = Store(tmp_path / "data")
    s = SampleStream("current", 10_000.0, 1, recent_s=1.0, history_s=100)
    rec = StreamRecorder(store, s, "power", "run", voltage=3.3)
    for _ in range(40):
        s.append(np.full(1000, 2e-4, np.float32))
    out = tmp_path / "copy.h5"
    if killed:
        for _ in range(100):  # until a flush has put the samples on disk
            if rec.n_written == 40_000:
                break
            time.sleep(0.05)
        time.sleep(0.6)
        shutil.copyfile(rec.path, out)
    row = rec.stop()
    if not killed:
        shutil.copyfile(store.resolve(row.path), out)
    store.close()
    return out


def _open_in_a_child(fn: str, path: Path, *store: Path) -> str:
    """``app.core.recording.<fn>(path)`` (or ``<fn>(Store(store), path)``) in a child process: what it raised (``type: message``) or
    ``ok``; the test fails when it takes longer than 20 s (h5py holds the GIL while an SWMR reader retries, so
    a thread could not time it out: the GUI thread was frozen)."""
    code = (
        "import sys\n"
        "from app.core import recording\n"
        "from app.core.store import Store\n"
        "fn, path, store = getattr(recording, sys.argv[1]), sys.argv[2], sys.argv[3:]\n"
        "try:\n"
        "    fn(Store(store[0]), path) if store else fn(path)\n"
        "    print('ok')\n"
        "except Exception as exc:\n"
        "    print(f'{type(exc).__name__}: {exc}')\n"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code, fn, str(path), *map(str, store)],
            capture_output=True,
            text=True,
            timeout=20,
            cwd=Path(__file__).resolve().parents[2],
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{fn}({path}) still reading after 20 s (the GUI thread would be frozen)")
    return out.stdout.strip() or out.stderr.strip()[-500:]


@pytest.mark.parametrize("killed", [False, True], ids=["finished", "killed_writer"])
@pytest.mark.parametrize("keep", [0.5, 1000], ids=["half", "1000_bytes"])
def test_a_power_file_cut_short_is_refused_at_once(tmp_path, keep, killed):
    path = _recording(tmp_path, killed)
    assert bool(write_flags(path)) is killed
    end = recorded_end(path)[1]
    size = int(path.stat().st_size * keep) if keep < 1 else keep
    os.truncate(path, size)
    said = f"cannot open power file {path}: the file is cut short: {size:,} of its {end:,} bytes (copy it again)"
    assert _open_in_a_child("power_file_info", path) == f"RecordingError: {said}"
    # the panel's Open…: register_power_file(store, path)
    assert _open_in_a_child("register_power_file", path, tmp_path / "other") == f"RecordingError: {said}"


@pytest.mark.parametrize("offset", [48, 200, 300, 400])
def test_a_power_file_with_a_damaged_header_is_refused_at_once(tmp_path, offset):
    """Bytes 300 and 400: the SWMR reader retried for minutes; 48 and 200: HDF5's RuntimeError "Can't deserialize
    object header prefix (bad object header version number)" escaped."""
    path = _recording(tmp_path)
    data = bytearray(path.read_bytes())
    data[offset : offset + 64] = b"\x55" * 64
    path.write_bytes(bytes(data))
    said = f"{path}: not a readable power recording ({DAMAGED})"
    assert _open_in_a_child("power_file_info", path) == f"RecordingError: {said}"


def test_an_older_format_capture_cut_short_says_so_in_words(tmp_path):
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as f:  # HDF5's default (version 0) superblock, as other tools write
        f["samples"] = np.full(200_000, 1e-3)
        f["samples"].attrs["rate_hz"] = 1000.0
    end = path.stat().st_size
    os.truncate(path, end // 2)
    with pytest.raises(RecordingError) as err:
        power_file_info(path)
    assert str(err.value) == (
        f"cannot open power file {path}: the file is cut short: {end // 2:,} of its {end:,} bytes (copy it again)"
    )


def test_whole_and_live_recordings_still_open(tmp_path):
    """The plain reader for a finished file, SWMR for one being written: both read every sample."""
    path = _recording(tmp_path)
    assert power_file_info(path)["n"] == 40_000
    store = Store(tmp_path / "live")
    s = SampleStream("current", 10_000.0, 1, recent_s=1.0, history_s=100)
    rec = StreamRecorder(store, s, "power", "live", voltage=3.3)
    s.append(np.full(5000, 1e-3, np.float32))
    for _ in range(100):
        if rec.n_written == 5000:
            break
        time.sleep(0.05)
    time.sleep(0.6)
    assert write_flags(rec.path)  # being written
    assert power_file_info(rec.path)["n"] >= 5000
    row = rec.stop()
    replay = open_power(store, row)
    assert replay.n_total == 5000
    store.close()
