"""Training memory: the paper's accounting (Sec. III-B) and a liveness/peak accounting beside it.

Paper accounting (reproduces Table III within ±2 KiB, see docs/estimator.md and table3-analysis §1.2):

    bytes = 4 · [ P_all + P_trained + input window + Σ_layers out_ℓ + E_trained ]

* ``P_all``: every parameter is resident in RAM, frozen ones too (BatchNorm statistics included);
* ``P_trained``: one gradient accumulator per trained parameter (gradient accumulation, plain SGD);
* every layer output has its own buffer, activation layers included, plus the one input window;
* ``E_trained``: the error buffers ``dL/da`` of the layers from the first trained layer up, except
  for layers that rewrite their error in place (relu, softmax, dropout, flatten), plus a zero-padded
  copy ``(L_out + 2(K−1))·F`` (·W for conv2d) of the error of every conv whose input gradient is
  computed (the paper's Eq. 5).  The first trained layer computes no input gradient.

Peak accounting (AIfES / TFLM style): parameters and gradient accumulators as above, but activation
and error buffers live only while needed.  In the forward pass a layer's input is freed after use
unless the backward pass needs it (input of a trained conv/dense/batchnorm, relu output, softmax
output, max-pool input); relu/dropout/flatten/batchnorm/softmax work in place.  In the backward pass
only the current output error, the input error being written (and a conv's padded copy) are live,
and saved activations are freed once consumed.  The figure is the maximum over all steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

from estimator.arch import Arch, resolve_trainable
from estimator.ops import BYTES_PER_VALUE, CONV_KINDS, INPLACE_KINDS, _prod, first_trained_index

# Layers whose backward rewrites the error in place (no separate error buffer).
_ERROR_INPLACE = frozenset({"relu", "softmax", "dropout", "flatten"})


@dataclass(frozen=True)
class TrainingMemory:
    """Training RAM in bytes (float32), both accountings, with a breakdown of the paper's figure."""

    paper_bytes: int
    peak_bytes: int
    params_bytes: int
    gradients_bytes: int
    input_bytes: int
    activations_bytes: int  # layer outputs (paper: all of them)
    errors_bytes: int  # error buffers incl. padded copies (paper)
    peak_buffers_bytes: int  # activation + error part of the peak figure

    @property
    def paper_kib(self) -> float:
        return self.paper_bytes / 1024

    @property
    def peak_kib(self) -> float:
        return self.peak_bytes / 1024

    def to_dict(self) -> dict:
        return {
            "paper_bytes": self.paper_bytes,
            "paper_kib": self.paper_kib,
            "peak_bytes": self.peak_bytes,
            "peak_kib": self.peak_kib,
            "paper_breakdown_bytes": {
                "parameters": self.params_bytes,
                "gradients": self.gradients_bytes,
                "input_window": self.input_bytes,
                "layer_outputs": self.activations_bytes,
                "errors": self.errors_bytes,
            },
            "peak_breakdown_bytes": {
                "parameters": self.params_bytes,
                "gradients": self.gradients_bytes,
                "live_buffers_peak": self.peak_buffers_bytes,
            },
        }


def training_memory(arch: Arch, trainable: str | Sequence[str] | frozenset[str] = "tl") -> TrainingMemory:
    names = trainable if isinstance(trainable, frozenset) else resolve_trainable(arch, trainable)
    return _memory_cached(arch, frozenset(names))


def _needs_saved_input(kind: str, trained: bool) -> bool:
    """Does the backward of this layer read its forward *input*?"""
    if kind in CONV_KINDS or kind in ("dense", "batchnorm"):
        return trained  # weight / gamma gradients need x
    return kind in ("maxpool1d", "maxpool2d", "gmp1d", "gmp2d")  # argmax routing


def _needs_saved_output(kind: str) -> bool:
    return kind in ("relu", "softmax")  # relu mask, softmax a - t


