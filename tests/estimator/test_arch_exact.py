"""Exact checks of the model architecture (estimator/arch.py) and the estimator's operation counts (estimator/ops.py)."""

from __future__ import annotations

import json

import pytest

from estimator.arch import (
    KINDS,
    OP_TYPES,
    PARAM_KINDS,
    Arch,
    ArchError,
    Layer,
    infer_shapes,
    paper_cnn,
    resolve_trainable,
)
from estimator.ops import (
    BYTES_PER_VALUE,
    MAC_TYPES,
    InferenceStats,
    LayerOps,
    OpCounts,
    _count_ops_cached,
    _inference_cached,
    count_ops,
    first_trained_index,
    foldable_batchnorms,
    inference_stats,
    zero_ops,
)

PAPER_LAYERS = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "gap", "dense1", "relu3", "dense2", "softmax"]
KNOWN = (
    "avgpool1d, avgpool2d, batchnorm, conv1d, conv2d, dense, dropout, flatten, gap1d, gap2d, gmp1d, gmp2d, "
    "maxpool1d, maxpool2d, relu, softmax"
)


@pytest.fixture(autouse=True)
def _fresh_counts():
    """Counts are cached per architecture: every test computes its own (not results left by another test)."""
    _count_ops_cached.cache_clear()
    _inference_cached.cache_clear()


def ops(**nonzero: int) -> dict[str, int]:
    """An op dict with every OP_TYPES key, zero except the given ones."""
    d = {k: 0 for k in OP_TYPES}
    d.update(nonzero)
    return d


def one(layer: Layer, input_shape: tuple[int, ...]) -> Arch:
    return Arch(input_shape, (layer,), name="m")


def refusal(input_shape: tuple[int, ...], *layers: Layer) -> str:
    with pytest.raises(ArchError) as e:
        Arch(input_shape, layers, name="m")
    return str(e.value)


# A small 1-D model exercising what the paper model does not: no bias, batch norm, max pool with an
# explicit stride, flatten, dropout and a last layer that is not a softmax.
#   in (6, 2) -> conv (4, 2) -> bn (4, 2) -> relu (4, 2) -> maxpool 2/1 (3, 2) -> flatten (6,) -> dropout (6,)
#   -> dense (3,)
SMALL = Arch(
    (6, 2),
    (
        Layer("conv1d", "conv", filters=2, kernel=3, use_bias=False),
        Layer("batchnorm", "bn"),
        Layer("relu", "relu"),
        Layer("maxpool1d", "pool", pool=2, stride=1),
        Layer("flatten", "flat"),
        Layer("dropout", "drop", rate=0.5),
        Layer("dense", "out", units=3),
    ),
    name="small",
)

# A small ST-zoo-like 2-D model: in (8, 3, 1) -> conv2d 4 k3 (6, 3, 4) -> avgpool2d 2 (3, 3, 4)
#   -> conv2d 2 k2 (2, 3, 2) -> gap2d (2,) -> dense 2 (2,) -> softmax (2,)
ZOO = Arch(
    (8, 3, 1),
    (
        Layer("conv2d", "ca", filters=4, kernel=3),
        Layer("avgpool2d", "pa", pool=2),
        Layer("conv2d", "cb", filters=2, kernel=2),
        Layer("gap2d", "gap"),
        Layer("dense", "fc", units=2),
        Layer("softmax", "sm"),
    ),
    name="zoo",
)


# ================================================================================================
# arch.py: Layer
# ================================================================================================


def test_layer_kinds_are_the_documented_ones():
    assert KINDS == frozenset(KNOWN.split(", "))
    assert PARAM_KINDS == frozenset({"conv1d", "conv2d", "dense", "batchnorm"})


def test_layer_unknown_kind_is_refused_naming_the_layer_and_the_known_kinds():
    with pytest.raises(ArchError) as e:
        Layer("conv3d", "c")
    assert str(e.value) == f"layer 'c': unknown kind 'conv3d' (known: {KNOWN})"


def test_layer_defaults():
    layer = Layer("relu", "r")
    assert (layer.filters, layer.kernel, layer.units, layer.pool, layer.stride) == (0, 0, 0, 0, 0)
    assert layer.use_bias is True
    assert layer.rate == 0.0
    assert layer.epsilon == 1e-3


def test_layer_has_params_only_for_conv_dense_and_batchnorm():
    with_params = sorted(k for k in KINDS if Layer(k, "x").has_params)
    assert with_params == ["batchnorm", "conv1d", "conv2d", "dense"]


def test_layer_to_dict_keeps_kind_name_and_only_non_default_settings():
    assert Layer("relu", "r").to_dict() == {"kind": "relu", "name": "r"}
    d = Layer("conv1d", "c", filters=32, kernel=3).to_dict()
    assert list(d.items()) == [("kind", "conv1d"), ("name", "c"), ("filters", 32), ("kernel", 3)]
    d = Layer("dense", "d", units=5, use_bias=False).to_dict()
    assert list(d.items()) == [("kind", "dense"), ("name", "d"), ("units", 5), ("use_bias", False)]
    d = Layer("avgpool1d", "p", pool=3, stride=2).to_dict()
    assert list(d.items()) == [("kind", "avgpool1d"), ("name", "p"), ("pool", 3), ("stride", 2)]
    assert Layer("dropout", "x", rate=0.25).to_dict() == {"kind": "dropout", "name": "x", "rate": 0.25}
    assert Layer("batchnorm", "b", epsilon=1e-5).to_dict() == {"kind": "batchnorm", "name": "b", "epsilon": 1e-5}
    assert Layer("batchnorm", "b", epsilon=1e-3).to_dict() == {"kind": "batchnorm", "name": "b"}


# ================================================================================================
# arch.py: Arch
# ================================================================================================


def test_arch_defaults():
    a = Arch((4,), (Layer("dense", "d", units=2),))
    assert (a.classes, a.name, a.preprocessing, a.meta) == ((), "model", "none", {})


def test_arch_meta_is_ignored_by_equality_and_hash():
    layers = (Layer("dense", "d", units=2),)
    a = Arch((4,), layers, meta={"source": "a.h5"})
    b = Arch((4,), layers, meta={"source": "b.h5"})
    assert a == b
    assert hash(a) == hash(b)


def test_arch_duplicate_layer_names_are_refused():
    msg = refusal((4,), Layer("dense", "d", units=3), Layer("dense", "d", units=2))
    assert msg == "duplicate layer names in 'm'"


@pytest.mark.parametrize(
    "shape",
    [(), (20, 0), (-1, 3), (20.5, 3), ("20", 3), (True, 3), (float("inf"), 3), (float("nan"), 3), (None,), 20, "20"],
)
def test_arch_invalid_input_shape_is_refused(shape):
    assert refusal(shape) == f"input shape {shape!r} is not valid: sizes must be whole numbers >= 1"


def test_arch_input_sizes_are_whole_numbers():
    """A shape read as floats with whole values (e.g. 20.0 from JSON), or as a list, is kept as integers."""
    assert Arch((1,), ()).shapes() == []  # 1 is the smallest valid size
    a = Arch((20.0, 3.0), (Layer("conv1d", "c", filters=2, kernel=3),))  # type: ignore[arg-type]
    assert a.input_shape == (20, 3) and all(type(x) is int for x in a.input_shape)
    assert a.shapes() == [(18, 2)]
    assert Arch([20, 3], ()).input_shape == (20, 3)  # type: ignore[arg-type]
    assert Arch((1.0,), ()).input_shape == (1,)  # type: ignore[arg-type]
    assert refusal((0.0, 3)) == "input shape (0.0, 3) is not valid: sizes must be whole numbers >= 1"  # type: ignore[arg-type]
    assert infer_shapes(a) == [(18, 2)]
    assert all(type(x) is int for x in a.shapes()[0])


