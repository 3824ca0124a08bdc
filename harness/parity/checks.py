"""Parity: load the same weights into PyTorch (the reference) and another backend and compare.

Checks, per spec and variant (one ParityRecord each):
- forward_eval            eval-mode logits, the spec as written (dropout is the identity).
- forward_train, loss, grad[NAME]
                          train mode: BatchNorm uses batch statistics. Dropout masks cannot
                          match across frameworks, so these run on the same spec with every
                          dropout rate set to 0 (the layers stay in place).
- sgd_momentum_10_steps, adam_10_steps
                          the total parameter update of 10 optimizer steps on 10 different
                          batches, every optimizer fed the reference's gradients of each step
                          (gradient parity is the grad[...] checks; this checks momentum,
                          Adam's moments, bias correction and epsilon). The spec's optimizer
                          where it is of that kind, else SGD(0.01, 0.9) / Adam(1e-3).
- bn_running_stats[OPT]   BatchNorm running mean and variance after those 10 steps (each
                          framework accumulates its own).
- dropout_*[p=P]          for each dropout rate p > 0, per framework: the dropped fraction is
                          p (within 5 binomial standard deviations), survivors are scaled by
                          exactly 1/(1-p), and eval mode is the identity.

Convention traps handled in the backends (see backends/*.py): BN momentum (m vs 1-m), BN epsilon
defaults, the L2 penalty scale, Adam's epsilon placement, NHWC vs NCHW flatten order, TF32.
One trap is handled here, because hiding it in a backend would change the model: PyTorch
updates running_var with the unbiased batch variance (n/(n-1) * biased), Keras with the biased
one. After T updates from the same start v0, with Keras momentum m:
    torch_rv = m^T v0 + c * (keras_rv - m^T v0),   c = n / (n - 1)
(n = values per channel in a batch: N*H*W after a conv, N after a dense). We compare PyTorch's
running_var with that conversion of Keras's.

Tolerances (harness/parity/tolerance.py). Each framework runs every check twice from the same
weights and data, in float32 and in float64: four models. A backend that builds no float64
model (SUPPORTS_FLOAT64 False) is refused: without its own float64 result its float32 error is
unknown, and no tolerance could be both tight and safe from false FAILs. Errors are relative to the scale of
the exact result, max|a - b| / max|reference in float64|. Each framework's float32 result is
compared with its own float64 result, and the sum of those two errors (with a margin) bounds how
far two correct float32 implementations can differ:
    tol = max(floor, SAFETY_FACTOR * (f64_err + other_f64_err))
Where a computation is well conditioned both errors are ~1e-7 and the floor (1e-5) rules, as
tight as float32 allows. Where it is not (BatchNorm's backward subtracts nearly equal sums; a
gradient that is mathematically zero, as for a bias right before BatchNorm, is pure rounding
noise; Keras computes Adam's bias correction 1 - beta^t in float32) float32 itself cannot do
better, in either framework, and the record's detail says the tolerance was widened. The bound
assumes the two float64 results agree; a check whose float64 results differ by more than
F64_AGREEMENT of its tolerance fails whatever its float32 difference. A layout or convention
bug moves both of the other framework's results alike: its own error stays small, the
difference does not (1e-3 and up), and the check fails.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np

from backends.base import Backend
from harness.errors import HarnessInputError
from harness.model.layers import BatchNorm, Dropout
from harness.model.spec import ModelSpec, Optimizer, infer_shapes
from harness.model.synthetic import synthetic_batch
from harness.model.variants import Variant, apply_variant
from harness.parity.tolerance import F64_AGREEMENT, STRUCTURAL_ZERO, TOL_FLOOR, tolerance
from harness.results.records import ParityRecord

# Survivors of dropout are x * (1 / (1 - p)) or x / (1 - p): one or two roundings.
TOL_DROPOUT_SCALE = 5e-7
STEPS = 10
DROPOUT_PROBE_SHAPE = (1000, 1000)


class Runs(NamedTuple):
    """One result (an array, a number or a dict of arrays) from each of the four models: each
    framework in float32 (reference, other) and in float64 (reference64, other64)."""

    reference: Any
    other: Any
    reference64: Any
    other64: Any

    def pick(self, key: str) -> Runs:
        return Runs(*(run[key] for run in self))

    def map(self, function) -> Runs:
        return Runs(*(function(run) for run in self))


def _max_abs(array) -> float:
    array = np.asarray(array, dtype=np.float64)
    return float(np.max(np.abs(array))) if array.size else 0.0


def _compare(model, variant, check, backends, runs: Runs, group_scale: float | None = None) -> ParityRecord:
    ref, other, ref64, other64 = (np.asarray(run, dtype=np.float64) for run in runs)
    if ref64.size == 0:
        return ParityRecord(model, variant, check, tuple(backends), 0.0, 0.0, TOL_FLOOR, True, "", 0.0, 0.0)
    notes = []
    scale = None
    if group_scale is not None and _max_abs(ref64) <= STRUCTURAL_ZERO * group_scale:
        scale = group_scale
        notes.append("zero in float64 (e.g. a bias feeding BatchNorm): judged against the largest tensor of the check")
    scale = scale or _max_abs(ref64) or _max_abs(ref) or 1.0
    max_abs = _max_abs(ref - other)
    err_ref, err_other, gap = (_max_abs(a - b) / scale for a, b in ((ref, ref64), (other, other64), (ref64, other64)))
    tol, note = tolerance(err_ref, err_other)
    notes += [note] if note else []
    agree = gap <= F64_AGREEMENT * tol
    if not agree:
        notes.append(f"the float64 results differ by {gap:.1e} (> {F64_AGREEMENT:g} x tol): not the same function")
    passed = bool(max_abs / scale <= tol and agree)
    return ParityRecord(model, variant, check, tuple(backends), max_abs, max_abs / scale, tol, passed,
                        "; ".join(notes), err_ref, err_other)


def _badness(record: ParityRecord) -> tuple[bool, float]:
    """Failed first, then error as a fraction of the tolerance (> 1 fails)."""
    return not record.passed, record.max_rel_err / record.tol


def _compare_tensors(model, variant, check, backends, runs: Runs, keys) -> ParityRecord:
    """One record for several tensors: the one with the largest error against its tolerance."""
    group_scale = max(_max_abs(runs.reference64[k]) for k in keys)
    records = {k: _compare(model, variant, check, backends, runs.pick(k), group_scale) for k in keys}
    worst_key = max(records, key=lambda k: _badness(records[k]))
    worst = records[worst_key]
    notes = [f"worst of {len(records)} tensors: {worst_key}"] + ([worst.detail] if worst.detail else [])
    return replace(worst, detail="; ".join(notes))


def _without_dropout_noise(spec: ModelSpec) -> ModelSpec:
    if not any(isinstance(layer, Dropout) and layer.rate > 0 for layer in spec.layers):
        return spec
    return apply_variant(spec, Variant.of(dropout=0.0))


def _optimizers(spec: ModelSpec) -> dict[str, Optimizer]:
    own = spec.optimizer
    sgd = own if own.type == "sgd" and own.momentum > 0 else Optimizer("sgd", lr=0.01, momentum=0.9)
    adam = own if own.type == "adam" else Optimizer("adam", lr=1e-3)
    return {"sgd_momentum": sgd, "adam": adam}


def _as_reference_running_var(spec: ModelSpec, reference: Backend, other: Backend, other_weights: dict,
                              start: dict, steps: int, batch: int) -> dict:
    """The other backend's running variances in the reference's convention (module docstring):
    biased -> unbiased multiplies the accumulated part by c = n / (n - 1); the reverse by 1 / c."""
    if other.BN_BIASED_RUNNING_VAR == reference.BN_BIASED_RUNNING_VAR:
        return other_weights
    shapes = infer_shapes(spec)
    converted = dict(other_weights)
    for index, layer in enumerate(spec.layers):
        if not isinstance(layer, BatchNorm):
            continue
        in_shape = shapes.inputs[index]
        n = batch * (in_shape[0] * in_shape[1] if len(in_shape) == 3 else 1)
        c = n / (n - 1) if other.BN_BIASED_RUNNING_VAR else (n - 1) / n
        key = f"{index}.running_var"
        start_part = layer.momentum ** steps * np.asarray(start[key], dtype=np.float64)  # float64: exact for an oracle
        converted[key] = start_part + c * (other_weights[key] - start_part)
    return converted


class _Models:
    """The same model four times: each framework in float32 and in float64 (`models`, a Runs)."""

    def __init__(self, reference: Backend, other: Backend, spec: ModelSpec, weights: dict):
        self.weights = weights
        self.models = Runs(reference.build(spec), other.build(spec), reference.build(spec, dtype="float64"),
                           other.build(spec, dtype="float64"))
        self.reset()

    def reset(self) -> _Models:
        """Load the starting weights (BN running statistics included) into all four."""
        for model in self.models:
            model.set_weights(self.weights)
        return self

    def each(self, method: str, *args) -> Runs:
        """One Model method's results, one per model."""
        return self.models.map(lambda model: getattr(model, method)(*args))


