"""WISDM text in and out of the labelling, and the windows ``.npz`` export, checked value by value: the rates
and variants asked for, named users, the import panel's messages (exact text), the recordings and labels an
import makes, the exported lines and the arrays of a windows file.

Every test name holds ``wisdm`` or ``npz`` (the mutation target ``label_io`` selects its tests by name)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from app.core import datasets as ds
from app.core.datasets import WISDM_EXPECTED, DatasetError, SkippedLine
from app.core.labels import (
    Label,
    LabelError,
    WisdmImport,
    export_windows_npz,
    export_wisdm_csv,
    import_wisdm,
    labelled_parts,
    read_wisdm,
    wisdm_user_field,
)
from app.core.recording import load_accel
from app.core.store import Store

CLASSES = ("Walking", "Jogging", "Sitting")
T0 = 1_000_000_000  # ns: the first timestamp of the files written here
AT_20HZ = 50_000_000  # ns between two samples at 20 Hz
AT_50HZ = 20_000_000  # ns between two samples at 50 Hz


def _records(user: str, activity: str, n: int, start: int = T0, step: int = AT_20HZ, x: float = 0.5) -> list[str]:
    """``n`` WISDM records ``user,activity,timestamp,x,9.5,0.25;`` ``step`` ns apart."""
    return [f"{user},{activity},{start + k * step},{x},9.5,0.25;" for k in range(n)]


def _file(folder: Path, name: str, lines: list[str]) -> Path:
    p = folder / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


@pytest.fixture()
def store(tmp_path):
    s = Store(tmp_path / "db")
    yield s
    s.close()


def _dataset(store: Store, classes=CLASSES) -> int:
    return store.create_dataset(store.ensure_user("me").id, "imported", classes).id


def _labels(store: Store, rec_id: int) -> list[tuple[float, float, str]]:
    return [(l.start_s, l.end_s, l.label) for l in store.labels(rec_id)]


# --- read_wisdm: rate and variant ---------------------------------------------------------------------------
def test_wisdm_read_resamples_to_the_rate_asked(tmp_path):
    """40 samples at 20 Hz read at 10 Hz are 20 samples at 10 Hz."""
    p = _file(tmp_path, "f.txt", _records("7", "Walking", 40))
    rs = read_wisdm(p, rate_hz=10.0)
    assert [(s.subject, s.activity, s.n, s.rate) for s in rs.segments] == [("7", "walking", 20, 10.0)]


def test_wisdm_read_keeps_the_native_rate_when_asked(tmp_path):
    """``rate_hz=None``: a 50 Hz file stays at 50 Hz (and the parser says the user is not at 20 Hz)."""
    p = _file(tmp_path, "f.txt", _records("7", "Walking", 50, step=AT_50HZ))
    rs = read_wisdm(p, rate_hz=None)
    assert [(s.subject, s.n, s.rate) for s in rs.segments] == [("7", 50, 50.0)]
    assert rs.notes == [f"{p}: subject 7 sampled at 50.00 Hz (treated as 50 Hz)"]


def test_wisdm_read_refuses_the_wrong_variant(tmp_path):
    """A v1.1 file read as the 2019 variant is refused, naming what the file looks like."""
    p = _file(tmp_path, "f.txt", _records("7", "Walking", 5))
    with pytest.raises(DatasetError) as err:
        read_wisdm(p, variant="2019")
    assert str(err.value) == f"{p}: looks like WISDM v1.1 (activity field e.g. 'Walking'), not variant '2019'"


def test_wisdm_read_folder_without_valid_records_says_so(tmp_path):
    """A folder whose only file has no record with an integer user: the parser's own message (the named-user
    pass is for single files; it must not end in a confusing 'cannot read' of the folder)."""
    folder = tmp_path / "wisdm"
    folder.mkdir()
    _file(folder, "data_1600_accel_phone.txt", _records("alice", "A", 40))
    with pytest.raises(DatasetError) as err:
        read_wisdm(folder)
    assert str(err.value) == (
        f"{folder}: no valid WISDM records (40 skipped; the first: {folder / 'data_1600_accel_phone.txt'}:1: "
        f"subject id is not an integer: 'alice,A,{T0},0.5,9.5,0.25'); {WISDM_EXPECTED}"
    )


# --- read_wisdm: files whose user field is a name -----------------------------------------------------------
def test_wisdm_read_named_users_at_the_rate_asked(tmp_path):
    """A named-user file is resampled like any other: 40 samples at 20 Hz read at 10 Hz are 20."""
    p = _file(tmp_path, "mine.txt", _records("alice", "Walking", 40))
    rs = read_wisdm(p, rate_hz=10.0)
    assert [(s.subject, s.activity, s.n, s.rate) for s in rs.segments] == [("alice", "walking", 20, 10.0)]


def test_wisdm_read_named_users_refuses_the_wrong_variant(tmp_path):
    """The variant asked for holds for named-user files too, and the message names the user's file (not the
    temporary copy the names are swapped in)."""
    p = _file(tmp_path, "mine.txt", _records("alice", "Walking", 5))
    with pytest.raises(DatasetError) as err:
        read_wisdm(p, variant="2019")
    assert str(err.value) == f"{p}: looks like WISDM v1.1 (activity field e.g. 'Walking'), not variant '2019'"


def test_wisdm_read_named_users_keeps_every_activity(tmp_path):
    """Activities are kept as in the file (canonical names), none merged or dropped: upstairs stays upstairs,
    laying stays."""
    lines = _records("alice", "Upstairs", 20) + _records("alice", "Laying", 20, start=T0 + 20 * AT_20HZ)
    rs = read_wisdm(_file(tmp_path, "mine.txt", lines))
    assert [(s.subject, s.activity, s.n) for s in rs.segments] == [("alice", "upstairs", 20), ("alice", "laying", 20)]


def test_wisdm_read_named_users_names_the_file_everywhere(tmp_path):
    """The set, its segments and its skipped records carry the user's file; units and notes are kept."""
    lines = _records("alice", "Walking", 40)
    lines.insert(5, "alice,Walking,1250000000,0.5,9.5,zz;")  # line 6
    p = _file(tmp_path, "mine.txt", lines)
    rs = read_wisdm(p, rate_hz=None)
    assert rs.source == str(p) and rs.units == "m/s^2"
    assert [(s.subject, s.source, s.n) for s in rs.segments] == [("alice", str(p), 40)]
    assert rs.skipped == [
        SkippedLine(str(p), 6, "x, y or z is not a finite number", "alice,Walking,1250000000,0.5,9.5,zz")
    ]
    assert rs.notes == []


