"""The model export formats without TensorFlow: the C header flashed to the boards (and read by the firmware
build) and the ``.npz`` of personalized weights the user takes away, with the weight checks, the JSON sidecar
and the evaluation summary around them (``app/core/models.py``).

Every expectation is written out by hand: header lines, layer-table rows (offsets, counts, shapes), messages,
metric values.  The formats must round-trip bit for bit (float32), refuse damaged or foreign files with a
:class:`ModelError` naming the file and the problem, and refuse NaN/Inf.

Nothing here may import TensorFlow (the mutation run of target ``model_export`` forks after these tests, and a
fork of a process that imported TensorFlow hangs): models are built from :mod:`estimator.arch` layers and
hand-made or engine-initialised (``device.engine.model.Model``) weights, never through Keras.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from app.core import models as M
from app.core.models import LoadedModel, ModelError
from device.engine.model import Model
from estimator.arch import Arch, Layer

# input (4, 2) -> conv1 (2, 2) -> relu1 -> gap (2,) -> dense1 (3,) -> softmax: 14 + 9 = 23 parameters
TINY = Arch(
    (4, 2),
    (
        Layer("conv1d", "conv1", filters=2, kernel=3),
        Layer("relu", "relu1"),
        Layer("gap1d", "gap"),
        Layer("dense", "dense1", units=3),
        Layer("softmax", "softmax"),
    ),
    ("sit", "walk", "run"),
    name="tiny",
)


def tiny_weights() -> dict[str, list[np.ndarray]]:
    """Weights that print short: conv1 kernel -1.5 .. 1.25 by 0.25, bias (0.5, -0.5); dense1 kernel 0 .. 0.625
    by 0.125, bias (1, 2, -3)."""
    return {
        "conv1": [
            np.arange(12, dtype=np.float32).reshape(3, 2, 2) * np.float32(0.25) - np.float32(1.5),
            np.array([0.5, -0.5], np.float32),
        ],
        "dense1": [
            np.arange(6, dtype=np.float32).reshape(2, 3) * np.float32(0.125),
            np.array([1.0, 2.0, -3.0], np.float32),
        ],
    }


def tiny(weights: dict | None = None, meta: dict | None = None, classes=("sit", "walk", "run"), **kw) -> LoadedModel:
    arch = Arch(TINY.input_shape, TINY.layers, tuple(classes), TINY.name, kw.get("preprocessing", "none"))
    return LoadedModel(
        arch,
        tiny_weights() if weights is None else weights,
        tuple(classes),
        kw.get("preprocessing", "none"),
        kw.get("source", "unit-test"),
        {} if meta is None else meta,
    )


def odd_weights() -> dict[str, list[np.ndarray]]:
    """Engine-initialised weights of TINY with the float32 values that are easy to lose in text planted in
    them: -0.0, the smallest subnormal, the largest finite value, 1e-05 and 1/3."""
    w = Model(TINY, seed=0).get_weights()
    w["conv1"][0].flat[:5] = np.array([-0.0, 1e-45, 3.4028235e38, 1e-05, 1.0 / 3.0], np.float32)
    w["dense1"][1][:] = np.array([-3.4028235e38, -1e-45, 0.1], np.float32)
    return {k: [np.asarray(a, np.float32) for a in v] for k, v in w.items()}


def assert_bit_equal(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for name in want:
        assert len(got[name]) == len(want[name]), name
        for g, w in zip(got[name], want[name]):
            assert g.dtype == np.float32 and g.shape == w.shape, name
            assert np.array_equal(g.view(np.uint32), np.asarray(w, np.float32).view(np.uint32)), name


def save_npz(path: Path, arrays: dict) -> Path:
    """An .npz with exactly these members, in this order (np.savez keeps the order)."""
    np.savez(path, **arrays)
    return path


def good_members(weights: dict | None = None) -> dict:
    w = tiny_weights() if weights is None else weights
    out: dict = {"arch_json": np.array(TINY.to_json()), "meta_json": np.array('{"rate_hz": 20.0}')}
    out.update({f"w/{n}/{i}": a for n, ws in w.items() for i, a in enumerate(ws)})
    return out


# --------------------------------------------------------------------------------------------------
# check_weights
# --------------------------------------------------------------------------------------------------


def test_check_weights_returns_float32_copies():
    """Lists and float64 arrays become float32 arrays; changing the caller's arrays later changes nothing."""
    kernel = np.arange(12, dtype=np.float64).reshape(3, 2, 2)
    given = {"conv1": [kernel, [0.5, -0.5]], "dense1": [np.ones((2, 3), np.float32), np.zeros(3, np.float32)]}
    out = M.check_weights(TINY, given)
    kernel[0, 0, 0] = 99.0
    given["dense1"][0][0, 0] = 99.0
    assert list(out) == ["conv1", "dense1"]
    assert [a.dtype for ws in out.values() for a in ws] == [np.float32] * 4
    assert out["conv1"][0][0, 0, 0] == 0.0 and out["conv1"][0][2, 1, 1] == 11.0
    assert out["conv1"][1].tolist() == [0.5, -0.5]
    assert out["dense1"][0].tolist() == [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]


def test_check_weights_names_the_missing_layer_and_what_was_given():
    w = tiny_weights()
    with pytest.raises(ModelError) as e:
        M.check_weights(TINY, {"dense1": w["dense1"]})
    assert str(e.value) == "weights for layer 'conv1' are missing (have: dense1)"
    with pytest.raises(ModelError) as e:
        M.check_weights(TINY, {"conv1": w["conv1"]})
    assert str(e.value) == "weights for layer 'dense1' are missing (have: conv1)"
    with pytest.raises(ModelError) as e:
        M.check_weights(TINY, {})
    assert str(e.value) == "weights for layer 'conv1' are missing (have: none)"
    with pytest.raises(ModelError) as e:
        M.check_weights(TINY, {"dense1": w["dense1"], "conv_1": w["conv1"]})
    assert str(e.value) == "weights for layer 'conv1' are missing (have: dense1, conv_1)"


def test_check_weights_names_the_layer_with_wrong_shapes():
    w = tiny_weights()
    with pytest.raises(ModelError) as e:
        M.check_weights(TINY, {"conv1": w["conv1"][:1], "dense1": w["dense1"]})
    assert str(e.value) == "layer 'conv1': weight shapes [(3, 2, 2)] do not match the architecture [(3, 2, 2), (2,)]"
    with pytest.raises(ModelError) as e:
        M.check_weights(TINY, {"conv1": w["conv1"], "dense1": [np.zeros((3, 3)), np.zeros(3)]})
    assert str(e.value) == "layer 'dense1': weight shapes [(3, 3), (3,)] do not match the architecture [(2, 3), (3,)]"


def test_check_weights_refuses_weights_of_unknown_or_parameter_free_layers_sorted():
    w = {**tiny_weights(), "zeta": [np.zeros(2)], "gap": [np.zeros(2)]}
    with pytest.raises(ModelError) as e:
        M.check_weights(TINY, w)
    assert str(e.value) == "weights given for unknown or parameter-free layers: gap, zeta"


# --------------------------------------------------------------------------------------------------
# sidecar_dict / _jsonable
# --------------------------------------------------------------------------------------------------


def test_sidecar_defaults_rate_20_hz_and_m_per_s2():
    assert M.sidecar_dict(tiny()) == {
        "classes": ["sit", "walk", "run"],
        "preprocessing": "none",
        "input_size": 4,
        "input_shape": [4, 2],
        "params": 23,
        "rate_hz": 20.0,
        "units": "m/s^2",
    }


