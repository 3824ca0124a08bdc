"""The calibration section: do this machine's timing CIs mean what they say?

Controls are comparisons whose true ratio is known (ComparisonRecord.expected_ratio): an A/A copy
(1) and an injected slowdown (1 + the delay). harness.timing.calibration summarizes them per backend,
model, mode and known ratio (coverage: how often the 95% CI contained the known ratio; CI
half-widths; detection: how often an injected slowdown was called "slower") and checks per-call
records of a busy-wait layer against their known cost; this module lays those summaries out as a
sentence per backend and tables. It also recomputes, for the half-width plot, the A/A CI
half-width each session had reached after each of its processes.

Constraints: the numbers and the pass/FAIL rules are harness.timing.calibration's and harness.stats';
this module measures nothing and renders nothing itself (it returns blocks and plot data).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

import harness.report.plots as plots
from harness.report.reading import RunFolder
from harness.report.render import Block, Table, VerdictGroup, VerdictLine, us
from harness.results.records import ComparisonRecord, PerCallRecord, TimingRecord
from harness.stats import paired_ratio
from harness.timing.calibration import (
    COVERAGE_TARGET,
    DETECTION_TARGET,
    KNOWN_COST_TOLERANCE,
    MIN_CHECKED,
    ControlSummary,
    known_cost_error,
    known_cost_passed,
    known_cost_sentence,
    summarize_controls,
)
from harness.timing.controls import AA_CONTROL

FEW = 10  # fewer controls than this in a setting cannot tell a 90% rate from a much lower one


def busy_wait_records(run: RunFolder) -> list[PerCallRecord]:
    """The per-call records of a layer of known cost (the method's check)."""
    return [r for r in run.of(PerCallRecord) if r.expected_per_call_s is not None]


def calibration_blocks(run: RunFolder) -> list[Block]:
    """The controls (a sentence per backend, a table), then the busy-wait check; each if present."""
    summaries, busy = summarize_controls(run.of(ComparisonRecord)), busy_wait_records(run)
    blocks: list[Block] = []
    if summaries:
        backends = dict.fromkeys(c.backend for c in run.of(ComparisonRecord) if c.expected_ratio is not None)
        lines = tuple(_backend_line([s for s in summaries if s.backend == backend]) for backend in backends)
        blocks += [VerdictGroup("Do the 95% CIs contain the known ratio of the controls, and is a known slowdown "
                                "detected?", lines), _control_table(summaries)]
    if busy:
        lines = tuple(VerdictLine("", known_cost_sentence(r), _tone(known_cost_passed(r))) for r in busy)
        blocks += [VerdictGroup("Does the per-call method recover a known cost (a busy-wait layer) within "
                                f"±{KNOWN_COST_TOLERANCE:.0%}?", lines), _busy_table(busy)]
    return blocks


def _rate(count: int, n: int) -> str:
    return f"{count} of {n} ({count / n:.0%})"


def _check(summary: ControlSummary, target: float) -> str:
    if not summary.checked:
        return f"not checked (< {MIN_CHECKED})"
    return f"{'pass' if summary.passed else 'FAIL'} (≥ {target:.0%})"


def _tone(passed: bool) -> str:
    return "good" if passed else "bad"


def _kind(summary: ControlSummary) -> str:
    return "A/A" if summary.is_aa else f"injected {(summary.expected_ratio - 1) * 100:+.1f}%"


def _control_table(summaries: Sequence[ControlSummary]) -> Table:
    return Table(
        ("backend", "model", "mode", "control", "comparisons", "CI contains the known ratio", "coverage check",
         "median CI half-width", "90th pct CI half-width", "called slower", "detection check"),
        tuple((s.backend, s.model, s.mode, _kind(s), str(s.comparisons), _rate(s.covered, s.comparisons),
               _check(s, COVERAGE_TARGET) if s.is_aa else "—",
               f"±{s.median_half_width:.2%}", f"±{s.p90_half_width:.2%}",
               "—" if s.is_aa else _rate(s.detected, s.comparisons),
               "—" if s.is_aa else _check(s, DETECTION_TARGET)) for s in summaries),
        tuple(_tone(s.passed) for s in summaries),
    )


def _backend_line(summaries: Sequence[ControlSummary]) -> VerdictLine:
    """One backend's controls in words, pooled over its settings: A/A coverage, then each injected size."""
    parts = []
    for kind in dict.fromkeys(_kind(s) for s in sorted(summaries, key=lambda s: s.expected_ratio)):
        same = [s for s in summaries if _kind(s) == kind and s.checked] or [s for s in summaries if _kind(s) == kind]
        n, covered, detected = (sum(getattr(s, name) for s in same) for name in ("comparisons", "covered", "detected"))
        verdict = ("pass" if all(s.passed for s in same) else "FAIL") if same[0].checked else \
            f"not checked (fewer than {MIN_CHECKED} comparisons)"
        if same[0].is_aa:
            parts.append(f"the 95% CIs of {n} A/A controls contained the true ratio 1 in {_rate(covered, n)}: "
                         f"{verdict} (at least {COVERAGE_TARGET:.0%} required in each setting)")
        else:
            parts.append(f"an {kind} slowdown was called slower in {_rate(detected, n)}: {verdict} (at least "
                         f"{DETECTION_TARGET:.0%} required in each setting), and its CI contained the injected ratio "
                         f"in {_rate(covered, n)}")
    fewest = min(s.comparisons for s in summaries if s.checked) if any(s.checked for s in summaries) else \
        min(s.comparisons for s in summaries)
    few = (f" Only {fewest} control{'' if fewest == 1 else 's'} in the smallest setting: too few to tell "
           f"{COVERAGE_TARGET:.0%} from much less.") if fewest < FEW else ""
    return VerdictLine(summaries[0].backend, "; ".join(parts) + "." + few, _tone(all(s.passed for s in summaries)))


def _busy_table(records: Sequence[PerCallRecord]) -> Table:
    return Table(("backend", "model", "mode", "layer", "measured µs per call", "95% CI µs", "known µs",
                  "relative error", "check", "processes"),
                 tuple((r.backend, r.model, r.mode, r.layer, us(r.per_call_s), f"{us(r.ci_low_s)}–{us(r.ci_high_s)}",
                        us(r.expected_per_call_s), f"{known_cost_error(r):+.1%}",
                        f"{'pass' if known_cost_passed(r) else 'FAIL'} (±{KNOWN_COST_TOLERANCE:.0%})",
                        str(r.processes)) for r in records),
                 tuple(_tone(known_cost_passed(r)) for r in records))


def half_width_curves(run: RunFolder) -> list[plots.HalfWidthCurve]:
    """For each A/A control with at least two processes, the half-width after the first k of them.

    The two arms are the TimingRecords of the control's session named by its `a` and `b`; the
    rounds of the first k processes (in order of first appearance in process_of_round) go
    through harness.stats.paired_ratio, and process k's end (process_end_s[k-1]) is the x value.
    """
    timings = plots.group_by(run.of(TimingRecord), lambda t: (t.session, t.arm))
    curves = []
    for c in run.of(ComparisonRecord):
        if c.question != AA_CONTROL or (c.session, c.a) not in timings or (c.session, c.b) not in timings:
            continue
        base, copy = timings[c.session, c.a][0], timings[c.session, c.b][0]
        if base.process_of_round != copy.process_of_round or len(base.process_of_round) != len(base.times_s):
            continue
        process = np.asarray(base.process_of_round)
        order = list(dict.fromkeys(base.process_of_round))[:len(base.process_end_s)]
        a, b = np.asarray(base.times_s), np.asarray(copy.times_s)
        points = []
        for k in range(2, len(order) + 1):
            first = np.isin(process, order[:k])
            points.append((base.process_end_s[k - 1], paired_ratio(a[first], b[first], process[first]).ci_half_width))
        if points:
            seconds, widths = zip(*points)
            curves.append(plots.HalfWidthCurve(c.backend, c.model, c.mode, seconds, widths))
    return curves
