"""Write captures to disk: HDF5 (complete, crash-tolerant) or CSV (capped).

HDF5 layout (self-describing; every attribute is written before streaming starts)::

    /                       attrs: format="odlstudio-lpm01a-capture", version=1, created (ISO 8601)
    /samples   float64[N]   chunked, extendable; NaN = sample lost in transit
                            attrs: units ("A" or "J"), quantity ("current"|"energy"), rate_hz,
                                   first_index, time_definition, start_time_unix, start_time_iso,
                                   voltage_v, stream_format, port, nan_means
    /events    compound[M]  index (int64), time_s (float64), kind (str), text (str), value (float64)
                            every non-timestamp stream event: D7 markers ("event"), end, summary,
                            device errors, corruption, in-stream acks
    /status    int64[4]     received, lost, next_index, finished — rewritten at each flush; finished:
                            0 = running (or killed), 1 = finished, 2 = stopped early because the disk was
                            full (or a write failed): the file holds exactly ``next_index`` positions

The file is opened in SWMR mode (HDF5 single-writer/multiple-reader): after each flush (~1 s) the
on-disk file is consistent, so a capture killed at any moment (even ``kill -9``) leaves a readable
file with everything flushed, and readers can follow a live capture with ``swmr=True``.  A killed
writer leaves HDF5's "open for write" flags set, so plain readers (``h5py.File(path, "r")``, HDFView,
pandas, MATLAB) refuse the file until they are cleared: :func:`clear_write_flags` does that
(``odlstudio repair FILE``; the app does it for its own recordings at start-up).

**Full disk.**  Before each flush the writer checks the room left (free space on the file system, and
the process's file-size limit): when it would fall below :data:`DISK_RESERVE` it writes what fits,
marks ``/status`` finished = 2 and raises :class:`DiskFull` — the file stays consistent and closes
normally.  A write that fails anyway (another process filled the disk between the check and the write)
is handled the same way as far as HDF5 allows; the samples dataset's fill value is NaN, so a position
that never reached the disk reads as *lost*, never as a 0.0 sample.

CSV: ``time_s,value`` rows with a header naming units and rate; writing stops at ``max_bytes``
and the writer says so (:attr:`CsvWriter.capped`).
"""

from __future__ import annotations

import datetime as _dt
import errno
import io
import math
import os
import re
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from device.lpm01a.capture import Block
from device.lpm01a.decode import StreamEvent

if TYPE_CHECKING:
    import h5py

__all__ = [
    "Hdf5Writer",
    "CsvWriter",
    "open_writer",
    "read_capture",
    "DiskFull",
    "CannotWrite",
    "room_left",
    "clear_write_flags",
    "check_not_cut_short",
    "Truncated",
    "DISK_RESERVE",
    "start_hdf5",
    "let_go",
    "START_BYTES",
]

#: Bytes kept free on the disk while writing: room for the last chunk, HDF5's metadata and a clean close.
DISK_RESERVE = 2 * 1024 * 1024


class DiskFull(OSError):
    """The disk (or the process's file-size limit) has no room for more samples: the writer stopped
    cleanly before running out; the file is complete up to what it says it holds."""

    def __init__(self, path: str | Path, written: int, room: int, reason: str = "", unit: str = "samples") -> None:
        super().__init__(errno.ENOSPC, "disk full")
        self.path, self.written, self.room, self.unit = Path(path), int(written), int(room), unit
        self.reason = reason or f"only {room / 1e6:.1f} MB left"

    def __str__(self) -> str:
        if "not enough to start" in self.reason:
            return f"disk full: {self.reason} {self.path} (free some space or choose another disk)"
        return (
            f"disk full: {self.reason} for {self.path}; stopped writing after {self.written:,} {self.unit} "
            "(the file is complete up to there)"
        )


class CannotWrite(OSError):
    """The capture file could not be created, or the disk refused its first write (a read-only disk, a folder
    without write permission, a missing folder, an exhausted quota): nothing was captured and no half-made
    file is left behind.  ``reason`` is the cause in plain words ("read-only file system")."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"cannot write {path}: {reason}")
        self.path, self.reason = Path(path), reason


def _refusal(path: Path, exc: BaseException) -> str:
    """Plain words for why creating ``path`` failed: the OS's reason (from ``errno``, or the ``errno = N``
    that HDF5 puts in its message), never the library's own text."""
    code = exc.errno if isinstance(exc, OSError) and isinstance(exc.errno, int) else None
    if code is None:
        found = re.search(r"errno = (\d+),", str(exc))
        code = int(found.group(1)) if found else None
    if code == errno.ENOENT and not path.parent.is_dir():
        return f"the folder {path.parent} does not exist"
    if code == errno.EISDIR or path.is_dir():
        return "it is a folder"
    if code is None:
        return "the disk refused the write"
    text = os.strerror(code)
    return text[:1].lower() + text[1:]