def test_paper_cnn_shapes_by_hand():
    """T = 20: conv 20-3+1 = 18; pool 18/2 = 9; conv 9-3+1 = 7; pool (7-2)//2+1 = 3; GAP -> 64 channels."""
    a = paper_cnn()
    assert a.shapes() == [(18, 32), (18, 32), (9, 32), (7, 64), (7, 64), (3, 64), (64,), (50,), (50,), (6,), (6,)]
    assert a.input_shapes() == [
        (20, 3),
        (18, 32),
        (18, 32),
        (9, 32),
        (7, 64),
        (7, 64),
        (3, 64),
        (64,),
        (50,),
        (50,),
        (6,),
    ]
    assert a.input_size == 20
    assert a.n_classes == 6


def test_paper_cnn_parameter_count_by_hand():
    """conv1 3*3*32 + 32 = 320; conv2 3*32*64 + 64 = 6208; dense1 64*50 + 50 = 3250; dense2 50*6 + 6 = 306:
    10,084 (the paper: 'around 10000')."""
    a = paper_cnn()
    assert a.param_shapes() == {
        "conv1": [(3, 3, 32), (32,)],
        "conv2": [(3, 32, 64), (64,)],
        "dense1": [(64, 50), (50,)],
        "dense2": [(50, 6), (6,)],
    }
    assert list(a.param_shapes()) == ["conv1", "conv2", "dense1", "dense2"]
    assert a.params == 10084
    assert a.param_count() == 10084
    assert a.param_count(["dense1", "dense2"]) == 3556  # 3250 + 306
    assert a.param_count(["conv1"]) == 320
    assert a.param_count([]) == 0
    assert a.param_count(["relu1"]) == 0


def test_paper_cnn_defaults_name_and_layers():
    a = paper_cnn()
    assert a.name == "paper_cnn_T20"
    assert a.input_shape == (20, 3)
    assert a.classes == ()
    assert [l.to_dict() for l in a.layers] == [
        {"kind": "conv1d", "name": "conv1", "filters": 32, "kernel": 3},
        {"kind": "relu", "name": "relu1"},
        {"kind": "avgpool1d", "name": "pool1", "pool": 2},
        {"kind": "conv1d", "name": "conv2", "filters": 64, "kernel": 3},
        {"kind": "relu", "name": "relu2"},
        {"kind": "avgpool1d", "name": "pool2", "pool": 2},
        {"kind": "gap1d", "name": "gap"},
        {"kind": "dense", "name": "dense1", "units": 50},
        {"kind": "relu", "name": "relu3"},
        {"kind": "dense", "name": "dense2", "units": 6},
        {"kind": "softmax", "name": "softmax"},
    ]


def test_paper_cnn_other_window_and_class_count():
    """T = 40: conv 38, pool 19, conv 17, pool (17-2)//2+1 = 8; the parameter count does not depend on T (GAP).
    4 classes: dense2 50*4 + 4 = 204 instead of 306 -> 10,084 - 102 = 9,982."""
    a = paper_cnn(40)
    assert a.name == "paper_cnn_T40"
    assert a.shapes()[:6] == [(38, 32), (38, 32), (19, 32), (17, 64), (17, 64), (8, 64)]
    assert a.params == 10084
    b = paper_cnn(20, 4)
    assert b.n_classes == 4
    assert b.params == 9982


def test_paper_cnn_class_names_set_the_class_count():
    a = paper_cnn(20, 6, classes=["walk", "run", "sit"])
    assert a.classes == ("walk", "run", "sit")
    assert a.n_classes == 3
    assert a.layer("dense2").units == 3


def test_arch_layer_by_name():
    a = paper_cnn()
    assert a.layer("dense1") == Layer("dense", "dense1", units=50)
    with pytest.raises(ArchError) as e:
        a.layer("dense3")
    assert str(e.value) == "no layer named 'dense3' in 'paper_cnn_T20'"


def test_param_count_trainable_only_leaves_out_batchnorm_statistics():
    """bn on 2 channels: gamma, beta, mean, variance = 8 values, 4 of them trained."""
    assert SMALL.param_count(["bn"]) == 8
    assert SMALL.param_count(["bn"], trainable_only=True) == 4
    # conv 3*2*2 = 12 (no bias), dense 6*3 + 3 = 21: not touched by trainable_only
    assert SMALL.param_count(["conv", "out"], trainable_only=True) == 33
    assert SMALL.param_count(trainable_only=True) == 37
    assert SMALL.params == 41


def test_param_shapes_without_bias_batchnorm_and_conv2d():
    assert SMALL.param_shapes() == {"conv": [(3, 2, 2)], "bn": [(2,), (2,), (2,), (2,)], "out": [(6, 3), (3,)]}
    assert ZOO.param_shapes() == {
        "ca": [(3, 1, 1, 4), (4,)],
        "cb": [(2, 1, 4, 2), (2,)],
        "fc": [(2, 2), (2,)],
    }
    a = Arch((8, 3, 1), (Layer("conv2d", "c", filters=4, kernel=3, use_bias=False),))
    assert a.param_shapes() == {"c": [(3, 1, 1, 4)]}
    a = Arch((5,), (Layer("dense", "d", units=2, use_bias=False),))
    assert a.param_shapes() == {"d": [(5, 2)]}
    assert a.params == 10


def test_with_input_size_keeps_everything_but_the_window():
    a = Arch((20, 3), paper_cnn().layers, ("a", "b", "c", "d", "e", "f"), "mine", "gravity_rot_sup", {"k": 1})
    b = a.with_input_size(40)
    assert b.input_shape == (40, 3)
    assert b.layers == a.layers
    assert (b.classes, b.name, b.preprocessing, b.meta) == (
        ("a", "b", "c", "d", "e", "f"),
        "mine",
        "gravity_rot_sup",
        {"k": 1},
    )
    b.meta["k"] = 2  # a copy: the original's meta is not changed through the new one
    assert a.meta == {"k": 1}
    z = ZOO.with_input_size(9)
    assert z.input_shape == (9, 3, 1)
    assert z.shapes()[0] == (7, 3, 4)


def test_with_input_size_too_short_is_refused():
    """T = 4: conv1 2, pool1 1, conv2 (kernel 3) does not fit."""
    with pytest.raises(ArchError) as e:
        paper_cnn().with_input_size(4)
    assert str(e.value) == "layer 'conv2': kernel 3 does not fit input length 1"


def test_to_dict_and_to_json_exact():
    a = Arch(
        (4,),
        (Layer("dense", "d", units=2), Layer("softmax", "s")),
        ("a", "b"),
        "tiny",
        "gravity_rot_sup",
        {"src": "x.h5"},
    )
    assert a.to_dict() == {
        "name": "tiny",
        "input_shape": [4],
        "classes": ["a", "b"],
        "preprocessing": "gravity_rot_sup",
        "layers": [{"kind": "dense", "name": "d", "units": 2}, {"kind": "softmax", "name": "s"}],
        "meta": {"src": "x.h5"},
    }
    assert a.to_json() == (
        '{"classes": ["a", "b"], "input_shape": [4], "layers": [{"kind": "dense", "name": "d", "units": 2}, '
        '{"kind": "softmax", "name": "s"}], "meta": {"src": "x.h5"}, "name": "tiny", "preprocessing": "gravity_rot_sup"}'
    )


def test_from_json_round_trip_keeps_every_field():
    a = Arch((6, 2), SMALL.layers, ("x", "y", "z"), "small", "gravity_rot_sup", {"k": [1, 2]})
    b = Arch.from_json(a.to_json())
    assert b == a
    assert b.meta == {"k": [1, 2]}
    assert Arch.from_dict(a.to_dict()) == a
    assert Arch.from_dict(ZOO.to_dict()) == ZOO


def test_from_dict_defaults_for_missing_optional_keys():
    a = Arch.from_dict({"input_shape": [4.0], "layers": [{"kind": "dense", "name": "d", "units": 2}]})
    assert a.input_shape == (4,)
    assert type(a.input_shape[0]) is int
    assert (a.classes, a.name, a.preprocessing, a.meta) == ((), "model", "none", {})
    b = Arch.from_dict({"input_shape": [4], "layers": [], "name": 7, "preprocessing": 0, "classes": ["a"]})
    assert (b.name, b.preprocessing, b.classes) == ("7", "0", ("a",))


