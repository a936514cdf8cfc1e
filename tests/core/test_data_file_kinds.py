"""A data file given where another kind is expected, or damaged, is named for what it is (found as a new user,
2026-12-07): the HAPT npz for ``loso --dataset wisdm2019`` was parsed as text and its zip bytes quoted; the shipped
sample CSV got "no valid WISDM records (9,001 skipped)" with no word on what --data takes; a damaged windows export
was "not a HAPT npz with arrays acc/label/user/session ('acc is not a file in the archive')" though nobody said
HAPT.  Every message here is asserted whole."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from app.core import datasets as ds
from tests.datakit import synthetic_phone_file

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "assets" / "sample" / "wisdm2019_1600_sample.csv"

WISDM2019_READS = (
    "--dataset wisdm2019 reads WISDM-2019 phone accelerometer text, data_<id>_accel_phone.txt files (the folder "
    "wisdm2019_phone_accel or one of its files)"
)
HAPT_READS = (
    "--dataset hapt reads the converted UCI HAPT hapt_raw_50hz.npz (arrays acc, label, user, session) or a folder "
    "holding it"
)
#: What pretrain's --data takes (load_dataset); personalize's also takes the app's windows export.
DATA_TAKES = (
    "it takes WISDM accelerometer text (data_<id>_accel_phone.txt or WISDM_ar_v1.1_raw.txt files of "
    "'user,activity,timestamp,x,y,z;' records, the app's WISDM export, or a folder of them) or a HAPT .npz (arrays "
    "acc, label, user, session)"
)
PERSONALIZE_DATA_TAKES = f"{DATA_TAKES}, or the app's windows .npz (arrays X, y, classes)"


def hapt_npz(path: Path, n: int = 300, **change) -> Path:
    """A small HAPT npz (3 users walking); ``change`` replaces arrays (None: leaves one out)."""
    arrays = {
        "acc": np.random.default_rng(0).normal(0, 0.5, (n, 3)).astype(np.float32),
        "label": np.ones(n, np.int8),
        "user": np.repeat(np.arange(1, 4, dtype=np.int8), -(-n // 3))[:n],
        "session": np.ones(n, np.int8),
    }
    arrays.update(change)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def windows_npz(path: Path) -> Path:
    """The app's windows export (``labels.export_windows_npz``) of 40 s walking and 40 s jogging at 20 Hz."""
    from app.core.labels import Label, export_windows_npz

    xyz = np.random.default_rng(0).normal(0, 1, (1600, 3)).astype(np.float32)
    export_windows_npz(
        path, [(xyz, 20.0, [Label(0, 0, 40, "walking"), Label(1, 40, 80, "jogging")])], ["walking", "jogging"], 20
    )
    return path


def loso(tmp_path: Path, capsys, dataset: str, data: Path) -> tuple[int, str]:
    from app.cli import main

    code = main(["loso", "--dataset", dataset, "--data", str(data), "--results", str(tmp_path / "r"), "--quiet"])
    return code, capsys.readouterr().err


# --- 1. one dataset's data given for the other ------------------------------------------------------------------
def test_loso_wisdm2019_given_a_hapt_npz_names_it_and_the_dataset_that_takes_it(tmp_path, capsys):
    """Was: "not WISDM accelerometer text: 56,882 of the first 56,882 records are unreadable ... 'PK\\x03\\x04-...'"."""
    npz = hapt_npz(tmp_path / "hapt_raw_50hz.npz")
    code, err = loso(tmp_path, capsys, "wisdm2019", npz)
    assert (code, err) == (
        2,
        f"odlstudio loso: --data {npz}: a HAPT .npz (arrays acc, label, user, session), not WISDM-2019 data: "
        f"{WISDM2019_READS}; for this file give --dataset hapt\n",
    )
    assert not (tmp_path / "r").exists()  # refused before anything ran


