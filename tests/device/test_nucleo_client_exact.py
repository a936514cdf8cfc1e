"""NucleoClient, exactly: what the host sends, what it makes of every answer, and the errors it raises.

Fast and deterministic (the ``nucleo_client`` mutation target, benchmarks/mutation.py): a scripted board
(tests/device/test_nucleo_client.py's ScriptedLink: it answers each request synchronously, in order, with the
frames a test chooses) for interleavings and error answers, and the emulated board (device/nucleo/emulator.py)
behind DeviceTransport, in process, for whole transfers and rounds.  Wire format: docs/protocol.md.
Where a test must know that the client is blocked in a wait, it looks at the client's condition variable
instead of sleeping; the few elapsed-time checks have margins of seconds.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterable

import numpy as np
import pytest

from device.engine.model import Model
from device.nucleo import client as client_mod
from device.nucleo import protocol as P
from device.nucleo.client import (
    DeviceTransport,
    IntegrityError,
    NucleoClient,
    NucleoError,
    NucleoTimeout,
    RoundResult,
    WaitCancelled,
)
from device.nucleo.crc import crc32
from device.nucleo.emulator import NucleoEmulator
from device.simclock import SimClock
from estimator.arch import Arch, Layer, paper_cnn
from tests.device.test_nucleo_client import ScriptedLink

Answer = Callable[[P.Message, int], Iterable[bytes]]


class Board(ScriptedLink):
    """A scripted board that records every request (seq, message) and every byte written to it; ``answer``
    (message, seq) -> wire frames; ``emit`` queues frames the board sends on its own."""

    def __init__(self, answer: Answer | None = None):
        self.requests: list[tuple[int, P.Message]] = []
        self.written = bytearray()

        def record(msg: P.Message, seq: int) -> Iterable[bytes]:
            self.requests.append((seq, msg))
            return answer(msg, seq) if answer is not None else ()

        super().__init__(record)

    def write(self, data: bytes) -> int:
        self.written += data
        return super().write(data)

    def emit(self, *wires: bytes) -> None:
        for w in wires:
            self._rx.put(w)

    def names(self) -> list[str]:
        return [type(m).__name__ for _, m in self.requests]


def wire(msg: P.Message, seq: int) -> bytes:
    return P.DELIMITER + msg.encode(seq)


def over_the_wire(msg: P.Message) -> P.Message:
    """``msg`` as a board decodes it (floats become float32)."""
    (frame,) = P.FrameDecoder().feed(msg.encode(1))
    return P.decode_message(frame)


def waiting(c: NucleoClient, timeout: float = 5.0) -> None:
    """Block until some thread waits on the client's condition (CPython's Condition keeps its waiters)."""
    deadline = time.monotonic() + timeout
    while not c._cond._waiters:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "nobody waits on the client"
        time.sleep(0.001)


@pytest.fixture
def clients():
    made: list[NucleoClient] = []

    def make(link: Any, **kw: Any) -> NucleoClient:
        c = NucleoClient(link, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def pong_board() -> Board:
    """Answers PING with PONG (its data), nothing else."""

    def answer(msg: P.Message, seq: int) -> Iterable[bytes]:
        return [wire(P.Pong(msg.data), seq)] if isinstance(msg, P.Ping) else []

    return Board(answer)


# --- requests: seq numbers, stale replies, retries, NAK --------------------------------------------------
def test_requests_take_seq_1_2_3_each_preceded_by_a_zero_byte(clients):
    board = pong_board()
    c = clients(board, timeout=1.0)
    assert [c.ping(b"a"), c.ping(b"bc"), c.ping()] == [b"a", b"bc", b""]
    assert [s for s, _ in board.requests] == [1, 2, 3]
    assert bytes(board.written) == wire(P.Ping(b"a"), 1) + wire(P.Ping(b"bc"), 2) + wire(P.Ping(b""), 3)
    assert c.stats == {
        "events_dropped": 0,
        "stale_replies": 0,
        "undecodable": 0,
        "retries": 0,
        "unattributed_errors": 0,
    }


def test_seq_wraps_from_0xfffe_to_1_never_sending_0_or_0xffff(clients):
    board = pong_board()
    c = clients(board, timeout=1.0)
    c._seq = 0xFFFD  # as after 65,533 requests
    for _ in range(3):
        c.ping()
    assert [s for s, _ in board.requests] == [0xFFFE, 1, 2]


def test_replies_with_another_seq_and_repeated_replies_are_counted_stale(clients):
    """Only the first reply carrying the request's seq answers it; an older seq before it and a repeat after
    it are counted in stats["stale_replies"]."""
    first = [True]

    def answer(msg, seq):
        if first[0]:
            first[0] = False
            return [wire(P.Pong(b"old"), seq + 40), wire(P.Pong(b"mine"), seq), wire(P.Pong(b"repeat"), seq)]
        return [wire(P.Pong(msg.data), seq)]

    c = clients(Board(answer), timeout=1.0)
    assert c.ping(b"x") == b"mine"
    assert c.ping(b"y") == b"y"  # the repeat was read before this answer
    assert c.stats["stale_replies"] == 2
    assert c.stats["retries"] == 0


def test_a_reply_after_the_request_gave_up_does_not_answer_the_next_request(clients):
    board = Board(lambda msg, seq: [wire(P.Pong(b"new"), seq)] if seq == 2 else [])
    c = clients(board, timeout=0.02, retries=0)
    with pytest.raises(NucleoTimeout, match=r"^no answer to Ping \(seq 1\) after 1 attempt\(s\) of 0.02 s$"):
        c.ping(b"q")
    board.emit(wire(P.Pong(b"late"), 1))
    assert c.ping(b"new") == b"new"
    assert c.stats["stale_replies"] == 1


def test_timeout_resends_the_same_frame_and_counts_the_retries(clients):
    board = Board()
    c = clients(board, timeout=0.02, retries=2)
    with pytest.raises(NucleoTimeout, match=r"^no answer to GetInfo \(seq 1\) after 3 attempt\(s\) of 0.02 s$"):
        c.info()
    assert bytes(board.written) == wire(P.GetInfo(), 1) * 3
    assert c.stats["retries"] == 2


def test_an_answer_to_the_second_attempt_counts_one_retry(clients):
    def answer(msg, seq):
        answer.n += 1
        return [wire(P.Pong(b"ok"), seq)] if answer.n == 2 else []

    answer.n = 0
    board = Board(answer)
    c = clients(board, timeout=0.05, retries=5)
    assert c.ping(b"ok") == b"ok"
    assert [s for s, _ in board.requests] == [1, 1]
    assert c.stats["retries"] == 1


def test_timeout_and_retries_of_one_call_override_the_clients(clients):
    board = Board()
    c = clients(board, timeout=30.0, retries=9)
    with pytest.raises(NucleoTimeout, match=r"^no answer to Ping \(seq 1\) after 2 attempt\(s\) of 0.03 s$"):
        c.request(P.Ping(b""), P.Pong, timeout=0.03, retries=1)
    assert len(board.requests) == 2 and c.stats["retries"] == 1


def test_client_defaults_are_2_s_and_2_retries():
    assert (client_mod.DEFAULT_TIMEOUT_S, client_mod.DEFAULT_RETRIES) == (2.0, 2)


def test_an_unattributed_error_resends_the_pending_request_at_once(clients):
    """The board could not decode a frame (ERROR with seq 0xFFFF): the client resends without waiting for its
    (here 20 s) timeout."""

    def answer(msg, seq):
        answer.n += 1
        if answer.n == 1:
            return [wire(P.error_message(P.ErrorCode.BAD_CRC, 0, "1 frame(s) dropped"), P.SEQ_UNATTRIBUTED)]
        return [wire(P.Pong(msg.data), seq)]

    answer.n = 0
    board = Board(answer)
    c = clients(board, timeout=20.0, retries=1)
    t0 = time.monotonic()
    assert c.ping(b"z") == b"z"
    assert time.monotonic() - t0 < 10.0
    assert [s for s, _ in board.requests] == [1, 1]
    assert c.stats["retries"] == 1 and c.stats["unattributed_errors"] == 1 and c.stats["stale_replies"] == 0


def test_an_unattributed_error_between_requests_is_only_counted(clients):
    board = pong_board()
    c = clients(board, timeout=1.0, retries=0)
    junk = wire(P.error_message(P.ErrorCode.BAD_FRAME, 0, "junk"), P.SEQ_UNATTRIBUTED)
    board.emit(junk, junk)
    assert c.ping(b"1") == b"1"
    assert c.ping(b"2") == b"2"
    assert c.stats["unattributed_errors"] == 2 and c.stats["retries"] == 0 and c.stats["stale_replies"] == 0


def test_an_error_answer_raises_nucleo_error_with_the_boards_error(clients):
    err = P.error_message(P.ErrorCode.BUSY, P.MsgType.MODEL_BEGIN, "a round is running", 3, 0)
    c = clients(Board(lambda m, s: [wire(err, s)]), timeout=1.0)
    with pytest.raises(NucleoError) as exc:
        c.request(P.ModelBegin(10, 2, 0), P.XferAck)
    assert str(exc.value) == "BUSY on MODEL_BEGIN: a round is running"
    assert exc.value.code is P.ErrorCode.BUSY
    assert (exc.value.error.code, exc.value.error.request, exc.value.error.arg0) == (6, 0x20, 3)
    assert c.stats["retries"] == 0


def test_an_error_code_this_host_does_not_know_is_kept_as_a_number(clients):
    err = P.Error(200, 0x77, 0, 0, 0, "future")
    c = clients(Board(lambda m, s: [wire(err, s)]), timeout=1.0)
    with pytest.raises(NucleoError, match="^code 200 on 0x77: future$") as exc:
        c.ping()
    assert exc.value.code == 200 and not isinstance(exc.value.code, P.ErrorCode)


def test_an_answer_of_the_wrong_type_is_a_protocol_error(clients):
    c = clients(Board(lambda m, s: [wire(P.Ack(2), s)]), timeout=1.0)
    with pytest.raises(P.ProtocolError, match="^Ping was answered by Ack, expected Pong$"):
        c.ping()
    with pytest.raises(P.ProtocolError, match="^GetInfo was answered by Ack, expected Info or Status$"):
        c.request(P.GetInfo(), (P.Info, P.Status))
    assert isinstance(c.request(P.Reset(), (P.Status, P.Ack)), P.Ack)


def test_a_frame_that_does_not_decode_is_counted_and_skipped(clients):
    """A frame whose CRC is right but whose payload is not its type's (a STATUS of 1 byte)."""

    def answer(msg, seq):
        bad = P.DELIMITER + P.encode_frame(P.MsgType.STATUS, seq, b"\x01")
        return [bad, bad, wire(P.Pong(b"p"), seq)]

    c = clients(Board(answer), timeout=1.0)
    assert c.ping(b"p") == b"p"
    assert c.stats["undecodable"] == 2 and c.stats["stale_replies"] == 0


