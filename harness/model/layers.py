"""The layer types of a spec: one frozen dataclass per type, and LAYER_TYPES, the table of them.

Each layer type carries everything the harness needs to know about it in one place: its JSON
`type` name, its fields (parsed by name: `parse_layer`), the shape it outputs (`output_shape`)
and what it costs (`cost`: parameters and forward FLOPs per example). Backends map each type to a builder and raise
on a type they lack (backends/base.py: layer_builder), so adding a layer type is: a class here,
one builder per backend. Shapes are channels-last and exclude the batch: (H, W, C) or (features,).

Conventions fixed here, once (see also harness/model/spec.py):
- `l1` / `l2` on a dense or conv2d kernel: None (absent) means "no regularizer at all", which is
  NOT the same as 0.0 (a regularizer whose penalty is 0 * sum(w^2) is still computed).
- BatchNorm `momentum` is Keras's: running = momentum * running + (1 - momentum) * batch.
  PyTorch's momentum is the other weight (1 - momentum). `epsilon` defaults to Keras's 1e-3
  (PyTorch's default is 1e-5).
- conv2d/maxpool2d padding "same" is TensorFlow's: output = ceil(input / stride), with the odd
  pixel of padding at the bottom/right. PyTorch's padding="same" does not allow strides > 1.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.errors import HarnessInputError
from harness.model.fields import REQUIRED, Fields

ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear")
PADDINGS = ("valid", "same")

Shape = tuple[int, ...]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding along one axis: (before, after); the odd pixel goes after."""
    out = -(-size // stride)  # ceil in integers: exact for any size
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _window_output(size: int, kernel: int, stride: int, padding: str) -> int:
    if padding == "same":
        return -(-size // stride)
    return (size - kernel) // stride + 1


def _windowed_shape(shape: Shape, window: tuple[int, int], strides: tuple[int, int], padding: str,
                    channels: int, where: str, window_field: str) -> Shape:
    """Output of a conv or pooling window over an (H, W, C) input."""
    if len(shape) != 3:
        raise HarnessInputError(f"{where}: needs an (H, W, C) image input, got shape {list(shape)}")
    height, width, _ = shape
    if padding == "valid" and (window[0] > height or window[1] > width):
        raise HarnessInputError(
            f"{where}.{window_field}: {list(window)} is larger than its input {height}x{width} (padding 'valid')")
    return (_window_output(height, window[0], strides[0], padding),
            _window_output(width, window[1], strides[1], padding), channels)


# How each layer field is parsed. A field name means the same in every layer type (strides,
# padding, activation, ...), so parsing follows from a layer dataclass's fields and defaults.
_FIELD_PARSERS: dict[str, Callable[[Fields, str, Any], Any]] = {
    "units": lambda f, key, default: f.int(key, default),
    "filters": lambda f, key, default: f.int(key, default),
    "kernel_size": lambda f, key, default: f.pair(key, default),
    "pool_size": lambda f, key, default: f.pair(key, default),
    "strides": lambda f, key, default: f.pair(key, default),
    "padding": lambda f, key, default: f.choice(key, PADDINGS, default),
    "activation": lambda f, key, default: f.choice(key, ACTIVATIONS, default),
    "l1": lambda f, key, default: f.number(key, default, low=0.0, high=None),
    "l2": lambda f, key, default: f.number(key, default, low=0.0, high=None),
    "rate": lambda f, key, default: f.number(key, default, low=0.0, high=1.0),
    "momentum": lambda f, key, default: f.number(key, default, low=0.0, high=1.0),
    "epsilon": lambda f, key, default: f.number(key, default, low=0.0, low_open=True, high=None),
    "microseconds": lambda f, key, default: f.number(key, default, low=0.0, high=1e6),
}


def parse_layer(cls: type, data: dict, where: str) -> Layer:
    """A layer of type `cls` from its JSON object: every field of the dataclass, parsed by its
    name's parser (required where the dataclass has no default); unknown fields are errors."""
    layer_fields = dataclasses.fields(cls)
    f = Fields(data, where, ("type", *(field.name for field in layer_fields)))
    return cls(**{field.name: _FIELD_PARSERS[field.name](
        f, field.name, REQUIRED if field.default is dataclasses.MISSING else field.default) for field in layer_fields})


class _ShapeKeeping:
    """Mixin for layers whose output has their input's shape and that have no parameters."""

    def output_shape(self, shape: Shape, where: str) -> Shape:
        return shape

    def cost(self, in_shape: Shape, out_shape: Shape) -> tuple[int, int]:
        return 0, 0


@dataclass(frozen=True, kw_only=True)
class KernelLayer:
    """A layer with a kernel (dense, conv2d): an activation after it, optional L1/L2 on the kernel.
    These fields are keyword-only: Dense(512, activation="relu", l2=1e-4)."""

    activation: str = "linear"
    l1: float | None = None
    l2: float | None = None


@dataclass(frozen=True)
class Dense(KernelLayer):
    units: int
    type: ClassVar[str] = "dense"


    def output_shape(self, shape: Shape, where: str) -> Shape:
        if len(shape) != 1:
            raise HarnessInputError(f"{where}: needs a vector input, got shape {list(shape)}; "
                                    "add a flatten layer before it")
        return (self.units,)

    def cost(self, in_shape: Shape, out_shape: Shape) -> tuple[int, int]:
        return in_shape[0] * self.units + self.units, 2 * in_shape[0] * self.units


@dataclass(frozen=True)
class Conv2D(KernelLayer):
    filters: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: str = "valid"
    type: ClassVar[str] = "conv2d"


    def output_shape(self, shape: Shape, where: str) -> Shape:
        return _windowed_shape(shape, self.kernel_size, self.strides, self.padding, self.filters, where,
                               "kernel_size")

    def cost(self, in_shape: Shape, out_shape: Shape) -> tuple[int, int]:
        taps = self.kernel_size[0] * self.kernel_size[1] * in_shape[2]
        return taps * self.filters + self.filters, 2 * taps * self.filters * out_shape[0] * out_shape[1]


@dataclass(frozen=True)
class MaxPool2D:
    pool_size: tuple[int, int]
    strides: tuple[int, int] | None = None  # None: the pool size (both frameworks' default)
    padding: str = "valid"
    type: ClassVar[str] = "maxpool2d"


    @property
    def effective_strides(self) -> tuple[int, int]:
        return self.strides or self.pool_size

    def output_shape(self, shape: Shape, where: str) -> Shape:
        channels = shape[2] if len(shape) == 3 else 0
        return _windowed_shape(shape, self.pool_size, self.effective_strides, self.padding, channels, where,
                               "pool_size")

    def cost(self, in_shape: Shape, out_shape: Shape) -> tuple[int, int]:
        return 0, 0


@dataclass(frozen=True)
class Flatten:
    type: ClassVar[str] = "flatten"


    def output_shape(self, shape: Shape, where: str) -> Shape:
        return (math.prod(shape),)

    def cost(self, in_shape: Shape, out_shape: Shape) -> tuple[int, int]:
        return 0, 0


@dataclass(frozen=True)
class Activation(_ShapeKeeping):
    activation: str
    type: ClassVar[str] = "activation"



@dataclass(frozen=True)
class Dropout(_ShapeKeeping):
    rate: float
    type: ClassVar[str] = "dropout"



@dataclass(frozen=True)
class BatchNorm(_ShapeKeeping):
    momentum: float = 0.99  # Keras convention, see the module docstring
    epsilon: float = 1e-3
    type: ClassVar[str] = "batchnorm"


    def cost(self, in_shape: Shape, out_shape: Shape) -> tuple[int, int]:
        return 2 * in_shape[-1], 0  # gamma and beta; the running statistics are not parameters


@dataclass(frozen=True)
class BusyWait(_ShapeKeeping):
    """A calibration instrument, not a model layer: the identity that busy-waits `microseconds`
    per forward call, in Python. Its cost is known, so `harness percall` can be checked against
    it; only an eager step pays it (a traced/compiled step runs the Python once, at tracing)."""

    microseconds: float
    type: ClassVar[str] = "busywait"


Layer = Dense | Conv2D | MaxPool2D | Flatten | Activation | Dropout | BatchNorm | BusyWait
LAYER_TYPES: dict[str, type] = {cls.type: cls for cls in (Dense, Conv2D, MaxPool2D, Flatten, Activation, Dropout,
                                                           BatchNorm, BusyWait)}
KERNEL_LAYERS = (Dense, Conv2D)  # the KernelLayer types: the layers L1/L2 apply to
