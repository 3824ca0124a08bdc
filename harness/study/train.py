"""The study layer: what regularization does to training, measured in both frameworks.

One training run is (backend, data set, model, variant, seed): the model is built with the same
initial weights in every backend (drawn here in numpy from the seed and loaded through the
canonical weight layout, as parity does), trained for `epochs` epochs on mini-batches in an
order the harness fixes (backends/base.py: Model.train_epoch, seeded per epoch: the same batches
in both frameworks), evaluated on both splits after each epoch, and its kernels snapshotted at
epoch ends for weight constancy (harness/study/metrics.py). Early stopping follows Keras 3's
EarlyStopping exactly, in both frameworks. After training, every BatchNorm right after a
dropout layer gets its variance shift. Dropout masks come from each framework's own generator,
so runs of one seed differ between frameworks once dropout is active: agreement is measured
over seeds, not assumed.

This module runs inside a worker process that imported one framework (harness/study/worker.py);
the planning side (StudySuite, variants) imports none.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from harness.errors import HarnessInputError
from harness.model.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D
from harness.model.spec import ModelSpec, Optimizer
from harness.model.variants import apply_variant, parse_variant
from harness.results.records import BNVarianceShiftRecord, Record, StudyEpochRecord, StudyRunRecord
from harness.study.augment import FLIP_DATA, augment
from harness.study.datasets import Dataset
from harness.study.metrics import EarlyStopping, constancy, sparsity, variance_shift

EARLY_STOPPING = "early_stopping"  # a study-only token of a variant: train with early stopping
AUGMENT = "augment"  # a study-only token: train on augmented copies of the training split (harness/study/augment.py)
AUGMENT_STREAM = 4271  # the augmentation generator's own stream beside (seed, epoch)


@dataclass(frozen=True)
class StudyVariant:
    """A spec variant (harness/model/variants.py) plus the study-only tokens: whether training
    stops early, whether it sees augmented data."""

    spec_variant: str
    early_stopping: bool = False
    augment: bool = False

    @classmethod
    def parse(cls, text: str, source: str = "--variant") -> StudyVariant:
        parts = [part.strip() for part in text.split(",")]
        spec_parts = [p for p in parts if p not in (EARLY_STOPPING, AUGMENT)]
        return cls(parse_variant(",".join(spec_parts), source).label, EARLY_STOPPING in parts, AUGMENT in parts)

    @property
    def label(self) -> str:
        tokens = [token for token, on in ((AUGMENT, self.augment), (EARLY_STOPPING, self.early_stopping)) if on]
        return ",".join([self.spec_variant, *tokens])


@dataclass(frozen=True)
class StudyPlan:
    epochs: int
    seeds: tuple[int, ...]
    mode: str = "eager"
    patience: int = 3  # early stopping: epochs without improvement of val_loss
    min_delta: float = 0.0
    restore_best_weights: bool = True


def study_spec(model: str, input_shape: tuple[int, ...], num_classes: int) -> ModelSpec:
    """The study's models: small enough to train in seconds, wide enough to overfit digits.
    Their dropout layers (rate 0 as written) are where the variants put dropout and BN."""
    head = (Dense(64, activation="relu"), Dropout(0.0), Dense(num_classes))
    if model == "mlp":
        if len(input_shape) != 1:
            raise HarnessInputError(f"--model mlp needs vectors; this data set holds images {list(input_shape)}")
        layers = (Dense(128, activation="relu"), Dropout(0.0), *head)
    elif model == "cnn":
        if len(input_shape) != 3:
            raise HarnessInputError(f"--model cnn needs images; this data set holds vectors {list(input_shape)}")
        layers = (Conv2D(16, (3, 3), padding="same", activation="relu"), MaxPool2D((2, 2)), Dropout(0.0), Flatten(),
                  *head)
    else:
        raise HarnessInputError(f"--model: {model!r} is not a study model (mlp, cnn)")
    return ModelSpec(name=f"study-{model}", input_shape=tuple(input_shape), num_classes=num_classes, layers=layers,
                     optimizer=Optimizer("adam", lr=1e-3), batch_size=32)


def initial_weights(spec: ModelSpec, shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """Framework-free initial weights in the canonical layout: Glorot-uniform kernels (Keras's
    default; fan-in and fan-out of a conv kernel include its window), zero biases, BatchNorm at
    gamma 1, beta 0, running mean 0, running variance 1."""
    rng = np.random.default_rng([seed, 7919])
    found = {}
    for key in sorted(shapes):  # sorted: the draws do not depend on a framework's key order
        index, name = key.split(".", 1)
        layer, shape = spec.layers[int(index)], shapes[key]
        if name == "weight" and isinstance(layer, (Dense, Conv2D)):
            window = math.prod(shape[2:])
            limit = math.sqrt(6.0 / (shape[0] * window + shape[1] * window))
            found[key] = rng.uniform(-limit, limit, size=shape).astype(np.float32)
        elif name in ("weight", "running_var"):
            found[key] = np.ones(shape, dtype=np.float32)
        else:
            found[key] = np.zeros(shape, dtype=np.float32)
    return found


def kernel_keys(spec: ModelSpec) -> list[str]:
    return [f"{i}.weight" for i, layer in enumerate(spec.layers) if isinstance(layer, (Dense, Conv2D))]


def train_run(backend, data: Dataset, model_name: str, variant: StudyVariant, seed: int, plan: StudyPlan,
              progress: Callable[[str], None] = lambda message: None) -> list[Record]:
    """One training run: a StudyEpochRecord per epoch, a BNVarianceShiftRecord per BatchNorm
    right after a dropout layer, and the StudyRunRecord, in that order."""
    started = time.perf_counter()
    base = study_spec(model_name, data.input_shape, data.num_classes)
    spec = replace(apply_variant(base, parse_variant(variant.spec_variant)), seed=seed)
    model = backend.build(spec, plan.mode)
    model.set_weights(initial_weights(spec, {k: v.shape for k, v in model.get_weights().items()}, seed))
    where = dict(backend=backend.name, data=data.name, model=model_name, variant=variant.label, seed=seed)
    kernels = kernel_keys(spec)
    previous = {k: w for k, w in model.get_weights().items() if k in kernels}
    stopper = (EarlyStopping(plan.patience, plan.min_delta, plan.restore_best_weights)
               if variant.early_stopping else None)
    records: list[Record] = []
    for epoch in range(plan.epochs):
        x_fit = data.x_train
        if variant.augment:  # fresh copies each epoch, the same in every framework; clean data for evaluation
            x_fit = augment(data.x_train, data.natural_shape, data.name in FLIP_DATA,
                            np.random.default_rng([seed, epoch, AUGMENT_STREAM]))
        fit_loss = model.train_epoch(x_fit, data.y_train, seed=seed * 100_003 + epoch)
        train, val = model.evaluate(data.x_train, data.y_train), model.evaluate(data.x_val, data.y_val)
        current = {k: w for k, w in model.get_weights().items() if k in kernels}
        records.append(StudyEpochRecord(**where, epoch=epoch, train_loss=train.loss, train_acc=train.accuracy,
                                        val_loss=val.loss, val_acc=val.accuracy, fit_loss=fit_loss,
                                        constancy=constancy(previous, current)))
        previous = current
        progress(f"{variant.label} seed {seed} epoch {epoch + 1}/{plan.epochs}: val_loss {val.loss:.4f}, "
                 f"val_acc {val.accuracy:.4f}")
        if stopper is not None and stopper.update(epoch, val.loss, model.get_weights):
            break
    if stopper is not None and stopper.restored_epoch is not None:
        model.set_weights(stopper.best_weights)
        train, val = model.evaluate(data.x_train, data.y_train), model.evaluate(data.x_val, data.y_val)
    records += bn_variance_shifts(backend, model, spec, data, where)
    records.append(StudyRunRecord(
        **where, epochs_run=sum(isinstance(r, StudyEpochRecord) for r in records),
        early_stopping=variant.early_stopping,
        stopped_epoch=(stopper.stopped_epoch or None) if stopper is not None else None,
        restored_epoch=stopper.restored_epoch if stopper is not None else None,
        train_loss=train.loss, train_acc=train.accuracy, val_loss=val.loss, val_acc=val.accuracy,
        elapsed_s=time.perf_counter() - started,
        sparsity=sparsity({k: w for k, w in model.get_weights().items() if k in kernels})))
    return records


def bn_variance_shifts(backend, model, spec: ModelSpec, data: Dataset, where: dict) -> list[BNVarianceShiftRecord]:
    found = []
    weights = model.get_weights()
    for index, layer in enumerate(spec.layers):
        if not (isinstance(layer, BatchNorm) and index > 0 and isinstance(spec.layers[index - 1], Dropout)):
            continue
        inputs = model.layer_input(data.x_val, index)
        running_var = weights[f"{index}.running_var"].astype(np.float64)
        if backend.BN_BIASED_RUNNING_VAR:
            # Keras updates running_var with the biased batch variance (PyTorch: unbiased); put it
            # on PyTorch's footing, n/(n-1) with n the values per channel in a batch.
            n = spec.batch_size * math.prod(inputs.shape[1:-1])
            running_var *= n / (n - 1)
        ratios = variance_shift(running_var, inputs)
        found.append(BNVarianceShiftRecord(**where, layer=index, dropout_rate=spec.layers[index - 1].rate,
                                           shift=float(np.nanmedian(ratios)),
                                           shift_per_channel=tuple(float(r) for r in ratios if np.isfinite(r))))
    return found
