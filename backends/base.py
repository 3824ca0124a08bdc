"""The backend interface: one framework builds, runs and trains models from a ModelSpec.

A `Backend` is one framework configured for one device and thread count (configured when it is
constructed, which must happen before the framework does any work: thread pools cannot be
resized later). `Backend.build(spec, mode)` returns a `Model`: the network, its loss (with the
spec's L1/L2 penalties) and its optimizer, in one of the backend's MODES.

Canonical layout (PyTorch's; the reference framework). Every array that crosses this interface
is numpy in this layout, so weights move between frameworks unchanged; float32, except that a
float64 model (SUPPORTS_FLOAT64) returns float64 arrays, and takes float32 or float64 ones:
- inputs: channels-last batches, (N, H, W, C) or (N, features), as the spec's input_shape says;
  labels: int64 class indices (N,).
- weights: a dict keyed "{layer index}.{name}", the index being the layer's position in
  spec.layers. Dense: "weight" (out, in), "bias" (out,). Conv2D: "weight" (O, I, kH, kW) (OIHW),
  "bias" (O,). BatchNorm: "weight" (gamma), "bias" (beta), "running_mean", "running_var".
- flatten order: NCHW (C, H, W); a dense or BatchNorm layer fed by a flattened feature map sees
  its features in that order. (Keras flattens NHWC, so its backend permutes those weights.)
- running_var is whatever the framework keeps: PyTorch updates it with the unbiased batch
  variance, Keras with the biased one. harness/parity/checks.py accounts for the difference; backends
  do not hide it.

Each backend module imports its framework lazily (inside methods), so a missing framework costs
nothing until it is asked for, and a process that times one framework never loads the other.
A backend module defines exactly one Backend subclass (backends/__init__.py discovers it; what it
splits off, such as its layer builders, goes in a private "_" module beside it); the checks every
backend needs (device, mode, dtype, weight keys and shapes, a builder for every layer type) live
here, once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from harness.errors import HarnessInputError
from harness.model.layers import Layer
from harness.model.spec import ModelSpec

Weights = dict[str, np.ndarray]
EVAL_BATCH = 1024


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""  # why not, in one line


@dataclass(frozen=True)
class GraphCount:
    """Nodes one training step executes in one graph representation (see Model.graph_counts)."""

    graph: str
    node_count: int
    op_counts: dict[str, int]


@dataclass(frozen=True)
class EvalResult:
    loss: float  # cross-entropy only, without the regularization penalty
    accuracy: float


class Model(ABC):
    """A built network with its loss and optimizer. Not thread-safe; one per arm."""

    def __init__(self, spec: ModelSpec, mode: str):
        self.spec = spec
        self.mode = mode

    @abstractmethod
    def get_weights(self) -> Weights:
        """All parameters and BatchNorm statistics, canonical layout (copies)."""

    def set_weights(self, weights: Weights) -> None:
        """Load canonical weights; every key must be present and shapes must match (ValueError)."""
        current = self.get_weights()
        if set(weights) != set(current):
            raise ValueError(f"weights keys differ: missing {sorted(set(current) - set(weights))}, "
                             f"unexpected {sorted(set(weights) - set(current))}")
        for key, value in weights.items():
            if np.shape(value) != current[key].shape:
                raise ValueError(f"weights[{key!r}]: shape {np.shape(value)} != {current[key].shape}")
        self._load_weights(weights)

    @abstractmethod
    def _load_weights(self, weights: Weights) -> None:
        """Copy canonical weights (keys and shapes already checked) into the framework's tensors."""

    @abstractmethod
    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        """Logits. training=True uses batch statistics in BatchNorm (and updates the running
        ones, as both frameworks do) and applies dropout."""

    @abstractmethod
    def layer_input(self, x: np.ndarray, index: int) -> np.ndarray:
        """What spec.layers[index] receives in evaluation mode (dropout off, BatchNorm on its
        running statistics): the output of layers[:index], activations included, channels last.
        After a flatten, features are in the framework's own order (Keras flattens NHWC): compare
        their statistics as a set, not feature by feature."""

    @abstractmethod
    def loss(self, x: np.ndarray, y: np.ndarray, training: bool) -> float:
        """Mean softmax cross-entropy plus the L1/L2 penalties."""

    @abstractmethod
    def gradients(self, x: np.ndarray, y: np.ndarray, training: bool) -> Weights:
        """d loss / d parameter for every trainable parameter, canonical layout."""

    @abstractmethod
    def apply_gradients(self, gradients: Weights) -> None:
        """One optimizer update from these canonical gradients (no forward or backward)."""

    @abstractmethod
    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One optimizer step in this model's mode; returns the loss before the update."""

    @abstractmethod
    def timed_step(self, x: np.ndarray, y: np.ndarray) -> Callable[[], None]:
        """A callable doing one full training step (forward, loss, backward, update) on a batch
        already placed on the device, and waiting for the device to finish: what timing times."""

    @abstractmethod
    def graph_counts(self, x: np.ndarray, y: np.ndarray) -> list[GraphCount]:
        """Count what one training step executes, in each graph the framework exposes."""

    @property
    def optimizer_class(self) -> str:
        """The fully qualified class of the optimizer this model trains with, e.g. torch.optim.sgd.SGD."""
        cls = type(self.optimizer)
        return f"{cls.__module__}.{cls.__qualname__}"

    def train_epoch(self, x: np.ndarray, y: np.ndarray, seed: int) -> float:
        """One pass over (x, y) in shuffled batches of spec.batch_size; returns the mean loss."""
        order = np.random.default_rng(seed).permutation(len(x))
        size = self.spec.batch_size
        losses = [self.train_step(x[order[i:i + size]], y[order[i:i + size]]) for i in range(0, len(x), size)]
        return float(np.mean(losses))

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> EvalResult:
        """Eval-mode cross-entropy and accuracy over (x, y). An eval-mode forward pass does not
        depend on the batch (BatchNorm uses its running statistics, dropout is off), so it runs in
        batches of EVAL_BATCH: a Keras call costs about a millisecond however small the batch."""
        size = EVAL_BATCH
        logits = np.concatenate([self.forward(x[i:i + size], training=False) for i in range(0, len(x), size)])
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = -log_probs[np.arange(len(y)), y].mean()
        return EvalResult(float(loss), float((logits.argmax(axis=1) == y).mean()))


