"""Synthetic batches for timing and parity: what a step computes on, not what it learns from.

Nothing is downloaded or read. Inputs are standard normal, channels-last, float32; labels are
uniform integers; the same seed gives the same batch. Real data sets for epoch training are
harness/study/datasets.py's.
"""

from __future__ import annotations

import numpy as np

from harness.model.spec import ModelSpec


def synthetic_batch(spec: ModelSpec, batch_size: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    size = batch_size or spec.batch_size
    x = rng.standard_normal((size, *spec.input_shape), dtype=np.float32)
    y = rng.integers(0, spec.num_classes, size=size, dtype=np.int64)
    return x, y
