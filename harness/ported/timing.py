"""One framework's side of a user's model pair as a timing subject (harness/timing/session.py's
Subject): the user's factory builds each instance, the harness adds the loss and the optimizer,
and the training step is the one the backend times for spec models.

A step is forward (train mode: dropout on, BatchNorm on batch statistics), softmax cross-entropy
on the logits (plus, in Keras, the model's own losses: its regularizers), backward and one
optimizer update: SGD (lr 0.01, momentum 0.9) or Adam (lr 1e-3), the same hyperparameters on
both sides. Modes, as for spec models:
- torch: eager; compiled = torch.compile of the loss and of the optimizer's step (the backend's).
- Keras (on TensorFlow): eager; compiled = tf.function of the whole step; xla = jit_compile.
The backend is created by the worker first: it sets threads, device and TF32 before the
user's factory builds anything.

Constraints: runs in a timing worker, which imports the one framework it times (the factory of
the other side is never imported there). FLOPs are not known for a user's model: 0.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from harness.ported.pair import ModelPair, PairSource

OPTIMIZERS = ("sgd", "adam")
SGD_LR, SGD_MOMENTUM, ADAM_LR = 0.01, 0.9, 1e-3


# The backends that time a user's pair: torch's model, and the Keras port on TensorFlow (its step is
# written with tf.GradientTape; Keras on torch or JAX would need a step of its own engine).
PAIR_BACKENDS = ("torch", "tensorflow")


def side_of(backend_name: str) -> str:
    """Which of the pair's models a backend times: torch's own, or the Keras port."""
    return "torch" if backend_name == "torch" else "keras"


def side_label(backend_name: str) -> str:
    """The arm label of a backend's side: "torch", or "keras on <backend>" (Keras 3 runs on several)."""
    side = side_of(backend_name)
    return side if side == "torch" else f"{side} on {backend_name}"


class PortedSubject:
    """The torch or the Keras model of a pair, whichever `backend` runs, trained with `optimizer`."""

    spec = None

    def __init__(self, backend, source: PairSource, optimizer: str = "sgd"):
        self.backend, self.source, self.optimizer = backend, source, optimizer
        self.side = side_of(backend.name)
        self.pair: ModelPair = source.load(self.side)
        self.name = source.name
        self.option = f"--{self.side}"
        model = self._new_model()
        self.pair.check_accepts(self.option, model)
        self.parameters = (sum(p.numel() for p in model.parameters()) if self.side == "torch"
                           else int(model.count_params()))

    def _new_model(self):
        return self.pair.build(self.option, self.pair.make_torch if self.side == "torch" else self.pair.make_keras)

    def batch(self) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.pair.batches(1)[0]
        return (x if self.side == "torch" else self.pair.keras_input(x)), y

    def build(self, arm) -> _TorchStep | _KerasStep:
        step = _TorchStep if self.side == "torch" else _KerasStep
        return step(self.backend, self._new_model(), arm.mode, self.optimizer)

    def cost(self, arm) -> tuple[int, int]:
        return self.parameters, 0


def _qualified(obj) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


class _TorchStep:
    def __init__(self, backend, module, mode: str, optimizer: str):
        torch = backend.torch
        self.torch, self.device = torch, backend.device
        self.module = module.to(self.device).train(True)
        params = list(self.module.parameters())
        self.optimizer = (torch.optim.SGD(params, lr=SGD_LR, momentum=SGD_MOMENTUM) if optimizer == "sgd"
                          else torch.optim.Adam(params, lr=ADAM_LR))
        self._loss, self._update = self._loss_of, self.optimizer.step
        if mode == "compiled":
            self._loss, self._update = torch.compile(self._loss_of), torch.compile(self.optimizer.step)

    @property
    def optimizer_class(self) -> str:
        return _qualified(self.optimizer)

    def _loss_of(self, x, y):
        return self.torch.nn.functional.cross_entropy(self.module(x), y)

    def timed_step(self, x: np.ndarray, y: np.ndarray) -> Callable[[], None]:
        torch = self.torch
        tx, ty = torch.from_numpy(np.asarray(x)).to(self.device), torch.from_numpy(np.asarray(y)).to(self.device)

        def step() -> None:
            self.optimizer.zero_grad(set_to_none=True)
            self._loss(tx, ty).backward()
            self._update()
            if self.device.type == "cuda":
                torch.cuda.synchronize()

        return step


class _KerasStep:
    def __init__(self, backend, model, mode: str, optimizer: str):
        keras, tf = backend.keras, backend.tf
        self.model, self.tf = model, tf
        self.optimizer = (keras.optimizers.SGD(learning_rate=SGD_LR, momentum=SGD_MOMENTUM) if optimizer == "sgd"
                          else keras.optimizers.Adam(learning_rate=ADAM_LR))
        self.optimizer.build(model.trainable_variables)  # before tf.function: variables are not created in a trace
        self.loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self._step = self._step_of if mode == "eager" else tf.function(self._step_of, jit_compile=(mode == "xla"))

    @property
    def optimizer_class(self) -> str:
        return _qualified(self.optimizer)

    def _step_of(self, x, y):
        variables = self.model.trainable_variables
        with self.tf.GradientTape() as tape:
            loss = self.loss(y, self.model(x, training=True))
            if self.model.losses:  # the regularizers' penalties, computed on access
                loss = loss + self.tf.add_n(self.model.losses)
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    def timed_step(self, x: np.ndarray, y: np.ndarray) -> Callable[[], None]:
        tx, ty = self.tf.constant(x), self.tf.constant(np.asarray(y, dtype=np.int64))

        def step() -> None:
            self._step(tx, ty).numpy()  # a host read: waits for the device to finish

        return step
