"""How a ModelSpec's layers become pure JAX functions (BUILDERS), and how their weights map to the
canonical (PyTorch) layout of backends/base.py (weight_layouts).

A built layer is a JaxLayer: `params` and `state` (BatchNorm running statistics), each a dict
keyed by the canonical name "{index}.{name}" holding arrays in JAX's own layout, and
`apply(params, state, x, training, key) -> (y, state updates)`, a pure function of its arguments;
apply_layers runs a list of them in order. Activations are NHWC, as JAX users (and lax.conv's
"NHWC" dimension numbers) write them.

Conventions translated here:
- Dense kernel is (in, out) (`x @ w`): transposed. Conv2D kernel is HWIO: transposed to OIHW.
- JAX users flatten NHWC (`x.reshape(n, -1)`), PyTorch NCHW: the rows of a dense kernel, and the
  vectors of a BatchNorm, fed by a flattened feature map are permuted (as for Keras).
- "same" padding: lax's "SAME" is TensorFlow's (the odd pixel after: bottom/right), for any
  stride. Max pooling is lax.reduce_window from -inf, so padded pixels never win (as TF's).
- Dropout: a jax.random key per call; survivors are x / (1 - rate) (flax.linen.Dropout's
  `inputs / keep_prob`). rate 0 returns its input unchanged and consumes no key, as
  flax.linen.Dropout does (`if self.rate == 0.0 or deterministic: return inputs`): no jaxpr
  equation. `key_count` says how many keys a layer consumes per call.
- BatchNorm: batch statistics in training (biased variance, as both frameworks normalize);
  running = momentum * running + (1 - momentum) * batch, the spec's (Keras's) momentum, which is
  PyTorch's update with its momentum = 1 - this; running_var takes the *unbiased* batch variance
  (n / (n - 1)), as PyTorch does (flax's BatchNorm keeps the biased one, as Keras). eps inside
  the square root, from the spec.
- Initialization: jax.nn.initializers.lecun_normal kernels and zero biases (flax's defaults),
  keyed by jax.random.key(spec.seed) folded with the layer index: building never touches global
  random state (JAX has none).
- dtype: every parameter and statistic is created in the model's dtype; a float64 model must be
  built and run inside `jax.enable_x64(True)` (backends/jax_backend.py).
Constraints: jax is never imported at module level (it is passed in), so importing this module, as
the backend registry does, costs nothing. It builds layers and maps weights only: loss, optimizer,
modes and timing are backends/jax_backend.py's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from backends._keras_layers import flat_to_keras, flat_to_torch
from harness.model.layers import Activation, BatchNorm, BusyWait, Conv2D, Dense, Dropout, Flatten, MaxPool2D
from harness.model.spin import SpinIdentity

# apply(params, state, x, training, key) -> (y, state updates: dict, possibly empty)
Apply = Callable


@dataclass(frozen=True)
class JaxLayer:
    apply: Apply
    params: dict = field(default_factory=dict)  # canonical key -> array in JAX's layout
    state: dict = field(default_factory=dict)  # BatchNorm running statistics, the same way
    key_count: int = 0  # jax.random keys one training call consumes (active dropout: 1)


def _activation(jax, name: str) -> Callable | None:
    return {"relu": jax.nn.relu, "tanh": jax.numpy.tanh, "sigmoid": jax.nn.sigmoid, "linear": None}[name]


def _with_activation(jax, layer, linear: Callable) -> Apply:
    activation = _activation(jax, layer.activation)

    def apply(params, state, x, training, key):
        y = linear(params, x)
        return (y if activation is None else activation(y)), {}

    return apply


def _kernel_and_bias(jax, key, shape, fan_in_axes, dtype, index):
    # lecun_normal's fan_in: the product of the kernel's input axes (in; or kh * kw * in for HWIO).
    init = jax.nn.initializers.lecun_normal(in_axis=fan_in_axes, out_axis=-1)
    kernel = init(jax.random.fold_in(key, index), shape, dtype)
    return {f"{index}.weight": kernel, f"{index}.bias": jax.numpy.zeros(shape[-1], dtype)}


def _dense(jax, layer, index, in_shape, key, dtype):
    params = _kernel_and_bias(jax, key, (in_shape[0], layer.units), -2, dtype, index)
    w, b = f"{index}.weight", f"{index}.bias"
    return JaxLayer(_with_activation(jax, layer, lambda p, x: x @ p[w] + p[b]), params)


def _conv2d(jax, layer, index, in_shape, key, dtype):
    shape = (*layer.kernel_size, in_shape[2], layer.filters)  # HWIO
    params = _kernel_and_bias(jax, key, shape, (0, 1, 2), dtype, index)
    w, b = f"{index}.weight", f"{index}.bias"
    padding = layer.padding.upper()  # lax's "SAME" is TensorFlow's: see the module docstring

    def linear(p, x):
        y = jax.lax.conv_general_dilated(x, p[w], layer.strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + p[b]

    return JaxLayer(_with_activation(jax, layer, linear), params)


def _maxpool2d(jax, layer, index, in_shape, key, dtype):
    window, strides = (1, *layer.pool_size, 1), (1, *layer.effective_strides, 1)
    padding = layer.padding.upper()

    def apply(params, state, x, training, key):
        # Start from -inf (flax.linen.max_pool does): a padded pixel never wins, as in TF.
        return jax.lax.reduce_window(x, -jax.numpy.inf, jax.lax.max, window, strides, padding), {}

    return JaxLayer(apply)


def _flatten(jax, layer, index, in_shape, key, dtype):
    return JaxLayer(lambda params, state, x, training, key: (x.reshape(x.shape[0], -1), {}))  # NHWC order


def _activation_layer(jax, layer, index, in_shape, key, dtype):
    activation = _activation(jax, layer.activation)
    return JaxLayer(lambda params, state, x, training, key: (x if activation is None else activation(x), {}))


def dropout(jax, rate: float, x, training: bool, key):
    """flax.linen.Dropout's computation: identity when not training or at rate 0."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = jax.random.bernoulli(key, keep, x.shape)
    return jax.lax.select(mask, x / keep, jax.numpy.zeros_like(x))


