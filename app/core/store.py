"""The application database: one SQLite file (WAL) in the user data directory (Qt-free).

What must survive a crash lives here: app sessions, users (profiles) and their datasets, recordings
(the bulk samples are files beside the database, see :mod:`app.core.recording`), labels, power markers,
measurements, training rounds and settings.  Every write is its own committed transaction
(``synchronous=FULL``), so a label is on disk when :meth:`Store.add_label` returns.

The schema is versioned with ``PRAGMA user_version``; :data:`MIGRATIONS` upgrades older files in order
and a file from a *newer* app is refused with a clear message instead of being damaged.

Thread-safety: one connection shared under a lock (``check_same_thread=False``), so reader/recorder
threads may update recording rows while the GUI thread edits labels.

Damage and failures (issue 13): every sqlite error reaches callers as :class:`StoreError` in plain words
(disk full, read-only, locked by another program); at start-up the file's integrity is checked
(``PRAGMA quick_check``) and a damaged file — or an empty one beside recordings — raises
:class:`StoreDamaged`.  :meth:`Store.close` keeps rotating backups made with SQLite's online backup API
(``backups/``, :data:`BACKUPS_KEPT`); :func:`restore_backup`, :func:`rebuild_store` and
:func:`start_new_store` are the three ways out of a damaged file (the damaged one is always kept aside).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)

__all__ = [
    "Store",
    "StoreError",
    "Recording",
    "LabelRow",
    "Marker",
    "Dataset",
    "User",
    "default_data_dir",
    "SCHEMA_VERSION",
    "DEFAULT_CLASSES",
    "StoreDamaged",
    "list_backups",
    "restore_backup",
    "rebuild_store",
    "start_new_store",
    "BACKUPS_KEPT",
]

#: Backups kept in ``<data dir>/backups`` (one per session, the oldest removed first).
BACKUPS_KEPT = 5
BACKUP_DIR = "backups"

#: WISDM v1.1 activities (the paper's pretraining set); a new dataset starts with these.
DEFAULT_CLASSES = ("Walking", "Jogging", "Upstairs", "Downstairs", "Sitting", "Standing")

_SCHEMA_V1 = """
CREATE TABLE sessions (id INTEGER PRIMARY KEY, started REAL NOT NULL, ended REAL, app_version TEXT,
                       info TEXT NOT NULL DEFAULT '{}');
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created REAL NOT NULL,
                    dataset_id INTEGER);
CREATE TABLE datasets (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
                       name TEXT NOT NULL, classes TEXT NOT NULL, created REAL NOT NULL,
                       UNIQUE(user_id, name));
CREATE TABLE recordings (id INTEGER PRIMARY KEY, dataset_id INTEGER REFERENCES datasets(id),
                         session_id INTEGER REFERENCES sessions(id), kind TEXT NOT NULL,
                         name TEXT NOT NULL, path TEXT NOT NULL, rate_hz REAL NOT NULL,
                         channels INTEGER NOT NULL, n_samples INTEGER NOT NULL DEFAULT 0,
                         t_offset REAL NOT NULL DEFAULT 0, started REAL NOT NULL, ended REAL,
                         status TEXT NOT NULL DEFAULT 'recording', meta TEXT NOT NULL DEFAULT '{}');
CREATE TABLE labels (id INTEGER PRIMARY KEY, recording_id INTEGER NOT NULL REFERENCES recordings(id),
                     start_s REAL NOT NULL, end_s REAL NOT NULL, label TEXT NOT NULL,
                     deleted INTEGER NOT NULL DEFAULT 0, updated REAL NOT NULL);
CREATE INDEX labels_by_recording ON labels(recording_id, deleted);
CREATE TABLE markers (id INTEGER PRIMARY KEY, session_id INTEGER REFERENCES sessions(id),
                      recording_id INTEGER REFERENCES recordings(id), name TEXT NOT NULL,
                      t_s REAL NOT NULL, created REAL NOT NULL);
