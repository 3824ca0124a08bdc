"""The timing questions (harness/suite/questions.py) answered from one timing case's records.

After a timing case of `run`, each question whose two arms the session timed is answered with
harness.timing.controls.compare, the function `time` itself uses, so a run's answers are exactly
what `time` would say.
"""

from __future__ import annotations

from typing import Any

from harness.results.records import TimingRecord, from_dict
from harness.running.case import Case
from harness.suite.questions import TIMING_QUESTIONS
from harness.timing.controls import compare, floor_for, noise_floors

TIMING_CASE_PREFIX = "time/"


def question_comparisons(case: Case, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The timing questions answered from one timing session's records (as dicts)."""
    if not case.case_id.startswith(TIMING_CASE_PREFIX):
        return []
    timings = [from_dict(r) for r in records if r.get("kind") == TimingRecord.kind]
    if not timings:
        return []
    floors = noise_floors(timings)
    arms = {(t.variant, t.mode): t for t in timings if t.role in ("arm", "reference")}
    modes = sorted({t.mode for t in timings})
    found = []
    for question in TIMING_QUESTIONS:
        # A question with fixed modes (compiled vs eager) is asked once; others once per mode.
        mode_pairs = [(question.a_mode, question.b_mode)] if question.a_mode else [(m, m) for m in modes]
        for a_mode, b_mode in mode_pairs:
            a = arms.get((question.a_variant, a_mode))
            b = arms.get((question.b_variant, b_mode))
            if a is not None and b is not None:
                found.append(compare(a, b, floor_for(floors, a, b), question.key).as_dict())
    return found
