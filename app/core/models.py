"""Models in and out: build the paper's 1D-CNN, import Keras ``.keras``/``.h5`` files (ours and ST's
IGN/GMP) into the shared :class:`estimator.arch.Arch` + weights form, and export personalized weights
(``.keras``, ``.h5``, TFLite float32/int8, a C header for firmware, ``.npz``).

TensorFlow/Keras are imported lazily inside the functions that need them: importing this module does
not import TensorFlow.  Every problem with a model file is raised as :class:`ModelError` whose
message names the file and the problem (never a bare traceback).

Metadata that Keras files do not carry (class names, preprocessing, sample rate) is read from, in
order: a JSON sidecar ``<file stem>.json`` beside the model (what we write), ST's
``<stem>_config.yaml`` (model zoo), then ST's folder naming (``WISDM``/``mobility_v1``).
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from app.core.outputs import atomic_path
from app.core.safezip import MODEL_LIMITS, ZipRefused, check_zip
from estimator.arch import Arch, ArchError, Layer, paper_cnn

Weights = dict[str, list[np.ndarray]]

#: ST model zoo class orders (softmax index order), see shared/reference/st-modelzoo-har.md §1.7.
ST_WISDM_CLASSES = ("Jogging", "Stationary", "Stairs", "Walking")
ST_MOBILITY_CLASSES = ("Stationary", "Walking", "Jogging", "Biking")

SUPPORTED_SUFFIXES = (".keras", ".h5", ".hdf5", ".npz")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


class ModelError(ValueError):
    """A model file or model that cannot be used; the message names the file/layer and the problem."""


@dataclass
class LoadedModel:
    """An imported model in the engine's form.

    * ``arch``: :class:`~estimator.arch.Arch` (fused activations split into separate layers, Dropout
      kept as kind ``'dropout'``); ``arch.classes``/``arch.preprocessing`` match the fields below.
    * ``weights``: layer name -> list of arrays in Keras layout (see ``estimator/arch.py``).
    * ``classes``: class names in softmax order.
    * ``preprocessing``: ``'none'`` or ``'gravity_rot_sup'`` (ST's gravity rotation + suppression, to
      apply per window before feeding the model; see :mod:`app.core.preprocess`).
    * ``source``: the file it came from (or a description).
    * ``meta``: anything else known (``rate_hz``, training data, accuracy, keras version ...).
    """

    arch: Arch
    weights: Weights
    classes: tuple[str, ...]
    preprocessing: str = "none"
    source: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def input_size(self) -> int:
        return self.arch.input_size

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.arch.input_shape)

    def with_weights(self, weights: Mapping[str, Sequence[np.ndarray]], source: str | None = None) -> "LoadedModel":
        """The same model with other (e.g. personalized) weights, checked against the architecture."""
        w = check_weights(self.arch, weights)
        return replace(self, weights=w, source=self.source if source is None else source, meta=dict(self.meta))

    def prepare(self, windows: np.ndarray) -> np.ndarray:
        """Raw ``(N, T, 3)`` m/s² windows -> model input: preprocessing, then reshape to the input shape."""
        return prepare_input(self, windows)


# ================================================================================================
# TensorFlow access (lazy)
# ================================================================================================


#: Start-up lines TensorFlow's C++ side prints on every import, before its log level applies (absl logs
#: everything until it is initialised): informational, never an error.  Anything else is passed through.
TF_NOISE = re.compile(
    r"oneDNN custom operations are on|All log messages before absl::InitializeLog\(\) is called|"
    r"This TensorFlow binary is optimized to use available CPU instructions|"
    r"To enable the following instructions: .* rebuild TensorFlow|"
    r"Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered|"
    r"Could not find cuda drivers on your machine|TF-TRT Warning: Could not find TensorRT|"
    r"cuda_(dnn|fft|blas)\.cc:\d+\] Unable to register|Cannot dlopen some GPU libraries|"
    r"failed call to cuInit|Skipping registering GPU devices"
)
_tf_lock = threading.Lock()


def _import_tf(name: str):
    """Import ``tensorflow``/``keras`` once with TensorFlow's start-up INFO lines (oneDNN, CPU features,
    CUDA probing) removed from stderr; every other line it prints is written back unchanged."""
    import importlib  # noqa: PLC0415
    import sys  # noqa: PLC0415

    if name in sys.modules:
        return sys.modules[name]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ INFO and WARNING off once logging is set up
    with _tf_lock:
        if name in sys.modules:
            return sys.modules[name]
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no real stderr (frozen GUI): nothing to filter
            return importlib.import_module(name)
        import tempfile  # noqa: PLC0415

        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                return importlib.import_module(name)
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                lines = tmp.read().decode("utf-8", "replace").splitlines(keepends=True)
                kept = "".join(line for line in lines if not TF_NOISE.search(line))
                if kept:
                    sys.stderr.write(kept)
                    sys.stderr.flush()


def _keras():
    try:
        _import_tf("tensorflow")
        return _import_tf("keras")
    except ImportError as exc:  # pragma: no cover - environment problem
        raise ModelError(f"TensorFlow/Keras is not installed ({exc})") from exc


def _tf():
    return _import_tf("tensorflow")


# ================================================================================================
# Arch <-> Keras
# ================================================================================================


def check_weights(arch: Arch, weights: Mapping[str, Sequence[np.ndarray]]) -> Weights:
    """Float32 copies of ``weights`` after checking every layer's arrays against ``arch``."""
    expected = arch.param_shapes()
    out: Weights = {}
    for name, shapes in expected.items():
        if name not in weights:
            raise ModelError(f"weights for layer {name!r} are missing (have: {', '.join(weights) or 'none'})")
        arrays = list(weights[name])
        got = [tuple(np.shape(a)) for a in arrays]
        if got != [tuple(s) for s in shapes]:
            raise ModelError(f"layer {name!r}: weight shapes {got} do not match the architecture {shapes}")
        out[name] = [np.array(a, dtype=np.float32) for a in arrays]
    extra = set(weights) - set(expected)
    if extra:
        raise ModelError(f"weights given for unknown or parameter-free layers: {', '.join(sorted(extra))}")
    return out


def _keras_layer(layer: Layer):
    keras = _keras()
    L = keras.layers
    k, n = layer.kind, layer.name
    if k == "conv1d":
        return L.Conv1D(layer.filters, layer.kernel, use_bias=layer.use_bias, name=n)
    if k == "conv2d":
        return L.Conv2D(layer.filters, (layer.kernel, 1), use_bias=layer.use_bias, name=n)
    if k == "dense":
        return L.Dense(layer.units, use_bias=layer.use_bias, name=n)
    if k in ("relu", "softmax"):
        return L.Activation(k, name=n)
    stride = layer.stride or layer.pool
    if k == "avgpool1d":
        return L.AveragePooling1D(layer.pool, strides=stride, name=n)
    if k == "maxpool1d":
        return L.MaxPooling1D(layer.pool, strides=stride, name=n)
    if k == "avgpool2d":
        return L.AveragePooling2D((layer.pool, 1), strides=(stride, 1), name=n)
    if k == "maxpool2d":
        return L.MaxPooling2D((layer.pool, 1), strides=(stride, 1), name=n)
    if k == "gap1d":
        return L.GlobalAveragePooling1D(name=n)
    if k == "gmp1d":
        return L.GlobalMaxPooling1D(name=n)
    if k == "gap2d":
        return L.GlobalAveragePooling2D(name=n)
    if k == "gmp2d":
        return L.GlobalMaxPooling2D(name=n)
    if k == "flatten":
        return L.Flatten(name=n)
    if k == "batchnorm":
        return L.BatchNormalization(epsilon=layer.epsilon, name=n)
    if k == "dropout":
        return L.Dropout(layer.rate, name=n)
    raise ModelError(f"layer {n!r}: kind {k!r} has no Keras equivalent")  # pragma: no cover


