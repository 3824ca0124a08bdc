"""How a ModelSpec's layers become Keras layers (BUILDERS), and how their weights map to the
canonical (PyTorch) layout of backends/base.py (weight_slots).

Conventions translated here:
- Dense kernel is (in, out): transposed. Conv2D kernel is HWIO: transposed to OIHW.
- Keras flattens NHWC (H, W, C), PyTorch NCHW (C, H, W): the rows of a dense kernel, and the
  vectors of a BatchNorm, fed by a flattened feature map are permuted between the two orders.
- BatchNorm: Keras's momentum convention is the spec's; epsilon passed explicitly.
- Regularizers: keras L1(l1) / L2(l2) compute their penalty even at 0.0 (as PyTorch's explicit
  penalty does). Keras's L1L2 silently skips a zero term, so when both l1 and l2 are present we
  use our own regularizer that always computes both: the same work in both frameworks. A float64
  model uses ours for one term too: Keras's L1 and L2 round their factor to float32 (a float32
  tensor; ops.cast of a Python float), 3e-9 to 8e-9 of a float64 loss with l1 = 1e-4 (cnn, mlp).
- dtype: every layer is built in the model's dtype (Keras casts a floating input to a layer's
  own dtype, so one float32 layer would round a float64 model's activations).
- Initialization is seeded per layer (glorot_uniform with seed spec.seed + layer index, Keras's
  default initializer): building a model never reseeds the process (keras.utils.set_random_seed
  would reseed Python, NumPy and TensorFlow globally).
Constraints: keras is never imported here (it is passed in), so importing this module, as the
backend registry does, costs nothing; nothing here may assume Keras's engine (the tensorflow,
keras_torch and keras_jax backends share it). It builds layers and maps weights only: loss and
optimizer are backends/_keras_model.py's, modes and timing each Keras backend's.
"""

from __future__ import annotations

import functools

import numpy as np

from harness.model.layers import Activation, BatchNorm, BusyWait, Conv2D, Dense, Dropout, Flatten, MaxPool2D
from harness.model.spin import SpinIdentity


def flat_to_keras(vector_or_rows: np.ndarray, hwc: tuple[int, int, int]) -> np.ndarray:
    """Reorder the last axis from NCHW flatten order (C, H, W) to Keras's (H, W, C)."""
    h, w, c = hwc
    lead = vector_or_rows.shape[:-1]
    return vector_or_rows.reshape(*lead, c, h, w).swapaxes(-3, -2).swapaxes(-2, -1).reshape(*lead, h * w * c)


def flat_to_torch(vector_or_rows: np.ndarray, hwc: tuple[int, int, int]) -> np.ndarray:
    """Inverse of flat_to_keras: (H, W, C) order back to (C, H, W)."""
    h, w, c = hwc
    lead = vector_or_rows.shape[:-1]
    return vector_or_rows.reshape(*lead, h, w, c).swapaxes(-1, -2).swapaxes(-2, -3).reshape(*lead, c * h * w)


@functools.cache
def _penalties_class(keras):
    ops = keras.ops

    class Penalties(keras.regularizers.Regularizer):
        """l1*sum|w| + l2*sum(w^2), each term computed when its factor is given, even at 0.0
        (Keras's L1L2 skips zero terms); the factors stay Python floats, exact in float64."""

        def __init__(self, l1: float | None, l2: float | None):
            self.l1, self.l2 = l1, l2

        def __call__(self, x):
            terms = []
            if self.l1 is not None:
                terms.append(self.l1 * ops.sum(ops.absolute(x)))
            if self.l2 is not None:
                terms.append(self.l2 * ops.sum(ops.square(x)))
            return sum(terms[1:], terms[0])

    return Penalties


def _regularizer(keras, layer, dtype: str | None):
    present = [factor is not None for factor in (layer.l1, layer.l2)]
    if all(present) or (any(present) and dtype == "float64"):  # see the module docstring
        return _penalties_class(keras)(layer.l1, layer.l2)
    if layer.l1 is not None:
        return keras.regularizers.L1(layer.l1)
    if layer.l2 is not None:
        return keras.regularizers.L2(layer.l2)
    return None


def _activation(layer) -> str | None:
    return None if layer.activation == "linear" else layer.activation


def _kernel_options(keras, layer, seed: int, dtype: str | None) -> dict:
    """Activation, L1/L2, a seeded default (glorot_uniform) initializer and the dtype of a
    dense/conv layer."""
    return {"activation": _activation(layer), "kernel_regularizer": _regularizer(keras, layer, dtype),
            "kernel_initializer": keras.initializers.GlorotUniform(seed=seed), "dtype": dtype}


