"""How an HDF5 capture file is started and, after a failed flush, let go of (device/lpm01a/recorder.py:
``start_hdf5``, ``_write_start``, ``let_go``, ``_divert_to_null``, ``Hdf5Writer._let_go``), in process and byte for
byte.  The end-to-end behaviour (a disk that fills within milliseconds of the start: no crash) is tested in child
processes by tests/core/test_cli_rough_edges_3.py and tests/core/test_app_power_disk_fills.py; these tests are
the mutation target ``recorder``'s (benchmarks/mutation.py)."""

from __future__ import annotations

import errno
import io
import os
import sys
import types
from pathlib import Path

import h5py
import numpy as np
import pytest

from device.lpm01a import recorder
from device.lpm01a.capture import Block
from device.lpm01a.recorder import START_BYTES, Hdf5Writer, let_go, start_hdf5

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")


def _layout(f: h5py.File) -> None:
    f.create_dataset("x", shape=(0,), maxshape=(None,), dtype="<f4", chunks=(16,))
    f.attrs["who"] = "test"


def _image() -> bytes:
    memory = io.BytesIO()
    with h5py.File(memory, "w", libver="latest") as f:
        _layout(f)
    return memory.getvalue()


class _Spy:
    """Records the recorder's os.write / os.fsync / os.ftruncate calls; ``cap`` bytes per write call, ``refuse_after``
    total bytes (then ENOSPC)."""

    def __init__(self, monkeypatch, cap: int | None = None, refuse_after: int | None = None) -> None:
        self.calls: list[tuple] = []
        self.cap, self.refuse_after, self.total = cap, refuse_after, 0
        real_write, real_fsync, real_truncate = os.write, os.fsync, os.ftruncate

        def write(fd, data):
            data = bytes(data)[: self.cap] if self.cap else bytes(data)
            if self.refuse_after is not None and self.total + len(data) > self.refuse_after:
                raise OSError(errno.ENOSPC, "No space left on device")
            n = real_write(fd, data)
            self.total += n
            self.calls.append(("write", n))
            return n

        def fsync(fd):
            self.calls.append(("fsync", os.fstat(fd).st_size))
            return real_fsync(fd)

        def ftruncate(fd, size):
            self.calls.append(("ftruncate", size))
            return real_truncate(fd, size)

        monkeypatch.setattr(
            recorder,
            "os",
            types.SimpleNamespace(**{**vars(os), "write": write, "fsync": fsync, "ftruncate": ftruncate}),
        )


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("pad", [0, 100, START_BYTES])
def test_start_writes_the_layout_padded_synced_then_cut_back(tmp_path, monkeypatch, pad):
    spy = _Spy(monkeypatch)
    image = _image()
    path = tmp_path / "c.h5"
    f = start_hdf5(path, _layout, pad)
    try:
        want = max(pad, len(image))
        assert spy.total == want
        assert spy.calls[-2:] == [("fsync", want), ("ftruncate", len(image))]  # synced at full length, then cut
        assert path.stat().st_size == len(image)
        raw = path.read_bytes()  # the layout; opening it r+ set only the superblock's write flags (48 bytes)
        assert raw[48:] == image[48:] and raw[:8] == image[:8]
        assert f.mode == "r+"
        assert f.attrs["who"] == "test" and f["x"].shape == (0,) and f["x"].maxshape == (None,)
    finally:
        f.close()


def test_start_writes_everything_when_the_os_takes_it_in_small_parts(tmp_path, monkeypatch):
    spy = _Spy(monkeypatch, cap=1000)
    image = _image()
    f = start_hdf5(tmp_path / "c.h5", _layout, 5000)
    f.close()
    assert [c for c in spy.calls if c[0] == "write"] == [("write", 1000)] * 5
    assert (tmp_path / "c.h5").read_bytes()[: len(image)] == image


def test_start_replaces_a_longer_file_that_was_there(tmp_path):
    path = tmp_path / "c.h5"
    path.write_bytes(b"\x01" * 200_000)
    start_hdf5(path, _layout, 0).close()
    assert path.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
    with h5py.File(path, "r") as f:
        assert f.attrs["who"] == "test"


@linux
def test_a_disk_that_refuses_the_start_raises_a_plain_os_error_and_holds_no_descriptor(tmp_path, monkeypatch):
    _Spy(monkeypatch, refuse_after=len(_image()) + 10)
    before = _fds()
    with pytest.raises(OSError) as exc:
        start_hdf5(tmp_path / "c.h5", _layout, START_BYTES)
    assert exc.value.errno == errno.ENOSPC
    assert _fds() == before  # the descriptor was closed; no HDF5 handle exists


