"""What a Keras model file's neighbours state before it loads (``models.stated_info``): ST's folder naming, ST's
``<stem>_config.yaml`` (v1.4.0's inline class list, v2.0.1's block list) and the sidecar ``<stem>.json``, which
wins.  A round reads the user's data with these before TensorFlow loads the model (``round_config.model_facts``),
and the load itself uses them: they must be exact."""

from __future__ import annotations

import pytest

from app.core import models as M

WISDM = ["Jogging", "Stationary", "Stairs", "Walking"]
MOBILITY = ["Stationary", "Walking", "Jogging", "Biking"]

V1 = """general:
  project_name: HAR
  name: not_the_dataset
dataset:
  name: mobility_v1
  class_names: [Stationary, 'Walking',"Jogging" ,Biking]
  training_path: C:/x/train.pkl

pre_processing:
  segment_len: 24
  preprocessing: True
"""

V2 = """general:
  project_name: human_activity_recognition
dataset:
  name: wisdm
  class_names:
  - Jogging
  - 'Stationary'
  - "Stairs"
  - Walking
  training_path: ../datasets/WISDM_ar_v1.1/WISDM_ar_v1.1_raw.txt
preprocessing:
  gravity_rot_sup: true
model:
  name: ign
"""


def _yaml(tmp_path, text: str, stem: str = "m") -> M.Path:
    (tmp_path / f"{stem}_config.yaml").write_text(text, encoding="utf-8")
    return tmp_path / f"{stem}.h5"


@pytest.mark.parametrize(
    ("path", "want"),
    [
        ("/z/WISDM/ign_wl_24/ign_wl_24.h5", {"preprocessing": "gravity_rot_sup", "classes": WISDM, "dataset": "wisdm"}),
        ("/z/wisdm/gmp_wl_48.h5", {"preprocessing": "gravity_rot_sup", "classes": WISDM, "dataset": "wisdm"}),
        (
            "/z/Mobility_v1/gmp_wl_48/gmp_wl_48.h5",
            {"preprocessing": "gravity_rot_sup", "classes": MOBILITY, "dataset": "mobility_v1"},
        ),
        ("/z/other/IGN_WL_24.h5", {"preprocessing": "gravity_rot_sup"}),  # an ST name: its preprocessing only
        ("/z/ign_wl_24/mine.h5", {"preprocessing": "gravity_rot_sup"}),  # (its folder is named so)
        ("/z/WISDM/ign_wl_.h5", {}),  # no window length: not an ST name
        ("/z/WISDM/paper_cnn_T24.keras", {}),
    ],
)
def test_st_defaults_come_from_the_folder_and_file_names(path, want):
    assert M._st_defaults(M.Path(path)) == want


def test_st_input_size_is_the_window_length_in_the_file_name():
    assert M.st_input_size(M.Path("/z/WISDM/ign_wl_24/ign_wl_24.h5")) == 24
    assert M.st_input_size(M.Path("GMP_WL_48.H5")) == 48
    assert M.st_input_size(M.Path("/z/ign_wl_24/mine.h5")) is None  # the file's own name only
    assert M.st_input_size(M.Path("/z/ign_wl_x.h5")) is None


def test_the_v1_config_s_inline_class_list_dataset_and_preprocessing(tmp_path):
    path = _yaml(tmp_path, V1)
    assert M._read_st_config(path) == {
        "config": str(tmp_path / "m_config.yaml"),
        "classes": MOBILITY,  # (spaces and quotes stripped)
        "preprocessing": "gravity_rot_sup",
        "dataset": "mobility_v1",  # the name under dataset:, not the first name: of the file
    }


def test_the_v2_config_s_block_class_list_dataset_and_preprocessing(tmp_path):
    path = _yaml(tmp_path, V2)
    assert M._read_st_config(path) == {
        "config": str(tmp_path / "m_config.yaml"),
        "classes": WISDM,
        "preprocessing": "gravity_rot_sup",
        "dataset": "wisdm",
    }


@pytest.mark.parametrize(
    ("line", "preprocessing"),
    [
        ("  gravity_rot_sup: false", "none"),
        ("  gravity_rot_sup: True", "gravity_rot_sup"),
        ("  gravity_rot_sup: TRUE", "gravity_rot_sup"),
        ("  preprocessing: FALSE", "none"),
        ("  preprocessing: false  ", "none"),
        ("  preprocessing: True", "gravity_rot_sup"),
        ("  preprocessing: maybe", None),
        ("  preprocessing: true later", None),
    ],
)
def test_the_preprocessing_flag_in_either_layout(tmp_path, line, preprocessing):
    path = _yaml(tmp_path, f"general:\n  x: 1\nsteps:\n{line}\nmodel:\n  y: 2\n")
    got = M._read_st_config(path)
    assert got.get("preprocessing") == preprocessing
    assert "classes" not in got and "dataset" not in got  # (neither is said: no dataset: block)


