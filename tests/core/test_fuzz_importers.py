"""Hypothesis fuzzing of the file importers (issue #7 "Bad input"): WISDM text (v1.1 and 2019 variants,
``app.core.datasets.load_wisdm``), the labels CSV importer (``app.core.labels.import_wisdm_csv``), the npz
importers (HAPT ``load_hapt``, model ``load_model(.npz)``) and the model-file header layer of
``load_model`` (.keras zip / .h5 signature / unsupported .tflite) — 10,000 examples per target.
Asserted: only the documented error type (DatasetError / LabelError / ModelError) with a message that
names the file, never a crash, a hang or an unpickled object.  Loading a .keras/.h5 through TensorFlow
costs ~50 ms, so corrupt Keras files are fuzzed at the header/zip layer (every byte pattern that passes
it is a structurally valid archive); ``tests/core/test_models.py`` covers TF-level corruption."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from app.core import models as M
from app.core.datasets import DatasetError, load_hapt, load_wisdm
from app.core.labels import LabelError, import_wisdm_csv
from estimator.arch import Arch, Layer

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

N = int(os.environ.get("ODL_FUZZ_EXAMPLES", 10_000))
FUZZ = settings(
    max_examples=N,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.generate, Phase.shrink],
)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# --- WISDM text ---------------------------------------------------------------------------------------------
FIELDS = {
    "subject": ["1600", "33", "-1", "x", "", " 7", "99999999999999999999", "1.5"],
    "activity": ["A", "B", "Walking", "Jogging", "Sitting", "Upstairs", "Q", "", "walking ", "é", "Z"],
    "ts": ["0", "49105962326000", "49106062271000", "-5", "1e5", "", "abc", "252207918580802"],
    "value": ["0.69", "-9.81", "12.0", "nan", "inf", "-inf", "1e400", "", "3,4", "1.2.3", "-0.0", " 5"],
}
SEPS = [";\n", ";", "\n", ";\r\n", ",;\n", ";;\n", "", "\n\n"]


def wisdm_text(seed: int, n: int) -> bytes:
    rng = np.random.default_rng(seed)
    if seed % 5 == 0:
        return rng.integers(0, 256, n * 8, dtype=np.uint8).tobytes()
    base = int(rng.integers(1, 10**9)) * 1000
    good = seed % 3 != 0  # a third of the files are mostly clean records with a few quirks
    out = []
    for i in range(n):
        if good and rng.random() < 0.85:
            rec = f"{1600 + i // 20},{'ABDE'[i // 10 % 4]},{base + 50_000_000 * i},{rng.normal():.3f},{rng.normal():.3f},{rng.normal():.3f}"
        else:
            rec = ",".join(
                rng.choice(FIELDS[k])
                for k in ("subject", "activity", "ts", "value", "value", "value")[: int(rng.integers(1, 8))]
            )
        out.append(rec + SEPS[0 if good and rng.random() < 0.9 else int(rng.integers(len(SEPS)))])
    return "".join(out).encode("utf-8")


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 25), variant=st.sampled_from(["auto", "v1.1", "2019"]))
def test_fuzz_wisdm_text_importer(tmp, seed, n, variant):
    f = tmp / "data_1600_accel_phone.txt"
    f.write_bytes(wisdm_text(seed, n))
    try:
        rs = load_wisdm(f, variant=variant, activities=None, rate=None)
    except DatasetError as exc:
        assert str(f) in str(exc) or "variant" in str(exc) or "activit" in str(exc), exc
    else:
        for seg in rs.segments:
            assert seg.data.dtype == np.float32 and seg.data.shape[1] == 3 and np.isfinite(seg.data).all()
        for sk in rs.skipped:
            assert sk.line >= 1 and sk.reason


@settings(FUZZ, max_examples=max(1, N // 5))  # ~10 ms per example (it re-reads via load_wisdm, fuzzed 10k above)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 40))
def test_fuzz_labels_csv_importer(tmp, seed, n):
    f = tmp / "labels.txt"
    f.write_bytes(wisdm_text(seed, n))
    try:
        segs = import_wisdm_csv(f)
    except (LabelError, DatasetError) as exc:  # documented: DatasetError when nothing valid is in the file
        assert str(f) in str(exc), exc
    else:
        for s in segs:
            assert s.xyz.shape[1] == 3 and s.user and s.activity


# --- npz importers ---------------------------------------------------------------------------------------------
DTYPES = ["<f4", "<f8", "<i8", "<i2", "|u1", "<U5", "|S3", "|b1", "<c8", "O"]


def npz_bytes(seed: int, keys: list[str]) -> bytes:
    """An npz with the expected keys (some missing/extra), random shapes and dtypes — including object
    arrays (pickled on save: the loaders must refuse them), NaN/Inf and absurd declared sizes."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    arrays = {}
    for k in keys + ["extra"]:
        if rng.random() < 0.1:
            continue
        dt = DTYPES[int(rng.integers(len(DTYPES)))] if rng.random() < 0.3 else "<f4"
        shape = tuple(int(v) for v in rng.integers(0, 5, int(rng.integers(0, 3))))
        if dt == "O":
            arrays[k] = np.array([{"x": 1}, None], dtype=object)
        else:
            a = rng.normal(size=shape) * rng.choice([1, 1e30, np.inf, np.nan])
            arrays[k] = a.astype(dt) if dt[1] not in "USb" else a.astype(str).astype(dt) if dt[1] != "b" else a > 0
    np.savez(buf, **arrays)
    raw = bytearray(buf.getvalue())
    mode = seed % 4
    if mode == 1 and raw:  # truncated
        raw = raw[: int(rng.integers(0, len(raw)))]
    elif mode == 2 and raw:  # bit rot
        for p in rng.integers(0, len(raw), 3):
            raw[int(p)] ^= 1 << int(rng.integers(8))
    elif mode == 3:  # an .npy header that declares an absurd shape
        raw = _absurd_npz(rng, keys)
    return bytes(raw)