def test_sidecar_keeps_the_json_meta_and_drops_the_rest():
    """The model's own rate and units are kept; objects JSON cannot hold are dropped; classes, preprocessing and
    sizes always come from the model, not from stale meta."""
    meta = {
        "rate_hz": 50.0,
        "units": "g",
        "base_model": "pretrained.keras",
        "handle": object(),
        "array": np.zeros(2),
        "classes": ["old"],
        "params": 1,
    }
    m = tiny(meta=meta, preprocessing="gravity_rot_sup")
    assert M.sidecar_dict(m) == {
        "rate_hz": 50.0,
        "units": "g",
        "base_model": "pretrained.keras",
        "classes": ["sit", "walk", "run"],
        "preprocessing": "gravity_rot_sup",
        "input_size": 4,
        "input_shape": [4, 2],
        "params": 23,
    }
    assert m.meta["classes"] == ["old"]  # the model's meta is not changed


def test_sidecar_extra_overrides_everything():
    d = M.sidecar_dict(tiny(meta={"rate_hz": 50.0}), {"rate_hz": 26.0, "params": 7, "round": 3})
    assert d["rate_hz"] == 26.0 and d["params"] == 7 and d["round"] == 3 and d["units"] == "m/s^2"


def _circular() -> list:
    a: list = []
    a.append(a)
    return a


@pytest.mark.parametrize(
    "value,ok",
    [
        (1.5, True),
        ("text", True),
        (None, True),
        ({"a": [1, "x", None, True]}, True),
        (float("nan"), True),  # json writes NaN
        (object(), False),  # TypeError
        (np.float32(1.0), False),  # TypeError: numpy scalars are not JSON
        ({1: {2}}, False),  # a set inside
        (_circular(), False),  # ValueError: circular reference
    ],
    ids=["float", "str", "none", "nested", "nan", "object", "np_float32", "set", "circular"],
)
def test_jsonable(value, ok):
    assert M._jsonable(value) is ok


# --------------------------------------------------------------------------------------------------
# C header pieces
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,ident",
    [
        ("odl_model", "odl_model"),
        ("9 x-y", "m_9_x_y"),
        ("", "m_"),
        ("model.v2", "model_v2"),
        ("_x9", "_x9"),
        ("A0", "A0"),
        ("Gehen-ä", "Gehen__"),
        ("x9", "x9"),
    ],
)
def test_c_ident(text, ident):
    assert M._c_ident(text) == ident


@pytest.mark.parametrize(
    "value,text",
    [
        (1.0, "1.0f"),
        (3, "3.0f"),
        (-0.0, "-0.0f"),
        (0.1, "0.1f"),
        (1.0 / 3.0, "0.33333334f"),
        (1e-05, "1e-05f"),
        (1e-45, "1e-45f"),
        (100000000.0, "1e+08f"),
        (3.4028235e38, "3.4028235e+38f"),
        (np.float32(-2.5), "-2.5f"),
    ],
)
def test_c_float_is_the_shortest_float32_text(value, text):
    assert M._c_float(value) == text


@pytest.mark.parametrize("value,text", [(float("inf"), "inf"), (float("-inf"), "-inf"), (float("nan"), "nan")])
def test_c_float_refuses_nonfinite(value, text):
    with pytest.raises(ModelError) as e:
        M._c_float(value)
    assert str(e.value) == f"weight value {text} cannot be exported to C"


@pytest.mark.parametrize(
    "shape,text",
    [
        ((20, 3), "{20, 3, 1}"),
        ((24, 3, 1), "{24, 3, 1}"),
        ((50,), "{50, 1, 1}"),
        ((), "{1, 1, 1}"),
        ((np.int64(7), np.int32(2)), "{7, 2, 1}"),
        ((2, 3, 4, 5), "{2, 3, 4}"),  # the C struct has 3 slots
    ],
)
def test_shape3(shape, text):
    assert M._shape3(shape) == text


# --------------------------------------------------------------------------------------------------
# C header
# --------------------------------------------------------------------------------------------------

TINY_HEADER = r"""/* odl_model.h - generated by ODL Studio (app.core.models.export_c_header). Do not edit.
 * Model: tiny; source: unit-test
 * Input: [4, 2] float32 in m/s^2 after preprocessing 'none'; output: softmax over 3 classes.
 * Weights: every parameter array of every layer, concatenated in layer order, each in Keras layout
 * flattened row-major (C order): conv1d kernel (K, C_in, F) then bias (F); conv2d kernel (K, 1, C_in, F)
 * then bias; dense kernel (N_in, units) then bias; batchnorm gamma, beta, moving_mean, moving_variance.
 * Layer table: odl_model_layers[i].param_offset/param_count index odl_model_weights.
 */
#ifndef ODL_MODEL_H
#define ODL_MODEL_H

#include <stdint.h>

#ifndef ODL_LAYER_TABLE_TYPES
#define ODL_LAYER_TABLE_TYPES
#define ODL_KIND_CONV1D 0
#define ODL_KIND_CONV2D 1
#define ODL_KIND_DENSE 2
#define ODL_KIND_RELU 3
#define ODL_KIND_SOFTMAX 4
#define ODL_KIND_AVGPOOL1D 5
#define ODL_KIND_MAXPOOL1D 6
#define ODL_KIND_AVGPOOL2D 7
#define ODL_KIND_MAXPOOL2D 8
#define ODL_KIND_GAP1D 9
#define ODL_KIND_GMP1D 10
#define ODL_KIND_GAP2D 11
#define ODL_KIND_GMP2D 12
#define ODL_KIND_FLATTEN 13
#define ODL_KIND_BATCHNORM 14
#define ODL_KIND_DROPOUT 15

typedef struct {
    uint8_t kind;          /* ODL_KIND_* */
    const char *name;
    uint16_t filters, kernel, units, pool, stride;
    uint8_t use_bias;
    float rate, epsilon;   /* dropout rate; batchnorm epsilon */
    uint8_t in_rank;  uint16_t in_shape[3];   /* per sample, without batch axis; unused dims = 1 */
    uint8_t out_rank; uint16_t out_shape[3];
    uint32_t param_offset, param_count;        /* into the weights array */
} odl_layer_t;
#endif

#define ODL_MODEL_INPUT_RANK 2
#define ODL_MODEL_INPUT_LEN 4
#define ODL_MODEL_N_CLASSES 3
#define ODL_MODEL_N_LAYERS 5
#define ODL_MODEL_N_PARAMS 23u
#define ODL_MODEL_PREPROC_GRAVITY_ROT_SUP 0

static const uint16_t odl_model_input_shape[3] = {4, 2, 1};
static const char *const odl_model_classes[ODL_MODEL_N_CLASSES] = {"sit", "walk", "run"};
static const char odl_model_arch_json[] = "{\"classes\": [\"sit\", \"walk\", \"run\"], \"input_shape\": [4, 2], \"layers\": [{\"filters\": 2, \"kernel\": 3, \"kind\": \"conv1d\", \"name\": \"conv1\"}, {\"kind\": \"relu\", \"name\": \"relu1\"}, {\"kind\": \"gap1d\", \"name\": \"gap\"}, {\"kind\": \"dense\", \"name\": \"dense1\", \"units\": 3}, {\"kind\": \"softmax\", \"name\": \"softmax\"}], \"meta\": {}, \"name\": \"tiny\", \"preprocessing\": \"none\"}";

static const odl_layer_t odl_model_layers[ODL_MODEL_N_LAYERS] = {
    {0, "conv1", 2, 3, 0, 0, 0, 1, 0.0f, 0.001f, 2, {4, 2, 1}, 2, {2, 2, 1}, 0u, 14u},
    {3, "relu1", 0, 0, 0, 0, 0, 1, 0.0f, 0.001f, 2, {2, 2, 1}, 2, {2, 2, 1}, 14u, 0u},
    {9, "gap", 0, 0, 0, 0, 0, 1, 0.0f, 0.001f, 2, {2, 2, 1}, 1, {2, 1, 1}, 14u, 0u},
    {2, "dense1", 0, 0, 3, 0, 0, 1, 0.0f, 0.001f, 1, {2, 1, 1}, 1, {3, 1, 1}, 14u, 9u},
    {4, "softmax", 0, 0, 0, 0, 0, 1, 0.0f, 0.001f, 1, {3, 1, 1}, 1, {3, 1, 1}, 23u, 0u},
};

static const float odl_model_weights[23] = {
    -1.5f, -1.25f, -1.0f, -0.75f, -0.5f, -0.25f, 0.0f, 0.25f,
    0.5f, 0.75f, 1.0f, 1.25f, 0.5f, -0.5f, 0.0f, 0.125f,
    0.25f, 0.375f, 0.5f, 0.625f, 1.0f, 2.0f, -3.0f,
};

#endif /* ODL_MODEL_H */
"""


