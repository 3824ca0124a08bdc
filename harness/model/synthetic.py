"""Data: synthetic batches for timing and parity, and a real data set for epoch training.

Nothing is downloaded at run time. Synthetic inputs are standard normal, channels-last, float32;
labels are uniform integers. The real data set is scikit-learn's bundled digits (8x8 images,
10 classes), an optional dependency loaded only when asked for.
"""

from __future__ import annotations

import numpy as np

from harness.errors import HarnessInputError
from harness.model.spec import ModelSpec


def synthetic_batch(spec: ModelSpec, batch_size: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    size = batch_size or spec.batch_size
    x = rng.standard_normal((size, *spec.input_shape), dtype=np.float32)
    y = rng.integers(0, spec.num_classes, size=size, dtype=np.int64)
    return x, y


def digits(input_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits (1797 images, 8x8, values scaled to [0, 1]) as (64,) or (8, 8, 1)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise HarnessInputError("the digits data set needs scikit-learn: pip install scikit-learn") from None
    if tuple(input_shape) not in ((64,), (8, 8, 1)):
        raise HarnessInputError(f"digits are 8x8x1 images: input_shape must be [64] or [8, 8, 1], not {list(input_shape)}")
    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32).reshape((-1, *input_shape))
    return x, bunch.target.astype(np.int64)