CREATE TABLE measurements (id INTEGER PRIMARY KEY, session_id INTEGER REFERENCES sessions(id),
                           recording_id INTEGER REFERENCES recordings(id), kind TEXT NOT NULL,
                           t0 REAL, t1 REAL, data TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE rounds (id INTEGER PRIMARY KEY, session_id INTEGER REFERENCES sessions(id),
                     dataset_id INTEGER REFERENCES datasets(id), created REAL NOT NULL, ended REAL,
                     status TEXT NOT NULL DEFAULT 'created', config TEXT NOT NULL DEFAULT '{}',
                     result TEXT NOT NULL DEFAULT '{}');
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# v2 (Training panel, app/core/rounds.py): one row per batch report of a training round, written as
# each report arrives so a crash mid-round keeps what was measured; ``data`` is JSON (see rounds.BatchRow).
_SCHEMA_V2 = """
CREATE TABLE round_batches (id INTEGER PRIMARY KEY, round_id INTEGER NOT NULL REFERENCES rounds(id),
                            idx INTEGER NOT NULL, data TEXT NOT NULL, updated REAL NOT NULL,
                            UNIQUE(round_id, idx));
"""

#: ``MIGRATIONS[v]`` upgrades a database at version ``v`` to ``v + 1``.
MIGRATIONS: dict[int, str] = {0: _SCHEMA_V1, 1: _SCHEMA_V2}
SCHEMA_VERSION = max(MIGRATIONS) + 1


class StoreError(RuntimeError):
    """Database problem the user can act on (newer schema, unwritable directory, unknown id)."""


class StoreDamaged(StoreError):
    """The database file is damaged (or empty while recordings exist): offer a backup, a rebuild from the
    recording files, or a new store (:func:`restore_backup`, :func:`rebuild_store`, :func:`start_new_store`)."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"the database {path} is damaged: {reason}")


def _read_only(folder: Path) -> bool:
    try:
        if os.statvfs(folder).f_flag & getattr(os, "ST_RDONLY", 1):
            return True
    except (OSError, AttributeError):
        pass
    return not os.access(folder, os.W_OK)


def _disk_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < 1024 * 1024
    except OSError:
        return False


def _plain(exc: sqlite3.Error, path: Path) -> StoreError:
    """A sqlite error in words the user can act on."""
    text = str(exc)
    low = text.lower()
    if "disk is full" in low or "disk full" in low:
        return StoreError(
            f"the database {path} cannot be written: the disk is full. Free some space; what was saved before is kept"
        )
    if "readonly" in low or "read-only" in low or ("unable to open" in low and _read_only(path.parent)):
        return StoreError(
            f"the database {path} is read-only (check the permissions of {path.parent}, or use another --data-dir)"
        )
    if "locked" in low or "busy" in low:
        return StoreError(
            f"the database {path} is locked by another program (is ODL Studio already running with this "
            "data folder?); close it or use another --data-dir"
        )
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        return StoreDamaged(path, text)
    if "unable to open" in low:
        return StoreError(f"cannot open the database {path}: {text} (check the folder exists and is writable)")
    if isinstance(exc, sqlite3.OperationalError) and ("i/o" in low or "disk i/o" in low):
        if _disk_full(path.parent):  # WAL mode says "disk I/O error" when its -shm file cannot grow
            return StoreError(
                f"the database {path} cannot be opened or written: the disk is full. Free some space; what was "
                "saved before is kept"
            )
        return StoreError(f"the database {path} cannot be read or written (disk I/O error): {text}")
    return StoreError(f"database error in {path}: {text}")


def default_data_dir() -> Path:
    """Per-user data directory (``platformdirs``), e.g. ``~/.local/share/odlstudio``."""
    import platformdirs

    return Path(platformdirs.user_data_dir("odlstudio", "odlstudio"))


@dataclass(frozen=True)
class User:
    id: int
    name: str
    dataset_id: int | None


@dataclass(frozen=True)
class Dataset:
    id: int
    user_id: int
    name: str
    classes: tuple[str, ...]


@dataclass(frozen=True)
class Recording:
    id: int
    dataset_id: int | None
    kind: str  # 'accel' | 'power'
    name: str
    path: str  # relative to the data directory
    rate_hz: float
    channels: int
    n_samples: int
    t_offset: float  # where the recording starts on its live stream's timeline (s)
    started: float
    ended: float | None
    status: str  # 'recording' | 'complete' | 'recovered' | 'imported'
    meta: dict

    @property
    def duration(self) -> float:
        return self.n_samples / self.rate_hz


@dataclass(frozen=True)
class LabelRow:
    id: int
    recording_id: int
    start_s: float
    end_s: float
    label: str


@dataclass(frozen=True)
class Marker:
    id: int
    recording_id: int | None
    name: str
    t_s: float


class Store:
    """The SQLite database at ``data_dir / 'odlstudio.sqlite'``; see the module documentation."""

    FILENAME = "odlstudio.sqlite"

    def __init__(self, data_dir: str | Path, *, adopting: bool = False):
        """``adopting``: a new database is being built beside existing recording files (a rebuild)."""
        self.data_dir = Path(data_dir)
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the data directory {self.data_dir}: {exc}") from exc
        self.path = self.data_dir / self.FILENAME
        self._lock = threading.RLock()
        self._closed = False
        self._close_hooks: list[Callable[[], None]] = []
        self.backup_error = ""  # why the last backup could not be made ('' = it was)
        empty = not self.path.exists() or self.path.stat().st_size == 0
        if empty and not adopting and _recording_files(self.data_dir):
            n = len(_recording_files(self.data_dir))
            raise StoreDamaged(
                self.path,
                f"the database is {'missing' if not self.path.exists() else 'empty'} but {n} recording files are "
                f"in {self.data_dir / 'recordings'}",
            )
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=5.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise _plain(exc, self.path) from exc
        try:
            self._db.row_factory = sqlite3.Row
            if not empty:
                _check_integrity(self._db, self.path)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
            self.session_id = self._insert(
                "INSERT INTO sessions(started, app_version) VALUES (?, ?)", (time.time(), _app_version())
            )
        except BaseException:
            self._db.close()
            raise

    # --- plumbing -------------------------------------------------------------------------------
    def _migrate(self) -> None:
        with self._lock:
            try:
                self._migrate_locked()
            except sqlite3.Error as exc:
                raise _plain(exc, self.path) from exc

    def _migrate_locked(self) -> None:
        if True:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {version}, newer than this app's "
                    f"{SCHEMA_VERSION}: update ODL Studio or use another --data-dir"
                )
            while version < SCHEMA_VERSION:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for stmt in _statements(MIGRATIONS[version]):
                        self._db.execute(stmt)
                    self._db.execute(f"PRAGMA user_version={version + 1}")
                    self._db.execute("COMMIT")
                except Exception:
                    self._db.execute("ROLLBACK")
                    raise
                version += 1

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def journal_mode(self) -> str:
        with self._lock:
            return str(self._db.execute("PRAGMA journal_mode").fetchone()[0])

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the database {self.path} is closed (the app is shutting down)")

    def _exec(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            self._check_open()
            try:
                return self._db.execute(sql, args)
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error as exc:
                raise _plain(exc, self.path) from exc

    def _insert(self, sql: str, args: tuple) -> int:
        with self._lock:
            self._check_open()
            try:
                rowid = self._db.execute(sql, args).lastrowid
                assert rowid is not None  # an INSERT that did not raise set it
                return int(rowid)
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error as exc:
                raise _plain(exc, self.path) from exc

    def _rows(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            self._check_open()
            try:
                return list(self._db.execute(sql, args).fetchall())
            except sqlite3.Error as exc:
                raise _plain(exc, self.path) from exc

    def transaction(self) -> "_Txn":
        """``with store.transaction(): ...`` groups several writes into one atomic commit."""
        return _Txn(self)

    @property
    def closed(self) -> bool:
        return self._closed

    def add_close_hook(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` at the start of :meth:`close`, before the connection goes (e.g. a recorder's stop:
        its writer thread then finishes its last database update instead of hitting a closed database)."""
        with self._lock:
            self._close_hooks.append(fn)

    def remove_close_hook(self, fn: Callable[[], None]) -> None:
        with self._lock:
            if fn in self._close_hooks:
                self._close_hooks.remove(fn)

    def close(self) -> None:
        """Run the close hooks (outside the lock: they may wait for threads that write here), then close.
        Idempotent.  Any later call raises :class:`StoreError` ("closed") instead of sqlite's
        ProgrammingError."""
        with self._lock:
            if self._closed:
                return
            hooks = list(self._close_hooks)
            self._close_hooks.clear()
        for fn in hooks:
            try:
                fn()
            except Exception:  # noqa: BLE001 - closing anyway; the hook's owner reports its own failure
                pass
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._db.execute("UPDATE sessions SET ended=? WHERE id=?", (time.time(), self.session_id))
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                pass  # a full or read-only disk: the session's end time is not essential
            try:
                self.backup_error = ""
                self.backup()
            except (StoreError, OSError) as exc:  # never lose the session over its backup
                self.backup_error = str(exc)
            finally:
                self._db.close()

    def backup(self, keep: int = BACKUPS_KEPT) -> Path:
        """Copy the database with SQLite's online backup API to ``backups/odlstudio-<time>.sqlite`` (checked,
        then renamed into place) and keep the newest ``keep``; returns the new file."""
        folder = self.data_dir / BACKUP_DIR
        folder.mkdir(exist_ok=True)
        # one clock reading for the seconds and the nanoseconds: two readings straddling a second boundary made a
        # later backup sort before an earlier one (and the rotation then deleted the newest)
        secs, ns = divmod(time.time_ns(), 1_000_000_000)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(secs)) + f"-{ns:09d}"
        final = folder / f"odlstudio-{stamp}.sqlite"
        tmp = folder / f".{final.name}.tmp"
        try:
            with self._lock:
                dst = sqlite3.connect(tmp)
                try:
                    self._db.backup(dst)
                    ok = dst.execute("PRAGMA quick_check").fetchone()[0]
                finally:
                    dst.close()
            if ok != "ok":
                raise StoreError(f"the backup {tmp} does not pass its integrity check: {ok}")
            os.replace(tmp, final)
        except sqlite3.Error as exc:
            tmp.unlink(missing_ok=True)
            raise _plain(exc, final) from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        for old in list_backups(self.data_dir)[keep:]:
            old.unlink(missing_ok=True)
        return final

    def resolve(self, rel_path: str) -> Path:
        """Absolute path of a file stored relative to the data directory."""
        return self.data_dir / rel_path

    # --- settings -------------------------------------------------------------------------------
    def get_setting(self, key: str, default: Any = None) -> Any:
        rows = self._rows("SELECT value FROM settings WHERE key=?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def set_setting(self, key: str, value: Any) -> None:
        self._exec(
            "INSERT INTO settings(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, json.dumps(value)),
        )

    # --- users and datasets ----------------------------------------------------------------------
    def ensure_user(self, name: str, classes: tuple[str, ...] = DEFAULT_CLASSES) -> User:
        """The user called ``name`` (created with a default dataset if new)."""
        name = name.strip()
        if not name:
            raise StoreError("user name must not be empty")
        rows = self._rows("SELECT * FROM users WHERE name=?", (name,))
        if not rows:
            with self.transaction():
                uid = self._insert("INSERT INTO users(name, created) VALUES (?, ?)", (name, time.time()))
                did = self._insert(
                    "INSERT INTO datasets(user_id, name, classes, created) VALUES (?, ?, ?, ?)",
                    (uid, "default", json.dumps(list(classes)), time.time()),
                )
                self._exec("UPDATE users SET dataset_id=? WHERE id=?", (did, uid))
            rows = self._rows("SELECT * FROM users WHERE name=?", (name,))
        r = rows[0]
        did = r["dataset_id"]
        if did is None or not self._rows("SELECT id FROM datasets WHERE id=? AND user_id=?", (did, r["id"])):
            did = self._reselect_dataset(r["id"], classes)
        return User(r["id"], r["name"], did)

    def _reselect_dataset(self, uid: int, classes: tuple[str, ...]) -> int:
        """A user row whose selected dataset is gone (a damaged or hand-edited database): select the user's
        first dataset again, or a new empty 'default' one if none is left -- nothing else changes."""
        with self.transaction():
            left = self._rows("SELECT id FROM datasets WHERE user_id=? ORDER BY id LIMIT 1", (uid,))
            if left:
                did = int(left[0]["id"])
            else:
                did = self._insert(
                    "INSERT INTO datasets(user_id, name, classes, created) VALUES (?, ?, ?, ?)",
                    (uid, "default", json.dumps(list(classes)), time.time()),
                )
            self._exec("UPDATE users SET dataset_id=? WHERE id=?", (did, uid))
        log.warning("user %d had no valid dataset selected: dataset %d selected", uid, did)
        return did

    def users(self) -> list[User]:
        return [User(r["id"], r["name"], r["dataset_id"]) for r in self._rows("SELECT * FROM users ORDER BY name")]

    def user(self, user_id: int) -> User:
        rows = self._rows("SELECT * FROM users WHERE id=?", (user_id,))
        if not rows:
            raise StoreError(f"no user with id {user_id}")
        return User(rows[0]["id"], rows[0]["name"], rows[0]["dataset_id"])

    def create_dataset(self, user_id: int, name: str, classes: tuple[str, ...]) -> Dataset:
        if not classes or len(set(classes)) != len(classes) or any(not c.strip() for c in classes):
            raise StoreError(f"dataset {name!r}: classes must be non-empty and unique, got {list(classes)}")
        try:
            did = self._insert(
                "INSERT INTO datasets(user_id, name, classes, created) VALUES (?, ?, ?, ?)",
                (user_id, name, json.dumps(list(classes)), time.time()),
            )
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"user {user_id} already has a dataset called {name!r}") from exc
        return self.dataset(did)

    def select_dataset(self, user_id: int, dataset_id: int) -> None:
        ds = self.dataset(dataset_id)
        if ds.user_id != user_id:
            raise StoreError(f"dataset {dataset_id} belongs to user {ds.user_id}, not {user_id}")
        self._exec("UPDATE users SET dataset_id=? WHERE id=?", (dataset_id, user_id))

    def dataset(self, dataset_id: int) -> Dataset:
        rows = self._rows("SELECT * FROM datasets WHERE id=?", (dataset_id,))
        if not rows:
            raise StoreError(f"no dataset with id {dataset_id}")
        r = rows[0]
        return Dataset(r["id"], r["user_id"], r["name"], tuple(json.loads(r["classes"])))

    def datasets(self, user_id: int) -> list[Dataset]:
        return [
            self.dataset(r["id"]) for r in self._rows("SELECT id FROM datasets WHERE user_id=? ORDER BY id", (user_id,))
        ]

    def set_classes(self, dataset_id: int, classes: tuple[str, ...]) -> None:
        if not classes or len(set(classes)) != len(classes):
            raise StoreError(f"classes must be non-empty and unique, got {list(classes)}")
        self._exec("UPDATE datasets SET classes=? WHERE id=?", (json.dumps(list(classes)), dataset_id))

    # --- recordings ------------------------------------------------------------------------------
    def add_recording(
        self,
        kind: str,
        name: str,
        path: str,
        rate_hz: float,
        channels: int,
        *,
        dataset_id: int | None = None,
        t_offset: float = 0.0,
        status: str = "recording",
        meta: dict | None = None,
        n_samples: int = 0,
    ) -> Recording:
        if kind not in ("accel", "power"):
            raise StoreError(f"recording kind must be 'accel' or 'power', got {kind!r}")
        rid = self._insert(
            "INSERT INTO recordings(dataset_id, session_id, kind, name, path, rate_hz, channels, n_samples, "
            "t_offset, started, status, meta) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                dataset_id,
                self.session_id,
                kind,
                name,
                path,
                float(rate_hz),
                int(channels),
                int(n_samples),
                float(t_offset),
                time.time(),
                status,
                json.dumps(meta or {}),
            ),
        )
        return self.recording(rid)

    def update_recording(
        self,
        recording_id: int,
        *,
        n_samples: int | None = None,
        status: str | None = None,
        name: str | None = None,
        meta: dict | None = None,
        path: str | None = None,
        t_offset: float | None = None,
    ) -> None:
        sets, args = [], []
        for col, val in (
            ("n_samples", n_samples),
            ("status", status),
            ("name", name),
            ("path", path),
            ("t_offset", t_offset),
        ):
            if val is not None:
                sets.append(f"{col}=?")
                args.append(val)
        if meta is not None:
            sets.append("meta=?")
            args.append(json.dumps(meta))
        if status in ("complete", "recovered"):
            sets.append("ended=?")
            args.append(time.time())
        if sets:
            # the column names come from this method's own list, the values are bound parameters
            self._exec(f"UPDATE recordings SET {', '.join(sets)} WHERE id=?", (*args, recording_id))  # noqa: S608

    def recording(self, recording_id: int) -> Recording:
        rows = self._rows("SELECT * FROM recordings WHERE id=?", (recording_id,))
        if not rows:
            raise StoreError(f"no recording with id {recording_id}")
        return _recording(rows[0])

    def recordings(self, kind: str | None = None, dataset_id: int | None = None) -> list[Recording]:
        sql = "SELECT * FROM recordings WHERE 1=1"
        args: list[object] = []
        if kind:
            sql += " AND kind=?"
            args.append(kind)
        if dataset_id is not None:
            sql += " AND dataset_id=?"
            args.append(dataset_id)
        return [_recording(r) for r in self._rows(sql + " ORDER BY id", tuple(args))]

    def unfinished_recordings(self) -> list[Recording]:
        """Recordings of earlier sessions still marked 'recording' (the app crashed): to be recovered."""
        return [
            _recording(r)
            for r in self._rows(
                "SELECT * FROM recordings WHERE status='recording' AND session_id<>?", (self.session_id,)
            )
        ]

    def delete_recording(self, recording_id: int) -> None:
        with self.transaction():
            self._exec("DELETE FROM labels WHERE recording_id=?", (recording_id,))
            self._exec("DELETE FROM markers WHERE recording_id=?", (recording_id,))
            self._exec("DELETE FROM recordings WHERE id=?", (recording_id,))

    # --- labels ----------------------------------------------------------------------------------
    def add_label(
        self, recording_id: int, start_s: float, end_s: float, label: str, label_id: int | None = None
    ) -> int:
        """Insert (or, with ``label_id``, restore) a label; committed on return."""
        start_s, end_s = _interval(start_s, end_s)
        if label_id is not None:
            cur = self._exec(
                "UPDATE labels SET start_s=?, end_s=?, label=?, deleted=0, updated=? WHERE id=?",
                (start_s, end_s, label, time.time(), label_id),
            )
            if cur.rowcount:
                return label_id
            return self._insert(
                "INSERT INTO labels(id, recording_id, start_s, end_s, label, updated) VALUES (?,?,?,?,?,?)",
                (label_id, recording_id, start_s, end_s, label, time.time()),
            )
        return self._insert(
            "INSERT INTO labels(recording_id, start_s, end_s, label, updated) VALUES (?,?,?,?,?)",
            (recording_id, start_s, end_s, label, time.time()),
        )

    def update_label(self, label_id: int, start_s: float, end_s: float, label: str) -> None:
        start_s, end_s = _interval(start_s, end_s)
        cur = self._exec(
            "UPDATE labels SET start_s=?, end_s=?, label=?, updated=? WHERE id=?",
            (start_s, end_s, label, time.time(), label_id),
        )
        if not cur.rowcount:
            raise StoreError(f"no label with id {label_id}")

    def delete_label(self, label_id: int) -> None:
        """Soft delete (kept for undo)."""
        self._exec("UPDATE labels SET deleted=1, updated=? WHERE id=?", (time.time(), label_id))

    def labels(self, recording_id: int) -> list[LabelRow]:
        return [
            LabelRow(r["id"], r["recording_id"], r["start_s"], r["end_s"], r["label"])
            for r in self._rows(
                "SELECT * FROM labels WHERE recording_id=? AND deleted=0 ORDER BY start_s, id", (recording_id,)
            )
        ]

    # --- markers ---------------------------------------------------------------------------------
    def add_marker(self, name: str, t_s: float, recording_id: int | None = None) -> Marker:
        mid = self._insert(
            "INSERT INTO markers(session_id, recording_id, name, t_s, created) VALUES (?,?,?,?,?)",
            (self.session_id, recording_id, name, float(t_s), time.time()),
        )
        return Marker(mid, recording_id, name, float(t_s))

    def update_marker(self, marker_id: int, *, name: str | None = None, t_s: float | None = None) -> None:
        if name is not None:
            self._exec("UPDATE markers SET name=? WHERE id=?", (name, marker_id))
        if t_s is not None:
            self._exec("UPDATE markers SET t_s=? WHERE id=?", (float(t_s), marker_id))

    def delete_marker(self, marker_id: int) -> None:
        self._exec("DELETE FROM markers WHERE id=?", (marker_id,))

    def markers(self, recording_id: int | None = None, session_id: int | None = None) -> list[Marker]:
        if recording_id is not None:
            rows = self._rows("SELECT * FROM markers WHERE recording_id=? ORDER BY t_s", (recording_id,))
        else:
            rows = self._rows(
                "SELECT * FROM markers WHERE session_id=? AND recording_id IS NULL ORDER BY t_s",
                (self.session_id if session_id is None else session_id,),
            )
        return [Marker(r["id"], r["recording_id"], r["name"], r["t_s"]) for r in rows]

    # --- measurements and rounds -----------------------------------------------------------------
    def add_measurement(
        self, kind: str, data: dict, t0: float | None = None, t1: float | None = None, recording_id: int | None = None
    ) -> int:
        return self._insert(
            "INSERT INTO measurements(session_id, recording_id, kind, t0, t1, data, created) VALUES (?,?,?,?,?,?,?)",
            (self.session_id, recording_id, kind, t0, t1, json.dumps(data), time.time()),
        )

    def measurements(self, kind: str | None = None) -> list[dict]:
        rows = self._rows(
            "SELECT * FROM measurements" + (" WHERE kind=?" if kind else "") + " ORDER BY id",  # noqa: S608 - bound
            (kind,) if kind else (),
        )
        return [{**dict(r), "data": json.loads(r["data"])} for r in rows]

    def add_round(self, config: dict, dataset_id: int | None = None) -> int:
        """A training round (the Training panel owns its content: ``config`` and ``result`` are JSON)."""
        return self._insert(
            "INSERT INTO rounds(session_id, dataset_id, created, config) VALUES (?,?,?,?)",
            (self.session_id, dataset_id, time.time(), json.dumps(config)),
        )

    def update_round(self, round_id: int, *, status: str | None = None, result: dict | None = None) -> None:
        if status is not None:
            self._exec(
                "UPDATE rounds SET status=?, ended=CASE WHEN ? IN ('done','failed','cancelled','aborted') "
                "THEN ? ELSE ended END WHERE id=?",
                (status, status, time.time(), round_id),
            )
        if result is not None:
            self._exec("UPDATE rounds SET result=? WHERE id=?", (json.dumps(result), round_id))

    def recover_rounds(self) -> list[int]:
        """Rounds of earlier sessions left 'created'/'running' (the app was killed mid-round) become
        'aborted' with the reason in their result; returns their ids.  Their batch rows are kept."""
        rows = self._rows(
            "SELECT id, result FROM rounds WHERE status IN ('created', 'running') AND "
            "(session_id IS NULL OR session_id<>?)",
            (self.session_id,),
        )
        now = time.time()
        with self.transaction():
            for r in rows:
                result = json.loads(r["result"] or "{}")
                result.setdefault(
                    "error",
                    "the app stopped during this round (crash, kill or power loss); "
                    "the board's weights were not downloaded",
                )
                self._exec(
                    "UPDATE rounds SET status='aborted', ended=?, result=? WHERE id=?",
                    (now, json.dumps(result), r["id"]),
                )
        return [int(r["id"]) for r in rows]

    def rounds(self, dataset_id: int | None = None) -> list[dict]:
        rows = self._rows(
            "SELECT * FROM rounds" + (" WHERE dataset_id=?" if dataset_id is not None else "") + " ORDER BY id",  # noqa: S608
            (dataset_id,) if dataset_id is not None else (),
        )
        return [{**dict(r), "config": json.loads(r["config"]), "result": json.loads(r["result"])} for r in rows]

    # --- per-batch records of rounds (schema v2; written by app/core/rounds.py) --------------------
    def put_round_batch(self, round_id: int, idx: int, data: dict) -> None:
        """Insert or replace batch ``idx`` of round ``round_id`` (energy is filled in after the report)."""
        self._exec(
            "INSERT INTO round_batches(round_id, idx, data, updated) VALUES (?,?,?,?) "
            "ON CONFLICT(round_id, idx) DO UPDATE SET data=excluded.data, updated=excluded.updated",
            (int(round_id), int(idx), json.dumps(data), time.time()),
        )

    def round_batches(self, round_id: int) -> list[dict]:
        return [
            json.loads(r["data"])
            for r in self._rows("SELECT data FROM round_batches WHERE round_id=? ORDER BY idx", (int(round_id),))
        ]


