"""What a run's case is (Case) and how one attempt at it ended (CaseOutcome): the data every
part of running shares (the runner, the executors, the progress display).

A case is a command that writes its records, as a JSON array, to the path substituted for
JSON_TOKEN in its argv; THREADS_TOKEN becomes the thread count the executor chose (the driver's
--threads, or on Ray the cores of the node a timing case owns).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSON_TOKEN = "{json}"
THREADS_TOKEN = "{threads}"

@dataclass(frozen=True)
class Case:
    case_id: str
    argv: tuple[str, ...]
    timeout_s: float
    label: str
    expected_s: float
    skip_reason: str = ""  # known before it runs (its framework is not available): recorded as skipped
    # Exit codes whose records are kept as a finished case: a calibration that misses a target
    # exits 1 with its records written (the report shows the miss); a crash writes none.
    ok_returncodes: tuple[int, ...] = (0,)
    # Needs the machine to itself (a timing measurement). Parity, inspection and study cases do
    # not: the Ray executor packs them onto free CPUs (harness/running/ray_executor.py).
    exclusive: bool = True

@dataclass(frozen=True)
class CaseOutcome:
    """How one attempt at a case ended. `started_at`/`ended_at` are wall-clock (time.time())
    seconds, so cases on different machines can be put on one time line; `machine` is where it
    ran (harness.results.environment.machine_identity)."""

    status: str
    returncode: int | None
    elapsed_s: float
    error: str
    records: list[dict[str, Any]]
    started_at: float | None = None
    ended_at: float | None = None
    machine: dict[str, Any] = field(default_factory=dict)
    log: str = ""  # the case's log text, filled in when it ran elsewhere and the driver must write it
