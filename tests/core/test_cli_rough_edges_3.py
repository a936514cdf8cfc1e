"""Three rough edges of the CLI (brief F): a disk that fills within milliseconds of ``power --out x.h5``'s
start, the "personalize also takes the app's windows .npz" clause shown to ``pretrain`` users, and
``personalize --out DIR --overwrite`` after a run started from another folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from device.lpm01a.recorder import read_capture
from tests.diskkit import ROOT

# --- 1. power --out x.h5: the disk fills between the start's test write and HDF5's first flush ---------------
# The child starts a virtual bench and runs `odlstudio power --out` against it.  When the capture file's test
# write has been cut back (its ``ftruncate``), the file-size limit is lowered to the file's size plus ``room``
# bytes: the disk has ``room`` bytes left right after the check.  The free-space check before each flush is
# blinded (a quota it cannot see), so the refusal comes from HDF5's own write.
_FILLS_AFTER_THE_CHECK = r"""
import os, resource, signal, sys
import device.lpm01a.recorder as recorder
from device.bench import VirtualBench
from app.cli import main

recorder.room_left = lambda path: 1 << 40
out, room = sys.argv[1], int(sys.argv[2])
real_ftruncate = os.ftruncate

def ftruncate(fd, length):
    real_ftruncate(fd, length)
    if os.path.exists(out) and os.fstat(fd).st_ino == os.stat(out).st_ino:
        os.ftruncate = real_ftruncate
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (length + room, resource.RLIM_INFINITY))

os.ftruncate = ftruncate
bench = VirtualBench(board=False)
port = bench.start()["power_monitor"]
try:
    code = main(["power", "--port", port, "--duration", "0.3", "--quiet", "--json", "--out", out])
finally:
    bench.stop()