class _Txn:
    def __init__(self, store: Store):
        self.store = store

    def __enter__(self) -> Store:
        self.store._lock.acquire()  # noqa: SLF001
        try:
            self.store._check_open()  # noqa: SLF001
            self.outermost = not self.store._db.in_transaction  # noqa: SLF001
            self.store._db.execute("SAVEPOINT txn")  # noqa: SLF001 - nests inside an outer transaction
        except sqlite3.Error as exc:
            self.store._lock.release()  # noqa: SLF001
            raise _plain(exc, self.store.path) from exc
        except BaseException:
            self.store._lock.release()  # noqa: SLF001
            raise
        return self.store

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                try:
                    self.store._db.execute("RELEASE txn")  # noqa: SLF001
                except sqlite3.Error as err:
                    _quiet_rollback(self.store._db, self.outermost)  # noqa: SLF001
                    raise _plain(err, self.store.path) from err
            else:
                _quiet_rollback(self.store._db, self.outermost)  # noqa: SLF001
        finally:
            self.store._lock.release()  # noqa: SLF001


def _quiet_rollback(db: sqlite3.Connection, outermost: bool) -> None:
    """Undo the savepoint's writes.  If it cannot be released either (a second failure, e.g. the disk) and it
    began the transaction, end the transaction: left open, every later write of the store would stay
    uncommitted, and the backup at close() would wait for it forever."""
    try:
        db.execute("ROLLBACK TO txn")
        db.execute("RELEASE txn")
    except sqlite3.Error:
        pass
    if outermost and db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def _recording_files(data_dir: Path) -> list[Path]:
    rec = Path(data_dir) / "recordings"
    if not rec.is_dir():
        return []
    return sorted([*rec.glob("accel/*.f32"), *rec.glob("power/*.h5")])


