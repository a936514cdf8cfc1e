"""``estimate()``: memory, operations, time, power and energy of one training configuration.

The same functions time the emulated NUCLEO board (``time_per_sample_s``, ``time_per_batch_s`` and
``DeviceProfile.current_a``), so a virtual round and the estimate agree by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from estimator.arch import Arch, resolve_trainable
from estimator.memory import TrainingMemory, training_memory
from estimator.ops import BYTES_PER_VALUE, InferenceStats, OpCounts, _prod, count_ops, inference_stats
from estimator.profiles import DeviceProfile, get_profile

Trainable = str | Sequence[str] | frozenset[str]


def _names(arch: Arch, trainable: Trainable) -> frozenset[str]:
    if isinstance(trainable, frozenset):  # checked like a list: unknown or parameter-less names are refused by name
        trainable = sorted(trainable)
    return resolve_trainable(arch, trainable)


def mode_label(arch: Arch, trainable: Trainable) -> str:
    """'tl', 'full', 'last', 'none' when the set equals that mode, else the comma-joined names."""
    if isinstance(trainable, str) and trainable.strip().lower() in ("tl", "full", "last", "none"):
        return trainable.strip().lower()
    names = _names(arch, trainable)
    for mode in ("full", "tl", "last"):
        try:
            if resolve_trainable(arch, mode) == names:
                return mode
        except ValueError:
            continue
    if not names:
        return "none"
    return ",".join(l.name for l in arch.layers if l.name in names)


def time_per_sample_s(
    arch: Arch, trainable: Trainable, profile: DeviceProfile | str, clock_hz: float | None = None
) -> float:
    """Forward + backward of one window, plus its I/O, in seconds."""
    p = get_profile(profile)
    f = p.clock_hz if clock_hz is None else float(clock_hz)
    ops = count_ops(arch, _names(arch, trainable))
    return p.cycles_for(ops.per_sample) / f + p.io_s(_prod(arch.input_shape))


def inference_time_s(arch: Arch, n_windows: int, profile: DeviceProfile | str, clock_hz: float | None = None) -> float:
    """``n_windows`` windows forward only, nothing trains (a validation pass of the robust round, an evaluation),
    in seconds."""
    return int(n_windows) * time_per_sample_s(arch, frozenset(), profile, clock_hz)


def update_time_s(
    arch: Arch, trainable: Trainable, profile: DeviceProfile | str, clock_hz: float | None = None
) -> float:
    """One SGD parameter update (once per batch), in seconds."""
    p = get_profile(profile)
    f = p.clock_hz if clock_hz is None else float(clock_hz)
    ops = count_ops(arch, _names(arch, trainable))
    return p.cycles["update"] * ops.update["elementwise"] / f


def time_per_batch_s(
    arch: Arch, trainable: Trainable, batch_size: int, profile: DeviceProfile | str, clock_hz: float | None = None
) -> float:
    """``batch_size`` windows forward + backward (with I/O) and one parameter update, in seconds."""
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return int(batch_size) * time_per_sample_s(arch, trainable, profile, clock_hz) + update_time_s(
        arch, trainable, profile, clock_hz
    )


@dataclass(frozen=True)
class MemoryEstimate:
    training: TrainingMemory
    excluded_bytes: dict[str, int]  # not in the paper's figure; 'code_flash' is flash, the rest RAM
    ram_bytes: int
    firmware_reserve_bytes: int
    dataset_in_ram: bool

    @property
    def ram_needed_bytes(self) -> int:
        """Paper figure + firmware reserve (+ the stored local dataset when it is kept in RAM)."""
        extra = self.excluded_bytes.get("local_dataset", 0) if self.dataset_in_ram else 0
        return self.training.paper_bytes + self.firmware_reserve_bytes + extra

    @property
    def ram_needed_peak_bytes(self) -> int:
        extra = self.excluded_bytes.get("local_dataset", 0) if self.dataset_in_ram else 0
        return self.training.peak_bytes + self.firmware_reserve_bytes + extra

    @property
    def fits_ram(self) -> bool:
        return self.ram_needed_bytes <= self.ram_bytes

    def to_dict(self) -> dict:
        d = self.training.to_dict()
        d.update(
            excluded_bytes=dict(self.excluded_bytes),
            ram_bytes=self.ram_bytes,
            firmware_reserve_bytes=self.firmware_reserve_bytes,
            dataset_in_ram=self.dataset_in_ram,
            ram_needed_bytes=self.ram_needed_bytes,
            ram_needed_peak_bytes=self.ram_needed_peak_bytes,
            fits_ram=self.fits_ram,
        )
        return d


@dataclass(frozen=True)
class Estimate:
    arch_name: str
    input_size: int
    mode: str
    trainable: tuple[str, ...]
    batch_size: int
    profile: str
    clock_hz: float
    params: int
    trainable_params: int
    memory: MemoryEstimate
    ops: OpCounts
    inference: InferenceStats
    time_per_sample_s: float
    time_per_batch_s: float
    n_windows: int | None
    epochs: int
    batches_per_epoch: int | None
    time_per_epoch_s: float | None
    time_per_round_s: float | None
    current_a: float
    power_w: float
    notes: tuple[str, ...] = field(default=())

    @property
    def energy_per_batch_j(self) -> float:
        return self.power_w * self.time_per_batch_s

    @property
    def energy_per_epoch_j(self) -> float | None:
        return None if self.time_per_epoch_s is None else self.power_w * self.time_per_epoch_s

    @property
    def energy_per_round_j(self) -> float | None:
        return None if self.time_per_round_s is None else self.power_w * self.time_per_round_s

    @property
    def memory_kib(self) -> float:
        return self.memory.training.paper_kib

    @property
    def memory_peak_kib(self) -> float:
        return self.memory.training.peak_kib

    @property
    def memory_firmware_kib(self) -> float:
        """The ODL firmware's arena use for this round (model + plan; docs/firmware.md)."""
        return self.memory.training.firmware_kib

    def memory_for(self, accounting: str) -> float:
        """Training memory in KiB by accounting: 'paper', 'peak' or 'firmware'."""
        return {"paper": self.memory_kib, "peak": self.memory_peak_kib, "firmware": self.memory_firmware_kib}[
            accounting
        ]

    def row(self) -> dict:
        """Flat summary (the CLI's JSON row)."""

        def mj(x: float | None) -> float | None:
            return None if x is None else x * 1e3

        return {
            "arch": self.arch_name,
            "input_size": self.input_size,
            "mode": self.mode,
            "trainable": list(self.trainable),
            "batch_size": self.batch_size,
            "profile": self.profile,
            "clock_hz": self.clock_hz,
            "params": self.params,
            "trainable_params": self.trainable_params,
            "memory_kib": self.memory_kib,
            "memory_peak_kib": self.memory_peak_kib,
            "memory_firmware_kib": self.memory_firmware_kib,
            "ram_needed_kib": self.memory.ram_needed_bytes / 1024,
            "ram_kib": self.memory.ram_bytes / 1024,
            "fits_ram": self.memory.fits_ram,
            "macs_per_sample": self.ops.per_sample,
            "macs_per_sample_total": self.ops.macs_per_sample,
            "ops_per_batch": self.ops.per_batch(self.batch_size),
            "time_per_sample_s": self.time_per_sample_s,
            "time_per_batch_s": self.time_per_batch_s,
            "n_windows": self.n_windows,
            "epochs": self.epochs,
            "time_per_epoch_s": self.time_per_epoch_s,
            "time_per_round_s": self.time_per_round_s,
            "current_ma": self.current_a * 1e3,
            "power_mw": self.power_w * 1e3,
            "energy_per_batch_mj": mj(self.energy_per_batch_j),
            "energy_per_epoch_mj": mj(self.energy_per_epoch_j),
            "energy_per_round_mj": mj(self.energy_per_round_j),
        }

    def to_dict(self) -> dict:
        d = self.row()
        d["memory"] = self.memory.to_dict()
        d["ops"] = self.ops.to_dict()
        d["inference"] = self.inference.to_dict()
        d["notes"] = list(self.notes)
        return d


