"""Emulated NUCLEO-L496ZG + host client, in process (DeviceTransport): timeouts, retries, resync under
garbage, memory refusals, timing/current/D7 from the estimator, abort, sensor playback, reset."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest

from device.engine.model import Model
from device.nucleo import cobs
from device.nucleo import protocol as P
from device.nucleo.client import DeviceTransport, IntegrityError, NucleoClient, NucleoError, NucleoTimeout
from device.nucleo.crc import crc32
from device.nucleo.emulator import K_SLEEP_A_PER_HZ, NucleoEmulator
from device.nucleo.sensor import LSM6DSO, Trace, quantise
from device.nucleo.shuffle import epoch_order
from device.simclock import SimClock
from estimator.arch import Arch, Layer, paper_cnn
from estimator.core import time_per_batch_s
from estimator.memory import training_memory
from estimator.profiles import get_profile


class SilentTransport:
    """A link where nothing ever answers."""

    def __init__(self) -> None:
        self.written = bytearray()

    def write(self, data: bytes) -> int:
        self.written += data
        return len(data)

    def read(self, n: int = 1) -> bytes:
        time.sleep(0.01)
        return b""

    def close(self) -> None:
        pass


class NoisyTransport:
    """Wraps a transport: drops the first ``drop_replies`` frames coming back, and injects garbage
    (zeros included) and bit flips in both directions with the given probabilities."""

    def __init__(
        self, inner: DeviceTransport, seed: int = 0, drop_replies: int = 0, garbage: float = 0.0, flips: float = 0.0
    ):
        self.inner = inner
        self.rng = random.Random(seed)
        self.drop = drop_replies
        self.garbage = garbage
        self.flips = flips
        self._rx = bytearray()

    def _mangle(self, data: bytes) -> bytes:
        out = bytearray()
        if self.rng.random() < self.garbage:
            out += bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 30)))
        b = bytearray(data)
        if b and self.rng.random() < self.flips:
            i = self.rng.randrange(len(b))
            b[i] ^= 1 << self.rng.randrange(8)
        return bytes(out + b)

    def write(self, data: bytes) -> int:
        self.inner.write(self._mangle(data))
        return len(data)

    def read(self, n: int = 1) -> bytes:
        data = self.inner.read(n)
        if self.drop and data:
            self._rx += data
            while self.drop and b"\x00" in self._rx[1:]:
                cut = self._rx.index(0, 1) + 1  # frames start with 00 (client/board both prefix one)
                del self._rx[:cut]
                self.drop -= 1
            if self.drop:
                return b""
            data, self._rx = bytes(self._rx), bytearray()
        return self._mangle(data) if data else data

    def close(self) -> None:
        self.inner.close()


def make(time_scale: float = 2000.0, **kw):
    clock = SimClock(time_scale)
    emu = NucleoEmulator(clock, **kw)
    return clock, emu, NucleoClient(DeviceTransport(emu, clock), timeout=1.0)


def paper_model(T: int = 20, n: int = 5, seed: int = 1):
    arch = paper_cnn(T, n)
    return arch, Model(arch, seed=seed).get_weights()


def user_windows(n: int = 64, T: int = 20, classes: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.standard_normal((n, T, 3)).astype(np.float32) + y[:, None, None].astype(np.float32)
    return x, y


@pytest.fixture
def board():
    clock, emu, client = make()
    yield clock, emu, client
    client.close()
    emu.wait_idle(5)


# --- client timeouts, retries, resync ---------------------------------------------------------------
def test_client_timeout_names_the_request():
    c = NucleoClient(SilentTransport(), timeout=0.1, retries=2)
    t0 = time.monotonic()
    with pytest.raises(NucleoTimeout, match=r"no answer to GetInfo \(seq 1\) after 3 attempt\(s\) of 0.10 s"):
        c.info()
    assert 0.25 <= time.monotonic() - t0 < 2.0
    assert c.stats["retries"] == 2
    assert c.transport.written.count(P.DELIMITER + P.GetInfo().encode(1)) == 3  # same seq each time
    c.close()


def test_lost_reply_retry_is_not_executed_twice():
    clock = SimClock(2000.0)
    emu = NucleoEmulator(clock)
    noisy = NoisyTransport(DeviceTransport(emu, clock))
    c = NucleoClient(noisy, timeout=0.5)
    arch, w = paper_model()
    c.upload_model(arch, w)
    c.upload_dataset(*user_windows())
    c.drain_events()
    noisy.drop = 1  # the ROUND_INFO reply gets lost
    info = c.train("full", epochs=1)
    assert info.round_id == 1 and c.stats["retries"] == 1  # the retry got the cached answer, no BUSY
    assert c.wait_round_done(30).done.status == P.RoundStatus.DONE
    assert c.status().round_id == 1  # executed once
    c.close()


def test_requests_survive_garbage_and_bit_flips_both_ways():
    clock = SimClock(1000.0)
    emu = NucleoEmulator(clock)
    c = NucleoClient(
        NoisyTransport(DeviceTransport(emu, clock), seed=5, garbage=0.3, flips=0.15), timeout=0.2, retries=8
    )
    rng = np.random.default_rng(0)
    for i in range(20):
        data = rng.integers(0, 256, rng.integers(0, 300), dtype=np.uint8).tobytes()
        assert c.ping(data) == data
    arch, w = paper_model()
    info = c.upload_model(arch, w)
    assert info.crc32 == crc32(P.encode_model(arch, w)[0])
    got = c.download_weights(arch)
    for k in w:
        np.testing.assert_array_equal(got[k][0], w[k][0])
    assert emu.rx_errors > 0 and c.stats["retries"] > 0  # the noise really hit both sides
    assert c.decoder_stats["bad_crc"] + c.decoder_stats["bad_frame"] > 0
    c.close()


def test_version_handshake_and_bad_version(board):
    clock, emu, c = board
    rsp = c.hello()
    assert rsp.proto == 2 and rsp.flags & 1 and rsp.tick_hz == 1_000_000  # the highest both speak
    assert c.request(P.Hello(P.MAGIC, 1, 1), P.HelloRsp).proto == 1  # a v1 host is served in v1
    with pytest.raises(NucleoError, match="BAD_VERSION on HELLO") as exc:
        c.request(P.Hello(P.MAGIC, 3, 4), P.HelloRsp)
    assert exc.value.error.arg0 == 2


def _board_replies(emu: NucleoEmulator, data: bytes) -> list[tuple[int, P.Message]]:
    emu.receive(data)
    out = []
    while len(emu.pending()):
        chunk = bytes(emu.pending())
        emu.consume(len(chunk))
        out.append(chunk)
    return [(f.seq, P.decode_message(f)) for f in P.FrameDecoder().feed(b"".join(out))]


def test_board_answers_unknown_types_and_corrupt_frames():
    emu = NucleoEmulator(SimClock(1.0))
    emu.connect()
    (r,) = _board_replies(emu, P.DELIMITER + P.encode_frame(0x6E, 77, b""))
    assert r[0] == 77 and isinstance(r[1], P.Error) and r[1].code == P.ErrorCode.UNKNOWN_TYPE
    (r,) = _board_replies(emu, P.DELIMITER + P.Ack(1).encode(78))  # a response type sent to the board
    assert r[0] == 78 and r[1].code == P.ErrorCode.UNKNOWN_TYPE and "not a request" in r[1].message
    (r,) = _board_replies(emu, P.DELIMITER + P.encode_frame(P.MsgType.SET_CLOCK, 79, b"\x01"))
    assert r[1].code == P.ErrorCode.BAD_PAYLOAD and "SetClock payload is 1 bytes, expected 4" in r[1].message
    (r,) = _board_replies(emu, P.DELIMITER + P.encode_frame(P.MsgType.SIM_SET_ACTIVITY, 80, b"x" * 16))
    assert r[1].code == P.ErrorCode.BAD_PARAM
    body = bytearray(P.frame_body(P.MsgType.PING, 81, b"abc"))
    body[6] ^= 0x10  # corrupt one payload byte: the CRC fails
    replies = _board_replies(emu, cobs.encode(bytes(body)) + b"\x00" + P.Ping(b"ok").encode(82))
    assert replies[0][0] == P.SEQ_UNATTRIBUTED and replies[0][1].code == P.ErrorCode.BAD_CRC
    assert replies[1] == (82, P.Pong(b"ok"))  # the next frame is served normally
    assert emu.rx_errors == 1


# --- memory refusals -----------------------------------------------------------------------------------
def test_model_that_does_not_fit_is_refused_with_clear_error(board):
    clock, emu, c = board
    arch = Arch(
        (100, 3),
        (
            Layer("conv1d", "conv", filters=64, kernel=3),
            Layer("relu", "r"),
            Layer("flatten", "flat"),
            Layer("dense", "big", units=16),
            Layer("softmax", "sm"),
        ),
    )
    w = {n: [np.zeros(s, np.float32) for s in ss] for n, ss in arch.param_shapes().items()}
    with pytest.raises(NucleoError) as exc:
        c.upload_model(arch, w)
    e = exc.value
    assert e.code == P.ErrorCode.OUT_OF_RAM
    assert e.error.request == P.MsgType.MODEL_BEGIN
    assert e.error.arg0 == 4 * arch.params and e.error.arg1 == emu.ram_free
    assert "model weights need" in str(e) and "B free" in str(e)
    assert c.status().model_loaded == 0


def test_round_that_does_not_fit_is_refused_but_tl_fits(board):
    clock, emu, c = board
    arch, w = paper_model(T=100, n=5)
    c.upload_model(arch, w)
    x, y = user_windows(250, T=100)
    st = c.upload_dataset(x, y, 0, dtype=P.DType.I16, scale=0.01)
    assert st.data_bytes == 250 + 250 * 300 * 2
    with pytest.raises(NucleoError, match="OUT_OF_RAM on TRAIN_START: round needs") as exc:
        c.train("full", epochs=1)
    need = training_memory(arch, "full").paper_bytes + get_profile("paper").firmware_reserve_bytes + st.data_bytes
    assert exc.value.error.arg0 == need > 327_680
    info = c.train("tl", epochs=1, batch=125)
    assert info.mem_bytes == training_memory(arch, "tl").paper_bytes  # the round's training memory (Table III)
    c.abort()
    assert c.wait_round_done(20).done.status == P.RoundStatus.ABORTED


def test_unknown_layer_and_blob_crc_errors(board):
    clock, emu, c = board
    arch, w = paper_model()
    blob, dl = P.encode_model(arch, w)
    bad = bytearray(blob)
    bad[16 + 32 * 2] = 99
    c.request(P.ModelBegin(len(bad), dl, crc32(bad)), P.XferAck)
    with pytest.raises(NucleoError, match="UNKNOWN_LAYER on MODEL_CHUNK: layer 2: unknown layer kind code 99") as exc:
        c.request(P.ModelChunk(0, bytes(bad[:1020])), P.XferAck)
    assert exc.value.error.arg0 == 2 and exc.value.error.arg1 == 99
    with pytest.raises(NucleoError, match="BAD_STATE"):
        c.request(P.ModelChunk(1020, bytes(bad[1020:2040])), P.XferAck)
    # softmax in the middle: a valid descriptor the engine cannot run
    arch2 = Arch(
        (20, 3),
        (
            Layer("conv1d", "c", filters=4, kernel=3),
            Layer("softmax", "sm"),
            Layer("gap1d", "g"),
            Layer("dense", "d", units=3),
            Layer("softmax", "out"),
        ),
    )
    w2 = {n: [np.zeros(s, np.float32) for s in ss] for n, ss in arch2.param_shapes().items()}
    with pytest.raises(NucleoError, match="UNKNOWN_LAYER") as exc:
        c.upload_model(arch2, w2)
    assert exc.value.error.arg0 == 1
    # wrong announced CRC
    c.request(P.ModelBegin(len(blob), dl, crc32(blob) ^ 1), P.XferAck)
    for off, chunk in P.chunks(blob):
        c.request(P.ModelChunk(off, chunk), P.XferAck)
    with pytest.raises(NucleoError, match="BLOB_CRC") as exc:
        c.request(P.ModelEnd(), P.ModelInfo)
    assert exc.value.error.arg1 == crc32(blob)
    with pytest.raises(NucleoError, match="BAD_OFFSET"):
        c.request(P.ModelBegin(len(blob), dl, crc32(blob)), P.XferAck)
        c.request(P.ModelChunk(5, blob[5:100]), P.XferAck)


def test_weights_crc_mismatch_is_detected(board):
    clock, emu, c = board
    arch, w = paper_model()
    c.upload_model(arch, w)
    orig = emu._h_weights_read

    def corrupt(self, m, now):
        r = orig(m, now)
        return P.WeightsData(r.offset, bytes([r.data[0] ^ 0xFF]) + r.data[1:]) if m.offset == 0 else r

    emu._HANDLERS = {**emu._HANDLERS, P.WeightsRead: corrupt}  # board-side corruption the frame CRC cannot see
    with pytest.raises(IntegrityError, match="CRC-32"):
        c.download_weights(arch)


# --- timing, current, D7 -----------------------------------------------------------------------------
@pytest.mark.parametrize("profile", ["paper", "l496-80mhz"])
def test_round_timing_and_power_follow_the_estimator(profile):
    clock, emu, c = make(time_scale=5000.0 if profile == "paper" else 500.0, profile=profile)
    arch, w = paper_model()
    c.upload_model(arch, w)
    x, y = user_windows(70)
    c.upload_dataset(x, y)
    c.drain_events()
    info = c.train("full", epochs=2, batch=32, warmup_epochs=1)
    res = c.wait_round_done(60)
    prof = get_profile(profile)
    f = prof.clock_hz
    assert [b.phase for b in res.batches] == [0] * 3 + [1] * 6
    assert [b.n_samples for b in res.batches] == [32, 32, 6] * 3
    for b in res.batches:
        names = frozenset({"dense2"}) if b.phase == 0 else arch.trainable("full")
        d = time_per_batch_s(arch, names, b.n_samples, prof)
        assert b.end_tick - b.start_tick == pytest.approx(d * 1e6, abs=1)
        assert b.cycles == round(d * f)
    assert all(a.end_tick == b.start_tick for a, b in zip(res.batches, res.batches[1:]))
    assert res.done.cycles == info.est_cycles == sum(b.cycles for b in res.batches)
    assert res.done.end_tick - res.done.start_tick == pytest.approx(info.est_ticks, abs=2)
    if profile == "paper":  # Table III: a Full batch of 32 at T=20 takes 7.90 s
        assert (res.batches[3].end_tick - res.batches[3].start_tick) / 1e6 == pytest.approx(7.90, abs=0.01)
    # D7: one rising edge at the round start and one at every batch end, in simulated time
    t0 = emu._t_boot + res.done.start_tick / 1e6
    t1 = emu._t_boot + res.done.end_tick / 1e6
    edges = emu.d7_edges(t0 - 1e-3, t1 + 1e-3)
    assert len(edges) == 1 + len(res.batches)
    np.testing.assert_allclose(edges[1:], [emu._t_boot + b.end_tick / 1e6 for b in res.batches], atol=2e-6)
    # current: run mode I0 + k f during the round, sleep-mode level outside
    mid = (t0 + t1) / 2
    i_run, i_idle = emu.current(np.array([mid, t1 + 1.0]))
    assert i_run == pytest.approx(prof.current_a(f))
    assert i_idle == pytest.approx(prof.i0_a + K_SLEEP_A_PER_HZ * f)
    if profile == "paper":
        assert 3.3 * i_run == pytest.approx(2.65e-3, rel=0.01)  # the paper's measured power
    c.close()


def test_set_clock_scales_batch_time_and_current(board):
    clock, emu, c = board
    arch, w = paper_model()
    c.upload_model(arch, w)
    c.upload_dataset(*user_windows(32))
    durations = {}
    for hz in (8_000_000, 16_000_000):
        assert c.set_clock(hz) == hz
        c.drain_events()
        c.train("full", epochs=1)
        b = c.wait_round_done(30).batches[0]
        durations[hz] = b.end_tick - b.start_tick
        assert b.cycles == pytest.approx(durations[hz] * hz / 1e6, rel=1e-5)
    assert durations[8_000_000] == pytest.approx(2 * durations[16_000_000], abs=2)
    with pytest.raises(NucleoError, match="BAD_PARAM on SET_CLOCK: sysclk_hz 81000000"):
        c.set_clock(81_000_000)
    with pytest.raises(NucleoError, match="whole number of MHz"):
        c.set_clock(8_500_000)


def test_abort_mid_round_and_busy():
    clock, emu, c = make(time_scale=50.0)  # slow: one Full batch of 32 = 7.9 s sim = 0.16 s wall
    arch, w = paper_model()
    c.upload_model(arch, w)
    c.upload_dataset(*user_windows(128))
    c.drain_events()
    c.train("full", epochs=2)
    first = c.next_event(P.BatchReport, 5.0)
    assert first is not None
    with pytest.raises(NucleoError, match="BUSY on MODEL_BEGIN") as exc:
        c.upload_model(arch, w)
    assert exc.value.code == P.ErrorCode.BUSY
    with pytest.raises(NucleoError, match="BUSY"):
        c.download_weights(arch)
    t_abort = clock.now()
    c.abort()
    res = c.wait_round_done(10)
    assert res.done.status == P.RoundStatus.ABORTED
    assert 1 <= res.done.batches_done < 8
    end = emu._t_boot + res.done.end_tick / 1e6
    assert end == pytest.approx(t_abort, abs=0.5)
    assert len(emu.d7_edges(end, end + 100)) == 0  # no marker after the abort
    assert emu.current(np.array([end + 0.01]))[0] < 0.5e-3  # back to sleep current
    # weights = initial weights + exactly the reported batches (the interrupted one was discarded)
    ref = Model(arch, w)
    x, y = emu.slots[0].x, emu.slots[0].y
    order = epoch_order(0, 0, len(y))  # the board's shuffle (seed 0, first epoch)
    for b in range(res.done.batches_done):
        idx = order[b * 32 : (b + 1) * 32]
        ref.train_batch(x[idx], y[idx], 0.01, "full")
    got = c.download_weights(arch)
    np.testing.assert_allclose(got["dense2"][0], ref.get_weights()["dense2"][0], rtol=1e-5, atol=1e-6)
    c.close()


def test_evaluate_confusion_matrix(board):
    clock, emu, c = board
    arch, w = paper_model()
    c.upload_model(arch, w)
    x, y = user_windows(40, seed=3)
    c.upload_dataset(x, y, slot=1)
    r = c.evaluate(1, timeout=10)
    pred = Model(arch, w).predict(x).argmax(1)
    expect = np.zeros((5, 5), int)
    np.add.at(expect, (y, pred), 1)
    np.testing.assert_array_equal(r.matrix, expect)
    assert r.n == 40 and r.cycles > 0
    with pytest.raises(NucleoError, match="NO_DATA"):
        c.train("full")


# --- sensor --------------------------------------------------------------------------------------------
def test_stream_blocks_timing_fs_and_activity_switch(board):
    clock, emu, c = board
    st = c.sensor_config(104.0, 4)
    assert (st.odr_mhz, st.fs_g, st.sens_ng) == (104000, 4, 122000)
    with pytest.raises(NucleoError, match="allowed mHz: 12500, 26000, 52000"):
        c.sensor_config(100.0, 4)
    with pytest.raises(NucleoError, match="full scale"):
        c.sensor_config(104.0, 3)
    c.set_activity("sitting")
    c.stream_start(52)
    blocks = [c.read_samples(5.0) for _ in range(10)]
    ticks = np.array([b.tick for b in blocks])
    assert all(b.n == 52 and b.odr_mhz == 104000 and b.fs_g == 4 for b in blocks)
    np.testing.assert_allclose(np.diff(ticks), 52 * 1e6 / 104.0, atol=1.5)
    sit = np.concatenate([b.xyz for b in blocks]).astype(float) * 122e-6
    assert 0.8 < np.median(np.linalg.norm(sit, axis=1)) < 1.2  # gravity, in g
    act = c.set_activity("jogging")
    assert act.current == "jogging" and "walking" in act.available
    c.drain_events(P.Samples)
    jog = np.concatenate([c.read_samples(5.0).xyz for _ in range(10)]).astype(float) * 122e-6
    assert jog.std(axis=0).max() > 5 * sit.std(axis=0).max()  # jogging shakes, sitting does not
    with pytest.raises(NucleoError, match="BUSY on TRAIN_START: cannot train while the sensor streams"):
        arch, w = paper_model()
        c.upload_model(arch, w)
        c.upload_dataset(*user_windows(8))
        c.train("full")
    assert c.stream_stop().streaming == 0
    with pytest.raises(NucleoError, match="not in the trace"):
        c.set_activity("swimming")


def test_lsm6dso_quantisation_and_saturation():
    assert quantise(np.array([[1.0, -1.0, 0.0]]), 2).tolist() == [[16393, -16393, 0]]
    assert quantise(np.array([[3.0, -3.0, 1.0]]), 2).tolist() == [[32767, -32768, 16393]]
    assert quantise(np.array([[3.0, 0, 0]]), 4)[0, 0] == round(3.0 / 122e-6)
    seg = np.tile(np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]], np.float32), (50, 1))
    s = LSM6DSO(Trace(20.0, {"still": seg}), odr_hz=26.0, fs_g=2)
    counts = s.samples(np.arange(2000) / 26.0)
    z = counts[:, 2] * 61e-6
    assert z.mean() == pytest.approx(1.0, abs=1e-3)
    assert z.std() == pytest.approx(80e-6 * np.sqrt(13), rel=0.15)  # noise density x sqrt(ODR/2)


def test_reset_clears_state_and_sends_boot(board):
    clock, emu, c = board
    arch, w = paper_model()
    c.upload_model(arch, w)
    c.set_clock(16_000_000)
    c.drain_events()
    c.reset()
    boot = c.next_event(P.Boot, 2.0)
    assert boot is not None and boot.reset_cause == 1
    st = c.status()
    assert st.model_loaded == 0 and c.info().sysclk_hz == 8_000_000
    assert st.uptime_ticks < 5_000_000_000


def test_round_start_edge_is_never_stamped_in_the_measurers_past():
    """Regression: the round's D7 start edge was stamped with the time the request *arrived*; the LPM01A
    (another thread) could already have measured past it, so the edge was never reported (GUI round
    energy then had to rebuild the first batch).  The plan must be registered at the clock's time."""
    clock, emu, client = make(time_scale=1000.0)
    try:
        arch, w = paper_model()
        x, y = user_windows(40)
        client.upload_model(arch, w)
        client.upload_dataset(x, y)
        real = NucleoEmulator._HANDLERS[P.TrainStart]
        seen = {}

        def late_handler(self, m, now):
            # the LPM01A measures up to clock.now() between the request's arrival and its handling
            time.sleep(0.01)  # 10 ms wall = 10 s simulated
            seen["measured_to"] = float(clock.now())
            seen["arrived"] = now
            return real(self, m, now)

        emu._HANDLERS = {**NucleoEmulator._HANDLERS, P.TrainStart: late_handler}  # this instance only
        info = client.train("tl", epochs=1, batch=16)
        edges = emu.d7_edges(seen["arrived"] - 1.0, float("inf"))
        assert len(edges) == 1 + info.total_batches
        assert seen["measured_to"] > seen["arrived"] + 1.0  # the race really happened in this test
        assert edges[0] >= seen["measured_to"], "start edge stamped in the past of what was already measured"
        client.abort()
    finally:
        client.close()
        emu.wait_idle(5)
