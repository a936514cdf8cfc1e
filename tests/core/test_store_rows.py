"""The store's rows: what is written is what is read back (every field), in the documented order, filtered by
kind / dataset / recording / session; transactions commit or roll back as a whole; rounds of a killed session
are recovered; every failure reaches the user as a :class:`StoreError` in plain words (exact messages)."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import app.core.store as store_mod
from app.core.store import (
    DEFAULT_CLASSES,
    SCHEMA_VERSION,
    Dataset,
    LabelRow,
    Marker,
    Store,
    StoreDamaged,
    StoreError,
    User,
    _disk_full,
    _interval,
    _plain,
    _read_only,
)


@pytest.fixture
def st(tmp_path):
    s = Store(tmp_path)
    yield s
    s.close()


def _raw(tmp_path: Path) -> sqlite3.Connection:
    """A second connection to the store's file (what another process would see on disk)."""
    con = sqlite3.connect(tmp_path / Store.FILENAME)
    con.row_factory = sqlite3.Row
    return con


# --- label intervals ---------------------------------------------------------------------------------------
def test_interval_keeps_ordered_bounds_as_floats():
    got = _interval(1, 2.5)
    assert got == (1.0, 2.5) and type(got[0]) is float and type(got[1]) is float


def test_interval_swaps_reversed_bounds():
    assert _interval(3.0, 1.5) == (1.5, 3.0)


def test_interval_refuses_an_empty_label_with_its_bounds():
    with pytest.raises(StoreError) as err:
        _interval(2.0, 2.0)
    assert str(err.value) == "label [2.0, 2.0] s is empty"


@pytest.mark.parametrize(("a", "b"), [(float("nan"), 1.0), (1.0, float("nan"))])
def test_interval_refuses_nan_bounds(a, b):
    with pytest.raises(StoreError) as err:
        _interval(a, b)
    assert str(err.value) == f"label bounds must be numbers, got {float(a)}, {float(b)}"


# --- sqlite errors in plain words -------------------------------------------------------------------------
P = Path("/data/odl/odlstudio.sqlite")


def test_plain_disk_full():
    for text in ("database or disk is full", "Disk Full"):
        e = _plain(sqlite3.OperationalError(text), P)
        assert type(e) is StoreError
        assert str(e) == (
            f"the database {P} cannot be written: the disk is full. Free some space; what was saved before is kept"
        )


@pytest.mark.parametrize("text", ["attempt to write a readonly database", "Read-Only file system"])
def test_plain_read_only(text):
    e = _plain(sqlite3.OperationalError(text), P)
    assert type(e) is StoreError
    assert str(e) == f"the database {P} is read-only (check the permissions of {P.parent}, or use another --data-dir)"


def test_plain_unable_to_open_in_a_read_only_folder_says_read_only(monkeypatch):
    monkeypatch.setattr(store_mod, "_read_only", lambda folder: folder == P.parent)
    e = _plain(sqlite3.OperationalError("unable to open database file"), P)
    assert str(e) == f"the database {P} is read-only (check the permissions of {P.parent}, or use another --data-dir)"


def test_plain_unable_to_open_in_a_writable_folder_names_the_cause(monkeypatch):
    monkeypatch.setattr(store_mod, "_read_only", lambda folder: False)
    e = _plain(sqlite3.OperationalError("Unable to open database file"), P)
    assert type(e) is StoreError
    assert str(e) == (
        f"cannot open the database {P}: Unable to open database file (check the folder exists and is writable)"
    )


@pytest.mark.parametrize("text", ["database is locked", "database is Busy"])
def test_plain_locked(text):
    e = _plain(sqlite3.OperationalError(text), P)
    assert type(e) is StoreError
    assert str(e) == (
        f"the database {P} is locked by another program (is ODL Studio already running with this "
        "data folder?); close it or use another --data-dir"
    )


@pytest.mark.parametrize(
    "text", ["file is not a database", "database disk image is malformed", "Corrupt page", "Not A Database"]
)
def test_plain_damaged(text):
    e = _plain(sqlite3.DatabaseError(text), P)
    assert isinstance(e, StoreDamaged) and e.path == P and e.reason == text
    assert str(e) == f"the database {P} is damaged: {text}"


def test_plain_io_error_on_a_full_disk_says_full(monkeypatch):
    monkeypatch.setattr(store_mod, "_disk_full", lambda folder: folder == P.parent)
    e = _plain(sqlite3.OperationalError("disk I/O error"), P)
    assert type(e) is StoreError
    assert str(e) == (
        f"the database {P} cannot be opened or written: the disk is full. Free some space; what was "
        "saved before is kept"
    )


def test_plain_io_error_with_room_left(monkeypatch):
    monkeypatch.setattr(store_mod, "_disk_full", lambda folder: False)
    for text in ("disk I/O error", "short I/O read"):
        e = _plain(sqlite3.OperationalError(text), P)
        assert str(e) == f"the database {P} cannot be read or written (disk I/O error): {text}"


def test_plain_io_text_in_a_non_operational_error_is_generic(monkeypatch):
    monkeypatch.setattr(store_mod, "_disk_full", lambda folder: True)
    e = _plain(sqlite3.DatabaseError("disk I/O error"), P)
    assert str(e) == f"database error in {P}: disk I/O error"


def test_plain_anything_else():
    e = _plain(sqlite3.OperationalError("no such table: foo"), P)
    assert type(e) is StoreError and str(e) == f"database error in {P}: no such table: foo"


# --- read-only folder and full disk probes ------------------------------------------------------------------
def test_read_only_false_for_a_writable_folder(tmp_path):
    assert _read_only(tmp_path) is False


def test_read_only_when_the_file_system_is_mounted_read_only(tmp_path, monkeypatch):
    monkeypatch.setattr(store_mod.os, "statvfs", lambda p: SimpleNamespace(f_flag=os.ST_RDONLY))
    assert _read_only(tmp_path) is True


def test_read_only_ignores_other_mount_flags(tmp_path, monkeypatch):
    monkeypatch.setattr(store_mod.os, "statvfs", lambda p: SimpleNamespace(f_flag=~os.ST_RDONLY & 0xFFFF))
    assert _read_only(tmp_path) is False


