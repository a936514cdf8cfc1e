"""A training round's settings (Qt-free): what the user chose in the Training panel (:class:`RoundConfig`), the
shipped general models and the trainable layer sets.  Part of :mod:`app.core.rounds` (which re-exports it)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, TypeVar

from app.core.paths import asset_path
from app.core.procedure import PLAIN, ROBUST, Procedure, ProcedureError
from estimator.arch import Arch, resolve_trainable

if TYPE_CHECKING:  # pragma: no cover
    pass


MODELS_DIR = asset_path("models")  # frozen or from source, honours $ODL_ASSETS
#: Input sizes of the general models shipped in ``assets/models`` (paper CNN, WISDM-2019, 20 Hz).
GENERAL_SIZES = (20, 40, 60, 80, 100)
#: Trainable sets: the paper's TL (last two Dense) and Full, the last Dense only, or a custom list.
MODES = ("tl", "full", "last", "custom")
#: Export formats (keys of :func:`app.core.models.export_all`).
EXPORT_FORMATS = ("keras", "h5", "tflite_float32", "tflite_int8", "c_header", "npz")
ROUNDS_DIR = "rounds"
#: Epoch counts the recommender tries (the Estimator's simulation measures the same ones).
RECOMMEND_EPOCHS = (1, 2, 3, 5, 10)


class RoundError(RuntimeError):
    """A round that cannot run or a bad setting; the message says what and how to fix it."""


class ExportIncomplete(RoundError):
    """:func:`export_round` wrote some formats (and the report) but not all: ``written`` is every file
    written (as :func:`export_round` returns it), ``failed`` is ``{format: message}``."""

    def __init__(self, message: str, written: dict, failed: dict):
        super().__init__(message)
        self.written = dict(written)
        self.failed = dict(failed)


# ================================================================================================
# Configuration
# ================================================================================================


#: Warm-up epochs (the last Dense layer alone first) a round starts with where the user does not say: the
#: paper's 2, which the LOSO study behind the recommender's accuracy prior used too.  The Training panel's box
#: and ``odlstudio personalize`` start at it (the panel started at 0, so "the defaults" were two rounds).
WARMUP_EPOCHS = 2


@dataclass
class RoundConfig:
    """What the user chose in the Training panel (stored as the round's ``config`` JSON)."""

    model_path: str | None = None  # None -> the general model for ``input_size``
    input_size: int = 20
    mode: str = "tl"  # one of MODES
    layers: tuple[str, ...] = ()  # trained layers for mode 'custom'
    epochs: int = 2
    lr: float = 0.01
    batch_size: int = 32
    warmup_epochs: int = 0  # epochs of last-Dense-only training first (the app's and the CLI's: WARMUP_EPOCHS)
    warmup_lr: float | None = None
    seed: int = 0
    train_fraction: float = 0.6
    measure_power: bool = True
    profile: str = "odl-firmware"  # estimator profile for the predictions shown beside the measurements
    procedure: dict = field(default_factory=ROBUST.to_dict)  # app.core.procedure.Procedure (robust by default)

    @property
    def proc(self) -> Procedure:
        return Procedure.from_dict(self.procedure or {})

    def validate(self) -> "RoundConfig":
        def bad(name: str, allowed: str) -> RoundError:
            return RoundError(f"{name} = {getattr(self, name)!r} is outside the allowed range ({allowed})")

        if self.mode not in MODES:
            raise bad("mode", " | ".join(MODES))
        if self.mode == "custom" and not self.layers:
            raise RoundError("mode 'custom' needs at least one layer to train (tick layers in the list)")
        if self.model_path is None and int(self.input_size) not in GENERAL_SIZES:
            raise bad("input_size", f"general models exist for T in {GENERAL_SIZES}")
        if not 1 <= int(self.epochs) <= 1000:
            raise bad("epochs", "1..1000")
        if not 0 <= int(self.warmup_epochs) <= 100:
            raise bad("warmup_epochs", "0..100")
        if not 1 <= int(self.batch_size) <= 1024:
            raise bad("batch_size", "1..1024")
        for name in ("lr", "warmup_lr"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(float(v)) and 0 < float(v) <= 10):
                raise bad(name, "0 < lr <= 10")
        if not 0.05 <= float(self.train_fraction) <= 0.95:
            raise bad("train_fraction", "0.05..0.95")
        try:
            self.proc.validate()
        except (ProcedureError, TypeError) as exc:
            raise RoundError(f"procedure: {exc}") from None
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["layers"] = list(self.layers)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RoundConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "layers" in kw:
            kw["layers"] = tuple(kw["layers"])
        if not isinstance(kw.get("procedure", {}), dict):
            kw.pop("procedure")
        kw.setdefault("procedure", PLAIN.to_dict())  # rounds stored before issue 17 ran the plain round
        return cls(**kw)


def general_model_path(input_size: int) -> Path:
    """The shipped general model for ``input_size`` (raises :class:`RoundError` naming what exists)."""
    p = MODELS_DIR / f"paper_cnn_wisdm5_T{int(input_size)}.keras"
    if not p.is_file():
        # (only names that general_model_path would find: a stray "..._T20 (copy).keras" is not a size)
        sizes = (q.stem.removeprefix("paper_cnn_wisdm5_T") for q in MODELS_DIR.glob("paper_cnn_wisdm5_T*.keras"))
        have = sorted(int(s) for s in sizes if s.isdecimal())
        raise RoundError(
            f"no general model for input size T={input_size} in {MODELS_DIR} (have T in {have}); "
            "run `make assets` or import a model"
        )
    return p


def general_model_facts(input_size: int) -> tuple[tuple[str, ...], float] | None:
    """The classes and sample rate of the shipped general model for ``input_size`` from its metadata sidecar
    (``paper_cnn_wisdm5_T<T>.json``), without loading the model (a round checks its data with them before the
    model import), or None when the sidecar is missing or does not say."""
    meta = _sidecar(MODELS_DIR / f"paper_cnn_wisdm5_T{int(input_size)}.keras")
    try:
        classes = tuple(str(c) for c in meta["classes"])
        rate = float(meta.get("rate_hz", 20.0))
    except (ValueError, TypeError, KeyError):
        return None
    return (classes, rate) if classes and math.isfinite(rate) and rate > 0 else None


def model_facts(model_path: object, input_size: int) -> tuple[tuple[str, ...], int, float] | None:
    """(classes, T, rate) of the model a round will load, without loading it: the shipped general model's for
    ``input_size`` (no ``model_path``), or what a model file's neighbours state in full
    (:func:`app.core.models.stated_info`) — its sidecar (``<stem>.json``, which the app writes beside every
    model it exports: classes, ``input_size``, ``rate_hz``), or for an ST model zoo file its folder, its
    ``<stem>_config.yaml`` and its name (``ign_wl_24.h5``: T = 24); None where they are not known before the
    load."""
    if not model_path:
        facts = general_model_facts(input_size)
        return None if facts is None else (facts[0], int(input_size), facts[1])
    from app.core.models import ModelError, st_input_size, stated_info

    path = Path(str(model_path))
    try:
        _, meta = stated_info(path)  # (a broken sidecar: nothing is known before the load, which says why)
        classes = tuple(str(c) for c in meta["classes"])
        T, rate = meta.get("input_size", st_input_size(path)), float(meta["rate_hz"])
    except (ModelError, ValueError, TypeError, KeyError):
        return None
    if not (classes and type(T) is int and T > 0 and math.isfinite(rate) and rate > 0):
        return None
    return classes, T, rate


def _sidecar(model_path: Path) -> dict:
    """A model file's metadata sidecar (:func:`app.core.models._read_sidecar`, the one the model's load reads),
    ``{}`` where it is missing or broken: then nothing is known before the load, which says what is wrong."""
    from app.core.models import ModelError, _read_sidecar

    try:
        return _read_sidecar(model_path)
    except ModelError:
        return {}


D = TypeVar("D")
M = TypeVar("M")


def data_then_model(
    input_size: int, model_path: object, read: Callable[[tuple[str, ...], int, float], D], load: Callable[[], M]
) -> tuple[M, D]:
    """The user's windows and the model of a round (the Training panel's and ``odlstudio personalize``'s),
    read in the order that says a problem soonest: where the model's classes, T and rate are known before it
    loads (:func:`model_facts`: the shipped general model's sidecar, a model file's), data that cannot be used
    (``read(classes, T, rate)`` raises) is refused before ``load()`` imports the model (TensorFlow starts:
    seconds).  That reading is kept when the model agrees (the same classes, T and rate); otherwise, and where
    nothing is known before the load, the data is read with the loaded model's classes, T and rate."""
    facts = model_facts(model_path, input_size)
    early = None if facts is None else read(*facts)
    model: Any = load()
    classes, T, rate = tuple(model.classes), int(model.input_size), float(model.meta.get("rate_hz", 20.0))
    if early is not None and facts == (classes, T, rate):
        return model, early
    return model, read(classes, T, rate)


def trainable_names(arch: Arch, cfg: RoundConfig) -> frozenset[str]:
    """Layer names the round trains (``custom``: the chosen layers, checked against the model)."""
    try:
        return frozenset(resolve_trainable(arch, list(cfg.layers) if cfg.mode == "custom" else cfg.mode))
    except Exception as exc:  # ArchError: unknown layer / nothing trainable
        raise RoundError(f"trainable set {cfg.mode!r} {list(cfg.layers) or ''}: {exc}") from exc
