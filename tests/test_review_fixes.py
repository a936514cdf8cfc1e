"""Regression tests for defects found in the independent review (each test failed before its fix)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.cli import main

pytestmark = pytest.mark.timeout(120)


# --- make-assets: an unwritable --out is a clear message, not a traceback ----------------------------
def test_make_assets_unwritable_out_is_a_clear_error(shared_dir: Path, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["make-assets", "--shared", str(shared_dir), "--out", str(blocker / "assets"), "--skip-models"])
    err = capsys.readouterr().err
    assert code == 2
    assert "odlstudio make-assets:" in err and "Traceback" not in err


@pytest.mark.parametrize("args,msg", [(["--sample-seconds", "0"], "--sample-seconds"), (["--epochs", "0"], "--epochs")])
def test_make_assets_rejects_nonsense_numbers(tmp_path: Path, capsys, args: list[str], msg: str) -> None:
    code = main(["make-assets", "--out", str(tmp_path / "a"), "--skip-models", *args])
    err = capsys.readouterr().err
    assert code == 2 and msg in err
    assert not (tmp_path / "a").exists()  # nothing written for a refused command


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


# --- power CLI: a port that cannot be opened is "no device" (exit 2, documented), no fake summary ----
def test_power_unopenable_port_exits_2_without_a_summary(capsys) -> None:
    code = main(["power", "--port", "socket://127.0.0.1:1", "--duration", "1", "--quiet"])
    out = capsys.readouterr()
    assert code == 2
    assert "cannot open PowerShield port" in out.err
    assert "samples" not in out.out  # no "0 samples ... energy 0.0000 mJ" line for a capture that never ran


def test_power_unopenable_port_json(capsys) -> None:
    code = main(["power", "--port", "socket://127.0.0.1:1", "--duration", "1", "--quiet", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert code == 2 and "cannot open PowerShield port" in res["error"]


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


# --- bin_hexa: a dropped byte must not turn into amperes of garbage ----------------------------------
def _bin_stream(values: np.ndarray, drop_at: int | None) -> bytes:
    from device.lpm01a import spec
    from device.lpm01a.emulator import _bin_timestamp, bin_frame_text, encode_bin_words

    w = encode_bin_words(values).astype(">u2").tobytes()
    parts = [b"\r\nPowerShield > ack start\r\n\r\n", _bin_timestamp(0, 0)]
    for k in range(0, len(values), 1000):
        if k:
            parts.append(_bin_timestamp(k, 0))  # 1 kHz: k samples = k ms
        parts.append(w[2 * k : 2 * (k + 1000)])
    parts += [
        b"\xf0\xf4\xff\xff",
        bin_frame_text(0xF2, "summary beg\r\n1000-06\r\n1100-06\r\nsummary end"),
        b"\r\n" + spec.PROMPT_B + b"Acquisition completed\r\n",
    ]
    s = b"".join(parts)
    return s if drop_at is None else s[:drop_at] + s[drop_at + 1 :]


def test_binary_decoder_never_reports_garbage_amperes_after_a_dropped_byte() -> None:
    from device.lpm01a.decode import BinaryDecoder

    vals = 1e-3 * (1.0 + 0.1 * np.sin(np.arange(3000) / 7.0))
    for drop in range(1040, 1240, 7):  # a byte lost somewhere in the first 1000-sample run
        d = BinaryDecoder(1000)
        v = d.feed(_bin_stream(vals, drop)).values
        good = v[~np.isnan(v)]
        assert len(v) == 3000 and d.done
        assert good.max() < 1.0, f"drop at byte {drop}: decoded {good.max():g} A from a 1.1 mA signal"
        assert d.lost > 0 and d.corrupt_bytes > 0


# --- Capture: samples lost after the last timestamp of a finite acquisition are accounted -------------
class _ReplayPort:
    """A serial port that answers ``start`` with a recorded byte stream (here: a bin_hexa stream that
    lost bytes after its last timestamp, which the emulator cannot be made to do deterministically)."""

    def __init__(self, stream: bytes) -> None:
        self.stream, self.rx, self.timeout = stream, bytearray(), 0.02

    @property
    def in_waiting(self) -> int:
        return len(self.rx)

    def read(self, n: int = 1) -> bytes:
        if not self.rx:
            import time

            time.sleep(self.timeout)
        out = bytes(self.rx[:n])
        del self.rx[:n]
        return out

    def write(self, data: bytes) -> int:
        line = data.decode().strip()
        self.rx += self.stream if line == "start" else f"\r\nPowerShield > ack {line}\r\n\r\n".encode()
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize("drop", [None, 2 * 1000 + 9 * 2 + 29 + 601, 2 * 1400 + 9 * 2 + 29 + 4])
def test_capture_accounts_samples_lost_in_the_tail_of_a_finite_acquisition(drop: int | None) -> None:
    from device.lpm01a.capture import Capture, RunningStats
    from device.lpm01a.driver import PowerShield

    vals = 1e-3 * (1.0 + 0.1 * np.sin(np.arange(1500) / 7.0))
    stream = _bin_stream(vals, drop)
    ps = PowerShield("replay://", serial_factory=lambda url, **kw: _ReplayPort(stream))
    ps.settings.update(freq=1000, format="bin_hexa", acqtime=1.5, trigsrc="sw", acqmode="dyn")
    ps.state = "host"
    cap = Capture(ps, 1000, "bin_hexa")
    sub = cap.subscribe()
    cap.start()
    stats = RunningStats()
    for block in sub:
        stats.update(block)
    assert cap.wait(5) and cap.error is None and cap.ended_by == "completed"
    assert stats.samples + stats.lost == 1500  # acqtime x rate, every sample accounted
    assert stats.lost == cap.lost and (stats.lost > 0) == (drop is not None)
    assert np.nanmax(np.r_[vals]) >= stats.max  # and no garbage among the received ones