def test_read_only_when_the_folder_is_not_writable(tmp_path, monkeypatch):
    monkeypatch.setattr(store_mod.os, "statvfs", lambda p: SimpleNamespace(f_flag=0))
    seen = []
    monkeypatch.setattr(store_mod.os, "access", lambda p, mode: seen.append((p, mode)) or False)
    assert _read_only(tmp_path) is True
    assert seen == [(tmp_path, os.W_OK)]


def test_read_only_when_statvfs_fails_asks_access(tmp_path, monkeypatch):
    def boom(p):
        raise OSError("no statvfs")

    monkeypatch.setattr(store_mod.os, "statvfs", boom)
    assert _read_only(tmp_path) is False
    monkeypatch.setattr(store_mod.os, "access", lambda p, mode: False)
    assert _read_only(tmp_path) is True


def test_disk_full_below_one_mebibyte(tmp_path, monkeypatch):
    seen = []

    def usage(free):
        return lambda p: seen.append(p) or SimpleNamespace(total=10**9, used=0, free=free)

    monkeypatch.setattr(store_mod.shutil, "disk_usage", usage(1024 * 1024 - 1))
    assert _disk_full(tmp_path) is True
    monkeypatch.setattr(store_mod.shutil, "disk_usage", usage(1024 * 1024))
    assert _disk_full(tmp_path) is False
    assert seen == [tmp_path, tmp_path]


def test_disk_full_unknown_is_not_full(tmp_path, monkeypatch):
    def boom(p):
        raise OSError("gone")

    monkeypatch.setattr(store_mod.shutil, "disk_usage", boom)
    assert _disk_full(tmp_path) is False


# --- opening, migrating, closing ----------------------------------------------------------------------------
def test_store_creates_nested_data_directories(tmp_path):
    s = Store(tmp_path / "a" / "b")
    try:
        assert (tmp_path / "a" / "b" / Store.FILENAME).is_file()
    finally:
        s.close()


def test_data_directory_that_is_a_file_is_a_plain_error(tmp_path):
    where = tmp_path / "data"
    where.write_text("not a folder")
    with pytest.raises(StoreError) as err:
        Store(where)
    assert str(err.value).startswith(f"cannot create the data directory {where}: [Errno 17] File exists")


def test_fresh_store_is_open_with_no_backup_error(st):
    assert st.closed is False and st.backup_error == ""


def _recording_files(tmp_path):
    (tmp_path / "recordings" / "accel").mkdir(parents=True)
    (tmp_path / "recordings" / "accel" / "1.f32").write_bytes(b"\0" * 12)
    (tmp_path / "recordings" / "accel" / "2.f32").write_bytes(b"\0" * 24)


def test_missing_database_beside_recordings_is_damaged_and_says_missing(tmp_path):
    _recording_files(tmp_path)
    with pytest.raises(StoreDamaged) as err:
        Store(tmp_path)
    path = tmp_path / Store.FILENAME
    assert str(err.value) == (
        f"the database {path} is damaged: the database is missing but 2 recording files are in "
        f"{tmp_path / 'recordings'}"
    )
    assert not path.exists()


def test_empty_database_beside_recordings_is_damaged_and_says_empty(tmp_path):
    _recording_files(tmp_path)
    (tmp_path / Store.FILENAME).write_bytes(b"")
    with pytest.raises(StoreDamaged) as err:
        Store(tmp_path)
    assert str(err.value).endswith(f"the database is empty but 2 recording files are in {tmp_path / 'recordings'}")


def test_database_path_that_cannot_be_opened_says_why(tmp_path):
    (tmp_path / Store.FILENAME).mkdir()  # a folder where the file should be
    with pytest.raises(StoreError) as err:
        Store(tmp_path)
    path = tmp_path / Store.FILENAME
    assert str(err.value) == (
        f"cannot open the database {path}: unable to open database file (check the folder exists and is writable)"
    )


def test_writes_wait_five_seconds_for_another_program(st):
    assert st._db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000


def test_another_thread_can_write(st):
    """Reader/recorder threads update rows while the GUI thread edits labels (one shared connection)."""
    import threading

    rec = st.add_recording("accel", "walk", "recordings/accel/1.f32", 52.0, 3)
    errors = []

    def worker():
        try:
            st.update_recording(rec.id, n_samples=520)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    t = threading.Thread(target=worker)
    t.start()
    t.join(5)
    assert errors == [] and st.recording(rec.id).n_samples == 520


def _version0_with_a_users_table(tmp_path):
    con = sqlite3.connect(tmp_path / Store.FILENAME)
    con.execute("CREATE TABLE users (x)")
    con.commit()
    con.close()


def test_failed_migration_is_a_plain_error_and_changes_nothing(tmp_path):
    _version0_with_a_users_table(tmp_path)
    with pytest.raises(StoreError) as err:
        Store(tmp_path)
    assert str(err.value) == f"database error in {tmp_path / Store.FILENAME}: table users already exists"
    con = _raw(tmp_path)
    try:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 0
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        assert names == ["users"]  # the half-done migration was rolled back (no 'sessions')
    finally:
        con.close()


def test_version_1_database_is_upgraded_keeping_its_rows(tmp_path):
    con = sqlite3.connect(tmp_path / Store.FILENAME)
    con.executescript(store_mod.MIGRATIONS[0])
    con.execute("PRAGMA user_version=1")
    con.execute("INSERT INTO settings(key, value) VALUES ('theme', '\"dark\"')")
    con.commit()
    con.close()
    s = Store(tmp_path)
    try:
        assert s.schema_version == SCHEMA_VERSION == 2
        assert s.get_setting("theme") == "dark"
        rid = s.add_round({"mode": "tl"})
        s.put_round_batch(rid, 0, {"loss": 1.5})
        assert s.round_batches(rid) == [{"loss": 1.5}]
    finally:
        s.close()


