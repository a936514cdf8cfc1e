"""Issue 13 items 4, 6, 7, 8: hostile and absurd files.

* WISDM export round-trips any user name (items 4);
* zip bombs (a member declaring 1.5 GiB, a 1 GiB ``config.json``) are refused before anything is extracted,
  with bounded memory (item 6);
* huge junk data files are parsed in bounded memory, given up early with a correct count (item 7);
* absurd values: 1e30 in a data file, NaN weights in a model (item 8).

Hostile files are generated in tmp_path without needing GBs: sizes are *declared* in zip headers, junk is
written once and parsed in chunks."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from app.core import datasets as ds
from app.core.labels import Label, LabelError, export_wisdm_csv, read_wisdm

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "assets" / "models" / "paper_cnn_wisdm5_T20.keras"


# --- item 4: WISDM export escapes user names ---------------------------------------------------------
@pytest.mark.parametrize("user", ["Ann, Smith", "bob;1600", "007", "+5", "50% sure", "line\nbreak", "Zoë", "1600"])
def test_wisdm_export_round_trips_any_user_name(tmp_path, user):
    path = tmp_path / "export.txt"
    n = export_wisdm_csv(path, user, np.full((2400, 3), 1.5), 20.0, [Label(1, 0.0, 120.0, "Walking")])
    assert n == 2400
    rs = read_wisdm(path)
    assert {s.subject for s in rs.segments} == {user}  # was: nothing, or user 1600
    assert sum(s.n for s in rs.segments) == 2400 and rs.skipped_count == 0


def test_wisdm_export_refuses_a_class_the_format_cannot_carry(tmp_path):
    with pytest.raises(LabelError, match="'walk, fast' cannot be written as WISDM text"):
        export_wisdm_csv(tmp_path / "x.txt", "ann", np.ones((40, 3)), 20.0, [Label(1, 0.0, 2.0, "walk, fast")])


# --- item 6: zip bombs --------------------------------------------------------------------------------
def _declare(path: Path, member: str, size: int) -> None:
    """Make ``member`` of the zip at ``path`` declare ``size`` uncompressed bytes (local header and central
    directory), as a crafted bomb does; its compressed data stay small."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    for sig, size_at, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        pos = data.find(sig)
        while pos >= 0:
            n_len = struct.unpack_from("<H", data, pos + (26 if sig == b"PK\x03\x04" else 28))[0]
            if bytes(data[pos + name_at : pos + name_at + n_len]) == name:
                struct.pack_into("<I", data, pos + size_at, size)
            pos = data.find(sig, pos + 4)
    path.write_bytes(bytes(data))


def _rezip(src: Path, dst: Path, replace: dict[str, bytes] | None = None) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, (replace or {}).get(info.filename, zin.read(info.filename)))


def _peak(fn):
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize(
    "member,size,needle",
    [
        ("model.weights.h5", 3 * (1 << 29), "declares 1.5 GiB once extracted"),  # the reported 1.5 MB bomb
        ("config.json", 1 << 30, "'config.json' declares 1.0 GiB"),  # the 1 GiB config that loaded
    ],
)
def test_keras_zip_bomb_refused_before_extracting(tmp_path, member, size, needle):
    from app.core.models import ModelError, load_model

    assert MODEL.is_file(), f"{MODEL} not found: the repository ships it (assets/models)"
    bomb = tmp_path / "bomb.keras"
    _rezip(MODEL, bomb)
    _declare(bomb, member, size)
    assert zipfile.ZipFile(bomb).getinfo(member).file_size == size
    err: list[Exception] = []

    def load():
        try:
            load_model(bomb)
        except ModelError as exc:
            err.append(exc)

    peak = _peak(load)
    assert err and needle in str(err[0]) and str(bomb) in str(err[0])
    assert peak < 2 << 20  # refused from the central directory: nothing inflated (was 2.5-3.5 GB)


