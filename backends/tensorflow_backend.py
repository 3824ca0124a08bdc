"""TensorFlow / Keras 3 backend: builds a ModelSpec as a keras.Sequential and trains it.

Modes: "eager" (GradientTape, eager execution), "compiled" (the same step in tf.function) and
"xla" (tf.function(jit_compile=True)). The model is stock Keras layers; conventions translated:
- Layers and weights (kernel layouts, flatten order, regularizers, seeded initialization) are
  built and mapped to the canonical (PyTorch) layout of backends/base.py in
  backends/_keras_layers.py, whose docstring lists their conventions.
- BatchNorm: moving_variance is updated with the biased batch variance (PyTorch: unbiased).
  Not hidden here; harness/parity/checks.py accounts for it.
- Adam: Keras adds epsilon to sqrt(v) ("epsilon hat"), PyTorch to sqrt(v_hat). With the spec's
  optimizer_impl "stock" (timing, what Keras users run) this is keras.optimizers.Adam with the
  spec's epsilon, in Keras's placement. With "matched" (parity) TorchEpsilonAdam scales epsilon
  by sqrt(1 - beta_2^t), so the update is mathematically PyTorch's. SGD with momentum needs
  nothing: Keras's m <- mu*m - lr*g is PyTorch's buffer times -lr at constant lr.
- L2: Keras's one coupled idiom, kernel_regularizer, whatever the spec's l2_style (the torch
  optimizer's weight_decay = 2*l2 is the same objective; Keras optimizers' own weight_decay is
  decoupled, AdamW-style, a different regularizer and never used here).
- Dropout(rate=0) returns its input (keras Dropout.call checks rate > 0): no graph node.
- TF32 execution is turned off (float32 means float32).
- float64 (SUPPORTS_FLOAT64, parity's oracle): every layer, the loss and the optimizer's slots
  are float64, and arrays cross the interface as float64. Trap: Keras rounds an optimizer's
  Python-float hyperparameters to float32 even for float64 variables (the learning rate lives in
  a floatx variable; ops.cast(0.999, "float64") converts through a float32 tensor), which moved
  a float64 Adam step 7e-6 off PyTorch's float64 one (1 - beta_2 at step 1) and SGD's 2e-8. The
  float64 optimizer gets them as numpy float64 scalars (a float subclass, as Keras requires),
  and the learning rate as a callable returning one.
TF_CPP_MIN_LOG_LEVEL defaults to 2 (warnings and errors only) unless the caller set it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from backends._keras_layers import BUILDERS, weight_slots
from backends.base import Availability, Backend, GraphCount, Model, Weights, layer_builder
from harness.errors import BackendUnavailable
from harness.model.spec import ModelSpec, infer_shapes

_HYPERPARAMETERS = ("lr", "momentum", "beta_1", "beta_2", "epsilon")  # harness.model.spec.Optimizer's numbers


def _import_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    return tf, keras


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
            self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
            self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
            epsilon = ops.multiply(ops.cast(self.epsilon, variable.dtype), ops.sqrt(1 - beta_2_power))
            self.assign_sub(variable, ops.divide(ops.multiply(m, alpha), ops.add(ops.sqrt(v), epsilon)))

    return TorchEpsilonAdam


class TensorFlowModel(Model):
    def __init__(self, backend: TensorFlowBackend, spec: ModelSpec, mode: str, dtype: str):
        super().__init__(spec, mode)
        tf, keras = backend.tf, backend.keras
        self.tf, self.keras = tf, keras
        self.dtype = np.dtype(dtype)  # of the variables, the computation and every float array out
        self._layers = [layer_builder(BUILDERS, layer, backend.name)(keras, layer, i, spec.seed, dtype)
                        for i, layer in enumerate(spec.layers)]
        self.net = keras.Sequential([keras.Input(shape=spec.input_shape, dtype=dtype), *self._layers])
        self.loss_object = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=dtype)
        self._slots = weight_slots(spec.layers, self._layers, infer_shapes(spec))
        self._trainable = [slot for slot in self._slots if slot.variable.trainable]
        self._trainable_variables = [slot.variable for slot in self._trainable]
        self.optimizer = self._make_optimizer()
        self.optimizer.build(self._trainable_variables)
        if mode == "eager":
            self._step_fn = self._train_step_fn = self._step
        else:
            self._step_fn = tf.function(self._step, jit_compile=(mode == "xla"))
            # train_step's batches vary in size (an epoch ends with a smaller batch): a batch
            # dimension of None traces once, where the static-shape _step_fn would trace again for
            # every new size (~0.4 s each on 2 cores). timed_step keeps _step_fn: static shapes
            # are what timing measures.
            signature = (tf.TensorSpec((None, *spec.input_shape), dtype), tf.TensorSpec((None,), tf.int64))
            self._train_step_fn = tf.function(self._step, jit_compile=(mode == "xla"), input_signature=signature)

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

    # -- weights ------------------------------------------------------------------------------

    def get_weights(self) -> Weights:
        return {slot.name: np.array(slot.to_canonical(np.asarray(slot.variable.numpy())), dtype=self.dtype)
                for slot in self._slots}

    def _load_weights(self, weights: Weights) -> None:
        for slot in self._slots:
            slot.variable.assign(slot.to_keras(np.asarray(weights[slot.name], dtype=self.dtype)))

    # -- computation ----------------------------------------------------------------------------

    def _loss(self, x, y, training: bool):
        loss = self.loss_object(y, self.net(x, training=training))
        penalties = self.net.losses  # the kernel regularizers, computed on access
        if penalties:
            loss = loss + self.tf.add_n(penalties)
        return loss

    def _step(self, x, y):
        with self.tf.GradientTape() as tape:
            loss = self._loss(x, y, training=True)
        grads = tape.gradient(loss, self._trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self._trainable_variables))
        return loss

    def _x(self, x):
        return self.tf.constant(np.asarray(x, dtype=self.dtype))

    def _tensors(self, x, y):
        return self._x(x), self.tf.constant(np.asarray(y, dtype=np.int64))

    def forward(self, x, training):
        return self.net(self._x(x), training=training).numpy()

    def layer_input(self, x, index):
        found = self._x(x)
        for layer in self._layers[:index]:
            found = layer(found, training=False)
        return found.numpy()

    def loss(self, x, y, training):
        return float(self._loss(*self._tensors(x, y), training=training))

    def gradients(self, x, y, training):
        tx, ty = self._tensors(x, y)
        with self.tf.GradientTape() as tape:
            loss = self._loss(tx, ty, training=training)
        grads = tape.gradient(loss, self._trainable_variables)
        return {slot.name: np.asarray(slot.to_canonical(g.numpy()), dtype=self.dtype)
                for slot, g in zip(self._trainable, grads)}

    def apply_gradients(self, gradients):
        values = [self.tf.constant(slot.to_keras(np.asarray(gradients[slot.name], dtype=self.dtype)))
                  for slot in self._trainable]
        self.optimizer.apply_gradients(zip(values, self._trainable_variables))

    def train_step(self, x, y):
        return float(self._train_step_fn(*self._tensors(x, y)))

    def timed_step(self, x, y) -> Callable[[], None]:
        tx, ty = self._tensors(x, y)

        def step() -> None:
            self._step_fn(tx, ty).numpy()  # a host read: waits for the device to finish

        return step

    def graph_counts(self, x, y) -> list[GraphCount]:
        concrete = self.tf.function(self._step).get_concrete_function(*self._tensors(x, y))
        ops: dict[str, int] = {}
        for op in concrete.graph.get_operations():
            ops[op.type] = ops.get(op.type, 0) + 1
        return [GraphCount("tf_function", sum(ops.values()), dict(sorted(ops.items())))]


class TensorFlowBackend(Backend):
    name = "tensorflow"
    MODES = ("eager", "compiled", "xla")
    DEVICES = ("cpu", "cuda")
    LOAD_ORDER = 10
    DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "keras")
    COLOR = "#2e86ab"
    SUPPORTS_FLOAT64 = True
    HAS_REFERENCE_LOOP = True
    BN_BIASED_RUNNING_VAR = True
    IDIOMS = {"l2_style": ("penalty",), "optimizer_impl": ("stock", "matched")}
    # On a 2-core AMD EPYC a Keras eager worker spent 13-17 s before its first round (import,
    # building and warming 8 instances of each arm) and its mlp step was 45-75 ms, so 60 s held
    # too few rounds: a 2% slowdown was detected in 3 of 20 calibration sessions at 60 s, 14-17
    # of 20 at 120 s (README: How the numbers can be trusted). On a 2-core Intel Xeon (17 ms
    # step, 6 s start) the same calibration stopped at precision after 40-52 s and detected 20 of
    # 20: the budget is a cap.
    TIMING_BUDGET_S = 120.0

    @classmethod
    def availability(cls) -> Availability:
        try:
            _, keras = _import_tensorflow()
        except Exception as exc:  # a broken install raises more than ImportError
            return Availability(False, f"tensorflow is not importable: {exc}")
        if not keras.__version__.startswith("3."):
            return Availability(False, f"Keras 3 is required, found keras {keras.__version__}")
        return Availability(True)

    def _configure(self, device: str, threads: int | None) -> None:
        tf, keras = _import_tensorflow()
        self.tf, self.keras = tf, keras
        gpus = tf.config.list_physical_devices("GPU")
        if device == "cuda" and not gpus:
            raise BackendUnavailable("--device cuda: this TensorFlow build sees no GPU")
        try:
            if device == "cpu" and gpus:
                tf.config.set_visible_devices([], "GPU")
            if threads is not None:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
        except RuntimeError:
            # Thread pools are fixed once TensorFlow has run anything in this process.
            if threads is not None and tf.config.threading.get_intra_op_parallelism_threads() != threads:
                raise RuntimeError("TensorFlow was already initialized in this process with other settings") from None
        tf.config.experimental.enable_tensor_float_32_execution(False)
        tf.get_logger().setLevel("ERROR")  # retracing notices: every arm has its own tf.function
        self.device = device

    def settings(self) -> dict[str, object]:
        tf = self.tf
        return {
            "framework": self.name,
            "version": tf.__version__,
            "keras": self.keras.__version__,
            "device": self.device,
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),  # 0: all cores
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "tf32": tf.config.experimental.tensor_float_32_execution_enabled(),
            "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on for x86 CPUs)"),
        }

    def _build(self, spec: ModelSpec, mode: str, dtype: str) -> TensorFlowModel:
        return TensorFlowModel(self, spec, mode, dtype)

    def dropout_probe(self, rate, x, training):
        layer = self.keras.layers.Dropout(rate, seed=1234)
        return np.asarray(layer(self.tf.constant(np.asarray(x, dtype=np.float32)), training=training))

    def reference_step(self, x, y) -> Callable[[], None]:
        """The mlp preset as a Keras user writes a custom loop: keras.Sequential, GradientTape,
        stock SGD, eager (the harness's eager step does the same work)."""
        tf, keras = self.tf, self.keras
        model = keras_mlp()
        optimizer = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        tx, ty = tf.constant(x), tf.constant(y)

        def step() -> None:
            with tf.GradientTape() as tape:
                loss = loss_fn(ty, model(tx, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            loss.numpy()  # a host read: waits for the device to finish

        return step


def keras_mlp():
    """The mlp preset (784-512-256-10, ReLU, dropout 0.2) as stock Keras layers (also used by
    the keras.fit benchmark), initialized and seeded per layer: no global reseeding."""
    _, keras = _import_tensorflow()

    def dense(units: int, seed: int, **options):
        return keras.layers.Dense(units, kernel_initializer=keras.initializers.GlorotUniform(seed=seed), **options)

    return keras.Sequential([
        keras.Input(shape=(784,)),
        dense(512, 0, activation="relu"), keras.layers.Dropout(0.2, seed=1),
        dense(256, 2, activation="relu"), keras.layers.Dropout(0.2, seed=3),
        dense(10, 4),
    ])
