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

Firmware accounting: what the ODL firmware (firmware/core/model.c: plan_lower) holds in its arena for a
round besides the stored windows — the model blob (descriptor + every parameter) + the round's plan
(input window, ping-pong buffers for the frozen layers before the first trained one, one output per
layer from it on except where the firmware works in place, two error buffers, gradient accumulators,
folded conv/affine BatchNorm parameters, 8-byte alignment slack; a dense head behind frozen layers — TL,
last — runs over 4 windows at once, so its input, outputs and error buffers hold 4 windows).  ROUND_INFO's ``mem_bytes`` on the
firmware; docs/firmware.md "Memory plan".

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
from typing import Any, Sequence

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
    firmware_bytes: int = 0  # the ODL firmware's arena use: model blob + round plan (one phase)

    @property
    def paper_kib(self) -> float:
        return self.paper_bytes / 1024

    @property
    def peak_kib(self) -> float:
        return self.peak_bytes / 1024

    @property
    def firmware_kib(self) -> float:
        return self.firmware_bytes / 1024

    def to_dict(self) -> dict:
        return {
            "paper_bytes": self.paper_bytes,
            "paper_kib": self.paper_kib,
            "peak_bytes": self.peak_bytes,
            "peak_kib": self.peak_kib,
            "firmware_bytes": self.firmware_bytes,
            "firmware_kib": self.firmware_kib,
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
        firmware_bytes=model_blob_bytes(arch) + firmware_plan_bytes(arch, names),
    )


# --- the ODL firmware's plan (mirror of firmware/core/model.c: plan_lower) -----------------------------
DESCRIPTOR_HEADER_BYTES = 16  # docs/protocol.md §5.1
DESCRIPTOR_LAYER_BYTES = 32


FIRMWARE_HEAD_GROUP = 4  # windows the firmware's grouped dense head runs at once (model.h ODL_HEAD_GROUP)


def model_blob_bytes(arch: Arch) -> int:
    """Bytes the ODL firmware's store holds for the model blob: descriptor, padding to 8 bytes so the weights
    are float-aligned, every parameter as float32, the whole rounded up to the store's 8-byte granule
    (firmware/core/proto.c, store.c)."""
    desc = DESCRIPTOR_HEADER_BYTES + DESCRIPTOR_LAYER_BYTES * len(arch.layers)
    return _round8(_round8(desc) + BYTES_PER_VALUE * arch.params)


def _round8(n: int) -> int:
    return (n + 7) & ~7


def firmware_plan_bytes(arch: Arch, names: frozenset[str]) -> int:
    """Bytes the ODL firmware plans for one phase of a round training ``names`` (frozenset() = inference)."""
    ins, outs = arch.input_shapes(), arch.shapes()
    rt: list[dict[str, Any]] = []  # the firmware's runtime layers
    for i, layer in enumerate(arch.layers):
        trained = layer.name in names
        k = layer.kind
        if k == "batchnorm" and rt:
            prev = rt[-1]
            # folded into the conv just before it, unless the BN is trained while that conv is frozen
            if (
                prev["kind"] == "conv"
                and not prev["folded"]
                and prev["src"] == i - 1
                and not (trained and not prev["trainable"])
            ):
                prev["folded"] = prev["use_bias"] = True
                continue
        s_in, s_out = ins[i], outs[i]
        r: dict[str, Any] = {
            "src": i,
            "trainable": trained,
            "in_n": _prod(s_in),
            "out_n": _prod(s_out),
            "folded": False,
        }
        r["use_bias"] = bool(layer.use_bias)
        if k in CONV_KINDS:
            r.update(kind="conv", wts=layer.kernel * s_in[-1] * layer.filters, F=layer.filters, in_place=False)
        elif k == "dense":
            r.update(kind="dense", wts=_prod(s_in) * layer.units, F=layer.units, in_place=False)
        elif k == "batchnorm":
            r.update(kind="bn", C=_prod(s_in) if len(s_in) == 1 else s_in[-1], in_place=not trained)
        elif k in ("relu", "flatten", "dropout"):
            r.update(kind=k, in_place=True)
        else:  # softmax, poolings, global poolings
            r.update(kind=k, in_place=False)
        rt.append(r)
    n = len(rt)
    first = next((j for j, r in enumerate(rt) if r["trainable"]), n)
    # a dense head behind frozen layers runs over FIRMWARE_HEAD_GROUP windows at once: its buffers, its
    # input (the last frozen layer's output) and the error buffers hold one slot per window
    group, lastw = 1, -1
    writers_before = [j for j in range(first) if not rt[j]["in_place"]]
    if (
        first < n
        and rt[first]["kind"] == "dense"
        and writers_before
        and all(r["kind"] in ("dense", "relu", "flatten", "dropout", "softmax") for r in rt[first:])
    ):
        group, lastw = FIRMWARE_HEAD_GROUP, writers_before[-1]
    f = rt[0]["in_n"] if rt else 0  # the input window
    pp = e = 0
    for j, r in enumerate(rt):
        if r["kind"] == "conv" and r["folded"]:
            f += r["wts"] + r["F"]  # folded kernel and bias
        if r["kind"] == "bn":
            f += 2 * r["C"]  # scale, shift
        if r["trainable"]:
            if r["kind"] in ("conv", "dense"):
                g = r["wts"] + (r["F"] if r["use_bias"] else 0)
            else:  # batchnorm: gamma, beta
                g = 2 * r["C"]
            f += g
        if not r["in_place"]:
            if j == lastw:
                f += group * r["out_n"]
            elif j < first:
                pp = max(pp, r["out_n"])
            else:
                f += group * r["out_n"]
        if j >= first:
            e = max(e, r["out_n"])
            if j > first:  # it passes an error back
                e = max(e, r["in_n"])
    writers = sum(1 for j, r in enumerate(rt[:first]) if not r["in_place"] and j != lastw)
    f += (2 if writers > 1 else 1 if writers else 0) * pp
    f += 2 * group * (e if first < n else 0)
    return BYTES_PER_VALUE * f + 8 * (2 * n + 8)


