"""Per-training-step timing of several arms of one backend, interleaved, in this process: one
process's share of a replicated comparison (harness/timing/replication.py runs several such processes).

An arm is a variant of the spec in a mode. One session builds `instances` fresh models of every
arm, in a random order (where a model's buffers land, and which was built first, biases a
single instance: up to 3% between two identical instances), runs each once (its setup time:
build plus the first step, which includes torch.compile / tf.function tracing), warms each up,
then measures rounds for `process_s` seconds: in each round every arm runs `steps` steps back to
back on one of its instances, picked at random, and its per-step time is recorded. The arm
order is a new random permutation each round: drift in machine speed and the effect of an arm's
neighbours (caches, allocator) become noise shared by all arms instead of a bias for the arms
that always sit in the same place (a fixed A B C / C B A order gave two identical arms a 3%
offset). Arms of one session are paired by round index. Python's garbage collector is off
during the rounds (as in timeit), so a collection triggered by one arm's garbage is not charged
to whichever arm runs next.

Controls, for each mode (copies of the mode's first arm, its "base"): an A/A copy, other
instances timed the same way, whose ratio to the base is pure noise (that mode's noise floor);
an injected copy that spins for `inject` x the base's latest step time after every step (a
known slowdown the statistics must detect). Compiled and eager steps differ in noise, so a
comparison is judged against the floor of the modes it involves.

Constraints: time one framework per process (the caller's job: both thread pools in one
process disturb each other); the device is synchronized inside each step (Model.timed_step).
"""

from __future__ import annotations

import dataclasses
import gc
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from backends.base import Backend
from harness import stats
from harness.errors import HarnessInputError
from harness.model.spec import PRESETS, ModelSpec, model_cost, parse_spec
from harness.model.spin import spin
from harness.model.synthetic import synthetic_batch
from harness.model.variants import BASELINE, Arm
from harness.results.records import TimingRecord
from harness.timing.controls import AA_SUFFIX, REFERENCE_LOOP

ORDER_SEED = 0