def test_closed_store_refuses_work_in_plain_words(tmp_path):
    s = Store(tmp_path)
    s.close()
    assert s.closed is True
    for call in (lambda: s.labels(1), lambda: s.set_setting("k", 1), lambda: s.add_marker("m", 1.0)):
        with pytest.raises(StoreError) as err:
            call()
        assert str(err.value) == f"the database {tmp_path / Store.FILENAME} is closed (the app is shutting down)"
    s.close()  # idempotent


def test_close_records_when_the_session_ended(tmp_path):
    s = Store(tmp_path)
    sid = s.session_id
    before = time.time()
    s.close()
    after = time.time()
    con = _raw(tmp_path)
    try:
        row = con.execute("SELECT started, ended FROM sessions WHERE id=?", (sid,)).fetchone()
    finally:
        con.close()
    assert row["started"] <= before <= row["ended"] <= after


def test_close_writes_the_session_into_the_database_file_itself(tmp_path):
    """While another program has the database open, closing still checkpoints the WAL: the main file alone
    (without its -wal) holds the session's writes."""
    s = Store(tmp_path)
    s.set_setting("k", 7)
    other = sqlite3.connect(tmp_path / Store.FILENAME)
    try:
        other.execute("SELECT count(*) FROM settings").fetchone()
        s.close()
        copy = tmp_path / "copy"
        copy.mkdir()
        (copy / "main.sqlite").write_bytes((tmp_path / Store.FILENAME).read_bytes())
        con = sqlite3.connect(copy / "main.sqlite")
        try:
            assert con.execute("SELECT value FROM settings WHERE key='k'").fetchone() == ("7",)
        finally:
            con.close()
    finally:
        other.close()


def test_close_reports_a_backup_it_could_not_make_and_still_closes(tmp_path):
    s = Store(tmp_path)
    (tmp_path / "backups").write_text("a file where the backups folder goes")
    s.close()
    assert s.closed is True
    assert s.backup_error == f"[Errno 17] File exists: '{tmp_path / 'backups'}'"


def test_close_hooks_run_once_before_closing_and_can_be_removed(tmp_path):
    s = Store(tmp_path)
    seen = []

    def hook():
        seen.append(("hook", s.closed))
        s.set_setting("last", "written by the hook")  # the database is still open

    def failing():
        seen.append(("failing", s.closed))
        raise RuntimeError("ignored")

    def removed():
        seen.append(("removed", s.closed))

    s.add_close_hook(failing)
    s.add_close_hook(hook)
    s.add_close_hook(removed)
    s.remove_close_hook(removed)
    s.remove_close_hook(removed)  # not registered any more: nothing happens
    s.close()
    s.close()
    assert seen == [("failing", False), ("hook", False)]
    s2 = Store(tmp_path)
    try:
        assert s2.get_setting("last") == "written by the hook"
    finally:
        s2.close()


# --- backups --------------------------------------------------------------------------------------------
def test_backup_is_named_after_its_time_to_the_nanosecond(tmp_path, monkeypatch, utc):
    s = Store(tmp_path)
    try:
        monkeypatch.setattr(store_mod.time, "time_ns", lambda: 1_765_000_000_123_456_789)
        got = s.backup()
        monkeypatch.undo()
    finally:
        s.close()
    assert got == tmp_path / "backups" / "odlstudio-20251206-054640-123456789.sqlite"
    assert got.is_file()


def test_backup_that_fails_its_check_is_not_kept(tmp_path, monkeypatch):
    s = Store(tmp_path)
    real = sqlite3.connect

    class Checked(sqlite3.Connection):  # a copy whose check reports damage
        def execute(self, sql, *args):
            if sql == "PRAGMA quick_check":
                return super().execute("SELECT 'row 3 missing from index'")
            return super().execute(sql, *args)

    made = []

    def connect(path, *args, **kw):
        if str(path).endswith(".tmp"):
            made.append(Path(path))
            return real(path, *args, factory=Checked, **kw)
        return real(path, *args, **kw)

    try:
        monkeypatch.setattr(sqlite3, "connect", connect)
        with pytest.raises(StoreError) as err:
            s.backup()
        monkeypatch.undo()
        assert str(err.value) == f"the backup {made[0]} does not pass its integrity check: row 3 missing from index"
        assert list((tmp_path / "backups").iterdir()) == []
    finally:
        monkeypatch.undo()
        s.close()


def test_backup_that_cannot_be_opened_is_a_plain_error(tmp_path, monkeypatch):
    s = Store(tmp_path)
    real = sqlite3.connect

    def connect(path, *args, **kw):
        if str(path).endswith(".tmp"):
            raise sqlite3.OperationalError("unable to open database file")
        return real(path, *args, **kw)

    try:
        monkeypatch.setattr(store_mod, "_read_only", lambda folder: False)
        monkeypatch.setattr(sqlite3, "connect", connect)
        with pytest.raises(StoreError) as err:
            s.backup()
        monkeypatch.undo()
        msg = str(err.value)
        assert msg.startswith(f"cannot open the database {tmp_path / 'backups'}/odlstudio-")
        assert msg.endswith(".sqlite: unable to open database file (check the folder exists and is writable)")
        assert list((tmp_path / "backups").iterdir()) == []
    finally:
        monkeypatch.undo()
        s.close()


def test_backup_keeps_the_newest(tmp_path):
    s = Store(tmp_path)
    try:
        made = [s.backup(keep=2) for _ in range(3)]
        assert store_mod.list_backups(tmp_path) == [made[2], made[1]]
    finally:
        s.close()


# --- settings, users, datasets -------------------------------------------------------------------------------
def test_setting_is_replaced_and_keeps_its_json_type(tmp_path):
    s = Store(tmp_path)
    s.set_setting("accel.odr", 52)
    s.set_setting("accel.odr", 104)
    s.set_setting("ports", ["COM3", "COM4"])
    s.close()
    s = Store(tmp_path)
    try:
        assert s.get_setting("accel.odr") == 104 and s.get_setting("ports") == ["COM3", "COM4"]
        assert s.get_setting("nothing") is None
    finally:
        s.close()


def test_blank_user_name_is_refused(st):
    with pytest.raises(StoreError) as err:
        st.ensure_user("   ")
    assert str(err.value) == "user name must not be empty"


