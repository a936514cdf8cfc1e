"""Recordings beside the database: accel raw files, power HDF5, reopen with exact statistics, recovery."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from app.core.recording import (
    RecordingError,
    StreamRecorder,
    accel_partial_bytes,
    csv_export,
    load_accel,
    open_power,
    recover,
    write_accel,
)
from app.core.store import Store
from app.core.streams import SampleStream


def test_accel_fixed_length_segment(tmp_path):
    store = Store(tmp_path)
    s = SampleStream("accel", 52.0, 3, recent_s=600, history_s=600, base=16, factor=8)
    s.append(np.zeros((100, 3)))  # before the recording: not recorded
    done = []
    rec = StreamRecorder(store, s, "accel", "walk", limit_s=2.0, on_finished=done.append)
    x = np.arange(300 * 3, dtype=np.float32).reshape(300, 3)
    for k in range(0, 300, 26):
        s.append(x[k : k + 26])
    assert rec.wait(5.0)
    row = rec.stop()
    assert row.status == "complete" and row.n_samples == 104 and row.t_offset == pytest.approx(100 / 52)
    np.testing.assert_array_equal(load_accel(store, row), x[:104])
    assert done and done[0].id == row.id
    store.close()


def test_power_record_reopen_exact_stats(tmp_path):
    store = Store(tmp_path)
    s = SampleStream("current", 10_000.0, 1, recent_s=1.0, history_s=100)
    rec = StreamRecorder(store, s, "power", "run", voltage=3.3)
    rng = np.random.default_rng(0)
    x = rng.normal(1e-3, 1e-4, 50_000).astype(np.float32)
    for k in range(0, len(x), 1000):
        s.append(x[k : k + 1000])
    s.append_gap(5000)
    s.append(x[:1000])
    row = rec.stop()
    assert row.n_samples == 56_000 and rec.dropped == 0
    replay = open_power(store, row, recent_s=0.5)
    assert replay.duration == pytest.approx(5.6) and replay.gaps == [(5.0, 5.5)]
    st = replay.stats(0.25, 3.75)  # long outside the 0.5 s ring: read from the file, exact
    ref = x[2500:37500].astype(np.float64)
    assert st.exact and st.n == len(ref) and st.avg == pytest.approx(ref.mean(), rel=1e-9)
    assert st.integral * replay.voltage == pytest.approx(ref.sum() / 1e4 * 3.3, rel=1e-9)
    t, y = replay.samples(1.0, 1.001)
    np.testing.assert_array_equal(y[:, 0], x[10_000:10_010])
    store.close()


def test_recover_after_crash(tmp_path):
    store = Store(tmp_path)
    s = SampleStream("accel", 20.0, 3)
    rec = StreamRecorder(store, s, "accel", "crashy")
    s.append(np.ones((40, 3)))
    for _ in range(50):
        if rec.n_written == 40:
            break
        import time

        time.sleep(0.05)
    # simulate a crash: the writer thread dies with the process; the row still says 'recording'
    rec._stopping = True  # noqa: SLF001
    store.close()
    store2 = Store(tmp_path)
    fixed = recover(store2)
    assert [(r.id, r.n_samples, r.status) for r in fixed] == [(rec.rec.id, 40, "recovered")]
    store2.close()


def test_write_accel_and_csv_cap(tmp_path):
    store = Store(tmp_path)
    row = write_accel(store, "imp", np.ones((10, 3)), 20.0, None)
    assert load_accel(store, row).shape == (10, 3)
    with pytest.raises(RecordingError, match="exceed the CSV cap"):
        csv_export(tmp_path / "x.csv", np.arange(11.0), np.arange(11.0), "t,y", max_rows=10)
    assert csv_export(tmp_path / "x.csv", np.arange(3.0), np.arange(3.0), "t,y") == 3
    assert (tmp_path / "x.csv").read_text().splitlines()[0] == "t,y"
    store.close()


def test_csv_export_on_a_full_disk_keeps_the_older_file(tmp_path):
    """The power panel's CSV export: a disk that fills half way leaves the file of that name as it was."""
    from tests.diskkit import python_limited

    p = tmp_path / "power.csv"
    p.write_text("an older export\n")
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from app.core.recording import csv_export\n"
        "try:\n"
        "    csv_export(sys.argv[1], np.arange(5000.0), np.ones(5000), 'time_s,current_A')\n"
        "except OSError as e:\n"
        "    print('refused', e.errno)\n"
    )
    r = python_limited(code, 20_000, str(p))
    assert r.stdout.startswith("refused 27"), r.stdout + r.stderr
    assert p.read_text() == "an older export\n" and [x.name for x in tmp_path.iterdir()] == ["power.csv"]