def test_a_new_file_gets_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        start_hdf5(tmp_path / "c.h5", _layout, 0).close()
    finally:
        os.umask(old)
    assert (tmp_path / "c.h5").stat().st_mode & 0o777 == 0o644


@linux
def test_let_go_keeps_the_handles_and_points_the_descriptor_at_the_null_device(tmp_path):
    f = start_hdf5(tmp_path / "c.h5", _layout, 0)
    ds = f["x"]
    fd = f.id.get_vfd_handle()
    before = _fds()
    let_go(f, [ds, None])
    assert f.id.locked and ds.id.locked
    assert os.readlink(f"/proc/self/fd/{fd}") == "/dev/null"
    assert _fds() == before  # the null device's own descriptor is closed again
    # (f and ds are never released: HDF5 holds the file until the test process ends)


@linux
@pytest.mark.parametrize("handle", [2, 1, 0, "3", None])
def test_the_diversion_leaves_the_standard_streams_and_odd_handles_alone(handle):
    streams = [os.readlink(f"/proc/self/fd/{i}") for i in (0, 1, 2)]
    before = _fds()
    recorder._divert_to_null(types.SimpleNamespace(id=types.SimpleNamespace(get_vfd_handle=lambda: handle)))
    assert [os.readlink(f"/proc/self/fd/{i}") for i in (0, 1, 2)] == streams
    assert _fds() == before


def test_the_diversion_of_a_file_without_a_descriptor_does_nothing():
    def no_handle():
        raise ValueError("not a sec2 file")

    recorder._divert_to_null(types.SimpleNamespace(id=types.SimpleNamespace(get_vfd_handle=no_handle)))


@linux
def test_a_writer_let_go_of_rewrites_its_status_in_place(tmp_path, monkeypatch):
    """When HDF5 can no longer flush the file, the close lets it go and writes /status's four numbers (received,
    lost, next position on disk, finished = 2) at their place in the file, byte for byte."""
    monkeypatch.setattr(recorder, "room_left", lambda path: 1 << 40)
    path = tmp_path / "cap.h5"
    w = Hdf5Writer(path, 1000.0, flush_s=1e9, chunk=16)
    w.write(Block(0, np.arange(10, dtype=np.float64), 1000.0, [], 0))
    w.flush()
    at = w._status_at
    w.received, w.lost, w._on_disk = 123, 4, 10
    w._stuck = True
    w.close()
    raw = path.read_bytes()
    assert np.frombuffer(raw[at : at + 32], "<i8").tolist() == [123, 4, 10, 2]
    assert w.closed
    assert not {"samples", "events", "status"} & set(vars(w))  # the handles were handed to let_go


def test_the_started_file_uses_the_latest_file_format(tmp_path):
    """libver "latest" (SWMR needs it): a file opened without it would start at the earliest format."""
    f = start_hdf5(tmp_path / "c.h5", _layout, 0)
    try:
        assert f.libver[0] != "earliest"
    finally:
        f.close()


@linux
def test_the_diversion_takes_descriptor_3_too(tmp_path):
    """The first descriptor a process opens after the standard streams is 3: HDF5's may well be it."""
    saved = os.dup(3) if "3" in _fds() else None
    target = os.open(tmp_path / "x", os.O_WRONLY | os.O_CREAT)
    try:
        os.dup2(target, 3)
        recorder._divert_to_null(types.SimpleNamespace(id=types.SimpleNamespace(get_vfd_handle=lambda: 3)))
        assert os.readlink("/proc/self/fd/3") == "/dev/null"
    finally:
        os.close(target)
        if saved is not None:
            os.dup2(saved, 3)
            os.close(saved)
        else:
            os.close(3)


def _writer(path, monkeypatch) -> Hdf5Writer:
    monkeypatch.setattr(recorder, "room_left", lambda p: 1 << 40)
    return Hdf5Writer(path, 1000.0, flush_s=1e9, chunk=16)


@pytest.mark.parametrize("there", [False, True])
def test_a_new_capture_file_is_test_written_to_64_kib_and_one_that_was_there_is_not(tmp_path, monkeypatch, there):
    path = tmp_path / "cap.h5"
    if there:
        path.write_bytes(b"old")
    spy = _Spy(monkeypatch)
    w = _writer(path, monkeypatch)
    try:
        ends = [c for c in spy.calls if c[0] == "ftruncate"]
        assert len(ends) == 1
        layout = ends[0][1]
        assert spy.total == (layout if there else START_BYTES) and layout < START_BYTES
    finally:
        w.close()