def test_wisdm_read_named_users_report_quotes_the_file_not_stand_in_ids(tmp_path):
    """Bug fixed: the names are swapped for integer ids to parse; the skipped records' text and the rate note
    showed those ids ('1,Walking,…', 'subject 1 sampled at 50.00 Hz') instead of what the file holds.  Each
    skipped record is now quoted as in the file (spaces kept, two records on one line, first 80 characters)."""
    long = "alice,Walking,1300000000,0.1,0.2," + "9" * 60 + "x"  # 94 characters: quoted up to 80
    lines = _records("alice", "Walking", 50, step=AT_50HZ) + _records("bob", "Walking", 20)
    lines[10:10] = [
        "alice,Walking,1200000000,0.1,0.2,zz;",  # line 11
        "1",  # 12: a line holding just the number the parser's copy gives alice
        long + ";",  # 13
        " bob ,Walking,1,2;",  # 14
        "alice,Walking,1210000000;bob,Walking,1220000000,0.1,0.2,zz;",  # 15: two records
    ]
    p = _file(tmp_path, "mine.txt", lines)
    rs = read_wisdm(p)
    assert rs.skipped == [
        SkippedLine(str(p), 11, "x, y or z is not a finite number", "alice,Walking,1200000000,0.1,0.2,zz"),
        SkippedLine(str(p), 12, "expected 6 comma-separated fields, found 1", "1"),
        SkippedLine(str(p), 13, "x, y or z is not a finite number", long[:80]),
        SkippedLine(str(p), 14, "expected 6 comma-separated fields, found 4", " bob ,Walking,1,2"),
        SkippedLine(str(p), 15, "expected 6 comma-separated fields, found 3", "alice,Walking,1210000000"),
        SkippedLine(str(p), 15, "x, y or z is not a finite number", "bob,Walking,1220000000,0.1,0.2,zz"),
    ]
    assert rs.notes == [f"{p}: subject alice sampled at 50.00 Hz (treated as 50 Hz)"]


def test_wisdm_read_named_users_quotes_records_whatever_ends_the_line(tmp_path):
    """A skipped record of a named user that ends its line without ';' is quoted as the parser reads it: without
    the carriage return of a Windows line end, with its trailing spaces, with its last character."""
    p = tmp_path / "mine.txt"
    good = "".join(r + "\n" for r in _records("alice", "Walking", 20))
    p.write_bytes(
        (
            good
            + "alice,Walking,2000000000,0.5,9.5,zz\r\n"  # line 21
            + "alice,Walking,2050000000,0.5,9.5,zz  \n"  # 22
            + "alice,Walking,2100000000,0.5,9.5,X\n"  # 23
            + "alice,Walking,2150000000,0.5,9.5,0.25;\n"
        ).encode()
    )
    reason = "x, y or z is not a finite number"
    assert read_wisdm(p).skipped == [
        SkippedLine(str(p), 21, reason, "alice,Walking,2000000000,0.5,9.5,zz"),
        SkippedLine(str(p), 22, reason, "alice,Walking,2050000000,0.5,9.5,zz  "),
        SkippedLine(str(p), 23, reason, "alice,Walking,2100000000,0.5,9.5,X"),
    ]


def test_wisdm_read_named_users_unknown_activity_code(tmp_path):
    """A WISDM-2019 file with a named user and a code that is no activity: reported with its line (the parser
    quotes no record for it)."""
    lines = _records("alice", "A", 20) + _records("alice", "Z", 1, start=T0 + 20 * AT_20HZ)  # line 21
    p = _file(tmp_path, "mine.txt", lines)
    rs = read_wisdm(p)
    assert rs.subjects() == ["alice"] and rs.skipped == [SkippedLine(str(p), 21, "unknown activity 'Z'")]


