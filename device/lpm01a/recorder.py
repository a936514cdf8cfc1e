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
    /status    int64[4]     received, lost, last_index+1, finished(0/1) — rewritten at each flush

The file is opened in SWMR mode (HDF5 single-writer/multiple-reader): after each flush (~1 s) the
on-disk file is consistent, so a capture killed at any moment (even ``kill -9``) leaves a readable
file with everything flushed, and readers can follow a live capture with ``swmr=True``.

CSV: ``time_s,value`` rows with a header naming units and rate; writing stops at ``max_bytes``
and the writer says so (:attr:`CsvWriter.capped`).
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from pathlib import Path

import numpy as np

from device.lpm01a.capture import Block
from device.lpm01a.decode import StreamEvent

__all__ = ["Hdf5Writer", "CsvWriter", "open_writer", "read_capture"]

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
    ) -> None:
        import h5py

        self.path = Path(path)
        self.rate_hz = float(rate_hz)
        self.flush_s = float(flush_s)
        self.f = h5py.File(self.path, "w", libver="latest")
        start = time.time() if start_time is None else float(start_time)
        self.f.attrs["format"] = "odlstudio-lpm01a-capture"
        self.f.attrs["version"] = 1
        self.f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat()
        ds = self.f.create_dataset("samples", shape=(0,), maxshape=(None,), dtype="<f8", chunks=(chunk,))
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
        ev = self.f.create_dataset("events", shape=(0,), maxshape=(None,), dtype=_event_dtype(), chunks=(256,))
        ev.attrs["columns"] = "index: sample number before which the event occurred; time_s = index / rate_hz"
        st = self.f.create_dataset("status", data=np.zeros(4, np.int64))
        st.attrs["columns"] = "received, lost, next_index, finished"
        self.samples, self.events, self.status = ds, ev, st
        self.f.swmr_mode = True
        self._buf: list[np.ndarray] = []
        self._buf_n = 0
        self._ev_buf: list[StreamEvent] = []
        self._first_index: int | None = None
        self.received = 0
        self.lost = 0
        self.next_index = 0
        self._last_flush = time.monotonic()
        self.closed = False

    def write(self, block: Block) -> None:
        if self._first_index is None and len(block.values) and block.first_index != 0:
            # attributes cannot change under SWMR: pad so that position == sample number
            self._buf.append(np.full(block.first_index, np.nan))
            self._buf_n += block.first_index
        if self._first_index is None and len(block.values):
            self._first_index = block.first_index
        elif len(block.values) and block.first_index > self.next_index:
            # this consumer fell behind the ring buffer (Block.overrun): keep position == sample number
            gap = block.first_index - self.next_index
            self._buf.append(np.full(gap, np.nan))
            self._buf_n += gap
            self.lost += gap
        if len(block.values):
            self._buf.append(block.values)
            self._buf_n += len(block.values)
            self.lost += block.lost
            self.received += len(block.values) - block.lost
            self.next_index = block.next_index
        self._ev_buf.extend(block.events)
        if time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def flush(self, finished: bool = False) -> None:
        if self.closed:
            return
        if self._buf:
            data = np.concatenate(self._buf) if len(self._buf) > 1 else self._buf[0]
            n0 = self.samples.shape[0]
            self.samples.resize((n0 + len(data),))
            self.samples[n0:] = data
            self._buf, self._buf_n = [], 0
        if self._ev_buf:
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
        self.status[:] = np.array([self.received, self.lost, self.next_index, int(finished)], np.int64)
        self.f.flush()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        if self.closed:
            return
        self.flush(finished=True)
        self.closed = True
        self.f.close()

    def __enter__(self) -> "Hdf5Writer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CsvWriter:
    """``time_s,<quantity>_<unit>`` rows; stops writing at ``max_bytes`` (then :attr:`capped` is True)."""

    def __init__(self, path: str | Path, rate_hz: float, output: str = "current", max_bytes: int = 100_000_000) -> None:
        self.path = Path(path)
        self.rate_hz = float(rate_hz)
        self.max_bytes = int(max_bytes)
        self.capped = False
        self.rows = 0
        unit = "a" if output == "current" else "j"
        self.fh = open(self.path, "w", encoding="ascii", newline="\n")
        header = f"# odlstudio LPM01A capture, rate_hz={self.rate_hz:g}, {output} in {'A' if unit == 'a' else 'J'}; empty value = lost sample\ntime_s,{output}_{unit}\n"
        self.fh.write(header)
        self.bytes = len(header)
        self._tdigits = max(0, math.ceil(math.log10(self.rate_hz))) + 1 if self.rate_hz > 1 else 1

    def write(self, block: Block) -> None:
        if self.capped or not len(block.values):
            return
        t = block.times
        v = block.values
        text = _format_rows(t, v, self._tdigits)
        room = self.max_bytes - self.bytes
        if len(text) > room:
            cut = text.rfind("\n", 0, room) + 1
            text = text[:cut]
            self.capped = True
        self.fh.write(text)
        self.bytes += len(text)
        self.rows += text.count("\n")

    def close(self) -> None:
        if not self.fh.closed:
            self.fh.close()

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
        return {
            "samples": ds[()],
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
            "status": {k: int(x) for k, x in zip(("received", "lost", "next_index", "finished"), f["status"][()])},
        }


def _s(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)
