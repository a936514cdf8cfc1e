"""NucleoClient against a scripted board: what the host does when reports and answers interleave."""

from __future__ import annotations

import queue
import threading

from device.nucleo import protocol as P
from device.nucleo.client import NucleoClient


class ScriptedLink:
    """A transport whose board answers each request with frames chosen by the test."""

    def __init__(self, answer):
        self._answer = answer
        self._rx: queue.Queue[bytes] = queue.Queue()
        self._dec = P.FrameDecoder()
        self._closed = threading.Event()

    def write(self, data: bytes) -> int:
        for frame in self._dec.feed(data):
            for out in self._answer(P.decode_message(frame), frame.seq):
                self._rx.put(out)
        return len(data)

    def read(self, n: int = 1) -> bytes:
        try:
            return self._rx.get(timeout=0.05)
        except queue.Empty:
            return b""

    def close(self) -> None:
        self._closed.set()


def test_reports_that_arrive_behind_a_status_answer_keep_their_order():
    """A round whose last BATCH_REPORT and ROUND_DONE arrive while the client, having heard nothing for a
    while, asks for STATUS: the batch report must still be counted in that round (it used to be pushed
    behind ROUND_DONE and attributed to the next round)."""
    report = P.BatchReport(round_id=1, batch=0, batches_per_epoch=1, n_samples=32, loss=1.5, cycles=5000)
    done = P.RoundDone(round_id=1, epochs_done=1, batches_done=1, last_loss=1.5, cycles=5000)

    def answer(msg, seq):
        if isinstance(msg, P.GetStatus):
            # the board finished just now: its reports go out right after the status answer
            yield P.Status(state=P.BoardState.IDLE, model_loaded=1, round_id=1).encode(seq)
            yield report.encode(1)
            yield done.encode(2)

    client = NucleoClient(ScriptedLink(answer), timeout=1.0)
    try:
        res = client.wait_round_done(10, check_every=0.2)
        assert res.done.round_id == 1
        assert [b.batch for b in res.batches] == [0], "the batch report was not attributed to its round"
    finally:
        client.close()


# --- NUCLEO client: sequence numbers are 1..0xFFFE (docs/protocol.md §2), never 0 or 0xFFFF -----------
def test_nucleo_client_sequence_numbers_skip_zero_and_ffff() -> None:
    from device.nucleo.client import NucleoClient

    class _Silent:
        def read(self, n: int = 1) -> bytes:
            import time

            time.sleep(0.01)
            return b""

        def write(self, data: bytes) -> int:
            return len(data)

        def close(self) -> None:
            pass

    c = NucleoClient(_Silent())
    try:
        c._seq = 0xFFFD
        seqs = [c._next_seq() for _ in range(4)]
    finally:
        c.close()
    assert seqs == [0xFFFE, 1, 2, 3]


def test_weights_of_another_model_are_refused_before_they_are_read():
    """WEIGHTS_META counts the board's tensors: when they are not the model's, the download stops there with
    a message saying the board holds another model (the bytes may even have the same size), and no
    WEIGHTS_READ is sent."""
    import pytest

    from estimator.arch import paper_cnn

    arch = paper_cnn(20, 5)
    tensors = sum(len(ss) for ss in arch.param_shapes().values())
    asked = []

    def answer(msg, seq):
        asked.append(type(msg).__name__)
        if isinstance(msg, P.WeightsInfo):
            yield P.WeightsMeta(4 * arch.params, 0, tensors - 1, 0).encode(seq)

    client = NucleoClient(ScriptedLink(answer), timeout=1.0)
    try:
        with pytest.raises(P.ProtocolError, match=f"board's weights are {tensors - 1} tensors, the model read back "
                           f"has {tensors}: the board holds another model"):  # fmt: skip
            client.download_weights(arch)
        assert asked == ["WeightsInfo"]
    finally:
        client.close()
