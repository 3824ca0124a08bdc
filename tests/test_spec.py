"""The model spec: strict parsing with located errors, shape inference, presets, the spec files.

Every bad input must raise HarnessInputError (never another exception type) whose message names
the file, the layer index and the field. Expected shapes are computed here from the conv/pool
formulas, not read back from harness.model.spec.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from harness.errors import HarnessInputError
from harness.model.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, same_padding
from harness.model.spec import PRESETS, ModelSpec, Optimizer, check_spec, infer_shapes, load_spec, parse_spec

SPECS_DIR = Path(__file__).parent / "specs"
SPEC_FILES = sorted(SPECS_DIR.glob("*.json"))
DELETE = object()  # in a mutation: remove the key
INF_MARK = "@@1e400@@"  # written to the file as the bare JSON number 1e400 (json loads it as inf)


def small_cnn() -> dict:
    """A valid spec document; tests mutate one field of a fresh copy."""
    return {
        "name": "small",
        "input_shape": [8, 8, 1],
        "num_classes": 3,
        "layers": [
            {"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu", "l2": 0.0},
            {"type": "batchnorm", "momentum": 0.99, "epsilon": 0.001},
            {"type": "maxpool2d", "pool_size": 2},
            {"type": "dropout", "rate": 0.25},
            {"type": "flatten"},
            {"type": "dense", "units": 8, "activation": "relu", "l1": 0.001},
            {"type": "dense", "units": 3},
        ],
        "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9},
        "batch_size": 16,
        "seed": 0,
    }


def adam_cnn() -> dict:
    data = small_cnn()
    data["optimizer"] = {"type": "adam", "lr": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}
    return data


def mutated(data: dict, path: tuple, value) -> dict:
    """`data` with the value at `path` (keys and list indices) replaced, or removed (DELETE)."""
    data = copy.deepcopy(data)
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


def write_json(tmp_path: Path, data, name: str = "bad.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data).replace(json.dumps(INF_MARK), "1e400"), encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(HarnessInputError) as info:
        load_spec(path)
    return str(info.value)


def assert_names(msg: str, *parts: str) -> None:
    missing = [part for part in parts if part not in msg]
    assert not missing, f"message {msg!r} does not name {missing}"


def window_out(size: int, kernel: int, stride: int, padding: str) -> int:
    """Output size of a conv/pool window along one axis (TensorFlow's definitions)."""
    if padding == "same":
        return -(-size // stride)
    return (size - kernel) // stride + 1


def count_params(spec: ModelSpec) -> int:
    """Trainable parameters, from the shapes: kernels + biases, BN gamma + beta."""
    shapes = check_spec(spec)
    total = 0
    for layer, in_shape in zip(spec.layers, shapes.inputs):
        if isinstance(layer, Dense):
            total += in_shape[0] * layer.units + layer.units
        elif isinstance(layer, Conv2D):
            total += math.prod(layer.kernel_size) * in_shape[-1] * layer.filters + layer.filters
        elif isinstance(layer, BatchNorm):
            total += 2 * in_shape[-1]
    return total


# ---------------------------------------------------------------------------------------------
# Files that cannot be read or decoded


def test_missing_file(tmp_path):
    msg = load_error(tmp_path / "nowhere.json")
    assert_names(msg, "nowhere.json")


def test_not_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("this is not json\n", encoding="utf-8")
    assert_names(load_error(path), "bad.json")


def test_truncated_json(tmp_path):
    text = json.dumps(small_cnn(), indent=2)
    path = tmp_path / "bad.json"
    path.write_text(text[: len(text) // 2], encoding="utf-8")
    assert_names(load_error(path), "bad.json")


def test_not_utf8(tmp_path):
    path = tmp_path / "bad.json"
    path.write_bytes(json.dumps(mutated(small_cnn(), ("name",), "caf\u00e9"), ensure_ascii=False).encode("latin-1"))
    assert_names(load_error(path), "bad.json", "UTF-8")


def test_invalid_toml(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('input_shape = [28, 28\nnum_classes = 10\n', encoding="utf-8")
    assert_names(load_error(path), "bad.toml")


def test_toml_not_utf8(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_bytes('name = "caf\u00e9"\n'.encode("latin-1"))
    assert_names(load_error(path), "bad.toml")


def test_json_loads_1e400_as_inf():
    # The premise of the "1e400" cases below: the file is valid JSON that decodes to inf.
    assert json.loads("1e400") == math.inf


# ---------------------------------------------------------------------------------------------
# Documents that decode but are not a valid spec: (id, document, what the message must name)


def case(ident: str, path: tuple, value, *names: str, base=small_cnn):
    return pytest.param(mutated(base(), path, value), names, id=ident)


BAD_DOCUMENTS = [
    pytest.param([small_cnn()], ("object",), id="top-level-list"),
    pytest.param("spec", (), id="top-level-string"),
    case("unknown-top-level-key", ("epochs",), 3, "epochs"),
    case("missing-input_shape", ("input_shape",), DELETE, "input_shape"),
    case("missing-num_classes", ("num_classes",), DELETE, "num_classes"),
    case("missing-layers", ("layers",), DELETE, "layers"),
    case("missing-optimizer", ("optimizer",), DELETE, "optimizer"),
    case("empty-layers", ("layers",), [], "layers"),
    case("input-rank-2", ("input_shape",), [28, 28], "input_shape"),
    case("input-rank-4", ("input_shape",), [1, 8, 8, 1], "input_shape"),
    case("input-has-0", ("input_shape",), [8, 0, 1], "input_shape"),
    case("input-negative", ("input_shape",), [-8, 8, 1], "input_shape"),
    case("num_classes-1", ("num_classes",), 1, "num_classes"),
    case("batch_size-0", ("batch_size",), 0, "batch_size"),
    case("seed-negative", ("seed",), -1, "seed"),
    case("layer-not-object", ("layers", 2), "maxpool2d", "layers[2]"),
    # layer types and fields
    case("unknown-layer-type", ("layers", 5, "type"), "dense2", "layers[5]", "type", "dense2"),
    case("missing-layer-type", ("layers", 5, "type"), DELETE, "layers[5]", "type"),
    case("unknown-layer-field", ("layers", 5, "bias"), True, "layers[5]", "bias"),
    case("field-of-other-type", ("layers", 3, "units"), 4, "layers[3]", "units"),
    case("missing-units", ("layers", 5, "units"), DELETE, "layers[5]", "units"),
    case("missing-filters", ("layers", 0, "filters"), DELETE, "layers[0]", "filters"),
    case("missing-kernel_size", ("layers", 0, "kernel_size"), DELETE, "layers[0]", "kernel_size"),
    case("missing-pool_size", ("layers", 2, "pool_size"), DELETE, "layers[2]", "pool_size"),
    case("missing-rate", ("layers", 3, "rate"), DELETE, "layers[3]", "rate"),
    case("string-units", ("layers", 5, "units"), "8", "layers[5]", "units"),
    case("float-units", ("layers", 5, "units"), 8.0, "layers[5]", "units"),
    case("bool-units", ("layers", 5, "units"), True, "layers[5]", "units"),
    case("zero-units", ("layers", 5, "units"), 0, "layers[5]", "units"),
    case("negative-filters", ("layers", 0, "filters"), -4, "layers[0]", "filters"),
    case("kernel-[3]", ("layers", 0, "kernel_size"), [3], "layers[0]", "kernel_size"),
    case("kernel-[3,3,3]", ("layers", 0, "kernel_size"), [3, 3, 3], "layers[0]", "kernel_size"),
    case("kernel-0", ("layers", 0, "kernel_size"), 0, "layers[0]", "kernel_size"),
    case("kernel-[3,0]", ("layers", 0, "kernel_size"), [3, 0], "layers[0]", "kernel_size"),
    case("kernel-float", ("layers", 0, "kernel_size"), 3.0, "layers[0]", "kernel_size"),
    case("kernel-bool", ("layers", 0, "kernel_size"), True, "layers[0]", "kernel_size"),
    case("strides-0", ("layers", 0, "strides"), [1, 0], "layers[0]", "strides"),
    case("pool-strides-string", ("layers", 2, "strides"), "2", "layers[2]", "strides"),
    case("activation-gelu", ("layers", 5, "activation"), "gelu", "layers[5]", "activation", "gelu"),
    case("conv-activation-gelu", ("layers", 0, "activation"), "gelu", "layers[0]", "activation"),
    case("padding-full", ("layers", 0, "padding"), "full", "layers[0]", "padding", "full"),
    case("pool-padding-full", ("layers", 2, "padding"), "full", "layers[2]", "padding"),
    # dropout rate must be in [0, 1)
    case("rate-1.0", ("layers", 3, "rate"), 1.0, "layers[3]", "rate"),
    case("rate-1", ("layers", 3, "rate"), 1, "layers[3]", "rate"),
    case("rate--0.1", ("layers", 3, "rate"), -0.1, "layers[3]", "rate"),
    case("rate-1.5", ("layers", 3, "rate"), 1.5, "layers[3]", "rate", "1.5"),
    case("rate-string", ("layers", 3, "rate"), "0.5", "layers[3]", "rate"),
    case("rate-null", ("layers", 3, "rate"), None, "layers[3]", "rate"),
    case("rate-1e400", ("layers", 3, "rate"), INF_MARK, "layers[3]", "rate"),
    # regularizers
    case("negative-l1", ("layers", 5, "l1"), -0.01, "layers[5]", "l1"),
    case("negative-l2", ("layers", 0, "l2"), -1, "layers[0]", "l2"),
    case("string-l2", ("layers", 0, "l2"), "0.01", "layers[0]", "l2"),
    case("l2-1e400", ("layers", 0, "l2"), INF_MARK, "layers[0]", "l2"),
    case("l1-on-dropout", ("layers", 3, "l1"), 0.01, "layers[3]", "l1"),
    # batchnorm
    case("bn-momentum-1.0", ("layers", 1, "momentum"), 1.0, "layers[1]", "momentum"),
    case("bn-momentum--0.1", ("layers", 1, "momentum"), -0.1, "layers[1]", "momentum"),
    case("bn-epsilon-0", ("layers", 1, "epsilon"), 0, "layers[1]", "epsilon"),
    case("bn-epsilon-negative", ("layers", 1, "epsilon"), -0.001, "layers[1]", "epsilon"),
    case("bn-epsilon-1e400", ("layers", 1, "epsilon"), INF_MARK, "layers[1]", "epsilon"),
    # optimizer
    case("optimizer-not-object", ("optimizer",), "sgd", "optimizer"),
    case("unknown-optimizer", ("optimizer", "type"), "rmsprop", "optimizer", "type", "rmsprop"),
    case("missing-optimizer-type", ("optimizer", "type"), DELETE, "optimizer", "type"),
    case("missing-lr", ("optimizer", "lr"), DELETE, "optimizer", "lr"),
    case("lr-0", ("optimizer", "lr"), 0, "optimizer", "lr"),
    case("lr-negative", ("optimizer", "lr"), -0.01, "optimizer", "lr"),
    case("lr-string", ("optimizer", "lr"), "0.01", "optimizer", "lr"),
    case("sgd-momentum-1.0", ("optimizer", "momentum"), 1.0, "optimizer", "momentum"),
    case("sgd-momentum-negative", ("optimizer", "momentum"), -0.5, "optimizer", "momentum"),
    case("sgd-with-beta_1", ("optimizer", "beta_1"), 0.9, "optimizer", "beta_1"),
    case("adam-beta_1-1.0", ("optimizer", "beta_1"), 1.0, "optimizer", "beta_1", base=adam_cnn),
    case("adam-beta_2-1.0", ("optimizer", "beta_2"), 1.0, "optimizer", "beta_2", base=adam_cnn),
    case("adam-epsilon-0", ("optimizer", "epsilon"), 0, "optimizer", "epsilon", base=adam_cnn),
    case("adam-epsilon-negative", ("optimizer", "epsilon"), -1e-8, "optimizer", "epsilon", base=adam_cnn),
    case("adam-with-momentum", ("optimizer", "momentum"), 0.9, "optimizer", "momentum", base=adam_cnn),
    case("adam-lr-0", ("optimizer", "lr"), 0.0, "optimizer", "lr", base=adam_cnn),
    # the head
    case("last-units-not-num_classes", ("layers", 6, "units"), 4, "layers[6]", "units"),
    case("last-dense-relu", ("layers", 6, "activation"), "relu", "layers[6]", "activation"),
    case("last-dense-sigmoid", ("layers", 6, "activation"), "sigmoid", "layers[6]", "activation"),
    case("last-not-dense", ("layers",), small_cnn()["layers"] + [{"type": "dropout", "rate": 0.1}], "layers[7]"),
    case("only-a-flatten", ("layers",), [{"type": "flatten"}], "layers[0]"),
]


@pytest.mark.parametrize("data, names", BAD_DOCUMENTS)
def test_bad_document_is_located(tmp_path, data, names):
    msg = load_error(write_json(tmp_path, data))
    assert_names(msg, "bad.json", *names)


@pytest.mark.parametrize("data, names", BAD_DOCUMENTS)
def test_parse_spec_names_its_source(data, names):
    data = json.loads(json.dumps(data).replace(json.dumps(INF_MARK), "1e400"))
    with pytest.raises(HarnessInputError) as info:
        parse_spec(data, "from-cli")
    assert_names(str(info.value), "from-cli", *names)


# ---------------------------------------------------------------------------------------------
# Shapes that do not fit


def image_spec(input_shape, *layers, num_classes=3) -> dict:
    return {
        "input_shape": list(input_shape),
        "num_classes": num_classes,
        "layers": [*layers, {"type": "dense", "units": num_classes}],
        "optimizer": {"type": "sgd", "lr": 0.1},
    }


FLATTEN = {"type": "flatten"}

BAD_SHAPES = [
    pytest.param(image_spec([16], {"type": "conv2d", "filters": 2, "kernel_size": 3}, FLATTEN),
                 ("layers[0]", "conv2d"), id="conv-on-vector"),
    pytest.param(image_spec([16], {"type": "maxpool2d", "pool_size": 2}),
                 ("layers[0]", "maxpool2d"), id="maxpool-on-vector"),
    pytest.param(image_spec([8, 8, 1], FLATTEN, {"type": "conv2d", "filters": 2, "kernel_size": 1}, FLATTEN),
                 ("layers[1]", "conv2d"), id="conv-after-flatten"),
    pytest.param(image_spec([8, 8, 1], {"type": "conv2d", "filters": 2, "kernel_size": 3}),
                 ("layers[1]", "dense", "flatten"), id="dense-after-conv-without-flatten"),
    pytest.param(image_spec([8, 8, 1], {"type": "conv2d", "filters": 2, "kernel_size": 3},
                            {"type": "batchnorm"}, {"type": "dropout", "rate": 0.1}),
                 ("layers[3]", "dense"), id="dense-after-conv-bn-dropout"),
    pytest.param(image_spec([8, 8, 1]), ("layers[0]", "dense"), id="dense-on-image-input"),
    pytest.param(image_spec([4, 6, 1], {"type": "conv2d", "filters": 2, "kernel_size": 5}, FLATTEN),
                 ("layers[0]", "kernel_size"), id="kernel-taller-than-input"),
    pytest.param(image_spec([6, 4, 1], {"type": "conv2d", "filters": 2, "kernel_size": [1, 5]}, FLATTEN),
                 ("layers[0]", "kernel_size"), id="kernel-wider-than-input"),
    pytest.param(image_spec([8, 8, 1], {"type": "conv2d", "filters": 2, "kernel_size": 3, "strides": 2},
                            {"type": "conv2d", "filters": 2, "kernel_size": 4}, FLATTEN),
                 ("layers[1]", "kernel_size"), id="kernel-larger-than-its-input-later"),
    pytest.param(image_spec([3, 3, 1], {"type": "maxpool2d", "pool_size": 4}, FLATTEN),
                 ("layers[0]", "pool_size"), id="pool-larger-than-input"),
    pytest.param(image_spec([8, 8, 1], {"type": "conv2d", "filters": 2, "kernel_size": 3},
                            {"type": "maxpool2d", "pool_size": 2}, {"type": "maxpool2d", "pool_size": [4, 1]}, FLATTEN),
                 ("layers[2]", "pool_size"), id="pool-larger-than-its-input-later"),
]


@pytest.mark.parametrize("data, names", BAD_SHAPES)
def test_shape_that_does_not_fit_is_located(tmp_path, data, names):
    msg = load_error(write_json(tmp_path, data))
    assert_names(msg, "bad.json", *names)


def test_kernel_larger_than_input_is_fine_with_same_padding(tmp_path):
    data = image_spec([4, 6, 1], {"type": "conv2d", "filters": 2, "kernel_size": 5, "padding": "same"},
                      {"type": "maxpool2d", "pool_size": [5, 7], "padding": "same"}, FLATTEN)
    spec = load_spec(write_json(tmp_path, data, "ok.json"))
    shapes = infer_shapes(spec)
    assert shapes.outputs[0] == (4, 6, 2)
    assert shapes.outputs[1] == (window_out(4, 5, 5, "same"), window_out(6, 7, 7, "same"), 2) == (1, 1, 2)


# ---------------------------------------------------------------------------------------------
# Good input


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_pass_check_spec(name):
    spec = PRESETS[name]
    shapes = check_spec(spec, name)
    assert shapes.outputs[-1] == (spec.num_classes,)
    assert len(shapes.inputs) == len(shapes.outputs) == len(shapes.flattened_from) == len(spec.layers)


def test_cnn_preset_shapes():
    shapes = infer_shapes(PRESETS["cnn"])
    side = window_out(28, 3, 1, "valid")          # conv 3x3: 26
    side = window_out(side, 2, 2, "valid")        # pool 2: 13
    side2 = window_out(side, 3, 1, "valid")       # conv 3x3: 11
    side2 = window_out(side2, 2, 2, "valid")      # pool 2: 5
    assert shapes.outputs[:6] == ((26, 26, 32), (13, 13, 32), (13, 13, 32), (11, 11, 64), (5, 5, 64), (5, 5, 64))
    assert (side, side2) == (13, 5)
    assert shapes.outputs[6] == (side2 * side2 * 64,)


def test_issue_example_loads_with_its_values():
    spec = load_spec(SPECS_DIR / "issue_example.json")
    conv, bn, pool, drop, flat, hidden, head = spec.layers
    assert spec.input_shape == (28, 28, 1) and spec.num_classes == 10
    assert conv == Conv2D(16, (3, 3), (1, 1), "same", activation="relu", l1=None, l2=0.0)
    assert bn == BatchNorm(0.99, 0.001)
    assert pool == MaxPool2D((2, 2)) and pool.effective_strides == (2, 2)
    assert drop == Dropout(0.25) and flat == Flatten()
    assert hidden == Dense(64, activation="relu", l1=0.0, l2=0.0001)
    assert head == Dense(10) and head.l1 is None and head.l2 is None
    assert spec.optimizer == Optimizer("sgd", lr=0.01, momentum=0.9)
    assert (spec.batch_size, spec.seed) == (32, 0)


def test_issue_example_shapes():
    spec = load_spec(SPECS_DIR / "issue_example.json")
    shapes = infer_shapes(spec)
    conv = (window_out(28, 3, 1, "same"), window_out(28, 3, 1, "same"), 16)
    pooled = (window_out(conv[0], 2, 2, "valid"), window_out(conv[1], 2, 2, "valid"), 16)
    flat = (pooled[0] * pooled[1] * 16,)
    assert conv == (28, 28, 16) and pooled == (14, 14, 16) and flat == (3136,)
    assert shapes.inputs == ((28, 28, 1), conv, conv, pooled, pooled, flat, (64,))
    assert shapes.outputs == (conv, conv, pooled, pooled, flat, (64,), (10,))
    assert shapes.flattened_from == (None, None, None, None, None, pooled, None)


ISSUE_TOML = """
name = "issue_example"
input_shape = [28, 28, 1]
num_classes = 10
batch_size = 32
seed = 0

[[layers]]
type = "conv2d"
filters = 16
kernel_size = 3
strides = 1
padding = "same"
activation = "relu"
l2 = 0.0

[[layers]]
type = "batchnorm"
momentum = 0.99
epsilon = 0.001

[[layers]]
type = "maxpool2d"
pool_size = 2

[[layers]]
type = "dropout"
rate = 0.25

[[layers]]
type = "flatten"

[[layers]]
type = "dense"
units = 64
activation = "relu"
l1 = 0.0
l2 = 0.0001

[[layers]]
type = "dense"
units = 10

[optimizer]
type = "sgd"
lr = 0.01
momentum = 0.9
"""


def test_toml_spec_equals_json_spec(tmp_path):
    path = tmp_path / "issue_example.toml"
    path.write_text(ISSUE_TOML, encoding="utf-8")
    assert load_spec(path) == load_spec(SPECS_DIR / "issue_example.json")


def test_name_defaults_to_the_file_stem(tmp_path):
    data = mutated(small_cnn(), ("name",), DELETE)
    assert load_spec(write_json(tmp_path, data, "my_model.json")).name == "my_model"


def test_l2_absent_is_none_and_zero_is_zero():
    base = small_cnn()
    absent = parse_spec(mutated(base, ("layers", 0, "l2"), DELETE))
    zero = parse_spec(mutated(base, ("layers", 0, "l2"), 0.0))
    int_zero = parse_spec(mutated(base, ("layers", 0, "l2"), 0))
    assert absent.layers[0].l2 is None
    assert zero.layers[0].l2 == 0.0 and zero.layers[0].l2 is not None
    assert int_zero.layers[0].l2 == 0.0 and isinstance(int_zero.layers[0].l2, float)
    assert absent != zero
    assert parse_spec(base).layers[5].l2 is None and parse_spec(base).layers[5].l1 == 0.001


def test_defaults_are_filled_in():
    data = image_spec([6, 5, 2], {"type": "conv2d", "filters": 3, "kernel_size": [2, 3]},
                      {"type": "maxpool2d", "pool_size": 2}, {"type": "batchnorm"}, FLATTEN)
    spec = parse_spec(data)
    conv, pool, bn = spec.layers[:3]
    assert conv == Conv2D(3, (2, 3), (1, 1), "valid", activation="linear", l1=None, l2=None)
    assert pool.strides is None and pool.effective_strides == (2, 2) and pool.padding == "valid"
    assert bn == BatchNorm(0.99, 1e-3)
    assert spec.layers[-1] == Dense(3, activation="linear", l1=None, l2=None)
    assert spec.optimizer == Optimizer("sgd", 0.1, momentum=0.0)
    assert (spec.batch_size, spec.seed) == (32, 0)


def with_optimizer_for(data: dict) -> dict:
    """`data` with only the optimizer fields that its optimizer type accepts."""
    accepted = {"sgd": ("type", "lr", "momentum"), "adam": ("type", "lr", "beta_1", "beta_2", "epsilon")}
    data = dict(data)
    data["optimizer"] = {k: v for k, v in data["optimizer"].items() if k in accepted[data["optimizer"]["type"]]}
    return data


ROUND_TRIP_SPECS = [pytest.param(name, id=name) for name in sorted(PRESETS)] + [
    pytest.param(path, id=path.stem) for path in SPEC_FILES
]


def preset_or_file(which) -> ModelSpec:
    return PRESETS[which] if isinstance(which, str) else load_spec(which)


@pytest.mark.parametrize("which", ROUND_TRIP_SPECS)
def test_to_dict_round_trips(which):
    spec = preset_or_file(which)
    assert parse_spec(json.loads(json.dumps(spec.to_dict()))) == spec


@pytest.mark.parametrize("which", ROUND_TRIP_SPECS)
def test_to_dict_round_trips_layers(which):
    spec = preset_or_file(which)
    # The layer half of the round trip, independent of the optimizer bug above.
    assert parse_spec(with_optimizer_for(json.loads(json.dumps(spec.to_dict())))) == spec


def test_same_padding_with_stride_2_on_odd_sizes():
    data = image_spec([7, 9, 2], {"type": "conv2d", "filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"},
                      {"type": "maxpool2d", "pool_size": 2, "padding": "same"}, FLATTEN)
    shapes = infer_shapes(parse_spec(data))
    assert shapes.outputs[0] == (math.ceil(7 / 2), math.ceil(9 / 2), 4) == (4, 5, 4)
    assert shapes.outputs[1] == (math.ceil(4 / 2), math.ceil(5 / 2), 4) == (2, 3, 4)
    assert shapes.outputs[2] == (2 * 3 * 4,)


def test_valid_padding_with_rectangular_strides():
    data = image_spec([17, 11, 2], {"type": "conv2d", "filters": 3, "kernel_size": [5, 3], "strides": [2, 1]},
                      {"type": "maxpool2d", "pool_size": [2, 3], "strides": [1, 2]}, FLATTEN)
    shapes = infer_shapes(parse_spec(data))
    assert shapes.outputs[0] == ((17 - 5) // 2 + 1, (11 - 3) // 1 + 1, 3) == (7, 9, 3)
    assert shapes.outputs[1] == ((7 - 2) // 1 + 1, (9 - 3) // 2 + 1, 3) == (6, 4, 3)


def test_same_padding_puts_the_odd_pixel_after():
    assert same_padding(5, 4, 1) == (1, 2)
    assert same_padding(9, 2, 2) == (0, 1)
    assert same_padding(28, 3, 1) == (1, 1)
    assert same_padding(8, 2, 2) == (0, 0)
    assert same_padding(3, 7, 1) == (3, 3)


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5])
def test_same_padding_gives_ceil_outputs(kernel, stride):
    for size in range(1, 13):
        before, after = same_padding(size, kernel, stride)
        assert 0 <= after - before <= 1, (size, kernel, stride)
        padded = size + before + after
        # The padded input, read with "valid" windows, gives TensorFlow's ceil(size / stride)...
        assert (padded - kernel) // stride + 1 == math.ceil(size / stride), (size, kernel, stride)
        # ... and no smaller total padding does (unless none at all is needed).
        if before + after:
            assert (padded - 1 - kernel) // stride + 1 < math.ceil(size / stride), (size, kernel, stride)


def test_flattened_from_is_set_for_layers_fed_by_a_flattened_map():
    data = image_spec(
        [6, 5, 2],
        {"type": "conv2d", "filters": 3, "kernel_size": 3},  # 0: (4, 3, 3)
        {"type": "batchnorm"},                                # 1: BN on a map, not flattened
        FLATTEN,                                              # 2: its input is the map itself
        {"type": "batchnorm"},                                # 3: fed by the flattened map
        {"type": "dropout", "rate": 0.1},                     # 4
        {"type": "dense", "units": 7},                        # 5: fed by the flattened map
        {"type": "batchnorm"},                                # 6: after a dense: None
        {"type": "dense", "units": 5},                        # 7
    )
    shapes = infer_shapes(parse_spec(data))
    hwc = (6 - 3 + 1, 5 - 3 + 1, 3)
    assert shapes.flattened_from == (None, None, None, hwc, hwc, hwc, None, None, None)


def test_flattened_from_is_none_for_an_mlp():
    assert set(infer_shapes(PRESETS["mlp"]).flattened_from) == {None}
    data = image_spec([12], FLATTEN, {"type": "batchnorm"}, {"type": "dense", "units": 4})
    assert set(infer_shapes(parse_spec(data)).flattened_from) == {None}


def test_cnn_preset_flattened_from():
    shapes = infer_shapes(PRESETS["cnn"])
    expected = [None] * len(PRESETS["cnn"].layers)
    expected[7] = (5, 5, 64)  # Dense(128) right after Flatten
    assert list(shapes.flattened_from) == expected


def test_specs_are_frozen():
    spec = PRESETS["cnn"]
    with pytest.raises(AttributeError):
        spec.num_classes = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        spec.layers[0].filters = 1  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# Bad input that escapes as another exception type (bugs, see the reasons)


def test_layer_type_that_is_a_list(tmp_path):
    msg = load_error(write_json(tmp_path, mutated(small_cnn(), ("layers", 5, "type"), ["dense"])))
    assert_names(msg, "bad.json", "layers[5]", "type")


def test_huge_integer_rate(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(small_cnn()).replace('"rate": 0.25', '"rate": 1' + "0" * 400), encoding="utf-8")
    assert_names(load_error(path), "bad.json", "layers[3]", "rate")


def test_toml_date_where_a_number_belongs(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(ISSUE_TOML.replace("seed = 0", "seed = 1979-05-27"), encoding="utf-8")
    assert_names(load_error(path), "bad.toml", "seed")


def test_integer_over_the_digit_limit(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(small_cnn()).replace('"seed": 0', '"seed": ' + "1" * 5000), encoding="utf-8")
    assert_names(load_error(path), "bad.json")


def test_deeply_nested_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("[" * 100_000, encoding="utf-8")
    assert_names(load_error(path), "bad.json")


# ---------------------------------------------------------------------------------------------
# The spec files in tests/specs/ (used by the parity checks)


@pytest.mark.parametrize("path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_spec_file_loads(path):
    spec = load_spec(path)
    shapes = check_spec(spec, str(path))
    assert spec.name == path.stem
    assert shapes.outputs[-1] == (spec.num_classes,)
    assert 8 <= spec.batch_size <= 32


ODD_SPEC_FILES = [path for path in SPEC_FILES if path.stem.startswith("odd_")]


def test_there_are_odd_spec_files():
    assert len(ODD_SPEC_FILES) >= 4


@pytest.mark.parametrize("path", ODD_SPEC_FILES, ids=[p.stem for p in ODD_SPEC_FILES])
def test_odd_spec_file_is_small(path):
    # Small enough that a parity check of one file takes seconds.
    assert 1_000 <= count_params(load_spec(path)) <= 100_000
