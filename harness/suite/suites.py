"""Suites: which cases `python -m harness run` (and the benchmark suite) measures at each size.

quick     every backend, the mlp, eager, the Dropout(p=0) and BN-order questions, short budgets
default   every timing question, eager and compiled; per-call cost of Dropout(p=0) and of an identity
          layer; every variant in parity
reference default plus a calibration of the method (20 A/A and injected comparisons per backend, and
          a layer of known cost) and the default study (harness/study/plan.py): what
          reports/cpu-default/ is made with
full      reference plus every other mode (XLA), CUDA where present, larger budgets

Every timing comparison is replicated across worker processes until its CIs reach `precision`
or its `budget_s` is spent (harness/timing/replication.py).

A suite names timing questions (harness/suite/questions.py); the variants it times follow from them,
and parity sweeps the variant axes (harness/model/variants.py). Modes a backend lacks are left out for
that backend.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from harness.model.variants import sweep
from harness.suite.questions import GRAPH_QUESTIONS, QUESTION_BY_KEY, TIMING_QUESTIONS, Question, variants_of


@dataclass(frozen=True)
class Suite:
    name: str
    questions: tuple[Question, ...]
    modes: tuple[str, ...]
    parity_variants: tuple[str, ...]
    inspect_variants: tuple[str, ...]
    devices: tuple[str, ...] = ("cpu",)
    budget_s: float = 60.0  # per timing case (one backend, model, device: all its variants and modes)
    process_s: float = 6.0  # seconds of rounds per worker process
    instances: int = 2  # fresh models per arm per process (a compiled arm compiles once per instance)
    round_s: float = 0.01  # seconds per arm per round
    percall_layers: tuple[str, ...] = ()  # layers whose per-call cost is measured (mlp, each mode)
    percall_budget_s: float = 120.0
    calibration: int = 0  # A/A + injected comparisons per backend (mlp, eager); 0: none
    calibration_budget_s: float | None = None  # per comparison; None: the framework's default, which it checks
    models: tuple[str, ...] = ("mlp", "cnn")  # the presets `run` covers unless --models says otherwise
    study: str = ""  # a study suite (harness/study/plan.py) run after the timing cases; "": none

    @property
    def timing_variants(self) -> tuple[str, ...]:
        return variants_of(self.questions)


INJECTED_SLOWDOWN = 0.05  # the known slowdown every timing case of a run must detect

_QUICK_QUESTIONS = tuple(QUESTION_BY_KEY[key] for key in ("dropout_p0_cost", "bn_order_cost"))
_ALL_VARIANTS = variants_of(TIMING_QUESTIONS)
# Every axis value alone, plus torch's weight_decay L2 (meaningful only together with an l2 value).
_ALL_PARITY = (*sweep(), "l2=0,l2_style=weight_decay", "l2=0.0001,l2_style=weight_decay")

# Per-call costs: Dropout(p=0), the claim; and an identity layer (Activation("linear")), what calling any
# layer costs in each framework (Keras's Layer.__call__, torch's Module.__call__, a JAX function call).
_DEFAULT = Suite("default", TIMING_QUESTIONS, ("eager", "compiled"), _ALL_PARITY, _ALL_VARIANTS, budget_s=150.0,
                 process_s=12.0, instances=1, percall_layers=("dropout=0", "activation=linear"),
                 percall_budget_s=75.0)
SUITES = {
    "quick": Suite("quick", _QUICK_QUESTIONS, ("eager",), ("baseline", "dropout=0", "bn=before"),
                   variants_of(GRAPH_QUESTIONS, baseline=False), budget_s=40.0, process_s=2.0, instances=1,
                   models=("mlp",)),
    "default": _DEFAULT,
    "reference": replace(_DEFAULT, name="reference", calibration=20, study="default"),
    "full": replace(_DEFAULT, name="full", modes=("eager", "compiled", "xla"), devices=("cpu", "cuda"), budget_s=600.0,
                    process_s=20.0, instances=2, round_s=0.1, percall_budget_s=300.0, calibration=20),
}