def test_loso_wisdm2019_given_a_hapt_folder(tmp_path, capsys):
    hapt_npz(tmp_path / "hapt_raw_50hz.npz")
    code, err = loso(tmp_path, capsys, "wisdm2019", tmp_path)
    assert (code, err) == (
        2,
        f"odlstudio loso: --data {tmp_path}: a folder holding hapt_raw_50hz.npz (HAPT) and no WISDM text, not "
        f"WISDM-2019 data: {WISDM2019_READS}; for this folder give --dataset hapt\n",
    )


def test_loso_hapt_given_wisdm_text_names_it_and_the_dataset_that_takes_it(tmp_path, capsys):
    """Was: "not a HAPT npz with arrays acc/label/user/session (File is not a zip file)" for the file and
    "no hapt*.npz file found" for the folder."""
    folder = tmp_path / "wisdm"
    folder.mkdir()
    txt = synthetic_phone_file(folder, 1600)
    synthetic_phone_file(folder, 1604)
    code, err = loso(tmp_path, capsys, "hapt", txt)
    assert (code, err) == (
        2,
        f"odlstudio loso: --data {txt}: WISDM accelerometer text, not HAPT data: {HAPT_READS}; "
        "for this file give --dataset wisdm2019\n",
    )
    code, err = loso(tmp_path, capsys, "hapt", folder)
    assert (code, err) == (
        2,
        f"odlstudio loso: --data {folder}: a folder of WISDM text (2 files such as data_1600_accel_phone.txt), not "
        f"HAPT data: {HAPT_READS}; for this folder give --dataset wisdm2019\n",
    )


def test_loso_given_a_windows_export_or_the_sample(tmp_path, capsys):
    """Neither dataset: what it is and what --dataset reads, no other --dataset offered (nor the sample's
    one-subject recording: LOSO needs a dataset)."""
    npz = windows_npz(tmp_path / "mine.npz")
    code, err = loso(tmp_path, capsys, "hapt", npz)
    assert (code, err) == (
        2,
        f"odlstudio loso: --data {npz}: a windows .npz of the app's labels export (arrays X, y, classes, size, "
        f"stride, rate_hz, meta), not HAPT data: {HAPT_READS}\n",
    )
    code, err = loso(tmp_path, capsys, "wisdm2019", SAMPLE)
    assert (code, err) == (
        2,
        f"odlstudio loso: --data {SAMPLE}: the sample recording the emulated board plays back (t_s,x,y,z,activity, "
        f"cut from WISDM-2019 subject 1600), not WISDM-2019 data: {WISDM2019_READS}\n",
    )


def test_wisdm_reader_given_a_npz_does_not_quote_its_bytes(tmp_path):
    """The same reader as the app's "Import WISDM text": a HAPT npz (any name) is named, not parsed."""
    from app.core.labels import read_wisdm

    npz = hapt_npz(tmp_path / "data_1600_accel_phone.txt.npz")
    for path in (npz, shutil.copy(npz, tmp_path / "data_1600_accel_phone.txt")):
        with pytest.raises(ds.DatasetError) as err:
            read_wisdm(path)
        assert str(err.value) == (
            f"{path}: a HAPT .npz (arrays acc, label, user, session), not WISDM text: WISDM text is a "
            "data_<id>_accel_phone.txt (WISDM-2019) or WISDM_ar_v1.1_raw.txt (v1.1) file of "
            "'user,activity,timestamp,x,y,z;' records, or a folder holding them"
        )


# --- 2. the shipped sample CSV as --data ----------------------------------------------------------------------
@pytest.mark.parametrize("source_there", [True, False])
def test_personalize_given_the_shipped_sample_says_what_data_is_and_which_file_to_give(
    tmp_path, monkeypatch, source_there
):
    """Was: "--data: assets/sample/wisdm2019_1600_sample.csv: no valid WISDM records (9,001 skipped)"."""
    from app.core import loso
    from app.core.personalize import PersonalizeError, load_user_data

    shared = tmp_path / "shared"
    source = shared / "data" / "wisdm2019_phone_accel" / "raw" / "phone" / "accel" / "data_1600_accel_phone.txt"
    if source_there:
        source.parent.mkdir(parents=True)
        synthetic_phone_file(source.parent, 1600)
    monkeypatch.setattr(loso, "DEFAULT_SHARED_DATA", shared / "data")
    with pytest.raises(PersonalizeError) as err:
        load_user_data(SAMPLE, ["walking", "jogging"], 20)
    give = source if source_there else "data_1600_accel_phone.txt"
    assert str(err.value) == (
        f"--data {SAMPLE}: the sample recording the emulated board plays back (t_s,x,y,z,activity, cut from "
        f"WISDM-2019 subject 1600), which --data does not take (give that subject's recording instead: {give}); "
        f"{PERSONALIZE_DATA_TAKES}"
    )


