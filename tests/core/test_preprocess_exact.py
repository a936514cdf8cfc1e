"""Signal preprocessing (app/core/preprocess.py) against independent references, with exact expected values.

* ST's "gravity rotation and suppression" (shared/reference/st-modelzoo-har.md §2.2): the coefficients are
  pinned literally (ST's models were trained with exactly these), the filter is compared with a plain-Python
  transposed-direct-form-II loop written here, its initial state with the steady state solved by hand
  (back substitution), the rotation with hand-worked Rodrigues rotations.
* Resampling: exact output lengths, a constant stays constant, sines keep amplitude and phase, and every
  output sample equals a direct sum written here (Kaiser window from a pure-Python Bessel series, edges
  padded with the end values).
* sliding_windows: exact windows and messages.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from app.core import preprocess as pp

# shared/reference/st-modelzoo-har.md §2.2: ST's hard-coded 26 Hz high-pass
ST_B = [0.9364275932, -3.745710373, 5.618565559, -3.745710373, 0.9364275932]
ST_A = [1.0, -3.868656635, 5.614526749, -3.622760773, 0.8768966198]


# --- references written for these tests ------------------------------------------------------------------


def normalized(b, a):
    """b and a divided by a[0] and padded with zeros to the same length n (plain Python lists), and n."""
    a0 = a[0]
    n = max(len(a), len(b))
    return [v / a0 for v in b] + [0.0] * (n - len(b)), [v / a0 for v in a] + [0.0] * (n - len(a)), n


def ref_zi(b, a):
    """Steady state of the TDF-II state for x = 1, y = H = sum(b)/sum(a): back substitution of
    z[k] = b[k+1] - a[k+1]*H + z[k+1] (z[n-1] = 0)."""
    b, a, n = normalized(b, a)
    h = sum(b) / sum(a)
    z = [0.0] * (n - 1)
    nxt = 0.0
    for k in range(n - 2, -1, -1):
        z[k] = b[k + 1] - a[k + 1] * h + nxt
        nxt = z[k]
    return z


def ref_lfilter(b, a, xs, zi):
    """scipy.signal.lfilter's transposed direct form II, one sample at a time, in plain Python."""
    b, a, n = normalized(b, a)
    z = list(zi)
    out = []
    for x in xs:
        y = b[0] * x + z[0]
        for k in range(n - 2):
            z[k] = b[k + 1] * x - a[k + 1] * y + z[k + 1]
        z[n - 2] = b[n - 1] * x - a[n - 1] * y
        out.append(y)
    return out


def ref_highpass(window):
    """ST's high-pass of one (T, 3) window: state zi * first sample (1 when the first sample is exactly 0)."""
    zi = ref_zi(ST_B, ST_A)
    cols = []
    for c in range(3):
        xs = [float(v) for v in window[:, c]]
        scale = xs[0] if xs[0] != 0.0 else 1.0
        cols.append(ref_lfilter(ST_B, ST_A, xs, [scale * v for v in zi]))
    return [[cols[c][t] for c in range(3)] for t in range(len(window))]


def ref_rotate(acc, dyn):
    """§2.2 steps 2-4 for one sample: unit gravity g = (acc - dyn)/|acc - dyn|, axis (-gy, gx, 0)/sin,
    sin = sqrt(1 - gz^2), cos = -gz, Rodrigues d' = d cos + (v x d) sin + v (v.d)(1 - cos)."""
    g = [acc[k] - dyn[k] for k in range(3)]
    norm = math.sqrt(sum(v * v for v in g))
    gx, gy, gz = (v / norm for v in g)
    sin = math.sqrt(max(0.0, 1.0 - gz * gz))
    cos = -gz
    v = [-gy / sin, gx / sin, 0.0] if sin > 0 else [0.0, 0.0, 0.0]
    d = dyn
    cross = [v[1] * d[2] - v[2] * d[1], v[2] * d[0] - v[0] * d[2], v[0] * d[1] - v[1] * d[0]]
    dot = sum(v[k] * d[k] for k in range(3))
    return [d[k] * cos + cross[k] * sin + v[k] * dot * (1.0 - cos) for k in range(3)]


