"""What the study layer measures about training, framework-free (numpy only).

- Weight constancy: a weight w is constant between epochs i and i+1 at tolerance t when
  |w[i+1] - w[i]| <= t * |w[i]|; reported per kernel layer as the fraction of its weights that
  are, for each t in TOLERANCES (t = 0: exactly unchanged, e.g. a first-layer weight fed by a
  pixel that is always blank gets no gradient, unless L2 decays it).
- Early stopping with the semantics of Keras 3's EarlyStopping (keras/src/callbacks/
  early_stopping.py, min mode on val_loss): the first epoch's weights are kept as the best;
  an epoch improves when val_loss + min_delta < best; `wait` counts epochs since the last
  improvement and training stops at the first epoch > 0 with wait >= patience; with
  restore_best_weights the best epoch's weights are restored when training ends, stopped or
  not (Keras 3; Keras 2 restored only after a stop).
- BatchNorm variance shift (Li et al., CVPR 2019): per channel, BN's running variance
  (accumulated in training, dropout active) over the variance of BN's input in evaluation mode
  (dropout off) on the validation data. Dropout at rate p scales kept units by 1/(1-p), so for
  zero-mean inputs the training variance is 1/(1-p) times the evaluation variance; the study
  records the median over channels.
- Sparsity (does L1 make weights exactly 0?): per kernel layer, after training, its size, the
  fraction of its weights exactly 0.0 and the fraction within NEAR_ZERO of 0 relative to the
  layer's largest |w|. An L1 penalty trained by SGD or Adam is a subgradient step (sign(w) * l1),
  which overshoots 0 rather than landing on it; only a proximal step (soft thresholding) sets
  weights to exactly 0, so the two fractions tell "exactly 0" from "small".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

TOLERANCES = (0.0, 1e-3, 1e-2, 1e-1)
NEAR_ZERO = 1e-6  # of the layer's largest |w|: "near 0" for the sparsity fractions


def constancy(before: Mapping[str, np.ndarray], after: Mapping[str, np.ndarray],
              tolerances: tuple[float, ...] = TOLERANCES) -> dict[str, dict[str, float]]:
    """{layer key: {tolerance as text: fraction of its weights constant from `before` to `after`}}
    for every key both snapshots hold (e.g. "0.weight" for the first layer's kernel)."""
    found = {}
    for key in before:
        if key not in after:
            continue
        old, new = np.asarray(before[key], dtype=np.float64), np.asarray(after[key], dtype=np.float64)
        if old.shape != new.shape:
            raise ValueError(f"{key}: shape {old.shape} before, {new.shape} after")
        change, scale = np.abs(new - old), np.abs(old)
        found[key] = {f"{t:g}": float(np.mean(change <= t * scale)) for t in tolerances}
    return found


def sparsity(kernels: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """{layer key: {"size": weights, "exact": fraction exactly 0, "near": fraction with
    |w| <= NEAR_ZERO * max|w|}} for each kernel (e.g. "0.weight")."""
    found = {}
    for key, kernel in kernels.items():
        w = np.abs(np.asarray(kernel, dtype=np.float64))
        scale = float(w.max()) if w.size else 0.0
        found[key] = {"size": float(w.size), "exact": float(np.mean(w == 0.0)),
                      "near": float(np.mean(w <= NEAR_ZERO * scale))}
    return found


@dataclass
class EarlyStopping:
    """Keras 3's EarlyStopping(monitor="val_loss", mode="min"), written out so that both
    backends stop and restore at the same epochs. Call `update(epoch, val_loss, weights)` after
    each epoch (weights: a function returning a snapshot, called only when one is kept); it
    returns True when training should stop. `restored_epoch` is the epoch whose weights a
    restore loads (0-based, as Keras counts), None without restore_best_weights."""

    patience: int = 0
    min_delta: float = 0.0
    restore_best_weights: bool = False
    best: float | None = None
    best_epoch: int = 0
    best_weights: object = None
    wait: int = 0
    stopped_epoch: int = 0  # 0: did not stop (Keras's convention: a stop at epoch 0 cannot happen)

    def update(self, epoch: int, val_loss: float, weights) -> bool:
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = weights(), epoch
        self.wait += 1
        if self.best is None or val_loss + abs(self.min_delta) < self.best:
            self.best, self.best_epoch, self.wait = val_loss, epoch, 0
            if self.restore_best_weights:
                self.best_weights = weights()
            return False
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            return True
        return False

    @property
    def restored_epoch(self) -> int | None:
        return self.best_epoch if self.restore_best_weights and self.best_weights is not None else None


def variance_shift(running_var: np.ndarray, eval_inputs: np.ndarray) -> np.ndarray:
    """Per channel: BN's running variance over the variance of its input in evaluation mode
    (`eval_inputs`: (N, C) or (N, H, W, C), channels last; the variance is over every axis
    but the last)."""
    axes = tuple(range(eval_inputs.ndim - 1))
    eval_var = np.asarray(eval_inputs, dtype=np.float64).var(axis=axes)
    return np.asarray(running_var, dtype=np.float64) / np.where(eval_var > 0, eval_var, np.nan)