@pytest.mark.parametrize("there", [False, True])
def test_a_refused_start_says_why_and_removes_only_a_file_it_made(tmp_path, monkeypatch, there):
    path = tmp_path / "cap.h5"
    if there:
        path.write_bytes(b"old")

    def refuse(p, build, pad):
        Path(p).write_bytes(b"half")
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(recorder, "start_hdf5", refuse)
    with pytest.raises(recorder.CannotWrite) as exc:
        _writer(path, monkeypatch)
    assert str(exc.value) == f"cannot write {path}: read-only file system"
    assert (exc.value.path, exc.value.reason) == (path, "read-only file system")
    assert path.exists() == there


@pytest.mark.parametrize("there", [False, True])
def test_a_first_hdf5_write_that_fails_says_why_and_removes_only_a_file_it_made(tmp_path, monkeypatch, there):
    path = tmp_path / "cap.h5"
    if there:
        path.write_bytes(b"old")
    closed = []

    def refuse(self, chunk):
        self.samples = "a handle"
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(Hdf5Writer, "_start", refuse)
    real_close = h5py.File.close
    monkeypatch.setattr(h5py.File, "close", lambda f: (closed.append(f.filename), real_close(f)))
    with pytest.raises(recorder.CannotWrite) as exc:
        _writer(path, monkeypatch)
    assert str(exc.value) == f"cannot write {path}: input/output error"
    assert (exc.value.path, exc.value.reason) == (path, "input/output error")
    assert closed.count(str(path)) == 1  # the file HDF5 had open was closed (its first write failed, not a flush)
    assert path.exists() == there


def test_a_salvage_whose_flush_fails_marks_the_file_stuck(tmp_path, monkeypatch):
    w = _writer(tmp_path / "cap.h5", monkeypatch)
    assert w._stuck is False
    real_flush = w.f.flush

    def fail():
        raise RuntimeError("file write failed")

    w.f.flush = fail
    w._salvage()
    assert w._stuck is True
    w.f.flush = real_flush
    w._stuck = False
    w.close()


# --- _refusal: the disk's reason in plain words ---------------------------------------------------------------
@pytest.mark.parametrize(
    "exc, where, said",
    [
        (OSError(errno.EROFS, "Read-only file system"), "here", "read-only file system"),
        (OSError(errno.EROFS, "Read-only file system"), "missing", "read-only file system"),  # not "no folder"
        (OSError(errno.ENOENT, "No such file"), "missing", "the folder {parent} does not exist"),
        (OSError(errno.ENOENT, "No such file"), "here", "no such file or directory"),
        (OSError(errno.EISDIR, "Is a directory"), "here", "it is a folder"),
        (OSError(errno.EACCES, "Permission denied"), "folder", "it is a folder"),
        (OSError("no errno at all"), "here", "the disk refused the write"),
        (
            RuntimeError("Unable to create file (unable to open file: name = 'x', errno = 13, error message = 'P')"),
            "here",
            "permission denied",
        ),
        (
            RuntimeError("Unable to create file (errno = 28, error message = 'No space')"),
            "here",
            "no space left on device",
        ),
        (RuntimeError("Unable to start swmr writing (file write failed)"), "here", "the disk refused the write"),
        (ValueError("errno = 5, in a library's words"), "here", "input/output error"),
    ],
)
def test_the_refusal_is_the_systems_reason_in_plain_words(tmp_path, exc, where, said):
    path = {"here": tmp_path / "c.h5", "missing": tmp_path / "no" / "c.h5", "folder": tmp_path}[where]
    assert recorder._refusal(path, exc) == said.format(parent=path.parent)


def test_a_cannot_write_names_the_file_and_the_reason(tmp_path):
    exc = recorder.CannotWrite(tmp_path / "c.h5", "read-only file system")
    assert str(exc) == f"cannot write {tmp_path / 'c.h5'}: read-only file system"


# --- the CSV writer's refused start -----------------------------------------------------------------------------
@pytest.mark.parametrize("there", [False, True])
def test_a_csv_capture_whose_first_write_is_refused_says_why_and_removes_only_a_file_it_made(
    tmp_path, monkeypatch, there
):
    monkeypatch.setattr(recorder, "room_left", lambda p: 1 << 40)
    path = tmp_path / "cap.csv"
    if there:
        path.write_bytes(b"old")

    def refuse(self, text):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(recorder.CsvWriter, "_put", refuse)
    with pytest.raises(recorder.CannotWrite) as exc:
        recorder.CsvWriter(path, 1000.0)
    assert str(exc.value) == f"cannot write {path}: disk quota exceeded"
    assert (exc.value.path, exc.value.reason) == (path, "disk quota exceeded")
    assert path.exists() == there


