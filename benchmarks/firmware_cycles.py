"""The ODL firmware's cost per training batch under the modelled Cortex-M4, against the paper's Table III.

For the paper CNN at T = 20, 40, 60, 80, 100, TL and Full, one batch of 32 windows: the firmware
(build/qemu-mps2-an386/odl.elf) runs one round on the QEMU board of the virtual bench, and the cycle
plugin (firmware/tools/qemu-cycles) counts instructions and modelled cycles (per instruction class and
per kernel).  It prints, per cell:

* instructions and modelled cycles of the batch (the BATCH_REPORT's cycle count, measured by the
  firmware itself), next to the paper's cycles (Table III time x 8 MHz, the clock its power implies,
  ../shared/reference/table3-analysis.md §1.4) and the ratio paper / firmware;
* cycles per MAC of conv forward, conv dW, conv dX and dense (forward, dW and dX together), with the
  MAC counts of estimator.ops (the work the paper's method does: conv dX includes the zero products of
  the padded error, which the firmware skips), next to the paper's per-MAC costs fitted to Table III
  (table3-analysis.md §1.3, model M4);
* the training RAM: ROUND_INFO's mem_bytes (the firmware's model blob + the round's plan, the arena's
  high-water mark for the round) against Table III's memory (KB = 1024 B).

Goals (issue 15): >= 3.5x fewer cycles than the paper and mem_bytes <= the paper's at every cell.

    .venv/bin/python benchmarks/firmware_cycles.py [--T 20 40 ...] [--modes tl full] [--json]

Needs ``make -C firmware qemu plugin`` (arm-none-eabi-gcc, qemu-system-arm).  Takes about 3 minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device.endpoint import SerialEndpoint  # noqa: E402
from device.engine import Model  # noqa: E402
from device.nucleo import NucleoClient  # noqa: E402
from device.nucleo.qemu_board import QemuBoard, QemuBoardError  # noqa: E402
from device.simclock import SimClock  # noqa: E402
from estimator.arch import paper_cnn  # noqa: E402
from estimator.ops import count_ops  # noqa: E402

BATCH = 32
PAPER_HZ = 8_000_000
#: Table III of the paper: seconds per batch of 32 and training memory in KB (= 1024 B).
PAPER_TIME_S = {
    "tl": {20: 2.33, 40: 5.31, 60: 8.29, 80: 11.27, 100: 14.25},
    "full": {20: 7.90, 40: 17.95, 60: 28.00, 80: 38.05, 100: 48.10},
}
PAPER_MEM_KB = {
    "tl": {20: 63, 40: 79, 60: 91, 80: 102, 100: 115},
    "full": {20: 98, 40: 122, 60: 131, 80: 165, 100: 189},
}
#: Cycles per MAC of the paper's code fitted to Table III at 8 MHz (table3-analysis.md §1.3, model M4).
PAPER_CYC_PER_MAC = {"conv_fwd": 11.1, "conv_dw": 17.9, "conv_dx": 9.2, "dense": 6.6}

#: Which firmware functions do which work (PC ranges counted by the cycle plugin).
PHASES = {
    "conv_fwd": ("k_conv_fwd", "odl_mk_conv3_r1", "odl_mk_conv3_r2", "odl_mk_conv3_r3", "odl_mk_conv3_r4"),
    "conv_dw": ("conv_dw", "odl_mk_outer_r1", "odl_mk_outer_r2", "odl_mk_outer_r3", "odl_mk_outer_r4", "odl_mk_biasgrad"),
    "conv_dx": ("conv_dx", "odl_mk_dot_p1", "odl_mk_dot_p2", "odl_mk_dot_p3"),
    "dense": (
        "k_dense_fwd", "k_dense_bwd", "odl_mk_gemv_u12", "odl_mk_gemv_u4", "odl_mk_gemv_u2", "odl_mk_gemv_u1",
        "odl_mk_gerv_u12", "odl_mk_gerv_u4", "odl_mk_gerv_u2", "odl_mk_gerv_u1", "odl_mk_dotd_p1",
        "k_dense_fwd_group", "k_dense_bwd_group", "odl_mk_gemm4_u5", "odl_mk_gemm4_u4", "odl_mk_gemm4_u3",
        "odl_mk_gemm4_u2", "odl_mk_gemm4_u1", "odl_mk_ger4_u5", "odl_mk_ger4_u4", "odl_mk_ger4_u3",
        "odl_mk_ger4_u2", "odl_mk_ger4_u1",
    ),
}  # fmt: skip
REGIONS = tuple(n for names in PHASES.values() for n in names)


def macs(T: int, mode: str) -> dict[str, int]:
    """MACs of one batch per phase (estimator.ops counts, x 32)."""
    ops = count_ops(paper_cnn(T), mode)
    f, b = ops.forward, ops.backward
    return {
        "conv_fwd": BATCH * f["conv_fwd"],
        "conv_dw": BATCH * b["conv_dw"],
        "conv_dx": BATCH * b["conv_dx"],
        "dense": BATCH * (f["dense_fwd"] + b["dense_dw"] + b["dense_dx"]),
    }


def run_cell(client: NucleoClient, board: QemuBoard, T: int, mode: str) -> dict:
    arch = paper_cnn(T)
    client.upload_model(arch, Model(arch, seed=1).get_weights())
    rng = np.random.default_rng(T)
    client.clear_data()
    client.upload_dataset(rng.normal(0, 1, (BATCH, T, 3)).astype(np.float32), rng.integers(0, 6, BATCH), slot=0)
    time.sleep(0.2)  # the firmware idles: the counters are consistent
    before = board.counters()
    info = client.train(mode, epochs=1, batch=BATCH, lr=0.01, shuffle=False)
    res = client.wait_round_done(600)
    if res.done is None or res.done.status != 0 or not res.batches:
        raise RuntimeError(f"T={T} {mode}: the round did not complete: {res.done}")
    time.sleep(0.3)
    after = board.counters()
    cycles = int(res.batches[0].cycles)
    insns = after["insns"] - before["insns"]
    reg = {k: after["regions"][k]["cycles"] - before["regions"][k]["cycles"] for k in REGIONS}
    m = macs(T, mode)
    phases = {}
    for ph, names in PHASES.items():
        c = sum(reg[n] for n in names)
        phases[ph] = {
            "cycles": c,
            "macs": m[ph],
            "cycles_per_mac": round(c / m[ph], 2) if m[ph] else None,
            "paper_cycles_per_mac": PAPER_CYC_PER_MAC[ph] if m[ph] else None,
        }
    paper_cycles = round(PAPER_TIME_S[mode][T] * PAPER_HZ)
    return {
        "T": T,
        "mode": mode,
        "instructions": insns,
        "cycles": cycles,
        "paper_cycles": paper_cycles,
        "ratio": round(paper_cycles / cycles, 2),
        "est_cycles": int(info.est_cycles),
        "mem_bytes": int(info.mem_bytes),
        "paper_mem_bytes": PAPER_MEM_KB[mode][T] * 1024,
        "phases": phases,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--T", type=int, nargs="+", default=[20, 40, 60, 80, 100], choices=[20, 40, 60, 80, 100])
    ap.add_argument("--modes", nargs="+", default=["tl", "full"], choices=["tl", "full"])
    ap.add_argument("--json", action="store_true", help="print one JSON object with a row per cell")
    a = ap.parse_args(argv)
    clock = SimClock(1000.0)
    try:
        board = QemuBoard(clock, regions=REGIONS)
    except QemuBoardError as exc:
        print(f"firmware_cycles: {exc}", file=sys.stderr)
        return 2
    clock.limit = board.horizon
    ep = SerialEndpoint(board, clock, 0)
    ep.start()
    rows = []
    try:
        client = NucleoClient.open(ep.url, timeout=30)
        for T in a.T:
            for mode in a.modes:
                rows.append(run_cell(client, board, T, mode))
                if not a.json:
                    print_row(rows[-1], header=len(rows) == 1)
        client.close()
    finally:
        ep.stop()
        board.close()
    goal_t = all(r["ratio"] >= 3.5 for r in rows)
    goal_m = all(r["mem_bytes"] <= r["paper_mem_bytes"] for r in rows)
    if a.json:
        print(json.dumps({"rows": rows, "goal_cycles_3_5x": goal_t, "goal_mem_le_paper": goal_m}))
    else:
        print(f"\ngoal >= 3.5x fewer cycles at every cell: {'met' if goal_t else 'NOT met'}; "
              f"mem_bytes <= paper at every cell: {'met' if goal_m else 'NOT met'}")  # fmt: skip
    return 0


def print_row(r: dict, header: bool) -> None:
    if header:
        print(f"{'T':>4} {'mode':5} {'instr':>12} {'cycles':>12} {'paper cyc':>12} {'ratio':>6} "
              f"{'est/meas':>8} {'mem B':>8} {'paper B':>8}   cycles/MAC (paper): conv fwd | conv dW | conv dX | dense")  # fmt: skip
    ph = r["phases"]

    def cpm(k: str) -> str:
        p = ph[k]
        return f"{p['cycles_per_mac']:5.2f} ({p['paper_cycles_per_mac']:4.1f})" if p["macs"] else f"{'-':>12}"

    print(
        f"{r['T']:>4} {r['mode']:5} {r['instructions']:>12,} {r['cycles']:>12,} {r['paper_cycles']:>12,} "
        f"{r['ratio']:>5.2f}x {r['est_cycles'] / r['cycles']:>8.2f} {r['mem_bytes']:>8,} {r['paper_mem_bytes']:>8,}   "
        f"{cpm('conv_fwd')} | {cpm('conv_dw')} | {cpm('conv_dx')} | {cpm('dense')}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