def _safe_model_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name) or "model"


def arch_to_keras(arch: Arch, weights: Mapping[str, Sequence[np.ndarray]] | None = None, seed: int | None = None):
    """A ``keras.Model`` (functional) with one Keras layer per Arch layer, same names; ``weights`` are
    loaded when given (checked shapes), otherwise Keras' initialisers are used (seeded with ``seed``)."""
    keras = _keras()
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    inputs = keras.Input(shape=tuple(arch.input_shape), name="input")
    x = inputs
    made = []
    for layer in arch.layers:
        kl = _keras_layer(layer)
        x = kl(x)
        made.append((layer, kl))
    model = keras.Model(inputs, x, name=_safe_model_name(arch.name))
    if weights is not None:
        w = check_weights(arch, weights)
        for layer, kl in made:
            if layer.name in w:
                kl.set_weights(w[layer.name])
    return model


def build_paper_keras(T: int, n_classes: int, classes: Sequence[str] = (), seed: int | None = None):
    """The paper's 1D-CNN for input ``(T, 3)`` as a Keras model (random init): Conv1D 32 k3 + ReLU ->
    AvgPool 2 -> Conv1D 64 k3 + ReLU -> AvgPool 2 -> GAP -> Dense 50 ReLU -> Dense C softmax."""
    if int(T) < 10:
        raise ModelError(f"input size T must be >= 10 for the paper CNN (two k3 convs and two pools), got {T}")
    if int(n_classes) < 2:
        raise ModelError(f"n_classes must be >= 2, got {n_classes}")
    arch = paper_cnn(int(T), int(n_classes), tuple(classes))
    return arch_to_keras(arch, None, seed=seed)


_ACTIVATIONS = {"relu": "relu", "softmax": "softmax", "linear": None}
SUPPORTED_KERAS_LAYERS = (
    "Conv1D", "Conv2D (k,1)", "Dense", "Activation(relu|softmax|linear)", "ReLU", "Softmax",
    "AveragePooling1D/2D", "MaxPooling1D/2D", "GlobalAveragePooling1D/2D", "GlobalMaxPooling1D/2D",
    "Flatten", "BatchNormalization", "Dropout",
)  # fmt: skip


def _tuple(v: Any) -> tuple:
    return tuple(v) if isinstance(v, (list, tuple)) else (v,)


def keras_to_arch(
    model, classes: Sequence[str] = (), preprocessing: str = "none", source: str = "model"
) -> tuple[Arch, Weights]:
    """Describe a sequential Keras model as an :class:`Arch` + weights.  A layer the engine cannot run
    or train raises :class:`ModelError` naming the layer, its type and what is unsupported."""
    where = f"{source}: " if source else ""

    def unsupported(kl, why: str) -> ModelError:
        return ModelError(
            f"{where}layer {kl.name!r} ({type(kl).__name__}) cannot be trained by the on-device engine: {why} "
            f"(supported: {', '.join(SUPPORTED_KERAS_LAYERS)})"
        )

    in_shape = model.inputs[0].shape if getattr(model, "inputs", None) else model.input_shape
    in_shape = tuple(int(d) for d in tuple(in_shape)[1:] if d is not None)
    if len(in_shape) != len(tuple(model.inputs[0].shape)) - 1:
        raise ModelError(f"{where}input shape {tuple(model.inputs[0].shape)} must be fully defined")
    layers: list[Layer] = []
    weights: Weights = {}
    used: set[str] = set()

    def add(layer: Layer) -> None:
        layers.append(layer)
        used.add(layer.name)

    def fresh(base: str) -> str:
        name, i = base, 1
        while name in used:
            i += 1
            name = f"{base}_{i}"
        return name

    def activation(kl, act_name: str) -> None:
        act = _ACTIVATIONS.get(act_name, "?")
        if act == "?":
            raise unsupported(kl, f"activation {act_name!r}")
        if act:
            add(Layer(act, fresh(f"{kl.name}_{act}")))

    for kl in model.layers:
        cls = type(kl).__name__
        cfg = kl.get_config()
        inbound = getattr(kl, "_inbound_nodes", [])
        if cls == "InputLayer":
            continue
        if inbound and len(getattr(inbound[0], "input_tensors", [None])) > 1:
            raise unsupported(kl, "more than one input (only sequential chains are supported)")
        w = [np.asarray(a, dtype=np.float32) for a in kl.get_weights()]
        if cls in ("Conv1D", "Conv2D"):
            k = _tuple(cfg["kernel_size"])
            if cfg.get("padding") != "valid":
                raise unsupported(kl, f"padding {cfg.get('padding')!r} (only 'valid')")
            if any(s != 1 for s in _tuple(cfg.get("strides", 1))) or any(
                d != 1 for d in _tuple(cfg.get("dilation_rate", 1))
            ):
                raise unsupported(kl, "strides/dilation other than 1")
            if cfg.get("groups", 1) != 1 or cfg.get("data_format", "channels_last") != "channels_last":
                raise unsupported(kl, "grouped or channels_first convolution")
            if cls == "Conv2D" and (len(k) != 2 or k[1] != 1):
                raise unsupported(kl, f"kernel {k} (only (k, 1) kernels along time)")
            kind = "conv1d" if cls == "Conv1D" else "conv2d"
            add(
                Layer(
                    kind,
                    fresh(kl.name),
                    filters=int(cfg["filters"]),
                    kernel=int(k[0]),
                    use_bias=bool(cfg.get("use_bias", True)),
                )
            )
            weights[layers[-1].name] = w
            activation(kl, cfg.get("activation", "linear"))
        elif cls == "Dense":
            add(Layer("dense", fresh(kl.name), units=int(cfg["units"]), use_bias=bool(cfg.get("use_bias", True))))
            weights[layers[-1].name] = w
            activation(kl, cfg.get("activation", "linear"))
        elif cls == "Activation":
            act = _ACTIVATIONS.get(cfg.get("activation"), "?")
            if act == "?":
                raise unsupported(kl, f"activation {cfg.get('activation')!r}")
            if act:
                add(Layer(act, fresh(kl.name)))
        elif cls == "ReLU":
            if cfg.get("max_value") is not None or cfg.get("negative_slope", 0) or cfg.get("threshold", 0):
                raise unsupported(kl, "ReLU with max_value/negative_slope/threshold")
            add(Layer("relu", fresh(kl.name)))
        elif cls == "Softmax":
            add(Layer("softmax", fresh(kl.name)))
        elif cls in ("AveragePooling1D", "MaxPooling1D", "AveragePooling2D", "MaxPooling2D"):
            pool, strides = _tuple(cfg["pool_size"]), _tuple(cfg.get("strides") or cfg["pool_size"])
            if cfg.get("padding", "valid") != "valid":
                raise unsupported(kl, f"padding {cfg.get('padding')!r} (only 'valid')")
            two_d = cls.endswith("2D")
            if two_d and (len(pool) != 2 or pool[1] != 1 or strides[1] != 1):
                raise unsupported(kl, f"pool {pool} / strides {strides} (only (p, 1) along time)")
            kind = ("avgpool" if cls.startswith("Average") else "maxpool") + ("2d" if two_d else "1d")
            stride = int(strides[0]) if int(strides[0]) != int(pool[0]) else 0
            add(Layer(kind, fresh(kl.name), pool=int(pool[0]), stride=stride))
        elif cls in ("GlobalAveragePooling1D", "GlobalMaxPooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling2D"):
            if cfg.get("keepdims"):
                raise unsupported(kl, "keepdims=True")
            kind = ("gap" if "Average" in cls else "gmp") + ("2d" if cls.endswith("2D") else "1d")
            add(Layer(kind, fresh(kl.name)))
        elif cls == "Flatten":
            add(Layer("flatten", fresh(kl.name)))
        elif cls == "Dropout":
            add(Layer("dropout", fresh(kl.name), rate=float(cfg.get("rate", 0.0))))
        elif cls == "BatchNormalization":
            axis = _tuple(cfg.get("axis", -1))
            rank = len(in_shape) + 1
            if len(axis) != 1 or axis[0] not in (-1, rank - 1):
                raise unsupported(kl, f"axis {cfg.get('axis')} (only the channel axis)")
            names = [v.name.split("/")[-1] for v in kl.weights]
            by = dict(zip(names, w))
            c = int(by["moving_mean"].shape[0])
            gamma = by.get("gamma", np.ones(c, np.float32))
            beta = by.get("beta", np.zeros(c, np.float32))
            add(Layer("batchnorm", fresh(kl.name), epsilon=float(cfg.get("epsilon", 1e-3))))
            weights[layers[-1].name] = [gamma, beta, by["moving_mean"], by["moving_variance"]]
        else:
            raise unsupported(kl, "layer type not supported")
    name = _safe_model_name(getattr(model, "name", "model"))
    try:
        arch = Arch(in_shape, tuple(layers), tuple(classes), name=name, preprocessing=preprocessing)
    except ArchError as exc:
        raise ModelError(f"{where}{exc}") from exc
    if classes and arch.n_classes != len(classes):
        raise ModelError(f"{where}the model has {arch.n_classes} outputs but {len(classes)} class names were given")
    return arch, check_weights(arch, weights)


