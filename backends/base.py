"""The backend interface: one framework builds, runs and trains models from a ModelSpec.

A `Backend` is one framework configured for one device and thread count (configured when it is
constructed, which must happen before the framework does any work: thread pools cannot be
resized later). `Backend.build(spec, mode)` returns a `Model`: the network, its loss (with the
spec's L1/L2 penalties) and its optimizer, in one of the backend's MODES.

Canonical layout (PyTorch's; the reference framework). Every array that crosses this interface
is numpy float32 in this layout, so weights move between frameworks unchanged:
- inputs: channels-last batches, (N, H, W, C) or (N, features), as the spec's input_shape says;
  labels: int64 class indices (N,).
- weights: a dict keyed "{layer index}.{name}", the index being the layer's position in
  spec.layers. Dense: "weight" (out, in), "bias" (out,). Conv2D: "weight" (O, I, kH, kW) (OIHW),
  "bias" (O,). BatchNorm: "weight" (gamma), "bias" (beta), "running_mean", "running_var".
- flatten order: NCHW (C, H, W); a dense or BatchNorm layer fed by a flattened feature map sees
  its features in that order. (Keras flattens NHWC, so its backend permutes those weights.)
- running_var is whatever the framework keeps: PyTorch updates it with the unbiased batch
  variance, Keras with the biased one. harness/parity.py accounts for the difference; backends
  do not hide it.

Each backend module imports its framework lazily (inside methods), so a missing framework costs
nothing until it is asked for, and a process that times one framework never loads the other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np

from harness.spec import ModelSpec

Weights = dict[str, np.ndarray]


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

    @abstractmethod
    def set_weights(self, weights: Weights) -> None:
        """Load canonical weights; every key must be present and shapes must match."""

    @abstractmethod
    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        """Logits. training=True uses batch statistics in BatchNorm (and updates the running
        ones, as both frameworks do) and applies dropout."""

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

    def train_epoch(self, x: np.ndarray, y: np.ndarray, seed: int) -> float:
        """One pass over (x, y) in shuffled batches of spec.batch_size; returns the mean loss."""
        order = np.random.default_rng(seed).permutation(len(x))
        size = self.spec.batch_size
        losses = [self.train_step(x[order[i:i + size]], y[order[i:i + size]]) for i in range(0, len(x), size)]
        return float(np.mean(losses))

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> EvalResult:
        """Eval-mode cross-entropy and accuracy over (x, y), in batches of spec.batch_size."""
        size = self.spec.batch_size
        logits = np.concatenate([self.forward(x[i:i + size], training=False) for i in range(0, len(x), size)])
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = -log_probs[np.arange(len(y)), y].mean()
        return EvalResult(float(loss), float((logits.argmax(axis=1) == y).mean()))


class Backend(ABC):
    """One framework, configured for a device and a number of intra-op threads."""

    name: ClassVar[str]
    MODES: ClassVar[tuple[str, ...]]
    DEVICES: ClassVar[tuple[str, ...]]
    SUPPORTS_FLOAT64: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def availability(cls) -> Availability:
        """Whether the framework imports here; never raises."""

    @abstractmethod
    def __init__(self, device: str = "cpu", threads: int | None = None):
        """Configure threads and device. Raises HarnessInputError for a device not present."""

    @abstractmethod
    def settings(self) -> dict[str, object]:
        """What was configured and what the framework reports: version, threads, TF32, ..."""

    @abstractmethod
    def build(self, spec: ModelSpec, mode: str = "eager", dtype: str = "float32") -> Model:
        """Build the model (framework-default initialization, seeded with spec.seed).

        dtype "float64" is only for the reference (SUPPORTS_FLOAT64): parity uses it as an
        oracle for how far float32 rounding alone moves a result."""

    @abstractmethod
    def dropout_probe(self, rate: float, x: np.ndarray, training: bool) -> np.ndarray:
        """Apply the framework's own dropout layer at `rate` to x (for semantic checks)."""
