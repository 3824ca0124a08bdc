"""The per-call section: what one more call of a layer costs in a training step.

PerCallRecords come from `harness percall` (a dose-response fit: step time against the number of
copies of the layer). A short answer to the claim that Dropout(p=0) costs time comes first (for
the layers whose name starts with "dropout"), then one sentence per record, grouped by model and
layer, then a table (those two folded). Records of a busy-wait layer (a known cost) are the method's check and go
to the calibration section (harness.report.calibration), not here.

Constraints: reads records and arranges blocks; each record's sentence is its own
(PerCallRecord.sentence: the command line prints the same words). Nothing here measures or renders.
"""

from __future__ import annotations

from collections.abc import Sequence

import harness.report.plots as plots
from harness.report.reading import RunFolder
from harness.report.render import Block, Fold, Table, VerdictGroup, VerdictLine, ms, us
from harness.results.records import PerCallRecord

DROPOUT_CLAIM = "Claim: a Dropout layer with p=0 costs time in a training step."


def measured_records(run: RunFolder) -> list[PerCallRecord]:
    """The per-call records of real layers (not a busy-wait layer of known cost)."""
    return [r for r in run.of(PerCallRecord) if r.expected_per_call_s is None]


def per_call_blocks(records: Sequence[PerCallRecord]) -> list[Block]:
    blocks: list[Block] = []
    dropout = [r for r in records if r.layer.startswith("dropout")]
    if dropout:
        blocks.append(_dropout_answer(dropout))
    details: list[Block] = [
        VerdictGroup(f"{model}: what does one more {layer} call cost in a training step?",
                     tuple(VerdictLine("", r.sentence, _tone(r)) for r in rows))
        for (model, layer), rows in plots.group_by(records, lambda r: (r.model, r.layer)).items()]
    blocks.append(Fold("Per-call fits: each in words, and the table", (*details, _per_call_table(records)), level=3))
    return blocks


def _measurable(record: PerCallRecord) -> bool:
    return not record.ci_low_s <= 0.0 <= record.ci_high_s


def _tone(record: PerCallRecord) -> str:
    return "finding" if _measurable(record) else ""


def _bound_s(record: PerCallRecord) -> float:
    """The largest per-call cost, in either direction, that the CI still allows."""
    return max(abs(record.ci_low_s), abs(record.ci_high_s))


def _setting(record: PerCallRecord) -> str:
    return f"{record.backend} {record.model} {record.mode} ({record.layer})"


def _dropout_answer(records: Sequence[PerCallRecord]) -> VerdictGroup:
    measurable = [r for r in records if _measurable(r)]
    if not measurable:
        bound = max(records, key=lambda r: _bound_s(r) / r.step_s)
        most = _bound_s(bound)
        answer = (f"No measurable cost per call in any of the {len(records)} settings measured; the largest cost the "
                  f"data still allow is {us(most)} µs per call, {most / bound.step_s:.3%} of a "
                  f"{ms(bound.step_s)} ms step ({_setting(bound)}).")
        return VerdictGroup(DROPOUT_CLAIM, (VerdictLine("Answer", answer, "good"),))
    listed = "; ".join(f"{_setting(r)}: {us(r.per_call_s)} µs per call (95% CI {us(r.ci_low_s)}–{us(r.ci_high_s)}), "
                       f"{r.fraction_of_step:.3%} of a {ms(r.step_s)} ms step" for r in measurable)
    others = len(records) - len(measurable)
    rest = f"; no measurable cost in the other {others}" if others else ""
    answer = f"A measurable cost in {len(measurable)} of {len(records)} settings: {listed}{rest}."
    return VerdictGroup(DROPOUT_CLAIM, (VerdictLine("Answer", answer, "finding"),))


def _per_call_table(records: Sequence[PerCallRecord]) -> Table:
    return Table(
        ("backend", "model", "device", "mode", "layer", "µs per call", "95% CI µs", "% of step", "step ms",
         "copies", "processes"),
        tuple((r.backend, r.model, r.device, r.mode, r.layer, us(r.per_call_s), f"{us(r.ci_low_s)}–{us(r.ci_high_s)}",
               f"{r.fraction_of_step:.3%}", ms(r.step_s), ", ".join(map(str, r.copies)), str(r.processes))
              for r in records),
        tuple(_tone(r) for r in records),
    )