def test_new_user_gets_a_default_dataset_with_the_given_classes(st, caplog):
    with caplog.at_level("WARNING", logger="app.core.store"):
        u = st.ensure_user("  bob  ", classes=("walk", "run"))
    assert u == User(1, "bob", 1)
    assert st.dataset(1) == Dataset(1, 1, "default", ("walk", "run"))
    assert st.datasets(u.id) == [Dataset(1, 1, "default", ("walk", "run"))]
    assert caplog.records == []  # a healthy new user is not a repair


def test_new_user_default_classes_are_wisdm(st):
    u = st.ensure_user("ann")
    assert st.dataset(u.dataset_id).classes == DEFAULT_CLASSES


def test_known_user_keeps_the_dataset_they_selected(st, caplog):
    u = st.ensure_user("ann")
    second = st.create_dataset(u.id, "stairs", ("Upstairs", "Downstairs"))
    st.select_dataset(u.id, second.id)
    with caplog.at_level("WARNING", logger="app.core.store"):
        again = st.ensure_user("ann")
    assert again == User(u.id, "ann", second.id)
    assert caplog.records == []


def test_user_whose_dataset_vanished_is_given_their_first_one_and_it_is_logged(tmp_path, caplog):
    s = Store(tmp_path)
    u = s.ensure_user("ann")
    second = s.create_dataset(u.id, "stairs", ("Upstairs", "Downstairs"))
    s.close()
    con = sqlite3.connect(tmp_path / Store.FILENAME)
    con.execute("UPDATE users SET dataset_id=NULL")
    con.commit()
    con.close()
    s = Store(tmp_path)
    try:
        with caplog.at_level("WARNING", logger="app.core.store"):
            assert s.ensure_user("ann") == User(u.id, "ann", u.dataset_id)
        assert [r.getMessage() for r in caplog.records] == [
            f"user {u.id} had no valid dataset selected: dataset {u.dataset_id} selected"
        ]
        assert s.user(u.id).dataset_id == u.dataset_id
        assert [d.id for d in s.datasets(u.id)] == [u.dataset_id, second.id]
    finally:
        s.close()


def test_users_are_listed_by_name(st):
    c = st.ensure_user("carol")
    a = st.ensure_user("alice")
    b = st.ensure_user("bob")
    assert st.users() == [User(a.id, "alice", a.dataset_id), User(b.id, "bob", b.dataset_id), User(c.id, "carol", 1)]


def test_unknown_user_dataset_recording_are_named(st):
    for call, msg in (
        (lambda: st.user(99), "no user with id 99"),
        (lambda: st.dataset(98), "no dataset with id 98"),
        (lambda: st.recording(97), "no recording with id 97"),
    ):
        with pytest.raises(StoreError) as err:
            call()
        assert str(err.value) == msg


def test_dataset_classes_must_be_non_empty_and_unique(st):
    u = st.ensure_user("ann")
    for classes, shown in ((("a", "a"), "['a', 'a']"), ((), "[]"), (("a", " "), "['a', ' ']")):
        with pytest.raises(StoreError) as err:
            st.create_dataset(u.id, "bad", classes)
        assert str(err.value) == f"dataset 'bad': classes must be non-empty and unique, got {shown}"
    assert [d.name for d in st.datasets(u.id)] == ["default"]


def test_dataset_name_taken_by_the_same_user(st):
    u = st.ensure_user("ann")
    st.create_dataset(u.id, "stairs", ("Upstairs",))
    with pytest.raises(StoreError) as err:
        st.create_dataset(u.id, "stairs", ("a",))
    assert str(err.value) == f"user {u.id} already has a dataset called 'stairs'"
    other = st.ensure_user("bob")
    assert st.create_dataset(other.id, "stairs", ("b",)).classes == ("b",)  # another user may use the name


def test_datasets_of_a_user_in_creation_order(st):
    ann = st.ensure_user("ann")
    bob = st.ensure_user("bob")
    z = st.create_dataset(ann.id, "z", ("x",))
    st.create_dataset(bob.id, "b", ("y",))
    a = st.create_dataset(ann.id, "a", ("x", "y"))
    assert st.datasets(ann.id) == [
        Dataset(ann.dataset_id, ann.id, "default", DEFAULT_CLASSES),
        Dataset(z.id, ann.id, "z", ("x",)),
        Dataset(a.id, ann.id, "a", ("x", "y")),
    ]


def test_selecting_another_users_dataset_is_refused(st):
    ann = st.ensure_user("ann")
    bob = st.ensure_user("bob")
    with pytest.raises(StoreError) as err:
        st.select_dataset(bob.id, ann.dataset_id)
    assert str(err.value) == f"dataset {ann.dataset_id} belongs to user {ann.id}, not {bob.id}"
    assert st.user(bob.id).dataset_id == bob.dataset_id


def test_set_classes_replaces_a_datasets_classes(st):
    u = st.ensure_user("ann")
    other = st.create_dataset(u.id, "other", ("x",))
    st.set_classes(u.dataset_id, ("Walking", "Cycling"))
    assert st.dataset(u.dataset_id).classes == ("Walking", "Cycling")
    assert st.dataset(other.id).classes == ("x",)


@pytest.mark.parametrize(("classes", "shown"), [(("a", "b", "a"), "['a', 'b', 'a']"), ((), "[]")])
def test_set_classes_refuses_empty_or_repeated(st, classes, shown):
    u = st.ensure_user("ann")
    with pytest.raises(StoreError) as err:
        st.set_classes(u.dataset_id, classes)
    assert str(err.value) == f"classes must be non-empty and unique, got {shown}"
    assert st.dataset(u.dataset_id).classes == DEFAULT_CLASSES


# --- recordings -----------------------------------------------------------------------------------------------
def test_new_recording_reads_back_every_field(st):
    u = st.ensure_user("ann")
    before = time.time()
    r = st.add_recording(
        "power",
        "run",
        "recordings/power/1.h5",
        1000,
        1,
        dataset_id=u.dataset_id,
        t_offset=2.5,
        status="imported",
        meta={"voltage": 3.3},
        n_samples=2500,
    )
    assert (r.id, r.dataset_id, r.kind, r.name, r.path) == (1, u.dataset_id, "power", "run", "recordings/power/1.h5")
    assert (r.rate_hz, r.channels, r.n_samples, r.t_offset) == (1000.0, 1, 2500, 2.5)
    assert before <= r.started <= time.time() and r.ended is None
    assert (r.status, r.meta, r.duration) == ("imported", {"voltage": 3.3}, 2.5)
    assert st.recording(r.id) == r


