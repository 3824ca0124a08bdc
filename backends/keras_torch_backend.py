"""Keras 3 on the torch engine (KERAS_BACKEND=torch): the spec as a keras.Sequential whose
variables are torch Parameters, trained as Keras's own torch trainer trains it.

Modes (keras/src/backend/torch/trainer.py, TorchTrainer.train_step and make_train_function):
- "eager": the step Keras's torch trainer runs: clear the variables' .grad, forward and loss
  (regularizer penalties included), loss.backward(), then optimizer.apply(grads) under
  torch.no_grad() (Keras's torch optimizers update the Parameters in place).
- "compiled": that same step in torch.compile, which is what `jit_compile=True` means for Keras
  on torch (make_train_function wraps its step in torch.compile). Keras layers and optimizers
  break dynamo's graph in places, so the first step compiles for tens of seconds on 2 cores and
  later ones gain little; it is what a Keras-on-torch user gets, including this trap: every Keras
  layer runs the same __call__/forward code objects, which dynamo guards on the layer's type and
  state, so a model recompiles them layer after layer, and past dynamo's recompile_limit (8) a
  frame runs eagerly inside the compiled step (a warning says so). The limit is left at torch's
  default, as a Keras user has it: raising it compiled every one of a percall arm's 128 Dropout
  copies, minutes per worker process. One deviation: dynamo marks a size that changed between
  compilations dynamic ("automatic dynamic shapes"); with a second model in the process (a timing
  worker's arms, parity) inductor then failed on the cnn's symbolic shapes ("cannot determine
  truth value of Relational: 1 < s69", torch 2.13), so the step compiles with dynamic=False:
  every shape specialized.
Layers, weights, loss and optimizers are the other Keras backends' (backends/_keras_model.py and
backends/_keras_layers.py list the conventions: BN momentum and epsilon passed as the spec's, the
biased running variance left to parity, Adam's epsilon placement matched only for parity, L2 as
kernel_regularizer, NHWC flatten order permuted in the weights).
- Keras's engine: torch, for the whole process (backends/_keras_engine.py): in a process whose
  Keras runs on TensorFlow or JAX this backend is unavailable, with that reason.
- Threads: torch.set_num_threads (Keras on torch computes with torch's own kernels).
- Device: Keras on torch picks one device for the process at its import (KERAS_TORCH_DEVICE, else
  the GPU whenever torch sees one): set from --device before keras is imported; a process whose
  Keras already chose another device refuses (BackendUnavailable).
- TF32 off, as in the torch backend (float32 means float32).
- float64 (SUPPORTS_FLOAT64, parity's oracle). Trap: Keras 3.15 on torch builds float64
  variables but computes some ops in float32: its type promotion maps float64 to float32
  (keras.backend.result_type("float64", "float64") is "float32"), so ops.matmul casts both float64
  operands to float32 (a float64 Dense differed from numpy by 4e-7). A float64 model runs in
  Keras's float64 promotion (`_scope`, backends/_keras_model.py), which keeps it float64.
- graph_counts: the autograd graph of one step's loss (backward nodes and AccumulateGrad), as the
  torch backend counts it; dynamo's graphs of Keras code are not counted.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from backends._keras_engine import import_keras, keras_availability
from backends._keras_model import KerasModel, keras_dropout_probe
from backends.base import Availability, Backend, GraphCount
from harness.errors import BackendUnavailable
from harness.model.spec import ModelSpec

ENGINE = "torch"
_DEVICE_VARIABLE = "KERAS_TORCH_DEVICE"


class KerasTorchModel(KerasModel):
    def __init__(self, backend: KerasTorchBackend, spec: ModelSpec, mode: str, dtype: str):
        super().__init__(backend, spec, mode, dtype)
        self.torch = torch = backend.torch
        self._parameters = [variable.value for variable in self._trainable_variables]  # torch Parameters
        self._step_fn = self._step if mode == "eager" else torch.compile(self._step, dynamic=False)

    def _backward(self, x, y, training: bool):
        """The loss, after backward(): each trainable Parameter's .grad holds its gradient."""
        for parameter in self._parameters:
            parameter.grad = None  # what torch.nn.Module.zero_grad() does (Keras's trainer calls it)
        loss = self._loss(x, y, training=training)
        loss.backward()
        return loss

    def _step(self, x, y):
        loss = self._backward(x, y, training=True)
        with self.torch.no_grad():
            self.optimizer.apply([parameter.grad for parameter in self._parameters], self._trainable_variables)
        return loss.detach()

    def gradients(self, x, y, training):
        with self._scope():
            self._backward(*self._tensors(x, y), training=training)
            return self._canonical_gradients([parameter.grad for parameter in self._parameters])

    def apply_gradients(self, gradients):
        with self._scope(), self.torch.no_grad():
            self.optimizer.apply(self._keras_gradients(gradients), self._trainable_variables)

    def train_step(self, x, y):
        with self._scope():
            return float(self._step_fn(*self._tensors(x, y)))

    def timed_step(self, x, y) -> Callable[[], None]:
        tx, ty = self._tensors(x, y)

        def step() -> None:
            self._step_fn(tx, ty).item()  # a host read: waits for the device to finish

        return step

    def graph_counts(self, x, y) -> list[GraphCount]:
        from backends.torch_backend import _count_autograd

        return [_count_autograd(self._loss(*self._tensors(x, y), training=True))]