def _check_integrity(db: sqlite3.Connection, path: Path) -> None:
    try:
        rows = db.execute("PRAGMA quick_check").fetchall()
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:  # 'not a database', 'malformed' -> StoreDamaged; 'locked' stays
        raise _plain(exc, path) from exc
    result = [r[0] for r in rows]
    if result != ["ok"]:
        raise StoreDamaged(path, "; ".join(map(str, result[:3])))


def list_backups(data_dir: str | Path) -> list[Path]:
    """Backups of the database in ``data_dir``, newest first."""
    folder = Path(data_dir) / BACKUP_DIR
    if not folder.is_dir():
        return []
    return sorted(folder.glob("odlstudio-*.sqlite"), key=lambda p: p.name, reverse=True)


def _set_aside(data_dir: Path) -> Path | None:
    """Move the damaged database (and its -wal/-shm) to ``odlstudio.sqlite.damaged-<time>``; returns it."""
    db = Path(data_dir) / Store.FILENAME
    if not db.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = db.with_name(f"{db.name}.damaged-{stamp}")
    k = 1
    while kept.exists():
        kept = db.with_name(f"{db.name}.damaged-{stamp}-{k}")
        k += 1
    try:
        os.replace(db, kept)
        for extra in ("-wal", "-shm"):
            side = db.with_name(db.name + extra)
            if side.exists():
                os.replace(side, kept.with_name(kept.name + extra))
    except OSError as exc:
        raise StoreError(f"cannot move the damaged database {db} aside: {exc}") from exc
    return kept


