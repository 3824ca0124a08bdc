"""Statistics for timing: robust summaries, paired ratios with bootstrap CIs, and verdicts.

The effects this project measures are often smaller than the noise of a shared machine, so the
rules are conservative and stated once, here:

- Arms are measured interleaved; round r of arm A and round r of arm B form a pair, and the
  effect is the per-pair ratio time_B / time_A (drift in machine speed cancels within a pair).
- The effect size is the median of those ratios, with a 95% percentile-bootstrap CI
  (scipy.stats.bootstrap, fixed seed so a report is reproducible from its raw times).
- The noise floor is the half-width of an A/A control (the same variant built twice and timed
  the same way): the largest ratio that pure noise produced in that session.
- "slower"/"faster" needs both a CI that excludes 1 and an effect larger than the noise floor.
  Anything else is "no detectable difference", reported with the largest effect still compatible
  with the data ("at most X%"), never as a finding.
- Below MIN_PAIRS paired rounds a bootstrap CI is not worth its name (3 pairs have only 10
  distinct resamples; 1 pair gives a zero-width CI): no verdict is given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

CONFIDENCE = 0.95
N_RESAMPLES = 10_000
BOOTSTRAP_SEED = 20261122

SLOWER = "slower"
FASTER = "faster"
NO_DIFFERENCE = "no detectable difference"
TOO_FEW_PAIRS = "too few rounds for a verdict"
MIN_PAIRS = 10


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

    @property
    def half_width(self) -> float:
        """Largest distance of the CI from 1 (no effect), as a fraction."""
        return max(abs(self.ci_low - 1.0), abs(self.ci_high - 1.0))


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
    """95% percentile-bootstrap CI of `statistic`, with the fixed seed (reproducible reports)."""
    result = scipy_stats.bootstrap(
        samples,
        statistic,
        confidence_level=CONFIDENCE,
        n_resamples=N_RESAMPLES,
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


def paired_ratio(a_times, b_times) -> PairedRatio:
    """Median of per-round ratios b/a with a 95% bootstrap CI.

    Needs at least 3 pairs; with fewer, the CI is the whole observed range (honest, and wide).
    """
    a = np.asarray(a_times, dtype=float)
    b = np.asarray(b_times, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired times must have the same non-zero length, got {a.size} and {b.size}")
    ratios = b / a
    return PairedRatio(float(np.median(ratios)), *median_ci(ratios), int(ratios.size))


def unpaired_ratio(a_times, b_times) -> PairedRatio:
    """median(b) / median(a) for samples that were NOT interleaved (e.g. two frameworks, each
    timed in its own process), with a 95% bootstrap CI that resamples each side independently."""
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


def verdict(a_label: str, b_label: str, pr: PairedRatio, noise_floor: float | None) -> Verdict:
    """Classify b against a, and say it in one plain sentence with the numbers."""
    floor = noise_floor or 0.0
    effect = pr.ratio - 1.0
    numbers = f"ratio {pr.ratio:.3f}, 95% CI {pr.ci_low:.3f}-{pr.ci_high:.3f}"
    if 0 < pr.n_pairs < MIN_PAIRS:  # n_pairs 0: an older record that did not store it
        return Verdict(TOO_FEW_PAIRS, f"No verdict for {b_label} against {a_label}: only {pr.n_pairs} paired rounds, "
                                      f"too few for a CI to rest on (at least {MIN_PAIRS}; {numbers}).")
    floor_text = f"; A/A noise floor ±{floor * 100:.1f}%" if noise_floor is not None else "; no A/A control"
    if pr.ci_low > 1.0 and effect > floor:
        return Verdict(SLOWER, f"{b_label} is {effect * 100:.1f}% slower than {a_label} ({numbers}{floor_text}).")
    if pr.ci_high < 1.0 and -effect > floor:
        return Verdict(FASTER, f"{b_label} is faster than {a_label}: it takes {-effect * 100:.1f}% less time per step "
                               f"({numbers}{floor_text}).")
    bound = max(pr.half_width, floor) * 100
    return Verdict(
        NO_DIFFERENCE,
        f"No detectable difference between {b_label} and {a_label}: at most {bound:.1f}% ({numbers}{floor_text}).",
    )
