"""Exact checks of how power captures are written to disk and repaired (device/lpm01a/recorder.py)."""

from __future__ import annotations

import errno
import math
import os
import shutil
import sys
import types
from pathlib import Path

import h5py
import numpy as np
import pytest

from device.lpm01a import recorder
from device.lpm01a.capture import Block
from device.lpm01a.decode import StreamEvent
from device.lpm01a.recorder import (
    DISK_RESERVE,
    CsvWriter,
    DiskFull,
    Hdf5Writer,
    Truncated,
    check_not_cut_short,
    clear_write_flags,
    fix_end_of_file,
    open_writer,
    read_capture,
    room_left,
    write_flags,
)

NAN = math.nan
posix = pytest.mark.skipif(sys.platform == "win32", reason="POSIX: resource limits, pread")
BIG = 1 << 40  # a disk with plenty of room


# --- helpers ------------------------------------------------------------------------------------------------
class _Room:
    """A fake ``room_left``: the bytes the disk has left, set by the test; records the paths asked about."""

    def __init__(self, room: int = BIG) -> None:
        self.room = room
        self.asked: list[Path] = []

    def __call__(self, path) -> int:
        self.asked.append(Path(path))
        return self.room


@pytest.fixture
def room(monkeypatch):
    fake = _Room()
    monkeypatch.setattr(recorder, "room_left", fake)
    return fake


@pytest.fixture
def frozen_clock(monkeypatch):
    """``time.monotonic`` as seen by the recorder stands still (and ``time.time`` is 1000.0)."""
    monkeypatch.setattr(recorder, "time", types.SimpleNamespace(monotonic=lambda: 50.0, time=lambda: 1000.0))


def _arr(*v: float) -> np.ndarray:
    return np.array(v, dtype=np.float64)


def _block(first: int, values, events=(), lost: int = 0, rate: float = 1000.0) -> Block:
    return Block(first, np.asarray(values, dtype=np.float64), rate, list(events), lost)


def _h5(tmp_path, name="cap.h5", **kw) -> Hdf5Writer:
    kw.setdefault("flush_s", 1e9)  # flushes only when the test says so
    kw.setdefault("start_time", 1_600_000_000.5)
    kw.setdefault("chunk", 16)
    return Hdf5Writer(tmp_path / name, 1000.0, **kw)


def _same(a, b) -> None:
    np.testing.assert_array_equal(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))


class _Proxy:
    """Forwards everything to ``real`` except what the test overrides."""

    def __init__(self, real) -> None:
        object.__setattr__(self, "_real", real)

    def __getattr__(self, name):
        return getattr(self._real, name)


class _FailingSamples(_Proxy):
    """The /samples dataset on a disk that refuses the data write (resizing still works)."""

    def __init__(self, real, exc: BaseException, resize_exc: BaseException | None = None) -> None:
        super().__init__(real)
        object.__setattr__(self, "exc", exc)
        object.__setattr__(self, "resize_exc", resize_exc)
        object.__setattr__(self, "resizes", [])

    @property
    def shape(self):
        return self._real.shape

    def resize(self, shape):
        self.resizes.append(tuple(shape))
        if self.resize_exc is not None and len(self.resizes) > 1:
            raise self.resize_exc
        self._real.resize(shape)

    def __setitem__(self, key, value):
        raise self.exc


# --- DiskFull ---------------------------------------------------------------------------------------------
def test_disk_full_message_says_what_the_file_holds():
    exc = DiskFull("/data/cap.h5", 1234567, 1_500_000)
    assert str(exc) == (
        f"disk full: only 1.5 MB left for {Path('/data/cap.h5')}; stopped writing after 1,234,567 samples "
        "(the file is complete up to there)"
    )
    assert exc.errno == errno.ENOSPC and exc.strerror == "disk full"
    assert exc.path == Path("/data/cap.h5") and exc.written == 1234567 and exc.room == 1_500_000
    assert exc.unit == "samples"


def test_disk_full_message_with_a_reason_and_unit():
    exc = DiskFull(Path("/d/x.csv"), 12.0, 7, "the disk filled up while writing", unit="rows")
    assert exc.written == 12 and isinstance(exc.written, int) and isinstance(exc.room, int)
    assert str(exc) == (
        f"disk full: the disk filled up while writing for {Path('/d/x.csv')}; stopped writing after 12 rows "
        "(the file is complete up to there)"
    )


def test_disk_full_before_starting_asks_to_free_space():
    exc = DiskFull("/d/x.h5", 0, 5, "only 0.0 MB free, not enough to start")
    assert str(exc) == (
        f"disk full: only 0.0 MB free, not enough to start {Path('/d/x.h5')} (free some space or choose another disk)"
    )


# --- room_left ----------------------------------------------------------------------------------------------
def _fake_statvfs(monkeypatch, bavail=1000, frsize=4096):
    asked = []

    def statvfs(where):
        asked.append(Path(where))
        return types.SimpleNamespace(f_bavail=bavail, f_frsize=frsize, f_bsize=1, f_bfree=999_999_999)

    monkeypatch.setattr(os, "statvfs", statvfs)
    return asked


def _fake_fsize_limit(monkeypatch, soft):
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda what: (soft, resource.RLIM_INFINITY))


@posix
def test_room_left_is_the_users_free_space_of_the_files_directory(tmp_path, monkeypatch):
    asked = _fake_statvfs(monkeypatch, bavail=1000, frsize=4096)
    _fake_fsize_limit(monkeypatch, __import__("resource").RLIM_INFINITY)
    new = tmp_path / "new.h5"
    assert room_left(new) == 4_096_000  # the file does not exist yet: its directory's file system
    new.write_bytes(b"x" * 10)
    assert room_left(str(new)) == 4_096_000
    assert asked == [tmp_path, new]


@posix
def test_room_left_is_capped_by_the_file_size_limit(tmp_path, monkeypatch):
    _fake_statvfs(monkeypatch, bavail=1000, frsize=4096)  # 4,096,000 bytes free
    _fake_fsize_limit(monkeypatch, 1_000_000)
    f = tmp_path / "cap.h5"
    assert room_left(f) == 1_000_000  # a new file may grow to the limit
    f.write_bytes(b"x" * 300_000)
    assert room_left(f) == 700_000  # minus what the file already holds
    f.write_bytes(b"x" * 1_200_000)
    assert room_left(f) == 0  # past the limit: no room, never negative
    _fake_fsize_limit(monkeypatch, 9_000_000)
    assert room_left(f) == 4_096_000  # the disk is the smaller limit


@posix
def test_room_left_ignores_a_directory_when_capping_by_the_limit(tmp_path, monkeypatch):
    _fake_statvfs(monkeypatch, bavail=1000, frsize=4096)
    _fake_fsize_limit(monkeypatch, 1_000_000)
    assert room_left(tmp_path) == 1_000_000  # a directory's own size is not a file's size


@posix
def test_room_left_when_the_limit_cannot_be_read(tmp_path, monkeypatch):
    import resource

    _fake_statvfs(monkeypatch, bavail=10, frsize=512)
    for exc in (OSError("no"), ValueError("no")):

        def broken(what, exc=exc):
            raise exc

        monkeypatch.setattr(resource, "getrlimit", broken)
        assert room_left(tmp_path / "a.h5") == 5120


@posix
def test_room_left_without_statvfs_uses_disk_usage(tmp_path, monkeypatch):
    asked = []

    def disk_usage(where):
        asked.append(Path(where))
        return types.SimpleNamespace(total=10**12, used=1, free=777_777)

    _fake_fsize_limit(monkeypatch, __import__("resource").RLIM_INFINITY)
    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    monkeypatch.delattr(os, "statvfs")  # Windows
    assert room_left(tmp_path / "a.h5") == 777_777

    def statvfs_fails(where):
        raise OSError(errno.ENOSYS, "no statvfs")

    monkeypatch.setattr(os, "statvfs", statvfs_fails, raising=False)
    assert room_left(tmp_path / "a.h5") == 777_777
    assert asked == [tmp_path, tmp_path]


def test_room_left_unknown_means_unlimited(tmp_path, monkeypatch):
    def fails(where):
        raise OSError(errno.EIO, "io")

    monkeypatch.setattr(os, "statvfs", fails)
    monkeypatch.setattr(shutil, "disk_usage", fails)
    assert room_left(tmp_path / "a.h5") == 1 << 62


def test_room_left_real_disk_is_an_int(tmp_path):
    r = room_left(tmp_path / "x.h5")
    assert type(r) is int and r > 0