def start_new_store(data_dir: str | Path) -> Path | None:
    """Keep the damaged database aside and let the next :class:`Store` start an empty one (recording files
    stay where they are; :func:`rebuild_store` can still adopt them later).  Returns where the damaged
    file went."""
    data_dir = Path(data_dir)
    kept = _set_aside(data_dir)
    _quarantine_files(data_dir)
    return kept


def _quarantine_files(data_dir: Path) -> None:
    """A new, empty store beside old recording files would be taken for a damaged one at the next start:
    move the files to ``recordings.old-<time>`` (kept, never deleted)."""
    rec = data_dir / "recordings"
    if _recording_files(data_dir):
        os.replace(rec, data_dir / f"recordings.old-{time.strftime('%Y%m%d-%H%M%S')}")


def restore_backup(data_dir: str | Path, backup: str | Path | None = None) -> dict:
    """Put the newest good backup (or ``backup``) in place of the damaged database, which is kept aside.
    Recording files made after the backup are added back as recovered rows (see :func:`rebuild_store`).
    Returns ``backup`` (the path of the backup used), ``recordings`` (how many files were added back) and
    ``unreadable`` (the names of recording files that could not be read: they stay in ``recordings/``).
    Raises :class:`StoreError` when there is no usable backup."""
    data_dir = Path(data_dir)
    candidates = [Path(backup)] if backup is not None else list_backups(data_dir)
    for cand in candidates:
        try:
            con = sqlite3.connect(f"file:{cand}?mode=ro", uri=True)
            try:
                ok = con.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            finally:
                con.close()
        except sqlite3.Error:
            ok = False
        if not ok:
            continue
        damaged = _set_aside(data_dir)
        shutil.copyfile(cand, data_dir / Store.FILENAME)
        store = Store(data_dir)
        try:
            added, unreadable = _adopt_files(store, _salvage_sources(damaged))
        finally:
            store.close()
        return {"backup": cand, "recordings": added, "unreadable": unreadable}
    raise StoreError(f"no usable backup of the database in {data_dir / BACKUP_DIR}")