@pytest.mark.parametrize("first", ["bob", "7"])
def test_wisdm_read_named_users_junk_message_quotes_the_file(tmp_path, monkeypatch, first):
    """A large file of named users whose records all turn out unreadable once the names are swapped (here
    every x beyond ±1000 m/s²): the parser gives up, and its message quotes the first bad record as in the
    file, be its user a name or an integer.  (The size from which the parser gives up on junk is lowered from
    4 MiB, for speed.)"""
    monkeypatch.setattr(ds, "JUNK_PROBE", 1000)
    p = _file(tmp_path, "mine.txt", _records(first, "Walking", 60, x=5000) + _records("alice", "Walking", 60, x=5000))
    with pytest.raises(DatasetError) as err:
        read_wisdm(p)
    assert str(err.value) == (
        f"{p}: not WISDM accelerometer text: 120 of the first 120 records are unreadable (0 good) in the first "
        f"0.0 MB of 0.0 MB; stopped reading (first problem: {p}:1: x, y or z beyond ±1000 m/s² (not an "
        f"accelerometer reading): '{first},Walking,1000000000,5000,9.5,0.25')"
    )


def test_wisdm_read_named_users_next_to_the_largest_integer_id(tmp_path):
    """The names get the ids right after the file's largest integer user: still read when that is 2**63 - 2
    (the name's stand-in, 2**63 - 1, is the largest id the parser takes)."""
    lines = _records("9223372036854775806", "Walking", 20) + _records("alice", "Jogging", 20)
    rs = read_wisdm(_file(tmp_path, "mine.txt", lines))
    assert [(s.subject, s.activity, s.n) for s in rs.segments] == [
        ("9223372036854775806", "walking", 20),
        ("alice", "jogging", 20),
    ]


def test_wisdm_read_mixed_users_rate_notes_name_each_user(tmp_path):
    """A file of an integer user and a named user, both at 50 Hz: each rate note names its user as written."""
    lines = _records("7", "Walking", 50, step=AT_50HZ) + _records("alice", "Walking", 50, step=AT_50HZ)
    p = _file(tmp_path, "mine.txt", lines)
    assert read_wisdm(p).notes == [
        f"{p}: subject 7 sampled at 50.00 Hz (treated as 50 Hz)",
        f"{p}: subject alice sampled at 50.00 Hz (treated as 50 Hz)",
    ]


def test_wisdm_read_named_users_skips_records_without_a_user(tmp_path):
    """A record with an empty user field is skipped and reported, not imported as a user ''."""
    lines = _records("alice", "Walking", 20) + [",Walking,2000000000,0.5,9.5,0.25;"]  # line 21
    p = _file(tmp_path, "mine.txt", lines)
    rs = read_wisdm(p)
    assert rs.subjects() == ["alice"]
    assert rs.skipped == [SkippedLine(str(p), 21, "subject id is not an integer", ",Walking,2000000000,0.5,9.5,0.25")]


def test_wisdm_read_named_users_with_bytes_that_are_not_utf8(tmp_path):
    """A name in another encoding (Latin-1 'café') is read, its odd byte shown as U+FFFD."""
    p = tmp_path / "mine.txt"
    p.write_bytes("".join(r + "\n" for r in _records("caf\xe9", "Walking", 20)).encode("latin-1"))
    assert read_wisdm(p).subjects() == ["caf\ufffd"]


def test_wisdm_read_decodes_escaped_user_names(tmp_path):
    """Percent escapes of the export are decoded ('Jos%C3%A9' is José); an escape that is not UTF-8 gives
    U+FFFD."""
    lines = _records("Jos%C3%A9", "Walking", 20) + _records("caf%E9", "Jogging", 20, start=T0 + 20 * AT_20HZ)
    rs = read_wisdm(_file(tmp_path, "mine.txt", lines))
    assert [(s.subject, s.activity) for s in rs.segments] == [("José", "walking"), ("caf\ufffd", "jogging")]


def test_wisdm_read_file_removed_before_the_named_user_pass(tmp_path, monkeypatch):
    """The file is gone when the named users are read again (deleted meanwhile): a DatasetError naming the
    file and why."""
    p = _file(tmp_path, "mine.txt", _records("7", "Walking", 20) + _records("alice", "Walking", 20))
    real = ds.load_wisdm

    def load_then_remove(path, **kw):
        rs = real(path, **kw)
        Path(path).unlink()
        return rs

    monkeypatch.setattr(ds, "load_wisdm", load_then_remove)
    with pytest.raises(DatasetError) as err:
        read_wisdm(p)
    assert str(err.value) == f"{p}: cannot read (No such file or directory)"


# --- wisdm_user_field / export_wisdm_csv --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("alice", "alice"),
        ("1600", "1600"),
        ("007", "%3007"),
        ("+5", "%2B5"),
        ("a,b;c%d", "a%2Cb%3Bc%25d"),
        ("٣", "%D9%A3"),  # an Arabic-Indic digit: int() reads it as 3, so its two UTF-8 bytes are escaped
    ],
)
def test_wisdm_user_field_escapes_exactly(name, field):
    """The user field written for a name: as is, or with separators and a misleading number escaped."""
    assert wisdm_user_field(name) == field