def ref_gravity_rot_sup(window):
    dyn = ref_highpass(window)
    return np.array([ref_rotate([float(v) for v in window[t]], dyn[t]) for t in range(len(window))])


def bessel_i0(x):
    total, term, k = 1.0, 1.0, 1
    while term > 1e-17 * total:
        term *= (x / (2 * k)) ** 2
        total += term
        k += 1
    return total


def ref_resample(x, up, down, beta=5.0, periods=10):
    """y[m] = sum_k h(m*down - k*up) x[k] / sum_k h(m*down - k*up), h(j) = c sinc(c j) kaiser(j), c = 1/max(up,
    down), |j| <= periods*max(up, down); x[k] outside 0..n-1 is the nearest end value."""
    x = [float(v) for v in x]
    n = len(x)
    r = max(up, down)
    half = periods * r
    c = 1.0 / r

    def h(j):
        s = 1.0 if j == 0 else math.sin(math.pi * c * j) / (math.pi * c * j)
        w = bessel_i0(beta * math.sqrt(max(0.0, 1.0 - (j / half) ** 2))) / bessel_i0(beta)
        return c * s * w

    out = []
    for m in range(math.ceil(n * up / down)):
        num = den = 0.0
        for k in range(math.floor((m * down - half) / up), math.ceil((m * down + half) / up) + 1):
            j = m * down - k * up
            if abs(j) <= half:
                w = h(j)
                num += w * x[min(max(k, 0), n - 1)]
                den += w
        out.append(num / den)
    return np.array(out)


# --- the ST high-pass ----------------------------------------------------------------------------------------


def test_st_highpass_coefficients_are_st_s_exactly():
    """The filter is ST's, digit for digit (the models were trained with these constants)."""
    assert pp.ST_HP_B.tolist() == ST_B
    assert pp.ST_HP_A.tolist() == ST_A
    assert pp.PREPROCESSING == ("none", "gravity_rot_sup")


def test_lfilter_zi_of_hand_worked_filters():
    """lfilter_zi on filters small enough to solve by hand: an FIR [1, 2, 3] (zi = [2 + 3, 3]), the same scaled
    by a[0] = 2, a first-order IIR b = [1, 1], a = [1, -0.5] (H = 4, zi = H - b0 = 3) and b = [1] against
    a = [1, -0.5] (b padded: H = 2, zi = 1)."""
    np.testing.assert_allclose(pp.lfilter_zi(np.array([1.0, 2.0, 3.0]), np.array([1.0])), [5.0, 3.0], rtol=1e-14)
    np.testing.assert_allclose(pp.lfilter_zi(np.array([2.0, 4.0, 6.0]), np.array([2.0])), [5.0, 3.0], rtol=1e-14)
    np.testing.assert_allclose(pp.lfilter_zi(np.array([1.0, 1.0]), np.array([1.0, -0.5])), [3.0], rtol=1e-14)
    np.testing.assert_allclose(pp.lfilter_zi(np.array([1.0]), np.array([1.0, -0.5])), [1.0], rtol=1e-14)


@pytest.mark.parametrize(
    ("b", "a"),
    [
        (ST_B, ST_A),
        ([0.2, 0.3, -0.1], [2.0, -0.4, 0.1]),  # a[0] != 1
        ([0.5, 0.25], [1.0, -0.3, 0.2, -0.1]),  # len(b) < len(a)
        ([0.1, 0.2, 0.3, 0.4], [1.0, 0.5]),  # len(b) > len(a)
    ],
)
def test_lfilter_zi_is_the_step_steady_state(b, a):
    """With zi as initial state, a unit step gives the DC gain sum(b)/sum(a) from the very first sample, and zi
    is the hand-solved steady state."""
    zi = pp.lfilter_zi(np.array(b), np.array(a))
    np.testing.assert_allclose(zi, ref_zi(b, a), rtol=1e-9, atol=1e-12)
    y = ref_lfilter(b, a, [1.0] * 12, list(zi))
    # (ST's filter has its poles next to 1: its DC gain ~ -1e-4 is known to ~1e-10 in float64)
    np.testing.assert_allclose(y, [sum(b) / sum(a)] * 12, rtol=0, atol=1e-9)


