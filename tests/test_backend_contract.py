"""Contract tests, run over every backend: what the interface in backends/base.py promises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from harness.errors import HarnessInputError
from harness.model.layers import LAYER_TYPES
from harness.model.spec import PRESETS, load_spec, model_cost
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
    from dataclasses import replace

    from harness.model.spec import Optimizer

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
