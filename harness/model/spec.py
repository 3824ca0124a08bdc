"""The framework-neutral model spec: frozen dataclasses, strict parsing, shape inference, presets.

A spec describes one classifier (an MLP or a small CNN) and how it is trained. Both backends
build their model from it and nothing else. Conventions fixed here, once:

- `input_shape` is channels-last: (H, W, C) for images, (features,) for vectors.
- The last layer is a dense layer with `num_classes` units and no activation: it outputs
  logits; the loss is softmax cross-entropy on integer labels, averaged over the batch.
- The L1/L2 penalty is Keras's: l1 * sum|w| + l2 * sum(w^2) (PyTorch's coupled weight_decay=wd
  is the gradient of (wd/2) * sum(w^2), so wd = 2 * l2: see `l2_style`). Layer conventions
  (absent vs 0.0 regularizers, BatchNorm momentum, "same" padding) are in harness/model/layers.py.
- Adam `epsilon` is PyTorch's: added to sqrt(v_hat) (bias-corrected); default 1e-8 (PyTorch's;
  Keras's default is 1e-7). Keras adds it to sqrt(v) ("epsilon hat"). Stock optimizers keep
  their own placement (`optimizer_impl` "stock", what timing measures); "matched" makes the
  TensorFlow backend convert to PyTorch's placement (what parity trains with).
- `l2_style` is how a PyTorch user writes L2: "penalty" (l2 * sum(w^2) added to the loss, as
  Keras's kernel_regularizer does) or "weight_decay" (torch.optim's coupled weight_decay = 2*l2
  on exactly the kernels that carry L2). Keras has one coupled idiom (kernel_regularizer); its
  optimizers' `weight_decay` is decoupled (AdamW-style), a different regularizer.

Parsing never raises anything but HarnessInputError, whose message names the source, the layer
index and the field: `my.json: layers[2].rate: 1.5 is not in [0, 1)`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from harness.errors import HarnessInputError
from harness.files import read_small_file
from harness.model.fields import Fields, describe
from harness.model.layers import LAYER_TYPES, Conv2D, Dense, Dropout, Flatten, Layer, MaxPool2D, parse_layer


@dataclass(frozen=True)
class Optimizer:
    type: str  # "sgd" | "adam"
    lr: float
    momentum: float = 0.0  # sgd only
    beta_1: float = 0.9  # adam only
    beta_2: float = 0.999
    epsilon: float = 1e-8  # adam only; PyTorch's placement, see the module docstring


OPTIMIZER_FIELDS = {"sgd": ("type", "lr", "momentum"), "adam": ("type", "lr", "beta_1", "beta_2", "epsilon")}
L2_STYLES = ("penalty", "weight_decay")
OPTIMIZER_IMPLS = ("stock", "matched")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    layers: tuple[Layer, ...]
    optimizer: Optimizer
    batch_size: int = 32
    seed: int = 0
    l2_style: str = "penalty"  # see the module docstring: how PyTorch writes L2
    optimizer_impl: str = "stock"  # "stock": each framework's own optimizer class; "matched": ε placed as PyTorch

    def with_layers(self, layers, name: str | None = None) -> ModelSpec:
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
            "l2_style": self.l2_style,
            "optimizer_impl": self.optimizer_impl,
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


def infer_shapes(spec: ModelSpec, source: str = "spec") -> LayerShapes:
    shape = tuple(spec.input_shape)
    flat_map: tuple[int, int, int] | None = None
    inputs, outputs, flattened = [], [], []
    for index, layer in enumerate(spec.layers):
        inputs.append(shape)
        flattened.append(flat_map)
        if isinstance(layer, Flatten) and len(shape) == 3:
            flat_map = shape
        elif isinstance(layer, (Dense, Conv2D)):
            flat_map = None  # a dense layer mixes features; a conv output is a map again
        shape = layer.output_shape(shape, f"{source}: layers[{index}] ({layer.type})")
        outputs.append(shape)
    return LayerShapes(tuple(inputs), tuple(outputs), tuple(flattened))


def model_cost(spec: ModelSpec) -> tuple[int, int]:
    """(parameters, FLOPs of one training step): each layer's forward FLOPs (harness/model/layers.py)
    times 3 (the backward is about twice the forward) times the batch size."""
    shapes = infer_shapes(spec)
    params, forward = 0, 0
    for layer, in_shape, out_shape in zip(spec.layers, shapes.inputs, shapes.outputs):
        layer_params, layer_flops = layer.cost(in_shape, out_shape)
        params, forward = params + layer_params, forward + layer_flops
    return params, 3 * forward * spec.batch_size


# ---------------------------------------------------------------------------------------------
# Parsing


def _parse_layer(data: Any, where: str) -> Layer:
    if not isinstance(data, dict):
        raise HarnessInputError(f"{where}: expected an object, got {describe(data)}")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in LAYER_TYPES:
        raise HarnessInputError(f"{where}.type: {kind!r} is not a layer type (known: {', '.join(LAYER_TYPES)})")
    return parse_layer(LAYER_TYPES[kind], data, where)


def _parse_optimizer(data: Any, where: str) -> Optimizer:
    if not isinstance(data, dict):
        raise HarnessInputError(f"{where}: expected an object, got {describe(data)}")
    kind = data.get("type")
    if kind == "sgd":
        f = Fields(data, where, ("type", "lr", "momentum"))
        return Optimizer("sgd", f.number("lr", low=0.0, low_open=True),
                         momentum=f.number("momentum", 0.0, low=0.0, high=1.0))
    if kind == "adam":
        f = Fields(data, where, ("type", "lr", "beta_1", "beta_2", "epsilon"))
        return Optimizer(
            "adam", f.number("lr", low=0.0, low_open=True),
            beta_1=f.number("beta_1", 0.9, low=0.0, high=1.0),
            beta_2=f.number("beta_2", 0.999, low=0.0, high=1.0),
            epsilon=f.number("epsilon", 1e-8, low=0.0, low_open=True, high=None),
        )
    raise HarnessInputError(f"{where}.type: {kind!r} is not an optimizer (known: sgd, adam)")


# Deep enough for any model a per-step comparison is meant for (a ResNet-152 has ~500 layers).
MAX_LAYERS = 1000


def parse_spec(data: Any, source: str = "spec") -> ModelSpec:
    """Validate a decoded JSON/TOML document and build the spec (shapes included)."""
    f = Fields(data, source, ("name", "input_shape", "num_classes", "layers", "optimizer", "batch_size", "seed",
                              "l2_style", "optimizer_impl"))
    input_shape = f.raw("input_shape")
    if (
        not isinstance(input_shape, list)
        or len(input_shape) not in (1, 3)
        or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in input_shape)
    ):
        raise HarnessInputError(
            f"{source}.input_shape: expected [features] or [height, width, channels] of positive integers, "
            f"got {describe(input_shape)}"
        )
    layers_data = f.raw("layers")
    if not isinstance(layers_data, list) or not layers_data:
        raise HarnessInputError(f"{source}.layers: expected a non-empty list of layers, got {describe(layers_data)}")
    if len(layers_data) > MAX_LAYERS:
        raise HarnessInputError(f"{source}.layers: {len(layers_data)} layers, at most {MAX_LAYERS} (building a model "
                                "this deep takes longer than any timing budget; a timing process builds several)")
    layers = tuple(_parse_layer(item, f"{source}: layers[{i}]") for i, item in enumerate(layers_data))
    spec = ModelSpec(
        name=f.text("name", Path(source).stem or "spec"),
        input_shape=tuple(input_shape),
        num_classes=f.int("num_classes", minimum=2),
        layers=layers,
        optimizer=_parse_optimizer(f.raw("optimizer"), f"{source}.optimizer"),
        batch_size=f.int("batch_size", 32),
        seed=f.int("seed", 0, minimum=0),
        l2_style=f.choice("l2_style", L2_STYLES, "penalty"),
        optimizer_impl=f.choice("optimizer_impl", OPTIMIZER_IMPLS, "stock"),
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


SPEC_FILE_MIB = 1  # the largest a spec file may be; the spec files here are a few kB
SPEC_FILE_LIMIT = SPEC_FILE_MIB * 1024 * 1024  # bytes
def load_spec(path: str | Path) -> ModelSpec:
    """Load a spec from a .json or .toml file (a regular file of at most SPEC_FILE_MIB MiB)."""
    path = Path(path)
    if not path.exists():
        raise HarnessInputError(f"{path}: no such spec file")
    raw = read_small_file(path, SPEC_FILE_LIMIT)  # a regular file, bounded (not /dev/zero, not a FIFO)
    if path.suffix == ".toml":
        import tomllib

        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise HarnessInputError(f"{path}: not valid TOML ({exc})") from None
        except (ValueError, RecursionError) as exc:  # integers over 4300 digits; absurd nesting
            raise HarnessInputError(f"{path}: not a usable TOML document ({type(exc).__name__})") from None
    else:
        try:
            data = json.loads(raw.decode("utf-8"))
        except json.JSONDecodeError as exc:
            raise HarnessInputError(
                f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
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
            Dense(512, activation="relu"), Dropout(0.2),
            Dense(256, activation="relu"), Dropout(0.2),
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
            Flatten(), Dense(128, activation="relu"), Dropout(0.5),
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