#: Bytes an empty capture file takes once its layout is written (about 10 kB), with a wide margin: what
#: :func:`start_hdf5` writes and syncs to a new file before HDF5 opens it.
START_BYTES = 64 * 1024


def start_hdf5(path: str | Path, build: Callable[["h5py.File"], object], pad: int = START_BYTES) -> "h5py.File":
    """Create the HDF5 file ``path`` so that a disk that refuses it does so before HDF5 writes a byte, and return
    it open ("r+", ``libver="latest"``).  ``build`` makes the file's layout (datasets, attributes) on an h5py file
    in memory; those bytes are written to ``path`` with one plain write, padded with zeros to ``pad`` bytes and
    synced, then cut back (:func:`_write_start`): a read-only disk, a missing permission, a quota, a file-size
    limit or a full disk is then a plain ``OSError`` (``errno`` set) and no HDF5 handle exists yet.  HDF5's own
    start from there (its write flags, the switch to SWMR) rewrites bytes the file has.  ``pad`` 0: no test
    write beyond the layout.  Raises what ``build`` raises, the ``OSError`` of the write, or h5py's error when the
    written file cannot be opened; the caller removes a file it created."""
    import h5py

    memory = io.BytesIO()
    with h5py.File(memory, "w", libver="latest") as f:
        build(f)
    _write_start(Path(path), memory.getvalue(), pad)
    return h5py.File(path, "r+", libver="latest")


def let_go(f: "h5py.File", handles: Iterable["h5py.Dataset | None"] = ()) -> None:
    """Leave the h5py file ``f`` without closing it: for a file HDF5 can no longer flush (a write failed, and so
    did the flush that was to save what the file held before).  HDF5 cannot close such a file either, and a
    failed close leaves handles whose release — by Python's garbage collector or HDF5's own clean-up at exit —
    crashes the interpreter (a segmentation fault after "Exception ignored in … ObjectID.__dealloc__" messages).
    So h5py is told never to release ``handles`` (the caller's open datasets of that file: each must be held
    from the start, a dataset handle released on its own flushes too) nor ``f``, and HDF5's file descriptor is
    pointed at the null device: nothing more reaches the disk behind the caller's back.  The file on disk keeps
    what the last good flush wrote (SWMR keeps that consistent); its write flags stay set
    (:func:`clear_write_flags` clears them).  HDF5 holds the file as open until the process ends."""
    for handle in handles:
        if handle is not None:
            handle.id.locked = True
    f.id.locked = True
    _divert_to_null(f)


