"""Architecture descriptor: a plain, JSON-able layer list shared by the estimator, the training
engine (``device.engine``), the model importers (``app.core.models``) and the board protocol.

Conventions (channels-last, as Keras):

* 1-D models take windows of shape ``(T, C)`` (the paper's 1D-CNN: ``(T, 3)``).
* ST model-zoo models take ``(T, 3, 1)``: Conv2D with ``(k, 1)`` kernels runs along time only and the
  same filter is applied to each of the 3 axis columns.  Shapes are then ``(L, W, C)``.
* Fused activations are split into their own layer (``conv1d`` + ``relu``), which is also how the
  paper's memory accounting counts them (one buffer per layer output, activations included).

Weights live outside the descriptor, in Keras layout, keyed by layer name:

============  ==============================================================
kind          weights (Keras order and layout)
============  ==============================================================
conv1d        kernel ``(K, C_in, F)``, bias ``(F,)`` (if ``use_bias``)
conv2d        kernel ``(K, 1, C_in, F)``, bias ``(F,)`` (if ``use_bias``)
dense         kernel ``(N_in, units)``, bias ``(units,)`` (if ``use_bias``)
batchnorm     gamma, beta, moving_mean, moving_variance, each ``(C,)``
============  ==============================================================
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

# Layer kinds and what each needs.
PARAM_KINDS = frozenset({"conv1d", "conv2d", "dense", "batchnorm"})
KINDS = frozenset(
    {
        "conv1d",  # filters, kernel; 'valid', stride 1
        "conv2d",  # filters, kernel -> (kernel, 1) kernel; 'valid', stride 1
        "dense",  # units
        "relu",
        "softmax",
        "avgpool1d",  # pool, stride ('valid')
        "maxpool1d",
        "avgpool2d",  # pool along time only: (pool, 1)
        "maxpool2d",
        "gap1d",  # global average over time
        "gmp1d",  # global max over time
        "gap2d",  # global average over time and the axis columns
        "gmp2d",  # global max over time and the axis columns
        "flatten",
        "batchnorm",  # epsilon; frozen statistics (inference form)
        "dropout",  # rate; identity on device (training and inference)
    }
)


class ArchError(ValueError):
    """An architecture that cannot be described or trained; the message names the layer."""


@dataclass(frozen=True)
class Layer:
    kind: str
    name: str
    filters: int = 0
    kernel: int = 0
    units: int = 0
    pool: int = 0
    stride: int = 0
    use_bias: bool = True
    rate: float = 0.0
    epsilon: float = 1e-3

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ArchError(f"a layer's name must be a string, got {self.name!r}")
        if not isinstance(self.kind, str) or self.kind not in KINDS:
            raise ArchError(f"layer {self.name!r}: unknown kind {self.kind!r} (known: {', '.join(sorted(KINDS))})")
        for key in ("filters", "kernel", "units", "pool", "stride"):  # (a model file may hold 2.5, "3" or true)
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise ArchError(f"layer {self.name!r}: {key} must be a whole number, got {v!r}")
        for key in ("rate", "epsilon"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not _finite(v):
                raise ArchError(f"layer {self.name!r}: {key} must be a finite number, got {v!r}")
        if not isinstance(self.use_bias, bool):
            raise ArchError(f"layer {self.name!r}: use_bias must be true or false, got {self.use_bias!r}")

    @property
    def has_params(self) -> bool:
        return self.kind in PARAM_KINDS

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "name": self.name}
        defaults = Layer.__dataclass_fields__
        for key, value in asdict(self).items():
            if key in ("kind", "name"):
                continue
            if value != defaults[key].default:
                d[key] = value
        return d


@dataclass(frozen=True)
class Arch:
    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]
    classes: tuple[str, ...] = ()
    name: str = "model"
    preprocessing: str = "none"  # 'none' | 'gravity_rot_sup' (ST model zoo)
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        shape = tuple(self.input_shape) if isinstance(self.input_shape, (tuple, list)) else None
        if not shape or not all(_whole(x) for x in shape):  # (a model file may hold 20.5, "20", true or Infinity)
            shown = shape if shape is not None else self.input_shape
            raise ArchError(f"input shape {shown!r} is not valid: sizes must be whole numbers >= 1")
        object.__setattr__(self, "input_shape", tuple(int(x) for x in shape))
        names = [l.name for l in self.layers]
        if len(set(names)) != len(names):
            raise ArchError(f"duplicate layer names in {self.name!r}")
        infer_shapes(self)  # validates

    # --- shapes and parameters -------------------------------------------------------------
    @property
    def input_size(self) -> int:
        return int(self.input_shape[0])

    @property
    def n_classes(self) -> int:
        return int(infer_shapes(self)[-1][-1])

    def shapes(self) -> list[tuple[int, ...]]:
        """Output shape of every layer (per sample, without batch axis)."""
        return infer_shapes(self)

    def input_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(self.input_shape)] + infer_shapes(self)[:-1]

    def layer(self, name: str) -> Layer:
        for l in self.layers:
            if l.name == name:
                return l
        raise ArchError(f"no layer named {name!r} in {self.name!r}")

    def param_shapes(self) -> dict[str, list[tuple[int, ...]]]:
        """Weight shapes per layer name, in Keras layout (see module doc)."""
        out: dict[str, list[tuple[int, ...]]] = {}
        for layer, in_shape in zip(self.layers, self.input_shapes()):
            shapes = _param_shapes(layer, in_shape)
            if shapes:
                out[layer.name] = shapes
        return out

    def param_count(self, layer_names: Iterable[str] | None = None, trainable_only: bool = False) -> int:
        total = 0
        wanted = None if layer_names is None else set(layer_names)
        for name, shapes in self.param_shapes().items():
            if wanted is not None and name not in wanted:
                continue
            layer = self.layer(name)
            if trainable_only and layer.kind == "batchnorm":
                shapes = shapes[:2]  # moving statistics are never trained
            total += sum(_prod(s) for s in shapes)
        return total

    @property
    def params(self) -> int:
        return self.param_count()

    def trainable(self, mode: str | Sequence[str]) -> frozenset[str]:
        return resolve_trainable(self, mode)

    def with_input_size(self, T: int) -> "Arch":
        return Arch(
            (int(T), *self.input_shape[1:]), self.layers, self.classes, self.name, self.preprocessing, dict(self.meta)
        )

    # --- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "classes": list(self.classes),
            "preprocessing": self.preprocessing,
            "layers": [l.to_dict() for l in self.layers],
            "meta": dict(self.meta),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "Arch":
        """An architecture from its JSON form; a damaged or hostile description is an :class:`ArchError` that
        says in the description's own terms what is wrong (a missing key, a layer that is not an object, a key
        a layer does not have), never Python-internal text."""
        if not isinstance(d, dict):
            raise ArchError(f"malformed architecture description: a JSON object was expected, got {_kind(d)}")
        missing = [k for k in ("input_shape", "layers") if k not in d]
        if missing:
            raise ArchError(f"malformed architecture description: no {' and no '.join(map(repr, missing))}")
        if not isinstance(d["layers"], list):
            raise ArchError(f"malformed architecture description: 'layers' must be a list, got {_kind(d['layers'])}")
        for key, want, kind in (("classes", list, "a list"), ("meta", dict, "an object")):
            if key in d and not isinstance(d[key], want):
                raise ArchError(f"malformed architecture description: {key!r} must be {kind}, got {_kind(d[key])}")
        for i, ld in enumerate(d["layers"]):
            where = f"malformed architecture description: layer #{i + 1}"
            if not isinstance(ld, dict):
                raise ArchError(f"{where} must be an object, got {_kind(ld)}")
            lacking = [k for k in ("kind", "name") if k not in ld]
            if lacking:
                raise ArchError(f"{where} has no {' and no '.join(map(repr, lacking))}")
            unknown = sorted(str(k) for k in ld if k not in _LAYER_KEYS)
            if unknown:
                raise ArchError(
                    f"{where} ({ld['name']!r}): unknown key {', '.join(map(repr, unknown))} "
                    f"(known: {', '.join(_LAYER_KEYS)})"
                )
        try:
            layers = tuple(Layer(**ld) for ld in d["layers"])
            return cls(
                input_shape=d["input_shape"],
                layers=layers,
                classes=tuple(d.get("classes", ())),
                name=str(d.get("name", "model")),
                preprocessing=str(d.get("preprocessing", "none")),
                meta=dict(d.get("meta", {})),
            )
        except ArchError:
            raise  # an invalid architecture: its own message names the layer
        except (KeyError, TypeError, ValueError, OverflowError) as exc:  # (defence in depth: the checks above and
            # the constructors' own are meant to leave nothing for this to catch)
            raise ArchError(f"malformed architecture description: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> "Arch":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArchError(f"architecture is not valid JSON: {exc}") from exc
        except RecursionError as exc:  # a hostile file nesting arrays thousands deep
            raise ArchError("architecture JSON is nested too deeply") from exc
        return cls.from_dict(d)


_LAYER_KEYS = tuple(Layer.__dataclass_fields__)


def _kind(x: object) -> str:
    """A JSON value's kind in JSON's words, for messages about a description."""
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true/false"
    if isinstance(x, (int, float)):
        return f"the number {x!r}"
    if isinstance(x, str):
        return "a string"
    return "an object" if isinstance(x, dict) else f"a {type(x).__name__}"  # (a list, a tuple)


def _finite(x: numbers.Real) -> bool:
    """``math.isfinite`` for any real number; an integer too large for a float (10**400 in a file) is not."""
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


def _whole(x: object) -> bool:
    """A size a shape may hold: an integer, or a float with a whole value (20.0 from JSON), at least 1."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        return False
    if isinstance(x, numbers.Integral):
        return int(x) >= 1
    v = float(x)
    return v.is_integer() and v >= 1  # (inf and nan are not integers)