def test_lfilter_zi_works_in_double_precision_whatever_the_coefficients_dtype():
    """float32 coefficients (e.g. read from a model file) give the float64 steady state of those very values,
    not one rounded to float32 on the way (ST's poles next to 1 make the state sensitive to rounding)."""
    b32 = np.array([0.1, 0.2, 0.3], dtype=np.float32)
    a32 = np.array([3.0, -0.7, 0.1], dtype=np.float32)
    want = ref_zi([float(v) for v in b32], [float(v) for v in a32])
    got = pp.lfilter_zi(b32, a32)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=0)
    b32 = np.array(ST_B, dtype=np.float32)
    a32 = np.array(ST_A, dtype=np.float32)
    want = ref_zi([float(v) for v in b32], [float(v) for v in a32])
    np.testing.assert_allclose(pp.lfilter_zi(b32, a32), want, rtol=1e-6, atol=0)


def test_st_initial_state_is_the_published_one():
    """§2.2: lfilter_zi(b, a) ~ [-0.93653, 2.80957, -2.80956, 0.93652]; exactly, the hand-solved steady state."""
    np.testing.assert_allclose(pp._ZI, [-0.93653, 2.80957, -2.80956, 0.93652], atol=1e-5)
    np.testing.assert_allclose(pp._ZI, ref_zi(ST_B, ST_A), rtol=1e-9)


def test_highpass_of_a_constant_is_its_dc_leak_from_the_first_sample():
    """A constant window has no transient: every output sample is the constant times ST's DC gain
    sum(b)/sum(a) (~ -1e-4: ST's rounded coefficients), on every axis."""
    x = np.tile([[1.0, -2.0, 9.5]], (3, 40, 1))
    dc = sum(ST_B) / sum(ST_A)
    got = pp._highpass(x)
    np.testing.assert_allclose(got, np.broadcast_to(x * dc, x.shape), rtol=1e-5, atol=0)


