"""Keras 3 on the JAX engine (KERAS_BACKEND=jax): the spec as a keras.Sequential trained the way
Keras's own JAX trainer trains it, through pure functions of the variables' values.

The step (keras/src/backend/jax/trainer.py, JAXTrainer.train_step): the model's variables go in
as arrays, `model.stateless_call(trainable, non_trainable, x, training=True, return_losses=True)`
gives the logits, the updated non-trainable values (BatchNorm statistics, dropout's seed state)
and the regularizer penalties; jax.value_and_grad differentiates the loss; then
`optimizer.stateless_apply(optimizer_values, grads, trainable)` returns the updated values.
Modes:
- "eager": that step called as is: JAX dispatches its operations one by one (no jit).
- "compiled": the same step in jax.jit, which is what `jit_compile=True` (Keras's default on
  JAX) means: JAXTrainer.make_train_function jits its step.
Between steps the values live in the model (`_state`), as the trainer keeps them in its
state and syncs them into the Keras variables only when they are read (jax_state_sync); every
other method writes them back first (`_sync`).
Layers, weights, loss and optimizers are the other Keras backends' (backends/_keras_model.py and
backends/_keras_layers.py list the conventions: BN momentum and epsilon passed as the spec's, the
biased running variance left to parity, Adam's epsilon placement matched only for parity, L2 as
kernel_regularizer, NHWC flatten order permuted in the weights).
- Keras's engine: jax, for the whole process (backends/_keras_engine.py): in a process whose
  Keras runs on TensorFlow or torch this backend is unavailable, with that reason.
- Threads: XLA's CPU client sizes its intra-op pool from PJRT_NPROC when it is created (XLA_FLAGS
  has no thread count), so it is set before JAX's first computation; a different count once the
  client exists is refused, as the tensorflow backend refuses.
- Device: JAX's default device (the GPU when jaxlib has one) must be --device's kind; JAX_PLATFORMS
  chooses it before the first computation.
- float64 (SUPPORTS_FLOAT64, parity's oracle): JAX computes float64 only with x64 enabled, which
  is process-wide and changes JAX's default dtypes, so it is never set globally: a float64 model
  builds and runs everything inside jax.enable_x64(True) (`_scope`; jit caches key on it), and in
  Keras's float64 promotion (backends/_keras_model.py: without it ops.var and the loss of float64
  tensors come back float32 even with x64 on).
- graph_counts: as the jax backend's (backends/_jax_xla.py): the step's jaxpr, top-level and
  inlined, and the optimized HLO of the jitted step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np

from backends._jax_xla import configure_pool, count_hlo, count_jaxpr, count_jaxpr_inlined, thread_settings
from backends._keras_engine import import_keras, keras_availability
from backends._keras_model import KerasModel, keras_dropout_probe
from backends.base import Availability, Backend, GraphCount
from harness.errors import BackendUnavailable
from harness.model.spec import ModelSpec

ENGINE = "jax"
_PLATFORMS = {"cpu": "cpu", "cuda": "gpu"}  # --device -> jax.default_backend()


class KerasJaxModel(KerasModel):
    def __init__(self, backend: KerasJaxBackend, spec: ModelSpec, mode: str, dtype: str):
        self.jax = backend.jax
        self._x64 = dtype == "float64"
        super().__init__(backend, spec, mode, dtype)
        if [id(v) for v in self.net.trainable_variables] != [id(v) for v in self._trainable_variables]:
            raise RuntimeError("keras_jax: the model's trainable variables are not in the optimizer's order")
        self._variables = (self.net.trainable_variables, self.net.non_trainable_variables, self.optimizer.variables)
        self._state = None  # the values after the last step, when newer than the variables'
        self._step_fn = self._step if mode == "eager" else self.jax.jit(self._step)

    def _scope(self):
        if not self._x64:
            return contextlib.nullcontext()
        scope = contextlib.ExitStack()
        scope.enter_context(self.jax.enable_x64(True))
        scope.enter_context(super()._scope())  # Keras's promotion kept in float64 (_keras_model.py)
        return scope

    def _y(self, y):
        return self.keras.ops.convert_to_tensor(np.asarray(y, dtype=np.int32))  # int64 only exists with x64

    # -- the pure step and its state ------------------------------------------------------------

    def _values(self):
        if self._state is not None:
            return self._state
        return tuple([v.value for v in group] for group in self._variables)

    def _sync(self) -> None:
        """Write the values of the last steps into the Keras variables."""
        if self._state is not None:
            for group, values in zip(self._variables, self._state):
                for variable, value in zip(group, values):
                    variable.assign(value)
            self._state = None

    def _pure_loss(self, trainable, non_trainable, x, y, training):
        logits, non_trainable, penalties = self.net.stateless_call(trainable, non_trainable, x, training=training,
                                                                   return_losses=True)
        loss = self.loss_object(y, logits)
        return (self._add_penalties(loss, penalties) if penalties else loss), non_trainable

    def _step(self, state, x, y):
        trainable, non_trainable, optimizer_values = state
        (loss, non_trainable), grads = self.jax.value_and_grad(self._pure_loss, has_aux=True)(
            trainable, non_trainable, x, y, True)
        trainable, optimizer_values = self.optimizer.stateless_apply(optimizer_values, grads, trainable)
        return loss, (trainable, non_trainable, optimizer_values)

    # -- the Model interface ----------------------------------------------------------------------

    def get_weights(self):
        self._sync()
        return super().get_weights()

    def _load_weights(self, weights):
        self._sync()
        super()._load_weights(weights)

    def forward(self, x, training):
        self._sync()
        return super().forward(x, training)

    def layer_input(self, x, index):
        self._sync()
        return super().layer_input(x, index)

    def loss(self, x, y, training):
        self._sync()
        return super().loss(x, y, training)

    def gradients(self, x, y, training):
        self._sync()
        with self._scope():
            trainable, non_trainable, _ = self._values()
            (_, non_trainable), grads = self.jax.value_and_grad(self._pure_loss, has_aux=True)(
                trainable, non_trainable, *self._tensors(x, y), training)
            for variable, value in zip(self._variables[1], non_trainable):  # BN statistics, as a train call
                variable.assign(value)
            return self._canonical_gradients(grads)

    def apply_gradients(self, gradients):
        with self._scope():
            trainable, non_trainable, optimizer_values = self._values()
            trainable, optimizer_values = self.optimizer.stateless_apply(
                optimizer_values, self._keras_gradients(gradients), trainable)
            self._state = (trainable, non_trainable, optimizer_values)

    def train_step(self, x, y):
        with self._scope():
            loss, self._state = self._step_fn(self._values(), *self._tensors(x, y))
            return float(loss)

    def timed_step(self, x, y) -> Callable[[], None]:
        with self._scope():
            tx, ty = self._tensors(x, y)

        def step() -> None:
            with self._scope():
                loss, self._state = self._step_fn(self._values(), tx, ty)
                loss.block_until_ready()  # waits for the device to finish

        return step

    def graph_counts(self, x, y) -> list[GraphCount]:
        """The step's jaxpr (top-level: what the eager step dispatches; inlined: what jit hands
        XLA) and the optimized HLO XLA compiles for the jitted step (backends/_jax_xla.py)."""
        self._sync()
        with self._scope():
            arguments = (self._values(), *self._tensors(x, y))
            jaxpr = self.jax.make_jaxpr(self._step)(*arguments).jaxpr
            hlo = self.jax.jit(self._step).lower(*arguments).compile().as_text()
        return [count_jaxpr(jaxpr), count_jaxpr_inlined(jaxpr), count_hlo(hlo)]


class KerasJaxBackend(Backend):
    name = "keras_jax"
    MODES = ("eager", "compiled")
    DEVICES = ("cpu", "cuda")
    LOAD_ORDER = 40
    DISTRIBUTIONS = ("keras", "jax", "jaxlib")
    COLOR = "#81b29a"
    SUPPORTS_FLOAT64 = True
    BN_BIASED_RUNNING_VAR = True
    IDIOMS = {"l2_style": ("penalty",), "optimizer_impl": ("stock", "matched")}
    TIMING_BUDGET_S = 120.0  # a Keras eager step and start, as the tensorflow backend's
    KERAS_ENGINE = ENGINE  # the one Keras engine of its process (backends/_keras_engine.py)

    @classmethod
    def availability(cls) -> Availability:
        return keras_availability(ENGINE, "jax", "jax")

    def _configure(self, device: str, threads: int | None) -> None:
        import jax
        from jax._src import xla_bridge

        self.jax = jax
        if threads is not None:
            configure_pool(threads, xla_bridge.backends_are_initialized())  # module docstring: Threads
        self.keras = import_keras(ENGINE)
        if jax.default_backend() != _PLATFORMS[device]:
            raise BackendUnavailable(f"--device {device}: JAX computes on {jax.default_backend()!r} here "
                                     f"(JAX_PLATFORMS chooses it)")
        self.device = device

    def settings(self) -> dict[str, object]:
        return {
            "framework": self.name,
            "version": self.keras.__version__,
            "keras_engine": ENGINE,
            "jax": self.jax.__version__,
            "device": self.device,
            **thread_settings(),
        }

    def _build(self, spec: ModelSpec, mode: str, dtype: str) -> KerasJaxModel:
        return KerasJaxModel(self, spec, mode, dtype)

    def dropout_probe(self, rate, x, training):
        return keras_dropout_probe(self.keras, rate, x, training)