sys.exit(code)
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("room", [0, 100, 2000, 5000])
def test_power_out_on_a_disk_that_fills_right_after_the_start_check_exits_cleanly(tmp_path, room):
    """Was (room 100..5000): "odlstudio power: --out …: cannot write it: file too large", then h5py's
    "Exception ignored in: 'h5py._objects.ObjectID.__dealloc__'" tracebacks ("Can't decrement id ref count (file
    write failed: …)") and a segmentation fault (exit -11) at exit: HDF5 met the full disk while it started the
    file and could neither flush nor close it.  Now the file's layout is part of the start's own (plain) write,
    HDF5's start rewrites those bytes in place, and the full disk is met by the first flush of samples: the
    disk-full path, exit 1, one line, a file that says it holds nothing."""
    out = tmp_path / "cap.h5"
    r = subprocess.run(
        [sys.executable, "-c", _FILLS_AFTER_THE_CHECK, str(out), str(room)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    message = (
        f"disk full: the disk filled up while writing for {out}; stopped writing after 0 samples "
        "(the file is complete up to there)"
    )
    assert r.stderr == f"odlstudio power: {message}\n"
    assert r.returncode == 1
    result = json.loads(r.stdout)
    assert (result["error"], result["out_samples"], result["out_complete"]) == (message, 0, False)
    assert result["samples"] == 300  # every sample received is counted in the JSON
    with h5py.File(out, "r") as f:  # a plain reader opens it: the flags were cleared
        assert [int(v) for v in f["status"][()]] == [0, 0, 0, 2]  # holds 0 positions, stopped: disk full
    assert read_capture(out)["samples"].size == 0  # readers trust /status (the failed flush may have grown it)


# --- 2. what --data takes: pretrain is not told about personalize's windows .npz ----------------------------------
_TAKES = (
    "it takes WISDM accelerometer text (data_<id>_accel_phone.txt or WISDM_ar_v1.1_raw.txt files of "
    "'user,activity,timestamp,x,y,z;' records, the app's WISDM export, or a folder of them) or a HAPT .npz (arrays "
    "acc, label, user, session)"
)
_MODEL = ROOT / "assets" / "models" / "paper_cnn_wisdm5_T20.keras"


def test_pretrain_data_of_another_kind_lists_only_what_pretrain_takes(tmp_path, capsys):
    """Was: "...; personalize also takes the app's windows .npz (arrays X, y, classes)" — a clause about another
    command, read by a pretrain user (who had just given a windows .npz, which pretrain cannot use)."""
    from app.cli import main
    from tests.core.test_data_file_kinds import windows_npz

    npz = windows_npz(tmp_path / "w.npz")
    assert main(["pretrain", "--data", str(npz), "-T", "20", "--out", str(tmp_path / "m.keras")]) == 2
    assert capsys.readouterr().err == (
        f"odlstudio pretrain: --data {npz}: a windows .npz of the app's labels export (arrays X, y, classes, size, "
        f"stride, rate_hz, meta), which --data does not take; {_TAKES}\n"
    )
    assert main(["pretrain", "--data", str(_MODEL), "-T", "20", "--out", str(tmp_path / "m.keras")]) == 2
    assert capsys.readouterr().err == (
        f"odlstudio pretrain: --data {_MODEL}: a Keras model (.keras), which --data does not take; {_TAKES}\n"
    )


def test_personalize_data_of_another_kind_still_names_the_windows_npz():
    from app.core.personalize import PersonalizeError, load_user_data

    with pytest.raises(PersonalizeError) as err:
        load_user_data(_MODEL, ["walking", "jogging"], 20)
    assert str(err.value) == (
        f"--data {_MODEL}: a Keras model (.keras), which --data does not take; {_TAKES}, or the app's windows .npz "
        "(arrays X, y, classes)"
    )


# --- 3. personalize --out DIR --overwrite after a run started from another folder -----------------------------------
def _earlier_run(out: Path, listed: dict[str, dict[str, str]]) -> None:
    """What an earlier run leaves: the files and its report.json listing them as that run wrote them."""
    (out / "report.json").write_text(json.dumps({"outputs": listed}), encoding="utf-8")


def test_overwrite_from_another_folder_removes_the_earlier_runs_files_and_nothing_outside(tmp_path, monkeypatch):
    """Was: a run started in folder A with ``--out results`` lists ``results/full/u_full.keras``…; re-run from
    folder B with ``--out A/results --overwrite``, those paths were looked up in B: the stale files stayed (and a
    folder B/results/... never was the run's)."""
    from app.core.personalize import _remove_stale, earlier_outputs

    a, b = tmp_path / "a", tmp_path / "b"
    out = a / "results"
    names = ("full/u_full_T20.keras", "full/u_full_T20.h", "tl/u_tl_T20.keras")
    for n in names:
        for where in (out, b / "results"):  # B holds files of the same relative names: not the run's
            (where / n).parent.mkdir(parents=True, exist_ok=True)
            (where / n).write_text("old")
    _earlier_run(out, {"full": {"keras": "results/full/u_full_T20.keras", "h": "results/full/u_full_T20.h"},
                       "tl": {"keras": "results/tl/u_tl_T20.keras"}})  # fmt: skip
    monkeypatch.chdir(b)
    earlier = earlier_outputs(out)
    assert earlier == [out / n for n in names]
    _remove_stale(out, earlier, {out / "tl" / "u_tl_T20.keras"})  # this run wrote tl only
    assert not (out / "full").exists()  # the earlier run's mode: its files and its emptied folder
    assert (out / "tl" / "u_tl_T20.keras").read_text() == "old"
    assert sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file()) == sorted(f"results/{n}" for n in names)


def test_a_report_naming_files_outside_its_folder_removes_none_of_them(tmp_path, monkeypatch):
    """A report.json (edited, or foreign) that lists ``../outside.txt``, an absolute path elsewhere, or a path
    that leaves the folder by ``..`` or a link: those entries are ignored without a word, their files stay."""
    from app.core.personalize import _remove_stale, earlier_outputs

    out = tmp_path / "results"
    (out / "full").mkdir(parents=True)
    outside = tmp_path / "outside.txt"
    elsewhere = tmp_path / "else" / "full" / "u.keras"
    elsewhere.parent.mkdir(parents=True)
    beyond = tmp_path / "beyond"
    beyond.mkdir()
    (out / "link").symlink_to(beyond, target_is_directory=True)
    for f in (outside, elsewhere, beyond / "v.h"):
        f.write_text("not the run's")
    listed = {
        "full": {"a": "../outside.txt", "b": str(elsewhere), "c": "results/../../outside.txt", "d": "link/v.h"},
        "link": {"e": str(out / "link" / "v.h"), "f": "results/link/v.h", "g": "../else/full/u.keras"},
    }
    _earlier_run(out, listed)
    monkeypatch.chdir(out)  # whichever folder the re-run starts from
    assert earlier_outputs(out) == []
    _remove_stale(out, earlier_outputs(out), set())  # what write_outputs does before it returns
    assert [f.read_text() for f in (outside, elsewhere, beyond / "v.h")] == ["not the run's"] * 3