def test_c_header_text_of_a_tiny_model():
    """The whole header of a 5-layer model, line by line: kind codes, defines, layer table with offsets and
    counts, class names, the architecture JSON and the weights 8 per line in layer order."""
    assert M.c_header_text(tiny()) == TINY_HEADER


def test_c_header_layer_rows_of_every_field():
    """No bias (use_bias 0), a batchnorm epsilon, a pool's default stride (= pool) and an explicit one, flatten,
    a dropout rate: every column of the layer table and the running offsets."""
    arch = Arch(
        (8, 3),
        (
            Layer("conv1d", "c", filters=2, kernel=3, use_bias=False),
            Layer("batchnorm", "bn", epsilon=1e-5),
            Layer("avgpool1d", "ap", pool=2),
            Layer("maxpool1d", "mp", pool=2, stride=1),
            Layer("flatten", "fl"),
            Layer("dropout", "do", rate=0.25),
            Layer("dense", "d", units=2),
            Layer("softmax", "sm"),
        ),
        ("a", "b"),
        name="wide",
    )
    text = M.c_header_text((arch, Model(arch, seed=1).get_weights()))
    start = text.index("static const odl_layer_t odl_model_layers")
    table = text[start : text.index("};", start) + 2]
    assert table == (
        "static const odl_layer_t odl_model_layers[ODL_MODEL_N_LAYERS] = {\n"
        '    {0, "c", 2, 3, 0, 0, 0, 0, 0.0f, 0.001f, 2, {8, 3, 1}, 2, {6, 2, 1}, 0u, 18u},\n'
        '    {14, "bn", 0, 0, 0, 0, 0, 1, 0.0f, 1e-05f, 2, {6, 2, 1}, 2, {6, 2, 1}, 18u, 8u},\n'
        '    {5, "ap", 0, 0, 0, 2, 2, 1, 0.0f, 0.001f, 2, {6, 2, 1}, 2, {3, 2, 1}, 26u, 0u},\n'
        '    {6, "mp", 0, 0, 0, 2, 1, 1, 0.0f, 0.001f, 2, {3, 2, 1}, 2, {2, 2, 1}, 26u, 0u},\n'
        '    {13, "fl", 0, 0, 0, 0, 0, 1, 0.0f, 0.001f, 2, {2, 2, 1}, 1, {4, 1, 1}, 26u, 0u},\n'
        '    {15, "do", 0, 0, 0, 0, 0, 1, 0.25f, 0.001f, 1, {4, 1, 1}, 1, {4, 1, 1}, 26u, 0u},\n'
        '    {2, "d", 0, 0, 2, 0, 0, 1, 0.0f, 0.001f, 1, {4, 1, 1}, 1, {2, 1, 1}, 26u, 10u},\n'
        '    {4, "sm", 0, 0, 0, 0, 0, 1, 0.0f, 0.001f, 1, {2, 1, 1}, 1, {2, 1, 1}, 36u, 0u},\n'
        "};"
    )
    assert "#define ODL_MODEL_N_PARAMS 36u\n" in text
    assert "static const float odl_model_weights[36] = {\n" in text
    # 36 values: 4 lines of 8 and one of 4
    body = text[text.index("odl_model_weights[36] = {\n") :].split("\n")[1:6]
    assert [line.count("f,") for line in body] == [8, 8, 8, 8, 4] and all(line.startswith("    ") for line in body)


def test_c_header_of_an_st_like_model_with_a_prefix():
    """A Conv2D model on (T, 3, 1) windows with ST's preprocessing, under a prefix that is not a C identifier:
    rank-3 shapes, the gravity flag set, every name made of the identifier; a (arch, weights) tuple has its
    architecture's name as source."""
    arch = Arch(
        (6, 3, 1),
        (
            Layer("conv2d", "c2", filters=2, kernel=3),
            Layer("gmp2d", "gmp"),
            Layer("dense", "out", units=2),
            Layer("softmax", "sm"),
        ),
        ("Stationary", "Walking"),
        name="ign_like",
        preprocessing="gravity_rot_sup",
    )
    text = M.c_header_text((arch, Model(arch, seed=2).get_weights()), prefix="9 x-y")
    assert text.startswith("/* m_9_x_y.h - generated by ODL Studio (app.core.models.export_c_header). Do not edit.\n")
    assert " * Model: ign_like; source: ign_like\n" in text
    assert (
        " * Input: [6, 3, 1] float32 in m/s^2 after preprocessing 'gravity_rot_sup'; output: softmax over 2 classes.\n"
        in text
    )
    assert " * Layer table: m_9_x_y_layers[i].param_offset/param_count index m_9_x_y_weights.\n" in text
    assert "#ifndef M_9_X_Y_H\n#define M_9_X_Y_H\n" in text and text.endswith("#endif /* M_9_X_Y_H */\n")
    assert (
        "#define M_9_X_Y_INPUT_RANK 3\n"
        "#define M_9_X_Y_INPUT_LEN 6\n"
        "#define M_9_X_Y_N_CLASSES 2\n"
        "#define M_9_X_Y_N_LAYERS 4\n"
        "#define M_9_X_Y_N_PARAMS 14u\n"
        "#define M_9_X_Y_PREPROC_GRAVITY_ROT_SUP 1\n"
        "\n"
        "static const uint16_t m_9_x_y_input_shape[3] = {6, 3, 1};\n"
        'static const char *const m_9_x_y_classes[M_9_X_Y_N_CLASSES] = {"Stationary", "Walking"};\n'
    ) in text
    assert (
        "static const odl_layer_t m_9_x_y_layers[M_9_X_Y_N_LAYERS] = {\n"
        '    {1, "c2", 2, 3, 0, 0, 0, 1, 0.0f, 0.001f, 3, {6, 3, 1}, 3, {4, 3, 2}, 0u, 8u},\n'
        '    {12, "gmp", 0, 0, 0, 0, 0, 1, 0.0f, 0.001f, 3, {4, 3, 2}, 1, {2, 1, 1}, 8u, 0u},\n'
        '    {2, "out", 0, 0, 2, 0, 0, 1, 0.0f, 0.001f, 1, {2, 1, 1}, 1, {2, 1, 1}, 8u, 6u},\n'
        '    {4, "sm", 0, 0, 0, 0, 0, 1, 0.0f, 0.001f, 1, {2, 1, 1}, 1, {2, 1, 1}, 14u, 0u},\n'
        "};\n"
    ) in text
    assert "static const float m_9_x_y_weights[14] = {\n" in text
    assert 'static const char m_9_x_y_arch_json[] = "{\\"classes\\": [\\"Stationary\\", \\"Walking\\"], ' in text


