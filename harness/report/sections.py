"""The run report, section by section: summary, warnings, verdicts, per-call costs, calibration,
plots, one table per record kind, the cases that are missing, and the environment.

Constraints: this module arranges blocks from a RunFolder (harness.report.reading) and the
verdicts (harness.report.verdicts); it reads no file and renders nothing itself. Its only output
is the plot PNGs, drawn by harness.report.plots and saved under the report folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import harness.report.plots as plots
from backends import REFERENCE
from harness.report.calibration import busy_wait_records, calibration_blocks, half_width_curves
from harness.report.per_call import measured_records, per_call_blocks
from harness.report.reading import RunFolder
from harness.report.render import Block, Heading, Table, Text, facts_table, ms, save_plot
from harness.report.study import study_blocks
from harness.report.verdicts import FrameworkRatio, framework_ratios, how_to_read, verdict_groups, verdict_tone, where
from harness.results.environment import ENVIRONMENT_FILE
from harness.results.records import (
    RESULTS_FILE,
    ComparisonRecord,
    InspectRecord,
    ParityRecord,
    StudyRunRecord,
    TimingRecord,
)
from harness.suite.questions import QUESTION_BY_KEY, TIMING_QUESTIONS
from harness.timing.controls import AA_CONTROL, CONTROLS, INJECTED_CONTROL

_COMPARISON_ORDER = [q.key for q in TIMING_QUESTIONS] + [*CONTROLS, ""]
# The panel titles of comparisons that answer no question of harness.suite.questions.
_PANEL_TITLES = {
    AA_CONTROL: "A/A control: two identical arms of one session. The true change is 0; the CI's largest distance "
                "from 0 is the session's noise floor.",
    INJECTED_CONTROL: "Injected control: a copy of the session's first arm that spins a known fraction of its step "
                      "(the black tick). It should be called slower.",
}


def run_blocks(run: RunFolder, out: Path) -> list[Block]:
    """The whole run report; plots are saved under `out`."""
    ratios = framework_ratios(run)
    timings, comparisons = run.of(TimingRecord), run.of(ComparisonRecord)
    inspections, parity = run.of(InspectRecord), run.of(ParityRecord)
    blocks: list[Block] = [Heading(f"Cross-framework run report: {run.folder.name}", 1), Text(_summary(run))]
    if run.warnings:
        blocks += [Heading("Warnings"), *(Text(w, "bad") for w in run.warnings)]
    blocks += study_blocks(run, out)  # the claims ledger leads when a study ran
    blocks += [
        Heading("Verdicts"),
        Text(how_to_read(run)),
        *verdict_groups(run, ratios),
    ]
    per_call = measured_records(run)
    if per_call:
        blocks += [Heading("Per-call cost"), *per_call_blocks(per_call)]
    if any(c.expected_ratio is not None for c in comparisons) or busy_wait_records(run):
        blocks += [Heading("Calibration"), *calibration_blocks(run)]
    blocks += [
        Heading("Plots"),
        *_run_plots(run, ratios, out),
        Heading("Timings"),
        _timing_table(timings) if timings else Text("No timing records in this run.", "missing"),
        Heading("Comparisons"),
        _comparison_table(comparisons) if comparisons else Text("No comparison records in this run.", "missing"),
        Heading("Graph inspection"),
        _inspect_table(inspections) if inspections else Text("No graph-inspection records in this run.", "missing"),
        Heading("Parity"),
        _parity_table(parity) if parity else Text("No parity records in this run.", "missing"),
        Heading("Missing cases"),
        _missing_block(run),
        Heading("Environment"),
        facts_table(run.environment) if run.environment is not None
        else Text(f"No usable {ENVIRONMENT_FILE} in {run.folder}: the machine is not recorded.", "missing"),
    ]
    return blocks


def _summary(run: RunFolder) -> str:
    env = run.environment or {}
    cores = env.get("available_cores") or env.get("logical_cores") or env.get("cores")
    gpus = env.get("gpu")
    gpu_names = [g.get("name", "?") if isinstance(g, dict) else str(g) for g in gpus] \
        if isinstance(gpus, list) else [str(gpus)] if gpus else []
    machine = ", ".join(str(part) for part in (
        env.get("cpu_model"),
        f"{cores} cores" if cores else None,
        f"GPU {', '.join(gpu_names)}" if gpu_names else None,
    ) if part) or "an unrecorded machine"
    timings, comparisons, parity = run.of(TimingRecord), run.of(ComparisonRecord), run.of(ParityRecord)
    measured = (*timings, *comparisons, *run.of(InspectRecord), *run.of(StudyRunRecord))
    backends = sorted({r.backend for r in measured} | {b for p in parity for b in p.backends})
    models = sorted({r.model for r in (*measured, *parity)})
    settings = sorted({f"{r.device}/{r.mode}" for r in (*timings, *comparisons)})
    cases = (f"{run.cases_ok} cases ok, {len(run.missing)} missing" if run.has_case_records
             else f"{run.cases_ok} cases (no case records)")
    return (
        f"Run of {env.get('date', 'an unrecorded date')} on {machine}. "
        f"Backends {', '.join(backends) or 'none'}; models {', '.join(models) or 'none'}; "
        f"device/mode {', '.join(settings) or 'none'}: {len(timings)} timing arms, "
        f"{len(comparisons)} comparisons, {len(parity)} parity checks, "
        f"{len(run.of(InspectRecord))} graph inspections, {len(run.of(StudyRunRecord))} study training runs. {cases}."
    )


def _run_plots(run: RunFolder, ratios: Sequence[FrameworkRatio], out: Path) -> list[Block]:
    panels = _question_panels(run)
    curves = half_width_curves(run)
    arms = [t for t in run.of(TimingRecord) if t.role == "arm"]
    rows = [(r.other, r.setting, r.ratio) for r in ratios]
    wanted = [
        ("step_times", "Time per training step per backend, variant and mode (median, 95% CI)",
         arms, lambda: plots.step_time_figure(arms)),
        ("questions", ("Change in time per step for each question, b against a, with its 95% CI, each panel "
                       "zoomed to its own range; grey band: the session's A/A noise floor"),
         panels, lambda: plots.question_figure(panels)),
        ("half_width", ("A/A CI half-width reached after each worker process against the wall-clock seconds "
                        "spent (log scale; one line per session)"), curves, lambda: plots.half_width_figure(curves)),
        ("framework_ratios", f"{plots.ratio_name(REFERENCE, [r.other for r in ratios])} time per training step "
         "(baseline, 95% CI)", rows, lambda: plots.framework_ratio_figure(REFERENCE, rows)),
    ]
    return [save_plot(name, caption, make, out) if data else Text(f"{caption}: no data in this run.", "missing")
            for name, caption, data, make in wanted]


def _question_panels(run: RunFolder) -> list[plots.QuestionPanel]:
    """One panel per question and control (in the report's order); a row per comparison, labelled by
    where it ran. Comparisons that answer no named question (each arm against a session's first)
    are left to the comparisons table: a hundred rows made the figure unreadable."""
    by_question = plots.group_by(_sorted_comparisons(run.of(ComparisonRecord)), lambda c: c.question)
    return [plots.QuestionPanel(QUESTION_BY_KEY[key].text if key in QUESTION_BY_KEY else _PANEL_TITLES.get(key, key),
                                tuple((where(c, run), c) for c in rows))
            for key, rows in by_question.items() if key]


def _sorted_comparisons(comparisons: Sequence[ComparisonRecord]) -> list[ComparisonRecord]:
    def key(c: ComparisonRecord):
        rank = _COMPARISON_ORDER.index(c.question) if c.question in _COMPARISON_ORDER else len(_COMPARISON_ORDER)
        return rank, c.question, c.backend, c.model, c.device, c.mode, c.threads
    return sorted(comparisons, key=key)


def _timing_table(timings: Sequence[TimingRecord]) -> Table:
    return Table(
        ("backend", "model", "device", "mode", "threads", "variant", "arm", "median ms", "IQR ms",
         "rounds × steps", "setup s", "optimizer"),
        tuple((t.backend, t.model, t.device, t.mode, str(t.threads), t.variant, t.arm, ms(t.median_s), ms(t.iqr_s),
               f"{t.rounds} × {t.steps_per_round}", f"{t.setup_s:.2f}", t.optimizer_class or "—") for t in timings),
    )


def _comparison_table(comparisons: Sequence[ComparisonRecord]) -> Table:
    rows = _sorted_comparisons(comparisons)
    return Table(
        ("backend", "model", "device", "mode", "threads", "question", "b vs a", "ratio", "95% CI", "processes",
         "between-process spread", "noise floor", "verdict"),
        tuple((c.backend, c.model, c.device, c.mode, str(c.threads), c.question or "(ad hoc)", f"{c.b} vs {c.a}",
               f"{c.ratio:.3f}", f"{c.ci_low:.3f}-{c.ci_high:.3f}", str(c.processes) if c.processes else "—",
               f"{min(c.process_ratios):.3f}–{max(c.process_ratios):.3f}" if c.process_ratios else "—",
               "—" if c.noise_floor is None else f"±{c.noise_floor * 100:.1f}%", c.verdict) for c in rows),
        tuple(verdict_tone(c.verdict) for c in rows),
    )


def _inspect_table(inspections: Sequence[InspectRecord]) -> Table:
    return Table(("backend", "model", "variant", "graph", "nodes"),
                 tuple((i.backend, i.model, i.variant, i.graph, str(i.node_count)) for i in inspections))


def _parity_table(parity: Sequence[ParityRecord]) -> Table:
    return Table(
        ("model", "variant", "check", "backends", "max abs err", "max rel err", "tol", "verdict"),
        tuple((p.model, p.variant, p.check, ", ".join(p.backends), f"{p.max_abs_err:.2e}", f"{p.max_rel_err:.2e}",
               f"{p.tol:g}", "info" if p.info else "✓ pass" if p.passed else "✗ FAIL") for p in parity),
        tuple("" if p.info else "good" if p.passed else "bad" for p in parity),
    )


def _missing_block(run: RunFolder) -> Block:
    if not run.has_case_records:
        return Text(f"Unknown: {RESULTS_FILE} has no case records.", "missing")
    if not run.missing:
        return Text("None: every case finished ok.", "good")
    return Table(
        ("case", "status", "error", "command", "records left out"),
        tuple((m.case_id, m.status, _last_line(m.error), m.command, str(m.records_left_out)) for m in run.missing),
        tuple("bad" for _ in run.missing),
    )


def _last_line(text: str) -> str:
    """The last non-empty line of an error: the exception itself, when the error is a traceback."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