def test_wisdm_export_writes_exact_lines(tmp_path):
    """The lines of an export: escaped user, class, timestamp from 1 s in ns, x, y, z (6 significant digits)."""
    xyz = np.array([[1.0, -2.5, 9.80665], [0.125, 3.0, -0.0000012345], [7.0, 7.0, 7.0]])
    p = tmp_path / "out.txt"
    assert export_wisdm_csv(p, "Ann, S", xyz, 20.0, [Label(1, 0.0, 0.1, "Walking")]) == 2
    assert p.read_text() == (
        "Ann%2C S,Walking,1000000000,1,-2.5,9.80665;\nAnn%2C S,Walking,1050000000,0.125,3,-1.2345e-06;\n"
    )


def test_wisdm_export_timestamps_count_from_the_recording_start(tmp_path):
    """A label from 5 s on: its samples 100 and 101 are stamped 1 s + 5 s and 1 s + 5.05 s."""
    xyz = np.zeros((120, 3))
    p = tmp_path / "out.txt"
    assert export_wisdm_csv(p, "7", xyz, 20.0, [Label(1, 5.0, 5.1, "Sitting")]) == 2
    assert p.read_text() == "7,Sitting,6000000000,0,0,0;\n7,Sitting,6050000000,0,0,0;\n"


def test_wisdm_export_skips_a_label_too_short_for_a_sample(tmp_path):
    """A label holding no sample is left out and the labels after it are still written."""
    xyz = np.ones((40, 3))
    p = tmp_path / "out.txt"
    labels = [Label(1, 0.01, 0.04, "Walking"), Label(2, 1.0, 1.1, "Jogging")]
    assert export_wisdm_csv(p, "7", xyz, 20.0, labels) == 2
    assert p.read_text() == "7,Jogging,2000000000,1,1,1;\n7,Jogging,2050000000,1,1,1;\n"


def test_wisdm_export_refuses_a_class_with_the_exact_reason(tmp_path):
    """The message the labelling panel shows for a class WISDM text cannot carry."""
    with pytest.raises(LabelError) as err:
        export_wisdm_csv(tmp_path / "x.txt", "ann", np.ones((40, 3)), 20.0, [Label(1, 0.0, 2.0, "walk, fast")])
    assert str(err.value) == (
        "class 'walk, fast' cannot be written as WISDM text (it would not read back): WISDM activity names are "
        "letters, spaces, '-' and '_' (up to 40, starting with a letter); rename the class or export windows "
        "(.npz) instead"
    )


def test_wisdm_export_is_utf8_whatever_the_locale(tmp_path):
    """On a machine whose locale is not UTF-8 (here ASCII) a user name like José is still written, as UTF-8
    (the reader decodes UTF-8 escapes and names): the same bytes as here."""
    here = tmp_path / "here.txt"
    export_wisdm_csv(here, "José", np.ones((2, 3)), 20.0, [Label(1, 0.0, 0.05, "Walking")])
    assert here.read_bytes() == "José,Walking,1000000000,1,1,1;\n".encode("utf-8")
    p = tmp_path / "out.txt"
    code = (
        "import sys, numpy as np\n"
        "from app.core.labels import Label, export_wisdm_csv\n"
        "export_wisdm_csv(sys.argv[1], 'Jos\\u00e9', np.ones((2, 3)), 20.0, [Label(1, 0.0, 0.05, 'Walking')])\n"
    )
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-c", code, str(p)], cwd=root, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert p.read_bytes() == "José,Walking,1000000000,1,1,1;\n".encode("utf-8")


# --- export_windows_npz ----------------------------------------------------------------------------------------
def test_npz_export_stores_every_field(tmp_path):
    """Windows of two recordings (20 and 25 Hz): X float32, y class indices, the classes, size, stride, the
    rate of every window (float64) and the meta as JSON."""
    a = np.arange(180, dtype=np.float64).reshape(60, 3)  # 3 s at 20 Hz
    b = -np.arange(150, dtype=np.float64).reshape(50, 3)  # 2 s at 25 Hz
    out = tmp_path / "w.npz"
    parts = [(a, 20, [Label(1, 0.0, 3.0, "Jogging")]), (b, 25, [Label(2, 0.0, 2.0, "Sitting")])]
    assert export_windows_npz(out, parts, CLASSES, 20, 10, meta={"user": "me"}) == 9
    with np.load(out, allow_pickle=False) as d:
        assert d["X"].dtype == np.float32 and d["X"].shape == (9, 20, 3)
        assert d["X"][1, 0].tolist() == [30.0, 31.0, 32.0] and d["X"][6, 19].tolist() == [-87.0, -88.0, -89.0]
        assert d["y"].dtype == np.int64 and d["y"].tolist() == [1, 1, 1, 1, 1, 2, 2, 2, 2]
        assert d["classes"].tolist() == ["Walking", "Jogging", "Sitting"]
        assert int(d["size"]) == 20 and int(d["stride"]) == 10
        assert d["rate_hz"].dtype == np.float64 and d["rate_hz"].tolist() == [20.0] * 5 + [25.0] * 4
        assert json.loads(str(d["meta"])) == {"user": "me"}


