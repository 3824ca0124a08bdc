"""The part of a Keras 3 model that does not depend on Keras's engine (tensorflow, torch, jax):
building the keras.Sequential, its loss and optimizer, moving weights, and the forward pass.
KerasModel is subclassed by each Keras backend (backends/tensorflow_backend.py,
keras_torch_backend.py, keras_jax_backend.py), which adds what each engine does its own way:
gradients, the training step and its modes, graph counts.

Conventions translated here (the layers' own are in backends/_keras_layers.py):
- BatchNorm: moving_variance is updated with the biased batch variance (PyTorch: unbiased), on
  every engine. Not hidden here; harness/parity/checks.py accounts for it (BN_BIASED_RUNNING_VAR).
- Adam: Keras adds epsilon to sqrt(v) ("epsilon hat"), PyTorch to sqrt(v_hat). With the spec's
  optimizer_impl "stock" (timing, what Keras users run) this is keras.optimizers.Adam with the
  spec's epsilon, in Keras's placement. With "matched" (parity) TorchEpsilonAdam scales epsilon
  by sqrt(1 - beta_2^t), so the update is mathematically PyTorch's. SGD with momentum needs
  nothing: Keras's m <- mu*m - lr*g is PyTorch's buffer times -lr at constant lr.
- L2: Keras's one coupled idiom, kernel_regularizer, whatever the spec's l2_style (the torch
  optimizer's weight_decay = 2*l2 is the same objective; Keras optimizers' own weight_decay is
  decoupled, AdamW-style, a different regularizer and never used here).
- float64 (parity's oracle): every layer, the loss and the optimizer's slots are float64. Trap:
  Keras rounds an optimizer's Python-float hyperparameters to float32 even for float64 variables
  (the learning rate lives in a floatx variable; ops.cast(0.999, "float64") converts through a
  float32 tensor), which moved a float64 Adam step 7e-6 off PyTorch's float64 one (1 - beta_2 at
  step 1) and SGD's 2e-8. The float64 optimizer gets them as numpy float64 scalars (a float
  subclass, as Keras requires), and the learning rate as a callable returning one.
  Trap on torch and JAX: Keras's type promotion (keras/src/backend/common/dtypes.py,
  _lattice_result_type) maps every float64 result type to float32 on any engine but TensorFlow
  ("to be aligned with JAX's default behaviour", its BIT64_TO_BIT32_DTYPE table), so ops.matmul,
  ops.var and the cross-entropy of two float64 tensors return float32 there: a float64 Dense
  differed from numpy's float64 by 4e-7 instead of 2e-15. A float64 model therefore runs every
  computation in `float64_promotion()`, which keeps float64 as float64 in that table while it
  runs (on TensorFlow the entry already is float64). A float32 model never meets float64 arrays,
  so the table's entry does not concern it.
Constraints: keras is never imported here (the backend passes its own in), and nothing here may
assume an engine: arrays go in and out through keras.ops.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import replace

import numpy as np

from backends._keras_layers import BUILDERS, weight_slots
from backends.base import Model, Weights, layer_builder
from harness.model.spec import ModelSpec, infer_shapes


@contextlib.contextmanager
def float64_promotion():
    """Keras's type promotion keeps float64 as float64 while this runs (module docstring: float64).
    The entry is restored afterwards, however the block ends; nested uses restore in order."""
    from keras.src.backend.common import dtypes  # Keras's private promotion table: see the docstring

    table = dtypes.BIT64_TO_BIT32_DTYPE
    saved = table["float64"]
    table["float64"] = "float64"
    try:
        yield
    finally:
        table["float64"] = saved


_HYPERPARAMETERS = ("lr", "momentum", "beta_1", "beta_2", "epsilon")  # harness.model.spec.Optimizer's numbers


@functools.cache
def _torch_epsilon_adam_class(keras):
    ops = keras.ops

    class TorchEpsilonAdam(keras.optimizers.Adam):
        """Keras Adam with PyTorch's epsilon placement (added to sqrt(v_hat), not sqrt(v)).

        Keras: p -= alpha * m / (sqrt(v) + eps), alpha = lr * sqrt(1 - b2^t) / (1 - b1^t).
        With eps * sqrt(1 - b2^t) in place of eps this equals PyTorch's
        p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). Otherwise Keras's code.
        """

        def update_step(self, gradient, variable, learning_rate):
            lr = ops.cast(learning_rate, variable.dtype)
            gradient = ops.cast(gradient, variable.dtype)
            local_step = ops.cast(self.iterations + 1, variable.dtype)
            beta_1_power = ops.power(ops.cast(self.beta_1, variable.dtype), local_step)
            beta_2_power = ops.power(ops.cast(self.beta_2, variable.dtype), local_step)
            m = self._momentums[self._get_variable_index(variable)]
            v = self._velocities[self._get_variable_index(variable)]
            alpha = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
            # Cast, not passed as numbers: Keras on torch converts a Python (or numpy) float operand
            # to floatx, float32, before a float64 multiply (9e-9 off a float64 Adam step).
            one_minus_beta_1 = ops.cast(1 - self.beta_1, variable.dtype)
            one_minus_beta_2 = ops.cast(1 - self.beta_2, variable.dtype)
            self.assign_add(m, ops.multiply(ops.subtract(gradient, m), one_minus_beta_1))
            self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), one_minus_beta_2))
            epsilon = ops.multiply(ops.cast(self.epsilon, variable.dtype), ops.sqrt(1 - beta_2_power))
            self.assign_sub(variable, ops.divide(ops.multiply(m, alpha), ops.add(ops.sqrt(v), epsilon)))

    return TorchEpsilonAdam


class KerasModel(Model):
    """A spec built as a keras.Sequential with its loss and optimizer, on the backend's engine.

    A subclass implements the engine's gradients, step, modes and graph counts; `_scope` is the
    context every computation runs in (float64_promotion for a float64 model, and JAX's x64 switch)."""

    def __init__(self, backend, spec: ModelSpec, mode: str, dtype: str):
        super().__init__(spec, mode)
        self.keras = keras = backend.keras
        self.dtype = np.dtype(dtype)  # of the variables, the computation and every float array out
        with self._scope():
            self._layers = [layer_builder(BUILDERS, layer, backend.name)(keras, layer, i, spec.seed, dtype)
                            for i, layer in enumerate(spec.layers)]
            self.net = keras.Sequential([keras.Input(shape=spec.input_shape, dtype=dtype), *self._layers])
            self.loss_object = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=dtype)
            self._slots = weight_slots(spec.layers, self._layers, infer_shapes(spec))
            self._trainable = [slot for slot in self._slots if slot.variable.trainable]
            self._trainable_variables = [slot.variable for slot in self._trainable]
            self.optimizer = self._make_optimizer()
            self.optimizer.build(self._trainable_variables)

    def _scope(self):
        """The context in which this model's arrays are made and used: a float64 model's keeps
        Keras's type promotion in float64 (module docstring)."""
        return float64_promotion() if self.dtype == np.float64 else contextlib.nullcontext()

    def _make_optimizer(self):
        opt, lr = self.spec.optimizer, self.spec.optimizer.lr
        if self.dtype == np.float64:  # see the module docstring: float64
            opt = replace(opt, **{name: np.float64(getattr(opt, name)) for name in _HYPERPARAMETERS})
            lr = functools.partial(np.float64, opt.lr)
        if opt.type == "sgd":
            return self.keras.optimizers.SGD(learning_rate=lr, momentum=opt.momentum)
        matched = self.spec.optimizer_impl == "matched"
        adam = _torch_epsilon_adam_class(self.keras) if matched else self.keras.optimizers.Adam
        return adam(learning_rate=lr, beta_1=opt.beta_1, beta_2=opt.beta_2, epsilon=opt.epsilon)

    # -- arrays in and out ----------------------------------------------------------------------

    def _numpy(self, tensor) -> np.ndarray:
        return np.asarray(self.keras.ops.convert_to_numpy(tensor), dtype=self.dtype)

    def _x(self, x):
        # dtype named: Keras on torch converts a float64 array without one to floatx (float32)
        return self.keras.ops.convert_to_tensor(np.asarray(x, dtype=self.dtype), dtype=self.dtype.name)

    def _y(self, y):
        return self.keras.ops.convert_to_tensor(np.asarray(y, dtype=np.int64))

    def _tensors(self, x, y):
        return self._x(x), self._y(y)

    # -- weights ------------------------------------------------------------------------------

    def get_weights(self) -> Weights:
        with self._scope():
            return {slot.name: np.array(slot.to_canonical(self._numpy(slot.variable.value)), dtype=self.dtype)
                    for slot in self._slots}

    def _load_weights(self, weights: Weights) -> None:
        with self._scope():
            for slot in self._slots:
                slot.variable.assign(slot.to_keras(np.asarray(weights[slot.name], dtype=self.dtype)))

    # -- computation ----------------------------------------------------------------------------

    def _add_penalties(self, loss, penalties):
        """The loss plus the kernel regularizers' penalties."""
        return functools.reduce(self.keras.ops.add, penalties, loss)

    def _loss(self, x, y, training: bool):
        loss = self.loss_object(y, self.net(x, training=training))
        penalties = self.net.losses  # the kernel regularizers, computed on access
        return self._add_penalties(loss, penalties) if penalties else loss

    def forward(self, x, training):
        with self._scope():
            return self._numpy(self.net(self._x(x), training=training))

    def layer_input(self, x, index):
        with self._scope():
            found = self._x(x)
            for layer in self._layers[:index]:
                found = layer(found, training=False)
            return self._numpy(found)

    def loss(self, x, y, training):
        with self._scope():
            return float(self._numpy(self._loss(*self._tensors(x, y), training=training)))

    def _canonical_gradients(self, grads) -> Weights:
        return {slot.name: np.asarray(slot.to_canonical(self._numpy(g)), dtype=self.dtype)
                for slot, g in zip(self._trainable, grads)}

    def _keras_gradients(self, gradients: Weights) -> list:
        return [self.keras.ops.convert_to_tensor(slot.to_keras(np.asarray(gradients[slot.name], dtype=self.dtype)),
                                                 dtype=self.dtype.name) for slot in self._trainable]


def keras_dropout_probe(keras, rate: float, x: np.ndarray, training: bool) -> np.ndarray:
    """Keras's own Dropout layer at `rate` applied to x (Backend.dropout_probe), on any engine."""
    layer = keras.layers.Dropout(rate, seed=1234)
    return np.asarray(keras.ops.convert_to_numpy(layer(keras.ops.convert_to_tensor(np.asarray(x, np.float32)),
                                                       training=training)))