def _prod(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _param_shapes(layer: Layer, in_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    k = layer.kind
    if k == "conv1d":
        s: list[tuple[int, ...]] = [(layer.kernel, in_shape[-1], layer.filters)]
        return s + ([(layer.filters,)] if layer.use_bias else [])
    if k == "conv2d":
        s = [(layer.kernel, 1, in_shape[-1], layer.filters)]
        return s + ([(layer.filters,)] if layer.use_bias else [])
    if k == "dense":
        s = [(in_shape[-1], layer.units)]
        return s + ([(layer.units,)] if layer.use_bias else [])
    if k == "batchnorm":
        c = in_shape[-1]
        return [(c,), (c,), (c,), (c,)]
    return []


def _out_shape(layer: Layer, s: tuple[int, ...]) -> tuple[int, ...]:
    k = layer.kind
    name = layer.name

    def need(rank: int) -> None:
        if len(s) != rank:
            raise ArchError(f"layer {name!r} ({k}) needs a rank-{rank} input, got shape {s}")

    if k in ("conv1d", "conv2d"):
        need(2 if k == "conv1d" else 3)
        if layer.filters < 1:
            raise ArchError(f"layer {name!r}: filters must be >= 1")
        L = s[0] - layer.kernel + 1
        if layer.kernel < 1 or L < 1:
            kernel = layer.kernel if k == "conv1d" else f"({layer.kernel},1)"
            raise ArchError(f"layer {name!r}: kernel {kernel} does not fit input length {s[0]}")
        return (L, layer.filters) if k == "conv1d" else (L, s[1], layer.filters)
    if k == "dense":
        need(1)
        if layer.units < 1:
            raise ArchError(f"layer {name!r}: units must be >= 1")
        return (layer.units,)
    if k in ("avgpool1d", "maxpool1d", "avgpool2d", "maxpool2d"):
        need(2 if k.endswith("1d") else 3)
        if layer.stride < 0:
            raise ArchError(f"layer {name!r}: stride {layer.stride} is negative")
        stride = layer.stride or layer.pool
        if layer.pool < 1 or s[0] < layer.pool:
            raise ArchError(f"layer {name!r}: pool {layer.pool} does not fit input length {s[0]}")
        L = (s[0] - layer.pool) // stride + 1
        return (L, *s[1:])
    if k in ("gap1d", "gmp1d"):
        need(2)
        return (s[-1],)
    if k in ("gap2d", "gmp2d"):
        need(3)
        return (s[-1],)
    if k == "flatten":
        return (_prod(s),)
    # relu, softmax, batchnorm, dropout keep the shape
    return tuple(s)


def infer_shapes(arch: Arch) -> list[tuple[int, ...]]:
    shapes = []
    s = tuple(arch.input_shape)  # (whole numbers >= 1: Arch checked them)
    for layer in arch.layers:
        s = _out_shape(layer, s)
        shapes.append(s)
    return shapes


def resolve_trainable(arch: Arch, mode: str | Sequence[str]) -> frozenset[str]:
    """Names of the layers whose parameters are trained.

    * ``"full"``: every layer with parameters (BatchNorm: gamma/beta only, statistics frozen);
    * ``"tl"``: the last two Dense layers (the paper's transfer learning);
    * ``"last"``: the last Dense layer (the paper's warm-up);
    * a list of layer names, or a comma-separated string of names.
    """
    dense = [l.name for l in arch.layers if l.kind == "dense"]
    if isinstance(mode, str):
        m = mode.strip().lower()
        if m == "full":
            return frozenset(l.name for l in arch.layers if l.has_params)
        if m == "tl":
            if not dense:
                raise ArchError(f"{arch.name!r} has no Dense layer to train with 'tl'")
            return frozenset(dense[-2:])
        if m == "last":
            if not dense:
                raise ArchError(f"{arch.name!r} has no Dense layer to train with 'last'")
            return frozenset(dense[-1:])
        if m in ("none", ""):
            return frozenset()
        names = [n.strip() for n in mode.split(",") if n.strip()]
    else:
        names = list(mode)
    known = {l.name: l for l in arch.layers}
    for n in names:
        if n not in known:
            raise ArchError(f"trainable layer {n!r} is not in {arch.name!r} (layers: {', '.join(known)})")
        if not known[n].has_params:
            raise ArchError(f"layer {n!r} ({known[n].kind}) has no parameters to train")
    return frozenset(names)


def paper_cnn(input_size: int = 20, n_classes: int = 6, classes: Sequence[str] = ()) -> Arch:
    """The paper's 1D-CNN: Conv1D 32 k3 + ReLU -> AvgPool 2 -> Conv1D 64 k3 + ReLU -> AvgPool 2 -> GAP
    -> Dense 50 ReLU -> Dense C softmax ('valid' padding, pool = stride = 2; 10,084 params for C = 6)."""
    if classes:
        n_classes = len(classes)
    layers = (
        Layer("conv1d", "conv1", filters=32, kernel=3),
        Layer("relu", "relu1"),
        Layer("avgpool1d", "pool1", pool=2),
        Layer("conv1d", "conv2", filters=64, kernel=3),
        Layer("relu", "relu2"),
        Layer("avgpool1d", "pool2", pool=2),
        Layer("gap1d", "gap"),
        Layer("dense", "dense1", units=50),
        Layer("relu", "relu3"),
        Layer("dense", "dense2", units=n_classes),
        Layer("softmax", "softmax"),
    )
    return Arch((int(input_size), 3), layers, tuple(classes), name=f"paper_cnn_T{int(input_size)}")


# Operation types the engine counts and the estimator predicts (MACs, or element operations for
# ``elementwise``), per sample.  ``*_dx`` is the input gradient (downstream error), ``*_dw`` the weight
# gradient.  Both sides use exactly these keys so they can be compared.
OP_TYPES = (
    "conv_fwd",
    "conv_dw",
    "conv_dx",
    "dense_fwd",
    "dense_dw",
    "dense_dx",
    "elementwise",
)
