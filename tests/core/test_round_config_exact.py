"""Exact behaviour of a training round's settings (app/core/round_config.py): what the Training panel's RoundConfig
accepts and refuses (with the message a user reads), its stored JSON form, the shipped general model per input
size and the layers a round trains.  TensorFlow-free (round_config is imported directly, not via app.core.rounds).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core import round_config as rc
from app.core.procedure import PLAIN, ROBUST
from app.core.round_config import ExportIncomplete, RoundConfig, RoundError, general_model_path, trainable_names
from estimator.arch import Arch, ArchError, Layer, paper_cnn

ROBUST_DICT = {
    "val_every": 10,
    "restore_best": True,
    "select_f1": True,
    "patience": 0,
    "clip_norm": 5.0,
    "feature_lr_scale": 1.0,
    "l2sp": 0.0,
    "val_split": "tail",
    "choose": "agree",
}
PLAIN_DICT = {
    "val_every": 0,
    "restore_best": False,
    "select_f1": False,
    "patience": 0,
    "clip_norm": 0.0,
    "feature_lr_scale": 1.0,
    "l2sp": 0.0,
    "val_split": "tail",
    "choose": "agree",
}


def refused(**kw) -> str:
    with pytest.raises(RoundError) as ei:
        RoundConfig(**kw).validate()
    return str(ei.value)


# --- validate ---------------------------------------------------------------------------------------------------


def test_default_settings_are_valid_and_validate_returns_the_config():
    cfg = RoundConfig()
    assert cfg.validate() is cfg


def test_unknown_mode_is_refused_naming_the_modes():
    assert refused(mode="both") == "mode = 'both' is outside the allowed range (tl | full | last | custom)"


@pytest.mark.parametrize("mode", ["tl", "full", "last"])
def test_every_named_mode_is_accepted(mode):
    assert RoundConfig(mode=mode).validate().mode == mode


def test_custom_mode_without_layers_is_refused():
    assert refused(mode="custom") == "mode 'custom' needs at least one layer to train (tick layers in the list)"


def test_custom_mode_with_a_layer_is_accepted():
    assert RoundConfig(mode="custom", layers=("dense2",)).validate().layers == ("dense2",)


def test_input_size_without_a_general_model_is_refused():
    assert refused(input_size=30) == (
        "input_size = 30 is outside the allowed range (general models exist for T in (20, 40, 60, 80, 100))"
    )


def test_input_size_is_free_with_an_imported_model():
    assert RoundConfig(model_path="/tmp/mine.keras", input_size=30).validate().input_size == 30


def test_every_general_size_is_accepted():
    for t in (20, 40, 60, 80, 100):
        RoundConfig(input_size=t).validate()


@pytest.mark.parametrize(
    ("name", "bad", "allowed"),
    [
        ("epochs", 0, "1..1000"),
        ("epochs", 1001, "1..1000"),
        ("warmup_epochs", -1, "0..100"),
        ("warmup_epochs", 101, "0..100"),
        ("batch_size", 0, "1..1024"),
        ("batch_size", 1025, "1..1024"),
        ("lr", 0.0, "0 < lr <= 10"),
        ("lr", -0.01, "0 < lr <= 10"),
        ("lr", 10.5, "0 < lr <= 10"),
        ("lr", float("nan"), "0 < lr <= 10"),
        ("lr", float("inf"), "0 < lr <= 10"),
        ("warmup_lr", 0.0, "0 < lr <= 10"),
        ("warmup_lr", 11.0, "0 < lr <= 10"),
        ("train_fraction", 0.04, "0.05..0.95"),
        ("train_fraction", 0.96, "0.05..0.95"),
    ],
)
def test_a_setting_outside_its_range_is_refused_with_the_range(name, bad, allowed):
    assert refused(**{name: bad}) == f"{name} = {bad!r} is outside the allowed range ({allowed})"


def test_out_of_range_messages_read_exactly():
    """Two messages written out whole (the parametrized test above builds them from its columns)."""
    assert refused(epochs=0) == "epochs = 0 is outside the allowed range (1..1000)"
    assert refused(lr=float("nan")) == "lr = nan is outside the allowed range (0 < lr <= 10)"


@pytest.mark.parametrize(
    ("name", "edge"),
    [
        ("epochs", 1),
        ("epochs", 1000),
        ("warmup_epochs", 0),
        ("warmup_epochs", 100),
        ("batch_size", 1),
        ("batch_size", 1024),
        ("lr", 10.0),
        ("lr", 1e-9),
        ("warmup_lr", 10.0),
        ("warmup_lr", None),
        ("train_fraction", 0.05),
        ("train_fraction", 0.95),
    ],
)
def test_the_range_edges_are_accepted(name, edge):
    assert getattr(RoundConfig(**{name: edge}).validate(), name) == edge


def test_numbers_given_as_text_are_read_as_numbers():
    """A config read back from text (CLI, JSON written by hand): the checks read the numbers, not the strings."""
    cfg = RoundConfig(
        input_size="40",  # type: ignore[arg-type]
        epochs="5",  # type: ignore[arg-type]
        warmup_epochs="2",  # type: ignore[arg-type]
        batch_size="16",  # type: ignore[arg-type]
        lr="0.5",  # type: ignore[arg-type]
        warmup_lr="0.25",  # type: ignore[arg-type]
        train_fraction="0.7",  # type: ignore[arg-type]
    )
    assert cfg.validate() is cfg


def test_a_bad_procedure_is_refused_with_its_message():
    assert refused(procedure={"val_every": 1}) == ("procedure: --val-every must be 0 (no validation) or 2..1000, got 1")


def test_a_procedure_that_is_not_a_mapping_is_refused_as_a_round_error():
    msg = refused(procedure=5)
    assert msg == "procedure: argument of type 'int' is not iterable"


def test_the_procedure_error_is_not_chained():
    with pytest.raises(RoundError) as ei:
        RoundConfig(procedure={"patience": 300}).validate()
    assert ei.value.__cause__ is None and ei.value.__suppress_context__


# --- proc ---------------------------------------------------------------------------------------------------------


def test_proc_reads_the_stored_procedure():
    assert RoundConfig(procedure=dict(PLAIN_DICT)).proc == PLAIN
    assert RoundConfig().proc == ROBUST


def test_a_missing_procedure_means_the_robust_defaults():
    assert RoundConfig(procedure=None).proc == ROBUST  # type: ignore[arg-type]
    assert RoundConfig(procedure={}).proc == ROBUST


# --- to_dict / from_dict ------------------------------------------------------------------------------------------


def test_to_dict_is_the_stored_json_form_with_layers_as_a_list():
    d = RoundConfig(mode="custom", layers=("conv2", "dense2"), epochs=3).to_dict()
    assert d == {
        "model_path": None,
        "input_size": 20,
        "mode": "custom",
        "layers": ["conv2", "dense2"],
        "epochs": 3,
        "lr": 0.01,
        "batch_size": 32,
        "warmup_epochs": 0,
        "warmup_lr": None,
        "seed": 0,
        "train_fraction": 0.6,
        "measure_power": True,
        "profile": "odl-firmware",
        "procedure": ROBUST_DICT,
    }
    assert type(d["layers"]) is list


def test_from_dict_reads_back_to_dict():
    cfg = RoundConfig(mode="custom", layers=("dense1",), epochs=7, lr=0.2, seed=4, procedure=dict(PLAIN_DICT))
    assert RoundConfig.from_dict(cfg.to_dict()) == cfg


def test_from_dict_ignores_unknown_keys_and_makes_layers_a_tuple():
    cfg = RoundConfig.from_dict({"mode": "custom", "layers": ["conv1", "dense2"], "colour": "red"})
    assert cfg.layers == ("conv1", "dense2")
    assert cfg.mode == "custom"


def test_a_round_stored_without_a_procedure_ran_the_plain_round():
    """Rounds stored before issue 17 have no procedure: they ran the paper's plain round."""
    cfg = RoundConfig.from_dict({"epochs": 4})
    assert cfg.procedure == PLAIN_DICT
    assert cfg.epochs == 4


