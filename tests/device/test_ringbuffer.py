"""Generic ring buffer: absolute indices, wrap-around, overrun reporting, thread safety, timeouts."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from device.ringbuffer import RingBuffer


def test_write_read_wraparound_and_absolute_indices():
    rb = RingBuffer(10)
    assert rb.write(np.arange(7.0)) == 0
    assert rb.write(np.arange(7.0, 15.0)) == 7
    assert rb.total == 15 and rb.first_available == 5 and len(rb) == 10
    r = rb.read(5, 15)
    assert r.first_index == 5 and r.overrun == 0
    np.testing.assert_array_equal(r.values, np.arange(5.0, 15.0))
    r = rb.read(2, 8)  # 2..4 overwritten
    assert r.first_index == 5 and r.overrun == 3
    np.testing.assert_array_equal(r.values, [5.0, 6.0, 7.0])
    np.testing.assert_array_equal(rb.latest(4).values, [11.0, 12.0, 13.0, 14.0])
    assert len(rb.read(15).values) == 0  # nothing beyond what was written


def test_block_larger_than_capacity_keeps_newest():
    rb = RingBuffer(4, start_index=100)
    assert rb.write(np.arange(10.0)) == 100
    r = rb.read(100)
    assert r.first_index == 106 and r.overrun == 6
    np.testing.assert_array_equal(r.values, [6.0, 7.0, 8.0, 9.0])


def test_bad_capacity_is_rejected():
    with pytest.raises(ValueError, match="capacity"):
        RingBuffer(0)


def test_wait_times_out_and_wakes_on_write_and_close():
    rb = RingBuffer(100)
    t = time.monotonic()
    assert rb.wait(0, 0.05) is False
    assert time.monotonic() - t < 1.0
    threading.Timer(0.05, lambda: rb.write(np.ones(3))).start()
    assert rb.wait(0, 2.0) is True
    threading.Timer(0.05, rb.close).start()
    assert rb.wait(10, 2.0) is False and rb.closed


def test_concurrent_consumer_gets_each_sample_once_at_its_index_or_an_overrun_count():
    """Whatever the scheduling, a consumer sees samples at their true absolute index, in order, and
    everything it did not see is reported as overrun (never silently skipped)."""
    rb = RingBuffer(5000)
    n_total = 200_000
    seen = {"values": 0, "overrun": 0}
    errors: list[str] = []

    def consume():
        cursor = 0
        while cursor < n_total:
            if not rb.wait(cursor, 5.0):
                errors.append(f"timed out at {cursor}")
                return
            r = rb.read(cursor)
            if not np.array_equal(r.values, np.arange(r.first_index, r.next_index, dtype=np.float64)):
                errors.append(f"wrong values at {r.first_index}")
            if r.first_index != cursor + r.overrun:
                errors.append(f"gap not reported at {cursor}")
            seen["values"] += len(r.values)
            seen["overrun"] += r.overrun
            cursor = r.next_index

    th = threading.Thread(target=consume)
    th.start()
    for i in range(0, n_total, 1000):
        rb.write(np.arange(i, i + 1000, dtype=np.float64))
    th.join(10)
    assert not errors, errors
    assert seen["values"] + seen["overrun"] == n_total


def test_latest_with_non_positive_n_is_empty():
    import numpy as np

    from device.ringbuffer import RingBuffer

    rb = RingBuffer(16, np.float32)
    rb.write(np.arange(10, dtype=np.float32))
    assert len(rb.latest(0).values) == 0 and len(rb.latest(-5).values) == 0
    assert list(rb.latest(3).values) == [7, 8, 9]


def test_a_capacity_of_one_sample_is_allowed_and_keeps_the_newest():
    rb = RingBuffer(1)
    assert rb.closed is False
    rb.write(np.array([1.0, 2.0]))
    r = rb.latest(5)
    assert (r.first_index, r.values.tolist(), r.overrun) == (1, [2.0], 0)
    with pytest.raises(ValueError) as ei:
        RingBuffer(0)
    assert str(ei.value) == "capacity must be >= 1 sample, got 0"


def test_the_buffer_keeps_its_dtype_in_every_read():
    rb = RingBuffer(4, dtype=np.float32)
    rb.write(np.array([0.1, 0.2]))  # float64 in: stored (and read) as float32
    assert rb.read(0).values.dtype == np.float32
    assert rb.read(0).values.tolist() == [np.float32(0.1), np.float32(0.2)]
    assert rb.read(10).values.dtype == np.float32  # an empty read too
    assert rb.latest(1).values.dtype == np.float32


def test_a_block_larger_than_the_buffer_lands_at_its_ring_position():
    """4 samples held, 3 written, then a block of 5: its newest 4 are 4…7 at absolute 4…7 (the ring position of
    absolute 4 is 0, not that of absolute 2)."""
    rb = RingBuffer(4)
    rb.write(np.array([0.0, 1.0, 2.0]))
    assert rb.write(np.arange(3.0, 8.0)) == 3
    r = rb.read(4)
    assert (r.first_index, r.values.tolist(), r.overrun) == (4, [4.0, 5.0, 6.0, 7.0], 0)
    rb.write(np.array([8.0]))  # and the ring goes on from there
    assert rb.read(0).values.tolist() == [5.0, 6.0, 7.0, 8.0]


def test_an_empty_read_still_says_where_it_starts_and_what_was_lost():
    rb = RingBuffer(4)
    rb.write(np.arange(10.0))  # 6…9 held
    r = rb.read(0, 3)  # all of it overwritten long ago
    assert (r.first_index, r.values.tolist(), r.overrun, r.next_index) == (6, [], 3, 6)
    r = rb.read(12)  # beyond what was written
    assert (r.first_index, r.values.tolist(), r.overrun) == (12, [], 0)


def test_latest_reports_where_its_samples_start_and_no_overrun():
    rb = RingBuffer(4)
    rb.write(np.arange(6.0))
    r = rb.latest(3)
    assert (r.first_index, r.values.tolist(), r.overrun) == (3, [3.0, 4.0, 5.0], 0)
    assert type(r.overrun) is int
    r = rb.latest(0)
    assert (r.first_index, r.values.tolist(), r.overrun) == (6, [], 0)
