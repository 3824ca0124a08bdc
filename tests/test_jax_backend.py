"""The JAX backend's own behaviour: its modes, dropout keys, BatchNorm statistics, layouts against
PyTorch, float64 without a global x64 flag, Adam's epsilon, and its thread settings."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from backends import create_backend
from harness.errors import BackendUnavailable
from harness.model.layers import BatchNorm, Dense, Dropout
from harness.model.spec import PRESETS, Optimizer, load_spec
from harness.model.synthetic import synthetic_batch
from harness.model.variants import variant_spec

pytest.importorskip("jax")
pytest.importorskip("optax")

# BatchNorm and an active dropout in one small model: what the modes and the keys must agree on.
BN_DROPOUT = replace(PRESETS["mlp"], name="bn_dropout", input_shape=(20,), layers=(
    Dense(16, activation="relu"), BatchNorm(momentum=0.9), Dropout(0.5), Dense(10)))


@pytest.fixture
def jax_backend(backend_factory):
    return backend_factory("jax")


def _train(backend, spec, mode, steps=3):
    model = backend.build(spec, mode)
    losses = [model.train_step(*synthetic_batch(spec, seed=s)) for s in range(steps)]
    return losses, model.get_weights()


def test_eager_and_compiled_steps_compute_the_same_numbers(jax_backend):
    """Same weights, same keys (so the same dropout masks), same BatchNorm updates: jit may only
    reorder float32 rounding."""
    eager_losses, eager = _train(jax_backend, BN_DROPOUT, "eager")
    compiled_losses, compiled = _train(jax_backend, BN_DROPOUT, "compiled")
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-5)
    assert all(np.allclose(compiled[k], eager[k], rtol=1e-5, atol=1e-6) for k in eager)
    assert not np.array_equal(eager["1.running_mean"], np.zeros(16))  # the statistics moved, in both


def test_a_compiled_step_donates_its_state_and_an_eager_one_does_not(jax_backend):
    spec = PRESETS["mlp"]
    x, y = synthetic_batch(spec)
    for mode, donated in (("eager", False), ("compiled", True)):
        model = jax_backend.build(spec, mode)
        before = model.params["0.weight"]
        model.timed_step(x, y)()
        assert before.is_deleted() == donated, mode


def test_each_training_call_draws_a_new_mask_reproducibly(jax_backend):
    spec = replace(BN_DROPOUT, layers=(Dense(16, activation="relu"), Dropout(0.5), Dense(10)))
    x, _ = synthetic_batch(spec)
    first, second = jax_backend.build(spec), jax_backend.build(spec)
    masks = [first.forward(x, True) == 0 for _ in range(2)]
    assert masks[0].any() and not np.array_equal(masks[0], masks[1])  # the key advances per call
    assert np.array_equal(second.forward(x, True) == 0, masks[0])  # same seed, same first mask
    assert np.array_equal(first.forward(x, False), first.forward(x, False))  # eval draws nothing


def test_a_rate_zero_dropout_consumes_no_key_and_adds_no_equation(jax_backend):
    spec = PRESETS["mlp"]
    x, y = synthetic_batch(spec)
    zero = jax_backend.build(variant_spec(spec, "dropout=0")[1])
    key = np.asarray(jax_backend.jax.random.key_data(zero.key))
    zero.train_step(x, y)
    assert np.array_equal(np.asarray(jax_backend.jax.random.key_data(zero.key)), key)
    counts = {text: {c.graph: c.op_counts for c in jax_backend.build(variant_spec(spec, text)[1]).graph_counts(x, y)}
              for text in ("dropout=absent", "dropout=0", "dropout=0.5")}
    assert counts["dropout=0"] == counts["dropout=absent"]
    assert all(counts["dropout=0.5"][g] != counts["dropout=0"][g] for g in counts["dropout=0"])
    assert set(counts["dropout=0"]) == {"jaxpr", "jaxpr_inlined", "xla_hlo"}


def test_batchnorm_updates_running_statistics_as_pytorch_does(jax_backend):
    """running = m * running + (1 - m) * batch (the spec's momentum m), with the unbiased batch
    variance (BN_BIASED_RUNNING_VAR is False); eval normalizes with the running statistics."""
    spec = replace(BN_DROPOUT, layers=(BatchNorm(momentum=0.9, epsilon=0.01), Dense(10)))
    model = jax_backend.build(spec)
    x, _ = synthetic_batch(spec)
    x = x * 3.0 + 1.0
    model.forward(x, True)
    found = model.get_weights()
    assert not jax_backend.BN_BIASED_RUNNING_VAR
    assert np.allclose(found["0.running_mean"], 0.1 * x.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert np.allclose(found["0.running_var"], 0.9 + 0.1 * x.var(axis=0, ddof=1), rtol=1e-5)
    expected = (x - found["0.running_mean"]) / np.sqrt(found["0.running_var"] + 0.01)
    assert np.allclose(model.layer_input(x, 1), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("path", ["tests/specs/odd_strided_nonsquare.json", "tests/specs/odd_even_kernels_same.json"])
def test_layouts_and_same_padding_match_pytorch(backend_factory, path):
    """TF-style "same" padding, strides, non-square kernels and the NHWC flatten, against torch
    with the same canonical weights: eval logits and every train-mode gradient."""
    torch_backend, jax_backend = backend_factory("torch"), backend_factory("jax")
    spec = load_spec(path)
    x, y = synthetic_batch(spec)
    reference = torch_backend.build(spec)
    model = jax_backend.build(spec)
    model.set_weights(reference.get_weights())
    logits = reference.forward(x, False)
    assert np.max(np.abs(model.forward(x, False) - logits)) < 1e-5 * np.max(np.abs(logits))
    expected, found = reference.gradients(x, y, True), model.gradients(x, y, True)
    scale = max(np.max(np.abs(g)) for g in expected.values())
    assert all(np.max(np.abs(found[k] - expected[k])) < 1e-4 * scale for k in expected)


def test_optax_adam_adds_epsilon_as_pytorch_does(jax_backend):
    """One step from zero moments with gradient g: PyTorch's update is lr * g / (|g| + eps);
    Keras's placement (eps added to sqrt(v)) would be lr * g / (|g| + eps / sqrt(1 - beta_2))."""
    spec = replace(PRESETS["mlp"], optimizer=Optimizer("adam", lr=0.1, epsilon=0.5))
    for impl in ("stock", "matched"):
        model = jax_backend.build(replace(spec, optimizer_impl=impl))
        before = model.get_weights()
        gradients = {k: np.full_like(v, 0.25) for k, v in before.items()}
        model.apply_gradients(gradients)
        assert np.allclose(model.get_weights()["0.weight"], before["0.weight"] - 0.1 * 0.25 / (0.25 + 0.5),
                           atol=1e-6), impl
    assert not type(jax_backend).builds_as_written(replace(spec, optimizer_impl="matched"))


def test_both_l2_idioms_train_the_same_objective(jax_backend):
    """weight_decay (optax.add_decayed_weights(2*l2), masked to the kernel) and the loss penalty."""
    spec = replace(PRESETS["mlp"], optimizer=Optimizer("sgd", lr=0.1, momentum=0.9))
    x, y = synthetic_batch(spec)
    weights = jax_backend.build(spec).get_weights()
    results = []
    for text in ("dropout=0,l2=0.01", "dropout=0,l2=0.01,l2_style=weight_decay"):
        model = jax_backend.build(variant_spec(spec, text)[1])
        model.set_weights(weights)
        found = (model.loss(x, y, False), model.gradients(x, y, False))
        for _ in range(2):
            model.train_step(x, y)
        results.append((*found, model.get_weights()))
    (loss_a, grads_a, after_a), (loss_b, grads_b, after_b) = results
    assert loss_b == pytest.approx(loss_a, rel=1e-6)
    assert all(np.allclose(grads_b[k], grads_a[k], rtol=1e-4, atol=1e-7) for k in grads_a)
    assert all(np.allclose(after_b[k], after_a[k], rtol=1e-4, atol=1e-6) for k in after_a)


def test_float64_models_leave_jax_in_float32(jax_backend):
    jax = jax_backend.jax
    spec = variant_spec(BN_DROPOUT, "dropout=0")[1]
    x, y = synthetic_batch(spec)
    m64 = jax_backend.build(spec, dtype="float64")
    m64.train_step(x, y)
    assert m64.params["0.weight"].dtype == np.float64 and m64.forward(x, True).dtype == np.float64
    assert not jax.enable_x64.value  # never turned on for the process
    assert jax.numpy.zeros(2).dtype == np.float32
    m32 = jax_backend.build(spec, "compiled")
    m32.train_step(x, y)
    assert {leaf.dtype for leaf in jax.tree.leaves((m32.params, m32.bn_state))} == {np.dtype(np.float32)}


def test_a_thread_count_cannot_change_once_jax_has_started(jax_backend):
    running = jax_backend.settings()["intra_op_threads"]
    assert type(jax_backend)(threads=running).settings()["intra_op_threads"] == running
    with pytest.raises(RuntimeError, match=f"already initialized in this process with {running} intra-op threads, "
                                           f"not {running + 1}"):
        type(jax_backend)(threads=running + 1)


def test_the_thread_count_sizes_xla_s_pool():
    """PJRT_NPROC, set before the CPU client exists, is the pool's size (3 on any machine)."""
    code = ("from backends import create_backend; b = create_backend('jax', threads=3); b.build(__import__("
            "'harness.model.spec', fromlist=['PRESETS']).PRESETS['mlp']); s = b.settings(); "
            "print(s['intra_op_threads'], s['pjrt_nproc'])")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert found.stdout.split() == ["3", "3"]


def test_without_jax_the_backend_is_skipped_with_a_reason(monkeypatch):
    from backends.jax_backend import JaxBackend

    monkeypatch.setitem(sys.modules, "jax", None)  # `import jax` raises ImportError
    availability = JaxBackend.availability()
    assert not availability.ok and availability.reason == 'jax is not installed (pip install -e ".[jax]")'
    with pytest.raises(BackendUnavailable, match=r"--backend jax: not available: jax is not installed \(pip install"):
        create_backend("jax")