def estimate(
    arch: Arch,
    trainable: Trainable = "tl",
    batch_size: int = 32,
    profile: DeviceProfile | str = "paper",
    *,
    n_windows: int | None = None,
    epochs: int = 1,
    clock_hz: float | None = None,
    dataset_in_ram: bool = False,
) -> Estimate:
    """Estimate the cost of training ``arch`` with the ``trainable`` set on a device ``profile``.

    ``n_windows`` is the local training set size (windows per epoch); with it, time/energy per
    epoch and per round (``epochs`` epochs) are filled in.  The last batch may be partial: a round
    costs ``epochs · (n_windows · t_sample + ceil(n_windows / batch_size) · t_update)``.
    ``dataset_in_ram`` counts the stored local dataset against the RAM (it is never in the paper's
    figure).
    """
    p = get_profile(profile)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if n_windows is not None and int(n_windows) < 1:
        raise ValueError(f"n_windows must be >= 1, got {n_windows}")
    f = p.clock_hz if clock_hz is None else float(clock_hz)
    if not (math.isfinite(f) and f > 0):
        raise ValueError(f"clock_hz must be > 0, got {clock_hz}")
    names = _names(arch, trainable)
    ops = count_ops(arch, names)
    mem = training_memory(arch, names)
    window_values = _prod(arch.input_shape)
    t_sample = p.cycles_for(ops.per_sample) / f + p.io_s(window_values)
    t_update = p.cycles["update"] * ops.update["elementwise"] / f
    t_batch = batch_size * t_sample + t_update
    excluded = {
        "stack": p.stack_bytes,
        "firmware_static": p.static_bytes,
        "protocol_buffers": p.protocol_buffer_bytes,
        "code_flash": p.code_flash_bytes,
    }
    notes = ["memory is the paper's *estimated* accounting; Table III's time and power are measurements"]
    batches: int | None
    t_epoch: float | None
    t_round: float | None
    if n_windows is not None:
        excluded["local_dataset"] = int(n_windows) * window_values * BYTES_PER_VALUE
        batches = math.ceil(int(n_windows) / batch_size)
        t_epoch = int(n_windows) * t_sample + batches * t_update
        t_round = epochs * t_epoch
    else:
        batches = t_epoch = t_round = None
        if dataset_in_ram:
            notes.append("dataset_in_ram ignored: n_windows not given")
    memory = MemoryEstimate(
        mem, excluded, int(p.ram_bytes), p.firmware_reserve_bytes, bool(dataset_in_ram and n_windows is not None)
    )
    return Estimate(
        arch_name=arch.name,
        input_size=arch.input_size,
        mode=mode_label(arch, names if not isinstance(trainable, str) else trainable),
        trainable=tuple(l.name for l in arch.layers if l.name in names),
        batch_size=int(batch_size),
        profile=p.name,
        clock_hz=f,
        params=arch.params,
        trainable_params=arch.param_count(names, trainable_only=True) if names else 0,
        memory=memory,
        ops=ops,
        inference=inference_stats(arch),
        time_per_sample_s=t_sample,
        time_per_batch_s=t_batch,
        n_windows=None if n_windows is None else int(n_windows),
        epochs=int(epochs),
        batches_per_epoch=batches,
        time_per_epoch_s=t_epoch,
        time_per_round_s=t_round,
        current_a=p.current_a(f),
        power_w=p.power_w(f),
        notes=tuple(notes),
    )