def test_a_write_that_fails_raises_oserror_naming_the_request(clients):
    class Broken(Board):
        def write(self, data: bytes) -> int:
            raise ValueError("port is gone")

    c = clients(Broken(), timeout=1.0)
    with pytest.raises(OSError, match="^cannot send GetStatus to the NUCLEO: port is gone$") as exc:
        c.status()
    assert isinstance(exc.value.__cause__, ValueError)


class Unplugged(Board):
    """A link whose reads fail (USB unplugged) from the first request on."""

    def __init__(self) -> None:
        super().__init__()
        self.gone = threading.Event()

    def write(self, data: bytes) -> int:
        self.gone.set()
        return len(data)

    def read(self, n: int = 1) -> bytes:
        if self.gone.wait(0.05):
            raise OSError("device reports readiness to read but returned no data")
        return b""


def test_a_link_lost_while_waiting_raises_at_once(clients):
    c = clients(Unplugged(), timeout=20.0, retries=3)
    t0 = time.monotonic()
    with pytest.raises(OSError, match="^NUCLEO link lost while waiting for Ping: device reports readiness"):
        c.ping()
    assert time.monotonic() - t0 < 10.0
    assert str(c.link_error) == "device reports readiness to read but returned no data"
    assert c.stats["retries"] == 0
    with pytest.raises(OSError, match="^NUCLEO link lost: device reports readiness"):
        c.next_event(timeout=20.0)