def test_c_header_escapes_quotes_and_backslashes_in_class_names():
    m = tiny(classes=('say "hi"', "back\\slash", "plain"))
    text = M.c_header_text(m)
    assert (
        "static const char *const odl_model_classes[ODL_MODEL_N_CLASSES] = "
        '{"say \\"hi\\"", "back\\\\slash", "plain"};\n' in text
    )
    # in the arch JSON: JSON's own escapes (\" and \\), each escaped again for C
    assert '\\"classes\\": [\\"say \\\\\\"hi\\\\\\"\\", \\"back\\\\\\\\slash\\", \\"plain\\"]' in text


def test_c_header_of_a_parameter_free_model_has_one_placeholder_weight():
    """C has no empty arrays: a model without parameters gets a 1-element weights array holding 0.0f."""
    arch = Arch((4, 2), (Layer("gap1d", "gap"), Layer("softmax", "sm")), ("a", "b"))
    text = M.c_header_text((arch, {}))
    assert "#define ODL_MODEL_N_PARAMS 0u\n" in text
    assert "static const float odl_model_weights[1] = {\n    0.0f,\n};\n" in text
    assert (
        '    {9, "gap", 0, 0, 0, 0, 0, 1, 0.0f, 0.001f, 2, {4, 2, 1}, 1, {2, 1, 1}, 0u, 0u},\n'
        '    {4, "sm", 0, 0, 0, 0, 0, 1, 0.0f, 0.001f, 1, {2, 1, 1}, 1, {2, 1, 1}, 0u, 0u},\n'
    ) in text


def test_c_header_refuses_nan_weights():
    w = tiny_weights()
    w["dense1"][1][2] = np.nan
    with pytest.raises(ModelError) as e:
        M.c_header_text(tiny(w))
    assert str(e.value) == (
        "unit-test: the weights of layer(s) dense1 are NaN or Inf (a round that diverged?); "
        "such a model cannot be loaded back or run, so it is not exported"
    )


@pytest.mark.parametrize("fmt,name", [("c_header", "m.h"), ("npz", "m.npz")])
def test_an_export_of_nan_or_inf_weights_writes_nothing(tmp_path, fmt, name):
    """A model whose weights hold a NaN or an Inf (a round that diverged) is refused by every export, naming the
    layers, before anything is written: the readers refuse such files, so the user would have a model file that
    cannot be loaded back.  An older file of that name stays as it was."""
    w = tiny_weights()
    w["conv1"][0][0, 0, 0] = np.inf
    w["dense1"][1][2] = np.nan
    (tmp_path / name).write_text("older")
    write = {"c_header": M.export_c_header, "npz": M.export_npz}[fmt]
    for model in (tiny(w), (TINY, w)):
        with pytest.raises(ModelError) as e:
            write(model, tmp_path / name)
        assert "the weights of layer(s) conv1, dense1 are NaN or Inf" in str(e.value)
        with pytest.raises(ModelError) as e:
            M.export_all(model, tmp_path / "all", formats=("c_header", "npz"))
        assert str(e.value).endswith("so it is not exported")
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    assert (tmp_path / name).read_text() == "older"


def test_nan_weights_of_a_model_without_a_source_are_named_without_one(tmp_path):
    """The refusal starts with the model's source when it has one, and with the sentence itself when not."""
    w = tiny_weights()
    w["dense1"][0][0, 0] = np.nan
    with pytest.raises(ModelError) as e:
        M.export_npz(tiny(w, source=""), tmp_path / "m.npz")
    assert str(e.value) == (
        "the weights of layer(s) dense1 are NaN or Inf (a round that diverged?); "
        "such a model cannot be loaded back or run, so it is not exported"
    )


def _compile_and_run(folder: Path, main_c: str) -> bytes:
    """Build ``main_c`` beside the exported ``odl_model.h`` as the firmware is built (C99, pedantic, warnings
    are errors) and return what it prints."""
    (folder / "main.c").write_text(main_c)
    exe = folder / "main"
    subprocess.run(
        [
            "gcc",
            "-std=c99",
            "-pedantic",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-o",
            str(exe),
            str(folder / "main.c"),
            f"-I{folder}",
        ],
        check=True,
        timeout=60,
    )
    return subprocess.run([str(exe)], capture_output=True, timeout=30, check=True).stdout


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this host")
def test_c_header_compiles_and_holds_the_exact_weights(tmp_path):
    """What the firmware build sees: the header compiles warning-free (C99, pedantic) and its arrays hold the
    float32 weights bit for bit, the layer table the offsets, the class names unescaped."""
    m = tiny(odd_weights(), classes=('say "hi"', "back\\slash", "run"))
    M.export_c_header(m, tmp_path / "odl_model.h")
    out = (
        _compile_and_run(
            tmp_path,
            '#include <stdio.h>\n#include <string.h>\n#include "odl_model.h"\n'
            "int main(void) {\n"
            "  for (unsigned i = 0; i < ODL_MODEL_N_PARAMS; i++) {\n"
            '    uint32_t u; memcpy(&u, &odl_model_weights[i], 4); printf("%08x\\n", (unsigned)u);\n'
            "  }\n"
            "  const odl_layer_t *d = &odl_model_layers[3];\n"
            '  printf("%s|%u|%u|%u|%s|%s|%d\\n", d->name, (unsigned)d->param_offset, (unsigned)d->param_count,\n'
            "         (unsigned)d->units, odl_model_classes[0], odl_model_classes[1], (int)sizeof odl_model_arch_json);\n"
            "  return 0;\n}\n",
        )
        .decode()
        .splitlines()
    )
    flat = np.concatenate([a.ravel() for ws in m.weights.values() for a in ws])
    assert [int(x, 16) for x in out[:23]] == flat.view(np.uint32).tolist()
    assert out[:5] == ["80000000", "00000001", "7f7fffff", "3727c5ac", "3eaaaaab"]  # -0, 1e-45, max, 1e-05, 1/3
    name, offset, count, units, c0, c1, size = out[23].split("|")
    assert (name, offset, count, units, c0, c1) == ("dense1", "14", "9", "3", 'say "hi"', "back\\slash")
    assert int(size) == len(TINY.to_json().replace('"sit", "walk"', '"say \\"hi\\"", "back\\\\slash"')) + 1


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this host")
def test_c_header_of_hostile_names_still_compiles(tmp_path):
    """Class names are the user's (a dataset's classes): a line break, a tab or DEL in one, and a source file
    name with "*/" and a line break, must neither end the header's comment nor its string literals; the
    compiled program holds the names as they were, and the header reads back."""
    classes = ("two\nlines", "tab\there X", "del\x7f7")
    m = tiny(classes=classes, source="/tmp/x*/y\nz.keras")
    M.export_c_header(m, tmp_path / "odl_model.h")
    text = (tmp_path / "odl_model.h").read_text()
    assert " * Model: tiny; source: /tmp/x* /y z.keras\n" in text
    assert 'odl_model_classes[ODL_MODEL_N_CLASSES] = {"two\\012lines", "tab\\011here X", "del\\1777"};' in text
    out = _compile_and_run(
        tmp_path,
        '#include <stdio.h>\n#include "odl_model.h"\n'
        "int main(void) {\n"
        '  for (int i = 0; i < ODL_MODEL_N_CLASSES; i++) printf("%s|", odl_model_classes[i]);\n'
        "  return 0;\n}\n",
    )
    assert out.decode().split("|")[:3] == list(classes)
    assert M.read_c_header(tmp_path / "odl_model.h").classes == classes


