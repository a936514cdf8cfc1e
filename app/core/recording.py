"""Record live streams to files beside the database, reopen and replay them (Qt-free).

* Accelerometer recordings: ``recordings/accel/<id>.f32`` — raw little-endian float32 rows ``(x, y, z)``
  in m/s², append-only.  A crash loses at most the last unflushed block; the row count is the file size.
* Power recordings: ``recordings/power/<id>.h5`` — HDF5 (h5py), dataset ``current`` (A, float32, chunked,
  resizable) with attributes ``rate_hz``, ``voltage``, ``t_offset``; gaps are NaN and listed in ``gaps``.
  Dataset ``events`` (compound: ``index`` int64, ``time_s`` float64, ``kind``, ``text``, ``value``; the same
  columns as a CLI capture's ``/events``) keeps the shield's stream events (D7 edges: kind ``event``) that
  fell inside the recording, as they stream: ``index`` is the sample number in the file before which the
  event occurred, ``time_s = index / rate_hz``.
  The file is flushed every :data:`POWER_FLUSH_S` (0.5 s), so a killed app loses at most that much.
* Captures written by ``odlstudio power --out x.h5`` (:mod:`device.lpm01a.recorder`: ``/samples`` float64,
  attributes on the dataset) open too: :func:`register_power_file` adds them to the database as
  'imported' recordings that point at the file where it is, and :func:`open_power` reads either layout,
  with its events (:attr:`ReplayStream.events`, D7 edges included).

A :class:`StreamRecorder` subscribes to a :class:`~app.core.streams.SampleStream` (its sink is called on
the device reader thread and only enqueues), and a writer thread does the disk I/O, so a slow disk never
stalls acquisition: when the bounded queue is full, blocks are dropped and counted (:attr:`dropped`),
the Joulescope "drop on overflow" rule — and the dropped range is written as NaN (and listed among the
power recording's gaps) so that every later sample stays at its own position (= its time).  The database
row (:class:`~app.core.store.Recording`) is updated with the sample count every second and marked complete
on :meth:`StreamRecorder.stop`; :func:`recover` repairs rows of a session that crashed.

**Full disk.**  The writer checks the room left before each write; when less than
:data:`RECORDING_RESERVE` would remain it writes what fits and stops by itself (:attr:`StreamRecorder.
stop_reason` says why, :attr:`~StreamRecorder.finished` turns True): the file is consistent and holds
exactly the row's ``n_samples``, the row is 'recovered' with the reason in ``meta['error']``.  A write that
fails anyway ends the same way (a power file's fill value is NaN, so nothing unwritten ever reads as a
0.0 sample): a power file is cut back to what its last good flush wrote, and one that HDF5 can no longer
flush at all (the disk filled within milliseconds of the start, or the flush that saves the file failed
too) is let go of instead of closed (:func:`device.lpm01a.recorder.let_go`): HDF5 cannot close it, and its
handles' release would crash the app.  A power file's layout is written by a plain write before HDF5 opens
it (:func:`device.lpm01a.recorder.start_hdf5`), so a disk that refuses the start never reaches HDF5.  :func:`space_warning` tells the user before a recording starts that the disk is nearly full.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import re
import threading
import time
import weakref
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from app.core.outputs import failure_reason
from app.core.store import Recording, Store, StoreError
from app.core.streams import Moments, SampleStream, Stats
from device.lpm01a.recorder import (
    START_BYTES,
    DiskFull,
    Truncated,
    check_not_cut_short,
    clear_write_flags,
    let_go,
    recorded_end,
    room_left,
    start_hdf5,
    write_flags,
)

__all__ = [
    "StreamRecorder",
    "load_accel",
    "accel_partial_bytes",
    "open_power",
    "ReplayStream",
    "recover",
    "RecordingError",
    "csv_export",
    "csv_estimate",
    "write_accel",
    "register_power_file",
    "power_file_info",
    "active_recorders",
    "read_power_events",
    "PowerEvent",
    "DiskFull",
    "space_warning",
    "RECORDING_RESERVE",
]

ACCEL_DIR = "recordings/accel"
POWER_DIR = "recordings/power"
#: Seconds between flushes of a power recording (bounds what a kill -9 of the app can lose).
POWER_FLUSH_S = 0.5
#: Seconds between sample-count updates of the recording's database row.
DB_UPDATE_S = 1.0
#: Seconds between two looks at the device manager's event list while recording power.
EVENTS_POLL_S = 0.1
#: Bytes a recording leaves free on the disk (the database, the file's last chunk and its close need room):
#: a recording stops by itself, cleanly, before the disk is that full.
RECORDING_RESERVE = 8 * 1024 * 1024
#: Room beyond the reserve a recording needs to start at all.
START_MARGIN = 2 * 1024 * 1024
#: Warn before starting a recording when the disk holds less than this many seconds of it.
SPACE_WARN_S = 600.0
CLI_CAPTURE_FORMAT = "odlstudio-lpm01a-capture"
#: A power-shield stream event: (time on the stream's timeline in s, kind, text); D7 edges have kind 'event'.
PowerEvent = tuple[float, str, str]
_EVENT_DTYPE = None


def _event_dtype() -> np.dtype:
    """Row type of a power recording's ``events`` dataset (the columns of a CLI capture's ``/events``)."""
    import h5py

    global _EVENT_DTYPE
    if _EVENT_DTYPE is None:
        s = h5py.string_dtype("utf-8")
        _EVENT_DTYPE = np.dtype([("index", "<i8"), ("time_s", "<f8"), ("kind", s), ("text", s), ("value", "<f8")])
    return _EVENT_DTYPE


_active: "set[StreamRecorder]" = set()
_active_lock = threading.Lock()
#: Power files of this session that HDF5 could not finish (let go of after a full disk: _close_power).  HDF5
#: still holds each as open until the app exits, and opening it again by name would find that (diverted) copy:
#: they are read through a Python file object (another HDF5 driver) instead, which reads what the disk holds.
_let_go_files: set[str] = set()


def _open_h5(path: str | Path):
    """``path`` open for reading, or, for a file let go of in this session, read through a Python file object
    (see :data:`_let_go_files`).  A file a writer has flagged (a recording being written, or one whose writer
    was killed) is read in SWMR mode; a finished one plainly: an SWMR reader retries each metadata read whose
    checksum fails for minutes on end (a file cut short or damaged: "Open…" froze the app), a plain one fails
    at once.  A file cut short raises :class:`_CutShort`."""
    import h5py

    if os.path.realpath(path) not in _let_go_files:
        try:
            flags = write_flags(path)
        except OSError:  # gone, a folder, unreadable: HDF5 says which (_h5_reason words it)
            flags = 1
        if flags:
            _refuse_cut_short(path)
            return h5py.File(path, "r", libver="latest", swmr=True)
        try:
            return h5py.File(path, "r")
        except OSError as exc:
            if "truncated file" not in str(exc):
                raise
            # shorter than its superblock says: cut short, or a full disk's tail that nothing refers to
            _refuse_cut_short(path)
            return h5py.File(path, "r", libver="latest", swmr=True)  # (SWMR reads it without that tail)
    fh = open(path, "rb")
    try:
        f = h5py.File(fh, "r")
    except BaseException:
        fh.close()
        raise
    weakref.finalize(f, fh.close)
    return f


def _refuse_cut_short(path: str | Path) -> None:
    """Raise :class:`_CutShort` when something ``path`` refers to lies past its end."""
    try:
        check_not_cut_short(path)
    except Truncated:
        end = recorded_end(path)
        raise _CutShort(os.path.getsize(path), end[1] if end else 0) from None
    except (OSError, ValueError):
        pass  # no version 2/3 superblock, or unreadable: HDF5 says what it is


class _CutShort(OSError):
    """A power file shorter than the end its HDF5 superblock records, something it refers to in the missing part."""

    def __init__(self, size: int, end: int) -> None:
        super().__init__(f"the file is cut short: {size:,} of its {end:,} bytes (copy it again)")


def active_recorders() -> "list[StreamRecorder]":
    """Recorders still writing (diagnostics, tests, and the app's orderly shutdown)."""
    with _active_lock:
        return list(_active)


class RecordingError(RuntimeError):
    """A recording file that cannot be written or read; the message names the file."""


class StreamRecorder:
    """Write ``stream`` to a new recording from now on (see the module documentation).

    ``limit_s``: stop by itself after that many seconds of samples (a fixed-length segment).
    ``events`` (power only): the live list of the shield's stream events on ``stream``'s timeline (the
    device manager's ``power_events``, appended by its pump thread); the writer copies those that fall
    inside the recording into the file's ``events`` dataset as they arrive.
    """

    def __init__(
        self,
        store: Store,
        stream: SampleStream,
        kind: str,
        name: str,
        *,
        dataset_id: int | None = None,
        limit_s: float | None = None,
        voltage: float = 3.3,
        queue_blocks: int = 4000,
        on_finished: Callable[[Recording], None] | None = None,
        events: Sequence[PowerEvent] | None = None,
    ):
        if kind == "accel" and stream.channels != 3:
            raise RecordingError(f"accel recording needs a 3-channel stream, {stream.name!r} has {stream.channels}")
        if kind == "power" and stream.channels != 1:
            raise RecordingError(f"power recording needs a 1-channel stream, {stream.name!r} has {stream.channels}")
        self.store, self.stream, self.kind = store, stream, kind
        self.voltage = voltage
        self.limit = None if limit_s is None else max(1, int(round(limit_s * stream.rate_hz)))
        self.on_finished = on_finished
        self.dropped = 0  # samples dropped because the queue was full (written as NaN)
        self.n_written = 0
        self.n_events = 0  # stream events written to the file
        #: Positions of a power recording without a sample (its gaps: an outage, lost or dropped samples, NaN
        #: in the file), counted when it is closed: ``n_samples`` counts them too.
        self.gap_positions = 0
        self._events_src = events if kind == "power" else None
        self._ev_t = -np.inf  # time of the newest event taken from the source, and those taken at that time
        self._ev_at_t: list[PowerEvent] = []
        # queue items: (samples missing before the block, block); None = finished
        self._q: queue.Queue[tuple[int, np.ndarray] | None] = queue.Queue(maxsize=queue_blocks)
        self._lock = threading.Lock()  # the sink's bookkeeping vs stop()
        self._first: int | None = None  # stream index of the recording's first position
        self._next = 0  # stream index the next queued block must start at (a later start = dropped samples)
        self._seen = 0  # stream index after the newest block the sink saw (queued or dropped)
        self._accepted = 0  # positions queued: samples + NaN for what was dropped before them
        self._drops: list[tuple[int, int]] = []  # (first position, count) of every dropped range
        self._done = threading.Event()
        self._stopping = False
        self._error: BaseException | None = None
        # power: samples and events the file held at its last good flush (what a failed write leaves), and
        # whether HDF5 can no longer flush it at all (then it is let go of, not closed: _close_power)
        self._flushed = self._ev_flushed = 0
        self._stuck = False
        #: Why the recorder stopped by itself ('' = it did not): the disk filled up, a write failed.
        self.stop_reason = ""
        self.db_error = ""  # the database could not take the final row (full disk): recover() fixes it later
        self._row: Recording | None = None  # the final row (also when the database could not be updated)
        ext, sub = (".f32", ACCEL_DIR) if kind == "accel" else (".h5", POWER_DIR)
        try:
            self.rec = self._add_row(store, stream, kind, name, dataset_id, ext, sub, voltage)
        except StoreError as exc:
            raise RecordingError(f"cannot start the recording: {exc}") from exc
        self.rel_path = f"{sub}/{self.rec.id}{ext}"
        try:
            store.update_recording(self.rec.id, path=self.rel_path)
        except StoreError as exc:
            raise RecordingError(f"cannot start the recording: {exc}") from exc
        self.path = store.resolve(self.rel_path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self._open()
        except (OSError, RuntimeError) as exc:  # full or read-only disk: no recording, say why
            _quiet(lambda: store.delete_recording(self.rec.id))
            _quiet(lambda: self.path.unlink(missing_ok=True))
            why = str(exc) if isinstance(exc, DiskFull) else failure_reason(exc)  # "File too large", not "[Errno 27] …"
            raise RecordingError(f"cannot start the recording: {why}") from exc
        self._thread = threading.Thread(target=self._writer, name=f"rec-{kind}-{self.rec.id}", daemon=True)
        with _active_lock:
            _active.add(self)
        # stop (and finish the last database update) before the store closes, whoever closes it first
        store.add_close_hook(self._store_closing)
        self._thread.start()
        stream.add_sink(self._sink)

    @staticmethod
    def _add_row(store, stream, kind, name, dataset_id, ext, sub, voltage) -> Recording:
        return store.add_recording(
            kind,
            name,
            f"{sub}/pending{ext}",
            stream.rate_hz,
            stream.channels,
            dataset_id=dataset_id,
            t_offset=stream.duration,
            meta={"voltage": voltage, "unit": stream.unit, "session_id": store.session_id}
            if kind == "power"
            else {"unit": stream.unit},
        )

    def _store_closing(self) -> None:
        try:
            self.stop(timeout=5.0)
        except RecordingError:
            pass  # the row is repaired by recover() at the next start

    # --- producer side (device thread) -----------------------------------------------------------
    def _sink(self, first: int, block: np.ndarray) -> None:
        finish = False
        with self._lock:
            if self._stopping:
                return
            if self._first is None:
                self._first = self._next = first
            self._seen = max(self._seen, first + len(block))
            gap = max(0, first - self._next)  # dropped since the last queued block: NaN keeps positions = time
            if self.limit is not None:
                room = max(0, self.limit - self._accepted)
                gap = min(gap, room)
                block = block[: room - gap]
                if gap + len(block) == 0:
                    return
            try:
                self._q.put_nowait((gap, block))
            except queue.Full:
                self.dropped += len(block)
                return
            if gap:
                self._drops.append((self._accepted, gap))
            self._accepted += gap + len(block)
            self._next = first + len(block)
            if self.limit is not None and self._accepted >= self.limit:
                self._stopping = finish = True
        if finish:
            self.stream.remove_sink(self._sink)
            self._q.put(None)

    # --- consumer side (writer thread) ------------------------------------------------------------
    def _open(self):
        room = room_left(self.path.parent)
        if room < RECORDING_RESERVE + START_MARGIN:  # a recording that would stop at once is not started
            raise DiskFull(self.path, 0, room, f"only {room / 1e6:.1f} MB free, not enough to start")
        if self.kind == "accel":
            return open(self.path, "ab", buffering=0)
        # the layout goes to the disk in one plain write before HDF5 opens the file: a disk that refuses the
        # start says so as a plain OSError, never inside HDF5 (whose file could then be neither flushed nor closed)
        f = start_hdf5(self.path, self._layout, START_BYTES)
        try:
            f.swmr_mode = True  # rewrites bytes the file has
        except Exception:
            _quiet(f.close)
            raise
        # held from here to the close: a dataset handle released on its own flushes its chunks, and one that
        # cannot (a full disk) would crash the app when h5py releases it
        self._current, self._events_ds = f["current"], f["events"]
        return f

    def _layout(self, f) -> None:
        """A new power file's datasets and attributes (made in memory by :func:`start_hdf5`)."""
        # NaN fill: a position that never reached the disk reads as a gap, never as a 0.0 sample
        f.create_dataset("current", shape=(0,), maxshape=(None,), dtype="f4", chunks=(65536,), fillvalue=np.nan)
        ev = f.create_dataset("events", shape=(0,), maxshape=(None,), dtype=_event_dtype(), chunks=(256,))
        ev.attrs["columns"] = "index: sample number before which the event occurred; time_s = index / rate_hz"
        f.attrs.update(
            {
                "rate_hz": self.stream.rate_hz,
                "voltage": self.voltage,
                "unit": "A",
                "t_offset": self.rec.t_offset,
                "recording_id": self.rec.id,
            }
        )

    def _write(self, items: list[tuple[int, np.ndarray]]) -> None:
        parts: list[np.ndarray] = []
        for gap, block in items:
            if gap:
                parts.append(np.full((gap, self.stream.channels), np.nan, np.float32))
            if len(block):
                parts.append(np.asarray(block, np.float32).reshape(len(block), self.stream.channels))
        if not parts:
            return
        data = np.concatenate(parts).astype("<f4", copy=False)
        row_bytes = 4 * self.stream.channels
        room = room_left(self.path) - RECORDING_RESERVE - (0 if self.kind == "accel" else 65536 * 4)
        full = None
        if len(data) * row_bytes > room:  # write what fits and stop: the file stays consistent
            fit = max(0, room // row_bytes)
            full = DiskFull(self.path, self.n_written + min(fit, len(data)), max(0, room + RECORDING_RESERVE))
            data = data[:fit]
        if len(data):
            if self.kind == "accel":
                try:
                    self._file.write(data.tobytes())
                except OSError:
                    # a partial row would shift every later one: cut the file back to whole rows
                    self._file.truncate(self.n_written * row_bytes)
                    raise
            else:
                ds = self._current
                n = ds.shape[0]
                try:
                    ds.resize((n + len(data),))
                    ds[n:] = data.ravel()
                except Exception:
                    _quiet(lambda: ds.resize((n,)))
                    raise
            self.n_written += len(data)
        if full is not None:
            raise full

    def _writer(self) -> None:
        last_sync = last_db = last_events = time.monotonic()
        finished = False
        try:
            while not finished:
                blocks: list[tuple[int, np.ndarray]] = []
                try:
                    item = self._q.get(timeout=0.2)
                except queue.Empty:
                    pass  # nothing queued: the syncs and the event poll below still run on time
                else:
                    if item is None:
                        finished = True
                    else:
                        blocks.append(item)  # (gap, block)
                while True:  # batch what is queued
                    try:
                        more = self._q.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        finished = True
                        break
                    blocks.append(more)
                if blocks:
                    try:
                        self._write(blocks)
                    except (OSError, RuntimeError) as exc:
                        self._failed(exc)
                        break
                now = time.monotonic()
                if self._events_src is not None and (finished or now - last_events >= EVENTS_POLL_S):
                    last_events = now
                    try:
                        self._take_events()
                    except (OSError, RuntimeError) as exc:
                        self._failed(exc)
                        break
                if finished or now - last_sync >= POWER_FLUSH_S:
                    last_sync = now
                    if self.kind == "power":
                        try:
                            self._file.flush()
                        except (OSError, RuntimeError) as exc:
                            self._failed(exc)
                            break
                        self._flushed, self._ev_flushed = self.n_written, self.n_events
                if not finished and now - last_db >= DB_UPDATE_S:
                    last_db = now
                    try:
                        self.store.update_recording(self.rec.id, n_samples=self.n_written)
                    except StoreError:
                        pass  # the database is full or gone: the count is set at the end, or by recover()
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self._error = exc
        finally:
            self._close()
            self._done.set()

    def _failed(self, exc: BaseException) -> None:
        """A write, a flush or the look-ahead's :class:`DiskFull` (writer thread): a power file whose write failed
        is cut back to its last good flush first (:meth:`_salvage`), then the recorder stops (:meth:`_halt`)."""
        if self.kind == "power" and not isinstance(exc, DiskFull):
            self._salvage()
        self._halt(exc)

    def _salvage(self) -> None:
        """After a failed write or flush of a power file: shrink ``current`` and ``events`` back to what the last
        good flush wrote and flush that (the row then counts what the file holds).  When that flush fails too,
        HDF5 can no longer flush the file at all: it is let go of at the close (:meth:`_close_power`)."""
        self.n_written, self.n_events = self._flushed, self._ev_flushed
        if self._stuck:
            return
        try:
            self._current.resize((self._flushed,))
            self._events_ds.resize((self._ev_flushed,))
            self._file.flush()
        except Exception:  # noqa: BLE001 - HDF5 cannot flush this file any more: closing it would fail too
            self._stuck = True

    def _halt(self, exc: BaseException) -> None:
        """Stop by itself after a full disk or a failed write (writer thread): no more samples are taken,
        the file is closed with what it holds, and :attr:`stop_reason` says why."""
        from device.lpm01a.recorder import _write_error

        if not isinstance(exc, DiskFull) and _write_error(exc):
            exc = DiskFull(self.path, self.n_written, 0, "the disk filled up while writing")
        self._error = exc
        self.stop_reason = str(exc) if isinstance(exc, DiskFull) else f"writing {self.path} failed: {exc}"
        with self._lock:
            self._stopping = True
        self.stream.remove_sink(self._sink)

    def _take_events(self) -> None:
        """Append the source's new events that fall on written samples to the ``events`` dataset (writer
        thread; the source is appended to by the device's pump thread, in time order)."""
        if self._first is None or self._events_src is None:
            return
        snap = list(self._events_src)  # one atomic copy of a list another thread appends to
        k = len(snap)
        while k and snap[k - 1][0] >= self._ev_t:  # the events at or after the newest one taken
            k -= 1
        rate, first, n = self.stream.rate_hz, self._first, self.n_written
        rows = []
        for ev in snap[k:]:
            t, kind, text = ev
            if t == self._ev_t and ev in self._ev_at_t:
                continue
            index = int(round(t * rate)) - first
            if index > n:  # its samples are not written yet (taken at a later pass), or after the end
                break
            if t > self._ev_t:
                self._ev_t, self._ev_at_t = t, []
            self._ev_at_t.append(ev)
            if index >= 0:
                rows.append((index, index / rate, str(kind), str(text)[:1000], np.nan))
        if rows:
            ds = self._events_ds
            m = ds.shape[0]
            ds.resize((m + len(rows),))
            ds[m:] = np.array(rows, dtype=_event_dtype())
            self.n_events += len(rows)

    def _close(self) -> None:
        try:
            if self.kind == "power":
                self._close_power()
            else:
                self._file.close()
        except Exception as exc:  # noqa: BLE001 - the file could not be finished: said in the row
            if self._error is None:
                self._error = exc
                self.stop_reason = f"closing {self.path} failed: {exc}"
        finally:
            status = "complete" if self._error is None else "recovered"
            meta = dict(self.rec.meta, dropped=self.dropped)
            if self.kind == "power":
                meta["events"] = self.n_events
            if self._error is not None:
                meta["error"] = self.stop_reason or str(self._error)
            t_off = None if self._first is None else self._first / self.stream.rate_hz
            self._row = dataclasses.replace(
                self.rec,
                n_samples=self.n_written,
                status=status,
                meta=meta,
                t_offset=self.rec.t_offset if t_off is None else t_off,
                path=self.rel_path,
            )
            try:
                self.store.update_recording(
                    self.rec.id, n_samples=self.n_written, status=status, meta=meta, t_offset=t_off
                )
                self._row = self.store.recording(self.rec.id)
            except Exception as exc:  # noqa: BLE001 - database full or gone: recover() repairs the row
                self.db_error = str(exc)
            try:
                if self.on_finished is not None:
                    self.on_finished(self._row)
            except Exception as exc:  # noqa: BLE001 - the callback's owner reports its own failure
                self._error = self._error or exc
            finally:
                with _active_lock:
                    _active.discard(self)
                self.store.remove_close_hook(self._store_closing)

    def _close_power(self) -> None:
        """Write the gaps, flush and close the power file; a flush that fails here ends the recording as one during
        it does (cut back to the last good flush, the reason in :attr:`stop_reason`); a file HDF5 can no longer
        flush is let go of (:func:`~device.lpm01a.recorder.let_go`), never closed."""
        f = self._file
        if not self._stuck:
            gaps = [
                (a - self.rec.t_offset, b - self.rec.t_offset) for a, b in self.stream.gaps if b > self.rec.t_offset
            ]
            gaps += [(p / self.stream.rate_hz, (p + k) / self.stream.rate_hz) for p, k in self._drops]
            gaps = sorted((a, min(b, self.n_written / self.stream.rate_hz)) for a, b in gaps)
            gaps = [(a, b) for a, b in gaps if b > a]
            self.gap_positions = _gap_positions(gaps, self.stream.rate_hz)
            try:
                f.attrs["gaps"] = np.asarray(gaps, np.float64).reshape(-1, 2)
                f.attrs["dropped"] = self.dropped
                f.flush()
            except (OSError, RuntimeError) as exc:  # the disk filled up: the same end as during the recording
                self._salvage()
                if self._error is None or isinstance(self._error, DiskFull):
                    self._halt(exc)  # (again after the look-ahead's stop: the count is the salvage's)
        handles = [self.__dict__.pop("_current", None), self.__dict__.pop("_events_ds", None)]
        try:
            if self._stuck:
                let_go(f, handles)
                _let_go_files.add(os.path.realpath(self.path))
            else:
                del handles
                f.close()
        finally:
            if self._error is not None:  # a failed write may have left the write flags or a short end
                try:
                    clear_write_flags(self.path)
                except (OSError, ValueError):
                    pass

    # --- control ---------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self._done.is_set()

    @property
    def duration(self) -> float:
        return self._accepted / self.stream.rate_hz

    def stop(self, timeout: float = 10.0) -> Recording:
        """Stop recording, flush, close; returns the completed row.  Raises if the writer failed.  Samples
        dropped after the last written block are written as NaN too (the recording ends when it was
        stopped)."""
        with self._lock:
            was, self._stopping = self._stopping, True
            tail = 0 if self._first is None else max(0, self._seen - self._next)
            if self.limit is not None:
                tail = min(tail, max(0, self.limit - self._accepted))
            if tail and not was:
                self._drops.append((self._accepted, tail))
                self._accepted += tail
        if not was:
            self.stream.remove_sink(self._sink)
            if tail:
                self._q.put((tail, np.empty((0, self.stream.channels), np.float32)))
            self._q.put(None)
        if not self._done.wait(timeout):
            raise RecordingError(f"recording {self.path} did not finish writing within {timeout} s")
        if self._error is not None and not self.stop_reason:
            raise RecordingError(f"writing {self.path} failed: {self._error}") from self._error
        return self._row if self._row is not None else self.store.recording(self.rec.id)

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)


def _gap_positions(gaps: list[tuple[float, float]], rate_hz: float) -> int:
    """Sample positions covered by sorted, possibly overlapping ``(t0, t1)`` gaps (each counted once)."""
    n, end = 0, -np.inf
    for a, b in gaps:
        a = max(a, end)
        if b > a:
            n += int(round(b * rate_hz)) - int(round(a * rate_hz))
            end = b
    return n


def _quiet(fn: Callable[[], object]) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - best effort after a failed write
        pass


def space_warning(store: Store, kind: str, rate_hz: float, channels: int = 1) -> str:
    """A message when the data directory's disk holds less than :data:`SPACE_WARN_S` of a recording of
    this kind and rate (empty when there is room): say it before a long recording starts."""
    per_s = rate_hz * 4 * (3 if kind == "accel" else channels)
    room = room_left(store.data_dir) - RECORDING_RESERVE
    if room >= per_s * SPACE_WARN_S:
        return ""
    if room <= 0:
        return f"The disk holding {store.data_dir} is full: nothing can be recorded (free some space first)."
    return (
        f"Only {max(0, room) / 1e6:.0f} MB free on the disk holding {store.data_dir}: about "
        f"{room / per_s / 60:.0f} min of {kind} recording at {rate_hz:g} Hz; it stops by itself when the disk is full."
    )


#: Bytes of one accel sample in a recording's file: x, y, z as little-endian float32.
ACCEL_SAMPLE_BYTES = 12


def load_accel(store: Store, rec: Recording) -> np.ndarray:
    """The ``(n, 3)`` float32 samples of an accel recording (a read-only memory map).  A file cut in the
    middle of a sample (copied half-way, a crash of another program) gives its whole samples; the bytes of the
    partial one are ignored: :func:`accel_partial_bytes` counts them."""
    path = store.resolve(rec.path)
    if not path.is_file():
        raise RecordingError(f"accel recording {rec.id} file {path} is missing")
    n = path.stat().st_size // ACCEL_SAMPLE_BYTES
    if n == 0:
        return np.zeros((0, 3), np.float32)
    return np.memmap(path, dtype="<f4", mode="r", shape=(n, 3))


def accel_partial_bytes(store: Store, rec: Recording) -> int:
    """How many bytes at the end of an accel recording's file :func:`load_accel` ignores: those of a partial
    last sample (0 for a whole file, or one that is missing or cannot be looked at)."""
    try:
        return store.resolve(rec.path).stat().st_size % ACCEL_SAMPLE_BYTES
    except OSError:
        return 0


def write_accel(
    store: Store,
    name: str,
    xyz: np.ndarray,
    rate_hz: float,
    dataset_id: int | None,
    status: str = "imported",
    meta: dict | None = None,
) -> Recording:
    """Create a complete accel recording from an array (imports, tests)."""
    rec = store.add_recording(
        "accel", name, f"{ACCEL_DIR}/pending.f32", rate_hz, 3, dataset_id=dataset_id, status=status, meta=meta
    )
    rel = f"{ACCEL_DIR}/{rec.id}.f32"
    path = store.resolve(rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.ascontiguousarray(xyz, "<f4").reshape(-1, 3).tofile(path)
    store.update_recording(rec.id, n_samples=len(xyz), status=status, path=rel)
    return store.recording(rec.id)


class ReplayStream(SampleStream):
    """A power recording reopened for viewing: the pyramid covers the whole file, the full-resolution ring
    the last ``recent_s``; :meth:`stats` and :meth:`samples` read the file when the range is older, so
    statistics of a reopened recording are always exact."""

    def __init__(
        self, path: Path, rate_hz: float, voltage: float, *, dataset: str = "current", scale: float = 1.0, **kw
    ):
        super().__init__("current (replay)", rate_hz, 1, unit="A", channel_names=("I",), **kw)
        self.path = path
        self.voltage = voltage
        self.dataset = dataset  # 'current' (app recordings) or 'samples' (odlstudio power captures)
        self.scale = scale  # file value -> A (1, or f/V for a capture of J per sample period)
        #: The file's stream events on this stream's timeline, sorted by time (D7 edges: kind 'event').
        self.events: list[PowerEvent] = []
        self.events_error = ""  # why the events could not be read (the samples still open)

    def _read(self, i0: int, i1: int) -> np.ndarray:

        with _open_h5(self.path) as f:
            y = np.asarray(f[self.dataset][max(0, i0) : i1], np.float64)
        return (y * self.scale if self.scale != 1.0 else y).astype(np.float32)

    def samples(self, t0: float, t1: float):
        got = super().samples(t0, t1)
        if got is not None:
            return got
        i0, i1 = self._index_range(t0, t1)
        i0, i1 = max(0, i0), min(self.n_total, i1)
        y = self._read(i0, i1)[:, None]
        return (i0 + np.arange(len(y))) / self.rate_hz, y

    def stats(self, t0: float, t1: float, channel: int = 0) -> Stats:
        st = super().stats(t0, t1, channel)
        if st.exact:
            return st
        i0, i1 = self._index_range(min(t0, t1), max(t0, t1))
        i0, i1 = max(0, i0), min(self.n_total, i1)
        m = Moments()
        step = 1 << 22
        for a in range(i0, i1, step):  # chunked: bounded memory for hour-long selections
            m.add(self._read(a, min(i1, a + step)))
        return m.stats(i0 / self.rate_hz, i1 / self.rate_hz, True, self.rate_hz)


def power_file_info(path: str | Path) -> dict:
    """Layout of a power HDF5 file: ``{'dataset', 'rate_hz', 'voltage', 'scale', 'n', 'format', 'gaps'}``.

    Reads the app's own recordings (``current``) and ``odlstudio power --out`` captures (``samples``,
    :mod:`device.lpm01a.recorder`); anything else — including a foreign file with the right names but the
    wrong kinds (a group where a dataset belongs, a scalar, a text ``rate_hz``, malformed ``gaps``) —
    raises :class:`RecordingError` naming the file and what is wrong."""

    path = Path(path)
    try:
        f = _open_h5(path)
    except OSError as exc:
        raise RecordingError(f"cannot open power file {path}: {_h5_reason(exc)}") from exc
    try:
        with f:
            return _power_file_info(f, path)
    except RecordingError:
        raise
    except (OSError, ValueError, TypeError, KeyError, AttributeError, IndexError, RuntimeError) as exc:
        raise RecordingError(f"{path}: not a readable power recording ({_h5_reason(exc)})") from exc


def _h5_reason(exc: BaseException) -> str:
    """HDF5's own message without its flag dumps and error-stack noise."""
    if isinstance(exc, _CutShort):
        return str(exc)
    text = str(exc).split("\n")[0].strip("'\"")
    cut = re.search(r"truncated file: eof = (\d+), .*stored_eof = (\d+)", text)
    if cut:
        return f"the file is cut short: {int(cut[1]):,} of its {int(cut[2]):,} bytes (copy it again)"
    if any(w in text for w in ("checksum", "deserialize", "object header", "B-tree", "heap")):
        return "its HDF5 structure is damaged: the file was changed, or not copied whole"
    for noise in (" (file signature not found)", "Unable to synchronously open file "):
        text = text.replace(noise, "" if noise.startswith(" ") else "")
    if "file is already open for write" in text or "not already open for SWMR writing" in text:
        # the second: flags a writer without SWMR mode left set (killed), seen by our SWMR reader
        return "it is still open for writing, or its writer was killed (run 'odlstudio repair FILE')"
    if "file signature not found" in str(exc):
        return "not an HDF5 file"
    if isinstance(exc, OSError) and isinstance(exc.errno, int) and exc.errno > 0:
        # "[Errno 2] Unable to synchronously open file (unable to open file: name = …, errno = 2, flags = 40 …":
        # the system's words only ("No such file or directory", "Is a directory", "Permission denied")
        return os.strerror(exc.errno)
    return text.strip("() ")[:200] or type(exc).__name__


def _attr_float(obj, name: str, default: float, path: Path) -> float:
    raw = obj.attrs.get(name, default)
    try:
        value = float(np.asarray(raw).reshape(-1)[0]) if np.size(raw) == 1 else float("nan")
    except (TypeError, ValueError):
        value = float("nan")
    if not np.isfinite(value):
        raise RecordingError(f"{path}: attribute {name!r} is {raw!r}, not a finite number")
    return value


def _samples_dataset(f, name: str, path: Path):
    import h5py

    ds = f[name]
    if not isinstance(ds, h5py.Dataset):
        raise RecordingError(f"{path}: '{name}' is a {type(ds).__name__.lower()}, not a dataset of samples")
    if ds.ndim != 1 or not np.issubdtype(ds.dtype, np.number):
        raise RecordingError(f"{path}: '{name}' has shape {ds.shape} and type {ds.dtype}, expected a 1-D numeric array")
    return ds


def _power_file_info(f, path: Path) -> dict:
    if "current" in f:
        ds = _samples_dataset(f, "current", path)
        rate = _attr_float(f, "rate_hz", 0.0, path)
        volt = _attr_float(f, "voltage", 3.3, path)
        raw_gaps = f.attrs.get("gaps", np.zeros((0, 2)))
        try:
            gaps = np.asarray(raw_gaps, np.float64)
            if gaps.size % 2 or not np.all(np.isfinite(gaps)):
                raise ValueError
            gaps = gaps.reshape(-1, 2)
        except (TypeError, ValueError):
            raise RecordingError(f"{path}: attribute 'gaps' is not a list of (start, end) times") from None
        return {
            "dataset": "current",
            "rate_hz": rate,
            "voltage": volt,
            "scale": 1.0,
            "n": int(ds.shape[0]),
            "format": "odlstudio-app",
            "gaps": gaps,
        }
    if "samples" in f and (f.attrs.get("format") == CLI_CAPTURE_FORMAT or "rate_hz" in f["samples"].attrs):
        ds = _samples_dataset(f, "samples", path)
        rate = _attr_float(ds, "rate_hz", 0.0, path)
        volt = float(ds.attrs.get("voltage_v", np.nan)) if np.size(ds.attrs.get("voltage_v", 0)) == 1 else np.nan
        quantity = ds.attrs.get("quantity", "current")
        quantity = quantity.decode() if isinstance(quantity, bytes) else str(quantity)
        if not (volt == volt and volt > 0):
            if quantity == "energy":
                raise RecordingError(
                    f"{path}: an energy capture without its supply voltage (voltage_v) cannot be shown as current"
                )
            volt = 3.3
        scale = rate / volt if quantity == "energy" else 1.0  # J per period -> A
        n = int(ds.shape[0])
        st = f.get("status")
        if st is not None and getattr(st, "shape", None) == (4,):
            # positions /status vouches for: a capture stopped by a full disk or a kill holds no more
            n = max(0, min(n, int(st[2])))
        return {
            "dataset": "samples",
            "rate_hz": rate,
            "voltage": volt,
            "scale": scale,
            "n": n,
            "format": CLI_CAPTURE_FORMAT,
            "gaps": None,
        }
    raise RecordingError(
        f"{path} has neither a 'current' dataset (ODL Studio recording) nor a 'samples' "
        "dataset (odlstudio power capture): not a power recording"
    )


def register_power_file(store: Store, path: str | Path, dataset_id: int | None = None) -> Recording:
    """Add an HDF5 power file recorded elsewhere (e.g. ``odlstudio power --out x.h5``) to the database as an
    'imported' recording that points at the file where it is (an absolute path; nothing is copied).  The
    same file registered twice gives the same row."""
    path = Path(path).resolve()
    info = power_file_info(path)
    if not info["rate_hz"] > 0:
        raise RecordingError(f"{path}: no valid rate_hz attribute")
    for r in store.recordings("power"):
        if r.path == str(path):
            return r
    return store.add_recording(
        "power",
        path.name,
        str(path),
        info["rate_hz"],
        1,
        dataset_id=dataset_id,
        status="imported",
        n_samples=info["n"],
        meta={"voltage": info["voltage"], "unit": "A", "source": info["format"]},
    )


def open_power(
    store: Store,
    rec: Recording,
    progress: Callable[[float], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    recent_s: float = 30.0,
) -> ReplayStream:
    """Reopen a power recording as a :class:`ReplayStream` (reads the file once to build the pyramid).
    Gaps are the recording's own list, or (CLI captures) the runs of lost samples (NaN) in the file."""

    path = store.resolve(rec.path)
    info = power_file_info(path)
    rate = info["rate_hz"] if info["rate_hz"] > 0 else float(rec.rate_hz)
    n = info["n"]
    if rec.status in ("complete", "recovered") and 0 <= rec.n_samples < n:
        # the app's own recording: its row counts what the last good flush wrote (recover() counts the file);
        # past that, a write that failed may have left positions HDF5 fills with NaN: not a gap, not the record
        n = rec.n_samples
    stream = ReplayStream(
        path,
        rate,
        info["voltage"],
        dataset=info["dataset"],
        scale=info["scale"],
        recent_s=recent_s,
        history_s=max(recent_s, n / rate + 1.0),
    )
    gaps: list[tuple[float, float]] = [tuple(g) for g in info["gaps"]] if info["gaps"] is not None else []
    try:
        gaps = _read_into(stream, path, info, n, gaps, progress, cancelled)
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise RecordingError(f"{path}: cannot read its samples ({_h5_reason(exc)})") from exc
    stream.gaps[:] = gaps
    try:
        stream.events = read_power_events(path, rate)
    except RecordingError as exc:  # damaged events never hide the samples
        stream.events_error = str(exc)
    return stream


def _read_into(stream, path, info, n, gaps, progress, cancelled) -> list:

    rate = stream.rate_hz
    with _open_h5(path) as f:
        ds = f[info["dataset"]]
        step = 1 << 20
        for a in range(0, n, step):
            if cancelled is not None and cancelled():
                raise RecordingError("cancelled")
            y = np.asarray(ds[a : min(n, a + step)], np.float64)
            if info["scale"] != 1.0:
                y = y * info["scale"]
            if info["gaps"] is None:
                gaps = _merge_gaps(gaps, _nan_runs(y, a, rate))
            stream.append(y.astype(np.float32))
            if progress is not None:
                progress(min(1.0, (a + step) / max(1, n)))
    return gaps


def read_power_events(path: str | Path, rate_hz: float | None = None) -> list[PowerEvent]:
    """The stream events of a power file as ``(t, kind, text)`` sorted by time, ``t = index / rate_hz`` on
    the file's own timeline (sample ``k`` at ``k / rate_hz``): the ``events`` dataset of an app recording
    or the ``/events`` of an ``odlstudio power --out`` capture (same columns).  A file without one (older
    recordings) has none.  Raises :class:`RecordingError` naming the file when the dataset is unreadable."""

    path = Path(path)
    rate = float(rate_hz) if rate_hz else float(power_file_info(path)["rate_hz"])
    if not rate > 0:
        raise RecordingError(f"{path}: no valid rate_hz to place its events")
    try:
        with _open_h5(path) as f:
            if "events" not in f:
                return []
            ev = f["events"]
            names = ev.dtype.names or ()
            if not {"index", "kind"} <= set(names):
                raise RecordingError(
                    f"{path}: the 'events' dataset has columns {list(names)}, expected index, kind and text"
                )
            rows = ev[()]
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise RecordingError(f"{path}: cannot read its events: {_h5_reason(exc)}") from exc
    out: list[PowerEvent] = []
    for r in rows:
        index = int(r["index"])
        if index < 0:
            continue
        out.append((index / rate, _text(r["kind"]), _text(r["text"]) if "text" in names else ""))
    out.sort(key=lambda e: e[0])
    return out


def _text(x) -> str:
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)


def _nan_runs(y: np.ndarray, first: int, rate: float) -> list[tuple[float, float]]:
    """(t0, t1) of the runs of NaN in ``y`` (sample ``first + k`` at ``(first + k) / rate``)."""
    nan = np.isnan(y)
    if not nan.any():
        return []
    d = np.diff(np.concatenate([[0], nan.view(np.int8), [0]]))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return [((first + a) / rate, (first + b) / rate) for a, b in zip(starts, ends)]


def _merge_gaps(gaps: list, new: list) -> list:
    if gaps and new and abs(gaps[-1][1] - new[0][0]) < 1e-12:  # a run across a chunk boundary
        gaps = gaps[:-1] + [(gaps[-1][0], new[0][1])] + new[1:]
        return gaps
    return gaps + new


def recover(store: Store) -> list[Recording]:
    """Repair recordings left 'recording' by a session that crashed: count what reached the disk, and clear
    the "open for write" flags a killed HDF5 writer leaves (so plain readers — h5py without ``swmr=True``,
    HDFView, pandas — open the power file; see :func:`device.lpm01a.recorder.clear_write_flags`)."""
    fixed = []
    for rec in store.unfinished_recordings():
        path = store.resolve(rec.path)
        n = 0
        if path.is_file():
            if rec.kind == "accel":
                n = path.stat().st_size // 12
            else:
                try:
                    if write_flags(path):
                        clear_write_flags(path)
                except (OSError, ValueError):
                    pass  # not repairable here: the swmr reader below still counts what it can
                try:
                    n = _without_nan_tail(path, power_file_info(path))
                except Exception:  # noqa: BLE001 - a truncated HDF5 file: keep the row, 0 samples
                    n = rec.n_samples
        store.update_recording(rec.id, n_samples=n, status="recovered")
        fixed.append(store.recording(rec.id))
    return fixed


def _without_nan_tail(path: Path, info: dict, step: int = 1 << 16) -> int:
    """The samples of a crashed session's power file up to its last one that is not NaN: the positions after
    it are HDF5's fill value where a write never reached the disk (a full disk), or drops of a stop that
    never finished — no sample either way (read backwards, a block at a time, from the end)."""
    end = info["n"]
    with _open_h5(path) as f:
        ds = f[info["dataset"]]
        while end > 0:
            a = max(0, end - step)
            kept = np.flatnonzero(~np.isnan(np.asarray(ds[a:end], np.float64)))
            if kept.size:
                return a + int(kept[-1]) + 1
            end = a
    return 0


def csv_estimate(n_rows: int, columns: int = 2) -> int:
    """Bytes a CSV export of ``n_rows`` will take (time with 7 decimals + values in %.6e)."""
    return int(n_rows * (12 + columns * 14))


def csv_export(path: str | Path, t: np.ndarray, y: np.ndarray, header: str, max_rows: int = 1_048_575) -> int:
    """Write ``t, y...`` rows; refuses more than ``max_rows`` (Excel's limit) with a clear message."""
    if len(t) > max_rows:
        raise RecordingError(
            f"{len(t):,} rows exceed the CSV cap of {max_rows:,}: select a shorter range or raise the cap"
        )
    y = np.asarray(y).reshape(len(t), -1)
    data = np.column_stack([t, y])
    fmt = ["%.7f"] + ["%.6e"] * y.shape[1]
    from app.core.outputs import atomic_path  # noqa: PLC0415

    with atomic_path(path) as tmp:  # whole or not at all: a full disk leaves any older file as it was
        np.savetxt(tmp, data, fmt=fmt, delimiter=",", header=header, comments="")
    return len(t)