def test_a_stored_procedure_that_is_not_a_dict_is_replaced_by_the_plain_one():
    assert RoundConfig.from_dict({"procedure": "robust"}).procedure == PLAIN_DICT
    assert RoundConfig.from_dict({"procedure": None}).procedure == PLAIN_DICT


def test_a_stored_procedure_dict_is_kept():
    stored = dict(ROBUST_DICT, clip_norm=2.0)
    assert RoundConfig.from_dict({"procedure": stored}).procedure == stored


# --- errors -------------------------------------------------------------------------------------------------------


def test_export_incomplete_keeps_copies_of_what_was_written_and_what_failed():
    written = {"keras": Path("/r/model.keras")}
    failed = {"h5": "disk full"}
    err = ExportIncomplete("2 of 3 formats written", written, failed)
    written["npz"] = Path("/r/model.npz")
    failed.clear()
    assert isinstance(err, RoundError)
    assert str(err) == "2 of 3 formats written"
    assert err.written == {"keras": Path("/r/model.keras")}
    assert err.failed == {"h5": "disk full"}


# --- general_model_path -------------------------------------------------------------------------------------------


def test_general_model_path_is_the_shipped_model_for_the_size():
    assert general_model_path(40) == rc.MODELS_DIR / "paper_cnn_wisdm5_T40.keras"
    assert general_model_path(40).is_file()