def test_read_c_header_round_trips_bit_for_bit(tmp_path):
    m = tiny(odd_weights(), classes=('say "hi"', "back\\slash", "run"), preprocessing="gravity_rot_sup")
    p = M.export_c_header(m, tmp_path / "flashed.h")
    back = M.read_c_header(p)
    assert_bit_equal(back.weights, m.weights)
    assert back.arch == m.arch and back.arch.name == "tiny"
    assert back.classes == ('say "hi"', "back\\slash", "run")
    assert back.preprocessing == "gravity_rot_sup" and back.source == str(p) and back.meta == {}


def test_read_c_header_refuses_unreadable_files(tmp_path):
    missing = tmp_path / "gone.h"
    with pytest.raises(ModelError) as e:
        M.read_c_header(missing)
    assert str(e.value) == f"{missing}: cannot read ([Errno 2] No such file or directory: '{missing}')"
    binary = tmp_path / "bin.h"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ModelError) as e:
        M.read_c_header(binary)
    assert str(e.value) == (
        f"{binary}: cannot read ('utf-8' codec can't decode byte 0xff in position 0: invalid start byte)"
    )


@pytest.mark.parametrize("cut", ["arch", "weights", "both"])
def test_read_c_header_refuses_a_header_without_arch_or_weights(tmp_path, cut):
    text = TINY_HEADER
    if cut in ("arch", "both"):
        text = text.replace("odl_model_arch_json[]", "odl_model_arch[]")
    if cut in ("weights", "both"):
        text = text.replace("odl_model_weights[23]", "odl_model_weights[]")
    p = tmp_path / "foreign.h"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ModelError) as e:
        M.read_c_header(p)
    assert str(e.value) == f"{p}: not an ODL Studio model header (no arch JSON or weights array)"


@pytest.mark.parametrize(
    "old,new,message",
    [
        ("2.0f, -3.0f,\n", "2.0f, -3.0f, 4.0f,\n", "24 weight values but the architecture needs 23"),
        # a truncated weights array (was: numpy's bare reshape error)
        (" 2.0f, -3.0f,\n", "\n", "21 weight values but the architecture needs 23"),
        ("2.0f, -3.0f", "2.0.0f, -3.0f", "not an ODL Studio model header (could not convert string to float: '2.0.0')"),
    ],
    ids=["more values", "fewer values", "no number"],
)
def test_read_c_header_refuses_weights_that_do_not_fit(tmp_path, old, new, message):
    p = tmp_path / "damaged.h"
    p.write_text(TINY_HEADER.replace(old, new), encoding="utf-8")
    with pytest.raises(ModelError) as e:
        M.read_c_header(p)
    assert str(e.value) == f"{p}: {message}"


@pytest.mark.parametrize(
    "old,new,problem",
    [
        (
            '\\"input_shape\\": [4, 2]',
            '\\"input_shape\\": [4, 0]',
            "input shape (4, 0) is not valid: sizes must be whole numbers >= 1",
        ),
        (
            'odl_model_arch_json[] = "{',
            'odl_model_arch_json[] = "{{',
            "architecture is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 "
            "(char 1)",
        ),
    ],
    ids=["bad_shape", "bad_json"],
)
def test_read_c_header_refuses_a_damaged_architecture(tmp_path, old, new, problem):
    """A damaged architecture JSON is a ModelError naming the file (was: a bare ArchError without it)."""
    p = tmp_path / "damaged.h"
    assert old in TINY_HEADER
    p.write_text(TINY_HEADER.replace(old, new), encoding="utf-8")
    with pytest.raises(ModelError) as e:
        M.read_c_header(p)
    assert str(e.value) == f"{p}: not an ODL Studio model header ({problem})"


def test_read_c_header_refuses_nan(tmp_path):
    """A NaN value is refused, naming the layer (was: read as a NaN weight)."""
    p = tmp_path / "nan.h"
    p.write_text(TINY_HEADER.replace("2.0f, -3.0f", "nanf, -3.0f"), encoding="utf-8")
    with pytest.raises(ModelError) as e:
        M.read_c_header(p)
    assert str(e.value) == f"{p}: weights of layer(s) dense1 contain NaN or Inf"


def test_read_c_header_names_every_layer_with_nan(tmp_path):
    p = tmp_path / "nan2.h"
    p.write_text(TINY_HEADER.replace("0.25f, 0.375f", "nanf, 0.375f").replace("-1.5f,", "nanf,"), encoding="utf-8")
    with pytest.raises(ModelError) as e:
        M.read_c_header(p)
    assert str(e.value) == f"{p}: weights of layer(s) conv1, dense1 contain NaN or Inf"


def test_read_c_header_reads_upper_case_exponents(tmp_path):
    """C float literals may write the exponent as E: ``2.5E-1f`` is 0.25."""
    p = tmp_path / "upper.h"
    p.write_text(TINY_HEADER.replace("0.25f, 0.375f", "2.5E-1f, 0.375f"), encoding="utf-8")
    back = M.read_c_header(p)
    assert_bit_equal(back.weights, tiny_weights())


def test_read_c_header_is_utf8_whatever_the_locale(tmp_path, monkeypatch):
    """Headers are UTF-8 files: one whose comment names a model file in a user's folder outside ASCII reads back
    where the locale's encoding is ASCII (a C/POSIX locale; simulated by the default pathlib asks ``io`` for)."""
    m = tiny(source="/home/jürgen/Modelle/gehen.keras")
    p = M.export_c_header(m, tmp_path / "umlaut.h")
    assert " * Model: tiny; source: /home/jürgen/Modelle/gehen.keras\n" in p.read_text(encoding="utf-8")
    monkeypatch.setattr(io, "text_encoding", lambda encoding, stacklevel=2: encoding or "ascii")
    back = M.read_c_header(p)
    assert_bit_equal(back.weights, tiny_weights())


def test_read_c_header_reads_the_hand_written_values(tmp_path):
    p = tmp_path / "tiny.h"
    p.write_text(TINY_HEADER, encoding="utf-8")
    back = M.read_c_header(p)
    assert_bit_equal(back.weights, tiny_weights())
    assert back.classes == ("sit", "walk", "run") and back.arch == TINY


# --------------------------------------------------------------------------------------------------
# npz
# --------------------------------------------------------------------------------------------------