def test_pretrain_data_given_a_labelled_samples_csv_says_how_to_use_it(tmp_path):
    """A CSV in the sample's format without its sidecar (the user's own): the formats, and how to convert."""
    csv = tmp_path / "mine.csv"
    csv.write_text("t_s,x,y,z,activity\n0.00,0.1,9.8,0.2,walking\n0.05,0.1,9.8,0.2,walking\n", encoding="utf-8")
    with pytest.raises(ds.DatasetError) as err:
        ds.load_dataset(csv)
    assert str(err.value) == (
        f"--data {csv}: a labelled-samples CSV (t_s,x,y,z,activity: the format of the recording the emulated board "
        "plays back), which --data does not take (to use it as data, write it as WISDM text, one "
        f"'user,activity,timestamp_ns,x,y,z;' record per sample); {DATA_TAKES}"
    )


def test_pretrain_data_given_a_windows_export_or_a_model(tmp_path):
    npz = windows_npz(tmp_path / "w.npz")
    with pytest.raises(ds.DatasetError) as err:
        ds.load_dataset(npz)
    assert str(err.value) == (
        f"--data {npz}: a windows .npz of the app's labels export (arrays X, y, classes, size, stride, rate_hz, "
        f"meta), which --data does not take; {DATA_TAKES}"
    )
    model = ROOT / "assets" / "models" / "paper_cnn_wisdm5_T20.keras"
    with pytest.raises(ds.DatasetError) as err:
        ds.load_dataset(model)
    assert str(err.value) == f"--data {model}: a Keras model (.keras), which --data does not take; {DATA_TAKES}"


# --- 3. a damaged windows or HAPT npz ----------------------------------------------------------------------------
def test_personalize_given_a_truncated_windows_export_says_so(tmp_path):
    """Was: "--data: x.npz: not a HAPT npz with arrays acc/label/user/session (File is not a zip file)"."""
    from app.core.personalize import PersonalizeError, load_user_data

    good = windows_npz(tmp_path / "good.npz").read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(PersonalizeError) as err:
        load_user_data(cut, ["walking", "jogging"], 20)
    assert str(err.value) == (
        f"--data: {cut}: a damaged .npz: the zip archive is cut short or corrupt (its directory at the end is "
        "missing); it starts as the app's windows export (array(s) X); copy or export it again"
    )


def test_personalize_given_a_windows_export_without_its_classes_says_which_array_is_missing(tmp_path):
    """Was: "... not a HAPT npz with arrays acc/label/user/session ('acc is not a file in the archive')"."""
    from app.core.personalize import PersonalizeError, load_user_data

    arrays = dict(np.load(windows_npz(tmp_path / "good.npz")))
    del arrays["classes"]
    path = tmp_path / "noclasses.npz"
    np.savez(path, **arrays)
    with pytest.raises(PersonalizeError) as err:
        load_user_data(path, ["walking", "jogging"], 20)
    assert str(err.value) == (
        f"--data: {path}: a windows .npz of the app's labels export without array(s) classes "
        "(has: X, y, size, stride, rate_hz, meta)"
    )


def _corrupt_member(path: Path) -> Path:
    """Flip bytes inside the first member's compressed data (the zip directory stays intact)."""
    raw = bytearray(path.read_bytes())
    for i in (200, 201, 202):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
    return path


def _truncated_hapt(tmp_path: Path) -> Path:
    good = hapt_npz(tmp_path / "good.npz").read_bytes()
    path = tmp_path / "hapt.npz"
    path.write_bytes(good[: len(good) - 100])  # every array there, the directory at the end cut
    return path