def test_npz_export_default_stride_and_meta(tmp_path):
    """Without a stride the windows do not overlap and the stride stored is the size; no meta is '{}'."""
    xyz = np.ones((60, 3))
    out = tmp_path / "w.npz"
    assert export_windows_npz(out, [(xyz, 20.0, [Label(1, 0.0, 3.0, "Walking")])], CLASSES, 20) == 3
    with np.load(out, allow_pickle=False) as d:
        assert int(d["stride"]) == 20 and str(d["meta"]) == "{}"


def test_npz_export_without_any_window(tmp_path):
    """Labels shorter than a window: 0 windows, and still a well-formed file (empty arrays of the right
    shapes and types)."""
    out = tmp_path / "w.npz"
    assert export_windows_npz(out, [(np.ones((60, 3)), 20.0, [Label(1, 0.0, 0.5, "Walking")])], CLASSES, 20) == 0
    with np.load(out, allow_pickle=False) as d:
        assert d["X"].shape == (0, 20, 3) and d["X"].dtype == np.float32
        assert d["y"].shape == (0,) and d["y"].dtype == np.int64
        assert d["rate_hz"].shape == (0,) and d["rate_hz"].dtype == np.float64


def test_npz_export_stops_windows_at_the_recorded_samples(tmp_path):
    """A label running past the recorded samples (50 samples, label to 3 s at 20 Hz): only whole windows of
    recorded samples."""
    xyz = np.arange(150, dtype=np.float32).reshape(50, 3)
    out = tmp_path / "w.npz"
    assert export_windows_npz(out, [(xyz, 20.0, [Label(1, 0.0, 3.0, "Walking")])], CLASSES, 20) == 2
    with np.load(out, allow_pickle=False) as d:
        assert d["X"][1, 19].tolist() == [117.0, 118.0, 119.0]


# --- WisdmImport: the import panel's texts ---------------------------------------------------------------------
def _skipped(n: int, source: str = "/data/f.txt", first: int = 2) -> list[SkippedLine]:
    return [
        SkippedLine(source, first + k, "timestamp 0 (placeholder record)", f"7,Walking,0,{k},0,0") for k in range(n)
    ]


def _result(**kw) -> WisdmImport:
    recs = [SimpleNamespace(duration=10.0), SimpleNamespace(duration=2.3)]
    return WisdmImport("/data/f.txt", recordings=recs, labels=3, **kw)


def test_wisdm_import_summary_exact():
    """What was imported, what was left out (sorted, counts with thousands separators, singular 'sample'), then
    the parser's notes."""
    res = _result(left_out={"typing": 1200, "dancing": 1}, notes=["/data/f.txt: split at 1 backward jumps."])
    assert res.summary() == [
        "Imported 2 recording(s) with 3 label(s), 12.3 s from f.txt.",
        "Not classes of this dataset, left out: dancing (1 sample), typing (1,200 samples).",
        "/data/f.txt: split at 1 backward jumps.",
    ]


def test_wisdm_import_summary_when_cancelled():
    """A cancelled import says the rest of the file was not imported."""
    res = _result(cancelled=True)
    assert res.summary() == [
        "Imported 2 recording(s) with 3 label(s), 12.3 s from f.txt (cancelled: the rest was not imported)."
    ]


def test_wisdm_import_without_skipped_lines_texts():
    """No skipped line: no skipped text, and the message is the summary alone."""
    res = _result(left_out={"typing": 2})
    assert res.skipped_text() == ""
    assert res.message() == (
        "Imported 2 recording(s) with 3 label(s), 12.3 s from f.txt. "
        "Not classes of this dataset, left out: typing (2 samples)."
    )


def test_wisdm_import_skipped_text_lists_five_then_counts():
    """The skipped lines: five by default, each with its record (none when it has no text), then how many
    more."""
    five = _skipped(4) + [SkippedLine("/data/f.txt", 9, "unknown activity 'Z'")]
    assert WisdmImport("/data/f.txt", skipped=five).skipped_text() == (
        "5 lines skipped: line 2: timestamp 0 (placeholder record) ('7,Walking,0,0,0,0'); "
        "line 3: timestamp 0 (placeholder record) ('7,Walking,0,1,0,0'); "
        "line 4: timestamp 0 (placeholder record) ('7,Walking,0,2,0,0'); "
        "line 5: timestamp 0 (placeholder record) ('7,Walking,0,3,0,0'); "
        "line 9: unknown activity 'Z'"
    )
    six = _skipped(6)
    assert WisdmImport("/data/f.txt", skipped=six).skipped_text() == (
        "6 lines skipped: line 2: timestamp 0 (placeholder record) ('7,Walking,0,0,0,0'); "
        "line 3: timestamp 0 (placeholder record) ('7,Walking,0,1,0,0'); "
        "line 4: timestamp 0 (placeholder record) ('7,Walking,0,2,0,0'); "
        "line 5: timestamp 0 (placeholder record) ('7,Walking,0,3,0,0'); "
        "line 6: timestamp 0 (placeholder record) ('7,Walking,0,4,0,0'); … and 1 more"
    )