def test_npz_round_trips_bit_for_bit_with_classes_preprocessing_and_meta(tmp_path):
    meta = {"rate_hz": 26.0, "personalized_round": 3, "handle": object()}
    m = tiny(odd_weights(), meta=meta, classes=("a", "b", "c"), preprocessing="gravity_rot_sup")
    p = M.export_npz(m, tmp_path / "personal.npz")
    assert p == tmp_path / "personal.npz"
    back = M.load_npz(p)
    assert_bit_equal(back.weights, m.weights)
    assert back.classes == ("a", "b", "c") and back.arch.classes == ("a", "b", "c")
    assert back.preprocessing == "gravity_rot_sup" and back.arch.preprocessing == "gravity_rot_sup"
    assert back.arch == m.arch and back.arch.name == "tiny"
    assert back.meta == {"rate_hz": 26.0, "personalized_round": 3}  # the object is not JSON: dropped
    assert back.source == str(p)


def test_npz_layout_is_named_arrays_and_json_without_pickles(tmp_path):
    """The members a user's own tools read: ``w/<layer>/<i>`` in Keras layout, ``arch_json`` (with the model's
    classes and preprocessing, not its architecture's, and no architecture meta) and ``meta_json``."""
    arch = Arch(TINY.input_shape, TINY.layers, (), "tiny", "none", {"source": "somewhere"})
    m = LoadedModel(arch, tiny_weights(), ("x", "y", "z"), "gravity_rot_sup", "s", {"rate_hz": 20.0})
    p = M.export_npz(m, tmp_path / "m.npz")
    with zipfile.ZipFile(p) as zf:
        assert zf.namelist() == [
            "arch_json.npy",
            "meta_json.npy",
            "w/conv1/0.npy",
            "w/conv1/1.npy",
            "w/dense1/0.npy",
            "w/dense1/1.npy",
        ]
    with np.load(p, allow_pickle=False) as z:
        assert json.loads(str(z["arch_json"])) == {
            "classes": ["x", "y", "z"],
            "input_shape": [4, 2],
            "layers": [
                {"filters": 2, "kernel": 3, "kind": "conv1d", "name": "conv1"},
                {"kind": "relu", "name": "relu1"},
                {"kind": "gap1d", "name": "gap"},
                {"kind": "dense", "name": "dense1", "units": 3},
                {"kind": "softmax", "name": "softmax"},
            ],
            "meta": {},
            "name": "tiny",
            "preprocessing": "gravity_rot_sup",
        }
        assert str(z["meta_json"]) == '{"rate_hz": 20.0}'
        assert z["w/dense1/1"].tolist() == [1.0, 2.0, -3.0] and z["w/dense1/1"].dtype == np.float32
        assert z["w/conv1/0"].shape == (3, 2, 2)


def test_npz_export_of_an_arch_weights_tuple(tmp_path):
    p = M.export_npz((TINY, tiny_weights()), tmp_path / "t.npz")
    back = M.load_npz(p)
    assert back.classes == ("sit", "walk", "run") and back.meta == {}
    assert_bit_equal(back.weights, tiny_weights())


def test_npz_arrays_of_a_layer_are_ordered_by_their_number(tmp_path):
    """Arrays are put in order by their index as a number (9 before 10), not by name or by their order in the
    file."""
    w = tiny_weights()
    members = {
        "arch_json": np.array(TINY.to_json()),
        "w/dense1/10": w["dense1"][1],
        "w/dense1/9": w["dense1"][0],
        "w/conv1/1": w["conv1"][1],
        "w/conv1/0": w["conv1"][0],
    }
    back = M.load_npz(save_npz(tmp_path / "order.npz", members))
    assert_bit_equal(back.weights, w)


def test_npz_without_meta_has_empty_meta(tmp_path):
    members = good_members()
    del members["meta_json"]
    back = M.load_npz(save_npz(tmp_path / "nometa.npz", members))
    assert back.meta == {} and back.classes == ("sit", "walk", "run")


def test_npz_meta_is_read(tmp_path):
    back = M.load_npz(save_npz(tmp_path / "meta.npz", good_members()))
    assert back.meta == {"rate_hz": 20.0}


def _npz_error(path: Path) -> str:
    with pytest.raises(ModelError) as e:
        M.load_npz(path)
    return str(e.value)


@pytest.mark.parametrize("meta", ['{"rate_hz": "fast"}', '{"rate_hz": 0}', '{"rate_hz": -1e300}', '{"rate_hz": NaN}',
                                  '{"rate_hz": true}', '{"rate_hz": 1e6}'])  # fmt: skip
def test_npz_refuses_metadata_whose_rate_is_not_a_sample_rate(tmp_path, meta):
    """Every job resamples the user's data to the model's rate: a rate that is not one is refused at load, in
    the words of the .keras sidecar's check (tests/core/test_user_mistakes.py)."""
    members = good_members()
    members["meta_json"] = np.array(meta)
    p = save_npz(tmp_path / "rate.npz", members)
    assert _npz_error(p).startswith(f"{p}: rate_hz ") and "is not a sample rate (a number of Hz" in _npz_error(p)


def test_npz_accepts_the_rates_at_the_limits(tmp_path):
    for rate in (0.1, 100_000):
        members = good_members()
        members["meta_json"] = np.array(f'{{"rate_hz": {rate}}}')
        assert M.load_npz(save_npz(tmp_path / "ok.npz", members)).meta == {"rate_hz": rate}


def test_npz_refuses_metadata_that_is_not_an_object_and_a_class_named_twice(tmp_path):
    members = good_members()
    members["meta_json"] = np.array("[20.0]")
    p = save_npz(tmp_path / "list.npz", members)
    assert _npz_error(p) == f"{p}: its metadata (meta_json) is not a JSON object"
    members = good_members()
    twice = Arch(TINY.input_shape, TINY.layers, ("sit", "walk", "sit"), TINY.name, "none")
    members["arch_json"] = np.array(twice.to_json())
    p = save_npz(tmp_path / "twice.npz", members)
    assert _npz_error(p) == f"{p}: its metadata lists the class 'sit' twice"


def test_npz_refuses_a_missing_layer(tmp_path):
    members = good_members()
    del members["w/dense1/0"], members["w/dense1/1"]
    p = save_npz(tmp_path / "missing.npz", members)
    assert _npz_error(p) == f"{p}: weights for layer 'dense1' are missing (have: conv1)"


def test_npz_refuses_a_wrong_shape(tmp_path):
    members = good_members()
    members["w/dense1/0"] = np.zeros((3, 3), np.float32)
    p = save_npz(tmp_path / "shape.npz", members)
    assert _npz_error(p) == (
        f"{p}: layer 'dense1': weight shapes [(3, 3), (3,)] do not match the architecture [(2, 3), (3,)]"
    )


def test_npz_refuses_an_extra_layer(tmp_path):
    members = good_members()
    members["w/gap/0"] = np.zeros(2, np.float32)
    p = save_npz(tmp_path / "extra.npz", members)
    assert _npz_error(p) == f"{p}: weights given for unknown or parameter-free layers: gap"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_npz_refuses_nonfinite_weights(tmp_path, bad):
    w = tiny_weights()
    w["dense1"][0][1, 2] = bad  # one value of one array (the other array of the layer is fine)
    p = save_npz(tmp_path / "nan.npz", good_members(w))
    assert _npz_error(p) == f"{p}: weights of layer 'dense1' contain NaN or Inf"


def test_npz_refuses_nonfinite_weights_in_a_layer_s_last_array(tmp_path):
    w = tiny_weights()
    w["conv1"][1][0] = np.nan
    p = save_npz(tmp_path / "nan_bias.npz", good_members(w))
    assert _npz_error(p) == f"{p}: weights of layer 'conv1' contain NaN or Inf"


