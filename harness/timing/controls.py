"""Controls of a timing session, and the paired comparison every verdict is made with.

A session's controls are copies of each mode's first arm (its "base"): an A/A copy, other
instances timed the same way, whose ratio to the base is pure noise (that mode's noise floor);
an injected copy that spins a known fraction of the base's step time after every step (a
slowdown the statistics must detect); and, for the mlp in eager mode, a hand-written training
loop against which the harness's own step is compared. A control's TimingRecord names its base
(`base`); records written before schema 5 did not, and their base is read from the arm label.

`compare` is the one function that turns two arms of a session into a ComparisonRecord; the
commands, the suite's answers and the report all use it. Nothing here measures.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from harness import stats
from harness.results.records import ComparisonRecord, TimingRecord

# The `question` of the comparisons that calibrate a session rather than answer a question.
AA_CONTROL = "aa_control"
INJECTED_CONTROL = "injected_control"
CONTROLS = (AA_CONTROL, INJECTED_CONTROL)
CONTROL_QUESTIONS = {"aa": AA_CONTROL, "injected": INJECTED_CONTROL}
# The question of a comparison of two frameworks' sides of a user's model pair (unpaired).
FRAMEWORK = "framework"
# The arm of a hand-written training loop (Backend.reference_step), compared with the harness's own.
REFERENCE_LOOP = "hand-written loop"
AA_SUFFIX = " (A/A copy)"
BASELINE_EAGER = ("baseline", "eager")  # the harness step the hand-written loop is compared with
# An A/A noise floor wider than this: the machine was not stable enough for effects of a few percent
# (a quiet 2-core CPU machine reaches ±0.5-1%; under load ±3-6%). `time` and the report warn above it.
NOISY_FLOOR = 0.02


def base_of(control: TimingRecord, records: list[TimingRecord]) -> TimingRecord:
    """The arm a control copies (stored on the record since schema 5; earlier, in its label)."""
    label = control.base or (control.arm.removesuffix(AA_SUFFIX) if control.role == "aa"
                             else control.arm.rsplit(" (+", 1)[0])
    return next(r for r in records if r.arm == label)


def noise_floors(records: list[TimingRecord]) -> dict[str, float]:
    """Per mode, the half-width of the session's A/A comparison in that mode."""
    return {aa.mode: stats.paired_ratio(base_of(aa, records).times_s, aa.times_s, aa.process_of_round).half_width
            for aa in records if aa.role == "aa"}


def floor_for(floors: dict[str, float], a: TimingRecord, b: TimingRecord) -> float | None:
    """The noise floor a comparison of a and b is judged against: the larger of their modes'."""
    known = [floors[mode] for mode in {a.mode, b.mode} if mode in floors]
    return max(known) if known else None


def compare(a: TimingRecord, b: TimingRecord, floor: float | None, question: str = "") -> ComparisonRecord:
    """Paired comparison of two arms of the same session (the one function every verdict uses)."""
    if a.session != b.session:
        raise ValueError(f"arms {a.arm!r} and {b.arm!r} were not measured in the same session")
    if a.process_of_round != b.process_of_round:
        raise ValueError(f"arms {a.arm!r} and {b.arm!r} do not share their rounds' processes")
    pr = stats.paired_ratio(a.times_s, b.times_s, a.process_of_round)
    mode = a.mode if a.mode == b.mode else f"{a.mode}->{b.mode}"
    return ComparisonRecord(
        backend=a.backend, model=a.model, device=a.device, mode=mode, threads=a.threads, a=a.arm, b=b.arm,
        ratio=pr.ratio, ci_low=pr.ci_low, ci_high=pr.ci_high, noise_floor=floor, session=a.session,
        question=question, n_pairs=pr.n_pairs, processes=pr.processes, process_ratios=pr.process_ratios,
        expected_ratio=_expected_ratio(b) if a.role == "arm" else None,
    )


def _expected_ratio(control: TimingRecord) -> float | None:
    """What a control's ratio to its base truly is: 1 for an A/A copy, 1 + the injected delay."""
    return {"aa": 1.0, "injected": 1.0 + control.injected_slowdown}.get(control.role)


