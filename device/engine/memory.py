"""How many float32 values the firmware layout of the engine needs (one training window in RAM,
per-sample gradient accumulation), so the emulated board can refuse rounds that do not fit its SRAM.

This is the engine's own buffer inventory, following the paper's "sum of saved variables" accounting
(no buffer reuse): every parameter, one gradient accumulator per trained runtime parameter, one
buffer per runtime layer output (activation layers included) plus the input window, and, for the
layers taking part in the backward pass, one error buffer per layer output plus a zero-padded copy of
the error (``(L_out + 2(K-1))·W·F``) for every conv that computes its input gradient.  Views (flatten,
dropout) own no buffer.  Not included: the local dataset, code, stack, HAL/UART buffers.  The
estimator's memory model is the reference for reporting; this helper is a conservative guard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from estimator.arch import Arch

from .graph import VIEW_KINDS, lower

SRAM_BYTES = 320 * 1024  # STM32L496ZG


@dataclass(frozen=True)
class MemoryReport:
    params: int  # all parameters in RAM (BN statistics included; folded BN counted as its conv)
    grads: int  # gradient accumulators of the trained runtime parameters
    activations: int  # input window + one buffer per runtime layer output
    errors: int  # error buffers of the backward pass (padded conv copies included)
    bytes_per_value: int = 4
    per_layer: dict = field(default_factory=dict, compare=False)

    @property
    def floats(self) -> int:
        return self.params + self.grads + self.activations + self.errors

    @property
    def bytes(self) -> int:
        return self.floats * self.bytes_per_value

    @property
    def kib(self) -> float:
        return self.bytes / 1024.0

    def fits(self, limit_bytes: int = SRAM_BYTES) -> bool:
        return self.bytes <= limit_bytes


def memory_report(arch: Arch, trainable: "str | Sequence[str] | None" = "full", bn: str = "fold") -> MemoryReport:
    """Floats the engine's per-sample (firmware) layout needs for ``trainable`` (see module doc)."""
    g = lower(arch, trainable, bn)
    params = 0
    for rl in g.layers:
        if rl.kind in ("conv", "dense"):
            params += rl.n_params
        elif rl.kind == "bn":
            params += 2 * rl.n_params  # gamma, beta + moving mean, variance
    grads = g.n_trainable_params
    acts = _prod(arch.input_shape)
    errors = 0
    per_layer: dict[str, dict[str, int]] = {}
    for rl in g.layers:
        if rl.kind in VIEW_KINDS:
            continue
        a = rl.size_out
        e = 0
        if g.training and g.in_backward(rl.index) and rl.kind != "softmax":
            e = a
        if g.training and g.needs_dx(rl.index) and rl.kind == "conv":
            L_out, W, F = rl.out_shape
            e += (L_out + 2 * (rl.layer.kernel - 1)) * W * F
        acts += a
        errors += e
        per_layer[rl.name] = {"activation": a, "error": e}
    return MemoryReport(params, grads, acts, errors, per_layer=per_layer)


def _prod(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n
