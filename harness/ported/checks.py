"""Parity of a user's torch model and its Keras port, layer by layer, through training.

Both models are built twice, in float32 and in float64 (torch: a double copy; Keras: the factory
called again under the float64 dtype policy), and every Keras model gets the torch model's
weights (harness/ported/mapping.py). Then, in order (each a ParityRecord, check names ending in
the Keras layer's name):
- forward_eval[L] / forward_train[L]: each mapped layer's output in eval and train mode (train:
  BatchNorm on batch statistics; dropout rates set to 0 in both, as masks cannot match);
- alone_eval[L]: the Keras layer fed torch's recorded input to it, against torch's output: a
  layer that agrees alone but not in the model inherits a difference from before it;
- logits, loss (cross-entropy on the logits, plus the Keras model's own losses: regularizers);
- grad[L.role]: gradients of every mapped weight;
- sgd_K_steps[L]: each framework trains K steps (SGD, momentum 0.9) on the same batches with
  its own gradients; the weights after them;
- bn_running_stats[L]: BatchNorm's running statistics after them (torch keeps the unbiased
  variance, Keras the biased: converted, see harness/parity/checks.py).
Tolerance (harness/parity/tolerance.py): from both frameworks' own float32 error against their
float64 result, so a correct port cannot fail for float32 rounding on either side.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from harness.errors import HarnessInputError
from harness.parity.tolerance import STRUCTURAL_ZERO, TOL_FLOOR, tolerance
from harness.ported import mapping, trace
from harness.ported.pair import ModelPair
from harness.results.records import ParityRecord

STEPS = 3
LR, MOMENTUM = 0.01, 0.9
BACKENDS = ("torch", "keras")


class _Models:
    """The four models (torch and Keras, float32 and float64) with their layer pairs."""

    def __init__(self, torch, keras, pair: ModelPair):
        self.torch, self.keras, self.pair = torch, keras, pair
        with torch.random.fork_rng():  # seeded weights, without touching the caller's generator
            torch.manual_seed(pair.seed)
            users = pair.build("--torch", pair.make_torch)
            pair.check_accepts("--torch", users)
        # Copies: the user's models are never changed (a test suite may go on using them). The
        # Keras model's own initial weights do not matter: torch's are copied into it.
        self.t32 = copy.deepcopy(users).float()
        self.t64 = copy.deepcopy(self.t32).double()
        users = pair.build("--keras", pair.make_keras)
        pair.check_accepts("--keras", users)
        self.k32, self.k64 = (_clone_as(keras, users, dtype) for dtype in ("float32", "float64"))
        x = pair.batches(1)[0][0]
        self.pairs32 = mapping.pair_layers(trace.torch_call_order(torch, self.t32, self.torch_input(x, self.t32)),
                                           self.k32)
        self.pairs64 = mapping.pair_layers(trace.torch_call_order(torch, self.t64, self.torch_input(x, self.t64)),
                                           self.k64)
        mapping.copy_weights(self.pairs32, np.float32)
        mapping.copy_weights(self.pairs64, np.float64)
        self.initial_variance = {p.name: mapping.torch_tensors(p.torch_module).get("running_var", 1.0)
                                 for p in self.pairs32}
        for model in (self.t32, self.t64):
            for module in model.modules():
                if isinstance(module, torch.nn.modules.dropout._DropoutNd):
                    module.p = 0.0
        for model in (self.k32, self.k64):
            for layer in model._flatten_layers():
                if isinstance(layer, keras.layers.Dropout):
                    layer.rate = 0.0
        self.tracers = (trace.keras_tracer(keras, self.k32, self.pairs32),
                        trace.keras_tracer(keras, self.k64, self.pairs64))
        self._settle_flatten_order(x)

    def _settle_flatten_order(self, x: np.ndarray) -> None:
        """A Dense after Flatten gets its kernel rows permuted from torch's (C, H, W) order to
        Keras's (H, W, C), unless the Keras model already flattens in torch's order (a Permute
        before the Flatten): decided from what the Dense receives in both frameworks."""
        t32, _, k32, _ = self.traces(x, training=False)
        for index, p in enumerate(self.pairs32):
            theirs, ours = t32.inputs[p.name], k32.inputs[p.name]
            if (p.kind == "dense" and mapping.flatten_source_shape(p.keras_layer) is not None
                    and theirs.shape == ours.shape and np.allclose(ours, theirs, rtol=1e-4, atol=1e-6)):
                for pairs, dtype in ((self.pairs32, np.float32), (self.pairs64, np.float64)):
                    pairs[index] = replace(pairs[index], flat_as_torch=True)
                    mapping.copy_weights([pairs[index]], dtype)

    def torch_input(self, x: np.ndarray, model):
        tensor = self.torch.from_numpy(np.ascontiguousarray(x))
        return tensor if self.pair.input_ints else tensor.to(next(model.parameters()).dtype)

    def keras_input(self, x: np.ndarray, dtype):
        x = self.pair.keras_input(x)
        return x if self.pair.input_ints else x.astype(dtype)

    def traces(self, x: np.ndarray, training: bool) -> tuple[trace.Trace, ...]:
        """(torch32, torch64, keras32, keras64) traces of one forward pass; torch's layer outputs
        pass through the Keras layer's own activation, where it has one (Dense(..., activation=
        'relu') is torch's Linear and the ReLU after it)."""
        torch_traces = (trace.trace_torch(self.torch, model, pairs, self.torch_input(x, model), training)
                        for model, pairs in ((self.t32, self.pairs32), (self.t64, self.pairs64)))
        return (*(self._activated(t) for t in torch_traces),
                trace.trace_keras(self.tracers[0], self.pairs32, self.keras_input(x, np.float32), training),
                trace.trace_keras(self.tracers[1], self.pairs64, self.keras_input(x, np.float64), training))

    def _activated(self, found: trace.Trace) -> trace.Trace:
        outputs = dict(found.outputs)
        for p in self.pairs32:
            activation = getattr(p.keras_layer, "activation", None)
            if activation is not None and getattr(activation, "__name__", "") != "linear":
                outputs[p.name] = np.asarray(self.keras.ops.convert_to_numpy(activation(outputs[p.name])))
        return replace(found, outputs=outputs)


