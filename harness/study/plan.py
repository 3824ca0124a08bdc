"""A study suite turned into cases (`python -m harness study`, and the `reference` suite of `run`).

A study suite is data sets x models x variants x backends x seeds. Each case is one (data set,
model, backend, seed) with every variant, in its own process (harness/study/worker.py). Seeds are
the replicates the statistics rest on, so a case is one replicate; a case per variant as well
would pay the framework's start (torch with the optimizer's dynamo import about 6 s, TensorFlow
about 8 s) 8 times more often: the quick study took 332 s that way, against its 3-minute bar. A
run folder holds study cases exactly as it holds timing cases: durable per finished case (Ctrl-C
loses at most the seed in flight), resumable with --resume, reported by `harness report`
(harness/report/study.py). The `reference` suite of `harness run` includes the default study.

The variants answer the claims of the ledger (harness/study/ledger.py): none, L2, dropout, early
stopping, augmentation and BN alone for the train/validation gap claims; BN with dropout before it
at p = 0 and p = 0.5, and BN before dropout, for the BatchNorm claims; L1 with Adam and SGD (and
SGD alone) for L1's sparsity. harness/study/suites.py says which targets train which variants.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

from harness.running.case import THREADS_TOKEN, Case
from harness.study.suites import CASE_TIMEOUT_S, STUDY_MODES, StudySuite, StudyTarget
from harness.study.train import StudyPlan, StudyVariant


def plan_study_cases(suite: StudySuite, backends, unavailable: dict[str, str] | None = None,
                     data: str | None = None) -> list[Case]:
    """The cases of a study: one per (data set, model, backend, seed), every variant inside.
    `data` replaces the suite's data sets (each with the suite's models for it, or mlp)."""
    unavailable = unavailable or {}
    targets = suite.targets
    if data is not None:  # each of the suite's targets on that kind of data, or an mlp with every variant
        kind = data.partition(":")[0]
        targets = tuple(replace(t, data=data) for t in suite.targets if t.data == kind) or (StudyTarget(data, "mlp"),)
    cases = []
    for target in targets:
        variants = [StudyVariant.parse(text).label for text in target.variants]
        for backend in backends:
            for seed in range(suite.seeds):
                plan = StudyPlan(epochs=suite.epochs, seeds=(seed,), mode=STUDY_MODES.get(backend, "eager"))
                job = {"backend": backend, "threads": THREADS_TOKEN, "data": target.data, "model": target.model,
                       "variants": variants, "plan": asdict(plan)}
                argv = (sys.executable, "-m", "harness.study.worker", json.dumps(job), "{json}")
                cases.append(Case(f"study/{target.data}/{target.model}/{backend}/seed{seed}", argv, CASE_TIMEOUT_S,
                                  f"study {target.data} {target.model} {backend} seed {seed}",
                                  suite.expected_s_per_run * len(variants), unavailable.get(backend, ""),
                                  exclusive=False))
    return cases


def check_data(text: str) -> None:
    """Refuse a --data value before any case runs (its name; for cifar10:PATH, the folder's files)."""
    from harness.study.datasets import data_kind, read_cifar10

    kind, path = data_kind(text)
    if kind == "cifar10":
        read_cifar10(Path(path))
