"""The framework-neutral model spec: frozen dataclasses, strict parsing, shape inference, presets.

A spec describes one classifier (an MLP or a small CNN) and how it is trained. Both backends
build their model from it and nothing else. Conventions fixed here, once:

- `input_shape` is channels-last: (H, W, C) for images, (features,) for vectors.
- The last layer is a dense layer with `num_classes` units and no activation: it outputs
  logits; the loss is softmax cross-entropy on integer labels, averaged over the batch.
- `l1` / `l2` on a dense or conv2d kernel: None (absent) means "no regularizer at all", which is
  NOT the same as 0.0 (a regularizer whose penalty is 0 * sum(w^2) is still computed). The
  penalty is Keras's: l1 * sum|w| + l2 * sum(w^2), added to the loss (PyTorch's SGD
  weight_decay=wd is the gradient of (wd/2) * sum(w^2); we never use it).
- BatchNorm `momentum` is Keras's: running = momentum * running + (1 - momentum) * batch.
  PyTorch's momentum is the other weight (1 - momentum). `epsilon` defaults to Keras's 1e-3
  (PyTorch's default is 1e-5).
- Adam `epsilon` is PyTorch's: added to sqrt(v_hat) (bias-corrected). Keras adds it to
  sqrt(v) ("epsilon hat"); the TensorFlow backend converts.
- conv2d/maxpool2d padding "same" is TensorFlow's: output = ceil(input / stride), with the odd
  pixel of padding at the bottom/right. PyTorch's padding="same" does not allow strides > 1.

Parsing never raises anything but HarnessInputError, whose message names the source, the layer
index and the field: `my.json: layers[2].rate: 1.5 is not in [0, 1)`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Union

from harness.errors import HarnessInputError

ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear")
PADDINGS = ("valid", "same")


@dataclass(frozen=True)
class Dense:
    units: int
    activation: str = "linear"
    l1: float | None = None
    l2: float | None = None
    type = "dense"


@dataclass(frozen=True)
class Conv2D:
    filters: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: str = "valid"
    activation: str = "linear"
    l1: float | None = None
    l2: float | None = None
    type = "conv2d"


@dataclass(frozen=True)
class MaxPool2D:
    pool_size: tuple[int, int]
    strides: tuple[int, int] | None = None  # None: the pool size (both frameworks' default)
    padding: str = "valid"
    type = "maxpool2d"

    @property
    def effective_strides(self) -> tuple[int, int]:
        return self.strides or self.pool_size


@dataclass(frozen=True)
class Flatten:
    type = "flatten"


@dataclass(frozen=True)
class Activation:
    activation: str
    type = "activation"


@dataclass(frozen=True)
class Dropout:
    rate: float
    type = "dropout"


@dataclass(frozen=True)
class BatchNorm:
    momentum: float = 0.99  # Keras convention, see the module docstring
    epsilon: float = 1e-3
    type = "batchnorm"


Layer = Union[Dense, Conv2D, MaxPool2D, Flatten, Activation, Dropout, BatchNorm]
LAYER_TYPES: dict[str, type] = {cls.type: cls for cls in (Dense, Conv2D, MaxPool2D, Flatten, Activation, Dropout, BatchNorm)}
KERNEL_LAYERS = (Dense, Conv2D)


@dataclass(frozen=True)
class Optimizer:
    type: str  # "sgd" | "adam"
    lr: float
    momentum: float = 0.0  # sgd only
    beta_1: float = 0.9  # adam only
    beta_2: float = 0.999
    epsilon: float = 1e-8  # adam only; PyTorch's placement, see the module docstring


OPTIMIZER_FIELDS = {"sgd": ("type", "lr", "momentum"), "adam": ("type", "lr", "beta_1", "beta_2", "epsilon")}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    layers: tuple[Layer, ...]
    optimizer: Optimizer
    batch_size: int = 32
    seed: int = 0

    def with_layers(self, layers, name: str | None = None) -> "ModelSpec":
        return replace(self, layers=tuple(layers), name=name or self.name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "layers": [_layer_to_dict(layer) for layer in self.layers],
            "optimizer": {key: getattr(self.optimizer, key) for key in OPTIMIZER_FIELDS[self.optimizer.type]},
            "batch_size": self.batch_size,
            "seed": self.seed,
        }


def _layer_to_dict(layer: Layer) -> dict[str, Any]:
    data: dict[str, Any] = {"type": layer.type}
    for f in fields(layer):
        value = getattr(layer, f.name)
        if value is not None:
            data[f.name] = list(value) if isinstance(value, tuple) else value
    return data


# ---------------------------------------------------------------------------------------------
# Shape inference


@dataclass(frozen=True)
class LayerShapes:
    """Input and output shape (channels-last, without batch) of each layer, and for each layer
    whose input is a flattened feature map, the (H, W, C) map it was flattened from (the two
    frameworks flatten in different orders, see backends/base.py)."""

    inputs: tuple[tuple[int, ...], ...]
    outputs: tuple[tuple[int, ...], ...]
    flattened_from: tuple[tuple[int, int, int] | None, ...]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding along one axis: (before, after); the odd pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _window_output(size: int, kernel: int, stride: int, padding: str) -> int:
    if padding == "same":
        return math.ceil(size / stride)
    return (size - kernel) // stride + 1


def infer_shapes(spec: ModelSpec, source: str = "spec") -> LayerShapes:
    shape = tuple(spec.input_shape)
    flat_map: tuple[int, int, int] | None = None
    inputs, outputs, flattened = [], [], []
    for index, layer in enumerate(spec.layers):
        where = f"{source}: layers[{index}] ({layer.type})"
        inputs.append(shape)
        flattened.append(flat_map)
        if isinstance(layer, (Conv2D, MaxPool2D)):
            if len(shape) != 3:
                raise HarnessInputError(f"{where}: needs an (H, W, C) image input, got shape {list(shape)}")
            window = layer.kernel_size if isinstance(layer, Conv2D) else layer.pool_size
            strides = layer.strides if isinstance(layer, Conv2D) else layer.effective_strides
            height, width, channels = shape
            if layer.padding == "valid" and (window[0] > height or window[1] > width):
                name = "kernel_size" if isinstance(layer, Conv2D) else "pool_size"
                raise HarnessInputError(
                    f"{where}.{name}: {list(window)} is larger than its input {height}x{width} (padding 'valid')"
                )
            out_h = _window_output(height, window[0], strides[0], layer.padding)
            out_w = _window_output(width, window[1], strides[1], layer.padding)
            shape = (out_h, out_w, layer.filters if isinstance(layer, Conv2D) else channels)
        elif isinstance(layer, Dense):
            if len(shape) != 1:
                raise HarnessInputError(
                    f"{where}: needs a vector input, got shape {list(shape)}; add a flatten layer before it"
                )
            shape = (layer.units,)
        elif isinstance(layer, Flatten):
            flat_map = shape if len(shape) == 3 else flat_map
            shape = (math.prod(shape),)
        # activation, dropout and batchnorm keep the shape
        if isinstance(layer, (Dense, Conv2D)):
            flat_map = None  # a dense layer mixes features; a conv output is a map again
        outputs.append(shape)
    return LayerShapes(tuple(inputs), tuple(outputs), tuple(flattened))


# ---------------------------------------------------------------------------------------------
# Parsing


_REQUIRED = object()  # default meaning "the field must be present"


class _Fields:
    """Typed access to one JSON object, with errors that say where the bad value came from."""

    def __init__(self, data: Any, where: str, allowed: tuple[str, ...]):
        if not isinstance(data, dict):
            raise HarnessInputError(f"{where}: expected an object, got {_describe(data)}")
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise HarnessInputError(f"{where}: unknown field {unknown[0]!r} (allowed: {', '.join(allowed)})")
        self.data, self.where = data, where

    def raw(self, key: str, default: Any = _REQUIRED) -> Any:
        if key in self.data:
            return self.data[key]
        if default is _REQUIRED:
            raise HarnessInputError(f"{self.where}: missing required field {key!r}")
        return default

    def int(self, key: str, default: Any = _REQUIRED, minimum: int = 1) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise HarnessInputError(f"{self.where}.{key}: expected an integer, got {_describe(value)}")
        if value < minimum:
            raise HarnessInputError(f"{self.where}.{key}: {value} must be >= {minimum}")
        return value

    def pair(self, key: str, default: Any = _REQUIRED) -> tuple[int, int] | None:
        """An integer or [h, w] of positive integers (None only when it is the default)."""
        value = self.raw(key, default)
        if value is None:
            return None
        items = [value, value] if isinstance(value, int) and not isinstance(value, bool) else value
        if not (
            isinstance(items, (list, tuple))
            and len(items) == 2
            and all(isinstance(item, int) and not isinstance(item, bool) and item >= 1 for item in items)
        ):
            raise HarnessInputError(
                f"{self.where}.{key}: expected a positive integer or [h, w] of positive integers, got {_describe(value)}"
            )
        return (items[0], items[1])

    def number(self, key: str, default: Any = _REQUIRED, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = True) -> float | None:
        """A finite number in [low, high) by default; None only when it is the default."""
        value = self.raw(key, default)
        if value is None and default is None:
            return None
        try:
            finite = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        except OverflowError:  # an integer too large for a float
            finite = False
        if not finite:
            raise HarnessInputError(f"{self.where}.{key}: expected a finite number, got {_describe(value)}")
        value = float(value)
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            interval = (
                f"{'(' if low_open else '['}{'-inf' if low is None else f'{low:g}'}, "
                f"{'inf' if high is None else f'{high:g}'}{')' if high_open else ']'}"
            )
            raise HarnessInputError(f"{self.where}.{key}: {value:g} is not in {interval}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: Any = _REQUIRED) -> str:
        value = self.raw(key, default)
        if value not in choices:
            raise HarnessInputError(f"{self.where}.{key}: {value!r} is not one of {', '.join(choices)}")
        return value

    def text(self, key: str, default: Any = _REQUIRED) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str) or not value:
            raise HarnessInputError(f"{self.where}.{key}: expected a non-empty string, got {_describe(value)}")
        return value


def _describe(value: Any) -> str:
    kind = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return f"{kind.get(type(value), type(value).__name__)} ({json.dumps(value, default=str)[:40]})"


def _parse_layer(data: Any, where: str) -> Layer:
    if not isinstance(data, dict):
        raise HarnessInputError(f"{where}: expected an object, got {_describe(data)}")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in LAYER_TYPES:
        raise HarnessInputError(
            f"{where}.type: {kind!r} is not a layer type (known: {', '.join(LAYER_TYPES)})"
        )
    allowed = ("type",) + tuple(f.name for f in fields(LAYER_TYPES[kind]))
    f = _Fields(data, where, allowed)
    regularizers = (
        {"l1": f.number("l1", None, low=0.0, high=None), "l2": f.number("l2", None, low=0.0, high=None)}
        if kind in ("dense", "conv2d")
        else {}
    )
    if kind == "dense":
        return Dense(f.int("units"), f.choice("activation", ACTIVATIONS, "linear"), **regularizers)
    if kind == "conv2d":
        return Conv2D(
            f.int("filters"), f.pair("kernel_size"), f.pair("strides", (1, 1)),
            f.choice("padding", PADDINGS, "valid"), f.choice("activation", ACTIVATIONS, "linear"), **regularizers,
        )
    if kind == "maxpool2d":
        return MaxPool2D(f.pair("pool_size"), f.pair("strides", None), f.choice("padding", PADDINGS, "valid"))
    if kind == "flatten":
        return Flatten()
    if kind == "activation":
        return Activation(f.choice("activation", ACTIVATIONS))
    if kind == "dropout":
        return Dropout(f.number("rate", low=0.0, high=1.0))
    return BatchNorm(
        f.number("momentum", 0.99, low=0.0, high=1.0),
        f.number("epsilon", 1e-3, low=0.0, low_open=True, high=None),
    )


def _parse_optimizer(data: Any, where: str) -> Optimizer:
    if not isinstance(data, dict):
        raise HarnessInputError(f"{where}: expected an object, got {_describe(data)}")
    kind = data.get("type")
    if kind == "sgd":
        f = _Fields(data, where, ("type", "lr", "momentum"))
        return Optimizer("sgd", f.number("lr", low=0.0, low_open=True),
                         momentum=f.number("momentum", 0.0, low=0.0, high=1.0))
    if kind == "adam":
        f = _Fields(data, where, ("type", "lr", "beta_1", "beta_2", "epsilon"))
        return Optimizer(
            "adam", f.number("lr", low=0.0, low_open=True),
            beta_1=f.number("beta_1", 0.9, low=0.0, high=1.0),
            beta_2=f.number("beta_2", 0.999, low=0.0, high=1.0),
            epsilon=f.number("epsilon", 1e-8, low=0.0, low_open=True, high=None),
        )
    raise HarnessInputError(f"{where}.type: {kind!r} is not an optimizer (known: sgd, adam)")


def parse_spec(data: Any, source: str = "spec") -> ModelSpec:
    """Validate a decoded JSON/TOML document and build the spec (shapes included)."""
    f = _Fields(data, source, ("name", "input_shape", "num_classes", "layers", "optimizer", "batch_size", "seed"))
    input_shape = f.raw("input_shape")
    if (
        not isinstance(input_shape, list)
        or len(input_shape) not in (1, 3)
        or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in input_shape)
    ):
        raise HarnessInputError(
            f"{source}.input_shape: expected [features] or [height, width, channels] of positive integers, "
            f"got {_describe(input_shape)}"
        )
    layers_data = f.raw("layers")
    if not isinstance(layers_data, list) or not layers_data:
        raise HarnessInputError(f"{source}.layers: expected a non-empty list of layers, got {_describe(layers_data)}")
    layers = tuple(_parse_layer(item, f"{source}: layers[{i}]") for i, item in enumerate(layers_data))
    spec = ModelSpec(
        name=f.text("name", Path(source).stem or "spec"),
        input_shape=tuple(input_shape),
        num_classes=f.int("num_classes", minimum=2),
        layers=layers,
        optimizer=_parse_optimizer(f.raw("optimizer"), f"{source}.optimizer"),
        batch_size=f.int("batch_size", 32),
        seed=f.int("seed", 0, minimum=0),
    )
    check_spec(spec, source)
    return spec


def check_spec(spec: ModelSpec, source: str = "spec") -> LayerShapes:
    """Structural checks that need the whole spec: shapes fit, the head outputs logits."""
    shapes = infer_shapes(spec, source)
    last_index = len(spec.layers) - 1
    last = spec.layers[-1]
    where = f"{source}: layers[{last_index}] ({last.type})"
    if not isinstance(last, Dense):
        raise HarnessInputError(f"{where}: the last layer must be a dense layer with num_classes units (logits)")
    if last.units != spec.num_classes:
        raise HarnessInputError(f"{where}.units: {last.units} != num_classes {spec.num_classes}")
    if last.activation != "linear":
        raise HarnessInputError(f"{where}.activation: {last.activation!r}: the last layer outputs logits, use 'linear'")
    return shapes


def load_spec(path: str | Path) -> ModelSpec:
    """Load a spec from a .json or .toml file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise HarnessInputError(f"{path}: no such spec file") from None
    except OSError as exc:
        raise HarnessInputError(f"{path}: cannot read spec file ({exc.strerror})") from None
    if path.suffix == ".toml":
        import tomllib

        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise HarnessInputError(f"{path}: not valid TOML ({exc})") from None
    else:
        try:
            data = json.loads(raw.decode("utf-8"))
        except json.JSONDecodeError as exc:
            raise HarnessInputError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        except UnicodeDecodeError:
            raise HarnessInputError(f"{path}: not valid JSON: not UTF-8 text") from None
        except (ValueError, RecursionError) as exc:  # integers over 4300 digits; absurd nesting
            raise HarnessInputError(f"{path}: not a usable JSON document ({type(exc).__name__})") from None
    return parse_spec(data, str(path))