def _clone_as(keras, model, dtype: str):
    """A functional Keras model rebuilt layer by layer in `dtype` (its weights are set later)."""
    def clone(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": dtype})

    try:
        return keras.models.clone_model(model, clone_function=clone)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise HarnessInputError(f"the Keras model cannot be rebuilt in {dtype} ({type(exc).__name__}: {exc}); build "
                                "it with the functional API (keras.Input ... keras.Model)") from None


def _compare(name: str, check: str, t32, t64, k32, k64, scale: float | None = None) -> ParityRecord:
    t32, t64, k32, k64 = (np.asarray(a, dtype=np.float64) for a in (t32, t64, k32, k64))
    if t32.shape != k32.shape:
        if check.startswith("alone_"):  # e.g. a Keras ZeroPadding layer before it: torch's input does not fit
            return ParityRecord(name, "", check, BACKENDS, 0.0, 0.0, TOL_FLOOR, True,
                                f"not comparable alone: torch's input gives {k32.shape}, torch {t32.shape}", 0.0,
                                info=True)
        return ParityRecord(name, "", check, BACKENDS, float("inf"), float("inf"), TOL_FLOOR, False,
                            f"shapes differ: torch {t32.shape}, Keras {k32.shape}", 0.0)
    scale = scale or float(np.max(np.abs(t64), initial=0.0)) or 1.0
    max_abs = float(np.max(np.abs(t32 - k32), initial=0.0))
    err_torch = float(np.max(np.abs(t32 - t64), initial=0.0)) / scale
    err_keras = float(np.max(np.abs(k32 - k64), initial=0.0)) / scale
    tol, note = tolerance(err_torch, err_keras)
    return ParityRecord(name, "", check, BACKENDS, max_abs, max_abs / scale, tol, bool(max_abs / scale <= tol),
                        note, err_torch, err_keras)


def check_pair(torch, keras, tf, pair: ModelPair, steps: int = STEPS,
               progress: Callable[[str], None] = lambda message: None) -> tuple[list[ParityRecord], _Models]:
    """Every check of the module docstring; the records in that order, and the models."""
    models = _Models(torch, keras, pair)
    batches = pair.batches(steps + 1)
    x, y = batches[0]
    records = []
    progress("forward, eval mode")
    t32, t64, k32, k64 = models.traces(x, training=False)
    models.first_eval = (t32, k32)  # before any training: what the diagnosis compares
    for p in models.pairs32:
        records.append(_compare(pair.name, f"forward_eval[{p.name}]", t32.outputs[p.name], t64.outputs[p.name],
                                k32.outputs[p.name], k64.outputs[p.name]))
    records.append(_compare(pair.name, "logits_eval", t32.logits, t64.logits, k32.logits, k64.logits))
    for p, p64 in zip(models.pairs32, models.pairs64):
        alone32 = np.asarray(p.keras_layer(mapping.input_as_keras(p, t32.inputs[p.name]).astype(
            _dtype_of(p, np.float32)), training=False))
        alone64 = np.asarray(p64.keras_layer(mapping.input_as_keras(p64, t64.inputs[p.name]).astype(
            _dtype_of(p, np.float64)), training=False))
        records.append(_compare(pair.name, f"alone_eval[{p.name}]", t32.outputs[p.name], t64.outputs[p.name],
                                alone32, alone64))
    progress("forward, train mode")
    t32, t64, k32, k64 = models.traces(x, training=True)
    for p in models.pairs32:
        records.append(_compare(pair.name, f"forward_train[{p.name}]", t32.outputs[p.name], t64.outputs[p.name],
                                k32.outputs[p.name], k64.outputs[p.name]))
    progress("loss and gradients")
    records += _loss_and_gradients(models, tf, x, y)
    progress(f"{steps} SGD steps")
    records += _steps(models, tf, batches[1:])
    return records, models


def _dtype_of(pair: mapping.LayerPair, dtype):
    return np.int64 if pair.kind == "embedding" else dtype


def _torch_loss(models: _Models, model, x, y):
    torch = models.torch
    model.train(True)
    logits = model(models.torch_input(x, model))
    return torch.nn.functional.cross_entropy(logits, torch.from_numpy(np.asarray(y, dtype=np.int64)))


def _keras_loss_and_grads(models: _Models, tf, model, x, y, dtype):
    keras = models.keras
    with tf.GradientTape() as tape:
        logits = model(models.keras_input(x, dtype), training=True)
        # The loss in the model's dtype: Keras losses compute in float32 unless told, which would
        # spoil the float64 oracle.
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=np.dtype(dtype).name)(y, logits)
        if model.losses:  # its regularizers, as fit() adds them
            loss = loss + tf.cast(tf.add_n(model.losses), loss.dtype)
    variables = model.trainable_variables
    # An Embedding's gradient is sparse (IndexedSlices): made dense to compare and to apply alike.
    grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in tape.gradient(loss, variables)]
    return loss, dict(zip((id(v) for v in variables), grads)), variables


