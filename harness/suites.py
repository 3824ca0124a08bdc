"""Suites: which cases `python -m harness run` (and the benchmark suite) measures at each size.

quick   both backends, both models, eager, the Dropout(p=0) and BN-order questions, few rounds
default every timing question, eager and compiled, 60 rounds of 0.1 s, every variant in parity
full    default plus every other mode (XLA), CUDA where present, 120 rounds of 0.2 s

A suite names timing questions (harness/questions.py); the variants it times follow from them,
and parity sweeps the variant axes (harness/variants.py). Modes a backend lacks are left out for
that backend.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.questions import GRAPH_QUESTIONS, QUESTION_BY_KEY, TIMING_QUESTIONS, Question, variants_of
from harness.variants import sweep


@dataclass(frozen=True)
class Suite:
    name: str
    questions: tuple[Question, ...]
    modes: tuple[str, ...]
    rounds: int
    parity_variants: tuple[str, ...]
    inspect_variants: tuple[str, ...]
    devices: tuple[str, ...] = ("cpu",)
    round_s: float = 0.05  # seconds per arm per round: longer rounds average out more jitter

    @property
    def timing_variants(self) -> tuple[str, ...]:
        return variants_of(self.questions)


_QUICK_QUESTIONS = tuple(QUESTION_BY_KEY[key] for key in ("dropout_p0_cost", "bn_order_cost"))
_ALL_VARIANTS = variants_of(TIMING_QUESTIONS)
# Every axis value alone, plus torch's weight_decay L2 (meaningful only together with an l2 value).
_ALL_PARITY = (*sweep(), "l2=0,l2_style=weight_decay", "l2=0.0001,l2_style=weight_decay")

SUITES = {
    "quick": Suite("quick", _QUICK_QUESTIONS, ("eager",), 10, ("baseline", "dropout=0", "bn=before"),
                   variants_of(GRAPH_QUESTIONS, baseline=False)),
    "default": Suite("default", TIMING_QUESTIONS, ("eager", "compiled"), 60, _ALL_PARITY, _ALL_VARIANTS, round_s=0.1),
    "full": Suite("full", TIMING_QUESTIONS, ("eager", "compiled", "xla"), 120, _ALL_PARITY, _ALL_VARIANTS,
                  ("cpu", "cuda"), round_s=0.2),
}