# --- _write_error ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EFBIG, "x"),
        OSError(errno.EDQUOT, "x"),
        RuntimeError("Can't write data (file write failed: time = x, errno = 28, error message = 'y')"),
        RuntimeError("file write failed: errno = 27, error message = 'z'"),
        RuntimeError("file write failed: errno = 122, error message = 'z'"),
        ValueError("No space left"),
        RuntimeError("File too large"),
        OSError("No space left on device"),  # no errno, the words only
    ],
)
def test_write_error_recognises_no_room(exc):
    assert recorder._write_error(exc) is True


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.EIO, "Input/output error"),
        OSError(errno.EACCES, "Permission denied"),
        RuntimeError("file write failed: errno = 5, error message = 'io'"),
        RuntimeError("errno = 280, something"),
        ValueError("Not a dataset"),
        RuntimeError(""),
    ],
)
def test_write_error_other_failures_are_not_no_room(exc):
    assert recorder._write_error(exc) is False


# --- Hdf5Writer: the file's layout --------------------------------------------------------------------------
def test_hdf5_layout_and_attributes(tmp_path, room):
    w = Hdf5Writer(
        tmp_path / "cap.h5",
        2000,
        voltage_v=3,
        stream_format="ascii",
        port="/dev/ttyACM0",
        start_time=1_600_000_000.5,
        chunk=32,
        extra_attrs={"board": "nucleo", "gain": 2},
    )
    assert w.rate_hz == 2000.0 and type(w.rate_hz) is float
    assert w.flush_s == 1.0 and type(w.flush_s) is float
    assert w.reserve == DISK_RESERVE == 2_097_152 and w.check_space is True
    assert w.chunk_bytes == 256 and w.error is None and w.closed is False
    assert w.f.swmr_mode is True
    w.close()
    with h5py.File(tmp_path / "cap.h5", "r") as f:
        assert f.attrs["format"] == "odlstudio-lpm01a-capture" and int(f.attrs["version"]) == 1
        created = f.attrs["created"]
        assert created.endswith("+00:00") and created[:2] == "20"
        ds = f["samples"]
        assert ds.dtype == np.dtype("<f8") and ds.chunks == (32,) and ds.maxshape == (None,)
        assert math.isnan(ds.fillvalue)
        attrs = dict(ds.attrs)
        assert attrs == {
            "quantity": "current",
            "units": "A",
            "rate_hz": 2000.0,
            "first_index": 0,
            "time_definition": "t = (first_index + k + 1) / rate_hz seconds after start_time (sample k, 0-based)",
            "start_time_unix": 1_600_000_000.5,
            "start_time_iso": "2020-09-13T12:26:40.500000+00:00",
            "voltage_v": 3.0,
            "stream_format": "ascii",
            "port": "/dev/ttyACM0",
            "nan_means": "sample lost in transit (counted in /status[1])",
            "energy_note": "",
            "board": "nucleo",
            "gain": 2,
        }
        ev = f["events"]
        assert ev.shape == (0,) and ev.maxshape == (None,) and ev.chunks == (256,)
        assert ev.dtype.names == ("index", "time_s", "kind", "text", "value")
        assert ev.attrs["columns"] == "index: sample number before which the event occurred; time_s = index / rate_hz"
        assert f["status"].attrs["columns"] == "received, lost, next_index, finished"
        assert f["status"].dtype == np.dtype("int64")
        _same(f["status"][()], [0, 0, 0, 1])


def test_hdf5_energy_capture_units_and_unknown_voltage(tmp_path, room):
    w = _h5(tmp_path, output="energy")
    w.close()
    with h5py.File(tmp_path / "cap.h5", "r") as f:
        a = f["samples"].attrs
        assert a["quantity"] == "energy" and a["units"] == "J"
        assert a["energy_note"] == "output energy: each value is J over one sample period"
        assert math.isnan(a["voltage_v"])
        assert a["stream_format"] == "" and a["port"] == ""


def test_hdf5_start_time_defaults_to_now(tmp_path, room, frozen_clock):
    w = Hdf5Writer(tmp_path / "cap.h5", 1000.0)
    w.close()
    cap = read_capture(tmp_path / "cap.h5")
    assert cap["attrs"]["start_time_unix"] == 1000.0
    assert cap["attrs"]["start_time_iso"] == "1970-01-01T00:16:40+00:00"


def test_hdf5_status_before_any_flush_is_zero(tmp_path, room):
    w = _h5(tmp_path)
    with h5py.File(tmp_path / "cap.h5", "r", libver="latest", swmr=True) as f:
        assert f["samples"].shape == (0,)
        _same(f["status"][()], [0, 0, 0, 0])
    w.close()


def test_hdf5_refuses_to_start_without_room_for_the_reserve_and_a_chunk(tmp_path, room):
    room.room = 1_000_000 + 127
    with pytest.raises(DiskFull) as ei:
        Hdf5Writer(tmp_path / "cap.h5", 1000.0, chunk=16, reserve=1_000_000)
    assert str(ei.value) == (
        f"disk full: only 1.0 MB free, not enough to start {tmp_path / 'cap.h5'} (free some space or choose another disk)"
    )
    assert ei.value.written == 0 and ei.value.room == 1_000_127
    assert not (tmp_path / "cap.h5").exists()
    assert room.asked == [tmp_path / "cap.h5"]
    room.room = 1_000_128  # exactly enough
    Hdf5Writer(tmp_path / "cap.h5", 1000.0, chunk=16, reserve=1_000_000).close()


def test_hdf5_default_reserve_is_two_mebibytes(tmp_path, room):
    room.room = 2_097_152 + 65536 * 8 - 1
    with pytest.raises(DiskFull):
        Hdf5Writer(tmp_path / "cap.h5", 1000.0)
    room.room += 1
    Hdf5Writer(tmp_path / "cap.h5", 1000.0).close()


def test_hdf5_without_space_check_never_asks_for_room(tmp_path, room):
    room.room = 0
    w = _h5(tmp_path, check_space=False, reserve=10**9)
    assert w.check_space is False
    w.write(_block(0, [1.0, 2.0]))
    w.close()
    assert room.asked == []
    _same(read_capture(tmp_path / "cap.h5")["samples"], [1.0, 2.0])


# --- Hdf5Writer: samples, gaps, counts --------------------------------------------------------------------
def test_hdf5_samples_and_counts(tmp_path, room):
    w = _h5(tmp_path)
    w.write(_block(0, [1.0, NAN, 3.0], lost=1))
    w.write(_block(3, [4.0, 5.0]))
    assert (w.received, w.lost, w.next_index) == (4, 1, 5)
    w.close()
    cap = read_capture(tmp_path / "cap.h5")
    _same(cap["samples"], [1.0, NAN, 3.0, 4.0, 5.0])
    assert cap["status"] == {"received": 4, "lost": 1, "next_index": 5, "finished": 1}


def test_hdf5_first_block_late_is_padded_so_position_is_sample_number(tmp_path, room):
    w = _h5(tmp_path)
    w.write(_block(3, [], events=[StreamEvent("event", 3, "marker on")]))  # no samples: nothing padded yet
    w.write(_block(3, [7.0, 8.0]))
    w.write(_block(5, [9.0]))
    w.close()
    cap = read_capture(tmp_path / "cap.h5")
    _same(cap["samples"], [NAN, NAN, NAN, 7.0, 8.0, 9.0])
    assert cap["status"] == {"received": 3, "lost": 0, "next_index": 6, "finished": 1}
    assert [e["index"] for e in cap["events"]] == [3]


def test_hdf5_consumer_falling_behind_leaves_lost_positions(tmp_path, room):
    w = _h5(tmp_path)
    w.write(_block(0, [1.0, 2.0]))
    w.write(_block(2, []))  # nothing new
    w.write(_block(5, [3.0]))  # samples 2..4 missed (ring buffer overrun)
    w.write(_block(6, [4.0]))
    assert (w.received, w.lost, w.next_index) == (4, 3, 7)
    w.close()
    cap = read_capture(tmp_path / "cap.h5")
    _same(cap["samples"], [1.0, 2.0, NAN, NAN, NAN, 3.0, 4.0])
    assert cap["status"] == {"received": 4, "lost": 3, "next_index": 7, "finished": 1}


