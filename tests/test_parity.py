"""Parity checks pass on identical models, and fail when a convention is deliberately broken."""

from __future__ import annotations

import numpy as np
import pytest

from harness.model.spec import PRESETS
from harness.model.variants import parse_variant
from harness.parity.checks import check_variant


@pytest.fixture(scope="module")
def pair(backend_factory):
    return backend_factory("torch"), backend_factory("tensorflow")


def test_mlp_baseline_passes_every_check(pair):
    records = check_variant(*pair, PRESETS["mlp"], parse_variant("baseline"))
    checks = {r.check for r in records}
    assert {"forward_eval", "forward_train", "loss", "sgd_momentum_10_steps", "adam_10_steps"} <= checks
    assert any(c.startswith("dropout_fraction") for c in checks)
    assert [r.check for r in records if not r.passed] == []


def test_verdicts_repeat_exactly(pair):
    first = check_variant(*pair, PRESETS["mlp"], parse_variant("bn=before"))
    second = check_variant(*pair, PRESETS["mlp"], parse_variant("bn=before"))
    assert [(r.check, r.passed) for r in first] == [(r.check, r.passed) for r in second]


def test_a_wrong_flatten_order_is_caught(pair, monkeypatch):
    import backends._keras_layers as keras_layers

    monkeypatch.setattr(keras_layers, "flat_to_keras", lambda rows, hwc: rows)  # the classic NHWC/NCHW bug
    monkeypatch.setattr(keras_layers, "flat_to_torch", lambda rows, hwc: rows)
    records = {r.check: r for r in check_variant(*pair, PRESETS["cnn"], parse_variant("dropout=absent"))}
    assert not records["forward_eval"].passed
    assert records["forward_eval"].max_rel_err > 1e-3


def test_keras_native_adam_epsilon_is_caught(pair, monkeypatch):
    import backends.tensorflow_backend as tfb

    monkeypatch.setattr(tfb, "_torch_epsilon_adam_class", lambda keras: keras.optimizers.Adam)
    records = {r.check: r for r in check_variant(*pair, PRESETS["mlp"], parse_variant("dropout=absent"))}
    assert not records["adam_10_steps"].passed


def test_unbiased_variance_conversion_is_needed(pair, monkeypatch):
    import harness.parity.checks as parity

    monkeypatch.setattr(parity, "_as_reference_running_var", lambda spec, ref, other, w, start, steps, batch: w)
    records = {r.check: r for r in check_variant(*pair, PRESETS["mlp"], parse_variant("bn=before,dropout=0"))}
    assert not records["bn_running_stats[sgd_momentum]"].passed
    assert np.isfinite(records["bn_running_stats[sgd_momentum]"].max_rel_err)
