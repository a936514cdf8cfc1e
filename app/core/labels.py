"""Activity labels on a recording, with an undo/redo command stack (Qt-free).

A :class:`LabelModel` edits the labels of one recording.  Every edit is a :class:`Command` made of
primitive operations (insert, update, delete of one label), written to the :class:`~app.core.store.Store`
in one transaction *before* the call returns, so nothing labelled is lost if the app then crashes.
Labels never overlap: a new or moved label trims, splits or removes the labels it covers (inside the same
command, so one undo restores them).

Also here: windowing (:func:`windows`), class balance (:func:`class_balance`), and dataset I/O: import of
WISDM text files (:func:`import_wisdm`; both variants, parsed by :func:`app.core.datasets.load_wisdm`,
which reports every skipped line), export in the WISDM v1.1 text format (``user,activity,timestamp,x,y,z;``)
and as an ``.npz`` of windows, and the labelled data as a :class:`~app.core.datasets.RecordingSet`
(:func:`labelled_recording_set`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from app.core import datasets as ds
from app.core.store import Store, StoreError

__all__ = [
    "Label",
    "LabelModel",
    "Command",
    "LabelError",
    "windows",
    "class_balance",
    "export_labelled_csv",
    "export_wisdm_csv",
    "read_wisdm",
    "import_wisdm",
    "WisdmImport",
    "class_for_activity",
    "import_wisdm_csv",
    "WisdmSegment",
    "export_windows_npz",
    "labelled_parts",
    "labelled_recording_set",
]

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

    def __init__(
        self,
        store: Store,
        recording_id: int,
        classes: Sequence[str],
        duration: float | None = None,
        undo_limit: int = 500,
    ):
        self.store = store
        self.recording_id = recording_id
        self.classes = tuple(classes)
        self.duration = duration
        self._labels: dict[int, Label] = {
            r.id: Label(r.id, r.start_s, r.end_s, r.label) for r in store.labels(recording_id)
        }
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
        """``fn()`` is called after every change (edit, undo, redo, a :meth:`reload` that changed the labels)."""
        self._listeners.append(fn)

    def reload(self) -> bool:
        """Read this recording's labels from the store again (a kept model, before it is shown or undoes).  When
        the store holds other labels than this model (changed by another path: another connection, the
        recording deleted and its id given to a new one), the model takes the store's labels and drops its
        undo and redo history — its steps refer to labels that are no longer there — and tells its listeners;
        returns True then.  When they are the same, nothing changes (the history is kept) and it returns False."""
        now = {r.id: Label(r.id, r.start_s, r.end_s, r.label) for r in self.store.labels(self.recording_id)}
        if now == self._labels:
            return False
        self._labels = now
        self._undo.clear()
        self._redo.clear()
        self._notify()
        return True

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
        """Move or resize a label to ``[start, end)`` (cut at the recording's ends).  The undo text says
        when the label ends up shorter than it was and how many other labels the edit trims or removes, so a
        shortened label is never a silent side effect."""
        old = self.get(label_id)
        start, end = self._check(start, end, old.label)
        if (start, end) == (old.start, old.end):
            return
        cmd = Command(f"Move {old.label} to {start:.2f}-{end:.2f} s")
        self._resolve_overlaps(cmd, start, end, exclude=label_id)
        if end - start < old.duration - 1e-6:
            cmd.text += f" (shortened by {old.duration - (end - start):.2f} s)"
        if cmd.ops:
            cmd.text += f", trimming {len({o.id for o, _ in cmd.ops if o is not None})} other label(s)"
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
        """Undo the last edit (False: nothing to undo).  An undo that cannot be saved raises :class:`LabelError`
        and leaves the labels and both stacks as they were (the edit can be undone once the store takes it)."""
        if not self._undo:
            return False
        cmd = self._undo[-1]
        self._apply([(after, before) for before, after in reversed(cmd.ops)])
        self._redo.append(self._undo.pop())
        self._notify()
        return True

    def redo(self) -> bool:
        """Redo the last undone edit (False: nothing to redo); a failure changes nothing, as for :meth:`undo`."""
        if not self._redo:
            return False
        cmd = self._redo[-1]
        self._apply(cmd.ops)
        self._undo.append(self._redo.pop())
        self._notify()
        return True

    # --- internals -------------------------------------------------------------------------------
    def _check(self, start: float, end: float, label: str) -> tuple[float, float]:
        if label not in self.classes:
            raise LabelError(f"class {label!r} is not one of this dataset's classes ({', '.join(self.classes)})")
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
        done: list[tuple[Label | None, Label | None]] = []
        saved = dict(self._labels)
        try:
            self._apply_ops(ops, done)
        except StoreError as exc:  # full disk, read-only or lost database: nothing changed, say why
            self._labels = saved
            raise LabelError(f"the label change was not saved: {exc}") from exc
        # an undo of an insert is (after, None): keep the ids we just got in the forward list
        return done

    def _apply_ops(self, ops, done: list) -> None:
        with self.store.transaction():
            for before, after in ops:
                if after is None:
                    assert before is not None
                    self.store.delete_label(before.id)
                    self._labels.pop(before.id, None)
                elif before is None:
                    new_id = self.store.add_label(
                        self.recording_id,
                        after.start,
                        after.end,
                        after.label,
                        label_id=after.id if after.id >= 0 else None,
                    )
                    after = replace(after, id=new_id)
                    self._labels[new_id] = after
                else:
                    self.store.update_label(after.id, after.start, after.end, after.label)
                    self._labels[after.id] = after
                done.append((before, after))

    def _notify(self) -> None:
        for fn in list(self._listeners):
            fn()


# --- windowing -------------------------------------------------------------------------------------
def windows(
    labels: Iterable[Label], rate_hz: float, size: int, stride: int | None = None, n_samples: int | None = None
) -> list[tuple[int, str]]:
    """Start sample and class of every window of ``size`` samples lying wholly inside one label.

    ``stride`` defaults to ``size`` (no overlap, as the paper's segments).  Returns ``[(start, class)]``.
    """
    if size < 1:
        raise LabelError(f"window size must be >= 1 sample, got {size}")
    stride = size if stride is None else int(stride)
    if stride < 1:
        raise LabelError(f"window stride must be >= 1 sample, got {stride}")
    out: list[tuple[int, str]] = []
    for l in sorted(labels, key=lambda l: l.start):
        a = int(np.ceil(l.start * rate_hz - 1e-9))
        b = int(np.floor(l.end * rate_hz + 1e-9))
        if n_samples is not None:
            b = min(b, n_samples)
        out.extend((s, l.label) for s in range(a, b - size + 1, stride))
    return out


def class_balance(
    labels: Iterable[Label], classes: Sequence[str], rate_hz: float | None = None, size: int | None = None
) -> dict[str, dict[str, float]]:
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
# WISDM text is parsed by app.core.datasets (both variants, every quirk reported with its line); this
# module only turns the parsed segments into recordings and labels of a dataset.

#: First field of every WISDM record (records end at ';' or at a newline): group 2 is the user id.
_USER_FIELD = re.compile(rb"(^|[;\n])([^,;\n]*)(?=,)")
_NOT_INT = "subject id is not an integer"
#: A parser note naming a subject by its id (``load_wisdm``'s note on a user's sample rate).
_SUBJECT_NOTE = re.compile(r"(: subject )(\d+)( sampled at )")


def read_wisdm(path: str | Path, variant: str = "auto", rate_hz: float | None = 20.0) -> ds.RecordingSet:
    """A WISDM text file (v1.1 or 2019, detected by ``variant='auto'``) as a
    :class:`~app.core.datasets.RecordingSet` of canonical activities, parsed by
    :func:`app.core.datasets.load_wisdm` (every skipped record is in ``.skipped`` with its line).

    Files whose user field is a name instead of WISDM's integer id (this app's own export before it wrote
    ids, or files edited by hand) are read too: the names are swapped for free integer ids in memory, the
    same parser reads the result, and the names are put back on the segments (what the parser reports, skipped
    records, notes and errors, names the user's file, users and records as written).  ``rate_hz=None`` keeps
    the native rates.  Raises :class:`~app.core.datasets.DatasetError` naming the file and the problem.
    """
    path = Path(path)
    try:
        rs = ds.load_wisdm(path, variant=variant, activities=None, rate=rate_hz)
        if not any(s.reason == _NOT_INT for s in rs.skipped):
            return rs
    except ds.DatasetError as exc:
        if not path.is_file() or "no valid WISDM records" not in str(exc):
            raise
    return _read_named_users(path, variant, rate_hz)


def _read_named_users(path: Path, variant: str, rate_hz: float | None) -> ds.RecordingSet:
    import dataclasses
    import io
    import tempfile

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ds.DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    data = data.removeprefix(ds.UTF8_BOM)  # (as the parser drops it: not part of the first user's name)
    fields = {f.strip() for _sep, f in _USER_FIELD.findall(data)}
    numeric = [int(f) for f in fields if f.isdigit()]
    free = max(numeric, default=0) + 1
    names = sorted(f for f in fields if f and not f.isdigit())
    ids = {n: str(free + i).encode() for i, n in enumerate(names)}
    back = {str(free + i): _unescape_user(n.decode("utf-8", "replace")) for i, n in enumerate(names)}
    mapped = _USER_FIELD.sub(lambda m: m.group(1) + ids.get(m.group(2).strip(), m.group(2)), data)

    def quote(record: bytes) -> str:  # as app.core.datasets.parse_wisdm_bytes quotes a skipped record
        return record.replace(b"\r", b"")[:80].decode("latin-1")

    def as_in_file(lines: set[int]) -> dict[tuple[int, str], str]:
        """(line, a record of the parser's copy as quoted) -> that record of the user's file as quoted, for the
        records of ``lines`` (records end at ';' or at a newline: the copy has the same lines and records)."""
        out: dict[tuple[int, str], str] = {}
        last = max(lines, default=0)
        for n, (copy_line, file_line) in enumerate(zip(io.BytesIO(mapped), io.BytesIO(data)), 1):
            if n > last:
                break
            if n in lines:
                for c, f in zip(copy_line.rstrip(b"\n").split(b";"), file_line.rstrip(b"\n").split(b";")):
                    out[(n, quote(c))] = quote(f)
        return out

    # the parser reads a copy with stand-in ids: what it says names the user's file, users and records instead
    with tempfile.TemporaryDirectory(prefix="odl-wisdm-") as tmp:
        tmp_file = Path(tmp) / path.name
        tmp_file.write_bytes(mapped)
        try:
            rs = ds.load_wisdm(tmp_file, variant=variant, activities=None, rate=rate_hz)
        except ds.DatasetError as exc:  # e.g. given up as junk, quoting its first bad record
            msg = str(exc)
            lines = {int(n) for n in re.findall(re.escape(str(tmp_file)) + r":(\d+):", msg)}
            for (_n, c), f in as_in_file(lines).items():
                msg = msg.replace(repr(c), repr(f))
            raise ds.DatasetError(msg.replace(str(tmp_file), str(path))) from None
    src = str(path)
    segs = [dataclasses.replace(s, subject=back.get(s.subject, s.subject), source=src) for s in rs.segments]
    quoted = as_in_file({k.line for k in rs.skipped if k.text})
    skipped = [dataclasses.replace(k, source=src, text=quoted.get((k.line, k.text), k.text)) for k in rs.skipped]
    notes = [
        _SUBJECT_NOTE.sub(lambda m: m[1] + back.get(m[2], m[2]) + m[3], n.replace(str(tmp_file), src)) for n in rs.notes
    ]
    return ds.RecordingSet(segs, src, rs.units, skipped, notes, rs.n_skipped)


def _unescape_user(field: str) -> str:
    """Undo :func:`wisdm_user_field` (only ``%XX`` escapes; anything else is kept as written)."""
    if "%" not in field:
        return field
    from urllib.parse import unquote

    return unquote(field, errors="replace")


def class_for_activity(activity: str, classes: Sequence[str]) -> str | None:
    """The dataset class a canonical activity name belongs to: same canonical name (case, synonyms), a class
    that gathers it (``Stairs`` <- upstairs/downstairs, ``Stationary`` <- sitting/standing) or, for an
    activity the source does not split (WISDM-2019 ``stairs``), the first class it would be split into
    (``Upstairs``).  None when no class fits.  The first two are :func:`app.core.classmap.class_map`'s rule,
    the one every training and evaluation job uses; the last is for importing only (the label is kept for
    the user to split)."""
    from app.core.classmap import class_map

    cls = class_map(classes).class_of(activity)
    if cls is not None:
        return cls
    canon = {ds.canonical_activity(c): c for c in classes}
    for part in ds.MERGES.get(ds.canonical_activity(activity), ()):
        if part in canon:
            return canon[part]
    return None


@dataclass
class WisdmImport:
    """What :func:`import_wisdm` did: the recordings made, the records skipped (file, line, reason) and
    the samples of activities that are not classes of the dataset."""

    source: str
    recordings: list = field(default_factory=list)  # app.core.store.Recording
    labels: int = 0
    skipped: list = field(default_factory=list)  # app.core.datasets.SkippedLine
    notes: list[str] = field(default_factory=list)
    left_out: dict[str, int] = field(default_factory=dict)  # activity -> samples not imported
    cancelled: bool = False
    n_skipped: int | None = None  # records skipped in all; None: len(skipped)
    already: list[str] = field(default_factory=list)  # users whose recording is in the dataset already
    wrong_units: dict[str, float] = field(default_factory=dict)  # user -> median |a| (m/s²) far from gravity

    @property
    def warn(self) -> bool:
        """Something of the file was not imported (skipped lines, activities left out, users refused)."""
        return bool(self.skipped or self.left_out or self.cancelled or self.already or self.wrong_units)

    @property
    def skipped_count(self) -> int:
        """Records skipped in all: ``skipped`` lists at most :data:`app.core.datasets.SKIP_REPORT_MAX`."""
        return ds.skipped_total(self.skipped, self.n_skipped)

    def _skipped_rows(self, limit: int) -> list[str]:
        """``"line 12: expected 6 comma-separated fields, found 2 ('1,A')"`` for the first ``limit`` skipped
        records (with the file's name when they come from several files)."""
        files = {k.source for k in self.skipped}
        return [
            (f"{Path(k.source).name} " if len(files) > 1 else "")
            + f"line {k.line}: {k.reason}"
            + (f" ({k.text!r})" if k.text else "")
            for k in self.skipped[:limit]
        ]

    def skipped_text(self, limit: int = 5) -> str:
        """``"3 lines skipped: line 12: expected 6 comma-separated fields, found 2 ('1,A'); line 40: …"``."""
        if not self.skipped:
            return ""
        n = self.skipped_count
        more = f"; … and {n - limit} more" if n > limit else ""
        return f"{n} line{'s' if n != 1 else ''} skipped: " + "; ".join(self._skipped_rows(limit)) + more

    def summary(self) -> list[str]:
        """What was imported, what was left out, and the parser's notes (one sentence each)."""
        secs = sum(r.duration for r in self.recordings)
        out = [
            f"Imported {len(self.recordings)} recording(s) with {self.labels} label(s), {secs:.1f} s from "
            f"{Path(self.source).name}" + (" (cancelled: the rest was not imported)" if self.cancelled else "") + "."
        ]
        if self.left_out:
            out.append(
                "Not classes of this dataset, left out: "
                + ", ".join(f"{a} ({n:,} sample{'s' if n != 1 else ''})" for a, n in sorted(self.left_out.items()))
                + "."
            )
        if self.already:
            out.append(
                "Already in this dataset, not imported again: "
                + ", ".join(f"WISDM {u}" for u in self.already)
                + " (delete its recording first to import it again)."
            )
        for user, med in self.wrong_units.items():
            out.append(
                f"Not imported: user {user}'s accelerations are not in m/s² with gravity (their median magnitude is "
                f"{med:.3g} m/s², about {ds.G:.1f} expected): WISDM text holds m/s² as the phone measured them; "
                + (
                    "these look like g (multiply x, y and z by 9.81) or like acceleration with gravity removed."
                    if med < ds.G / 3
                    else "these look like mg or another unit."
                )
            )
        out.extend(self.notes)
        return out

    def message(self, limit: int = 5) -> str:
        """One paragraph for the user: what was imported, what was left out and which lines were skipped."""
        return " ".join(self.summary() + ([self.skipped_text(limit) + "."] if self.skipped else []))

    def report(self, limit: int = 50) -> str:
        """Multi-line report for the panel: the summary, then one skipped line per row (first ``limit``)."""
        lines = self.summary()
        if self.skipped:
            n = self.skipped_count
            lines.append(f"{n} line{'s' if n != 1 else ''} skipped:")
            lines += self._skipped_rows(limit)
            if n > limit:
                lines.append(f"… and {n - limit} more")
        return "\n".join(lines)


def import_wisdm(
    store: Store,
    path: str | Path,
    dataset_id: int,
    classes: Sequence[str],
    *,
    variant: str = "auto",
    rate_hz: float = 20.0,
    progress: Callable[[float, str], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> WisdmImport:
    """Import a WISDM text file into dataset ``dataset_id``: one accel recording per user (segments in
    file order, resampled to ``rate_hz``), labelled back to back with the dataset's ``classes``
    (see :func:`class_for_activity`).  Every user is written in one transaction, so a cancel between
    users keeps complete users only.  Parse errors raise :class:`~app.core.datasets.DatasetError`."""
    from app.core.recording import write_accel

    report: Callable[[float, str], None] = progress or (lambda f, t: None)
    report(0.05, f"reading {Path(path).name}")
    rs = read_wisdm(path, variant, rate_hz)
    out = WisdmImport(
        str(path), skipped=list(rs.skipped), notes=list(dict.fromkeys(rs.notes)), n_skipped=rs.skipped_count
    )
    by_user: dict[str, list[tuple[str, np.ndarray]]] = {}
    split = set()
    for s in rs.segments:
        cls = class_for_activity(s.activity, classes)
        if cls is None:
            out.left_out[s.activity] = out.left_out.get(s.activity, 0) + s.n
            continue
        if ds.canonical_activity(cls) in ds.MERGES.get(s.activity, ()):
            split.add((s.activity, cls))
        by_user.setdefault(s.subject, []).append((cls, s.data))
    for activity, cls in sorted(split):
        out.notes.append(f"'{activity}' is not split in this file: labelled '{cls}'.")
    users = list(by_user)
    # a file imported again (a second click, the same file copied elsewhere) made a second recording of the same
    # samples without a word: twice the windows of that user, and copies on both sides of a train/test split
    have = {(r.name, r.n_samples) for r in store.recordings("accel", dataset_id)}
    for k, user in enumerate(users):
        if cancelled is not None and cancelled():
            out.cancelled = True
            break
        report(0.2 + 0.8 * k / max(1, len(users)), f"user {user}")
        parts = by_user[user]
        xyz = np.concatenate([d for _, d in parts])
        if (f"WISDM {user}", len(xyz)) in have:
            out.already.append(user)
            continue
        # a file in g (or mg, or with gravity removed) parsed as m/s² without a word: |a| of a phone at rest or
        # walking is about 1 g, so a median magnitude 3x off cannot be a WISDM recording
        med = float(np.median(np.linalg.norm(xyz, axis=1)))  # (a user of the file has at least one sample)
        if not ds.G / 3 <= med <= 3 * ds.G:
            out.wrong_units[user] = med
            continue
        with store.transaction():
            rec = write_accel(
                store,
                f"WISDM {user}",
                xyz,
                float(rate_hz),
                dataset_id,
                meta={"source": str(path), "user": user, "skipped_lines": len(rs.skipped)},
            )
            t = 0.0
            for cls, d in parts:
                store.add_label(rec.id, t, t + len(d) / rate_hz, cls)
                t += len(d) / rate_hz
        out.recordings.append(rec)
        out.labels += len(parts)
    report(1.0, "done")
    return out


@dataclass(frozen=True)
class WisdmSegment:
    """One contiguous run of a user's activity in a WISDM file (:func:`import_wisdm_csv`)."""

    user: str
    activity: str  # as written in the file (WISDM-2019: the letter code)
    xyz: np.ndarray  # (n, 3) float32, m/s^2, at the file's native rate


def import_wisdm_csv(path: str | Path) -> list[WisdmSegment]:
    """Contiguous (user, activity) runs of a WISDM text file at its native rate, read by :func:`read_wisdm`
    (kept for callers that want plain arrays, e.g. ``app.core.personalize``).  Raises
    :class:`~app.core.datasets.DatasetError` (a ``ValueError``) when nothing valid is in the file."""
    return [
        WisdmSegment(s.subject, s.raw_activity or s.activity, s.data) for s in read_wisdm(path, rate_hz=None).segments
    ]


#: Characters a WISDM user field cannot hold (field and record separators) and the escape character.
_USER_ESCAPES = {"%": "%25", ",": "%2C", ";": "%3B", "\n": "%0A", "\r": "%0D"}


def wisdm_user_field(name: str) -> str:
    """The user field of an exported WISDM line: ``%``, ``,``, ``;`` and line breaks percent-encoded (they
    would split the record), and a numeric name that is not its own integer spelling (``007``, ``+5``) gets
    its first character encoded, so every name reads back as itself (:func:`read_wisdm` decodes)."""
    field = "".join(_USER_ESCAPES.get(ch, ch) for ch in str(name))
    try:
        if str(int(field)) != field:
            field = "".join(f"%{b:02X}" for b in field[0].encode("utf-8")) + field[1:]
    except ValueError:
        pass
    return field


def export_wisdm_csv(
    path: str | Path, user: str, xyz: np.ndarray, rate_hz: float, labels: Iterable[Label], t0_ns: int = 1_000_000_000
) -> int:
    """Write the labelled samples of one recording as WISDM v1.1 lines; returns the number of rows.

    The timestamp column is ``t0_ns`` + sample time in ns (WISDM's own timestamps are device uptime; the
    default starts at 1 s because WISDM readers drop timestamp-0 records as placeholders).
    """
    xyz = np.asarray(xyz)
    field = wisdm_user_field(user)
    labels = list(labels)
    for name in sorted({l.label for l in labels}):
        if not ds._APP_NAME_RE.fullmatch(name):  # noqa: SLF001 - the importer's own rule for activity names
            raise LabelError(
                f"class {name!r} cannot be written as WISDM text (it would not read back): WISDM activity names "
                "are letters, spaces, '-' and '_' (up to 40, starting with a letter); rename the class or export "
                "windows (.npz) instead"
            )
    n = 0
    with Path(path).open("a", encoding="utf-8", newline="\n") as fh:
        for l in sorted(labels, key=lambda l: l.start):
            a = max(0, int(np.ceil(l.start * rate_hz - 1e-9)))
            b = min(len(xyz), int(np.floor(l.end * rate_hz + 1e-9)))
            if b <= a:
                continue
            ts = t0_ns + (np.arange(a, b) * (1e9 / rate_hz)).astype(np.int64)
            seg = xyz[a:b]
            fh.writelines(
                f"{field},{l.label},{t},{x:.6g},{y:.6g},{z:.6g};\n" for t, (x, y, z) in zip(ts.tolist(), seg.tolist())
            )
            n += b - a
    return n


def labelled_parts(
    store: Store, dataset_id: int, dataset_name: str, check: Callable[[], None] | None = None
) -> list[tuple[np.ndarray, float, list[Label]]]:
    """``(xyz, rate_hz, labels)`` of every labelled accel recording of a dataset, the input of
    :func:`export_labelled_csv` and :func:`export_windows_npz`.  It reads every such recording, so it runs off
    the GUI thread; ``check()`` is called before each one (a cancel raises there).  Raises :class:`LabelError`
    when no recording has labels (an export would write an empty file)."""
    from app.core.recording import load_accel

    parts = []
    for rec in store.recordings("accel", dataset_id):
        if check is not None:
            check()
        labels = [Label(l.id, l.start_s, l.end_s, l.label) for l in store.labels(rec.id)]
        if labels:
            parts.append((np.asarray(load_accel(store, rec)), rec.rate_hz, labels))
    if not parts:
        raise LabelError(f"no recording of dataset {dataset_name!r} has labels yet")
    return parts


def export_labelled_csv(path: str | Path, user: str, parts: Sequence[tuple[np.ndarray, float, Sequence[Label]]]) -> int:
    """Every recording's labelled samples, ``parts`` = ``(xyz, rate_hz, labels)`` per recording, as WISDM v1.1
    lines of one file (:func:`export_wisdm_csv`); returns the number of rows.  The file is written whole or
    not at all (:func:`app.core.outputs.atomic_path`): a class WISDM cannot carry or a full disk raises and
    leaves no partial file, and a file of that name from before stays as it was."""
    from app.core.outputs import atomic_path

    with atomic_path(path) as tmp:
        tmp.touch()
        n = sum(export_wisdm_csv(tmp, user, xyz, rate, labels) for xyz, rate, labels in parts)
    return n


def export_windows_npz(
    path: str | Path,
    parts: Sequence[tuple[np.ndarray, float, Sequence[Label]]],
    classes: Sequence[str],
    size: int,
    stride: int | None = None,
    meta: dict | None = None,
) -> int:
    """Save windows ``X (N, size, 3)`` float32 and ``y (N,)`` class indices of several recordings.

    ``parts`` holds ``(xyz, rate_hz, labels)`` per recording.  Also stored: ``classes``, ``size``, ``stride``,
    ``rate_hz`` (per window) and a JSON ``meta``.  Returns N.  Like :func:`export_labelled_csv`, the file is
    written whole or not at all.
    """
    import json

    cls = {c: i for i, c in enumerate(classes)}
    xs, ys, rates = [], [], []
    for xyz, rate, labels in parts:
        for s, c in windows(labels, rate, size, stride, n_samples=len(xyz)):
            xs.append(np.asarray(xyz[s : s + size], np.float32))
            ys.append(cls[c])
            rates.append(rate)
    X = np.stack(xs) if xs else np.zeros((0, size, 3), np.float32)
    from app.core.outputs import atomic_path

    # written whole or not at all, exactly at ``path`` (numpy would append ".npz" to a name given as a string)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh,
            X=X,
            y=np.asarray(ys, np.int64),
            classes=np.asarray(list(classes)),
            size=size,
            stride=stride or size,
            rate_hz=np.asarray(rates, np.float64),
            meta=json.dumps(meta or {}),
        )
    return len(ys)


def labelled_recording_set(
    store: Store,
    dataset_id: int,
    user: str = "user",
    classes: Sequence[str] | None = None,
    rate_hz: float | None = None,
) -> ds.RecordingSet:
    """The labelled accel data of a dataset as one user's :class:`~app.core.datasets.RecordingSet` (one
    segment per label, chronological order), e.g. for :func:`app.core.simulate.simulate`.

    Activities are canonical names, or with ``classes`` (a model's class names) renamed to those classes by
    :func:`class_for_activity`; labels no class takes are left out and named in ``.notes``.  ``rate_hz``
    resamples every segment (e.g. to the model's rate).  Samples lost while recording (NaN rows: a gap of
    the stream or a block the recorder dropped) split a label into several segments, so no window ever
    spans them.  Pieces shorter than two samples are left out."""
    from app.core.recording import load_accel

    segs: list[ds.Segment] = []
    for rec in store.recordings("accel", dataset_id):
        labels = sorted(store.labels(rec.id), key=lambda l: l.start_s)
        if not labels:
            continue
        data = load_accel(store, rec)
        for lab in labels:
            a = max(0, int(np.ceil(lab.start_s * rec.rate_hz - 1e-9)))
            b = min(len(data), int(np.floor(lab.end_s * rec.rate_hz + 1e-9)))
            if b - a < 2:
                continue
            x = np.array(data[a:b], np.float32)
            for i, j in _finite_runs(x):
                if j - i < 2:
                    continue
                segs.append(
                    ds.Segment(
                        user,
                        ds.canonical_activity(lab.label),
                        x[i:j],
                        float(rec.rate_hz),
                        source=rec.name,
                        first_line=a + i,
                        raw_activity=lab.label,
                        native_rate=float(rec.rate_hz),
                        order=len(segs),
                        dataset="app",
                    )
                )
    notes: list[str] = []
    if classes is not None:
        mapped = [(s, class_for_activity(s.activity, classes)) for s in segs]
        unknown = sorted({s.raw_activity for s, c in mapped if c is None})
        if unknown:
            notes.append(
                f"labels {', '.join(unknown)} are not classes of the model ({', '.join(classes)}) and were left out"
            )
        import dataclasses

        segs = [dataclasses.replace(s, activity=c) for s, c in mapped if c is not None]
    rs = ds.RecordingSet(segs, "labelled recordings", notes=notes)
    return rs.resampled(rate_hz) if rate_hz else rs


def _finite_runs(x: np.ndarray) -> list[tuple[int, int]]:
    """``[i, j)`` ranges of the rows of ``x`` without NaN (the whole array when nothing was lost)."""
    ok = ~np.isnan(x).any(axis=1)
    if ok.all():
        return [(0, len(x))]
    d = np.diff(np.concatenate([[0], ok.view(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))
