"""The ways out of a damaged store never lose the user's data: which backup is restored, where the damaged
file and the old recording files are kept, which rows of the damaged file (or of the newest backup) are
copied into a rebuilt store, how recording files without a row are adopted, and the counts reported."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import app.core.store as store_mod
from app.core.recording import StreamRecorder, write_accel
from app.core.store import (
    Store,
    StoreDamaged,
    StoreError,
    list_backups,
    rebuild_store,
    restore_backup,
    start_new_store,
)
from app.core.streams import SampleStream

STAMP = "20260102-030405"


@pytest.fixture()
def stamp(monkeypatch):
    """Every time stamp of the repair functions (the current time) reads ``STAMP``; backups keep their real
    names, which order them."""
    real = store_mod.time.strftime
    now = (2026, 1, 2, 3, 4, 5, 4, 2, 0)  # local time 2026-01-02 03:04:05
    monkeypatch.setattr(store_mod.time, "strftime", lambda fmt, *args: real(fmt, *(args or (now,))))
    return STAMP


def _sql(db: Path, *statements: str | tuple[str, tuple]) -> None:
    """Edit a closed database by hand (foreign keys off, as a damaged file may hold anything)."""
    con = sqlite3.connect(db)
    con.execute("PRAGMA foreign_keys=OFF")
    for s in statements:
        sql, args = (s, ()) if isinstance(s, str) else s
        con.execute(sql, args)
    con.commit()
    con.close()


def _query(db: Path, sql: str, args: tuple = ()) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return [tuple(r) for r in con.execute(sql, args)]
    finally:
        con.close()


def _drop_backups(data_dir: Path) -> None:
    for b in list_backups(data_dir):
        b.unlink()


def _garble(db: Path) -> None:
    with open(db, "r+b") as fh:
        fh.write(b"\xff" * 100)


def _power(st: Store, n: int = 2500, rate: float = 1000.0, voltage: float = 3.3):
    s = SampleStream("current", rate, 1)
    rec = StreamRecorder(st, s, "power", "pw", voltage=voltage)
    s.append(np.full(n, 1e-3, np.float32))
    return rec.stop()


# --- list_backups -------------------------------------------------------------------------------------
def test_list_backups_is_empty_without_a_backup_folder(tmp_path):
    assert list_backups(tmp_path) == []


def test_list_backups_lists_only_backups_newest_first(tmp_path):
    folder = tmp_path / "backups"
    folder.mkdir()
    names = [
        "odlstudio-20250101-000000-000000001.sqlite",
        "odlstudio-20260101-000000-000000001.sqlite",
        "odlstudio-20251231-235959-999999999.sqlite",
        ".odlstudio-20270101-000000-000000001.sqlite.tmp",  # a backup being written
        "odlstudio.sqlite",
        "notes.txt",
    ]
    for n in names:
        (folder / n).write_bytes(b"x")
    assert [p.name for p in list_backups(tmp_path)] == [
        "odlstudio-20260101-000000-000000001.sqlite",
        "odlstudio-20251231-235959-999999999.sqlite",
        "odlstudio-20250101-000000-000000001.sqlite",
    ]


# --- start_new_store (_set_aside, _quarantine_files) ---------------------------------------------------
def test_start_new_store_keeps_the_database_and_its_wal_and_shm_aside(tmp_path, stamp):
    (tmp_path / "odlstudio.sqlite").write_bytes(b"damaged db")
    (tmp_path / "odlstudio.sqlite-wal").write_bytes(b"its wal")
    (tmp_path / "odlstudio.sqlite-shm").write_bytes(b"its shm")
    kept = start_new_store(tmp_path)
    assert kept == tmp_path / "odlstudio.sqlite.damaged-20260102-030405"
    assert kept.read_bytes() == b"damaged db"
    assert (tmp_path / "odlstudio.sqlite.damaged-20260102-030405-wal").read_bytes() == b"its wal"
    assert (tmp_path / "odlstudio.sqlite.damaged-20260102-030405-shm").read_bytes() == b"its shm"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "odlstudio.sqlite.damaged-20260102-030405",
        "odlstudio.sqlite.damaged-20260102-030405-shm",
        "odlstudio.sqlite.damaged-20260102-030405-wal",
    ]


def test_start_new_store_without_wal_moves_only_the_database(tmp_path, stamp):
    (tmp_path / "odlstudio.sqlite").write_bytes(b"damaged db")
    kept = start_new_store(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["odlstudio.sqlite.damaged-20260102-030405"]
    assert kept.read_bytes() == b"damaged db"


def test_start_new_store_numbers_repeated_repairs_in_the_same_second(tmp_path, stamp):
    (tmp_path / "odlstudio.sqlite.damaged-20260102-030405").write_bytes(b"first")
    (tmp_path / "odlstudio.sqlite").write_bytes(b"second")
    assert start_new_store(tmp_path) == tmp_path / "odlstudio.sqlite.damaged-20260102-030405-1"
    (tmp_path / "odlstudio.sqlite").write_bytes(b"third")
    assert start_new_store(tmp_path) == tmp_path / "odlstudio.sqlite.damaged-20260102-030405-2"
    assert [(tmp_path / f"odlstudio.sqlite.damaged-20260102-030405{s}").read_bytes() for s in ("", "-1", "-2")] == [
        b"first",
        b"second",
        b"third",
    ]


def test_start_new_store_without_a_database_returns_none(tmp_path):
    assert start_new_store(tmp_path) is None
    assert list(tmp_path.iterdir()) == []


def test_start_new_store_says_when_the_damaged_file_cannot_be_moved(tmp_path, stamp):
    (tmp_path / "odlstudio.sqlite").write_bytes(b"damaged db")
    (tmp_path / "odlstudio.sqlite-wal").write_bytes(b"its wal")
    blocker = tmp_path / "odlstudio.sqlite.damaged-20260102-030405-wal"  # a folder where the wal must go
    blocker.mkdir()
    (blocker / "x").write_bytes(b"x")
    with pytest.raises(StoreError) as err:
        start_new_store(tmp_path)
    assert str(err.value).startswith(f"cannot move the damaged database {tmp_path / 'odlstudio.sqlite'} aside: ")
    assert (tmp_path / "odlstudio.sqlite-wal").read_bytes() == b"its wal"  # nothing lost


def test_start_new_store_moves_the_recording_files_to_an_old_folder(tmp_path, stamp):
    st = Store(tmp_path)
    acc = write_accel(st, "walk", np.arange(30, dtype=np.float32).reshape(10, 3), 50.0, None)
    st.close()
    data = (tmp_path / "recordings" / "accel" / f"{acc.id}.f32").read_bytes()
    kept = start_new_store(tmp_path)
    assert kept == tmp_path / "odlstudio.sqlite.damaged-20260102-030405"
    assert not (tmp_path / "recordings").exists()
    assert (tmp_path / "recordings.old-20260102-030405" / "accel" / f"{acc.id}.f32").read_bytes() == data
    st = Store(tmp_path)  # a new empty store, not taken for a damaged one
    assert st.recordings() == []
    st.close()


def test_start_new_store_leaves_a_recordings_folder_without_recording_files(tmp_path, stamp):
    (tmp_path / "recordings" / "accel").mkdir(parents=True)
    (tmp_path / "recordings" / "accel" / "readme.txt").write_text("notes")
    (tmp_path / "odlstudio.sqlite").write_bytes(b"damaged db")
    start_new_store(tmp_path)
    assert (tmp_path / "recordings" / "accel" / "readme.txt").read_text() == "notes"
    assert not (tmp_path / "recordings.old-20260102-030405").exists()


# --- restore_backup -----------------------------------------------------------------------------------
def _two_backups(tmp_path):
    """Two sessions, each ending with a backup: setting 'k' is 1 in the older, 2 in the newer."""
    for k in (1, 2):
        st = Store(tmp_path)
        st.set_setting("k", k)
        st.close()
    newer, older = list_backups(tmp_path)
    return newer, older


def test_restore_backup_uses_the_backup_asked_for(tmp_path, stamp):
    newer, older = _two_backups(tmp_path)
    _garble(tmp_path / "odlstudio.sqlite")
    assert restore_backup(tmp_path, older) == {"backup": older, "recordings": 0, "unreadable": []}
    st = Store(tmp_path)
    assert st.get_setting("k") == 1
    st.close()
    assert (tmp_path / "odlstudio.sqlite.damaged-20260102-030405").read_bytes()[:100] == b"\xff" * 100


def test_restore_backup_skips_a_damaged_newest_backup(tmp_path, stamp):
    newer, older = _two_backups(tmp_path)
    _garble(newer)
    _garble(tmp_path / "odlstudio.sqlite")
    assert restore_backup(tmp_path)["backup"] == older
    st = Store(tmp_path)
    assert st.get_setting("k") == 1
    st.close()


def test_restore_backup_of_a_missing_file_is_refused(tmp_path):
    _two_backups(tmp_path)
    _garble(tmp_path / "odlstudio.sqlite")
    with pytest.raises(StoreError) as err:
        restore_backup(tmp_path, tmp_path / "nowhere.sqlite")
    assert str(err.value) == f"no usable backup of the database in {tmp_path / 'backups'}"
    assert (tmp_path / "odlstudio.sqlite").read_bytes()[:100] == b"\xff" * 100  # untouched


def test_restore_backup_names_the_backup_folder_when_there_is_none(tmp_path):
    (tmp_path / "odlstudio.sqlite").write_bytes(b"damaged db")
    with pytest.raises(StoreError) as err:
        restore_backup(tmp_path)
    assert str(err.value) == f"no usable backup of the database in {tmp_path / 'backups'}"


def test_restore_backup_adds_later_recordings_with_their_rows_from_the_damaged_file(tmp_path, monkeypatch):
    """A recording made after the backup keeps its name, rate, start and offset (read from the damaged file,
    still readable here) and is marked recovered."""
    st = Store(tmp_path)
    st.close()
    backup = list_backups(tmp_path)[0]
    st = Store(tmp_path)
    late = write_accel(st, "late walk", np.ones((40, 3), np.float32), 25.0, None)
    st._db.close()  # noqa: SLF001 - the session dies without its end-of-session backup
    _sql(
        tmp_path / "odlstudio.sqlite",
        ("UPDATE recordings SET started=1700000000.5, t_offset=12.25 WHERE id=?", (late.id,)),
    )
    assert restore_backup(tmp_path, backup) == {"backup": backup, "recordings": 1, "unreadable": []}
    st = Store(tmp_path)
    got = st.recording(late.id)
    assert (got.name, got.rate_hz, got.n_samples, got.channels, got.status) == ("late walk", 25.0, 40, 3, "recovered")
    assert (got.started, got.t_offset, got.meta) == (1700000000.5, 12.25, {"rebuilt_from": "file"})
    assert got.path == f"recordings/accel/{late.id}.f32"
    st.close()


# --- rebuild_store: rows copied from the damaged file ---------------------------------------------------
def _store_with_rows(tmp_path):
    """User 'ann' (datasets 'default' and 'stairs', 'stairs' selected) with an accel recording whose file is
    gone (1 label, 1 marker), a second accel recording (3 labels, one of them deleted; 2 markers), and a marker
    without a recording.  Closed, backups removed."""
    st = Store(tmp_path)
    ann = st.ensure_user("ann")
    stairs = st.create_dataset(ann.id, "stairs", ("Walking", "Upstairs"))
    st.select_dataset(ann.id, stairs.id)
    gone = write_accel(st, "gone", np.zeros((10, 3), np.float32), 50.0, stairs.id)
    acc = write_accel(st, "walk", np.zeros((20, 3), np.float32), 50.0, stairs.id, status="complete")
    l1 = st.add_label(acc.id, 0.0, 0.1, "Walking")
    l2 = st.add_label(acc.id, 0.2, 0.3, "Upstairs")
    st.delete_label(st.add_label(acc.id, 0.3, 0.35, "Walking"))
    st.add_label(gone.id, 0.0, 0.1, "Walking")
    m1 = st.add_marker("start", 0.05, acc.id).id
    m2 = st.add_marker("stop", 0.15, acc.id).id
    st.add_marker("gone mark", 0.1, gone.id)
    st.add_marker("session mark", 1.0)
    st.close()
    (tmp_path / "recordings" / "accel" / f"{gone.id}.f32").unlink()
    _drop_backups(tmp_path)
    return ann, stairs, acc, gone, (l1, l2), (m1, m2)


def test_rebuild_reports_labels_kept_and_where_the_damaged_file_went(tmp_path, stamp):
    _store_with_rows(tmp_path)
    got = rebuild_store(tmp_path)
    assert got == {
        "recordings": 0,
        "labels": 2,
        "damaged": str(tmp_path / "odlstudio.sqlite.damaged-20260102-030405"),
        "unreadable": [],
    }


def test_rebuild_keeps_users_their_datasets_and_the_selected_dataset(tmp_path):
    ann, stairs, *_ = _store_with_rows(tmp_path)
    rebuild_store(tmp_path)
    st = Store(tmp_path)
    assert st.users() == [store_mod.User(ann.id, "ann", stairs.id)]
    assert [(d.name, d.classes) for d in st.datasets(ann.id)] == [
        ("default", store_mod.DEFAULT_CLASSES),
        ("stairs", ("Walking", "Upstairs")),
    ]
    st.close()


def test_rebuild_keeps_recordings_whose_file_exists_and_their_labels_and_markers(tmp_path):
    ann, stairs, acc, gone, (l1, l2), (m1, m2) = _store_with_rows(tmp_path)
    rebuild_store(tmp_path)
    st = Store(tmp_path)
    assert [r.id for r in st.recordings()] == [acc.id]
    rec = st.recording(acc.id)
    assert (rec.name, rec.dataset_id, rec.rate_hz, rec.n_samples, rec.status) == (
        "walk",
        stairs.id,
        50.0,
        20,
        "complete",
    )
    assert [(l.id, l.start_s, l.end_s, l.label) for l in st.labels(acc.id)] == [
        (l1, 0.0, 0.1, "Walking"),
        (l2, 0.2, 0.3, "Upstairs"),
    ]
    assert [(m.id, m.name, m.t_s) for m in st.markers(acc.id)] == [(m1, "start", 0.05), (m2, "stop", 0.15)]
    st.close()
    db = tmp_path / "odlstudio.sqlite"
    assert _query(db, "SELECT count(*) FROM labels") == [(2,)]  # not the deleted one, not the lost file's
    assert _query(db, "SELECT id, name, session_id FROM markers ORDER BY id") == [
        (m1, "start", None),
        (m2, "stop", None),
    ]
    assert _query(db, "SELECT session_id FROM recordings") == [(None,)]


def test_rebuild_marks_a_recording_cut_off_by_the_crash_as_recovered(tmp_path):
    st = Store(tmp_path)
    rec = st.add_recording("accel", "cut", "recordings/accel/cut.f32", 26.0, 3, status="recording")
    st.close()
    (tmp_path / "recordings" / "accel").mkdir(parents=True)
    (tmp_path / "recordings" / "accel" / "cut.f32").write_bytes(b"\0" * 120)
    _drop_backups(tmp_path)
    rebuild_store(tmp_path)
    st = Store(tmp_path)
    got = st.recording(rec.id)
    assert (got.name, got.status, got.rate_hz) == ("cut", "recovered", 26.0)
    st.close()


def test_rebuild_keeps_a_recording_given_by_an_absolute_path(tmp_path):
    outside = tmp_path / "elsewhere.f32"
    outside.write_bytes(b"\0" * 24)
    data = tmp_path / "data"
    st = Store(data)
    rec = st.add_recording("accel", "abs", str(outside), 26.0, 3, status="imported", n_samples=2)
    st.close()
    _drop_backups(data)
    rebuild_store(data)
    st = Store(data)
    assert [(r.id, r.path, r.status) for r in st.recordings()] == [(rec.id, str(outside), "imported")]
    st.close()


def test_rebuild_drops_datasets_of_missing_users_and_unlinks_their_recordings(tmp_path):
    st = Store(tmp_path)
    ann = st.ensure_user("ann")
    rec = write_accel(st, "walk", np.zeros((4, 3), np.float32), 50.0, ann.dataset_id)
    st.close()
    _drop_backups(tmp_path)
    _sql(tmp_path / "odlstudio.sqlite", ("DELETE FROM users WHERE id=?", (ann.id,)))
    rebuild_store(tmp_path)
    st = Store(tmp_path)
    assert st.users() == []
    assert _query(tmp_path / "odlstudio.sqlite", "SELECT count(*) FROM datasets") == [(0,)]
    assert st.recording(rec.id).dataset_id is None  # kept, without its (lost) dataset
    st.close()


def test_rebuild_takes_a_table_the_damaged_file_lost_from_the_newest_backup(tmp_path):
    st = Store(tmp_path)
    acc = write_accel(st, "walk", np.zeros((20, 3), np.float32), 50.0, None)
    lab = st.add_label(acc.id, 1.0, 2.0, "Walking")
    st.close()  # the backup holds the label
    for b in list_backups(tmp_path)[1:]:
        b.unlink()
    _sql(tmp_path / "odlstudio.sqlite", "DROP TABLE labels")
    got = rebuild_store(tmp_path)
    assert got["labels"] == 1
    st = Store(tmp_path)
    assert [(l.id, l.start_s, l.end_s, l.label) for l in st.labels(acc.id)] == [(lab, 1.0, 2.0, "Walking")]
    st.close()


def test_rebuild_prefers_the_damaged_file_to_the_backup(tmp_path):
    """Rows written after the last backup are only in the damaged file: they are kept."""
    st = Store(tmp_path)
    acc = write_accel(st, "walk", np.zeros((20, 3), np.float32), 50.0, None)
    st.add_label(acc.id, 1.0, 2.0, "Walking")
    st.close()
    st = Store(tmp_path)
    st.update_label(st.labels(acc.id)[0].id, 1.0, 3.0, "Jogging")
    st._db.close()  # noqa: SLF001 - no backup of this session
    got = rebuild_store(tmp_path)
    assert got["labels"] == 1
    st = Store(tmp_path)
    assert [(l.start_s, l.end_s, l.label) for l in st.labels(acc.id)] == [(1.0, 3.0, "Jogging")]
    st.close()


def test_rebuild_of_an_unreadable_file_uses_the_newest_backup_only(tmp_path):
    st = Store(tmp_path)
    acc = write_accel(st, "walk", np.zeros((20, 3), np.float32), 50.0, None)
    lab = st.add_label(acc.id, 1.0, 2.0, "Walking")
    st.close()  # older backup: the label reads 'Walking'
    st = Store(tmp_path)
    st.update_label(lab, 1.0, 2.0, "Jogging")
    st.close()  # newest backup: 'Jogging'
    _garble(tmp_path / "odlstudio.sqlite")
    got = rebuild_store(tmp_path)
    assert (got["recordings"], got["labels"]) == (0, 1)
    st = Store(tmp_path)
    assert [l.label for l in st.labels(acc.id)] == ["Jogging"]
    assert st.recording(acc.id).name == "walk"
    st.close()


def test_rebuild_without_a_database_adopts_the_files_and_reports_no_damaged_file(tmp_path):
    (tmp_path / "recordings" / "accel").mkdir(parents=True)
    (tmp_path / "recordings" / "accel" / "4.f32").write_bytes(b"\0" * 120)
    (tmp_path / "recordings" / "accel" / "5.f32").write_bytes(b"\0" * 120)
    assert rebuild_store(tmp_path) == {"recordings": 2, "labels": 0, "damaged": "", "unreadable": []}


# --- rebuild_store: recording files without a row ---------------------------------------------------------
def test_rebuild_adopts_an_accel_file_without_a_row_at_the_default_rate(tmp_path):
    accel = tmp_path / "recordings" / "accel"
    accel.mkdir(parents=True)
    f = accel / "7.f32"
    f.write_bytes(b"\0" * 12 * 30 + b"\0" * 5)  # 30 samples and a torn last one
    os.utime(f, (1700000000.0, 1700000000.0))
    (accel / "notes.f32").write_bytes(b"\0" * 12)  # not a recording id: left alone
    got = rebuild_store(tmp_path)
    assert got["recordings"] == 1
    st = Store(tmp_path)
    assert [r.id for r in st.recordings()] == [7]
    r = st.recording(7)
    assert (r.kind, r.name, r.path, r.rate_hz, r.channels, r.n_samples) == (
        "accel",
        "recovered accel 7",
        "recordings/accel/7.f32",
        52.0,
        3,
        30,
    )
    assert (r.t_offset, r.started, r.status, r.dataset_id) == (0.0, 1700000000.0, "recovered", None)
    assert r.meta == {
        "rebuilt_from": "file",
        "note": "rate unknown (database damaged): assumed 52 Hz, the app's default",
    }
    rebuild_session = _query(tmp_path / "odlstudio.sqlite", "SELECT session_id FROM recordings")[0][0]
    st.close()
    assert rebuild_session == 1  # the rebuild's own session


def test_rebuild_adopts_a_file_whose_id_is_taken_under_a_new_id(tmp_path):
    st = Store(tmp_path)
    st.add_recording("accel", "other", "recordings/accel/other.f32", 20.0, 3, status="complete")  # id 1
    st.close()
    _drop_backups(tmp_path)
    accel = tmp_path / "recordings" / "accel"
    accel.mkdir(parents=True)
    (accel / "other.f32").write_bytes(b"\0" * 12)
    (accel / "1.f32").write_bytes(b"\0" * 24)
    assert rebuild_store(tmp_path)["recordings"] == 1
    st = Store(tmp_path)
    assert [(r.id, r.name, r.path, r.rate_hz, r.n_samples) for r in st.recordings()] == [
        (1, "other", "recordings/accel/other.f32", 20.0, 0),
        (2, "other", "recordings/accel/1.f32", 20.0, 2),  # named from the old row with its id
    ]
    st.close()


def test_rebuild_does_not_take_an_accel_rate_from_a_power_row(tmp_path):
    """A file ``3.f32`` whose old row 3 is a power recording: the default accel rate, the old name."""
    st = Store(tmp_path)
    for _ in range(3):
        rec = st.add_recording("power", "amps", "recordings/power/missing.h5", 1000.0, 1, t_offset=4.5)
    st.close()
    _drop_backups(tmp_path)
    assert rec.id == 3
    accel = tmp_path / "recordings" / "accel"
    accel.mkdir(parents=True)
    (accel / "3.f32").write_bytes(b"\0" * 36)
    rebuild_store(tmp_path)
    st = Store(tmp_path)
    r = st.recording(3)
    assert (r.kind, r.name, r.rate_hz, r.n_samples, r.t_offset) == ("accel", "amps", 52.0, 3, 4.5)
    assert r.meta == {"rebuilt_from": "file"}
    st.close()


def test_rebuild_adopts_power_files_with_their_rate_and_voltage_and_skips_a_broken_one(tmp_path):
    st = Store(tmp_path)
    pw = _power(st, n=1200, rate=2000.0, voltage=1.8)
    st.close()
    _drop_backups(tmp_path)
    (tmp_path / "odlstudio.sqlite").unlink()
    (tmp_path / "recordings" / "power" / "0.h5").write_bytes(b"not hdf5")  # listed before the good one
    got = rebuild_store(tmp_path)
    assert got == {"recordings": 1, "labels": 0, "damaged": "", "unreadable": ["0.h5"]}  # named, not silent
    st = Store(tmp_path)
    assert [r.id for r in st.recordings()] == [pw.id]
    r = st.recording(pw.id)
    assert (r.kind, r.name, r.rate_hz, r.channels, r.n_samples, r.status) == (
        "power",
        f"recovered power {pw.id}",
        2000.0,
        1,
        1200,
        "recovered",
    )
    assert r.meta == {"rebuilt_from": "file", "voltage": 1.8, "unit": "A"}
    st.close()


# --- start-up integrity check ------------------------------------------------------------------------------
def test_damaged_file_is_refused_with_the_reason(tmp_path):
    st = Store(tmp_path)
    st.set_setting("k", 1)
    st.close()
    _garble(tmp_path / "odlstudio.sqlite")
    with pytest.raises(StoreDamaged) as err:
        Store(tmp_path)
    assert err.value.path == tmp_path / "odlstudio.sqlite"
    assert str(err.value) == f"the database {tmp_path / 'odlstudio.sqlite'} is damaged: file is not a database"


def test_rebuild_copies_every_field_of_a_recording_row(tmp_path):
    st = Store(tmp_path)
    rec = write_accel(st, "walk", np.zeros((6, 3), np.float32), 50.0, None, status="complete")
    st.close()
    _drop_backups(tmp_path)
    _sql(
        tmp_path / "odlstudio.sqlite",
        (
            "UPDATE recordings SET started=1700000000.25, ended=1700000060.75, t_offset=3.5, meta=? WHERE id=?",
            ('{"device": "board 1"}', rec.id),
        ),
    )
    rebuild_store(tmp_path)
    assert _query(
        tmp_path / "odlstudio.sqlite",
        "SELECT id, dataset_id, session_id, kind, name, path, rate_hz, channels, n_samples, t_offset, started, "
        "ended, status, meta FROM recordings",
    ) == [
        (
            rec.id,
            None,
            None,
            "accel",
            "walk",
            f"recordings/accel/{rec.id}.f32",
            50.0,
            3,
            6,
            3.5,
            1700000000.25,
            1700000060.75,
            "complete",
            '{"device": "board 1"}',
        )
    ]


def test_rebuild_copies_users_datasets_labels_and_markers_field_by_field(tmp_path):
    ann, stairs, acc, gone, (l1, l2), (m1, m2) = _store_with_rows(tmp_path)
    db = tmp_path / "odlstudio.sqlite"
    _sql(
        db,
        "UPDATE users SET created=1600000000.5",
        "UPDATE datasets SET created=1600000001.5",
        "UPDATE labels SET updated=1600000002.5",
        "UPDATE markers SET created=1600000003.5",
    )
    rebuild_store(tmp_path)
    assert _query(db, "SELECT id, name, created, dataset_id FROM users") == [(ann.id, "ann", 1600000000.5, stairs.id)]
    assert _query(db, "SELECT id, user_id, name, classes, created FROM datasets ORDER BY id") == [
        (ann.dataset_id, ann.id, "default", json.dumps(list(store_mod.DEFAULT_CLASSES)), 1600000001.5),
        (stairs.id, ann.id, "stairs", '["Walking", "Upstairs"]', 1600000001.5),
    ]
    assert _query(db, "SELECT id, recording_id, start_s, end_s, label, deleted, updated FROM labels ORDER BY id") == [
        (l1, acc.id, 0.0, 0.1, "Walking", 0, 1600000002.5),
        (l2, acc.id, 0.2, 0.3, "Upstairs", 0, 1600000002.5),
    ]
    assert _query(db, "SELECT id, session_id, recording_id, name, t_s, created FROM markers ORDER BY id") == [
        (m1, None, acc.id, "start", 0.05, 1600000003.5),
        (m2, None, acc.id, "stop", 0.15, 1600000003.5),
    ]


def test_rebuild_does_not_bring_back_a_marker_deleted_before_the_newest_backup(tmp_path):
    st = Store(tmp_path)
    acc = write_accel(st, "walk", np.zeros((20, 3), np.float32), 50.0, None)
    mark = st.add_marker("start", 0.5, acc.id)
    st.close()  # older backup: the marker
    st = Store(tmp_path)
    st.delete_marker(mark.id)
    st.close()  # newest backup: no marker
    _garble(tmp_path / "odlstudio.sqlite")
    rebuild_store(tmp_path)
    st = Store(tmp_path)
    assert st.markers(acc.id) == []
    assert [r.name for r in st.recordings()] == ["walk"]
    st.close()


def test_missing_database_beside_recording_files_is_refused_with_their_number(tmp_path):
    accel = tmp_path / "recordings" / "accel"
    power = tmp_path / "recordings" / "power"
    accel.mkdir(parents=True)
    power.mkdir(parents=True)
    (accel / "1.f32").write_bytes(b"\0" * 12)
    (accel / "notes.txt").write_bytes(b"\0" * 12)
    (power / "2.h5").write_bytes(b"\0" * 12)
    (power / "3.csv").write_bytes(b"\0" * 12)
    with pytest.raises(StoreDamaged) as err:
        Store(tmp_path)
    assert err.value.reason == f"the database is missing but 2 recording files are in {tmp_path / 'recordings'}"


def test_a_file_that_fails_its_integrity_check_is_refused_with_sqlites_finding(tmp_path):
    """A file SQLite still opens but whose structure is wrong (its header counts 12345 free pages, it has
    none): refused at start-up with SQLite's own words."""
    st = Store(tmp_path)
    st.set_setting("k", 1)
    st.close()
    db = tmp_path / "odlstudio.sqlite"
    with open(db, "r+b") as fh:
        fh.seek(36)  # the free-page count of the header
        fh.write((12345).to_bytes(4, "big"))
    with pytest.raises(StoreDamaged) as err:
        Store(tmp_path)
    assert err.value.reason == "*** in database main ***\nMain freelist: size is 0 but should be 12345"


