"""Which torch layer is which Keras layer of a user's port, and how a torch tensor of one becomes
the Keras tensor of the other.

Layers are matched by execution order and kind: the torch modules with weights (and BatchNorm's
statistics), in the order a forward pass first calls them, against the Keras layers of the same
kinds in the functional model's order. A pair whose kinds or shapes disagree is refused, naming
the first layer without a counterpart.

Convention traps handled here (each where it is converted):
- Linear weight is (out, in); Dense kernel is (in, out).
- Conv weights are OIHW / OIW in torch, HWIO / WIO in Keras; a depthwise conv (torch groups ==
  in_channels) is (C*m, 1, kh, kw) in torch and (kh, kw, C, m) in Keras.
- A Dense after Flatten of an image: torch flattens C, H, W; Keras flattens H, W, C, so the
  kernel's rows are permuted (the Keras Flatten's input shape says how).
- Activations are channels-first in torch and channels-last in Keras for convolutions and their
  BatchNorm (rank >= 3); Linear, LayerNorm and Embedding act on the last axis in both.
Nothing here imports a framework: the model objects are handed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.errors import HarnessInputError

TORCH_KINDS = {"Linear": "dense", "Conv1d": "conv1d", "Conv2d": "conv2d", "BatchNorm1d": "batchnorm",
               "BatchNorm2d": "batchnorm", "LayerNorm": "layernorm", "Embedding": "embedding"}
KERAS_KINDS = {"Dense": "dense", "Conv1D": "conv1d", "Conv2D": "conv2d", "DepthwiseConv2D": "conv2d",
               "BatchNormalization": "batchnorm", "LayerNormalization": "layernorm", "Embedding": "embedding"}
CHANNELS_FIRST_KINDS = ("conv1d", "conv2d", "batchnorm")  # their activations: NC... in torch, N...C in Keras
TRAINABLE_ROLES = ("kernel", "bias", "gamma", "beta", "embeddings")


def kind_of(obj: Any, kinds: dict[str, str]) -> str | None:
    """The kind of a torch module or Keras layer, from its class or a base class (a user's
    subclass of nn.Linear is a Linear)."""
    return next((kinds[cls.__name__] for cls in type(obj).__mro__ if cls.__name__ in kinds), None)


@dataclass(frozen=True)
class LayerPair:
    index: int
    kind: str
    torch_name: str  # the module's qualified name in the torch model
    torch_module: Any
    keras_layer: Any
    # A Dense reading a Flatten whose input is already in torch's order (a Permute before it):
    # its kernel rows are not permuted (harness/ported/checks.py decides from the recorded inputs).
    flat_as_torch: bool = False

    @property
    def name(self) -> str:
        """How the pair is named in checks and messages: the Keras layer's name."""
        return self.keras_layer.name

    def describe(self) -> str:
        return (f"layer #{self.index + 1} {self.name!r} ({type(self.keras_layer).__name__}; torch "
                f"{self.torch_name!r}, {type(self.torch_module).__name__})")


def keras_layers(model) -> list:
    """The Keras layers of mapped kinds, in the functional model's order (nested models walked)."""
    found = []
    for layer in model.layers:
        if hasattr(layer, "layers") and kind_of(layer, KERAS_KINDS) is None:
            found += keras_layers(layer)
        elif kind_of(layer, KERAS_KINDS):
            found.append(layer)
    return found


def pair_layers(called: list[tuple[str, Any]], model) -> list[LayerPair]:
    """Pair the torch modules (qualified name, module) in call order with the Keras layers."""
    keras = keras_layers(model)
    pairs = []
    for index in range(max(len(called), len(keras))):
        if index >= len(called):
            layer = keras[index]
            raise HarnessInputError(f"the Keras model's layer #{index + 1} {layer.name!r} ({type(layer).__name__}) "
                                    f"has no torch counterpart: the torch model calls {len(called)} mapped layers")
        name, module = called[index]
        kind = kind_of(module, TORCH_KINDS)
        if index >= len(keras):
            raise HarnessInputError(f"torch layer #{index + 1} {name!r} ({type(module).__name__}) has no Keras "
                                    f"counterpart: the Keras model has {len(keras)} mapped layers")
        layer = keras[index]
        if kind_of(layer, KERAS_KINDS) != kind:
            raise HarnessInputError(f"torch layer #{index + 1} {name!r} ({type(module).__name__}) has no Keras "
                                    f"counterpart: the Keras model's layer #{index + 1} is {layer.name!r} "
                                    f"({type(layer).__name__}); layers are matched in execution order")
        pairs.append(LayerPair(index, kind, name, module, layer))
    return pairs


def flatten_source_shape(layer) -> tuple[int, ...] | None:
    """(H, W, C) when a Keras Dense reads the Flatten of an image (else None)."""
    try:
        producer = layer.input._keras_history.operation
    except (AttributeError, ValueError):
        return None
    if type(producer).__name__ != "Flatten":
        return None
    shape = tuple(producer.input.shape[1:])
    return shape if len(shape) >= 2 else None


