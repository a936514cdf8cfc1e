"""Device profiles: clock, cycles per operation type, I/O cost, power model and RAM of a board.

A profile turns the operation counts of :mod:`estimator.ops` into time and power:

* time per sample  = Σ_op cycles[op] · N_op / clock_hz + io_s_per_window + io_s_per_value · (window values)
* time per batch   = batch_size · time per sample + cycles['update'] · N_update / clock_hz
* supply current   = i0_a + k_a_per_hz · clock_hz,   power = voltage_v · current

Presets (:func:`get_profile`), all on the STM32L496ZG (Cortex-M4F, 320 KiB SRAM, 1 MiB flash):

``paper``
    8 MHz and the four per-op cycle costs that reproduce Table III's ten measured batch times
    exactly (least squares on the ten cells, forward conv / conv weight gradient / conv input
    gradient / Dense; table3-analysis §1.3 and §1.6: 11.1 / 17.9 / 9.2 / 6.6 cycles per MAC).
    Elementwise and update work is absorbed in those costs (0 cycles), no I/O term (the fitted
    lines cross zero at T ≈ 4).  Power: I = 75.2 µA + 91 µA/MHz · f, i.e. 0.803 mA = 2.65 mW at
    3.3 V and 8 MHz (the paper's measured power); 91 µA/MHz is the low end of the L4 Run-mode range
    quoted in table3-analysis §0/§1.6.
``odl-firmware``
    8 MHz (the clock the ODL firmware boots at) and the cycle costs of this project's firmware: a fit of the
    paper CNN's ten batches as the firmware runs them under QEMU's Cortex-M4 cycle model
    (benchmarks/firmware_cycles.py): conv forward 2.81, conv backward 3.13, Dense 5.44 cycles per MAC (the
    Dense cost also carries the per-window work the MAC counts leave out), within 8.4 % of every cell.  The
    firmware is 3.6–4.2× faster than the paper's; the app's default (its boards run the ODL firmware), where
    the ``paper`` preset stays the CLI's (the paper's reproduction).  Same power model.
``l496-80mhz``
    80 MHz with a generic library speed: 9 cycles/MAC for every MAC type (X-CUBE-AI's documented
    ~9 cycles/MACC on Cortex-M4, UM2526, table3-analysis §1.5/§3), 4 cycles per elementwise op and
    per parameter update (load/op/store in plain C).  Same power model: ≈ 24.3 mW at 80 MHz.
``l496-80mhz-optimized``
    80 MHz with CMSIS-style register-blocked kernels: 3 cycles/MAC (a VFMA-bound loop,
    table3-analysis §1.5), 2 cycles per elementwise op and per update.  Same power model.

All presets reserve 24 KiB of RAM for the firmware outside the training buffers (stack 8 KiB,
HAL/driver/protocol static data 12 KiB, UART protocol buffers 4 KiB); these items are *not* in the
paper's figure and are reported separately.  Calibrated per-board profiles are JSON files saved with
:func:`save_profile` under a directory the caller chooses (the app uses platformdirs' user data dir).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Mapping

from estimator.arch import OP_TYPES

COST_KEYS = (*OP_TYPES, "update")  # cycles per op type, plus per trained parameter per SGD step
PROFILE_SCHEMA = 1
KIB = 1024


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the field or file."""


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    clock_hz: float
    cycles: dict[str, float]  # COST_KEYS -> cycles per op
    voltage_v: float = 3.3
    i0_a: float = 75.2e-6  # static current (A)
    k_a_per_hz: float = 91e-12  # dynamic current (A per Hz) = 91 µA/MHz
    io_s_per_window: float = 0.0  # fixed I/O time per training window (s)
    io_s_per_value: float = 0.0  # I/O time per input value of a window (s), e.g. UART streaming
    ram_bytes: int = 320 * KIB
    flash_bytes: int = 1024 * KIB
    stack_bytes: int = 8 * KIB
    static_bytes: int = 12 * KIB  # HAL, drivers, .data/.bss outside the training buffers
    protocol_buffer_bytes: int = 4 * KIB
    code_flash_bytes: int = 96 * KIB  # firmware image (flash, not RAM)
    description: str = ""
    source: str = ""
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.clock_hz) and self.clock_hz > 0):
            raise ProfileError(f"profile {self.name!r}: clock_hz must be > 0, got {self.clock_hz}")
        unknown = set(self.cycles) - set(COST_KEYS)
        if unknown:
            raise ProfileError(
                f"profile {self.name!r}: unknown op types in cycles: {sorted(unknown)} (known: {', '.join(COST_KEYS)})"
            )
        full = {k: float(self.cycles.get(k, 0.0)) for k in COST_KEYS}
        bad = [k for k, v in full.items() if not (math.isfinite(v) and v >= 0)]
        if bad:
            raise ProfileError(f"profile {self.name!r}: cycles must be finite and >= 0 (bad: {bad})")
        object.__setattr__(self, "cycles", full)
        for fname in ("voltage_v", "i0_a", "k_a_per_hz", "io_s_per_window", "io_s_per_value"):
            v = getattr(self, fname)
            if not (math.isfinite(v) and v >= 0):
                raise ProfileError(f"profile {self.name!r}: {fname} must be finite and >= 0, got {v}")
        for fname in (
            "ram_bytes",
            "flash_bytes",
            "stack_bytes",
            "static_bytes",
            "protocol_buffer_bytes",
            "code_flash_bytes",
        ):
            if int(getattr(self, fname)) < 0:
                raise ProfileError(f"profile {self.name!r}: {fname} must be >= 0")

    # --- power ------------------------------------------------------------------------------------
    def current_a(self, clock_hz: float | None = None) -> float:
        """Supply current while computing, I = I0 + k·f (A)."""
        f = self.clock_hz if clock_hz is None else float(clock_hz)
        return self.i0_a + self.k_a_per_hz * f

    def power_w(self, clock_hz: float | None = None) -> float:
        return self.voltage_v * self.current_a(clock_hz)

    # --- time ------------------------------------------------------------------------------------
    def cycles_for(self, ops: Mapping[str, float]) -> float:
        """Cycles of a bag of operations keyed by ``OP_TYPES`` (and optionally ``update``)."""
        return sum(self.cycles[k] * float(v) for k, v in ops.items() if k in self.cycles)

    def io_s(self, window_values: int) -> float:
        return self.io_s_per_window + self.io_s_per_value * window_values

    @property
    def firmware_reserve_bytes(self) -> int:
        """RAM taken by the firmware outside the training buffers (stack + static + protocol)."""
        return int(self.stack_bytes + self.static_bytes + self.protocol_buffer_bytes)

    def with_clock(self, clock_hz: float) -> "DeviceProfile":
        """Same cycle costs and power model at another clock (cycles/op assumed clock-independent)."""
        return replace(self, clock_hz=float(clock_hz), name=f"{self.name}@{clock_hz / 1e6:g}MHz")

    # --- serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["schema"] = PROFILE_SCHEMA
        return d

    @classmethod
    def from_dict(cls, d: Mapping, where: str = "profile") -> "DeviceProfile":
        if not isinstance(d, Mapping):
            raise ProfileError(f"{where}: expected a JSON object, got {type(d).__name__}")
        d = dict(d)
        schema = d.pop("schema", PROFILE_SCHEMA)
        if schema != PROFILE_SCHEMA:
            raise ProfileError(f"{where}: unsupported profile schema {schema} (this version reads {PROFILE_SCHEMA})")
        known = set(cls.__dataclass_fields__)
        extra = set(d) - known
        if extra:
            raise ProfileError(f"{where}: unknown fields {sorted(extra)}")
        for req in ("name", "clock_hz", "cycles"):
            if req not in d:
                raise ProfileError(f"{where}: missing field {req!r}")
        try:
            return cls(**d)
        except TypeError as exc:
            raise ProfileError(f"{where}: {exc}") from exc


