"""WISDM text parsing speed: app.core.datasets' vectorised parser vs a straightforward per-line Python
parser (the peer), on the real WISDM-2019 phone files in ../shared/data, same run, same machine.

    .venv/bin/python benchmarks/wisdm_parse.py [--files N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.datasets import parse_wisdm_bytes  # noqa: E402

SHARED = Path(os.environ.get("ODL_SHARED", ROOT.parent / "shared"))


def per_line(data: bytes) -> np.ndarray:
    """The same fields as ours (subject, label, timestamp, x, y, z) with a line number, per line."""
    subj, labels, ts, rows, lines = [], [], [], [], []
    for no, line in enumerate(data.decode("latin-1").splitlines(), 1):
        for rec in line.split(";"):
            parts = rec.strip().split(",")
            if len(parts) != 6:
                continue
            try:
                s, t, xyz = int(parts[0]), int(parts[2]), (float(parts[3]), float(parts[4]), float(parts[5]))
            except ValueError:
                continue
            subj.append(s)
            labels.append(parts[1].strip())
            ts.append(t)
            rows.append(xyz)
            lines.append(no)
    return np.array(rows)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=16)
    args = ap.parse_args()
    files = sorted((SHARED / "data/wisdm2019_phone_accel/raw/phone/accel").glob("data_*_accel_phone.txt"))[: args.files]
    if not files:
        print(f"no WISDM-2019 files under {SHARED}", file=sys.stderr)
        return 2
    blobs = [f.read_bytes() for f in files]
    mb = sum(len(b) for b in blobs) / 1e6
    t = time.perf_counter()
    ours = [parse_wisdm_bytes(b, "bench")[0] for b in blobs]
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    peer = [per_line(b) for b in blobs]
    t_peer = time.perf_counter() - t
    n = sum(len(p.ts) for p in ours)
    assert n == sum(len(p) for p in peer)
    assert all(np.allclose(a.xyz, b) for a, b in zip(ours, peer))
    print(f"{len(files)} files, {mb:.1f} MB, {n} records")
    print(f"vectorised parser : {t_ours:6.2f} s  ({n / t_ours / 1e6:.2f} M records/s)")
    print(f"per-line peer     : {t_peer:6.2f} s  ({n / t_peer / 1e6:.2f} M records/s)")
    print(f"ratio peer/ours   : {t_peer / t_ours:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
