"""A user's model pair: a torch.nn.Module factory and its Keras port's factory, named by import
path (`package.module:function`), and the batches the harness feeds both.

The harness owns the data: inputs (standard normal floats, or integer ids in [0, input_ints)),
integer labels in [0, classes), seeded. `input_shape` is one example in torch's layout; float
inputs of rank >= 2 are channels-first in torch and channels-last in Keras (an image
(C, H, W) is (H, W, C) there), integer ids have the same layout in both.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import HarnessInputError


@dataclass(frozen=True)
class ModelPair:
    name: str
    make_torch: Callable[[], object]
    make_keras: Callable[[], object]
    input_shape: tuple[int, ...]  # one example, torch layout
    classes: int
    input_ints: int | None = None  # integer ids in [0, input_ints) instead of floats
    batch: int = 8
    seed: int = 0

    def batches(self, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """`count` seeded (inputs in torch layout, labels) batches."""
        rng = np.random.default_rng(self.seed)
        shape = (self.batch, *self.input_shape)
        found = []
        for _ in range(count):
            x = (rng.integers(0, self.input_ints, size=shape) if self.input_ints
                 else rng.standard_normal(shape).astype(np.float32))
            found.append((x, rng.integers(0, self.classes, size=self.batch)))
        return found

    def keras_input(self, x: np.ndarray) -> np.ndarray:
        return x if self.input_ints or x.ndim < 3 else np.moveaxis(x, 1, -1)

    def build(self, option: str, factory: Callable[[], object]):
        """Call a factory; what it raises is the user's, named with the option that gave it."""
        try:
            return factory()
        except Exception as exc:
            raise HarnessInputError(f"{option}: the factory raised {type(exc).__name__}: {exc}") from None


def load_factory(text: str, option: str) -> Callable[[], object]:
    """`package.module:function` (imported with the current folder on the path) as a callable."""
    module_name, colon, attribute = text.partition(":")
    if not colon or not module_name or not attribute:
        raise HarnessInputError(f"{option} {text!r}: expected MODULE:FUNCTION, e.g. examples.residual_cnn:make_torch")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise HarnessInputError(f"{option} {text}: no module named {exc.name!r} (run from the folder that holds "
                                "it, or install it)") from None
    except Exception as exc:
        raise HarnessInputError(f"{option} {text}: importing {module_name} raised {type(exc).__name__}: {exc}") \
            from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise HarnessInputError(f"{option} {text}: {module_name} has no function {attribute!r}")
    return factory


def parse_shape(text: str, option: str = "--input-shape") -> tuple[int, ...]:
    """`3,32,32` -> (3, 32, 32): positive integers, one example's shape in torch's layout."""
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(d < 1 for d in shape):
        raise HarnessInputError(f"{option} {text!r}: expected comma-separated positive integers, e.g. 3,32,32")
    return shape