def test_wisdm_import_skipped_text_names_the_files_when_several():
    """Skipped lines of a folder import (several files) say which file each line is in."""
    res = WisdmImport("/data", skipped=_skipped(1, "/data/a/data_1_accel_phone.txt") + _skipped(1, "/data/b.txt", 7))
    assert res.skipped_text() == (
        "2 lines skipped: data_1_accel_phone.txt line 2: timestamp 0 (placeholder record) ('7,Walking,0,0,0,0'); "
        "b.txt line 7: timestamp 0 (placeholder record) ('7,Walking,0,0,0,0')"
    )


def test_wisdm_import_message_exact():
    """The one-paragraph message: summary sentences, then the first five skipped lines and the count of the
    rest, ending with a full stop."""
    res = _result(skipped=_skipped(6))
    assert res.message() == (
        "Imported 2 recording(s) with 3 label(s), 12.3 s from f.txt. 6 lines skipped: "
        "line 2: timestamp 0 (placeholder record) ('7,Walking,0,0,0,0'); "
        "line 3: timestamp 0 (placeholder record) ('7,Walking,0,1,0,0'); "
        "line 4: timestamp 0 (placeholder record) ('7,Walking,0,2,0,0'); "
        "line 5: timestamp 0 (placeholder record) ('7,Walking,0,3,0,0'); "
        "line 6: timestamp 0 (placeholder record) ('7,Walking,0,4,0,0'); … and 1 more."
    )


def test_wisdm_import_report_one_row_per_skipped_line():
    """The panel's report: the summary, a header, one row per skipped line (file named when several; no quote
    when the line has no text)."""
    skipped = _skipped(1, "/data/a.txt") + [SkippedLine("/data/b.txt", 9, "unknown activity 'Z'")]
    res = _result(skipped=skipped, left_out={"typing": 5})
    assert res.report() == (
        "Imported 2 recording(s) with 3 label(s), 12.3 s from f.txt.\n"
        "Not classes of this dataset, left out: typing (5 samples).\n"
        "2 lines skipped:\n"
        "a.txt line 2: timestamp 0 (placeholder record) ('7,Walking,0,0,0,0')\n"
        "b.txt line 9: unknown activity 'Z'"
    )


def test_wisdm_import_report_of_one_skipped_line():
    """One skipped line in one file: singular header, no file name."""
    assert _result(skipped=_skipped(1)).report() == (
        "Imported 2 recording(s) with 3 label(s), 12.3 s from f.txt.\n"
        "1 line skipped:\n"
        "line 2: timestamp 0 (placeholder record) ('7,Walking,0,0,0,0')"
    )


def test_wisdm_import_report_without_skipped_lines():
    """No skipped line: the report is the summary alone."""
    assert _result().report() == "Imported 2 recording(s) with 3 label(s), 12.3 s from f.txt."


def test_wisdm_import_report_lists_fifty_then_counts():
    """The report lists the first 50 skipped lines and then how many more."""
    rows = _result(skipped=_skipped(52)).report().split("\n")
    assert rows[1] == "52 lines skipped:" and len(rows) == 2 + 50 + 1
    assert rows[2] == "line 2: timestamp 0 (placeholder record) ('7,Walking,0,0,0,0')"
    assert rows[51] == "line 51: timestamp 0 (placeholder record) ('7,Walking,0,49,0,0')"
    assert rows[52] == "… and 2 more"
    fifty = _result(skipped=_skipped(50)).report().split("\n")
    assert len(fifty) == 2 + 50 and fifty[-1] == "line 51: timestamp 0 (placeholder record) ('7,Walking,0,49,0,0')"


# --- import_wisdm ------------------------------------------------------------------------------------------------
def test_wisdm_import_progress_steps(tmp_path, store):
    """Progress: reading the file, one step per user (from 20 % to 100 %), done."""
    p = _file(tmp_path, "two.txt", _records("1", "Walking", 20) + _records("2", "Walking", 20))
    steps: list[tuple[float, str]] = []
    import_wisdm(store, p, _dataset(store), CLASSES, progress=lambda f, t: steps.append((f, t)))
    assert [t for _, t in steps] == ["reading two.txt", "user 1", "user 2", "done"]
    assert [f for f, _ in steps] == pytest.approx([0.05, 0.2, 0.6, 1.0])


def test_wisdm_import_resamples_to_the_rate_asked(tmp_path, store):
    """A 20 Hz file imported at 10 Hz: a 10 Hz recording of half the samples, labels in seconds."""
    p = _file(tmp_path, "f.txt", _records("7", "Walking", 40) + _records("7", "Jogging", 20, start=T0 + 40 * AT_20HZ))
    res = import_wisdm(store, p, _dataset(store), CLASSES, rate_hz=10.0)
    (rec,) = res.recordings
    assert (rec.rate_hz, rec.n_samples) == (10.0, 30)
    assert _labels(store, rec.id) == [(0.0, 2.0, "Walking"), (2.0, 3.0, "Jogging")]