def test_dropped_blocks_become_nan_so_later_samples_keep_their_time(tmp_path):
    """A full queue drops blocks (a slow disk); the dropped range is written as NaN — also when the drop is
    the last thing before stop() — so every later sample stays at its own position, and it is a gap."""
    import threading

    store = Store(tmp_path)
    rate = 1000.0
    s = SampleStream("current", rate, 1, recent_s=10.0, history_s=100)
    s.append(np.zeros(50, np.float32))  # before the recording
    rec = StreamRecorder(store, s, "power", "slow disk", queue_blocks=2)
    gate, entered = threading.Event(), threading.Event()
    gate.set()
    write = rec._write  # noqa: SLF001

    def slow_write(items):  # the writer thread stuck on the disk while ``gate`` is clear
        entered.set()
        assert gate.wait(10.0)
        write(items)

    rec._write = slow_write  # noqa: SLF001
    x = np.arange(1, 1001, dtype=np.float32)  # sample k of the recording has value k + 1
    blocks = [x[k : k + 100] for k in range(0, 1000, 100)]

    def hold_and_fill(i: int) -> None:
        """Stick the writer on block i, queue i+1 and i+2, drop i+3."""
        gate.clear()
        entered.clear()
        s.append(blocks[i])
        assert entered.wait(5.0)
        for b in blocks[i + 1 : i + 4]:
            s.append(b)

    def drain(n: int) -> None:
        gate.set()
        for _ in range(200):
            if rec.n_written >= n:
                return
            time.sleep(0.01)
        raise AssertionError(f"writer did not catch up: {rec.n_written} < {n}")

    hold_and_fill(0)  # blocks 0, 1, 2 written; 3 dropped
    assert rec.dropped == 100
    drain(300)
    s.append(blocks[4])  # after the drop: must land at positions 400..499
    drain(500)
    hold_and_fill(5)  # 5, 6, 7 written; 8 dropped, and nothing after it: the tail
    gate.set()
    row = rec.stop()
    assert rec.dropped == 200 and row.n_samples == 900
    replay = open_power(store, row, recent_s=0.1)
    t, y = replay.samples(0.0, replay.duration)
    expect = x[:900].copy()
    expect[300:400] = np.nan
    expect[800:900] = np.nan
    np.testing.assert_array_equal(y[:, 0], expect)  # positions are sample numbers: values = index + 1
    assert replay.gaps == [(pytest.approx(0.3), pytest.approx(0.4)), (pytest.approx(0.8), pytest.approx(0.9))]
    assert row.meta["dropped"] == 200 and row.t_offset == pytest.approx(0.05)
    st = replay.stats(0.45, 0.5)  # exact statistics after the drop: the samples of 0.45…0.5 s
    assert st.n == 50 and st.avg == pytest.approx(x[450:500].mean())
    store.close()


def test_accel_drop_keeps_positions_and_fixed_length(tmp_path):
    """Same for an accel segment of fixed length: dropped rows are NaN and count towards the length."""
    import threading

    store = Store(tmp_path)
    s = SampleStream("accel", 100.0, 3, recent_s=60, history_s=60)
    rec = StreamRecorder(store, s, "accel", "seg", limit_s=1.0, queue_blocks=1)
    gate, entered = threading.Event(), threading.Event()
    write = rec._write  # noqa: SLF001

    def slow_write(items):
        entered.set()
        assert gate.wait(10.0)
        write(items)

    rec._write = slow_write  # noqa: SLF001
    x = np.arange(300, dtype=np.float32).reshape(100, 3)
    s.append(x[:20])
    assert entered.wait(5.0)  # the writer is stuck on rows 0..19
    s.append(x[20:40])  # queued
    s.append(x[40:60])  # queue full: dropped
    assert rec.dropped == 20
    gate.set()

    def written(n: int) -> None:  # the writer empties the one-block queue
        for _ in range(500):
            if rec.n_written == n:
                return
            time.sleep(0.01)

    written(40)
    s.append(x[60:80])  # lands at rows 60..79, after 20 NaN rows
    written(80)
    s.append(x[80:100])
    assert rec.wait(5.0)  # the limit (1 s = 100 rows, the dropped ones included) ended it
    row = rec.stop()
    assert row.n_samples == 100
    data = np.asarray(load_accel(store, row))
    np.testing.assert_array_equal(data[:40], x[:40])
    assert np.isnan(data[40:60]).all()
    np.testing.assert_array_equal(data[60:], x[60:])
    store.close()