@dataclass(frozen=True)
class TimingPlan:
    """What one process of a comparison measures (replication.ReplicationPlan: how many processes)."""

    arms: tuple[Arm, ...]
    modes: tuple[str, ...] = ("eager",)
    # Defaults measured on a 2-core machine (torch mlp A/A, 60 s). With one instance per arm the
    # instance (and layout) spread, about 1% between processes, dominated; 8 instances per arm
    # average it away, leaving round noise (harness/timing/replication.py spends the budget on rounds
    # accordingly). Short rounds give more pairs for the same time, and a round's noise barely
    # depends on its length (0.05 s rounds: ±1.2-1.3% half-width in 60 s; 0.01 s: ±0.65%).
    process_s: float = 4.0  # seconds of rounds in the first process; later ones: replication.next_process_s
    rounds: int | None = None  # a fixed number of rounds per process instead of process_s
    steps: int | None = None  # per round; None: calibrated to round_s
    # Steps per instance after its first (compiling) one, before any round: 3 in all, so a step
    # that compiles again on its second call (a guard that fails once) is also behind it.
    # More costs every worker's start: 5 steps of 8 instances of 3 arms of a 49 ms Keras eager
    # step were a third of it, time taken from the rounds.
    warmup: int = 2
    aa: bool = False
    inject: float = 0.0
    reference_loop: bool = False  # add Backend.reference_step, the hand-written loop: mlp, eager
    round_s: float = 0.01  # steps per round are chosen so that one round of one arm lasts about this
    instances: int = 8  # fresh models per arm; each round uses one at random

    def models_held(self) -> int:
        """How many models one process holds at once: `instances` of every arm in every mode, and
        of each control (A/A copy and injected arm per mode, the hand-written loop)."""
        controls = (self.aa + (self.inject > 0)) * len(self.modes) + self.reference_loop
        return (len(self.arms) * len(self.modes) + controls) * self.instances

    def to_job(self) -> dict:
        """The plan as a worker's job holds it (JSON; the arms' specs as spec dicts)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**fields, "arms": [{"label": arm.label, "spec": arm.spec and arm.spec.to_dict()} for arm in self.arms]}

    @classmethod
    def from_job(cls, data: dict) -> TimingPlan:
        arms = tuple(Arm(arm["label"], arm["spec"] and parse_spec(arm["spec"], f"the job's arm {arm['label']!r}"))
                     for arm in data["arms"])
        return cls(**{**data, "arms": arms, "modes": tuple(data["modes"])})


MIN_ROUNDS = stats.MIN_PAIRS  # a process stops after process_s only once it has this many rounds


@dataclass(frozen=True)
class _Arm:
    label: str
    variant: str
    mode: str
    spec: ModelSpec | None  # None: the subject's own model (a user's pair)
    role: str = "arm"  # "arm", "aa", "injected" or "reference" (the hand-written loop)
    inject: float = 0.0
    base: str = ""  # for controls: the label of the arm they copy


def _arms(spec: ModelSpec | None, plan: TimingPlan) -> list[_Arm]:
    arms = []
    for mode in plan.modes:
        arms += [_Arm(f"{arm.label}/{mode}", arm.label, mode, arm.spec) for arm in plan.arms]
    for base in [next(arm for arm in arms if arm.mode == mode) for mode in plan.modes]:
        if plan.aa:
            arms.append(replace(base, label=base.label + AA_SUFFIX, role="aa", base=base.label))
        if plan.inject:
            arms.append(replace(base, label=f"{base.label} (+{plan.inject:.0%} injected)", role="injected",
                                inject=plan.inject, base=base.label))
    if plan.reference_loop:
        if spec != PRESETS["mlp"] or "eager" not in plan.modes or f"{BASELINE}/eager" not in [a.label for a in arms]:
            raise HarnessInputError("--reference-loop: the hand-written loop is the mlp preset's baseline in eager "
                                    "mode; use --model mlp with --variant baseline and --mode eager")
        arms.append(_Arm(f"{REFERENCE_LOOP}/eager", REFERENCE_LOOP, "eager", spec, role="reference"))
    labels = [arm.label for arm in arms]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise HarnessInputError(f"--variant: {', '.join(duplicates)} given twice; each arm once (for an A/A "
                                "comparison of an arm with itself use --aa)")
    return arms


def _steady_step_time(step: Callable[[], None], seconds: float) -> float:
    """Per-step time over at least `seconds` of back-to-back steps."""
    count, begin = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - begin) < seconds or count < 3:
        step()
        count += 1
    return elapsed / count


def _with_delay(step: Callable[[], None], delay: Callable[[], float]) -> Callable[[], None]:
    def delayed() -> None:
        step()
        spin(delay())

    return delayed


class Subject(Protocol):
    """What is timed: a model built per arm and mode, the batch it trains on, and its cost. A
    spec's models (SpecSubject) or one framework's side of a user's model pair
    (harness/ported/timing.py)."""

    name: str
    spec: ModelSpec | None  # None: not built from a spec

    def batch(self) -> tuple:
        """(inputs, labels) in the backend's layout."""

    def build(self, arm: _Arm):
        """A model of `arm` in arm.mode with timed_step(x, y) and optimizer_class (backends.base.Model's)."""

    def cost(self, arm: _Arm) -> tuple[int, int]:
        """(parameters, FLOPs per training step; 0 where not known)."""


@dataclass(frozen=True)
class SpecSubject:
    """The arms of a spec, built by the backend."""

    backend: Backend
    spec: ModelSpec

    @property
    def name(self) -> str:
        return self.spec.name

    def batch(self) -> tuple:
        return synthetic_batch(self.spec, seed=self.spec.seed)

    def build(self, arm: _Arm):
        return self.backend.build(arm.spec, arm.mode)

    def cost(self, arm: _Arm) -> tuple[int, int]:
        return model_cost(arm.spec)


def _build_instances(backend: Backend, subject: Subject, arms: list[_Arm], plan: TimingPlan, x, y, rng, progress):
    """Every arm's instances, built in a random order; each one's first (compiling) step is setup
    time, then `plan.warmup` steps. Returns {label: [step, ...]}, setup and warm-up seconds, and
    the optimizer each arm trains with."""
    steps_fn = {arm.label: [None] * plan.instances for arm in arms}
    setup, warm, optimizers = {arm.label: 0.0 for arm in arms}, {arm.label: 0.0 for arm in arms}, {}
    order = [(arm, i) for arm in arms for i in range(plan.instances)]
    for n, index in enumerate(rng.permutation(len(order))):
        arm, instance = order[index]
        progress(f"building and compiling {arm.label} #{instance + 1} ({n + 1}/{len(order)})")
        start = time.perf_counter()
        if arm.role == "reference":
            step = backend.reference_step(x, y)
        else:
            model = subject.build(arm)
            optimizers[arm.label] = model.optimizer_class
            step = model.timed_step(x, y)
        step()  # the first call compiles/traces: setup, not step time
        setup[arm.label] += (time.perf_counter() - start) / plan.instances
        begin = time.perf_counter()
        for _ in range(plan.warmup):
            step()
        warm[arm.label] += time.perf_counter() - begin
        steps_fn[arm.label][instance] = step
    return steps_fn, setup, warm, optimizers


