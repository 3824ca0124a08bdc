"""`harness calibrate`: evidence that the timing CIs are honest on this machine.

Each calibration session times one arm, an A/A copy (other instances of the same model: the
true ratio is 1) and an injected copy (the same model plus a busy-wait of `inject` x the base's
step time after every step: the true ratio is 1 + inject), replicated exactly as `harness time`
does. Over N sessions: coverage is the fraction of A/A 95% CIs that contain 1 (an honest method
gives about 95%; the bar is 90%); the detection rate is the fraction of injected comparisons
judged "slower" (the bar is 90% for 2%). A known-cost layer (BusyWait: spins a known number of
microseconds per call, net of the same layer spinning 0 µs) checks `harness percall` (the bar:
within ±20%). The same summaries read
any comparisons with an `expected_ratio`, so a report pools these with the controls of its
timing cases.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from harness.results.records import ComparisonRecord, PerCallRecord
from harness.stats import SLOWER

DEFAULT_COMPARISONS = 20
DEFAULT_INJECTED = 0.02
# Large against the noise of a per-call fit in Keras eager (its 128-copy arms add ~36 ms of Python
# per step that varies round to round: busywait=100 net of busywait=0 came out at 122 µs ± 41 µs
# in 109 s there); torch eager resolves 100 µs to ±2 µs.
KNOWN_COST_US = 500.0
# The fit times 7 arms (4 doses, 3 of the reference), one instance each (percall's default): twice
# the comparison budget.
KNOWN_COST_BUDGET_FACTOR = 2.0
# The busy-wait layer also costs what calling any layer costs: a few µs in torch eager, about
# 280 µs in Keras eager (measured: busywait=100 alone came out at 380.7 µs there). So its copies
# are timed in the same rounds as copies of this one, and the difference of slopes is the spin.
KNOWN_COST_NET_OF = "busywait=0"
COVERAGE_TARGET = 0.90
DETECTION_TARGET = 0.90
KNOWN_COST_TOLERANCE = 0.20
MIN_CHECKED = 10  # comparisons a setting needs before its rate is held against a target


@dataclass(frozen=True)
class ControlSummary:
    """Comparisons of one kind of control (A/A, or one injected slowdown) on one backend, model and mode."""

    backend: str
    model: str
    mode: str
    expected_ratio: float
    comparisons: int
    covered: int  # CIs containing expected_ratio
    detected: int  # verdicts "slower"
    median_half_width: float
    p90_half_width: float

    @property
    def is_aa(self) -> bool:
        return self.expected_ratio == 1.0  # exactly: an injected control's expected ratio is 1 + its delay

    @property
    def coverage(self) -> float:
        return self.covered / self.comparisons

    @property
    def detection_rate(self) -> float:
        return self.detected / self.comparisons

    @property
    def checked(self) -> bool:
        """Enough comparisons for a rate to be held against its target (one timing session's
        control is evidence, not a check)."""
        return self.comparisons >= MIN_CHECKED

    @property
    def passed(self) -> bool:
        """A/A: coverage at least COVERAGE_TARGET; injected: detected at least DETECTION_TARGET.
        True for a setting with too few comparisons to check (see `checked`)."""
        if not self.checked:
            return True
        return self.coverage >= COVERAGE_TARGET if self.is_aa else self.detection_rate >= DETECTION_TARGET

    def _outcome(self) -> str:
        if not self.checked:
            return f"not checked, fewer than {MIN_CHECKED} comparisons"
        return "pass" if self.passed else "FAIL"

    def sentence(self) -> str:
        where = f"{self.backend} {self.model} {self.mode}"
        widths = (f"CI half-width median ±{self.median_half_width:.2%}, 90th percentile ±{self.p90_half_width:.2%}")
        if self.is_aa:
            return (f"{where}: {self.covered} of {self.comparisons} A/A CIs contain 1 (coverage {self.coverage:.0%}, "
                    f"target ≥ {COVERAGE_TARGET:.0%}: {self._outcome()}); {widths}.")
        return (f"{where}: a {self.expected_ratio - 1:.1%} injected slowdown was detected in {self.detected} of "
                f"{self.comparisons} comparisons ({self.detection_rate:.0%}, target ≥ {DETECTION_TARGET:.0%}: "
                f"{self._outcome()}); its CI contained the true ratio in {self.covered}; {widths}.")


def summarize_controls(comparisons: Iterable[ComparisonRecord]) -> list[ControlSummary]:
    """One summary per backend, model, mode and expected ratio, over the comparisons that know
    their true ratio (A/A and injected controls)."""
    groups: dict[tuple, list[ComparisonRecord]] = {}
    for c in comparisons:
        if c.expected_ratio is not None:
            # Rounded to 9 digits (not 3): a tiny injected delay must not join the A/A group.
            groups.setdefault((c.backend, c.model, c.mode, round(c.expected_ratio, 9)), []).append(c)
    found = []
    for (backend, model, mode, expected), group in sorted(groups.items()):
        widths = np.array([c.paired.ci_half_width for c in group])
        found.append(ControlSummary(
            backend, model, mode, expected, len(group),
            covered=sum(c.ci_low <= expected <= c.ci_high for c in group),
            detected=sum(c.verdict == SLOWER for c in group),
            median_half_width=float(np.median(widths)), p90_half_width=float(np.percentile(widths, 90)),
        ))
    return found


def known_cost_error(record: PerCallRecord) -> float:
    """Relative error of a per-call estimate against its known cost."""
    if record.expected_per_call_s is None:
        raise ValueError(f"{record.layer}: no known cost to compare with")
    return record.per_call_s / record.expected_per_call_s - 1.0


def known_cost_passed(record: PerCallRecord) -> bool:
    return abs(known_cost_error(record)) <= KNOWN_COST_TOLERANCE


def known_cost_sentence(record: PerCallRecord) -> str:
    error = known_cost_error(record)
    net = f" (net of {record.net_of}, timed in the same rounds)" if record.net_of else ""
    return (f"{record.backend} {record.model} {record.mode}: a layer known to cost "
            f"{record.expected_per_call_s * 1e6:.1f} µs per call{net} was measured at "
            f"{record.per_call_s * 1e6:.2f} µs (95% CI {record.ci_low_s * 1e6:.2f} to "
            f"{record.ci_high_s * 1e6:.2f}), {error:+.1%} (target within ±{KNOWN_COST_TOLERANCE:.0%}: "
            f"{'pass' if known_cost_passed(record) else 'FAIL'}).")
