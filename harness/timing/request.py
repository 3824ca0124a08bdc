"""The timing request: what `time`, `percall` and `calibrate` were asked to measure, parsed once.

The command line (harness/cli/) builds one from its arguments: the backend's class looked up
once, the spec read once, each variant parsed and applied once (the plan's arms). Everything below
the CLI takes the request; a worker process receives its serialized form (`worker_job`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from backends.base import Backend
from harness.model.spec import ModelSpec
from harness.timing.replication_plan import ReplicationPlan
from harness.timing.session import TimingPlan


@dataclass(frozen=True)
class TimingRequest:
    backend: type[Backend]
    device: str
    threads: int
    spec: ModelSpec
    plan: TimingPlan
    replication: ReplicationPlan

    def with_plan(self, **changes) -> TimingRequest:
        return replace(self, plan=replace(self.plan, **changes))

    def worker_job(self, plan: TimingPlan, process: int, seed: int, session: str) -> dict:
        """One worker process's job (harness/timing/worker.py): this request with `plan`."""
        return {"backend": self.backend.name, "device": self.device, "threads": self.threads,
                "spec": self.spec.to_dict(), "plan": plan.to_job(), "process": process, "seed": seed,
                "session": session}
