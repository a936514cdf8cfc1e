"""What a data file is, exactly (``datasets.sniff_file`` and the messages built on it): every kind it tells apart,
made here from real bytes (numpy, zipfile, hand-made zip headers), with the exact ``kind``/``what``/``hint``/
``arrays``; the walk over the local headers of a zip that lost its directory, byte by byte; which kinds each
reader takes; and every branch of ``check_dataset_data`` with its whole message.  The messages as users meet them
(the CLI, the loaders) are in ``test_data_file_kinds.py``."""

from __future__ import annotations

import json
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from app.core import datasets as ds
from tests.core.test_data_file_kinds import HAPT_READS, WISDM2019_READS, hapt_npz, windows_npz
from tests.datakit import synthetic_phone_file

FK = ds.FileKind
HAPT4 = ("acc", "label", "user", "session")
WINDOWS7 = ("X", "y", "classes", "size", "stride", "rate_hz", "meta")
AGAIN = "copy or export it again"
CUT = "a damaged .npz: the zip archive is cut short or corrupt (its directory at the end is missing)"
NOT_ZIP = "a damaged .npz: not a zip archive"
CSV_WHAT = "a labelled-samples CSV (t_s,x,y,z,activity: the format of the recording the emulated board plays back)"
CSV_HINT = "to use it as data, write it as WISDM text, one 'user,activity,timestamp_ns,x,y,z;' record per sample"
SAMPLE_WHAT = "the sample recording the emulated board plays back (t_s,x,y,z,activity, cut from WISDM-2019 subject 7)"
SOURCE = "data/wisdm2019_phone_accel/raw/phone/accel/data_7_accel_phone.txt"
HAPT_EXPECTED = "a HAPT .npz is hapt_raw_50hz.npz with arrays acc, label, user, session, or a folder holding it"
WISDM_LINE = "1600,A,252207666810782,-0.36476135,8.793503,1.0550842;"


# --- makers --------------------------------------------------------------------------------------------------
def npz(path: Path, *names: str) -> Path:
    """An npz of small arrays with these names (in this order)."""
    np.savez(path, **{n: np.arange(3) for n in names})
    return path


def zip_of(path: Path, *names: str, **kw) -> Path:
    """A zip (stored, no zip64) of small members with these names."""
    with zipfile.ZipFile(path, "w", **kw) as zf:
        for n in names:
            zf.writestr(n, b"0123456789")
    return path


def without_directory(path: Path, keep: int | None = None) -> Path:
    """``path`` cut where its central directory begins (or after ``keep`` bytes): the local headers stay."""
    raw = path.read_bytes()
    path.write_bytes(raw[: raw.index(b"PK\x01\x02") if keep is None else keep])
    return path


def local(
    name: bytes,
    data: bytes = b"",
    *,
    flags: int = 0,
    csize: int | None = None,
    nlen: int | None = None,
    extra: bytes = b"",
) -> bytes:
    """One zip local header (stored) and its data, any field overridable."""
    size = len(data) if csize is None else csize
    n = len(name) if nlen is None else nlen
    head = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, flags, 0, 0, 0, 0, size, len(data), n, len(extra))
    return head + name + extra + data


def zip64_extra(csize: int, usize: int = 0) -> bytes:
    return struct.pack("<HHQQ", 1, 16, usize, csize)


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def sample_csv(path: Path, header: str = "t_s,x,y,z,activity", sidecar: object = None) -> Path:
    """A CSV in the sample's format; ``sidecar``: its JSON beside it (a str: the file's text), None: none."""
    write(path, f"{header}\n0.00,0.1,9.8,0.2,walking\n0.05,0.1,9.8,0.2,walking\n")
    if sidecar is not None:
        text = sidecar if isinstance(sidecar, str) else json.dumps(sidecar)
        write(path.with_suffix(".json"), text)
    return path