def _after_steps(models: _Models, batches) -> tuple[Runs, list[dict]]:
    """The weights after one optimizer step per batch, every optimizer fed the float32
    reference's gradients; and those gradients, step by step.

    The same gradients go into every optimizer: this checks the optimizers' arithmetic, not the
    trajectory. Free-running float32 trajectories are chaotic (a rounding-level difference decides
    a ReLU or max-pool kink, and Adam turns a gradient near epsilon into an lr-sized step);
    gradients are checked on their own. Each model's own train-mode forward updates its BN
    running statistics."""
    ref_model, *others = models.models
    fed = []
    for bx, by in batches:
        gradients = ref_model.gradients(bx, by, True)
        for model in others:
            model.forward(bx, True)
        for model in models.models:
            model.apply_gradients(gradients)
        fed.append(gradients)
    return models.each("get_weights"), fed


def _stock_adam_divergence(matched: ParityRecord, models: _Models, other: Backend, fed, updates: Runs, keys):
    """Information, not a check: the other framework's stock Adam (its own epsilon placement, what
    timing runs) against the reference after the same steps, next to the matched optimizer's
    error (`matched`)."""
    spec = replace(models.models.other.spec, optimizer_impl="stock")
    stock = {dtype: other.build(spec, dtype=dtype) for dtype in ("float32", "float64")}
    stock_updates = {}
    for dtype, model in stock.items():
        model.set_weights(models.weights)
        for gradients in fed:  # the very gradients the matched optimizers were fed
            model.apply_gradients(gradients)
        after = model.get_weights()
        stock_updates[dtype] = {k: after[k] - models.weights[k] for k in keys}
    runs = updates._replace(other=stock_updates["float32"], other64=stock_updates["float64"])
    record = _compare_tensors(matched.model, matched.variant, f"adam_{STEPS}_steps_stock_optimizer", matched.backends,
                              runs, keys=keys)
    return replace(record, passed=True, info=True, detail=(
        f"information, not a check ({stock['float32'].optimizer_class} vs the reference): Keras adds epsilon to "
        "sqrt(v), PyTorch to sqrt(v_hat) = sqrt(v) / sqrt(1 - beta_2^t), so the same epsilon weighs "
        "1/sqrt(1 - beta_2^t) times more in Keras (31.6x at step 1 with beta_2 0.999); the matched optimizer's "
        f"error is {matched.max_rel_err:.1e}. {record.detail}"))