def test_general_model_path_reads_the_size_as_a_whole_number():
    assert general_model_path(60.0) == rc.MODELS_DIR / "paper_cnn_wisdm5_T60.keras"  # type: ignore[arg-type]


def test_a_missing_general_model_names_the_sizes_there_are(tmp_path, monkeypatch):
    for t in (100, 8, 20):
        (tmp_path / f"paper_cnn_wisdm5_T{t}.keras").write_bytes(b"x")
    (tmp_path / "paper_cnn_wisdm5_T40.json").write_text("{}")  # not a model
    (tmp_path / "other_T60.keras").write_bytes(b"x")  # not a general model
    monkeypatch.setattr(rc, "MODELS_DIR", tmp_path)
    assert general_model_path(100) == tmp_path / "paper_cnn_wisdm5_T100.keras"
    with pytest.raises(RoundError) as ei:
        general_model_path(30)
    assert str(ei.value) == (
        f"no general model for input size T=30 in {tmp_path} (have T in [8, 20, 100]); "
        "run `make assets` or import a model"
    )


def test_stray_files_beside_the_general_models_do_not_hide_the_message(tmp_path, monkeypatch):
    """A copy or backup named like a general model is not a size: the user still gets the RoundError naming the
    sizes there are (it was a ValueError from int() before)."""
    for name in (
        "paper_cnn_wisdm5_T40",
        "paper_cnn_wisdm5_T20 (copy)",
        "paper_cnn_wisdm5_Tx",
        "paper_cnn_wisdm5_TxT60",
    ):
        (tmp_path / f"{name}.keras").write_bytes(b"x")
    monkeypatch.setattr(rc, "MODELS_DIR", tmp_path)
    with pytest.raises(RoundError) as ei:
        general_model_path(20)
    assert str(ei.value) == (
        f"no general model for input size T=20 in {tmp_path} (have T in [40]); run `make assets` or import a model"
    )


def test_no_general_model_at_all_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(rc, "MODELS_DIR", tmp_path)
    with pytest.raises(RoundError) as ei:
        general_model_path(20)
    assert str(ei.value) == (
        f"no general model for input size T=20 in {tmp_path} (have T in []); run `make assets` or import a model"
    )


# --- trainable_names ----------------------------------------------------------------------------------------------


