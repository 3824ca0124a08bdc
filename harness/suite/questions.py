"""The questions this project exists to answer, and which measurements answer them.

A timing question compares arm `b` against arm `a` (a variant string, see harness.model.variants, and
a mode); a graph question compares node counts of the same two variants; the controls calibrate
the timing questions. Suites (harness/suite/suites.py) choose questions, and the variants they time
and inspect follow from those questions (`variants_of`). Nothing here measures anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from harness.model.variants import BASELINE
from harness.timing.controls import REFERENCE_LOOP


@dataclass(frozen=True)
class Question:
    key: str
    text: str
    a_variant: str
    b_variant: str
    a_mode: str | None = None  # None: the same mode as the session's
    b_mode: str | None = None


TIMING_QUESTIONS = (
    Question("dropout_p0_cost", "Does a Dropout(p=0) layer cost time compared with removing it?",
             "dropout=absent", "dropout=0"),
    Question("dropout_active_cost", "What does an active Dropout(p=0.5) cost compared with p=0?",
             "dropout=0", "dropout=0.5"),
    Question("bn_order_cost", "Does BatchNorm before vs after dropout change step time?",
             "bn=before", "bn=after"),
    Question("l2_zero_cost", "Does l2=0.0 cost time compared with no regularizer, with L2 written as a loss "
                             "penalty (Keras kernel_regularizer; torch: l2*sum(w^2) added to the loss)?",
             "l2=absent", "l2=0"),
    Question("l2_positive_cost", "What does an l2=1e-4 penalty cost compared with no regularizer, written as a "
                                 "loss penalty?",
             "l2=absent", "l2=0.0001"),
    Question("l2_zero_cost_weight_decay", "Does l2=0.0 cost time when torch writes L2 as the optimizer's "
                                          "weight_decay (coupled, 2*l2), as most torch users do?",
             "l2=absent", "l2=0,l2_style=weight_decay"),
    Question("l2_positive_cost_weight_decay", "What does l2=1e-4 cost as torch optimizer weight_decay (2e-4)?",
             "l2=absent", "l2=0.0001,l2_style=weight_decay"),
    Question("adam_matched_cost", "What does Adam with torch's epsilon placement (what parity trains with) cost "
                                  "against the framework's stock Adam?",
             "optimizer=adam", "optimizer=adam,optimizer_impl=matched"),
    Question("compiled_vs_eager", "How does a compiled step compare with an eager one?",
             BASELINE, BASELINE, a_mode="eager", b_mode="compiled"),
    Question("harness_overhead", "How much time does the harness add to a hand-written training step (mlp)?",
             REFERENCE_LOOP, BASELINE, a_mode="eager", b_mode="eager"),
)
QUESTION_BY_KEY = {q.key: q for q in TIMING_QUESTIONS}

# A question across backends, not within a session: a Keras backend's baseline step against its
# engine's own (harness.report.engines), unpaired.
ENGINE_QUESTION = Question("keras_over_engine", "What does Keras add over the engine it runs on?", BASELINE, BASELINE)

GRAPH_QUESTIONS = (
    Question("dropout_p0_nodes", "Does a Dropout(p=0) layer add graph nodes?", "dropout=absent", "dropout=0"),
    Question("l2_zero_nodes", "Does l2=0.0 add graph nodes compared with no regularizer?", "l2=absent", "l2=0"),
)


def variants_of(questions: Iterable[Question], baseline: bool = True) -> tuple[str, ...]:
    """The variants these questions compare, in order of first mention (baseline first if asked);
    the hand-written loop is an arm of its own, not a variant."""
    found = [BASELINE] if baseline else []
    for q in questions:
        for text in (q.a_variant, q.b_variant):
            if text != REFERENCE_LOOP and text not in found:
                found.append(text)
    return tuple(found)