# ================================================================================================
# Loading
# ================================================================================================


#: The file each export format writes, after the stem (``<stem>.keras``, ``<stem>_int8.tflite`` ...).
EXPORT_SUFFIXES = {
    "keras": ".keras",
    "h5": ".h5",
    "tflite_float32": "_float32.tflite",
    "tflite_int8": "_int8.tflite",
    "c_header": ".h",
    "npz": ".npz",
}


def export_path(out_dir: str | Path, stem: str, fmt: str) -> Path:
    """The file :func:`export_all` writes for ``fmt`` (one of :data:`EXPORT_SUFFIXES`)."""
    return Path(out_dir) / f"{stem}{EXPORT_SUFFIXES[fmt]}"


def sidecar_path(path: str | Path) -> Path:
    """``model.keras`` -> ``model.json`` (our metadata beside a model file)."""
    return Path(path).with_suffix(".json")


def _read_sidecar(path: Path) -> dict:
    side = sidecar_path(path)
    if not side.is_file():
        return {}
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{side}: metadata sidecar is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise ModelError(f"{side}: metadata sidecar must be a JSON object")
    return meta


def _check_meta(path: Path, meta: Mapping[str, Any], classes: Sequence[str]) -> None:
    """What every job takes from a model's metadata as it is: its sample rate (the user's data are resampled
    to it) and its class names (the user's activities are mapped onto them)."""
    rate = meta.get("rate_hz")
    if rate is not None and not (
        isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0.1 <= rate <= 100_000
    ):  # (NaN fails the comparison)
        raise ModelError(
            f"{path}: rate_hz {rate!r} in its metadata is not a sample rate (a number of Hz, 0.1 .. 100000)"
        )
    seen: set[str] = set()
    for c in classes:
        if c in seen:
            raise ModelError(f"{path}: its metadata lists the class {c!r} twice")
        seen.add(c)


def _read_st_config(path: Path) -> dict:
    """Class names and preprocessing from ST's ``<stem>_config.yaml`` (both v1 and v2 layouts), with a
    tiny line-based reader (no YAML dependency)."""
    cfg = path.with_name(f"{path.stem}_config.yaml")
    if not cfg.is_file():
        return {}
    text = cfg.read_text(encoding="utf-8", errors="replace")
    out: dict = {"config": str(cfg)}
    m = re.search(r"^\s*class_names:\s*\[([^\]]*)\]", text, re.MULTILINE)
    if m:
        out["classes"] = [c.strip().strip("'\"") for c in m.group(1).split(",") if c.strip()]
    else:
        m = re.search(r"^(\s*)class_names:\s*\n((?:\1\s*-\s*.+\n?)+)", text, re.MULTILINE)
        if m:
            out["classes"] = [ln.split("-", 1)[1].strip().strip("'\"") for ln in m.group(2).splitlines() if ln.strip()]
    m = re.search(r"^\s*gravity_rot_sup:\s*(\w+)", text, re.MULTILINE) or re.search(
        r"^\s*preprocessing:\s*(true|false)\s*$", text, re.MULTILINE | re.IGNORECASE
    )
    if m:
        out["preprocessing"] = "gravity_rot_sup" if m.group(1).lower() == "true" else "none"
    m = re.search(r"^\s*name:\s*(\w+)", text[text.find("dataset:") :] if "dataset:" in text else "", re.MULTILINE)
    if m:
        out["dataset"] = m.group(1)
    return out


def stated_info(path: Path) -> tuple[dict, dict]:
    """What a Keras model file's neighbours state before it loads: (ST's — its folder naming and
    ``<stem>_config.yaml`` —, everything — ST's, then the sidecar ``<stem>.json``, which wins).  An ST model's
    ``rate_hz`` is its dataset's where nothing states one (WISDM 20 Hz, mobility 26 Hz).  Raises
    :class:`ModelError` for a sidecar that is not a JSON object."""
    st = {**_st_defaults(path), **_read_st_config(path)}
    info = {**st, **_read_sidecar(path)}
    if "rate_hz" not in info and st.get("dataset"):
        info["rate_hz"] = 20.0 if str(st["dataset"]).lower() == "wisdm" else 26.0
    return st, info


def st_input_size(path: Path) -> int | None:
    """The input size T an ST model zoo file's name states (``ign_wl_24.h5``: 24); None for any other name."""
    m = re.search(r"(?:ign|gmp)_wl_(\d+)", Path(path).name.lower())
    return int(m.group(1)) if m else None


def _st_defaults(path: Path) -> dict:
    s = str(path).lower()
    if not re.search(r"(ign|gmp)_wl_\d+", s):
        return {}
    out: dict = {"preprocessing": "gravity_rot_sup"}
    if "wisdm" in s:
        out.update(classes=list(ST_WISDM_CLASSES), dataset="wisdm")
    elif "mobility" in s:
        out.update(classes=list(ST_MOBILITY_CLASSES), dataset="mobility_v1")
    return out


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else type(exc).__name__
    return (msg[:300] + "...") if len(msg) > 300 else msg


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ModelError(f"{path}: file not found")
    if path.is_dir():
        raise ModelError(f"{path}: is a directory, expected a {'/'.join(SUPPORTED_SUFFIXES)} file")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ModelError(
            f"{path}: unsupported model format {suffix or '(no extension)'!r} (use {', '.join(SUPPORTED_SUFFIXES)})"
        )
    size = path.stat().st_size
    if size == 0:
        raise ModelError(f"{path}: file is empty")
    with path.open("rb") as fh:
        head = fh.read(8)
    if suffix == ".keras":
        if head[:4] != b"PK\x03\x04":
            raise ModelError(f"{path}: not a Keras 3 .keras archive (no zip header)")
        try:
            check_zip(path, MODEL_LIMITS, ".keras archive")  # declared sizes first: never inflate a zip bomb
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
                bad = zf.testzip()
        except (
            zipfile.BadZipFile,
            OSError,
            EOFError,
            NotImplementedError,
            ValueError,
            RuntimeError,
        ) as exc:  # RuntimeError: 'encrypted' flag
            if isinstance(exc, ZipRefused):
                raise ModelError(str(exc)) from None
            raise ModelError(f"{path}: corrupt or truncated .keras archive ({_short(exc)})") from exc
        if bad is not None:
            raise ModelError(f"{path}: corrupt .keras archive (member {bad!r} fails its CRC check)")
        if "config.json" not in names:
            raise ModelError(f"{path}: .keras archive has no config.json (not a Keras 3 model)")
    elif suffix in (".h5", ".hdf5"):
        if head != _HDF5_MAGIC:
            raise ModelError(f"{path}: not an HDF5 file (bad signature)")
    elif suffix == ".npz" and head[:4] != b"PK\x03\x04":
        raise ModelError(f"{path}: not an .npz archive (no zip header)")
    elif suffix == ".npz":
        try:
            check_zip(path, MODEL_LIMITS, ".npz model")
        except ZipRefused as exc:
            raise ModelError(str(exc)) from None
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
            raise ModelError(f"{path}: not an ODL Studio model .npz ({_short(exc)})") from exc