ARCH = paper_cnn(20)


@pytest.mark.parametrize(
    ("mode", "names"),
    [
        ("tl", {"dense1", "dense2"}),
        ("full", {"conv1", "conv2", "dense1", "dense2"}),
        ("last", {"dense2"}),
    ],
)
def test_trainable_names_per_mode(mode, names):
    assert trainable_names(ARCH, RoundConfig(mode=mode)) == frozenset(names)


def test_custom_trains_the_chosen_layers():
    assert trainable_names(ARCH, RoundConfig(mode="custom", layers=("conv2", "dense1"))) == {"conv2", "dense1"}


def test_layers_are_ignored_unless_the_mode_is_custom():
    assert trainable_names(ARCH, RoundConfig(mode="last", layers=("conv1",))) == {"dense2"}


def test_an_unknown_custom_layer_is_a_round_error_naming_the_layers():
    with pytest.raises(RoundError) as ei:
        trainable_names(ARCH, RoundConfig(mode="custom", layers=("conv9",)))
    assert str(ei.value) == (
        "trainable set 'custom' ['conv9']: trainable layer 'conv9' is not in 'paper_cnn_T20' (layers: conv1, relu1, "
        "pool1, conv2, relu2, pool2, gap, dense1, relu3, dense2, softmax)"
    )
    assert isinstance(ei.value.__cause__, ArchError)


def test_tl_on_a_model_without_dense_layers_is_a_round_error():
    arch = Arch((20, 3), (Layer("conv1d", "c1", filters=4, kernel=3),), name="convonly")
    with pytest.raises(RoundError) as ei:
        trainable_names(arch, RoundConfig(mode="tl"))
    assert str(ei.value) == "trainable set 'tl' : 'convonly' has no Dense layer to train with 'tl'"


# ------------------------------------------------------------------ data_then_model: the order that says a problem soonest
class _Model:
    def __init__(self, classes=("walking", "sitting"), T=20, rate=20.0):
        self.classes, self.input_size, self.meta = list(classes), T, {"rate_hz": rate}


def _order(monkeypatch, facts, model, model_path=None, size=20, fail_first_read=False):
    """Run data_then_model with the given sidecar facts; returns (its result, the calls in order)."""
    calls: list = []
    monkeypatch.setattr(rc, "general_model_facts", lambda T: calls.append(("facts", T)) or facts)

    def read(classes, T, rate):
        calls.append(("read", classes, T, rate))
        if fail_first_read and len(calls) == 2:
            raise RoundError("no window of T")
        return f"data {len(calls)}"

    def load():
        calls.append(("load",))
        return model

    return rc.data_then_model(size, model_path, read, load), calls


def test_data_then_model_reads_the_data_before_the_general_model_and_keeps_it(monkeypatch):
    m = _Model()
    (model, data), calls = _order(monkeypatch, (("walking", "sitting"), 20.0), m)
    assert model is m and data == "data 2"
    assert calls == [("facts", 20), ("read", ("walking", "sitting"), 20, 20.0), ("load",)]


def test_data_that_cannot_be_used_is_refused_before_the_model_loads(monkeypatch):
    with pytest.raises(RoundError, match="^no window of T$"):
        _order(monkeypatch, (("walking",), 20.0), _Model(), fail_first_read=True)
    calls: list = []
    monkeypatch.setattr(rc, "general_model_facts", lambda T: (("walking",), 20.0))
    with pytest.raises(RoundError):
        rc.data_then_model(20, None, lambda *a: (_ for _ in ()).throw(RoundError("x")), lambda: calls.append(1))
    assert calls == []  # (never loaded)


