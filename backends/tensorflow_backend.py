"""TensorFlow / Keras 3 backend: builds a ModelSpec as a keras.Sequential and trains it.

Modes: "eager" (GradientTape, eager execution), "compiled" (the same step in tf.function) and
"xla" (tf.function(jit_compile=True)). The model is stock Keras layers; conventions translated:
- Layers and weights (kernel layouts, flatten order, regularizers, seeded initialization) are
  built and mapped to the canonical (PyTorch) layout of backends/base.py in
  backends/_keras_layers.py; the loss, the optimizers (Adam's epsilon placement, float64
  hyperparameters), BatchNorm's biased running variance and L2 in backends/_keras_model.py, which
  the other Keras backends (keras_torch, keras_jax) share. Each docstring lists its conventions.
- Keras's engine: TensorFlow. A process holds one Keras engine (backends/_keras_engine.py): in a
  process whose Keras runs on torch or jax, this backend is unavailable, with that reason.
- Dropout(rate=0) returns its input (keras Dropout.call checks rate > 0): no graph node.
- TF32 execution is turned off (float32 means float32).
TF_CPP_MIN_LOG_LEVEL defaults to 2 (warnings and errors only) unless the caller set it.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

from backends._keras_engine import engine_conflict, import_keras
from backends._keras_model import KerasModel, keras_dropout_probe
from backends.base import Availability, Backend, GraphCount
from harness.errors import BackendUnavailable
from harness.model.spec import ModelSpec

ENGINE = "tensorflow"


def _import_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    keras = import_keras(ENGINE)
    import tensorflow as tf

    return tf, keras


class TensorFlowModel(KerasModel):
    def __init__(self, backend: TensorFlowBackend, spec: ModelSpec, mode: str, dtype: str):
        super().__init__(backend, spec, mode, dtype)
        self.tf = tf = backend.tf
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

    def _add_penalties(self, loss, penalties):
        return loss + self.tf.add_n(penalties)

    def _step(self, x, y):
        with self.tf.GradientTape() as tape:
            loss = self._loss(x, y, training=True)
        grads = tape.gradient(loss, self._trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self._trainable_variables))
        return loss

    def gradients(self, x, y, training):
        tx, ty = self._tensors(x, y)
        with self.tf.GradientTape() as tape:
            loss = self._loss(tx, ty, training=training)
        return self._canonical_gradients(tape.gradient(loss, self._trainable_variables))

    def apply_gradients(self, gradients):
        self.optimizer.apply_gradients(zip(self._keras_gradients(gradients), self._trainable_variables))

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
    KERAS_ENGINE = ENGINE  # the one Keras engine of its process (backends/_keras_engine.py)

    @classmethod
    def availability(cls) -> Availability:
        conflict = engine_conflict(ENGINE)  # before importing keras, which would pick this process's engine
        if conflict:
            return Availability(False, conflict)
        if importlib.util.find_spec("tensorflow") is None:
            return Availability(False, "tensorflow is not installed (pip install -e \".[tf]\")")
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
        return keras_dropout_probe(self.keras, rate, x, training)

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
