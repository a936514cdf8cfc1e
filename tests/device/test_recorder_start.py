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
    assert not hasattr(w, "samples") and not hasattr(w, "status")  # the handles were handed to let_go