def test_npz_data_bomb_refused(tmp_path):
    from app.core.datasets import DatasetError, load_hapt

    path = tmp_path / "hapt_raw_50hz.npz"
    n = 1000
    np.savez_compressed(
        path, acc=np.zeros((n, 3)), label=np.ones(n, int), user=np.ones(n, int), session=np.ones(n, int)
    )
    _declare(path, "acc.npy", 3 << 30)
    peak_err: list = []
    peak = _peak(lambda: peak_err.append(pytest.raises(DatasetError, load_hapt, path)))
    assert "looks like a zip bomb" in str(peak_err[0].value) or "at most" in str(peak_err[0].value)
    assert peak < 2 << 20


def test_model_npz_bomb_refused(tmp_path):
    from app.core.models import ModelError, load_model

    path = tmp_path / "m.npz"
    np.savez(path, arch_json=np.array("{}"), big=np.zeros(10))
    _declare(path, "big.npy", 1 << 30)
    with pytest.raises(ModelError, match="declares 1.0 GiB"):
        load_model(path)


def test_real_models_and_data_pass_the_limits(shared_data):
    from app.core.safezip import DATA_LIMITS, MODEL_LIMITS, check_zip

    check_zip(MODEL, MODEL_LIMITS)
    hapt = shared_data / "hapt_kcc2020" / "hapt_raw_50hz.npz"
    if hapt.is_file():
        check_zip(hapt, DATA_LIMITS)  # its label columns compress 800x: allowed, they are small


# --- item 7: huge junk data files ---------------------------------------------------------------------
# VmHWM (this process image's peak RSS), not ru_maxrss: Linux carries ru_maxrss over fork and exec, so a
# child of a pytest that holds TensorFlow would report the parent's gigabyte
_LOAD_AND_MEASURE = r"""
import sys
from app.core import datasets as ds
try:
    ds.load_wisdm(sys.argv[1])
    print("LOADED")
except ds.DatasetError as exc:
    print("ERROR", exc)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print("PEAK_MB", int(hwm) / 1024)
"""