def folder(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.fixture
def shared(tmp_path, monkeypatch) -> Path:
    """The shared data folder the sample's sidecar names its source in (empty)."""
    from app.core import loso

    monkeypatch.setattr(loso, "DEFAULT_SHARED_DATA", tmp_path / "shared" / "data")
    return tmp_path / "shared"


# --- sniff_file over every kind ------------------------------------------------------------------------------
Case = tuple[Callable[[Path], Path], ds.FileKind]
E5 = ("e1", "e2", "e3", "e4", "e5")

SNIFF: dict[str, Case] = {
    "HAPT npz": (
        lambda d: hapt_npz(d / "h.npz"),
        FK("hapt", "a HAPT .npz (arrays acc, label, user, session)", "", HAPT4),
    ),
    "HAPT npz, 8 arrays": (
        lambda d: npz(d / "h.npz", *HAPT4, *E5[:4]),
        FK("hapt", "a HAPT .npz (arrays acc, label, user, session, e1, e2, e3, e4)", "", (*HAPT4, *E5[:4])),
    ),
    "HAPT npz, 9 arrays": (
        lambda d: npz(d / "h.npz", *HAPT4, *E5),
        FK("hapt", "a HAPT .npz (arrays acc, label, user, session, e1, e2, e3, e4 and 1 more)", "", (*HAPT4, *E5)),
    ),
    "windows export": (
        lambda d: windows_npz(d / "w.npz"),
        FK("windows", f"a windows .npz of the app's labels export (arrays {', '.join(WINDOWS7)})", "", WINDOWS7),
    ),
    "X, y, classes only": (
        lambda d: npz(d / "w.npz", "X", "y", "classes"),
        FK("windows", "a windows .npz of the app's labels export (arrays X, y, classes)", "", ("X", "y", "classes")),
    ),
    "model npz": (
        lambda d: npz(d / "m.npz", "arch_json", "w0"),
        FK("model", "a model file (.npz with arrays arch_json, w0)", "", ("arch_json", "w0")),
    ),
    "loso cache": (
        lambda d: npz(d / "c.npz", "w0", "__report__"),
        FK(
            "loso_cache",
            "a general model cached by a LOSO run (.npz with arrays w0, __report__)",
            "",
            ("w0", "__report__"),
        ),
    ),
    "other npz": (lambda d: npz(d / "o.npz", "a", "b"), FK("npz", "a .npz with arrays a, b", "", ("a", "b"))),
    "zip of text": (
        lambda d: zip_of(d / "t.zip", "readme.txt", "data.csv"),
        FK("zip", "a zip archive holding readme.txt, data.csv (not a .npz of arrays)"),
    ),
    "zip of an array and text": (
        lambda d: zip_of(d / "t.npz", "a.npy", "readme.txt"),
        FK("zip", "a zip archive holding a.npy, readme.txt (not a .npz of arrays)"),
    ),
    "empty zip": (lambda d: zip_of(d / "e.zip"), FK("zip", "a zip archive holding nothing (not a .npz of arrays)")),
    "keras model": (
        lambda d: zip_of(d / "m.keras", "metadata.json", "config.json", "model.weights.h5"),
        FK("keras", "a Keras model (.keras)"),
    ),
    "zip of config.json": (
        lambda d: zip_of(d / "c.zip", "config.json"),
        FK("zip", "a zip archive holding config.json (not a .npz of arrays)"),
    ),
    "zip of an .h5": (
        lambda d: zip_of(d / "w.zip", "w.h5"),
        FK("zip", "a zip archive holding w.h5 (not a .npz of arrays)"),
    ),
    "cut windows export": (
        lambda d: without_directory(npz(d / "w.npz", "X", "a", "b")),
        FK("damaged_zip", f"{CUT}; it starts as the app's windows export (array(s) X, a, b)", AGAIN, ("X", "a", "b")),
    ),
    "cut export, classes first": (
        lambda d: without_directory(npz(d / "w.npz", "classes", "a")),
        FK(
            "damaged_zip",
            f"{CUT}; it starts as the app's windows export (array(s) classes, a)",
            AGAIN,
            ("classes", "a"),
        ),
    ),
    "cut export, y and X": (
        lambda d: without_directory(npz(d / "w.npz", "y", "X")),
        FK("damaged_zip", f"{CUT}; it starts as the app's windows export (array(s) y, X)", AGAIN, ("y", "X")),
    ),
    "cut HAPT npz": (
        lambda d: without_directory(npz(d / "h.npz", "t", "user")),
        FK("damaged_zip", f"{CUT}; it starts as a HAPT .npz (array(s) t, user)", AGAIN, ("t", "user")),
    ),
    "cut other npz": (
        lambda d: without_directory(npz(d / "o.npz", "p", "q")),
        FK("damaged_zip", f"{CUT}; it starts with array(s) p, q", AGAIN, ("p", "q")),
    ),
    "cut zip of text": (
        lambda d: without_directory(zip_of(d / "t.npz", "a.txt", *(f"{i}.npy" for i in range(9)))),
        FK(
            "damaged_zip",
            f"{CUT}; it starts with array(s) a.txt, 0, 1, 2, 3, 4, 5, 6 and 2 more",
            AGAIN,
            ("a.txt", *(str(i) for i in range(9))),
        ),
    ),
    "cut in the first header": (
        lambda d: without_directory(npz(d / "h.npz", *HAPT4), keep=29),
        FK("damaged_zip", CUT, AGAIN),
    ),
    "empty .npz": (lambda d: write(d / "e.npz", b""), FK("damaged_zip", f"{NOT_ZIP} (it is empty)", AGAIN)),
    "text .npz": (
        lambda d: write(d / "t.npz", "acc,label\n"),
        FK("damaged_zip", f"{NOT_ZIP} (it starts with text)", AGAIN),
    ),
    "binary .npz": (
        lambda d: write(d / "b.npz", b"\x7fELF\x02\x01\x01\x00"),
        FK("damaged_zip", f"{NOT_ZIP} (it starts with binary data)", AGAIN),
    ),
    ".npy named .npz": (
        lambda d: write(d / "a.npz", np.lib.format.magic(1, 0) + b"rest"),
        FK("npy", "a single NumPy array (.npy, not a .npz of named arrays)"),
    ),
    ".npy": (
        lambda d: write(d / "a.npy", np.lib.format.magic(1, 0) + b"rest"),
        FK("npy", "a single NumPy array (.npy, not a .npz of named arrays)"),
    ),
    "HDF5": (
        lambda d: write(d / "r.h5", b"\x89HDF\r\n\x1a\n" + bytes(100)),
        FK("hdf5", "an HDF5 file (a recording or a .h5 model)"),
    ),
    "UTF-16 LE": (
        lambda d: write(d / "u.txt", f"{WISDM_LINE}\n".encode("utf-16")),  # (the BOM first: FF FE)
        FK("utf16", "UTF-16 text", "save it as UTF-8 or ASCII text"),
    ),
    "UTF-16 BE": (
        lambda d: write(d / "u.txt", b"\xfe\xff" + f"{WISDM_LINE}\n".encode("utf-16-be")),
        FK("utf16", "UTF-16 text", "save it as UTF-8 or ASCII text"),
    ),
    "binary": (lambda d: write(d / "b.bin", b"abc\0def"), FK("binary", "a binary file")),
    "NUL at byte 4095": (lambda d: write(d / "n.txt", b"x" * 4095 + b"\0"), FK("binary", "a binary file")),
    "NUL at byte 4096": (lambda d: write(d / "n.txt", b"x" * 4096 + b"\0"), FK("text", "a text file")),
    "labelled-samples CSV": (lambda d: sample_csv(d / "s.csv"), FK("sample_csv", CSV_WHAT, CSV_HINT)),
    "labelled-samples CSV, UTF-8 BOM": (
        lambda d: write(d / "s.csv", "\ufefft_s,x,y,z,activity\n0.0,1,2,3,walking\n"),
        FK("sample_csv", CSV_WHAT, CSV_HINT),
    ),
    "labelled-samples CSV, spaced upper-case header": (
        lambda d: sample_csv(d / "s.csv", header="T_S, X, Y, Z, Activity"),
        FK("sample_csv", CSV_WHAT, CSV_HINT),
    ),
    "sidecar not JSON": (lambda d: sample_csv(d / "s.csv", sidecar="{source: x"), FK("sample_csv", CSV_WHAT, CSV_HINT)),
    "sidecar a list": (lambda d: sample_csv(d / "s.csv", sidecar=[SOURCE, "7"]), FK("sample_csv", CSV_WHAT, CSV_HINT)),
    "sidecar without subject": (
        lambda d: sample_csv(d / "s.csv", sidecar={"source": SOURCE}),
        FK("sample_csv", CSV_WHAT, CSV_HINT),
    ),
    "sidecar without source": (
        lambda d: sample_csv(d / "s.csv", sidecar={"subject": "7"}),
        FK("sample_csv", CSV_WHAT, CSV_HINT),
    ),
    "sidecar source not a str": (
        lambda d: sample_csv(d / "s.csv", sidecar={"source": 7, "subject": "7"}),
        FK("sample_csv", CSV_WHAT, CSV_HINT),
    ),
    "the sample, its source not there": (
        lambda d: sample_csv(d / "s.csv", sidecar={"source": SOURCE, "subject": "7"}),
        FK("sample_csv", SAMPLE_WHAT, "give that subject's recording instead: data_7_accel_phone.txt"),
    ),
    "the sample, sidecar with a UTF-8 BOM": (
        lambda d: sample_csv(d / "s.csv", sidecar="\ufeff" + json.dumps({"source": SOURCE, "subject": "7"})),
        FK("sample_csv", SAMPLE_WHAT, "give that subject's recording instead: data_7_accel_phone.txt"),
    ),
    "WISDM text": (
        lambda d: write(d / "w.txt", f"{WISDM_LINE}\n{WISDM_LINE}\n"),
        FK("wisdm", "WISDM accelerometer text"),
    ),
    "WISDM text, CRLF": (lambda d: write(d / "w.txt", f"{WISDM_LINE}\r\n"), FK("wisdm", "WISDM accelerometer text")),
    "WISDM text, blank lines first": (
        lambda d: write(d / "w.txt", f"\n \r\n{WISDM_LINE}\n"),
        FK("wisdm", "WISDM accelerometer text"),
    ),
    "WISDM text, spaces after commas": (
        lambda d: write(d / "w.txt", "33, Walking, 49110062326000, 0.2, 9.8, 0.1;\n"),
        FK("wisdm", "WISDM accelerometer text"),
    ),
    "WISDM text, UTF-8 BOM": (
        lambda d: write(d / "w.txt", f"\ufeff{WISDM_LINE}\n"),
        FK("wisdm", "WISDM accelerometer text"),
    ),
    # (only a CR is dropped before the ';' is looked for: a record that ends in a tab is left to the reader)
    "a record and a tab": (lambda d: write(d / "w.txt", f"{WISDM_LINE}\t\n"), FK("text", "a text file")),
    "five commas, no ';'": (lambda d: write(d / "t.txt", "a,b,c,d,e,f\n"), FK("text", "a text file")),
    "four commas and ';'": (lambda d: write(d / "t.txt", "a,b,c,d,e;\n"), FK("text", "a text file")),
    "six commas and ';'": (lambda d: write(d / "t.txt", "a,b,c,d,e,f,g;\n"), FK("text", "a text file")),
    "other text": (lambda d: write(d / "t.txt", "hello\n"), FK("text", "a text file")),
    "empty file": (lambda d: write(d / "e.txt", b""), FK("text", "a text file")),
    "a folder": (lambda d: folder(d / "f.npz"), FK("unreadable", "a file that cannot be read")),
    "a missing file": (lambda d: d / "gone.npz", FK("unreadable", "a file that cannot be read")),
}


@pytest.mark.parametrize("case", list(SNIFF))
def test_sniff_file_tells_each_kind_exactly(tmp_path, shared, case):
    make, expected = SNIFF[case]
    path = make(tmp_path)
    assert ds.sniff_file(path) == expected
    assert ds.sniff_file(str(path)) == expected  # (a str path too)


def test_the_sample_whose_source_is_there_names_its_path(tmp_path, shared):
    source = shared / SOURCE
    source.parent.mkdir(parents=True)
    synthetic_phone_file(source.parent, 7)
    csv = sample_csv(tmp_path / "s.csv", sidecar={"source": SOURCE, "subject": 7})
    assert ds.sniff_file(csv) == FK("sample_csv", SAMPLE_WHAT, f"give that subject's recording instead: {source}")


# --- _local_members: a zip's local headers, walked without its directory -----------------------------------
LOCAL: dict[str, tuple[bytes, list[str]]] = {
    "two members": (local(b"a.npy", b"12345") + local(b"b.npy", b"678"), ["a.npy", "b.npy"]),
    "then not a header": (local(b"a.npy", b"12345") + b"PK\x01\x02" + bytes(40), ["a.npy"]),
    "then 29 bytes of a header": (local(b"a.npy", b"1") + local(b"b.npy")[:29], ["a.npy"]),
    "29 bytes of a header": (local(b"a.npy")[:29], []),
    "not a zip": (b"\x00" * 64, []),
    "empty": (b"", []),
    "a name of no bytes": (local(b"") + local(b"b.npy"), []),
    "a name longer than the file": (local(b"a.npy", nlen=0x9000), []),
    "a name of bytes not UTF-8": (local(b"\xffa.npy", b"1") + local(b"b.npy"), ["\ufffda.npy", "b.npy"]),
    "sizes after the data (flag bit 3)": (local(b"a.npy", b"12", flags=8) + local(b"b.npy"), ["a.npy"]),
    "flag bits 0 and 11 (not 3)": (local(b"a.npy", b"12", flags=0x801) + local(b"b.npy"), ["a.npy", "b.npy"]),
    "zip64 sizes": (
        local(b"a.npy", b"12345", csize=0xFFFFFFFF, extra=zip64_extra(5, 5)) + local(b"b.npy"),
        ["a.npy", "b.npy"],
    ),
    "a zip64 size past the end": (local(b"a.npy", b"1", csize=0xFFFFFFFF, extra=zip64_extra(2**64 - 16)), ["a.npy"]),
    "a size past the end": (local(b"a.npy", b"1", csize=0xFFFFFF00) + local(b"b.npy"), ["a.npy"]),
    # zip64 marker but no zip64 field: where the data ends is not known (were its data read as the field, it
    # would give 20 and find b.npy)
    "zip64 marker, no zip64 field": (
        local(b"a.npy", zip64_extra(20), csize=0xFFFFFFFF) + local(b"b.npy"),
        ["a.npy"],
    ),
}


@pytest.mark.parametrize("case", list(LOCAL))
def test_local_members_walks_the_headers_exactly(tmp_path, case):
    data, names = LOCAL[case]
    assert ds._local_members(write(tmp_path / "z.npz", data)) == names


def test_local_members_stops_at_64_or_at_most(tmp_path):
    path = write(tmp_path / "z.npz", b"".join(local(f"{i}.npy".encode(), b"ab") for i in range(70)))
    assert ds._local_members(path) == [f"{i}.npy" for i in range(64)]
    assert ds._local_members(path, at_most=3) == ["0.npy", "1.npy", "2.npy"]
    assert ds._local_members(path, at_most=70) == [f"{i}.npy" for i in range(70)]


def test_local_members_of_real_zips_without_their_directory(tmp_path):
    """zipfile's own headers: numpy's (zip64 fields on every member), plain stored and deflated ones."""
    assert ds._local_members(without_directory(hapt_npz(tmp_path / "h.npz"))) == [f"{a}.npy" for a in HAPT4]
    plain = without_directory(zip_of(tmp_path / "p.zip", "a.txt", "b.txt", "c.txt"))
    assert ds._local_members(plain) == ["a.txt", "b.txt", "c.txt"]
    deflated = zip_of(tmp_path / "d.zip", "a.txt", "b.txt", compression=zipfile.ZIP_DEFLATED)
    assert ds._local_members(without_directory(deflated)) == ["a.txt", "b.txt"]


def test_local_members_of_what_cannot_be_read(tmp_path):
    assert ds._local_members(folder(tmp_path / "f")) == []
    assert ds._local_members(tmp_path / "gone") == []


# --- _zip64_compressed_size: the field, byte-exact -------------------------------------------------------------
def field(tag: int, data: bytes) -> bytes:
    return struct.pack("<HH", tag, len(data)) + data


ZIP64: dict[str, tuple[bytes, int | None]] = {
    "none": (b"", None),
    "the zip64 field": (zip64_extra(5, 7), 5),
    "a 64-bit size": (zip64_extra(2**64 - 16), 2**64 - 16),
    "after another field": (field(0x5455, b"\x01abcd") + zip64_extra(5), 5),
    "after two": (field(9, struct.pack("<HH", 9, 100)) + field(9, b"") + zip64_extra(6), 6),
    "after one of 16 bytes": (field(9, bytes(16)) + zip64_extra(8) + field(9, b""), 8),
    "only another field of 16 bytes": (field(9, bytes(16)), None),
    "only another field": (field(9, bytes(30)), None),
    "zip64 of the uncompressed size only": (field(1, bytes(8)) + field(9, bytes(8)), None),
    "zip64 cut short": (zip64_extra(5)[:12], None),
    "zip64 one byte short": (zip64_extra(5)[:19], None),
    "exactly 20 bytes": (zip64_extra(3)[:20], 3),
    "a field claiming 32768 bytes": (struct.pack("<HH", 9, 0x8000) + bytes(16) + zip64_extra(5), None),
    "a partial field at the end": (field(9, b"") + b"\x01\x00", None),
}


@pytest.mark.parametrize("case", list(ZIP64))
def test_zip64_compressed_size_reads_the_field_exactly(case):
    extra, size = ZIP64[case]
    assert ds._zip64_compressed_size(extra) == size


# --- which reader takes which kind, and _names ---------------------------------------------------------------
KINDS = (
    "hapt windows model loso_cache keras npz zip damaged_zip npy hdf5 utf16 binary sample_csv wisdm text unreadable"
).split()


def test_which_kinds_each_reader_takes():
    assert [k for k in KINDS if FK(k, "x").for_hapt()] == ["hapt", "damaged_zip", "unreadable"]
    assert [k for k in KINDS if FK(k, "x").for_wisdm()] == ["wisdm", "text", "unreadable"]
    arrays = [("a",), ("acc",), ("session",), ("classes",), ("X",), ("y",), ("X", "y"), ("X", "y", "classes")]
    assert [a for a in arrays if FK("npz", "x", "", a).for_hapt()] == [
        ("acc",),
        ("session",),
        ("classes",),
        ("X", "y"),
        ("X", "y", "classes"),
    ]
    assert not any(FK("npz", "x", "", a).for_wisdm() for a in arrays)


def test_names_shows_at_most_so_many():
    abc = [chr(ord("a") + i) for i in range(10)]
    assert ds._names([]) == ""
    assert ds._names(abc[:1]) == "a"
    assert ds._names(abc[:8]) == "a, b, c, d, e, f, g, h"
    assert ds._names(abc[:9]) == "a, b, c, d, e, f, g, h and 1 more"
    assert ds._names(abc) == "a, b, c, d, e, f, g, h and 2 more"
    assert ds._names(abc, at_most=2) == "a, b and 8 more"


# --- _hapt_problem: why load_hapt cannot read it -----------------------------------------------------------------
A20 = tuple(f"a{i:02}" for i in range(20))
HAPT_PROBLEM: dict[str, tuple[Callable[[Path], Path], str]] = {
    "classes only": (
        lambda d: npz(d / "x.npz", "classes"),
        "a windows .npz of the app's labels export without array(s) X, y (has: classes)",
    ),
    "X and y": (
        lambda d: npz(d / "x.npz", "X", "y"),
        "a windows .npz of the app's labels export without array(s) classes (has: X, y)",
    ),
    "acc and label": (
        lambda d: npz(d / "x.npz", "acc", "label"),
        "a HAPT .npz without array(s) user, session (has: acc, label)",
    ),
    "acc and 20 more": (
        lambda d: npz(d / "x.npz", "acc", *A20),
        f"a HAPT .npz without array(s) label, user, session (has: acc, {', '.join(A20[:19])} and 1 more)",
    ),
    "a model with a label array": (
        lambda d: npz(d / "x.npz", "arch_json", "label"),
        f"a model file (.npz with arrays arch_json, label), not a HAPT .npz: {HAPT_EXPECTED}",
    ),
    "UTF-16 text": (
        lambda d: write(d / "x.txt", "\ufeffacc\n".encode("utf-16-le")),
        f"UTF-16 text, not a HAPT .npz: {HAPT_EXPECTED}; save it as UTF-8 or ASCII text",
    ),
    "cut": (
        lambda d: without_directory(npz(d / "x.npz", "p")),
        f"{CUT}; it starts with array(s) p; {AGAIN}",
    ),
}


@pytest.mark.parametrize("case", list(HAPT_PROBLEM))
def test_hapt_problem_says_what_the_file_is(tmp_path, case):
    make, message = HAPT_PROBLEM[case]
    path = make(tmp_path)
    assert ds._hapt_problem(path, ds.sniff_file(path)) == f"{path}: {message}"


def test_load_hapt_given_a_model_npz_with_a_label_array(tmp_path):
    path = npz(tmp_path / "m.npz", "arch_json", "label")
    with pytest.raises(ds.DatasetError) as err:
        ds.load_hapt(path)
    assert str(err.value) == f"{path}: {HAPT_PROBLEM['a model with a label array'][1]}"


# --- check_dataset_data: every branch -----------------------------------------------------------------------
def wisdm_folder(d: Path) -> Path:
    f = folder(d / "wisdm")
    synthetic_phone_file(f, 1600)
    synthetic_phone_file(folder(f / "more"), 999)  # (found below the folder too; natural order: 999 first)
    write(f / "notes.txt", "not a data file\n")
    return f


def hapt_folder(d: Path) -> Path:
    f = folder(d / "hapt")
    hapt_npz(f / "hapt_raw_50hz.npz")
    npz(folder(f / "old") / "hapt_a.npz", *HAPT4)
    return f


def both_folder(d: Path) -> Path:
    f = hapt_folder(d)
    synthetic_phone_file(f, 1600)
    return f


WISDM_FOLDER = "a folder of WISDM text (2 files such as data_999_accel_phone.txt)"
HAPT_FOLDER = "a folder holding hapt_a.npz, hapt_raw_50hz.npz (HAPT) and no WISDM text"
MAKERS: dict[str, Callable[[Path], Path]] = {
    "HAPT npz": lambda d: hapt_npz(d / "hapt_raw_50hz.npz"),
    "cut HAPT npz": lambda d: without_directory(hapt_npz(d / "h.npz")),
    "npz of acc": lambda d: npz(d / "a.npz", "acc"),
    "windows export": lambda d: npz(d / "w.npz", "X", "y", "classes"),
    "WISDM text": lambda d: synthetic_phone_file(d, 1600),
    "other text": lambda d: write(d / "t.txt", "hello\n"),
    "UTF-16 text": lambda d: write(d / "u.txt", f"{WISDM_LINE}\n".encode("utf-16")),
    "labelled-samples CSV": lambda d: sample_csv(d / "s.csv"),
    "the sample": lambda d: sample_csv(d / "s.csv", sidecar={"source": SOURCE, "subject": "7"}),
    "missing": lambda d: d / "gone.txt",
    "WISDM folder": wisdm_folder,
    "HAPT folder": hapt_folder,
    "folder of both": both_folder,
    "empty folder": lambda d: folder(d / "empty"),
}
#: (dataset, what --data is): what the message says after "--data <path>: " (None: not refused here).
CHECK: dict[tuple[str, str], str | None] = {
    ("wisdm2019", "HAPT npz"): f"a HAPT .npz (arrays acc, label, user, session), not WISDM-2019 data: "
    f"{WISDM2019_READS}; for this file give --dataset hapt",
    ("wisdm2019", "cut HAPT npz"): f"{CUT}; it starts as a HAPT .npz (array(s) acc, label, user, session), not "
    f"WISDM-2019 data: {WISDM2019_READS}; {AGAIN}",
    ("wisdm2019", "npz of acc"): f"a .npz with arrays acc, not WISDM-2019 data: {WISDM2019_READS}",
    ("wisdm2019", "windows export"): "a windows .npz of the app's labels export (arrays X, y, classes), not "
    f"WISDM-2019 data: {WISDM2019_READS}",
    ("wisdm2019", "WISDM text"): None,
    ("wisdm2019", "other text"): None,
    ("wisdm2019", "UTF-16 text"): f"UTF-16 text, not WISDM-2019 data: {WISDM2019_READS}; save it as UTF-8 or "
    "ASCII text",
    ("wisdm2019", "labelled-samples CSV"): f"{CSV_WHAT}, not WISDM-2019 data: {WISDM2019_READS}",
    ("wisdm2019", "the sample"): f"{SAMPLE_WHAT}, not WISDM-2019 data: {WISDM2019_READS}",
    ("wisdm2019", "missing"): None,
    ("wisdm2019", "WISDM folder"): None,
    ("wisdm2019", "HAPT folder"): f"{HAPT_FOLDER}, not WISDM-2019 data: {WISDM2019_READS}; for this folder give "
    "--dataset hapt",
    ("wisdm2019", "folder of both"): None,
    ("wisdm2019", "empty folder"): None,
    ("hapt", "HAPT npz"): None,
    ("hapt", "cut HAPT npz"): None,
    ("hapt", "npz of acc"): None,
    ("hapt", "windows export"): "a windows .npz of the app's labels export (arrays X, y, classes), not HAPT data: "
    f"{HAPT_READS}",
    ("hapt", "WISDM text"): f"WISDM accelerometer text, not HAPT data: {HAPT_READS}; for this file give --dataset "
    "wisdm2019",
    ("hapt", "other text"): f"a text file, not HAPT data: {HAPT_READS}",
    ("hapt", "UTF-16 text"): f"UTF-16 text, not HAPT data: {HAPT_READS}; save it as UTF-8 or ASCII text",
    ("hapt", "labelled-samples CSV"): f"{CSV_WHAT}, not HAPT data: {HAPT_READS}",
    ("hapt", "the sample"): f"{SAMPLE_WHAT}, not HAPT data: {HAPT_READS}",
    ("hapt", "missing"): None,
    ("hapt", "WISDM folder"): f"{WISDM_FOLDER}, not HAPT data: {HAPT_READS}; for this folder give --dataset wisdm2019",
    ("hapt", "HAPT folder"): None,
    ("hapt", "folder of both"): None,
    ("hapt", "empty folder"): None,
}


@pytest.mark.parametrize("dataset, data", list(CHECK))
def test_check_dataset_data_every_branch(tmp_path, shared, dataset, data):
    path = MAKERS[data](tmp_path)
    message = CHECK[dataset, data]
    if message is None:
        assert ds.check_dataset_data(dataset, path) is None
        return
    for given in (path, str(path)):
        with pytest.raises(ds.DatasetError) as err:
            ds.check_dataset_data(dataset, given)
        assert str(err.value) == f"--data {path}: {message}"


@pytest.mark.parametrize("data", ["HAPT npz", "WISDM text", "WISDM folder", "HAPT folder", "missing"])
def test_check_dataset_data_leaves_an_unknown_dataset_to_its_own_check(tmp_path, data):
    assert ds.check_dataset_data("wisdm", MAKERS[data](tmp_path)) is None