# --- reader ---------------------------------------------------------------------------------------------
class FakeSerial:
    """pyserial-like: ``read(n)`` returns up to n buffered bytes (waits a little when empty), ``in_waiting``."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.lock = threading.Lock()
        self.asked: list[int] = []  # n of every read that returned bytes
        self.dec = P.FrameDecoder()

    @property
    def in_waiting(self) -> int:
        with self.lock:
            return len(self.buf)

    def read(self, n: int = 1) -> bytes:
        with self.lock:
            if self.buf:
                self.asked.append(n)
                out = bytes(self.buf[:n])
                del self.buf[:n]
                return out
        time.sleep(0.002)
        return b""

    def write(self, data: bytes) -> int:
        for f in self.dec.feed(data):
            msg = P.decode_message(f)
            with self.lock:
                self.buf += wire(P.Pong(msg.data), f.seq)
        return len(data)

    def close(self) -> None:
        pass


def test_a_serial_port_is_read_one_byte_then_what_is_waiting_up_to_read_size(clients):
    port = FakeSerial()
    c = clients(port, timeout=1.0, read_size=8)
    assert c.ping(b"abcdef") == b"abcdef"
    # the 16-byte answer (00, 14 COBS bytes, 00): 1 + 8 (of 15 waiting), then 1 + 6
    assert len(wire(P.Pong(b"abcdef"), 1)) == 16
    assert port.asked == [1, 8, 1, 6]


def test_a_plain_link_is_read_read_size_bytes_at_a_time(clients):
    class Counting(Board):
        def __init__(self):
            super().__init__(lambda m, s: [wire(P.Pong(m.data), s)])
            self.sizes: set[int] = set()

        def read(self, n: int = 1) -> bytes:
            self.sizes.add(n)
            return super().read(n)

    link = Counting()
    c = clients(link, timeout=1.0, read_size=77)
    assert c.ping(b"r") == b"r"
    assert link.sizes == {77}
    default = Counting()
    c2 = clients(default, timeout=1.0)
    assert c2.ping(b"r") == b"r"
    assert default.sizes == {4096}


def test_the_reader_is_a_daemon_thread_named_nucleo_reader(clients):
    c = clients(Board(), timeout=1.0)
    assert c._thread.name == "nucleo-reader" and c._thread.daemon and c._thread.is_alive()
    c.close()
    assert not c._thread.is_alive()


def test_a_client_on_a_link_assumes_the_boards_921600_baud_until_opened_otherwise(clients):
    """docs/protocol.md: 921 600 baud 8N1 (what reconnect(url) reopens a port with)."""
    c = clients(Board(), timeout=1.5, retries=4)
    assert (c.baudrate, c.timeout, c.retries, c.url) == (921_600, 1.5, 4, None)


def test_a_client_is_a_context_manager_that_closes_its_link():
    board = Board()
    with NucleoClient(board, timeout=1.0) as c:
        assert c.link_error is None and c.hello_info is None and c.url is None
    assert board._closed.is_set() and not c._thread.is_alive()


def test_closing_a_link_that_fails_to_close_does_not_raise():
    class BadClose(Board):
        def close(self) -> None:
            raise OSError("already gone")

    c = NucleoClient(BadClose(), timeout=1.0)
    c.close()
    assert not c._thread.is_alive()


# --- events ---------------------------------------------------------------------------------------------
def test_events_are_queued_in_arrival_order_and_passed_to_on_event(clients):
    seen: list[str] = []
    board = pong_board()
    c = clients(board, timeout=1.0, on_event=lambda ev: seen.append(type(ev).__name__))
    board.emit(wire(P.Log(1, "first"), 1), wire(P.Boot(2, 1, 0, 0), 2), wire(P.Log(2, "second"), 3))
    assert c.ping(b"sync") == b"sync"  # answered after the three events: they are queued by now
    assert seen == ["Log", "Boot", "Log"]
    assert c.next_event(P.Boot, timeout=0).reset_cause == 2  # the oldest of that class, others stay
    first = c.next_event(timeout=0)
    assert (type(first), first.text) == (P.Log, "first")
    assert c.next_event((P.Boot, P.Log), timeout=0).text == "second"
    assert c.next_event(timeout=0) is None
    assert c.stats["events_dropped"] == 0 and c.stats["stale_replies"] == 0


def test_a_failing_on_event_callback_does_not_stop_the_reader(clients):
    def boom(ev: P.Message) -> None:
        raise RuntimeError("callback bug")

    board = pong_board()
    c = clients(board, timeout=1.0, on_event=boom)
    board.emit(wire(P.Log(1, "a"), 1))
    assert c.ping(b"1") == b"1"
    board.emit(wire(P.Log(1, "b"), 2))
    assert c.ping(b"2") == b"2"
    assert [e.text for e in c.drain_events()] == ["a", "b"]


def test_a_full_event_queue_drops_the_oldest_and_counts_them(clients, monkeypatch):
    monkeypatch.setattr(client_mod, "EVENT_QUEUE_MAX", 3)
    board = pong_board()
    c = clients(board, timeout=1.0)
    board.emit(*(wire(P.Log(1, f"e{i}"), i) for i in range(1, 6)))
    assert c.ping(b"s") == b"s"
    assert [e.text for e in c.drain_events()] == ["e3", "e4", "e5"]
    assert c.stats["events_dropped"] == 2


def test_a_queue_at_its_limit_keeps_every_event(clients, monkeypatch):
    monkeypatch.setattr(client_mod, "EVENT_QUEUE_MAX", 3)
    board = pong_board()
    c = clients(board, timeout=1.0)
    board.emit(*(wire(P.Log(1, f"e{i}"), i) for i in range(1, 4)))
    assert c.ping(b"s") == b"s"
    assert [e.text for e in c.drain_events()] == ["e1", "e2", "e3"]
    assert c.stats["events_dropped"] == 0


def test_drain_events_takes_the_matching_events_and_keeps_the_others_in_order(clients):
    board = pong_board()
    c = clients(board, timeout=1.0)
    board.emit(wire(P.Log(1, "a"), 1), wire(P.Boot(0, 1, 0, 0), 2), wire(P.Log(1, "b"), 3), wire(P.Boot(1, 1, 0, 0), 4))
    assert c.ping() == b""
    assert [e.text for e in c.drain_events(P.Log)] == ["a", "b"]
    assert c.drain_events(P.Log) == []
    assert [e.reset_cause for e in c.drain_events()] == [0, 1]
    assert c.drain_events() == []


def test_next_event_waits_for_an_event_that_comes_later(clients):
    board = pong_board()
    c = clients(board, timeout=1.0)
    threading.Thread(target=lambda: (waiting(c), board.emit(wire(P.Log(1, "late"), 1)))).start()
    ev = c.next_event(P.Log, timeout=20.0)
    assert ev is not None and ev.text == "late"


def test_next_event_returns_none_on_its_timeout_and_at_once_when_closed(clients):
    board = pong_board()
    c = clients(board, timeout=1.0)
    board.emit(wire(P.Log(1, "not this"), 1))
    assert c.ping() == b""
    t0 = time.monotonic()
    assert c.next_event(P.Boot, timeout=0.05) is None
    assert time.monotonic() - t0 >= 0.05
    c.close()
    t0 = time.monotonic()
    assert c.next_event(P.Boot, timeout=20.0) is None
    assert time.monotonic() - t0 < 10.0
    assert c.read_samples(timeout=0) is None


def test_read_samples_waits_only_its_timeout(clients):
    c = clients(pong_board(), timeout=1.0)
    t0 = time.monotonic()
    assert c.read_samples(timeout=0.05) is None
    assert 0.05 <= time.monotonic() - t0 < 0.8


def test_waits_default_to_1_s_for_an_event_and_0_5_s_before_asking_status(clients):
    """next_event() and read_samples() give up after 1 s; wait_round_done asks STATUS after 0.5 s without a
    report (here the board is idle: the round's ROUND_DONE was lost, raised 0.3 s later).  Run side by side."""
    a = clients(pong_board(), timeout=1.0)
    b = clients(pong_board(), timeout=1.0)
    r = clients(RoundBoard([IDLE]), timeout=1.0)
    took: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> None:
        t0 = time.monotonic()
        try:
            fn()
        except P.ProtocolError:
            pass
        took[name] = time.monotonic() - t0

    threads = [
        threading.Thread(target=timed, args=("next_event", lambda: a.next_event())),
        threading.Thread(target=timed, args=("read_samples", lambda: b.read_samples())),
        threading.Thread(target=timed, args=("round", lambda: r.wait_round_done(20.0))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30.0)
    assert 1.0 <= took["next_event"] < 1.8
    assert 1.0 <= took["read_samples"] < 1.8
    assert 0.8 <= took["round"] < 1.6


def test_read_samples_returns_the_next_samples_block(clients):
    board = pong_board()
    c = clients(board, timeout=1.0)
    xyz = np.array([[1, -2, 3], [4, 5, -6]], np.int16)
    board.emit(wire(P.Log(1, "x"), 1), wire(P.Samples(7, 1000, 26000, 2, 0, 2, xyz), 2))
    s = c.read_samples(timeout=20.0)
    assert (s.block, s.tick, s.n) == (7, 1000, 2)
    np.testing.assert_array_equal(s.xyz, xyz)
    assert [type(e) for e in c.drain_events()] == [P.Log]


def test_fail_waiters_wakes_a_waiting_reader_of_events_with_the_first_error(clients):
    c = clients(Board(), timeout=1.0)
    got: list[BaseException] = []

    def wait() -> None:
        try:
            c.next_event(timeout=20.0)
        except OSError as exc:
            got.append(exc)

    t = threading.Thread(target=wait)
    t0 = time.monotonic()
    t.start()
    waiting(c)
    c.fail_waiters(ConnectionError("unplugged"))
    c.fail_waiters(ConnectionError("second"))
    t.join(20.0)
    assert time.monotonic() - t0 < 10.0
    assert [str(e) for e in got] == ["NUCLEO link lost: unplugged"]
    assert str(c.link_error) == "unplugged"


def test_fail_waiters_ends_a_pending_request(clients):
    board = Board()
    c = clients(board, timeout=20.0, retries=2)
    threading.Thread(target=lambda: (waiting(c), c.fail_waiters(ConnectionError("port closed")))).start()
    t0 = time.monotonic()
    with pytest.raises(OSError, match="^NUCLEO link lost while waiting for GetStatus: port closed$"):
        c.status()
    assert time.monotonic() - t0 < 10.0 and len(board.requests) == 1


# --- the small requests: what they send --------------------------------------------------------------------
def test_each_small_request_sends_its_fields_and_returns_the_answer(clients):
    answers: dict[type, Callable[[P.Message], P.Message]] = {
        P.GetInfo: lambda m: P.Info(sysclk_hz=16_000_000),
        P.GetStatus: lambda m: P.Status(state=P.BoardState.STREAMING, round_id=4),
        P.Reset: lambda m: P.Ack(P.MsgType.RESET),
        P.SetClock: lambda m: P.Clock(m.sysclk_hz),
        P.SetMarker: lambda m: P.Ack(P.MsgType.SET_MARKER),
        P.SensorConfig: lambda m: P.SensorState(m.odr_mhz, m.fs_g),
        P.GetSensor: lambda m: P.SensorState(52000, 8),
        P.StreamStart: lambda m: P.SensorState(streaming=1, block_len=m.block_len),
        P.StreamStop: lambda m: P.SensorState(streaming=0),
        P.SimSetActivity: lambda m: P.Activity(m.activity, ("sitting", "walking")),
        P.SimGetActivity: lambda m: P.Activity("sitting", ("sitting",)),
        P.DataClear: lambda m: P.DataState(slot=m.slot),
        P.TrainAbort: lambda m: P.Ack(P.MsgType.TRAIN_ABORT),
    }
    board = Board(lambda m, s: [wire(answers[type(m)](m), s)])
    c = clients(board, timeout=1.0)
    assert c.info().sysclk_hz == 16_000_000
    assert c.status().round_id == 4
    assert c.reset() is None
    assert c.set_clock(24e6) == 24_000_000
    c.set_marker()
    c.set_marker(False, 250)
    assert (c.sensor_config(12.5, 4).odr_mhz, c.sensor_config(104.0, 16).fs_g) == (12500, 16)
    assert c.sensor_state().odr_mhz == 52000
    assert c.stream_start().block_len == 26
    assert c.stream_start(52).block_len == 52
    assert c.stream_stop().streaming == 0
    assert c.set_activity("walking").current == "walking"
    assert c.get_activity().current == "sitting"
    assert c.clear_data().slot == 0xFF
    assert c.clear_data(1).slot == 1
    c.abort()
    sent = [m for _, m in board.requests]
    assert [type(m) for m in sent] == [
        P.GetInfo, P.GetStatus, P.Reset, P.SetClock, P.SetMarker, P.SetMarker, P.SensorConfig, P.SensorConfig,
        P.GetSensor, P.StreamStart, P.StreamStart, P.StreamStop, P.SimSetActivity, P.SimGetActivity, P.DataClear,
        P.DataClear, P.TrainAbort,
    ]  # fmt: skip
    assert (sent[4].enable, sent[4].reserved, sent[4].pulse_us) == (1, 0, 100)
    assert (sent[5].enable, sent[5].reserved, sent[5].pulse_us) == (0, 0, 250)
    assert (sent[6].odr_mhz, sent[6].fs_g, sent[7].odr_mhz) == (12500, 4, 104000)
    assert [s for s, _ in board.requests] == list(range(1, 18))


def test_hello_accepts_protocol_1_and_2_of_the_same_magic(clients):
    rsp = [P.HelloRsp(proto=1), P.HelloRsp(proto=2)]
    board = Board(lambda m, s: [wire(rsp.pop(0), s)])
    c = clients(board, timeout=1.0)
    assert c.proto == 1  # no HELLO yet: v1
    assert c.hello().proto == 1 and c.proto == 1 and not c.supports_robust
    assert c.hello().proto == 2 and c.proto == 2 and c.supports_robust
    sent = board.requests[0][1]
    assert (sent.magic, sent.proto_min, sent.proto_max, sent.max_payload) == (b"ODL1", 1, 2, 1024)


@pytest.mark.parametrize(
    "rsp, text",
    [
        (P.HelloRsp(magic=b"ODL2", proto=2), "board speaks b'ODL2' v2, this host speaks b'ODL1' v1..2"),
        (P.HelloRsp(proto=3), "board speaks b'ODL1' v3, this host speaks b'ODL1' v1..2"),
        (P.HelloRsp(proto=0), "board speaks b'ODL1' v0, this host speaks b'ODL1' v1..2"),
    ],
)
def test_hello_refuses_another_magic_or_a_version_outside_1_to_2(clients, rsp, text):
    c = clients(Board(lambda m, s: [wire(rsp, s)]), timeout=1.0)
    with pytest.raises(P.ProtocolError) as exc:
        c.hello()
    assert str(exc.value) == text and exc.value.code == P.ErrorCode.BAD_VERSION
    assert c.hello_info is None and c.proto == 1


# --- transfers ------------------------------------------------------------------------------------------
class XferBoard(Board):
    """Acknowledges every chunk up to its end (or what ``ack`` says) and records the chunks."""

    def __init__(self, ack: Callable[[int, int], int] | None = None, begin_at: int = 0, end: P.Message | None = None):
        self.chunks: list[tuple[int, int]] = []

        def answer(m, s):
            if isinstance(m, (P.DataBegin, P.ModelBegin)):
                return [wire(P.XferAck(begin_at), s)]
            if isinstance(m, (P.DataChunk, P.ModelChunk)):
                self.chunks.append((m.offset, len(m.data)))
                nxt = ack(m.offset, len(m.data)) if ack else m.offset + len(m.data)
                return [wire(P.XferAck(nxt), s)]
            if isinstance(m, P.DataEnd):
                return [wire(end or P.DataState(slot=1, n_windows=10, t=20, c=3), s)]
            if isinstance(m, P.ModelEnd):
                return [wire(end or P.ModelInfo(), s)]
            return []

        super().__init__(answer)


def windows(n: int = 10, t: int = 20) -> tuple[np.ndarray, np.ndarray]:
    x = (np.arange(n * t * 3, dtype=np.float32) / 7).reshape(n, t, 3)
    return x, np.arange(n) % 5


def test_upload_dataset_sends_1020_byte_chunks_and_reports_progress(clients):
    x, y = windows()  # 12-byte header + 12 label bytes (10 + padding) + 10 x 20 x 3 float32 = 2424 bytes
    blob = P.encode_dataset(x, y)
    assert len(blob) == 2424
    board = XferBoard()
    c = clients(board, timeout=1.0)
    progress: list[tuple[int, int]] = []
    st = c.upload_dataset(x, y, slot=1, progress=lambda a, b: progress.append((a, b)))
    assert (st.slot, st.n_windows) == (1, 10)
    begin = board.requests[0][1]
    assert (begin.slot, begin.reserved, begin.reserved2, begin.total_len, begin.crc32) == (1, 0, 0, 2424, crc32(blob))
    assert board.chunks == [(0, 1020), (1020, 1020), (2040, 384)]
    chunk_bytes = b"".join(m.data for _, m in board.requests if isinstance(m, P.DataChunk))
    assert chunk_bytes == blob
    assert progress == [(1020, 2424), (2040, 2424), (2424, 2424)]
    assert board.names()[-1] == "DataEnd"


def test_upload_dataset_in_int16_counts_to_slot_0(clients):
    x, y = windows(4, 5)
    board = XferBoard()
    c = clients(board, timeout=1.0)
    c.upload_dataset(x, y, dtype=P.DType.I16, scale=0.5)
    blob = P.encode_dataset(x, y, P.DType.I16, 0.5)
    begin = board.requests[0][1]
    assert (begin.slot, begin.total_len, begin.crc32) == (0, len(blob), crc32(blob))
    assert b"".join(m.data for _, m in board.requests if isinstance(m, P.DataChunk)) == blob


def test_a_transfer_resumes_at_the_offset_the_board_acknowledges_first(clients):
    x, y = windows()
    board = XferBoard(begin_at=1020)
    c = clients(board, timeout=1.0)
    c.upload_dataset(x, y)
    assert board.chunks == [(1020, 1020), (2040, 384)]


def test_a_board_that_acknowledges_the_whole_blob_at_once_gets_no_more_chunks(clients):
    x, y = windows()
    board = XferBoard(ack=lambda off, n: 2424)
    c = clients(board, timeout=1.0)
    c.upload_dataset(x, y)
    assert board.chunks == [(0, 1020)]
    assert board.names() == ["DataBegin", "DataChunk", "DataEnd"]


@pytest.mark.parametrize(
    "ack, text",
    [
        (lambda off, n: off, "board acknowledged offset 0 after a chunk at 0 of 2424"),
        (lambda off, n: 2425, "board acknowledged offset 2425 after a chunk at 0 of 2424"),
        (lambda off, n: off + n if off == 0 else 1000, "board acknowledged offset 1000 after a chunk at 1020 of 2424"),
    ],
)
def test_an_acknowledged_offset_that_does_not_advance_within_the_blob_is_refused(clients, ack, text):
    x, y = windows()
    board = XferBoard(ack=ack)
    c = clients(board, timeout=1.0)
    with pytest.raises(P.ProtocolError) as exc:
        c.upload_dataset(x, y)
    assert str(exc.value) == text
    assert "DataEnd" not in board.names()


def tiny_arch() -> Arch:
    """One Dense of 12 x 50: 650 float32 = 2600 weight bytes."""
    return Arch((4, 3), (Layer("flatten", "f"), Layer("dense", "d", units=50), Layer("softmax", "sm")))


def tiny_weights() -> dict[str, list[np.ndarray]]:
    return {"d": [np.arange(600, dtype=np.float32).reshape(12, 50) / 10, np.arange(50, dtype=np.float32)]}


def test_upload_model_announces_its_blob_and_checks_the_stored_crc(clients):
    blob, desc_len = P.encode_model(tiny_arch(), tiny_weights())
    board = XferBoard(end=P.ModelInfo(params=650, crc32=crc32(blob)))
    c = clients(board, timeout=1.0)
    progress: list[int] = []
    info = c.upload_model(tiny_arch(), tiny_weights(), progress=lambda a, b: progress.append(a))
    assert info.params == 650
    begin = board.requests[0][1]
    assert (begin.total_len, begin.desc_len, begin.crc32) == (len(blob), desc_len, crc32(blob))
    assert b"".join(m.data for _, m in board.requests if isinstance(m, P.ModelChunk)) == blob
    assert progress[-1] == len(blob) and board.names()[-1] == "ModelEnd"


def test_upload_model_refuses_a_board_that_stored_another_crc(clients):
    blob, _ = P.encode_model(tiny_arch(), tiny_weights())
    c = clients(XferBoard(end=P.ModelInfo(crc32=0x1234ABCD)), timeout=1.0)
    with pytest.raises(IntegrityError) as exc:
        c.upload_model(tiny_arch(), tiny_weights())
    assert str(exc.value) == f"board stored model CRC 0x1234ABCD, uploaded 0x{crc32(blob):08X}"


class WeightsBoard(Board):
    """Serves a weights blob; ``fix`` may change each WEIGHTS_DATA answer (offset, data)."""

    def __init__(self, data: bytes, n_tensors: int, crc: int | None = None, fix=None):
        self.reads: list[tuple[int, int]] = []

        def answer(m, s):
            if isinstance(m, P.WeightsInfo):
                return [wire(P.WeightsMeta(len(data), crc32(data) if crc is None else crc, n_tensors, 0), s)]
            if isinstance(m, P.WeightsRead):
                self.reads.append((m.offset, m.length))
                off, chunk = m.offset, data[m.offset : m.offset + m.length]
                if fix is not None:
                    off, chunk = fix(off, chunk)
                return [wire(P.WeightsData(off, chunk), s)]
            return []

        super().__init__(answer)


def test_download_weights_reads_1020_byte_pieces_and_decodes_them(clients):
    data = P.encode_weights(tiny_arch(), tiny_weights())
    assert len(data) == 2600
    board = WeightsBoard(data, 2)
    c = clients(board, timeout=1.0)
    progress: list[tuple[int, int]] = []
    got = c.download_weights(tiny_arch(), progress=lambda a, b: progress.append((a, b)))
    assert board.reads == [(0, 1020), (1020, 1020), (2040, 560)]
    assert progress == [(1020, 2600), (2040, 2600), (2600, 2600)]
    np.testing.assert_array_equal(got["d"][0], tiny_weights()["d"][0])
    np.testing.assert_array_equal(got["d"][1], tiny_weights()["d"][1])
    renamed = c.download_weights(tiny_arch(), names=["dense_7"])
    assert list(renamed) == ["dense_7"]


@pytest.mark.parametrize(
    "fix, text",
    [
        (
            lambda off, d: (off - 20, d) if off == 1020 else (off, d),
            "weights read at 1020 answered with offset 1000, 1020 bytes",
        ),
        (lambda off, d: (off, b""), "weights read at 0 answered with offset 0, 0 bytes"),
    ],
)
def test_a_weights_answer_at_another_offset_or_empty_is_refused(clients, fix, text):
    board = WeightsBoard(P.encode_weights(tiny_arch(), tiny_weights()), 2, fix=fix)
    c = clients(board, timeout=1.0)
    with pytest.raises(P.ProtocolError) as exc:
        c.download_weights(tiny_arch())
    assert str(exc.value) == text


def test_weights_of_another_model_are_refused_after_the_meta(clients):
    board = WeightsBoard(P.encode_weights(tiny_arch(), tiny_weights()), 3)
    c = clients(board, timeout=1.0)
    with pytest.raises(P.ProtocolError) as exc:
        c.download_weights(tiny_arch())
    assert str(exc.value) == (
        "the board's weights are 3 tensors, the model read back has 2: the board holds another model"
    )
    assert board.reads == []


def test_downloaded_weights_with_another_crc_raise_integrity_error(clients):
    data = P.encode_weights(tiny_arch(), tiny_weights())
    c = clients(WeightsBoard(data, 2, crc=0xDEADBEEF), timeout=1.0)
    with pytest.raises(IntegrityError) as exc:
        c.download_weights(tiny_arch())
    assert str(exc.value) == (
        f"weights download: 2600 bytes with CRC-32 0x{crc32(data):08X}, board announced 2600 bytes with 0xDEADBEEF"
    )


def test_a_board_sending_more_bytes_than_announced_fails_the_size_check(clients):
    """The last piece is longer than asked for: 2620 bytes arrive for 2600 announced (same CRC: only the size
    check can tell)."""
    data = P.encode_weights(tiny_arch(), tiny_weights())
    board = WeightsBoard(data, 2, fix=lambda off, d: (off, d + bytes(20)) if off == 2040 else (off, d))
    c = clients(board, timeout=1.0)
    with pytest.raises(
        IntegrityError, match=r"^weights download: 2620 bytes with CRC-32 0x[0-9A-F]{8}, board announced 2600 bytes"
    ):
        c.download_weights(tiny_arch())


# --- training -------------------------------------------------------------------------------------------
def train_board(proto: int = 2) -> Board:
    def answer(m, s):
        if isinstance(m, P.Hello):
            return [wire(P.HelloRsp(proto=proto), s)]
        if isinstance(m, P.TrainStart):
            return [wire(P.RoundInfo(round_id=5, total_batches=9), s)]
        return []

    return Board(answer)


def test_train_with_defaults_sends_the_plain_v1_request_without_hello(clients):
    board = train_board()
    c = clients(board, timeout=1.0)
    info = c.train()
    assert (info.round_id, info.total_batches) == (5, 9)
    assert board.names() == ["TrainStart"]
    m = board.requests[0][1]
    want = over_the_wire(P.TrainStart(0, 1, 2, 32, 0, 0.01, 0.01, 0, 0, 0, 0, 0, 1.0, 0.0, 0.0))
    assert m == want and not m.extended


def test_train_sends_every_option_of_a_robust_round(clients):
    board = train_board()
    c = clients(board, timeout=1.0)
    c.train(
        " Tl ", epochs=3, batch=16, lr=0.05, warmup_epochs=1, shuffle=False, seed=-1, layer_indices=(0, 5, 63),
        n_val=4, patience=2, restore_best=True, select_f1=True, feature_lr_scale=0.5, clip_norm=1.5, l2sp=0.25,
    )  # fmt: skip
    assert board.names() == ["Hello", "TrainStart"]
    m = board.requests[1][1]
    mask = 1 | 1 << 5 | 1 << 63
    assert m == over_the_wire(P.TrainStart(1, 0, 3, 16, 1, 0.05, 0.05, 0xFFFFFFFF, mask, 4, 2, 3, 0.5, 1.5, 0.25))


def test_train_takes_a_mode_number_a_warmup_lr_and_one_validation_flag(clients):
    board = train_board()
    c = clients(board, timeout=1.0)
    c.train(2, lr=0.5, warmup_lr=0.125, seed=7, restore_best=True)
    c.train(P.TrainMode.MASK, select_f1=True, layer_indices=[1])
    c.train("mask", n_val=3)
    ts = [m for _, m in board.requests if isinstance(m, P.TrainStart)]
    assert (ts[0].mode, ts[0].lr, ts[0].warmup_lr, ts[0].seed, ts[0].val_flags) == (2, 0.5, 0.125, 7, 1)
    assert (ts[1].mode, ts[1].val_flags, ts[1].layer_mask) == (3, 2, 2)
    assert (ts[2].mode, ts[2].n_val, ts[2].val_flags) == (3, 3, 0)
    assert board.names().count("Hello") == 1  # asked once, on the first robust request


@pytest.mark.parametrize(
    "kw, text",
    [
        ({"mode": "fine"}, "training mode 'fine' is not one of full, tl, last, mask"),
        ({"layer_indices": (3, 64)}, "layer index 64 outside 0..63 for the training mask"),
        ({"layer_indices": (-1,)}, "layer index -1 outside 0..63 for the training mask"),
    ],
)
def test_a_bad_mode_or_layer_index_is_refused_before_anything_is_sent(clients, kw, text):
    board = train_board()
    c = clients(board, timeout=1.0)
    with pytest.raises(ValueError) as exc:
        c.train(**kw)
    assert str(exc.value) == text and board.requests == []


def test_robust_options_on_a_v1_board_are_refused_before_the_round_is_sent(clients):
    board = train_board(proto=1)
    c = clients(board, timeout=1.0)
    with pytest.raises(ValueError) as exc:
        c.train(clip_norm=1.0)
    assert str(exc.value) == (
        "the board speaks protocol v1: robust rounds (validation, restore, clipping, per-layer lr, L2-SP) need v2 "
        "— update its firmware or train with the plain procedure"
    )
    assert board.names() == ["Hello"]
    c.train(epochs=1)  # the plain round is fine
    assert board.names() == ["Hello", "TrainStart"]


def batch(round_id: int, i: int) -> P.BatchReport:
    return P.BatchReport(round_id=round_id, epoch=0, batch=i, batches_per_epoch=2, n_samples=16, loss=1.0 + i)


def val(round_id: int, epoch: int) -> P.ValReport:
    return P.ValReport(round_id=round_id, epoch=epoch, n=4, best=1, loss=0.5, macro_f1=0.25)


def test_wait_round_done_collects_the_reports_in_order_and_leaves_other_events(clients):
    board = pong_board()
    c = clients(board, timeout=1.0)
    board.emit(
        wire(val(3, 0), 1), wire(batch(3, 0), 2), wire(P.Log(1, "hi"), 3), wire(batch(3, 1), 4), wire(val(3, 1), 5),
        wire(P.RoundDone(round_id=3, epochs_done=1, batches_done=2), 6), wire(batch(4, 0), 7),
    )  # fmt: skip
    seen: list[str] = []
    res = c.wait_round_done(
        20.0, on_batch=lambda b: seen.append(f"b{b.batch}"), on_val=lambda v: seen.append(f"v{v.epoch}")
    )
    assert isinstance(res, RoundResult)
    assert (res.done.round_id, res.done.batches_done) == (3, 2)
    assert [(b.round_id, b.batch) for b in res.batches] == [(3, 0), (3, 1)]
    assert [(v.round_id, v.epoch) for v in res.vals] == [(3, 0), (3, 1)]
    assert seen == ["v0", "b0", "b1", "v1"]
    assert [(type(e), getattr(e, "round_id", None)) for e in c.drain_events()] == [(P.Log, None), (P.BatchReport, 4)]


def test_a_round_result_without_validation_has_no_vals():
    r = RoundResult(P.RoundDone(), [])
    assert r.vals == [] and r.vals is not RoundResult(P.RoundDone(), []).vals


def test_wait_round_done_times_out_naming_the_reports_seen(clients):
    board = pong_board()
    c = clients(board, timeout=1.0)
    board.emit(wire(batch(1, 0), 1))
    t0 = time.monotonic()
    with pytest.raises(NucleoTimeout, match=r"^training round not done after 0.2 s \(1 batch reports seen\)$"):
        c.wait_round_done(0.2, check_every=0)
    assert 0.2 <= time.monotonic() - t0 < 0.8
    assert board.requests == []  # check_every=0: no STATUS asked


class RoundBoard(Board):
    """Answers GET_STATUS with the given states in turn (then the last one); ``after_status`` frames follow
    the answer of the status request with that index."""

    def __init__(self, states: list[P.Status | None], after_status: dict[int, list[bytes]] | None = None):
        self.n_status = 0

        def answer(m, s):
            if isinstance(m, P.GetStatus):
                i = self.n_status
                self.n_status += 1
                st = states[min(i, len(states) - 1)]
                out = [] if st is None else [wire(st, s)]
                return out + (after_status or {}).get(i, [])
            return []

        super().__init__(answer)


TRAINING = P.Status(state=P.BoardState.TRAINING, model_loaded=1, round_id=1)
IDLE = P.Status(state=P.BoardState.IDLE, model_loaded=1, round_id=1)
REBOOTED = P.Status(state=P.BoardState.IDLE, model_loaded=0, round_id=0)


def test_a_quiet_round_still_training_is_waited_for(clients):
    """No report for check_every: STATUS says TRAINING, so the wait goes on; the reports come after."""
    done = P.RoundDone(round_id=1, batches_done=2)
    board = RoundBoard([TRAINING], {1: [wire(batch(1, 1), 3), wire(done, 4)]})
    c = clients(board, timeout=1.0)
    board.emit(wire(batch(1, 0), 1), wire(val(1, 0), 2))  # then quiet
    res = c.wait_round_done(20.0, check_every=0.01)
    assert board.n_status == 2
    assert [b.batch for b in res.batches] == [0, 1] and [v.epoch for v in res.vals] == [0]
    assert res.done.round_id == 1


def test_no_status_is_asked_before_check_every_has_passed(clients):
    """A quiet quarter second with check_every=10: no STATUS (this board would not answer it)."""
    board = RoundBoard([None])
    c = clients(board, timeout=0.02, retries=0)

    def later() -> None:
        time.sleep(0.25)
        board.emit(wire(P.RoundDone(round_id=2), 1))

    threading.Thread(target=later, daemon=True).start()
    assert c.wait_round_done(20.0, check_every=10.0).done.round_id == 2
    assert board.requests == []


def test_a_board_silent_during_the_round_raises_nucleo_timeout(clients):
    board = RoundBoard([None])
    c = clients(board, timeout=0.02, retries=0)
    board.emit(wire(batch(1, 0), 1))
    with pytest.raises(NucleoTimeout) as exc:
        c.wait_round_done(20.0, check_every=0.01)
    assert str(exc.value) == (
        "the board stopped answering during the training round (1 batch reports seen): "
        "no answer to GetStatus (seq 1) after 1 attempt(s) of 0.02 s"
    )
    assert exc.value.__cause__ is None and exc.value.__suppress_context__


def test_a_board_reset_during_the_round_raises_naming_the_boot(clients):
    board = RoundBoard([REBOOTED])
    c = clients(board, timeout=1.0)
    board.emit(wire(batch(1, 0), 1), wire(batch(1, 1), 2), wire(P.Boot(2, 1, 0, 0), 3))
    with pytest.raises(P.ProtocolError) as exc:
        c.wait_round_done(20.0, check_every=0.01)
    assert str(exc.value) == (
        "the board was reset during the training round (BOOT, reset cause 2); its model and data are gone: "
        "upload them again (2 batch reports seen)"
    )


def test_a_boot_with_the_model_still_loaded_is_a_reset_too(clients):
    board = RoundBoard([IDLE])
    c = clients(board, timeout=1.0)
    board.emit(wire(P.Boot(0, 1, 0, 0), 1))
    with pytest.raises(
        P.ProtocolError, match=r"^the board was reset during the training round \(BOOT, reset cause 0\)"
    ):
        c.wait_round_done(20.0, check_every=0.01)


def test_a_board_without_its_model_and_no_boot_seen_was_reset(clients):
    c = clients(RoundBoard([REBOOTED]), timeout=1.0)
    with pytest.raises(P.ProtocolError) as exc:
        c.wait_round_done(20.0, check_every=0.01)
    assert str(exc.value) == (
        "the board was reset during the training round (BOOT, reset cause ?); its model and data are gone: "
        "upload them again (0 batch reports seen)"
    )


def test_a_round_that_ended_without_its_round_done_says_so(clients):
    c = clients(RoundBoard([IDLE]), timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(P.ProtocolError) as exc:
        c.wait_round_done(20.0, check_every=0.01)
    assert time.monotonic() - t0 < 1.0  # quiet for 0.1 s (events are waited for 0.1 s at a time), 0.3 s grace
    assert str(exc.value) == (
        "the training round ended on the board but its ROUND_DONE report was lost (0 batch reports seen); "
        "read the weights with download_weights() to continue"
    )


def test_a_round_done_arriving_just_after_an_idle_status_ends_the_wait_normally(clients):
    """STATUS says IDLE and the ROUND_DONE comes a moment later (while the client waits for it)."""
    board = RoundBoard([IDLE])
    c = clients(board, timeout=1.0)

    def late() -> None:
        while board.n_status == 0 or c._waiting_seq is not None:
            time.sleep(0.001)
        waiting(c)  # the client now waits for the report behind the status answer
        board.emit(wire(batch(1, 0), 1), wire(P.RoundDone(round_id=1, batches_done=1), 2))

    threading.Thread(target=late, daemon=True).start()
    res = c.wait_round_done(20.0, check_every=0.01)
    assert res.done.round_id == 1 and [b.batch for b in res.batches] == [0]
    assert board.n_status == 1


def test_a_closed_client_stops_waiting_for_the_round_done_behind_a_status(clients, monkeypatch):
    c = clients(Board(), timeout=1.0)
    monkeypatch.setattr(c, "status", lambda: IDLE)  # the board's STATUS answer, without the wire
    c._closed = True  # as close() does
    t0 = time.monotonic()
    with pytest.raises(P.ProtocolError, match="ROUND_DONE report was lost"):
        c._check_round_alive([])
    assert time.monotonic() - t0 < 0.25  # not the 0.3 s grace


def test_the_round_done_check_waits_300_ms_for_the_report(clients):
    c = clients(RoundBoard([IDLE]), timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(P.ProtocolError, match="ROUND_DONE report was lost"):
        c._check_round_alive([])
    assert 0.3 <= time.monotonic() - t0 < 1.2


def test_a_training_status_returns_at_once(clients):
    c = clients(RoundBoard([TRAINING]), timeout=1.0)
    assert c._check_round_alive([]) is None


# --- evaluation ------------------------------------------------------------------------------------------
def eval_result(slot: int, n: int) -> P.EvalResult:
    return P.EvalResult(slot, 2, n, 0.5, 1000, np.array([n, 0, 0, 0], np.uint16))


def test_evaluate_drains_an_old_result_and_returns_the_new_one(clients):
    def answer(m, s):
        if isinstance(m, P.Evaluate):
            return [
                wire(P.Ack(P.MsgType.EVALUATE), s),
                wire(P.Log(1, "evaluating"), 2),
                wire(eval_result(m.slot, 9), 3),
            ]
        return [wire(P.Pong(b""), s)]

    board = Board(answer)
    c = clients(board, timeout=1.0)
    board.emit(wire(eval_result(0, 3), 1), wire(P.Boot(0, 1, 0, 0), 2))  # a result nobody waited for, a BOOT
    assert c.ping() == b""
    r = c.evaluate(0, timeout=20.0)
    assert (r.slot, r.n) == (0, 9)
    assert [type(e) for e in c.drain_events()] == [P.Boot, P.Log]  # other events stay queued
    assert r.matrix.tolist() == [[9, 0], [0, 0]]
    assert board.requests[-1][1].slot == 0
    r = c.evaluate(timeout=20.0, cancelled=lambda: False)
    assert (r.slot, r.n) == (1, 9)


def test_evaluate_gives_up_when_cancelled(clients):
    board = Board(lambda m, s: [wire(P.Ack(P.MsgType.EVALUATE), s)])
    c = clients(board, timeout=1.0)
    calls = []

    def cancelled() -> bool:
        calls.append(1)
        return len(calls) >= 2

    t0 = time.monotonic()
    with pytest.raises(WaitCancelled, match="^evaluation of slot 1: no longer waited for$"):
        c.evaluate(timeout=30.0, cancelled=cancelled)
    assert len(calls) == 2 and time.monotonic() - t0 < 0.8  # asked every 0.1 s


def test_evaluate_times_out(clients):
    board = Board(lambda m, s: [wire(P.Ack(P.MsgType.EVALUATE), s)])
    c = clients(board, timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(NucleoTimeout, match=r"^evaluation of slot 2 not finished after 0.2 s$"):
        c.evaluate(2, timeout=0.2)
    assert 0.2 <= time.monotonic() - t0 < 0.8
    t0 = time.monotonic()
    with pytest.raises(NucleoTimeout, match=r"^evaluation of slot 1 not finished after 0.2 s$"):
        c.evaluate(timeout=0.2, cancelled=lambda: False)
    assert 0.2 <= time.monotonic() - t0 < 0.8


# --- DeviceTransport + the emulated board ------------------------------------------------------------------
def test_device_transport_passes_bytes_both_ways_and_refuses_writes_once_closed():
    emu = NucleoEmulator(SimClock(1.0))
    t = DeviceTransport(emu, SimClock(1.0), timeout=2.0)
    assert t.write(wire(P.Ping(b"hey"), 9)) == len(wire(P.Ping(b"hey"), 9))
    want = wire(P.Pong(b"hey"), 9)
    assert t.read() == want[:1]  # one byte unless asked for more
    assert t.read(3) == want[1:4]
    assert t.read(100) == want[4:]
    t0 = time.monotonic()
    t.timeout = 0.05
    assert t.read(10) == b""
    assert 0.05 <= time.monotonic() - t0 < 0.5
    t.close()
    t.close()
    with pytest.raises(OSError, match="^transport closed$"):
        t.write(wire(P.Ping(b""), 10))
    t0 = time.monotonic()
    t.timeout = 20.0
    assert t.read(10) == b""
    assert time.monotonic() - t0 < 10.0


def test_device_transport_read_waits_for_bytes_that_come_later():
    emu = NucleoEmulator(SimClock(1.0))
    t = DeviceTransport(emu, SimClock(1.0), timeout=20.0)
    timer = threading.Timer(0.05, lambda: t.write(wire(P.Ping(b"x"), 3)))
    timer.start()
    assert t.read(4096) == wire(P.Pong(b"x"), 3)
    timer.join()


def test_device_transport_connects_and_disconnects_the_board():
    class Dev:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def connect(self) -> None:
            self.calls.append("connect")

        def disconnect(self) -> None:
            self.calls.append("disconnect")

    dev = Dev()
    t = DeviceTransport(dev, SimClock(1.0))
    assert (dev.calls, t.timeout) == (["connect"], 0.05)
    t.close()
    t.close()
    assert dev.calls == ["connect", "disconnect"]


@pytest.fixture
def emulated():
    clock = SimClock(5000.0)
    emu = NucleoEmulator(clock)
    c = NucleoClient(DeviceTransport(emu, clock), timeout=2.0)
    yield emu, c
    c.close()
    emu.wait_idle(5)


def test_a_whole_round_on_the_emulated_board(emulated):
    """Upload, a 2-epoch round of 40 windows in batches of 16 (3 batches per epoch), its reports in order,
    evaluation of the held slot and the weights read back (the initial ones changed by training)."""
    emu, c = emulated
    arch = paper_cnn(20, 5)
    w = Model(arch, seed=1).get_weights()
    rng = np.random.default_rng(0)
    y = np.arange(40) % 5
    x = rng.standard_normal((40, 20, 3)).astype(np.float32) + y[:, None, None]
    assert c.hello().proto == 2
    info = c.upload_model(arch, w)
    assert info.crc32 == crc32(P.encode_model(arch, w)[0]) and info.params == arch.params == 10033
    st = c.upload_dataset(x, y)
    assert (st.slot, st.n_windows, st.t, st.c) == (0, 40, 20, 3)
    assert c.upload_dataset(x[:10], y[:10], slot=1).n_windows == 10
    c.drain_events()
    plan = c.train("full", epochs=2, batch=16, n_val=8)
    assert (plan.batches_per_epoch, plan.total_batches) == (2, 4)
    res = c.wait_round_done(30.0)
    assert res.done.status == P.RoundStatus.DONE and res.done.round_id == plan.round_id
    assert [(b.epoch, b.batch, b.n_samples) for b in res.batches] == [(0, 0, 16), (0, 1, 16), (1, 0, 16), (1, 1, 16)]
    assert [v.epoch for v in res.vals] == [0, 1, 2] and all(v.n == 8 for v in res.vals)
    ev = c.evaluate(1, timeout=30.0)
    assert (ev.slot, ev.n, ev.matrix.shape, int(ev.matrix.sum())) == (1, 10, (5, 5), 10)
    got = c.download_weights(arch)
    assert list(got) == ["conv1", "conv2", "dense1", "dense2"]
    assert [a.shape for a in got["dense2"]] == [(50, 5), (5,)]
    assert not np.array_equal(got["dense2"][0], w["dense2"][0])
    assert c.stats["retries"] == 0 and c.stats["stale_replies"] == 0