def _dropout(jax, layer, index, in_shape, key, dtype):
    return JaxLayer(lambda params, state, x, training, key: (dropout(jax, layer.rate, x, training, key), {}),
                    key_count=int(layer.rate > 0))


def _batchnorm(jax, layer, index, in_shape, key, dtype):
    jnp = jax.numpy
    channels = in_shape[-1]
    names = {name: f"{index}.{name}" for name in ("weight", "bias", "running_mean", "running_var")}
    params = {names["weight"]: jnp.ones(channels, dtype), names["bias"]: jnp.zeros(channels, dtype)}
    state = {names["running_mean"]: jnp.zeros(channels, dtype), names["running_var"]: jnp.ones(channels, dtype)}
    momentum, eps = layer.momentum, layer.epsilon

    def apply(params, state, x, training, key):
        if not training:
            mean, var, updates = state[names["running_mean"]], state[names["running_var"]], {}
        else:
            axes = tuple(range(x.ndim - 1))
            n = x.size // x.shape[-1]  # values per channel: N (dense) or N*H*W (conv)
            mean, var = jnp.mean(x, axes), jnp.var(x, axes)  # biased: what normalizes
            # PyTorch's running variance takes the unbiased batch variance (module docstring).
            updates = {names["running_mean"]: momentum * state[names["running_mean"]] + (1 - momentum) * mean,
                       names["running_var"]: momentum * state[names["running_var"]]
                       + (1 - momentum) * (var * (n / (n - 1)))}
        y = (x - mean) * jax.lax.rsqrt(var + eps) * params[names["weight"]] + params[names["bias"]]
        return y, updates

    return JaxLayer(apply, params, state)


def apply_layers(layers: list[JaxLayer], params, state, x, training: bool, keys, stop: int | None = None):
    """(the output of layers[:stop], the BatchNorm state after them); `keys` holds one key per
    active dropout layer, in order (unused unless training)."""
    updates, used = {}, 0
    for layer in layers[:stop]:
        key = keys[used] if training and layer.key_count else None
        used += layer.key_count
        x, changed = layer.apply(params, state, x, training, key)
        updates |= changed
    return x, ({**state, **updates} if updates else state)


class _Spin(SpinIdentity):
    """The identity that spins a known time per call (harness.model.layers.BusyWait): in Python,
    so an eager step pays it each call and a jitted step only once, at tracing."""


def _busywait(jax, layer, index, in_shape, key, dtype):
    spin = _Spin(layer.microseconds * 1e-6)
    return JaxLayer(lambda params, state, x, training, key: (spin.pass_through(x), {}))


# Builders: (jax, layer, index, input shape, init key, dtype) -> JaxLayer.
BUILDERS = {
    Dense: _dense,
    Conv2D: _conv2d,
    MaxPool2D: _maxpool2d,
    Flatten: _flatten,
    Activation: _activation_layer,
    Dropout: _dropout,
    BatchNorm: _batchnorm,
    BusyWait: _busywait,
}


@dataclass(frozen=True)
class Layout:
    """One canonical tensor's conversion to JAX's layout and back (numpy in, numpy out)."""

    to_jax: Callable[[np.ndarray], np.ndarray]
    to_canonical: Callable[[np.ndarray], np.ndarray]


_IDENTITY = Layout(lambda a: a, lambda a: a)


def weight_layouts(spec_layers, shapes) -> dict[str, Layout]:
    """The Layout of every canonical weight key; `shapes` is harness.model.spec.infer_shapes of the
    spec (which layers follow a flatten, and from which (H, W, C) map)."""
    layouts: dict[str, Layout] = {}
    for index, layer in enumerate(spec_layers):
        hwc = shapes.flattened_from[index]
        if isinstance(layer, Dense):
            if hwc is None:
                kernel = Layout(lambda w: w.T, lambda k: k.T)
            else:  # rows of the torch weight are in (C, H, W) order; a JAX NHWC flatten's in (H, W, C)
                kernel = Layout(functools.partial(lambda w, hwc: flat_to_keras(w, hwc).T, hwc=hwc),
                                functools.partial(lambda k, hwc: flat_to_torch(k.T, hwc), hwc=hwc))
            layouts |= {f"{index}.weight": kernel, f"{index}.bias": _IDENTITY}
        elif isinstance(layer, Conv2D):
            layouts |= {f"{index}.weight": Layout(lambda w: w.transpose(2, 3, 1, 0), lambda k: k.transpose(3, 2, 0, 1)),
                        f"{index}.bias": _IDENTITY}
        elif isinstance(layer, BatchNorm):
            vector = _IDENTITY if hwc is None else Layout(functools.partial(flat_to_keras, hwc=hwc),
                                                          functools.partial(flat_to_torch, hwc=hwc))
            layouts |= {f"{index}.{name}": vector for name in ("weight", "bias", "running_mean", "running_var")}
    return layouts
