"""Keras 3 on its three engines (tensorflow, keras_torch, keras_jax): one engine per process.

This pytest process holds Keras on TensorFlow (conftest.py), so the keras_torch and keras_jax
backends are checked in processes of their own: cheaply here (parity of the mlp against
keras_torch, which builds, runs forward and backward in float32 and float64 and steps both
optimizers; a compiled Keras-on-JAX step), and in the slow tier with the whole contract test file
per engine (HARNESS_TEST_BACKENDS), the mlp's parity against keras_jax, and `parity` against every
partner, each in its own process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from backends import backend_class, create_backend
from backends._keras_engine import keras_availability
from harness.errors import BackendUnavailable

OTHER_ENGINES = ("keras_torch", "keras_jax")
SELECTION_VARIABLE = "HARNESS_TEST_BACKENDS"  # the root conftest.py's: the backends a pytest process tests


def _python(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _needs(name: str) -> None:
    """Skip unless the backend's frameworks are installed (asked in a process of its own)."""
    done = _python("-c", f"from backends import backend_class; a = backend_class({name!r}).availability(); "
                         "print(a.reason)")
    if done.stdout.strip():
        pytest.skip(f"skipped: {name}: {done.stdout.strip()}")


def test_discovery_and_availability_do_not_import_keras():
    done = _python("-c", "import sys; from backends import registry; "
                         "print([c.availability().ok for n, c in registry().items() if n.startswith('keras_')], "
                         "'keras' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("False")


@pytest.mark.parametrize("name", OTHER_ENGINES)
def test_a_keras_backend_on_another_engine_is_unavailable_here(backend_factory, name):
    backend_factory("tensorflow")  # Keras on TensorFlow in this process (skips where TensorFlow is missing)
    engine = backend_class(name).KERAS_ENGINE
    if importlib.util.find_spec(engine) is None:  # without the [jax] extra, that is what it says instead
        pytest.skip(f"skipped: {engine} is not installed (the [jax] extra)")
    availability = backend_class(name).availability()
    assert not availability.ok
    assert "already loaded on the tensorflow engine" in availability.reason
    with pytest.raises(BackendUnavailable, match=f"--backend {name}: not available: Keras is already loaded"):
        create_backend(name)


def test_tensorflow_is_unavailable_where_keras_runs_on_another_engine():
    _needs("keras_jax")
    done = _python("-c", "from backends import create_backend; create_backend('keras_jax'); "
                         "from backends import backend_class; print(backend_class('tensorflow').availability())")
    assert done.returncode == 0, done.stderr
    assert "already loaded on the jax engine" in done.stdout


def test_a_missing_framework_is_named_with_its_install_command():
    found = keras_availability("jax", "no_such_framework_for_this_test", "jax")
    assert not found.ok and found.reason == 'no_such_framework_for_this_test is not installed (pip install -e ".[jax]")'


@pytest.mark.parametrize("name", ["keras_torch", pytest.param("keras_jax", marks=pytest.mark.slow)])
def test_parity_of_the_mlp_against_torch_in_its_own_process(tmp_path, name):
    _needs(name)
    out = tmp_path / "parity.json"
    done = _python("-m", "harness", "parity", "--against", name, "--model", "mlp", "--variant", "baseline",
                   "--json", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    records = json.loads(out.read_text())
    checks = {r["check"] for r in records}
    assert {"forward_eval", "loss", "grad[0.weight]", "sgd_momentum_10_steps", "adam_10_steps"} <= checks
    assert all(r["passed"] for r in records)
    assert {tuple(r["backends"]) for r in records} == {("torch", name), ("torch",), (name,)}  # + dropout semantics


def test_a_compiled_keras_jax_step_trains():
    _needs("keras_jax")
    code = ("from backends import create_backend; from harness.model.spec import PRESETS; "
            "from harness.model.synthetic import synthetic_batch; b = create_backend('keras_jax', threads=1); "
            "s = PRESETS['mlp']; x, y = synthetic_batch(s); m = b.build(s, 'compiled'); "
            "before = m.loss(x, y, False); [m.train_step(x, y) for _ in range(5)]; "
            "print(m.loss(x, y, False) < before, b.settings()['pjrt_nproc'])")
    done = _python("-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "1"]


@pytest.mark.slow
def test_compiled_keras_torch_models_of_two_shapes_share_a_process():
    """A second compiled model made dynamo mark sizes dynamic, and inductor failed on the cnn
    ("cannot determine truth value of Relational", torch 2.13): keras_torch compiles static."""
    _needs("keras_torch")
    code = ("from backends import create_backend; from harness.model.spec import PRESETS; "
            "from harness.model.synthetic import synthetic_batch; b = create_backend('keras_torch', threads=2); "
            "models = [(b.build(PRESETS[n], 'compiled'), synthetic_batch(PRESETS[n])) for n in ('mlp', 'cnn')]; "
            "print(all(m.train_step(x, y) > 0 for m, (x, y) in models for _ in range(2)))")
    done = _python("-c", code)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["True"]


@pytest.mark.slow
@pytest.mark.parametrize("name", OTHER_ENGINES)
def test_the_contract_tests_pass_on_each_keras_engine(name):
    _needs(name)
    done = _python("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_backend_contract.py",
                   env={SELECTION_VARIABLE: name}, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1] and "failed" not in done.stdout.splitlines()[-1]


@pytest.mark.slow
def test_parity_checks_every_partner_each_in_a_process_of_its_own(tmp_path):
    out = tmp_path / "parity.json"
    done = _python("-m", "harness", "parity", "--model", "mlp", "--variant", "baseline", "--json", str(out),
                   timeout=1200)
    assert done.returncode == 0, done.stdout + done.stderr
    partners = {r["backends"][1] for r in json.loads(out.read_text()) if len(r["backends"]) == 2}
    for name in OTHER_ENGINES + ("tensorflow",):
        if f"skipped: --backend {name}" not in done.stderr:
            assert name in partners
