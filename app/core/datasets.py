"""Multi-user HAR datasets: WISDM (v1.1 and 2019 text formats) and UCI HAPT, resampled to a common rate,
mapped to a common activity set, split chronologically and cut into windows.  numpy only, Qt-free.

Units everywhere: m/s² with gravity included (WISDM is already m/s²; HAPT's g are multiplied by
9.80665).  A recording is a :class:`RecordingSet` of :class:`Segment` s: continuous stretches of one
subject doing one activity at one sample rate, in chronological order.

Parsing is vectorised (whole file as bytes, numpy for record boundaries and field counts, numpy string
-> number conversion per column); only the rare bad records are looked at one by one.  Every record
that is skipped is reported in :attr:`RecordingSet.skipped` with its file, 1-based line number and the
reason — nothing is dropped silently except blank lines.
"""

from __future__ import annotations

import re
import struct
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from app.core.preprocess import resample_to, sliding_windows
from app.core.safezip import DATA_LIMITS, ZipRefused, check_zip

G = 9.80665  # m/s² per g

#: WISDM-2019 activity codes (activity_key.txt; there is no N).
WISDM2019_CODES: dict[str, str] = {
    "A": "walking", "B": "jogging", "C": "stairs", "D": "sitting", "E": "standing", "F": "typing",
    "G": "teeth", "H": "soup", "I": "chips", "J": "pasta", "K": "drinking", "L": "sandwich",
    "M": "kicking", "O": "catch", "P": "dribbling", "Q": "writing", "R": "clapping", "S": "folding",
}  # fmt: skip
#: WISDM v1.1 activity names.
WISDM_V11_NAMES: dict[str, str] = {
    "walking": "walking", "jogging": "jogging", "upstairs": "upstairs", "downstairs": "downstairs",
    "sitting": "sitting", "standing": "standing",
}  # fmt: skip
#: UCI HAPT labels (1..6 activities, 7..12 postural transitions).
HAPT_LABELS: dict[int, str] = {
    1: "walking", 2: "upstairs", 3: "downstairs", 4: "sitting", 5: "standing", 6: "laying",
    7: "stand_to_sit", 8: "sit_to_stand", 9: "sit_to_lie", 10: "lie_to_sit", 11: "stand_to_lie",
    12: "lie_to_stand",
}  # fmt: skip

DEFAULT_WISDM_ACTIVITIES = ("walking", "jogging", "stairs", "sitting", "standing")
DEFAULT_HAPT_ACTIVITIES = ("walking", "upstairs", "downstairs", "sitting", "standing", "laying")

#: Named label sets (class order = softmax order) for pretraining and personalization.
LABEL_SETS: dict[str, tuple[str, ...]] = {
    "wisdm5": DEFAULT_WISDM_ACTIVITIES,  # WISDM-2019 A-E; v1.1/HAPT stairs merged
    "hapt6": DEFAULT_HAPT_ACTIVITIES,
    "common4": ("walking", "stairs", "sitting", "standing"),  # present in every dataset here
    "wisdm6": ("walking", "jogging", "upstairs", "downstairs", "sitting", "standing"),  # WISDM v1.1
}

#: A requested activity that gathers several source activities (unless those are requested too).
MERGES: dict[str, tuple[str, ...]] = {
    "stairs": ("upstairs", "downstairs"),
    "stationary": ("sitting", "standing"),
}
#: Accepted spellings of activity names (case-insensitive) -> canonical name.
SYNONYMS: dict[str, str] = {
    "lying": "laying", "walking_upstairs": "upstairs", "walking_downstairs": "downstairs",
    "up": "upstairs", "down": "downstairs", "stand": "standing", "sit": "sitting", "walk": "walking",
    "jog": "jogging", "running": "jogging",
}  # fmt: skip

_ORDER = (
    "walking", "jogging", "stairs", "upstairs", "downstairs", "sitting", "standing", "laying",
    "stationary",
)  # fmt: skip


class DatasetError(ValueError):
    """A data file or argument that cannot be used; the message names the file/argument and why."""


@dataclass(frozen=True)
class SkippedLine:
    source: str
    line: int  # 1-based physical line
    reason: str
    text: str = ""

    def __str__(self) -> str:
        snippet = f": {self.text!r}" if self.text else ""
        return f"{self.source}:{self.line}: {self.reason}{snippet}"


@dataclass
class Segment:
    """A continuous stretch of one subject doing one activity: ``data`` is ``(n, 3)`` float32 m/s²."""

    subject: str
    activity: str
    data: np.ndarray
    rate: float
    source: str = ""
    first_line: int = 0  # 1-based line (WISDM) or 0-based sample index (HAPT) of the first sample
    raw_activity: str = ""
    native_rate: float = 0.0
    order: int = 0  # chronological position within the subject's recording
    dataset: str = ""

    @property
    def n(self) -> int:
        return int(self.data.shape[0])

    @property
    def duration_s(self) -> float:
        return self.n / self.rate if self.rate else 0.0


def skipped_total(skipped: list, n_skipped: int | None) -> int:
    """Records skipped in all: ``skipped`` lists at most :data:`SKIP_REPORT_MAX` of them, ``n_skipped`` counts
    them all (None: as many as listed)."""
    return len(skipped) if n_skipped is None else int(n_skipped)