def _loss_and_gradients(models: _Models, tf, x, y) -> list[ParityRecord]:
    losses, grads = [], []
    for model in (models.t32, models.t64):
        model.zero_grad()
        loss = _torch_loss(models, model, x, y)
        loss.backward()
        losses.append(loss.item())
    for pairs in (models.pairs32, models.pairs64):
        grads.append({p.name: mapping.keras_values(p, mapping.torch_tensors(p.torch_module, grads=True))
                      for p in pairs})
    for model, pairs, dtype in ((models.k32, models.pairs32, np.float32), (models.k64, models.pairs64, np.float64)):
        loss, by_id, _ = _keras_loss_and_grads(models, tf, model, x, y, dtype)
        losses.append(float(loss))
        grads.append({p.name: {role: np.asarray(by_id[id(v)]) for role, v in mapping.keras_variables(p.keras_layer)
                               .items() if v.trainable and id(v) in by_id} for p in pairs})
    name = models.pair.name
    records = [_compare(name, "loss", *([value] for value in losses))]
    group_scale = max((float(np.max(np.abs(a))) for layer in grads[1].values() for a in layer.values()), default=1.0)
    for p in models.pairs32:
        for role in sorted(grads[0][p.name]):
            found = [g[p.name].get(role) for g in grads]
            if any(f is None for f in found[2:]):
                continue  # a frozen Keras weight: the steps and forward_train checks show it
            exact = float(np.max(np.abs(found[1])))
            scale = group_scale if exact <= STRUCTURAL_ZERO * group_scale else None
            records.append(_compare(name, f"grad[{p.name}.{role}]", *found, scale=scale))
    return records