@functools.cache
def _busywait_class(keras):
    class BusyWaitLayer(SpinIdentity, keras.layers.Layer):
        """The identity that spins a known time per call (harness.model.layers.BusyWait); in a
        tf.function the Python runs once, at tracing, so only eager steps pay it. Its dtype is
        the model's: a Keras layer casts a floating input to its own dtype."""

        def __init__(self, seconds: float, dtype: str | None):
            super().__init__(seconds)
            if dtype is not None:
                self.dtype_policy = dtype

        def call(self, x):
            return self.pass_through(x)

    return BusyWaitLayer


# Builders: (keras, layer, index, seed, dtype) -> a Keras layer whose variables and computation
# are in dtype: "float32", "float64" (parity's oracle), or None, Keras's default (float32).
BUILDERS = {
    Dense: lambda keras, layer, index, seed, dtype=None: keras.layers.Dense(
        layer.units, **_kernel_options(keras, layer, seed + index, dtype)),
    Conv2D: lambda keras, layer, index, seed, dtype=None: keras.layers.Conv2D(
        layer.filters, layer.kernel_size, layer.strides, layer.padding,
        **_kernel_options(keras, layer, seed + index, dtype)),
    MaxPool2D: lambda keras, layer, index, seed, dtype=None: keras.layers.MaxPooling2D(
        layer.pool_size, layer.effective_strides, layer.padding, dtype=dtype),
    Flatten: lambda keras, layer, index, seed, dtype=None: keras.layers.Flatten(dtype=dtype),
    Activation: lambda keras, layer, index, seed, dtype=None: keras.layers.Activation(layer.activation, dtype=dtype),
    Dropout: lambda keras, layer, index, seed, dtype=None: keras.layers.Dropout(
        layer.rate, seed=seed + index, dtype=dtype),
    BatchNorm: lambda keras, layer, index, seed, dtype=None: keras.layers.BatchNormalization(
        axis=-1, momentum=layer.momentum, epsilon=layer.epsilon, dtype=dtype),
    BusyWait: lambda keras, layer, index, seed, dtype=None: _busywait_class(keras)(layer.microseconds * 1e-6, dtype),
}


class Slot:
    """One canonical tensor <-> one Keras variable, with the layout conversion between them."""

    def __init__(self, name, variable, to_keras, to_canonical):
        self.name, self.variable = name, variable
        self.to_keras, self.to_canonical = to_keras, to_canonical


def _identity(array):
    return array


def weight_slots(spec_layers, keras_layers, shapes) -> list[Slot]:
    """The slots of every weight of a built model, keyed as backends/base.py's canonical layout;
    `shapes` is harness.model.spec.infer_shapes of the spec (which layers follow a flatten)."""
    slots = []
    for index, (layer, klayer) in enumerate(zip(spec_layers, keras_layers)):
        hwc = shapes.flattened_from[index]
        if isinstance(layer, Dense):
            if hwc is None:
                kernel_in, kernel_out = (lambda w: w.T), (lambda k: k.T)
            else:  # rows of the torch weight are in (C, H, W) order; Keras's in (H, W, C)
                kernel_in = functools.partial(lambda w, hwc: flat_to_keras(w, hwc).T, hwc=hwc)
                kernel_out = functools.partial(lambda k, hwc: flat_to_torch(k.T, hwc), hwc=hwc)
            slots += [Slot(f"{index}.weight", klayer.kernel, kernel_in, kernel_out),
                      Slot(f"{index}.bias", klayer.bias, _identity, _identity)]
        elif isinstance(layer, Conv2D):
            slots += [Slot(f"{index}.weight", klayer.kernel,
                           lambda w: w.transpose(2, 3, 1, 0), lambda k: k.transpose(3, 2, 0, 1)),
                      Slot(f"{index}.bias", klayer.bias, _identity, _identity)]
        elif isinstance(layer, BatchNorm):
            if hwc is None:
                vec_in = vec_out = _identity
            else:
                vec_in = functools.partial(flat_to_keras, hwc=hwc)
                vec_out = functools.partial(flat_to_torch, hwc=hwc)
            for name, variable in (("weight", klayer.gamma), ("bias", klayer.beta),
                                   ("running_mean", klayer.moving_mean), ("running_var", klayer.moving_variance)):
                slots.append(Slot(f"{index}.{name}", variable, vec_in, vec_out))
    return slots