def compare_against_first(records: list[TimingRecord]) -> list[ComparisonRecord]:
    """Every arm against the first, each control against its base, and the harness's baseline
    step against the hand-written loop; each judged against its modes' A/A noise floor (the
    A/A comparisons' own half-widths: each ratio is computed once)."""
    pairs = [_pair(other, records) for other in records[1:]]
    compared = [compare(a, b, None, question) for a, b, question in pairs]
    floors = {c.mode: c.paired.half_width for c in compared if c.question == AA_CONTROL}
    return [replace(c, noise_floor=floor_for(floors, a, b)) for c, (a, b, _) in zip(compared, pairs)]


def _pair(other: TimingRecord, records: list[TimingRecord]) -> tuple[TimingRecord, TimingRecord, str]:
    """What `other` is compared with (a, b) and the comparison's question."""
    if other.role == "reference":
        baseline = next(r for r in records if r.role == "arm" and (r.variant, r.mode) == BASELINE_EAGER)
        return other, baseline, ""
    if other.role in CONTROL_QUESTIONS:
        return base_of(other, records), other, CONTROL_QUESTIONS[other.role]
    return records[0], other, ""


def framework_comparisons(records: list[TimingRecord]) -> list[ComparisonRecord]:
    """Per mode, every other backend's arm against the first backend's (records in backend order,
    one arm per backend and mode, labelled with its framework: a user's model pair,
    harness/ported/timing.py; the record's `backend` is the first one's). Each backend
    ran in its own processes, so nothing is paired: stats.unpaired_across_processes, and no A/A
    floor applies (the sentence says "no A/A control")."""
    found = []
    for mode in dict.fromkeys(r.mode for r in records):
        a, *others = [r for r in records if r.mode == mode]
        for b in others:
            pr = stats.unpaired_across_processes(a.times_s, a.process_of_round, b.times_s, b.process_of_round)
            found.append(ComparisonRecord(
                backend=a.backend, model=a.model, device=a.device, mode=mode, threads=a.threads,
                a=a.arm, b=b.arm, ratio=pr.ratio, ci_low=pr.ci_low,
                ci_high=pr.ci_high, noise_floor=None, session=f"{a.session}/{b.session}", question=FRAMEWORK,
                n_pairs=pr.n_pairs, processes=pr.processes, process_ratios=pr.process_ratios))
    return found


def pooled_arm(records: list[TimingRecord]) -> TimingRecord:
    """Records of one arm measured alike in several sessions (or runs) as one record: their rounds
    pooled, each record's processes numbered apart so that no two share an id (for an unpaired
    comparison over processes, framework_comparisons). A record that kept no process ids counts
    as one process."""
    times, processes, offset = [], [], 0
    for r in records:
        ids = r.process_of_round if len(r.process_of_round) == len(r.times_s) else (0,) * len(r.times_s)
        times += list(r.times_s)
        processes += [offset + p for p in ids]
        offset += max(ids, default=-1) + 1
    return replace(records[0], times_s=tuple(times), process_of_round=tuple(processes), processes=offset,
                   rounds=len(times))


def widest_half_width(records: list[TimingRecord]) -> float:
    """The precision a session of arms has reached: the widest CI half-width (about its estimate)
    of its comparisons (each arm against the first, each control against its base). A single arm
    has nothing to compare, so its precision is that of its own step time (own_half_width):
    never 0, which would call the precision reached at once."""
    if len(records) > 1:
        return max(c.paired.ci_half_width for c in compare_against_first(records))
    return own_half_width(records[0])


def own_half_width(record: TimingRecord) -> float:
    """The 95% CI half-width of one arm's mean log step time over its processes (a fraction)."""
    e = stats.across_processes(np.log(record.times_s), record.process_of_round or None)
    return max(e.ci_high - e.value, e.value - e.ci_low)


def step_time_half_width(records: list[TimingRecord]) -> float:
    """The precision of a session whose arms are compared with another framework's (a user's
    pair): the widest of its own comparisons' half-widths and of each arm's mean log step time
    over processes (a fraction). An unpaired ratio of two sides at precision p each is known to
    about p * sqrt(2)."""
    return max([widest_half_width(records), *(own_half_width(r) for r in records if r.role == "arm")])