def _dense_kernel(weight: np.ndarray, flat_from: tuple[int, ...] | None) -> np.ndarray:
    if flat_from is not None:  # torch rows run over (C, *spatial); Keras's over (*spatial, C)
        *spatial, channels = flat_from
        weight = weight.reshape(weight.shape[0], channels, *spatial)
        weight = np.moveaxis(weight, 1, -1).reshape(weight.shape[0], -1)
    return weight.T


def _conv_kernel(weight: np.ndarray, keras_layer) -> np.ndarray:
    if type(keras_layer).__name__ == "DepthwiseConv2D":  # (C*m, 1, kh, kw) -> (kh, kw, C, m)
        channels = keras_layer.kernel.shape[2]
        weight = weight.reshape(channels, -1, *weight.shape[2:])
        return np.transpose(weight, (2, 3, 0, 1))
    return np.transpose(weight, (*range(2, weight.ndim), 1, 0))  # OIHW -> HWIO, OIW -> WIO


def keras_values(pair: LayerPair, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Torch parameters or gradients of one layer ({"weight", "bias", "running_mean",
    "running_var"}: those present) as the Keras layer's weights by role."""
    convert: dict[str, Callable[[np.ndarray], np.ndarray]]
    if pair.kind == "dense":
        flat_from = None if pair.flat_as_torch else flatten_source_shape(pair.keras_layer)
        convert = {"weight": lambda w: _dense_kernel(w, flat_from)}
        roles = {"weight": "kernel", "bias": "bias"}
    elif pair.kind in ("conv1d", "conv2d"):
        convert = {"weight": lambda w: _conv_kernel(w, pair.keras_layer)}
        roles = {"weight": "kernel", "bias": "bias"}
    elif pair.kind == "batchnorm":
        convert, roles = {}, {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
                              "running_var": "moving_variance"}
    elif pair.kind == "layernorm":
        convert, roles = {}, {"weight": "gamma", "bias": "beta"}
    else:
        convert, roles = {}, {"weight": "embeddings"}
    return {roles[key]: convert.get(key, lambda a: a)(value) for key, value in tensors.items() if key in roles}


def keras_variables(layer) -> dict[str, Any]:
    """A Keras layer's variables by role (kernel, bias, gamma, ...)."""
    return {variable.name.split("/")[-1]: variable for variable in layer.weights}


def torch_tensors(module, grads: bool = False) -> dict[str, np.ndarray]:
    """A torch layer's parameters (or their gradients) and buffers as float64 numpy arrays."""
    found = {}
    for key in ("weight", "bias"):
        parameter = getattr(module, key, None)
        if parameter is not None:
            value = parameter.grad if grads else parameter
            if value is not None:
                found[key] = value.detach().cpu().double().numpy()
    if not grads:
        for key in ("running_mean", "running_var"):
            buffer = getattr(module, key, None)
            if buffer is not None:
                found[key] = buffer.detach().cpu().double().numpy()
    return found


def copy_weights(pairs: list[LayerPair], dtype) -> None:
    """Load every torch layer's weights into its Keras layer (refused, naming the layer, where a
    shape or a weight disagrees)."""
    for pair in pairs:
        values = keras_values(pair, torch_tensors(pair.torch_module))
        variables = keras_variables(pair.keras_layer)
        for role in set(values) ^ set(variables):
            side = "torch" if role in values else "Keras"
            raise HarnessInputError(f"{pair.describe()}: only the {side} layer has a {role!r} (e.g. a bias on one "
                                    "side only)")
        for role, variable in variables.items():
            value = values[role]
            if tuple(value.shape) != tuple(variable.shape):
                raise HarnessInputError(f"{pair.describe()}: torch's {role} maps to shape {tuple(value.shape)}, "
                                        f"the Keras layer's is {tuple(variable.shape)}")
            variable.assign(value.astype(dtype))


def input_as_keras(pair: LayerPair, array: np.ndarray) -> np.ndarray:
    """What torch feeds this layer (already channels-last where that differs), as the Keras layer
    receives it: a Dense after Flatten of an image gets its features in (H, W, C) order."""
    flat_from = None if pair.flat_as_torch or pair.kind != "dense" else flatten_source_shape(pair.keras_layer)
    if flat_from is None or array.ndim != 2:
        return array
    *spatial, channels = flat_from
    image = np.moveaxis(array.reshape(array.shape[0], channels, *spatial), 1, -1)
    return image.reshape(array.shape[0], -1)


def to_keras_layout(kind: str, array: np.ndarray) -> np.ndarray:
    """A torch activation of a layer of `kind` in Keras's layout (channels last where it differs)."""
    return np.moveaxis(array, 1, -1) if kind in CHANNELS_FIRST_KINDS and array.ndim >= 3 else array
