"""Issue 13 item 5: a damaged, empty, read-only, locked or full store never kills the app with a sqlite
traceback.  Start-up checks integrity (StoreDamaged / StoreError in plain words), every session ends with a
rotating backup (SQLite online backup API), and the three ways out work: restore the last good backup,
rebuild from what is still readable plus the recording files, start a new store — the damaged file kept."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from app.core.recording import StreamRecorder, write_accel
from app.core.store import (
    BACKUPS_KEPT,
    Store,
    StoreDamaged,
    StoreError,
    list_backups,
    rebuild_store,
    restore_backup,
    start_new_store,
)
from app.core.streams import SampleStream
from tests.diskkit import ROOT, fill_disk, small_tmpfs


def _populate(data_dir, n_labels=300):
    """A store with one accel recording (with labels), one power recording, and a backup (closed)."""
    st = Store(data_dir)
    user = st.ensure_user("ann")
    acc = write_accel(st, "walk", np.arange(300, dtype=np.float32).reshape(100, 3), 50.0, user.dataset_id)
    for i in range(n_labels):
        st.add_label(acc.id, i * 0.2, i * 0.2 + 0.1, "Walking")
    s = SampleStream("current", 1000.0, 1)
    rec = StreamRecorder(st, s, "power", "pw", voltage=3.3)
    s.append(np.full(2500, 1e-3, np.float32))
    pw = rec.stop()
    st.close()
    return acc, pw


def _damage(db, how):
    size = db.stat().st_size
    if how == "truncated":
        os.truncate(db, size // 2)
    elif how == "garbage_mid":
        with open(db, "r+b") as fh:
            fh.seek(size // 2)
            fh.write(np.random.default_rng(0).bytes(8192))
    elif how == "garbage_header":
        with open(db, "r+b") as fh:
            fh.write(np.random.default_rng(1).bytes(100))
    elif how == "zero_length":
        os.truncate(db, 0)


@pytest.mark.parametrize("how", ["truncated", "garbage_mid", "garbage_header", "zero_length"])
def test_damage_is_detected_at_start_up(tmp_path, how):
    _populate(tmp_path)
    _damage(tmp_path / Store.FILENAME, how)
    with pytest.raises(StoreDamaged) as err:
        Store(tmp_path)
    assert str(tmp_path / Store.FILENAME) in str(err.value)
    if how == "zero_length":  # was: started silently empty while its recordings sat in the folder
        assert "recording files" in str(err.value)


def test_backups_taken_across_a_second_boundary_keep_their_order(tmp_path, monkeypatch):
    """A backup's name is its time; taken at x.999999999 s and then at (x+1).000000001 s, the second must sort
    newest (the name once took its seconds and its nanoseconds from two clock readings: a CI run's rotation
    then kept the older backup as the newest)."""
    import app.core.store as store_mod

    base = 1_765_000_000 * 1_000_000_000
    readings = iter([base + 999_999_999, base + 1_000_000_001])
    st = Store(tmp_path)
    try:
        monkeypatch.setattr(store_mod.time, "time_ns", lambda: next(readings))
        first = st.backup()
        second = st.backup()
    finally:
        monkeypatch.undo()
        st.close()
    names = list_backups(tmp_path)  # newest first (closing the store took one more, at the real time)
    assert names.index(second) < names.index(first)


def test_each_session_leaves_a_checked_rotating_backup(tmp_path):
    for k in range(BACKUPS_KEPT + 2):
        st = Store(tmp_path)
        st.set_setting("k", k)
        st.close()
    backups = list_backups(tmp_path)
    assert len(backups) == BACKUPS_KEPT
    con = sqlite3.connect(backups[0])  # the newest holds the last session's write
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT value FROM settings WHERE key='k'").fetchone()[0] == str(BACKUPS_KEPT + 1)
    con.close()


@pytest.mark.parametrize("how", ["truncated", "garbage_mid", "garbage_header", "zero_length"])
def test_restore_last_good_backup(tmp_path, how):
    acc, pw = _populate(tmp_path)
    _damage(tmp_path / Store.FILENAME, how)
    newest = list_backups(tmp_path)[0]
    used = restore_backup(tmp_path)
    assert used == {"backup": newest, "recordings": 0, "unreadable": []}
    assert list(tmp_path.glob(f"{Store.FILENAME}.damaged-*"))  # kept aside
    st = Store(tmp_path)
    assert len(st.labels(acc.id)) == 300
    assert {r.id for r in st.recordings()} == {acc.id, pw.id}
    st.close()


def test_restore_adds_recordings_made_after_the_backup(tmp_path):
    acc, _pw = _populate(tmp_path)
    backups = list_backups(tmp_path)
    st = Store(tmp_path)
    late = write_accel(st, "late", np.ones((50, 3), np.float32), 50.0, None)
    st._db.close()  # noqa: SLF001 - the session dies without its end-of-session backup
    _damage(tmp_path / Store.FILENAME, "garbage_header")
    restore_backup(tmp_path, backups[0])
    st = Store(tmp_path)
    ids = {r.id for r in st.recordings()}
    assert late.id in ids and acc.id in ids
    assert st.recording(late.id).n_samples == 50 and st.recording(late.id).status == "recovered"
    st.close()


def test_restore_without_a_backup_says_so(tmp_path):
    Store(tmp_path)._db.close()  # noqa: SLF001 - no backup made
    _damage(tmp_path / Store.FILENAME, "garbage_header")
    with pytest.raises(StoreError, match="no usable backup"):
        restore_backup(tmp_path)


@pytest.mark.parametrize("how", ["truncated", "garbage_header", "zero_length"])
def test_rebuild_from_recording_files(tmp_path, how):
    acc, pw = _populate(tmp_path)
    for b in list_backups(tmp_path):  # no backup either: only the files (and what sqlite can still read)
        b.unlink()
    _damage(tmp_path / Store.FILENAME, how)
    got = rebuild_store(tmp_path)
    assert got["damaged"] and os.path.exists(got["damaged"])
    st = Store(tmp_path)
    recs = {r.id: r for r in st.recordings()}
    assert set(recs) == {acc.id, pw.id}
    assert recs[acc.id].n_samples == 100 and recs[acc.id].kind == "accel"
    assert recs[pw.id].n_samples == 2500 and recs[pw.id].rate_hz == 1000.0  # from the file's attributes
    st.close()


def test_rebuild_keeps_what_the_damaged_file_still_holds(tmp_path):
    acc, _pw = _populate(tmp_path)
    for b in list_backups(tmp_path):
        b.unlink()
    db = tmp_path / Store.FILENAME
    size = db.stat().st_size
    with open(db, "r+b") as fh:  # damage the last page only: the rest is still readable
        fh.seek(size - 512)
        fh.write(b"\xff" * 512)
    got = rebuild_store(tmp_path)
    st = Store(tmp_path)
    assert st.recording(acc.id).rate_hz == 50.0 and st.recording(acc.id).name == "walk"
    assert got["labels"] == len(st.labels(acc.id)) > 0
    st.close()


def test_start_new_store_keeps_everything_aside(tmp_path):
    _populate(tmp_path)
    _damage(tmp_path / Store.FILENAME, "garbage_mid")
    kept = start_new_store(tmp_path)
    assert kept.exists() and list(tmp_path.glob("recordings.old-*/accel/*.f32"))
    st = Store(tmp_path)
    assert st.recordings() == []
    st.close()


def test_locked_store_is_a_plain_error(tmp_path):
    Store(tmp_path).close()
    con = sqlite3.connect(tmp_path / Store.FILENAME)
    con.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="locked by another program") as err:
            Store(tmp_path)
        assert not isinstance(err.value, StoreDamaged)
    finally:
        con.rollback()
        con.close()


def test_read_only_folder_is_a_plain_error(tmp_path):
    """The data folder on a read-only file system (as root, which ignores permissions, a tmpfs remounted
    read-only; otherwise a folder without write permission)."""
    code = (
        "import sys\nfrom app.core.store import Store, StoreError\n"
        "try:\n    Store(sys.argv[1])\n    print('OPENED')\n"
        "except StoreError as exc:\n    print('STOREERROR', exc)\n"
    )

    def check(folder):
        r = subprocess.run(
            [sys.executable, "-c", code, str(folder)],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "Traceback" not in r.stderr, r.stderr[-2000:]
        assert "STOREERROR" in r.stdout and "read-only" in r.stdout, r.stdout

    if os.geteuid() != 0:
        Store(tmp_path).close()
        os.chmod(tmp_path, 0o555)
        os.chmod(tmp_path / Store.FILENAME, 0o444)
        try:
            check(tmp_path)
        finally:
            os.chmod(tmp_path, 0o755)
        return
    with small_tmpfs("5m") as disk:
        Store(disk).close()
        r = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True)
        if r.returncode:
            pytest.skip(f"cannot remount read-only: {r.stderr.decode(errors='replace')}")
        check(disk)


def test_store_on_a_full_disk_at_start_up_says_the_disk_is_full():
    """Opening the store on a disk with no byte left: SQLite (WAL mode) says only "disk I/O error"; the
    user is told the disk is full (was: "cannot be read or written (disk I/O error)")."""
    with small_tmpfs("3m") as disk:
        st = Store(disk)
        st.ensure_user("ann")
        st.close()
        fill_disk(disk / "filler")  # take every byte left
        with pytest.raises(StoreError, match="the disk is full") as err:
            Store(disk).close()
        assert str(disk / Store.FILENAME) in str(err.value) and not isinstance(err.value, StoreDamaged)
        (disk / "filler").unlink()
        Store(disk).close()  # room again: it opens


def test_user_without_a_dataset_is_named(tmp_path):
    """A hand-edited or damaged database whose user row lost its dataset: a plain error naming the user,
    not 'no dataset with id None'."""
    from app.core.context import AppContext

    ctx = AppContext.create(tmp_path, bench=False, discover=False)
    try:
        assert ctx.dataset.name == "default"
        con = sqlite3.connect(tmp_path / Store.FILENAME)
        con.execute("UPDATE users SET dataset_id=NULL")
        con.commit()
        con.close()
        with pytest.raises(StoreError, match=f"user {ctx.user.name!r} has no dataset selected"):
            ctx.dataset
    finally:
        ctx.close()


@pytest.mark.parametrize("damage", ["null", "dangling", "dangling_none_left"])
def test_user_whose_dataset_is_gone_gets_one_again_at_start(tmp_path, damage):
    """The next start (ensure_user) repairs the selection: the user's first remaining dataset, with its
    labels and recordings untouched, or a new empty 'default' when none is left -- the app starts."""
    from app.core.context import AppContext

    ctx = AppContext.create(tmp_path, bench=False, discover=False)
    name = ctx.user.name
    first = ctx.dataset.id
    second = ctx.store.create_dataset(ctx.user.id, "walks", ("walk", "run")).id
    ctx.set_dataset(second)
    ctx.close()
    con = sqlite3.connect(tmp_path / Store.FILENAME)
    if damage == "null":
        con.execute("UPDATE users SET dataset_id=NULL")
    else:
        con.execute("PRAGMA foreign_keys=OFF")
        if damage == "dangling_none_left":
            con.execute("DELETE FROM datasets")
        else:
            con.execute("DELETE FROM datasets WHERE id=?", (second,))
    con.commit()
    con.close()
    ctx = AppContext.create(tmp_path, bench=False, discover=False)
    try:
        assert ctx.user.name == name
        ds = ctx.dataset
        if damage == "dangling_none_left":
            assert ds.name == "default" and [d.id for d in ctx.store.datasets(ctx.user.id)] == [ds.id]  # a new one
        else:
            assert ds.id == first
        assert ctx.store.user(ctx.user.id).dataset_id == ds.id
    finally:
        ctx.close()