@pytest.mark.parametrize(
    "model",
    [
        _Model(classes=("walking", "jogging")),  # other classes than its sidecar says
        _Model(rate=50.0),  # another rate
        _Model(T=40),  # another input size
    ],
)
def test_a_model_that_disagrees_with_its_sidecar_gets_the_data_read_again_with_its_own(monkeypatch, model):
    (got, data), calls = _order(monkeypatch, (("walking", "sitting"), 20.0), model)
    assert got is model and data == "data 4"
    assert calls[1:] == [
        ("read", ("walking", "sitting"), 20, 20.0),
        ("load",),
        ("read", tuple(model.classes), model.input_size, float(model.meta["rate_hz"])),
    ]


def test_a_model_file_or_no_sidecar_loads_first(monkeypatch):
    m = _Model(classes=("a", "b", "c"), T=24, rate=26.0)
    (_, data), calls = _order(monkeypatch, (("walking",), 20.0), m, model_path="/x/m.keras")
    assert data == "data 2" and calls == [("load",), ("read", ("a", "b", "c"), 24, 26.0)]
    (_, data), calls = _order(monkeypatch, None, m, size=24)
    assert data == "data 3" and calls == [("facts", 24), ("load",), ("read", ("a", "b", "c"), 24, 26.0)]
    m.meta = {}  # a model that does not say its rate: the app's 20 Hz
    (_, data), calls = _order(monkeypatch, None, m, size=24)
    assert calls[-1] == ("read", ("a", "b", "c"), 24, 20.0)


# ------------------------------------------------------------------ general_model_facts: the shipped model's sidecar
@pytest.mark.parametrize(
    ("sidecar", "facts"),
    [
        ('{"classes": ["walking", "sitting"], "rate_hz": 26}', (("walking", "sitting"), 26.0)),
        ('{"classes": ["walking", 7]}', (("walking", "7"), 20.0)),  # no rate said: the app's 20 Hz
        ('{"classes": [], "rate_hz": 20}', None),  # no class
        ('{"classes": ["walking"], "rate_hz": 0}', None),
        ('{"classes": ["walking"], "rate_hz": 0.5}', (("walking",), 0.5)),  # slow, but a rate
        ('{"classes": ["walking"], "rate_hz": -20}', None),
        ('{"classes": ["walking"], "rate_hz": NaN}', None),
        ('{"classes": ["walking"], "rate_hz": Infinity}', None),
        ('{"classes": ["walking"], "rate_hz": "fast"}', None),  # ValueError
        ('{"classes": ["walking"], "rate_hz": [20]}', None),  # TypeError
        ('{"rate_hz": 20}', None),  # KeyError
        ('{"classes": 5}', None),  # TypeError
        ('["walking"]', None),  # a list, not an object: TypeError
        ('"walking"', None),  # a string: TypeError (string indices)
        ("null", None),  # TypeError
        ('{"classes": ["walking"], "rate_hz": null}', None),  # float(None): TypeError
        ("{not json", None),  # ValueError
        ("", None),
    ],
)
def test_general_model_facts_reads_the_sidecar_or_says_none(monkeypatch, tmp_path, sidecar, facts):
    monkeypatch.setattr(rc, "MODELS_DIR", tmp_path)
    (tmp_path / "paper_cnn_wisdm5_T40.json").write_text(sidecar, encoding="utf-8")
    (tmp_path / "paper_cnn_wisdm5_T20.json").write_text('{"classes": ["other"]}', encoding="utf-8")
    assert rc.general_model_facts(40) == facts
    assert rc.general_model_facts(40.0) == facts  # (a size given as a float names the same file)


def test_general_model_facts_of_a_size_without_a_sidecar_or_unreadable_is_none(monkeypatch, tmp_path):
    monkeypatch.setattr(rc, "MODELS_DIR", tmp_path)
    assert rc.general_model_facts(40) is None  # no file
    (tmp_path / "paper_cnn_wisdm5_T40.json").mkdir()  # a folder of that name: OSError
    assert rc.general_model_facts(40) is None
    (tmp_path / "paper_cnn_wisdm5_T60.json").write_bytes(b'{"classes": ["caf\xe9"]}')  # not UTF-8: ValueError
    assert rc.general_model_facts(60) is None


