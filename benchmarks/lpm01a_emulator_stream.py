"""CPU cost of the emulated LPM01A streaming 100 kHz bin_hexa through the virtual bench.

Streams ``--seconds`` of 100 kS/s through a real loopback socket to a raw pyserial reader, checks that no
sample was lost, and prints the CPU share of the PowerShield endpoint thread (emulator + transport).
Peer measured in the same run: encoding the same samples with the scalar codec of ``spec`` (what a
per-sample implementation would cost), as a ratio against the vectorised encoder.

    .venv/bin/python benchmarks/lpm01a_emulator_stream.py --seconds 10
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import serial  # noqa: E402

from device.bench import VirtualBench  # noqa: E402
from device.lpm01a import spec  # noqa: E402
from device.lpm01a.emulator import encode_bin_words  # noqa: E402


def count_samples(body: bytes) -> int:
    a = np.frombuffer(body, dtype=np.uint8)
    i = n = 0
    fixed = {0xF3: 9, 0xF4: 4, 0xF5: 4, 0xF6: 4, 0xF7: 6, 0xF8: 6, 0xF9: 5}
    while i < len(a):
        if a[i] == 0x0D:
            break
        hi = np.flatnonzero(a[i::2] >= 0xF0)
        if len(hi) == 0:
            return n + (len(a) - i) // 2
        j = i + 2 * int(hi[0])
        n += (j - i) // 2
        ln = fixed.get(int(a[j + 1])) or (body.index(b"\xff\xff", j + 2) + 2 - j)
        i = j + ln
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument(
        "--board", action="store_true", help="measure the NUCLEO emulator's current (default: L496 profile)"
    )
    args = ap.parse_args()
    with VirtualBench(seed=0, board=args.board) as bench:
        ep = bench.endpoints["powershield"]
        with serial.serial_for_url(bench.urls["powershield"], timeout=0.02) as port:
            for line in ("htc", "format bin_hexa", "freq 100k", f"acqtime {args.seconds}", "trigdelay 0"):
                port.write(line.encode() + b"\n")
                time.sleep(0.05)
            port.reset_input_buffer()
            cpu0, wall0, proc0 = ep.stats.cpu_s, time.monotonic(), time.process_time()
            port.write(b"start\n")
            buf = bytearray()
            deadline = wall0 + args.seconds + 30
            while b"Acquisition completed" not in buf[-64:] and time.monotonic() < deadline:
                buf += port.read(65536)
            wall = time.monotonic() - wall0
            cpu = ep.stats.cpu_s - cpu0
            proc = time.process_time() - proc0
    body = bytes(buf).split(b"ack start\r\n\r\n", 1)[1]
    n = count_samples(body)
    expected = args.seconds * 100_000
    print(f"samples received {n} / expected {expected}  lost {expected - n}")
    print(f"bytes {len(buf)}  wall {wall:.2f} s  throughput {len(buf) / wall / 1e3:.1f} kB/s")
    print(
        f"PowerShield endpoint thread CPU {cpu:.2f} s = {100 * cpu / wall:.1f} % of one core "
        f"(whole process incl. the reader {100 * proc / wall:.1f} %)"
    )
    # peer: scalar vs vectorised encoding of 1 s of samples
    vals = 1e-3 * (1 + 0.005 * np.random.default_rng(0).standard_normal(100_000))
    t = time.perf_counter()
    encode_bin_words(vals).astype(">u2").tobytes()
    t_vec = time.perf_counter() - t
    t = time.perf_counter()
    b"".join(spec.bin_word(float(v)).to_bytes(2, "big") for v in vals)
    t_scalar = time.perf_counter() - t
    print(
        f"encoding 1 s of 100 kHz: vectorised {1e3 * t_vec:.1f} ms, scalar spec.bin_word {1e3 * t_scalar:.1f} ms "
        f"(ratio scalar/vectorised {t_scalar / t_vec:.0f}x)"
    )
    return 0 if n == expected else 1


if __name__ == "__main__":
    sys.exit(main())
