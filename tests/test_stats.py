"""Estimators and verdict rules on synthetic, deterministic data.

A comparison's rounds come from several processes, each with its own offset (memory layout,
allocator state), so the data are two-level: a CI is checked by its coverage of a known truth
over many simulated comparisons, with tolerances from the binomial distribution.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats as scipy_stats

from harness import stats

DRAWS = 400  # simulated comparisons per coverage check
TRUE_LOG_RATIO = 0.03
# Coverage of a 95% CI over DRAWS independent draws is Binomial(DRAWS, 0.95) / DRAWS; outside its
# central 99% an estimator undercovers (or overcovers) for real, not by chance.
COVERAGE_LOW, COVERAGE_HIGH = (k / DRAWS for k in scipy_stats.binom.interval(0.99, DRAWS, stats.CONFIDENCE))

# sd of the per-process log-ratio offset, sd of a round's log ratio, chance of a 5x spike per arm and round
NOISE = {
    "between-process dominant": (0.02, 0.004, 0.0),
    "within-process dominant": (0.002, 0.04, 0.0),
    "spiky rounds": (0.01, 0.01, 0.03),
}


def _two_level(rng, processes: int, rounds: int, noise: str):
    """Paired step times of arms A and B: B/A = exp(TRUE_LOG_RATIO + process offset + round noise),
    with machine drift common to both arms of a round, and spikes hitting either arm alike."""
    between, within, spike = NOISE[noise]
    n = processes * rounds
    process_of_round = np.repeat(np.arange(processes), rounds)
    drift = 1e-3 * np.exp(0.1 * rng.standard_normal(n))
    offset = between * rng.standard_normal(processes)[process_of_round]
    a = drift * np.exp(within / math.sqrt(2) * rng.standard_normal(n))
    b = drift * np.exp(TRUE_LOG_RATIO + offset + within / math.sqrt(2) * rng.standard_normal(n))
    a *= np.where(rng.random(n) < spike, 5.0, 1.0)
    b *= np.where(rng.random(n) < spike, 5.0, 1.0)
    return a, b, process_of_round


# Every P for the case where the CI rests on the between-process spread; two for the others
# (each draw costs a trimmed mean per process: the full grid would take twice as long).
@pytest.mark.parametrize("noise, processes", [
    ("between-process dominant", 3), ("between-process dominant", 5), ("between-process dominant", 8),
    ("within-process dominant", 3), ("within-process dominant", 5),
    ("spiky rounds", 3), ("spiky rounds", 5),
])
def test_paired_ratio_ci_covers_the_true_ratio_95_percent_of_the_time(noise, processes):
    rng = np.random.default_rng([processes, list(NOISE).index(noise)])
    covered = 0
    for _ in range(DRAWS):
        pr = stats.paired_ratio(*_two_level(rng, processes, 30, noise))
        assert pr.processes == processes
        covered += pr.ci_low <= math.exp(TRUE_LOG_RATIO) <= pr.ci_high
    assert COVERAGE_LOW <= covered / DRAWS <= COVERAGE_HIGH, f"coverage {covered / DRAWS:.3f}"


def test_a_ci_that_treats_rounds_as_independent_undercovers():
    """Why the CI is over processes: the same data, with a t-interval over all rounds pooled."""
    rng = np.random.default_rng([5, 0])  # the draws of the between-process dominant case with P = 5
    covered = 0
    for _ in range(DRAWS):
        a, b, _ = _two_level(rng, 5, 30, "between-process dominant")
        logs = np.log(b / a)
        half = scipy_stats.t.ppf(0.975, logs.size - 1) * logs.std(ddof=1) / math.sqrt(logs.size)
        covered += abs(logs.mean() - TRUE_LOG_RATIO) <= half
    assert covered / DRAWS < 0.7, f"pooled coverage {covered / DRAWS:.3f}"


def test_ratio_is_exp_of_the_mean_of_each_process_trimmed_mean_log_ratio():
    rng = np.random.default_rng(1)
    a, b, process_of_round = _two_level(rng, 4, 20, "between-process dominant")
    b[[3, 25, 47, 61]] *= 5.0  # one spike per process: trimmed away
    pr = stats.paired_ratio(a, b, process_of_round)
    per_process = []
    for p in range(4):
        logs = np.sort(np.log(b / a)[process_of_round == p])
        cut = int(stats.TRIM * logs.size)
        per_process.append(logs[cut:logs.size - cut].mean())
    mean, sd = np.mean(per_process), np.std(per_process, ddof=1)
    half = scipy_stats.t.ppf(0.975, 3) * sd / 2
    assert pr.process_ratios == pytest.approx(np.exp(per_process), rel=1e-12)
    assert (pr.ratio, pr.ci_low, pr.ci_high) == pytest.approx(np.exp([mean, mean - half, mean + half]), rel=1e-12)
    assert (pr.n_pairs, pr.processes) == (80, 4)


def test_process_ids_must_match_the_rounds():
    with pytest.raises(ValueError, match="4 rounds but 3 process ids"):
        stats.paired_ratio([1.0] * 4, [1.1] * 4, [0, 1, 2])


def test_one_process_ci_is_a_bootstrap_over_its_rounds():
    rng = np.random.default_rng(7)
    values = 0.02 + 0.01 * rng.standard_normal(200)
    values[::40] += math.log(5.0)  # five spikes, all within the trimmed tails
    found = stats.across_processes(values)
    assert found.process_values == (found.value,)
    assert found.value == pytest.approx(scipy_stats.trim_mean(values, stats.TRIM))
    assert found.ci_low < 0.02 < found.ci_high
    # the width of the trimmed mean's sampling spread over these rounds, not their range
    half_width = (found.ci_high - found.ci_low) / 2
    assert 0.8 < half_width / (1.96 * 0.01 / math.sqrt(200)) < 1.3
    assert stats.across_processes(values, [4] * values.size) == found


def test_one_process_offset_looks_like_an_effect_so_no_verdict():
    """No true effect, but the one process ran 3% slow for B: its CI over rounds excludes 1."""
    rng = np.random.default_rng(2)
    a = 1e-3 * (1 + 0.005 * rng.standard_normal(40))
    b = a * 1.03 * (1 + 0.005 * rng.standard_normal(40))
    pr = stats.paired_ratio(a, b)
    assert pr.processes == 1 and pr.ci_low > 1.0
    result = stats.verdict("A", "B", pr, noise_floor=0.01)
    assert result.label == stats.TOO_FEW_PROCESSES
    assert "measured in 1 process," in result.sentence


def _pair(effect, noise=0.01, processes=4, rounds=20, seed=0):
    """Arms with a true effect and round noise only (no process offsets); rounds split over processes."""
    rng = np.random.default_rng(seed)
    n = processes * rounds
    a = 1e-3 * (1 + noise * rng.standard_normal(n))
    b = a * (1 + effect) * (1 + noise * rng.standard_normal(n))
    return a, b, np.repeat(np.arange(processes), rounds)


def test_a_verdict_needs_three_processes():
    a, b, process_of_round = _pair(0.05, processes=3)
    for kept in (1, 2):
        rounds = process_of_round < kept
        pr = stats.paired_ratio(a[rounds], b[rounds], process_of_round[rounds])
        assert pr.processes == kept and pr.ci_low > 1.0  # a clear effect, but no verdict
        assert stats.verdict("A", "B", pr, noise_floor=0.01).label == stats.TOO_FEW_PROCESSES
    pr = stats.paired_ratio(a, b, process_of_round)
    assert pr.processes == stats.MIN_PROCESSES == 3
    assert stats.verdict("A", "B", pr, noise_floor=0.01).label == stats.SLOWER


def test_a_clear_slowdown_is_slower():
    pr = stats.paired_ratio(*_pair(0.05))
    assert pr.ci_low > 1.0
    assert stats.verdict("A", "B", pr, noise_floor=0.01).label == stats.SLOWER


def test_a_replicated_ci_alone_decides_and_the_floor_is_stated():
    pr = stats.paired_ratio(*_pair(0.02, noise=0.002))
    assert pr.ci_low > 1.0 and pr.processes == 4
    result = stats.verdict("A", "B", pr, noise_floor=0.03)  # within what A/A showed, but the CI excludes 1
    assert result.label == stats.SLOWER
    assert "A/A noise floor ±3.0%" in result.sentence


def test_a_record_without_processes_needs_its_effect_above_the_floor():
    """An older record (a bootstrap over one process's rounds, which undercovered): the floor
    still has to be exceeded."""
    pr = replace(stats.paired_ratio(*_pair(0.02, noise=0.002)), processes=0)
    result = stats.verdict("A", "B", pr, noise_floor=0.03)
    assert result.label == stats.NO_DIFFERENCE
    assert "at most 3.0%" in result.sentence


def test_faster_is_said_as_less_time():
    pr = stats.paired_ratio(*_pair(-0.5))
    result = stats.verdict("A", "B", pr, None)
    assert result.label == stats.FASTER and "less time per step" in result.sentence


def test_few_pairs_give_the_whole_range():
    pr = stats.paired_ratio([1.0, 1.0], [1.1, 1.3])
    assert (pr.ci_low, pr.ci_high) == pytest.approx((1.1, 1.3), rel=1e-12)
    assert pr.ratio == pytest.approx(math.sqrt(1.1 * 1.3), rel=1e-12)  # exp of the mean log ratio


def test_bootstrap_is_reproducible():
    a, b, _ = _pair(0.01)
    assert stats.paired_ratio(a, b) == stats.paired_ratio(a, b)


def test_unpaired_ratio_of_medians():
    a, b, _ = _pair(0.0)
    pr = stats.unpaired_ratio(a, 2 * b)
    assert pr.ratio == 2 * np.median(b) / np.median(a)
    assert pr.ci_low <= pr.ratio <= pr.ci_high and 1.9 < pr.ratio < 2.1


DOSES = (0, 8, 32, 64)
PER_CALL_S = 2e-5


def _dose_rounds(rng, per_call_s: float, processes: int = 5, rounds: int = 20):
    """Step times by dose: base + per-call cost x dose + noise, where each process has its own base
    and its own per-call cost (sd 3%), and a round's drift is common to all of its doses."""
    process_of_round = np.repeat(np.arange(processes), rounds)
    base = 1e-3 + 1e-4 * rng.standard_normal(processes)[process_of_round]
    cost = per_call_s + 0.03 * PER_CALL_S * rng.standard_normal(processes)[process_of_round]
    drift = 1e-4 * rng.standard_normal(processes * rounds)  # 5x the round noise: it must cancel
    times = {d: base + cost * d + drift + 2e-5 * rng.standard_normal(processes * rounds) for d in DOSES}
    return times, process_of_round


def test_dose_response_recovers_a_known_slope():
    found = stats.dose_response(*_dose_rounds(np.random.default_rng(4), PER_CALL_S))
    half_width = max(found.value - found.ci_low, found.ci_high - found.value)
    assert abs(found.value - PER_CALL_S) <= half_width < 0.05 * PER_CALL_S
    assert len(found.process_values) == 5


def test_dose_response_ci_covers_the_true_slope_95_percent_of_the_time():
    rng = np.random.default_rng(5)
    covered = 0
    for _ in range(DRAWS):
        found = stats.dose_response(*_dose_rounds(rng, PER_CALL_S))
        covered += found.ci_low <= PER_CALL_S <= found.ci_high
    assert COVERAGE_LOW <= covered / DRAWS <= COVERAGE_HIGH, f"coverage {covered / DRAWS:.3f}"


def test_dose_response_of_a_free_layer_contains_zero():
    found = stats.dose_response(*_dose_rounds(np.random.default_rng(6), 0.0))
    assert found.ci_low < 0.0 < found.ci_high
    assert found.ci_high - found.ci_low < 0.1 * PER_CALL_S


def test_dose_response_reads_doses_in_any_order_and_needs_two():
    times, process_of_round = _dose_rounds(np.random.default_rng(4), PER_CALL_S)
    backwards = dict(reversed(times.items()))
    assert stats.dose_response(backwards, process_of_round) == stats.dose_response(times, process_of_round)
    with pytest.raises(ValueError, match="at least two doses"):
        stats.dose_response({8: times[8]}, process_of_round)


def test_dose_response_difference_cancels_a_shared_per_call_overhead():
    """A busy-wait layer's copies cost the spin plus the framework's cost of calling a layer;
    copies of the same layer spinning 0 µs, timed in the same rounds, cost only the latter."""
    rng = np.random.default_rng(8)
    overhead, spin = 3 * PER_CALL_S, PER_CALL_S
    with_spin, process_of_round = _dose_rounds(rng, overhead + spin)
    without_spin, _ = _dose_rounds(rng, overhead)
    without_spin[0] = with_spin[0]  # the arm without copies is one arm, shared by both fits

    found = stats.dose_response_difference(with_spin, without_spin, process_of_round)

    assert found.ci_low <= spin <= found.ci_high, found
    assert found.ci_high - found.ci_low < 0.5 * spin
    alone = stats.dose_response(with_spin, process_of_round)
    assert alone.ci_low > 2 * spin  # without the reference, the overhead is in the estimate
