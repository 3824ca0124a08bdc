"""A user's model pair: a torch.nn.Module factory and its Keras port's factory, named by import
path (`package.module:function`), and the batches the harness feeds both.

The harness owns the data: inputs (standard normal floats, or integer ids in [0, input_ints)),
integer labels in [0, classes), seeded. `input_shape` is one example in torch's layout; float
inputs of rank >= 2 are channels-first in torch and channels-last in Keras (an image
(C, H, W) is (H, W, C) there), integer ids have the same layout in both.
"""

from __future__ import annotations

import importlib
import importlib.util
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

    def check_accepts(self, option: str, model) -> None:
        """Run `model` (the --torch or the --keras side) once on a batch, in eval mode: refuse
        one that rejects the input or does not return (batch, classes) logits, naming what was
        fed and the option that gave the model."""
        x = self.batches(1)[0][0]
        fed = f"a batch of shape {x.shape if option == '--torch' else self.keras_input(x).shape}" + \
            (f" of integer ids < {self.input_ints}" if self.input_ints else "")
        try:
            if option == "--torch":
                import torch

                parameter = next(model.parameters(), None)
                tensor = torch.from_numpy(x)
                if parameter is not None and tensor.is_floating_point():
                    tensor = tensor.to(parameter.dtype)
                with torch.no_grad():
                    was_training = model.training
                    out = tuple(model.eval()(tensor).shape)
                    model.train(was_training)
            else:
                out = tuple(model(self.keras_input(x), training=False).shape)
        except Exception as exc:
            raise HarnessInputError(f"{option}: the model raised {type(exc).__name__} on {fed} (--input-shape "
                                    f"{','.join(map(str, self.input_shape))}): {str(exc).splitlines()[0]}") from None
        if out != (self.batch, self.classes):
            raise HarnessInputError(f"{option}: the model returned shape {out} on {fed}; expected logits "
                                    f"({self.batch}, {self.classes}) (--classes {self.classes})")

    def build(self, option: str, factory: Callable[[], object]):
        """Call a factory; what it raises is the user's, named with the option that gave it."""
        try:
            return factory()
        except Exception as exc:
            raise HarnessInputError(f"{option}: the factory raised {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class PairSource:
    """A ModelPair by its factories' import paths: what a worker process is sent (a `time` worker
    imports the one framework it times, so the pair travels as text and is loaded there)."""

    torch: str  # package.module:function
    keras: str
    input_shape: tuple[int, ...]
    classes: int
    input_ints: int | None = None
    batch: int = 8
    seed: int = 0

    @property
    def name(self) -> str:
        return self.torch.rpartition(":")[0] or self.torch

    def check(self) -> None:
        """Refuse a factory path that is malformed or names no module, without importing it."""
        for option, text in (("--torch", self.torch), ("--keras", self.keras)):
            _find_module(text, option)

    def to_job(self) -> dict:
        return {**self.__dict__, "input_shape": list(self.input_shape)}

    @classmethod
    def from_job(cls, data: dict) -> PairSource:
        return cls(**{**data, "input_shape": tuple(data["input_shape"])})

    def load(self, side: str | None = None) -> ModelPair:
        """The ModelPair, its factories imported; `side` "torch" or "keras" imports that one only
        (the other factory raises if called)."""
        def factory(option, text):
            if side not in (None, option.strip("-")):
                return _not_loaded(option)
            return load_factory(text, option)

        return ModelPair(self.name, factory("--torch", self.torch), factory("--keras", self.keras), self.input_shape,
                         self.classes, input_ints=self.input_ints, batch=self.batch, seed=self.seed)


def _not_loaded(option: str) -> Callable[[], object]:
    def refuse():
        raise RuntimeError(f"{option}: not loaded in this process")

    return refuse


def _find_module(text: str, option: str) -> tuple[str, str]:
    """(module, function) of `package.module:function`; the module must be findable from the
    current folder (found, not imported: importing it may import a framework)."""
    module_name, colon, attribute = text.partition(":")
    if not colon or not module_name or not attribute:
        raise HarnessInputError(f"{option} {text!r}: expected MODULE:FUNCTION, e.g. examples.residual_cnn:make_torch")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise HarnessInputError(f"{option} {text}: no module named {module_name!r} (run from the folder that holds "
                                "it, or install it)")
    return module_name, attribute


def load_factory(text: str, option: str) -> Callable[[], object]:
    """`package.module:function` (imported with the current folder on the path) as a callable."""
    module_name, attribute = _find_module(text, option)
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