def test_power_recording_keeps_stream_events(tmp_path):
    """The shield's D7 edges stream into the recording's ``events`` dataset (only those inside it) and come
    back on reopen on the recording's own timeline, so the energy between edges can be measured again."""
    from app.core.recording import read_power_events

    store = Store(tmp_path)
    rate, volt = 1000.0, 3.3
    s = SampleStream("current", rate, 1, recent_s=10.0, history_s=100)
    events: list[tuple[float, str, str]] = []  # what DeviceManager.power_events is: appended by the pump
    s.append(np.full(500, 1e-3, np.float32))
    events.append((0.2, "event", "ris"))  # before the recording: not kept
    rec = StreamRecorder(store, s, "power", "round", voltage=volt, events=events)
    rng = np.random.default_rng(1)
    x = rng.uniform(1e-3, 5e-3, 3000).astype(np.float32)
    edges = [0.75, 1.25, 2.0, 2.6, 3.1]  # stream times; the recording starts at 0.5 s
    for k in range(0, 3000, 100):
        s.append(x[k : k + 100])
        t_end = s.duration
        for t in edges:  # like the pump: an edge after the samples before it
            if t_end - 0.1 < t <= t_end:
                events.append((t, "event", "ris"))
        if k == 1500:
            events.append((s.duration, "info", "buffer 10%"))
        time.sleep(0.002)
    time.sleep(0.3)  # the writer takes events every 0.1 s
    row = rec.stop()
    events.append((3.6, "event", "ris"))  # after the stop: not in the file
    assert rec.n_events == 6 and row.meta["events"] == 6 and row.t_offset == pytest.approx(0.5)
    replay = open_power(store, row, recent_s=0.2)
    d7 = [t for t, kind, _ in replay.events if kind == "event"]
    np.testing.assert_allclose(d7, np.array(edges) - 0.5, atol=1e-12)
    assert ("info", "buffer 10%") in [(k, txt) for _, k, txt in replay.events]
    assert read_power_events(store.resolve(row.path)) == replay.events
    for a, b in zip(d7[:-1], d7[1:]):  # energy between consecutive edges, exact, from the file
        st = replay.stats(a, b)
        ref = x[int(round(a * rate)) : int(round(b * rate))].astype(np.float64)
        assert st.exact and st.n == len(ref)
        assert st.integral * replay.voltage == pytest.approx(ref.sum() / rate * volt, rel=1e-6)
    store.close()


def test_cli_capture_events_and_old_recordings(tmp_path):
    """``odlstudio power --out`` captures keep their /events: they open with their D7 edges (at index / rate,
    the capture's own sample numbering); an app recording without an events dataset opens with none."""
    import h5py

    from app.core.recording import register_power_file
    from device.lpm01a.capture import Block
    from device.lpm01a.decode import StreamEvent
    from device.lpm01a.recorder import Hdf5Writer

    store = Store(tmp_path / "data")
    path = tmp_path / "cap.h5"
    with Hdf5Writer(path, 1000.0, "current", voltage_v=3.3) as w:
        for k in range(0, 2000, 250):
            evs = [StreamEvent("event", i, "ris") for i in (300, 900, 1700) if k <= i < k + 250]
            w.write(Block(k, np.full(250, 2e-3), 1000.0, events=evs))
    rec = register_power_file(store, path)
    replay = open_power(store, rec)
    assert [(round(t, 9), kind) for t, kind, _ in replay.events] == [(0.3, "event"), (0.9, "event"), (1.7, "event")]
    st = replay.stats(0.3, 0.9)
    assert st.n == 600 and st.integral * replay.voltage == pytest.approx(600 * 2e-3 / 1000 * 3.3, rel=1e-6)
    # an app recording from before events were kept: no events dataset, no error
    s = SampleStream("current", 1000.0, 1, recent_s=1.0, history_s=10)
    r = StreamRecorder(store, s, "power", "old")
    s.append(np.ones(100, np.float32))
    row = r.stop()
    with h5py.File(store.resolve(row.path), "a") as f:
        del f["events"]
    old = open_power(store, row)
    assert old.events == [] and old.events_error == "" and old.n_total == 100
    store.close()