def rebuild_store(data_dir: str | Path) -> dict:
    """Keep the damaged database aside and build a new one from what can still be read: rows of the
    damaged file that SQLite can still read (users, datasets, recordings, labels, markers), else the
    newest backup's, and every recording file in ``recordings/`` (power files carry their rate and
    voltage; an accel file without a readable row gets the default rate and says so).  Returns counts, and
    ``unreadable``: the names of the recording files that could not be read (they stay in ``recordings/``)."""
    data_dir = Path(data_dir)
    damaged = _set_aside(data_dir)
    store = Store(data_dir, adopting=True)
    try:
        sources = _salvage_sources(damaged)
        labels = _copy_rows(store, sources)
        added, unreadable = _adopt_files(store, sources)
        return {
            "recordings": added,
            "labels": labels,
            "damaged": str(damaged) if damaged else "",
            "unreadable": unreadable,
        }
    finally:
        store.close()


def _salvage_sources(damaged: Path | None) -> list[sqlite3.Connection]:
    """Read-only connections to the damaged file (if SQLite can still read it) and the newest backups."""
    out = []
    paths = ([damaged] if damaged is not None else []) + (
        list_backups(damaged.parent)[:1] if damaged is not None else []
    )
    for p in paths:
        try:
            con = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
            con.row_factory = sqlite3.Row
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            out.append(con)
        except sqlite3.Error:
            continue
    return out


