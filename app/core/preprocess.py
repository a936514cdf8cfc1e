"""Signal preprocessing shared by the dataset loaders, the model importers and the personalization
pipeline (numpy only, Qt-free, no TensorFlow).

* :func:`gravity_rot_sup` — ST model zoo's "gravity rotation and suppression" (our own implementation of
  the algorithm described in ``shared/reference/st-modelzoo-har.md`` §2.2): a fixed 4th-order IIR
  high-pass designed for 26 Hz separates the dynamic part ``d`` from gravity ``g = a - d``; ``d`` is
  then rotated (Rodrigues) so that gravity points along ``-z``.  Applied to windows it resets the
  filter for every window (how ST's v2/3 models were trained); applied to a whole ``(L, 3)`` recording
  it runs one continuous filter (v1 training and ST's firmware).
* :func:`resample_poly` — rational-ratio polyphase resampling with a Kaiser-windowed sinc anti-alias
  filter (50 Hz -> 20 Hz for HAPT, 25 Hz -> 20 Hz for WISDM-2019 subject 1607).  Ends are padded with
  the edge value so that gravity (~9.8 m/s²) is not tapered towards zero at segment boundaries.
* :func:`sliding_windows` — ``(n, T, C)`` windows of a ``(N, C)`` signal with a given stride.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

#: ST's hard-coded 26 Hz high-pass (numerator b, denominator a), transposed direct form II.
ST_HP_B = np.array([0.9364275932, -3.745710373, 5.618565559, -3.745710373, 0.9364275932])
ST_HP_A = np.array([1.0, -3.868656635, 5.614526749, -3.622760773, 0.8768966198])

PREPROCESSING = ("none", "gravity_rot_sup")


class PreprocessError(ValueError):
    """Bad arguments to a preprocessing function; the message names the argument."""


def lfilter_zi(b: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Steady-state initial state of a transposed-direct-form-II IIR filter for a unit step input."""
    b = np.asarray(b, dtype=np.float64) / a[0]
    a = np.asarray(a, dtype=np.float64) / a[0]
    n = max(len(a), len(b))
    a = np.pad(a, (0, n - len(a)))
    b = np.pad(b, (0, n - len(b)))
    companion = np.zeros((n - 1, n - 1))
    companion[0, :] = -a[1:]
    companion[1:, :-1] = np.eye(n - 2)
    i_minus_a = np.eye(n - 1) - companion.T
    rhs = b[1:] - a[1:] * b[0]
    return np.linalg.solve(i_minus_a, rhs)


_ZI = lfilter_zi(ST_HP_B, ST_HP_A)


def _highpass(x: np.ndarray) -> np.ndarray:
    """ST's high-pass along axis -2 (time) of ``x`` with shape ``(..., L, 3)``; the state starts at
    ``zi * first sample`` (1 instead of 0 when the first sample is exactly 0, as ST does)."""
    b, a = ST_HP_B, ST_HP_A
    x = np.asarray(x, dtype=np.float64)
    first = x[..., 0, :]
    scale = np.where(first == 0.0, 1.0, first)
    z = [scale * zi for zi in _ZI]  # 4 state arrays of shape (..., 3)
    y = np.empty_like(x)
    for t in range(x.shape[-2]):
        xt = x[..., t, :]
        yt = b[0] * xt + z[0]
        z[0] = b[1] * xt - a[1] * yt + z[1]
        z[1] = b[2] * xt - a[2] * yt + z[2]
        z[2] = b[3] * xt - a[3] * yt + z[3]
        z[3] = b[4] * xt - a[4] * yt
        y[..., t, :] = yt
    return y


def _rotate_dynamic(acc: np.ndarray, dyn: np.ndarray) -> np.ndarray:
    """Rotate ``dyn`` per sample so that gravity ``acc - dyn`` maps onto ``-z`` (Rodrigues)."""
    g = acc - dyn
    norm = np.linalg.norm(g, axis=-1, keepdims=True)
    g = g / np.where(norm > 0, norm, np.inf)  # no gravity at all: 0
    gx, gy, gz = g[..., 0], g[..., 1], g[..., 2]
    sin = np.sqrt(np.clip(1.0 - gz * gz, 0.0, None))
    cos = -gz
    safe = sin > 0
    inv = 1.0 / np.where(safe, sin, np.inf)
    v = np.stack([-gy * inv, gx * inv, np.zeros_like(gx)], axis=-1)  # unit axis, 0 when degenerate
    cross = np.cross(v, dyn)
    dot = np.sum(v * dyn, axis=-1, keepdims=True)
    return dyn * cos[..., None] + cross * sin[..., None] + v * dot * (1.0 - cos)[..., None]


def gravity_rot_sup(x: np.ndarray) -> np.ndarray:
    """ST gravity rotation + suppression of accelerometer data in m/s².

    ``x``: ``(L, 3)`` is processed as **one continuous stream** (ST v1 training, ST firmware: run it on
    a whole recording, then cut windows); ``(N, T, 3)`` or ST-shaped ``(N, T, 3, 1)`` windows are
    processed **each on its own**, the filter restarting at every window (ST v2/3 training).
    Returns float32 of the same shape.
    """
    arr = np.asarray(x)
    squeeze = arr.ndim == 4
    if squeeze:
        if arr.shape[-1] != 1:
            raise PreprocessError(f"4-D input must be (N, T, 3, 1), got shape {arr.shape}")
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or arr.shape[-1] != 3:
        raise PreprocessError(f"input must be (L, 3), (N, T, 3) or (N, T, 3, 1), got shape {np.shape(x)}")
    if arr.shape[-2] == 0:
        return np.zeros(np.shape(x), dtype=np.float32)
    acc = arr.astype(np.float64)
    dyn = _highpass(acc)
    out = _rotate_dynamic(acc, dyn).astype(np.float32)
    return out[..., None] if squeeze else out