def test_a_config_without_a_dataset_block_or_a_class_list(tmp_path):
    path = _yaml(tmp_path, "general:\n  name: har\nclass_names: []\n")
    assert M._read_st_config(path) == {"config": str(tmp_path / "m_config.yaml"), "classes": []}
    assert M._read_st_config(tmp_path / "none.h5") == {}  # no config beside it
    bad = _yaml(tmp_path, "", stem="bad")
    (tmp_path / "bad_config.yaml").write_bytes(b"dataset:\n  name: caf\xe9\n  class_names: [a\xff, b]\n")
    assert M._read_st_config(bad) == {  # bytes that are not UTF-8: replaced, never an error
        "config": str(tmp_path / "bad_config.yaml"),
        "classes": ["a\ufffd", "b"],
        "dataset": "caf",
    }


def test_the_block_list_stops_at_the_next_key_of_its_indent(tmp_path):
    path = _yaml(tmp_path, "dataset:\n  name: x\n  class_names:\n  - a\n  -  b  \n  other:\n  - c\n")
    assert M._read_st_config(path)["classes"] == ["a", "b"]


@pytest.mark.parametrize(
    ("files", "st", "info"),
    [
        ({}, {}, {}),
        ({"m.json": '{"classes": ["x"], "rate_hz": 50}'}, {}, {"classes": ["x"], "rate_hz": 50}),
        (
            {"m_config.yaml": V2},
            {"config": "m_config.yaml", "classes": WISDM, "preprocessing": "gravity_rot_sup", "dataset": "wisdm"},
            {"rate_hz": 20.0},
        ),
        (
            {"m_config.yaml": V1},
            {
                "config": "m_config.yaml",
                "classes": MOBILITY,
                "preprocessing": "gravity_rot_sup",
                "dataset": "mobility_v1",
            },
            {"rate_hz": 26.0},
        ),
        (
            {"m_config.yaml": V2.replace("name: wisdm", "name: WISDM"), "m.json": '{"classes": ["a", "b"]}'},
            {"config": "m_config.yaml", "classes": WISDM, "preprocessing": "gravity_rot_sup", "dataset": "WISDM"},
            {"classes": ["a", "b"], "rate_hz": 20.0},  # the sidecar wins; the rate: WISDM's in any case
        ),
        (
            {"m_config.yaml": V1, "m.json": '{"rate_hz": 52, "input_size": 48}'},
            {
                "config": "m_config.yaml",
                "classes": MOBILITY,
                "preprocessing": "gravity_rot_sup",
                "dataset": "mobility_v1",
            },
            {"rate_hz": 52, "input_size": 48},  # a rate stated wins over the dataset's
        ),
    ],
)
def test_stated_info_is_st_s_then_the_sidecar_s(tmp_path, files, st, info):
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    if "config" in st:
        st = {**st, "config": str(tmp_path / st["config"])}
    got_st, got = M.stated_info(tmp_path / "m.h5")
    assert got_st == st
    assert got == {**st, **info}


def test_stated_info_of_a_broken_sidecar_says_so(tmp_path):
    (tmp_path / "m.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(M.ModelError):
        M.stated_info(tmp_path / "m.h5")


def test_the_shared_st_configs_read_as_their_models_are(st_models):
    """ST's own files: the class order of each YAML is the softmax order (st-modelzoo-har.md §1.7)."""
    models = sorted(st_models.rglob("*_wl_*.h5"))
    assert len(models) == 16
    for h5 in models:
        cfg = h5.with_name(f"{h5.stem}_config.yaml")
        got = M._read_st_config(h5)
        wisdm = "WISDM" in cfg.parts
        assert got["classes"] == (WISDM if wisdm else MOBILITY), cfg
        assert got["preprocessing"] == "gravity_rot_sup", cfg
        assert got["dataset"].lower() == ("wisdm" if wisdm else "mobility_v1"), cfg


def test_class_names_keep_their_own_letters_and_dashes(tmp_path):
    """Only the quotes around a name are stripped (never a name's own X), a name may hold a dash, and a block
    item written without a space after its dash is read too."""
    inline = _yaml(tmp_path, "dataset:\n  class_names: [Xbox, 'X-ray X', \"SitX\"]\n", stem="a")
    assert M._read_st_config(inline)["classes"] == ["Xbox", "X-ray X", "SitX"]
    block = _yaml(tmp_path, "dataset:\n  class_names:\n  - Walking-up\n  - 'Xbox'\n  -Sit-to-stand-X\n", stem="b")
    assert M._read_st_config(block)["classes"] == ["Walking-up", "Xbox", "Sit-to-stand-X"]


def test_the_dataset_name_is_the_first_one_after_the_dataset_block(tmp_path):
    path = _yaml(tmp_path, "dataset:\n  name: wisdm\ntraining:\n  dataset:\n    name: augmented\n")
    assert M._read_st_config(path)["dataset"] == "wisdm"
