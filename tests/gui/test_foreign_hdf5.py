"""Issue 13 item 9: the Power panel's "Open…" on a foreign HDF5 file — a group where a dataset is expected,
``rate_hz="fast"``, a scalar dataset, bad ``gaps`` — ends in a message naming the file (it raised past the
panel's handler, which catches only RecordingError)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from app.core.recording import RecordingError, open_power, register_power_file
from app.core.store import Store


def _group_for_current(f):
    f.create_group("current")
    f.attrs["rate_hz"] = 1000.0


def _text_rate(f):
    ds = f.create_dataset("samples", data=np.ones(100))
    ds.attrs["rate_hz"] = "fast"


def _scalar_current(f):
    f.create_dataset("current", data=1.5)
    f.attrs["rate_hz"] = 1000.0


def _bad_gaps(f):
    f.create_dataset("current", data=np.ones(100, np.float32))
    f.attrs["rate_hz"] = 1000.0
    f.attrs["gaps"] = np.array([1.0, 2.0, 3.0])


def _text_gaps(f):
    f.create_dataset("current", data=np.ones(100, np.float32))
    f.attrs["rate_hz"] = 1000.0
    f.attrs["gaps"] = "soon"


def _two_d_samples(f):
    ds = f.create_dataset("samples", data=np.ones((10, 10)))
    ds.attrs["rate_hz"] = 1000.0


def _nan_rate(f):
    f.create_dataset("current", data=np.ones(100, np.float32))
    f.attrs["rate_hz"] = np.nan


def _string_current(f):
    f.create_dataset("current", data=np.array([b"a", b"b"]))
    f.attrs["rate_hz"] = 1000.0


FOREIGN = {
    "group_for_current": (_group_for_current, "is a group, not a dataset"),
    "text_rate": (_text_rate, "'rate_hz' is 'fast', not a finite number"),
    "scalar_current": (_scalar_current, "expected a 1-D numeric array"),
    "bad_gaps": (_bad_gaps, "'gaps' is not a list of (start, end) times"),
    "text_gaps": (_text_gaps, "'gaps' is not a list of (start, end) times"),
    "two_d_samples": (_two_d_samples, "expected a 1-D numeric array"),
    "nan_rate": (_nan_rate, "not a finite number"),
    "string_current": (_string_current, "expected a 1-D numeric array"),
}


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_foreign_hdf5_is_a_recording_error_naming_the_file(tmp_path, kind):
    make, needle = FOREIGN[kind]
    path = tmp_path / f"{kind}.h5"
    with h5py.File(path, "w") as f:
        make(f)
    store = Store(tmp_path / "data")
    try:
        with pytest.raises(RecordingError) as err:
            rec = register_power_file(store, path)
            open_power(store, rec)  # reached only if registering accepted it
        assert str(path) in str(err.value) and needle in str(err.value)
    finally:
        store.close()


def test_file_of_a_killed_writer_says_run_repair(tmp_path):
    """A writer killed without SWMR mode leaves HDF5's write flags set: the message says what to do (run
    'odlstudio repair'), not HDF5's "Unable to synchronously open file (file is not already open for SWMR
    writing)"; after the repair the file opens."""
    import os
    import subprocess
    import sys

    from app.commands.repair import repair_file
    from app.core.recording import power_file_info

    path = tmp_path / "killed.h5"
    code = (
        "import os, sys, h5py, numpy as np\n"
        "f = h5py.File(sys.argv[1], 'w', libver='latest')\n"
        "f.create_dataset('current', data=np.ones(100, np.float32))\n"
        "f.attrs['rate_hz'] = 1000.0\n"
        "f.flush()\n"
        "os._exit(0)\n"  # no close: the flags stay set, as after a kill
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60, env=dict(os.environ))
    with pytest.raises(RecordingError) as err:
        power_file_info(path)
    msg = str(err.value)
    assert str(path) in msg and "run 'odlstudio repair FILE'" in msg
    assert "SWMR" not in msg and "synchronously" not in msg
    repair_file(path, settle_s=0.0)
    assert power_file_info(path)["n"] == 100


def test_power_panel_open_on_a_foreign_file_says_so(power_window, qtbot, tmp_path):
    _win, panel = power_window
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        _group_for_current(f)
    said: list[str] = []

    def close_box():
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox):
            said.append(box.text())
            box.accept()
        else:
            QTimer.singleShot(20, close_box)

    QTimer.singleShot(20, close_box)
    panel.open_file(str(path))  # raised a KeyError/TypeError past the handler before
    assert said and str(path) in said[0] and "is a group" in said[0]
    assert panel.replay is None
