"""start_export: what the status bar says after an export task, for each way it can end — and the file
written whole or not at all (the panels' exports run through it)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui


@pytest.fixture()
def runner(qtbot):
    from app.ui.tasks import TaskRunner

    r = TaskRunner()
    yield r
    r.shutdown()


def _run(qtbot, runner, path, work):
    from app.ui.tasks import start_export

    said: list[tuple[str, int]] = []
    task = start_export(runner, lambda text, ms: said.append((text, ms)), str(path), work, "windows")
    qtbot.waitUntil(lambda: task.finished, timeout=10_000)
    return task, said


def test_done_says_how_many_and_where(qtbot, runner, tmp_path):
    """A finished export names the count (thousands separated), the unit and the file."""
    path = tmp_path / "w.npz"

    def work(check):
        check()
        path.write_text("x")
        return 12345

    task, said = _run(qtbot, runner, path, work)
    assert task.result == 12345 and said == [(f"Exported 12,345 windows to {path}", 10000)]


def test_a_failure_says_the_reason_in_the_system_words(qtbot, runner, tmp_path):
    """An OSError is said by its strerror (no errno, no temporary file name) naming the file it was writing (the
    Power panel's CSV export said the system's words alone); any other error by its message."""
    out = tmp_path / "w.npz"

    def disk_full(check):
        raise OSError(28, "No space left on device", str(tmp_path / ".w.tmp123.npz"))

    task, said = _run(qtbot, runner, out, disk_full)
    assert task.error == f"cannot write {out}: No space left on device"
    assert said == [(f"Export failed, nothing was written: cannot write {out}: No space left on device", 15000)]

    def read_only(check):  # (an OSError without a file name: the export's own file)
        raise OSError(30, "Read-only file system")

    _, said = _run(qtbot, runner, out, read_only)
    assert said == [(f"Export failed, nothing was written: cannot write {out}: Read-only file system", 15000)]

    def unreadable_input(check):  # an input read on the way: named as what could not be read
        raise PermissionError(13, "Permission denied", "/data/recordings/accel/7.f32")

    _, said = _run(qtbot, runner, out, unreadable_input)
    assert said == [
        ("Export failed, nothing was written: cannot read /data/recordings/accel/7.f32: Permission denied", 15000)
    ]

    def missing(check):
        raise FileNotFoundError(2, "No such file or directory", str(tmp_path / "gone" / ".w.tmp1.npz"))

    _, said = _run(qtbot, runner, tmp_path / "gone" / "w.npz", missing)
    assert said == [
        (
            f"Export failed, nothing was written: cannot write {tmp_path / 'gone' / 'w.npz'}: the folder "
            f"{tmp_path / 'gone'} does not exist",
            15000,
        )
    ]

    def onto_a_folder(check):
        raise IsADirectoryError(21, "Is a directory", str(tmp_path))

    _, said = _run(qtbot, runner, tmp_path, onto_a_folder)
    assert said == [(f"Export failed, nothing was written: cannot write {tmp_path}: it is a folder", 15000)]

    def no_labels(check):
        raise ValueError("no recording of dataset 'd' has labels yet")

    _, said = _run(qtbot, runner, tmp_path / "w.npz", no_labels)
    assert said == [("Export failed, nothing was written: no recording of dataset 'd' has labels yet", 15000)]


def test_a_cancel_before_the_write_says_nothing_was_written(qtbot, runner, tmp_path):
    """Cancel while the export still reads: ``check()`` raises, nothing is written, and it is said so."""
    path = tmp_path / "w.npz"

    def work(check):
        runner.cancel_all()  # the task bar's Cancel
        check()
        path.write_text("x")  # never reached
        return 1

    task, said = _run(qtbot, runner, path, work)
    assert task.error == "cancelled" and not path.exists()
    assert said == [(f"Export cancelled, nothing was written to {path}", 15000)]


def test_a_cancel_after_the_write_says_the_file_was_written(qtbot, runner, tmp_path):
    """Cancel that reaches the task after its file is complete: the file is whole, and the sentence says it was
    written (not "nothing was written", which would send the user to look for an older file that is gone)."""
    path = tmp_path / "w.npz"

    def work(check):
        check()
        path.write_text("x")
        runner.cancel_all()
        return 7

    task, said = _run(qtbot, runner, path, work)
    assert task.error == "cancelled" and path.read_text() == "x"
    assert said == [(f"Export cancelled too late: {path} was written whole (7 windows)", 15000)]