def apply_preprocessing(windows: np.ndarray, preprocessing: str) -> np.ndarray:
    """Apply a model's named preprocessing (``'none'`` or ``'gravity_rot_sup'``) to ``(N, T, 3)`` windows,
    per window (the v2/3 training convention)."""
    if preprocessing == "none":
        return np.asarray(windows, dtype=np.float32)
    if preprocessing == "gravity_rot_sup":
        return gravity_rot_sup(windows)
    raise PreprocessError(f"unknown preprocessing {preprocessing!r} (known: {', '.join(PREPROCESSING)})")


# --- resampling -----------------------------------------------------------------------------------


def _kaiser_sinc(up: int, down: int, half_len_factor: int = 10, beta: float = 5.0) -> np.ndarray:
    """Low-pass FIR for ``up/down`` resampling: cut-off at the lower Nyquist, gain ``up``."""
    max_rate = max(up, down)
    half = half_len_factor * max_rate
    n = np.arange(-half, half + 1, dtype=np.float64)
    cutoff = 1.0 / max_rate  # in units of the upsampled Nyquist
    h = cutoff * np.sinc(cutoff * n) * np.kaiser(2 * half + 1, beta)
    for phase in range(up):  # every polyphase branch has DC gain exactly 1: constants stay constant
        h[phase::up] /= h[phase::up].sum()
    return h


def rational_ratio(rate_in: float, rate_out: float, max_denominator: int = 100) -> tuple[int, int]:
    """``(up, down)`` with ``up/down ≈ rate_out/rate_in``."""
    if rate_in <= 0 or rate_out <= 0:
        raise PreprocessError(f"sample rates must be > 0 Hz (got {rate_in} -> {rate_out})")
    frac = Fraction(rate_out / rate_in).limit_denominator(max_denominator)
    return frac.numerator, frac.denominator


def resample_poly(x: np.ndarray, up: int, down: int) -> np.ndarray:
    """Resample ``x`` (``(N,)`` or ``(N, C)``) by ``up/down`` along axis 0.

    Output length ``ceil(N * up / down)``; the anti-alias filter is a Kaiser-windowed sinc (±10
    periods of the slower rate); edges are padded with the end values (no taper towards zero).
    """
    up, down = int(up), int(down)
    if up < 1 or down < 1:
        raise PreprocessError(f"up and down must be >= 1 (got {up}, {down})")
    arr = np.asarray(x, dtype=np.float64)
    one_d = arr.ndim == 1
    if one_d:
        arr = arr[:, None]
    n = arr.shape[0]
    if n == 0:
        return np.zeros((0,) if one_d else (0, arr.shape[1]), dtype=np.float32)
    g = np.gcd(up, down)
    up, down = up // g, down // g
    if up == down:
        out = arr
    else:
        h = _kaiser_sinc(up, down)
        half = (len(h) - 1) // 2
        # pad with a multiple of `down` input samples so the output trim is an integer
        pad = down * int(np.ceil((half / up + 1) / down))
        padded = np.pad(arr, ((pad, pad), (0, 0)), mode="edge")
        stuffed = np.zeros((padded.shape[0] * up, arr.shape[1]))
        stuffed[::up] = padded
        n_out = int(np.ceil(n * up / down))
        start = pad * up // down
        cols = []
        for c in range(arr.shape[1]):
            full = np.convolve(stuffed[:, c], h)[half:]  # zero-delay
            cols.append(full[::down][start : start + n_out])
        out = np.stack(cols, axis=1)
    out = out.astype(np.float32)
    return out[:, 0] if one_d else out


def resample_to(x: np.ndarray, rate_in: float, rate_out: float) -> np.ndarray:
    """Resample ``x`` from ``rate_in`` Hz to ``rate_out`` Hz (no-op when the rates match)."""
    up, down = rational_ratio(rate_in, rate_out)
    if up == down:
        return np.asarray(x, dtype=np.float32)
    return resample_poly(x, up, down)


# --- windows --------------------------------------------------------------------------------------


def sliding_windows(x: np.ndarray, T: int, stride: int) -> np.ndarray:
    """``(n, T, C)`` copies of the windows ``x[i*stride : i*stride + T]`` that fit entirely in ``x``."""
    T, stride = int(T), int(stride)
    if T < 1:
        raise PreprocessError(f"window size T must be >= 1, got {T}")
    if stride < 1:
        raise PreprocessError(f"stride must be >= 1, got {stride}")
    arr = np.asarray(x)
    if arr.shape[0] < T:
        return np.zeros((0, T, *arr.shape[1:]), dtype=arr.dtype)
    view = np.lib.stride_tricks.sliding_window_view(arr, T, axis=0)[::stride]  # (n, C, T)
    return np.ascontiguousarray(np.moveaxis(view, -1, 1))
