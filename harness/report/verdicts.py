"""The answers of a run report: one verdict group per question, each line a plain sentence.

Timing questions (harness.suite.questions) take the sentences their comparison records derive; graph
questions compare node counts; parity says whether every check passed; the controls say how far
the timing verdicts can be trusted; the framework ratio compares the reference backend
(backends.REFERENCE) with each other backend in the timings. A question without data says "not
measured in this run" rather than disappearing.

Constraints: verdicts come from the stored numbers through harness.stats and the records' own
derived properties; nothing here measures, and no backend name is written into the code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import harness.report.plots as plots
from backends import REFERENCE
from harness.report.ordering import backend_order
from harness.report.reading import RunFolder
from harness.report.render import VerdictGroup, VerdictLine
from harness.results.records import ComparisonRecord, InspectRecord, ParityRecord, TimingRecord
from harness.stats import FASTER, MIN_PROCESSES, SLOWER, PairedRatio, unpaired_across_processes, unpaired_ratio, verdict
from harness.suite.questions import GRAPH_QUESTIONS, TIMING_QUESTIONS, Question
from harness.suite.suites import INJECTED_SLOWDOWN
from harness.timing.controls import AA_CONTROL, CONTROLS, INJECTED_CONTROL, pooled_arm

NOT_MEASURED = "Not measured in this run."
MAX_LISTED_FAILURES = 10
MAX_CONTROL_LINES = 6  # more sessions than this: one summary line (the calibration section has the table)
PARITY_QUESTION = "Are the two frameworks numerically identical on these models?"
FRAMEWORK_QUESTION_START = "How does the reference backend's"


@dataclass(frozen=True)
class FrameworkRatio:
    """The reference backend's (REFERENCE) per-step time ÷ another backend's, in one labelled setting."""

    setting: str
    other: str
    ratio: PairedRatio


def how_to_read(run: RunFolder) -> str:
    """How much to trust one timing verdict, with the count that matters for false alarms."""
    answered = [c for c in run.of(ComparisonRecord) if c.question and c.question not in CONTROLS]
    return (
        "Timing verdicts compare interleaved rounds of two arms of one session, repeated in several worker "
        "processes: the ratio is exp of the mean over processes of each process's trimmed-mean log time ratio, "
        f"with a 95% Student-t CI over the processes (fewer than {MIN_PROCESSES} processes: no verdict). "
        "\"Slower\"/\"faster\" needs a CI that excludes 1; the session's A/A noise floor (two identical arms, same "
        "mode) is stated next to it, and the calibration section shows how often such CIs contain the true ratio. "
        "Otherwise the verdict is \"no detectable difference\" with the largest effect the data still allow. "
        f"This run answers {len(answered)} timing comparisons at 95% confidence, so about "
        f"{0.05 * len(answered):.0f} of them may be called slower or faster by chance: an effect just above its "
        "noise floor deserves a second run before it is believed."
    )


def verdict_groups(run: RunFolder, ratios: Sequence[FrameworkRatio]) -> list[VerdictGroup]:
    """Every question's group, in the report's order: timing, graph, parity, controls, frameworks."""
    return [*_timing_verdicts(run), *_graph_verdicts(run), _parity_verdict(run), _control_verdict(run),
            _framework_verdict(ratios)]


def verdict_tone(label: str) -> str:
    return "finding" if label in (SLOWER, FASTER) else ""


def where(record: TimingRecord | ComparisonRecord, run: RunFolder) -> str:
    """Where a record was measured: "backend / model / device / mode" (and threads, where they vary)."""
    threads = f" / {_threads(record.threads)}" if run.several_thread_counts else ""
    return f"{record.backend} / {record.model} / {record.device} / {record.mode}{threads}"


def _threads(count: int) -> str:
    return f"{count} thread{'' if count == 1 else 's'}"


def _group_or_not_measured(question: str, lines: Sequence[VerdictLine]) -> VerdictGroup:
    return VerdictGroup(question, tuple(lines) or (VerdictLine("", NOT_MEASURED, "missing"),))


def _timing_verdicts(run: RunFolder) -> list[VerdictGroup]:
    by_question = plots.group_by(run.of(ComparisonRecord), lambda c: c.question)
    return [
        _group_or_not_measured(q.text, [VerdictLine(where(c, run), c.sentence, verdict_tone(c.verdict))
                                        for c in by_question.get(q.key, [])])
        for q in TIMING_QUESTIONS
    ]


def _graph_verdicts(run: RunFolder) -> list[VerdictGroup]:
    counts = {(i.backend, i.graph, i.model, i.variant): i.node_count for i in run.of(InspectRecord)}
    groups = []
    for q in GRAPH_QUESTIONS:
        settings = dict.fromkeys(key[:3] for key in counts if key[3] in (q.a_variant, q.b_variant))
        groups.append(_group_or_not_measured(q.text, [_graph_line(q, s, counts) for s in settings]))
    return groups


def _graph_line(q: Question, setting: tuple[str, str, str], counts: dict) -> VerdictLine:
    backend, graph, model = setting
    place = f"{backend} {graph} graph, {model}"
    a, b = counts.get((*setting, q.a_variant)), counts.get((*setting, q.b_variant))
    if a is None or b is None:
        present, absent, n = (q.a_variant, q.b_variant, a) if b is None else (q.b_variant, q.a_variant, b)
        return VerdictLine(place, f"{present} has {n} nodes; {absent} was not inspected.", "missing")
    extra = b - a
    said = "no extra node" if extra == 0 else f"{extra:+d} node{'' if abs(extra) == 1 else 's'}"
    return VerdictLine(place, f"{q.b_variant} has {b} nodes, {q.a_variant} {a}: {said}.", "finding" if extra else "")


def _parity_verdict(run: RunFolder) -> VerdictGroup:
    question = PARITY_QUESTION
    checks = [p for p in run.of(ParityRecord) if not p.info]
    if not checks:
        return _group_or_not_measured(question, [])
    pairs = len({(p.model, p.variant) for p in checks})
    failed = [p for p in checks if not p.passed]
    if failed:
        listed = "; ".join(f"{p.model}/{p.variant} {p.check} (relative error {p.max_rel_err:.2e} > tol {p.tol:g})"
                           for p in failed[:MAX_LISTED_FAILURES])
        more = f"; and {len(failed) - MAX_LISTED_FAILURES} more (see the parity table)" \
            if len(failed) > MAX_LISTED_FAILURES else ""
        sentence = f"No: {len(failed)} of {len(checks)} checks failed on {pairs} model/variant pairs: {listed}{more}."
        return VerdictGroup(question, (VerdictLine("", sentence, "bad"),))
    worst = max(checks, key=lambda p: p.max_rel_err)
    sentence = (f"Yes: all {len(checks)} checks passed on {pairs} model/variant pairs (largest relative error "
                f"{worst.max_rel_err:.2e}, at {worst.model}/{worst.variant} {worst.check}, tolerance {worst.tol:g}).")
    lines = [VerdictLine("", sentence, "good")]
    stock = [p for p in run.of(ParityRecord) if p.info]
    if stock:  # e.g. stock Adam: expected to differ, for a stated reason
        worst_stock = max(stock, key=lambda p: p.max_rel_err)
        lines.append(VerdictLine("", f"For information, not checked: {len(stock)} comparisons of stock optimizers "
                                     f"(what timing runs) differ by up to {worst_stock.max_rel_err:.2e} relative "
                                     f"({worst_stock.model}/{worst_stock.variant} {worst_stock.check}): "
                                     f"{worst_stock.detail.split(';')[0]}."))
    return VerdictGroup(question, tuple(lines))


def _control_verdict(run: RunFolder) -> VerdictGroup:
    controls = [c for c in run.of(ComparisonRecord) if c.question in CONTROLS]
    sessions = plots.group_by(controls, lambda c: (c.session, c.backend, c.model, c.device, c.mode, c.threads))
    lines = [_control_line(session, run) for session in sessions.values()]
    if len(lines) > MAX_CONTROL_LINES:
        lines = [_controls_summary(controls, lines)]
    return _group_or_not_measured(
        "How far can the timing verdicts be trusted? (A/A noise floor; is an injected slowdown detected?)", lines)


def _controls_summary(controls: Sequence[ComparisonRecord], lines: Sequence[VerdictLine]) -> VerdictLine:
    """Many sessions' controls (a calibration) in one line: the floors' range and the detections."""
    floors = sorted(c.paired.half_width for c in controls if c.question == AA_CONTROL)
    injected = [c for c in controls if c.question == INJECTED_CONTROL]
    detected = sum(c.verdict == SLOWER for c in injected)
    parts = [f"{len(lines)} sessions"]
    if floors:
        parts.append(f"A/A noise floor ±{floors[0] * 100:.1f}% to ±{floors[-1] * 100:.1f}% "
                     f"(median ±{floors[len(floors) // 2] * 100:.1f}%)")
    if injected:
        parts.append(f"injected slowdown detected in {detected} of {len(injected)}")
    bad = sum(line.tone == "bad" for line in lines)
    caveat = f"; {bad} sessions may miss effects of that size" if bad else ""
    return VerdictLine("", "; ".join(parts) + caveat + " (per session: the calibration section and the comparisons "
                           "table).", "bad" if bad else "good")


def _control_line(session: list[ComparisonRecord], run: RunFolder) -> VerdictLine:
    aa = next((c for c in session if c.question == AA_CONTROL), None)
    injected = next((c for c in session if c.question == INJECTED_CONTROL), None)
    parts = ["no A/A control"] if aa is None else [
        f"A/A noise floor ±{aa.paired.half_width * 100:.1f}% "
        f"(A/A ratio {aa.ratio:.3f}, 95% CI {aa.ci_low:.3f}-{aa.ci_high:.3f})"]
    detected = injected is not None and injected.verdict == SLOWER
    if injected is None:
        parts.append("no injected-slowdown check, so the sensitivity is unknown")
    else:
        slowdown = injected.expected_ratio - 1 if injected.expected_ratio is not None else next(
            (t.injected_slowdown for t in run.of(TimingRecord) if t.session == injected.session
             and t.role == "injected"), INJECTED_SLOWDOWN)  # older records: the injected arm's, or the default
        parts.append(f"injected {slowdown * 100:.3g}% slowdown {'detected' if detected else 'NOT detected'} "
                     f"(ratio {injected.ratio:.3f}, 95% CI {injected.ci_low:.3f}-{injected.ci_high:.3f})")
    caveat = "" if detected else " Verdicts from this session may miss effects of that size."
    sentence = "; ".join(parts) + "." + caveat
    return VerdictLine(where(aa or injected, run), sentence, "good" if detected else "bad")


def framework_ratios(run: RunFolder) -> list[FrameworkRatio]:
    """Reference ÷ other backend per-step time of the baseline, per model, device, mode and threads.

    Each backend runs in its own processes, so their rounds are not paired: an unpaired ratio over
    processes (_unpaired). Other
    backends come in harness.report.ordering.backend_order (a Keras backend beside its engine).
    """
    baselines = [t for t in run.of(TimingRecord) if t.role == "arm" and t.variant == "baseline"]
    ratios = []
    for (model, device, mode, threads), group in plots.group_by(
            baselines, lambda t: (t.model, t.device, t.mode, t.threads)).items():
        by_backend = plots.group_by(group, lambda t: t.backend)
        if REFERENCE not in by_backend:
            continue
        setting = f"{model} / {device} / {mode}" + (f" / {_threads(threads)}" if run.several_thread_counts else "")
        others = [b for b in backend_order(by_backend) if b != REFERENCE]
        ratios += [FrameworkRatio(setting, other, _unpaired(by_backend[other], by_backend[REFERENCE]))
                   for other in others]
    return ratios


def _unpaired(a: Sequence[TimingRecord], b: Sequence[TimingRecord]) -> PairedRatio:
    """b ÷ a for arms timed in different processes: Welch's t over the two sides' worker processes
    (stats.unpaired_across_processes, as framework_comparisons does), each side's sessions pooled;
    a bootstrap over rounds only where a side kept fewer than two processes (older records)."""
    sides = [pooled_arm(list(side)) if all(r.times_s for r in side) else None for side in (a, b)]
    if all(side is not None and side.processes > 1 for side in sides):
        return unpaired_across_processes(sides[0].times_s, sides[0].process_of_round, sides[1].times_s,
                                         sides[1].process_of_round)
    return unpaired_ratio(plots.step_times(a), plots.step_times(b))


def _framework_verdict(ratios: Sequence[FrameworkRatio]) -> VerdictGroup:
    lines = []
    for r in ratios:
        said = verdict(r.other, REFERENCE, r.ratio, None)
        lines.append(VerdictLine(r.setting, said.sentence, verdict_tone(said.label)))
    return _group_or_not_measured(
        f"How does the reference backend's ({REFERENCE}) time per training step compare with each other "
        "backend's? (baseline model; each backend ran in its own process, so the ratio is unpaired and has no "
        "A/A control)", lines)