# ------------------------------------------------------------------ model_facts: a model file's sidecar, stated in full
@pytest.mark.parametrize(
    ("sidecar", "facts"),
    [
        ('{"classes": ["a", "b"], "input_size": 24, "rate_hz": 26}', (("a", "b"), 24, 26.0)),
        ('{"classes": ["a", 2], "input_size": 1, "rate_hz": 0.5}', (("a", "2"), 1, 0.5)),
        ('{"classes": ["a"], "input_size": 24}', None),  # the rate not said (an ST model's comes from its YAML)
        ('{"classes": ["a"], "rate_hz": 26}', None),  # T not said
        ('{"input_size": 24, "rate_hz": 26}', None),
        ('{"classes": [], "input_size": 24, "rate_hz": 26}', None),
        ('{"classes": ["a"], "input_size": 0, "rate_hz": 26}', None),
        ('{"classes": ["a"], "input_size": -24, "rate_hz": 26}', None),
        ('{"classes": ["a"], "input_size": 24.0, "rate_hz": 26}', None),  # not an integer
        ('{"classes": ["a"], "input_size": "24", "rate_hz": 26}', None),
        ('{"classes": ["a"], "input_size": true, "rate_hz": 26}', None),
        ('{"classes": ["a"], "input_size": 24, "rate_hz": 0}', None),
        ('{"classes": ["a"], "input_size": 24, "rate_hz": -1}', None),
        ('{"classes": ["a"], "input_size": 24, "rate_hz": NaN}', None),
        ('{"classes": ["a"], "input_size": 24, "rate_hz": Infinity}', None),
        ('{"classes": ["a"], "input_size": 24, "rate_hz": "fast"}', None),
        ('{"classes": ["a"], "input_size": 24, "rate_hz": null}', None),
        ('{"classes": 3, "input_size": 24, "rate_hz": 26}', None),
        ('["a"]', None),
        ("{broken", None),
    ],
)
def test_model_facts_of_a_model_file_are_its_sidecar_s_when_it_states_them_all(tmp_path, sidecar, facts):
    (tmp_path / "alice_T24.json").write_text(sidecar, encoding="utf-8")
    assert rc.model_facts(tmp_path / "alice_T24.keras", 20) == facts  # (the size asked for plays no part)
    assert rc.model_facts(str(tmp_path / "alice_T24.h5"), 20) == facts  # the same stem: the same sidecar


def test_model_facts_without_a_model_file_are_the_general_model_s(monkeypatch, tmp_path):
    assert rc.model_facts(tmp_path / "none.keras", 20) is None  # no sidecar
    (tmp_path / "dir.json").mkdir()
    assert rc.model_facts(tmp_path / "dir.keras", 20) is None
    monkeypatch.setattr(rc, "general_model_facts", lambda T: (("walking",), 20.0) if T == 40 else None)
    assert rc.model_facts(None, 40) == (("walking",), 40, 20.0)
    assert rc.model_facts("", 40) == (("walking",), 40, 20.0)
    assert rc.model_facts(None, 40.0) == (("walking",), 40, 20.0) and type(rc.model_facts(None, 40.0)[1]) is int
    assert rc.model_facts(None, 20) is None


def test_a_model_file_with_a_sidecar_has_its_data_read_before_it_loads(monkeypatch, tmp_path):
    (tmp_path / "m.json").write_text('{"classes": ["a", "b", "c"], "input_size": 24, "rate_hz": 26.0}')
    m = _Model(classes=("a", "b", "c"), T=24, rate=26.0)
    (_, data), calls = _order(monkeypatch, None, m, model_path=str(tmp_path / "m.keras"))
    assert data == "data 1" and calls == [("read", ("a", "b", "c"), 24, 26.0), ("load",)]


# ------------------------------------------------------------------ model_facts: an ST model zoo file, by its folder and name
def _st_file(root, *parts: str) -> str:
    p = root.joinpath(*parts)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"\x89HDF\r\n\x1a\n")  # (never loaded here)
    return str(p)