def _memory(arch: Arch, names: frozenset[str]) -> TrainingMemory:
    """The memory model (undecorated, so that `make mutation` can mutate it; callers use the cached one)."""
    in_shapes = arch.input_shapes()
    out_shapes = arch.shapes()
    n_in = [_prod(s) for s in in_shapes]
    n_out = [_prod(s) for s in out_shapes]
    params = arch.params
    grads = arch.param_count(names, trainable_only=True) if names else 0
    i0 = first_trained_index(arch, names)
    layers = arch.layers

    # --- paper accounting ---------------------------------------------------------------------
    inp = n_in[0]
    outs = sum(n_out)
    errors = 0
    if i0 is not None:
        for i in range(i0, len(layers)):
            layer = layers[i]
            if layer.kind not in _ERROR_INPLACE:
                errors += n_out[i]
            if layer.kind in CONV_KINDS and i > i0:
                s = out_shapes[i]
                errors += (s[0] + 2 * (layer.kernel - 1)) * _prod(s[1:])
    paper = (params + grads + inp + outs + errors) * BYTES_PER_VALUE

    # --- liveness / peak accounting -----------------------------------------------------------
    # Buffer of tensor j (j = -1: input window, j = i: output of layer i); in-place layers alias.
    n = len(layers)
    buf_of = {-1: -1}
    for i, layer in enumerate(layers):
        buf_of[i] = buf_of[i - 1] if layer.kind in INPLACE_KINDS else i
    size = {-1: n_in[0], **{i: n_out[i] for i in range(n) if buf_of[i] == i}}
    # Which buffers must survive until the backward step of which layer (latest user).
    saved_until: dict[int, int] = {}  # buffer -> lowest layer index whose backward reads it
    if i0 is not None:
        for i in range(i0, n):
            layer = layers[i]
            trained = layer.name in names
            if _needs_saved_input(layer.kind, trained):
                b = buf_of[i - 1]
                saved_until[b] = min(saved_until.get(b, i), i)
            if _needs_saved_output(layer.kind):
                b = buf_of[i]
                saved_until[b] = min(saved_until.get(b, i), i)
    peak = 0
    live: dict[int, int] = {-1: size[-1]}
    for i, layer in enumerate(layers):
        b_in, b_out = buf_of[i - 1], buf_of[i]
        if b_out != b_in:
            live[b_out] = size[b_out]
        peak = max(peak, sum(live.values()))
        if b_out != b_in and b_in not in saved_until:
            live.pop(b_in, None)
    if i0 is not None:
        # Forward result no longer needed unless saved; start backward with the loss error.
        for b in list(live):
            if b not in saved_until:
                live.pop(b)
        err = n_out[-1]
        for i in range(n - 1, i0 - 1, -1):
            layer = layers[i]
            step = err
            if i > i0:
                if layer.kind in _ERROR_INPLACE or layer.kind == "batchnorm":
                    new_err = err
                else:
                    new_err = n_in[i]
                    step += new_err
                    if layer.kind in CONV_KINDS:
                        s = out_shapes[i]
                        step += (s[0] + 2 * (layer.kernel - 1)) * _prod(s[1:])
            else:
                new_err = 0
            peak = max(peak, sum(live.values()) + step)
            for b in [b for b, j in saved_until.items() if j == i]:
                # freed once its last reader has run (buffers read by several layers stay until the lowest)
                live.pop(b, None)
            err = new_err
    peak_bytes = (params + grads + peak) * BYTES_PER_VALUE
    return TrainingMemory(
        paper_bytes=paper,
        peak_bytes=peak_bytes,
        params_bytes=params * BYTES_PER_VALUE,
        gradients_bytes=grads * BYTES_PER_VALUE,
        input_bytes=inp * BYTES_PER_VALUE,
        activations_bytes=outs * BYTES_PER_VALUE,
        errors_bytes=errors * BYTES_PER_VALUE,
        peak_buffers_bytes=peak * BYTES_PER_VALUE,
    )


_memory_cached = lru_cache(maxsize=1024)(_memory)
