"""Activity labels on a recording, with an undo/redo command stack (Qt-free).

A :class:`LabelModel` edits the labels of one recording.  Every edit is a :class:`Command` made of
primitive operations (insert, update, delete of one label), written to the :class:`~app.core.store.Store`
in one transaction *before* the call returns, so nothing labelled is lost if the app then crashes.
Labels never overlap: a new or moved label trims, splits or removes the labels it covers (inside the same
command, so one undo restores them).

Also here: windowing (:func:`windows`), class balance (:func:`class_balance`), and dataset I/O in the
WISDM v1.1 text format (``user,activity,timestamp,x,y,z;``) and as an ``.npz`` of windows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from app.core.store import Store

__all__ = ["Label", "LabelModel", "Command", "LabelError", "windows", "class_balance", "export_wisdm_csv",
           "import_wisdm_csv", "export_windows_npz", "WisdmSegment"]

_MIN_LEN = 1e-6  # s; shorter pieces left by trimming are dropped


class LabelError(ValueError):
    """A label edit that cannot be done (unknown class, empty interval, unknown id)."""


@dataclass(frozen=True)
class Label:
    id: int
    start: float
    end: float
    label: str

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class Command:
    """One undoable edit: primitive ops ``(before, after)``; before None = insert, after None = delete."""

    text: str
    ops: list[tuple[Label | None, Label | None]] = field(default_factory=list)


class LabelModel:
    """Labels of recording ``recording_id`` (loaded from and written through ``store``)."""

    def __init__(self, store: Store, recording_id: int, classes: Sequence[str], duration: float | None = None,
                 undo_limit: int = 500):
        self.store = store
        self.recording_id = recording_id
        self.classes = tuple(classes)
        self.duration = duration
        self._labels: dict[int, Label] = {r.id: Label(r.id, r.start_s, r.end_s, r.label)
                                          for r in store.labels(recording_id)}
        self._undo: list[Command] = []
        self._redo: list[Command] = []
        self._undo_limit = undo_limit
        self._listeners: list[Callable[[], None]] = []

    # --- queries ---------------------------------------------------------------------------------
    @property
    def labels(self) -> list[Label]:
        return sorted(self._labels.values(), key=lambda l: (l.start, l.id))

    def get(self, label_id: int) -> Label:
        try:
            return self._labels[label_id]
        except KeyError:
            raise LabelError(f"no label with id {label_id} on recording {self.recording_id}") from None

    def label_at(self, t: float) -> Label | None:
        for l in self._labels.values():
            if l.start <= t < l.end:
                return l
        return None

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_text(self) -> str:
        return self._undo[-1].text if self._undo else ""

    @property
    def redo_text(self) -> str:
        return self._redo[-1].text if self._redo else ""

    def add_listener(self, fn: Callable[[], None]) -> None:
        """``fn()`` is called after every change (edit, undo, redo)."""
        self._listeners.append(fn)

    # --- edits -----------------------------------------------------------------------------------
    def add(self, start: float, end: float, label: str) -> Label:
        """Label ``[start, end)`` with class ``label``; overlapped labels are trimmed. Returns the new label."""
        start, end = self._check(start, end, label)
        cmd = Command(f"Label {label} {start:.2f}-{end:.2f} s")
        self._resolve_overlaps(cmd, start, end, exclude=None)
        cmd.ops.append((None, Label(-1, start, end, label)))
        self._do(cmd)
        return self._labels[cmd.ops[-1][1].id]  # type: ignore[union-attr]

    def set_bounds(self, label_id: int, start: float, end: float) -> None:
        old = self.get(label_id)
        start, end = self._check(start, end, old.label)
        if (start, end) == (old.start, old.end):
            return
        cmd = Command(f"Move {old.label} to {start:.2f}-{end:.2f} s")
        self._resolve_overlaps(cmd, start, end, exclude=label_id)
        cmd.ops.append((old, replace(old, start=start, end=end)))
        self._do(cmd)

    def set_class(self, label_id: int, label: str) -> None:
        old = self.get(label_id)
        self._check(old.start, old.end, label)
        if label != old.label:
            self._do(Command(f"Relabel {old.label} as {label}", [(old, replace(old, label=label))]))

    def delete(self, label_id: int) -> None:
        old = self.get(label_id)
        self._do(Command(f"Delete {old.label} {old.start:.2f}-{old.end:.2f} s", [(old, None)]))

    def undo(self) -> bool:
        if not self._undo:
            return False
        cmd = self._undo.pop()
        self._apply([(after, before) for before, after in reversed(cmd.ops)])
        self._redo.append(cmd)
        self._notify()
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        cmd = self._redo.pop()
        self._apply(cmd.ops)
        self._undo.append(cmd)
        self._notify()
        return True

    # --- internals -------------------------------------------------------------------------------
    def _check(self, start: float, end: float, label: str) -> tuple[float, float]:
        if label not in self.classes:
            raise LabelError(f"class {label!r} is not one of this dataset's classes {list(self.classes)}")
        start, end = float(min(start, end)), float(max(start, end))
        if self.duration is not None:
            start, end = max(0.0, start), min(self.duration, end)
        if end - start < _MIN_LEN:
            raise LabelError(f"label interval [{start:.3f}, {end:.3f}] s is empty")
        return start, end

    def _resolve_overlaps(self, cmd: Command, start: float, end: float, exclude: int | None) -> None:
        for o in self.labels:
            if o.id == exclude or o.end <= start or o.start >= end:
                continue
            left = o.start < start - _MIN_LEN
            right = o.end > end + _MIN_LEN
            if left and right:  # split around the new interval
                cmd.ops.append((o, replace(o, end=start)))
                cmd.ops.append((None, Label(-1, end, o.end, o.label)))
            elif left:
                cmd.ops.append((o, replace(o, end=start)))
            elif right:
                cmd.ops.append((o, replace(o, start=end)))
            else:
                cmd.ops.append((o, None))

    def _do(self, cmd: Command) -> None:
        cmd.ops = self._apply(cmd.ops)
        self._undo.append(cmd)
        del self._undo[: -self._undo_limit]
        self._redo.clear()
        self._notify()

    def _apply(self, ops: list[tuple[Label | None, Label | None]]) -> list[tuple[Label | None, Label | None]]:
        """Write ops in one transaction; inserts get their ids (returned ops carry them for undo/redo)."""
        done = []
        with self.store.transaction():
            for before, after in ops:
                if after is None:
                    assert before is not None
                    self.store.delete_label(before.id)
                    self._labels.pop(before.id, None)
                elif before is None:
                    new_id = self.store.add_label(self.recording_id, after.start, after.end, after.label,
                                                  label_id=after.id if after.id >= 0 else None)
                    after = replace(after, id=new_id)
                    self._labels[new_id] = after
                else:
                    self.store.update_label(after.id, after.start, after.end, after.label)
                    self._labels[after.id] = after
                done.append((before, after))
        # an undo of an insert is (after, None): keep the ids we just got in the forward list
        return done

    def _notify(self) -> None:
        for fn in list(self._listeners):
            fn()


# --- windowing -------------------------------------------------------------------------------------
def windows(labels: Iterable[Label], rate_hz: float, size: int, stride: int | None = None,
            n_samples: int | None = None) -> list[tuple[int, str]]:
    """Start sample and class of every window of ``size`` samples lying wholly inside one label.

    ``stride`` defaults to ``size`` (no overlap, as the paper's segments).  Returns ``[(start, class)]``.
    """
    if size < 1:
        raise LabelError(f"window size must be >= 1 sample, got {size}")
    stride = size if stride is None else int(stride)
    if stride < 1:
        raise LabelError(f"window stride must be >= 1 sample, got {stride}")
    out = []
    for l in sorted(labels, key=lambda l: l.start):
        a = int(np.ceil(l.start * rate_hz - 1e-9))
        b = int(np.floor(l.end * rate_hz + 1e-9))
        if n_samples is not None:
            b = min(b, n_samples)
        out.extend((s, l.label) for s in range(a, b - size + 1, stride))
    return out


def class_balance(labels: Iterable[Label], classes: Sequence[str], rate_hz: float | None = None,
                  size: int | None = None) -> dict[str, dict[str, float]]:
    """Per class: labelled seconds, number of labels and (with ``rate_hz`` and ``size``) of windows."""
    labels = list(labels)
    out = {c: {"seconds": 0.0, "labels": 0, "windows": 0} for c in classes}
    for l in labels:
        d = out.setdefault(l.label, {"seconds": 0.0, "labels": 0, "windows": 0})
        d["seconds"] += l.duration
        d["labels"] += 1
    if rate_hz and size:
        for _, c in windows(labels, rate_hz, size):
            out[c]["windows"] += 1
    return out


# --- dataset I/O -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class WisdmSegment:
    """One contiguous run of a user's activity in a WISDM file."""

    user: str
    activity: str
    xyz: np.ndarray  # (n, 3) float32, m/s^2


_WISDM_LINE = re.compile(r"^\s*([^,]+),([^,]+),([-+0-9.eE]+),([-+0-9.eE]+),([-+0-9.eE]+),([-+0-9.eE]+)\s*;?\s*$")


def import_wisdm_csv(path: str | Path, max_errors: int = 20) -> list[WisdmSegment]:
    """Read a WISDM text file (v1.1 or 2019 layout) into contiguous (user, activity) runs.

    Malformed lines are skipped and reported: if more than ``max_errors`` are bad, a :class:`LabelError`
    names the first bad lines (file and line number) and nothing is imported.
    """
    path = Path(path)
    users, acts, rows, bad = [], [], [], []
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            for part in line.split(";"):  # v1.1 has a few records glued on one line
                if not part.strip():
                    continue
                m = _WISDM_LINE.match(part + ";")
                if not m:
                    bad.append(f"{path}:{lineno}: {part.strip()[:60]!r}")
                    continue
                users.append(m.group(1).strip())
                acts.append(m.group(2).strip())
                rows.append((float(m.group(4)), float(m.group(5)), float(m.group(6))))
    if len(bad) > max_errors or (bad and not rows):
        raise LabelError(f"{len(bad)} malformed WISDM lines (expected 'user,activity,timestamp,x,y,z;'), "
                         f"first: " + "; ".join(bad[:3]))
    xyz = np.asarray(rows, np.float32).reshape(-1, 3)
    segs: list[WisdmSegment] = []
    start = 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or users[i] != users[start] or acts[i] != acts[start]:
            segs.append(WisdmSegment(users[start], acts[start], xyz[start:i]))
            start = i
    return segs


def export_wisdm_csv(path: str | Path, user: str, xyz: np.ndarray, rate_hz: float, labels: Iterable[Label],
                     t0_ns: int = 0) -> int:
    """Write the labelled samples of one recording as WISDM v1.1 lines; returns the number of rows.

    The timestamp column is ``t0_ns`` + sample time in ns (WISDM's own timestamps are device uptime).
    """
    xyz = np.asarray(xyz)
    n = 0
    with Path(path).open("a", encoding="utf-8", newline="\n") as fh:
        for l in sorted(labels, key=lambda l: l.start):
            a = max(0, int(np.ceil(l.start * rate_hz - 1e-9)))
            b = min(len(xyz), int(np.floor(l.end * rate_hz + 1e-9)))
            if b <= a:
                continue
            ts = t0_ns + (np.arange(a, b) * (1e9 / rate_hz)).astype(np.int64)
            seg = xyz[a:b]
            fh.writelines(f"{user},{l.label},{t},{x:.6g},{y:.6g},{z:.6g};\n"
                          for t, (x, y, z) in zip(ts.tolist(), seg.tolist()))
            n += b - a
    return n


def export_windows_npz(path: str | Path, parts: Sequence[tuple[np.ndarray, float, Sequence[Label]]],
                       classes: Sequence[str], size: int, stride: int | None = None, meta: dict | None = None) -> int:
    """Save windows ``X (N, size, 3)`` float32 and ``y (N,)`` class indices of several recordings.

    ``parts`` holds ``(xyz, rate_hz, labels)`` per recording.  Also stored: ``classes``, ``size``, ``stride``,
    ``rate_hz`` (per window) and a JSON ``meta``.  Returns N.
    """
    import json

    cls = {c: i for i, c in enumerate(classes)}
    xs, ys, rates = [], [], []
    for xyz, rate, labels in parts:
        for s, c in windows(labels, rate, size, stride, n_samples=len(xyz)):
            xs.append(np.asarray(xyz[s:s + size], np.float32))
            ys.append(cls[c])
            rates.append(rate)
    X = np.stack(xs) if xs else np.zeros((0, size, 3), np.float32)
    np.savez_compressed(path, X=X, y=np.asarray(ys, np.int64), classes=np.asarray(list(classes)),
                        size=size, stride=stride or size, rate_hz=np.asarray(rates, np.float64),
                        meta=json.dumps(meta or {}))
    return len(ys)
