"""The answers a run report opens with: every timing question's verdict and CI in one table.

One row per question that was measured (the Dropout(p=0), l2=0 and BatchNorm-order questions
first, with the Dropout(p=0) per-call cost beside its step-level answer), one column per session
setting (backend / model / mode, and device or threads where they vary); each cell is the change in
time per step with its 95% CI and the verdict's word, coloured by the verdict. Under the table:
where the step-level and per-call answers to one question disagree, a sentence that says by how
much; the parity answer, the noise floors in one line, the framework ratio, and the questions this
run did not measure, in one line rather than a section each.

Constraints: numbers and verdicts are the records' own (ComparisonRecord.verdict, PerCallRecord);
this module arranges blocks and decides nothing new. It must fit one screen at 1280 px for the
reference run: short row labels, no sentence per cell.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import harness.report.plots as plots
from harness.model.spec import PRESETS
from harness.model.variants import variant_spec
from harness.report.ordering import backend_order
from harness.report.per_call import measured_records
from harness.report.reading import RunFolder
from harness.report.render import Block, Heading, Table, Text, ms, us
from harness.results.records import ComparisonRecord, PerCallRecord, TimingRecord
from harness.stats import FASTER, NO_DIFFERENCE, SLOWER
from harness.suite.questions import TIMING_QUESTIONS
from harness.timing.size_sweep import size_of

PER_CALL_ROW = "dropout per call"
MAX_COLUMNS = 10  # session columns one table holds at 1280 px; more: a table per model
# Short row labels (the full question is in the verdicts section); the first rows are the claims
# a reader comes for. A question missing here keeps its full text.
SHORT_LABELS = {
    "dropout_p0_cost": "Dropout(p=0) vs no layer, per step",
    PER_CALL_ROW: "Dropout(p=0), one call",
    "l2_zero_cost": "l2=0 as loss penalty vs none",
    "l2_zero_cost_weight_decay": "l2=0 as torch weight_decay vs none",
    "bn_order_cost": "BN after vs before dropout",
    "dropout_active_cost": "Dropout(0.5) vs Dropout(0)",
    "l2_positive_cost": "l2=1e-4 as loss penalty vs none",
    "l2_positive_cost_weight_decay": "l2=1e-4 as torch weight_decay vs none",
    "adam_matched_cost": "Adam, torch's ε vs stock",
    "compiled_vs_eager": "compiled vs eager step",
    "harness_overhead": "harness vs hand-written loop",
}
_MARKS = {SLOWER: "▲", FASTER: "▼"}
LEGEND = ("Each cell: the change in time per step when b replaces a, in %, and its 95% CI over worker processes; "
          "▲ slower / ▼ faster: the CI excludes 0; \"≈ 0\": no detectable difference, the CI bounds the effect; "
          "a per-call cell: one more call's cost in µs, its CI, and as a share of the step. The verdicts in words, "
          "with each session's noise floor, are under \"Verdicts in words\".")
DAGGER_LEGEND = " †: the session's two Dropout(p=0) measures differ by more than their CIs allow (see the note below)."
Z95 = 1.959963984540054  # the two-sided 95% normal quantile: a CI's half-width in standard errors
_TONES = {SLOWER: "finding", FASTER: "finding", NO_DIFFERENCE: "good"}


@dataclass(frozen=True)
class Setting:
    """One column of the answers table: where a session ran."""

    backend: str
    model: str
    device: str
    mode: str
    threads: int


def _setting(record: ComparisonRecord | PerCallRecord) -> Setting:
    """A comparison across modes ("eager->compiled") goes in the column of the mode it measures (b's)."""
    return Setting(record.backend, record.model, record.device, record.mode.split("->")[-1], record.threads)


def answer_blocks(run: RunFolder, warnings: Sequence[str] = ()) -> list[Block]:
    """The "Answers" section: the table, the run's warnings right under it, then the notes (no
    block without a timing answer: then the warnings are the caller's)."""
    comparisons, per_call = _answered(run)
    if not comparisons and not per_call:
        return []
    said = [Heading("Warnings", 3), *(Text(w, "bad") for w in warnings)] if warnings else []
    notes = disagreements(comparisons, per_call, absent_steps(run))
    legend = Text(LEGEND + (DAGGER_LEGEND if notes else ""))
    return [Heading("Answers"), *_answers_tables(comparisons, per_call, set(notes)), *said, legend,
            *(Text(note, "finding") for note in notes.values())]


def _answered(run: RunFolder) -> tuple[list[ComparisonRecord], list[PerCallRecord]]:
    """The comparisons that answer a timing question, and the Dropout per-call fits (of the
    presets: a size sweep's sized models have their own section, harness.report.size_sweep)."""
    known = {q.key for q in TIMING_QUESTIONS}
    return ([c for c in run.of(ComparisonRecord) if c.question in known],
            [r for r in measured_records(run) if r.layer.startswith("dropout") and size_of(r.model) is None])


def absent_steps(run: RunFolder) -> dict[Setting, float]:
    """Per setting, the median step of the model without its dropout layers (the dropout=absent
    arm): the step the layers' per-call cost is a share of, in the step-level comparison."""
    return {Setting(t.backend, t.model, t.device, t.mode, t.threads): t.median_s for t in run.of(TimingRecord)
            if t.role == "arm" and t.variant == "dropout=absent"}


def dropout_notes(run: RunFolder) -> list[str]:
    """The notes on sessions whose two Dropout(p=0) measures disagree (disagreements), for the
    per-call section to repeat beside its own figure."""
    return list(disagreements(*_answered(run), absent_steps(run)).values())


def _columns(records: Sequence[ComparisonRecord | PerCallRecord]) -> list[Setting]:
    """One column per session setting: backends in backend_order (a Keras backend beside its engine)."""
    found = dict.fromkeys(_setting(r) for r in records)
    order = backend_order(s.backend for s in found)
    return sorted(found, key=lambda s: (order.index(s.backend), s.model, s.device, s.threads, s.mode != "eager",
                                        s.mode))


def _column_label(setting: Setting, columns: Sequence[Setting]) -> str:
    parts = [setting.backend, setting.model, setting.mode]
    if len({c.device for c in columns}) > 1:
        parts.insert(2, setting.device)
    if len({c.threads for c in columns}) > 1:
        parts.append(f"{setting.threads} thr")
    return " ".join(parts)


def _row_keys(comparisons: Sequence[ComparisonRecord], per_call: Sequence[PerCallRecord]) -> list[str]:
    present = {c.question for c in comparisons} | ({PER_CALL_ROW} if per_call else set())
    ordered = [key for key in SHORT_LABELS if key in present]
    return ordered + [q.key for q in TIMING_QUESTIONS if q.key in present and q.key not in ordered]


def _answers_tables(comparisons: Sequence[ComparisonRecord], per_call: Sequence[PerCallRecord],
                    marked: set[Setting]) -> list[Block]:
    """One table, or where its columns would not fit the page (more than MAX_COLUMNS: five
    backends, two models, two modes), one table per model, its name above it."""
    columns = _columns([*comparisons, *per_call])
    if len(columns) <= MAX_COLUMNS:
        return [_answers_table(comparisons, per_call, marked, columns)]
    blocks: list[Block] = []
    for model in dict.fromkeys(s.model for s in columns):
        mine = [s for s in columns if s.model == model]
        blocks += [Text(f"{model}:"), _answers_table([c for c in comparisons if c.model == model],
                                                     [r for r in per_call if r.model == model], marked, mine)]
    return blocks


def _answers_table(comparisons: Sequence[ComparisonRecord], per_call: Sequence[PerCallRecord],
                   marked: set[Setting], columns: Sequence[Setting]) -> Table:
    """The table; the Dropout(p=0) cells of a session in `marked` (its two measures disagree) end in †."""
    cells = plots.group_by(comparisons, lambda c: (c.question, _setting(c)))
    calls = plots.group_by(per_call, _setting)
    text = {q.key: q.text for q in TIMING_QUESTIONS}
    rows, tones = [], []
    for key in _row_keys(comparisons, per_call):
        row, row_tones = [SHORT_LABELS.get(key, text.get(key, key))], [""]
        for setting in columns:
            found = calls.get(setting, []) if key == PER_CALL_ROW else cells.get((key, setting), [])
            said = [_per_call_cell(r) if key == PER_CALL_ROW else comparison_cell(r) for r in found]
            dagger = " †" if setting in marked and key in ("dropout_p0_cost", PER_CALL_ROW) and said else ""
            row.append(("; ".join(s for s, _ in said) or "—") + dagger)
            row_tones.append(said[0][1] if len({t for _, t in said}) == 1 else "" if said else "missing")
        rows.append(tuple(row))
        tones.append(tuple(row_tones))
    headers = ("question (b vs a)", *(_column_label(s, columns) for s in columns))
    return Table(headers, tuple(rows), cell_tones=tuple(tones))


def percent(ratio: float) -> str:
    return f"{(ratio - 1) * 100:+.1f}%"


def comparison_cell(c: ComparisonRecord) -> tuple[str, str]:
    """A comparison as a cell's text (change, mark, CI) and its tone."""
    ci = f"[{percent(c.ci_low)}, {percent(c.ci_high)}]"
    if c.verdict == NO_DIFFERENCE:
        return f"≈ 0 {ci}", _TONES[c.verdict]
    if c.verdict in _MARKS:
        return f"{percent(c.ratio)} {_MARKS[c.verdict]} {ci}", _TONES[c.verdict]
    return f"{percent(c.ratio)} {ci}: {c.verdict}", "missing"


def _per_call_cell(r: PerCallRecord) -> tuple[str, str]:
    measurable = not r.ci_low_s <= 0.0 <= r.ci_high_s
    text = f"{us(r.per_call_s)} µs [{us(r.ci_low_s)}, {us(r.ci_high_s)}] {r.fraction_of_step:.2%}"
    return (f"▲ {text}", "finding") if measurable else (f"≈ 0 {text}", "good")


def dropout_layers(model: str) -> int | None:
    """How many Dropout layers the preset `model` has in its dropout=0 variant (None for a model
    that is not a preset: its layers are not known here)."""
    if model not in PRESETS:
        return None
    _, spec = variant_spec(PRESETS[model], "dropout=0")
    return sum(layer.type == "dropout" for layer in spec.layers)


def disagreements(comparisons: Sequence[ComparisonRecord], per_call: Sequence[PerCallRecord],
                  steps: Mapping[Setting, float] | None = None) -> dict[Setting, str]:
    """Per session, where the step-level Dropout(p=0) effect's CI excludes what the per-call cost
    predicts for the model's Dropout layers (n × per-call cost ÷ the step without them, `steps`:
    the dropout=absent arm's median; the per-call record's own step, of the preset with its active
    dropout, only where that arm is missing): a sentence that puts the two figures side by side, in
    µs per layer, with how many standard errors apart they are."""
    calls = {_setting(r): r for r in per_call}
    notes = {}
    for c in comparisons:
        setting = _setting(c)
        r = calls.get(setting)
        if c.question != "dropout_p0_cost" or r is None:
            continue
        n = dropout_layers(c.model)
        step = (steps or {}).get(setting, r.step_s)
        low, high = ((n or 1) * value / step for value in (r.ci_low_s, r.ci_high_s))
        if low <= c.ci_high - 1 and c.ci_low - 1 <= high:
            continue  # the two measures agree
        where = _column_label(setting, [])
        if not n:
            notes[setting] = (f"† {where}: the two measures of Dropout(p=0) disagree. Step level, the Dropout(p=0) "
                              f"layers cost {percent(c.ratio)} (CI {percent(c.ci_low)} to {percent(c.ci_high)}); per "
                              f"call, {us(r.per_call_s)} µs = {r.per_call_s / step:+.2%} of a {ms(step)} ms step.")
            continue
        per_layer = [(value - 1) * step / n for value in (c.ratio, c.ci_low, c.ci_high)]
        se_step = (per_layer[2] - per_layer[1]) / (2 * Z95)
        se_call = (r.ci_high_s - r.ci_low_s) / (2 * Z95)
        z = (per_layer[0] - r.per_call_s) / math.hypot(se_step, se_call) if se_step or se_call else math.inf
        notes[setting] = (
            f"† {where}: the two measures of Dropout(p=0) differ. Step level, the {c.model}'s {n} Dropout(p=0) "
            f"layer{'' if n == 1 else 's'} cost {percent(c.ratio)} (CI {percent(c.ci_low)} to {percent(c.ci_high)}) "
            f"of the {ms(step)} ms step without them: {us(per_layer[0])} µs per layer (CI {us(per_layer[1])} to "
            f"{us(per_layer[2])}). Per call (dose–response): {us(r.per_call_s)} µs (CI {us(r.ci_low_s)} to "
            f"{us(r.ci_high_s)}), i.e. {n * r.per_call_s / step:+.1%} for {n}. They are {z:.1f} standard errors apart; "
            f"the step-level CI is {(per_layer[2] - per_layer[1]) / max(r.ci_high_s - r.ci_low_s, 1e-12):.2g}× as "
            "wide. A dedicated experiment (reports/dropout0-step-vs-percall/) found no mechanism for such a gap: "
            "copies stacked or spread, 1–4 or 32–128 of them, gave per-layer costs whose CIs overlap. Read the "
            "per-call figure as the layer's cost, the step-level one as a wider measurement of it.")
    return notes
