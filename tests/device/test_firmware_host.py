"""The firmware's C core, built natively with AddressSanitizer and UndefinedBehaviorSanitizer, against the
Python references: every layer kind's forward and backward against ``device.engine`` (per-sample), the
framing against the golden vectors of docs/protocol.md §7 and the Python COBS/CRC, the round shuffle,
and ≥ 10⁴ hostile inputs through the decoder and every handler."""

from __future__ import annotations

import struct
import subprocess
import zlib

import numpy as np
import pytest

from device.engine import Model
from device.engine.weights import glorot_init
from device.nucleo import cobs
from device.nucleo import protocol as P
from device.nucleo.crc import crc16
from device.nucleo.shuffle import epoch_order
from estimator.arch import Arch, Layer, paper_cnn
from tests import firmwarekit


@pytest.fixture(scope="module")
def tools():
    return firmwarekit.host_tools()


def run_lines(tool, mode: str, lines: list[str]) -> list[str]:
    r = subprocess.run([str(tool), mode], input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


# --------------------------------------------------------------------------------------------------
# framing
# --------------------------------------------------------------------------------------------------
def test_frames_reproduce_every_golden_vector(tools):
    vectors = P.golden_vectors()
    lines = [f"{int(msg.TYPE):x} {seq} {msg.pack().hex()}" for _, seq, msg, _ in vectors]
    out = run_lines(tools["odl-kernels"], "wire", lines)
    for (name, _, _, want), got in zip(vectors, out):
        assert got == want, f"golden vector {name}: C encoder gives {got}"
    decoded = run_lines(tools["odl-kernels"], "unwire", [want for *_, want in vectors])
    for (name, seq, msg, _), got in zip(vectors, decoded):
        assert got == f"{int(msg.TYPE):02x} {seq} {msg.pack().hex()}", name


def test_frames_at_the_payload_limit(tools):
    """A payload of exactly ODL_MAX_PAYLOAD (1024) bytes is framed as Python frames it and read back; one
    byte more is refused by the encoder and, framed by hand, rejected by the decoder (BAD_FRAME), and so is
    an encoded run longer than any valid frame."""
    rng = np.random.default_rng(5)
    for n in (P.MAX_PAYLOAD - 1, P.MAX_PAYLOAD):
        for zeros in (0.0, 0.2):
            payload = rng.integers(1, 256, n, dtype=np.uint8)
            payload[rng.random(n) < zeros] = 0
            want = P.encode_frame(0x42, 7, payload.tobytes())
            (got,) = run_lines(tools["odl-kernels"], "wire", [f"42 7 {payload.tobytes().hex()}"])
            assert bytes.fromhex(got) == want, (n, zeros)
            assert run_lines(tools["odl-kernels"], "unwire", [want.hex()]) == [f"42 7 {payload.tobytes().hex()}"]
    over = bytes(range(1, 256)) * 4 + b"\x01\x02\x03\x04\x05"  # 1025 bytes
    assert run_lines(tools["odl-kernels"], "wire", [f"42 7 {over.hex()}"]) == ["ERR"]
    body = struct.pack("<BHH", 0x42, 7, len(over)) + over
    body += struct.pack("<H", crc16(body))
    assert run_lines(tools["odl-kernels"], "unwire", [(cobs.encode(body) + b"\x00").hex()]) == ["ERR BAD_FRAME"]
    # an encoded run longer than any valid frame is dropped up to the next 00, and the decoder reads the
    # frames after it (one stream: the over-long run, a valid frame, a frame of one byte too many, a valid one)
    ok = P.encode_frame(0x42, 8, b"\x00ok")
    stream = b"\x01" * 1200 + b"\x00" + ok + cobs.encode(body) + b"\x00" + ok
    frame = "42 8 " + b"\x00ok".hex()
    assert run_lines(tools["odl-kernels"], "unwireall", [stream.hex()]) == [
        f"ERR BAD_FRAME;{frame};ERR BAD_FRAME;{frame}"
    ]


def _cobs_cases(rng) -> list[bytes]:
    cases = [b"", b"\x00", b"\x00\x00", b"\x01" * 253, b"\x01" * 254, b"\x01" * 255, b"\x01" * 254 + b"\x00"]
    cases += [b"\x01" * 253 + b"\x00", b"\x01" * 255 + b"\x00", b"\x01" * 508, b"\x01" * 508 + b"\x00"]
    cases += [b"\x00" + b"\x02" * 254 + b"\x00" + b"\x03" * 254]
    for _ in range(300):
        n = int(rng.integers(0, 1100))
        data = rng.integers(0, 256, n, dtype=np.uint8)
        data[rng.random(n) < rng.choice([0.0, 0.01, 0.3])] = 0
        cases.append(data.tobytes())
    return cases


def test_cobs_and_crc_agree_with_python_byte_for_byte(tools):
    rng = np.random.default_rng(0)
    cases = _cobs_cases(rng)
    enc = run_lines(tools["odl-kernels"], "cobs", [c.hex() for c in cases])
    for c, e in zip(cases, enc):
        assert bytes.fromhex(e) == cobs.encode(c), f"COBS of {len(c)} bytes"
    dec = run_lines(tools["odl-kernels"], "uncobs", [cobs.encode(c).hex() for c in cases])
    for c, d in zip(cases, dec):
        assert bytes.fromhex(d) == c
    # invalid encodings: a code running past the end, a code byte 0, a 0 inside a block (the frame decoder never
    # hands it a 0, it splits there; the function refuses them all the same) are rejected by both
    bad = [b"\x05\x01\x02", b"\x03\x01", b"\x00\x01", b"\x02\x01\x00", b"\x03\x01\x00\x01", b"\x03\x00\x01"]
    assert run_lines(tools["odl-kernels"], "uncobs", [b.hex() for b in bad]) == ["ERR"] * len(bad)
    for b in bad:
        with pytest.raises(ValueError):
            cobs.decode(b)
    crcs = run_lines(tools["odl-kernels"], "crc", [c.hex() for c in cases[:100]] + [b"123456789".hex()])
    for c, line in zip(cases[:100] + [b"123456789"], crcs):
        a, b = line.split()
        assert int(a, 16) == crc16(c) and int(b, 16) == zlib.crc32(c)
    assert crcs[-1] == "29b1 cbf43926"


def test_corrupted_frames_are_rejected_not_misread(tools):
    """Every single-bit flip of a valid frame (that does not create a delimiter) is rejected as BAD_CRC or
    BAD_FRAME: a damaged frame is never returned as a frame."""
    msg = P.TrainStart(0, 1, 2, 32, 0, 0.01, 0.01, 7, 0)
    wire = msg.encode(9)[:-1]  # without the delimiter
    lines = []
    for i in range(len(wire)):
        for bit in range(8):
            w = bytearray(wire)
            w[i] ^= 1 << bit
            if 0 not in w:  # a flip to 00 splits the frame into two runs (both rejected; not this test)
                lines.append((bytes(w) + b"\x00").hex())
    out = run_lines(tools["odl-kernels"], "unwire", lines)
    assert len(out) == len(lines) > 200
    assert all(o in ("ERR BAD_CRC", "ERR BAD_FRAME") for o in out), [o for o in out if not o.startswith("ERR")]


def test_round_shuffle_matches_the_python_boards(tools):
    # n on both sides of each even bit width (the Feistel halves: 2^2k < n <= 2^(2k+1) and 2^(2k+1) < n <= 2^(2k+2))
    cases = [(0, 0, 1), (0, 0, 2), (3, 1, 37), (99, 4, 1000), (2**32 - 1, 7, 4096)]
    cases += [(5, 2, 6), (7, 3, 20), (11, 0, 100), (13, 5, 300), (17, 9, 2000)]
    for seed, epoch, n in cases:
        r = subprocess.run([str(tools["odl-kernels"]), "perm", str(seed), str(epoch), str(n)], capture_output=True)
        got = [int(x) for x in r.stdout.split()]
        want = epoch_order(seed, epoch, n).tolist()
        assert got == want and sorted(got) == list(range(n))


@pytest.mark.parametrize("seed", [1, 2])
def test_decoder_and_handlers_survive_hostile_input(tools, seed):
    """10,000 cases per seed: byte soup, random frames of every type, mutated frames, and whole sessions
    with random models (every layer kind), hostile datasets and rounds; no sanitizer report, every frame
    the core sends is well-formed, and it still answers afterwards (host/fuzz_main.c)."""
    r = subprocess.run([str(tools["odl-fuzz"]), "10000", str(seed)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert r.stdout.startswith("ok 10000")


# --------------------------------------------------------------------------------------------------
# numerics: each layer's forward and backward against device.engine
# --------------------------------------------------------------------------------------------------
def _weights(arch: Arch, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    w = glorot_init(arch, seed)
    for name, arrs in w.items():
        layer = arch.layer(name)
        if layer.kind == "batchnorm":
            c = arrs[0].shape[0]
            w[name] = [
                rng.uniform(0.5, 1.5, c).astype(np.float32),
                rng.normal(0, 0.3, c).astype(np.float32),
                rng.normal(0, 0.3, c).astype(np.float32),
                rng.uniform(0.5, 2.0, c).astype(np.float32),
            ]
        elif len(arrs) > 1:
            arrs[1][:] = rng.normal(0, 0.1, arrs[1].shape)
    return w


def layers_request(arch: Arch, w: dict, mask: int, x: np.ndarray, y: np.ndarray) -> bytes:
    blob, dl = P.encode_model(arch, w)
    req = struct.pack("<II", dl, len(blob)) + blob + struct.pack("<QI", mask, len(y))
    for xi, yi in zip(x, y):
        req += struct.pack("<i", int(yi)) + np.ascontiguousarray(xi, "<f4").tobytes()
    return req


def c_layers(tool, arch: Arch, w: dict, mask: int, x: np.ndarray, y: np.ndarray):
    r = subprocess.run(
        [str(tool), "layers"], input=layers_request(arch, w, mask, x, y), capture_output=True, timeout=60
    )
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = np.frombuffer(r.stdout, "<f4")
    k = arch.n_classes
    per = out[: len(y) * (k + 1)].reshape(len(y), k + 1)
    return per[:, :k], per[:, k], out[len(y) * (k + 1) :]


def L(kind, name, **kw):
    return Layer(kind, name, **kw)


ARCHS = {
    "paper": paper_cnn(20),
    "conv_maxpool_overlap_gmp": Arch(
        (19, 2),
        (
            L("conv1d", "c1", filters=5, kernel=3),
            L("relu", "r1"),
            L("maxpool1d", "mp", pool=3, stride=2),
            L("conv1d", "c2", filters=6, kernel=2),
            L("gmp1d", "g"),
            L("dense", "d", units=4),
            L("softmax", "sm"),
        ),
    ),
    # a frozen conv whose last output row an overlapping 'valid' max pooling never reads (not computed)
    "conv_maxpool_drops_a_row": Arch(
        (20, 2),
        (
            L("conv1d", "c1", filters=8, kernel=3),
            L("relu", "r1"),
            L("maxpool1d", "mp", pool=3, stride=2),
            L("flatten", "f"),
            L("dense", "d", units=4),
            L("softmax", "sm"),
        ),
    ),
    "conv_bn_avgstride_flatten_dropout": Arch(
        (12, 3),
        (
            L("conv1d", "c1", filters=4, kernel=3, use_bias=False),
            L("batchnorm", "bn1"),
            L("relu", "r1"),
            L("avgpool1d", "ap", pool=2, stride=1),
            L("flatten", "f"),
            L("dropout", "do", rate=0.3),
            L("dense", "d1", units=7),
            L("relu", "r2"),
            L("dense", "d2", units=3),
            L("softmax", "sm"),
        ),
    ),
    "conv2d_bn_maxpool2d_gap2d": Arch(
        (16, 3, 1),
        (
            L("batchnorm", "bn0"),
            L("conv2d", "c1", filters=4, kernel=3),
            L("batchnorm", "bn1"),
            L("relu", "r1"),
            L("maxpool2d", "mp", pool=2),
            L("conv2d", "c2", filters=5, kernel=2),
            L("avgpool2d", "ap", pool=2, stride=1),
            L("gap2d", "g"),
            L("dense", "d", units=4),
            L("softmax", "sm"),
        ),
    ),
    "ign_like": Arch(
        (24, 3, 1),
        (
            L("conv2d", "c", filters=6, kernel=5),
            L("relu", "r"),
            L("maxpool2d", "mp", pool=3),
            L("flatten", "f"),
            L("dense", "d1", units=12),
            L("dropout", "do", rate=0.5),
            L("dense", "d2", units=4),
            L("softmax", "sm"),
        ),
    ),
    "gmp_like": Arch(
        (24, 3, 1),
        (
            L("batchnorm", "bn0"),
            L("conv2d", "c1", filters=4, kernel=3),
            L("batchnorm", "bn1"),
            L("conv2d", "c2", filters=4, kernel=3),
            L("gmp2d", "g"),
            L("dropout", "do", rate=0.5),
            L("dense", "d", units=4),
            L("softmax", "sm"),
        ),
    ),
    # shapes that take every path of the assembly kernels (row and unit remainders, K != 3, taps ranges)
    "kernel_shapes": Arch(
        (27, 5),
        (
            L("conv1d", "c1", filters=8, kernel=3),
            L("relu", "r1"),
            L("conv1d", "c2", filters=12, kernel=3),
            L("relu", "r2"),
            L("avgpool1d", "ap", pool=3, stride=2),
            L("conv1d", "c3", filters=4, kernel=5),
            L("gap1d", "g"),
            L("dense", "d1", units=13),
            L("relu", "r3"),
            L("dense", "d2", units=6),
            L("softmax", "sm"),
        ),
    ),
    "conv2d_k3_w3": Arch(
        (14, 3, 1),
        (
            L("conv2d", "c1", filters=8, kernel=3),
            L("relu", "r1"),
            L("conv2d", "c2", filters=4, kernel=3),
            L("gap2d", "g"),
            L("dense", "d", units=5),
            L("softmax", "sm"),
        ),
    ),
    "flat_bn": Arch(
        (10,),
        (
            L("dense", "d1", units=6),
            L("batchnorm", "bn"),
            L("relu", "r"),
            L("dense", "d2", units=3),
            L("softmax", "sm"),
        ),
    ),
}


def _mask(arch: Arch, names) -> int:
    idx = {l.name: i for i, l in enumerate(arch.layers)}
    return sum(1 << idx[n] for n in names)


CASES = [
    ("paper", "full"),
    ("paper", "tl"),
    ("paper", ["conv2"]),
    ("conv_maxpool_overlap_gmp", "full"),
    ("conv_maxpool_overlap_gmp", ["c1"]),
    ("conv_maxpool_drops_a_row", ["d"]),
    ("conv_bn_avgstride_flatten_dropout", "full"),  # BN folded into the trained conv
    ("conv_bn_avgstride_flatten_dropout", ["bn1", "d2"]),  # BN trained, conv frozen: affine BN
    ("conv2d_bn_maxpool2d_gap2d", "full"),
    ("conv2d_bn_maxpool2d_gap2d", ["bn0", "c2"]),
    ("ign_like", "full"),
    ("ign_like", "tl"),
    ("gmp_like", "full"),
    ("kernel_shapes", "full"),
    ("kernel_shapes", ["c2", "d1"]),
    ("conv2d_k3_w3", "full"),
    ("flat_bn", "full"),
    ("paper", None),  # inference only
]


def _close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    scale = max(float(np.abs(want).max()), 1e-30)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale, err_msg=what)


@pytest.mark.parametrize("name, trainable", CASES, ids=[f"{a}-{t}" for a, t in CASES])
def test_layers_forward_and_backward_match_the_engine(tools, name, trainable):
    arch = ARCHS[name]
    w = _weights(arch, seed=len(name))
    rng = np.random.default_rng(7)
    n = 3
    x = rng.normal(0, 1, (n, *arch.input_shape)).astype(np.float32)
    y = rng.integers(0, arch.n_classes, n)
    names = arch.trainable(trainable) if isinstance(trainable, str) else (trainable or [])
    probs, losses, grads = c_layers(tools["odl-kernels"], arch, w, _mask(arch, names), x, y)
    ref = Model(arch, w)
    want_p = ref.predict(x)
    _close(probs, want_p, "softmax probabilities")
    _close(losses, -np.log(want_p[np.arange(n), y]), "cross-entropy")
    if not names:
        assert grads.size == 0
        return
    _, g = ref.gradients(x, y, trainable=sorted(names))
    want = np.concatenate([np.ravel(a) for arrs in g.values() for a in arrs]) * n  # the C core sums the windows
    assert grads.shape == want.shape
    off = 0
    for lname, arrs in g.items():  # compare tensor by tensor, so the error names the layer
        for j, a in enumerate(arrs):
            k = a.size
            _close(grads[off : off + k], np.ravel(a) * n, f"gradient {j} of {lname}")
            off += k


@pytest.mark.parametrize("name, trainable", CASES, ids=[f"{a}-{t}" for a, t in CASES])
def test_assembly_kernels_give_the_same_bits_as_their_c_twins(tools, name, trainable):
    """The ARM build (kernels_m4.S) under QEMU and the native build (the C twins in kernels.c) return the same
    probabilities, losses and gradients to the last bit, so what the engine comparison above checks on the
    host holds for the code that runs on the board."""
    elf = firmwarekit.arm_kernels()
    arch = ARCHS[name]
    w = _weights(arch, seed=len(name) + 1)
    rng = np.random.default_rng(11)
    x = rng.normal(0, 1, (4, *arch.input_shape)).astype(np.float32)
    y = rng.integers(0, arch.n_classes, 4)
    names = arch.trainable(trainable) if isinstance(trainable, str) else (trainable or [])
    req = layers_request(arch, w, _mask(arch, names), x, y)
    native = subprocess.run([str(tools["odl-kernels"]), "layers"], input=req, capture_output=True, timeout=60)
    assert native.returncode == 0, native.stderr.decode()[-3000:]
    arm = firmwarekit.run_arm(elf, ["layers"], req)
    assert len(arm) == len(native.stdout) > 0
    a, b = np.frombuffer(arm, "<u4"), np.frombuffer(native.stdout, "<u4")
    diff = np.flatnonzero(a != b)
    assert diff.size == 0, (
        f"{diff.size} of {a.size} floats differ, first at {diff[0]}: "
        f"ARM {a.view('<f4')[diff[0]]!r} vs native {b.view('<f4')[diff[0]]!r}"
    )


# the grouped dense head (model.h: plan_t.group): heads with 5-unit blocks and every tail (13 = 5 + 5 + 3,
# 7 = 5 + 2, 6 = 5 + 1, 4, 3), views between the layers, the warm-up's last-layer-only head
GROUP_CASES = [
    ("paper", "tl"),
    ("paper", ["dense2"]),
    ("kernel_shapes", ["d1", "d2"]),
    ("conv_bn_avgstride_flatten_dropout", ["d1", "d2"]),
    ("ign_like", "tl"),
    ("conv2d_k3_w3", ["d"]),
]


@pytest.mark.parametrize("name, trainable", GROUP_CASES, ids=[f"{a}-{t}" for a, t in GROUP_CASES])
def test_grouped_head_gives_the_per_window_heads_bits(tools, name, trainable):
    """A round runs the dense head behind frozen layers over groups of 4 windows (each weight and gradient
    row loaded once per group); the probabilities, losses and summed gradients are those of the per-window
    head to the last bit, native (C twins) and on the M4F (assembly), for full groups and a last partial one
    (9 windows: 4 + 4 + 1), and the engine's within 1e-5."""
    arch = ARCHS[name]
    w = _weights(arch, seed=len(name) + 2)
    rng = np.random.default_rng(13)
    n = 9
    x = rng.normal(0, 1, (n, *arch.input_shape)).astype(np.float32)
    y = rng.integers(0, arch.n_classes, n)
    names = arch.trainable(trainable) if isinstance(trainable, str) else trainable
    req = layers_request(arch, w, _mask(arch, names), x, y)
    outs = {}
    for mode in ("layers", "layers1"):
        r = subprocess.run([str(tools["odl-kernels"]), mode], input=req, capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr.decode()[-3000:]
        outs[mode] = r.stdout
    arm = firmwarekit.run_arm(firmwarekit.arm_kernels(), ["layers"], req)
    for what, got in (("native grouped", outs["layers"]), ("ARM grouped", arm)):
        a, b = np.frombuffer(got, "<u4"), np.frombuffer(outs["layers1"], "<u4")
        assert a.size == b.size > 0, what
        diff = np.flatnonzero(a != b)
        assert diff.size == 0, (
            f"{what}: {diff.size} of {a.size} floats differ from the per-window head, first at {diff[0]}"
        )
    k = arch.n_classes
    out = np.frombuffer(outs["layers"], "<f4")
    per = out[: n * (k + 1)].reshape(n, k + 1)
    ref = Model(arch, w)
    _close(per[:, :k], ref.predict(x), "softmax probabilities")
    _, g = ref.gradients(x, y, trainable=sorted(names))
    want = np.concatenate([np.ravel(a) for arrs in g.values() for a in arrs]) * n
    _close(out[n * (k + 1) :], want, "gradients")


@pytest.mark.parametrize("n", [32, 5, 1, 64])
def test_sgd_step_is_the_engines_and_the_same_on_the_board(tools, n):
    """w - (acc / n) * lr, rounded as device.engine rounds it, whether n is a power of two (the board
    multiplies by 1/n) or not (it divides), and the same bits from the assembly."""
    rng = np.random.default_rng(n)
    ln = 1037
    w = rng.normal(0, 0.3, ln).astype(np.float32)
    acc = (rng.normal(0, 1, ln) * 10.0 ** rng.integers(-40, 3, ln)).astype(np.float32)
    lr = np.float32(0.0123)
    req = struct.pack("<Iff", ln, float(n), float(lr)) + w.tobytes() + acc.tobytes()
    r = subprocess.run([str(tools["odl-kernels"]), "sgd"], input=req, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    got = np.frombuffer(r.stdout, "<f4")
    want = w - (acc / np.float32(n)) * lr
    assert got[:ln].tobytes() == want.astype(np.float32).tobytes()
    assert got[ln:].tobytes() == bytes(4 * ln)  # the accumulator is left at +0 for the next batch
    arm = firmwarekit.run_arm(firmwarekit.arm_kernels(), ["sgd"], req)
    assert arm == r.stdout


def _mathf_inputs() -> np.ndarray:
    """Every region of odl_expf and odl_logf: the softmax's own range (z <= 0), results that are subnormal
    (x in about [-104, -87.3]) or next to overflow (n = 128 near 88.7), the limits themselves, logs of
    subnormals, of 0, of negatives, of the infinities and NaN, and a sweep across the whole float range."""
    rng = np.random.default_rng(5)
    f32 = np.float32
    edges = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 88.0, 88.5, 88.72283, 88.72284, 89.0, -87.0, -87.33655, -87.4,
             -100.0, -103.0, -103.97207, -103.97208, -103.9721, -104.0, -200.0,
             np.finfo(f32).tiny, np.finfo(f32).smallest_subnormal, 3e-42, 1e-40, 1.17e-38, np.finfo(f32).max,
             -np.finfo(f32).max, np.inf, -np.inf, np.nan, np.sqrt(2.0), np.sqrt(0.5), 1.4142134, 1.4142137]  # fmt: skip
    sweep = [rng.uniform(-110, 90, 3000), -rng.exponential(8.0, 2000), rng.uniform(-104, -87, 2000),
             rng.uniform(87.5, 88.8, 500), 2.0 ** rng.uniform(-149, 128, 3000), rng.uniform(0.6, 1.5, 1000)]  # fmt: skip
    return np.concatenate([np.array(edges), *sweep]).astype(np.float32)


def _ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """|got - want| in units of the float32 spacing at the true value (the subnormal spacing below 2^-126)."""
    spacing = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    return np.abs(got.astype(np.float64) - want) / spacing


def test_exp_and_log_are_within_a_few_ulp_over_the_whole_float_range(tools):
    """The softmax's exp and log (kernels.c: from + - * / only, so the board and the host give the same bits)
    against float64 numpy over every branch: exp within 1.5 ulp of the true value, subnormal results included
    (scaled in two steps), log within 3 ulp (its worst case is just above 1, where the result is small: 2.8 ulp
    in a 300,000-point sweep), the overflow and underflow limits where float32 has them, the special values
    (log of 0 is -inf, of a negative is NaN, exp(NaN) is NaN); and the assembly build's bits equal the native
    build's."""
    x = _mathf_inputs()
    req = struct.pack("<I", x.size) + x.tobytes()
    r = subprocess.run([str(tools["odl-kernels"]), "mathf"], input=req, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    out = np.frombuffer(r.stdout, "<f4")
    e, lg = out[: x.size], out[x.size :]
    xd = x.astype(np.float64)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        want_e, want_l = np.exp(xd), np.log(xd)
    # exp: where float32 has a finite, non-zero result, within 1.5 ulp of it; beyond, inf or 0 as float32 rounds
    finite_e = np.isfinite(xd) & (want_e < float(np.finfo(np.float32).max)) & (want_e >= 2.0**-149)
    worst = _ulps(e[finite_e], want_e[finite_e])
    assert worst.max() <= 1.5, f"exp off by {worst.max():.2f} ulp at x = {x[finite_e][worst.argmax()]!r}"
    sub = finite_e & (want_e < 2.0**-126)
    assert sub.sum() > 1000 and (e[sub] > 0).all() and (e[sub] < np.finfo(np.float32).tiny).all()
    assert (e[xd > 88.72284] == np.inf).all() and (e[(xd < -103.97208) | (xd == -np.inf)] == 0).all()
    assert np.isnan(e[np.isnan(xd)]).all() and e[xd == 0].tolist() == [1.0, 1.0]
    # log: within 3 ulp of the true value for every positive finite x, subnormals included
    pos = np.isfinite(xd) & (xd > 0)
    assert (x[pos] < np.finfo(np.float32).tiny).sum() >= 3
    near_one = pos & (np.abs(want_l) < 2.0**-126)  # log(1) = 0 exactly
    assert (lg[near_one] == 0).all()
    far = pos & ~near_one
    worst = _ulps(lg[far], want_l[far])
    assert worst.max() <= 3.0, f"log off by {worst.max():.2f} ulp at x = {x[far][worst.argmax()]!r}"
    assert (lg[xd == 0] == -np.inf).all() and (lg[xd == np.inf] == np.inf).all()
    assert np.isnan(lg[(xd < 0) | np.isnan(xd)]).all()
    arm = firmwarekit.run_arm(firmwarekit.arm_kernels(), ["mathf"], req)
    assert arm == r.stdout, "the Cortex-M4F build's exp/log bits differ from the native build's"