def load_model(path: str | Path, isolate: bool = False) -> LoadedModel:
    """Import a ``.keras`` / ``.h5`` (Keras 3, ``safe_mode=True``, ``compile=False``) or our ``.npz``.

    Class names and preprocessing come from the sidecar JSON, ST's ``*_config.yaml`` or ST's folder
    naming (see the module doc).  Corrupt, truncated or wrong files raise :class:`ModelError`; so does
    a layer the engine cannot train (the message names it).

    ``isolate``: where devices may be streaming (the app), a Keras file is read in a child process
    (:mod:`app.core.child`) unless TensorFlow is already imported here, because importing it holds the
    interpreter lock for about a second and the device readers would stop meanwhile.  What the child read
    is kept per file (path, size, modification time, and those of its sidecar and ST config), so the next
    round's load costs nothing.
    """
    path = Path(path)
    _check_file(path)
    if path.suffix.lower() == ".npz":
        return load_npz(path)
    _refuse_a_capture(path)
    if isolate and not tensorflow_imported():
        return _load_isolated([path])[0]
    keras = _keras()
    try:
        import warnings  # noqa: PLC0415

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kmodel = keras.models.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras/h5py raise many types; all mean "cannot load"
        cut = re.search(r"truncated file: eof = (\d+).*?stored_eof = (\d+)", str(exc))
        if cut:  # (HDF5's words: "Unable to synchronously open file (truncated file: eof = …, stored_eof = …)")
            have, want = int(cut.group(1)), int(cut.group(2))
            raise ModelError(
                f"{path}: the file is cut short: {have:,} of its {want:,} bytes (copy or export it again)"
            ) from exc
        raise ModelError(f"{path}: cannot be loaded by Keras {keras.__version__}: {_short(exc)}") from exc
    meta: dict = {"format": path.suffix.lower().lstrip("."), "keras_version": keras.__version__}
    st, info = stated_info(path)
    if st:
        meta["origin"] = "st_modelzoo"
        meta["license"] = "SLA0044 (STMicroelectronics): use only with ST devices; not redistributable under OSS terms"
    meta.update({k: v for k, v in info.items() if k not in ("classes", "preprocessing")})
    preprocessing = str(info.get("preprocessing", "none"))
    if preprocessing not in ("none", "gravity_rot_sup"):
        raise ModelError(f"{path}: unknown preprocessing {preprocessing!r} in its metadata")
    classes = tuple(str(c) for c in info.get("classes", ()))
    _check_meta(path, meta, classes)
    arch, weights = keras_to_arch(kmodel, (), preprocessing, source=str(path))
    n = arch.n_classes
    if classes and len(classes) != n:
        raise ModelError(
            f"{path}: the model has {n} outputs but its metadata lists {len(classes)} classes ({', '.join(map(str, classes))})"
        )
    if not classes:
        classes = tuple(f"class_{i}" for i in range(n))
        meta["classes_unknown"] = True
    bad = nonfinite_layers(weights)
    if bad:
        raise ModelError(f"{path}: weights of layer(s) {', '.join(bad)} contain NaN or Inf (a diverged training?)")
    arch = Arch(arch.input_shape, arch.layers, classes, arch.name, preprocessing, meta={"source": str(path)})
    return LoadedModel(arch, weights, classes, preprocessing, str(path), meta)


_ISOLATED: dict[tuple, LoadedModel] = {}  # the files' (path, size, mtime) -> what a child read (few entries)
_ISOLATED_LOCK = threading.Lock()  # one child at a time: a second caller of the same file waits for the first
#: Seconds a child may take to import TensorFlow and read a model (a cold start on a slow disk is ~30 s).
LOAD_TIMEOUT_S = 180.0


def tensorflow_imported() -> bool:
    return "tensorflow" in sys.modules


def _load_here(paths: list[str]) -> list[LoadedModel]:  # pragma: no cover - runs in the child process
    return [load_model(p) for p in paths]


def _export_here(m: LoadedModel, fmt: str, path: str) -> Path:  # also the child's job (``isolate``)
    return export_keras(m, path) if fmt == "keras" else export_h5(m, path)


def _stat(f: Path) -> os.stat_result | None:
    try:
        return f.stat()
    except FileNotFoundError:
        return None


def _copy(m: LoadedModel) -> LoadedModel:
    return replace(m, weights={k: [a.copy() for a in v] for k, v in m.weights.items()}, meta=dict(m.meta))


def load_models(paths: Sequence[str | Path], isolate: bool = False) -> list[LoadedModel]:
    """:func:`load_model` of several files; with ``isolate``, the Keras files not read before are read by one
    child process (one TensorFlow start-up for all of them)."""
    files = [Path(p) for p in paths]
    if not isolate or tensorflow_imported():
        return [load_model(f) for f in files]
    for f in files:
        _check_file(f)
    read = iter(_load_isolated([f for f in files if f.suffix.lower() != ".npz"]))
    return [load_npz(f) if f.suffix.lower() == ".npz" else next(read) for f in files]


def _load_isolated(paths: list[Path]) -> list[LoadedModel]:
    from app.core import child  # noqa: PLC0415

    keys = []
    for path in paths:
        try:  # the model and the files its metadata come from: a changed sidecar is read again too
            files = (path, sidecar_path(path), path.with_name(f"{path.stem}_config.yaml"))
            keys.append(
                tuple((str(f.resolve()), st.st_size, st.st_mtime_ns) if (st := _stat(f)) else str(f) for f in files)
            )
        except OSError as exc:
            raise ModelError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    with _ISOLATED_LOCK:
        todo = {k: p for k, p in zip(keys, paths) if k not in _ISOLATED}
        if todo:
            read = child.run(
                _load_here,
                ([str(p) for p in todo.values()],),
                what=f"{next(iter(todo.values()))}: reading the model"
                if len(todo) == 1
                else f"reading {len(todo)} models",
                who="the model reader",
                timeout=LOAD_TIMEOUT_S,
                accept=lambda v: (
                    isinstance(v, list) and len(v) == len(todo) and all(isinstance(m, LoadedModel) for m in v)
                ),
                passthrough=True,
            )
            _ISOLATED.update(zip(todo, read))
        for k in [k for k in _ISOLATED if k not in keys][: max(0, len(_ISOLATED) - 16)]:
            del _ISOLATED[k]  # the oldest beyond 16 models, never one asked for now
        return [_copy(_ISOLATED[k]) for k in keys]


def from_keras(
    kmodel, classes: Sequence[str], preprocessing: str = "none", source: str = "", meta: dict | None = None
) -> LoadedModel:
    """A :class:`LoadedModel` from an in-memory Keras model (e.g. just pretrained)."""
    arch, weights = keras_to_arch(kmodel, tuple(classes), preprocessing, source=source)
    return LoadedModel(arch, weights, tuple(classes), preprocessing, source or arch.name, dict(meta or {}))


