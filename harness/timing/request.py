"""The timing request: what `time`, `percall` and `calibrate` were asked to measure, parsed once.

The command line (harness/cli/) builds one from its arguments: the backend's class looked up
once, the spec read once, each variant parsed and applied once (the plan's arms); or, for a
user's own model pair, the pair's import paths (loaded in the worker, which imports one framework). Everything below
the CLI takes the request; a worker process receives its serialized form (`worker_job`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from backends.base import Backend
from harness.errors import HarnessInputError
from harness.model.layers import BusyWait
from harness.model.spec import ModelSpec
from harness.ported.pair import PairSource
from harness.timing.replication_plan import ReplicationPlan
from harness.timing.session import TimingPlan


@dataclass(frozen=True)
class TimingRequest:
    backend: type[Backend]
    device: str
    threads: int
    spec: ModelSpec | None  # None: a user's model pair is timed (`pair`)
    plan: TimingPlan
    replication: ReplicationPlan
    pair: PairSource | None = None  # harness/ported/timing.py; the side the backend runs
    optimizer: str = "sgd"  # a pair's optimizer (a spec names its own)

    def with_plan(self, **changes) -> TimingRequest:
        return replace(self, plan=replace(self.plan, **changes))

    def worker_job(self, plan: TimingPlan, process: int, seed: int, session: str) -> dict:
        """One worker process's job (harness/timing/worker.py): this request with `plan`."""
        return {"backend": self.backend.name, "device": self.device, "threads": self.threads,
                "spec": self.spec and self.spec.to_dict(), "pair": self.pair and self.pair.to_job(),
                "optimizer": self.optimizer, "plan": plan.to_job(), "process": process, "seed": seed,
                "session": session}

    def check_spin_fits(self) -> None:
        """Refuse a request whose busy-wait layers alone overrun its budget (their cost is known
        before anything runs): every process builds `instances` models of each arm and runs each
        `warmup` steps, and at least `min_processes` processes run."""
        arms = self.plan.arms or ()
        spin_s = sum(layer.microseconds for arm in arms for layer in (arm.spec.layers if arm.spec else ())
                     if isinstance(layer, BusyWait))
        floor_s = spin_s * 1e-6 * self.plan.instances * self.plan.warmup * self.replication.min_processes
        if floor_s > self.replication.budget_s:
            raise HarnessInputError(
                f"busy-wait layers: {spin_s * 1e-6:.3g} s of spinning per step over the arms makes at least "
                f"{floor_s:.0f} s of warm-up alone ({self.replication.min_processes} processes x "
                f"{self.plan.instances} instances x {self.plan.warmup} steps), more than --budget "
                f"{self.replication.budget_s:g} s; spin less, or give a larger --budget")