def _read_rows(cons: list[sqlite3.Connection], table: str) -> list[dict]:
    """Every row of ``table`` readable in the first source that has it; rows past a damaged page are lost."""
    for con in cons:
        rows: list[dict] = []
        try:
            for r in con.execute(f"SELECT * FROM {table} ORDER BY id"):  # noqa: S608 - fixed table names
                rows.append(dict(r))
        except sqlite3.Error:
            pass
        if rows:
            return rows
    return []


def _copy_rows(store: Store, cons: list[sqlite3.Connection]) -> int:
    """Users, datasets, recordings (whose file exists), labels and markers from the sources; returns the
    number of labels kept."""
    users = {r["id"]: r for r in _read_rows(cons, "users")}
    datasets = _read_rows(cons, "datasets")
    recs = _read_rows(cons, "recordings")
    n_labels = 0
    with store.transaction():
        for u in users.values():
            store._exec(  # noqa: SLF001
                "INSERT OR IGNORE INTO users(id, name, created) VALUES (?,?,?)", (u["id"], u["name"], u["created"])
            )
        for d in datasets:
            if d["user_id"] in users:
                store._exec(  # noqa: SLF001
                    "INSERT OR IGNORE INTO datasets(id, user_id, name, classes, created) VALUES (?,?,?,?,?)",
                    (d["id"], d["user_id"], d["name"], d["classes"], d["created"]),
                )
        for u in users.values():
            store._exec("UPDATE users SET dataset_id=? WHERE id=?", (u["dataset_id"], u["id"]))  # noqa: SLF001
        known_ds = {r["id"] for r in store._rows("SELECT id FROM datasets")}  # noqa: SLF001
        for r in recs:
            path = store.resolve(r["path"]) if not os.path.isabs(r["path"]) else Path(r["path"])
            if not path.is_file():
                continue
            status = "recovered" if r["status"] == "recording" else r["status"]
            store._exec(  # noqa: SLF001
                "INSERT OR IGNORE INTO recordings(id, dataset_id, session_id, kind, name, path, rate_hz, channels, "
                "n_samples, t_offset, started, ended, status, meta) VALUES (?,?,NULL,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    r["id"],
                    r["dataset_id"] if r["dataset_id"] in known_ds else None,
                    r["kind"],
                    r["name"],
                    r["path"],
                    r["rate_hz"],
                    r["channels"],
                    r["n_samples"],
                    r["t_offset"],
                    r["started"],
                    r["ended"],
                    status,
                    r["meta"],
                ),
            )
        known = {r["id"] for r in store._rows("SELECT id FROM recordings")}  # noqa: SLF001
        for lab in _read_rows(cons, "labels"):
            if lab["recording_id"] in known and not lab["deleted"]:
                store._exec(  # noqa: SLF001
                    "INSERT OR IGNORE INTO labels(id, recording_id, start_s, end_s, label, deleted, updated) "
                    "VALUES (?,?,?,?,?,0,?)",
                    (lab["id"], lab["recording_id"], lab["start_s"], lab["end_s"], lab["label"], lab["updated"]),
                )
                n_labels += 1
        for m in _read_rows(cons, "markers"):
            if m["recording_id"] in known:
                store._exec(  # noqa: SLF001
                    "INSERT OR IGNORE INTO markers(id, session_id, recording_id, name, t_s, created) "
                    "VALUES (?,NULL,?,?,?,?)",
                    (m["id"], m["recording_id"], m["name"], m["t_s"], m["created"]),
                )
    return n_labels


