"""Contract tests, run over every backend: what the interface in backends/base.py promises."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pytest

from harness.errors import HarnessInputError
from harness.model.layers import KERNEL_LAYERS, LAYER_TYPES
from harness.model.spec import PRESETS, Optimizer, load_spec, model_cost
from harness.model.synthetic import synthetic_batch
from harness.model.variants import variant_spec

EXAMPLE = "tests/specs/issue_example.json"


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_weights_use_the_canonical_layout(backend, model):
    spec = PRESETS[model]
    weights = backend.build(spec).get_weights()
    trainable = sum(v.size for k, v in weights.items() if not k.endswith(("running_mean", "running_var")))
    assert trainable == model_cost(spec)[0]
    first = weights["0.weight"]
    assert first.shape == ((512, 784) if model == "mlp" else (32, 1, 3, 3))  # Linear (out, in); conv OIHW


def test_set_then_get_weights_round_trips(backend):
    spec = load_spec(EXAMPLE)
    model = backend.build(spec)
    rng = np.random.default_rng(0)
    weights = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in model.get_weights().items()}
    model.set_weights(weights)
    back = model.get_weights()
    assert all(np.array_equal(back[k], weights[k]) for k in weights)


def test_set_weights_rejects_missing_keys(backend):
    model = backend.build(PRESETS["mlp"])
    weights = model.get_weights()
    weights.pop("0.bias")
    with pytest.raises(ValueError, match="0.bias"):
        model.set_weights(weights)


def test_forward_loss_gradients_shapes(backend):
    spec = load_spec(EXAMPLE)
    model = backend.build(spec)
    x, y = synthetic_batch(spec)
    assert model.forward(x, training=False).shape == (spec.batch_size, spec.num_classes)
    assert np.isfinite(model.loss(x, y, training=True))
    grads = model.gradients(x, y, training=True)
    trainable = {k for k in model.get_weights() if not k.endswith(("running_mean", "running_var"))}
    assert set(grads) == trainable


def test_l2_zero_adds_nothing_to_the_loss_but_l2_positive_does(backend):
    spec = PRESETS["mlp"]
    x, y = synthetic_batch(spec)
    weights = backend.build(spec).get_weights()  # every variant gets the same weights
    losses = {}
    for text in ("l2=absent", "l2=0", "l2=0.01"):
        model = backend.build(variant_spec(spec, text)[1])
        model.set_weights(weights)
        losses[text] = model.loss(x, y, training=False)
    assert losses["l2=0"] == pytest.approx(losses["l2=absent"], rel=1e-6)
    assert losses["l2=0.01"] > losses["l2=absent"] + 1e-3


def test_training_reduces_the_loss_on_a_fixed_batch(backend):
    spec = PRESETS["mlp"]
    model = backend.build(variant_spec(spec, "dropout=0")[1])
    x, y = synthetic_batch(spec)
    before = model.loss(x, y, training=False)
    for _ in range(20):
        model.train_step(x, y)
    assert model.loss(x, y, training=False) < before * 0.8


def test_train_epoch_and_evaluate(backend):
    spec = PRESETS["mlp"]
    model = backend.build(spec)
    x, y = synthetic_batch(spec, batch_size=96, seed=3)
    loss = model.train_epoch(x, y, seed=0)
    result = model.evaluate(x, y)
    assert np.isfinite(loss) and 0.0 <= result.accuracy <= 1.0 and result.loss > 0


def test_timed_step_changes_the_weights(backend):
    spec = PRESETS["mlp"]
    model = backend.build(spec)
    x, y = synthetic_batch(spec)
    before = model.get_weights()["0.weight"].copy()
    model.timed_step(x, y)()
    assert not np.array_equal(model.get_weights()["0.weight"], before)


def test_graph_counts_show_a_zero_regularizer(backend):
    spec = PRESETS["mlp"]
    x, y = synthetic_batch(spec)

    def counts(text):
        return {c.graph: c.node_count for c in backend.build(variant_spec(spec, text)[1]).graph_counts(x, y)}

    absent, zero = counts("l2=absent"), counts("l2=0")
    assert absent.keys() == zero.keys()
    assert all(zero[g] > absent[g] for g in absent)  # 0 * sum(w^2) is computed, in both frameworks


def test_unknown_mode_is_bad_input(backend):
    with pytest.raises(HarnessInputError, match="mode"):
        backend.build(PRESETS["mlp"], "interpretive-dance")


def test_dropout_probe_semantics(backend):
    x = np.ones((200, 500), dtype=np.float32)
    out = backend.dropout_probe(0.5, x, training=True)
    assert 0.45 < (out == 0).mean() < 0.55
    assert np.allclose(out[out != 0], 2.0)
    assert np.array_equal(backend.dropout_probe(0.5, x, training=False), x)


def test_apply_gradients_is_one_optimizer_step(backend):
    spec = replace(PRESETS["mlp"], optimizer=Optimizer("sgd", lr=0.5))
    model = backend.build(spec)
    before = model.get_weights()
    gradients = {k: np.full_like(v, 0.25) for k, v in before.items() if k.endswith(("weight", "bias"))}
    model.apply_gradients(gradients)
    after = model.get_weights()
    assert all(np.allclose(after[k], before[k] - 0.125) for k in gradients)  # w - lr * g, plain SGD


@dataclass(frozen=True)
class _Mystery:
    """A layer type no backend knows."""

    type: ClassVar[str] = "mystery"

    def output_shape(self, shape, where):
        return shape


def test_a_layer_type_without_a_builder_is_an_error_not_an_identity(backend):
    spec = PRESETS["mlp"].with_layers([_Mystery(), *PRESETS["mlp"].layers])
    with pytest.raises(NotImplementedError, match=f"{backend.name} backend has no builder for layer type 'mystery'"):
        backend.build(spec)


def test_every_layer_type_builds(backend):
    spec = load_spec("tests/specs/odd_deeper_cnn.json")
    assert {layer.type for layer in spec.layers} == set(LAYER_TYPES)  # this spec uses every type
    x, y = synthetic_batch(spec)
    assert np.isfinite(backend.build(spec).train_step(x, y))


def test_set_weights_rejects_a_wrong_shape(backend):
    model = backend.build(PRESETS["mlp"])
    weights = model.get_weights()
    weights["0.weight"] = weights["0.weight"].T
    with pytest.raises(ValueError, match=r"weights\['0.weight'\]: shape \(784, 512\)"):
        model.set_weights(weights)


def test_mode_and_device_are_checked_once_for_every_backend(backend):
    with pytest.raises(HarnessInputError, match=f"--mode: {backend.name} has no mode 'warp'"):
        backend.build(PRESETS["mlp"], "warp")
    with pytest.raises(HarnessInputError, match=f"--device: {backend.name} has no device 'abacus'"):
        type(backend)(device="abacus")


def _float32_and_float64(backend, spec):
    """The spec built in float32 and in float64 with the same (float32) weights; a backend without
    SUPPORTS_FLOAT64 must refuse float64 (then the test is skipped)."""
    if not backend.SUPPORTS_FLOAT64:
        with pytest.raises(ValueError, match="float64"):
            backend.build(spec, dtype="float64")
        pytest.skip(f"the {backend.name} backend builds no float64 models")
    weights = backend.build(spec).get_weights()
    models = [backend.build(spec, dtype=dtype) for dtype in ("float32", "float64")]
    for model in models:
        model.set_weights(weights)
    return weights, models


def _relative(found, exact) -> float:
    found, exact = np.asarray(found, dtype=np.float64), np.asarray(exact, dtype=np.float64)
    return float(np.max(np.abs(found - exact)) / np.max(np.abs(exact)))


def test_a_float64_build_agrees_with_its_float32_build(backend):
    """The same model to float32 precision (parity's oracle), every array out in float64, and
    computed in float64, not in float32 and cast up."""
    spec = variant_spec(load_spec(EXAMPLE), "dropout=0")[1]  # two models' dropout masks cannot match
    weights, (m32, m64) = _float32_and_float64(backend, spec)
    x, y = synthetic_batch(spec)
    loaded = m64.get_weights()
    assert all(loaded[k].dtype == np.float64 and np.array_equal(loaded[k], weights[k]) for k in weights)
    for training in (False, True):  # train mode: BatchNorm on batch statistics, ill-conditioned (1e-5)
        out32, out64 = m32.forward(x, training), m64.forward(x, training)
        assert out64.dtype == np.float64 and _relative(out32, out64) < 1e-4
        assert not np.array_equal(out64, out64.astype(np.float32))
    assert m64.layer_input(x, 2).dtype == np.float64
    assert m64.loss(x, y, True) == pytest.approx(m32.loss(x, y, True), rel=1e-5)
    g32, g64 = m32.gradients(x, y, True), m64.gradients(x, y, True)
    scale = max(np.max(np.abs(g)) for g in g64.values())  # BatchNorm makes some gradients ~0: the model's scale
    assert all(g64[k].dtype == np.float64 and np.max(np.abs(g64[k] - g32[k])) <= 1e-4 * scale for k in g64)
    m32.apply_gradients(g32)
    m64.apply_gradients(g32)
    after32, after64 = m32.get_weights(), m64.get_weights()
    assert all(after64[k].dtype == np.float64 and _relative(after32[k], after64[k]) < 1e-5 for k in after64)


def test_a_float64_model_keeps_its_numbers_in_float64(backend):
    """The learning rate, momentum and L1 factor of a float64 model are float64 numbers: Keras
    rounds Python floats to float32 (0.1 by 1.5e-9, 1e-4 by 2.5e-9), which an oracle must not."""
    spec = replace(variant_spec(load_spec(EXAMPLE), "dropout=0,l1=0.0001,l2=absent")[1],
                   optimizer=Optimizer("sgd", lr=0.1, momentum=0.9))
    _, (_, model) = _float32_and_float64(backend, spec)
    start = model.get_weights()
    gradients = {k: np.full_like(v, 0.3) for k, v in start.items() if not k.endswith(("running_mean", "running_var"))}
    model.apply_gradients(gradients)
    model.apply_gradients(gradients)
    after = model.get_weights()
    # PyTorch's buffer b <- 0.9 b + g, w -= lr b; Keras's v <- 0.9 v - lr g, w += v: the same steps.
    assert all(np.max(np.abs(after[k] - (start[k] - 0.1 * 0.3 - 0.1 * (0.9 * 0.3 + 0.3)))) < 1e-15 for k in gradients)
    x, y = synthetic_batch(spec)
    logits = model.forward(x, False)
    shifted = logits - logits.max(axis=1, keepdims=True)
    cross_entropy = -(shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True)))[np.arange(len(y)), y].mean()
    l1 = 1e-4 * sum(np.abs(after[f"{i}.weight"]).sum() for i, layer in enumerate(spec.layers)
                    if isinstance(layer, KERNEL_LAYERS))
    assert model.loss(x, y, False) - cross_entropy == pytest.approx(l1, rel=1e-11)
