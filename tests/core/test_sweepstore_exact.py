"""Exact checks of a sweep's results store (app.core.sweepstore): rows read back by key, damaged lines
skipped and counted, appends that survive a crash, the lock against a second writer, the messages naming
the file.  The mutation target sweepstore (benchmarks/mutation.py) runs this file."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from app.core import sweepstore
from app.core.sweepstore import MAX_LINE, ResultStore, StoreError, read_store


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")


# --- reading ---------------------------------------------------------------------------------------------


def test_a_missing_store_is_empty(tmp_path):
    assert read_store(tmp_path / "r.jsonl") == ({}, 0, 0)
    assert read_store(str(tmp_path / "r.jsonl")) == ({}, 0, 0)


def test_rows_are_read_by_key_and_the_first_row_of_a_key_wins(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"key": "a", "f1": 1}\n{"key": "b", "f1": 2}\n{"key": "a", "f1": 3}\n')
    assert read_store(p) == ({"a": {"key": "a", "f1": 1}, "b": {"key": "b", "f1": 2}}, 0, 0)


def test_damaged_and_keyless_lines_are_counted_apart(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_bytes(
        b'{"key": "a", "v": 1}\n'
        b"\n"  # an empty line: neither
        b"   \n"  # blank: neither
        b"not json\n"  # damaged
        b'{"key": "b", "v": \n'  # torn: damaged
        b"[1, 2]\n"  # not an object: damaged
        b'"a string"\n'  # not an object: damaged
        b'{"v": 2}\n'  # no key: kept in the file, never reused
        b'{"key": null, "v": 3}\n'  # a null key is no key
        b'{"key": 7}\n'  # a key that is not a string: damaged
        b'{"key": ""}\n'  # an empty key: damaged
        b"\xff\xfe\n"  # not UTF-8: damaged
        b'{"key": "c"}'  # the last line without its newline is read
    )
    rows, damaged, keyless = read_store(p)
    assert sorted(rows) == ["a", "c"]
    assert (damaged, keyless) == (7, 2)


def test_a_deeply_nested_line_is_damaged_not_a_crash(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_bytes(b"[" * 100_000 + b"\n" + b'{"key": "k"}\n')
    assert read_store(p) == ({"k": {"key": "k"}}, 1, 0)


def test_an_over_long_line_is_skipped_whole_and_counted_once(tmp_path):
    """A line of 2.5 × MAX_LINE bytes is read in three pieces: all of it is one damaged line, and the row after
    it is read."""
    p = tmp_path / "r.jsonl"
    long = b'{"key": "x", "pad": "' + b"p" * (MAX_LINE * 5 // 2) + b'"}\n'
    p.write_bytes(b'{"key": "a"}\n' + long + b'{"key": "b"}\n')
    assert read_store(p) == ({"a": {"key": "a"}, "b": {"key": "b"}}, 1, 0)


def test_a_line_of_exactly_max_line_bytes_is_read(tmp_path):
    p = tmp_path / "r.jsonl"
    head = b'{"key": "a", "pad": "'
    tail = b'"}\n'
    line = head + b"p" * (MAX_LINE - len(head) - len(tail)) + tail
    assert len(line) == MAX_LINE
    p.write_bytes(line + b'{"key": "b"}\n')
    rows, damaged, keyless = read_store(p)
    assert sorted(rows) == ["a", "b"] and (damaged, keyless) == (0, 0)
    p.write_bytes(line[:-1] + b"p\n" + b'{"key": "b"}\n')  # one byte more: over-long
    assert read_store(p) == ({"b": {"key": "b"}}, 1, 0)


def test_max_line_is_one_mib():
    assert MAX_LINE == 1 << 20


def test_a_folder_or_an_unreadable_store_is_refused_by_name(tmp_path, monkeypatch):
    with pytest.raises(StoreError) as ei:
        read_store(tmp_path)
    assert str(ei.value) == f"{tmp_path}: is a folder, expected a results file"
    p = tmp_path / "r.jsonl"
    p.write_text("")

    def denied(*a, **kw):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(sweepstore, "open", denied, raising=False)
    with pytest.raises(StoreError) as ei:
        read_store(p)
    assert str(ei.value) == f"{p}: cannot read it (Permission denied)"
    assert ei.value.__suppress_context__
    monkeypatch.setattr(sweepstore, "open", lambda *a, **kw: (_ for _ in ()).throw(OSError("odd")), raising=False)
    with pytest.raises(StoreError) as ei:
        read_store(p)
    assert str(ei.value) == f"{p}: cannot read it (odd)"


def test_store_error_is_an_os_error():
    assert issubclass(StoreError, OSError)


# --- appending -------------------------------------------------------------------------------------------


def test_rows_are_appended_as_sorted_json_lines(tmp_path):
    p = tmp_path / "r.jsonl"
    with ResultStore(p) as st:
        st.append([{"key": "a", "z": 1, "b": 2}, {"key": "b"}])
        st.append([])  # nothing to write: no empty line
        st.append(r for r in [{"key": "c", "é": "ü"}])  # any iterable
    assert p.read_bytes() == (
        b'{"b": 2, "key": "a", "z": 1}\n{"key": "b"}\n' + json.dumps({"key": "c", "é": "ü"}).encode() + b"\n"
    )
    assert sorted(read_store(p)[0]) == ["a", "b", "c"]


def test_a_store_created_by_append_has_mode_644(tmp_path):
    old = os.umask(0)
    try:
        with ResultStore(tmp_path / "r.jsonl"):
            pass
    finally:
        os.umask(old)
    assert (tmp_path / "r.jsonl").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "r.jsonl.lock").stat().st_mode & 0o777 == 0o644


def test_appends_go_to_the_end_of_an_existing_store(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_bytes(b'{"key": "old"}\n')
    with ResultStore(p) as st:
        st.append([{"key": "new"}])
    assert p.read_bytes() == b'{"key": "old"}\n{"key": "new"}\n'


def test_a_torn_last_line_is_ended_before_the_next_row(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_bytes(b'{"key": "a"}\n{"key": "b", "v"')  # a crash mid-append
    with ResultStore(p) as st:
        st.append([{"key": "c"}])
    assert _lines(p) == [b'{"key": "a"}', b'{"key": "b", "v"', b'{"key": "c"}', b""]
    assert read_store(p) == ({"a": {"key": "a"}, "c": {"key": "c"}}, 1, 0)


def test_a_whole_or_empty_store_gets_no_extra_newline(tmp_path):
    p = tmp_path / "r.jsonl"
    with ResultStore(p):
        pass
    assert p.read_bytes() == b""
    p.write_bytes(b'{"key": "a"}\n')
    with ResultStore(p):
        pass
    assert p.read_bytes() == b'{"key": "a"}\n'


def test_each_append_is_one_write_then_fsync(tmp_path, monkeypatch):
    calls = []
    real_write, real_fsync = os.write, os.fsync
    monkeypatch.setattr(sweepstore.os, "write", lambda fd, b: calls.append(("write", bytes(b))) or real_write(fd, b))
    monkeypatch.setattr(sweepstore.os, "fsync", lambda fd: calls.append(("fsync",)) or real_fsync(fd))
    with ResultStore(tmp_path / "r.jsonl", lock=False) as st:
        st.append([{"key": "a"}, {"key": "b"}])
    assert calls == [("write", b'{"key": "a"}\n{"key": "b"}\n'), ("fsync",)]


def test_a_short_write_is_continued_until_everything_is_written(tmp_path, monkeypatch):
    real_write = os.write
    sizes = []

    def two_bytes_at_a_time(fd, b):
        sizes.append(len(b))
        return real_write(fd, bytes(b[:2]))

    p = tmp_path / "r.jsonl"
    with ResultStore(p, lock=False) as st:
        monkeypatch.setattr(sweepstore.os, "write", two_bytes_at_a_time)
        st.append([{"key": "ab"}])
    assert p.read_bytes() == b'{"key": "ab"}\n'
    assert sizes == list(range(14, 0, -2))


def test_a_full_disk_is_a_store_error_naming_the_file(tmp_path, monkeypatch):
    p = tmp_path / "r.jsonl"
    with ResultStore(p) as st:

        def full(fd, b):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(sweepstore.os, "write", full)
        with pytest.raises(StoreError) as ei:
            st.append([{"key": "a"}])
        assert str(ei.value) == f"{p}: cannot append results (No space left on device)"
        assert ei.value.__suppress_context__
        monkeypatch.setattr(sweepstore.os, "write", lambda fd, b: (_ for _ in ()).throw(OSError("io")))
        with pytest.raises(StoreError) as ei:
            st.append([{"key": "a"}])
        assert str(ei.value) == f"{p}: cannot append results (io)"


def test_appending_to_a_closed_store_is_refused(tmp_path):
    p = tmp_path / "r.jsonl"
    st = ResultStore(p)
    with pytest.raises(StoreError) as ei:
        st.append([{"key": "a"}])
    assert str(ei.value) == f"{p}: the store is not open"
    st.append([])  # nothing to write: nothing to refuse
    with st:
        pass
    with pytest.raises(StoreError):
        st.append([{"key": "a"}])


def test_a_folder_is_not_a_store(tmp_path):
    with pytest.raises(StoreError) as ei:
        ResultStore(tmp_path).open()
    assert str(ei.value) == f"{tmp_path}: is a folder, expected a results file"
    assert not (tmp_path.parent / (tmp_path.name + ".lock")).exists()  # refused before locking


def test_a_store_that_cannot_be_opened_is_refused_and_releases_its_lock(tmp_path):
    p = tmp_path / "missing" / "r.jsonl"
    st = ResultStore(p, lock=False)
    with pytest.raises(StoreError) as ei:
        st.open()
    assert str(ei.value) == f"{p}: cannot append to it (No such file or directory)"
    assert ei.value.__suppress_context__
    assert (st._fd, st._lock_fd) == (None, None)


def test_a_failed_open_after_locking_releases_the_lock(tmp_path, monkeypatch):
    p = tmp_path / "r.jsonl"
    st = ResultStore(p)
    monkeypatch.setattr(ResultStore, "_close_torn_line", lambda self: (_ for _ in ()).throw(OSError("torn")))
    with pytest.raises(StoreError) as ei:
        st.open()
    assert str(ei.value) == f"{p}: cannot append to it (torn)"
    assert (st._fd, st._lock_fd) == (None, None)
    monkeypatch.undo()
    with ResultStore(p):  # the lock is free again
        pass


# --- the lock --------------------------------------------------------------------------------------------


def test_a_second_writer_is_refused_naming_the_first_ones_process(tmp_path):
    p = tmp_path / "r.jsonl"
    with ResultStore(p):
        assert (tmp_path / "r.jsonl.lock").read_text() == str(os.getpid())
        with pytest.raises(StoreError) as ei:
            ResultStore(p).open()
        assert str(ei.value) == (
            f"{p}: another sweep is writing this results file (process {os.getpid()}); "
            "wait for it or use another --results"
        )
        assert ei.value.__suppress_context__
        with ResultStore(p, lock=False) as st:  # loso's unlocked appends are not stopped
            st.append([{"key": "x"}])
    with ResultStore(p) as st:  # released on close
        st.append([{"key": "y"}])
    assert sorted(read_store(p)[0]) == ["x", "y"]


def test_a_stale_pid_in_the_lock_file_is_replaced_whole(tmp_path):
    (tmp_path / "r.jsonl.lock").write_text("123456789012")
    with ResultStore(tmp_path / "r.jsonl"):
        assert (tmp_path / "r.jsonl.lock").read_text() == str(os.getpid())


def test_a_lock_file_without_a_pid_gives_no_process(tmp_path, monkeypatch):
    p = tmp_path / "r.jsonl"
    with ResultStore(p):
        (tmp_path / "r.jsonl.lock").write_text("garbage")
        with pytest.raises(StoreError) as ei:
            ResultStore(p).open()
        assert str(ei.value) == (
            f"{p}: another sweep is writing this results file; wait for it or use another --results"
        )
        real_read = os.read
        monkeypatch.setattr(sweepstore.os, "read", lambda fd, n: (_ for _ in ()).throw(OSError("eio")))
        with pytest.raises(StoreError) as ei:
            ResultStore(p).open()
        assert "another sweep is writing this results file; wait" in str(ei.value)
        monkeypatch.setattr(sweepstore.os, "read", real_read)


def test_the_pid_read_back_is_at_most_64_bytes(tmp_path, monkeypatch):
    asked = []
    real_read = os.read
    monkeypatch.setattr(sweepstore.os, "read", lambda fd, n: asked.append(n) or real_read(fd, n))
    p = tmp_path / "r.jsonl"
    with ResultStore(p):
        (tmp_path / "r.jsonl.lock").write_text(" 42 \n")
        with pytest.raises(StoreError) as ei:
            ResultStore(p).open()
    assert asked == [64]
    assert "(process 42)" in str(ei.value)


def test_a_lock_file_that_cannot_be_created_is_refused_by_name(tmp_path):
    p = tmp_path / "r.jsonl"
    (tmp_path / "r.jsonl.lock").mkdir()  # a folder where the lock file goes
    with pytest.raises(StoreError) as ei:
        ResultStore(p).open()
    assert str(ei.value) == f"{tmp_path / 'r.jsonl.lock'}: cannot create the lock file (Is a directory)"
    assert ei.value.__suppress_context__
    assert not p.exists()


def test_writing_the_pid_may_fail_without_losing_the_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(sweepstore.os, "pwrite", lambda *a: (_ for _ in ()).throw(OSError("ro")))
    p = tmp_path / "r.jsonl"
    with ResultStore(p) as st:
        st.append([{"key": "a"}])
        with pytest.raises(StoreError):
            ResultStore(p).open()  # still locked
    assert sorted(read_store(p)[0]) == ["a"]


def test_without_fcntl_there_is_no_lock(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_fcntl(name, *a, **kw):
        if name == "fcntl":
            raise ImportError("no fcntl on this system")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_fcntl)
    p = tmp_path / "r.jsonl"
    with ResultStore(p) as a, ResultStore(p) as b:
        a.append([{"key": "a"}])
        b.append([{"key": "b"}])
    assert not (tmp_path / "r.jsonl.lock").exists()
    assert sorted(read_store(p)[0]) == ["a", "b"]


def test_close_is_idempotent_and_tolerates_a_closed_descriptor(tmp_path):
    st = ResultStore(tmp_path / "r.jsonl").open()
    assert st._fd is not None and st._lock_fd is not None
    os.close(st._fd)  # already gone: close must not raise
    st.close()
    assert (st._fd, st._lock_fd) == (None, None)
    st.close()


def test_every_read_asks_for_at_most_max_line_plus_one_bytes(tmp_path, monkeypatch):
    """A hostile store of one endless line is read in bounded pieces, never whole into memory."""
    p = tmp_path / "r.jsonl"
    p.write_bytes(b'{"key": "a"}\n' + b"x" * (MAX_LINE * 3) + b"\n" + b'{"key": "b"}\n')
    sizes = []
    real_open = open

    class Spy:
        def __init__(self, fh):
            self.fh = fh

        def readline(self, n=-1):
            sizes.append(n)
            return self.fh.readline(n)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(sweepstore, "open", lambda *a, **kw: Spy(real_open(*a, **kw)), raising=False)
    assert read_store(p) == ({"a": {"key": "a"}, "b": {"key": "b"}}, 1, 0)
    assert set(sizes) == {MAX_LINE + 1} and len(sizes) == 1 + 3 + 1 + 1  # a, the long line in 3 pieces, b, EOF


def test_two_over_long_lines_count_twice(tmp_path):
    p = tmp_path / "r.jsonl"
    long = b"x" * (MAX_LINE + 5) + b"\n"
    p.write_bytes(long + b'{"key": "a"}\n' + long)
    assert read_store(p) == ({"a": {"key": "a"}}, 2, 0)


def test_a_lock_file_holding_bytes_that_are_not_ascii_gives_no_process(tmp_path):
    p = tmp_path / "r.jsonl"
    with ResultStore(p):
        (tmp_path / "r.jsonl.lock").write_bytes(b"\xff\xfe12")
        with pytest.raises(StoreError) as ei:
            ResultStore(p).open()
    assert str(ei.value) == f"{p}: another sweep is writing this results file; wait for it or use another --results"