def prepare_input(model: LoadedModel, windows: np.ndarray) -> np.ndarray:
    """Raw ``(N, T, 3)`` windows in m/s² -> float32 model input (the model's preprocessing applied per
    window, then reshaped to the model's input shape, e.g. ``(N, T, 3, 1)`` for ST models)."""
    from app.core.preprocess import apply_preprocessing  # noqa: PLC0415

    x = np.asarray(windows, dtype=np.float32)
    shape = model.input_shape
    if x.ndim == len(shape) + 1 and tuple(x.shape[1:]) == shape:
        if x.ndim == 4:
            x = x[..., 0]
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ModelError(f"windows must have shape (N, T, 3), got {x.shape}")
    if x.shape[1] != model.input_size:
        raise ModelError(f"windows have T={x.shape[1]} samples but {model.source} takes T={model.input_size}")
    x = apply_preprocessing(x, model.preprocessing)
    return x.reshape((x.shape[0], *shape)).astype(np.float32)


def keras_predict(model: LoadedModel, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Softmax outputs of the Keras rebuild of ``model`` for inputs already shaped like the model input."""
    km = arch_to_keras(model.arch, model.weights)
    x = np.asarray(x, np.float32)
    outs = [np.asarray(km(x[i : i + batch_size], training=False)) for i in range(0, len(x), batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0, model.arch.n_classes), np.float32)


# ================================================================================================
# Exports
# ================================================================================================


def _loaded(model: LoadedModel | tuple) -> LoadedModel:
    """The model an export writes.  Weights with a NaN or Inf (a round that diverged) are refused before
    anything is written: every reader of the formats refuses them too (:func:`load_npz`,
    :func:`read_c_header`, :func:`load_model`), so such a file could never be used."""
    if isinstance(model, LoadedModel):
        m = model
    elif isinstance(model, tuple) and len(model) == 2:
        arch, weights = model
        m = LoadedModel(arch, check_weights(arch, weights), tuple(arch.classes), arch.preprocessing, arch.name)
    else:
        raise ModelError(f"expected a LoadedModel or (arch, weights), got {type(model).__name__}")
    bad = nonfinite_layers(m.weights)
    if bad:
        raise ModelError(
            (f"{m.source}: " if m.source else "")
            + f"the weights of layer(s) {', '.join(bad)} are NaN or Inf (a round that diverged?); "
            "such a model cannot be loaded back or run, so it is not exported"
        )
    return m


def sidecar_dict(model: LoadedModel, extra: Mapping[str, Any] | None = None) -> dict:
    meta = {k: v for k, v in model.meta.items() if _jsonable(v)}
    meta.update(
        classes=list(model.classes),
        preprocessing=model.preprocessing,
        input_size=model.input_size,
        input_shape=list(model.input_shape),
        params=model.arch.params,
    )
    meta.setdefault("rate_hz", 20.0)
    meta.setdefault("units", "m/s^2")
    if extra:
        meta.update(extra)
    return meta


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def write_sidecar(model_path: str | Path, model: LoadedModel, extra: Mapping[str, Any] | None = None) -> Path:
    side = sidecar_path(model_path)
    with atomic_path(side) as tmp:
        tmp.write_text(json.dumps(sidecar_dict(model, extra), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return side


def _out_path(path: str | Path, suffixes: Iterable[str]) -> Path:
    p = Path(path)
    sfx = tuple(suffixes)
    if p.suffix.lower() not in sfx:
        raise ModelError(f"{p}: export file name must end with {' or '.join(sfx)}")
    if not p.parent.exists():
        raise ModelError(f"{p}: folder {p.parent} does not exist")
    return p


def export_keras(model: LoadedModel | tuple, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``path`` (``.keras``, Keras 3 zip) plus its JSON sidecar; returns ``path``."""
    m = _loaded(model)
    p = _out_path(path, (".keras",))
    with _refused_write(p), atomic_path(p) as tmp:
        arch_to_keras(m.arch, m.weights).save(str(tmp))
    write_sidecar(p, m, extra)
    return p


@contextmanager
def _refused_write(p: Path) -> Iterator[None]:
    """A write of ``p`` the system refused (a full or read-only disk), said in words as a :class:`ModelError`
    ("cannot write /x/a.h5: No space left on device"), not as "OSError: [Errno 28] … '/x/.a.tmp123.h5'" — nor
    as h5py's "RuntimeError: Can't destroy cache (slist already enabled?)", raised while it closes a file whose
    write failed (the ``OSError`` is then its context)."""
    from app.core.outputs import write_failure  # noqa: PLC0415

    try:
        yield
    except ModelError:
        raise
    except Exception as exc:
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, OSError) and cause.errno:
                raise ModelError(write_failure(p, cause)) from exc
            hdf5 = re.search(r"\berrno = (\d+)", str(cause))  # "… file write failed: … errno = 28, error message = …"
            if hdf5 and int(hdf5.group(1)) > 0:
                raise ModelError(f"cannot write {p}: {os.strerror(int(hdf5.group(1)))}") from exc
            cause = cause.__cause__ or cause.__context__
        raise