def test_new_recording_defaults(st):
    r = st.add_recording("accel", "walk", "recordings/accel/1.f32", 52.0, 3)
    assert (r.dataset_id, r.n_samples, r.t_offset, r.status, r.meta) == (None, 0, 0.0, "recording", {})


def test_unknown_recording_kind_is_refused(st):
    with pytest.raises(StoreError) as err:
        st.add_recording("video", "x", "x", 1.0, 1)
    assert str(err.value) == "recording kind must be 'accel' or 'power', got 'video'"


def test_update_recording_changes_only_what_is_given(st):
    r = st.add_recording("accel", "walk", "a.f32", 52.0, 3, meta={"a": 1})
    other = st.add_recording("accel", "other", "b.f32", 52.0, 3)
    st.update_recording(r.id, n_samples=104)
    st.update_recording(r.id, name="walk 2", path="c.f32", t_offset=1.25)
    got = st.recording(r.id)
    assert (got.n_samples, got.name, got.path, got.t_offset) == (104, "walk 2", "c.f32", 1.25)
    assert (got.status, got.meta, got.ended) == ("recording", {"a": 1}, None)
    st.update_recording(r.id, meta={"b": 2}, status="paused")
    got = st.recording(r.id)
    assert (got.meta, got.status, got.ended, got.n_samples) == ({"b": 2}, "paused", None, 104)
    st.update_recording(r.id)  # nothing to change
    assert st.recording(r.id) == got
    assert st.recording(other.id) == other


@pytest.mark.parametrize("status", ["complete", "recovered"])
def test_finished_recording_gets_its_end_time(st, status):
    r = st.add_recording("accel", "walk", "a.f32", 52.0, 3)
    before = time.time()
    st.update_recording(r.id, status=status)
    got = st.recording(r.id)
    assert got.status == status and before <= got.ended <= time.time()


def test_recordings_filtered_by_kind_and_dataset_in_id_order(st):
    u = st.ensure_user("ann")
    d2 = st.create_dataset(u.id, "d2", ("x",)).id
    d1 = u.dataset_id
    p1 = st.add_recording("power", "p1", "p1", 1.0, 1, dataset_id=d1)
    a1 = st.add_recording("accel", "a1", "a1", 1.0, 3, dataset_id=d1)
    a2 = st.add_recording("accel", "a2", "a2", 1.0, 3, dataset_id=d2)
    a3 = st.add_recording("accel", "a3", "a3", 1.0, 3)
    ids = lambda rows: [r.id for r in rows]  # noqa: E731
    assert ids(st.recordings()) == [p1.id, a1.id, a2.id, a3.id]
    assert ids(st.recordings("accel")) == [a1.id, a2.id, a3.id]
    assert ids(st.recordings(dataset_id=d1)) == [p1.id, a1.id]
    assert ids(st.recordings("accel", d1)) == [a1.id]
    assert ids(st.recordings("power", d2)) == []
    assert ids(st.recordings(kind="accel", dataset_id=d2)) == [a2.id]


def test_unfinished_recordings_are_those_of_earlier_sessions_still_recording(tmp_path):
    s = Store(tmp_path)
    crashed = s.add_recording("accel", "crashed", "a", 1.0, 3)
    done = s.add_recording("accel", "done", "b", 1.0, 3)
    s.update_recording(done.id, status="complete")
    s.close()
    s = Store(tmp_path)
    try:
        now = s.add_recording("accel", "now", "c", 1.0, 3)
        assert [r.id for r in s.unfinished_recordings()] == [crashed.id]
        assert s.recording(now.id).status == "recording"
    finally:
        s.close()


def test_delete_recording_removes_its_labels_and_markers_only(st):
    a = st.add_recording("accel", "a", "a", 1.0, 3)
    b = st.add_recording("accel", "b", "b", 1.0, 3)
    st.add_label(a.id, 0, 1, "Walking")
    kept = st.add_label(b.id, 0, 1, "Jogging")
    st.add_marker("ma", 0.5, a.id)
    mb = st.add_marker("mb", 0.5, b.id)
    st.delete_recording(a.id)
    assert [r.id for r in st.recordings()] == [b.id]
    assert st.labels(a.id) == [] and st.markers(a.id) == []
    assert st.labels(b.id) == [LabelRow(kept, b.id, 0.0, 1.0, "Jogging")]
    assert st.markers(b.id) == [mb]
    con = st._db
    assert con.execute("SELECT count(*) FROM labels").fetchone()[0] == 1  # deleted, not only hidden


# --- labels ---------------------------------------------------------------------------------------------------
def test_labels_read_back_in_time_order_then_id(st):
    r = st.add_recording("accel", "a", "a", 1.0, 3)
    other = st.add_recording("accel", "b", "b", 1.0, 3)
    late = st.add_label(r.id, 5.0, 6.0, "Jogging")
    first = st.add_label(r.id, 1.0, 2.0, "Walking")
    same_start = st.add_label(r.id, 1.0, 1.5, "Sitting")
    st.add_label(other.id, 0.0, 9.0, "Standing")
    assert st.labels(r.id) == [
        LabelRow(first, r.id, 1.0, 2.0, "Walking"),
        LabelRow(same_start, r.id, 1.0, 1.5, "Sitting"),
        LabelRow(late, r.id, 5.0, 6.0, "Jogging"),
    ]


def test_label_with_reversed_bounds_is_stored_in_order(st):
    r = st.add_recording("accel", "a", "a", 1.0, 3)
    lid = st.add_label(r.id, 4.0, 3.0, "Walking")
    assert st.labels(r.id) == [LabelRow(lid, r.id, 3.0, 4.0, "Walking")]