class Backend(ABC):
    """One framework, configured for a device and a number of intra-op threads.

    Class attributes a backend module sets (the registry and everything else read them):
    `name` (the --backend value), `MODES`, `DEVICES`, `LOAD_ORDER` (lower is created first in a
    process using several frameworks), `DISTRIBUTIONS` (installed packages whose versions the
    environment record lists), `COLOR` (in plots), and capability flags: `SUPPORTS_FLOAT64`
    (builds float64 models: parity's oracle for this framework's float32 rounding),
    `HAS_REFERENCE_LOOP` (reference_step is implemented), and the convention
    `BN_BIASED_RUNNING_VAR` (running_var updated with the biased batch variance), and
    `IDIOMS`, the values of the spec's training idioms it builds as written (`builds_as_written`),
    `TIMING_BUDGET_S`, the default wall time of one timing comparison (harness/timing/replication.py),
    and `PERCALL_UNMEASURABLE`, the modes whose per-call cost a suite does not measure, and why.
    """

    name: ClassVar[str]
    MODES: ClassVar[tuple[str, ...]]
    DEVICES: ClassVar[tuple[str, ...]]
    LOAD_ORDER: ClassVar[int] = 100
    DISTRIBUTIONS: ClassVar[tuple[str, ...]] = ()
    COLOR: ClassVar[str] = "#34495e"
    SUPPORTS_FLOAT64: ClassVar[bool] = False
    HAS_REFERENCE_LOOP: ClassVar[bool] = False
    BN_BIASED_RUNNING_VAR: ClassVar[bool] = False  # Keras: True; PyTorch: False (see the module docstring)
    # The spec's training idioms (harness/model/spec.py) whose values this backend builds differently; a
    # value not listed is built as the first one (e.g. Keras has one coupled L2: kernel_regularizer).
    IDIOMS: ClassVar[dict[str, tuple[str, ...]]] = {"l2_style": ("penalty",), "optimizer_impl": ("stock",)}
    # `time`'s and `calibrate`'s default --budget: enough for a torch mlp A/A comparison to reach
    # ±1% on a 2-core machine (README "How the numbers can be trusted").
    TIMING_BUDGET_S: ClassVar[float] = 60.0
    # Per mode, why a suite does not run this backend's per-call cases (planned as skipped with the
    # reason, listed in the report): a mode whose dose-response would measure no per-call cost.
    PERCALL_UNMEASURABLE: ClassVar[dict[str, str]] = {}

    @classmethod
    @abstractmethod
    def availability(cls) -> Availability:
        """Whether the framework imports here; never raises."""

    def __init__(self, device: str = "cpu", threads: int | None = None):
        """Configure threads and device, before the framework does any work.

        Raises HarnessInputError for a device this backend does not know or cannot see."""
        self.check_device(device)
        self._configure(device, threads)

    @abstractmethod
    def _configure(self, device: str, threads: int | None) -> None:
        """Import the framework, set its threads, select the device (known to be in DEVICES)."""

    @classmethod
    def check_device(cls, device: str) -> None:
        if device not in cls.DEVICES:
            raise HarnessInputError(
                f"--device: {cls.name} has no device {device!r} (devices: {', '.join(cls.DEVICES)})")

    @classmethod
    def builds_as_written(cls, spec: ModelSpec) -> bool:
        """False when the spec asks for an idiom this backend builds as another one (timing such a
        variant would measure a duplicate of that other one)."""
        return all(getattr(spec, idiom) in values for idiom, values in cls.IDIOMS.items())

    @classmethod
    def check_mode(cls, mode: str) -> None:
        if mode not in cls.MODES:
            raise HarnessInputError(f"--mode: {cls.name} has no mode {mode!r} (modes: {', '.join(cls.MODES)})")

    @abstractmethod
    def settings(self) -> dict[str, object]:
        """What was configured and what the framework reports: version, threads, TF32, ..."""

    def build(self, spec: ModelSpec, mode: str = "eager", dtype: str = "float32") -> Model:
        """Build the model (framework-default initialization, seeded with spec.seed).

        dtype "float64" (backends with SUPPORTS_FLOAT64): the same model with its variables,
        computation, optimizer state and BatchNorm statistics in float64, its arrays returned in
        float64. Parity runs every framework in both, as an oracle for how far float32 rounding
        alone moves that framework's result (harness/parity/tolerance.py)."""
        self.check_mode(mode)
        dtypes = ("float32", "float64") if self.SUPPORTS_FLOAT64 else ("float32",)
        if dtype not in dtypes:
            raise ValueError(f"the {self.name} backend builds {' and '.join(dtypes)} models, not {dtype!r}")
        return self._build(spec, mode, dtype)

    @abstractmethod
    def _build(self, spec: ModelSpec, mode: str, dtype: str) -> Model:
        """Build a model; mode and dtype are already checked."""

    @abstractmethod
    def dropout_probe(self, rate: float, x: np.ndarray, training: bool) -> np.ndarray:
        """Apply the framework's own dropout layer at `rate` to x (for semantic checks)."""

    def reference_step(self, x: np.ndarray, y: np.ndarray) -> Callable[[], None]:
        """A hand-written eager training step of the mlp preset, as a user of this framework
        writes it with no harness code (HAS_REFERENCE_LOOP): the yardstick for the harness's
        own overhead. Like Model.timed_step, each call waits for the device."""
        raise HarnessInputError(f"--reference-loop: the {self.name} backend has no hand-written loop")


def layer_builder(builders: Mapping[type, Callable], layer: Layer, backend: str) -> Callable:
    """The builder a backend maps this layer's type to; a layer type without one is an error,
    never a silent identity."""
    builder = builders.get(type(layer))
    if builder is None:
        raise NotImplementedError(f"the {backend} backend has no builder for layer type {layer.type!r}")
    return builder