class KerasTorchBackend(Backend):
    name = "keras_torch"
    MODES = ("eager", "compiled")
    DEVICES = ("cpu", "cuda")
    LOAD_ORDER = 30
    DISTRIBUTIONS = ("keras", "torch")
    COLOR = "#e07a5f"
    SUPPORTS_FLOAT64 = True  # in Keras's float64 promotion (module docstring)
    BN_BIASED_RUNNING_VAR = True
    IDIOMS = {"l2_style": ("penalty",), "optimizer_impl": ("stock", "matched")}
    TIMING_BUDGET_S = 120.0  # a Keras eager step and start, as the tensorflow backend's
    # torch.compile of a Keras step: every copy of a layer runs the same Keras code objects, so the
    # doses share dynamo's recompile limit (8); which copies run compiled and which eagerly depends
    # on the order the doses were built and called in, and interleaved doses recompile inside timed
    # rounds. Measured on 2 cores: a worker process of the 128-copy doses compiled for ~189 s, and
    # two processes' slopes differed by milliseconds per call (CI ±2.8 ms after 2 processes;
    # with 0-32 copies ±2.7 ms after 3). No per-call cost is in such a slope.
    PERCALL_UNMEASURABLE = {"compiled": "Keras on torch.compile: the copies share dynamo's recompile limit, so "
                                        "which of them run compiled depends on the order they were built in; "
                                        "the dose-response slope is no per-call cost (README: Backends)"}
    KERAS_ENGINE = ENGINE  # the one Keras engine of its process (backends/_keras_engine.py)

    @classmethod
    def availability(cls) -> Availability:
        return keras_availability(ENGINE, "torch", "jax")

    def _configure(self, device: str, threads: int | None) -> None:
        import torch

        self.torch = torch
        if threads is not None:
            torch.set_num_threads(threads)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        if device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable("--device cuda: this torch build sees no CUDA GPU")
        if "keras" not in sys.modules:
            os.environ[_DEVICE_VARIABLE] = device  # read once, at keras's import (module docstring)
        self.keras = import_keras(ENGINE)
        from keras.src.backend.torch.core import get_device

        if get_device() != device:
            raise BackendUnavailable(f"--device {device}: Keras on torch already places its variables on "
                                     f"{get_device()!r} in this process")
        self.device = device

    def settings(self) -> dict[str, object]:
        torch = self.torch
        return {
            "framework": self.name,
            "version": self.keras.__version__,
            "keras_engine": ENGINE,
            "torch": torch.__version__,
            "device": self.device,
            "intra_op_threads": torch.get_num_threads(),
            "tf32": torch.backends.cuda.matmul.allow_tf32,
        }

    def _build(self, spec: ModelSpec, mode: str, dtype: str) -> KerasTorchModel:
        return KerasTorchModel(self, spec, mode, dtype)

    def dropout_probe(self, rate, x, training):
        return keras_dropout_probe(self.keras, rate, x, training)
