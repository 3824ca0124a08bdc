"""Parity: load the same weights into PyTorch (the reference) and TensorFlow and compare.

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

Tolerances. Errors are relative to the scale of the exact result: max|a - b| / max|exact|.
"Exact" is the reference framework run in float64 from the same weights and data: an oracle
for how far float32 rounding alone moves each result. The frameworks must agree within
    tol = max(floor, ROUNDING_FACTOR * f64_err)
where f64_err is the float32 reference's own error against float64 and the floor is a fixed
float32 budget (1e-5). Where a computation is well conditioned f64_err is ~1e-7 and the floor
rules, as tight as float32 allows. Where it is not (BatchNorm's backward subtracts nearly equal
sums; a gradient that is mathematically zero, as for a bias right before BatchNorm, is pure
rounding noise) float32 itself cannot do better, and the tolerance says so in the record's detail
instead of hiding it. A layout or convention bug gives errors far above both (1e-3 and up).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from backends.base import Backend
from harness.model.layers import BatchNorm, Dropout
from harness.model.spec import ModelSpec, Optimizer, infer_shapes
from harness.model.synthetic import synthetic_batch
from harness.model.variants import Variant, apply_variant
from harness.results.records import ParityRecord

# float32 has a unit roundoff of 6e-8; a dot product of k terms summed in a different order
# (oneDNN vs MKL blockings) differs by about sqrt(k) * 6e-8 relative to its scale, and
# k <= ~1e3 here (784 inputs, 3x3x64 = 576 conv taps): ~2e-6. The floor of 1e-5 leaves 5x
# headroom; observed forward errors are ~4e-7.
TOL_FLOOR = 1e-5
# Keras computes Adam's bias corrections 1 - beta^t in float32, PyTorch in Python floats
# (float64): at t=1, 1 - 0.999 loses 6e-8 / 1e-3 = 6e-5 relative to cancellation, 3e-5 after
# the square root. The oracle cannot see this (the float32 reference uses doubles there).
TOL_ADAM_FLOOR = 5e-5
# A tensor whose exact (float64) value is below this fraction of the largest tensor in its
# check is zero up to rounding: e.g. the gradient of a bias feeding BatchNorm (directly or
# through max-pooling, which commutes with a per-channel shift). Its float32 values are pure
# noise, so it is judged against the check's largest tensor: both frameworks must find ~0.
STRUCTURAL_ZERO = 1e-6
# Two float32 implementations each carry their own rounding error; we allow the other framework
# up to 3x the reference's, so a difference of up to 4x the reference's error vs float64.
ROUNDING_FACTOR = 4.0
# Survivors of dropout are x * (1 / (1 - p)) or x / (1 - p): one or two roundings.
TOL_DROPOUT_SCALE = 5e-7
STEPS = 10
DROPOUT_PROBE_SHAPE = (1000, 1000)


def _max_abs(array) -> float:
    array = np.asarray(array, dtype=np.float64)
    return float(np.max(np.abs(array))) if array.size else 0.0


def _scaled_errors(exact, reference, other, scale: float | None = None) -> tuple[float, float, float]:
    """(max|ref - other|, that / scale, max|ref - exact| / scale); scale defaults to max|exact|."""
    exact, reference, other = (np.asarray(a, dtype=np.float64) for a in (exact, reference, other))
    if exact.size == 0:
        return 0.0, 0.0, 0.0
    scale = scale or _max_abs(exact) or _max_abs(reference) or 1.0
    max_abs = _max_abs(reference - other)
    return max_abs, max_abs / scale, _max_abs(reference - exact) / scale


def _compare(model, variant, check, backends, exact, reference, other, group_scale: float | None = None,
             floor: float = TOL_FLOOR) -> ParityRecord:
    notes = []
    scale = None
    if group_scale is not None and _max_abs(exact) <= STRUCTURAL_ZERO * group_scale:
        scale = group_scale
        notes.append("zero in float64 (e.g. a bias feeding BatchNorm): judged against the largest tensor of the check")
    max_abs, max_rel, rounding = _scaled_errors(exact, reference, other, scale)
    tol = max(floor, ROUNDING_FACTOR * rounding)
    if tol > floor:
        notes.append(f"tolerance widened to {ROUNDING_FACTOR:g} x float32's own error")
    return ParityRecord(model, variant, check, tuple(backends), max_abs, max_rel, tol, bool(max_rel <= tol),
                        "; ".join(notes), rounding)


def _badness(record: ParityRecord) -> float:
    """Error as a fraction of the tolerance: > 1 fails."""
    return record.max_rel_err / record.tol


def _compare_tensors(model, variant, check, backends, exact: dict, reference: dict, other: dict, keys,
                     floor: float = TOL_FLOOR) -> ParityRecord:
    """One record for several tensors: the one with the largest error against its tolerance."""
    group_scale = max(_max_abs(exact[k]) for k in keys)
    records = {k: _compare(model, variant, check, backends, exact[k], reference[k], other[k], group_scale, floor)
               for k in keys}
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
        decay = layer.momentum ** steps
        key = f"{index}.running_var"
        converted[key] = decay * start[key] + c * (other_weights[key] - decay * start[key])
    return converted


class _Triple:
    """The same model three times: reference float32, other framework float32, reference float64."""

    def __init__(self, reference: Backend, other: Backend, spec: ModelSpec, weights: dict):
        self.weights = weights
        self.models = [reference.build(spec), other.build(spec), reference.build(spec, dtype="float64")]
        self.reset()

    def reset(self) -> _Triple:
        """Load the starting weights (BN running statistics included) into all three."""
        for model in self.models:
            model.set_weights(self.weights)
        return self

    def each(self, method: str, *args):
        """(exact, reference, other): one Model method's results, in _compare's argument order."""
        ref, other, exact = (getattr(model, method)(*args) for model in self.models)
        return exact, ref, other


def _after_steps(triple: _Triple, batches) -> tuple[tuple[dict, dict, dict], list[dict]]:
    """(exact, reference, other) weights after one optimizer step per batch, every optimizer fed
    the reference's gradients; and those gradients, step by step.

    The same gradients go into every optimizer: this checks the optimizers' arithmetic, not the
    trajectory. Free-running float32 trajectories are chaotic (a rounding-level difference decides
    a ReLU or max-pool kink, and Adam turns a gradient near epsilon into an lr-sized step);
    gradients are checked on their own. Each framework's own train-mode forward updates its BN
    running statistics."""
    ref_model, *others = triple.models
    fed = []
    for bx, by in batches:
        gradients = ref_model.gradients(bx, by, True)
        for model in others:
            model.forward(bx, True)
        for model in triple.models:
            model.apply_gradients(gradients)
        fed.append(gradients)
    return triple.each("get_weights"), fed


def _stock_adam_divergence(matched: ParityRecord, triple: _Triple, other: Backend, fed, updates, keys):
    """Information, not a check: the other framework's stock Adam (its own epsilon placement, what
    timing runs) against the reference after the same steps, next to the matched optimizer's
    error (`matched`)."""
    stock = other.build(replace(triple.models[1].spec, optimizer_impl="stock"))
    stock.set_weights(triple.weights)
    for gradients in fed:  # the very gradients the matched optimizers were fed
        stock.apply_gradients(gradients)
    stock_weights = stock.get_weights()
    stock_update = {k: stock_weights[k] - triple.weights[k] for k in keys}
    exact, ref, _ = updates
    record = _compare_tensors(matched.model, matched.variant, f"adam_{STEPS}_steps_stock_optimizer", matched.backends,
                              exact, ref, stock_update, keys=keys, floor=TOL_ADAM_FLOOR)
    return replace(record, passed=True, info=True, detail=(
        f"information, not a check ({stock.optimizer_class} vs the reference): Keras adds epsilon to sqrt(v), "
        "PyTorch to sqrt(v_hat) = sqrt(v) / sqrt(1 - beta_2^t), so the same epsilon weighs 1/sqrt(1 - beta_2^t) "
        f"times more in Keras (31.6x at step 1 with beta_2 0.999); the matched optimizer's error is "
        f"{matched.max_rel_err:.1e}. {record.detail}"))


def check_variant(reference: Backend, other: Backend, spec: ModelSpec, variant: Variant) -> list[ParityRecord]:
    # Parity trains with the placement-matched optimizer (bitwise-comparable arithmetic); the
    # stock optimizer's divergence is reported as information next to it.
    vspec = replace(apply_variant(spec, variant), optimizer_impl="matched")
    label, names = variant.label, (reference.name, other.name)
    x, y = synthetic_batch(vspec, seed=vspec.seed)
    weights = reference.build(vspec).get_weights()
    records = [_compare(spec.name, label, "forward_eval", names,
                        *_Triple(reference, other, vspec, weights).each("forward", x, False))]

    # Train-mode calls update BN running statistics: reset before each check.
    train = _Triple(reference, other, _without_dropout_noise(vspec), weights)
    records.append(_compare(spec.name, label, "forward_train", names, *train.each("forward", x, True)))
    losses = train.reset().each("loss", x, y, True)
    records.append(_compare(spec.name, label, "loss", names, *(np.array([v]) for v in losses)))
    exact, ref, oth = train.reset().each("gradients", x, y, True)
    grad_scale = max(_max_abs(g) for g in exact.values())
    records += [_compare(spec.name, label, f"grad[{key}]", names, exact[key], ref[key], oth[key], grad_scale)
                for key in ref]

    batches = [synthetic_batch(vspec, seed=vspec.seed + 1 + step) for step in range(STEPS)]
    bn_keys = [k for k in weights if k.endswith(("running_mean", "running_var"))]
    trainable = [k for k in weights if k not in bn_keys]
    for name, optimizer in _optimizers(vspec).items():
        triple = _Triple(reference, other, replace(train.models[0].spec, optimizer=optimizer), weights)
        (exact, ref, oth), fed = _after_steps(triple, batches)
        updates = [{k: w[k] - weights[k] for k in trainable} for w in (exact, ref, oth)]
        records.append(_compare_tensors(spec.name, label, f"{name}_{STEPS}_steps", names, *updates, keys=trainable,
                                        floor=TOL_ADAM_FLOOR if name == "adam" else TOL_FLOOR))
        if bn_keys:
            converted = _as_reference_running_var(triple.models[0].spec, reference, other, oth, weights, STEPS,
                                                   vspec.batch_size)
            records.append(_compare_tensors(spec.name, label, f"bn_running_stats[{name}]", names, exact, ref,
                                            converted, keys=bn_keys))
        if name == "adam" and "matched" in type(other).IDIOMS["optimizer_impl"]:
            records.append(_stock_adam_divergence(records[-1 - bool(bn_keys)], triple, other, fed, updates,
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
    scale_abs, scale_rel, _ = _scaled_errors(expected, expected, trained[survivors])
    evaluated = backend.dropout_probe(rate, x, training=False)
    eval_abs, eval_rel, _ = _scaled_errors(x, x, evaluated)
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