def test_hdf5_events_are_written_with_time_and_value(tmp_path, room):
    w = _h5(tmp_path)
    long_text = "x" * 1500
    w.write(
        _block(
            0,
            [1.0, 2.0, 3.0, 4.0],
            events=[
                StreamEvent("event", 2, "marker on", 1.0),
                StreamEvent("error", 4, long_text),
            ],
        )
    )
    w.write(_block(4, [5.0], events=[StreamEvent("end", 5, "end of stream", 0.0)]))
    w.close()
    ev = read_capture(tmp_path / "cap.h5")["events"]
    assert [(e["index"], e["time_s"], e["kind"], e["value"]) for e in ev[::2]] == [
        (2, 0.002, "event", 1.0),
        (5, 0.005, "end", 0.0),
    ]
    assert ev[0]["text"] == "marker on" and ev[2]["text"] == "end of stream"
    assert ev[1]["index"] == 4 and ev[1]["time_s"] == 0.004 and ev[1]["kind"] == "error"
    assert ev[1]["text"] == "x" * 1000  # cut at 1000 characters
    assert math.isnan(ev[1]["value"])  # no value
    assert all(type(e["kind"]) is str and type(e["text"]) is str for e in ev)


def test_hdf5_flushes_when_flush_s_has_elapsed(tmp_path, room, frozen_clock):
    """flush_s = 0: every write reaches the disk at once (elapsed 0 >= 0), even with a clock standing still."""
    w = _h5(tmp_path, flush_s=0)
    w.write(_block(0, [1.0, 2.0]))
    with h5py.File(tmp_path / "cap.h5", "r", libver="latest", swmr=True) as f:
        _same(f["samples"][()], [1.0, 2.0])
        _same(f["status"][()], [2, 0, 2, 0])
    w.close()


def test_hdf5_buffers_until_flush_s_has_elapsed(tmp_path, room, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(recorder, "time", types.SimpleNamespace(monotonic=lambda: clock[0], time=lambda: 0.0))
    w = _h5(tmp_path, flush_s=1.0)

    def on_disk():
        with h5py.File(tmp_path / "cap.h5", "r", libver="latest", swmr=True) as f:
            return f["samples"].shape[0]

    clock[0] = 100.9
    w.write(_block(0, [1.0]))
    assert on_disk() == 0
    clock[0] = 101.0
    w.write(_block(1, [2.0]))
    assert on_disk() == 2
    clock[0] = 101.5  # the last flush was at 101.0
    w.write(_block(2, [3.0]))
    assert on_disk() == 2
    w.close()
    assert on_disk() == 3


def test_hdf5_flush_not_finished_then_close_finished(tmp_path, room):
    w = _h5(tmp_path)
    w.write(_block(0, [1.0]))
    w.flush()
    assert read_capture(tmp_path / "cap.h5")["status"]["finished"] == 0
    w.flush(finished=True)
    assert read_capture(tmp_path / "cap.h5")["status"]["finished"] == 1
    w.close()


def test_hdf5_context_manager_closes(tmp_path, room):
    with _h5(tmp_path) as w:
        assert isinstance(w, Hdf5Writer)
        w.write(_block(0, [1.0]))
    assert w.closed is True
    assert write_flags(tmp_path / "cap.h5") == 0
    assert read_capture(tmp_path / "cap.h5")["status"]["finished"] == 1


def test_hdf5_close_twice_and_write_after_close_do_nothing(tmp_path, room):
    w = _h5(tmp_path, flush_s=0)
    w.write(_block(0, [1.0]))
    w.close()
    w.close()
    w.write(_block(1, [2.0]))
    w.flush()
    cap = read_capture(tmp_path / "cap.h5")
    _same(cap["samples"], [1.0])
    assert w.received == 1


# --- Hdf5Writer: full disk -----------------------------------------------------------------------------------
def test_hdf5_full_disk_writes_what_fits_and_stops(tmp_path, room):
    """reserve 1 MB, chunk 16 samples (128 B): with 1,000,208 B left, 80 B of samples fit = 10 samples."""
    path = tmp_path / "cap.h5"
    w = Hdf5Writer(path, 1000.0, chunk=16, reserve=1_000_000, flush_s=1e9)
    w.write(_block(0, [1.0, NAN, 3.0], lost=1))
    w.flush()
    vals = [float(k) for k in range(10, 30)]
    vals[2] = NAN
    vals[15] = NAN
    w.write(_block(3, vals, events=[StreamEvent("event", 5, "m")], lost=2))
    room.room = 1_000_000 + 128 + 80
    with pytest.raises(DiskFull) as ei:
        w.flush()
    exc = ei.value
    assert exc.written == 13 and exc.room == 1_000_208 and exc.unit == "samples"
    assert str(exc) == (
        f"disk full: only 1.0 MB left for {path}; stopped writing after 13 samples (the file is complete up to there)"
    )
    assert w.error is exc and w.samples_on_disk == 13
    assert (w.received, w.lost, w.next_index) == (11, 2, 13)
    w.write(_block(23, [5.0]))  # stopped: nothing more is kept
    w.flush()  # raises once only
    w.close()
    cap = read_capture(path)
    _same(cap["samples"], [1.0, NAN, 3.0, 10.0, 11.0, NAN, 13.0, 14.0, 15.0, 16.0, 17.0, 18.0, 19.0])
    assert cap["status"] == {"received": 11, "lost": 2, "next_index": 13, "finished": 2}
    assert cap["events"] == []  # the buffered events went with the samples that did not fit
    with h5py.File(path, "r") as f:  # a plain reader opens it
        assert f["samples"].shape == (13,)


def test_hdf5_full_disk_exactly_enough_room_writes_everything(tmp_path, room):
    w = Hdf5Writer(tmp_path / "cap.h5", 1000.0, chunk=16, reserve=1_000_000, flush_s=1e9)
    w.write(_block(0, [float(k) for k in range(20)]))
    room.room = 1_000_000 + 128 + 160  # 20 samples + one chunk
    w.flush()
    assert w.error is None and w.samples_on_disk == 20
    w.close()


def test_hdf5_full_disk_with_no_room_at_all_keeps_the_last_flush(tmp_path, room):
    path = tmp_path / "cap.h5"
    w = Hdf5Writer(path, 1000.0, chunk=16, reserve=1_000_000, flush_s=1e9)
    w.write(_block(0, [1.0, NAN, NAN, 4.0, 5.0], lost=2))
    w.flush()
    w.write(_block(5, [6.0, 7.0]))
    room.room = 1_000_000 + 100  # less than a chunk beyond the reserve
    with pytest.raises(DiskFull) as ei:
        w.flush()
    assert ei.value.written == 5 and ei.value.room == 1_000_100
    w.close()
    cap = read_capture(path)
    _same(cap["samples"], [1.0, NAN, NAN, 4.0, 5.0])
    assert cap["status"] == {"received": 3, "lost": 2, "next_index": 5, "finished": 2}


def test_hdf5_full_disk_below_the_reserve_reports_the_bytes_left(tmp_path, room):
    w = Hdf5Writer(tmp_path / "cap.h5", 1000.0, chunk=16, reserve=1_000_000, flush_s=1e9)
    w.write(_block(0, [1.0]))
    room.room = 0
    with pytest.raises(DiskFull) as ei:
        w.close()  # the last flush on close finds the disk full
    assert ei.value.room == 0 and ei.value.written == 0
    assert str(ei.value).startswith("disk full: only 0.0 MB left for ")
    assert w.closed is True
    w.close()
    assert read_capture(tmp_path / "cap.h5")["status"] == {"received": 0, "lost": 0, "next_index": 0, "finished": 2}


def test_hdf5_close_after_an_error_repairs_the_file(tmp_path, room, monkeypatch):
    calls = []

    def clear(path):
        calls.append(Path(path))
        raise ValueError("damaged")  # best effort: never hides the capture's own error

    monkeypatch.setattr(recorder, "clear_write_flags", clear)
    w = _h5(tmp_path)
    w.close()
    assert calls == []  # a clean capture needs no repair
    w = _h5(tmp_path, name="full.h5", reserve=0)
    w.write(_block(0, [1.0]))
    room.room = 0
    with pytest.raises(DiskFull):
        w.flush()
    w.close()
    assert calls == [tmp_path / "full.h5"]


def test_hdf5_close_error_is_reported_with_the_file(tmp_path, room):
    w = _h5(tmp_path)
    real = w.f

    class _F(_Proxy):
        def close(self):
            real.close()
            raise RuntimeError("no metadata")

    w.f = _F(real)
    with pytest.raises(OSError) as ei:
        w.close()
    assert str(ei.value) == f"closing {tmp_path / 'cap.h5'} failed: no metadata"
    assert isinstance(ei.value.__cause__, RuntimeError)
    assert w.error is ei.value.__cause__ and w.closed is True


def test_hdf5_close_error_after_a_full_disk_keeps_the_first_error(tmp_path, room, monkeypatch):
    monkeypatch.setattr(recorder, "clear_write_flags", lambda p: True)
    w = _h5(tmp_path, reserve=0)
    w.write(_block(0, [1.0]))
    room.room = 0
    with pytest.raises(DiskFull) as ei:
        w.flush()
    real = w.f

    class _F(_Proxy):
        def close(self):
            real.close()
            raise RuntimeError("no metadata")

    w.f = _F(real)
    w.close()  # no second error: the DiskFull already said it
    assert w.error is ei.value


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        RuntimeError("Can't write data (file write failed: errno = 27, error message = 'File too large')"),
    ],
)
def test_hdf5_write_failing_on_a_full_disk_salvages_the_last_flush(tmp_path, room, exc):
    path = tmp_path / "cap.h5"
    w = _h5(tmp_path)
    w.write(_block(0, [1.0, NAN, 3.0, NAN], lost=2))
    w.flush()
    w.write(_block(4, [5.0, 6.0], events=[StreamEvent("event", 5, "m")]))
    w.samples = _FailingSamples(w.samples, exc)
    with pytest.raises(DiskFull) as ei:
        w.flush()
    assert str(ei.value) == (
        f"disk full: the disk filled up while writing for {path}; stopped writing after 4 samples "
        "(the file is complete up to there)"
    )
    assert ei.value.written == 4 and ei.value.room == 0 and ei.value.__cause__ is exc
    assert w.error is exc
    assert w.samples.resizes == [(6,), (4,)]  # grown for the write, shrunk back by the salvage
    assert (w.received, w.lost, w.next_index) == (2, 2, 4)
    assert (w._buf, w._ev_buf) == ([], [])  # what could not be written is dropped
    w.flush()  # once only
    w.close()
    cap = read_capture(path)
    _same(cap["samples"], [1.0, NAN, 3.0, NAN])
    assert cap["status"] == {"received": 2, "lost": 2, "next_index": 4, "finished": 2}
    assert cap["events"] == []