def firmware_round_bytes(
    arch: Arch, trainable: str | Sequence[str] | frozenset[str], warmup: bool = False, robust: dict | None = None
) -> int:
    """ROUND_INFO's mem_bytes on the ODL firmware: model blob + the largest plan of the round's phases
    (the warm-up phase trains the last Dense layer) + a robust round's buffer (``robust``: the keyword
    arguments of :func:`robust_round_bytes` besides arch/trainable/warmup).  The firmware keeps only the
    best weights there, after the plan (8-aligned), as the canonical trainable tensors of the round's layers
    (kernel, bias if the layer has one, BatchNorm gamma and beta); its confusion counts are static and it
    refuses L2-SP (docs/firmware.md, "The robust round")."""
    names = trainable if isinstance(trainable, frozenset) else resolve_trainable(arch, trainable)
    plan = firmware_plan_bytes(arch, frozenset(names))
    if warmup:
        plan = max(plan, firmware_plan_bytes(arch, resolve_trainable(arch, "last")))
    if robust and robust.get("validate", True) and robust.get("restore_best", True):
        both = frozenset(names) | (resolve_trainable(arch, "last") if warmup else frozenset())
        plan = _round8(plan) + _round8(BYTES_PER_VALUE * canonical_trained_values(arch, both))
    return model_blob_bytes(arch) + plan


def canonical_trained_values(arch: Arch, names: frozenset[str]) -> int:
    """Trainable values of the layers ``names`` in the canonical (Keras) layout: kernel + bias if the layer
    has one, BatchNorm gamma + beta (its moving statistics never change in a round)."""
    shapes = arch.param_shapes()
    n = 0
    for layer in arch.layers:
        if layer.name in names and layer.name in shapes:
            arrs = shapes[layer.name]
            n += 2 * _prod(arrs[0]) if layer.kind == "batchnorm" else sum(_prod(a) for a in arrs)
    return n


def trained_values(arch: Arch, names: frozenset[str]) -> int:
    """Values SGD updates when ``names`` are trained, in the runtime layout: conv/dense kernel + bias (a
    conv followed by a BatchNorm it folds trains a bias even without one), BatchNorm gamma + beta."""
    shapes = arch.param_shapes()
    n = 0
    for i, layer in enumerate(arch.layers):
        if layer.name not in names or layer.name not in shapes:
            continue
        arrs = shapes[layer.name]
        if layer.kind == "batchnorm":
            n += 2 * _prod(arrs[0])
            continue
        n += sum(_prod(a) for a in arrs)
        nxt = arch.layers[i + 1] if i + 1 < len(arch.layers) else None
        if not layer.use_bias and nxt is not None and nxt.kind == "batchnorm":
            n += _prod(arrs[0][-1:])
    return n


def robust_round_bytes(
    arch: Arch,
    trainable: str | Sequence[str] | frozenset[str],
    warmup: bool = False,
    *,
    validate: bool = True,
    restore_best: bool = True,
    l2sp: bool = False,
) -> int:
    """What a robust round (protocol v2, docs/protocol.md §6) holds besides a plain one, float32, each
    buffer 8-byte aligned: the best epoch's weights (``restore_best``: every value the round's phases
    train), the L2-SP anchor (``l2sp``: the main phase's values), the validation confusion counts
    (``validate``: N x N u16).  The validation windows are part of the stored dataset."""
    names = trainable if isinstance(trainable, frozenset) else resolve_trainable(arch, trainable)
    names = frozenset(names)
    both = names | (resolve_trainable(arch, "last") if warmup else frozenset())
    b = 0
    if restore_best:
        b += _round8(BYTES_PER_VALUE * trained_values(arch, both))
    if l2sp:
        b += _round8(BYTES_PER_VALUE * trained_values(arch, names))
    if validate:
        b += _round8(2 * arch.n_classes * arch.n_classes)
    return b


_memory_cached = lru_cache(maxsize=1024)(_memory)
