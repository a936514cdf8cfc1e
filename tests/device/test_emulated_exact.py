"""The emulated devices' byte plumbing (device/emulated.py; mutation target ``emulated``): the FIFO every emulated
device queues its output in (zero-copy views, consumption across chunks, its advisory capacity) and the byte
faults both emulators inject (the switches' checks and exactly which bytes each fault hits)."""

from __future__ import annotations

import numpy as np
import pytest

from device.emulated import ByteFaults, ByteFifo, apply_byte_faults

# --- ByteFifo ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("capacity", [0, -1, 0.5])
def test_a_fifo_of_no_capacity_is_refused(capacity):
    with pytest.raises(ValueError) as e:
        ByteFifo(capacity)
    assert str(e.value) == f"ByteFifo capacity must be >= 1 byte, got {capacity!r}"


def test_a_fifo_counts_what_is_queued_against_its_advisory_capacity():
    f = ByteFifo(8)
    assert (f.capacity, len(f), f.free(), f.fill_fraction()) == (8, 0, 8, 0.0)
    assert ByteFifo().capacity == 65536 and ByteFifo(1).capacity == 1 and ByteFifo(2.9).capacity == 2
    f.append(b"abc")
    assert (len(f), f.free(), f.fill_fraction()) == (3, 5, 0.375)
    f.append(b"defgh")
    assert (len(f), f.free(), f.fill_fraction()) == (8, 0, 1.0)
    f.append(b"ij")  # never refused (end tags, errors): over capacity
    assert (len(f), f.free(), f.fill_fraction()) == (10, 0, 1.25)


def test_appending_nothing_queues_no_chunk_and_data_is_copied():
    f = ByteFifo()
    for empty in (b"", bytearray(), memoryview(b"")):
        f.append(empty)
    assert len(f) == 0 and f.pending() == b"" and f.peek_all() == b""
    buf = bytearray(b"xyz")
    f.append(buf)
    f.append(memoryview(b"12"))
    buf[0] = ord("Q")  # the caller reuses its buffer
    assert f.peek_all() == b"xyz12"
    assert bytes(f.pending()) == b"xyz"  # the oldest chunk only


def test_consuming_spans_chunks_and_pending_is_the_rest_of_the_oldest():
    f = ByteFifo()
    for chunk in (b"abc", b"de", b"fghi"):
        f.append(chunk)
    f.consume(0)
    assert (len(f), bytes(f.pending())) == (9, b"abc")
    f.consume(1)
    assert (len(f), bytes(f.pending()), f.peek_all()) == (8, b"bc", b"bcdefghi")
    f.consume(2)  # exactly to the end of a chunk
    assert (len(f), bytes(f.pending()), f.peek_all()) == (6, b"de", b"defghi")
    f.consume(3)  # across one chunk into the next
    assert (len(f), bytes(f.pending()), f.peek_all()) == (3, b"ghi", b"ghi")
    f.consume(3)
    assert (len(f), bytes(f.pending()), f.peek_all()) == (0, b"", b"")
    f.append(b"jk")
    assert bytes(f.pending()) == b"jk"  # (the head offset was reset)


def test_several_partial_consumes_in_one_chunk_add_up():
    f = ByteFifo()
    f.append(b"hello")
    f.consume(1)
    f.consume(2)
    assert (len(f), bytes(f.pending())) == (2, b"lo")
    f.clear()
    f.append(b"zz")
    f.consume(1)  # (the head offset cleared to 0 too)
    assert (len(f), bytes(f.pending())) == (1, b"z")


def test_pending_is_a_view_not_a_copy():
    f = ByteFifo()
    f.append(b"hello")
    f.consume(1)
    v = f.pending()
    assert isinstance(v, memoryview) and v.obj is f._chunks[0] and bytes(v) == b"ello"  # noqa: SLF001


@pytest.mark.parametrize("n", [-1, 4])
def test_consuming_what_is_not_there_is_refused_and_changes_nothing(n):
    f = ByteFifo()
    f.append(b"abc")
    with pytest.raises(ValueError) as e:
        f.consume(n)
    assert str(e.value) == f"consume({n}) with 3 bytes pending"
    assert (len(f), f.peek_all()) == (3, b"abc")
    f.consume(3.0)  # a whole float is a count
    assert len(f) == 0


def test_clear_empties_the_fifo():
    f = ByteFifo(4)
    f.append(b"ab")
    f.append(b"cd")
    f.consume(1)
    f.clear()
    assert (len(f), f.free(), f.peek_all(), bytes(f.pending())) == (0, 4, b"", b"")
    f.append(b"z")
    assert bytes(f.pending()) == b"z"


# --- ByteFaults -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["nul_rate", "nul_burst_rate", "drop_rate", "corrupt_rate"])
@pytest.mark.parametrize("value", [-0.01, 1.01, float("nan"), float("inf")])
def test_a_fault_rate_is_a_probability(name, value):
    f = ByteFaults()
    with pytest.raises(ValueError) as e:
        setattr(f, name, value)
    assert str(e.value) == f"faults.{name} is a probability per byte: must be in [0, 1], got {value!r}"
    assert getattr(f, name) == 0.0


def test_rates_are_floats_and_the_burst_a_whole_length():
    f = ByteFaults(nul_rate=1, drop_rate="0.25")
    assert (f.nul_rate, f.drop_rate) == (1.0, 0.25) and isinstance(f.nul_rate, float)
    f.corrupt_rate = 0
    assert f.corrupt_rate == 0.0 and isinstance(f.corrupt_rate, float)
    f.nul_burst_len = "3"
    assert f.nul_burst_len == 3
    f.nul_burst_len = 1
    assert f.nul_burst_len == 1
    for bad in (0, -2):
        with pytest.raises(ValueError) as e:
            f.nul_burst_len = bad
        assert str(e.value) == f"faults.nul_burst_len must be >= 1, got {bad!r}"
    assert f.nul_burst_len == 1
    f.label = "x"  # other attributes are not checked
    assert f.label == "x"