def test_model_facts_of_an_st_zoo_file_come_from_its_folder_and_name(tmp_path):
    """Was: None for every ST model (no sidecar): the model loaded (TensorFlow: seconds) before data that could
    not be used was refused."""
    wisdm = _st_file(tmp_path, "ST_pretrainedmodel_public_dataset", "WISDM", "ign_wl_24", "ign_wl_24.h5")
    assert rc.model_facts(wisdm, 40) == (("Jogging", "Stationary", "Stairs", "Walking"), 24, 20.0)
    mobility = _st_file(tmp_path, "custom", "mobility_v1", "gmp_wl_48", "gmp_wl_48.h5")
    assert rc.model_facts(mobility, 40) == (("Stationary", "Walking", "Jogging", "Biking"), 48, 26.0)
    assert rc.model_facts(_st_file(tmp_path, "WISDM", "ign_wl_24", "mine.h5"), 24) is None  # T not in its name
    assert rc.model_facts(_st_file(tmp_path, "elsewhere", "ign_wl_24.h5"), 24) is None  # classes: no folder, no YAML
    assert rc.model_facts(_st_file(tmp_path, "WISDM", "paper_wl_24.h5"), 24) is None  # not an ST name
    # its YAML names the classes and the dataset (the rate); a sidecar, where there is one, wins
    cfg = _st_file(tmp_path, "cfg", "gmp_wl_24.h5")
    (tmp_path / "cfg" / "gmp_wl_24_config.yaml").write_text(
        "dataset:\n  name: mobility_v1\n  class_names: [Stationary, Walking]\n", encoding="utf-8"
    )
    assert rc.model_facts(cfg, 40) == (("Stationary", "Walking"), 24, 26.0)
    (tmp_path / "cfg" / "gmp_wl_24.json").write_text('{"input_size": 30, "rate_hz": 50}', encoding="utf-8")
    assert rc.model_facts(cfg, 40) == (("Stationary", "Walking"), 30, 50.0)
    (tmp_path / "cfg" / "gmp_wl_24.json").write_text("[broken", encoding="utf-8")
    assert rc.model_facts(cfg, 40) is None  # (the load says what is wrong)


def test_an_st_zoo_file_has_its_data_read_before_it_loads(monkeypatch, tmp_path):
    path = _st_file(tmp_path, "WISDM", "gmp_wl_24", "gmp_wl_24.h5")
    m = _Model(classes=("Jogging", "Stationary", "Stairs", "Walking"), T=24, rate=20.0)
    (_, data), calls = _order(monkeypatch, None, m, model_path=path)
    assert data == "data 1" and calls == [("read", ("Jogging", "Stationary", "Stairs", "Walking"), 24, 20.0), ("load",)]


def test_model_facts_of_the_shared_st_zoo_models(st_models):
    """Each of ST's sixteen files (v1.4.0, v2.0.1), by its folder and name."""
    files = sorted(st_models.rglob("*_wl_*.h5"))
    assert len(files) == 16
    wisdm, mobility = ("Jogging", "Stationary", "Stairs", "Walking"), ("Stationary", "Walking", "Jogging", "Biking")
    for f in files:
        T = 24 if f.stem.endswith("_24") else 48
        want = (wisdm, T, 20.0) if "WISDM" in f.parts else (mobility, T, 26.0)
        assert rc.model_facts(f, 40) == want, f


@pytest.mark.slow
def test_model_facts_of_the_shared_st_zoo_models_are_what_their_load_gives(st_models):
    """One file of each version loaded (TensorFlow): what it loads with is what model_facts said."""
    from app.core.models import load_model

    files = sorted(st_models.rglob("*_wl_*.h5"))
    for f in (files[0], files[-1]):
        m = load_model(f)
        assert rc.model_facts(f, 40) == (tuple(m.classes), m.input_size, m.meta["rate_hz"]), f