def test_highpass_matches_the_plain_tdf2_loop():
    """The high-pass of every axis of every window equals the plain-Python TDF-II loop, its state starting at
    zi * first sample, and at zi * 1 where the first sample is exactly 0 (ST's quirk)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 30, 3)) * 3 + [0.5, -1.0, 9.8]
    x[1, 0, 0] = 0.0  # window 1, axis x starts at exactly 0
    x[2, 0, :] = 0.0
    got = pp._highpass(x)
    for w in range(3):
        np.testing.assert_allclose(got[w], ref_highpass(x[w]), rtol=0, atol=1e-8)


# --- the rotation ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gravity", "dyn", "want"),
    [
        # gravity along +x: rotation by 90 degrees about +y; x -> -z, z -> x
        ((9.0, 0.0, 0.0), (1.0, 2.0, 3.0), (3.0, 2.0, -1.0)),
        # gravity along +y: rotation about -x; y -> -z, z -> y
        ((0.0, 2.0, 0.0), (1.0, 2.0, 3.0), (1.0, 3.0, -2.0)),
        # gravity (0, 3, 4): |g| = 5, gz = 0.8, sin = 0.6, cos = -0.8, axis -x
        ((0.0, 3.0, 4.0), (1.0, 2.0, 3.0), (1.0, 0.2, -3.6)),
        # gravity already along -z: identity
        ((0.0, 0.0, -7.0), (1.0, 2.0, 3.0), (1.0, 2.0, 3.0)),
        # gravity along +z (sin = 0, axis 0): d cos = -d
        ((0.0, 0.0, 4.0), (1.0, 2.0, 3.0), (-1.0, -2.0, -3.0)),
        # no gravity left at all (acc == dyn): nothing to rotate by, 0 instead of NaN
        ((0.0, 0.0, 0.0), (1.0, 2.0, 3.0), (0.0, 0.0, 0.0)),
    ],
)
def test_rotation_of_hand_worked_cases(gravity, dyn, want):
    """The dynamic part rotated so that gravity (acc - dyn) points along -z, worked by hand."""
    dyn_a = np.array([dyn])
    acc = dyn_a + np.array([gravity])
    got = pp._rotate_dynamic(acc, dyn_a)
    np.testing.assert_allclose(got, [want], rtol=0, atol=1e-12)


def test_rotation_of_a_vanishing_gravity_estimate_is_finite():
    """A gravity estimate of 1e-160 m/s^2 along +z (subnormal squares: its computed unit vector has gz slightly
    above 1) is treated as +z: the dynamic part negated, no NaN."""
    dyn = np.array([[1.0, 2.0, 0.0]])
    got = pp._rotate_dynamic(np.array([[1.0, 2.0, 1e-160]]), dyn)  # acc - dyn = (0, 0, 1e-160) exactly
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, [[-1.0, -2.0, 0.0]], rtol=1e-4)


def test_degenerate_gravity_gives_no_warning():
    """Gravity exactly along +-z (no rotation axis) or exactly 0 (nothing to normalise) in a signal: no
    warning of any kind (the app runs this on every window of a recording)."""
    acc = np.array([[1.0, 2.0, 7.0], [1.0, 2.0, 3.0], [1.0, 2.0, -1.0], [4.0, 2.0, 3.0]])
    dyn = np.array([[1.0, 2.0, 3.0]] * 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = pp._rotate_dynamic(acc, dyn)
        pp.gravity_rot_sup(np.zeros((2, 8, 3)))
        pp.gravity_rot_sup(np.tile([0.0, 0.0, 9.8], (2, 8, 1)))
    np.testing.assert_allclose(
        got, [[-1.0, -2.0, -3.0], [0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [3.0, 2.0, -1.0]], atol=1e-12
    )


def test_rotation_maps_gravity_to_minus_z_and_preserves_norms():
    """For random gravity directions the gravity itself goes to (0, 0, -|g|) and every vector keeps its
    length and its angles (the rotation is orthogonal)."""
    rng = np.random.default_rng(5)
    g = rng.normal(size=(200, 3)) * 5
    d1 = rng.normal(size=(200, 3))
    d2 = rng.normal(size=(200, 3))
    # a dynamic part parallel to gravity stays parallel: d = 0.1 g -> (0, 0, -0.1 |g|)
    par = 0.1 * g
    got = pp._rotate_dynamic(g + par, par)
    np.testing.assert_allclose(got[:, :2], 0.0, atol=1e-12)
    np.testing.assert_allclose(got[:, 2], -0.1 * np.linalg.norm(g, axis=1), rtol=1e-12)
    r1 = pp._rotate_dynamic(g + d1, d1)
    r2 = pp._rotate_dynamic(g + d2, d2)
    np.testing.assert_allclose(np.linalg.norm(r1, axis=1), np.linalg.norm(d1, axis=1), rtol=1e-12)
    # the same rotation for d1 and d2 where the gravity is the same: the dot product is preserved
    r2_same = pp._rotate_dynamic(g + d1 - d1 + d2, d2)
    np.testing.assert_allclose(r2, r2_same, rtol=1e-12)
    for k in range(200):
        np.testing.assert_allclose(r1[k], ref_rotate(list(g[k] + d1[k]), list(d1[k])), rtol=1e-10, atol=1e-12)


# --- gravity_rot_sup ------------------------------------------------------------------------------------------


def test_gravity_rot_sup_windows_match_the_reference_each_on_its_own():
    """(N, T, 3) windows: each window filtered from its own first sample, then rotated (ST v2/3 training)."""
    rng = np.random.default_rng(11)
    w = rng.normal(size=(3, 24, 3)) * 2 + [1.0, 2.0, 9.5]
    w[2, 0, 1] = 0.0
    out = pp.gravity_rot_sup(w)
    assert out.shape == (3, 24, 3) and out.dtype == np.float32
    for k in range(3):
        np.testing.assert_allclose(out[k], ref_gravity_rot_sup(w[k]), rtol=2e-6, atol=2e-6)


def test_gravity_rot_sup_stream_is_one_continuous_filter():
    """(L, 3): one filter over the whole recording, not restarted every 24 samples (ST v1, firmware)."""
    rng = np.random.default_rng(12)
    x = rng.normal(size=(72, 3)) + [0.0, 3.0, 9.0]
    out = pp.gravity_rot_sup(x)
    assert out.shape == (72, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref_gravity_rot_sup(x), rtol=2e-6, atol=2e-6)
    per_window = pp.gravity_rot_sup(x.reshape(3, 24, 3)).reshape(72, 3)
    np.testing.assert_allclose(per_window[:24], out[:24], rtol=1e-6, atol=1e-6)  # same start
    assert np.abs(per_window[24:] - out[24:]).max() > 0.1  # windows 2 and 3 restart their filter


def test_gravity_rot_sup_static_signal_leaves_only_the_dc_leak_along_z():
    """A device at rest: the dynamic part is the DC leak dc * a (dc = sum(b)/sum(a) ~ -1e-4), parallel to
    gravity, so the output is (0, 0, -dc |a|) at every sample."""
    a = np.array([1.0, 2.0, 9.5])
    dc = sum(ST_B) / sum(ST_A)
    out = pp.gravity_rot_sup(np.tile(a, (2, 30, 1)))
    np.testing.assert_allclose(out[..., :2], 0.0, atol=1e-9)
    np.testing.assert_allclose(out[..., 2], -dc * np.linalg.norm(a), rtol=1e-5)


def test_gravity_rot_sup_st_shaped_windows_keep_their_shape():
    """(N, T, 3, 1) windows (ST's Conv2D input) give the same values with the trailing axis kept."""
    rng = np.random.default_rng(13)
    w = rng.normal(size=(2, 16, 3)) + [0.0, 0.0, 9.8]
    out4 = pp.gravity_rot_sup(w[..., None])
    assert out4.shape == (2, 16, 3, 1) and out4.dtype == np.float32
    np.testing.assert_array_equal(out4[..., 0], pp.gravity_rot_sup(w))


def test_gravity_rot_sup_of_integer_counts():
    """Integer input is processed as float64 (not truncated), output float32."""
    w = np.array([[[0, 0, 10], [1, 0, 10], [0, 2, 9], [3, 1, 10]]], dtype=np.int16)
    out = pp.gravity_rot_sup(w)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], ref_gravity_rot_sup(w[0].astype(np.float64)), rtol=2e-6, atol=2e-6)