def test_integrity_findings_name_the_first_three(tmp_path):
    """Four rows break a NOT NULL rule (the schema was edited behind SQLite's back): the reason quotes the
    first three findings."""
    Store(tmp_path).close()
    db = tmp_path / "odlstudio.sqlite"
    _sql(
        db,
        "PRAGMA writable_schema=ON",
        "UPDATE sqlite_master SET sql=replace(sql, 'value TEXT NOT NULL', 'value TEXT') WHERE name='settings'",
    )
    _sql(db, *[("INSERT INTO settings VALUES (?, NULL)", (k,)) for k in "abcd"])
    _sql(
        db,
        "PRAGMA writable_schema=ON",
        "UPDATE sqlite_master SET sql=replace(sql, 'value TEXT', 'value TEXT NOT NULL') WHERE name='settings'",
    )
    with pytest.raises(StoreDamaged) as err:
        Store(tmp_path)
    assert err.value.reason == (
        "NULL value in settings.value; NULL value in settings.value; NULL value in settings.value"
    )


def test_rebuild_without_a_database_reads_no_other_file(tmp_path, monkeypatch):
    """No damaged file: nothing is salvaged, not even a database that happens to be called 'None' in the
    working folder."""
    elsewhere = tmp_path / "cwd"
    st = Store(elsewhere)
    st.ensure_user("stranger")
    st.close()
    os.replace(elsewhere / "odlstudio.sqlite", elsewhere / "None")
    monkeypatch.chdir(elsewhere)
    data = tmp_path / "data"
    assert rebuild_store(data) == {"recordings": 0, "labels": 0, "damaged": "", "unreadable": []}
    st = Store(data)
    assert st.users() == []
    st.close()
