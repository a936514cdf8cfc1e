"""Protocol conformance, one suite for every board: the Python emulated board (``python``) and the ODL
firmware itself under QEMU (``qemu``), both on the virtual bench, and the firmware's portable core as a
native process (``host``: ``odl-host``, built with ASan and UBSan, which is how planted bugs in proto.c are
measured, see benchmarks/firmware_mutation.py).  Each test talks to the board only through its serial
endpoint, as the app does; where the boards legitimately differ (a batch's duration comes from the estimator
on one, from the code that ran under QEMU on another and from the host's clock on the native one; what the
firmware's memory plan needs), the test states the protocol's rule instead of one board's number.  What
needs the bench itself (its simulated person, clock, D7 line and power shield) is checked on the two bench
boards only."""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Callable

import numpy as np
import pytest

from device.bench import VirtualBench
from device.engine.model import Model
from device.nucleo import protocol as P
from device.nucleo.client import NucleoClient, NucleoError, _open_port
from device.nucleo.crc import crc32
from device.nucleo.shuffle import epoch_order
from estimator.arch import Arch, Layer, paper_cnn
from tests import firmwarekit
from tests.device.test_nucleo_emulator import NoisyTransport

BOARDS = ["python", "qemu", "host"]
BENCH_BOARDS = ["python", "qemu"]  # the boards of the virtual bench (simulated person, clock, D7, LPM01A)

#: INFO's identity per board: (board, mcu) -- the native core says what it is, not what it stands for
IDENTITY = {
    "python": ("NUCLEO-L496ZG", "STM32L496ZG"),
    "qemu": ("NUCLEO-L496ZG", "STM32L496ZG"),
    "host": ("host", "x86-64"),
}


class Board:
    def __init__(self, kind: str, time_scale: float, seed: int = 1) -> None:
        self.kind = kind
        self._stack = contextlib.ExitStack()
        if kind == "host":  # odl-host: no bench around it
            self.bench = self.emu = None
            self.urls = {"board": self._stack.enter_context(firmwarekit.host_board()), "board_kind": kind}
        else:
            if kind == "qemu":
                firmwarekit.qemu_files()
            self.bench = VirtualBench(board_kind=kind, time_scale=time_scale, seed=seed)
            self.urls = self.bench.start()
            self._stack.callback(self.bench.stop)
            assert self.urls["board_kind"] == kind
            self.emu = self.bench.board
        self.client = NucleoClient.open(self.urls["board"], timeout=5.0)

    @property
    def on_bench(self) -> bool:
        return self.bench is not None

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            self._stack.close()


@pytest.fixture(params=BOARDS)
def board(request):
    b = Board(request.param, time_scale=200.0)
    yield b
    b.close()


def paper_model(T: int = 20, n: int = 5, seed: int = 1):
    arch = paper_cnn(T, n)
    return arch, Model(arch, seed=seed).get_weights()