def check_variant(reference: Backend, other: Backend, spec: ModelSpec, variant: Variant) -> list[ParityRecord]:
    # Parity trains with the placement-matched optimizer (bitwise-comparable arithmetic); the
    # stock optimizer's divergence is reported as information next to it.
    for backend in (reference, other):
        if not backend.SUPPORTS_FLOAT64:
            raise HarnessInputError(f"parity: the {backend.name} backend builds no float64 model (SUPPORTS_FLOAT64), "
                                    f"which parity needs as the oracle of its float32 error "
                                    f"(harness/parity/tolerance.py)")
    vspec = replace(apply_variant(spec, variant), optimizer_impl="matched")
    label, names = variant.label, (reference.name, other.name)
    x, y = synthetic_batch(vspec, seed=vspec.seed)
    weights = reference.build(vspec).get_weights()
    records = [_compare(spec.name, label, "forward_eval", names,
                        _Models(reference, other, vspec, weights).each("forward", x, False))]

    # Train-mode calls update BN running statistics: reset before each check.
    train = _Models(reference, other, _without_dropout_noise(vspec), weights)
    records.append(_compare(spec.name, label, "forward_train", names, train.each("forward", x, True)))
    losses = train.reset().each("loss", x, y, True)
    records.append(_compare(spec.name, label, "loss", names, losses.map(lambda value: np.array([value]))))
    gradients = train.reset().each("gradients", x, y, True)
    grad_scale = max(_max_abs(g) for g in gradients.reference64.values())
    records += [_compare(spec.name, label, f"grad[{key}]", names, gradients.pick(key), grad_scale)
                for key in gradients.reference]

    batches = [synthetic_batch(vspec, seed=vspec.seed + 1 + step) for step in range(STEPS)]
    bn_keys = [k for k in weights if k.endswith(("running_mean", "running_var"))]
    trainable = [k for k in weights if k not in bn_keys]
    for name, optimizer in _optimizers(vspec).items():
        models = _Models(reference, other, replace(train.models.reference.spec, optimizer=optimizer), weights)
        after, fed = _after_steps(models, batches)
        updates = after.map(lambda w: {k: w[k] - weights[k] for k in trainable})
        records.append(_compare_tensors(spec.name, label, f"{name}_{STEPS}_steps", names, updates, keys=trainable))
        if bn_keys:
            other32, other64 = [_as_reference_running_var(models.models.reference.spec, reference, other, found,
                                                          weights, STEPS, vspec.batch_size)
                                for found in (after.other, after.other64)]
            stats = after._replace(other=other32, other64=other64)
            records.append(_compare_tensors(spec.name, label, f"bn_running_stats[{name}]", names, stats, keys=bn_keys))
        if name == "adam" and "matched" in type(other).IDIOMS["optimizer_impl"]:
            records.append(_stock_adam_divergence(records[-1 - bool(bn_keys)], models, other, fed, updates,
                                                  trainable))

    for rate in sorted({layer.rate for layer in vspec.layers if isinstance(layer, Dropout) and layer.rate > 0}):
        for backend in (reference, other):
            records += _dropout_semantics(backend, spec.name, label, rate)
    return records