def test_npz_refuses_a_file_that_is_not_an_npz(tmp_path):
    p = tmp_path / "notes.npz"
    p.write_text("hello")
    assert (
        _npz_error(p) == f"{p}: not an ODL Studio model .npz: a damaged .npz: not a zip archive (it starts with text)"
    )


def test_a_data_file_picked_as_a_model_is_named_for_what_it_is(tmp_path):
    """A windows export, a HAPT dataset or a power capture chosen in the Training/Estimator model import (or
    --model) said "not an ODL Studio model .npz ('arch_json is not a file in the archive')" / Keras's "No model
    config found in the file"."""
    from app.core.models import load_model
    from device.lpm01a.capture import Block
    from device.lpm01a.recorder import Hdf5Writer

    win = tmp_path / "mine.npz"
    np.savez(win, X=np.zeros((2, 20, 3), np.float32), y=np.zeros(2, np.int64), classes=np.array(["walking"]))
    assert _npz_error(win) == (
        f"{win}: a windows .npz of the app's labels export (arrays X, y, classes), not an ODL Studio model .npz "
        "(arrays arch_json, meta_json, w/…)"
    )
    hapt = tmp_path / "hapt_raw_50hz.npz"
    np.savez(hapt, acc=np.zeros((3, 3)), label=np.zeros(3), user=np.zeros(3), session=np.zeros(3))
    assert _npz_error(hapt) == (
        f"{hapt}: a HAPT .npz (arrays acc, label, user, session), not an ODL Studio model .npz (arrays arch_json, "
        "meta_json, w/…)"
    )
    for name in ("cap.h5", "cap.HDF5"):
        cap = tmp_path / name
        w = Hdf5Writer(cap, 1000.0)
        w.write(Block(0, np.full(100, 1e-3), 1000.0))
        w.close()
        with pytest.raises(ModelError) as e:
            load_model(cap)
        assert str(e.value) == f"{cap}: an LPM01A power capture (odlstudio power, the Power panel), not a Keras model"


def _zip(path, members: dict[str, bytes]):
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (
            lambda p: np.savez(p, __report__=np.array("{}"), w=np.zeros(2)),
            "a general model cached by a LOSO run "
            "(.npz with arrays __report__, w), not an ODL Studio model .npz (arrays arch_json, meta_json, w/…)",
        ),
        (
            lambda p: np.save(open(p, "wb"), np.zeros(3)),
            "a single NumPy array (.npy, not a .npz of named arrays), "
            "not an ODL Studio model .npz (arrays arch_json, meta_json, w/…)",
        ),
        (
            lambda p: _zip(p, {"notes.txt": b"hi"}),
            "a zip archive holding notes.txt (not a .npz of arrays), not an ODL "
            "Studio model .npz (arrays arch_json, meta_json, w/…)",
        ),
        (
            lambda p: _zip(p, {"config.json": b"{}", "model.weights.h5": b"x"}),
            "a Keras model (.keras), not an ODL Studio model .npz (arrays arch_json, meta_json, w/…)",
        ),
    ],
    ids=["loso_cache", "npy", "zip", "keras"],
)
def test_a_npz_of_another_kind_is_named(tmp_path, make, what):
    p = tmp_path / "m.npz"
    make(p)
    assert _npz_error(p) == f"{p}: {what}"


@pytest.mark.parametrize(
    ("n", "shown"),
    [
        (8, "a0, a1, a2, a3, a4, a5, a6, a7"),
        (9, "a0, a1, a2, a3, a4, a5, a6, a7 and 1 more"),
        (11, "a0, a1, a2, a3, a4, a5, a6, a7 and 3 more"),
    ],
)
def test_an_npz_without_arch_json_lists_eight_of_its_arrays(tmp_path, n, shown):
    p = tmp_path / "m.npz"
    np.savez(p, **{f"a{i}": np.zeros(1) for i in range(n)})
    assert _npz_error(p) == f"{p}: not an ODL Studio model .npz: it has no array arch_json (has: {shown})"


def test_npz_refuses_an_npz_without_arch_json(tmp_path):
    members = good_members()
    del members["arch_json"]
    p = save_npz(tmp_path / "noarch.npz", members)
    assert _npz_error(p) == (
        f"{p}: not an ODL Studio model .npz: it has no array arch_json (has: meta_json, w/conv1/0, w/conv1/1, "
        "w/dense1/0, w/dense1/1)"
    )


def test_npz_refuses_a_bad_architecture(tmp_path):
    members = good_members()
    members["arch_json"] = np.array('{"input_shape": [4, 2]}')
    p = save_npz(tmp_path / "badarch.npz", members)
    assert _npz_error(p) == f"{p}: not an ODL Studio model .npz (malformed architecture description: no 'layers')"


def test_npz_refuses_a_weight_member_without_index(tmp_path):
    members = good_members()
    members["w/dense1"] = members.pop("w/dense1/1")
    p = save_npz(tmp_path / "noindex.npz", members)
    assert _npz_error(p) == f"{p}: not an ODL Studio model .npz (not enough values to unpack (expected 3, got 2))"


def test_npz_refuses_a_pickled_array(tmp_path):
    members = good_members()
    members["w/dense1/1"] = np.array([1.0, "x", None], dtype=object)
    p = save_npz(tmp_path / "pickle.npz", members)
    assert _npz_error(p).startswith(f"{p}: not an ODL Studio model .npz (Object arrays cannot be loaded when ")


def test_npz_refuses_a_member_stored_twice(tmp_path):
    """A damaged zip holding ``w/dense1/0`` twice is a ModelError naming the file and the layer."""
    src = save_npz(tmp_path / "good.npz", good_members())
    p = tmp_path / "twice.npz"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(p, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, zin.read(name))
        with pytest.warns(UserWarning, match="Duplicate name"):
            zout.writestr("w/dense1/0.npy", zin.read("w/dense1/0.npy"))
    assert _npz_error(p) == (
        f"{p}: layer 'dense1': weight shapes [(2, 3), (2, 3), (3,)] do not match the architecture [(2, 3), (3,)]"
    )


def test_npz_refuses_an_array_of_impossible_size(tmp_path):
    """A damaged array header declaring 2**48 float32 values (1 PiB) is refused, not allocated."""
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<f4", "fortran_order": False, "shape": (2**48,)})
    arch = io.BytesIO()
    np.save(arch, np.array(TINY.to_json()))
    p = tmp_path / "huge.npz"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("arch_json.npy", arch.getvalue())
        zf.writestr("w/conv1/0.npy", head.getvalue() + bytes(16))
    assert _npz_error(p) == (
        f"{p}: an array in this .npz declares an impossible size (Unable to allocate 1.00 PiB for an array with "
        "shape (281474976710656,) and data type float32)"
    )


# --------------------------------------------------------------------------------------------------
# nonfinite_layers / evaluate
# --------------------------------------------------------------------------------------------------


def test_nonfinite_layers_in_weight_order():
    w = {
        "a": [np.ones(3, np.float32)],
        "b": [np.ones(2, np.float32), np.array([1.0, np.nan], np.float32)],
        "c": [np.array([[np.inf]], np.float32)],
        "d": [np.zeros(2, np.float32), np.zeros(1, np.float32)],
        "e": [[1.0, -np.inf]],  # a list, not an array
    }
    assert M.nonfinite_layers(w) == ["b", "c", "e"]
    assert M.nonfinite_layers(tiny_weights()) == []