def test_gravity_rot_sup_of_empty_windows():
    """Windows of 0 samples give zeros of the input's shape; 0 windows give 0 windows."""
    for shape in [(0, 3), (4, 0, 3), (2, 0, 3, 1)]:
        out = pp.gravity_rot_sup(np.zeros(shape))
        assert out.shape == shape and out.dtype == np.float32
    out = pp.gravity_rot_sup(np.zeros((0, 5, 3)))
    assert out.shape == (0, 5, 3) and out.dtype == np.float32


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((2, 4, 3, 2), "4-D input must be (N, T, 3, 1), got shape (2, 4, 3, 2)"),
        ((5, 24, 2), "input must be (L, 3), (N, T, 3) or (N, T, 3, 1), got shape (5, 24, 2)"),
        ((2, 4, 2, 1), "input must be (L, 3), (N, T, 3) or (N, T, 3, 1), got shape (2, 4, 2, 1)"),
        ((7,), "input must be (L, 3), (N, T, 3) or (N, T, 3, 1), got shape (7,)"),
        ((1, 2, 4, 3, 1), "input must be (L, 3), (N, T, 3) or (N, T, 3, 1), got shape (1, 2, 4, 3, 1)"),
    ],
)
def test_gravity_rot_sup_refuses_other_shapes(shape, message):
    """A wrong shape is refused with a message naming the accepted shapes and the one given."""
    with pytest.raises(pp.PreprocessError) as e:
        pp.gravity_rot_sup(np.zeros(shape))
    assert str(e.value) == message
    assert isinstance(e.value, ValueError)