@dataclass
class RecordingSet:
    """Per-subject, per-activity continuous segments plus a report of what was skipped."""

    segments: list[Segment]
    source: str = ""
    units: str = "m/s^2"
    skipped: list[SkippedLine] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Records skipped in all (``skipped`` lists at most :data:`SKIP_REPORT_MAX` of them); None = len(skipped).
    n_skipped: int | None = None

    @property
    def skipped_count(self) -> int:
        return skipped_total(self.skipped, self.n_skipped)

    # --- queries --------------------------------------------------------------------------------
    @property
    def rate(self) -> float | None:
        """The common sample rate in Hz, or ``None`` when segments differ (or there are none)."""
        rates = {s.rate for s in self.segments}
        return rates.pop() if len(rates) == 1 else None

    def subjects(self) -> list[str]:
        return sorted({s.subject for s in self.segments}, key=_natural_key)

    def activities(self) -> list[str]:
        return order_activities({s.activity for s in self.segments})

    @property
    def n_samples(self) -> int:
        return sum(s.n for s in self.segments)

    def samples_per(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for s in self.segments:
            out[(s.subject, s.activity)] = out.get((s.subject, s.activity), 0) + s.n
        return out

    def summary(self) -> str:
        acts = ", ".join(f"{a} {sum(s.n for s in self.segments if s.activity == a)}" for a in self.activities())
        rate = f"{self.rate:g} Hz" if self.rate else "mixed rates"
        text = (
            f"{self.source}: {len(self.subjects())} subjects, {len(self.segments)} segments, "
            f"{self.n_samples} samples at {rate} ({acts}); {self.skipped_count:,} records skipped"
        )
        return text

    # --- transformations (all return new sets; data arrays are shared, never modified) -----------
    def _with(self, segments: list[Segment]) -> "RecordingSet":
        return RecordingSet(segments, self.source, self.units, list(self.skipped), list(self.notes), self.n_skipped)

    def for_subjects(self, subjects: Iterable[str | int]) -> "RecordingSet":
        wanted = {str(s) for s in subjects}
        unknown = wanted - set(self.subjects())
        if unknown:
            raise DatasetError(
                f"subjects {', '.join(sorted(unknown, key=_natural_key))} are not in {self.source} "
                f"(available: {', '.join(self.subjects())})"
            )
        return self._with([s for s in self.segments if s.subject in wanted])

    def without_subjects(self, subjects: Iterable[str | int]) -> "RecordingSet":
        drop = {str(s) for s in subjects}
        return self._with([s for s in self.segments if s.subject not in drop])

    def select(
        self, activities: Sequence[str] | Mapping[str, Sequence[str]] | str | None, strict: bool = False
    ) -> "RecordingSet":
        """Keep and rename activities (see :func:`resolve_activities`); ``None``/``'all'`` keeps all.
        A requested activity absent from the data raises with ``strict``, else it is listed in
        ``notes`` (a user may lack one, e.g. WISDM-2019 subject 1609 never jogged); none present
        always raises."""
        if activities is None or activities == "all":
            return self._with(list(self.segments))
        available = {s.activity for s in self.segments}
        try:
            mapping = resolve_activities(activities, available, self.source)
        except DatasetError as exc:
            mapping = resolve_activities(activities, available, self.source, strict=False)
            if strict or not mapping:
                raise DatasetError(str(exc)) from None
            out = self._with([replace(s, activity=mapping[s.activity]) for s in self.segments if s.activity in mapping])
            out.notes.append(str(exc))
            return out
        return self._with([replace(s, activity=mapping[s.activity]) for s in self.segments if s.activity in mapping])

    def resampled(self, rate: float | None) -> "RecordingSet":
        """Every segment resampled to ``rate`` Hz (``None``: unchanged)."""
        if rate is None:
            return self._with(list(self.segments))
        if rate <= 0:
            raise DatasetError(f"rate must be > 0 Hz, got {rate}")
        out = []
        for s in self.segments:
            if s.rate == rate:
                out.append(s)
                continue
            data = resample_to(s.data, s.rate, rate)
            if data.shape[0] >= 1:
                out.append(replace(s, data=data, rate=float(rate)))
        return self._with(out)

    @staticmethod
    def concat(sets: Sequence["RecordingSet"], prefix_subjects: bool = False) -> "RecordingSet":
        """One set from several; with ``prefix_subjects`` subject ids become ``dataset/id`` so that
        ids from different datasets cannot collide."""
        segs: list[Segment] = []
        skipped: list[SkippedLine] = []
        notes: list[str] = []
        for rs in sets:
            for s in rs.segments:
                segs.append(replace(s, subject=f"{s.dataset}/{s.subject}") if prefix_subjects else s)
            skipped += rs.skipped
            notes += rs.notes
        n = sum(rs.skipped_count for rs in sets)
        return RecordingSet(segs, " + ".join(rs.source for rs in sets), "m/s^2", skipped, notes, n)


def _natural_key(s: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s))


def canonical_activity(name: str) -> str:
    key = name.strip().lower().replace(" ", "_").replace("-", "_")
    return SYNONYMS.get(key, key)


def order_activities(names: Iterable[str]) -> list[str]:
    names = set(names)
    known = [a for a in _ORDER if a in names]
    return known + sorted(names - set(known))


def activity_targets(activities: Sequence[str] | Mapping[str, Sequence[str]] | str) -> tuple[str, ...]:
    """The classes (canonical names, in the order given) that ``activities`` asks for — the same reading as
    :func:`resolve_activities`: a label-set name, ``target`` or ``target=src+src`` items, or a mapping.
    Raises :class:`DatasetError` naming a malformed item."""
    from app.core.classmap import ClassMapError, parse_activities  # noqa: PLC0415

    try:
        entries = parse_activities(activities)
    except ClassMapError as exc:
        raise DatasetError(str(exc)) from None
    targets = tuple(dict.fromkeys(canonical_activity(t) for t, _ in entries))
    if not targets:
        raise DatasetError("no activities selected")
    return targets


def resolve_activities(
    activities: Sequence[str] | Mapping[str, Sequence[str]] | str,
    available: Iterable[str],
    source: str = "",
    strict: bool = True,
) -> dict[str, str]:
    """Map source activity -> target activity (canonical names), by the one rule of
    :func:`app.core.classmap.class_map` with the requested activities as the classes.

    ``activities`` is a label-set name (:data:`LABEL_SETS`), a list of target names (each gathers the
    source activity of the same name, and ``stairs``/``stationary`` also gather up+downstairs /
    sitting+standing unless those are requested separately; ``target=src+src`` names the sources), or
    an explicit ``{target: [sources]}`` mapping.  A requested activity that no source provides raises
    :class:`DatasetError` listing what is available (with ``strict=False`` it is just left out of the
    mapping).
    """
    from app.core.classmap import ClassMapError, class_map  # noqa: PLC0415

    available = set(available)
    targets = list(activity_targets(activities))
    try:
        cmap = class_map(targets, activities)
    except ClassMapError as exc:
        raise DatasetError(str(exc)) from None
    mapping = cmap.mapping(available)
    missing = cmap.unserved(available)
    if missing and strict:
        where = f" in {source}" if source else ""
        raise DatasetError(
            f"activities {', '.join(missing)} not found{where} (available: {', '.join(order_activities(available))})"
        )
    return mapping


# ================================================================================================
# WISDM text files
# ================================================================================================

_APP_NAME_RE = re.compile(r"[A-Za-z][A-Za-z _-]{0,39}")  # a plain activity name (v1.1 / app export)
_WISDM_FILE_RE = re.compile(r"(data_\d+_accel_\w+\.txt|.*wisdm.*raw.*\.txt)$", re.IGNORECASE)


@dataclass
class _Parsed:
    subject: np.ndarray  # int64
    label: np.ndarray  # bytes labels (stripped)
    ts: np.ndarray  # int64
    xyz: np.ndarray  # (n, 3) float64
    line: np.ndarray  # int64 1-based line numbers


