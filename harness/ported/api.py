"""The library calls for a user's own model pair: `check_ported` (records and a diagnosis) and
`assert_parity` (for a user's own pytest suite: an AssertionError naming the first diverging
layer, the check, the numbers and the likely trap).

Both import torch, then TensorFlow and Keras (in that order: see backends/__init__.py), in the
calling process, and change neither model: the checks run on copies.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from harness.ported import mapping
from harness.ported.checks import STEPS, check_pair
from harness.ported.hints import Diagnosis, diagnose
from harness.ported.pair import ModelPair
from harness.results.records import ParityRecord


@dataclass(frozen=True)
class PortedParity:
    pair: ModelPair
    records: tuple[ParityRecord, ...]
    diagnosis: Diagnosis | None  # None: every check passed

    @property
    def passed(self) -> bool:
        return self.diagnosis is None

    def summary(self) -> str:
        checks = [r for r in self.records if not r.info]
        failed = sum(not r.passed for r in checks)
        head = (f"{self.pair.name}: {len(checks) - failed} of {len(checks)} parity checks passed "
                f"({len(mapping_names(self))} mapped layers)")
        return head if self.diagnosis is None else f"{head}; {failed} failed\n{self.diagnosis.message()}"


def mapping_names(result: PortedParity) -> list[str]:
    return sorted({r.check.partition("[")[2].rstrip("]") for r in result.records if r.check.startswith("forward_eval")})


def frameworks():
    """torch, tensorflow, keras: torch first (importing TensorFlow first breaks torch's threads)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up notes, unless asked for
    import torch  # noqa: I001  (the order is the point)
    import tensorflow
    import keras

    return torch, tensorflow, keras


def check_ported(pair: ModelPair, steps: int = STEPS,
                 progress: Callable[[str], None] = lambda message: None) -> PortedParity:
    torch, tf, keras = frameworks()
    records, models = check_pair(torch, keras, tf, pair, steps, progress)
    t32, k32 = models.first_eval
    torch_inputs = {p.name: mapping.input_as_keras(p, t32.inputs[p.name]) for p in models.pairs32}
    return PortedParity(pair, tuple(records), diagnose(records, models.pairs32, torch_inputs, k32.inputs))


def assert_parity(torch_model, keras_model, example_input, *, classes: int | None = None, seed: int = 0,
                  steps: int = STEPS) -> PortedParity:
    """Raise AssertionError unless `keras_model` (functional) is a faithful port of `torch_model`:
    same outputs layer by layer (eval and train mode), loss, gradients, `steps` SGD steps and
    BatchNorm statistics, within tolerances calibrated on float32 rounding of both frameworks.

    `example_input`: a batch in torch's layout (numpy array or tensor); the harness draws its own
    batches of that shape (integer ids below the example's maximum + 1 where it is integer).
    `classes`: the number of logits (default: what the torch model returns for the example)."""
    torch, _, _ = frameworks()
    example = np.asarray(example_input.detach().cpu() if isinstance(example_input, torch.Tensor) else example_input)
    ints = int(example.max()) + 1 if np.issubdtype(example.dtype, np.integer) else None
    if classes is None:
        was_training = torch_model.training
        torch_model.eval()
        with torch.no_grad():
            tensor = torch.from_numpy(example if ints else example.astype(np.float32))
            classes = int(torch_model(tensor).shape[-1])
        torch_model.train(was_training)
    pair = ModelPair(type(torch_model).__name__, lambda: torch_model, lambda: keras_model, tuple(example.shape[1:]),
                     classes, input_ints=ints, batch=int(example.shape[0]), seed=seed)
    result = check_ported(pair, steps)
    if not result.passed:
        raise AssertionError(result.summary())
    return result


__all__ = ["ModelPair", "PortedParity", "assert_parity", "check_ported", "mapping_names"]