def test_a_csv_capture_that_cannot_be_opened_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(recorder, "room_left", lambda p: 1 << 40)
    path = tmp_path / "no" / "cap.csv"
    with pytest.raises(recorder.CannotWrite) as exc:
        recorder.CsvWriter(path, 1000.0)
    assert str(exc.value) == f"cannot write {path}: the folder {path.parent} does not exist"
    assert (exc.value.path, exc.value.reason) == (path, f"the folder {path.parent} does not exist")


# --- _PaddedView: the file as the repair would leave it, read without changing it ------------------------------
def _view_file(tmp_path) -> tuple[Path, bytes]:
    data = bytes(range(256)) * 2  # 512 bytes
    path = tmp_path / "v.h5"
    path.write_bytes(data)
    return path, data


def _repaired(data: bytes, base: int, body: bytes, end: int) -> bytes:
    unflagged = body[:11] + b"\x00" + body[12:]
    block = unflagged + recorder._lookup3(unflagged).to_bytes(4, "little")
    whole = bytearray(data + bytes(max(0, end - len(data))))
    whole[base : base + len(block)] = block
    return bytes(whole)


@pytest.mark.parametrize("base", [0, 100])
def test_the_padded_view_reads_the_repaired_file_without_changing_it(tmp_path, base):
    path, data = _view_file(tmp_path)
    body = bytes([0xAA]) * 44
    want = _repaired(data, base, body, 600)
    view = recorder._PaddedView(path, base, body, 600)
    try:
        assert view.readable() and view.seekable() and view.tell() == 0
        assert view.read(20) == want[:20]  # from the start
        assert view.tell() == 20
        assert view.read() == want[20:]  # on to the recorded end: zeros past the file's 512 bytes
        assert view.read(10) == b"" and view.tell() == 600  # at the end: nothing more
        assert view.seek(90) == 90 and view.read(30) == want[90:120]  # across the block's start
        assert view.seek(5, 1) == 125 and view.read(10) == want[125:135]
        assert view.seek(-10, 2) == 590 and view.read() == want[590:]
        assert view.seek(700) == 700 and view.read(5) == b""  # past the end
    finally:
        view.close()
    assert path.read_bytes() == data  # the file itself is not changed
    assert view.closed and view._fh.closed  # closing the view closes the file


def test_the_padded_view_never_cuts_a_file_longer_than_its_recorded_end(tmp_path):
    path, data = _view_file(tmp_path)
    body = bytes(44)
    view = recorder._PaddedView(path, 0, body, 100)
    try:
        assert view.read() == _repaired(data, 0, body, 0)
    finally:
        view.close()


# --- recorded_end: the end of file a superblock records ----------------------------------------------------
def _small_capture(tmp_path) -> Path:
    path = tmp_path / "s.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f["x"] = np.arange(100.0)
    return path


def test_recorded_end_of_a_whole_file_is_its_size(tmp_path):
    path = _small_capture(tmp_path)
    base, end, block = recorder.recorded_end(path)
    assert (base, end) == (0, path.stat().st_size)
    assert block == path.read_bytes()[: len(block)] and len(block) == 12 + 4 * 8 + 4


@pytest.mark.parametrize("cut", [44, 47, 12 + 2 * 8 + 8])
def test_recorded_end_of_a_file_cut_inside_its_superblock_is_minus_one(tmp_path, cut):
    path = _small_capture(tmp_path)
    path.write_bytes(path.read_bytes()[:cut])
    found = recorder.recorded_end(path)
    assert found is not None and found[:2] == (0, -1)


def test_recorded_end_reads_the_address_size_not_the_length_size(tmp_path):
    """Byte 9 of a version 2/3 superblock is the size of addresses, byte 10 the size of lengths."""
    path = _small_capture(tmp_path)
    raw = bytearray(path.read_bytes())
    assert raw[9] == raw[10] == 8
    raw[10] = 4  # a different size of lengths: the end-of-file address is still 8 bytes at 12 + 2 * 8
    path.write_bytes(bytes(raw))
    found = recorder.recorded_end(path)
    assert found is not None and found[1] == len(raw)