def test_wisdm_import_labels_segments_back_to_back(tmp_path, store):
    """Three runs of one user (walking, jogging, walking again) are three labels one after the other."""
    lines = (
        _records("7", "Walking", 20)
        + _records("7", "Jogging", 10, start=T0 + 20 * AT_20HZ)
        + _records("7", "Walking", 30, start=T0 + 30 * AT_20HZ)
    )
    res = import_wisdm(store, _file(tmp_path, "f.txt", lines), _dataset(store), CLASSES)
    assert _labels(store, res.recordings[0].id) == [(0.0, 1.0, "Walking"), (1.0, 1.5, "Jogging"), (1.5, 3.0, "Walking")]


def test_wisdm_import_counts_the_labels_of_every_user(tmp_path, store):
    """Two users of two labels each: 4 labels, and the summary names the file imported."""
    lines = []
    for user in ("1", "2"):
        lines += _records(user, "Walking", 40) + _records(user, "Sitting", 20, start=T0 + 40 * AT_20HZ)
    p = _file(tmp_path, "both.txt", lines)
    res = import_wisdm(store, p, _dataset(store), CLASSES)
    assert res.labels == 4
    assert res.summary() == ["Imported 2 recording(s) with 4 label(s), 6.0 s from both.txt."]


def test_wisdm_import_sums_left_out_activities_and_keeps_the_rest(tmp_path, store):
    """WISDM-2019 typing (F) twice around walking (A): 80 typing samples left out, the walking imported."""
    lines = (
        _records("1600", "F", 40)
        + _records("1600", "A", 40, start=T0 + 40 * AT_20HZ)
        + _records("1600", "F", 40, start=T0 + 80 * AT_20HZ)
    )
    res = import_wisdm(store, _file(tmp_path, "data_1600_accel_phone.txt", lines), _dataset(store), CLASSES)
    assert res.left_out == {"typing": 80}
    assert [_labels(store, r.id) for r in res.recordings] == [[(0.0, 2.0, "Walking")]]


def test_wisdm_import_keeps_the_parser_notes(tmp_path, store):
    """A user at 50 Hz: the parser's note on the rate is in the import's notes."""
    p = _file(tmp_path, "f.txt", _records("7", "Walking", 50, step=AT_50HZ))
    res = import_wisdm(store, p, _dataset(store), CLASSES)
    assert res.notes == [f"{p}: subject 7 sampled at 50.00 Hz (treated as 50 Hz)"]


def test_wisdm_import_cancelled_between_users(tmp_path, store):
    """Cancelled after the first user: that user is imported whole, the result says it was cancelled."""
    p = _file(tmp_path, "two.txt", _records("1", "Walking", 40) + _records("2", "Walking", 40))
    asked = []

    def cancelled() -> bool:
        asked.append(1)
        return len(asked) > 1

    res = import_wisdm(store, p, _dataset(store), CLASSES, cancelled=cancelled)
    assert res.cancelled is True and [r.name for r in res.recordings] == ["WISDM 1"]
    assert res.summary() == [
        "Imported 1 recording(s) with 1 label(s), 2.0 s from two.txt (cancelled: the rest was not imported)."
    ]


def test_wisdm_import_records_where_each_recording_came_from(tmp_path, store):
    """Each recording keeps its source file, its user and the number of skipped lines of the file."""
    lines = _records("7", "Walking", 20) + ["7,Walking,0,0,0,0;"]
    p = _file(tmp_path, "f.txt", lines)
    res = import_wisdm(store, p, _dataset(store), CLASSES)
    rec = store.recording(res.recordings[0].id)
    assert rec.meta == {"source": str(p), "user": "7", "skipped_lines": 1}
    assert load_accel(store, rec).shape == (20, 3)


def test_wisdm_read_named_users_counts_every_skipped_record():
    """Past the 10,000 skipped records the report lists, the count still says how many there were in all, for a
    file that names its users as for one with integer ids."""
    import tempfile
    from pathlib import Path

    from app.core.datasets import SKIP_REPORT_MAX

    good = "".join(f"alice,Walking,{(k + 1) * 50_000_000},0.1,0.2,9.8;\n" for k in range(400))
    bad = "alice,Walking,1,0.1;\n" * (SKIP_REPORT_MAX + 7)
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "named.txt"
        p.write_text(good + bad)
        rs = read_wisdm(p)
    assert rs.skipped_count == SKIP_REPORT_MAX + 7  # the file's own count, not the listed lines
    assert len(rs.skipped) == SKIP_REPORT_MAX + 1 and "7 more records skipped" in rs.skipped[-1].reason
    assert rs.subjects() == ["alice"]