def _paper_cycles() -> dict[str, float]:
    dense = 6.607
    return {
        "conv_fwd": 11.086,
        "conv_dw": 17.854,
        "conv_dx": 9.240,
        "dense_fwd": dense,
        "dense_dw": dense,
        "dense_dx": dense,
        "elementwise": 0.0,
        "update": 0.0,
    }


#: Cycles per batch of 32 of the paper CNN on the ODL firmware (QEMU's Cortex-M4 cycle model; firmware 1.1.0),
#: ``benchmarks/firmware_cycles.py --json``: the records the ``odl-firmware`` preset is fitted to.
ODL_FIRMWARE_CYCLES: dict[tuple[int, str], int] = {
    (20, "tl"): 5_169_778,
    (20, "full"): 16_825_283,
    (40, "tl"): 11_181_255,
    (40, "full"): 35_685_170,
    (60, "tl"): 17_630_512,
    (60, "full"): 54_534_476,
    (80, "tl"): 23_660_656,
    (80, "full"): 73_419_852,
    (100, "tl"): 30_091_627,
    (100, "full"): 91_916_071,
}


def _odl_firmware_cycles() -> dict[str, float]:
    """``calibrate`` of :data:`ODL_FIRMWARE_CYCLES` at 8 MHz, base ``paper``, grouping ``fwd-bwd-dense`` (the
    finest the paper CNN identifies without a zero cost: its conv dW and dX MACs are in the same ratio at every
    T), rounded; tests/estimator/test_estimator.py re-fits it."""
    conv_bwd, dense = 3.1303, 5.4449
    return {
        "conv_fwd": 2.8090,
        "conv_dw": conv_bwd,
        "conv_dx": conv_bwd,
        "dense_fwd": dense,
        "dense_dw": dense,
        "dense_dx": dense,
        "elementwise": 0.0,
        "update": 0.0,
    }


