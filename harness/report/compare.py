"""Two runs of one machine compared: what got slower between an old run folder and a new one.

This is `report --compare OLD NEW` (pytest-benchmark's --benchmark-compare with
--benchmark-compare-fail, for run folders). Two things are compared, each as new ÷ old with a 95% CI:
- step times: each arm (backend, model, device, mode, threads, variant) timed in both runs. The
  two runs were not interleaved, so the ratio is unpaired: Welch's t over the two runs' worker
  processes (harness.stats.unpaired_across_processes), or a bootstrap over rounds where a record
  kept no process ids;
- question costs: each timing question's ratio (b ÷ a within one session) in both runs; their
  quotient, with a CI from the two CIs combined on the log scale (independent runs).
A change is a regression when its CI lies wholly above 1 (detectably slower) and its estimate is
more than `threshold` above 1; `regressions` lists them, and the CLI exits 1 when there is one.

Constraints: both folders must come from one machine (same recorded CPU model; a merged report of
several machines is `report A B` without --compare). Reads records only; measures nothing;
renders nothing itself (it returns blocks and lines).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import harness.report.plots as plots
from harness.errors import HarnessInputError
from harness.report.reading import RunFolder
from harness.report.render import Block, Fold, Heading, Table, Text
from harness.results.records import ComparisonRecord, TimingRecord
from harness.stats import PairedRatio, unpaired_across_processes, unpaired_ratio
from harness.suite.questions import TIMING_QUESTIONS
from harness.timing.controls import pooled_arm

Z95 = 1.959963984540054
STEP_TIME = "step time"
QUESTION_COST = "question cost"
_QUESTIONS = {q.key: q.text for q in TIMING_QUESTIONS}


@dataclass(frozen=True)
class Change:
    """One thing measured in both runs: new ÷ old with its 95% CI, and whether it regressed."""

    kind: str  # STEP_TIME or QUESTION_COST
    what: str
    old: str
    new: str
    ratio: float
    ci_low: float
    ci_high: float
    regressed: bool

    @property
    def said(self) -> str:
        low, high = ((value - 1) * 100 for value in (self.ci_low, self.ci_high))
        change = f"{(self.ratio - 1) * 100:+.1f}% (95% CI {low:+.1f}% to {high:+.1f}%)"
        if self.regressed:
            return f"slower: {change}"
        if self.ci_low > 1:
            return f"slower, within the threshold: {change}"
        if self.ci_high < 1:
            return f"faster: {change}"
        return f"no detectable change: {change}"


@dataclass(frozen=True)
class RunComparison:
    old: RunFolder
    new: RunFolder
    threshold: float  # a fraction: 0.05 fails on more than 5% slower
    changes: tuple[Change, ...]

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.regressed]


def compare_runs(old: RunFolder, new: RunFolder, threshold: float) -> RunComparison:
    """Every step time and question cost measured in both runs, new ÷ old. HarnessInputError where the
    two runs come from different machines, or share nothing to compare."""
    if not math.isfinite(threshold) or threshold < 0:
        raise HarnessInputError(f"--fail-above: {threshold * 100:g} is not a percentage ≥ 0")
    cpus = [str((run.environment or {}).get("cpu_model") or "") for run in (old, new)]
    if all(cpus) and cpus[0] != cpus[1]:
        raise HarnessInputError(f"{new.folder}: ran on {cpus[1]!r}, {old.folder} on {cpus[0]!r}; --compare is for two "
                                "runs of one machine (for several machines side by side: report A B, without "
                                "--compare)")
    changes = (*_step_time_changes(old, new, threshold), *_question_changes(old, new, threshold))
    if not changes:
        raise HarnessInputError(f"{new.folder}: no step time or timing question in common with {old.folder}; "
                                "nothing to compare")
    return RunComparison(old, new, threshold, tuple(sorted(changes, key=lambda c: (not c.regressed, -c.ratio))))


def _regressed(ratio: PairedRatio, threshold: float) -> bool:
    return ratio.ci_low > 1 and ratio.ratio > 1 + threshold


def _arm_key(t: TimingRecord) -> tuple:
    return t.backend, t.model, t.device, t.mode, t.threads, t.variant


def _step_time_changes(old: RunFolder, new: RunFolder, threshold: float) -> list[Change]:
    arms = [[t for t in run.of(TimingRecord) if t.role == "arm"] for run in (old, new)]
    before, after = (plots.group_by(a, _arm_key) for a in arms)
    changes = []
    for key in [k for k in after if k in before]:
        a, b = (pooled_arm(side[key]) if all(r.times_s for r in side[key]) else None for side in (before, after))
        if a and b and a.processes > 1 and b.processes > 1:
            ratio = unpaired_across_processes(a.times_s, a.process_of_round, b.times_s, b.process_of_round)
        else:
            ratio = unpaired_ratio(plots.step_times(before[key]), plots.step_times(after[key]))
        backend, model, device, mode, threads, variant = key
        old_ms = float(sorted(plots.step_times(before[key]))[len(plots.step_times(before[key])) // 2]) * 1e3
        new_ms = float(sorted(plots.step_times(after[key]))[len(plots.step_times(after[key])) // 2]) * 1e3
        changes.append(Change(STEP_TIME, f"{backend} {model} {device} {mode} {threads} threads: {variant}",
                              f"{old_ms:.4g} ms", f"{new_ms:.4g} ms", ratio.ratio, ratio.ci_low, ratio.ci_high,
                              _regressed(ratio, threshold)))
    return changes


def _question_key(c: ComparisonRecord) -> tuple:
    return c.question, c.backend, c.model, c.device, c.mode, c.threads


def _question_changes(old: RunFolder, new: RunFolder, threshold: float) -> list[Change]:
    before, after = ({_question_key(c): c for c in run.of(ComparisonRecord) if c.question in _QUESTIONS}
                     for run in (old, new))
    changes = []
    for key in [k for k in after if k in before]:
        a, b = before[key], after[key]
        log_ratio = math.log(b.ratio) - math.log(a.ratio)
        half = math.hypot(*(math.log(c.ci_high / c.ci_low) / 2 for c in (a, b)))  # independent runs
        ratio = PairedRatio(math.exp(log_ratio), math.exp(log_ratio - half), math.exp(log_ratio + half), 0)
        question, backend, model, device, mode, threads = key
        changes.append(Change(QUESTION_COST, f"{backend} {model} {device} {mode} {threads} threads: "
                              f"{b.b} vs {b.a} ({question})", _ratio_text(a), _ratio_text(b), ratio.ratio,
                              ratio.ci_low, ratio.ci_high, _regressed(ratio, threshold)))
    return changes


def _ratio_text(c: ComparisonRecord) -> str:
    return f"{c.ratio:.3f} [{c.ci_low:.3f}, {c.ci_high:.3f}]"


def verdict_line(comparison: RunComparison) -> str:
    """One sentence: how many changes regressed beyond the threshold, of how many compared."""
    n, bad = len(comparison.changes), comparison.regressions
    rule = f"more than {comparison.threshold:.1%} slower with a 95% CI wholly above no change"
    if not bad:
        return f"No regression: none of the {n} step times and question costs compared is {rule}."
    return f"REGRESSION: {len(bad)} of {n} step times and question costs compared are {rule}."


def explanation(comparison: RunComparison) -> str:
    return (
        f"Old run: {comparison.old.folder}; new run: {comparison.new.folder}. Each row is new ÷ old. A step time "
        "is an arm's time per training step in each run; the two runs were not interleaved, so the ratio is "
        "unpaired (Welch's t over the two runs' worker processes) and also carries any drift of the machine "
        "between the runs. A question cost is a question's own ratio (b ÷ a, paired within each run's session) "
        "in the new run divided by the old one: it moves when the thing the question asks about got dearer or "
        "cheaper, and is immune to the machine being uniformly slower. A row fails when it is more than "
        f"{comparison.threshold:.1%} slower (--fail-above) and its 95% CI lies wholly above 1; with many rows "
        "about 1 in 40 may look detectably slower by chance, which is what the threshold is for."
    )


def comparison_blocks(comparison: RunComparison) -> list[Block]:
    """The verdict and how it is reached, then per kind a table of the rows that changed
    detectably (regressions first) and, folded, the rows that did not."""
    title = f"Comparison of two runs: {comparison.old.folder.name} → {comparison.new.folder.name}"
    blocks: list[Block] = [Heading(title, 1), Text(verdict_line(comparison), "bad" if comparison.regressions
                                                   else "good"), Text(explanation(comparison))]
    for kind, heading in ((STEP_TIME, "Step times (new ÷ old)"), (QUESTION_COST, "Question costs (new ÷ old)")):
        rows = [c for c in comparison.changes if c.kind == kind]
        changed = [c for c in rows if c.ci_low > 1 or c.ci_high < 1]
        unchanged = [c for c in rows if c not in changed]
        if not rows:
            continue
        blocks.append(Heading(heading))
        blocks.append(_table(changed) if changed else Text("None changed detectably.", "good"))
        if unchanged:
            blocks.append(Fold(f"{len(unchanged)} with no detectable change", (_table(unchanged),), level=3))
    return blocks


def _table(rows: Sequence[Change]) -> Table:
    return Table(("what", "old", "new", "new ÷ old (95% CI)", "verdict"),
                 tuple((c.what, c.old, c.new, f"{c.ratio:.3f} [{c.ci_low:.3f}, {c.ci_high:.3f}]", c.said)
                       for c in rows),
                 tuple("bad" if c.regressed else "finding" if c.ci_low > 1 or c.ci_high < 1 else "" for c in rows))