def _hapt_case(tmp_path: Path, case: str) -> Path:
    path = tmp_path / "hapt.npz"
    if case == "truncated":
        return _truncated_hapt(tmp_path)
    if case == "missing session":
        return hapt_npz(path, session=None)
    if case == "acc (n, 2)":
        return hapt_npz(path, acc=np.zeros((300, 2), np.float32))
    if case == "pickled acc":
        return hapt_npz(path, acc=np.array([{"x": 1}, None], dtype=object))
    if case == "corrupt acc":
        np.savez_compressed(path, **dict(np.load(hapt_npz(tmp_path / "good.npz"))))
        return _corrupt_member(path)
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("1600,A,1,0,0,0;\n")
    elif case == "one .npy":
        with open(path, "wb") as fh:
            np.save(fh, np.zeros(3))
    return path


HAPT_DAMAGE = {
    "truncated": "a damaged .npz: the zip archive is cut short or corrupt (its directory at the end is missing); it "
    "starts as a HAPT .npz (array(s) acc, label, user, session); copy or export it again",
    "missing session": "a HAPT .npz without array(s) session (has: acc, label, user)",
    "acc (n, 2)": "HAPT arrays of the wrong shape: acc (300, 2), label (300,), user (300,), session (300,) (expected "
    "acc (n, 3) and label, user, session (n,))",
    "pickled acc": "array acc holds Python objects (a pickle), which are never loaded",
    "corrupt acc": "a damaged .npz: array acc cannot be read (truncated or corrupt data)",
    "empty": "a damaged .npz: not a zip archive (it is empty); copy or export it again",
    "text": "a damaged .npz: not a zip archive (it starts with text); copy or export it again",
    "one .npy": "a single NumPy array (.npy, not a .npz of named arrays), not a HAPT .npz: a HAPT .npz is "
    "hapt_raw_50hz.npz with arrays acc, label, user, session, or a folder holding it",
}


@pytest.mark.parametrize("case", list(HAPT_DAMAGE))
def test_damaged_hapt_npz_says_what_is_wrong(tmp_path, case):
    """Was: "not a HAPT npz with arrays acc/label/user/session (<zipfile/numpy text>)" for all but the shape
    (then "inconsistent array shapes ...")."""
    path = _hapt_case(tmp_path, case)
    with pytest.raises(ds.DatasetError) as err:
        ds.load_hapt(path)
    assert str(err.value) == f"{path}: {HAPT_DAMAGE[case]}"


def test_loso_hapt_given_a_truncated_hapt_npz(tmp_path, capsys):
    """The command the user ran, its exit code and one line."""
    path = _truncated_hapt(tmp_path)
    code, err = loso(tmp_path, capsys, "hapt", path)
    assert (code, err) == (2, f"odlstudio loso: {path}: {HAPT_DAMAGE['truncated']}\n")


def test_sweep_and_load_recordings_given_the_other_datasets_data(tmp_path):
    """A sweep spec whose [data] for wisdm2019 is a HAPT npz gets loso's message, from the one place that loads a
    LOSO dataset (was: the npz parsed as WISDM text, its zip bytes quoted)."""
    from app.core import loso
    from app.core.sweep import SweepError, parse_spec, plan_sweep

    npz = hapt_npz(tmp_path / "hapt_raw_50hz.npz")
    with pytest.raises(loso.LosoError) as e:
        loso.load_recordings(loso.LosoConfig(dataset="wisdm2019", data=str(npz)))
    message = (
        f"--data {npz}: a HAPT .npz (arrays acc, label, user, session), not WISDM-2019 data: {WISDM2019_READS}; "
        "for this file give --dataset hapt"
    )
    assert str(e.value) == message
    doc = {"grid": {"dataset": "wisdm2019", "T": 20, "mode": "tl"}, "data": {"wisdm2019": str(npz)}}
    with pytest.raises(SweepError) as e:
        plan_sweep(parse_spec(doc, "s.toml", "s"))
    assert str(e.value) == f"s.toml: dataset wisdm2019: {message}"