@pytest.mark.parametrize("exc", [ValueError("bad selection"), RuntimeError("Can't write data (io error)")])
def test_hdf5_write_failing_otherwise_names_the_file(tmp_path, room, exc):
    w = _h5(tmp_path)
    w.write(_block(0, [1.0]))
    w.samples = _FailingSamples(w.samples, exc)
    with pytest.raises(OSError) as ei:
        w.flush()
    assert type(ei.value) is OSError
    assert str(ei.value) == f"writing {tmp_path / 'cap.h5'} failed: {exc}"
    assert ei.value.__cause__ is exc and w.error is exc
    w.close()
    assert read_capture(tmp_path / "cap.h5")["status"] == {"received": 0, "lost": 0, "next_index": 0, "finished": 2}


def test_hdf5_salvage_failing_too_still_reports_the_full_disk(tmp_path, room):
    w = _h5(tmp_path)
    w.write(_block(0, [1.0]))
    w.flush()
    w.write(_block(1, [2.0]))
    w.samples = _FailingSamples(w.samples, OSError(errno.ENOSPC, "full"), resize_exc=OSError(errno.ENOSPC, "full"))
    with pytest.raises(DiskFull) as ei:
        w.flush()
    assert ei.value.written == 1
    w.close()


def test_hdf5_other_exceptions_are_not_swallowed(tmp_path, room):
    w = _h5(tmp_path)
    w.write(_block(0, [1.0]))
    w.samples = _FailingSamples(w.samples, TypeError("bug"))
    with pytest.raises(TypeError, match="^bug$"):
        w.flush()
    assert w.error is None


# --- CSV --------------------------------------------------------------------------------------------------
HEADER_1K = "# odlstudio LPM01A capture, rate_hz=1000, current in A; empty value = lost sample\ntime_s,current_a\n"  # 99 characters
ROWS_1K = "0.0010,1.5000e+00\n0.0020,\n0.0030,-2.2500e-03\n"  # rows of 18, 8 and 19 characters


def test_csv_header_and_rows(tmp_path, room):
    p = tmp_path / "x.csv"
    with CsvWriter(p, 1000) as w:
        assert w.rate_hz == 1000.0 and w.max_bytes == 100_000_000 and w.capped is False
        w.write(_block(0, [1.5, NAN, -0.00225]))
        w.write(_block(3, []))
    assert w.fh.closed
    assert p.read_text() == HEADER_1K + ROWS_1K
    assert len(HEADER_1K) == 99
    assert w.rows == 3 and w.bytes == 144 and w.capped is False


def test_csv_energy_header(tmp_path, room):
    p = tmp_path / "x.csv"
    CsvWriter(p, 62.5, output="energy").close()
    assert p.read_text() == (
        "# odlstudio LPM01A capture, rate_hz=62.5, energy in J; empty value = lost sample\ntime_s,energy_j\n"
    )


@pytest.mark.parametrize(
    ("rate", "first", "row"),
    [
        (100_000.0, 0, "0.000010,1.0000e+00\n"),  # 6 decimals: ceil(log10(1e5)) + 1
        (50.0, 0, "0.020,1.0000e+00\n"),  # 3 decimals: ceil(log10(50)) + 1
        (10.0, 0, "0.10,1.0000e+00\n"),
        (2.0, 2, "1.50,1.0000e+00\n"),  # 2 decimals: ceil(log10(2)) + 1
        (1.0, 0, "1.0,1.0000e+00\n"),  # 1 Hz: one decimal
        (0.5, 0, "2.0,1.0000e+00\n"),  # slower than 1 Hz: one decimal
    ],
)
def test_csv_time_decimals_follow_the_rate(tmp_path, room, rate, first, row):
    p = tmp_path / "x.csv"
    with CsvWriter(p, rate) as w:
        w.write(_block(first, [1.0], rate=rate))
    assert p.read_text().split("\n", 2)[2] == row


def test_csv_stops_at_max_bytes_on_a_whole_row(tmp_path, room):
    p = tmp_path / "x.csv"
    w = CsvWriter(p, 1000, max_bytes=99 + 26)  # exactly two rows
    w.write(_block(0, [1.5, NAN, -0.00225]))
    assert w.capped is True and w.rows == 2 and w.error is None
    w.write(_block(3, [1.0]))  # capped: nothing more
    w.close()
    assert p.read_text() == HEADER_1K + "0.0010,1.5000e+00\n0.0020,\n"
    w2 = CsvWriter(tmp_path / "y.csv", 1000, max_bytes=99 + 25)  # one byte short of the second row
    w2.write(_block(0, [1.5, NAN, -0.00225]))
    w2.close()
    assert w2.rows == 1 and w2.capped is True
    assert (tmp_path / "y.csv").read_text() == HEADER_1K + "0.0010,1.5000e+00\n"


def test_csv_exactly_max_bytes_is_not_capped(tmp_path, room):
    w = CsvWriter(tmp_path / "x.csv", 1000, max_bytes=144)
    w.write(_block(0, [1.5, NAN, -0.00225]))
    assert w.capped is False and w.rows == 3
    w.close()


def test_csv_refuses_to_start_without_its_reserve(tmp_path, room):
    room.room = 262_143
    with pytest.raises(DiskFull) as ei:
        CsvWriter(tmp_path / "x.csv", 1000)
    assert str(ei.value) == (
        f"disk full: only 0.26 MB free, not enough to start {tmp_path / 'x.csv'} (free some space or choose another disk)"
    )
    assert ei.value.unit == "rows" and ei.value.room == 262_143 and ei.value.written == 0
    assert not (tmp_path / "x.csv").exists()
    room.room = 262_144
    CsvWriter(tmp_path / "x.csv", 1000).close()


def test_csv_full_disk_keeps_whole_rows_and_says_how_many(tmp_path, room):
    p = tmp_path / "x.csv"
    w = CsvWriter(p, 1000)
    room.room = 262_144 + 26  # room for two rows
    with pytest.raises(DiskFull) as ei:
        w.write(_block(0, [1.5, NAN, -0.00225]))
    exc = ei.value
    assert str(exc) == (
        f"disk full: only 0.3 MB left for {p}; stopped writing after 2 rows (the file is complete up to there)"
    )
    assert exc.written == 2 and exc.room == 262_170 and exc.unit == "rows"
    assert w.rows == 2 and w.capped is False and w.error is exc
    room.room = BIG
    w.write(_block(3, [1.0]))  # stopped: nothing more
    w.close()
    assert p.read_text() == HEADER_1K + "0.0010,1.5000e+00\n0.0020,\n"