def test_apply_preprocessing_by_name():
    """'none' only converts to float32; 'gravity_rot_sup' is ST's per-window preprocessing; another name is
    refused with the known names."""
    w = np.arange(2 * 5 * 3, dtype=np.float64).reshape(2, 5, 3) / 7 + [0.0, 0.0, 9.8]
    none = pp.apply_preprocessing(w, "none")
    assert none.dtype == np.float32
    np.testing.assert_array_equal(none, w.astype(np.float32))
    grs = pp.apply_preprocessing(w, "gravity_rot_sup")
    assert grs.dtype == np.float32
    for k in range(2):
        np.testing.assert_allclose(grs[k], ref_gravity_rot_sup(w[k]), rtol=2e-6, atol=2e-6)
    with pytest.raises(pp.PreprocessError) as e:
        pp.apply_preprocessing(w, "Gravity_rot_sup")
    assert str(e.value) == "unknown preprocessing 'Gravity_rot_sup' (known: none, gravity_rot_sup)"


# --- resampling -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate_in", "rate_out", "want"),
    [(50, 20, (2, 5)), (25, 20, (4, 5)), (20, 20, (1, 1)), (20, 50, (5, 2)), (101, 1, (1, 100)), (30, 20.0, (2, 3))],
)
def test_rational_ratio(rate_in, rate_out, want):
    """up/down of a rate change, in lowest terms, the denominator at most 100 (1/101 -> 1/100)."""
    assert pp.rational_ratio(rate_in, rate_out) == want


def test_rational_ratio_with_another_max_denominator():
    """max_denominator bounds down: 20/26 is 10/13, or 3/4 with at most 5."""
    assert pp.rational_ratio(26, 20) == (10, 13)
    assert pp.rational_ratio(26, 20, max_denominator=5) == (3, 4)


@pytest.mark.parametrize(
    ("rate_in", "rate_out", "message"),
    [
        (0, 20, "sample rates must be > 0 Hz (got 0 -> 20)"),
        (50, 0, "sample rates must be > 0 Hz (got 50 -> 0)"),
        (-5, 20, "sample rates must be > 0 Hz (got -5 -> 20)"),
        (50, -1.5, "sample rates must be > 0 Hz (got 50 -> -1.5)"),
    ],
)
def test_rational_ratio_refuses_rates_that_are_not_positive(rate_in, rate_out, message):
    """A rate <= 0 Hz is refused with both rates in the message."""
    with pytest.raises(pp.PreprocessError) as e:
        pp.rational_ratio(rate_in, rate_out)
    assert str(e.value) == message


@pytest.mark.parametrize(
    ("n", "up", "down", "n_out"),
    [
        (10, 2, 5, 4),
        (11, 2, 5, 5),  # ceil(4.4)
        (1, 2, 5, 1),
        (3, 5, 2, 8),  # ceil(7.5)
        (7, 4, 5, 6),  # ceil(5.6)
        (5, 4, 5, 4),
        (9, 1, 3, 3),
        (10, 1, 3, 4),
        (6, 3, 1, 18),
        (4, 3, 3, 4),  # gcd: no change
        (8, 4, 6, 6),  # 2/3 after gcd: ceil(16/3)
    ],
)
def test_resample_poly_output_length_is_the_ceiling(n, up, down, n_out):
    """Output length ceil(n * up / down), for 1-D and (n, C) input."""
    x = np.linspace(0.0, 1.0, n)
    assert pp.resample_poly(x, up, down).shape == (n_out,)
    assert pp.resample_poly(np.stack([x, x, x], axis=1), up, down).shape == (n_out, 3)