def measure(backend: Backend, subject: Subject, plan: TimingPlan, device: str, threads: int,
            progress: Callable[[str], None] = lambda message: None, process: int = 0, seed: int = ORDER_SEED,
            session: str = "") -> list[TimingRecord]:
    """Build, warm up and time every arm interleaved; one TimingRecord per arm. `process` numbers
    this process within its comparison, `seed` drives its build order, arm order and instance
    choice (give each process its own), `session` names the comparison (default: a new id)."""
    arms = _arms(subject.spec, plan)
    rng = np.random.default_rng(seed)
    x, y = subject.batch()
    steps_fn, setup, warm, optimizers = _build_instances(backend, subject, arms, plan, x, y, rng, progress)
    steps, latest = _steps_per_round(arms, steps_fn, plan)
    times = _interleaved_rounds(arms, steps_fn, steps, latest, plan, rng, progress)
    session = session or uuid.uuid4().hex[:12]
    settings = backend.settings()
    records = []
    for arm in arms:
        summary = stats.summarize(times[arm.label])
        params, flops = subject.cost(arm)
        records.append(TimingRecord(
            backend=backend.name, model=subject.name, variant=arm.variant, arm=arm.label, device=device, mode=arm.mode,
            threads=threads, median_s=summary.median, iqr_s=summary.iqr, rounds=summary.n,
            steps_per_round=steps[arm.label], setup_s=setup[arm.label], warmup_s=warm[arm.label], params=params,
            flops_per_step=flops, session=session, role=arm.role, injected_slowdown=arm.inject,
            times_s=tuple(times[arm.label]), settings=settings, optimizer_class=optimizers.get(arm.label, ""),
            processes=1, process_of_round=(process,) * summary.n, instances=plan.instances, base=arm.base,
        ))
    return records


def _steps_per_round(arms: list[_Arm], steps_fn: dict[str, list], plan: TimingPlan
                     ) -> tuple[dict[str, int], dict[str, float]]:
    """Steps per round for each arm from its own steady state (the warm-up right after a build runs
    on cold caches and can be twice as slow), so every arm's round lasts about plan.round_s: a
    fast compiled arm given the steps of a slow eager one would be timed over a few ms only. An
    injected arm runs its base's steps plus a delay that follows the base's latest step time
    (`latest`, which the rounds keep up to date; its step functions are wrapped here)."""
    latest = {arm.label: _steady_step_time(steps_fn[arm.label][0], plan.round_s) for arm in arms if not arm.inject}
    steps = {label: plan.steps or max(1, math.ceil(plan.round_s / seconds)) for label, seconds in latest.items()}
    for arm in arms:
        if arm.inject:
            steps[arm.label] = steps[arm.base]
            steps_fn[arm.label] = [_with_delay(step, lambda inject=arm.inject, base=arm.base: inject * latest[base])
                                   for step in steps_fn[arm.label]]
    return steps, latest


def _interleaved_rounds(arms: list[_Arm], steps_fn: dict[str, list], steps: dict[str, int], latest: dict[str, float],
                        plan: TimingPlan, rng, progress) -> dict[str, list[float]]:
    """Rounds until plan.rounds (or plan.process_s seconds and MIN_ROUNDS): in each, every arm in a
    new random order runs its steps on a random one of its instances; per arm, each round's
    per-step time. The garbage collector is off meanwhile (collected once before)."""
    times: dict[str, list[float]] = {arm.label: [] for arm in arms}
    gc.collect()
    gc.disable()
    begin_rounds = time.perf_counter()
    try:
        while True:
            done = len(times[arms[0].label])
            elapsed = time.perf_counter() - begin_rounds
            if (done >= plan.rounds) if plan.rounds else (elapsed >= plan.process_s and done >= MIN_ROUNDS):
                return times
            if done % 10 == 0:
                progress(f"round {done + 1}, {elapsed:.0f}/{plan.process_s:.0f} s" if not plan.rounds
                         else f"round {done + 1}/{plan.rounds}")
            for arm in (arms[i] for i in rng.permutation(len(arms))):
                step, count = steps_fn[arm.label][rng.integers(plan.instances)], steps[arm.label]
                begin = time.perf_counter()
                for _ in range(count):
                    step()
                times[arm.label].append((time.perf_counter() - begin) / count)
                if arm.label in latest:
                    latest[arm.label] = times[arm.label][-1]
    finally:
        gc.enable()