def test_csv_full_disk_one_byte_short_of_a_row(tmp_path, room):
    p = tmp_path / "x.csv"
    w = CsvWriter(p, 1000)
    room.room = 262_144 + 25
    with pytest.raises(DiskFull) as ei:
        w.write(_block(0, [1.5, NAN, -0.00225]))
    assert ei.value.written == 1 and w.rows == 1
    w.close()
    assert p.read_text() == HEADER_1K + "0.0010,1.5000e+00\n"


def test_csv_full_disk_below_the_reserve(tmp_path, room):
    w = CsvWriter(tmp_path / "x.csv", 1000)
    room.room = 1000
    with pytest.raises(DiskFull) as ei:
        w.write(_block(0, [1.5]))
    assert ei.value.written == 0 and ei.value.room == 1000
    w.close()
    assert (tmp_path / "x.csv").read_text() == HEADER_1K


def test_csv_disk_with_exactly_room_for_the_rows(tmp_path, room):
    w = CsvWriter(tmp_path / "x.csv", 1000)
    room.room = 262_144 + 45
    w.write(_block(0, [1.5, NAN, -0.00225]))
    assert w.rows == 3 and w.error is None and w.capped is False
    w.close()


def test_csv_disk_smaller_than_the_cap_but_larger_than_the_rows(tmp_path, room):
    """The disk only matters when it is smaller than both the rows and what the cap still allows."""
    w = CsvWriter(tmp_path / "x.csv", 1000, max_bytes=99 + 20)
    room.room = 262_144 + 30  # room for 30 bytes; the cap allows 20
    w.write(_block(0, [1.5, NAN, -0.00225]))
    assert w.capped is True and w.error is None and w.rows == 1
    w.close()


class _FailingFile(_Proxy):
    """A CSV file handle on a disk that takes ``take`` more characters and then refuses."""

    def __init__(self, real, exc: OSError, take: int = 0, fileno: int | None = None) -> None:
        super().__init__(real)
        object.__setattr__(self, "exc", exc)
        object.__setattr__(self, "take", take)
        object.__setattr__(self, "_fileno", fileno)

    def write(self, text):
        self._real.write(text[: self.take])
        self._real.flush()
        raise self.exc

    def fileno(self):
        return self._real.fileno() if self._fileno is None else self._fileno


def test_csv_write_failing_on_a_full_disk_cuts_back_to_whole_rows(tmp_path, room):
    p = tmp_path / "x.csv"
    w = CsvWriter(p, 1000)
    w.write(_block(0, [1.5]))
    real = w.fh
    err = OSError(errno.ENOSPC, "No space left on device")
    w.fh = _FailingFile(real, err, take=11)  # half a row reached the disk
    with pytest.raises(DiskFull) as ei:
        w.write(_block(1, [2.0, 3.0]))
    assert str(ei.value) == (
        f"disk full: the disk filled up while writing for {p}; stopped writing after 1 rows "
        "(the file is complete up to there)"
    )
    assert ei.value.room == 0 and ei.value.__cause__ is err and w.error is err
    assert w.rows == 1 and w.bytes == 117
    w.write(_block(3, [4.0]))  # stopped
    real.close()
    assert p.read_text() == HEADER_1K + "0.0010,1.5000e+00\n"


def test_csv_write_failing_otherwise_is_raised_as_is(tmp_path, room):
    p = tmp_path / "x.csv"
    w = CsvWriter(p, 1000)
    real = w.fh
    err = OSError(errno.EIO, "Input/output error")
    w.fh = _FailingFile(real, err, take=5)
    with pytest.raises(OSError) as ei:
        w.write(_block(0, [1.5]))
    assert ei.value is err and w.error is err and w.rows == 0
    real.close()
    assert p.read_text() == HEADER_1K


def test_csv_cut_back_failing_too_still_reports_the_full_disk(tmp_path, room):
    w = CsvWriter(tmp_path / "x.csv", 1000)
    real = w.fh
    w.fh = _FailingFile(real, OSError(errno.ENOSPC, "full"), take=0, fileno=-1)
    with pytest.raises(DiskFull):
        w.write(_block(0, [1.5]))
    real.close()


def test_csv_close_error_is_ignored_and_close_is_idempotent(tmp_path, room):
    w = CsvWriter(tmp_path / "x.csv", 1000)
    real = w.fh
    calls = []

    class _F(_Proxy):
        @property
        def closed(self):
            return real.closed

        def close(self):
            calls.append(1)
            real.close()
            raise OSError(errno.EIO, "io")

    w.fh = _F(real)
    w.close()
    w.close()
    assert calls == [1]


def test_format_rows_exact():
    t = _arr(0.001, 0.0025, 12.0)
    v = _arr(3.14159e-4, NAN, 1e10)
    assert recorder._format_rows(t, v, 3) == "0.001,3.1416e-04\n0.003,\n12.000,1.0000e+10\n"


# --- open_writer ---------------------------------------------------------------------------------------------
def test_open_writer_chooses_the_format_by_suffix(tmp_path, room):
    for name in ("a.h5", "b.HDF5", "c.H5"):
        w = open_writer(tmp_path / name, 500, "energy", chunk=32, start_time=0.0)
        assert type(w) is Hdf5Writer and w.rate_hz == 500.0 and w.chunk_bytes == 256
        w.close()
        assert read_capture(tmp_path / name)["attrs"]["units"] == "J"
    w = open_writer(str(tmp_path / "d.CSV"), 250, "energy", csv_max_bytes=1234)
    assert type(w) is CsvWriter and w.max_bytes == 1234 and w.rate_hz == 250.0
    w.close()
    assert (tmp_path / "d.CSV").read_text().endswith("time_s,energy_j\n")
    w = open_writer(tmp_path / "e.csv", 250)
    assert w.max_bytes == 100_000_000
    w.close()
    assert (tmp_path / "e.csv").read_text().endswith("time_s,current_a\n")
    w = open_writer(tmp_path / "f.h5", 250)
    w.close()
    assert read_capture(tmp_path / "f.h5")["attrs"]["quantity"] == "current"


def test_open_writer_refuses_other_suffixes(tmp_path):
    with pytest.raises(ValueError) as ei:
        open_writer("out/cap.txt", 1000)
    assert str(ei.value) == (
        "--out 'out/cap.txt': unknown file type '.txt'; use .h5 (complete capture) or .csv (capped export)"
    )
    with pytest.raises(ValueError, match=r"^--out 'cap': unknown file type ''; use"):
        open_writer("cap", 1000)


# --- read_capture --------------------------------------------------------------------------------------------
def _capture_file(path, samples, status, events=()):
    with h5py.File(path, "w", libver="latest") as f:
        ds = f.create_dataset("samples", data=np.asarray(samples, np.float64))
        ds.attrs["units"] = np.bytes_(b"A")  # a fixed-length byte string, as other tools write it
        ds.attrs["rate_hz"] = 1000.0
        f.create_dataset("events", data=np.array(list(events), dtype=recorder._event_dtype()))
        f.create_dataset("status", data=np.array(status, np.int64))


def test_read_capture_returns_only_the_positions_status_vouches_for(tmp_path):
    p = tmp_path / "c.h5"
    _capture_file(p, [1.0, 2.0, 3.0, 4.0, 5.0], [2, 1, 3, 2], [(4, 0.004, "end", "done", 2.5)])
    cap = read_capture(p)
    _same(cap["samples"], [1.0, 2.0, 3.0])
    assert cap["attrs"] == {"units": "A", "rate_hz": 1000.0}
    assert cap["events"] == [{"index": 4, "time_s": 0.004, "kind": "end", "text": "done", "value": 2.5}]
    assert cap["status"] == {"received": 2, "lost": 1, "next_index": 3, "finished": 2}
    assert all(type(v) is int for v in cap["status"].values())
    p2 = tmp_path / "d.h5"
    _capture_file(p2, [1.0, 2.0], [9, 0, 9, 0])  # killed between writing /status and the samples
    _same(read_capture(p2)["samples"], [1.0, 2.0])