@pytest.mark.parametrize(("up", "down"), [(2, 5), (4, 5), (5, 2), (1, 3), (3, 1), (2, 3)])
def test_resample_poly_keeps_a_constant_up_to_the_ends(up, down):
    """Gravity stays gravity: a constant comes out as the same constant at every sample, ends included."""
    x = np.tile([9.8, -0.25, 0.0], (37, 1))
    y = pp.resample_poly(x, up, down)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, np.broadcast_to([9.8, -0.25, 0.0], y.shape), rtol=1e-6, atol=0)


@pytest.mark.parametrize(("up", "down", "rate_in"), [(2, 5, 50.0), (4, 5, 25.0), (5, 2, 20.0)])
def test_resample_poly_keeps_sine_amplitude_and_phase(up, down, rate_in):
    """A 1.5 Hz sine (well below every Nyquist) is the same sine at the new rate: no delay, no gain change."""
    n = 400
    t = np.arange(n) / rate_in
    x = np.sin(2 * np.pi * 1.5 * t + 0.3)
    y = pp.resample_poly(x, up, down)
    rate_out = rate_in * up / down
    t2 = np.arange(len(y)) / rate_out
    inner = slice(int(rate_out), len(y) - int(rate_out))  # one second from either end
    np.testing.assert_allclose(y[inner], np.sin(2 * np.pi * 1.5 * t2[inner] + 0.3), atol=2e-3)


def test_resample_poly_removes_what_the_new_rate_cannot_hold():
    """50 -> 20 Hz: a 15 Hz component (above the new 10 Hz Nyquist) is filtered out, not folded to 5 Hz."""
    t = np.arange(500) / 50.0
    y = pp.resample_poly(np.sin(2 * np.pi * 15 * t), 2, 5)
    assert np.abs(y[20:-20]).max() < 0.02


@pytest.mark.parametrize(("up", "down"), [(2, 5), (4, 5), (5, 2), (1, 3), (2, 3)])
def test_resample_poly_matches_the_direct_sum(up, down):
    """Every output sample, ends included, is the Kaiser-windowed sinc sum (beta 5, +-10 periods of the slower
    rate, every phase of gain 1) over the edge-padded input."""
    rng = np.random.default_rng(up * 10 + down)
    x = rng.normal(size=(23, 2)) + [3.0, -1.0]
    y = pp.resample_poly(x, up, down)
    for c in range(2):
        np.testing.assert_allclose(y[:, c], ref_resample(x[:, c], up, down), rtol=0, atol=2e-6)
    y1 = pp.resample_poly(x[:, 1], up, down)
    assert y1.ndim == 1
    np.testing.assert_array_equal(y1, y[:, 1])


def test_resample_poly_of_a_single_sample_and_of_nothing():
    """One sample is a constant; an empty input gives an empty output of the input's kind."""
    np.testing.assert_allclose(pp.resample_poly(np.array([[2.5, -1.0]]), 5, 2), [[2.5, -1.0]] * 3, rtol=1e-6)
    e1 = pp.resample_poly(np.zeros(0), 2, 5)
    assert e1.shape == (0,) and e1.dtype == np.float32
    e2 = pp.resample_poly(np.zeros((0, 3)), 2, 5)
    assert e2.shape == (0, 3) and e2.dtype == np.float32


def test_resample_poly_with_equal_rates_is_a_float32_copy():
    """up == down (after reducing 3/3): the values unchanged, as float32."""
    x = np.array([[1.0, 2.0], [3.0, 4.5], [-1.0, 0.25]])
    y = pp.resample_poly(x, 3, 3)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, x.astype(np.float32))
    np.testing.assert_array_equal(pp.resample_poly(x[:, 0], 1, 1), np.float32([1.0, 3.0, -1.0]))


@pytest.mark.parametrize(
    ("up", "down", "message"),
    [
        (0, 2, "up and down must be >= 1 (got 0, 2)"),
        (2, 0, "up and down must be >= 1 (got 2, 0)"),
        (-1, -1, "up and down must be >= 1 (got -1, -1)"),
    ],
)
def test_resample_poly_refuses_factors_below_one(up, down, message):
    """up and down are whole numbers >= 1."""
    with pytest.raises(pp.PreprocessError) as e:
        pp.resample_poly(np.zeros(10), up, down)
    assert str(e.value) == message