def test_deleted_label_is_hidden_and_restored_with_its_id(st):
    """Undo of a delete: the same label id comes back with the given bounds."""
    r = st.add_recording("accel", "a", "a", 1.0, 3)
    lid = st.add_label(r.id, 1.0, 2.0, "Walking")
    keep = st.add_label(r.id, 3.0, 4.0, "Jogging")
    st.delete_label(lid)
    assert st.labels(r.id) == [LabelRow(keep, r.id, 3.0, 4.0, "Jogging")]
    assert st.add_label(r.id, 1.5, 2.5, "Sitting", label_id=lid) == lid
    assert st.labels(r.id) == [LabelRow(lid, r.id, 1.5, 2.5, "Sitting"), LabelRow(keep, r.id, 3.0, 4.0, "Jogging")]


def test_label_restored_with_an_unused_id_gets_that_id(st):
    """Redo of an add after its row is gone: inserted again under its old id."""
    r = st.add_recording("accel", "a", "a", 1.0, 3)
    assert st.add_label(r.id, 2.0, 1.0, "Walking", label_id=77) == 77
    assert st.labels(r.id) == [LabelRow(77, r.id, 1.0, 2.0, "Walking")]


def test_update_label_moves_and_renames_one_label(st):
    r = st.add_recording("accel", "a", "a", 1.0, 3)
    lid = st.add_label(r.id, 1.0, 2.0, "Walking")
    other = st.add_label(r.id, 5.0, 6.0, "Walking")
    st.update_label(lid, 8.0, 7.0, "Jogging")
    assert st.labels(r.id) == [LabelRow(other, r.id, 5.0, 6.0, "Walking"), LabelRow(lid, r.id, 7.0, 8.0, "Jogging")]


def test_update_of_an_unknown_label_is_refused(st):
    with pytest.raises(StoreError) as err:
        st.update_label(42, 1.0, 2.0, "Walking")
    assert str(err.value) == "no label with id 42"


def test_update_label_refuses_an_empty_interval(st):
    r = st.add_recording("accel", "a", "a", 1.0, 3)
    lid = st.add_label(r.id, 1.0, 2.0, "Walking")
    with pytest.raises(StoreError) as err:
        st.update_label(lid, 3.0, 3.0, "Walking")
    assert str(err.value) == "label [3.0, 3.0] s is empty"
    assert st.labels(r.id) == [LabelRow(lid, r.id, 1.0, 2.0, "Walking")]


def test_empty_label_message_keeps_the_bounds_as_given(st):
    """0.0 and -0.0 are the same instant: the message shows them in the order the caller gave them."""
    with pytest.raises(StoreError) as err:
        _interval(0.0, -0.0)
    assert str(err.value) == "label [0.0, -0.0] s is empty"


# --- markers ---------------------------------------------------------------------------------------------------
def test_marker_reads_back_and_is_listed_by_time(st):
    r = st.add_recording("power", "p", "p", 1.0, 1)
    m2 = st.add_marker("second", 2, r.id)
    m1 = st.add_marker("first", 1.5, r.id)
    free = st.add_marker("batch0", 0.25)
    assert m2 == Marker(1, r.id, "second", 2.0) and type(m2.t_s) is float
    assert st.markers(r.id) == [Marker(m1.id, r.id, "first", 1.5), Marker(m2.id, r.id, "second", 2.0)]
    assert st.markers() == [Marker(free.id, None, "batch0", 0.25)]


def test_markers_without_a_recording_are_per_session(tmp_path):
    s = Store(tmp_path)
    old = s.add_marker("old", 1.0)
    s.add_marker("old 0", 0.5)
    first_session = s.session_id
    s.close()
    s = Store(tmp_path)
    try:
        new = s.add_marker("new", 3.0)
        assert s.markers() == [new]
        assert s.markers(session_id=s.session_id) == [new]
        assert [m.name for m in s.markers(session_id=first_session)] == ["old 0", "old"]
        assert s.markers(session_id=first_session)[1] == old
    finally:
        s.close()


def test_update_marker_renames_and_moves(st):
    r = st.add_recording("power", "p", "p", 1.0, 1)
    a = st.add_marker("a", 1.0, r.id)
    b = st.add_marker("b", 2.0, r.id)
    st.update_marker(a.id, name="renamed")
    assert st.markers(r.id) == [Marker(a.id, r.id, "renamed", 1.0), b]
    st.update_marker(a.id, t_s=3)
    assert st.markers(r.id) == [b, Marker(a.id, r.id, "renamed", 3.0)]
    st.update_marker(a.id)
    assert st.markers(r.id) == [b, Marker(a.id, r.id, "renamed", 3.0)]


def test_delete_marker_removes_only_that_marker(st):
    a = st.add_marker("a", 1.0)
    b = st.add_marker("b", 2.0)
    st.delete_marker(a.id)
    assert st.markers() == [b]


# --- measurements, rounds, batches -------------------------------------------------------------------------------
def test_measurements_all_or_by_kind_in_order(st):
    r = st.add_recording("power", "p", "p", 1.0, 1)
    e1 = st.add_measurement("energy", {"J": 0.5}, 0.0, 1.0, r.id)
    w = st.add_measurement("window", {"n": 3})
    e2 = st.add_measurement("energy", {"J": 0.25})
    assert [m["id"] for m in st.measurements()] == [e1, w, e2]
    got = st.measurements("energy")
    assert [(m["id"], m["kind"], m["data"]) for m in got] == [(e1, "energy", {"J": 0.5}), (e2, "energy", {"J": 0.25})]
    assert (got[0]["t0"], got[0]["t1"], got[0]["recording_id"], got[0]["session_id"]) == (0.0, 1.0, r.id, st.session_id)
    assert (got[1]["t0"], got[1]["t1"], got[1]["recording_id"]) == (None, None, None)


def test_round_reads_back_config_and_result(st):
    u = st.ensure_user("ann")
    rid = st.add_round({"mode": "tl", "input": 20}, dataset_id=u.dataset_id)
    got = st.rounds()
    assert len(got) == 1
    assert (got[0]["id"], got[0]["dataset_id"], got[0]["session_id"]) == (rid, u.dataset_id, st.session_id)
    assert (got[0]["config"], got[0]["result"], got[0]["status"], got[0]["ended"]) == (
        {"mode": "tl", "input": 20},
        {},
        "created",
        None,
    )


