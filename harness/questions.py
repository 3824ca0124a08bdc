"""The questions this project exists to answer, and which measurements answer them.

A timing question compares arm `b` against arm `a` (a variant string, see harness.variants, and
a mode); a graph question compares node counts of the same two variants; the controls calibrate
the timing questions. Reports and `run` read this table; nothing here measures anything.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    Question("bn_order_cost", "Does BatchNorm before vs after dropout change step time?",
             "bn=before", "bn=after"),
    Question("l2_zero_cost", "Does l2=0.0 cost time compared with no regularizer?",
             "l2=absent", "l2=0"),
    Question("l2_positive_cost", "What does an l2=1e-4 penalty cost compared with no regularizer?",
             "l2=absent", "l2=0.0001"),
    Question("compiled_vs_eager", "How does a compiled step compare with an eager one?",
             "baseline", "baseline", a_mode="eager", b_mode="compiled"),
    Question("harness_overhead", "How much time does the harness add to a hand-written training step (mlp)?",
             "hand-written loop", "baseline", a_mode="eager", b_mode="eager"),
)

GRAPH_QUESTIONS = (
    Question("dropout_p0_nodes", "Does a Dropout(p=0) layer add graph nodes?", "dropout=absent", "dropout=0"),
    Question("l2_zero_nodes", "Does l2=0.0 add graph nodes compared with no regularizer?", "l2=absent", "l2=0"),
)

# The variants every timing session measures, in this order; the first also gets an A/A copy
# (the noise floor) and a copy with an injected 5% spin delay (the sensitivity check).
TIMING_VARIANTS = (
    "baseline", "dropout=absent", "dropout=0", "dropout=0.5", "bn=before", "bn=after",
    "l2=absent", "l2=0", "l2=0.0001",
)
INJECTED_SLOWDOWN = 0.05