def _absurd_npz(rng: np.random.Generator, keys: list[str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k in keys:
            hdr = io.BytesIO()
            shape = (int(rng.integers(1, 10**6)), int(rng.integers(1, 10**6)), 3)
            np.lib.format.write_array_header_1_0(hdr, {"descr": "<f4", "fortran_order": False, "shape": shape})
            zf.writestr(f"{k}.npy", hdr.getvalue() + b"\0" * int(rng.integers(0, 64)))
    return buf.getvalue()


@FUZZ
@given(seed=st.integers(0, 2**32 - 1))
def test_fuzz_hapt_npz_importer(tmp, seed):
    f = tmp / "hapt_raw_50hz.npz"
    f.write_bytes(npz_bytes(seed, ["acc", "label", "user", "session"]))
    try:
        rs = load_hapt(f, activities=None, rate=None)
    except DatasetError as exc:
        assert str(f) in str(exc), exc
    else:
        for seg in rs.segments:
            assert seg.data.shape[1] == 3


# --- model files ------------------------------------------------------------------------------------------------
class _Good:
    """A valid small model .npz (a holder, so that hypothesis does not print its bytes on failure)."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def __repr__(self) -> str:
        return f"<model npz, {len(self.raw)} bytes>"


@pytest.fixture(scope="module")
def good_npz(tmp) -> _Good:
    from device.engine.model import Model

    arch = Arch(
        (4, 3),
        (
            Layer("conv1d", "conv1", filters=2, kernel=3),
            Layer("relu", "relu1"),
            Layer("gap1d", "gap"),
            Layer("dense", "dense1", units=3),
            Layer("softmax", "softmax"),
        ),
        ("a", "b", "c"),
    )
    p = M.export_npz((arch, Model(arch, seed=0).get_weights()), tmp / "good.npz")
    return _Good(p.read_bytes())


def mutate(rng: np.random.Generator, raw: bytes) -> bytes:
    b = bytearray(raw)
    mode = int(rng.integers(4))
    if mode == 0:
        b = b[: int(rng.integers(0, len(b)))]
    elif mode == 1:
        for p in rng.integers(0, len(b), int(rng.integers(1, 6))):
            b[int(p)] ^= 1 << int(rng.integers(8))
    elif mode == 2:
        p = int(rng.integers(0, len(b)))
        b[p:p] = rng.integers(0, 256, int(rng.integers(1, 40)), dtype=np.uint8).tobytes()
    else:
        b = bytearray(rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8).tobytes())
    return bytes(b)


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), suffix=st.sampled_from([".npz", ".keras", ".h5", ".tflite"]))
def test_fuzz_model_import(tmp, good_npz, seed, suffix):
    good = good_npz.raw
    """Truncated, bit-rotted, padded and random model files; npz with wrong shapes, NaN/Inf weights and
    absurd sizes: ModelError naming the file, or a model that passes the shape and finiteness checks."""
    rng = np.random.default_rng(seed)
    f = tmp / f"model{suffix}"
    if suffix == ".npz":
        if seed % 3 == 0:
            z = dict(np.load(io.BytesIO(good), allow_pickle=False))
            keys = sorted(k for k in z if k.startswith("w/"))
            key = keys[int(rng.integers(0, len(keys)))]
            if rng.random() < 0.5:
                z[key] = z[key].astype(np.float32) * rng.choice([np.nan, np.inf, -np.inf])
            else:
                z[key] = np.zeros(tuple(int(v) for v in rng.integers(1, 6, int(rng.integers(1, 4)))), np.float32)
            buf = io.BytesIO()
            np.savez(buf, **z)
            f.write_bytes(buf.getvalue())
        else:
            f.write_bytes(mutate(rng, good) if seed % 3 == 1 else _absurd_npz(rng, ["arch_json", "w/conv1/0"]))
        try:
            m = M.load_model(f)
        except M.ModelError as exc:
            assert str(f) in str(exc), exc
        else:
            for ws in m.weights.values():
                for a in ws:
                    assert np.isfinite(a).all()
        return
    # Keras / HDF5 / TFLite: the header and archive layer that runs before TensorFlow is touched
    head = {".keras": good, ".h5": b"\x89HDF\r\n\x1a\n" + bytes(64), ".tflite": b"TFL3" + bytes(32)}[suffix]
    f.write_bytes(mutate(rng, head))
    try:
        M._check_file(f)
    except M.ModelError as exc:
        assert str(f) in str(exc), exc
    else:
        assert suffix in (".keras", ".h5")  # .tflite is not an import format: refused by name