def _steps(models: _Models, tf, batches) -> list[ParityRecord]:
    """K SGD steps in each framework on the same batches; weights and BN statistics after."""
    torch, keras = models.torch, models.keras
    for model in (models.t32, models.t64):
        optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        for x, y in batches:
            optimizer.zero_grad()
            _torch_loss(models, model, x, y).backward()
            optimizer.step()
    for model, dtype in ((models.k32, np.float32), (models.k64, np.float64)):
        optimizer = keras.optimizers.SGD(learning_rate=LR, momentum=MOMENTUM)
        for x, y in batches:
            _, by_id, variables = _keras_loss_and_grads(models, tf, model, x, y, dtype)
            optimizer.apply_gradients([(by_id[id(v)], v) for v in variables if by_id[id(v)] is not None])
    records = []
    # BatchNorm has updated its statistics once per train-mode forward: the traced one, the
    # gradients' one, and one per step.
    updates = 2 + len(batches)
    for p, p64 in zip(models.pairs32, models.pairs64):
        torch_now = [mapping.keras_values(q, mapping.torch_tensors(q.torch_module)) for q in (p, p64)]
        keras_now = [{role: np.asarray(v) for role, v in mapping.keras_variables(q.keras_layer).items()}
                     for q in (p, p64)]
        for kind, roles in (("sgd", [r for r in mapping.TRAINABLE_ROLES if r in keras_now[0]]),
                            ("bn", [r for r in ("moving_mean", "moving_variance") if r in keras_now[0]])):
            if not roles:
                continue
            values = [np.concatenate([side[r].ravel() for r in roles]) for side in (*torch_now, *keras_now)]
            if kind == "bn":
                values[2:] = [_as_unbiased(keras_now[i], p, models, updates) for i in range(2)]
            check = f"sgd_{len(batches)}_steps[{p.name}]" if kind == "sgd" else f"bn_running_stats[{p.name}]"
            records.append(_compare(models.pair.name, check, *values))
    return records


def _as_unbiased(keras_stats: dict, pair: mapping.LayerPair, models: _Models, updates: int) -> np.ndarray:
    """Keras's running mean and variance with the variance converted to torch's convention:
    torch_rv = m^T v0 + c (keras_rv - m^T v0), c = n / (n - 1), with Keras's momentum m, v0 = the
    variance both started from, n = values per channel in a batch."""
    m = float(pair.keras_layer.momentum)
    shape = pair.keras_layer.input.shape
    n = models.pair.batch * int(np.prod([d for d in shape[1:-1]], initial=1))
    decay = m ** updates
    v0 = models.initial_variance[pair.name]
    variance = decay * v0 + n / (n - 1) * (keras_stats["moving_variance"] - decay * v0)
    return np.concatenate([keras_stats["moving_mean"].ravel(), variance.ravel()])
