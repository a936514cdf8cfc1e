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