# ---------------------------------------------------------------------------------------------
# Presets: the shapes of the classic Keras MNIST examples (mnist_mlp.py, mnist_cnn.py).

PRESETS: dict[str, ModelSpec] = {
    "mlp": ModelSpec(
        name="mlp",
        input_shape=(784,),
        num_classes=10,
        layers=(
            Dense(512, "relu"), Dropout(0.2),
            Dense(256, "relu"), Dropout(0.2),
            Dense(10),
        ),
        optimizer=Optimizer("sgd", lr=0.01, momentum=0.9),
    ),
    "cnn": ModelSpec(
        name="cnn",
        input_shape=(28, 28, 1),
        num_classes=10,
        layers=(
            Conv2D(32, (3, 3), activation="relu"), MaxPool2D((2, 2)), Dropout(0.25),
            Conv2D(64, (3, 3), activation="relu"), MaxPool2D((2, 2)), Dropout(0.25),
            Flatten(), Dense(128, "relu"), Dropout(0.5),
            Dense(10),
        ),
        optimizer=Optimizer("sgd", lr=0.01, momentum=0.9),
    ),
}


def resolve_spec(model: str | None, spec_path: str | None) -> ModelSpec:
    """The CLI's `--model NAME` or `--spec FILE` (exactly one may be given)."""
    if model and spec_path:
        raise HarnessInputError("give either --model or --spec, not both")
    if spec_path:
        return load_spec(spec_path)
    name = model or "mlp"
    if name not in PRESETS:
        raise HarnessInputError(f"--model: {name!r} is not a preset (known: {', '.join(PRESETS)})")
    return PRESETS[name]
