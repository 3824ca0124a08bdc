"""The run report, section by section: summary, warnings (the machine's stability among them), the
answers table and its notes, the backends against the reference and the engine question
(harness.report.engines), the study, per-call costs, then folds a reader opens on demand:
verdicts in words, calibration, plots beyond the first, one raw table per record kind, the
environment; the cases that are missing stay open. No section is written for data a run lacks.

Constraints: this module arranges blocks from a RunFolder (harness.report.reading) and the
verdicts (harness.report.verdicts); it reads no file and renders nothing itself. Its only output
is the plot PNGs, drawn by harness.report.plots and saved under the report folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import harness.report.plots as plots
from backends import REFERENCE
from harness.report.answers import answer_blocks, comparison_cell, dropout_notes
from harness.report.calibration import busy_wait_records, calibration_blocks, half_width_curves
from harness.report.engines import engine_blocks, engine_comparisons, framework_table
from harness.report.ordering import backend_order
from harness.report.per_call import measured_records, per_call_blocks
from harness.report.reading import RunFolder
from harness.report.render import (
    Block,
    Fold,
    Heading,
    Table,
    Text,
    VerdictGroup,
    facts_table,
    ms,
    save_plot,
    without_constant_columns,
)
from harness.report.size_sweep import size_sweep_blocks
from harness.report.stability import noise_line, stability_warning
from harness.report.study import study_blocks
from harness.report.verdicts import (
    NOT_MEASURED,
    PARITY_QUESTION,
    FrameworkRatio,
    framework_ratios,
    how_to_read,
    verdict_groups,
    verdict_tone,
    where,
)
from harness.results.environment import ENVIRONMENT_FILE
from harness.results.records import (
    RESULTS_FILE,
    ComparisonRecord,
    InspectRecord,
    ParityRecord,
    PerCallRecord,
    StudyRunRecord,
    TimingRecord,
)
from harness.suite.questions import QUESTION_BY_KEY, TIMING_QUESTIONS
from harness.timing.controls import CONTROLS
from harness.timing.size_sweep import size_of

_COMPARISON_ORDER = [q.key for q in TIMING_QUESTIONS] + [*CONTROLS, ""]


def run_blocks(run: RunFolder, out: Path) -> list[Block]:
    """The whole run report; plots are saved under `out`.

    It opens with the answers (one table, harness.report.answers) and their notes, the backends
    against the reference and, where a Keras backend and its engine both ran, what Keras adds over
    the engine (harness.report.engines); the study's ledger follows, then the per-call answer and
    the plots. Verdicts in words, controls, calibration and the raw tables are folds, closed until
    opened. A section without data is left out (the summary line names what this run did not
    measure)."""
    ratios = framework_ratios(run)
    timings, comparisons = run.of(TimingRecord), run.of(ComparisonRecord)
    inspections, parity = run.of(InspectRecord), run.of(ParityRecord)
    groups = verdict_groups(run, ratios)
    measured = [g for g in groups if not _not_measured(g)]
    blocks: list[Block] = [Heading(f"Cross-framework run report: {run.folder.name}", 1), Text(_summary(run))]
    warnings = [*run.warnings, *filter(None, [stability_warning(run)])]
    answers = answer_blocks(run, warnings)
    if warnings and not answers:
        blocks += [Heading("Warnings"), *(Text(w, "bad") for w in warnings)]
    blocks += answers
    blocks += _short_answers(run, groups, ratios)
    blocks += engine_blocks(engine_comparisons(run), comparison_cell)
    blocks += study_blocks(run, out)  # the claims ledger, when a study ran
    per_call = [r for r in measured_records(run) if size_of(r.model) is None]
    if per_call:
        notes = [Text(note, "finding") for note in dropout_notes(run)]
        blocks += [Heading("Per-call cost"), *per_call_blocks(per_call), *notes]
    sweep = size_sweep_blocks(measured_records(run), out)  # `harness sweep`'s sized models
    if sweep:
        blocks += [Heading("When does a free layer stop mattering? (size sweep)"), *sweep]
    if measured:
        blocks.append(Fold("Verdicts in words", (Text(how_to_read(run)), *measured)))
    if any(c.expected_ratio is not None for c in comparisons) or busy_wait_records(run):
        blocks.append(Fold("Calibration", tuple(calibration_blocks(run))))
    blocks += _run_plots(run, ratios, out)
    tables = [("Timings", timings, _timing_table), ("Comparisons", comparisons, _comparison_table),
              ("Graph inspection", inspections, _inspect_table), ("Parity", parity, _parity_table)]
    blocks += [Fold(f"Raw table: {name}", tuple(without_constant_columns(make(records))))
               for name, records, make in tables if records]
    if run.has_case_records and run.missing or not run.has_case_records:
        blocks += [Heading("Missing cases"), _missing_block(run)]
    blocks.append(Fold("Environment", (facts_table(run.environment),)) if run.environment is not None
                  else Fold("Environment", (Text(f"No usable {ENVIRONMENT_FILE} in {run.folder}: the machine is not "
                                                 "recorded.", "missing"),), open=True))
    return blocks


def _not_measured(group: VerdictGroup) -> bool:
    return all(line.sentence == NOT_MEASURED for line in group.lines)


def _short_answers(run: RunFolder, groups: Sequence[VerdictGroup], ratios: Sequence[FrameworkRatio]) -> list[Block]:
    """Under the answers table: parity and the noise floors in a line each, the backends' step
    times against the reference's in a small table, and the questions this run did not measure,
    named in one line."""
    lines = [Text(f"Parity: {line.sentence}", line.tone) for g in groups if g.question == PARITY_QUESTION
             for line in g.lines if line.sentence != NOT_MEASURED]
    noise = noise_line(run)
    if noise:
        lines.append(Text(noise))
    lines += framework_table(REFERENCE, ratios)
    missing = [g.question for g in groups if _not_measured(g)]
    if missing and len(missing) == len(groups):
        lines.append(Text(f"Not measured in this run: none of the {len(missing)} timing, graph-node and parity "
                          "questions (python -m harness run --suite default asks them).", "missing"))
    elif missing:
        lines.append(Text(f"Not measured in this run ({len(missing)}): " + " · ".join(missing), "missing"))
    return lines


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
    backends = backend_order({r.backend for r in measured} | {b for p in parity for b in p.backends})
    models = sorted({r.model for r in (*measured, *parity)})
    settings = sorted({f"{r.device}/{r.mode}" for r in (*timings, *comparisons)})
    cases = (f"{run.cases_ok} cases ok, {len(run.missing)} missing" if run.has_case_records
             else f"{run.cases_ok} cases (no case records)")
    counts = ", ".join(f"{n} {name}" for n, name in (
        (len(timings), "timing arms"), (len(comparisons), "comparisons"), (len(parity), "parity checks"),
        (len(run.of(InspectRecord)), "graph inspections"), (len(run.of(StudyRunRecord)), "study training runs"),
        (len(run.of(PerCallRecord)), "per-call fits")) if n)
    where_run = "; ".join(part for part in (
        f"backends {', '.join(backends)}" if backends else "", f"models {', '.join(models)}" if models else "",
        f"device/mode {', '.join(settings)}" if settings else "") if part)
    said = f"{where_run}: {counts or 'no records'}" if where_run else counts or "no records"
    return f"Run of {env.get('date', 'an unrecorded date')} on {machine}. {said[0].upper()}{said[1:]}. {cases}."


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
    shown: list[Block] = [save_plot(name, caption, make, out) for name, caption, data, make in wanted[:1] if data]
    folded = [Fold(f"Plot: {caption.split(' (')[0]}", (save_plot(name, caption, make, out),), level=3)
              for name, caption, data, make in wanted[1:] if data]
    if not shown and not folded:
        return []
    return [Heading("Plots"), *shown, *folded]


def _question_panels(run: RunFolder) -> list[plots.QuestionPanel]:
    """One panel per question (in the report's order); a row per comparison, labelled by where it
    ran. The controls get no panel: each row's grey band is its session's A/A noise floor already,
    and a calibration's 40 sessions made two 40-row panels (the calibration section has them).
    Comparisons that answer no named question are left to the comparisons table."""
    by_question = plots.group_by(_sorted_comparisons(run.of(ComparisonRecord)), lambda c: c.question)
    return [plots.QuestionPanel(QUESTION_BY_KEY[key].text, tuple((where(c, run), c) for c in rows))
            for key, rows in by_question.items() if key in QUESTION_BY_KEY]


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