def _adopt_files(store: Store, cons: list[sqlite3.Connection]) -> tuple[int, list[str]]:
    """Add a row for every recording file that has none (its id is its file name); returns how many, and
    the names of the files that could not be read (left out; they stay where they are)."""
    known = {Path(r.path).name for r in store.recordings()}
    old = {r["id"]: r for r in _read_rows(cons, "recordings")}
    added = 0
    unreadable: list[str] = []
    for path in _recording_files(store.data_dir):
        if path.name in known or not path.stem.isdigit():
            continue
        rid: int | None = int(path.stem)  # None below when that id is taken: the row gets a new one
        kind = "accel" if path.suffix == ".f32" else "power"
        rel = f"recordings/{kind}/{path.name}"
        row = old.get(rid)
        meta: dict = {"rebuilt_from": "file"}
        if kind == "accel":
            n = path.stat().st_size // 12
            rate = float(row["rate_hz"]) if row and row["kind"] == "accel" else 52.0
            if not row:
                meta["note"] = "rate unknown (database damaged): assumed 52 Hz, the app's default"
            channels = 3
        else:
            try:
                from app.core.recording import power_file_info  # noqa: PLC0415 - recording imports store

                info = power_file_info(path)
            except Exception:  # noqa: BLE001 - a damaged file is left out (it stays in recordings/power)
                unreadable.append(path.name)
                continue
            n, rate, channels = info["n"], info["rate_hz"], 1
            meta.update(voltage=info["voltage"], unit="A")
        if store._rows("SELECT id FROM recordings WHERE id=?", (rid,)):  # noqa: SLF001 - id taken: new id
            rid = None
        store._insert(  # noqa: SLF001
            "INSERT INTO recordings(id, dataset_id, session_id, kind, name, path, rate_hz, channels, n_samples, "
            "t_offset, started, status, meta) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                rid,
                None,
                store.session_id,
                kind,
                row["name"] if row else f"recovered {kind} {path.stem}",
                rel,
                rate,
                channels,
                int(n),
                float(row["t_offset"]) if row else 0.0,
                float(row["started"]) if row else path.stat().st_mtime,
                "recovered",
                json.dumps(meta),
            ),
        )
        added += 1
    return added, unreadable


def _statements(script: str) -> Iterator[str]:
    for stmt in script.split(";"):
        if stmt.strip():
            yield stmt


def _interval(a: float, b: float) -> tuple[float, float]:
    a, b = float(a), float(b)
    if not (a == a and b == b):
        raise StoreError(f"label bounds must be numbers, got {a}, {b}")
    if b < a:
        a, b = b, a
    if b - a <= 0:
        raise StoreError(f"label [{a}, {b}] s is empty")
    return a, b


def _recording(r: sqlite3.Row) -> Recording:
    return Recording(
        r["id"],
        r["dataset_id"],
        r["kind"],
        r["name"],
        r["path"],
        r["rate_hz"],
        r["channels"],
        r["n_samples"],
        r["t_offset"],
        r["started"],
        r["ended"],
        r["status"],
        json.loads(r["meta"]),
    )


def _app_version() -> str:
    try:
        from app import __version__

        return __version__
    except Exception:  # pragma: no cover  # noqa: BLE001 - a broken install still opens its store
        return "?"