def _uniform_cycles(mac: float, elementwise: float, update: float) -> dict[str, float]:
    c = {k: mac for k in OP_TYPES}
    c["elementwise"] = elementwise
    c["update"] = update
    return c


PRESETS: dict[str, DeviceProfile] = {
    p.name: p
    for p in (
        DeviceProfile(
            name="paper",
            clock_hz=8e6,
            cycles=_paper_cycles(),
            description="STM32L496ZG as measured in the paper (Table III): ~8 MHz, plain C kernels",
            source="Per-op cycle costs: exact least-squares fit of Table III's 10 batch times with the op counts of "
            "estimator.ops (table3-analysis.md §1.3, §1.6). Clock inferred from 2.65 mW at 3.3 V (§0). "
            "Power: I0 = 75.2 µA, k = 91 µA/MHz, giving 2.65 mW at 8 MHz.",
        ),
        DeviceProfile(
            name="odl-firmware",
            clock_hz=8e6,
            cycles=_odl_firmware_cycles(),
            description="STM32L496ZG running the ODL firmware (this project's, firmware/): 8 MHz as it boots",
            source="Per-op cycle costs: least-squares fit (fwd-bwd-dense) of the paper CNN's 10 batches (T = 20..100, "
            "TL and Full) as the ODL firmware runs them under QEMU's Cortex-M4 cycle model "
            "(benchmarks/firmware_cycles.py; within 8.4 %, RMS 3.1 %; a real L496 adds flash wait states). "
            "Power model as 'paper'.",
        ),
        DeviceProfile(
            name="l496-80mhz",
            clock_hz=80e6,
            cycles=_uniform_cycles(9.0, 4.0, 4.0),
            description="STM32L496ZG at 80 MHz with generic library kernels",
            source="9 cycles/MAC: X-CUBE-AI's documented ~9 cycles/MACC on Cortex-M4 (UM2526; table3-analysis §1.5, §3); "
            "4 cycles per elementwise op / parameter update (load, op, store). Power model as 'paper'.",
        ),
        DeviceProfile(
            name="l496-80mhz-optimized",
            clock_hz=80e6,
            cycles=_uniform_cycles(3.0, 2.0, 2.0),
            description="STM32L496ZG at 80 MHz with CMSIS-style register-blocked fp32 kernels",
            source="3 cycles/MAC: VFMA-bound inner loop on Cortex-M4F (table3-analysis §1.5); 2 cycles per "
            "elementwise op / update. Power model as 'paper'.",
        ),
    )
}

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")


def list_profiles(directory: str | Path | None = None) -> list[str]:
    """Preset names, then the names of profiles saved in ``directory``."""
    names = list(PRESETS)
    if directory is not None and Path(directory).is_dir():
        names += sorted(p.stem for p in Path(directory).glob("*.json") if p.stem not in PRESETS)
    return names


def get_profile(name: str | DeviceProfile, directory: str | Path | None = None) -> DeviceProfile:
    """A preset by name, a saved per-board profile (``<directory>/<name>.json``) or a JSON file path."""
    if isinstance(name, DeviceProfile):
        return name
    if name in PRESETS:
        return PRESETS[name]
    candidates = []
    if directory is not None and _SAFE_NAME.match(str(name)):
        candidates.append(Path(directory) / f"{name}.json")
    if str(name).endswith(".json"):
        candidates.append(Path(name))
    for path in candidates:
        if path.is_file():
            return load_profile(path)
    where = f" or in {directory}" if directory is not None else ""
    raise ProfileError(f"unknown device profile {name!r}: not a preset ({', '.join(PRESETS)}){where}")


def load_profile(path: str | Path) -> DeviceProfile:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"cannot read profile file {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    return DeviceProfile.from_dict(data, where=str(path))


def save_profile(profile: DeviceProfile, directory: str | Path, board_id: str | None = None) -> Path:
    """Write ``profile`` as ``<directory>/<board_id or profile.name>.json`` (atomically) and return the path."""
    stem = board_id or profile.name
    if not _SAFE_NAME.match(stem):
        raise ProfileError(f"board id {stem!r} is not a safe file name (letters, digits, . _ @ -; max 100)")
    if stem in PRESETS:
        raise ProfileError(f"board id {stem!r} would shadow a preset; choose another name")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(profile.to_dict(), indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(path)
    return path