def user_windows(n: int = 64, T: int = 20, classes: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.standard_normal((n, T, 3)).astype(np.float32) + y[:, None, None].astype(np.float32)
    return x, y


def loaded(c: NucleoClient, n: int = 64):
    """The paper CNN and ``n`` user windows (slot 0) on the board, its pending events drained; returns
    ``(arch, weights, x, y)``."""
    arch, w = paper_model()
    c.upload_model(arch, w)
    x, y = user_windows(n)
    c.upload_dataset(x, y)
    c.drain_events()
    return arch, w, x, y


def raw_exchange(url: str, data: bytes, wait_s: float = 1.0) -> list[tuple[int, P.Message]]:
    """Send raw bytes on a fresh connection and decode what comes back within ``wait_s``."""
    host, port = url.removeprefix("socket://").split(":")
    with socket.create_connection((host, int(port)), timeout=2) as s:
        time.sleep(0.1)
        s.sendall(data)
        s.settimeout(0.1)
        buf = b""
        t_end = time.monotonic() + wait_s
        while time.monotonic() < t_end:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            buf += chunk
    frames = P.FrameDecoder().feed(buf)
    return [(f.seq, P.decode_message(f)) for f in frames if f.type != P.MsgType.BOOT]


# --- handshake and framing --------------------------------------------------------------------------
def test_version_handshake_and_bad_version(board):
    c = board.client
    rsp = c.hello()
    # the host offers v1..v2; both boards speak v2 (the robust round of issue 17) and answer the highest common
    assert rsp.proto == 2 and rsp.flags & 1 and rsp.tick_hz == 1_000_000 and rsp.max_payload == 1024
    assert c.request(P.Hello(P.MAGIC, 1, 1), P.HelloRsp).proto == 1  # a v1 host is served in v1
    with pytest.raises(NucleoError, match="BAD_VERSION on HELLO") as exc:
        c.request(P.Hello(P.MAGIC, 3, 4), P.HelloRsp)  # newer than either board
    # the board names the highest version it speaks
    assert exc.value.error.arg0 == 2
    assert "board speaks ODL1 v1..2; host offered magic 4F444C31 v3..4" in str(exc.value)
    with pytest.raises(NucleoError, match="BAD_VERSION on HELLO: .* host offered magic 4F445A39 v1..2"):
        c.request(P.Hello(b"ODZ9", 1, 2), P.HelloRsp)  # another protocol's magic, named as sent
    info = c.info()
    assert info.dev_id == 0x461 and info.ram_total == 327_680 and info.sensor_whoami == 0x6C
    assert (info.board, info.mcu) == IDENTITY[board.kind] and info.sensor == "LSM6DSO"


def test_unknown_types_bad_payloads_and_corrupt_frames(board):
    board.client.close()  # one host at a time: the raw connection below replaces it
    body = bytearray(P.frame_body(P.MsgType.PING, 81, b"abc"))
    body[6] ^= 0x10  # corrupt one payload byte: the CRC fails
    from device.nucleo import cobs

    data = (
        P.DELIMITER
        + P.encode_frame(0x6E, 77, b"")
        + P.DELIMITER
        + P.Ack(1).encode(78)
        + P.DELIMITER
        + P.encode_frame(P.MsgType.SET_CLOCK, 79, b"\x01")
        + P.DELIMITER
        + P.encode_frame(P.MsgType.SIM_SET_ACTIVITY, 80, b"x" * 16)
    )
    replies = raw_exchange(board.urls["board"], data)
    assert [r[0] for r in replies] == [77, 78, 79, 80]
    assert replies[0][1].code == P.ErrorCode.UNKNOWN_TYPE
    assert replies[1][1].code == P.ErrorCode.UNKNOWN_TYPE and "not a request" in replies[1][1].message
    assert replies[2][1].code == P.ErrorCode.BAD_PAYLOAD
    assert "SetClock payload is 1 bytes, expected 4" in replies[2][1].message
    if board.on_bench:
        assert replies[3][1].code == P.ErrorCode.BAD_PARAM  # "x" * 16 is not an activity of the trace
    else:  # no simulated person behind the native core: refused as the real firmware refuses it
        assert replies[3][1].code == P.ErrorCode.UNSUPPORTED and "SimSetActivity" in replies[3][1].message
    errors = [r[1] for r in replies]
    replies = raw_exchange(
        board.urls["board"], P.DELIMITER + cobs.encode(bytes(body)) + b"\x00" + P.Ping(b"ok").encode(82)
    )
    assert replies[0][0] == P.SEQ_UNATTRIBUTED and replies[0][1].code == P.ErrorCode.BAD_CRC
    assert replies[1] == (82, P.Pong(b"ok"))  # the next frame is served normally
    # two damaged frames in one write: at most one ERROR per received chunk (protocol.md §2); under QEMU the
    # UART hands the bytes over as the emulation runs, so the write may arrive as two chunks
    bad = P.DELIMITER + cobs.encode(bytes(body)) + b"\x00"
    twice = raw_exchange(board.urls["board"], bad + bad + P.Ping(b"ok").encode(83))
    n_err = sum(r[0] == P.SEQ_UNATTRIBUTED and r[1].code == P.ErrorCode.BAD_CRC for r in twice)
    assert twice[-1] == (83, P.Pong(b"ok")) and len(twice) == n_err + 1
    assert n_err == 1 if board.kind != "qemu" else 1 <= n_err <= 2
    assert all((e.arg0, e.arg1) == (0, 0) for e in errors + [replies[0][1], twice[0][1]])  # all – – in §3.5
    assert replies[0][1].request == twice[0][1].request == 0  # a damaged frame's request is unknown: 0
    board.client = NucleoClient.open(board.urls["board"], timeout=5.0)
    assert board.client.status().rx_errors >= 1


def test_every_request_of_the_catalogue_refuses_a_payload_of_the_wrong_size(board):
    """protocol.md §3: each request has a fixed payload size (or a fixed head and a tail).  One byte more than
    the fixed size, or one byte less than the head, is BAD_PAYLOAD naming the request, the size received and
    the size expected, and changes nothing -- for every request of the catalogue, Reset included; type 0x70,
    just past the requests' range, is not a request."""
    board.client.upload_model(*paper_model())
    board.client.close()  # one host at a time: the raw connection below replaces it
    requests = {t: cls for t, cls in P.message_types().items() if P.is_request(t)}
    assert len(requests) == 25
    data, expect = P.DELIMITER, {}
    seq = 100
    for t, cls in sorted(requests.items()):
        size = cls._struct.size
        if t == P.MsgType.TRAIN_START:
            wrong = [size - 1, size + 1, size + 17]  # 28 (v1) and 44 (v2) are the two valid sizes
        elif cls.TAIL:  # a head, then any tail
            wrong = [size - 1] if size else []
        else:
            wrong = [size + 1] + ([size - 1] if size else [])
        for n in wrong:
            data += P.encode_frame(t, seq, bytes(n)) + P.DELIMITER
            want = f"at least {size}" if cls.TAIL else f"{size}" + (" or 44" if t == P.MsgType.TRAIN_START else "")
            expect[seq] = f"{cls.__name__} payload is {n} bytes, expected {want}"
            seq += 1
    data += P.encode_frame(0x70, seq, b"") + P.DELIMITER
    replies = raw_exchange(board.urls["board"], data, wait_s=1.5)
    assert [r[0] for r in replies] == [*expect, seq]
    for (s, msg), text in zip(replies, expect.values()):
        assert msg.code == P.ErrorCode.BAD_PAYLOAD and msg.message == text, (s, msg.message)
    assert replies[-1][1].code == P.ErrorCode.UNKNOWN_TYPE and "not a request" in replies[-1][1].message
    board.client = NucleoClient.open(board.urls["board"], timeout=5.0)
    st = board.client.status()
    assert st.state == P.BoardState.IDLE and st.model_loaded == 1  # no Reset, no transfer was started


def test_lost_reply_retry_is_not_executed_twice(board):
    noisy = NoisyTransport(_open_port(board.urls["board"], 921_600, 2.0))
    c = NucleoClient(noisy, timeout=1.0)
    loaded(c)
    noisy.drop = 1  # the ROUND_INFO reply gets lost
    info = c.train("tl", epochs=1)
    assert c.stats["retries"] == 1  # the retry got the cached answer, no BUSY
    assert c.wait_round_done(60).done.status == P.RoundStatus.DONE
    assert c.status().round_id == info.round_id  # executed once
    c.close()


def test_requests_survive_garbage_and_bit_flips_both_ways(board):
    c = NucleoClient(
        NoisyTransport(_open_port(board.urls["board"], 921_600, 2.0), seed=5, garbage=0.3, flips=0.15),
        timeout=0.5,
        retries=8,
    )
    rng = np.random.default_rng(0)
    for _ in range(10):
        data = rng.integers(0, 256, rng.integers(0, 300), dtype=np.uint8).tobytes()
        assert c.ping(data) == data
    arch, w = paper_model()
    info = c.upload_model(arch, w)
    assert info.crc32 == crc32(P.encode_model(arch, w)[0])
    got = c.download_weights(arch)
    for k in w:
        np.testing.assert_array_equal(got[k][0], w[k][0])
    assert c.stats["retries"] > 0 and c.status().rx_errors > 0  # the noise really hit both sides
    c.close()


# --- memory refusals, descriptor and transfer errors ------------------------------------------------
def test_model_that_does_not_fit_is_refused_with_clear_error(board):
    c = board.client
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
    free = c.info().ram_free
    with pytest.raises(NucleoError) as exc:
        c.upload_model(arch, w)
    e = exc.value
    assert e.code == P.ErrorCode.OUT_OF_RAM and e.error.request == P.MsgType.MODEL_BEGIN
    assert e.error.arg0 >= 4 * arch.params > e.error.arg1 and e.error.arg1 <= free
    assert str(e.error.arg0) in str(e) and "B free" in str(e)
    assert c.status().model_loaded == 0


def test_model_whose_inference_does_not_fit_counts_the_stored_windows(board):
    """A model whose weights fit but whose activations do not: refused at the descriptor with OUT_OF_RAM, and
    the bytes it needs grow by exactly the stored windows' bytes (protocol.md §6: inference memory + firmware
    reserve + datasets)."""
    c = board.client
    arch = Arch(
        (1200, 3),
        (Layer("conv1d", "c", filters=64, kernel=3), Layer("gap1d", "g"), Layer("dense", "d", units=4),
         Layer("softmax", "sm")),
    )  # fmt: skip
    w = {n: [np.zeros(s, np.float32) for s in ss] for n, ss in arch.param_shapes().items()}
    needs, free = [], c.info().ram_free
    for n in (0, 40):
        if n:
            st = c.upload_dataset(*user_windows(n, T=20), slot=1)
            stored = free - st.ram_free  # as the board stores them (the firmware aligns a blob to 8 bytes)
            assert 0 <= stored - st.data_bytes < 8 and st.data_bytes > 40 * 60 * 4
        with pytest.raises(NucleoError, match="OUT_OF_RAM on MODEL_CHUNK: model needs") as exc:
            c.upload_model(arch, w)
        assert exc.value.error.arg1 == 327_680 < exc.value.error.arg0
        assert f"+ {board.client.info().ram_total - 303_104} B firmware" in str(exc.value)
        needs.append(exc.value.error.arg0)
    assert needs[1] - needs[0] == stored
    assert c.status().model_loaded == 0


def test_round_that_does_not_fit_is_refused_but_tl_fits(board):
    """A dataset large enough that Full no longer fits beside it but TL does.  The firmware's memory plan
    needs less than the paper accounting the Python board applies, so it takes more windows to get there."""
    c = board.client
    arch, w = paper_model(T=100, n=5)
    c.upload_model(arch, w)
    n = {"python": 250, "qemu": 300, "host": 300}[board.kind]
    x, y = user_windows(n, T=100)
    st = c.upload_dataset(x, y, 0, dtype=P.DType.I16, scale=0.01)
    assert st.n_windows == n and st.data_bytes >= n + n * 300 * 2
    with pytest.raises(NucleoError, match="OUT_OF_RAM on TRAIN_START: round needs") as exc:
        c.train("full", epochs=1)
    assert exc.value.error.arg0 > exc.value.error.arg1 == 327_680
    info = c.train("tl", epochs=1, batch=125)
    assert info.mem_bytes <= 327_680 and info.total_batches == -(-n // 125)
    c.abort()
    assert c.wait_round_done(60).done.status == P.RoundStatus.ABORTED


def test_unknown_layer_and_blob_crc_errors(board):
    c = board.client
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
    arch2 = Arch(  # softmax in the middle: a valid descriptor no board can train
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
    c.request(P.ModelBegin(len(blob), dl, crc32(blob) ^ 1), P.XferAck)
    for off, chunk in P.chunks(blob):
        c.request(P.ModelChunk(off, chunk), P.XferAck)
    with pytest.raises(NucleoError, match="BLOB_CRC") as exc:
        c.request(P.ModelEnd(), P.ModelInfo)
    assert exc.value.error.arg1 == crc32(blob)
    c.request(P.ModelBegin(len(blob), dl, crc32(blob)), P.XferAck)
    with pytest.raises(NucleoError, match="BAD_OFFSET"):
        c.request(P.ModelChunk(5, blob[5:100]), P.XferAck)


def test_the_learning_rate_out_of_range_is_the_one_named(board):
    """TRAIN_START with one learning rate outside 0..10 names that one, also when the other is exactly 0; the
    limits' own values (a rate of 0, a batch of 1) are accepted."""
    c = board.client
    loaded(c)
    for lr, warmup_lr, name in ((0.0, 20.0, "warmup_lr"), (20.0, 0.0, "lr"), (-0.5, 1.0, "lr")):
        with pytest.raises(NucleoError, match=rf"^BAD_PARAM on TRAIN_START: {name} ") as exc:
            c.train("full", epochs=1, lr=lr, warmup_epochs=1, warmup_lr=warmup_lr)
        assert (exc.value.error.arg0, exc.value.error.arg1) == (0, 0)
    info = c.train("full", epochs=1, batch=1, lr=0.0, warmup_epochs=1, warmup_lr=0.0)
    assert info.total_batches == 2 * 64 and c.wait_round_done(120).done.status == P.RoundStatus.DONE


def test_a_chunk_already_stored_is_acknowledged_again(board):
    """A chunk the board already stored, sent again as a new request (the host re-sends after a lost XFER_ACK
    whose request it had given up on), is acknowledged with the bytes received so far, not refused or ignored;
    the transfer then goes on and completes."""
    c = board.client
    arch, w = paper_model()
    blob, dl = P.encode_model(arch, w)
    parts = list(P.chunks(blob))
    c.request(P.ModelBegin(len(blob), dl, crc32(blob)), P.XferAck)
    assert c.request(P.ModelChunk(*parts[0]), P.XferAck).next_offset == len(parts[0][1])
    assert c.request(P.ModelChunk(*parts[1]), P.XferAck).next_offset == len(parts[0][1]) + len(parts[1][1])
    again = c.request(P.ModelChunk(*parts[0]), P.XferAck)  # a new seq: not the response cache
    assert again.next_offset == len(parts[0][1]) + len(parts[1][1])
    for off, chunk in parts[2:]:
        c.request(P.ModelChunk(off, chunk), P.XferAck)
    assert c.request(P.ModelEnd(), P.ModelInfo).crc32 == crc32(blob)


def pool_model(*extra: Layer):
    """conv(4, 3) → maxpool(2) → flatten → ``extra`` → dense(3) → softmax on (20, 3), zero weights; returns
    ``(arch, weights, blob, desc_len)``."""
    arch = Arch(
        (20, 3),
        (Layer("conv1d", "c", filters=4, kernel=3), Layer("maxpool1d", "p", pool=2), Layer("flatten", "f"),
         *extra, Layer("dense", "d", units=3), Layer("softmax", "s")),
    )  # fmt: skip
    w = {n: [np.zeros(s, np.float32) for s in ss] for n, ss in arch.param_shapes().items()}
    blob, dl = P.encode_model(arch, w)
    return arch, w, blob, dl


def bad_pool(blob: bytes) -> bytearray:
    """A :func:`pool_model` blob whose layer 1 pools 30 rows, more than the conv's 18."""
    import struct

    b = bytearray(blob)
    struct.pack_into("<H", b, 16 + 32 * 1 + 8, 30)
    return b


def test_descriptor_fields_out_of_range_are_refused_naming_them(board):
    """A descriptor whose records are well-formed but whose values cannot be run (protocol.md §5.1): a pool
    longer than its input, a dropout rate of 1 or more, a convolution without filters.  Refused at the descriptor with the layer and the
    values named; nothing is loaded."""
    import struct

    c = board.client
    arch, w, blob, dl = pool_model(Layer("dropout", "do", rate=0.25))

    def record(i: int) -> int:
        return 16 + 32 * i

    pool = bad_pool(blob)
    rate = bytearray(blob)
    struct.pack_into("<f", rate, record(3) + 12, 1.0)  # layer 3's dropout rate
    filters = bytearray(blob)
    struct.pack_into("<H", filters, record(0) + 2, 0)  # layer 0's filters
    for bad, text in (
        (pool, "pool 30 does not fit input length 18"),
        (rate, r"dropout rate .*\[0, 1\)"),
        (filters, "filters must be >= 1"),
    ):
        c.request(P.ModelBegin(len(bad), dl, crc32(bytes(bad))), P.XferAck)
        with pytest.raises(NucleoError, match=f"on MODEL_CHUNK: .*{text}"):
            for off, chunk in P.chunks(bytes(bad)):
                c.request(P.ModelChunk(off, chunk), P.XferAck)
        assert c.status().model_loaded == 0
    c.upload_model(arch, w)  # the same model with its own values loads
    assert c.status().model_loaded == 1


def test_descriptor_header_and_first_layer_checks(board):
    """The descriptor's header (protocol.md §5.1) and its first layer are checked like the rest: no layers
    (the 16-byte header alone), an input of rank 4, and a first layer the engine cannot run (a conv with
    stride 2) are refused with the same code and arguments on every board; a model with the zoo's
    gravity-rotation preprocessing (code 1) loads and says so."""
    import dataclasses
    import struct

    c = board.client
    arch, w = paper_model()
    blob, dl = P.encode_model(arch, w)

    def refused(b: bytes, d: int) -> P.Error:
        c.request(P.ModelBegin(len(b), d, crc32(b)), P.XferAck)
        with pytest.raises(NucleoError) as exc:
            for off, chunk in P.chunks(b):
                c.request(P.ModelChunk(off, chunk), P.XferAck)
        assert c.status().model_loaded == 0
        return exc.value.error

    header = bytearray(blob[:16])
    header[5] = 0  # no layers: the header alone
    err = refused(bytes(header), 16)
    assert (err.code, err.arg0) == (P.ErrorCode.UNKNOWN_LAYER, 0xFFFFFFFF) and "no layers" in err.message, err.message
    rank4 = bytearray(blob)
    rank4[6] = 4
    err = refused(bytes(rank4), dl)
    assert (err.code, err.arg0, err.arg1) == (P.ErrorCode.BAD_PAYLOAD, 0, 0) and "rank 4" in err.message, err.message
    stride = bytearray(blob)
    struct.pack_into("<H", stride, 16 + 10, 2)  # layer 0 (conv1): stride 2
    assert P.decode_arch(bytes(stride[:dl])).layers[0].stride == 2
    err = refused(bytes(stride), dl)
    assert (err.code, err.arg0) == (P.ErrorCode.UNKNOWN_LAYER, 0) and "stride" in err.message, err.message
    zoo = dataclasses.replace(arch, preprocessing="gravity_rot_sup")
    assert c.upload_model(zoo, w).preprocessing == 1 and c.status().model_loaded == 1


# --- rounds ------------------------------------------------------------------------------------------
def test_round_reports_d7_edges_current_and_weights(board):
    """A round with a warm-up phase: reports in order, contiguous batch ticks, one D7 edge at the start and
    at every batch end (in simulated time), run-mode current during the round and sleep current after,
    and downloaded weights equal to the reference engine replaying the same batches."""
    c, emu = board.client, board.emu
    arch, w, x, y = loaded(c, 70)
    info = c.train("full", epochs=2, batch=32, warmup_epochs=1, lr=0.02, warmup_lr=0.05, seed=3)
    res = c.wait_round_done(120)
    assert res.done.status == P.RoundStatus.DONE and res.done.epochs_done == 3
    assert [b.phase for b in res.batches] == [0] * 3 + [1] * 6
    assert [b.epoch for b in res.batches] == [0] * 3 + [0] * 3 + [1] * 3
    assert [b.n_samples for b in res.batches] == [32, 32, 6] * 3
    assert info.total_batches == 9 and info.batches_per_epoch == 3
    assert all(a.end_tick == b.start_tick for a, b in zip(res.batches, res.batches[1:]))
    assert res.done.start_tick == res.batches[0].start_tick and res.done.end_tick == res.batches[-1].end_tick
    assert res.done.cycles >= sum(b.cycles for b in res.batches) > 0
    f = c.info().sysclk_hz
    for b in res.batches:
        assert b.cycles == pytest.approx((b.end_tick - b.start_tick) * f / 1e6, rel=1e-3, abs=200)
    if board.on_bench:  # the D7 line and the current are the bench's
        t0, t1 = emu.sim_time(res.done.start_tick), emu.sim_time(res.done.end_tick)
        edges = emu.d7_edges(t0 - 1e-3, t1 + 1e-3)
        assert len(edges) == 1 + len(res.batches)
        np.testing.assert_allclose(edges[1:], [emu.sim_time(b.end_tick) for b in res.batches], atol=2e-6)
        i_run, i_idle = emu.current(np.array([(t0 + t1) / 2, t1 + 0.5]))
        assert i_run == pytest.approx(emu.profile.current_a(f), rel=1e-6)
        assert i_idle < 0.5 * i_run
    # the same batches on the reference engine, in the board's order
    ref = Model(arch, w)
    for g, (names, lr) in enumerate([("last", 0.05), ("full", 0.02), ("full", 0.02)]):
        order = epoch_order(3, g, len(y))
        for b in range(0, len(y), 32):
            idx = order[b : b + 32]
            ref.train_batch(x[idx], y[idx], lr, names, mode="per_sample")
    got = c.download_weights(arch)
    for k, arrs in ref.get_weights().items():
        for a, b in zip(got[k], arrs):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * float(np.abs(b).max()))


@pytest.mark.parametrize("kind", BOARDS)
def test_abort_mid_round_and_busy(kind):
    b = Board(kind, time_scale=20.0)
    try:
        c, emu = b.client, b.emu
        arch, w, x, y = loaded(c, 128)
        epochs = 2 if b.on_bench else 400  # the native board runs at the host's speed: a long round
        info = c.train("full", epochs=epochs)
        first = c.next_event(P.BatchReport, 30.0)
        assert first is not None
        with pytest.raises(NucleoError, match="BUSY on MODEL_BEGIN") as exc:
            c.upload_model(arch, w)
        assert exc.value.code == P.ErrorCode.BUSY
        with pytest.raises(NucleoError, match="BUSY"):
            c.download_weights(arch)
        c.abort()
        res = c.wait_round_done(30)
        assert res.done.status == P.RoundStatus.ABORTED
        done = res.done.batches_done
        assert 1 <= done < info.total_batches == 4 * epochs
        if b.on_bench:
            end = emu.sim_time(res.done.end_tick)
            assert len(emu.d7_edges(end, end + 100)) == 0  # no marker after the abort
        # weights = initial weights + exactly the batches done (the interrupted one was discarded)
        ref = Model(arch, w)
        for k in range(done):
            idx = epoch_order(0, k // 4, len(y))[(k % 4) * 32 : (k % 4 + 1) * 32]
            ref.train_batch(x[idx], y[idx], 0.01, "full", mode="per_sample")
        got = c.download_weights(arch)
        np.testing.assert_allclose(got["dense2"][0], ref.get_weights()["dense2"][0], rtol=1e-5, atol=1e-6)
    finally:
        b.close()


def test_set_clock_scales_batch_time(board):
    c = board.client
    arch, w = paper_model()
    c.upload_model(arch, w)
    c.upload_dataset(*user_windows(32))
    durations, cycles = {}, {}
    for hz in (8_000_000, 16_000_000):
        assert c.set_clock(hz) == hz
        c.drain_events()
        c.train("full", epochs=1)
        b = c.wait_round_done(60).batches[0]
        durations[hz], cycles[hz] = b.end_tick - b.start_tick, b.cycles
        assert b.cycles == pytest.approx(durations[hz] * hz / 1e6, rel=1e-3, abs=200)
    if board.on_bench:  # the native board's time is the host CPU's, whatever clock it was told
        assert durations[8_000_000] == pytest.approx(2 * durations[16_000_000], rel=1e-3)
        assert cycles[8_000_000] == pytest.approx(cycles[16_000_000], rel=1e-3)  # same work, other clock
    assert c.info().sysclk_hz == 16_000_000
    with pytest.raises(NucleoError, match="BAD_PARAM on SET_CLOCK: sysclk_hz 81000000"):
        c.set_clock(81_000_000)
    with pytest.raises(NucleoError, match="whole number of MHz"):
        c.set_clock(8_500_000)


def test_evaluate_confusion_matrix(board):
    c = board.client
    arch, w = paper_model()
    c.upload_model(arch, w)
    with pytest.raises(NucleoError, match=r"NO_DATA on EVALUATE: slot 1 \(held set\) is empty") as exc:
        c.evaluate(1, timeout=30)
    assert exc.value.error.arg0 == 1
    x, y = user_windows(40, seed=3)
    c.upload_dataset(x, y, slot=1)
    r = c.evaluate(1, timeout=30)
    pred = Model(arch, w).predict(x).argmax(1)
    expect = np.zeros((5, 5), int)
    np.add.at(expect, (y, pred), 1)
    np.testing.assert_array_equal(r.matrix, expect)
    assert r.n == 40 and r.cycles > 0
    # the same windows stored as int16 counts (value = count * scale): the board evaluates what they decode to
    c.clear_data(1)
    blob = P.encode_dataset(x, y, P.DType.I16, 0.004)
    c.upload_dataset(x, y, slot=1, dtype=P.DType.I16, scale=0.004)
    xq = P.decode_dataset(blob)[0]
    assert not np.array_equal(xq, x)
    prob = Model(arch, w).predict(xq)
    expect = np.zeros((5, 5), int)
    np.add.at(expect, (y, prob.argmax(1)), 1)
    r16 = c.evaluate(1, timeout=30)
    np.testing.assert_array_equal(r16.matrix, expect)
    # and the mean cross-entropy of every value it read (a value read wrong moves it, if not the matrix)
    want = float(np.mean(-np.log(np.maximum(prob[np.arange(len(y)), y], 1e-7))))
    assert r16.loss == pytest.approx(want, rel=1e-5)
    with pytest.raises(NucleoError, match=r"NO_DATA on TRAIN_START: slot 0 \(training set\) is empty"):
        c.train("full")


# --- sensor, reset ------------------------------------------------------------------------------------
def test_stream_blocks_timing_fs_and_activity_switch(board):
    if board.on_bench:
        board.bench.clock.time_scale = 5.0  # 104 Hz streamed faster would saturate the link
    c = board.client
    st = c.sensor_config(104.0, 4)
    assert (st.odr_mhz, st.fs_g, st.sens_ng) == (104000, 4, 122000)
    with pytest.raises(NucleoError, match="allowed mHz: 12500, 26000, 52000"):
        c.sensor_config(100.0, 4)
    with pytest.raises(NucleoError, match="full scale"):
        c.sensor_config(104.0, 3)
    if not board.on_bench:  # the native core has no simulated person: it streams its own synthetic signal
        with pytest.raises(NucleoError, match="UNSUPPORTED on SIM_SET_ACTIVITY"):
            c.set_activity("sitting")
    else:
        c.set_activity("sitting")
    c.stream_start(52)
    blocks = [c.read_samples(10.0) for _ in range(8)]
    ticks = np.array([b.tick for b in blocks])
    assert all(b.n == 52 and b.odr_mhz == 104000 and b.fs_g == 4 for b in blocks)
    assert [b.block for b in blocks] == list(range(blocks[0].block, blocks[0].block + 8))
    np.testing.assert_allclose(np.diff(ticks), 52 * 1e6 / 104.0, atol=1.5)
    assert blocks[0].block == 0  # numbered from the stream's start ...
    assert c.stream_stop().streaming == 0
    c.drain_events(P.Samples)
    c.stream_start(52)
    assert c.read_samples(10.0).block == 0  # ... and again after a restart
    sit = np.concatenate([b.xyz for b in blocks]).astype(float) * 122e-6
    assert 0.8 < np.median(np.linalg.norm(sit, axis=1)) < 1.2  # gravity, in g
    if not board.on_bench:
        assert c.stream_stop().streaming == 0
        return
    act = c.set_activity("jogging")
    assert act.current == "jogging" and "walking" in act.available
    c.drain_events(P.Samples)
    jog = np.concatenate([c.read_samples(10.0).xyz for _ in range(8)]).astype(float) * 122e-6
    assert jog.std(axis=0).max() > 5 * sit.std(axis=0).max()  # jogging shakes, sitting does not
    arch, w = paper_model()
    c.upload_model(arch, w)
    c.upload_dataset(*user_windows(8))
    with pytest.raises(NucleoError, match="BUSY on TRAIN_START: cannot train while the sensor streams"):
        c.train("full")
    assert c.stream_stop().streaming == 0
    with pytest.raises(NucleoError, match="not in the trace"):
        c.set_activity("swimming")


def test_reset_clears_state_and_sends_boot(board):
    c = board.client
    booted_at = c.info().sysclk_hz  # 8 MHz on the bench boards (the NUCLEO's MSI), 80 MHz on the native one
    assert booted_at == (8_000_000 if board.on_bench else 80_000_000)
    arch, w = paper_model()
    c.upload_model(arch, w)
    c.set_clock(16_000_000)
    c.drain_events()
    c.reset()
    boot = c.next_event(P.Boot, 10.0)
    assert boot is not None and boot.reset_cause == 1
    st = c.status()
    assert st.model_loaded == 0 and c.info().sysclk_hz == booted_at


@pytest.mark.parametrize("board", BENCH_BOARDS, indirect=True)  # the bench's D7 line and LPM01A
def test_powershield_sees_every_d7_edge_and_the_run_current(board):
    """The bench's emulated LPM01A, read through its own driver, sees the board's run-mode current between
    D7 `event` records spaced exactly one batch apart (the firmware's own timestamps on the QEMU board)."""
    from device.lpm01a.capture import Capture
    from device.lpm01a.driver import PowerShield

    arch, w = paper_model()
    x, y = user_windows(64)
    board.bench.clock.time_scale = 20.0
    ps = PowerShield(board.urls["powershield"])
    try:
        ps.configure(freq=1000, fmt="bin_hexa", acqtime=0, eventsrc=("d7", "ris"))
        cap = Capture(ps, rate_hz=1000, fmt="bin_hexa")
        sub = cap.subscribe()
        cap.start()
        c = board.client
        c.upload_model(arch, w)
        c.upload_dataset(x, y)
        c.train("full", epochs=1)
        res = c.wait_round_done(60)
        c.ping()
        time.sleep(0.3)
        cap.stop()
        values, events = [], []
        while (blk := sub.get(0.5)) is not None:
            values.append(blk.values)
            events += [e.index for e in blk.events if e.kind == "event"]
    finally:
        ps.close()
    v = np.concatenate(values)
    assert len(events) == 3  # round start + 2 batch ends
    batch_s = [(b.end_tick - b.start_tick) / 1e6 for b in res.batches]
    np.testing.assert_allclose(np.diff(events) / 1000.0, batch_s, atol=0.003)
    run = np.nanmean(v[events[0] + 2 : events[-1] - 2])
    assert run == pytest.approx(board.emu.profile.current_a(8e6), rel=0.02)  # 0.80 mA = 2.65 mW at 8 MHz
    assert np.nanmean(v[max(0, events[0] - 300) : events[0] - 5]) < 0.5 * run  # idle before the round


def _incomplete_chunks(blob: bytes) -> list[tuple[int, bytes]]:
    """The chunks of a model blob an incomplete upload sends: the first two (the descriptor and some weights)."""
    return list(P.chunks(blob))[:2]


def _error_catalogue(c: NucleoClient) -> list[tuple]:
    """Drive ``c`` through a fixed sequence of refused requests; returns ``(step, code, request, arg0, arg1)``
    of every ERROR (or ``(step, "accepted")``)."""
    arch, w = paper_model()
    x, y = user_windows(40)
    blob, dl = P.encode_model(arch, w)
    _, _, small_blob, small_dl = pool_model()

    def bad_model(b: bytes, dl: int = dl) -> None:
        c.request(P.ModelBegin(len(b), dl, crc32(b)), P.XferAck)
        for off, chunk in P.chunks(b):
            c.request(P.ModelChunk(off, chunk), P.XferAck)

    def bad_labels() -> None:
        c.clear_data()
        c.upload_dataset(x, np.full(len(y), 7))
        c.train("full", epochs=1)

    def empty_ping() -> None:  # PING's payload is all tail: none at all is a PING too
        assert c.request(P.Ping(b""), P.Pong).data == b""

    def every_rate_and_scale() -> None:
        for hz in P.LSM6DSO_ODR_HZ:
            for g in P.LSM6DSO_FS_G:
                st = c.request(P.SensorConfig(P.odr_to_mhz(hz), g), P.SensorState)
                assert (st.odr_mhz, st.fs_g) == (P.odr_to_mhz(hz), g)
        c.request(P.SensorConfig(26_000, 4), P.SensorState)

    def shortest_and_longest_blocks() -> None:
        for n in (1, P.MAX_BLOCK_SAMPLES):
            assert c.stream_start(n).block_len == n
            c.stream_stop()
        c.drain_events()

    def incomplete_model() -> None:  # the descriptor and the first weights, then MODEL_END
        c.request(P.ModelBegin(len(blob), dl, crc32(blob)), P.XferAck)
        for off, chunk in _incomplete_chunks(blob):
            c.request(P.ModelChunk(off, chunk), P.XferAck)
        c.request(P.ModelEnd(), P.ModelInfo)

    steps: list[tuple[str, Callable[[], object]]] = [
        ("empty ping", empty_ping),
        ("set_clock 81 MHz", lambda: c.set_clock(81_000_000)),
        ("marker pulse 0", lambda: c.set_marker(True, 0)),
        ("marker pulse 10000", lambda: c.set_marker(True, 10_000)),  # the longest pulse
        ("marker pulse 10001", lambda: c.set_marker(True, 10_001)),
        ("every rate and full scale", every_rate_and_scale),
        ("block_len 1 and the largest", shortest_and_longest_blocks),
        ("block_len beyond the largest", lambda: c.stream_start(P.MAX_BLOCK_SAMPLES + 1)),
        ("model end without begin", lambda: c.request(P.ModelEnd(), P.ModelInfo)),
        ("data end without begin", lambda: c.request(P.DataEnd(), P.DataState)),
        ("odr 100 Hz", lambda: c.request(P.SensorConfig(100_000, 4), P.SensorState)),
        ("fs 3 g", lambda: c.request(P.SensorConfig(26_000, 3), P.SensorState)),
        ("block_len 0", lambda: c.stream_start(0)),
        ("clear slot 7", lambda: c.clear_data(7)),
        ("data slot 2", lambda: c.upload_dataset(x, y, slot=2)),
        ("weights without model", lambda: c.request(P.WeightsInfo(), P.WeightsMeta)),
        ("train without model", lambda: c.train("full", epochs=1)),
        ("evaluate without model", lambda: c.evaluate(1)),
        ("descriptor pool 30", lambda: bad_model(bytes(bad_pool(small_blob)), small_dl)),
        ("descriptor version 2", lambda: bad_model(blob[:4] + b"\x02" + blob[5:])),
        ("weight bytes", lambda: bad_model(blob[:-4])),
        ("model incomplete", incomplete_model),
        ("model", lambda: c.upload_model(arch, w)),
        ("train empty slot", lambda: c.train("full", epochs=1)),
        ("evaluate empty slot", lambda: c.evaluate(1)),
        ("read before info", lambda: c.request(P.WeightsRead(0, 16), P.WeightsData)),
        ("info", lambda: c.request(P.WeightsInfo(), P.WeightsMeta)),
        ("read past the end", lambda: c.request(P.WeightsRead(10_000_000, 16), P.WeightsData)),
        ("data", lambda: c.upload_dataset(x, y)),
        ("n_val = n", lambda: c.train("full", epochs=1, n_val=40)),
        ("patience without validation", lambda: c.request(P.TrainStart(patience=3), P.RoundInfo)),
        ("val_flags 4", lambda: c.request(P.TrainStart(n_val=4, val_flags=4), P.RoundInfo)),
        ("epochs 0", lambda: c.train("full", epochs=0)),
        ("clip_norm -1", lambda: c.train("full", epochs=1, clip_norm=-1.0)),
        ("lr 20", lambda: c.train("full", epochs=1, lr=20.0)),
        ("mode 9", lambda: c.request(P.TrainStart(mode=9), P.RoundInfo)),
        ("empty mask", lambda: c.request(P.TrainStart(mode=P.TrainMode.MASK, layer_mask=0), P.RoundInfo)),
        ("mask beyond the layers", lambda: c.train("mask", epochs=1, layer_indices=(7, 11))),  # 11 layers: 0..10
        ("labels beyond the classes", bad_labels),
    ]
    out: list[tuple] = []
    for name, step in steps:
        try:
            step()
            out.append((name, "accepted"))
        except NucleoError as exc:
            e = exc.error
            out.append((name, P.ErrorCode(e.code).name, P.MsgType(e.request).name, e.arg0, e.arg1))
    return out


@pytest.mark.parametrize("firmware", ["host", "qemu"])
def test_error_arguments_agree_with_the_python_board_and_the_table(firmware):
    """The same refused requests get the same ERROR — code, request, arg0, arg1 — from the ODL firmware and the
    Python board, and the arguments protocol.md §3.5 gives them (an argument marked – is 0)."""
    got = {}
    for kind in ("python", firmware):
        b = Board(kind, time_scale=200.0)
        try:
            got[kind] = _error_catalogue(b.client)
        finally:
            b.close()
    assert got["python"] == got[firmware]
    blob, _ = P.encode_model(*paper_model())
    sent = sum(len(chunk) for _, chunk in _incomplete_chunks(blob))
    assert got[firmware] == [
        ("empty ping", "accepted"),
        ("set_clock 81 MHz", "BAD_PARAM", "SET_CLOCK", 81_000_000, 0),  # the value
        ("marker pulse 0", "BAD_PARAM", "SET_MARKER", 0, 0),
        ("marker pulse 10000", "accepted"),
        ("marker pulse 10001", "BAD_PARAM", "SET_MARKER", 10_001, 0),
        ("every rate and full scale", "accepted"),
        ("block_len 1 and the largest", "accepted"),
        ("block_len beyond the largest", "BAD_PARAM", "STREAM_START", P.MAX_BLOCK_SAMPLES + 1, 0),
        ("model end without begin", "BAD_STATE", "MODEL_END", 0, 0),
        ("data end without begin", "BAD_STATE", "DATA_END", 0, 0),
        ("odr 100 Hz", "BAD_PARAM", "SENSOR_CONFIG", 100_000, 0),
        ("fs 3 g", "BAD_PARAM", "SENSOR_CONFIG", 3, 0),
        ("block_len 0", "BAD_PARAM", "STREAM_START", 0, 0),
        ("clear slot 7", "BAD_PARAM", "DATA_CLEAR", 7, 0),
        ("data slot 2", "BAD_PARAM", "DATA_BEGIN", 2, 0),
        ("weights without model", "NO_MODEL", "WEIGHTS_INFO", 0, 0),  # – –
        ("train without model", "NO_MODEL", "TRAIN_START", 0, 0),
        ("evaluate without model", "NO_MODEL", "EVALUATE", 0, 0),
        ("descriptor pool 30", "BAD_PAYLOAD", "MODEL_CHUNK", 1, 0),  # the descriptor's layer
        ("descriptor version 2", "BAD_VERSION", "MODEL_CHUNK", 1, 0),  # the descriptor version supported
        ("weight bytes", "BAD_PARAM", "MODEL_CHUNK", 40_128, 40_132),  # carried, needed
        ("model incomplete", "BAD_OFFSET", "MODEL_END", sent, len(blob)),  # the bytes received, expected
        ("model", "accepted"),
        ("train empty slot", "NO_DATA", "TRAIN_START", 0, 0),  # the slot
        ("evaluate empty slot", "NO_DATA", "EVALUATE", 1, 0),
        ("read before info", "BAD_STATE", "WEIGHTS_READ", 0, 0),
        ("info", "accepted"),
        ("read past the end", "BAD_PARAM", "WEIGHTS_READ", 10_000_000, 16),  # offset, length
        ("data", "accepted"),
        ("n_val = n", "BAD_PARAM", "TRAIN_START", 40, 40),  # n_val, the slot's windows
        ("patience without validation", "BAD_PARAM", "TRAIN_START", 0, 0),  # several fields: –
        ("val_flags 4", "BAD_PARAM", "TRAIN_START", 4, 0),
        ("epochs 0", "BAD_PARAM", "TRAIN_START", 0, 0),  # several fields: –
        ("clip_norm -1", "BAD_PARAM", "TRAIN_START", 0, 0),  # a float: –
        ("lr 20", "BAD_PARAM", "TRAIN_START", 0, 0),  # a float: –
        ("mode 9", "BAD_PARAM", "TRAIN_START", 9, 0),  # the mode
        ("empty mask", "BAD_PARAM", "TRAIN_START", 3, 0),  # the mode whose trainable set is refused
        ("mask beyond the layers", "BAD_PARAM", "TRAIN_START", 3, 0),
        ("labels beyond the classes", "BAD_PARAM", "TRAIN_START", 7, 5),  # the label, the classes
    ]