CLASSES = ["a", "b", "c", "d"]  # "d" never occurs
Y_TRUE = [0, 0, 0, 1, 1, 2]
PRED = [0, 0, 1, 1, 2, 2]
# confusion (rows true): a: 2 1 0 0 / b: 0 1 1 0 / c: 0 0 1 0 / d: 0 0 0 0
# F1: a 2*2/(2+3) = 0.8, b 2*1/(2+2) = 0.5, c 2*1/(2+1) = 0.6667, d 0; macro over a, b, c = 0.6556
EXPECTED = {
    "n": 6,
    "accuracy": 0.6667,
    "macro_f1": 0.6556,
    "per_class_f1": {"a": 0.8, "b": 0.5, "c": 0.6667, "d": 0.0},
    "confusion": [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]],
    "classes": ["a", "b", "c", "d"],
}


def test_evaluate_from_probabilities():
    probs = np.full((6, 4), 0.1)
    probs[np.arange(6), PRED] = 0.7
    probs[0, 3] = 0.69  # a close second never counts
    got = M.evaluate(Y_TRUE, probs, CLASSES)  # a list of labels
    assert got == EXPECTED
    assert json.loads(json.dumps(got)) == EXPECTED


def test_evaluate_from_predicted_indices():
    got = M.evaluate(np.array(Y_TRUE, np.float32), np.array(PRED, dtype=np.float64), tuple(CLASSES))
    assert got == EXPECTED and isinstance(got["n"], int) and type(got["classes"]) is list


@pytest.mark.parametrize("which", ["y_true", "y_pred"])
def test_evaluate_refuses_fractional_class_indices(which):
    """1-D inputs are class indices: 1.5 is refused, not counted as class 1 (was: truncated silently)."""
    y_true, pred = np.array(Y_TRUE, np.float64), np.array(PRED, np.float64)
    (y_true if which == "y_true" else pred)[3] = 1.5
    with pytest.raises(ValueError) as e:
        M.evaluate(y_true, pred, CLASSES)
    assert str(e.value) == f"{which} must contain integer class indices"


def test_evaluate_of_nothing():
    assert M.evaluate(np.zeros(0), np.zeros((0, 4)), CLASSES) == {
        "n": 0,
        "accuracy": None,
        "macro_f1": None,
        "per_class_f1": {},
        "confusion": [],
        "classes": ["a", "b", "c", "d"],
    }


def test_a_model_without_weights_round_trips_through_the_c_header(tmp_path):
    """A model with no trainable parameters (pooling and softmax only) is written with a one-element 0.0f array
    (C has no empty arrays) and read back as a model without weights; a non-zero or a second value there is
    refused."""
    free = Arch((4, 3), (Layer("gap1d", "gap"), Layer("softmax", "sm")), ("a", "b", "c"), name="free")
    p = M.export_c_header((free, {}), tmp_path / "free.h")
    assert "static const float free_weights[1] = {\n    0.0f,\n};" in p.read_text()
    back = M.read_c_header(p)
    assert back.arch == free and back.weights == {} and back.classes == ("a", "b", "c")
    text = p.read_text()
    for body, n in (("    1.0f,", 1), ("    0.0f, 0.0f,", 2)):
        p.write_text(text.replace("    0.0f,\n};", body + "\n};"))
        with pytest.raises(ModelError) as e:
            M.read_c_header(p)
        assert str(e.value) == f"{p}: {n} weight values but the architecture needs 0"


@pytest.mark.parametrize("model,kind", [([TINY, tiny_weights()], "list"), (None, "NoneType"), ((TINY,), "tuple")])
def test_an_export_of_something_not_a_model_says_what_it_got(tmp_path, model, kind):
    """Only a LoadedModel or an (arch, weights) pair is exported; anything else (a list, None, a 1-tuple) is
    refused with the type it was, and nothing is written."""
    with pytest.raises(ModelError) as e:
        M.export_npz(model, tmp_path / "m.npz")
    assert str(e.value) == f"expected a LoadedModel or (arch, weights), got {kind}"
    assert list(tmp_path.iterdir()) == []


def test_an_npz_that_cannot_be_read_gives_the_systems_reason(tmp_path):
    """A path the file-kind check cannot read is left to np.load, whose reason is kept (here: a folder)."""
    assert _npz_error(tmp_path) == f"{tmp_path}: not an ODL Studio model .npz ([Errno 21] Is a directory: '{tmp_path}')"


# --- _refused_write: a refused write of a model file said in words --------------------------------------------------
def _raised(exc_fn):
    """What leaves ``with _refused_write(p)`` when its body raises ``exc_fn()``."""
    p = Path("/x/a.h5")
    try:
        with M._refused_write(p):  # noqa: SLF001
            raise exc_fn()
    except BaseException as out:  # noqa: BLE001 - the test looks at it
        return out
    return None


def _chained(inner: BaseException, outer: BaseException, how: str) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as e:  # noqa: BLE001
            if how == "cause":
                raise outer from e
            raise outer  # noqa: B904 - __context__, as h5py's close after a failed write
    except BaseException as got:  # noqa: BLE001
        return got


def test_refused_write_passes_a_clean_body_and_a_model_error_through():
    with M._refused_write(Path("/x/a.h5")):  # noqa: SLF001
        pass
    err = M.ModelError("already in words")
    assert _raised(lambda: err) is err


@pytest.mark.parametrize(
    ("exc", "said"),
    [
        (
            lambda: OSError(28, "No space left on device", "/x/.a.tmp1-2.h5"),
            "cannot write /x/a.h5: No space left on device",
        ),
        (lambda: OSError(30, "Read-only file system"), "cannot write /x/a.h5: Read-only file system"),
        (
            lambda: _chained(OSError(28, "No space left on device"), RuntimeError("Can't destroy cache"), "context"),
            "cannot write /x/a.h5: No space left on device",
        ),
        (
            lambda: _chained(OSError(13, "Permission denied"), ValueError("wrapped"), "cause"),
            "cannot write /x/a.h5: Permission denied",
        ),
        (
            lambda: RuntimeError("Can't write data (file write failed: time = x, errno = 28, error message = 'y')"),
            "cannot write /x/a.h5: No space left on device",
        ),
        (
            lambda: _chained(RuntimeError("file write failed: errno = 5, error"), RuntimeError("close"), "context"),
            "cannot write /x/a.h5: Input/output error",
        ),
    ],
    ids=["oserror", "oserror-no-file", "oserror-in-context", "oserror-as-cause", "hdf5-text", "hdf5-text-in-context"],
)
def test_refused_write_says_the_system_s_reason_naming_the_file(exc, said):
    out = _raised(exc)
    assert type(out) is M.ModelError and str(out) == said
    assert out.__cause__ is not None and not isinstance(out.__cause__, M.ModelError)


@pytest.mark.parametrize(
    "exc",
    [
        lambda: ValueError("a bug, not a disk"),
        lambda: OSError("no errno"),  # errno None
        lambda: OSError(0, "errno 0"),
        lambda: RuntimeError("file write failed: errno = 0, nothing"),
        lambda: RuntimeError("errno=28 (no spaces: not HDF5's form)"),
        lambda: RuntimeError("xerrno = 28"),
        lambda: KeyboardInterrupt(),  # not an Exception: never caught
    ],
    ids=["valueerror", "oserror-no-errno", "oserror-errno-0", "hdf5-errno-0", "no-spaces", "not-a-word", "interrupt"],
)
def test_refused_write_leaves_what_is_not_a_refused_write_as_it_was(exc):
    first = exc()
    out = _raised(lambda: first)
    assert out is first
