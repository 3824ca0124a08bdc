"""Suites: which cases `python -m harness run` (and the benchmark suite) measures at each size.

quick   both backends, both models, eager, the dropout/BN variants, few rounds: <= 3 min on 2 cores
default every timing variant, eager and compiled, 60 rounds of 0.1 s, all parity: <= 15 min on 2 cores
full    default plus XLA, CUDA where present, 120 rounds of 0.2 s
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.questions import TIMING_VARIANTS

PARITY_VARIANTS = (
    "baseline", "dropout=absent", "dropout=0", "dropout=0.5", "bn=before", "bn=after", "bn=none",
    "l1=absent", "l1=0.0001", "l2=absent", "l2=0", "l2=0.0001",
)


@dataclass(frozen=True)
class Suite:
    name: str
    timing_variants: tuple[str, ...]
    modes: tuple[str, ...]
    rounds: int
    parity_variants: tuple[str, ...]
    inspect_variants: tuple[str, ...]
    devices: tuple[str, ...] = ("cpu",)
    round_s: float = 0.05  # seconds per arm per round: longer rounds average out more jitter


SUITES = {
    "quick": Suite("quick", ("baseline", "dropout=absent", "dropout=0", "bn=before", "bn=after"), ("eager",), 10,
                   ("baseline", "dropout=0", "bn=before"), ("dropout=absent", "dropout=0", "l2=absent", "l2=0")),
    "default": Suite("default", TIMING_VARIANTS, ("eager", "compiled"), 60, PARITY_VARIANTS, TIMING_VARIANTS,
                     round_s=0.1),
    "full": Suite("full", TIMING_VARIANTS, ("eager", "compiled", "xla"), 120, PARITY_VARIANTS, TIMING_VARIANTS,
                  ("cpu", "cuda"), round_s=0.2),
}
