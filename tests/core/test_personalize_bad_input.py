"""`odlstudio personalize --data windows.npz`: a damaged or foreign .npz gives a clear PersonalizeError
naming the file and the problem, never a traceback (hypothesis-fuzzed)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.personalize import PersonalizeError, _load_window_npz

CLASSES = ("walking", "jogging", "stairs", "sitting", "standing")


def _good_npz() -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(
        buf,
        X=rng.standard_normal((12, 20, 3)).astype(np.float32),
        y=np.repeat(np.arange(2), 6),
        classes=np.array(["walking", "jogging"]),
        stride=np.int64(20),
        rate_hz=np.float64(20.0),
    )
    return buf.getvalue()


GOOD = _good_npz()


@pytest.mark.parametrize(
    "content,needle",
    [
        (b"", "a damaged windows .npz: its arrays cannot be read"),
        (GOOD[: len(GOOD) // 2], "a damaged windows .npz: its arrays cannot be read"),
        (b"PK\x03\x04garbage" * 10, "a damaged windows .npz: its arrays cannot be read"),
    ],
)
def test_truncated_or_garbage_file(tmp_path: Path, content: bytes, needle: str):
    p = tmp_path / "w.npz"
    p.write_bytes(content)
    with pytest.raises(PersonalizeError, match=needle):
        _load_window_npz(p, CLASSES, 20, 0.6, None)


def _corrupt(data: bytes) -> bytearray:
    """A compressed windows export with bytes flipped inside its first member's data (its directory intact)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **dict(np.load(io.BytesIO(data))))
    raw = bytearray(buf.getvalue())
    for i in range(200, 260):
        raw[i] ^= 0xFF
    return raw


def test_missing_arrays_and_nan_windows(tmp_path: Path):
    p = tmp_path / "w.npz"
    np.savez(p, X=np.zeros((4, 20, 3), np.float32))
    with pytest.raises(PersonalizeError, match=r"missing array\(s\) y, classes"):
        _load_window_npz(p, CLASSES, 20, 0.6, None)
    X = np.zeros((4, 20, 3), np.float32)
    X[1, 3, 0] = np.nan
    np.savez(p, X=X, y=np.zeros(4, np.int64), classes=np.array(["walking"]))
    with pytest.raises(PersonalizeError, match="NaN or Inf"):
        _load_window_npz(p, CLASSES, 20, 0.6, None)
    np.savez(p, X=np.array([object()], dtype=object), y=np.zeros(1), classes=np.array(["walking"]))
    with pytest.raises(PersonalizeError) as e:  # object arrays are never unpickled
        _load_window_npz(p, CLASSES, 20, 0.6, None)
    assert str(e.value) == (
        f"--data {p}: an array of this windows file holds Python objects (a pickle), which are never loaded"
    )
    p.write_bytes(bytes(_corrupt(GOOD)))
    with pytest.raises(PersonalizeError) as e:  # was: "unexpected error: error: Error -3 while decompressing data"
        _load_window_npz(p, CLASSES, 20, 0.6, None)
    assert str(e.value) == (
        f"--data {p}: a damaged windows .npz: its arrays cannot be read (truncated or corrupt data); export it again"
    )


def test_a_npy_renamed_npz_is_named_not_a_crash(tmp_path: Path):
    """Was: "unexpected error: TypeError: 'numpy.ndarray' object does not support the context manager protocol"."""
    from app.core.personalize import load_user_data

    p = tmp_path / "w.npz"
    np.save(tmp_path / "w.npy", np.zeros((4, 20, 3), np.float32))
    (tmp_path / "w.npy").rename(p)
    with pytest.raises(PersonalizeError) as e:
        load_user_data(p, CLASSES, 20)
    assert str(e.value).startswith(
        f"--data {p}: a single NumPy array (.npy, not a .npz of named arrays), which --data does not take; it takes "
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pos=st.integers(0, len(GOOD) - 1), val=st.integers(0, 255), cut=st.integers(0, len(GOOD)))
def test_fuzzed_bytes_give_clear_errors_only(tmp_path: Path, pos: int, val: int, cut: int):
    data = bytearray(GOOD)
    data[pos] = val
    p = tmp_path / "f.npz"
    p.write_bytes(bytes(data[:cut]))
    try:
        _load_window_npz(p, CLASSES, 20, 0.6, None)
    except PersonalizeError as exc:
        assert str(p) in str(exc)


def test_user_seen_in_pretraining_is_flagged():
    from app.core.personalize import _seen_in_pretraining

    meta = {"train_subjects": ["1604", "1606"], "val_subjects": ["1617"], "excluded_subjects": ["1600"]}
    assert _seen_in_pretraining(meta, "1604") == "training"
    assert _seen_in_pretraining(meta, "wisdm2019/1617") == "validation"
    assert _seen_in_pretraining(meta, "1600") is None
    assert _seen_in_pretraining({}, "1604") is None