@pytest.mark.parametrize(
    ("d", "message"),
    [
        ({"input_shape": [4]}, "malformed architecture description: no 'layers'"),
        ({"layers": []}, "malformed architecture description: no 'input_shape'"),
        ({}, "malformed architecture description: no 'input_shape' and no 'layers'"),
        (
            {"input_shape": [4], "layers": [{"kind": "relu", "name": "r", "size": 2, "Act": 1}]},
            "malformed architecture description: layer #1 ('r'): unknown key 'Act', 'size' (known: kind, name, "
            "filters, kernel, units, pool, stride, use_bias, rate, epsilon)",
        ),
        (
            {"input_shape": [4], "layers": [{"kind": "relu", "name": "a"}, {"name": "r"}]},
            "malformed architecture description: layer #2 has no 'kind'",
        ),
        (
            {"input_shape": [4], "layers": [{"kind": "relu"}]},
            "malformed architecture description: layer #1 has no 'name'",
        ),
        (
            {"input_shape": [4], "layers": [{}]},
            "malformed architecture description: layer #1 has no 'kind' and no 'name'",
        ),
        (
            {"input_shape": [4], "layers": [3]},
            "malformed architecture description: layer #1 must be an object, got the number 3",
        ),
        (
            {"input_shape": [4], "layers": [None]},
            "malformed architecture description: layer #1 must be an object, got null",
        ),
        (
            {"input_shape": [4], "layers": 5},
            "malformed architecture description: 'layers' must be a list, got the number 5",
        ),
        (
            {"input_shape": [4], "layers": {}},
            "malformed architecture description: 'layers' must be a list, got an object",
        ),
        (
            {"input_shape": [4], "layers": "ab"},
            "malformed architecture description: 'layers' must be a list, got a string",
        ),
        (
            {"input_shape": [4], "layers": [], "classes": 5},
            "malformed architecture description: 'classes' must be a list, got the number 5",
        ),
        (
            {"input_shape": [4], "layers": [], "classes": "ab"},
            "malformed architecture description: 'classes' must be a list, got a string",
        ),
        (
            {"input_shape": [4], "layers": [], "meta": "ab"},
            "malformed architecture description: 'meta' must be an object, got a string",
        ),
        (
            {"input_shape": [4], "layers": [], "meta": [1]},
            "malformed architecture description: 'meta' must be an object, got a list",
        ),
        (
            {"input_shape": [4], "layers": [], "meta": True},
            "malformed architecture description: 'meta' must be an object, got true/false",
        ),
        (
            {"input_shape": [4], "layers": [], "meta": 2.5},
            "malformed architecture description: 'meta' must be an object, got the number 2.5",
        ),
        ({"input_shape": 4, "layers": []}, "input shape 4 is not valid: sizes must be whole numbers >= 1"),
        ([1, 2], "malformed architecture description: a JSON object was expected, got a list"),
        (None, "malformed architecture description: a JSON object was expected, got null"),
        (7, "malformed architecture description: a JSON object was expected, got the number 7"),
        ((1,), "malformed architecture description: a JSON object was expected, got a tuple"),
        (
            {"input_shape": [4], "layers": [{"kind": ["relu"], "name": "r"}]},
            f"layer 'r': unknown kind ['relu'] (known: {KNOWN})",
        ),
        ({"input_shape": [4], "layers": [{"kind": "relu", "name": 7}]}, "a layer's name must be a string, got 7"),
    ],
)
def test_from_dict_malformed_is_an_arch_error(d, message):
    with pytest.raises(ArchError) as e:
        Arch.from_dict(d)
    assert str(e.value) == message


def test_from_dict_invalid_architecture_keeps_its_own_message():
    """An ArchError from the checks is passed on as it is (not wrapped as 'malformed')."""
    d = {"input_shape": [4], "layers": [{"kind": "dense", "name": "d", "units": 0}]}
    with pytest.raises(ArchError) as e:
        Arch.from_dict(d)
    assert str(e.value) == "layer 'd': units must be >= 1"
    with pytest.raises(ArchError) as e:
        Arch.from_dict({"input_shape": [4], "layers": [{"kind": "pool", "name": "p"}]})
    assert str(e.value) == f"layer 'p': unknown kind 'pool' (known: {KNOWN})"