def _dropout_semantics(backend: Backend, model: str, variant: str, rate: float) -> list[ParityRecord]:
    x = np.random.default_rng(0).uniform(1.0, 2.0, DROPOUT_PROBE_SHAPE).astype(np.float32)
    trained = backend.dropout_probe(rate, x, training=True)
    dropped = trained == 0
    fraction = float(dropped.mean())
    sigma = float(np.sqrt(rate * (1 - rate) / x.size))
    survivors = ~dropped
    expected = x[survivors] / (1.0 - rate)
    scale_abs = _max_abs(trained[survivors] - expected)
    scale_rel = scale_abs / (_max_abs(expected) or 1.0)
    evaluated = backend.dropout_probe(rate, x, training=False)
    eval_abs = _max_abs(evaluated - x)
    eval_rel = eval_abs / _max_abs(x)
    name, p = (backend.name,), f"p={rate:g}"
    return [
        ParityRecord(model, variant, f"dropout_fraction[{p}]", name, abs(fraction - rate), abs(fraction - rate) / rate,
                     5 * sigma / rate, abs(fraction - rate) <= 5 * sigma,
                     f"dropped {fraction:.5f} of {x.size} (expected {rate:g} ± {5 * sigma:.5f})"),
        ParityRecord(model, variant, f"dropout_scale[{p}]", name, scale_abs, scale_rel, TOL_DROPOUT_SCALE,
                     scale_rel <= TOL_DROPOUT_SCALE, f"survivors scaled by 1/(1-{rate:g})"),
        ParityRecord(model, variant, f"dropout_eval_identity[{p}]", name, eval_abs, eval_rel, 0.0, eval_abs == 0.0,
                     "eval mode returns its input unchanged"),
    ]
