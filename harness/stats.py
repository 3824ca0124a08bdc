"""Statistics for timing: robust summaries, replicated paired ratios with CIs, and verdicts.

The effects this project measures are often smaller than the noise of a shared machine, so the
rules are conservative and stated once, here:

- Arms are measured interleaved; round r of arm A and round r of arm B form a pair, and the
  effect is the per-pair log ratio log(time_B / time_A) (drift in machine speed cancels in a pair).
- A comparison runs in several worker processes (harness/timing/replication.py). Every round of one
  process shares that process's memory layout, allocator state and model instances, so rounds
  are not independent draws: a CI over all rounds as if they were is too narrow (two of two
  200-round A/A tests in one process excluded 1). Levels are therefore kept apart (Kalibera &
  Jones, ISMM 2013): each process gives one estimate, the 25%-trimmed mean (the interquartile
  mean) of its rounds' log ratios, and the CI is Student's t over those
  per-process estimates (n - 1 degrees of freedom). The between-process variance then carries
  the within-process variance with it (each process mean includes its own round noise), which
  is exactly the variance of a new process's estimate, so the interval is honest with as few as
  3 processes, where a bootstrap over 3 clusters undercovers badly. tests/test_stats.py checks
  coverage on synthetic two-level data; `harness calibrate` checks it on this machine.
- The effect is exp(mean of the per-process estimates), a ratio; its CI is exp of the t-interval.
- With one process there is no between-process variance to estimate: the CI is a bootstrap over
  that process's rounds (scipy.stats.bootstrap, fixed seed), and no verdict is given.
- The noise floor is the half-width of an A/A control (the same variant built twice and timed
  the same way): the largest ratio that pure noise produced in that session.
- "slower"/"faster" needs a CI over processes that excludes 1. The A/A noise floor is stated next
  to every verdict but not also required of the effect (README, "How the numbers can be trusted",
  says why). A record without process information (an older schema: processes 0) still needs the
  effect above the floor. Anything else is "no
  detectable difference", reported with the largest effect still compatible with the data
  ("at most X%"), never as a finding.
- Below MIN_PAIRS paired rounds or MIN_PROCESSES processes a CI is not worth its name: no verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _scipy_stats():
    """scipy.stats, imported on first use: it takes a second to import, and every timing worker
    process imports this module (the statistics run in the parent)."""
    from scipy import stats as scipy_stats

    return scipy_stats

CONFIDENCE = 0.95
N_RESAMPLES = 10_000
BOOTSTRAP_SEED = 20261122
# Resampled values held at once by one bootstrap, per sample (each costs a float64 value and an
# int64 index: 2**21 of them are 32 MB). A run's pooled step times reach 10^4 rounds, and
# N_RESAMPLES resamples of them all at once took 2.3 GB.
BOOTSTRAP_BATCH_VALUES = 2**21

SLOWER = "slower"
FASTER = "faster"
NO_DIFFERENCE = "no detectable difference"
TOO_FEW_PAIRS = "too few rounds for a verdict"
TOO_FEW_PROCESSES = "too few processes for a verdict"
MIN_PAIRS = 10
MIN_PROCESSES = 3
# Fraction cut from each end of a process's rounds before averaging: a round's log ratio is
# heavy-tailed on a shared machine (README, "How the numbers can be trusted", has the figures).
TRIM = 0.25


@dataclass(frozen=True)
class Summary:
    median: float
    iqr: float
    n: int


@dataclass(frozen=True)
class PairedRatio:
    ratio: float
    ci_low: float
    ci_high: float
    n_pairs: int
    processes: int = 0  # 0: not known (an older record)
    process_ratios: tuple[float, ...] = ()  # each process's own estimate: the between-process spread

    @property
    def half_width(self) -> float:
        """Largest distance of the CI from 1 (no effect), as a fraction: the largest effect the
        data still allow (an A/A comparison's: its noise floor)."""
        return max(abs(self.ci_low - 1.0), abs(self.ci_high - 1.0))

    @property
    def ci_half_width(self) -> float:
        """Largest distance of the CI from the estimate, as a fraction of it: the precision
        reached (what --precision targets), whatever the effect."""
        return max(self.ratio - self.ci_low, self.ci_high - self.ratio) / self.ratio


@dataclass(frozen=True)
class Verdict:
    label: str
    sentence: str


def summarize(times) -> Summary:
    values = np.asarray(times, dtype=float)
    if values.size == 0:
        raise ValueError("cannot summarize an empty list of times")
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return Summary(median=float(median), iqr=float(q3 - q1), n=int(values.size))


def _percentile_bootstrap(samples: tuple, statistic, **options) -> tuple[float, float]:
    """95% percentile-bootstrap CI of `statistic`, with the fixed seed (reproducible reports).

    The resamples are drawn and evaluated in batches of at most BOOTSTRAP_BATCH_VALUES values per
    sample, so memory does not grow with the sample size. The CI is the same bootstrap; only for
    a sample of more than BOOTSTRAP_BATCH_VALUES / N_RESAMPLES (about 200) values are the random
    draws consumed in another order than in one batch, which moves the CI by bootstrap noise only.
    """
    largest = max(np.shape(sample)[-1] for sample in samples)
    result = _scipy_stats().bootstrap(
        samples,
        statistic,
        confidence_level=CONFIDENCE,
        n_resamples=N_RESAMPLES,
        batch=max(1, min(N_RESAMPLES, BOOTSTRAP_BATCH_VALUES // max(largest, 1))),
        method="percentile",
        rng=np.random.default_rng(BOOTSTRAP_SEED),
        **options,
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def median_ci(times) -> tuple[float, float]:
    """95% CI of the median of one sample; with < 3 values or none distinct, its whole range."""
    values = np.asarray(times, dtype=float)
    if values.size < 3 or np.ptp(values) == 0.0:
        return float(values.min()), float(values.max())
    return _percentile_bootstrap((values,), np.median)


@dataclass(frozen=True)
class Estimate:
    """A quantity estimated from several processes: mean of the per-process estimates, 95% CI."""

    value: float
    ci_low: float
    ci_high: float
    process_values: tuple[float, ...]


def _groups(values: np.ndarray, process_of_round) -> list[np.ndarray]:
    """values split by process (in order of first appearance); one group without process ids."""
    if process_of_round is None or len(process_of_round) == 0:
        return [values]
    ids = np.asarray(process_of_round)
    if ids.shape[0] != values.shape[0]:
        raise ValueError(f"{values.shape[0]} rounds but {ids.shape[0]} process ids")
    return [values[ids == process] for process in dict.fromkeys(ids.tolist())]


def _trimmed_mean(values, axis=-1):
    """scipy.stats.trim_mean's statistic (TRIM cut from each end), in numpy: scipy's argument
    checks cost a millisecond per call, and the bootstrap calls it on every resample."""
    ordered = np.sort(values, axis=axis)
    n = ordered.shape[axis]
    cut = int(TRIM * n)
    return np.take(ordered, range(cut, n - cut), axis=axis).mean(axis=axis)


def t_quantile(processes: int) -> float:
    """Student's t quantile of the CI over `processes` per-process estimates (n - 1 degrees of freedom)."""
    return float(_scipy_stats().t.ppf(0.5 + CONFIDENCE / 2, processes - 1))


def across_processes(per_round, process_of_round=None) -> Estimate:
    """The mean over processes of each process's trimmed mean of `per_round`, with a 95% CI.

    Two or more processes: Student's t over the per-process estimates (see the module docstring).
    One process: a percentile bootstrap over its rounds (it cannot see between-process variation).
    """
    values = np.asarray(per_round, dtype=float)
    if values.size == 0:
        raise ValueError("no rounds to estimate from")
    groups = _groups(values, process_of_round)
    estimates = np.array([float(_trimmed_mean(g)) for g in groups])
    mean = float(estimates.mean())
    if len(groups) == 1:
        if values.size < 3 or np.ptp(values) == 0.0:
            return Estimate(mean, float(values.min()), float(values.max()), (mean,))
        low, high = _percentile_bootstrap((values,), _trimmed_mean, vectorized=True)
        return Estimate(mean, low, high, (mean,))
    half = float(t_quantile(len(groups)) * estimates.std(ddof=1) / np.sqrt(len(groups)))
    return Estimate(mean, mean - half, mean + half, tuple(float(e) for e in estimates))


def paired_ratio(a_times, b_times, process_of_round=None) -> PairedRatio:
    """The ratio b/a of paired rounds: exp of the mean over processes of each process's trimmed
    mean log ratio, with its 95% CI (across_processes)."""
    a = np.asarray(a_times, dtype=float)
    b = np.asarray(b_times, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired times must have the same non-zero length, got {a.size} and {b.size}")
    found = across_processes(np.log(b / a), process_of_round)
    return PairedRatio(math.exp(found.value), math.exp(found.ci_low), math.exp(found.ci_high), int(a.size),
                       len(found.process_values), tuple(math.exp(v) for v in found.process_values))


def _round_slopes(times_by_dose: dict[float, Sequence[float]]) -> np.ndarray:
    """Per round, the least-squares slope of time against dose (the arms of one round are paired,
    so drift cancels). Needs at least two distinct doses."""
    doses = np.array(sorted(times_by_dose), dtype=float)
    if doses.size < 2:
        raise ValueError("a dose-response fit needs at least two doses")
    times = np.array([np.asarray(times_by_dose[d], dtype=float) for d in sorted(times_by_dose)])  # dose x round
    centred = doses - doses.mean()
    return centred @ (times - times.mean(axis=0)) / (centred @ centred)


def dose_response(times_by_dose: dict[float, Sequence[float]], process_of_round=None) -> Estimate:
    """The cost of one unit of dose (e.g. one more copy of a layer): the per-round slopes of
    time against dose, combined by across_processes."""
    return across_processes(_round_slopes(times_by_dose), process_of_round)


def dose_response_difference(times_by_dose: dict[float, Sequence[float]],
                             reference_by_dose: dict[float, Sequence[float]], process_of_round=None) -> Estimate:
    """How much more one unit of dose costs than one unit of a reference dose timed in the same
    rounds (e.g. a busy-wait layer against the same layer spinning 0 µs: what is left is the spin,
    free of the framework's own per-call overhead): per-round slope differences, across processes."""
    return across_processes(_round_slopes(times_by_dose) - _round_slopes(reference_by_dose), process_of_round)


def unpaired_ratio(a_times, b_times) -> PairedRatio:
    """median(b) / median(a) for samples that were NOT interleaved (e.g. two frameworks, each
    timed in its own process), with a 95% percentile-bootstrap CI that resamples each side
    independently (N_RESAMPLES resamples, drawn in batches: memory stays bounded however many
    rounds each side has; see _percentile_bootstrap)."""
    a = np.asarray(a_times, dtype=float)
    b = np.asarray(b_times, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError("unpaired ratio needs two non-empty samples")
    ratio = float(np.median(b) / np.median(a))
    if a.size < 3 or b.size < 3:
        return PairedRatio(ratio, float(b.min() / a.max()), float(b.max() / a.min()), int(min(a.size, b.size)))
    low, high = _percentile_bootstrap(
        (a, b),
        lambda x, y, axis=-1: np.median(y, axis=axis) / np.median(x, axis=axis),
        paired=False,
        vectorized=True,
    )
    return PairedRatio(ratio, low, high, int(min(a.size, b.size)))


def unpaired_across_processes(a_times, a_process_of_round, b_times, b_process_of_round) -> PairedRatio:
    """b/a for two arms timed in different processes (two frameworks, each in its own): the
    ratio of the per-process trimmed means of log step time, averaged per side, with Welch's
    95% t-interval over the two sides' processes. Rounds are not paired, so only processes
    count: a side's process is one observation, and its layout and instances move its rounds
    together (a bootstrap over rounds would ignore that and be too narrow). One process on
    either side: no interval (0 to inf), and `processes` says so, for the verdict to refuse."""
    sides = []
    for times, ids in ((a_times, a_process_of_round), (b_times, b_process_of_round)):
        values = np.log(np.asarray(times, dtype=float))
        if values.size == 0:
            raise ValueError("unpaired ratio needs two non-empty samples")
        sides.append(np.array([float(_trimmed_mean(g)) for g in _groups(values, ids)]))
    a, b = sides
    ratio = float(np.exp(b.mean() - a.mean()))
    n_pairs, processes = int(min(len(a_times), len(b_times))), int(min(a.size, b.size))
    if processes < 2 or (np.ptp(a) == 0.0 and np.ptp(b) == 0.0):
        return PairedRatio(ratio, 0.0 if processes < 2 else ratio, math.inf if processes < 2 else ratio, n_pairs,
                           processes)
    interval = _scipy_stats().ttest_ind(b, a, equal_var=False).confidence_interval(CONFIDENCE)
    return PairedRatio(ratio, float(np.exp(interval.low)), float(np.exp(interval.high)), n_pairs, processes,
                       tuple(float(np.exp(value - a.mean())) for value in b))


def verdict(a_label: str, b_label: str, pr: PairedRatio, noise_floor: float | None) -> Verdict:
    """Classify b against a, and say it in one plain sentence with the numbers."""
    floor = noise_floor or 0.0
    # Only a record without process information (older schema) needs the effect above the floor.
    required = floor if pr.processes == 0 else 0.0
    effect = pr.ratio - 1.0
    numbers = f"ratio {pr.ratio:.3f}, 95% CI {pr.ci_low:.3f}-{pr.ci_high:.3f}"
    if 0 < pr.n_pairs < MIN_PAIRS:  # n_pairs 0: an older record that did not store it
        return Verdict(TOO_FEW_PAIRS, f"No verdict for {b_label} against {a_label}: only {pr.n_pairs} paired rounds, "
                                      f"too few for a CI to rest on (at least {MIN_PAIRS}; {numbers}).")
    if 0 < pr.processes < MIN_PROCESSES:
        return Verdict(TOO_FEW_PROCESSES, f"No verdict for {b_label} against {a_label}: measured in {pr.processes} "
                                          f"process{'' if pr.processes == 1 else 'es'}, too few to see how much a "
                                          f"process's layout moves the result (at least {MIN_PROCESSES}; {numbers}).")
    floor_text = f"; A/A noise floor ±{floor * 100:.1f}%" if noise_floor is not None else "; no A/A control"
    if pr.ci_low > 1.0 and effect > required:
        return Verdict(SLOWER, f"{b_label} is {effect * 100:.1f}% slower than {a_label} ({numbers}{floor_text}).")
    if pr.ci_high < 1.0 and -effect > required:
        return Verdict(FASTER, f"{b_label} is faster than {a_label}: it takes {-effect * 100:.1f}% less time per step "
                               f"({numbers}{floor_text}).")
    bound = max(pr.half_width, required) * 100
    return Verdict(
        NO_DIFFERENCE,
        f"No detectable difference between {b_label} and {a_label}: at most {bound:.1f}% ({numbers}{floor_text}).",
    )
