"""The NUCLEO-L496ZG board support off-chip (docs/firmware-nucleo.md, "What is tested where").

The register-level parts (targets/nucleo-l496zg/calc.c, clock.c, i2c.c, lsm6dso.c) are compiled natively
into ``odl-l496`` against a fake STM32L496 register file (firmware/host/l496_fake.c) that models the clock
tree, the I2C bus and an LSM6DSO, and flags every register write that breaks a rule of RM0351.  Values are
checked against the reference tables (../shared/reference/firmware-targets.md, which cites ST's HAL/CMSIS)
and against independent re-derivations here.  The ARM build itself is checked for what the linker and the
vector table must be; running it needs a board (nothing here claims it works on silicon).
"""

from __future__ import annotations

import random
import re
import struct
import subprocess
import sys

import pytest

from tests import firmwarekit

MHZ = range(4, 81)
BAUD = 921_600


@pytest.fixture(scope="module")
def l496():
    tools = firmwarekit.host_tools()
    return tools["odl-l496"]


def run(tool, *lines: str) -> list[str]:
    r = subprocess.run([str(tool)], input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.splitlines()


def one(tool, line: str) -> str:
    out = run(tool, line)
    assert len(out) == 1, out
    return out[0]


# --------------------------------------------------------------------------------------------------
# clock tree
# --------------------------------------------------------------------------------------------------
# reference §2.2 (ST HAL ll_utils UTILS_SCALE1/2_LATENCYn_FREQ): HCLK upper bound per wait state
LATENCY_R1 = (16e6, 32e6, 48e6, 64e6, 80e6)
LATENCY_R2 = (6e6, 12e6, 18e6, 26e6)
MSI_MHZ = {6: 4, 7: 8, 8: 16, 9: 24, 10: 32, 11: 48}


def expected_latency(hz: float, vos: int) -> int:
    table = LATENCY_R1 if vos == 1 else LATENCY_R2
    return next((i for i, top in enumerate(table) if hz <= top), -1)


def parse_plan(line: str) -> dict:
    f = line.split()
    assert f[0] == "ok", line
    keys = ("hclk", "sysclk", "use_pll", "msirange", "m", "n", "r", "hpre", "vos", "latency")
    d = dict(zip(keys, map(int, f[1:11])))
    d["pllcfgr"] = int(f[11], 16)
    return d


def test_flash_latency_table_boundaries(l496):
    lines, want = [], []
    for vos, table in ((1, LATENCY_R1), (2, LATENCY_R2)):
        for ws, top in enumerate(table):
            lines += [f"lat {int(top)} {vos}", f"lat {int(top) + 1} {vos}"]
            want += [ws, ws + 1 if ws + 1 < len(table) else -1]
    assert [int(x) for x in run(l496, *lines)] == want


def test_every_whole_mhz_has_a_plan_that_gives_exactly_that_clock(l496):
    plans = [parse_plan(x) for x in run(l496, *[f"plan {m * 1_000_000}" for m in MHZ])]
    for mhz, p in zip(MHZ, plans):
        hz = mhz * 1_000_000
        assert p["hclk"] == hz and p["sysclk"] == hz * p["hpre"], (mhz, p)
        assert p["hpre"] in (1, 2, 4, 8)
        if p["use_pll"]:
            assert p["msirange"] == 6 and p["m"] == 1  # PLL input: MSI 4 MHz
            vco = 4e6 / p["m"] * p["n"]
            assert p["sysclk"] == vco / p["r"] and 8 <= p["n"] <= 86 and p["r"] in (2, 4, 6, 8)
            assert 64e6 <= vco <= 344e6 and p["sysclk"] <= 80e6
            word = 0x1 | (p["m"] - 1) << 4 | p["n"] << 8 | 1 << 24 | (p["r"] // 2 - 1) << 25
            assert p["pllcfgr"] == word
        else:
            assert MSI_MHZ[p["msirange"]] * 1e6 == p["sysclk"]
        vco = 4e6 * p["n"] if p["use_pll"] else 0
        assert p["vos"] == (2 if p["sysclk"] <= 26e6 and vco <= 128e6 else 1), (mhz, p)
        assert p["latency"] == expected_latency(hz, p["vos"]), (mhz, p)
        if mhz in MSI_MHZ.values():  # an exact MSI range is cheaper than the PLL
            assert not p["use_pll"] and p["hpre"] == 1
    assert one(l496, "plan 3000000") == "ERR" and one(l496, "plan 81000000") == "ERR"
    assert one(l496, "plan 8500000") == "ERR"  # whole MHz only


def test_reference_recipes(l496):
    """reference §2.3: 80 MHz = MSI 4 MHz -> PLL M 1, N 40, R 2 (PLLCFGR 0x0100_2801), 4 WS, Range 1;
    §2.4: 8 MHz = MSI range 7, and in Range 2 one wait state; 4 MHz = MSI range 6, 0 WS."""
    p80, p8, p4 = (parse_plan(one(l496, f"plan {m}")) for m in (80_000_000, 8_000_000, 4_000_000))
    assert (p80["use_pll"], p80["n"], p80["r"], p80["pllcfgr"], p80["latency"], p80["vos"]) == (
        1,
        40,
        2,
        0x01002801,
        4,
        1,
    )
    assert (p8["use_pll"], p8["msirange"], p8["vos"], p8["latency"]) == (0, 7, 2, 1)
    assert (p4["use_pll"], p4["msirange"], p4["latency"]) == (0, 6, 0)


def test_switching_between_any_two_clocks_keeps_every_register_write_legal(l496):
    """From reset to A, then to B, for every A, B in 4..80 MHz: the fake checks each write (voltage range,
    wait states read back, PLL configured off / selected locked / stopped deselected, VCO limits)."""
    out = run(l496, "tour")
    violations = [x for x in out if x.startswith("VIOLATION")]
    assert not violations, violations[:10]
    rows = [list(map(int, x.split())) for x in out]
    assert len(rows) == len(MHZ) ** 2
    plans = {m: parse_plan(one(l496, f"plan {m * 1_000_000}")) for m in MHZ}
    for a, b, rc, hclk_regs, hclk_model, vos, lat, nviol in rows:
        assert rc == 0 and nviol == 0, (a, b)
        assert hclk_regs == hclk_model == b * 1_000_000, (a, b, hclk_regs, hclk_model)
        assert (vos, lat) == (plans[b]["vos"], plans[b]["latency"]), (a, b)


def test_the_fake_catches_a_wrong_sequence(l496):
    """The checker itself: selecting an 80 MHz PLL at 0 wait states, or writing PLLCFGR with the PLL on, is
    reported (so a clean tour means something)."""
    out = run(l496, "reset", "poke rcc.apb1enr1 0x10000000", "poke rcc.pllcfgr 0x01002801", "poke rcc.cr 0x01000001",
              "peek rcc.cr", "peek rcc.cr", "peek rcc.cr", "poke rcc.cfgr 3", "poke rcc.pllcfgr 0x01002801")  # fmt: skip
    v = [x for x in out if x.startswith("VIOLATION")]
    assert any("wait states in force" in x for x in v) and any("PLL is on" in x for x in v), out
    out = run(
        l496, "reset", "poke rcc.apb1enr1 0x10000000", "poke pwr.cr1 0x400", "poke rcc.cr 0xB9"
    )  # Range 2, MSI 48
    assert any("above the Range 2 limit" in x for x in out), out
    assert any("LATENCY 5 is reserved" in x for x in run(l496, "reset", "poke flash.acr 5")), out
    # the I2C pins: a wrong alternate function, another pin of GPIOB changed (PB7: the board's LED LD2)
    out = run(l496, "reset", "poke gpiob.afrh 0x55", "enable 1", "xfer 0x6B 0x0F 1 1")
    assert any("PB8 not set up for I2C1 (MODER 2 AF 5" in x for x in out), out
    moder = int(one(l496, "peek gpiob.moder"), 16)
    out = run(l496, "reset", f"poke gpiob.moder {moder & ~(3 << 14)}", "enable 1", "xfer 0x6B 0x0F 1 1")
    assert any("a pin other than PB8/PB9 was changed" in x for x in out), out


def test_a_pll_that_never_locks_leaves_a_legal_clock(l496):
    out = run(l496, "stuck pll", "switch 80000000", "switch 8000000", "stuck none")
    assert not [x for x in out if x.startswith("VIOLATION")], out
    first = out[1].split()
    assert first[0] == "fail" and first[1] == first[2] and int(first[1]) <= 48_000_000 and first[5] == "0"
    # the failure costs the one lock time-out (10 ms of the fake's clock), not a second one to stop the PLL
    assert T_OSC_US <= int(first[6]) <= T_OSC_US + 200, first
    assert out[2].split()[:3] == ["ok", "8000000", "8000000"]  # MSI targets still work


T_OSC_US, T_VOS_US = 10_000, 5_000  # clock.c: oscillator/switch and voltage-range time-outs


@pytest.mark.parametrize(
    "before, fault, target, timeout_us, hclk_after",
    [
        # MSIRDY never comes: neither a new MSI range nor the PLL's 4 MHz input can be set
        ((), "msi", 8_000_000, T_OSC_US, 4_000_000),
        ((), "msi", 80_000_000, T_OSC_US, 4_000_000),
        # from Range 2 (8 MHz) back to Range 1: the regulator never settles
        (("switch 8000000",), "vosf", 80_000_000, T_VOS_US, 8_000_000),
        # the flash never shows 4 wait states (from reset: 0), or, from 80 MHz, never the target's fewer
        ((), "acr", 80_000_000, T_OSC_US, 4_000_000),
        (("switch 80000000",), "acr", 8_000_000, T_OSC_US, 8_000_000),
        # SYSCLK never leaves the PLL: the PLL must then not be stopped
        (("switch 80000000",), "sws", 8_000_000, T_OSC_US, 80_000_000),
        # the PLL never stops: the MSI range (its input) must then not change
        (("switch 80000000",), "pllstop", 8_000_000, T_OSC_US, 4_000_000),
    ],
)
def test_a_clock_switch_that_meets_a_fault_fails_after_one_time_out_and_leaves_a_legal_clock(
    l496, before, fault, target, timeout_us, hclk_after
):
    """Each wait of the switch fails once (the fake's fault): the switch reports it, every register write
    stayed legal, the clock the registers show is what the chip runs (and where the sequence stopped), and
    the failure took the one time-out that saw it."""
    out = run(l496, "reset", *before, f"stuck {fault}", f"switch {target}", "stuck none")
    assert not [x for x in out if x.startswith("VIOLATION")], out
    rc, regs, model, _vos, _lat, viol, elapsed = out[-2].split()
    assert (rc, viol) == ("fail", "0"), out
    assert int(regs) == int(model) == hclk_after, out
    assert timeout_us <= int(elapsed) <= timeout_us + 200, out


def test_a_wait_gives_up_at_its_time_out_but_never_reports_a_time_out_when_the_condition_holds(l496):
    """l496_wait (clock.c): the fake's clock advances 1 us per register read and per clock read."""
    ready, never, jumped = (one(l496, c).split() for c in ("wait 100 5 0", "wait 100 1000000 0", "wait 100 50 1000"))
    assert ready[0] == "0" and int(ready[1]) <= 10
    assert never[0] == "-1" and 100 <= int(never[1]) <= 103  # gives up at the time-out, not later
    # an interrupt made the clock jump past the time-out while the register became ready: the last look says ready
    assert jumped[0] == "0", jumped


AHB_DIV = {**{c: 1 for c in range(8)}, 8: 2, 9: 4, 10: 8, 11: 16, 12: 64, 13: 128, 14: 256, 15: 512}  # RM0351 HPRE


def test_hclk_is_read_back_for_every_ahb_prescaler_code(l496):
    """l496_clock_hclk() from the registers: the reset clock (MSI range from MSISRANGE, 4 MHz) through each
    HPRE code; the board prints this figure in INFO and derives the UART and timer dividers from it."""
    out = run(l496, "reset", "hclk", *[f"poke rcc.cfgr {code << 4}\nhclk" for code in range(16)])
    assert out[1] == "4000000 4000000"
    got = [x for x in out[2:] if x != "ok"]
    assert got == [f"{4_000_000 // AHB_DIV[c]} {4_000_000 // AHB_DIV[c]}" for c in range(16)], got


# --------------------------------------------------------------------------------------------------
# LPUART1, TIM2
# --------------------------------------------------------------------------------------------------
def test_lpuart_brr_matches_the_reference_table_and_is_legal_at_every_clock(l496):
    table = {  # reference §2.6 (ST HAL UART_DIV_LPUART)
        (80_000_000, 115_200): 0x2B672, (80_000_000, BAUD): 0x56CE,
        (8_000_000, 115_200): 0x4572, (8_000_000, BAUD): 0x08AE,
        (4_000_000, 115_200): 0x22B9, (4_000_000, BAUD): 0x0457,
    }  # fmt: skip
    got = run(l496, *[f"brr {f} {b}" for f, b in table])
    assert [int(x) for x in got] == list(table.values())
    brr = [int(x) for x in run(l496, *[f"brr {m * 1_000_000} {BAUD}" for m in MHZ])]
    for m, v in zip(MHZ, brr):
        assert 0x300 <= v <= 0xFFFFF
        actual = 256 * m * 1e6 / v
        assert abs(actual / BAUD - 1) < 5e-4, (m, v, actual)  # rounding error only
    # the LPUART needs 3 x baud <= fck <= 4096 x baud
    assert run(l496, f"brr 2000000 {BAUD}", "brr 80000000 9600", "brr 80000000 26666666") == ["0", "0", "768"]


def test_tim2_prescaler_gives_1_mhz_at_every_clock(l496):
    psc = [int(x) for x in run(l496, *[f"psc {m * 1_000_000}" for m in MHZ])]
    assert psc == [m - 1 for m in MHZ]
    assert (psc[80 - 4], psc[8 - 4], psc[0]) == (79, 7, 3)  # reference §2.8


# --------------------------------------------------------------------------------------------------
# I2C timing
# --------------------------------------------------------------------------------------------------
FM = dict(low=1.3e-6, high=0.6e-6, su_dat=100e-9, vd_dat=0.9e-6, fmax=400e3)
SM = dict(low=4.7e-6, high=4.0e-6, su_dat=250e-9, vd_dat=3.45e-6, fmax=100e3)
TAF_MIN, TAF_MAX = 50e-9, 260e-9


def i2c_problems(timingr: int, fck: float, tr: float, tf: float) -> list[str]:
    """Independent check of a TIMINGR value with the I2C v2 timing model (RM0351 "I2C timings") against the
    I2C-bus specification's Standard/Fast-mode limits; the mode is taken from the resulting frequency."""
    presc, scldel, sdadel = timingr >> 28 & 0xF, timingr >> 20 & 0xF, timingr >> 16 & 0xF
    sclh, scll = timingr >> 8 & 0xFF, timingr & 0xFF
    tck = 1 / fck
    tp = (presc + 1) * tck
    sync_min = TAF_MIN + 2 * tck  # each SCL edge is seen tSYNC after it happens; the counters start then
    t_low, t_high = (scll + 1) * tp + sync_min, (sclh + 1) * tp + sync_min  # shortest low/high on the bus
    f_max = 1 / (t_low + t_high)  # the fastest the bus can run (no rise/fall time)
    mode = FM if f_max > SM["fmax"] * 1.0001 else SM
    problems = []
    if f_max > mode["fmax"] * 1.0001:
        problems.append(f"SCL up to {f_max / 1e3:.0f} kHz")
    if t_low < mode["low"] - 1e-12:
        problems.append(f"tLOW {t_low * 1e9:.0f} ns")
    if t_high < mode["high"] - 1e-12:
        problems.append(f"tHIGH {t_high * 1e9:.0f} ns")
    if (scldel + 1) * tp < tr + mode["su_dat"] - 1e-12:
        problems.append("data set-up")
    hold = sdadel * tp
    if hold < tf - TAF_MIN - 3 * tck - 1e-12 or hold > mode["vd_dat"] - tr - TAF_MAX - 4 * tck + 1e-12:
        problems.append("data hold/valid")
    return problems


def test_i2c_checker_accepts_cubemx_and_rejects_bad_values():
    assert i2c_problems(0x00702991, 80e6, 0, 0) == []  # CubeMX, 400 kHz at 80 MHz (reference §2.7)
    assert i2c_problems(0x10909CEC, 80e6, 0, 0) == []  # ArduPilot's 100 kHz at 80 MHz
    assert i2c_problems(0x00702950, 80e6, 0, 0)  # SCLL too short for Fast-mode
    assert i2c_problems(0x00002991, 80e6, 300e-9, 300e-9)  # SCLDEL 0: no set-up time with slow edges


def test_i2c_timingr_meets_the_bus_specification_at_every_kernel_clock(l496):
    for rise_fall in ((300, 300), (0, 0), (120, 25)):
        values = run(l496, *[f"timingr {m * 1_000_000} {rise_fall[0]} {rise_fall[1]}" for m in MHZ])
        for m, v in zip(MHZ, values):
            t = int(v, 16)
            assert t, (m, rise_fall)
            assert i2c_problems(t, m * 1e6, rise_fall[0] * 1e-9, rise_fall[1] * 1e-9) == [], (m, rise_fall, v)


def test_the_i2c_in_use_is_fast_mode_from_hsi16(l496):
    used = int(one(l496, "timing"), 16)
    assert used == int(one(l496, "timingr 16000000 300 300"), 16)
    assert i2c_problems(used, 16e6, 300e-9, 300e-9) == []
    tp = ((used >> 28) + 1) / 16e6
    period_slowest = ((used & 0xFF) + 1 + (used >> 8 & 0xFF) + 1) * tp + 2 * (TAF_MAX + 3 / 16e6) + 600e-9
    assert 1 / period_slowest > 250e3  # still a Fast-mode bus with the slowest (300 ns) edges


def xfer(l496, *setup: str, cmd: str) -> tuple[int, int, int, str]:
    """(rc, elapsed us, violations, bytes read as hex) of one l496_i2c_xfer after the set-up commands."""
    out = run(l496, *setup, cmd)
    data = int(cmd.split()[4]) > 0 and len(out[-1].split()) == 1 and out[-2].split()[0] == "0"
    rc, us, viol = map(int, out[-2 if data else -1].split())
    return rc, us, viol, out[-1] if data else ""


def test_i2c_transfers_return_codes_and_recover(l496):
    """hw.h: 0 ok, -1 NACK, -2 time-out / bus error / refused; after a failure the next transfer works."""
    on = ("reset", "enable 1")
    who = "xfer 0x6B 0x0F 1 1"
    rc, _, viol, data = xfer(l496, *on, cmd=who)
    assert (rc, viol, data) == (0, 0, "6c")
    assert xfer(l496, "reset", cmd=who)[0] == -2  # the peripheral is off (PE = 0)
    # sizes: NBYTES is 8 bits; nothing at all to do is refused too
    assert [xfer(l496, *on, cmd=f"xfer 0x6B 0 {nw} {nr}")[0] for nw, nr in ((0, 0), (256, 0), (1, 256))] == [-2] * 3
    rc, _, viol, data = xfer(l496, *on, "fill 1", cmd="xfer 0x6B 0 1 255")  # (it passes the FIFO's output)
    assert (rc, viol, len(data)) == (0, 0, 510) and data[2 * 0x0F : 2 * 0x10] == "6c"
    assert xfer(l496, *on, cmd="xfer 0x6B 0x20 255 0")[::2] == (0, 0)
    # another address answers NACK (-1) at once, and the bus is clean afterwards
    out = run(l496, *on, "xfer 0x6A 0x0F 1 1", who)
    assert [x.split()[0] for x in out[2:]] == ["-1", "0", "6c"], out
    assert int(out[2].split()[1]) < 100
    # a bus error (misplaced START/STOP): -2, the flags are cleared and the peripheral reset, the next works
    out = run(l496, *on, "buserr 1", who, who)
    assert [x.split()[0] for x in out[3:]] == ["-2", "0", "6c"], out
    # a slave stretching the clock within the time-out (2 ms per byte) is waited for; beyond it, -2 after
    # the time-out, and the peripheral is reset so the next transfer works
    rc, us, viol, data = xfer(l496, *on, "stretch 500", cmd=who)
    assert (rc, viol, data) == (0, 0, "6c") and us >= 4 * 500
    out = run(l496, *on, "advance 10000", "stretch 500", who, "stretch 3000", who, "stretch 0", who)
    assert out[5] == "6c" and out[10] == "6c", out
    rc, us, viol = map(int, out[7].split())
    assert (rc, viol) == (-2, 0) and 2_000 <= us <= 2_000 + 50
    # HSI16 (the I2C kernel clock) never starts: enable fails with -2 after its 1 ms time-out
    out = run(l496, "reset", "stuck hsi", "enable 1", "stuck none", "enable 1", "enable 0", "state")
    rc, us, _ = map(int, out[2].split())
    assert rc == -2 and 1_000 <= us <= 1_050
    assert out[4].split()[0] == "0" and out[5].split()[0] == "0"  # enable works again; off returns 0
    assert out[6].split()[:2] == ["0", "0"]  # off: HSI16 and the peripheral


@pytest.mark.parametrize("clocks", [0, 1, 2, 5, 9])
def test_a_slave_holding_sda_is_clocked_free_then_a_stop(l496, clocks):
    """UM10204 §3.1.16 bus clear: a slave left holding SDA low (a reset in mid-transfer) gets SCL clocks
    (open drain, each low >= 4.7 us and high >= 4.0 us, Standard-mode) until it lets go, then a STOP; then
    the pins go back to I2C1 and the transfer works."""
    out = run(l496, "reset", f"sdahold {clocks}", "enable 1", "bus", "xfer 0x6B 0x0F 1 1")
    pulses, stops, low, high, stop_setup, held, viol = map(int, out[3].split())
    assert (pulses, held, viol) == (clocks, 0, 0), out
    if clocks:
        assert stops == 1 and low >= 5 and stop_setup >= 4, out
        assert clocks == 1 or high >= 4
    else:
        assert stops == 0  # a free bus is left alone
    assert out[4].split()[0] == "0" and out[5] == "6c", out


def test_a_slave_that_never_lets_go_gets_nine_clocks_and_the_transfer_fails(l496):
    out = run(l496, "reset", "sdahold 4294967295", "enable 1", "bus", "xfer 0x6B 0x0F 1 1",
              "sdahold 0", "enable 0", "enable 1", "xfer 0x6B 0x0F 1 1")  # fmt: skip
    pulses, stops, *_, held, viol = map(int, out[3].split())
    assert (pulses, stops, held, viol) == (9, 0, 1, 0), out
    rc, us, _ = map(int, out[4].split())
    assert rc == -2 and us <= 2 * 2_000 + 100  # (at once: no START can be made, arbitration is lost)
    assert out[-2].split()[0] == "0" and out[-1] == "6c", out  # once it lets go, the bus works


# --------------------------------------------------------------------------------------------------
# LSM6DSO
# --------------------------------------------------------------------------------------------------
ODR_LADDER = (12500, 26000, 52000, 104000, 208000, 417000, 833000, 1667000, 3333000, 6667000)


def test_lsm6dso_codes_and_sensitivity(l496):
    assert [int(x) for x in run(l496, *[f"odr {o}" for o in ODR_LADDER])] == list(range(1, 11))
    assert run(l496, "odr 25000", "odr 0") == ["-1", "-1"]
    assert [int(x) for x in run(l496, "fs 2", "fs 16", "fs 4", "fs 8", "fs 3")] == [0, 1, 2, 3, -1]
    sens = [int(x) for x in run(l496, "sens 2", "sens 4", "sens 8", "sens 16")]
    assert sens == [61, 122, 244, 488]  # micro-g per LSB: lsm6dso_from_fs*_to_mg 0.061 ... 0.488
    # 1 g at +-2 g reads about 16393 counts; the core reports the same sensitivities (SENSOR_STATE sens_ng)
    assert abs(16393 * sens[0] * 1e-6 - 1.0) < 1e-3
    proto = (firmwarekit.FIRMWARE / "core" / "proto.c").read_text()
    m = re.search(r"sens_ng\(uint8_t fs\) \{ return ([^;]+);", proto)
    assert m and all(f"{s * 1000}u" in m.group(1) for s in sens)


def test_fifo_words_and_status(l496):
    def word(tag: int, x: int, y: int, z: int, low_bits: int = 0) -> str:
        return "word " + (bytes([tag << 3 | low_bits]) + struct.pack("<hhh", x, y, z)).hex()

    out = run(
        l496,
        word(0x02, 1000, -2, -32768),
        word(0x02, 7, 8, 9, low_bits=0b111),  # TAG_CNT and parity bits do not change the sensor tag
        word(0x01, 1, 2, 3),  # gyroscope
        word(0x03, 1, 2, 3),  # temperature
        word(0x04, 1, 2, 3),  # timestamp
        word(0x07, 1, 2, 3),  # compressed accelerometer (never configured)
    )
    assert out == ["1 1000 -2 -32768", "1 7 8 9", "0", "0", "0", "0"]
    assert run(l496, "level 255 3", "level 4 0", "level 0 64", "level 0 8", "level 0 32") == [
        "1023 0", "4 0", "0 1", "0 1", "0 0",  # FIFO_FULL_IA (bit 5) is not an overrun yet
    ]  # fmt: skip


def test_fifo_streaming_through_the_fake_sensor(l496):
    out = run(
        l496, "reset", "probe", "start 104000 4",
        "push 2 10 11 12", "push 1 0 0 0", "push 2 20 21 22", "push 2 30 31 32",
        "read 2",  # status read (3 words... 4 words), two samples
        "read 8",  # the rest of what the status said, no new status read
        "read 8",  # nothing left: a fresh status read finds the FIFO empty
        "fill 600 100", "read 1000",  # more than the FIFO holds: overrun, the newest 512 remain
    )  # fmt: skip
    assert out[1].startswith("108 ") and out[2].split()[0] == "0"
    r1 = out.index("2 1 4 0 1")
    assert out[r1 + 1 : r1 + 3] == ["10 11 12", "20 21 22"]
    assert out[r1 + 3] == "1 0 0 0 0" and out[r1 + 4] == "30 31 32"
    assert out[r1 + 5] == "0 1 0 0 0"
    big = out.index("512 1 512 1 0")
    samples = [int(x.split()[0]) for x in out[big + 1 :]]
    assert samples == list(range(100 + 600 - 512, 100 + 600))
    assert not [x for x in out if x.startswith("VIOLATION")]  # never a word more than FIFO_STATUS said


def test_a_failed_fifo_read_says_so_and_the_next_read_starts_from_a_fresh_status(l496):
    """A transfer lost in the middle of reading words (the third START after the status: the first word's
    register write): -1, and what the status said is forgotten, so the next read asks again."""
    out = run(l496, "reset", "probe", "start 104000 4", "fill 3 7", "nackat 3", "read 8", "read 8")
    assert out[5].split()[0] == "-1", out
    assert out[6:] == ["3 1 3 0 0", "7 1 32767", "8 1 32767", "9 1 32767"], out


def test_sensor_register_setup(l496):
    out = run(l496, "reset", "probe", "start 104000 4", "start 26000 2", "start 1667000 16", "stop", "start 25000 2")
    who, _elapsed, starts, resets, viol = map(int, out[1].split())
    assert (who, resets, viol) == (0x6C, 1, 0) and starts > 0
    rc, ctrl1, fifo3, fifo4, ctrl3, ctrl9, _ = out[2].split()
    # 104 Hz +-4 g = 0x48 (reference §4), BDR_XL = ODR, continuous mode, BDU + IF_INC, I3C off
    assert (rc, ctrl1, fifo3, fifo4, ctrl3, ctrl9) == ("0", "48", "04", "06", "44", "02")
    assert out[3].split()[1:4] == ["20", "02", "06"]  # 26 Hz +-2 g = 0x20
    assert out[4].split()[1:3] == ["84", "08"]  # 1.667 kHz (1000) +-16 g (01)
    assert out[5] == "00 00 0"  # stop: powered down, FIFO bypass, HSI16 off
    assert out[6].split()[0] == "-1"


def test_missing_or_stuck_shield_never_hangs(l496):
    out = run(l496, "reset absent", "probe", "start 104000 4", "reset stuck", "probe", "start 104000 4", "read 10")
    who, elapsed_absent, *_ = map(int, out[1].split())
    assert who == 0 and elapsed_absent < 1_000  # a NACK answers at once
    assert out[2].split()[0] == "-1"
    who, elapsed_stuck, *_ = map(int, out[4].split())
    assert who == 0 and elapsed_stuck < 3 * 2_000  # bounded by the transfer timeout (2 ms)
    assert out[5].split()[0] == "-1" and int(out[5].split()[-1]) < 3 * 2_000
    assert out[6].split()[0] == "-1"
    assert not [x for x in out if x.startswith("VIOLATION")]


def test_the_probe_sets_up_only_an_lsm6dso_and_leaves_the_bus_off(l496):
    """l496_lsm_probe: WHO_AM_I, a software reset waited for (no write while it runs: the fake flags one),
    BDU + IF_INC, I2C only, FIFO bypass, accelerometer powered down; then HSI16 and the peripheral off."""
    out = run(l496, "reset", "probe", "state", *[f"lsmpeek {r}" for r in (0x10, 0x0A, 0x12, 0x18)])
    who, elapsed, starts, resets, viol = map(int, out[1].split())
    assert (who, resets, viol) == (0x6C, 1, 0) and elapsed < 1_000  # no waiting beyond the reset itself
    assert out[2].split()[:2] == ["0", "0"]  # HSION, PE
    assert out[3:] == ["00", "00", "44", "02"], out
    # a chip that is not an LSM6DSO (an LSM6DSL says 0x6A) is not written to
    out = run(l496, "reset", "lsmpoke 0x0F 0x6A", "probe", "state")
    assert out[2].split()[0] == "0" and out[3].split()[:3] == ["0", "0", "0"], out
    # HSI16 does not start: no shield can be reached
    assert run(l496, "reset", "stuck hsi", "probe", "stuck none")[2].split()[0] == "0"
    # a software reset slower than usual, long after boot, is waited for; one that never ends is given 50 ms
    out = run(l496, "reset", "advance 100000", "lsmreset 20", "probe")
    assert out[3].split()[0] == "108" and out[3].split()[-1] == "0", out
    out = run(l496, "reset", "lsmreset 4294967295", "probe", "state")
    who, elapsed, *_, viol = map(int, out[2].split())
    assert (who, viol) == (0, 0) and 50_000 <= elapsed <= 50_000 + 3 * 2_000, out
    assert out[3].split()[:3] == ["0", "0", "1"], out  # off again; nothing written but the reset
    # a contact lost for one transfer anywhere in the probe: absent, and the bus off; one later: present
    for n in range(1, starts + 2):
        out = run(l496, "reset", f"nackat {n}", "probe", "state")
        who, *_, viol = map(int, out[2].split())
        assert (who, viol) == ((0x6C if n > starts else 0), 0), (n, out)
        assert out[3].split()[:2] == ["0", "0"], (n, out)


def test_a_start_that_fails_anywhere_leaves_the_bus_off(l496):
    """l496_lsm_start: the FIFO's watermark and batching registers written whatever they held, and any
    transfer that fails on the way ends with HSI16 and the peripheral off and -1."""
    out = run(l496, "reset", "probe", "lsmpoke 7 0xff", "lsmpoke 8 0xff", "state", "start 104000 4",
              "lsmpeek 7", "lsmpeek 8", "state")  # fmt: skip
    assert out[5].split()[0] == "0" and out[6:8] == ["00", "00"], out
    assert out[8].split()[:2] == ["1", "1"], out  # streaming: the bus stays on
    starts = int(out[8].split()[3]) - int(out[4].split()[3])
    assert starts == 6  # one write each
    for n in range(1, starts + 1):
        out = run(l496, "reset", "probe", f"nackat {n}", "start 104000 4", "state")
        assert out[3].split()[0] == "-1" and out[4].split()[:2] == ["0", "0"], (n, out)


def test_resync_after_overrun_and_poll_interval(l496):
    # sample 0 at t0 = 1 s, 104 Hz: by t = 11 s, 1041 samples exist; 512 still in the FIFO -> oldest 529
    assert run(l496, "resync 100 1000000 11000000 104000 512") == ["529"]
    assert run(l496, "resync 800 1000000 11000000 104000 512") == ["800"]  # never backwards
    assert run(l496, "resync 5 2000 1000 104000 3") == ["5"]  # before sample 0
    polls = [int(x) for x in run(l496, "poll 12500", "poll 26000", "poll 104000", "poll 1667000", "poll 6667000")]
    assert polls == [100000, 100000, 38461, 5000, 5000]


# --------------------------------------------------------------------------------------------------
# reset cause, rings
# --------------------------------------------------------------------------------------------------
def test_reset_cause_from_rcc_csr(l496):
    PIN, BOR, SFT, IWDG, WWDG = 1 << 26, 1 << 27, 1 << 28, 1 << 29, 1 << 30
    cases = {
        (PIN | BOR, 0, 0): 0,  # power-on
        (PIN | BOR, 1, 3): 0,  # a stale record in SRAM after power-on is ignored
        (PIN, 0, 0): 0,  # reset button / ST-LINK after flashing
        (PIN | SFT, 1, 1): 1,  # RESET request
        (PIN | SFT, 0, 0): 1,
        (PIN | SFT, 1, 3): 3,  # fault.c reset after a HardFault
        (PIN | SFT, 1, 0): 1,  # a valid record with a cause a software reset cannot have: a RESET request
        (PIN | SFT, 1, 2): 1,
        (PIN | SFT, 1, 7): 1,
        (PIN | IWDG, 0, 0): 2,
        (PIN | WWDG | SFT, 1, 3): 2,
    }
    got = run(l496, *[f"cause {c} {v} {r}" for c, v, r in cases])
    assert [int(x) for x in got] == list(cases.values())


def test_ring_arithmetic(l496):
    assert run(l496, "rxavail 0 2048 2048", "rxavail 0 2000 2048", "rxavail 2040 2040 2048", "rxavail 2040 2048 2048",
               "rxavail 100 1948 2048") == ["0", "48", "16", "8", "0"]  # fmt: skip
    # TX chunks stop at the end of the buffer; indices are free-running 32-bit counters
    assert run(l496, "chunk 10 0 2048", "chunk 2100 2040 2048", "chunk 2100 2048 2048", "chunk 4294967300 4294967290 2048") == [
        "10", "8", "52", "6",
    ]  # fmt: skip


# --------------------------------------------------------------------------------------------------
# the ARM build
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nucleo_build():
    firmwarekit.require("arm-none-eabi-gcc", "make")
    firmwarekit.build("nucleo", "qemu")
    d = firmwarekit.BUILD / "nucleo-l496zg"
    return d / "odl.elf", d / "odl.bin", d / "odl.map"


def symbols(elf) -> dict[str, int]:
    out = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    return {p[2]: int(p[0], 16) for p in (line.split() for line in out.splitlines()) if len(p) == 3}


def test_vector_table_of_the_nucleo_image(nucleo_build):
    elf, binf, _ = nucleo_build
    sym = symbols(elf)
    vec = struct.unpack("<107I", binf.read_bytes()[: 107 * 4])
    assert sym["vectors"] == 0x0800_0000
    assert vec[0] == sym["__stack_top"] and 0x2000_0000 < vec[0] <= 0x2005_0000
    assert vec[1] == sym["reset_handler"] | 1
    fault = sym["odl_fault_handler"] | 1
    assert vec[2:7] == (fault,) * 5  # NMI, HardFault, MemManage, BusFault, UsageFault -> fault.c
    irq = {28: "l496_tim2_isr", 68: "l496_dma_tx_isr", 69: "l496_dma_rx_isr", 70: "l496_lpuart_isr"}
    for n in range(91):  # stm32l496xx.h IRQn_Type: 0..90
        assert vec[16 + n] == (sym[irq[n]] | 1 if n in irq else fault), n


def test_nucleo_image_fits_and_has_the_qemu_arena(nucleo_build):
    elf, _, mapf = nucleo_build
    sym = symbols(elf)
    import importlib.util

    spec = importlib.util.spec_from_file_location("size_report", firmwarekit.FIRMWARE / "tools" / "size_report.py")
    sr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sr)
    text = mapf.read_text()
    s = sr.sections(text)
    flash = sum(s.get(k, 0) for k in sr.FLASH) + s.get(".data", 0)
    ram = sum(s.get(k, 0) for k in sr.RAM)
    assert flash <= 1024 * 1024 and ram <= 320 * 1024
    qemu_arena = sr.arena((firmwarekit.BUILD / "qemu-mps2-an386" / "odl.map").read_text())
    assert sr.arena(text) == qemu_arena == 320 * 1024 - 24 * 1024
    assert sym["cm4_noinit"] == 0x2000_0000  # the fault record first, in SRAM1
    assert sym["__stack_top"] <= 0x2000_0000 + 320 * 1024
    # the size report's Table III statement: every paper-CNN round fits in this arena, and the check can fail
    lines, ok = sr.table_iii(sr.arena(text))
    assert ok and len(lines) == 11 and "144,808" in "\n".join(lines)  # Full T=100, the firmware's own mem_bytes
    assert sr.table_iii(140_000)[1] is False
    r = subprocess.run(
        [sys.executable, str(spec.origin), str(elf)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "Table III rounds in the 303,104-byte arena (all fit)" in r.stdout, r.stdout


# --------------------------------------------------------------------------------------------------
# no shield, seen from the host: what the core makes of a board whose LSM6DSO does not answer
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def core_without_shield(tmp_path_factory):
    """The portable core built natively behind host/board_host.c (protocol on a TCP port), except that its
    board_sensor_whoami() answers 0, as board_l496.c does after a probe nobody acknowledged."""
    firmwarekit.require("gcc")
    d = tmp_path_factory.mktemp("no-shield")
    fw = firmwarekit.FIRMWARE
    core = re.search(r"^CORE_SRC\s*=\s*(.+)$", (fw / "Makefile").read_text(), re.M).group(1).split()
    src = (fw / "host" / "board_host.c").read_text()
    present = "uint8_t board_sensor_whoami(void) { return 0x6C; }"
    assert present in src
    board = d / "board_no_shield.c"
    board.write_text(src.replace(present, present.replace("0x6C", "0")).replace('"../core/', f'"{fw}/core/'))
    exe = d / "odl-host-no-shield"
    flags = ["-std=c11", "-O1", "-g", "-ffp-contract=off", "-D_DEFAULT_SOURCE", "-fsanitize=address,undefined"]
    r = subprocess.run(
        ["gcc", *flags, "-o", str(exe), *[str(fw / s) for s in core], str(board), "-lm"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    proc = subprocess.Popen([str(exe), "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("PORT "), line
        yield f"socket://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.kill()
        proc.wait(10)


def test_without_the_shield_info_says_so_and_streaming_is_refused(core_without_shield):
    """Issue 16: a missing IKS01A3 is reported in INFO and by ERROR on STREAM_START, never a hang (the board
    side, a probe that returns at once, is test_missing_or_stuck_shield_never_hangs)."""

    from device.nucleo import protocol as P
    from device.nucleo.client import NucleoClient, NucleoError

    with NucleoClient.open(core_without_shield, timeout=5.0) as c:
        info = c.info()
        assert (info.sensor_whoami, info.sensor) == (0, "none")
        retries = c.stats["retries"]
        with pytest.raises(NucleoError, match=r"NO_DATA.*LSM6DSO did not answer WHO_AM_I.*IKS01A3"):
            c.stream_start()
        assert c.stats["retries"] == retries  # answered at once, not timed out and resent (on any machine's speed)
        assert c.status().state == 0  # idle, still answering
        c.drain_events()
        c.reset()  # the boot says so too
        assert c.next_event(P.Boot, 5.0) is not None
        log = c.next_event(P.Log, 5.0)
        assert log is not None and log.level == 2 and "IKS01A3" in log.text, log


# --------------------------------------------------------------------------------------------------
# board_l496.c: the link, time, marker, idle (the tests named test_board_*)
# --------------------------------------------------------------------------------------------------
# odl-l496 links board_l496.c with the fake's TIM2, DWT, NVIC/PRIMASK/WFI, LPUART1 + DMA2 (a simulated host at
# the far end of the wire: it sends at 921 600 baud and collects what the firmware sends) and GPIOF/GPIOG
# (firmware/host/l496_fake.c).  The fake flags every write that breaks a rule (a VIOLATION line): a peripheral
# written with its clock off, GPIOG before PWR_CR2.IOSV, LPUART1 BRR with UE = 1 or a TX byte in flight, HCLK
# changed with a byte in flight, a DMA channel's addresses/count written while it is enabled, a byte on the
# wire with the pins not in AF8 or the baud rate more than 2 % from 921 600.  Time is the fake's: every
# register read costs 1 us, so durations below are exact to the microsecond.
RX_SIZE = TX_SIZE = 2048
INIT = "8000000 8000000 0 1 0 108 461 1000 1048576 0"  # SYSCLK, HCLK, cause, PF13 output + low, WHO_AM_I ...
HOUSEKEEPING_US = 1 << 24


def ints(line: str) -> list[int]:
    return [int(x) for x in line.split()]


def test_board_init_order_clock_marker_and_reset_cause(l496):
    """Every write of board_init in order (clocks before registers, VDDIO2 before port G, BRR with UE = 0, DMA
    set up before enabled): no VIOLATION; 8 MHz; PF13 an output, low; the sensor found; IDCODE/flash size."""
    assert run(l496, "binit") == [INIT]
    # RCC_CSR: SFTRSTF with fault.c's record 3 (a fault) / 1, none, IWDG; the NRST pin
    out = run(
        l496, "binit 0x10000000 3", "binit 0x10000000 1", "binit 0x10000000", "binit 0x20000000", "binit 0x4000000"
    )
    assert out == [
        "8000000 8000000 3 1 0 108 461 1000 1048576 0 reset after a fault at PC 0x0800BEEF",
        "8000000 8000000 1 1 0 108 461 1000 1048576 0",
        "8000000 8000000 1 1 0 108 461 1000 1048576 0",
        "8000000 8000000 2 1 0 108 461 1000 1048576 0",
        INIT,
    ]


def test_board_info_from_the_chip_ids(l496):
    """INFO: DEV_ID/REV_ID from DBGMCU_IDCODE and the flash size from its factory word; an IDCODE without a
    DEV_ID (the debug block unclocked) or a blank flash-size word (0 or 0xFFFF) keep the defaults; never
    "emulated"."""
    name = "NUCLEO-L496ZG STM32L496ZG nucleo-l496zg"
    assert run(l496, "binit", "binfo")[1] == f"{name} 461 1000 1048576 0"
    assert run(l496, "chipid 0x20010461 512", "binit", "binfo")[2] == f"{name} 461 2001 524288 0"
    assert run(l496, "chipid 0x20010000 0xFFFF", "binit", "binfo")[2] == f"{name} 461 1000 1048576 0"
    assert run(l496, "chipid 0x20010000 0", "binit", "binfo")[2] == f"{name} 461 1000 1048576 0"


def test_board_the_fake_catches_the_board_rules(l496):
    """The checks are live: port G before VDDIO2 (and its clock), BRR with UE = 1, a DMA count while enabled."""
    out = run(l496, "reset", "poke gpiog.moder 5", "binit", "poke lpuart.brr 5000", "lwrite 100", "poke dma.cndtr6 5")
    assert out == [
        "ok",
        "VIOLATION GPIOG written before PWR_CR2.IOSV (VDDIO2 not valid)",
        "VIOLATION GPIOG written with its clock off",
        "ok",
        INIT,
        "VIOLATION LPUART1 BRR written while UE = 1",
        "ok",
        "100 1948",
        "VIOLATION DMA2 channel 6: CNDTR written while the channel is enabled",
        "ok",
    ]


@pytest.mark.parametrize("seed", range(6))
def test_board_link_rx_every_byte_once_in_order_across_the_ring(l496, seed):
    """The host sends N bytes (1 .. several RX_SIZE) in bursts while the firmware reads random-sized pieces
    at random moments (as the core's main loop does): every byte arrives once, in order, across the wrap of
    the circular DMA buffer; no read returns more than asked or writes past it.  (Every 4th read takes all
    there is, so the firmware never falls a whole ring behind: at most 4 x 2 ms of bytes between.)"""
    rnd = random.Random(seed)
    total = [1, 2047, 2048, 2049, 3 * RX_SIZE + 77, 5 * RX_SIZE][seed]
    script, maxes, sent = ["binit"], [], 0
    while sent < total:
        burst = min(total - sent, rnd.choice([1, 5, 100, 700, 1500]))
        script.append(f"hsend {burst}")
        sent += burst
        for _ in range(rnd.randint(1, 12)):
            script.append(f"run {rnd.randint(5, 2000)}")
            m = rnd.choice([1, 7, 64, 300, 1000]) if len(maxes) % 4 != 3 else 4096
            maxes.append(m)
            script.append(f"lread {m}")
    script += ["run 200000"] + [f"lread {4096}"] * 4 + ["isr"]
    maxes += [4096] * 4
    out = run(l496, *script)
    assert out[0] == INIT
    reads = [ints(x) for x in out if len(x.split()) == 3]
    assert len(reads) == len(maxes)
    for (n, _, _), m in zip(reads, maxes):
        assert n <= m
    assert reads[-1][1:] == [total, 0]  # every byte, in order, nothing written past what a read returned
    assert sum(r[0] for r in reads) == total
    isr = ints(out[-1])
    assert isr[4:] == [total, 0, 0]  # received by the DMA, none lost, no violation


def test_board_link_tx_returns_the_free_space_and_sends_everything_once_in_order(l496):
    """A write larger than the free space takes exactly the free space (which grows when a DMA piece is done);
    the wire gets every byte once, in order, across the end of tx_buf (the DMA piece split there)."""
    out = run(
        l496,
        "binit",
        "lwrite 3000",  # more than the ring: exactly TX_SIZE accepted
        "run 30000",
        "txfree",
        "lwrite 1000",
        "run 500",  # 1000 bytes in flight (one DMA piece)
        "lwrite 1500",  # exactly the free space
        "run 12000",  # the first piece done; the second (to the end of tx_buf) in flight
        "txfree",
        "lwrite 5000",
        "run 100000",
        "txfree",
        "lwrite 1500",  # from offset 1000 across the end of tx_buf: two pieces
        "run 100000",
        "txfree",
        "wire",
        "isr",
    )
    assert out[0] == INIT
    assert out[1:] == [
        "2048 0",
        "ok",
        "2048",
        "1000 1048",
        "ok",
        "1048 0",
        "ok",
        "1000",
        "1000 0",
        "ok",
        "2048",
        "1500 548",
        "ok",
        "2048",
        out[15],
        out[16],
    ]
    n, bad, baud_min, baud_max, _ = ints(out[15])
    assert (n, bad) == (2048 + 1000 + 1048 + 1000 + 1500, 0)  # every byte once, in order
    assert baud_min == baud_max == 921692  # 256 * 8 MHz / 2222
    isr = ints(out[16])
    assert isr[1] == 6 and isr[6] == 0  # one DMA interrupt per piece: 2048, 1000, 1048, 1000, 1000 + 500


BOARD_CLOCKS = [4, 5, 8, 13, 16, 24, 26, 27, 32, 48, 50, 64, 72, 80]


@pytest.mark.parametrize("mhz", BOARD_CLOCKS)
def test_board_set_sysclk_drains_then_rebauds_and_keeps_time(l496, mhz):
    """board_set_sysclk with 1000 bytes queued and a marker pulse high: every byte leaves at the old baud
    before BRR changes (the fake flags a byte in flight at a BRR write or a clock change); after it the wire's
    rate is 921 600 within 2 % (measured from the bytes' times too); board_ticks never runs ahead of the time
    that passed nor goes back; the pulse ends."""
    brr = round(256 * mhz * 1e6 / 921600)
    out = run(
        l496,
        "binit",
        "clk 48000000",
        "wire",
        "run 60000",  # TIM2's count well past 0 when the drain starts
        "lwrite 1000",
        "pulse 50000",
        "edges",
        f"clk {mhz * 1000000}",
        "edges",
        "wire",
        "lwrite 300",
        "run 10000",
        "wire",
        "ticks",
        "run 1000",
        "ticks",
        "isr",
    )
    assert out[0] == INIT
    ret, sysclk, hclk, got_brr, dticks, dus, viol = ints(out[7])
    assert (ret, sysclk, hclk, got_brr, viol) == (mhz * 10**6, mhz * 10**6, mhz * 10**6, brr, 0)
    assert 0 <= dticks <= dus
    assert dus < 12_000  # 1000 bytes at 10.85 us, then the switch
    rise = ints(out[6])
    fall = ints(out[8])
    assert rise[0] == 1 and rise[2] == 1 and fall[0] == 1 and fall[2] == 0  # the pulse ended at the switch
    assert fall[1] - rise[1] < 12_000
    n, bad, bmin, bmax, _ = ints(out[9])
    assert (n, bad) == (1000, 0) and bmin == bmax == 256 * 48_000_000 // 13333  # all at the old rate
    n, bad, bmin, bmax, ns = ints(out[12])
    assert (n, bad) == (300, 0) and bmin == bmax == 256 * mhz * 10**6 // brr
    assert abs(bmin - 921600) <= 921600 * 0.02
    measured = 299 * 10 / (ns * 1e-9)  # from the bytes' times on the wire
    assert abs(measured - 921600) <= 921600 * 0.02
    t1, u1 = ints(out[13])
    t2, u2 = ints(out[15])
    assert t2 - t1 == u2 - u1  # 1 MHz at the new clock
    assert ints(out[16])[5:] == [0, 0]
    # from the boot clock, nothing queued: TIM2 divides by 8 MHz's prescaler while HCLK moves to the new clock
    # (10 counts per us at 80 MHz); the ticks must not run ahead of the time the switch took
    ret, _, _, _, dticks, dus, viol = ints(run(l496, "binit", f"clk {mhz * 1000000}")[1])
    assert (ret, viol) == (mhz * 10**6, 0)
    assert 0 <= dticks <= dus


def test_board_set_sysclk_drains_a_full_ring_within_its_time_out(l496):
    """2 KiB queued (22 ms at 921 600 baud, under the drain's 50 ms) with TIM2's count far from 0: all sent
    before the switch, none in flight at the BRR write."""
    out = run(l496, "binit", "run 3000000", "lwrite 2048", "clk 16000000", "wire", "isr")
    assert out[2] == "2048 0"
    ret, _, _, _, _, dus, viol = ints(out[3])
    assert (ret, viol) == (16_000_000, 0) and 22_000 < dus < 23_000
    assert ints(out[4])[:2] == [2048, 0]
    assert ints(out[5])[6] == 0


def test_board_a_refused_clock_changes_nothing(l496):
    out = run(l496, "binit", "lwrite 200", "clk 3000000", "clk 81000000", "clk 8500000", "run 30000", "wire")
    assert out[0] == INIT
    assert out[2:5] == ["0 8000000 8000000 2222 2 2 0"] * 3  # returns 0; clock, BRR unchanged, no drain
    assert ints(out[6])[:2] == [200, 0]


def test_board_ticks_across_the_tim2_wrap_and_while_its_interrupt_waits(l496):
    out = run(
        l496,
        "binit",
        "tim2 0xFFFFFF00",
        "ticks",
        "run 1000",  # the wrap, its interrupt taken
        "ticks",
        "tim2 0xFFFFFFF0",
        "ticks",
        "mask 1",
        "run 100",  # the wrap with interrupts masked: UIF set, the handler has not run
        "ticks",
        "mask 0",
        "ticks",
        "isr",
    )
    t = [ints(x) for x in out if len(x.split()) == 2]
    assert t[1][0] - t[0][0] == t[1][1] - t[0][1]  # across the wrap: as much as time passed
    assert t[3][0] - t[2][0] == t[3][1] - t[2][1]  # UIF pending, not yet counted by the handler
    assert t[4][0] - t[3][0] == t[4][1] - t[3][1]  # after the handler: no double count
    assert ints(out[-1])[0] == 2 and ints(out[-1])[6] == 0  # the two overflows' handlers


def test_board_cycles_across_the_dwt_wrap_and_two_minutes_at_80_mhz(l496):
    out = run(l496, "binit", "dwt 0xFFFFFF00", "cycles", "run 100", "cycles", "clk 80000000", "cycles",
              "run 120000000", "cycles", "isr")  # fmt: skip
    c = [ints(x) for x in out if len(x.split()) == 2]
    assert c[1][0] - c[0][0] == (c[1][1] - c[0][1]) * 8  # 8 MHz, across the wrap
    # 120 s at 80 MHz (DWT wraps every 53.7 s): the CC2 housekeeping keeps the extension current
    assert c[3][0] - c[2][0] == (c[3][1] - c[2][1]) * 80
    assert ints(out[-1])[6] == 0


@pytest.mark.parametrize("us", [0, 1, 100, 10000])
def test_board_marker_pulse_length(l496, us):
    """PF13 high for max(us, 1) plus 3 us: the fake charges 1 us per register read, one between the rising
    edge and the count the compare starts from, two in the handler before its BSRR write."""
    out = run(l496, "binit", "edges", f"pulse {us}", f"run {us + 100}", "edges")
    assert out[1] == "0"
    n, t_rise, l1, t_fall, l0 = ints(out[-1])
    assert (n, l1, l0) == (2, 1, 0)
    assert t_fall - t_rise == max(us, 1) + 3


def test_board_a_one_us_pulse_whose_compare_passes_before_it_is_armed_still_ends(l496):
    """The count ticks between reading the start and clearing CC1IF (register reads free, the clock jumping
    1 us at the 4th access, the SR write): the compare flag is cleared unseen, so only the check after arming
    ends the pulse (`>=`: a `>` would leave PF13 high for 71 minutes, until the count comes round)."""
    out = run(l496, "binit", "edges", "pulserace 1 4 1", "run 100", "edges")
    assert out[-1] == "2 193 1 194 0"


def test_board_a_second_pulse_while_high_extends_it(l496):
    out = run(l496, "binit", "edges", "pulse 10000", "run 3000", "ticks", "pulse 100", "run 1000", "edges")
    _, now = ints(out[4])
    n, t_rise, l1, t_fall, l0 = ints(out[-1])
    assert (n, l1, l0) == (2, 1, 0)
    assert t_fall - now == 100 + 3  # 100 us after the second call (+ the 3 register reads)


def test_board_idle_returns_at_once_with_work_else_sleeps_until_an_interrupt(l496):
    out = run(l496, "binit", "hsend 5", "run 100", "idle", "lread 10", "hsend 1", "idle", "lread 10", "idle", "ticks")
    assert out[3] == "1 0"  # bytes pending: no WFI (1 us: the CNDTR read)
    assert out[4] == "5 5 0"
    assert out[6] == "22 1"  # asleep until the LPUART's IDLE interrupt: the byte (10.85 us) and one idle frame
    assert out[7] == "1 6 0"
    t, now = ints(out[9])
    slept = ints(out[8])
    # nothing to do: asleep until TIM2's next compare (CC2, 2^24 ticks after the count restarted at boot)
    assert slept[1] == 1 and HOUSEKEEPING_US < t < HOUSEKEEPING_US + 60


def test_board_sensor_wakeups_at_the_poll_interval(l496):
    out = run(l496, "binit", "sstart 104000 2", "fill 12", "ticks", "idle", "idle", "sread 100", "ticks", "idle",
              "sread 100", "sstop", "idle", "isr")  # fmt: skip
    assert out[1] == "0 38461 40"  # 104 Hz, 2 g; the FIFO looked into every 4 samples
    poll = 38461
    t0, _ = ints(out[3])
    assert out[4] == f"{poll} 1"  # CC3 woke it one poll interval after the start
    assert out[5] == "1 0"  # a read is due: no sleep
    n, index, _, _ = ints(out[6])
    assert (n, index) == (12, 0)
    slept, wfis = ints(out[8])
    assert wfis == 1
    t2 = ints(out[9])[3]
    assert 2 * poll <= t2 - t0 <= 2 * poll + 30  # the next wake-up a period after the first (not after the read)
    assert ints(out[9])[:2] == [0, 12]  # due, but the FIFO is empty
    slept, wfis = ints(out[11])
    assert wfis == 1 and slept > poll  # stopped: no more CC3 wake-ups
    assert ints(out[-1])[6] == 0


def test_board_sensor_defaults_without_a_config(l496):
    """STREAM_START before any SENSOR_CONFIG: 26 Hz, 2 g (CTRL1_XL 0x20), the FIFO looked into every 100 ms."""
    out = run(l496, "binit", "sstart", "idle", "isr")
    assert out[1] == "0 100000 20"
    assert out[2] == "100002 1"  # (the start's own register reads after it armed CC3: 2 us)
    assert ints(out[3])[6] == 0


def test_board_boot_time_cycles_and_reset_message(l496):
    """board_init with the shield: done 151 us after TIM2 started (the probe answers at once, no retry
    loop); the DWT counts from 0 at init; a fault record with a watchdog or pin reset shows no fault text."""
    out = run(l496, "binit", "ticks", "cycles")
    assert out[1:] == ["151 195", "1336 196"]  # 4 MHz until the switch, then 8 MHz
    assert run(l496, "binit 0x20000000 3", "binit 0 3") == [
        "8000000 8000000 2 1 0 108 461 1000 1048576 0",
        INIT,
    ]


def test_board_without_the_shield_probes_for_50_ms_then_goes_on(l496):
    out = run(l496, "shield absent", "binit", "ticks", "sstart 104000 2", "sstop", "state")
    assert out[1] == "8000000 8000000 0 1 0 0 461 1000 1048576 0"  # WHO_AM_I 0
    assert ints(out[2])[0] == 50035  # the LSM6DSO may still be booting: retried for 50 ms
    assert out[3] == "-1 38461 00" and out[5] == "0 0 0 3125 0"  # refused; stop touches nothing


def test_board_sensor_config_start_stop_and_failed_reads(l496):
    out = run(l496, "binit", "sconfig 1234 2", "sconfig 26000 3", "sconfig 26000 2", "bsim")
    assert out[1:] == ["-1", "-1", "0", "-1"]  # a bad ODR, a bad FS; no simulator requests on real hardware
    # a start that loses the bus: refused, and neither it nor a second stop talks to the sensor again
    out = run(l496, "binit", "sread 10", "nackat 1", "sstart 104000 2", "state", "sstop", "state",
              "sstart 104000 2", "sstop", "state", "sstop", "state")  # fmt: skip
    assert out[1].split()[:3] == ["0", "0", "0"]  # not started: nothing, index 0, t0 0
    assert out[3] == "-1 38461 00"
    assert out[4] == out[6] == "0 0 5 16 0"
    assert out[9] == out[11] == "0 0 13 24 0"
    # sample 0 one period after the start; no resync without an overrun; a bus error: nothing, and no retry
    # before the next period
    out = run(l496, "binit", "ticks", "sstart 104000 2", "run 1000000", "fill 5", "idle", "sread 100", "idle",
              "fill 3", "buserr 1", "sread 100", "idle", "sread 100")  # fmt: skip
    t_start = ints(out[1])[0]
    n, index, t0, _ = ints(out[6])
    assert (n, index) == (5, 0)
    assert 9615 < t0 - t_start < 9615 + 100  # 1e9 / 104000 mHz
    assert ints(out[10])[:2] == [0, 5]
    slept, wfis = ints(out[11])
    assert wfis == 1 and slept > 30_000
    assert ints(out[12])[:2] == [3, 5]


@pytest.mark.parametrize(
    ("fault", "mhz", "after"),
    [("pll", 80, 8_000_000), ("msi", 16, 8_000_000)],
)
def test_board_a_clock_switch_that_fails_falls_back_and_the_link_still_works(l496, fault, mhz, after):
    """A PLL that never locks: back to the clock before (8 MHz); MSI never ready: the way back and the 4 MHz
    fallback fail too, and the board goes on at what the registers show (still MSI 8 MHz); BRR follows, the
    wire's rate is right, every write legal.  (board_ticks stands still for the failed switch's time-outs.)"""
    out = run(l496, "binit", f"stuck {fault}", f"clk {mhz * 1000000}", "lwrite 100", "run 5000", "wire", "isr")
    ret, sysclk, hclk, brr, dticks, dus, viol = ints(out[2])
    assert (ret, sysclk, hclk, brr, viol) == (after, after, after, round(256 * after / 921600), 0)
    assert 0 <= dticks <= dus
    n, bad, bmin, bmax, _ = ints(out[5])
    assert (n, bad) == (100, 0) and abs(bmin - 921600) < 921600 * 0.02
    assert ints(out[6])[6] == 0


def test_board_reset_drains_the_link_first(l496):
    out = run(l496, "binit", "lwrite 500", "breset 1", "wire", "binit 0x10000000")
    assert out[2].startswith("reset 1 ") and out[2].endswith(" 0")  # nothing in flight at the reset
    assert ints(out[3])[:2] == [500, 0]
    assert out[4] == "8000000 8000000 1 1 0 108 461 1000 1048576 0"
