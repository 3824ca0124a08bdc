"""Training idioms as users write them: torch's L2 as weight_decay, stock optimizers, no global reseed."""

from __future__ import annotations

import random

import numpy as np
import pytest

from harness.model.spec import PRESETS
from harness.model.synthetic import synthetic_batch
from harness.model.variants import parse_variant, variant_arms, variant_spec
from harness.parity.checks import check_variant
from harness.timing.session import SpecSubject, TimingPlan, measure

PENALTY, DECAY = "l2=0.0001", "l2=0.0001,l2_style=weight_decay"

def _plan(variants, *args, spec=PRESETS["mlp"], **kwargs) -> TimingPlan:
    """A TimingPlan whose arms are these variants of `spec` (each parsed once, as the CLI does)."""
    return TimingPlan(variant_arms(spec, [parse_variant(text) for text in variants]), *args, **kwargs)



def test_weight_decay_groups_hold_exactly_the_l2_kernels(backend_factory):
    torch_backend = backend_factory("torch")
    _, spec = variant_spec(PRESETS["cnn"], DECAY)
    model = torch_backend.build(spec)
    decayed = [g for g in model.optimizer.param_groups if g["weight_decay"] > 0]
    kernels = {id(model.net.layers[i].weight)
               for i, layer in enumerate(spec.layers) if layer.type in ("dense", "conv2d")}
    assert {id(p) for g in decayed for p in g["params"]} == kernels
    assert all(g["weight_decay"] == pytest.approx(2e-4) for g in decayed)
    rest = [g for g in model.optimizer.param_groups if g["weight_decay"] == 0]
    assert sum(p.numel() for g in rest for p in g["params"]) == sum(model.net.layers[i].bias.numel()
                                                                    for i, layer in enumerate(spec.layers)
                                                                    if layer.type in ("dense", "conv2d"))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_both_torch_l2_idioms_train_the_same_objective(backend_factory, optimizer):
    torch_backend = backend_factory("torch")
    models, x, y = {}, *synthetic_batch(PRESETS["mlp"])
    for text in (PENALTY, DECAY):
        _, spec = variant_spec(PRESETS["mlp"], f"{text},dropout=0,optimizer={optimizer}")
        models[text] = torch_backend.build(spec)
    start = models[PENALTY].get_weights()
    models[DECAY].set_weights(start)
    assert models[DECAY].loss(x, y, True) == pytest.approx(models[PENALTY].loss(x, y, True), rel=1e-6)
    grads = {text: model.gradients(x, y, True) for text, model in models.items()}
    assert all(np.allclose(grads[DECAY][k], grads[PENALTY][k], rtol=1e-5, atol=1e-9) for k in start)
    for model in models.values():
        for _ in range(3):
            model.train_step(x, y)
    after = {text: model.get_weights() for text, model in models.items()}
    assert all(np.allclose(after[DECAY][k], after[PENALTY][k], rtol=1e-4, atol=1e-7) for k in start)


@pytest.mark.parametrize("model, variant", [("mlp", DECAY), ("mlp", "l2=0,l2_style=weight_decay"),
                                            ("cnn", DECAY), ("mlp", f"{DECAY},optimizer=adam")])
def test_parity_passes_for_torch_weight_decay_against_keras_l2(backend_factory, model, variant):
    pair = backend_factory("torch"), backend_factory("tensorflow")
    records = check_variant(*pair, PRESETS[model], parse_variant(variant))
    checks = [r for r in records if not r.info]
    assert checks and all(r.passed for r in checks), [r for r in checks if not r.passed]
    assert {"sgd_momentum_10_steps", "adam_10_steps"} <= {r.check for r in checks}


def test_stock_adam_divergence_is_information_with_its_reason(backend_factory):
    pair = backend_factory("torch"), backend_factory("tensorflow")
    records = check_variant(*pair, PRESETS["mlp"], parse_variant("optimizer=adam"))
    info = [r for r in records if r.info]
    assert [r.check for r in info] == ["adam_10_steps_stock_optimizer"]
    matched = next(r for r in records if r.check == "adam_10_steps")
    assert info[0].passed and info[0].max_rel_err > 100 * matched.max_rel_err  # stock placement really differs
    assert "keras.src.optimizers.adam.Adam" in info[0].detail and "sqrt(v_hat)" in info[0].detail


def test_each_backend_builds_as_written_only_its_own_idioms(backend_factory):
    torch_cls, tf_cls = type(backend_factory("torch")), type(backend_factory("tensorflow"))
    decay, matched = (variant_spec(PRESETS["mlp"], t)[1] for t in (DECAY, "optimizer=adam,optimizer_impl=matched"))
    assert torch_cls.builds_as_written(decay) and not tf_cls.builds_as_written(decay)
    assert tf_cls.builds_as_written(matched) and not torch_cls.builds_as_written(matched)


def test_timing_records_name_the_stock_optimizer_class(backend_factory):
    tf_backend = backend_factory("tensorflow")
    _, spec = variant_spec(PRESETS["mlp"], "optimizer=adam")
    plan = _plan(("baseline", "optimizer_impl=matched"), spec=spec, rounds=2, steps=1, warmup=0)
    records = measure(tf_backend, SpecSubject(tf_backend, spec), plan, "cpu", 2)
    assert [r.optimizer_class for r in records] == [
        "keras.src.optimizers.adam.Adam",
        "backends._keras_model._torch_epsilon_adam_class.<locals>.TorchEpsilonAdam",
    ]


def test_building_a_model_does_not_reseed_the_process(backend_factory):
    tf_backend = backend_factory("tensorflow")
    random.seed(123)
    np.random.seed(123)
    expected = (random.random(), np.random.rand())
    random.seed(123)
    np.random.seed(123)
    tf_backend.build(PRESETS["cnn"])
    assert (random.random(), np.random.rand()) == expected


def test_tensorflow_initialization_is_still_deterministic(backend_factory):
    tf_backend = backend_factory("tensorflow")
    first, second = (tf_backend.build(PRESETS["mlp"]).get_weights() for _ in range(2))
    assert all(np.array_equal(first[k], second[k]) for k in first)


@pytest.mark.slow
def test_compiled_arms_with_zero_then_positive_weight_decay_both_compile(backend_factory):
    """torch 2.13 failed this recompile of SGD.step (SpeculationLogDivergence) with dynamo's default
    symbolic floats; the torch backend specializes floats (backends/torch_backend.py)."""
    torch_backend = backend_factory("torch")
    plan = _plan(("l2=0,l2_style=weight_decay", "l2=0.0001,l2_style=weight_decay"), ("compiled",), rounds=2,
                      steps=1, warmup=0)
    records = measure(torch_backend, SpecSubject(torch_backend, PRESETS["mlp"]), plan, "cpu", 2)
    assert [r.arm for r in records] == ["l2=0,l2_style=weight_decay/compiled",
                                        "l2=0.0001,l2_style=weight_decay/compiled"]