def test_read_capture_of_a_file_still_being_written(tmp_path, room):
    w = _h5(tmp_path)
    w.write(_block(0, [1.0, 2.0]))
    w.flush()
    cap = read_capture(tmp_path / "cap.h5")
    _same(cap["samples"], [1.0, 2.0])
    assert cap["status"] == {"received": 2, "lost": 0, "next_index": 2, "finished": 0}
    w.close()


def test_s_decodes_bytes_and_stringifies_the_rest():
    assert recorder._s(b"caf\xc3\xa9") == "café"
    assert recorder._s("x") == "x"
    assert recorder._s(np.str_("y")) == "y" and type(recorder._s(np.str_("y"))) is str


def test_event_dtype_is_built_once():
    d = recorder._event_dtype()
    assert recorder._event_dtype() is d
    assert d.names == ("index", "time_s", "kind", "text", "value")
    assert d["index"] == np.dtype("<i8") and d["time_s"] == np.dtype("<f8") and d["value"] == np.dtype("<f8")
    assert h5py.check_string_dtype(d["kind"]).encoding == "utf-8"
    assert h5py.check_string_dtype(d["text"]).encoding == "utf-8"


# --- lookup3: an independent reference, straight from Bob Jenkins' lookup3.c hashlittle ------------------------
def _ref_rot(x, k):
    return ((x << k) | (x >> (32 - k))) & 0xFFFFFFFF


def _ref_hashlittle(key: bytes, initval: int = 0) -> int:
    M = 0xFFFFFFFF
    length = len(key)
    a = b = c = (0xDEADBEEF + length + initval) & M
    k = 0
    while length > 12:  # all but the last block: affect some 32 bits of (a,b,c)
        a = (a + key[k] + (key[k + 1] << 8) + (key[k + 2] << 16) + (key[k + 3] << 24)) & M
        b = (b + key[k + 4] + (key[k + 5] << 8) + (key[k + 6] << 16) + (key[k + 7] << 24)) & M
        c = (c + key[k + 8] + (key[k + 9] << 8) + (key[k + 10] << 16) + (key[k + 11] << 24)) & M
        # mix(a, b, c)
        a = (a - c) & M
        a ^= _ref_rot(c, 4)
        c = (c + b) & M
        b = (b - a) & M
        b ^= _ref_rot(a, 6)
        a = (a + c) & M
        c = (c - b) & M
        c ^= _ref_rot(b, 8)
        b = (b + a) & M
        a = (a - c) & M
        a ^= _ref_rot(c, 16)
        c = (c + b) & M
        b = (b - a) & M
        b ^= _ref_rot(a, 19)
        a = (a + c) & M
        c = (c - b) & M
        c ^= _ref_rot(b, 4)
        b = (b + a) & M
        length -= 12
        k += 12
    if length == 0:  # case 0: return c (zero length strings require no mixing)
        return c
    # the switch with fall-through: byte j of the last block goes to a, b or c
    for j in range(length - 1, -1, -1):
        v = key[k + j] << (8 * (j % 4))
        if j >= 8:
            c = (c + v) & M
        elif j >= 4:
            b = (b + v) & M
        else:
            a = (a + v) & M
    # final(a, b, c)
    c ^= b
    c = (c - _ref_rot(b, 14)) & M
    a ^= c
    a = (a - _ref_rot(c, 11)) & M
    b ^= a
    b = (b - _ref_rot(a, 25)) & M
    c ^= b
    c = (c - _ref_rot(b, 16)) & M
    a ^= c
    a = (a - _ref_rot(c, 4)) & M
    b ^= a
    b = (b - _ref_rot(a, 14)) & M
    c ^= b
    c = (c - _ref_rot(b, 24)) & M
    return c


def test_lookup3_known_values():
    """lookup3.c's own self-test values (driver5) and the empty key."""
    assert recorder._lookup3(b"") == 0xDEADBEEF
    assert recorder._lookup3(b"", 0xDEADBEEF) == 0xBD5B7DDE
    assert recorder._lookup3(b"Four score and seven years ago", 0) == 0x17770551
    assert recorder._lookup3(b"Four score and seven years ago", 1) == 0xCD628161
    assert _ref_hashlittle(b"Four score and seven years ago", 1) == 0xCD628161
    assert _ref_hashlittle(b"Four score and seven years ago", 0) == 0x17770551


def test_lookup3_matches_the_reference_for_every_tail_length():
    rng = np.random.default_rng(7)
    for n in range(0, 50):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        for initval in (0, 1, 0x9E3779B9):
            assert recorder._lookup3(data, initval) == _ref_hashlittle(data, initval), (n, initval)
    ff = b"\xff" * 37  # every carry and wrap-around
    assert recorder._lookup3(ff, 0xFFFFFFFF) == _ref_hashlittle(ff, 0xFFFFFFFF)


def test_rot_is_a_32_bit_rotation():
    assert recorder._rot(0x80000001, 4) == 0x00000018
    assert recorder._rot(0x12345678, 16) == 0x56781234
    assert recorder._rot(0xF0000000, 31) == 0x78000000


# --- superblock: flags left by a killed writer --------------------------------------------------------------
def _flagged_copy(tmp_path, name="killed.h5", **file_kw) -> Path:
    """What ``kill -9`` leaves: the file as flushed by a writer still open (SWMR), its write flags set."""
    src, dst = tmp_path / f"live-{name}", tmp_path / name
    f = h5py.File(src, "w", libver="latest", **file_kw)
    f.create_dataset("samples", data=np.arange(5.0), maxshape=(None,), chunks=(4,))
    f.swmr_mode = True
    f.flush()
    shutil.copyfile(src, dst)
    f.close()
    return dst


def _sized_file(path, size: int, keep_open_copy: Path | None = None, lengths: int | None = None) -> None:
    """An HDF5 file (superblock v3) whose addresses take ``size`` bytes (lengths: ``lengths``, else the same)."""
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_sizes(size, size if lengths is None else lengths)
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    f = h5py.File(h5py.h5f.create(str(path).encode(), h5py.h5f.ACC_TRUNC, fcpl=fcpl, fapl=fapl))
    f["x"] = np.arange(5)
    f.flush()
    if keep_open_copy is not None:
        shutil.copyfile(path, keep_open_copy)
    f.close()


def test_killed_file_is_flagged_and_clearing_makes_it_open(tmp_path):
    p = _flagged_copy(tmp_path)
    assert write_flags(p) == 5  # open for write + open for SWMR write
    with pytest.raises(OSError):
        h5py.File(p, "r")
    assert clear_write_flags(str(p)) is True
    assert write_flags(p) == 0
    with h5py.File(p, "r") as f:  # HDF5 checks the superblock checksum we wrote
        _same(f["samples"][()], [0.0, 1.0, 2.0, 3.0, 4.0])
    assert clear_write_flags(p) is False  # nothing left to clear


def test_clear_write_flags_changes_only_the_flags_byte_and_checksum(tmp_path):
    p = _flagged_copy(tmp_path)
    before = p.read_bytes()
    clear_write_flags(p)
    after = p.read_bytes()
    assert len(after) == len(before)
    diff = [i for i in range(len(after)) if after[i] != before[i]]
    assert diff[0] == 11 and set(diff) <= {11, 44, 45, 46, 47}
    assert after[11] == 0
    assert after[44:48] == _ref_hashlittle(after[:44]).to_bytes(4, "little")


def test_clear_write_flags_with_a_user_block(tmp_path):
    for ub in (512, 1024, 2048, 4096, 8192):
        p = _flagged_copy(tmp_path, name=f"ub{ub}.h5", userblock_size=ub)
        assert write_flags(p) == 5, ub
        assert clear_write_flags(p) is True
        assert write_flags(p) == 0
        with h5py.File(p, "r") as f:
            assert f.userblock_size == ub and f["samples"].shape == (5,)


def test_clear_write_flags_superblock_version_2(tmp_path):
    src, dst = tmp_path / "v2.h5", tmp_path / "v2-killed.h5"
    with h5py.File(src, "w", libver=("v108", "v108")) as f:
        f["x"] = np.arange(4)
        f.flush()
        shutil.copyfile(src, dst)
    assert dst.read_bytes()[8] == 2
    assert write_flags(dst) == 1
    assert clear_write_flags(dst) is True
    with h5py.File(dst, "r") as f:
        _same(f["x"][()], [0, 1, 2, 3])


@pytest.mark.parametrize("size", [2, 4])
def test_clear_write_flags_small_addresses(tmp_path, size):
    p, killed = tmp_path / "s.h5", tmp_path / "s-killed.h5"
    _sized_file(p, size, keep_open_copy=killed)
    assert write_flags(p) == 0 and write_flags(killed) == 1
    assert clear_write_flags(killed) is True
    with h5py.File(killed, "r") as f:
        _same(f["x"][()], [0, 1, 2, 3, 4])