def test_resample_to_converts_rates():
    """50 -> 20 Hz and 25 -> 20 Hz are the 2/5 and 4/5 resamplings; equal rates return the input as float32."""
    rng = np.random.default_rng(21)
    x = rng.normal(size=(31, 3)) + 9.0
    y = pp.resample_to(x, 50, 20)
    assert y.shape == (13, 3) and y.dtype == np.float32  # ceil(31 * 2 / 5)
    np.testing.assert_allclose(y[:, 0], ref_resample(x[:, 0], 2, 5), atol=2e-6)
    y = pp.resample_to(x, 25.0, 20.0)
    assert y.shape == (25, 3)  # ceil(31 * 4 / 5)
    np.testing.assert_allclose(y[:, 2], ref_resample(x[:, 2], 4, 5), atol=2e-6)
    same = pp.resample_to(x, 20, 20.0)
    assert same.dtype == np.float32
    np.testing.assert_array_equal(same, x.astype(np.float32))
    with pytest.raises(pp.PreprocessError):
        pp.resample_to(x, 0, 20)


# --- sliding windows ------------------------------------------------------------------------------------------


def test_sliding_windows_exact_windows_and_stride():
    """Windows x[i*stride : i*stride + T] that fit entirely, as (n, T, C)."""
    x = np.arange(20).reshape(10, 2)  # row r = [2r, 2r + 1]
    w = pp.sliding_windows(x, 4, 3)
    assert w.shape == (3, 4, 2)
    assert w[:, :, 0].tolist() == [[0, 2, 4, 6], [6, 8, 10, 12], [12, 14, 16, 18]]
    assert w[:, :, 1].tolist() == [[1, 3, 5, 7], [7, 9, 11, 13], [13, 15, 17, 19]]
    assert pp.sliding_windows(x, 10, 1).shape == (1, 10, 2)
    assert pp.sliding_windows(x, 3, 2)[:, 0, 0].tolist() == [0, 4, 8, 12]  # starts 0, 2, 4, 6
    assert pp.sliding_windows(x, 1, 4)[:, :, 0].tolist() == [[0], [8], [16]]
    assert pp.sliding_windows(x, 2, 20).tolist() == [[[0, 1], [2, 3]]]


def test_sliding_windows_are_contiguous_copies():
    """The windows are C-contiguous copies: writing to one changes neither the signal nor the other windows."""
    x = np.arange(12.0).reshape(6, 2)
    w = pp.sliding_windows(x, 3, 1)
    assert w.flags["C_CONTIGUOUS"] and w.flags["WRITEABLE"]
    w[0, 1, 0] = -1.0
    assert x[1, 0] == 2.0 and w[1, 0, 0] == 2.0


def test_sliding_windows_of_a_too_short_signal():
    """Fewer samples than T: no window, shape (0, T, C) and the signal's dtype."""
    w = pp.sliding_windows(np.ones((3, 2), dtype=np.float32), 4, 1)
    assert w.shape == (0, 4, 2) and w.dtype == np.float32
    w = pp.sliding_windows(np.ones((0, 3), dtype=np.int16), 2, 2)
    assert w.shape == (0, 2, 3) and w.dtype == np.int16
    assert pp.sliding_windows(np.ones((4, 1)), 4, 9).shape == (1, 4, 1)


@pytest.mark.parametrize(
    ("T", "stride", "message"),
    [
        (0, 1, "window size T must be >= 1, got 0"),
        (-3, 1, "window size T must be >= 1, got -3"),
        (4, 0, "stride must be >= 1, got 0"),
        (4, -2, "stride must be >= 1, got -2"),
    ],
)
def test_sliding_windows_refuses_bad_sizes(T, stride, message):
    """T and stride must be >= 1; the message names which."""
    with pytest.raises(pp.PreprocessError) as e:
        pp.sliding_windows(np.ones((10, 3)), T, stride)
    assert str(e.value) == message