def test_rounds_filtered_by_dataset_in_order(st):
    u = st.ensure_user("ann")
    d2 = st.create_dataset(u.id, "d2", ("x",)).id
    a = st.add_round({"n": 1}, dataset_id=u.dataset_id)
    b = st.add_round({"n": 2}, dataset_id=d2)
    c = st.add_round({"n": 3}, dataset_id=u.dataset_id)
    n = st.add_round({"n": 4})
    assert [r["id"] for r in st.rounds()] == [a, b, c, n]
    assert [r["config"] for r in st.rounds(u.dataset_id)] == [{"n": 1}, {"n": 3}]
    assert [r["id"] for r in st.rounds(d2)] == [b]


@pytest.mark.parametrize("status", ["done", "failed", "cancelled", "aborted"])
def test_finished_round_gets_its_end_time(st, status):
    rid = st.add_round({})
    st.update_round(rid, status="running")
    assert st.rounds()[0]["ended"] is None
    before = time.time()
    st.update_round(rid, status=status, result={"f1": 0.5})
    r = st.rounds()[0]
    assert r["status"] == status and before <= r["ended"] <= time.time() and r["result"] == {"f1": 0.5}


def test_round_batches_are_replaced_by_index_and_read_in_order(st):
    a = st.add_round({})
    b = st.add_round({})
    st.put_round_batch(a, 2, {"loss": 0.2})
    st.put_round_batch(a, 0, {"loss": 1.0})
    st.put_round_batch(b, 0, {"loss": 9.0})
    st.put_round_batch(a, 1, {"loss": 0.5})
    st.put_round_batch(a, 2, {"loss": 0.25, "energy_J": 0.01})
    assert st.round_batches(a) == [{"loss": 1.0}, {"loss": 0.5}, {"loss": 0.25, "energy_J": 0.01}]
    assert st.round_batches(b) == [{"loss": 9.0}]
    assert st.round_batches(99) == []


STOPPED = "the app stopped during this round (crash, kill or power loss); the board's weights were not downloaded"


def test_rounds_of_a_killed_session_are_aborted_with_the_reason(tmp_path):
    s = Store(tmp_path)
    running = s.add_round({"n": 1})
    s.update_round(running, status="running", result={"batches": 3})
    created = s.add_round({"n": 2})
    failed_before = s.add_round({"n": 3})
    s.update_round(failed_before, status="running", result={"error": "board unplugged"})
    done = s.add_round({"n": 4})
    s.update_round(done, status="done", result={"f1": 0.9})
    s.put_round_batch(running, 0, {"loss": 1.0})
    s._db.close()  # killed: no close
    s = Store(tmp_path)
    try:
        mine = s.add_round({"n": 5})
        s.update_round(mine, status="running")
        before = time.time()
        assert s.recover_rounds() == [running, created, failed_before]
        after = time.time()
        got = {r["id"]: r for r in s.rounds()}
        assert got[running]["status"] == "aborted" and got[running]["result"] == {"batches": 3, "error": STOPPED}
        assert got[created]["status"] == "aborted" and got[created]["result"] == {"error": STOPPED}
        assert got[failed_before]["result"] == {"error": "board unplugged"}
        for rid in (running, created, failed_before):
            assert before <= got[rid]["ended"] <= after
        assert (got[done]["status"], got[done]["result"]) == ("done", {"f1": 0.9})
        assert (got[mine]["status"], got[mine]["ended"]) == ("running", None)
        assert s.round_batches(running) == [{"loss": 1.0}]
        assert s.recover_rounds() == []
    finally:
        s.close()


def test_round_without_a_session_or_result_is_recovered(tmp_path):
    """A hand-edited or rebuilt row: no session, an empty result text."""
    s = Store(tmp_path)
    rid = s.add_round({})
    s.close()
    con = sqlite3.connect(tmp_path / Store.FILENAME)
    con.execute("UPDATE rounds SET session_id=NULL, status='running', result=''")
    con.commit()
    con.close()
    s = Store(tmp_path)
    try:
        assert s.recover_rounds() == [rid]
        assert s.rounds()[0]["status"] == "aborted" and s.rounds()[0]["result"] == {"error": STOPPED}
    finally:
        s.close()


# --- transactions ---------------------------------------------------------------------------------------------
def test_transaction_commits_all_its_writes(tmp_path):
    s = Store(tmp_path)
    r = s.add_recording("accel", "a", "a", 1.0, 3)
    with s.transaction() as t:
        assert t is s
        s.add_label(r.id, 0, 1, "Walking")
        s.add_label(r.id, 1, 2, "Jogging")
    other = _raw(tmp_path)
    try:
        assert [row["label"] for row in other.execute("SELECT label FROM labels ORDER BY id")] == ["Walking", "Jogging"]
    finally:
        other.close()
        s.close()


def test_failed_inner_transaction_rolls_back_only_itself(st):
    r = st.add_recording("accel", "a", "a", 1.0, 3)
    with st.transaction():
        st.add_label(r.id, 0, 1, "Walking")
        with pytest.raises(RuntimeError):
            with st.transaction():
                st.add_label(r.id, 1, 2, "Jogging")
                raise RuntimeError("boom")
    assert [l.label for l in st.labels(r.id)] == ["Walking"]


class _Failing:
    """The store's connection, with the next run of one statement failing as sqlite would."""

    def __init__(self, db, statement, exc):
        self.db, self.statement, self.exc = db, statement, exc

    def execute(self, sql, *args):
        if sql == self.statement and self.exc is not None:
            exc, self.exc = self.exc, None
            raise exc
        return self.db.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.db, name)


def _elsewhere(fn):
    """Run ``fn`` in another thread (it needs the store's lock); returns what it raised or returned."""
    import threading

    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join(5)
    assert not t.is_alive(), "the store's lock was not released"
    return out[0]


