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