def test_write_flags_of_files_without_them(tmp_path):
    v0 = tmp_path / "v0.h5"
    with h5py.File(v0, "w") as f:  # the default, oldest format: superblock version 0
        f["x"] = 1
    assert write_flags(v0) is None
    big = tmp_path / "s16.h5"
    _sized_file(big, 16)
    assert write_flags(big) is None
    text = tmp_path / "t.h5"
    text.write_bytes(b"not an HDF5 file at all" * 1000)
    assert write_flags(text) is None
    short = tmp_path / "short.h5"
    short.write_bytes(b"\x89HDF\r\n\x1a\n\x03")
    assert write_flags(short) is None
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    assert write_flags(empty) is None


def test_find_superblock_reads_the_whole_superblock(tmp_path):
    p = _flagged_copy(tmp_path)
    base, block, flags = recorder._find_superblock(p)
    assert (base, flags, len(block)) == (0, 5, 48)
    assert block == p.read_bytes()[:48]
    small = tmp_path / "s4.h5"
    _sized_file(small, 4)
    base, block, flags = recorder._find_superblock(small)
    assert (base, flags, len(block)) == (0, 0, 32)  # 12 + 4 addresses of 4 bytes + the checksum
    assert block == small.read_bytes()[:32]


def test_find_superblock_of_a_truncated_superblock(tmp_path):
    """A 12-byte file that starts like a v3 superblock is found (and refused later by its checksum)."""
    p = tmp_path / "t.h5"
    p.write_bytes(b"\x89HDF\r\n\x1a\n\x03\x08\x08\x05")
    assert write_flags(p) == 5


def test_find_superblock_v0_first_means_none(tmp_path):
    """The first signature found decides: an old superblock at 0 is not searched past."""
    p = tmp_path / "mixed.h5"
    ok = _flagged_copy(tmp_path, name="ok.h5")
    good = ok.read_bytes()[:48]
    p.write_bytes(b"\x89HDF\r\n\x1a\n\x00\x00\x00\x00" + bytes(500) + good + bytes(100))
    assert write_flags(p) is None


def test_clear_write_flags_refuses_what_it_cannot_repair(tmp_path):
    text = tmp_path / "t.h5"
    text.write_bytes(b"hello" * 100)
    with pytest.raises(ValueError) as ei:
        clear_write_flags(text)
    assert str(ei.value) == f"{text}: not an HDF5 file with a version 2/3 superblock (nothing to clear)"
    p = _flagged_copy(tmp_path)
    data = bytearray(p.read_bytes())
    data[20] ^= 0x01  # one bit of the superblock flipped
    p.write_bytes(bytes(data))
    with pytest.raises(ValueError) as ei:
        clear_write_flags(p)
    assert str(ei.value) == f"{p}: the HDF5 superblock checksum is wrong (the file is damaged, not only flagged)"
    assert p.read_bytes() == bytes(data)  # untouched
    with pytest.raises(FileNotFoundError):
        clear_write_flags(tmp_path / "missing.h5")


@posix
def test_write_superblock_is_forced_to_disk(tmp_path, monkeypatch):
    p = _flagged_copy(tmp_path)
    seen = []
    real_fsync = os.fsync

    def fsync(fd):
        seen.append(os.pread(fd, 1, 11))  # the flags byte as the file holds it when it is synced
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    clear_write_flags(p)
    assert seen == [b"\x00"]


# --- fix_end_of_file ------------------------------------------------------------------------------------------
def _eof(path, base=0, size_o=8) -> int:
    """The end-of-file address the superblock (at ``base``) records."""
    data = Path(path).read_bytes()
    at = base + 12 + 2 * size_o
    return int.from_bytes(data[at : at + size_o], "little")


def _short_file(tmp_path, name="short.h5", missing=100, size_o=8, lengths=None, **kw) -> tuple[Path, int]:
    """A closed file whose superblock records an end ``missing`` bytes past the file's end (its last write
    failed on a full disk: the tail it allocated never reached the disk); returns it and its size.  The
    superblock is rewritten with the reference checksum."""
    p = tmp_path / name
    if size_o == 8 and lengths is None:
        with h5py.File(p, "w", libver="latest", **kw) as f:
            f["x"] = np.arange(5.0)
    else:
        _sized_file(p, size_o, lengths=lengths)
    data = bytearray(p.read_bytes())
    base = kw.get("userblock_size", 0)
    at = base + 12 + 2 * size_o
    size = len(data)
    assert int.from_bytes(data[at : at + size_o], "little") == size  # HDF5's end of file is absolute
    data[at : at + size_o] = (size + missing).to_bytes(size_o, "little")
    end = base + 12 + 4 * size_o
    data[end : end + 4] = _ref_hashlittle(bytes(data[base:end])).to_bytes(4, "little")
    p.write_bytes(bytes(data))
    return p, size


def _reads_back(p) -> None:
    with h5py.File(p, "r") as f:
        _same(f["x"][()], [0, 1, 2, 3, 4])


def test_fix_end_of_file_extends_a_short_file(tmp_path):
    p, size = _short_file(tmp_path)
    with pytest.raises(OSError, match="truncated file"):
        h5py.File(p, "r")
    assert fix_end_of_file(str(p)) is True
    assert p.stat().st_size == size + 100 and _eof(p) == size + 100  # grown (a hole), the superblock unchanged
    _reads_back(p)
    assert fix_end_of_file(p) is False


def _text_file(p: Path) -> Path:
    p.write_bytes(b"text" * 100)
    return p