@pytest.mark.parametrize("key", ["rate", "epsilon"])
def test_a_layer_number_too_large_for_a_float_is_not_finite(key):
    """10**400 in a (hostile) file: refused by the layer's own check (was: Python's "int too large to convert
    to float")."""
    with pytest.raises(ArchError) as e:
        Arch.from_dict({"input_shape": [4], "layers": [{"kind": "dropout", "name": "d", key: 10**400}]})
    assert str(e.value) == f"layer 'd': {key} must be a finite number, got {10**400!r}"
    assert Layer("dropout", "d", rate=10**300 // 10**300).rate == 1  # a large but representable integer is kept


def test_from_json_not_json_is_an_arch_error():
    with pytest.raises(ArchError) as e:
        Arch.from_json("{not json")
    assert (
        str(e.value)
        == "architecture is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    )
    with pytest.raises(ArchError) as e:
        Arch.from_json("")
    assert str(e.value) == "architecture is not valid JSON: Expecting value: line 1 column 1 (char 0)"


@pytest.mark.parametrize(
    ("text", "shape"),
    [("[Infinity, 3]", "(inf, 3)"), ("[NaN, 3]", "(nan, 3)"), ('["x", 3]', "('x', 3)"), ("[20.5, 3]", "(20.5, 3)")],
)
def test_from_json_a_size_that_is_not_whole_is_an_arch_error(text, shape):
    with pytest.raises(ArchError) as e:
        Arch.from_json('{"input_shape": ' + text + ', "layers": []}')
    assert str(e.value) == f"input shape {shape} is not valid: sizes must be whole numbers >= 1"


def test_from_json_too_deeply_nested_is_an_arch_error():
    """A hostile file nesting arrays beyond the interpreter's recursion limit (was: a RecursionError)."""
    with pytest.raises(ArchError) as e:
        Arch.from_json("[" * 100_000)
    assert str(e.value) == "architecture JSON is nested too deeply"


def test_from_json_valid_json_but_no_object_is_an_arch_error():
    with pytest.raises(ArchError) as e:
        Arch.from_json('"abc"')
    assert str(e.value) == "malformed architecture description: a JSON object was expected, got a string"


# ================================================================================================
# arch.py: shape inference and its refusals
# ================================================================================================


def test_conv1d_shape_and_fit():
    assert one(Layer("conv1d", "c", filters=5, kernel=3), (10, 2)).shapes() == [(8, 5)]
    assert one(Layer("conv1d", "c", filters=1, kernel=10), (10, 2)).shapes() == [(1, 1)]  # kernel = length
    assert one(Layer("conv1d", "c", filters=1, kernel=1), (10, 2)).shapes() == [(10, 1)]
    assert (
        refusal((10, 2), Layer("conv1d", "c", filters=5, kernel=11))
        == "layer 'c': kernel 11 does not fit input length 10"
    )
    assert (
        refusal((10, 2), Layer("conv1d", "c", filters=5, kernel=0))
        == "layer 'c': kernel 0 does not fit input length 10"
    )
    assert refusal((10, 2), Layer("conv1d", "c", filters=0, kernel=3)) == "layer 'c': filters must be >= 1"


def test_conv2d_shape_and_fit():
    assert one(Layer("conv2d", "c", filters=4, kernel=3), (8, 3, 1)).shapes() == [(6, 3, 4)]
    assert one(Layer("conv2d", "c", filters=1, kernel=8), (8, 3, 2)).shapes() == [(1, 3, 1)]
    assert one(Layer("conv2d", "c", filters=1, kernel=1), (8, 3, 2)).shapes() == [(8, 3, 1)]
    assert (
        refusal((4, 3, 1), Layer("conv2d", "c", filters=4, kernel=5))
        == "layer 'c': kernel (5,1) does not fit input length 4"
    )
    assert (
        refusal((4, 3, 1), Layer("conv2d", "c", filters=4, kernel=0))
        == "layer 'c': kernel (0,1) does not fit input length 4"
    )
    assert refusal((4, 3, 1), Layer("conv2d", "c", filters=0, kernel=2)) == "layer 'c': filters must be >= 1"


def test_dense_shape_and_units():
    assert one(Layer("dense", "d", units=1), (7,)).shapes() == [(1,)]
    assert refusal((7,), Layer("dense", "d", units=0)) == "layer 'd': units must be >= 1"


@pytest.mark.parametrize(
    ("layer", "shape", "message"),
    [
        (
            Layer("conv1d", "c", filters=2, kernel=2),
            (8, 3, 1),
            "layer 'c' (conv1d) needs a rank-2 input, got shape (8, 3, 1)",
        ),
        (
            Layer("conv2d", "c", filters=2, kernel=2),
            (8, 3),
            "layer 'c' (conv2d) needs a rank-3 input, got shape (8, 3)",
        ),
        (Layer("dense", "d", units=2), (8, 3), "layer 'd' (dense) needs a rank-1 input, got shape (8, 3)"),
        (Layer("avgpool1d", "p", pool=2), (8, 3, 1), "layer 'p' (avgpool1d) needs a rank-2 input, got shape (8, 3, 1)"),
        (Layer("maxpool1d", "p", pool=2), (8,), "layer 'p' (maxpool1d) needs a rank-2 input, got shape (8,)"),
        (Layer("avgpool2d", "p", pool=2), (8, 3), "layer 'p' (avgpool2d) needs a rank-3 input, got shape (8, 3)"),
        (Layer("maxpool2d", "p", pool=2), (8, 3), "layer 'p' (maxpool2d) needs a rank-3 input, got shape (8, 3)"),
        (Layer("gap1d", "g"), (8, 3, 1), "layer 'g' (gap1d) needs a rank-2 input, got shape (8, 3, 1)"),
        (Layer("gmp1d", "g"), (8,), "layer 'g' (gmp1d) needs a rank-2 input, got shape (8,)"),
        (Layer("gap2d", "g"), (8, 3), "layer 'g' (gap2d) needs a rank-3 input, got shape (8, 3)"),
        (Layer("gmp2d", "g"), (8, 3), "layer 'g' (gmp2d) needs a rank-3 input, got shape (8, 3)"),
    ],
)
def test_layer_on_an_input_of_the_wrong_rank_is_refused(layer, shape, message):
    with pytest.raises(ArchError) as e:
        Arch(shape, (layer,))
    assert str(e.value) == message


def test_pool_shapes():
    """Length (L - pool) // stride + 1, stride = pool by default; the other axes are kept."""
    assert one(Layer("avgpool1d", "p", pool=2), (9, 4)).shapes() == [(4, 4)]
    assert one(Layer("maxpool1d", "p", pool=3, stride=2), (10, 4)).shapes() == [(4, 4)]  # (10-3)//2+1
    assert one(Layer("maxpool1d", "p", pool=3, stride=1), (10, 4)).shapes() == [(8, 4)]
    assert one(Layer("avgpool1d", "p", pool=1), (5, 2)).shapes() == [(5, 2)]
    assert one(Layer("avgpool1d", "p", pool=5), (5, 2)).shapes() == [(1, 2)]  # pool = length
    assert one(Layer("avgpool2d", "p", pool=2), (7, 3, 4)).shapes() == [(3, 3, 4)]
    assert one(Layer("maxpool2d", "p", pool=2, stride=1), (7, 3, 4)).shapes() == [(6, 3, 4)]


def test_pool_that_does_not_fit_is_refused():
    assert refusal((5, 2), Layer("avgpool1d", "p", pool=6)) == "layer 'p': pool 6 does not fit input length 5"
    assert refusal((5, 2), Layer("maxpool1d", "p", pool=0)) == "layer 'p': pool 0 does not fit input length 5"
    assert refusal((5, 3, 1), Layer("maxpool2d", "p", pool=6)) == "layer 'p': pool 6 does not fit input length 5"


def test_pool_with_a_negative_stride_is_refused():
    """A damaged file's negative stride gave a negative length (-1 for pool 2 on 4), a shape nothing can hold."""
    assert refusal((4, 2), Layer("avgpool1d", "p", pool=2, stride=-1)) == "layer 'p': stride -1 is negative"
    assert refusal((4, 3, 1), Layer("maxpool2d", "p", pool=2, stride=-3)) == "layer 'p': stride -3 is negative"


def test_global_pools_flatten_and_shape_keeping_layers():
    assert one(Layer("gap1d", "g"), (9, 4)).shapes() == [(4,)]
    assert one(Layer("gmp1d", "g"), (9, 4)).shapes() == [(4,)]
    assert one(Layer("gap2d", "g"), (9, 3, 5)).shapes() == [(5,)]
    assert one(Layer("gmp2d", "g"), (9, 3, 5)).shapes() == [(5,)]
    assert one(Layer("flatten", "f"), (9, 3, 5)).shapes() == [(135,)]
    assert one(Layer("flatten", "f"), (7,)).shapes() == [(7,)]
    for kind in ("relu", "softmax", "batchnorm", "dropout"):
        assert one(Layer(kind, "x"), (9, 3, 5)).shapes() == [(9, 3, 5)]


def test_small_models_shapes_by_hand():
    assert SMALL.shapes() == [(4, 2), (4, 2), (4, 2), (3, 2), (6,), (6,), (3,)]
    assert SMALL.n_classes == 3
    assert ZOO.shapes() == [(6, 3, 4), (3, 3, 4), (2, 3, 2), (2,), (2,), (2,)]
    assert ZOO.input_shapes() == [(8, 3, 1), (6, 3, 4), (3, 3, 4), (2, 3, 2), (2,), (2,)]


# ================================================================================================
# arch.py: trainable layers
# ================================================================================================


def test_trainable_full_is_every_layer_with_parameters():
    assert paper_cnn().trainable("full") == frozenset({"conv1", "conv2", "dense1", "dense2"})
    assert SMALL.trainable(" FULL ") == frozenset({"conv", "bn", "out"})


def test_trainable_tl_is_the_last_two_dense_layers():
    assert paper_cnn().trainable("tl") == frozenset({"dense1", "dense2"})
    assert paper_cnn().trainable("TL") == frozenset({"dense1", "dense2"})
    three = Arch((4,), tuple(Layer("dense", f"d{i}", units=3) for i in range(3)), name="m")
    assert three.trainable("tl") == frozenset({"d1", "d2"})
    assert SMALL.trainable("tl") == frozenset({"out"})  # a single Dense layer


def test_trainable_last_is_the_last_dense_layer():
    assert paper_cnn().trainable("last") == frozenset({"dense2"})
    assert paper_cnn().trainable(" Last") == frozenset({"dense2"})


def test_trainable_tl_or_last_without_dense_is_refused():
    a = Arch((8, 2), (Layer("conv1d", "c", filters=2, kernel=3),), name="convs")
    with pytest.raises(ArchError) as e:
        a.trainable("tl")
    assert str(e.value) == "'convs' has no Dense layer to train with 'tl'"
    with pytest.raises(ArchError) as e:
        a.trainable("last")
    assert str(e.value) == "'convs' has no Dense layer to train with 'last'"


def test_trainable_none_or_empty_is_nothing():
    assert paper_cnn().trainable("none") == frozenset()
    assert paper_cnn().trainable(" None ") == frozenset()
    assert paper_cnn().trainable("") == frozenset()
    assert paper_cnn().trainable([]) == frozenset()


def test_trainable_layer_names():
    a = paper_cnn()
    assert a.trainable("conv2, dense2") == frozenset({"conv2", "dense2"})
    assert a.trainable("conv1,,dense1, ") == frozenset({"conv1", "dense1"})
    assert a.trainable(["conv2"]) == frozenset({"conv2"})
    assert resolve_trainable(a, ("dense1", "conv1")) == frozenset({"dense1", "conv1"})


def test_trainable_names_keep_their_case():
    a = Arch((4,), (Layer("dense", "Out", units=2),), name="m")
    assert a.trainable("Out") == frozenset({"Out"})
    with pytest.raises(ArchError) as e:
        a.trainable("out")
    assert str(e.value) == "trainable layer 'out' is not in 'm' (layers: Out)"


def test_trainable_unknown_layer_is_refused_listing_the_layers():
    with pytest.raises(ArchError) as e:
        paper_cnn().trainable("dense1, dense9")
    assert (
        str(e.value) == "trainable layer 'dense9' is not in 'paper_cnn_T20' (layers: " + ", ".join(PAPER_LAYERS) + ")"
    )
    with pytest.raises(ArchError) as e:
        paper_cnn().trainable(["conv"])
    assert str(e.value) == "trainable layer 'conv' is not in 'paper_cnn_T20' (layers: " + ", ".join(PAPER_LAYERS) + ")"


def test_trainable_layer_without_parameters_is_refused():
    with pytest.raises(ArchError) as e:
        paper_cnn().trainable("dense2,relu1")
    assert str(e.value) == "layer 'relu1' (relu) has no parameters to train"
    with pytest.raises(ArchError) as e:
        paper_cnn().trainable(["gap"])
    assert str(e.value) == "layer 'gap' (gap1d) has no parameters to train"


def test_op_types():
    assert OP_TYPES == ("conv_fwd", "conv_dw", "conv_dx", "dense_fwd", "dense_dw", "dense_dx", "elementwise")


# ================================================================================================
# ops.py
# ================================================================================================


def test_mac_types_and_value_size():
    assert MAC_TYPES == ("conv_fwd", "conv_dw", "conv_dx", "dense_fwd", "dense_dw", "dense_dx")
    assert BYTES_PER_VALUE == 4


def test_zero_ops_is_every_op_type_at_zero():
    z = zero_ops()
    assert list(z.items()) == [(k, 0) for k in OP_TYPES]
    z["conv_fwd"] = 1
    assert zero_ops()["conv_fwd"] == 0  # a fresh dict each time


def test_first_trained_index():
    a = paper_cnn()
    assert first_trained_index(a, []) is None
    assert first_trained_index(a, ["dense2", "dense1"]) == 7
    assert first_trained_index(a, ["conv1"]) == 0
    assert first_trained_index(a, {"conv2", "dense2"}) == 3


# Paper CNN, T = 20, 6 classes, forward per sample (n_out = elements of a layer's output):
#   conv1  out 18*32 = 576:  MAC 576*3*3 = 5184;  bias 576
#   relu1  576;  pool1 out 9*32 = 288, read 288*2 = 576
#   conv2  out 7*64 = 448:   MAC 448*3*32 = 43008; bias 448
#   relu2  448;  pool2 out 3*64 = 192, read 192*2 = 384;  gap in 3*64 = 192
#   dense1 64*50 = 3200, bias 50;  relu3 50;  dense2 50*6 = 300, bias 6;  softmax 6
#   conv_fwd 5184 + 43008 = 48192; dense_fwd 3500;
#   elementwise 576+576+576+448+448+384+192+50+50+6+6 = 3312
PAPER_FWD = ops(conv_fwd=48192, dense_fwd=3500, elementwise=3312)


def test_count_ops_paper_forward_by_hand():
    c = count_ops(paper_cnn(), "tl")
    assert c.forward == PAPER_FWD
    assert [l.forward for l in c.layers] == [
        ops(conv_fwd=5184, elementwise=576),
        ops(elementwise=576),
        ops(elementwise=576),
        ops(conv_fwd=43008, elementwise=448),
        ops(elementwise=448),
        ops(elementwise=384),
        ops(elementwise=192),
        ops(dense_fwd=3200, elementwise=50),
        ops(elementwise=50),
        ops(dense_fwd=300, elementwise=6),
        ops(elementwise=6),
    ]
    assert [(l.name, l.kind) for l in c.layers] == [(l.name, l.kind) for l in paper_cnn().layers]


def test_count_ops_paper_tl_backward_by_hand():
    """TL: dense1 (i0) dW 3200 + bias 50, no dx; relu3 50; dense2 dW 300 + bias 6 + dx 300; softmax error 6.
    Update: 3250 + 306 = 3556 parameters."""
    c = count_ops(paper_cnn(), "tl")
    assert c.trainable == frozenset({"dense1", "dense2"})
    assert c.backward == ops(dense_dw=3500, dense_dx=300, elementwise=112)
    assert [l.backward for l in c.layers] == [ops()] * 7 + [
        ops(dense_dw=3200, elementwise=50),
        ops(elementwise=50),
        ops(dense_dw=300, dense_dx=300, elementwise=6),
        ops(elementwise=6),
    ]
    assert c.update == ops(elementwise=3556)
    # per sample: forward + backward
    assert c.per_sample == ops(conv_fwd=48192, dense_fwd=3500, dense_dw=3500, dense_dx=300, elementwise=3424)
    assert c.macs_per_sample == 55492  # 48192 + 3500 + 3500 + 300


def test_count_ops_paper_full_backward_by_hand():
    """Full: conv1 (i0) dW 576*9 = 5184 + bias 576, no dx; relu1 576; pool1 576; conv2 dW 448*96 = 43008
    + bias 448 + dx 9*64*3*32 = 55296; relu2 448; pool2 384; gap 192; dense1 dW 3200 + bias 50 + dx 3200;
    relu3 50; dense2 dW 300 + bias 6 + dx 300; softmax 6.  Update: all 10,084 parameters."""
    c = count_ops(paper_cnn(), "full")
    assert [l.backward for l in c.layers] == [
        ops(conv_dw=5184, elementwise=576),
        ops(elementwise=576),
        ops(elementwise=576),
        ops(conv_dw=43008, conv_dx=55296, elementwise=448),
        ops(elementwise=448),
        ops(elementwise=384),
        ops(elementwise=192),
        ops(dense_dw=3200, dense_dx=3200, elementwise=50),
        ops(elementwise=50),
        ops(dense_dw=300, dense_dx=300, elementwise=6),
        ops(elementwise=6),
    ]
    assert c.backward == ops(conv_dw=48192, conv_dx=55296, dense_dw=3500, dense_dx=3500, elementwise=3312)
    assert c.update == ops(elementwise=10084)


def test_count_ops_nothing_trained_runs_no_backward_and_no_update():
    for mode in ("none", [], frozenset()):
        c = count_ops(paper_cnn(), mode)
        assert c.backward == ops()
        assert c.update == ops()
        assert c.forward == PAPER_FWD
        assert c.trainable == frozenset()


def test_count_ops_default_mode_is_tl():
    assert count_ops(paper_cnn()).trainable == frozenset({"dense1", "dense2"})
    assert count_ops(paper_cnn()).update == ops(elementwise=3556)


def test_count_ops_names_as_string_list_or_set_agree():
    a = paper_cnn()
    s = count_ops(a, "dense2")
    assert count_ops(a, ["dense2"]) == s
    assert count_ops(a, frozenset({"dense2"})) == s
    # last only: dense2 dW 300 + bias 6, no dx (it is i0); softmax 6
    assert s.backward == ops(dense_dw=300, elementwise=12)
    assert s.update == ops(elementwise=306)


def test_count_ops_refuses_an_unknown_layer_name():
    with pytest.raises(ArchError) as e:
        count_ops(paper_cnn(), "dense3")
    assert (
        str(e.value) == "trainable layer 'dense3' is not in 'paper_cnn_T20' (layers: " + ", ".join(PAPER_LAYERS) + ")"
    )


# SMALL forward per sample:
#   conv out 4*2 = 8: MAC 8*3*2 = 48, no bias;  bn 8;  relu 8;  maxpool out 3*2 = 6, read 6*2 = 12
#   flatten 0;  dropout 0;  dense 6*3 = 18, bias 3
#   conv_fwd 48, dense_fwd 18, elementwise 8+8+12+3 = 31
SMALL_FWD = [
    ops(conv_fwd=48),
    ops(elementwise=8),
    ops(elementwise=8),
    ops(elementwise=12),
    ops(),
    ops(),
    ops(dense_fwd=18, elementwise=3),
]


def test_count_ops_small_full_by_hand():
    """conv (i0): dW 48, no bias, no dx; bn trained: dgamma/dbeta 2*8 + dx 8 = 24; relu 8; pool 12;
    flatten, dropout 0; dense (last, no softmax): loss error 3 + dW 18 + bias 3 + dx 18.
    Update: conv 12 + bn gamma/beta 4 + dense 21 = 37."""
    c = count_ops(SMALL, "full")
    assert [l.forward for l in c.layers] == SMALL_FWD
    assert c.forward == ops(conv_fwd=48, dense_fwd=18, elementwise=31)
    assert [l.backward for l in c.layers] == [
        ops(conv_dw=48),
        ops(elementwise=24),
        ops(elementwise=8),
        ops(elementwise=12),
        ops(),
        ops(),
        ops(dense_dw=18, dense_dx=18, elementwise=6),
    ]
    assert c.backward == ops(conv_dw=48, dense_dw=18, dense_dx=18, elementwise=50)
    assert c.update == ops(elementwise=37)


def test_count_ops_small_frozen_layers_after_the_first_trained_one():
    """Only conv trained: bn (frozen) dx 8; relu 8; pool 12; dense (frozen, last) loss error 3 + dx 18.
    Update: 12."""
    c = count_ops(SMALL, ["conv"])
    assert [l.backward for l in c.layers] == [
        ops(conv_dw=48),
        ops(elementwise=8),
        ops(elementwise=8),
        ops(elementwise=12),
        ops(),
        ops(),
        ops(dense_dx=18, elementwise=3),
    ]
    assert c.update == ops(elementwise=12)


def test_count_ops_small_batchnorm_as_first_trained_layer():
    """bn (i0) trained: 2*8 = 16, no dx; relu 8; pool 12; dense (frozen, last): error 3 + dx 18. Update 4."""
    c = count_ops(SMALL, ["bn"])
    assert [l.backward for l in c.layers] == [
        ops(),
        ops(elementwise=16),
        ops(elementwise=8),
        ops(elementwise=12),
        ops(),
        ops(),
        ops(dense_dx=18, elementwise=3),
    ]
    assert c.update == ops(elementwise=4)


def test_count_ops_small_last_layer_only():
    """dense (i0, last, no softmax): loss error 3 + dW 18 + bias 3, no dx.  Update 21."""
    c = count_ops(SMALL, "tl")
    assert c.backward == ops(dense_dw=18, elementwise=6)
    assert c.update == ops(elementwise=21)


def test_count_ops_conv_with_bias_dense_without_bias():
    """in (5, 2) -> conv 3 filters k2 with bias (4, 3) -> flatten (12,) -> dense 2 no bias (last).
    Forward: conv 12*2*2 = 48 + bias 12; dense 12*2 = 24, no bias.
    Full backward: conv dW 48 + bias 12; dense (last) error 2 + dW 24 + dx 24, no bias gradient."""
    a = Arch(
        (5, 2),
        (
            Layer("conv1d", "c", filters=3, kernel=2),
            Layer("flatten", "f"),
            Layer("dense", "d", units=2, use_bias=False),
        ),
    )
    c = count_ops(a, "full")
    assert [l.forward for l in c.layers] == [ops(conv_fwd=48, elementwise=12), ops(), ops(dense_fwd=24)]
    assert [l.backward for l in c.layers] == [
        ops(conv_dw=48, elementwise=12),
        ops(),
        ops(dense_dw=24, dense_dx=24, elementwise=2),
    ]
    assert c.update == ops(elementwise=39)  # conv 2*2*3 + 3 = 15, dense 12*2 = 24


# ZOO forward per sample:
#   ca   out 6*3*4 = 72: MAC 72*3*1 = 216, bias 72
#   pa   out 3*3*4 = 36, read 36*2 = 72
#   cb   out 2*3*2 = 12: MAC 12*2*4 = 96, bias 12
#   gap  in 2*3*2 = 12
#   fc   2*2 = 4, bias 2;  sm 2
def test_count_ops_conv2d_model_by_hand():
    """Full backward: ca (i0) dW 216 + bias 72; pa 72; cb dW 96 + bias 12 + dx (3*3)*2*(2*4) = 144; gap 12;
    fc dW 4 + bias 2 + dx 4; sm 2.  Update: ca 3*1*1*4 + 4 = 16, cb 2*1*4*2 + 2 = 18, fc 2*2 + 2 = 6 -> 40."""
    c = count_ops(ZOO, "full")
    assert [l.forward for l in c.layers] == [
        ops(conv_fwd=216, elementwise=72),
        ops(elementwise=72),
        ops(conv_fwd=96, elementwise=12),
        ops(elementwise=12),
        ops(dense_fwd=4, elementwise=2),
        ops(elementwise=2),
    ]
    assert [l.backward for l in c.layers] == [
        ops(conv_dw=216, elementwise=72),
        ops(elementwise=72),
        ops(conv_dw=96, conv_dx=144, elementwise=12),
        ops(elementwise=12),
        ops(dense_dw=4, dense_dx=4, elementwise=2),
        ops(elementwise=2),
    ]
    assert c.update == ops(elementwise=40)
    assert ZOO.params == 40


def test_count_ops_max_pools_and_global_max_pools_count_like_average_ones():
    """in (8, 3, 1) -> maxpool2d 2 (4, 3, 1): read 12*2 = 24 -> gmp2d: in 12 -> dense 2: 1*2 = 2 + bias 2.
    in (8, 2) -> maxpool1d 4/2 (3, 2): read 6*4 = 24 -> gmp1d: in 6 -> dense 2: 2*2 = 4 + bias 2."""
    a = Arch((8, 3, 1), (Layer("maxpool2d", "p", pool=2), Layer("gmp2d", "g"), Layer("dense", "d", units=2)))
    c = count_ops(a, "full")
    assert [l.forward for l in c.layers] == [ops(elementwise=24), ops(elementwise=12), ops(dense_fwd=2, elementwise=2)]
    # d is i0 and last: error 2 + bias 2, dW 2
    assert [l.backward for l in c.layers] == [ops(), ops(), ops(dense_dw=2, elementwise=4)]
    b = Arch((8, 2), (Layer("maxpool1d", "p", pool=4, stride=2), Layer("gmp1d", "g"), Layer("dense", "d", units=2)))
    assert [l.forward for l in count_ops(b, "none").layers] == [
        ops(elementwise=24),
        ops(elementwise=6),
        ops(dense_fwd=4, elementwise=2),
    ]


def test_count_ops_backward_of_pools_between_trained_layers():
    """Full: the max pool and the global max pool between the conv (i0) and the dense run their backward
    (pool: elements read 24, global pool: its input 6); the conv (i0) computes no input gradient."""
    a = Arch(
        (8, 2),
        (
            Layer("conv1d", "c1", filters=2, kernel=1, use_bias=False),  # out 16: MAC 16*1*2 = 32
            Layer("maxpool1d", "p", pool=4, stride=2),  # out (3, 2) = 6, read 6*4 = 24
            Layer("gmp1d", "g"),  # in 6
            Layer("dense", "d", units=2, use_bias=False),  # 2*2 = 4, last: error 2
        ),
    )
    c = count_ops(a, "full")
    assert [l.backward for l in c.layers] == [
        ops(conv_dw=32),
        ops(elementwise=24),
        ops(elementwise=6),
        ops(dense_dw=4, dense_dx=4, elementwise=2),
    ]


def test_per_batch_is_batch_size_times_per_sample_plus_one_update():
    """TL, batch 32: 32 * per sample, elementwise 32 * 3424 + 3556 = 113,124."""
    c = count_ops(paper_cnn(), "tl")
    assert c.per_batch(32) == ops(
        conv_fwd=1542144, dense_fwd=112000, dense_dw=112000, dense_dx=9600, elementwise=113124
    )
    assert c.per_batch(1) == ops(conv_fwd=48192, dense_fwd=3500, dense_dw=3500, dense_dx=300, elementwise=6980)


def test_per_batch_refuses_an_empty_batch():
    c = count_ops(paper_cnn(), "tl")
    with pytest.raises(ValueError) as e:
        c.per_batch(0)
    assert str(e.value) == "batch_size must be >= 1, got 0"


def test_per_sample_does_not_change_the_counts():
    c = count_ops(paper_cnn(), "tl")
    c.per_sample["conv_fwd"] = 0
    c.per_batch(4)
    assert c.forward == PAPER_FWD
    assert c.per_sample["conv_fwd"] == 48192


def test_op_counts_to_dict():
    c = count_ops(SMALL, "tl")
    assert c.to_dict() == {
        "forward": ops(conv_fwd=48, dense_fwd=18, elementwise=31),
        "backward": ops(dense_dw=18, elementwise=6),
        "per_sample": ops(conv_fwd=48, dense_fwd=18, dense_dw=18, elementwise=37),
        "update_per_batch": ops(elementwise=21),
        "macs_per_sample": 84,  # 48 + 18 + 18
        "layers": [
            {"name": "conv", "kind": "conv1d", "forward": ops(conv_fwd=48), "backward": ops()},
            {"name": "bn", "kind": "batchnorm", "forward": ops(elementwise=8), "backward": ops()},
            {"name": "relu", "kind": "relu", "forward": ops(elementwise=8), "backward": ops()},
            {"name": "pool", "kind": "maxpool1d", "forward": ops(elementwise=12), "backward": ops()},
            {"name": "flat", "kind": "flatten", "forward": ops(), "backward": ops()},
            {"name": "drop", "kind": "dropout", "forward": ops(), "backward": ops()},
            {
                "name": "out",
                "kind": "dense",
                "forward": ops(dense_fwd=18, elementwise=3),
                "backward": ops(dense_dw=18, elementwise=6),
            },
        ],
    }


def test_op_counts_defaults_and_layer_ops_to_dict():
    c = OpCounts(ops(), ops(), ops())
    assert c.layers == ()
    assert c.trainable == frozenset()
    lo = LayerOps("d", "dense", {"dense_fwd": 2}, {"dense_dw": 2})
    assert lo.to_dict() == {"name": "d", "kind": "dense", "forward": {"dense_fwd": 2}, "backward": {"dense_dw": 2}}


def test_per_sample_adds_keys_missing_on_one_side():
    c = OpCounts({"conv_fwd": 2}, {"conv_dw": 3, "conv_fwd": 1}, {})
    assert c.per_sample == {"conv_fwd": 3, "conv_dw": 3}
    assert c.per_batch(2) == ops(conv_fwd=6, conv_dw=6)


# --- inference figures ----------------------------------------------------------------------------


def test_inference_stats_paper_by_hand():
    """MACs 48192 + 3500 = 51692; MACC + elementwise 3312 = 55004; weights 10,084 * 4 B.
    Activations (values, input + output, in-place layers input only): conv1 60+576, pool1 576+288 = 864 (peak),
    conv2 288+448, pool2 448+192, gap 192+64, ...  Fused conv+relu+pool: conv1 block 60+288, conv2 block
    288+192 = 480 (peak), gap 256."""
    s = inference_stats(paper_cnn())
    assert s == InferenceStats(
        macc=55004,
        macs=51692,
        weights_bytes=40336,
        activation_peak_bytes=3456,
        folded_batchnorms=(),
        activation_fused_bytes=1920,
    )


def test_inference_stats_small_folds_the_batchnorm():
    """Weights: conv 12 + bn 8 + dense 21 = 41 values, bn after the conv is folded: 33 * 4 = 132 B.
    MACs 48 + 18 = 66, MACC 66 + 31 = 97.  Activations: conv 12+8 = 20 (peak), bn/relu in place 8, pool 8+6,
    flatten/dropout 6, dense 6+3.  Fused conv+bn+relu+pool: 12+6 = 18, dense 9."""
    s = inference_stats(SMALL)
    assert s == InferenceStats(
        macc=97,
        macs=66,
        weights_bytes=132,
        activation_peak_bytes=80,
        folded_batchnorms=("bn",),
        activation_fused_bytes=72,
    )


def test_inference_stats_to_dict():
    assert inference_stats(SMALL).to_dict() == {
        "inference_macc": 97,
        "inference_macs": 66,
        "weights_bytes": 132,
        "weights_kib": 132 / 1024,
        "activation_peak_bytes": 80,
        "activation_peak_kib": 80 / 1024,
        "activation_fused_bytes": 72,
        "activation_fused_kib": 72 / 1024,
        "folded_batchnorms": ["bn"],
    }
    assert InferenceStats(1, 1, 4, 8).to_dict()["folded_batchnorms"] == []
    assert InferenceStats(1, 1, 4, 8).activation_fused_bytes == 0


def test_foldable_batchnorms_next_to_a_conv_or_dense_only():
    a = Arch(
        (8, 2),
        (
            Layer("batchnorm", "bn0"),  # first layer, followed by relu: not foldable
            Layer("relu", "r0"),
            Layer("batchnorm", "bn1"),  # before a conv: foldable
            Layer("conv1d", "c", filters=2, kernel=3),
            Layer("batchnorm", "bn2"),  # after a conv: foldable
            Layer("relu", "r1"),
            Layer("batchnorm", "bn3"),  # between relu and pool: not foldable
            Layer("avgpool1d", "p", pool=2),
            Layer("flatten", "f"),
            Layer("batchnorm", "bn4"),  # before a dense: foldable
            Layer("dense", "d", units=2),
            Layer("batchnorm", "bn5"),  # after a dense, the last layer: foldable
        ),
    )
    assert foldable_batchnorms(a) == ("bn1", "bn2", "bn4", "bn5")


def test_foldable_batchnorm_first_and_last_do_not_wrap_around():
    """A first BatchNorm is not 'after' the last layer, a last one not 'before' the first."""
    a = Arch((4,), (Layer("batchnorm", "bn0"), Layer("relu", "r"), Layer("dense", "d", units=2)))
    assert foldable_batchnorms(a) == ()
    b = Arch((4,), (Layer("dense", "d", units=2), Layer("relu", "r"), Layer("batchnorm", "bn9")))
    assert foldable_batchnorms(b) == ()
    c = Arch((8, 2), (Layer("conv1d", "c", filters=2, kernel=3), Layer("relu", "r"), Layer("batchnorm", "bn9")))
    assert foldable_batchnorms(c) == ()


def test_inference_weights_of_a_conv2d_model_with_folded_batchnorm():
    """ca 16 + bn 4*4 = 16 + fc: (3*3*4 = 36 flattened) 36*2 + 2 = 74 -> 106 values, bn folded: 90 * 4 = 360 B."""
    a = Arch(
        (5, 3, 1),
        (
            Layer("conv2d", "ca", filters=4, kernel=3),
            Layer("batchnorm", "bn"),
            Layer("flatten", "f"),
            Layer("dense", "fc", units=2),
        ),
    )
    s = inference_stats(a)
    assert s.weights_bytes == 360
    assert s.folded_batchnorms == ("bn",)


def test_activation_peak_counts_softmax_in_place_and_pool_outputs():
    """in (6, 2) -> avgpool 2 (3, 2) -> flatten (6,) -> softmax (6,): pool 12 + 6 = 18 values (peak)."""
    a = Arch((6, 2), (Layer("avgpool1d", "p", pool=2), Layer("flatten", "f"), Layer("softmax", "s")))
    s = inference_stats(a)
    assert s.activation_peak_bytes == 72
    assert s.activation_fused_bytes == 72
    assert s.macc == 12 + 6  # pool reads 12, softmax 6


def test_fused_activation_conv_without_a_pool_counts_layer_by_layer():
    """in (6, 2) -> conv a 4 k3 (4, 4) -> relu -> conv b 2 k2 (3, 2) -> avgpool 3 (1, 2).
    conv a: no pool right after its relu (a conv follows): 12 + 16 = 28 (peak); relu in place 16;
    conv b + pool fused: 16 + 2 = 18.  Unfused: conv a 28, conv b 16 + 6 = 22, pool 6 + 2 = 8."""
    a = Arch(
        (6, 2),
        (
            Layer("conv1d", "a", filters=4, kernel=3),
            Layer("relu", "r"),
            Layer("conv1d", "b", filters=2, kernel=2),
            Layer("avgpool1d", "p", pool=3),
        ),
    )
    s = inference_stats(a)
    assert s.activation_fused_bytes == 28 * 4
    assert s.activation_peak_bytes == 28 * 4


def test_fused_activation_block_of_conv_batchnorm_relu_pool_holds_input_and_pooled_output():
    """in (12, 1) -> conv 8 k1 (12, 8) -> bn -> relu -> maxpool 4 (3, 8): fused 12 + 24 = 36 values;
    unfused peak: conv 12 + 96 = 108, pool 96 + 24 = 120."""
    a = Arch(
        (12, 1),
        (
            Layer("conv1d", "c", filters=8, kernel=1),
            Layer("batchnorm", "bn"),
            Layer("relu", "r"),
            Layer("maxpool1d", "p", pool=4),
        ),
    )
    s = inference_stats(a)
    assert s.activation_fused_bytes == 36 * 4
    assert s.activation_peak_bytes == 120 * 4


def test_fused_activation_conv2d_block_and_a_last_conv():
    """in (8, 3, 1) -> conv2d 2 k3 (6, 3, 2) -> avgpool2d 2 (3, 3, 2) -> conv2d 1 k3 (1, 3, 1), last:
    fused block 24 + 18 = 42 (peak), last conv 18 + 3 = 21; unfused: conv 24 + 36 = 60 (peak)."""
    a = Arch(
        (8, 3, 1),
        (
            Layer("conv2d", "a", filters=2, kernel=3),
            Layer("avgpool2d", "p", pool=2),
            Layer("conv2d", "b", filters=1, kernel=3),
        ),
    )
    s = inference_stats(a)
    assert s.activation_fused_bytes == 42 * 4
    assert s.activation_peak_bytes == 60 * 4


def test_inference_stats_of_a_model_without_layers():
    s = inference_stats(Arch((16, 3), ()))
    assert s == InferenceStats(
        macc=0, macs=0, weights_bytes=0, activation_peak_bytes=0, folded_batchnorms=(), activation_fused_bytes=0
    )


def test_op_counts_are_json_serialisable():
    json.dumps(count_ops(paper_cnn(), "full").to_dict())
    json.dumps(inference_stats(paper_cnn()).to_dict())


# --- layers at the end of a model (the loss error is added to their own backward) ------------------


def test_count_ops_conv_as_the_last_layer():
    """in (5, 2) -> conv 3 k2 (4, 3), last, trained with bias: loss error 12 + bias gradient 12 = 24, dW 12*2*2 = 48."""
    a = Arch((5, 2), (Layer("conv1d", "c", filters=3, kernel=2),))
    assert count_ops(a, "full").backward == ops(conv_dw=48, elementwise=24)


def test_count_ops_relu_as_the_last_layer():
    """in (4,) -> dense 3 (i0: dW 12 + bias 3) -> relu, last: loss error 3 + relu mask 3 = 6."""
    a = Arch((4,), (Layer("dense", "d", units=3), Layer("relu", "r")))
    assert [l.backward for l in count_ops(a, "full").layers] == [ops(dense_dw=12, elementwise=3), ops(elementwise=6)]


def test_count_ops_trained_batchnorm_as_the_last_layer():
    """in (4,) -> dense 3 (i0) -> bn, last and trained: loss error 3 + dgamma/dbeta 2*3 + dx 3 = 12."""
    a = Arch((4,), (Layer("dense", "d", units=3), Layer("batchnorm", "bn")))
    assert [l.backward for l in count_ops(a, "full").layers] == [ops(dense_dw=12, elementwise=3), ops(elementwise=12)]


def test_count_ops_pool_as_the_last_layer():
    """in (6, 2) -> conv 2 k1, no bias (6, 2): MAC 12*1*2 = 24 -> avgpool 2 (3, 2), last: loss error 6 + read 6*2 = 18."""
    a = Arch((6, 2), (Layer("conv1d", "c", filters=2, kernel=1, use_bias=False), Layer("avgpool1d", "p", pool=2)))
    assert [l.backward for l in count_ops(a, "full").layers] == [ops(conv_dw=24), ops(elementwise=18)]


def test_count_ops_global_pool_as_the_last_layer():
    """A fully convolutional classifier: in (6, 2) -> conv 3 k1, no bias (6, 3): MAC 18*2 = 36 -> gap1d (3,),
    last: loss error 3 + its input 18 = 21."""
    a = Arch((6, 2), (Layer("conv1d", "c", filters=3, kernel=1, use_bias=False), Layer("gap1d", "g")))
    assert [l.backward for l in count_ops(a, "full").layers] == [ops(conv_dw=36), ops(elementwise=21)]


def test_count_ops_takes_a_frozenset_as_already_resolved_names():
    """A frozenset is the trained set as it is (no second resolution): names not in this model train nothing."""
    c = count_ops(paper_cnn(), frozenset({"conv9"}))
    assert c.backward == ops()
    assert c.update == ops()
    assert c.trainable == frozenset({"conv9"})


def test_foldable_batchnorm_right_before_a_last_dense():
    a = Arch((4,), (Layer("batchnorm", "bn"), Layer("dense", "d", units=2)))
    assert foldable_batchnorms(a) == ("bn",)


def test_activation_peak_of_an_in_place_first_layer_is_its_input():
    """in (6,) -> softmax: 6 values in place, 24 B (fused or not)."""
    s = inference_stats(Arch((6,), (Layer("softmax", "s"),)))
    assert (s.activation_peak_bytes, s.activation_fused_bytes) == (24, 24)


def test_batchnorm_parameters_follow_the_channel_axis():
    """bn on (6, 3, 4): 4 channels (the last axis), not 3 -> 4 vectors of 4."""
    a = Arch((6, 3, 4), (Layer("batchnorm", "bn"),))
    assert a.param_shapes() == {"bn": [(4,), (4,), (4,), (4,)]}


def test_trainable_last_of_three_dense_layers():
    three = Arch((4,), tuple(Layer("dense", f"d{i}", units=3) for i in range(3)), name="m")
    assert three.trainable("last") == frozenset({"d2"})


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"kernel": 2.5}, "layer 'c': kernel must be a whole number, got 2.5"),
        ({"filters": "3"}, "layer 'c': filters must be a whole number, got '3'"),
        ({"units": True}, "layer 'c': units must be a whole number, got True"),
        ({"pool": None}, "layer 'c': pool must be a whole number, got None"),
        ({"stride": 1.0}, "layer 'c': stride must be a whole number, got 1.0"),
        ({"rate": float("nan")}, "layer 'c': rate must be a finite number, got nan"),
        ({"epsilon": "1e-3"}, "layer 'c': epsilon must be a finite number, got '1e-3'"),
        ({"rate": False}, "layer 'c': rate must be a finite number, got False"),
        ({"use_bias": 1}, "layer 'c': use_bias must be true or false, got 1"),
    ],
)
def test_a_layer_setting_of_the_wrong_type_is_refused_by_name(settings, message):
    """A hostile or damaged model file may hold any JSON value where a size belongs: refused, never a float shape."""
    with pytest.raises(ArchError) as e:
        Layer("conv1d", "c", **settings)
    assert str(e.value) == message
    with pytest.raises(ArchError) as e:
        Arch.from_json(
            json.dumps(
                {
                    "input_shape": [10, 2],
                    "layers": [{"kind": "conv1d", "name": "c", "filters": 1, "kernel": 2, **settings}],
                }
            )
        )
    assert str(e.value) == message


def test_whole_numbers_of_any_integer_type_and_real_rates_are_accepted():
    import numpy as np

    layer = Layer("conv1d", "c", filters=np.int64(2), kernel=np.int32(3), rate=np.float32(0.5), epsilon=1)
    assert one(layer, (10, 2)).shapes() == [(8, 2)]