def test_reopened_capture_statistics_read_from_the_file_match_brute_force(tmp_path):
    """A 45-s capture at 100 kS/s reopened with a 1-s ring: a selection older than the ring is read from the file
    in chunks of 2**22 samples (bounded memory), and every figure of the readout — range, n, mean, std, min, max,
    exactness — is that of all its samples, whatever chunk they are in; a lost stretch counts as no data."""
    from app.core.recording import register_power_file
    from device.lpm01a.capture import Block
    from device.lpm01a.recorder import Hdf5Writer

    rate, n = 100_000.0, 4_500_000
    x = np.random.default_rng(5).uniform(0.5e-3, 1.5e-3, n)
    x[100] = 1e-5  # the minimum, in the first chunk
    x[4_400_000] = 9e-3  # the maximum, in the second
    x[1_000_000:1_200_000] = np.nan  # 10..12 s lost
    path = tmp_path / "long.h5"
    with Hdf5Writer(path, rate, "current", voltage_v=3.3) as w:
        for k in range(0, n, 500_000):
            w.write(Block(k, x[k : k + 500_000], rate))
    store = Store(tmp_path / "data")
    try:
        replay = open_power(store, register_power_file(store, path), recent_s=1.0)
        ref = x.astype(np.float32).astype(np.float64)  # what the file holds
        for t0, t1 in [(0.0, 45.0), (45.0, 0.0), (3.00001, 43.99999)]:
            st = replay.stats(t0, t1)
            a, b = int(round(min(t0, t1) * rate)), int(round(max(t0, t1) * rate))
            y = ref[a:b][~np.isnan(ref[a:b])]
            assert st.exact and (st.t0, st.t1) == pytest.approx((a / rate, b / rate), abs=1e-12) and st.n == len(y)
            assert st.avg == pytest.approx(y.mean(), rel=1e-9) and st.std == pytest.approx(y.std(), rel=1e-6)
            assert (st.min, st.max) == (y.min(), y.max())
            assert st.integral * replay.voltage == pytest.approx(y.sum() / rate * 3.3, rel=1e-9)
        lost = replay.stats(10.5, 11.5)  # only lost samples, read from the file: no figures, the range kept
        assert lost.exact and lost.n == 0 and (lost.t0, lost.t1) == pytest.approx((10.5, 11.5), abs=1e-12)
        assert all(np.isnan(v) for v in (lost.avg, lost.std, lost.min, lost.max)) and lost.rate_hz == rate
    finally:
        store.close()


# --- HDF5 recorder: a consumer that fell behind must not shift the timeline --------------------------
def test_hdf5_writer_keeps_position_equal_to_sample_number_across_an_overrun(tmp_path: Path) -> None:
    from device.lpm01a.capture import Block
    from device.lpm01a.recorder import Hdf5Writer, read_capture

    path = tmp_path / "gap.h5"
    w = Hdf5Writer(path, 1000.0)
    w.write(Block(0, np.full(100, 1.0), 1000.0))
    # the ring buffer lapped this consumer: samples 100..149 were overwritten before it read them
    w.write(Block(150, np.full(50, 2.0), 1000.0, overrun=50))
    w.close()
    cap = read_capture(path)
    s = cap["samples"]
    assert len(s) == 200
    assert np.all(s[:100] == 1.0) and np.all(np.isnan(s[100:150])) and np.all(s[150:] == 2.0)
    assert cap["status"]["next_index"] == 200 and cap["status"]["received"] == 150 and cap["status"]["lost"] == 50


def test_recover_leaves_a_power_file_cut_short_as_it_is(tmp_path):
    """A power recording cut short (a copy that stopped, a damaged disk) was grown back with zeros at the next
    start, and its missing half then read as 0 A; it is now left byte for byte, and the row kept."""
    import os
    import shutil

    from device.lpm01a.recorder import write_flags

    store = Store(tmp_path)
    s = SampleStream("current", 10_000.0, 1, recent_s=1.0, history_s=100)
    rec = StreamRecorder(store, s, "power", "run", voltage=3.3)
    for _ in range(40):
        s.append(np.full(1000, 2e-4, np.float32))
    live = rec.path
    for _ in range(100):  # until a flush has put the samples on disk
        if rec.n_written == 40_000:
            break
        time.sleep(0.05)
    time.sleep(0.6)
    shutil.copyfile(live, tmp_path / "killed.h5")  # what a crash leaves: the writer's flags still set
    row = rec.stop()
    path = store.resolve(row.path)
    shutil.copyfile(tmp_path / "killed.h5", path)
    assert write_flags(path)
    os.truncate(path, path.stat().st_size // 2)
    before = path.read_bytes()
    store.update_recording(row.id, status="recording")  # as a crash leaves it
    store.close()
    store = Store(tmp_path)  # the next start
    fixed = recover(store)
    assert [(r.id, r.status) for r in fixed] == [(row.id, "recovered")]
    assert path.read_bytes() == before
    store.close()


def test_an_accel_file_cut_in_a_sample_gives_its_whole_samples_and_counts_the_rest(tmp_path):
    """A file whose length is not a whole number of 12-byte samples: the whole samples are read and the bytes
    of the partial last one are counted, so that the app can say so (it showed the samples with no word)."""
    store = Store(tmp_path)
    x = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    rec = write_accel(store, "cut", x, 52.0, None)
    assert accel_partial_bytes(store, rec) == 0
    path = store.resolve(rec.path)
    path.write_bytes(path.read_bytes()[:-5])  # cut 5 bytes into the last sample: 7 of its 12 are left
    np.testing.assert_array_equal(load_accel(store, rec), x[:9])
    assert accel_partial_bytes(store, rec) == 7
    path.unlink()
    assert accel_partial_bytes(store, rec) == 0  # missing: load_accel says so
    store.close()
