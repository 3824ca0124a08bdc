"""Data augmentation for the study's `augment` variant: the third standard remedy for a
train/validation gap, beside dropout and L2, as Keras's ImageDataGenerator applies it.

Applied here, in numpy, to the training split only, once per epoch with a generator drawn from
(seed, epoch): every framework trains on exactly the same augmented inputs (a framework's own
augmentation layers would draw different random numbers), and validation, and the training
accuracy the gap is measured with, use the clean data.
- Random shifts of every spatial axis by up to SHIFT_FRACTION of its length (digits: 1 px of 8;
  MNIST-1D: 5 of 40 steps), the uncovered border filled with the nearest edge value
  (ImageDataGenerator's width/height_shift_range with its default fill_mode="nearest").
- Horizontal flips only for data sets whose classes survive them (FLIP_DATA: CIFAR-10; a
  flipped digit is another symbol, so digits and MNIST-1D are never flipped).
- Gaussian noise of NOISE_STD (the data are standardized, so in units of a feature's deviation).
Framework-free; a vector data set is reshaped to its samples' natural shape (Dataset.sample_shape)
and back.
"""

from __future__ import annotations

import numpy as np

SHIFT_FRACTION = 0.125
NOISE_STD = 0.1
FLIP_DATA = ("cifar10",)


def augment(x: np.ndarray, sample_shape: tuple[int, ...], flips: bool, rng: np.random.Generator) -> np.ndarray:
    """A shifted (and, with `flips`, randomly mirrored) noisy copy of `x` (N, ...): its samples seen
    as `sample_shape`, (H, W, C) images or (L,) sequences; returned in x's shape and dtype."""
    n = len(x)
    samples = x.reshape(n, *sample_shape)
    spatial = sample_shape[:-1] if len(sample_shape) == 3 else sample_shape  # (H, W) or (L,)
    shifted = _shift(samples, spatial, rng)
    if flips and len(sample_shape) == 3:
        mirrored = rng.random(n) < 0.5
        shifted[mirrored] = shifted[mirrored, :, ::-1]
    noisy = shifted + rng.normal(0.0, NOISE_STD, size=shifted.shape)
    return noisy.astype(x.dtype).reshape(x.shape)


def _shift(samples: np.ndarray, spatial: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Each sample moved by its own random offset along each spatial axis, nearest-edge filled."""
    n = len(samples)
    reach = [max(1, round(SHIFT_FRACTION * length)) for length in spatial]
    pad = [(0, 0)] + [(r, r) for r in reach] + [(0, 0)] * (samples.ndim - 1 - len(spatial))
    padded = np.pad(samples, pad, mode="edge")
    # A window of the original length starting at offset 0..2r of the padded axis: offset r is no shift.
    index = [np.arange(n).reshape(n, *([1] * len(spatial)))]
    for axis, (length, r) in enumerate(zip(spatial, reach)):
        start = rng.integers(0, 2 * r + 1, size=n)
        shape = [n] + [1] * len(spatial)
        shape[axis + 1] = length
        index.append((start[:, None] + np.arange(length)[None, :]).reshape(shape))
    return padded[tuple(index)]