def _write_start(path: Path, image: bytes, nbytes: int) -> None:
    """Create ``path`` holding ``image`` (the file's whole layout, made in memory), padded with zeros to
    ``nbytes`` and synced, then cut back to the image: the disk's refusals (read-only, permissions, a quota,
    a file-size limit, a disk that fills) show up here, as plain ``OSError`` s, before HDF5 writes a byte.
    HDF5 itself does not survive a refused write while it starts a file: its file handle can then be neither
    flushed nor closed, and the interpreter crashes (a segmentation fault after the message).  Once the
    image is on disk, HDF5's start (the write flags, the switch to SWMR) rewrites bytes in place only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        data = memoryview(image + bytes(max(0, nbytes - len(image))))
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
        os.ftruncate(fd, len(image))
    finally:
        os.close(fd)


def _divert_to_null(f) -> None:
    """Point the file descriptor under the h5py file ``f`` (HDF5's ``sec2`` driver) at the null device: whatever
    HDF5 still writes to a file it has been let go of goes nowhere.  Best effort (no descriptor: nothing done)."""
    try:
        fd = f.id.get_vfd_handle()
        null = os.open(os.devnull, os.O_WRONLY)
    except Exception:  # noqa: BLE001 - another driver, an invalid handle
        return
    try:
        if isinstance(fd, int) and fd > 2:
            os.dup2(null, fd)
    except OSError:
        pass
    finally:
        os.close(null)


def _remove_new_file(path: Path, existed: bool) -> None:
    """Remove what a failed start created (never a file that was there before)."""
    if existed:
        return
    try:
        if path.is_file():
            path.unlink()
    except OSError:
        pass


def room_left(path: str | Path) -> int:
    """Bytes that can still be written to the file ``path`` (or a new file there): free space on its file
    system for this user, capped by the process's file-size limit (``RLIMIT_FSIZE``) minus the file's size."""
    path = Path(path)
    where = path if path.exists() else path.parent
    try:
        st = os.statvfs(where)
        room = st.f_bavail * st.f_frsize
    except (OSError, AttributeError):  # Windows has no statvfs
        import shutil

        try:
            room = shutil.disk_usage(where).free
        except OSError:
            return 1 << 62
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if soft != resource.RLIM_INFINITY:
            size = path.stat().st_size if path.is_file() else 0
            room = min(room, max(0, soft - size))
    except (ImportError, OSError, ValueError):
        pass
    return int(room)


def _write_error(exc: BaseException) -> bool:
    """An error that means 'no room': ENOSPC, EFBIG (file-size limit) or EDQUOT, raised by Python or
    reported inside an HDF5 error message."""
    codes = (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC))
    if isinstance(exc, OSError) and exc.errno in codes:
        return True
    text = str(exc)
    return any(f"errno = {c}," in text for c in codes) or "No space left" in text or "File too large" in text


_EVENT_DTYPE = None


def _event_dtype():
    import h5py

    global _EVENT_DTYPE
    if _EVENT_DTYPE is None:
        s = h5py.string_dtype("utf-8")
        _EVENT_DTYPE = np.dtype([("index", "<i8"), ("time_s", "<f8"), ("kind", s), ("text", s), ("value", "<f8")])
    return _EVENT_DTYPE


class Hdf5Writer:
    """Streams :class:`Block` s into an HDF5 file, flushing at most every ``flush_s`` seconds."""

    def __init__(
        self,
        path: str | Path,
        rate_hz: float,
        output: str = "current",
        voltage_v: float | None = None,
        stream_format: str = "",
        port: str = "",
        start_time: float | None = None,
        chunk: int = 65536,
        flush_s: float = 1.0,
        extra_attrs: dict | None = None,
        reserve: int | None = None,
        check_space: bool = True,
    ) -> None:
        self.path = Path(path)
        self.rate_hz = float(rate_hz)
        self.flush_s = float(flush_s)
        self.reserve = DISK_RESERVE if reserve is None else int(reserve)
        self.check_space = bool(check_space)  # False: rely on the write errors alone (tests of that path)
        room = room_left(self.path) if check_space else 1 << 62
        if room < self.reserve + chunk * 8:
            raise DiskFull(self.path, 0, room, f"only {room / 1e6:.1f} MB free, not enough to start")
        existed = os.path.lexists(self.path)
        try:
            # (a file that was there is not padded: the test write is for new files, as before)
            self.f = start_hdf5(
                self.path,
                lambda f: self._layout(f, output, voltage_v, stream_format, port, start_time, chunk, extra_attrs),
                0 if existed else START_BYTES,
            )
        except (OSError, RuntimeError, ValueError) as exc:  # read-only disk, no permission, no folder, quota...
            _remove_new_file(self.path, existed)
            raise CannotWrite(self.path, _refusal(self.path, exc)) from None
        # A refusal now (the disk refusing to rewrite bytes it has just taken: an I/O error) still gives the
        # message and removes the file; HDF5 closes a file whose only failed write was its first flush.
        reason = ""
        try:
            self._start(chunk)
        except (OSError, RuntimeError, ValueError) as exc:  # the disk refused HDF5's first write (an I/O error)
            reason = _refusal(self.path, exc)
        if reason:
            self._abandon()
            _remove_new_file(self.path, existed)
            raise CannotWrite(self.path, reason)

    def _abandon(self) -> None:
        """Close a file whose first write failed (best effort) and drop the handles to it."""
        for name in ("samples", "events", "status"):
            self.__dict__.pop(name, None)
        try:
            self.f.close()
        except Exception:  # noqa: BLE001 - the caller removes the file
            pass

    def _layout(
        self,
        f: "h5py.File",
        output: str,
        voltage_v: float | None,
        stream_format: str,
        port: str,
        start_time: float | None,
        chunk: int,
        extra_attrs: dict | None,
    ) -> None:
        """Make the new file's layout and every attribute (no samples yet) on ``f`` (in memory: :func:`start_hdf5`)."""
        start = time.time() if start_time is None else float(start_time)
        f.attrs["format"] = "odlstudio-lpm01a-capture"
        f.attrs["version"] = 1
        f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat()
        # NaN fill: a position that never reached the disk reads as 'lost', never as a 0.0 sample
        ds = f.create_dataset("samples", shape=(0,), maxshape=(None,), dtype="<f8", chunks=(chunk,), fillvalue=np.nan)
        units = "A" if output == "current" else "J"
        ds.attrs.update(
            {
                "quantity": output,
                "units": units,
                "rate_hz": self.rate_hz,
                "first_index": 0,
                "time_definition": "t = (first_index + k + 1) / rate_hz seconds after start_time (sample k, 0-based)",
                "start_time_unix": start,
                "start_time_iso": _dt.datetime.fromtimestamp(start, _dt.timezone.utc).isoformat(),
                "voltage_v": float(voltage_v) if voltage_v is not None else math.nan,
                "stream_format": stream_format,
                "port": port,
                "nan_means": "sample lost in transit (counted in /status[1])",
                "energy_note": "output energy: each value is J over one sample period" if output == "energy" else "",
            }
        )
        for k, v in (extra_attrs or {}).items():
            ds.attrs[k] = v
        ev = f.create_dataset("events", shape=(0,), maxshape=(None,), dtype=_event_dtype(), chunks=(256,))
        ev.attrs["columns"] = "index: sample number before which the event occurred; time_s = index / rate_hz"
        st = f.create_dataset("status", data=np.zeros(4, np.int64))
        st.attrs["columns"] = "received, lost, next_index, finished"

    def _start(self, chunk: int) -> None:
        """Take hold of the datasets and switch to SWMR (HDF5's first flush)."""
        self.chunk_bytes = chunk * 8
        self.error: BaseException | None = None  # the write error that ended this file early
        self.samples, self.events, self.status = self.f["samples"], self.f["events"], self.f["status"]
        # where /status's four numbers lie in the file (contiguous storage): rewritten in place by _let_go
        self._status_at, self._status_dtype = self.status.id.get_offset(), self.status.dtype
        self._stuck = False  # HDF5 can no longer flush this file (see _let_go)
        self.f.swmr_mode = True
        self._buf: list[np.ndarray] = []
        self._ev_buf: list[StreamEvent] = []
        self._first_index: int | None = None
        self.received = 0
        self.lost = 0
        self.next_index = 0
        self._last_flush = time.monotonic()
        self._on_disk = 0  # positions written by the last good flush
        self._nan_on_disk = 0
        self.closed = False

    def write(self, block: Block) -> None:
        if self.error is not None or self.closed:  # stopped by a full disk: nothing more is kept
            return
        if self._first_index is None and len(block.values) and block.first_index != 0:
            # attributes cannot change under SWMR: pad so that position == sample number
            self._buf.append(np.full(block.first_index, np.nan))
        if self._first_index is None and len(block.values):
            self._first_index = block.first_index
        elif len(block.values) and block.first_index > self.next_index:
            # this consumer fell behind the ring buffer (Block.overrun): keep position == sample number
            gap = block.first_index - self.next_index
            self._buf.append(np.full(gap, np.nan))
            self.lost += gap
        if len(block.values):
            self._buf.append(block.values)
            self.lost += block.lost
            self.received += len(block.values) - block.lost
            self.next_index = block.next_index
        self._ev_buf.extend(block.events)
        if time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def flush(self, finished: bool = False) -> None:
        """Write what is buffered.  Raises :class:`DiskFull` (once) when the disk has no room for it: what
        fits is written, ``/status`` says finished = 2 and how many positions the file holds."""
        if self.closed or self.error is not None:
            return
        try:
            self._flush(finished)
        except DiskFull as exc:
            self.error = exc
            raise
        except (OSError, RuntimeError, ValueError) as exc:  # the disk filled between the check and the write
            self.error = exc
            self._salvage()
            if _write_error(exc):
                raise DiskFull(self.path, self.samples_on_disk, 0, "the disk filled up while writing") from exc
            raise OSError(f"writing {self.path} failed: {exc}") from exc

    @property
    def samples_on_disk(self) -> int:
        return int(self._on_disk)

    def _flush(self, finished: bool) -> None:
        full = None
        if self._buf:
            data = np.concatenate(self._buf) if len(self._buf) > 1 else self._buf[0]
            room = (room_left(self.path) if self.check_space else 1 << 62) - self.reserve
            need = len(data) * 8 + self.chunk_bytes  # a partly filled chunk takes its whole size
            if need > room:
                fit = max(0, (room - self.chunk_bytes) // 8)
                full = DiskFull(self.path, self._on_disk + min(fit, len(data)), max(0, room + self.reserve))
                data = data[: max(0, fit)]
            if len(data):
                n0 = self.samples.shape[0]
                self.samples.resize((n0 + len(data),))
                self.samples[n0:] = data
                nan_new = int(np.count_nonzero(np.isnan(data)))
            else:
                nan_new = 0
            self._buf = []
        else:
            nan_new = 0
        if self._ev_buf and full is None:
            rows = np.array(
                [
                    (e.index, e.index / self.rate_hz, e.kind, e.text[:1000], np.nan if e.value is None else e.value)
                    for e in self._ev_buf
                ],
                dtype=_event_dtype(),
            )
            m0 = self.events.shape[0]
            self.events.resize((m0 + len(rows),))
            self.events[m0:] = rows
            self._ev_buf = []
        on_disk = int(self.samples.shape[0])
        if full is not None:
            # what the file holds: positions [0, on_disk); samples not written count neither as received
            # nor lost (the capture's own counts are in the CLI's JSON)
            lost_in = self._nan_on_disk + nan_new
            self.received, self.lost, self.next_index = on_disk - lost_in, lost_in, on_disk
            self.status[:] = np.array([self.received, self.lost, on_disk, 2], np.int64)
        else:
            self.status[:] = np.array([self.received, self.lost, self.next_index, int(finished)], np.int64)
        self.f.flush()
        self._on_disk = on_disk
        self._nan_on_disk += nan_new
        self._last_flush = time.monotonic()
        if full is not None:
            raise full

    def _salvage(self) -> None:
        """After a failed write: shrink the dataset to what the last good flush wrote and say so in
        ``/status`` (finished = 2); best effort, the disk may refuse this too."""
        try:
            self._buf, self._ev_buf = [], []
            self.received, self.lost = self._on_disk - self._nan_on_disk, self._nan_on_disk
            self.next_index = self._on_disk
            self.samples.resize((self._on_disk,))
            self.status[:] = np.array([self.received, self.lost, self._on_disk, 2], np.int64)
            self.f.flush()
        except Exception:  # noqa: BLE001 - HDF5 cannot flush this file any more: closing it would fail too
            self._stuck = True

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self.error is None:
                self.flush(finished=True)
        finally:
            self.closed = True
            try:
                if self._stuck:
                    self._let_go()
                else:
                    self.f.close()
            except Exception as exc:  # noqa: BLE001 - HDF5 could not write its last metadata
                if self.error is None:
                    self.error = exc
                    raise OSError(f"closing {self.path} failed: {exc}") from exc
            finally:
                if self.error is not None:  # a failed write may have left the file short of its recorded end
                    try:
                        clear_write_flags(self.path)
                    except (OSError, ValueError):
                        pass

    def _let_go(self) -> None:
        """Leave a file HDF5 can no longer flush (a write failed and so did the salvage's flush) without closing
        it: HDF5 cannot close it either, and a failed close leaves handles whose release — by Python's garbage
        collector or HDF5's own clean-up at exit — crashes the interpreter (a segmentation fault after the
        message).  So HDF5's file descriptor is pointed at the null device (nothing more reaches the disk behind
        the caller's back), h5py is told never to release the handles, and ``/status`` — what the salvage could
        not flush — is rewritten in place: the file holds the positions of the last good flush, finished = 2."""
        let_go(self.f, [self.__dict__.pop(name, None) for name in ("samples", "events", "status")])
        if self._status_at is None:
            return
        status = np.array([self.received, self.lost, self._on_disk, 2], self._status_dtype)
        try:
            with open(self.path, "r+b") as fh:  # rewrites 32 bytes the file has: no new room needed
                fh.seek(self._status_at)
                fh.write(status.tobytes())
                fh.flush()
                os.fsync(fh.fileno())
        except OSError:
            pass

    def __enter__(self) -> "Hdf5Writer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CsvWriter:
    """``time_s,<quantity>_<unit>`` rows; stops writing at ``max_bytes`` (then :attr:`capped` is True).
    A full disk stops it too: the rows that fit are written (whole rows only) and :class:`DiskFull` is
    raised once; :attr:`rows` is then exactly what the file holds."""

    reserve = 256 * 1024

    def __init__(self, path: str | Path, rate_hz: float, output: str = "current", max_bytes: int = 100_000_000) -> None:
        self.path = Path(path)
        self.rate_hz = float(rate_hz)
        self.max_bytes = int(max_bytes)
        self.capped = False
        self.error: BaseException | None = None
        self.rows = 0
        unit = "a" if output == "current" else "j"
        room = room_left(self.path)
        if room < self.reserve:
            raise DiskFull(self.path, 0, room, f"only {room / 1e6:.2f} MB free, not enough to start", unit="rows")
        existed = os.path.lexists(self.path)
        try:
            self.fh = open(self.path, "w", encoding="ascii", newline="\n")
        except OSError as exc:  # read-only disk, no permission, no folder...
            raise CannotWrite(self.path, _refusal(self.path, exc)) from None
        header = f"# odlstudio LPM01A capture, rate_hz={self.rate_hz:g}, {output} in {'A' if unit == 'a' else 'J'}; empty value = lost sample\ntime_s,{output}_{unit}\n"
        self.bytes = 0
        try:
            self._put(header)
        except OSError as exc:  # the disk refused the first write (a quota, a file-size limit)
            self.close()
            _remove_new_file(self.path, existed)
            raise CannotWrite(self.path, _refusal(self.path, exc.__cause__ or exc)) from None
        self._tdigits = max(0, math.ceil(math.log10(self.rate_hz))) + 1 if self.rate_hz > 1 else 1

    def _put(self, text: str) -> None:
        """Write and flush ``text``; on a write error cut the file back to the last whole row written."""
        try:
            self.fh.write(text)
            self.fh.flush()
        except OSError as exc:
            self.error = exc
            try:
                os.ftruncate(self.fh.fileno(), self.bytes)
            except OSError:
                pass
            if _write_error(exc):
                raise DiskFull(self.path, self.rows, 0, "the disk filled up while writing", unit="rows") from exc
            raise
        self.bytes += len(text)

    def write(self, block: Block) -> None:
        if self.capped or self.error is not None or not len(block.values):
            return
        t = block.times
        v = block.values
        text = _format_rows(t, v, self._tdigits)
        room = self.max_bytes - self.bytes
        full = None
        disk = room_left(self.path) - self.reserve
        if disk < min(room, len(text)):
            room = max(0, disk)
            full = DiskFull(self.path, 0, max(0, disk + self.reserve), unit="rows")
        if len(text) > room:
            cut = text.rfind("\n", 0, room) + 1
            text = text[:cut]
            self.capped = full is None
        self._put(text)
        self.rows += text.count("\n")
        if full is not None:
            self.error = full
            full.written = self.rows
            raise full

    def close(self) -> None:
        if not self.fh.closed:
            try:
                self.fh.close()
            except OSError:  # nothing buffered is lost: every write was flushed (or cut back) at once
                pass

    def __enter__(self) -> "CsvWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _format_rows(t: np.ndarray, v: np.ndarray, tdigits: int) -> str:
    ts = np.char.mod(f"%.{tdigits}f", t)
    vs = np.char.mod("%.4e", v)
    vs[np.isnan(v)] = ""
    return "".join(np.char.add(np.char.add(np.char.add(ts, ","), vs), "\n").tolist())


def open_writer(
    path: str | Path, rate_hz: float, output: str = "current", csv_max_bytes: int = 100_000_000, **h5_kwargs
):
    """:class:`Hdf5Writer` for ``.h5``/``.hdf5``, :class:`CsvWriter` for ``.csv`` (else ValueError)."""
    suffix = Path(path).suffix.lower()
    if suffix in (".h5", ".hdf5"):
        return Hdf5Writer(path, rate_hz, output, **h5_kwargs)
    if suffix == ".csv":
        return CsvWriter(path, rate_hz, output, csv_max_bytes)
    raise ValueError(
        f"--out {str(path)!r}: unknown file type {suffix!r}; use .h5 (complete capture) or .csv (capped export)"
    )


def read_capture(path: str | Path) -> dict:
    """Load a capture written by :class:`Hdf5Writer` (works on files of killed captures too)."""
    import h5py

    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        ds = f["samples"]
        ev = f["events"][()]
        status = f["status"][()]
        n = min(int(ds.shape[0]), int(status[2]))  # positions /status vouches for (a full disk, a kill)
        return {
            "samples": ds[:n],
            "attrs": {k: (v.decode() if isinstance(v, bytes) else v) for k, v in ds.attrs.items()},
            "events": [
                {
                    "index": int(r["index"]),
                    "time_s": float(r["time_s"]),
                    "kind": _s(r["kind"]),
                    "text": _s(r["text"]),
                    "value": float(r["value"]),
                }
                for r in ev
            ],
            "status": {k: int(x) for k, x in zip(("received", "lost", "next_index", "finished"), status)},
        }


def _s(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


# --- files left by a killed writer -----------------------------------------------------------------
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & 0xFFFFFFFF


def _lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle`` (HDF5's metadata checksum, ``H5_checksum_lookup3``)."""
    m = 0xFFFFFFFF
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & m
    i = 0
    while length > 12:
        a = (a + int.from_bytes(data[i : i + 4], "little")) & m
        b = (b + int.from_bytes(data[i + 4 : i + 8], "little")) & m
        c = (c + int.from_bytes(data[i + 8 : i + 12], "little")) & m
        a = ((a - c) & m) ^ _rot(c, 4); c = (c + b) & m  # fmt: skip
        b = ((b - a) & m) ^ _rot(a, 6); a = (a + c) & m  # fmt: skip
        c = ((c - b) & m) ^ _rot(b, 8); b = (b + a) & m  # fmt: skip
        a = ((a - c) & m) ^ _rot(c, 16); c = (c + b) & m  # fmt: skip
        b = ((b - a) & m) ^ _rot(a, 19); a = (a + c) & m  # fmt: skip
        c = ((c - b) & m) ^ _rot(b, 4); b = (b + a) & m  # fmt: skip
        length -= 12
        i += 12
    if length == 0:
        return c
    tail = data[i:] + bytes(12 - length)
    a = (a + int.from_bytes(tail[0:4], "little")) & m
    b = (b + int.from_bytes(tail[4:8], "little")) & m
    c = (c + int.from_bytes(tail[8:12], "little")) & m
    c ^= b; c = (c - _rot(b, 14)) & m  # fmt: skip
    a ^= c; a = (a - _rot(c, 11)) & m  # fmt: skip
    b ^= a; b = (b - _rot(a, 25)) & m  # fmt: skip
    c ^= b; c = (c - _rot(b, 16)) & m  # fmt: skip
    a ^= c; a = (a - _rot(c, 4)) & m  # fmt: skip
    b ^= a; b = (b - _rot(a, 14)) & m  # fmt: skip
    c ^= b; c = (c - _rot(b, 24)) & m  # fmt: skip
    return c


def write_flags(path: str | Path) -> int | None:
    """The superblock's file-consistency flags of an HDF5 file (bit 0: open for write, bit 2: open for
    SWMR write), or None for a superblock version without them (0/1) or a file that is not HDF5."""
    found = _find_superblock(Path(path))
    return None if found is None else found[2]


def _find_superblock(path: Path) -> tuple[int, bytes, int] | None:
    with open(path, "rb") as fh:
        for base in (0, 512, 1024, 2048, 4096, 8192):  # HDF5 looks at 0 and powers of two from 512
            fh.seek(base)
            head = fh.read(12 + 4 * 8 + 4)
            if len(head) < 12 or head[:8] != _HDF5_SIGNATURE:
                continue
            version, size_o = head[8], head[9]
            if version not in (2, 3) or size_o not in (2, 4, 8):
                return None
            n = 12 + 4 * size_o
            return base, head[: n + 4], head[11]
    return None


class Truncated(ValueError):
    """A file cut short (a copy that stopped, a damaged disk): something it refers to lies past its end.
    Nothing can bring the missing bytes back; the file is left as it is."""

    def __init__(self, path: str | Path, size: int, what: str) -> None:
        super().__init__(f"{path}: truncated: {size:,} bytes, {what}; repair cannot restore the missing data")


class _PaddedView(io.RawIOBase):
    """A read-only view of an HDF5 file as it would be after the repair — write flags cleared, zeros from
    the file's end up to the end its superblock records — without changing the file."""

    def __init__(self, path: Path, base: int, body: bytes, end: int) -> None:
        super().__init__()
        self._fh = open(path, "rb")
        self._end = max(end, os.fstat(self._fh.fileno()).st_size)
        unflagged = body[:11] + b"\x00" + body[12:]
        self._base, self._block = base, unflagged + struct.pack("<I", _lookup3(unflagged))
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = {0: 0, 1: self._pos, 2: self._end}[whence] + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buf) -> int:
        start, stop = self._pos, min(self._pos + len(buf), self._end)
        if stop <= start:
            return 0
        self._fh.seek(start)
        data = bytearray(self._fh.read(stop - start))
        data += bytes(stop - start - len(data))
        lo, hi = max(start, self._base), min(stop, self._base + len(self._block))
        if lo < hi:
            data[lo - start : hi - start] = self._block[lo - self._base : hi - self._base]
        buf[: len(data)] = data
        self._pos = stop
        return len(data)

    def close(self) -> None:
        self._fh.close()
        super().close()


def _needs_the_missing_tail(path: Path, base: int, body: bytes, end: int, size: int) -> bool:
    """Whether a file shorter than its recorded end refers to anything in the missing part (a file cut
    short), or not (its writer's last write failed on a full disk and the writer dropped what that write
    held: the end of file is then fixed by the repair).  Reads every object header and attribute, the
    storage address of every dataset (chunks included) and the values of variable-length data."""
    import h5py

    def beyond(name: str, obj) -> bool | None:
        for key in obj.attrs:
            obj.attrs[key]
        if not isinstance(obj, h5py.Dataset):
            return None
        layout = obj.id.get_create_plist().get_layout()
        if layout == h5py.h5d.CHUNKED:
            for i in range(obj.id.get_num_chunks()):
                info = obj.id.get_chunk_info(i)
                if info.byte_offset + info.size > size:
                    return True
        elif layout == h5py.h5d.CONTIGUOUS:
            offset = obj.id.get_offset()
            if offset is not None and offset + obj.id.get_storage_size() > size:
                return True
        if h5py.check_vlen_dtype(obj.dtype) or obj.dtype.names:  # values in the global heap
            obj[()]
        return None

    try:
        with _PaddedView(path, base, body, end) as view, h5py.File(view, "r") as f:
            for key in f.attrs:
                f.attrs[key]
            return bool(f.visititems(beyond))
    except Exception:  # noqa: BLE001 - metadata or heap past the end: zeros HDF5 cannot read
        return True


def check_not_cut_short(path: str | Path) -> None:
    """Raise :class:`Truncated` when the file is shorter than the end its superblock records and something it
    refers to lies in the missing part; a file whose last write failed on a full disk (the writer dropped
    what that write held) passes, and :func:`fix_end_of_file` mends its end.  Raises ``ValueError`` for a file
    with no (valid) version 2/3 superblock, ``OSError`` when it cannot be read."""
    path = Path(path)
    base, body, _flags = _checked_superblock(path)
    eof, size = _recorded_eof(body), path.stat().st_size
    if size < eof and _needs_the_missing_tail(path, base, body, eof, size):
        raise Truncated(path, size, f"its HDF5 header says it ends at {eof:,} bytes")


def _recorded_eof(body: bytes) -> int:
    """The end-of-file address a version 2/3 superblock records (absolute: it counts a user block)."""
    size_o = body[9]
    at = 12 + 2 * size_o
    return int.from_bytes(body[at : at + size_o], "little")


def clear_write_flags(path: str | Path) -> bool:
    """Clear the "file is open for write" flags that a killed HDF5 writer leaves in the superblock (what
    ``h5clear -s`` does), so plain readers open the file.  The data themselves are what the writer's
    last flush put on disk (SWMR keeps them consistent).  A file shorter than the end-of-file address
    its superblock records (its last write failed on a full disk) is made openable too (see
    :func:`fix_end_of_file`).  Returns True when something was changed.  Raises ``OSError``/``ValueError``
    naming the file when it is unreadable, not HDF5, or its superblock checksum is wrong.  Never call it
    on a file a live process is writing."""
    path = Path(path)
    check_not_cut_short(path)  # before any change: a file cut short is left as it is
    base, body, flags = _checked_superblock(path)
    changed = False
    if flags:
        _write_superblock(path, base, body[:11] + b"\x00" + body[12:])
        changed = True
    return _fix_end_of_file(path, checked=True) or changed


def _checked_superblock(path: Path) -> tuple[int, bytes, int]:
    found = _find_superblock(path)
    if found is None:
        raise ValueError(f"{path}: not an HDF5 file with a version 2/3 superblock (nothing to clear)")
    base, block, flags = found
    body, stored = block[:-4], struct.unpack("<I", block[-4:])[0]
    if _lookup3(body) != stored:
        raise ValueError(f"{path}: the HDF5 superblock checksum is wrong (the file is damaged, not only flagged)")
    return base, body, flags


def _write_superblock(path: Path, base: int, body: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(base)
        fh.write(body + struct.pack("<I", _lookup3(body)))
        fh.flush()
        os.fsync(fh.fileno())


def recorded_end(path: str | Path) -> tuple[int, int, bytes] | None:
    """``(base, end, superblock)`` of a file with a version 2/3 superblock: the end-of-file address the
    superblock records (absolute, like :func:`fix_end_of_file` reads it) and the superblock's bytes with
    its checksum; ``end`` is -1 when the file is cut inside the superblock itself.  None when the file has
    no such superblock (not HDF5, or an older format)."""
    found = _find_superblock(Path(path))
    if found is None:
        return None
    base, block, _flags = found
    size_o = block[9]
    if len(block) < 12 + 4 * size_o + 4:  # cut inside the superblock
        return base, -1, block
    at = 12 + 2 * size_o
    return base, int.from_bytes(block[at : at + size_o], "little"), block


def fix_end_of_file(path: str | Path) -> bool:
    """A file whose last write failed (full disk) can be shorter than the end-of-file address in its
    superblock, and HDF5 then refuses it ("truncated file").  The missing tail holds nothing the file
    still refers to (the writer shrank its datasets back to what was written), so extend the file to
    that address (a sparse hole: no disk space needed) or, where the file may not grow (a file-size
    limit), lower the recorded address to the file's size.  Returns True when the file was changed.  A file
    cut short (something it refers to lies in the missing part) is :class:`Truncated` and not changed."""
    return _fix_end_of_file(Path(path), checked=False)


def _fix_end_of_file(path: Path, checked: bool) -> bool:
    """:func:`fix_end_of_file`; ``checked``: :func:`check_not_cut_short` has just passed (not looked at twice)."""
    base, body, _flags = _checked_superblock(path)
    size_o = body[9]
    at = 12 + 2 * size_o
    eof = _recorded_eof(body)
    size = path.stat().st_size
    if size >= eof:
        return False
    if not checked and _needs_the_missing_tail(path, base, body, eof, size):  # cut short: zeros would pass as data
        raise Truncated(path, size, f"its HDF5 header says it ends at {eof:,} bytes")
    try:
        os.truncate(path, eof)
        if path.stat().st_size >= eof:
            return True
    except OSError:
        pass
    _write_superblock(path, base, body[:at] + size.to_bytes(size_o, "little") + body[at + size_o :])
    return True
