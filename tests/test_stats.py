"""Verdict rules on synthetic, deterministic samples."""

from __future__ import annotations

import numpy as np

from harness import stats


def _pair(effect, noise=0.01, n=40, seed=0):
    rng = np.random.default_rng(seed)
    a = 1e-3 * (1 + noise * rng.standard_normal(n))
    b = a * (1 + effect) * (1 + noise * rng.standard_normal(n))
    return a, b


def test_a_clear_slowdown_is_slower():
    pr = stats.paired_ratio(*_pair(0.05))
    assert pr.ci_low > 1.0
    assert stats.verdict("A", "B", pr, noise_floor=0.01).label == stats.SLOWER


def test_an_effect_inside_the_noise_floor_is_not_a_finding():
    pr = stats.paired_ratio(*_pair(0.02, noise=0.002))
    assert pr.ci_low > 1.0  # statistically different...
    result = stats.verdict("A", "B", pr, noise_floor=0.03)  # ...but within what A/A showed
    assert result.label == stats.NO_DIFFERENCE
    assert "at most 3.0%" in result.sentence


def test_faster_is_said_as_less_time():
    pr = stats.paired_ratio(*_pair(-0.5))
    result = stats.verdict("A", "B", pr, None)
    assert result.label == stats.FASTER and "less time per step" in result.sentence


def test_few_pairs_give_the_whole_range():
    pr = stats.paired_ratio([1.0, 1.0], [1.1, 1.3])
    assert (pr.ci_low, pr.ci_high) == (1.1, 1.3)


def test_bootstrap_is_reproducible():
    a, b = _pair(0.01)
    assert stats.paired_ratio(a, b) == stats.paired_ratio(a, b)


def test_unpaired_ratio_of_medians():
    a, b = _pair(0.0)
    pr = stats.unpaired_ratio(a, 2 * b)
    assert pr.ratio == 2 * np.median(b) / np.median(a)
    assert pr.ci_low <= pr.ratio <= pr.ci_high and 1.9 < pr.ratio < 2.1
