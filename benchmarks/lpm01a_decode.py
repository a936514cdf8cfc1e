"""LPM01A decode throughput and a real-time capture through the virtual bench.

1. ``bin_hexa`` decode: our incremental vectorised decoder vs a straightforward per-sample Python
   decoder (the peer), both on the same synthetic stream (timestamp frame every 1000 samples, fed in
   64 KiB reads).  Goal: >= 10 M samples/s on one core (100x the shield's 100 kS/s maximum).
2. ``ascii_dec`` decode: ours vs a per-line Python/regex decoder.  Goal: >= 1 M lines/s.
3. A ``--capture-s`` (default 60 s) capture at 100 kS/s bin_hexa from ``odlstudio bench`` running in
   another process: samples, lost samples (goal 0) and this process's CPU share.

Usage: ``.venv/bin/python benchmarks/lpm01a_decode.py [--samples 5000000] [--capture-s 60]``
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device.lpm01a.decode import AsciiDecoder, BinaryDecoder  # noqa: E402

CHUNK = 65536


def make_binary(n: int, rate: int = 100_000) -> bytes:
    rng = np.random.default_rng(1)
    w = (rng.integers(3, 11, n).astype(np.uint16) << 12) | rng.integers(256, 4096, n).astype(np.uint16)
    wb = w.astype(">u2").tobytes()
    parts = []
    for i in range(0, n, 1000):
        ms = i * 1000 // rate
        parts.append(b"\xf0\xf3" + ms.to_bytes(4, "big") + b"\x02\xff\xff")
        parts.append(wb[2 * i : 2 * i + 2000])
    return b"".join(parts)


def make_ascii(n: int, rate: int = 1000) -> bytes:
    rng = np.random.default_rng(2)
    mant = rng.integers(1000, 10000, n)
    exp = rng.integers(5, 10, n)
    lines = [f"{m:04d}-{e:02d}" for m, e in zip(mant.tolist(), exp.tolist())]
    parts = []
    for i in range(0, n, 1000):
        ms = i * 1000 // rate
        parts.append(f"\r\nTimeStamp: {ms // 1000:03d}s {ms % 1000:03d}ms, buff 02%\r\n")
        parts.append("\r\n".join(lines[i : i + 1000]) + "\r\n")
    return "".join(parts).encode()


def time_ours(dec, data: bytes) -> tuple[float, int]:
    t = time.perf_counter()
    n = 0
    for i in range(0, len(data), CHUNK):
        n += len(dec.feed(data[i : i + CHUNK]).values)
    return time.perf_counter() - t, n


def peer_binary(data: bytes) -> list[float]:
    """Straightforward per-sample decoder: walk 2 bytes at a time, skip F0 frames by tag length."""
    out: list[float] = []
    lengths = {0xF3: 9, 0xF4: 4, 0xF5: 4, 0xF6: 4, 0xF7: 6, 0xF8: 6, 0xF9: 5}
    i, n = 0, len(data)
    while i + 1 < n:
        hi = data[i]
        if hi == 0xF0:
            i += lengths.get(data[i + 1], 2)
            continue
        word = (hi << 8) | data[i + 1]
        out.append((word & 0x0FFF) / 16.0 ** (word >> 12))
        i += 2
    return out


_LINE = re.compile(r"^(\d{4})([-+])(\d{2})$")


def peer_ascii(data: bytes) -> list[float]:
    """Straightforward per-line decoder (what most open-source clients do)."""
    out: list[float] = []
    for raw in data.decode("ascii").split("\n"):
        m = _LINE.match(raw.strip())
        if m:
            e = int(m.group(3))
            out.append(int(m.group(1)) * 10.0 ** (-e if m.group(2) == "-" else e))
    return out


def _rates(make_decoder, data: bytes, n_expected: int, peer, peer_fraction: int) -> tuple[float, float]:
    """(ours, peer) in millions of samples per second: ours is the best of 3 runs over all of ``data``,
    the per-sample Python peer runs once over the first 1/``peer_fraction`` of it."""
    best = min(time_ours(make_decoder(), data)[0] for _ in range(3))
    _, n = time_ours(make_decoder(), data)
    assert n == n_expected
    sub = data[: len(data) // peer_fraction]
    t = time.perf_counter()
    pn = len(peer(sub))
    return n_expected / best / 1e6, pn / (time.perf_counter() - t) / 1e6


def bench_decode(n_bin: int, n_ascii: int) -> dict:
    res = {}
    res["bin_ours_msps"], res["bin_peer_msps"] = _rates(
        lambda: BinaryDecoder(100_000), make_binary(n_bin), n_bin, peer_binary, 10
    )
    res["ascii_ours_mlps"], res["ascii_peer_mlps"] = _rates(
        lambda: AsciiDecoder(1000), make_ascii(n_ascii), n_ascii, peer_ascii, 4
    )
    return res


def bench_capture(seconds: float) -> dict:
    from device.lpm01a.capture import Capture, RunningStats
    from device.lpm01a.driver import PowerShield

    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "bench", "--json"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        url = json.loads(proc.stdout.readline())["powershield"]
        with PowerShield(url) as ps:
            ps.configure(freq=100_000, fmt="bin_hexa", acqtime=seconds if seconds <= 100 else 0)
            cap = Capture(ps, 100_000, "bin_hexa", max_samples=int(seconds * 100_000))
            sub = cap.subscribe()
            stats = RunningStats()
            w0, c0 = time.monotonic(), time.process_time()
            cap.start()
            for block in sub:
                stats.update(block)
            wall, cpu = time.monotonic() - w0, time.process_time() - c0
            return {
                "samples": stats.samples,
                "lost": stats.lost,
                "error": str(cap.error) if cap.error else None,
                "wall_s": wall,
                "cpu_s": cpu,
                "cpu_share_pct": 100 * cpu / wall,
                "buffer_max_pct": cap.decoder.buffer_pct_max,
            }
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=5_000_000, help="binary samples to decode (default 5 M)")
    ap.add_argument("--lines", type=int, default=2_000_000, help="ASCII lines to decode (default 2 M)")
    ap.add_argument("--capture-s", type=float, default=60.0, help="bench capture length, 0 = skip (default 60)")
    args = ap.parse_args()
    r = bench_decode(args.samples, args.lines)
    print(
        f"bin_hexa decode : ours {r['bin_ours_msps']:7.1f} M samples/s | per-sample Python peer {r['bin_peer_msps']:6.2f} M samples/s | "
        f"ratio {r['bin_ours_msps'] / r['bin_peer_msps']:6.0f}x | goal >= 10 M/s: {'PASS' if r['bin_ours_msps'] >= 10 else 'FAIL'} "
        f"({r['bin_ours_msps'] / 0.1:.0f}x the shield's 100 kS/s)"
    )
    print(
        f"ascii_dec decode: ours {r['ascii_ours_mlps']:7.1f} M lines/s   | per-line regex peer   {r['ascii_peer_mlps']:6.2f} M lines/s   | "
        f"ratio {r['ascii_ours_mlps'] / r['ascii_peer_mlps']:6.0f}x | goal >= 1 M/s: {'PASS' if r['ascii_ours_mlps'] >= 1 else 'FAIL'}"
    )
    if args.capture_s > 0:
        c = bench_capture(args.capture_s)
        ok = c["lost"] == 0 and c["samples"] == int(args.capture_s * 100_000) and c["error"] is None
        print(
            f"capture {args.capture_s:g} s @ 100 kS/s bin_hexa via odlstudio bench: {c['samples']} samples, {c['lost']} lost, "
            f"error {c['error']}, wall {c['wall_s']:.2f} s, CPU {c['cpu_s']:.2f} s = {c['cpu_share_pct']:.1f} % of one core, "
            f"max shield buffer {c['buffer_max_pct']} % -> {'PASS' if ok else 'FAIL'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
