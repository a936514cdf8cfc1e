"""Exact checks of what protects a user's files: zip archives refused before anything is extracted
(app.core.safezip) and output paths checked before a long job starts, written whole or not at all
(app.core.outputs).  Mutation targets safezip and outputs (benchmarks/mutation.py) run this file."""

from __future__ import annotations

import errno
import os
import tempfile
import zipfile
from pathlib import Path

import pytest

from app.core import outputs
from app.core.outputs import (
    MIN_ROOM,
    OutputError,
    atomic_path,
    check_output_dir,
    check_output_file,
    failure_reason,
    rescue_dir,
    write_failure,
)
from app.core.safezip import DATA_LIMITS, MODEL_LIMITS, MiB, ZipLimits, ZipRefused, _size, check_zip


def _zip(path: Path, members: dict[str, int], declared: dict[str, int] | None = None) -> Path:
    """A deflated zip with members of ``members[name]`` zero bytes; ``declared`` patches the sizes its central
    directory declares (what a zip bomb lies about), without writing them."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, n in members.items():
            zf.writestr(name, b"\0" * n)
    if declared:
        data = bytearray(path.read_bytes())
        for name, size in declared.items():
            key = name.encode()
            at = data.find(b"PK\x01\x02")  # the central directory: each entry's uncompressed size at +24
            while at >= 0:
                n_name = int.from_bytes(data[at + 28 : at + 30], "little")
                if bytes(data[at + 46 : at + 46 + n_name]) == key:
                    data[at + 24 : at + 28] = size.to_bytes(4, "little")
                at = data.find(b"PK\x01\x02", at + 4)
        path.write_bytes(bytes(data))
    return path


# --- safezip -------------------------------------------------------------------------------------------


def test_the_shipped_limits():
    assert (MODEL_LIMITS.total, MODEL_LIMITS.ratio, MODEL_LIMITS.ratio_floor, MODEL_LIMITS.count) == (
        256 * MiB,
        100.0,
        16 * MiB,
        1000,
    )
    assert MODEL_LIMITS.members == {"config.json": 16 * MiB, "metadata.json": MiB}
    assert (DATA_LIMITS.total, DATA_LIMITS.ratio, DATA_LIMITS.ratio_floor, DATA_LIMITS.count) == (
        4096 * MiB,
        200.0,
        64 * MiB,
        10_000,
    )
    assert DATA_LIMITS.members == {}
    lim = ZipLimits(10, 2, 3)
    assert (lim.total, lim.ratio, lim.ratio_floor, lim.members, lim.count) == (10, 2.0, 3, {}, 1000)
    assert type(lim.total) is int and type(lim.ratio) is float and type(lim.ratio_floor) is int


def test_sizes_are_written_in_the_largest_whole_unit():
    assert _size(0) == "0 bytes"
    assert _size(1023) == "1023 bytes"
    assert _size(1024) == "1.0 KiB"
    assert _size(1536) == "1.5 KiB"
    assert _size(MiB - 1) == "1024.0 KiB"
    assert _size(MiB) == "1.0 MiB"
    assert _size(3 * MiB // 2) == "1.5 MiB"
    assert _size(1 << 30) == "1.0 GiB"
    assert _size(5 << 30) == "5.0 GiB"


def test_an_archive_within_the_limits_gives_its_members(tmp_path):
    p = _zip(tmp_path / "m.npz", {"a.npy": 100, "b.npy": 50})
    infos = check_zip(p, ZipLimits(total=150, ratio=1e9, ratio_floor=0, count=2))  # every limit exactly met
    assert [(i.filename, i.file_size) for i in infos] == [("a.npy", 100), ("b.npy", 50)]
    assert [i.filename for i in check_zip(str(p), MODEL_LIMITS)] == ["a.npy", "b.npy"]  # a str path too


def test_too_many_members_are_refused(tmp_path):
    p = _zip(tmp_path / "m.npz", {f"{k}.npy": 1 for k in range(3)})
    with pytest.raises(ZipRefused) as ei:
        check_zip(p, ZipLimits(total=1 << 40, ratio=1e9, ratio_floor=0, count=2), "model")
    assert str(ei.value) == f"{p}: model has 3 members (at most 2 allowed)"
    big = _zip(tmp_path / "big.npz", {f"{k}.npy": 0 for k in range(1001)})
    with pytest.raises(ZipRefused) as ei:
        check_zip(big, MODEL_LIMITS)
    assert str(ei.value) == f"{big}: archive has 1,001 members (at most 1,000 allowed)"


def test_a_member_over_its_own_cap_is_refused_by_name(tmp_path):
    lim = ZipLimits(total=1 << 40, ratio=1e9, ratio_floor=0, members={"config.json": 100})
    check_zip(_zip(tmp_path / "ok.keras", {"config.json": 100, "w.h5": 5000}), lim)  # at the cap: fine
    p = _zip(tmp_path / "m.keras", {"config.json": 101})
    with pytest.raises(ZipRefused) as ei:
        check_zip(p, lim, "model")
    assert str(ei.value) == (
        f"{p}: model member 'config.json' declares 101 bytes (at most 100 bytes allowed): "
        "refused before extracting anything"
    )


def test_a_lying_member_size_is_refused_before_extracting(tmp_path):
    """A 1 KiB file whose central directory declares a 17 MiB config.json (over MODEL_LIMITS' 16 MiB cap)."""
    p = _zip(tmp_path / "bomb.keras", {"config.json": 10}, declared={"config.json": 17 * MiB})
    with pytest.raises(ZipRefused) as ei:
        check_zip(p, MODEL_LIMITS, "model")
    assert str(ei.value) == (
        f"{p}: model member 'config.json' declares 17.0 MiB (at most 16.0 MiB allowed): "
        "refused before extracting anything"
    )


def test_the_declared_total_is_summed_over_members(tmp_path):
    lim = ZipLimits(total=150, ratio=1e9, ratio_floor=0)
    p = _zip(tmp_path / "m.npz", {"a.npy": 100, "b.npy": 51})  # each under 150, together 151
    with pytest.raises(ZipRefused) as ei:
        check_zip(p, lim, "data set")
    assert str(ei.value) == (
        f"{p}: data set declares 151 bytes once extracted (at most 150 bytes allowed): refused before extracting anything"
    )


def test_an_archive_that_expands_too_much_is_refused_as_a_zip_bomb(tmp_path):
    p = _zip(tmp_path / "m.npz", {"a.npy": 100_000})  # zeros deflate to a few hundred bytes
    size = p.stat().st_size
    ratio = 100_000 / size
    lim = ZipLimits(total=1 << 40, ratio=10, ratio_floor=99_999)
    with pytest.raises(ZipRefused) as ei:
        check_zip(p, lim, "model")
    assert str(ei.value) == (
        f"{p}: model of {size} bytes declares 97.7 KiB once extracted ({ratio:,.0f}x; at most 10x allowed): "
        "looks like a zip bomb, refused before extracting anything"
    )
    # at or below the floor anything goes; at exactly the ratio too
    check_zip(p, ZipLimits(total=1 << 40, ratio=10, ratio_floor=100_000))
    check_zip(p, ZipLimits(total=1 << 40, ratio=100_000 / size, ratio_floor=0))


def test_a_file_that_is_not_a_zip_raises_bad_zip(tmp_path):
    p = tmp_path / "m.npz"
    p.write_bytes(b"not a zip at all")
    with pytest.raises(zipfile.BadZipFile):
        check_zip(p, MODEL_LIMITS)
    with pytest.raises(FileNotFoundError):
        check_zip(tmp_path / "missing.npz", MODEL_LIMITS)


# --- outputs: checked before the work starts ----------------------------------------------------------


def test_the_room_an_output_needs_is_16_mib():
    assert MIN_ROOM == 16 * 1024 * 1024


def test_an_output_file_in_a_writable_folder_is_accepted(tmp_path):
    p = tmp_path / "model.npz"
    assert check_output_file(p) == p
    assert check_output_file(str(p), "--export", (".npz", ".keras")) == p
    assert check_output_file(tmp_path / "MODEL.NPZ", "--out", (".npz",)) == tmp_path / "MODEL.NPZ"  # any case
    assert list(tmp_path.iterdir()) == []  # the probe left nothing behind


def test_a_bare_file_name_is_checked_in_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen = []
    real = tempfile.mkstemp
    monkeypatch.setattr(outputs.tempfile, "mkstemp", lambda **kw: seen.append(kw["dir"]) or real(**kw))
    assert check_output_file("out.npz") == Path("out.npz")
    assert seen == [Path(".")]


def test_an_output_file_with_the_wrong_suffix_is_refused(tmp_path):
    with pytest.raises(OutputError) as ei:
        check_output_file(tmp_path / "m.h5", "--export", (".npz", ".keras"))
    assert str(ei.value) == f"--export must end with .npz or .keras, got {str(tmp_path / 'm.h5')!r}"


def test_an_output_file_that_is_a_folder_is_refused(tmp_path):
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(OutputError) as ei:
        check_output_file(tmp_path / "d.npz")
    assert str(ei.value) == f"--out {tmp_path / 'd.npz'}: is a folder, expected a file name"


def test_an_output_file_in_a_missing_folder_is_refused(tmp_path):
    p = tmp_path / "nope" / "m.npz"
    with pytest.raises(OutputError) as ei:
        check_output_file(p, "--save")
    assert str(ei.value) == f"--save {p}: the folder {tmp_path / 'nope'} does not exist"


def test_an_unwritable_folder_is_refused_in_the_systems_words(tmp_path, monkeypatch):
    def denied(**kw):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(outputs.tempfile, "mkstemp", denied)
    with pytest.raises(OutputError) as ei:
        check_output_file(tmp_path / "m.npz")
    assert str(ei.value) == f"--out {tmp_path / 'm.npz'}: cannot write in {tmp_path} (Permission denied)"
    assert ei.value.__cause__ is None and ei.value.__suppress_context__

    def bare(**kw):
        raise OSError("weird")

    monkeypatch.setattr(outputs.tempfile, "mkstemp", bare)
    with pytest.raises(OutputError) as ei:
        check_output_dir(tmp_path, "--dir")
    assert str(ei.value) == f"--dir {tmp_path}: cannot write in {tmp_path} (weird)"


def test_the_probe_is_a_hidden_file_removed_at_once(tmp_path, monkeypatch):
    made = []
    real = tempfile.mkstemp

    def spy(**kw):
        fd, p = real(**kw)
        made.append((kw, p))
        return fd, p

    monkeypatch.setattr(outputs.tempfile, "mkstemp", spy)
    check_output_file(tmp_path / "m.npz")
    assert [kw for kw, _ in made] == [{"prefix": ".odl-write-test-", "dir": tmp_path}]
    assert not Path(made[0][1]).exists()


def test_a_full_disk_is_refused_before_the_work(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(outputs, "room_left", lambda p: asked.append(p) or MIN_ROOM - 1)
    with pytest.raises(OutputError) as ei:
        check_output_file(tmp_path / "m.npz", "--out")
    assert str(ei.value) == f"--out {tmp_path / 'm.npz'}: the disk is full (only 16.8 MB free in {tmp_path})"
    assert asked == [tmp_path / "x"]
    monkeypatch.setattr(outputs, "room_left", lambda p: 1_050_000)  # MB are 10^6 bytes
    with pytest.raises(OutputError) as ei:
        check_output_file(tmp_path / "m.npz", "--out")
    assert str(ei.value) == f"--out {tmp_path / 'm.npz'}: the disk is full (only 1.1 MB free in {tmp_path})"
    monkeypatch.setattr(outputs, "room_left", lambda p: MIN_ROOM)  # exactly enough: accepted
    assert check_output_file(tmp_path / "m.npz") == tmp_path / "m.npz"


def test_an_output_folder_is_created_when_missing(tmp_path):
    d = tmp_path / "results"
    assert check_output_dir(d) == d
    assert d.is_dir() and list(d.iterdir()) == []
    assert check_output_dir(str(d), "--results") == d  # an existing folder is fine


def test_an_output_folder_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "results"
    f.write_text("x")
    with pytest.raises(OutputError) as ei:
        check_output_dir(f, "--results")
    assert str(ei.value) == f"--results {f}: is an existing file, expected a folder"
    assert f.read_text() == "x"


def test_an_output_folder_whose_parent_is_missing_is_refused(tmp_path):
    d = tmp_path / "a" / "b"
    with pytest.raises(OutputError) as ei:
        check_output_dir(d)
    assert str(ei.value) == f"--out {d}: the folder {tmp_path / 'a'} does not exist"
    assert not (tmp_path / "a").exists()


def test_an_output_folder_that_cannot_be_created_is_refused(tmp_path, monkeypatch):
    def refuse(self, *a, **kw):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(OutputError) as ei:
        check_output_dir(tmp_path / "r", "--out")
    assert str(ei.value) == f"--out {tmp_path / 'r'}: cannot create it (Permission denied)"
    assert ei.value.__cause__ is None and ei.value.__suppress_context__


def test_an_output_folder_is_probed_inside_itself(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(outputs, "room_left", lambda p: asked.append(p) or 1 << 40)
    check_output_dir(tmp_path / "r")
    assert asked == [tmp_path / "r" / "x"]


# --- outputs: a rescue folder and whole-or-nothing writes ---------------------------------------------


def test_the_rescue_folder_is_new_and_named_after_the_job(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(outputs.time, "strftime", lambda fmt: "20261206-170000" if fmt == "%Y%m%d-%H%M%S" else "?")
    d = rescue_dir("personalize")
    assert d.parent == tmp_path and d.is_dir()
    assert d.name.startswith("odlstudio-personalize-20261206-170000-")
    assert rescue_dir("personalize") != d  # never the same folder twice


def test_the_rescue_folder_falls_back_to_home_then_gives_up(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setattr(outputs.tempfile, "gettempdir", lambda: str(tmp_path / "gone"))
    monkeypatch.setattr(outputs.Path, "home", classmethod(lambda cls: home))
    d = rescue_dir("pretrain")
    assert d.parent == home and d.name.startswith("odlstudio-pretrain-")
    monkeypatch.setattr(outputs.Path, "home", classmethod(lambda cls: tmp_path / "gone too"))
    with pytest.raises(OutputError) as ei:
        rescue_dir("pretrain")
    assert str(ei.value) == "no folder could be created to keep the results (temporary folder and home both failed)"


def test_an_atomic_write_replaces_the_file_only_when_finished(tmp_path):
    p = tmp_path / "m.npz"
    p.write_text("old")
    with atomic_path(p) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".npz" and tmp.name.startswith(".m.tmp")
        assert tmp != p
        tmp.write_text("new")
        assert p.read_text() == "old"  # not yet
    assert p.read_text() == "new"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.npz"]


def test_an_interrupted_atomic_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("old")
    with pytest.raises(OSError), atomic_path(p) as tmp:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert p.read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.csv"]
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "n.csv"):
        raise RuntimeError("before anything was written")  # no temporary file to remove: no error of its own
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.csv"]


def test_two_threads_writing_the_same_file_use_different_temporary_files(tmp_path):
    import threading

    names = []

    def one():
        with atomic_path(tmp_path / "m.npz") as tmp:
            names.append(tmp.name)
            tmp.write_text(tmp.name)

    t = threading.Thread(target=one)
    t.start()
    t.join()
    one()
    assert len(set(names)) == 2 and all(f".m.tmp{os.getpid()}-" in n for n in names)


def test_the_failure_reason_is_the_systems_words_or_the_errors_message():
    assert failure_reason(OSError(errno.ENOSPC, "No space left on device", "/x/.m.tmp1.npz")) == (
        "No space left on device"
    )
    assert failure_reason(OSError("no strerror")) == "no strerror"
    assert failure_reason(ValueError("weights are NaN")) == "weights are NaN"


# --- write_failure: why an export was not written, naming the file ------------------------------------------------
def test_write_failure_names_the_file_it_could_not_write(tmp_path):
    out = tmp_path / "w.npz"
    tmp = tmp_path / ".w.tmp1.npz"  # atomic_path's temporary file beside it
    assert write_failure(out, OSError(errno.ENOSPC, "No space left on device", str(tmp))) == (
        f"cannot write {out}: No space left on device"
    )
    assert write_failure(str(out), OSError(errno.EROFS, "Read-only file system")) == (
        f"cannot write {out}: Read-only file system"
    )
    assert write_failure(out, OSError(errno.EACCES, "Permission denied", str(out))) == (
        f"cannot write {out}: Permission denied"
    )


def test_write_failure_of_a_missing_folder_or_onto_a_folder(tmp_path):
    gone = tmp_path / "gone" / "w.npz"
    enoent = FileNotFoundError(errno.ENOENT, "No such file or directory", str(gone.parent / ".w.tmp.npz"))
    assert write_failure(gone, enoent) == f"cannot write {gone}: the folder {gone.parent} does not exist"
    # ENOENT with the folder there (the file vanished under the temporary name): the system's words
    here = tmp_path / "w.npz"
    assert write_failure(here, FileNotFoundError(errno.ENOENT, "No such file or directory", str(here))) == (
        f"cannot write {here}: No such file or directory"
    )
    assert write_failure(tmp_path, IsADirectoryError(errno.EISDIR, "Is a directory", str(tmp_path))) == (
        f"cannot write {tmp_path}: it is a folder"
    )
    (tmp_path / "d").mkdir()  # a folder of the file's name, whatever the error says
    assert write_failure(tmp_path / "d", OSError(errno.EEXIST, "File exists", str(tmp_path / "d"))) == (
        f"cannot write {tmp_path / 'd'}: it is a folder"
    )
    assert (
        write_failure(here, IsADirectoryError(errno.EISDIR, "Is a directory")) == f"cannot write {here}: it is a folder"
    )


def test_write_failure_of_an_input_names_that_file_and_of_anything_else_is_its_message(tmp_path):
    out = tmp_path / "out" / "w.npz"
    other = PermissionError(errno.EACCES, "Permission denied", b"/data/recordings/7.f32")
    assert write_failure(out, other) == "cannot read /data/recordings/7.f32: Permission denied"
    assert write_failure(out, OSError(errno.EIO, "Input/output error", str(tmp_path / "in.f32"))) == (
        f"cannot read {tmp_path / 'in.f32'}: Input/output error"
    )
    assert write_failure(out, ValueError("no recording has labels yet")) == "no recording has labels yet"
    assert write_failure(out, OSError("bare")) == f"cannot write {out}: bare"