def _load_in_child(path):
    """load_wisdm in a fresh interpreter: (its message, its peak resident memory in MB)."""
    r = subprocess.run(
        [sys.executable, "-c", _LOAD_AND_MEASURE, str(path)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    out = r.stdout
    return out.split("PEAK_MB")[0].strip(), float(out.split("PEAK_MB")[1])


def test_junk_wisdm_file_gives_up_early_with_a_correct_count(tmp_path):
    """60 MB of WISDM-looking junk (200 MB in the report: 4.6 GB RAM, 70 s, '10001 skipped'): the first
    chunk shows it is not WISDM data; reading stops there with the exact count, in bounded memory."""
    line = b"1600,A,notatime,x,y,z;\n"
    path = tmp_path / "data_1600_accel_phone.txt"
    with open(path, "wb") as fh:
        block = line * ((1 << 20) // len(line))
        for _ in range(60):
            fh.write(block)
    msg, peak_mb = _load_in_child(path)
    assert msg.startswith("ERROR") and "not WISDM accelerometer text" in msg and str(path) in msg
    m = re.search(r"text: ([\d,]+) of the first ([\d,]+) records are unreadable \(0 good\)", msg)
    bad, read = (int(g.replace(",", "")) for g in m.groups())
    # exactly the records of the first chunk (cut at a line end), then it stopped: 52 MB were never parsed
    assert bad == read == ds.WISDM_CHUNK // len(line)
    assert peak_mb < 600  # the interpreter with numpy is ~100 MB; the old parser needed > 1.3 GB here


def test_random_bytes_give_up_early(tmp_path):
    path = tmp_path / "data_1_accel_phone.txt"
    path.write_bytes(np.random.default_rng(0).bytes(40 << 20))
    msg, peak_mb = _load_in_child(path)
    # refused from its first bytes (a binary file), before parsing any: once the parse gave up after a chunk
    assert msg == f"ERROR {path}: a binary file, not WISDM text: {ds.WISDM_EXPECTED}"
    assert peak_mb < 600  # was 2.2 GB for 200 MB


def test_large_valid_file_is_streamed_and_counts_every_skip(tmp_path):
    """Good records with a bad one every 1000 lines, over several chunks: all good ones kept, every bad one
    counted (the report lists the first 10,000), line numbers right across chunk boundaries."""
    n = 300_000
    t = (np.arange(n, dtype=np.int64) + 1) * 50_000_000
    lines = [f"7,A,{ti},1.0,2.0,3.0;\n" for ti in t.tolist()]
    for k in range(0, n, 1000):
        lines[k] = "7,A,oops,1.0,2.0,3.0;\n"
    path = tmp_path / "data_7_accel_phone.txt"
    path.write_text("".join(lines))
    p, skipped, n_skipped = ds.read_wisdm_records(path, chunk=1 << 20)
    assert n_skipped == n // 1000 and len(p.ts) == n - n // 1000
    assert [s.line for s in skipped[:3]] == [1, 1001, 2001]


# --- item 8: absurd values ----------------------------------------------------------------------------
def test_absurd_accelerations_are_skipped_with_file_and_line(tmp_path):
    path = tmp_path / "data_1600_accel_phone.txt"
    good = [f"1600,A,{(k + 1) * 50_000_000},1.0,2.0,9.8;" for k in range(400)]
    good[123] = "1600,A,6200000000,1e30,2.0,9.8;"
    path.write_text("\n".join(good) + "\n")
    rs = ds.load_wisdm(path, rate=None)
    assert rs.skipped_count == 1
    s = rs.skipped[0]
    assert s.line == 124 and "beyond ±1000" in s.reason and str(path) in str(s)
    assert max(float(np.abs(seg.data).max()) for seg in rs.segments) < 100


def test_absurd_accelerations_in_hapt_and_windows_files_are_named(tmp_path):
    """The npz inputs have no lines: HAPT names the row, a windows export the window (was: accepted, and
    trained on: a RuntimeWarning 'overflow encountered in square' and a model of garbage)."""
    from app.core.personalize import PersonalizeError, _load_window_npz

    n = 600
    acc = np.tile([0.0, 0.0, 1.0], (n, 1))
    acc[321] = [1e30, 0.0, 1.0]
    hapt = tmp_path / "hapt_raw_50hz.npz"
    np.savez(hapt, acc=acc, label=np.ones(n, np.int64), user=np.ones(n, np.int64), session=np.ones(n, np.int64))
    with pytest.raises(ds.DatasetError, match=r"acc row 321 holds .* beyond ±102 g") as err:
        ds.load_hapt(hapt)
    assert str(hapt) in str(err.value)
    X = np.full((12, 20, 3), 9.8, np.float32)
    X[7, 3, 1] = 1e30
    win = tmp_path / "windows.npz"
    np.savez(win, X=X, y=np.repeat(np.arange(2), 6), classes=np.array(["walking", "jogging"]), stride=np.int64(20))
    with pytest.raises(PersonalizeError, match=r"window 7 holds 1e\+30 m/s², beyond ±1000 m/s²") as err:
        _load_window_npz(win, ("walking", "jogging"), 20, 0.6, None)
    assert str(win) in str(err.value)


def test_keras_model_with_nan_weights_is_refused_at_load(tmp_path):
    import h5py

    from app.core.models import ModelError, load_model

    assert MODEL.is_file(), f"{MODEL} not found: the repository ships it (assets/models)"
    src = tmp_path / "src"
    with zipfile.ZipFile(MODEL) as zf:
        zf.extractall(src)
    with h5py.File(src / "model.weights.h5", "r+") as f:
        names = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        ds_name = [n for n in names if "dense" in n][0]
        arr = f[ds_name][()]
        arr.flat[0] = np.nan
        f[ds_name][...] = arr
    bad = tmp_path / "nan.keras"
    with zipfile.ZipFile(bad, "w") as zout:
        for p in sorted(src.iterdir()):
            zout.write(p, p.name)
    shutil.copy(MODEL.with_suffix(".json"), bad.with_suffix(".json"))
    with pytest.raises(ModelError, match="contain NaN or Inf") as err:
        load_model(bad)
    assert str(bad) in str(err.value)


def test_diverging_training_writes_nothing(tmp_path):
    from app.core.models import ModelError, train_paper_cnn

    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (64, 20, 3)).astype(np.float32) * 1e30
    y = rng.integers(0, 2, 64)
    with pytest.raises(ModelError, match="training diverged.*NaN or Inf"):
        train_paper_cnn(x, y, ("a", "b"), epochs=1, batch_size=32, lr=1.0, progress=False)