@pytest.mark.parametrize("name", ["nul_rate", "nul_burst_rate", "drop_rate", "corrupt_rate"])
def test_each_rate_makes_the_faults_active_and_clear_resets_them(name):
    f = ByteFaults()
    assert f.byte_faults_active() is False
    f.nul_burst_len = 4
    assert f.byte_faults_active() is False  # a length alone injects nothing
    setattr(f, name, 0.5)
    assert f.byte_faults_active() is True
    f.clear()
    assert (f.nul_rate, f.nul_burst_rate, f.nul_burst_len, f.drop_rate, f.corrupt_rate) == (0.0, 0.0, 16, 0.0, 0.0)
    assert f.byte_faults_active() is False


# --- apply_byte_faults ------------------------------------------------------------------------------------------------


class Script:
    """A random generator whose draws are given: ``random(n)`` and ``integers(...)`` return them in turn."""

    def __init__(self, *draws) -> None:
        self.draws, self.asked = list(draws), []

    def random(self, n):
        self.asked.append(("random", n))
        out = np.asarray(self.draws.pop(0), float)
        assert out.size == n
        return out

    def integers(self, lo, hi, size, dtype):
        self.asked.append(("integers", lo, hi, size, dtype))
        return np.asarray(self.draws.pop(0), dtype)


def test_no_fault_leaves_the_bytes_and_draws_nothing():
    rng = Script()
    assert apply_byte_faults(b"\x00\x01\xff", ByteFaults(nul_burst_len=5), rng) == b"\x00\x01\xff"
    assert rng.asked == []
    assert apply_byte_faults(b"", ByteFaults(), rng) == b""


def test_corruption_flips_bits_of_the_bytes_drawn_below_the_rate():
    rng = Script([0.1, 0.9, 0.05, 0.2], [0x01, 0x80])
    out = apply_byte_faults(b"ABCD", ByteFaults(corrupt_rate=0.2), rng)
    assert out == bytes([ord("A") ^ 0x01, ord("B"), ord("C") ^ 0x80, ord("D")])  # 0.2 is not below 0.2
    assert rng.asked == [("random", 4), ("integers", 1, 256, 2, np.uint8)]  # never a flip of no bit


def test_drops_remove_the_bytes_drawn_below_the_rate():
    rng = Script([0.3, 0.29, 0.0, 0.99])
    assert apply_byte_faults(b"ABCD", ByteFaults(drop_rate=0.3), rng) == b"AD"


def test_nuls_go_after_the_bytes_drawn_and_bursts_are_runs_of_nuls():
    rng = Script([0.5, 0.01, 0.5], [0.5, 0.5, 0.01])
    out = apply_byte_faults(b"ABC", ByteFaults(nul_rate=0.1, nul_burst_rate=0.1, nul_burst_len=3), rng)
    assert out == b"AB\x00C\x00\x00\x00"  # one NUL after B, a burst of 3 after C
    rng = Script([0.0, 0.5], [0.0, 0.5])
    out = apply_byte_faults(b"AB", ByteFaults(nul_rate=0.1, nul_burst_rate=0.1, nul_burst_len=2), rng)
    assert out == b"A\x00\x00\x00B"  # a single NUL and a burst after the same byte
    rng = Script([0.5, 0.5], [0.5, 0.5])
    assert apply_byte_faults(b"AB", ByteFaults(nul_burst_rate=0.1), rng) == b"AB"  # none drawn
    rng = Script([0.25, 0.0], [0.0, 0.0])  # single NULs only (no bursts: a burst rate of 0 never draws)
    assert apply_byte_faults(b"AB", ByteFaults(nul_rate=0.25), rng) == b"AB\x00"  # 0.25 is not below 0.25
    rng = Script([0.9, 0.9], [0.25, 0.0])
    out = apply_byte_faults(b"AB", ByteFaults(nul_burst_rate=0.25, nul_burst_len=2), rng)
    assert out == b"AB\x00\x00"  # a burst drawn at exactly the rate is not one


def test_the_faults_apply_in_order_corrupt_drop_then_insert():
    rng = Script([0.0, 0.9, 0.9], [0xFF], [0.9, 0.0, 0.9], [0.0, 0.9], [0.9, 0.9])
    f = ByteFaults(corrupt_rate=0.5, drop_rate=0.5, nul_rate=0.5, nul_burst_rate=0.5)
    out = apply_byte_faults(b"ABC", f, rng)
    assert out == bytes([ord("A") ^ 0xFF, 0, ord("C")])  # B dropped, then a NUL after the first byte left
    assert [a[0] for a in rng.asked] == ["random", "integers", "random", "random", "random"]
    assert [a[1] for a in rng.asked if a[0] == "random"] == [3, 3, 2, 2]


def test_with_a_real_generator_the_rates_hold_and_the_input_is_untouched():
    data = bytes(range(256)) * 40
    rng = np.random.default_rng(1)
    out = apply_byte_faults(data, ByteFaults(drop_rate=0.25), rng)
    assert 0.22 < 1 - len(out) / len(data) < 0.28
    out = apply_byte_faults(data, ByteFaults(corrupt_rate=1.0), rng)
    assert len(out) == len(data) and all(a != b for a, b in zip(out, data, strict=True))
    assert apply_byte_faults(data, ByteFaults(drop_rate=1.0), rng) == b""
    assert data == bytes(range(256)) * 40