def export_h5(model: LoadedModel | tuple, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``path`` (legacy HDF5 ``.h5``, loadable by Keras 2.x tools such as ST Edge AI) plus sidecar."""
    m = _loaded(model)
    p = _out_path(path, (".h5", ".hdf5"))
    import warnings  # noqa: PLC0415

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns that HDF5 is a legacy format
        with _refused_write(p), atomic_path(p) as tmp:
            arch_to_keras(m.arch, m.weights).save(str(tmp))
    write_sidecar(p, m, extra)
    return p


def _representative(
    model: LoadedModel, representative: np.ndarray | None, n_max: int = 300, seed: int = 0
) -> np.ndarray:
    if representative is None:
        raise ModelError("int8 TFLite export needs representative windows (the user's windows, shape (N, T, 3))")
    x = np.asarray(representative, dtype=np.float32)
    if len(x) == 0:
        raise ModelError("int8 TFLite export needs at least one representative window, got 0")
    x = prepare_input(model, x)
    if len(x) > n_max:
        x = x[np.random.default_rng(seed).choice(len(x), n_max, replace=False)]
    return x


def tflite_bytes(
    model: LoadedModel | tuple,
    quantize: str = "float32",
    representative: np.ndarray | None = None,
    timeout: float | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> bytes:
    """TFLite flatbuffer of the model (input = preprocessed windows in the model's input shape,
    float32 input and output in both modes; ``int8`` quantizes weights and activations with
    statistics from ``representative`` raw ``(N, T, 3)`` windows).

    TensorFlow's converter runs in a child process (:mod:`app.core.tflite_convert`): it is not safe on a
    worker thread of the app, and a crash, hang (``timeout`` s, default ``ODL_TFLITE_TIMEOUT_S`` or 300)
    or error in it becomes a :class:`ModelError` naming the conversion, never the end of the app.  This
    process does not import TensorFlow for it."""
    from app.core.tflite_convert import convert  # noqa: PLC0415

    m = _loaded(model)
    if quantize not in ("float32", "int8"):
        raise ModelError(f"quantize must be 'float32' or 'int8', got {quantize!r}")
    rep = _representative(m, representative) if quantize == "int8" else None
    what = f"TFLite conversion ({quantize}) of {m.source or m.arch.name}"
    return convert(m.arch, m.weights, quantize, rep, what, timeout=timeout, cancelled=cancelled)


def export_tflite(
    model: LoadedModel | tuple,
    path: str | Path,
    quantize: str = "float32",
    representative: np.ndarray | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> Path:
    """Write a ``.tflite`` file (see :func:`tflite_bytes`: converted in a child process) plus its JSON
    sidecar.  A failed conversion writes nothing (an older file of that name stays)."""
    m = _loaded(model)
    p = _out_path(path, (".tflite",))
    content = tflite_bytes(m, quantize, representative, cancelled=cancelled)
    with atomic_path(p) as tmp:
        tmp.write_bytes(content)
    write_sidecar(p, m, {"tflite_quantize": quantize})
    return p


def run_tflite(model_or_path: bytes | str | Path, x: np.ndarray) -> np.ndarray:
    """Run a TFLite model on a batch ``x`` (already in the model's input shape); returns the outputs."""
    tf = _tf()
    import warnings  # noqa: PLC0415

    content = model_or_path if isinstance(model_or_path, (bytes, bytearray)) else Path(model_or_path).read_bytes()
    x = np.asarray(x, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            it = tf.lite.Interpreter(model_content=bytes(content))
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"not a valid TFLite model: {_short(exc)}") from exc
    inp = it.get_input_details()[0]
    it.resize_tensor_input(inp["index"], list(x.shape))
    it.allocate_tensors()
    it.set_tensor(inp["index"], x)
    it.invoke()
    return np.array(it.get_tensor(it.get_output_details()[0]["index"]))


# --- C header -------------------------------------------------------------------------------------

#: Layer kind codes used in the C header's layer table (stable: firmware depends on them).
C_KIND_CODES = {
    "conv1d": 0, "conv2d": 1, "dense": 2, "relu": 3, "softmax": 4, "avgpool1d": 5, "maxpool1d": 6,
    "avgpool2d": 7, "maxpool2d": 8, "gap1d": 9, "gmp1d": 10, "gap2d": 11, "gmp2d": 12, "flatten": 13,
    "batchnorm": 14, "dropout": 15,
}  # fmt: skip


def _c_ident(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", text)
    return s if s and not s[0].isdigit() else f"m_{s}"


def _c_float(v: float) -> str:
    s = str(np.float32(v))  # shortest text that round-trips the float32, always with a "." or an exponent
    if s in ("inf", "-inf", "nan"):
        raise ModelError(f"weight value {s} cannot be exported to C")
    return s + "f"


def _c_string(text: str) -> str:
    """``text`` as a C string literal: quotes, backslashes and control characters (a newline in a class
    name) escaped, the latter as 3-digit octal, which no following character can extend."""
    body = "".join(
        "\\" + ch if ch in '"\\' else f"\\{ord(ch):03o}" if ord(ch) < 32 or ord(ch) == 127 else ch for ch in text
    )
    return f'"{body}"'


def _c_comment(text: str) -> str:
    """``text`` inside a C block comment on one line: no line break, and no ``*/`` that would end it."""
    return re.sub(r"[\r\n]+", " ", text).replace("*/", "* /")


def _shape3(shape: Sequence[int]) -> str:
    s = list(shape) + [1] * (3 - len(shape))
    return "{" + ", ".join(str(int(v)) for v in s[:3]) + "}"


def c_header_text(model: LoadedModel | tuple, prefix: str = "odl_model") -> str:
    """The C header text (see :func:`export_c_header`)."""
    m = _loaded(model)
    arch = m.arch
    P = _c_ident(prefix)
    U = P.upper()
    in_shapes, out_shapes = arch.input_shapes(), arch.shapes()
    chunks: list[np.ndarray] = []
    rows: list[str] = []
    offset = 0
    for layer, ins, outs in zip(arch.layers, in_shapes, out_shapes):
        arrays = m.weights.get(layer.name, [])
        count = int(sum(a.size for a in arrays))
        chunks += [np.asarray(a, np.float32).ravel() for a in arrays]
        rows.append(
            f"    {{{C_KIND_CODES[layer.kind]}, {_c_string(layer.name)}, {layer.filters}, {layer.kernel}, {layer.units}, "
            f"{layer.pool}, {layer.stride or layer.pool}, {int(layer.use_bias)}, {_c_float(layer.rate)}, "
            f"{_c_float(layer.epsilon)}, {len(ins)}, {_shape3(ins)}, {len(outs)}, {_shape3(outs)}, {offset}u, {count}u}},"
        )
        offset += count
    flat = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    lines = []
    for i in range(0, len(flat), 8):
        lines.append("    " + ", ".join(_c_float(v) for v in flat[i : i + 8]) + ",")
    arch_json = json.dumps(arch.to_dict(), sort_keys=True).replace("\\", "\\\\").replace('"', '\\"')
    classes = ", ".join(_c_string(c) for c in m.classes)
    kinds = "\n".join(f"#define ODL_KIND_{k.upper()} {v}" for k, v in C_KIND_CODES.items())
    return f"""/* {P}.h - generated by ODL Studio (app.core.models.export_c_header). Do not edit.
 * Model: {_c_comment(arch.name)}; source: {_c_comment(m.source)}
 * Input: {list(arch.input_shape)} float32 in m/s^2 after preprocessing '{m.preprocessing}'; output: softmax over {len(m.classes)} classes.
 * Weights: every parameter array of every layer, concatenated in layer order, each in Keras layout
 * flattened row-major (C order): conv1d kernel (K, C_in, F) then bias (F); conv2d kernel (K, 1, C_in, F)
 * then bias; dense kernel (N_in, units) then bias; batchnorm gamma, beta, moving_mean, moving_variance.
 * Layer table: {P}_layers[i].param_offset/param_count index {P}_weights.
 */
#ifndef {U}_H
#define {U}_H

#include <stdint.h>

#ifndef ODL_LAYER_TABLE_TYPES
#define ODL_LAYER_TABLE_TYPES
{kinds}

typedef struct {{
    uint8_t kind;          /* ODL_KIND_* */
    const char *name;
    uint16_t filters, kernel, units, pool, stride;
    uint8_t use_bias;
    float rate, epsilon;   /* dropout rate; batchnorm epsilon */
    uint8_t in_rank;  uint16_t in_shape[3];   /* per sample, without batch axis; unused dims = 1 */
    uint8_t out_rank; uint16_t out_shape[3];
    uint32_t param_offset, param_count;        /* into the weights array */
}} odl_layer_t;
#endif

#define {U}_INPUT_RANK {len(arch.input_shape)}
#define {U}_INPUT_LEN {arch.input_size}
#define {U}_N_CLASSES {len(m.classes)}
#define {U}_N_LAYERS {len(arch.layers)}
#define {U}_N_PARAMS {len(flat)}u
#define {U}_PREPROC_GRAVITY_ROT_SUP {int(m.preprocessing == "gravity_rot_sup")}

static const uint16_t {P}_input_shape[3] = {_shape3(arch.input_shape)};
static const char *const {P}_classes[{U}_N_CLASSES] = {{{classes}}};
static const char {P}_arch_json[] = "{arch_json}";

static const odl_layer_t {P}_layers[{U}_N_LAYERS] = {{
{chr(10).join(rows)}
}};

static const float {P}_weights[{max(1, len(flat))}] = {{
{chr(10).join(lines) if lines else "    0.0f,"}
}};

#endif /* {U}_H */
"""


def export_c_header(model: LoadedModel | tuple, path: str | Path, prefix: str | None = None) -> Path:
    """Write a self-contained C header: ``<prefix>_weights`` (all parameters, float32, Keras layout),
    ``<prefix>_layers`` (layer table with kind codes, hyper-parameters, shapes, parameter offsets),
    class names, the architecture JSON and ``#define`` s for sizes.  ``prefix`` defaults to the file
    stem."""
    m = _loaded(model)
    p = _out_path(path, (".h",))
    text = c_header_text(m, prefix or p.stem)
    with atomic_path(p) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return p


def read_c_header(path: str | Path) -> LoadedModel:
    """Parse a header written by :func:`export_c_header` back into a :class:`LoadedModel` (tests,
    checking what was flashed)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{p}: cannot read ({exc})") from exc
    m = re.search(r'_arch_json\[\] = "((?:[^"\\]|\\.)*)";', text)
    w = re.search(r"_weights\[\d+\] = \{(.*?)\};", text, re.DOTALL)
    if not m or not w:
        raise ModelError(f"{p}: not an ODL Studio model header (no arch JSON or weights array)")
    try:  # ArchError is a ValueError: a damaged arch JSON, like a weight that is no number, names the file
        arch = Arch.from_json(m.group(1).replace('\\"', '"').replace("\\\\", "\\"))
        values = np.array([float(v.rstrip("f")) for v in re.findall(r"[-+0-9.eEinfa]+f", w.group(1))], dtype=np.float32)
    except ValueError as exc:
        raise ModelError(f"{p}: not an ODL Studio model header ({_short(exc)})") from exc
    param_shapes = arch.param_shapes()
    need = sum(int(np.prod(s)) for shapes in param_shapes.values() for s in shapes)
    if need == 0 and values.tolist() == [0.0]:  # C has no empty array: the writer's one 0.0f of a model without weights
        values = values[:0]
    if need != len(values):  # before reshaping: too few values must not end in a bare reshape error
        raise ModelError(f"{p}: {len(values)} weight values but the architecture needs {need}")
    weights: Weights = {}
    pos = 0
    for name, shapes in param_shapes.items():
        arrays = []
        for s in shapes:
            n = int(np.prod(s))
            arrays.append(values[pos : pos + n].reshape(s))
            pos += n
        weights[name] = arrays
    bad = nonfinite_layers(weights)
    if bad:
        raise ModelError(f"{p}: weights of layer(s) {', '.join(bad)} contain NaN or Inf")
    return LoadedModel(arch, weights, tuple(arch.classes), arch.preprocessing, str(p), {})


# --- npz ------------------------------------------------------------------------------------------


def export_npz(model: LoadedModel | tuple, path: str | Path) -> Path:
    """Write ``path`` (``.npz``): arrays ``w/<layer>/<i>`` (Keras layout) and ``arch_json`` (the
    architecture incl. classes and preprocessing) and ``meta_json``; no pickles."""
    m = _loaded(model)
    p = _out_path(path, (".npz",))
    # Any: np.savez's **kwds share the call with its allow_pickle flag, and mypy will not pass a dict of
    # arrays where that bool could be (the keys are "w/...", never "allow_pickle")
    arrays: dict[str, Any] = {f"w/{name}/{i}": a for name, ws in m.weights.items() for i, a in enumerate(ws)}
    arch = Arch(m.arch.input_shape, m.arch.layers, tuple(m.classes), m.arch.name, m.preprocessing, {})
    meta = {k: v for k, v in m.meta.items() if _jsonable(v)}
    with atomic_path(p) as tmp:
        np.savez(tmp, arch_json=np.array(arch.to_json()), meta_json=np.array(json.dumps(meta)), **arrays)
    return p


def _refuse_a_capture(path: Path) -> None:
    """An LPM01A capture (``odlstudio power``, the Power panel) picked as a model: said as what it is, not as
    Keras's "No model config found in the file" (a peek at its attributes; anything else goes on to Keras)."""
    if path.suffix.lower() not in (".h5", ".hdf5"):
        return
    try:
        import h5py  # noqa: PLC0415

        with h5py.File(path, "r") as f:
            fmt = f.attrs.get("format")
    except Exception:  # noqa: BLE001 - not readable here: Keras says why
        return
    if fmt == "odlstudio-lpm01a-capture":  # (h5py reads the recorder's string attribute back as str)
        raise ModelError(f"{path}: an LPM01A power capture (odlstudio power, the Power panel), not a Keras model")


def load_npz(path: str | Path) -> LoadedModel:
    p = Path(path)
    from app.core.datasets import _names, sniff_file  # noqa: PLC0415

    kind = sniff_file(p)
    if kind.kind not in ("model", "npz", "unreadable"):  # (unreadable, or arrays of its own: np.load says)
        # a data file (a windows export, a HAPT dataset, ...) picked as a model: named for what it is
        if kind.kind == "damaged_zip":
            raise ModelError(f"{p}: not an ODL Studio model .npz: {kind.what}")
        raise ModelError(f"{p}: {kind.what}, not an ODL Studio model .npz (arrays arch_json, meta_json, w/…)")
    try:
        with np.load(p, allow_pickle=False) as z:
            if "arch_json" not in z.files:
                shown = _names(z.files)
                raise ModelError(f"{p}: not an ODL Studio model .npz: it has no array arch_json (has: {shown})")
            arch = Arch.from_json(str(z["arch_json"]))
            meta = json.loads(str(z["meta_json"])) if "meta_json" in z.files else {}
            weights: dict[str, list[tuple[int, np.ndarray]]] = {}  # (index in the layer, array)
            for key in z.files:
                if key.startswith("w/"):
                    _, name, i = key.split("/")
                    weights.setdefault(name, []).append((int(i), np.array(z[key])))
    except ModelError:
        raise
    except (
        OSError,
        ValueError,
        KeyError,
        zipfile.BadZipFile,
        EOFError,
        ArchError,
        TypeError,
        NotImplementedError,
        RuntimeError,
    ) as exc:
        raise ModelError(f"{p}: not an ODL Studio model .npz ({_short(exc)})") from exc
    except MemoryError as exc:  # a damaged header declaring an absurd array size
        raise ModelError(f"{p}: an array in this .npz declares an impossible size ({_short(exc)})") from None
    w = {n: [a for _, a in sorted(lst, key=lambda t: t[0])] for n, lst in weights.items()}
    try:
        w = check_weights(arch, w)
    except ModelError as exc:
        raise ModelError(f"{p}: {exc}") from None
    for name, arrays in w.items():
        if not all(np.isfinite(a).all() for a in arrays):
            raise ModelError(f"{p}: weights of layer {name!r} contain NaN or Inf")
    if not isinstance(meta, dict):
        raise ModelError(f"{p}: its metadata (meta_json) is not a JSON object")
    _check_meta(p, meta, tuple(arch.classes))
    return LoadedModel(arch, w, tuple(arch.classes), arch.preprocessing, str(p), meta)


# --- everything -----------------------------------------------------------------------------------


class ExportError(ModelError):
    """Some formats of an export could not be written; the others were.  ``written`` is ``{format: path}``
    of what was written, ``failed`` is ``{format: message}``."""

    def __init__(self, message: str, written: Mapping[str, Path], failed: Mapping[str, str]):
        super().__init__(message)
        self.written = dict(written)
        self.failed = dict(failed)


def export_all(
    model: LoadedModel | tuple,
    out_dir: str | Path,
    stem: str = "model",
    representative: np.ndarray | None = None,
    formats: Sequence[str] = ("keras", "h5", "tflite_float32", "tflite_int8", "c_header", "npz"),
    cancelled: Callable[[], bool] = lambda: False,
    isolate: bool = False,
) -> dict[str, Path]:
    """Write every export format into ``out_dir`` (created if missing) as ``<stem>.<ext>``; returns
    ``{format: path}`` of what was written.  ``tflite_int8`` needs ``representative`` windows and is
    left out (not an error) without them.  A format that fails (a TFLite converter that crashed, a model
    Keras cannot save ...) does not stop the others: they are all tried, then :class:`ExportError` lists
    the failures and carries what was written.  ``cancelled()`` is checked between formats (and stops a
    running TFLite conversion); a cancelled export returns what was written.  ``isolate`` (the app): the
    ``.keras``/``.h5`` files are written by a child process unless TensorFlow is already imported here (see
    :func:`load_model`; the ``.tflite`` ones always are)."""
    m = _loaded(model)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"{out}: cannot create the export folder ({exc.strerror or exc})") from exc
    known = set(EXPORT_SUFFIXES)
    unknown = set(formats) - known
    if unknown:
        raise ModelError(f"unknown export formats {sorted(unknown)} (known: {', '.join(sorted(known))})")
    jobs: list[tuple[str, Callable[[], Path]]] = []

    def keras_job(fmt: str, path: Path) -> Callable[[], Path]:
        if not isolate or tensorflow_imported():
            return lambda: _export_here(m, fmt, str(path))
        from app.core import child  # noqa: PLC0415

        return lambda: Path(
            child.run(
                _export_here,
                (m, fmt, str(path)),
                what=f"{path}: writing the model",
                who="the Keras writer",
                timeout=LOAD_TIMEOUT_S,
                cancelled=cancelled,
                accept=lambda value: isinstance(value, Path),
                passthrough=True,
            )
        )

    if "keras" in formats:
        jobs.append(("keras", keras_job("keras", export_path(out, stem, "keras"))))
    if "h5" in formats:
        jobs.append(("h5", keras_job("h5", export_path(out, stem, "h5"))))
    if "tflite_float32" in formats:
        jobs.append(
            (
                "tflite_float32",
                lambda: export_tflite(m, export_path(out, stem, "tflite_float32"), "float32", None, cancelled),
            )
        )
    if "tflite_int8" in formats and representative is not None and len(representative):
        jobs.append(
            (
                "tflite_int8",
                lambda: export_tflite(m, export_path(out, stem, "tflite_int8"), "int8", representative, cancelled),
            )
        )
    if "c_header" in formats:
        jobs.append(("c_header", lambda: export_c_header(m, export_path(out, stem, "c_header"), prefix=_c_ident(stem))))
    if "npz" in formats:
        jobs.append(("npz", lambda: export_npz(m, export_path(out, stem, "npz"))))
    written: dict[str, Path] = {}
    failed: dict[str, str] = {}
    for fmt, job in jobs:
        if cancelled():
            break
        try:
            written[fmt] = job()
        except ModelError as exc:
            if cancelled():
                break
            failed[fmt] = str(exc)
    if failed:
        done = f"; written: {', '.join(written)}" if written else "; nothing was written"
        raise ExportError("; ".join(f"{fmt} not written: {msg}" for fmt, msg in failed.items()) + done, written, failed)
    return written


# ================================================================================================
# Evaluation and pretraining
# ================================================================================================


def evaluate(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict:
    """Accuracy, macro-F1, per-class F1 and confusion matrix (metrics from ``device.engine.metrics``)
    as a JSON-able dict.  ``probs``: ``(N, C)`` outputs or ``(N,)`` predicted indices."""
    from device.engine import metrics  # noqa: PLC0415

    n = len(classes)
    y_true = np.asarray(y_true)  # class indices: the metrics refuse fractional ones (never truncated)
    pred = np.asarray(probs)  # (N, C) outputs: the metrics take their argmax
    if len(y_true) == 0:
        return {
            "n": 0,
            "accuracy": None,
            "macro_f1": None,
            "per_class_f1": {},
            "confusion": [],
            "classes": list(classes),
        }
    f1 = metrics.per_class_f1(y_true, pred, n)
    return {
        "n": int(len(y_true)),
        "accuracy": round(metrics.accuracy(y_true, pred), 4),
        "macro_f1": round(metrics.macro_f1(y_true, pred, n_classes=n), 4),
        "per_class_f1": {c: round(float(f), 4) for c, f in zip(classes, f1)},
        "confusion": metrics.confusion_matrix(y_true, pred, n).tolist(),
        "classes": list(classes),
    }


class _StderrBar:
    """A one-line text progress bar on stderr (epochs x batches), throttled to ~10 updates/s."""

    def __init__(self, epochs: int, steps: int, stream=None, width: int = 30):
        import sys  # noqa: PLC0415
        import time  # noqa: PLC0415

        self.epochs, self.steps, self.width = epochs, max(1, steps), width
        self.stream = stream if stream is not None else sys.stderr
        self._time = time.monotonic
        self._last = 0.0
        self._t0 = self._time()

    def update(self, epoch: int, step: int, logs: Mapping[str, float] | None = None, force: bool = False) -> None:
        now = self._time()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        done = (epoch * self.steps + step) / (self.epochs * self.steps)
        fill = int(round(done * self.width))
        info = " ".join(f"{k} {v:.3f}" for k, v in (logs or {}).items() if isinstance(v, (int, float)))
        self.stream.write(
            f"\repoch {epoch + 1}/{self.epochs} [{'#' * fill}{'.' * (self.width - fill)}] {done * 100:5.1f}% "
            f"{now - self._t0:6.1f}s {info}   "
        )
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def train_paper_cnn(
    train_x: np.ndarray,
    train_y: np.ndarray,
    classes: Sequence[str],
    val: tuple[np.ndarray, np.ndarray] | None = None,
    epochs: int = 30,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 1e-3,
    progress: bool | Any = True,
    meta: Mapping[str, Any] | None = None,
) -> tuple[LoadedModel, dict]:
    """Train the paper's 1D-CNN from scratch on ``(N, T, 3)`` m/s² windows (Adam, sparse categorical
    cross-entropy).  Reproducible: Python/numpy/TF seeds set from ``seed`` and TF op determinism on.
    With ``val`` the weights of the epoch with the best validation macro-F1 are kept.  ``progress``:
    ``True`` draws a bar on stderr, or pass a file-like stream, or ``False``.
    Returns the model and a history dict (per-epoch loss/accuracy, best epoch, validation report)."""
    x = np.asarray(train_x, np.float32)
    y = np.asarray(train_y, np.int64)
    if x.ndim != 3 or x.shape[-1] != 3 or len(x) != len(y) or len(x) == 0:
        raise ModelError(f"training windows must be (N, T, 3) with N labels, got x {x.shape}, y {y.shape}")
    if epochs < 1:
        raise ModelError(f"epochs must be >= 1, got {epochs}")
    T = int(x.shape[1])
    keras = _keras()
    tf = _tf()
    keras.utils.set_random_seed(int(seed))
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # noqa: BLE001 - older TF or already initialised
        pass
    arch = paper_cnn(T, len(classes), tuple(classes))
    km = arch_to_keras(arch, None, seed=seed)
    km.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    steps = int(np.ceil(len(x) / batch_size))
    stream = None if progress is True else (progress or None)
    bar = _StderrBar(epochs, steps, stream) if progress else None
    history: dict = {"epochs": [], "best_epoch": None}
    best = (-1.0, None)

    callback_base: Any = keras.callbacks.Callback  # keras comes from a lazy import: a value, not a module

    class _CB(callback_base):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if bar:
                bar.update(self.epoch, batch + 1, logs)

        def on_epoch_end(self, epoch, logs=None):
            nonlocal best
            row = {k: round(float(v), 5) for k, v in (logs or {}).items()}
            if val is not None and len(val[0]):
                probs = np.concatenate(
                    [np.asarray(self.model(val[0][i : i + 2048], training=False)) for i in range(0, len(val[0]), 2048)]
                )
                rep = evaluate(val[1], probs, classes)
                row.update(val_accuracy=rep["accuracy"], val_macro_f1=rep["macro_f1"])
                if rep["macro_f1"] > best[0]:
                    best = (rep["macro_f1"], [np.array(w) for w in self.model.get_weights()])
                    history["best_epoch"] = epoch + 1
            history["epochs"].append(row)
            if bar:
                bar.update(epoch, steps, {k: v for k, v in row.items() if k != "loss" or True}, force=True)

    try:
        km.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0, callbacks=[_CB()])
    finally:
        if bar:
            bar.close()
    if best[1] is not None:
        km.set_weights(best[1])
    info = dict(meta or {})
    info.update(
        trained_epochs=epochs,
        seed=int(seed),
        batch_size=batch_size,
        learning_rate=lr,
        optimizer="adam",
        train_windows=int(len(x)),
    )
    model = from_keras(km, classes, "none", source=arch.name, meta=info)
    bad = nonfinite_layers(model.weights)
    if bad:
        raise ModelError(
            f"training diverged: the weights of layer(s) {', '.join(bad)} became NaN or Inf "
            f"(learning rate {lr:g}; try a smaller --lr, or check the data for absurd values); nothing was written"
        )
    if val is not None and len(val[0]):
        history["val"] = evaluate(val[1], keras_predict(model, val[0]), classes)
    return model, history


def nonfinite_layers(weights: Weights) -> list[str]:
    """Names of the layers with a NaN or Inf weight."""
    return [name for name, arrays in weights.items() if not all(np.isfinite(np.asarray(a)).all() for a in arrays)]