def _count_in_spans(positions: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """How many of the sorted ``positions`` fall in each ``[start, end)`` span."""
    return np.searchsorted(positions, ends) - np.searchsorted(positions, starts)


def _to_numbers(col: list[bytes], dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """bytes cells -> numbers (``float()``/``int()`` accept bytes, mapped in C); returns (values, bad
    mask).  Only a column with a bad cell takes the per-cell path that finds which."""
    np_dtype = np.float64 if dtype is float else np.int64
    try:
        vals = np.fromiter(map(dtype, col), dtype=np_dtype, count=len(col))
        bad = ~np.isfinite(vals) if dtype is float else np.zeros(len(vals), dtype=bool)
        return vals, bad
    except (ValueError, OverflowError):
        pass
    out = np.zeros(len(col), dtype=np_dtype)
    bad = np.zeros(len(col), dtype=bool)
    for i, cell in enumerate(col):
        try:
            v = dtype(cell)
            if dtype is float and not np.isfinite(v):
                raise ValueError
            out[i] = v
        except (ValueError, OverflowError):
            bad[i] = True
    return out, bad


#: Accelerations beyond this (m/s², ~100 g) are not readings of a body-worn accelerometer: such records
#: are skipped and reported (values like 1e30 made training diverge).
MAX_ABS_ACCEL = 1000.0


def parse_wisdm_bytes(
    data: bytes, source: str, line0: int = 0, counts: list[int] | None = None
) -> tuple[_Parsed, list[SkippedLine]]:
    """Parse WISDM text (either variant) into column arrays; returns the good records and a report of
    the skipped ones.  Records end at ``;`` or at a newline (v1.1 has lines holding two records).
    ``line0``: lines before ``data`` (a chunk of a longer file); ``counts``: ``[skipped, named]``: the
    first item is incremented by every skipped record (the report lists at most 10,000 per reason), the
    second (if present) by the well-formed records whose user field is a name."""
    data = data.replace(b"\r", b"")
    buf = np.frombuffer(data, dtype=np.uint8)
    n_bytes = len(buf)
    is_nl = buf == 10
    is_sep = is_nl | (buf == 59)
    sep = np.flatnonzero(is_sep)
    starts = np.concatenate(([0], sep + 1))
    ends = np.concatenate((sep, [n_bytes]))
    nl_pos = np.flatnonzero(is_nl)
    line_of = np.searchsorted(nl_pos, starts, side="left") + 1 + line0
    # per-record counts without a Python loop
    space_pos = np.flatnonzero((buf == 32) | (buf == 9))
    n_text = (ends - starts) - _count_in_spans(space_pos, starts, ends)
    n_comma = _count_in_spans(np.flatnonzero(buf == 44), starts, ends)
    nonempty = n_text > 0
    terminator = np.where(ends < n_bytes, buf[np.minimum(ends, n_bytes - 1)] if n_bytes else 0, 0)

    records = data.replace(b";", b"\n").split(b"\n")
    assert len(records) == len(starts)
    skipped: list[SkippedLine] = []

    def report(idx: np.ndarray, reason: str) -> None:
        if counts is not None:
            counts[0] += len(idx)
        for i in idx[:10000]:  # a report, not a copy of a broken file
            skipped.append(SkippedLine(source, int(line_of[i]), reason, records[i][:80].decode("latin-1")))
        if len(idx) > 10000:
            skipped.append(SkippedLine(source, int(line_of[idx[10000]]), f"... and {len(idx) - 10000} more: {reason}"))

    ok = nonempty & (n_comma == 5)
    bad_fields = np.flatnonzero(nonempty & (n_comma != 5))
    if len(bad_fields):
        # the comma count per record is known; say how many fields were found
        for k in np.unique(n_comma[bad_fields]):
            report(bad_fields[n_comma[bad_fields] == k], f"expected 6 comma-separated fields, found {k + 1}")
    semicolon_format = np.count_nonzero(terminator[nonempty] == 59) * 2 > np.count_nonzero(nonempty)
    idx_nonempty = np.flatnonzero(nonempty)
    if semicolon_format and len(idx_nonempty) and ends[idx_nonempty[-1]] == n_bytes and ok[idx_nonempty[-1]]:
        last = idx_nonempty[-1]
        ok[last] = False
        report(np.array([last]), "truncated: last record has no terminating ';'")

    good_idx = np.flatnonzero(ok)
    if len(good_idx) and len(good_idx) == np.count_nonzero(
        ends > starts
    ):  # common case: every non-empty record is good
        flat = b",".join(filter(None, records)).split(b",")
    elif len(good_idx):
        flat = b",".join([records[i] for i in good_idx.tolist()]).split(b",")
    else:
        flat = []
    subj, bad_s = _to_numbers(flat[0::6], int)
    ts, bad_t = _to_numbers(flat[2::6], int)
    xyz = np.empty((len(good_idx), 3))
    bad_xyz = np.zeros(len(good_idx), dtype=bool)
    for c in range(3):
        xyz[:, c], bad_c = _to_numbers(flat[3 + c :: 6], float)
        bad_xyz |= bad_c
    labels = np.char.strip(np.array(flat[1::6], dtype=bytes)) if len(good_idx) else np.zeros(0, "S1")
    huge = ~bad_xyz & (np.abs(xyz) > MAX_ABS_ACCEL).any(axis=1) if len(good_idx) else np.zeros(0, bool)
    bad = bad_s | bad_t | bad_xyz | huge
    if counts is not None and len(counts) > 1:  # well-formed records but for a named user (app export)
        counts[1] += int(np.count_nonzero(bad_s & ~bad_t & ~bad_xyz))
    for mask, reason in ((bad_s, "subject id is not an integer"), (bad_t, "timestamp is not an integer"),
                         (bad_xyz & ~bad_s & ~bad_t, "x, y or z is not a finite number")):  # fmt: skip
        if mask.any():
            report(good_idx[mask], reason)
    if huge.any():
        report(good_idx[huge], f"x, y or z beyond ±{MAX_ABS_ACCEL:g} m/s² (not an accelerometer reading)")
    zero_ts = ~bad & (ts == 0)
    if zero_ts.any():
        report(good_idx[zero_ts], "timestamp 0 (placeholder record)")
    keep = ~bad & ~zero_ts
    parsed = _Parsed(subj[keep], labels[keep], ts[keep], xyz[keep], line_of[good_idx][keep])
    skipped.sort(key=lambda s: s.line)
    return parsed, skipped


def detect_wisdm_variant(labels: np.ndarray) -> str:
    """``'2019'`` when the activity field holds letter codes, ``'v1.1'`` when it holds names."""
    uniq = [u.decode("latin-1") for u in np.unique(labels)]
    if not uniq:
        return "2019"
    codes = sum(1 for u in uniq if len(u) == 1 and u.isalpha())
    return "2019" if codes * 2 >= len(uniq) else "v1.1"


def _timestamp_scale(dt: np.ndarray) -> float:
    """Seconds per timestamp tick, from the median positive step (ns for both WISDM variants)."""
    pos = dt[dt > 0]
    if not len(pos):
        return 1e-9
    med = float(np.median(pos))
    for scale in (1e-9, 1e-6, 1e-3, 1.0):
        if 1e-3 <= med * scale <= 1.0:  # 1 ms .. 1 s per sample
            return scale
    return 1e-9


def _wisdm_file_to_segments(
    path: Path, variant: str, gap_s: float, default_rate: float
) -> tuple[list[Segment], list[SkippedLine], list[str], str, int]:
    source = str(path)
    p, skipped, n_skipped = read_wisdm_records(path)
    notes: list[str] = []
    found = detect_wisdm_variant(p.label)
    if variant == "auto":
        variant = found
    elif variant != found and len(p.label):
        raise DatasetError(
            f"{path}: looks like WISDM {found} (activity field e.g. {p.label[0].decode('latin-1')!r}), "
            f"not variant {variant!r}"
        )
    table = WISDM2019_CODES if variant == "2019" else WISDM_V11_NAMES
    uniq, inv = np.unique(p.label, return_inverse=True)
    names = []
    for u in uniq:
        key = u.decode("latin-1")
        name = table.get(key if variant == "2019" else key.lower())
        if name is None and variant == "v1.1" and _APP_NAME_RE.fullmatch(key):
            # the app's own export (labels.export_wisdm_csv) writes v1.1 lines with the user's class
            # names (e.g. 'stairs', 'laying'): accept any plain activity name, canonicalised
            name = canonical_activity(key)
        names.append(name)
    unknown = np.array([n is None for n in names], dtype=bool)[inv] if len(uniq) else np.zeros(0, bool)
    if unknown.any():
        n_skipped += int(np.count_nonzero(unknown))
        for i in np.flatnonzero(unknown)[: max(0, SKIP_REPORT_MAX - len(skipped))]:
            skipped.append(SkippedLine(source, int(p.line[i]), f"unknown activity {p.label[i].decode('latin-1')!r}"))
        keep = ~unknown
        p = _Parsed(p.subject[keep], p.label[keep], p.ts[keep], p.xyz[keep], p.line[keep])
        inv = inv[keep]
    if not len(p.ts):
        return [], skipped, notes, variant, n_skipped
    dt = np.diff(p.ts)
    scale = _timestamp_scale(dt)
    change = (np.diff(p.subject) != 0) | (np.diff(inv) != 0)
    back = dt < 0
    gap = dt * scale > gap_s
    cut = np.flatnonzero(change | back | gap) + 1
    bounds = np.concatenate(([0], cut, [len(p.ts)]))
    n_back = int(np.count_nonzero(back & ~change))
    n_gap = int(np.count_nonzero(gap & ~change & ~back))
    if n_back or n_gap:
        notes.append(f"{source}: split at {n_back} backward timestamp jumps and {n_gap} gaps > {gap_s:g} s")
    # native rate per subject from the median positive step inside segments
    inside = np.ones(len(dt), dtype=bool)
    inside[cut - 1] = False
    rates: dict[int, float] = {}
    for sid in np.unique(p.subject):
        sel = inside & (p.subject[:-1] == sid) & (dt > 0)
        if np.any(sel):
            native = 1.0 / (float(np.median(dt[sel])) * scale)
        else:
            native = default_rate
        rates[int(sid)] = native
    segs: list[Segment] = []
    order: dict[int, int] = {}
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b - a < 1:
            continue
        sid = int(p.subject[a])
        native = rates[sid]
        nominal = float(round(native)) if 1.0 <= native <= 1000.0 else default_rate
        k = order.get(sid, 0)
        order[sid] = k + 1
        segs.append(
            Segment(
                subject=str(sid),
                activity=names[inv[a]],
                data=p.xyz[a:b].astype(np.float32),
                rate=nominal,
                source=source,
                first_line=int(p.line[a]),
                raw_activity=p.label[a].decode("latin-1"),
                native_rate=native,
                order=k,
                dataset=f"wisdm{variant.replace('v1.1', '_v1.1')}",
            )
        )
    for sid, native in rates.items():
        if abs(native - round(native)) > 0.05 * native or round(native) != round(default_rate):
            notes.append(f"{source}: subject {sid} sampled at {native:.2f} Hz (treated as {round(native)} Hz)")
    return segs, skipped, notes, variant, n_skipped


#: Skipped records listed (with file and line) per file; the rest are only counted.
SKIP_REPORT_MAX = 10_000
#: Bytes of a WISDM file parsed at a time (bounded memory whatever the file's size).
WISDM_CHUNK = 8 << 20
#: A file whose first :data:`JUNK_PROBE` bytes hold fewer than :data:`JUNK_MIN_GOOD` good records per
#: record is not WISDM data: reading stops there with the count so far.
JUNK_PROBE = 4 << 20
JUNK_MIN_GOOD = 0.01
#: The byte-order mark Windows tools put at the start of UTF-8 text; dropped before parsing.
UTF8_BOM = b"\xef\xbb\xbf"


def read_wisdm_records(path: Path, chunk: int = WISDM_CHUNK) -> tuple[_Parsed, list[SkippedLine], int]:
    """Parse a WISDM text file chunk by chunk (cut at record separators), with memory bounded by the chunk
    size plus the good records kept (a few dozen bytes each).  Returns (good records, the first
    :data:`SKIP_REPORT_MAX` skipped ones, how many were skipped in all).  Gives up with a
    :class:`DatasetError` giving the count so far when the file's start is mostly junk."""
    source = str(path)
    parts: list[_Parsed] = []
    skipped: list[SkippedLine] = []
    counts = [0, 0]
    good = 0
    lines = 0
    done = 0
    try:
        size = path.stat().st_size
        fh = path.open("rb")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    with fh:
        rest = b""
        block = _read(fh, chunk, path)
        if block.startswith(UTF8_BOM):  # saved by Notepad or Excel: a mark, not part of the first user id
            block = block[len(UTF8_BOM) :]
        while True:
            nxt = _read(fh, chunk, path) if block else b""
            last = not nxt  # the file's tail (with a last record that may lack its ';') is parsed whole
            data = rest + block
            rest = b""
            if not last:
                cut = max(data.rfind(b"\n"), data.rfind(b";")) + 1
                if cut == 0 and len(data) < 2 * chunk:
                    rest = data  # a record longer than a chunk: take more (a junk file gives up below)
                    block = nxt
                    continue
                if cut == 0:
                    cut = len(data)
                data, rest = data[:cut], data[cut:]
            if data:
                p, sk = parse_wisdm_bytes(data, source, lines, counts)
                lines += data.count(b"\n")
                done += len(data)
                good += len(p.ts)
                parts.append(p)
                room = SKIP_REPORT_MAX - len(skipped)
                skipped += [k for k in sk if not k.reason.startswith("... and ")][: max(0, room)]
                total = good + counts[0]
                plausible = good + counts[1]
                if size > JUNK_PROBE and done >= JUNK_PROBE and plausible < JUNK_MIN_GOOD * max(total, 100):
                    raise DatasetError(
                        f"{path}: not WISDM accelerometer text: {counts[0]:,} of the first {total:,} records are "
                        f"unreadable ({good:,} good) in the first {done / 1e6:.1f} MB of {size / 1e6:.1f} MB; "
                        f"stopped reading (first problem: {skipped[0] if skipped else 'none'})"
                    )
            if last:
                break
            block = nxt
    if len(parts) == 1:
        merged = parts[0]
    else:
        merged = _Parsed(
            np.concatenate([p.subject for p in parts]) if parts else np.zeros(0, np.int64),
            np.concatenate([p.label for p in parts]) if parts else np.zeros(0, "S1"),
            np.concatenate([p.ts for p in parts]) if parts else np.zeros(0, np.int64),
            np.concatenate([p.xyz for p in parts]) if parts else np.zeros((0, 3)),
            np.concatenate([p.line for p in parts]) if parts else np.zeros(0, np.int64),
        )
    if counts[0] > len(skipped) and skipped:
        skipped.append(
            SkippedLine(source, skipped[-1].line, f"... and {counts[0] - len(skipped):,} more records skipped")
        )
    return merged, skipped, counts[0]


def _read(fh, n: int, path: Path) -> bytes:
    try:
        return fh.read(n)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def wisdm_files(path: Path) -> list[Path]:
    """The WISDM text files at ``path`` (a file, or a directory searched recursively)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.exists():
        raise DatasetError(f"{path}: no such file or directory")
    files = sorted((p for p in path.rglob("*.txt") if _WISDM_FILE_RE.match(p.name)), key=lambda p: _natural_key(p.name))
    # WISDM-2019's raw/ holds phone and watch recordings of the same subjects and activities: merged,
    # one subject would get two devices' signals interleaved.  The models here are phone models.
    phone = [p for p in files if p.name.lower().endswith("_accel_phone.txt")]
    if phone:
        files = [p for p in files if not p.name.lower().endswith("_accel_watch.txt")]
    if not files:
        raise DatasetError(f"{path}: no WISDM files (data_<id>_accel_phone.txt or WISDM_ar_v1.1_raw.txt) found")
    return files


def load_wisdm(
    path: str | Path,
    variant: str = "auto",
    activities: Sequence[str] | Mapping[str, Sequence[str]] | str | None = DEFAULT_WISDM_ACTIVITIES,
    rate: float | None = 20.0,
    subjects: Iterable[str | int] | None = None,
    gap_s: float = 1.0,
) -> RecordingSet:
    """Load WISDM accelerometer text: a file or a directory of ``data_<id>_accel_phone.txt`` files.

    * ``variant``: ``'auto'`` (from the activity field), ``'v1.1'`` (``user,Activity,timestamp,x,y,z;``)
      or ``'2019'`` (``subject,CODE,timestamp,x,y,z;``, codes A–S).
    * Segments break where the subject or activity changes, the timestamp goes back (WISDM-2019
      restarts it per activity) or jumps forward by more than ``gap_s`` seconds.
    * The native rate of every subject is estimated from the timestamps (one WISDM-2019 subject is at
      25 Hz) and each segment is resampled to ``rate`` Hz (``None``: keep native rates).
    * ``activities``: see :func:`resolve_activities` (default: walking, jogging, stairs, sitting,
      standing; ``None`` keeps all).
    * Malformed, truncated, non-numeric, timestamp-0 and unknown-activity records are skipped and
      listed in ``.skipped`` with file and line number.
    """
    if variant not in ("auto", "v1.1", "2019"):
        raise DatasetError(f"variant must be 'auto', 'v1.1' or '2019', got {variant!r}")
    files = wisdm_files(Path(path))
    for f in files:
        kind = sniff_file(f)
        if not kind.for_wisdm():  # (parsed, its bytes would be quoted as bad records)
            raise DatasetError(f"{f}: {kind.what}, not WISDM text: {WISDM_EXPECTED}{_hint(kind)}")
    segs: list[Segment] = []
    skipped: list[SkippedLine] = []
    notes: list[str] = []
    n_skipped = 0
    for f in files:
        s, sk, nt, _, n = _wisdm_file_to_segments(f, variant, gap_s, 20.0)
        segs += s
        skipped += sk
        notes += nt
        n_skipped += n
    if not segs and not n_skipped:  # nothing to quote: was "no valid WISDM records (0 skipped)"
        empty = all(f.stat().st_size == 0 for f in files)
        what = (
            ("is empty" if empty else "holds no records, only blank lines")
            if len(files) == 1
            else (f"holds {len(files)} files, all empty" if empty else f"holds {len(files)} files with no records")
        )
        raise DatasetError(f"{path}: {what}; {WISDM_EXPECTED}")
    if not segs:
        # what the first refused record was: usually the whole story (a header line, another format)
        first = f"; the first: {skipped[0]}" if skipped else ""
        raise DatasetError(f"{path}: no valid WISDM records ({n_skipped:,} skipped{first}); {WISDM_EXPECTED}")
    rs = RecordingSet(segs, str(path), "m/s^2", skipped, notes, n_skipped)
    if subjects is not None:
        rs = rs.for_subjects(subjects)
    return rs.select(activities).resampled(rate)


# ================================================================================================
# What a file is (for a message about a file given where another kind is expected)
# ================================================================================================

#: The arrays of a HAPT npz and of the app's windows export (:func:`app.core.labels.export_windows_npz`).
HAPT_ARRAYS = ("acc", "label", "user", "session")
WINDOWS_ARRAYS = ("X", "y", "classes")
#: The header of the sample recording the emulated board's sensor plays back (``assets/sample/*.csv``).
SAMPLE_CSV_HEADER = "t_s,x,y,z,activity"
#: What :func:`load_wisdm` and :func:`load_hapt` read, and what ``--data`` takes (:func:`load_dataset`).
WISDM_EXPECTED = (
    "WISDM text is a data_<id>_accel_phone.txt (WISDM-2019) or WISDM_ar_v1.1_raw.txt (v1.1) file of "
    "'user,activity,timestamp,x,y,z;' records, or a folder holding them"
)
HAPT_EXPECTED = "a HAPT .npz is hapt_raw_50hz.npz with arrays acc, label, user, session, or a folder holding it"
DATA_FORMATS = (
    "WISDM accelerometer text (data_<id>_accel_phone.txt or WISDM_ar_v1.1_raw.txt files of "
    "'user,activity,timestamp,x,y,z;' records, the app's WISDM export, or a folder of them) or a HAPT .npz "
    "(arrays acc, label, user, session)"
)
#: What ``personalize --data`` takes besides :data:`DATA_FORMATS` (``pretrain --data`` does not take it).
WINDOWS_FORMAT = "the app's windows .npz (arrays X, y, classes)"
#: ``odlstudio loso --dataset <name>``: the dataset's title and what its ``--data`` is.
DATASET_DATA: dict[str, tuple[str, str]] = {
    "wisdm2019": (
        "WISDM-2019",
        "WISDM-2019 phone accelerometer text, data_<id>_accel_phone.txt files (the folder wisdm2019_phone_accel "
        "or one of its files)",
    ),
    "hapt": (
        "HAPT",
        "the converted UCI HAPT hapt_raw_50hz.npz (arrays acc, label, user, session) or a folder holding it",
    ),
}
_SNIFF_BYTES = 4096


@dataclass(frozen=True)
class FileKind:
    """What a file recognisably is.  ``kind``: ``hapt``, ``windows``, ``model``, ``loso_cache``, ``keras``,
    ``npz`` (other arrays), ``zip`` (not arrays), ``damaged_zip``, ``npy``, ``hdf5``, ``utf16``, ``binary``,
    ``sample_csv``, ``wisdm``, ``text`` (anything else: the text readers decide) or ``unreadable``; ``what``: a noun phrase for
    a message ("a HAPT .npz (arrays ...)"); ``hint``: what to do with it instead, or ""; ``arrays``: an npz's
    arrays (of a damaged one, those at its start)."""

    kind: str
    what: str
    hint: str = ""
    arrays: tuple[str, ...] = ()

    def for_hapt(self) -> bool:
        """:func:`load_hapt` reads it, or says what is wrong with it (a damaged or incomplete HAPT/windows npz)."""
        if self.kind == "npz":
            return _hapt_like(self.arrays) or _windows_like(self.arrays)
        return self.kind in ("hapt", "damaged_zip", "unreadable")

    def for_wisdm(self) -> bool:
        """:func:`load_wisdm` reads it (or quotes its bad records)."""
        return self.kind in ("wisdm", "text", "unreadable")


def _hapt_like(arrays: Sequence[str]) -> bool:
    return bool(set(arrays) & set(HAPT_ARRAYS))


def _windows_like(arrays: Sequence[str]) -> bool:
    return "classes" in arrays or {"X", "y"} <= set(arrays)


def _names(items: Sequence[str], at_most: int = 8) -> str:
    shown = ", ".join(items[:at_most])
    return shown + (f" and {len(items) - at_most} more" if len(items) > at_most else "")


def _zip64_compressed_size(extra: bytes) -> int | None:
    """The compressed size in a local header's zip64 extra field (None: there is none)."""
    off = 0
    while off + 20 <= len(extra):  # (a field too short to hold it ends the search: nothing after it can)
        tag, n = struct.unpack_from("<HH", extra, off)
        if tag == 1 and n >= 16:
            return int(struct.unpack_from("<Q", extra, off + 12)[0])
        off += 4 + n
    return None


def _local_members(path: Path, at_most: int = 64) -> list[str]:
    """The members whose local headers begin a zip that has lost its directory (at the end: e.g. a truncated
    file), walked header to header as far as the sizes tell."""
    names: list[str] = []
    try:
        with path.open("rb") as fh:
            pos, end = 0, path.stat().st_size
            while len(names) < at_most and pos < end:  # (a size may point past the end, even past what seek takes)
                fh.seek(pos)
                head = fh.read(30)
                if len(head) < 30 or head[:4] != b"PK\x03\x04":
                    break
                (csize,) = struct.unpack_from("<I", head, 18)
                nlen, xlen = struct.unpack_from("<HH", head, 26)
                name, extra = fh.read(nlen), fh.read(xlen)
                if not nlen or len(name) < nlen:
                    break
                names.append(name.decode("utf-8", "replace"))
                size = _zip64_compressed_size(extra) if csize == 0xFFFFFFFF else csize
                if head[6] & 8 or size is None:  # (flag bit 3: sizes after the data) no next header to find
                    break
                pos += 30 + nlen + xlen + size
    except OSError:  # (unreadable: the readers say why)
        pass
    return names


def _sample_kind(path: Path) -> FileKind:
    """A ``t_s,x,y,z,activity`` CSV: the shipped sample (its JSON sidecar names the source recording) or
    another file in that format."""
    import json  # noqa: PLC0415

    try:
        meta = json.loads(path.with_suffix(".json").read_bytes())  # (JSON is UTF-8, -16 or -32: json tells)
    except (OSError, ValueError):
        meta = None
    if not (isinstance(meta, dict) and isinstance(meta.get("source"), str) and "subject" in meta):
        return FileKind(
            "sample_csv",
            f"a labelled-samples CSV ({SAMPLE_CSV_HEADER}: the format of the recording the emulated board plays back)",
            "to use it as data, write it as WISDM text, one 'user,activity,timestamp_ns,x,y,z;' record per sample",
        )
    from app.core.loso import DEFAULT_SHARED_DATA  # noqa: PLC0415 - (loso imports this module)

    source = DEFAULT_SHARED_DATA.parent / meta["source"]
    return FileKind(
        "sample_csv",
        f"the sample recording the emulated board plays back ({SAMPLE_CSV_HEADER}, cut from WISDM-2019 subject "
        f"{meta['subject']})",
        f"give that subject's recording instead: {source if source.is_file() else Path(meta['source']).name}",
    )


def sniff_file(path: str | Path) -> FileKind:
    """What the file at ``path`` recognisably is, from its first bytes and (a zip) its directory; nothing is
    decompressed.  Never raises (the readers say why a file cannot be read)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError:  # the readers say why
        return FileKind("unreadable", "a file that cannot be read")
    if path.suffix.lower() == ".npz" and not head.startswith((b"PK", b"\x93NUMPY")):
        start = "it is empty" if not head else "it starts with binary data" if b"\0" in head else "it starts with text"
        return FileKind("damaged_zip", f"a damaged .npz: not a zip archive ({start})", "copy or export it again")
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        try:
            with zipfile.ZipFile(path) as zf:
                members = zf.namelist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError, struct.error):
            begun = tuple(n.removesuffix(".npy") for n in _local_members(path))
            start = f"array(s) {_names(begun)}"
            if begun[:1] == ("X",) or _windows_like(begun):
                start = f"; it starts as the app's windows export ({start})"
            elif _hapt_like(begun):
                start = f"; it starts as a HAPT .npz ({start})"
            else:
                start = f"; it starts with {start}" if begun else ""
            return FileKind(
                "damaged_zip",
                f"a damaged .npz: the zip archive is cut short or corrupt (its directory at the end is missing){start}",
                "copy or export it again",
                begun,
            )
        if "config.json" in members and any(m.endswith(".h5") for m in members):
            return FileKind("keras", "a Keras model (.keras)")
        if not members or not all(m.endswith(".npy") for m in members):
            return FileKind("zip", f"a zip archive holding {_names(members) or 'nothing'} (not a .npz of arrays)")
        arrays = tuple(m.removesuffix(".npy") for m in members)
        listed = f"arrays {_names(arrays)}"
        if set(HAPT_ARRAYS) <= set(arrays):
            return FileKind("hapt", f"a HAPT .npz ({listed})", "", arrays)
        if set(WINDOWS_ARRAYS) <= set(arrays):
            return FileKind("windows", f"a windows .npz of the app's labels export ({listed})", "", arrays)
        if "arch_json" in arrays:
            return FileKind("model", f"a model file (.npz with {listed})", "", arrays)
        if "__report__" in arrays:
            return FileKind("loso_cache", f"a general model cached by a LOSO run (.npz with {listed})", "", arrays)
        return FileKind("npz", f"a .npz with {listed}", "", arrays)
    if head.startswith(b"\x93NUMPY"):
        return FileKind("npy", "a single NumPy array (.npy, not a .npz of named arrays)")
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return FileKind("hdf5", "an HDF5 file (a recording or a .h5 model)")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return FileKind("utf16", "UTF-16 text", "save it as UTF-8 or ASCII text")
    text = head.removeprefix(UTF8_BOM)
    if b"\0" in text:
        return FileKind("binary", "a binary file")
    first = text.lstrip().partition(b"\n")[0].decode("latin-1").replace(" ", "").lower()
    if first.startswith(SAMPLE_CSV_HEADER):
        return _sample_kind(path)
    if first.count(",") == 5 and first.rstrip("\r").endswith(";"):
        return FileKind("wisdm", "WISDM accelerometer text")
    return FileKind("text", "a text file")


def _hint(kind: FileKind) -> str:
    return f"; {kind.hint}" if kind.hint else ""


def _hapt_problem(f: Path, kind: FileKind) -> str:
    """Why :func:`load_hapt` cannot read ``f`` (not a readable npz of the HAPT arrays), in words of what it is."""
    if kind.kind == "damaged_zip":
        return f"{f}: {kind.what}{_hint(kind)}"
    has = f"(has: {_names(kind.arrays, 20)})"  # (an npz like HAPT's or the windows export has an array)
    if kind.kind == "npz" and _windows_like(kind.arrays):
        missing = [a for a in WINDOWS_ARRAYS if a not in kind.arrays]
        return f"{f}: a windows .npz of the app's labels export without array(s) {', '.join(missing)} {has}"
    if kind.kind == "npz" and _hapt_like(kind.arrays):
        missing = [a for a in HAPT_ARRAYS if a not in kind.arrays]
        return f"{f}: a HAPT .npz without array(s) {', '.join(missing)} {has}"
    return f"{f}: {kind.what}, not a HAPT .npz: {HAPT_EXPECTED}{_hint(kind)}"


def check_dataset_data(dataset: str, path: str | Path) -> None:
    """``odlstudio loso --dataset <dataset> --data <path>``: raise :class:`DatasetError` when ``path`` is
    recognisably not that dataset's data (the other dataset, a windows export, a model, the sample recording,
    ...), saying what it is, what ``--dataset`` reads and, for the other dataset's data, which ``--dataset``
    takes it.  Anything else (missing, damaged, unknown text) is left to the readers, which say what is wrong."""
    path = Path(path)
    if dataset not in DATASET_DATA or not path.exists():
        return
    other = {"hapt": "wisdm2019", "wisdm2019": "hapt"}[dataset]
    title, reads = DATASET_DATA[dataset]
    if path.is_dir():  # (only the other dataset's folder is refused: it is theirs, with no hint)
        wisdm = sorted((p.name for p in path.rglob("*.txt") if _WISDM_FILE_RE.match(p.name)), key=_natural_key)
        hapt = sorted(p.name for p in path.rglob("hapt*.npz"))
        if dataset == "hapt" and wisdm and not hapt:
            what = f"a folder of WISDM text ({len(wisdm)} files such as {wisdm[0]})"
        elif dataset == "wisdm2019" and hapt and not wisdm:
            what = f"a folder holding {_names(hapt)} (HAPT) and no WISDM text"
        else:
            return
        noun, theirs, hint = "folder", True, ""
    else:
        kind = sniff_file(path)
        if kind.for_wisdm() if dataset == "wisdm2019" else kind.for_hapt():
            return
        what, noun, theirs = kind.what, "file", kind.kind == ("hapt" if other == "hapt" else "wisdm")
        hint = "" if kind.kind == "sample_csv" else _hint(kind)  # (one subject's recording: LOSO needs a dataset)
    use = f"; for this {noun} give --dataset {other}" if theirs else ""
    raise DatasetError(f"--data {path}: {what}, not {title} data: --dataset {dataset} reads {reads}{use}{hint}")


# ================================================================================================
# UCI HAPT (converted npz)
# ================================================================================================


def hapt_file(path: Path) -> Path:
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        hits = sorted(path.rglob("hapt*.npz"))
        if hits:
            return hits[0]
        raise DatasetError(f"{path}: no hapt*.npz file found")
    raise DatasetError(f"{path}: no such file or directory")


def load_hapt(
    path: str | Path,
    activities: Sequence[str] | Mapping[str, Sequence[str]] | str | None = DEFAULT_HAPT_ACTIVITIES,
    rate: float | None = 20.0,
    subjects: Iterable[str | int] | None = None,
) -> RecordingSet:
    """Load UCI HAPT (``hapt_raw_50hz.npz``: 30 subjects, 50 Hz, g) as m/s² segments resampled to
    ``rate`` Hz.  A segment is a run of one label inside one (subject, session); unlabelled samples
    (-1) and labels not selected by ``activities`` are dropped (postural transitions by default)."""
    f = hapt_file(Path(path))
    kind = sniff_file(f)
    if kind.kind not in ("hapt", "unreadable"):  # not an npz of the HAPT arrays: say what it is instead
        raise DatasetError(_hapt_problem(f, kind))
    arrays: dict[str, np.ndarray] = {}
    name = HAPT_ARRAYS[0]
    try:
        check_zip(f, DATA_LIMITS, "HAPT npz")  # declared sizes first: never inflate a zip bomb
        with np.load(f, allow_pickle=False) as z:
            for name in HAPT_ARRAYS:
                arrays[name] = z[name]
    except ZipRefused as exc:
        raise DatasetError(str(exc)) from None
    except (OSError, zipfile.BadZipFile) as exc:  # the file changed since it was looked at, or cannot be read
        raise DatasetError(
            f"{f}: cannot read ({getattr(exc, 'strerror', None) or 'not a readable zip archive'})"
        ) from None
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DatasetError(f"{f}: array {name} holds Python objects (a pickle), which are never loaded") from None
        raise DatasetError(
            f"{f}: a damaged .npz: array {name} cannot be read (its header or data is corrupt)"
        ) from None
    except (EOFError, zlib.error, KeyError, NotImplementedError, RuntimeError):
        raise DatasetError(f"{f}: a damaged .npz: array {name} cannot be read (truncated or corrupt data)") from None
    except MemoryError:  # a damaged header declaring an absurd array size
        raise DatasetError(f"{f}: a damaged .npz: array {name} declares an impossible size") from None
    acc, label, user, session = (arrays[k] for k in HAPT_ARRAYS)
    if (
        acc.ndim != 2
        or acc.shape[1] != 3
        or label.ndim != 1
        or user.ndim != 1
        or session.ndim != 1
        or not (len(acc) == len(label) == len(user) == len(session))
    ):
        raise DatasetError(
            f"{f}: HAPT arrays of the wrong shape: acc {acc.shape}, label {label.shape}, user {user.shape}, "
            f"session {session.shape} (expected acc (n, 3) and label, user, session (n,))"
        )
    if not all(np.issubdtype(a.dtype, np.number) for a in (acc, label, user, session)) or not np.isfinite(acc).all():
        raise DatasetError(
            f"{f}: acc/label/user/session must be finite numbers (dtypes {acc.dtype}, {label.dtype}, {user.dtype}, {session.dtype})"
        )
    big = np.flatnonzero((np.abs(acc) > MAX_ABS_ACCEL / 9.80665).any(axis=1))
    if len(big):
        raise DatasetError(
            f"{f}: acc row {int(big[0])} holds {acc[big[0]].tolist()} g, beyond ±{MAX_ABS_ACCEL / 9.80665:.0f} g "
            f"(not an accelerometer reading; {len(big)} such rows)"
        )
    label = label.astype(np.int64)
    change = (np.diff(label) != 0) | (np.diff(user) != 0) | (np.diff(session) != 0)
    bounds = np.concatenate(([0], np.flatnonzero(change) + 1, [len(label)]))
    segs: list[Segment] = []
    order: dict[str, int] = {}
    for a, b in zip(bounds[:-1], bounds[1:]):
        lab = int(label[a])
        if lab not in HAPT_LABELS:
            continue
        sid = str(int(user[a]))
        k = order.get(sid, 0)
        order[sid] = k + 1
        segs.append(
            Segment(
                sid,
                HAPT_LABELS[lab],
                (acc[a:b] * G).astype(np.float32),
                50.0,
                str(f),
                int(a),
                str(lab),
                50.0,
                k,
                "hapt",
            )  # fmt: skip
        )
    rs = RecordingSet(segs, str(f), "m/s^2", [], [])
    if subjects is not None:
        rs = rs.for_subjects(subjects)
    return rs.select(activities).resampled(rate)


# ================================================================================================
# Any supported dataset
# ================================================================================================


def load_dataset(
    path: str | Path,
    activities: Sequence[str] | Mapping[str, Sequence[str]] | str | None = None,
    rate: float | None = 20.0,
    takes: str = DATA_FORMATS,
) -> RecordingSet:
    """Load HAPT and/or WISDM found at ``path`` (a file, a dataset folder, or a folder holding several
    dataset folders such as ``../shared/data``).  With several datasets the subject ids become
    ``<dataset>/<id>``.  ``activities=None`` keeps every activity (map them later with ``select``).
    ``takes``: what the calling command's ``--data`` takes, for the message about a file of another kind."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"--data {path}: no such file or directory")
    sets: list[RecordingSet] = []
    if path.is_file():
        kind = sniff_file(path)
        if kind.for_hapt():
            sets.append(load_hapt(path, activities="all", rate=rate))
        elif kind.for_wisdm():
            sets.append(load_wisdm(path, activities="all", rate=rate))
        else:
            instead = f" ({kind.hint})" if kind.hint else ""
            raise DatasetError(f"--data {path}: {kind.what}, which --data does not take{instead}; it takes {takes}")
    else:
        if list(path.rglob("hapt*.npz")):
            sets.append(load_hapt(path, activities="all", rate=rate))
        try:
            files = wisdm_files(path)
        except DatasetError:
            files = []
        if files:
            sets.append(load_wisdm(path, activities="all", rate=rate))
        if not sets:
            raise DatasetError(f"--data {path}: found neither hapt*.npz nor WISDM text files")
    rs = sets[0] if len(sets) == 1 else RecordingSet.concat(sets, prefix_subjects=True)
    return rs.select(activities) if activities is not None else rs


# ================================================================================================
# Splits and windows
# ================================================================================================


def split_chronological(rs: RecordingSet, train_fraction: float = 0.6) -> tuple[RecordingSet, RecordingSet]:
    """Per subject and activity, the first ``train_fraction`` of the samples (in recording order) go
    to the local training set and the rest to the test set.  A segment straddling the split point is
    cut in two, so windows made afterwards can never cross the split."""
    if not 0.0 < train_fraction < 1.0:
        raise DatasetError(f"train_fraction must be between 0 and 1 (exclusive), got {train_fraction}")
    groups: dict[tuple[str, str], list[Segment]] = {}
    for s in rs.segments:
        groups.setdefault((s.subject, s.activity), []).append(s)
    train: list[Segment] = []
    test: list[Segment] = []
    for segs in groups.values():
        segs = sorted(segs, key=lambda s: s.order)
        total = sum(s.n for s in segs)
        cut = int(round(train_fraction * total))
        pos = 0
        for s in segs:
            if pos + s.n <= cut:
                train.append(s)
            elif pos >= cut:
                test.append(s)
            else:
                k = cut - pos
                train.append(replace(s, data=s.data[:k]))
                test.append(replace(s, data=s.data[k:], first_line=s.first_line + k))
            pos += s.n
    return rs._with(train), rs._with(test)  # noqa: SLF001 - RecordingSet's own helper, same module


@dataclass
class WindowSet:
    """Windows ``x`` ``(N, T, 3)`` float32 m/s², labels ``y`` (index into ``classes``), per-window subject."""

    x: np.ndarray
    y: np.ndarray
    subjects: np.ndarray
    classes: tuple[str, ...]
    T: int
    rate: float | None
    stride: int

    def __len__(self) -> int:
        return int(len(self.y))

    def counts(self) -> dict[str, int]:
        return {c: int(np.count_nonzero(self.y == i)) for i, c in enumerate(self.classes)}

    def subset(self, mask: np.ndarray) -> "WindowSet":
        return WindowSet(self.x[mask], self.y[mask], self.subjects[mask], self.classes, self.T, self.rate, self.stride)


def make_windows(
    rs: RecordingSet, T: int, stride: int | None = None, classes: Sequence[str] | None = None
) -> WindowSet:
    """Cut every segment into windows of ``T`` samples every ``stride`` samples (default ``T``: no
    overlap); windows never cross a segment boundary.  Segments whose activity is not in ``classes``
    (default: the set's activities) are left out."""
    T = int(T)
    stride = T if stride is None else int(stride)
    if T < 1 or stride < 1:
        raise DatasetError(f"window size T and stride must be >= 1 (got T={T}, stride={stride})")
    classes = tuple(classes) if classes is not None else tuple(rs.activities())
    index = {c: i for i, c in enumerate(classes)}
    xs, ys, subs = [], [], []
    for s in rs.segments:
        if s.activity not in index:
            continue
        w = sliding_windows(s.data, T, stride)
        if len(w):
            xs.append(w)
            ys.append(np.full(len(w), index[s.activity], dtype=np.int64))
            subs.append(np.full(len(w), s.subject, dtype=object))
    if xs:
        x, y, sub = np.concatenate(xs).astype(np.float32), np.concatenate(ys), np.concatenate(subs)
    else:
        x, y, sub = np.zeros((0, T, 3), np.float32), np.zeros(0, np.int64), np.zeros(0, object)
    return WindowSet(x, y, sub, classes, T, rs.rate, stride)


def personal_split(
    rs: RecordingSet,
    T: int,
    train_fraction: float = 0.6,
    classes: Sequence[str] | None = None,
    subject: str | int | None = None,
) -> tuple[WindowSet, WindowSet]:
    """The paper's local split for one user: chronological per activity (default 60/40), training
    windows with stride ``T/2`` and test windows with stride ``T``."""
    if subject is not None:
        rs = rs.for_subjects([subject])
    classes = tuple(classes) if classes is not None else tuple(rs.activities())
    train, test = split_chronological(rs, train_fraction)
    return (
        make_windows(train, T, max(1, int(T) // 2), classes),
        make_windows(test, T, int(T), classes),
    )
