"""SQLite store: WAL, schema version, crash safety (a second connection sees every committed write)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from app.core.store import SCHEMA_VERSION, Store, StoreError


def test_wal_schema_and_session(tmp_path):
    s = Store(tmp_path)
    assert s.journal_mode() == "wal"
    assert s.schema_version == SCHEMA_VERSION
    assert s.session_id >= 1
    s.close()
    s2 = Store(tmp_path)
    assert s2.session_id == s.session_id + 1
    s2.close()


def test_newer_schema_is_refused_not_damaged(tmp_path):
    Store(tmp_path).close()
    db = sqlite3.connect(tmp_path / Store.FILENAME)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 5}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer than this app"):
        Store(tmp_path)


def test_users_datasets_settings(tmp_path):
    s = Store(tmp_path)
    u = s.ensure_user("alice")
    assert s.ensure_user("alice") == u
    ds = s.dataset(u.dataset_id)
    assert ds.classes[0] == "Walking"
    d2 = s.create_dataset(u.id, "stairs", ("Walking", "Upstairs", "Downstairs"))
    s.select_dataset(u.id, d2.id)
    assert s.user(u.id).dataset_id == d2.id
    with pytest.raises(StoreError, match="unique"):
        s.create_dataset(u.id, "bad", ("a", "a"))
    with pytest.raises(StoreError, match="already has"):
        s.create_dataset(u.id, "stairs", ("a",))
    s.set_setting("accel.odr", 52)
    assert s.get_setting("accel.odr") == 52 and s.get_setting("missing", 3) == 3
    s.close()


def test_label_is_on_disk_when_call_returns_even_if_process_dies(tmp_path):
    """A child process adds a label then is killed (os._exit, no close): the label must be there."""
    code = textwrap.dedent(f"""
        import os
        from app.core.store import Store
        s = Store({str(tmp_path)!r})
        r = s.add_recording('accel', 'seg', 'rec/1.f32', 52.0, 3)
        s.add_label(r.id, 1.0, 2.5, 'Walking')
        s.add_marker('batch0', 0.25)
        os._exit(9)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 9, out.stderr
    s = Store(tmp_path)
    rec = s.recordings("accel")[0]
    assert [(l.start_s, l.end_s, l.label) for l in s.labels(rec.id)] == [(1.0, 2.5, "Walking")]
    assert s.unfinished_recordings()[0].id == rec.id
    s.close()


def test_bad_label_bounds(tmp_path):
    s = Store(tmp_path)
    r = s.add_recording("accel", "x", "x.f32", 20.0, 3)
    with pytest.raises(StoreError, match="empty"):
        s.add_label(r.id, 1.0, 1.0, "Walking")
    with pytest.raises(StoreError, match="kind"):
        s.add_recording("video", "x", "x", 1.0, 1)
    s.close()


def test_transaction_rolls_back(tmp_path):
    s = Store(tmp_path)
    r = s.add_recording("accel", "x", "x.f32", 20.0, 3)
    with pytest.raises(RuntimeError):
        with s.transaction():
            s.add_label(r.id, 0, 1, "Walking")
            raise RuntimeError("boom")
    assert s.labels(r.id) == []
    s.close()


def test_rounds_and_measurements(tmp_path):
    s = Store(tmp_path)
    rid = s.add_round({"mode": "tl", "input": 20})
    s.update_round(rid, status="done", result={"f1": 0.9})
    assert s.rounds()[0]["result"] == {"f1": 0.9} and s.rounds()[0]["ended"] is not None
    s.add_measurement("energy", {"J": 1e-3}, 0.0, 1.0)
    assert s.measurements("energy")[0]["data"] == {"J": 1e-3}
    s.close()