def test_transaction_that_cannot_start_is_a_plain_error_and_frees_the_store(tmp_path):
    s = Store(tmp_path)
    db = s._db
    s._db = _Failing(db, "SAVEPOINT txn", sqlite3.OperationalError("database is locked"))
    try:
        with pytest.raises(StoreError) as err:
            with s.transaction():
                pass
        assert "is locked by another program" in str(err.value)
        assert str(err.value).startswith(f"the database {tmp_path / Store.FILENAME} is locked")
    finally:
        s._db = db
    assert _elsewhere(lambda: s.set_setting("k", 1)) is None
    s.close()


def test_transaction_on_a_closed_store_frees_the_lock(tmp_path):
    s = Store(tmp_path)
    s.close()
    with pytest.raises(StoreError, match="is closed"):
        with s.transaction():
            pass
    assert _elsewhere(lambda: s._lock.acquire(timeout=1)) is True


def test_commit_that_fails_rolls_back_and_says_why(tmp_path):
    s = Store(tmp_path)
    r = s.add_recording("accel", "a", "a", 1.0, 3)
    db = s._db
    s._db = _Failing(db, "RELEASE txn", sqlite3.OperationalError("database or disk is full"))
    try:
        with pytest.raises(StoreError) as err:
            with s.transaction():
                s.add_label(r.id, 0, 1, "Walking")
    finally:
        s._db = db
    assert str(err.value) == (
        f"the database {tmp_path / Store.FILENAME} cannot be written: the disk is full. Free some space; what was "
        "saved before is kept"
    )
    assert s.labels(r.id) == []
    assert _elsewhere(lambda: s.add_label(r.id, 2, 3, "Jogging")) >= 1
    assert [l.label for l in s.labels(r.id)] == ["Jogging"]
    s.close()


class _FailingAlways(_Failing):
    """The store's connection, with every run of one statement failing."""

    def execute(self, sql, *args):
        if sql == self.statement:
            raise self.exc
        return self.db.execute(sql, *args)


@pytest.mark.parametrize("failing", ["commit", "body"])
def test_a_transaction_that_cannot_be_released_at_all_is_ended(tmp_path, failing):
    """Every RELEASE fails (the commit's, or none is tried because the body failed, then the one after the
    rollback): the transaction is ended anyway, so the next write is committed (another connection sees it) and
    close() returns.  It used to stay open: later writes were never committed, and close() waited forever in its
    backup."""
    s = Store(tmp_path)
    r = s.add_recording("accel", "a", "a", 1.0, 3)
    db = s._db
    s._db = _FailingAlways(db, "RELEASE txn", sqlite3.OperationalError("database or disk is full"))
    try:
        with pytest.raises((StoreError, KeyError), match="the disk is full|the body failed"):
            with s.transaction():
                s.add_label(r.id, 0, 1, "Walking")
                if failing == "body":
                    raise KeyError("the body failed")
    finally:
        s._db = db
    assert not db.in_transaction
    s.add_label(r.id, 2, 3, "Jogging")
    con = sqlite3.connect(tmp_path / Store.FILENAME)
    assert con.execute("SELECT label FROM labels").fetchall() == [("Jogging",)]
    con.close()
    assert _elsewhere(s.close) is None  # returns (the thread is joined within 5 s)


def test_a_nested_transaction_that_cannot_be_released_leaves_the_outer_one_to_decide(tmp_path):
    """The inner savepoint's writes are undone; the outer transaction goes on and commits its own."""
    s = Store(tmp_path)
    r = s.add_recording("accel", "a", "a", 1.0, 3)
    db = s._db
    with s.transaction():
        s.add_label(r.id, 0, 1, "Walking")
        s._db = _Failing(db, "RELEASE txn", sqlite3.OperationalError("database or disk is full"))
        try:
            with pytest.raises(StoreError, match="the disk is full"):
                with s.transaction():
                    s.add_label(r.id, 2, 3, "Jogging")
        finally:
            s._db = db
        assert db.in_transaction
    assert [l.label for l in s.labels(r.id)] == ["Walking"] and not db.in_transaction
    s.close()


# --- a table gone from under the store (hand-edited or damaged file): plain errors ------------------------------
def _drop(tmp_path, table):
    con = sqlite3.connect(tmp_path / Store.FILENAME)
    con.execute("PRAGMA foreign_keys=OFF")
    con.execute(f"DROP TABLE {table}")
    con.commit()
    con.close()


def test_read_of_a_missing_table_is_a_plain_error(st, tmp_path):
    _drop(tmp_path, "markers")
    with pytest.raises(StoreError) as err:
        st.markers()
    assert str(err.value) == f"database error in {tmp_path / Store.FILENAME}: no such table: markers"


def test_insert_into_a_missing_table_is_a_plain_error(st, tmp_path):
    _drop(tmp_path, "measurements")
    with pytest.raises(StoreError) as err:
        st.add_measurement("energy", {})
    assert str(err.value) == f"database error in {tmp_path / Store.FILENAME}: no such table: measurements"


def test_update_of_a_missing_table_is_a_plain_error(st, tmp_path):
    _drop(tmp_path, "settings")
    with pytest.raises(StoreError) as err:
        st.set_setting("k", 1)
    assert str(err.value) == f"database error in {tmp_path / Store.FILENAME}: no such table: settings"


def test_successful_close_leaves_no_backup_error(tmp_path):
    s = Store(tmp_path)
    s.close()
    assert s.backup_error == "" and len(store_mod.list_backups(tmp_path)) == 1


def test_backup_interrupted_before_its_file_exists_passes_the_interrupt_on(tmp_path, monkeypatch):
    """Ctrl+C while the backup starts: the interrupt reaches the caller (not a FileNotFoundError), no file left."""
    s = Store(tmp_path)
    real = sqlite3.connect

    def connect(path, *args, **kw):
        if str(path).endswith(".tmp"):
            raise KeyboardInterrupt
        return real(path, *args, **kw)

    try:
        monkeypatch.setattr(sqlite3, "connect", connect)
        with pytest.raises(KeyboardInterrupt):
            s.backup()
        monkeypatch.undo()
        assert list((tmp_path / "backups").iterdir()) == []
    finally:
        monkeypatch.undo()
        s.close()