def _cut_in_half(tmp_path, name: str, flagged: bool) -> tuple[Path, int]:
    """A file with a dataset of 4,000 values cut to half its size (a copy that stopped): what its header
    refers to lies past the cut.  ``flagged``: cut from a copy of a still-open (SWMR) writer."""
    p = tmp_path / name
    live = tmp_path / f"live-{name}"
    f = h5py.File(live, "w", libver="latest")
    f.create_dataset("samples", data=np.arange(4000.0), maxshape=(None,), chunks=(256,))
    if flagged:
        f.swmr_mode = True
    f.flush()
    shutil.copyfile(live, p)
    f.close()
    end = p.stat().st_size
    os.truncate(p, end // 2)
    return p, end


@pytest.mark.parametrize("flagged", [False, True])
def test_a_file_cut_short_is_refused_and_left_as_it_is(tmp_path, flagged):
    """Padding a file cut short with zeros (as for a failed last write) passed the zeros off as data: the
    recovery at the app's start and `odlstudio repair` both went through here."""
    p, end = _cut_in_half(tmp_path, "cut.h5", flagged)
    before = p.read_bytes()
    expected = (
        f"{p}: truncated: {len(before):,} bytes, its HDF5 header says it ends at {end:,} bytes; repair cannot "
        "restore the missing data"
    )
    for call in (check_not_cut_short, fix_end_of_file, clear_write_flags):
        with pytest.raises(Truncated) as e:
            call(p)
        assert str(e.value) == expected, call.__name__
        assert p.read_bytes() == before, call.__name__


def test_a_file_short_only_by_a_failed_last_write_passes_the_check(tmp_path):
    p, _size = _short_file(tmp_path)
    check_not_cut_short(p)  # nothing it refers to is missing: no exception, and no change
    assert fix_end_of_file(p) is True
    _reads_back(p)
    whole = tmp_path / "whole.h5"
    with h5py.File(whole, "w", libver="latest") as f:
        f["x"] = np.arange(3)
    check_not_cut_short(whole)
    with pytest.raises(ValueError, match="not an HDF5 file with a version 2/3 superblock"):
        check_not_cut_short(_text_file(tmp_path / "t.h5"))


def test_fix_end_of_file_leaves_a_whole_file_alone(tmp_path):
    for ub in (0, 1024):
        p = tmp_path / f"whole{ub}.h5"
        with h5py.File(p, "w", libver="latest", userblock_size=ub) as f:
            f["x"] = np.arange(5.0)
        before = p.read_bytes()
        assert fix_end_of_file(p) is False, ub
        assert clear_write_flags(p) is False, ub
        assert p.read_bytes() == before


def test_fix_end_of_file_with_a_user_block(tmp_path):
    """The recorded end of file counts the user block (an absolute address): the file grows back to it."""
    p, size = _short_file(tmp_path, userblock_size=1024)
    with pytest.raises(OSError, match="truncated file"):
        h5py.File(p, "r")
    assert clear_write_flags(p) is True  # no flags, but the end of file was fixed
    assert p.stat().st_size == size + 100 and _eof(p, base=1024) == size + 100
    _reads_back(p)


def _no_growing(monkeypatch, grow_fails: bool = True):
    def refuse(path, length):
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(os, "truncate", refuse if grow_fails else (lambda path, length: None))


def test_fix_end_of_file_lowers_the_address_when_the_file_may_not_grow(tmp_path, monkeypatch):
    p, size = _short_file(tmp_path)
    _no_growing(monkeypatch)
    assert fix_end_of_file(p) is True
    assert p.stat().st_size == size and _eof(p) == size
    _reads_back(p)  # HDF5 checks the checksum we wrote
    assert fix_end_of_file(p) is False


def test_fix_end_of_file_lowers_the_address_when_growing_did_not_work(tmp_path, monkeypatch):
    p, size = _short_file(tmp_path, userblock_size=512)
    _no_growing(monkeypatch, grow_fails=False)  # e.g. a file system that did not extend the file
    assert fix_end_of_file(p) is True
    assert p.stat().st_size == size and _eof(p, base=512) == size
    _reads_back(p)


def test_fix_end_of_file_small_addresses(tmp_path, monkeypatch):
    p, size = _short_file(tmp_path, size_o=4, missing=8)
    _no_growing(monkeypatch)
    assert fix_end_of_file(p) is True
    assert _eof(p, size_o=4) == size and p.stat().st_size == size
    _reads_back(p)


@pytest.mark.parametrize(("addr", "lengths"), [(4, 8), (8, 4), (2, 8)])
def test_fix_end_of_file_addresses_and_lengths_of_different_sizes(tmp_path, monkeypatch, addr, lengths):
    """The end of file is an address: its size is the superblock's size of offsets (byte 9), not of lengths."""
    p, size = _short_file(tmp_path, size_o=addr, lengths=lengths, missing=8)
    assert p.read_bytes()[9:11] == bytes([addr, lengths])
    _no_growing(monkeypatch)
    assert fix_end_of_file(p) is True
    assert _eof(p, size_o=addr) == size
    _reads_back(p)


@pytest.mark.parametrize(("addr", "lengths"), [(4, 8), (8, 4)])
def test_clear_write_flags_addresses_and_lengths_of_different_sizes(tmp_path, addr, lengths):
    p, killed = tmp_path / "s.h5", tmp_path / "s-killed.h5"
    _sized_file(p, addr, keep_open_copy=killed, lengths=lengths)
    assert write_flags(killed) == 1
    assert clear_write_flags(killed) is True
    assert write_flags(killed) == 0
    _reads_back(killed)


# --- more exact behaviour ---------------------------------------------------------------------------------
def test_disk_full_rounds_megabytes_to_one_decimal():
    assert str(DiskFull("/d/c.h5", 0, 450_000)).startswith(f"disk full: only 0.5 MB left for {Path('/d/c.h5')};")


def test_hdf5_refusal_rounds_megabytes_to_one_decimal(tmp_path, room):
    room.room = 450_000
    with pytest.raises(DiskFull, match=r"^disk full: only 0\.5 MB free, not enough to start "):
        Hdf5Writer(tmp_path / "cap.h5", 1000.0)


def test_csv_refusal_rounds_megabytes_to_two_decimals(tmp_path, room):
    room.room = 5000
    with pytest.raises(DiskFull, match=r"^disk full: only 0\.01 MB free, not enough to start "):
        CsvWriter(tmp_path / "x.csv", 1000.0)


@posix
def test_write_error_on_a_platform_without_edquot(monkeypatch):
    monkeypatch.delattr(errno, "EDQUOT")
    assert recorder._write_error(OSError(errno.ENOSPC, "x")) is True
    assert recorder._write_error(OSError("Permission denied")) is False  # no errno at all: not 'no room'


def test_event_dtype_built_from_scratch(monkeypatch):
    monkeypatch.setattr(recorder, "_EVENT_DTYPE", None)
    d = recorder._event_dtype()
    assert recorder._EVENT_DTYPE is d and recorder._event_dtype() is d
    assert d.names == ("index", "time_s", "kind", "text", "value")
    assert [d[k].str for k in ("index", "time_s", "value")] == ["<i8", "<f8", "<f8"]
    assert d["kind"].kind == "O" and d["text"].kind == "O"
    assert h5py.check_string_dtype(d["kind"]).encoding == "utf-8"
    assert h5py.check_string_dtype(d["text"]).encoding == "utf-8"


def test_hdf5_first_block_at_sample_one_is_padded(tmp_path, room):
    w = _h5(tmp_path)
    w.write(_block(1, [7.0]))
    w.close()
    _same(read_capture(tmp_path / "cap.h5")["samples"], [NAN, 7.0])


def test_hdf5_lost_samples_add_up_with_a_gap(tmp_path, room):
    w = _h5(tmp_path)
    w.write(_block(0, [NAN, 2.0], lost=1))
    w.write(_block(4, [5.0]))  # 2 positions missed
    assert (w.received, w.lost, w.next_index) == (2, 3, 5)
    w.close()


def test_hdf5_events_after_a_flush_keep_coming(tmp_path, room):
    w = _h5(tmp_path)
    w.write(_block(0, [1.0], events=[StreamEvent("event", 0, "a")]))
    w.flush()
    w.write(_block(1, [2.0], events=[StreamEvent("event", 1, "b")]))
    w.close()
    assert [e["text"] for e in read_capture(tmp_path / "cap.h5")["events"]] == ["a", "b"]


def test_hdf5_full_disk_counts_lost_over_every_flush(tmp_path, room):
    """Flushes of lost samples, an empty flush, then a full disk: /status counts each NaN once."""
    w = _h5(tmp_path, reserve=0)
    w.write(_block(0, [NAN, 2.0], lost=1))
    w.flush()
    w.write(_block(2, [NAN, 4.0], lost=1))
    w.flush()
    w.flush()  # nothing buffered
    w.write(_block(4, [5.0]))
    room.room = 0
    with pytest.raises(DiskFull):
        w.flush()
    assert (w.received, w.lost, w.next_index) == (2, 2, 4)
    w.close()
    assert read_capture(tmp_path / "cap.h5")["status"] == {"received": 2, "lost": 2, "next_index": 4, "finished": 2}


def test_hdf5_salvage_counts_lost_over_every_flush(tmp_path, room):
    w = _h5(tmp_path)
    w.write(_block(0, [NAN, 2.0], lost=1))
    w.flush()
    w.flush()
    w.write(_block(2, [NAN, 4.0], lost=1))
    w.flush()
    w.write(_block(4, [5.0]))
    w.samples = _FailingSamples(w.samples, OSError(errno.ENOSPC, "full"))
    with pytest.raises(DiskFull):
        w.flush()
    w.close()
    assert read_capture(tmp_path / "cap.h5")["status"] == {"received": 2, "lost": 2, "next_index": 4, "finished": 2}


def test_csv_full_disk_with_no_bytes_left(tmp_path, room):
    w = CsvWriter(tmp_path / "x.csv", 1000)
    room.room = 0
    with pytest.raises(DiskFull) as ei:
        w.write(_block(0, [1.5]))
    assert ei.value.room == 0 and ei.value.written == 0
    w.close()


def test_csv_rows_add_up_over_writes(tmp_path, room):
    w = CsvWriter(tmp_path / "x.csv", 1000, max_bytes=99 + 18 + 18 + 8)
    w.write(_block(0, [1.5]))
    w.write(_block(1, [1.5]))
    assert w.rows == 2
    w.write(_block(2, [NAN, 1.0]))  # the cap keeps one more row
    assert w.rows == 3 and w.capped is True
    w.close()


def test_read_capture_of_a_killed_capture_without_repair(tmp_path, room):
    """A file left by a killed writer (its write flags set) reads as it was last flushed."""
    w = _h5(tmp_path)
    w.write(_block(0, [1.0, NAN, 3.0], lost=1))
    w.flush()
    killed = tmp_path / "killed.h5"
    shutil.copyfile(tmp_path / "cap.h5", killed)
    w.close()
    assert write_flags(killed) == 5
    cap = read_capture(killed)
    _same(cap["samples"], [1.0, NAN, 3.0])
    assert cap["status"] == {"received": 2, "lost": 1, "next_index": 3, "finished": 0}