def test_wisdm_import_counts_skipped_records_past_the_listed_ones(tmp_path, store):
    """The report lists 10,000 skipped records at most; the count the user reads is of all of them."""
    from app.core.datasets import SKIP_REPORT_MAX

    p = _file(tmp_path, "many.txt", _records("7", "Walking", 400) + ["7,Walking,1,0.1;"] * (SKIP_REPORT_MAX + 7))
    out = import_wisdm(store, p, _dataset(store), CLASSES)
    assert out.skipped_count == SKIP_REPORT_MAX + 7 and len(out.recordings) == 1
    assert out.skipped_text(2).startswith("10007 lines skipped: line 401: expected 6 comma-separated fields, found 4")
    assert out.skipped_text(2).endswith("; … and 10005 more")
    assert out.report(3).splitlines()[-5:] == [
        "10007 lines skipped:",
        "line 401: expected 6 comma-separated fields, found 4 ('7,Walking,1,0.1')",
        "line 402: expected 6 comma-separated fields, found 4 ('7,Walking,1,0.1')",
        "line 403: expected 6 comma-separated fields, found 4 ('7,Walking,1,0.1')",
        "… and 10004 more",
    ]


# --- labelled_parts: what the panel's exports read ------------------------------------------------------------
def test_labelled_parts_reads_only_labelled_recordings_in_order(store):
    """Every accel recording of the dataset that has labels, in the store's order, with its samples, its rate and
    its labels; a recording without labels, another dataset's recording and a power recording are left out;
    ``check`` is called once before each accel recording of the dataset (where a cancel is raised)."""
    from app.core.recording import write_accel

    did = _dataset(store)
    other = store.create_dataset(store.ensure_user("me").id, "another", CLASSES).id
    a = write_accel(store, "a", np.full((60, 3), 1.0, np.float32), 20.0, did)
    write_accel(store, "unlabelled", np.full((40, 3), 2.0, np.float32), 20.0, did)
    c = write_accel(store, "c", np.arange(150, dtype=np.float32).reshape(50, 3), 25.0, did)
    o = write_accel(store, "other", np.zeros((40, 3), np.float32), 20.0, other)
    store.add_recording("power", "a power session", "power.h5", 1000.0, 1, dataset_id=did)  # not accel: not read
    store.add_label(a.id, 0.5, 2.0, "Walking")
    store.add_label(c.id, 1.0, 1.5, "Sitting")
    store.add_label(c.id, 0.0, 0.5, "Jogging")
    store.add_label(o.id, 0.0, 1.0, "Walking")
    calls = []
    parts = labelled_parts(store, did, "imported", check=lambda: calls.append(1))
    assert len(calls) == 3 and len(parts) == 2
    (xa, ra, la), (xc, rc, lc) = parts
    assert xa.shape == (60, 3) and float(xa.sum()) == 180.0 and ra == 20.0
    assert [(l.start, l.end, l.label) for l in la] == [(0.5, 2.0, "Walking")]
    assert xc.shape == (50, 3) and float(xc[-1, -1]) == 149.0 and rc == 25.0
    assert sorted((l.start, l.end, l.label) for l in lc) == [(0.0, 0.5, "Jogging"), (1.0, 1.5, "Sitting")]
    assert all(isinstance(l, Label) and l.id is not None for l in la + lc)


def test_labelled_parts_cancel_stops_before_reading(store):
    """A cancel (``check`` raising) stops before the first recording is read."""
    from app.core.context import Cancelled
    from app.core.recording import write_accel

    did = _dataset(store)
    rec = write_accel(store, "a", np.ones((60, 3), np.float32), 20.0, did)
    store.add_label(rec.id, 0.5, 2.0, "Walking")

    def cancel():
        raise Cancelled()

    with pytest.raises(Cancelled):
        labelled_parts(store, did, "imported", check=cancel)


def test_labelled_parts_without_labels_names_the_dataset(store):
    """No recording with labels: the export would write an empty file, so it is refused with the dataset's name."""
    from app.core.recording import write_accel

    did = _dataset(store)
    write_accel(store, "a", np.ones((60, 3), np.float32), 20.0, did)
    with pytest.raises(LabelError) as err:
        labelled_parts(store, did, "my walks")
    assert str(err.value) == "no recording of dataset 'my walks' has labels yet"


# --- a WISDM text file saved with a UTF-8 byte-order mark (Windows Notepad, Excel "CSV UTF-8") ---------------
@pytest.mark.parametrize("user", ["1600", "Ann"])
def test_wisdm_file_with_a_byte_order_mark_is_one_user(tmp_path, user):
    """The Labelling panel's import made two recordings, "WISDM \\ufeff1600" (the first sample alone, its name
    showing as "WISDM 1600") and "WISDM 1600"; `personalize --data` dropped the first record.  The mark is not
    data."""
    from app.core.context import AppContext
    from app.core.labels import import_wisdm, read_wisdm

    lines = "".join(f"{user},A,{1_000_000_000 + 50_000_000 * i},1.0,{i % 7}.5,9.8;\n" for i in range(400))
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf" + lines.encode())
    rs = read_wisdm(path)
    assert {s.subject for s in rs.segments} == {user} and rs.skipped_count == 0
    assert sum(s.n for s in rs.segments) == 400  # (resampled 20 Hz -> 20 Hz: every sample)
    ctx = AppContext.create(tmp_path / "db", bench=False, discover=False)
    try:
        out = import_wisdm(ctx.store, path, ctx.dataset.id, ["Walking", "Jogging"])
        assert [r.name for r in out.recordings] == [f"WISDM {user}"]
    finally:
        ctx.close()
