"""Result records: the one long-format schema every command writes and every report reads.

Each measured thing is one flat record (a frozen dataclass turned into a JSON object), so any
table or plot is a group-by away. Every record carries `schema` (bump SCHEMA_VERSION when a field
changes meaning) and `kind`, which says which dataclass it came from.

This module only defines the shapes and their JSON round trip; it computes nothing.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Record:
    kind: ClassVar[str] = "record"

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {"schema": SCHEMA_VERSION, "kind": self.kind, **data}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=False)


@dataclass(frozen=True)
class ParityRecord(Record):
    """One parity check between two backends on one model and variant.

    `max_rel_err` is max|a - b| / max|reference| over the tensor (the error relative to the
    tensor's own scale; element-wise ratios blow up at zero crossings). `passed` means
    max_rel_err <= tol; tol = max(a fixed float32 floor, 4 * f64_err). For semantic checks (dropout with p > 0, where masks cannot match) the
    "error" is the deviation from the expected statistic and `backends` names one backend.
    """

    kind: ClassVar[str] = "parity"
    model: str
    variant: str
    check: str
    backends: tuple[str, ...]
    max_abs_err: float
    max_rel_err: float
    tol: float
    passed: bool
    detail: str = ""
    f64_err: float | None = None  # the reference's own float32 error against float64, same scale


@dataclass(frozen=True)
class TimingRecord(Record):
    """Per-training-step time of one arm (a variant in a mode) measured in one session.

    `times_s` holds the per-step time of each round. Arms measured in the same `session` were
    interleaved round by round, so their `times_s` are paired by index.
    """

    kind: ClassVar[str] = "timing"
    backend: str
    model: str
    variant: str
    arm: str
    device: str
    mode: str
    threads: int
    median_s: float
    iqr_s: float
    rounds: int
    steps_per_round: int
    setup_s: float
    warmup_s: float
    params: int
    flops_per_step: int
    session: str
    role: str = "arm"  # "arm"; "aa" (A/A copy of the first arm); "injected" (+ spin delay); "reference"
    injected_slowdown: float = 0.0
    times_s: tuple[float, ...] = field(default_factory=tuple)
    settings: dict[str, object] = field(default_factory=dict)  # Backend.settings(): threads, TF32, versions


@dataclass(frozen=True)
class ComparisonRecord(Record):
    """Paired comparison of arm `b` against arm `a` from one interleaved session.

    `ratio` is the median over rounds of time_b / time_a with its bootstrap CI. `noise_floor`
    is the half-width of the session's A/A control (None without one): the smallest effect the
    session could detect. `verdict` is "slower", "faster" or "no detectable difference".
    """

    kind: ClassVar[str] = "comparison"
    backend: str
    model: str
    device: str
    mode: str
    threads: int
    a: str
    b: str
    ratio: float
    ci_low: float
    ci_high: float
    verdict: str
    noise_floor: float | None
    sentence: str
    session: str
    question: str = ""


@dataclass(frozen=True)
class InspectRecord(Record):
    """How many nodes one training step executes in one graph representation of a framework."""

    kind: ClassVar[str] = "inspect"
    backend: str
    model: str
    variant: str
    graph: str
    node_count: int
    op_counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CaseRecord(Record):
    """The end of one case of a run: written after the case's own records, last.

    `status` is "ok", "failed" (it raised or crashed; `error` says how) or "timeout" (it ran past
    its limit and was killed). `--resume` skips the cases whose latest CaseRecord is "ok".
    """

    kind: ClassVar[str] = "case"
    case_id: str
    status: str
    command: tuple[str, ...]
    elapsed_s: float
    error: str = ""
    returncode: int | None = None


def from_dict(data: dict[str, Any]) -> Record:
    """The record a dict from as_dict() (or a results.jsonl line) describes. Keys that are not
    fields (schema, kind, case_id) are dropped; a missing field raises TypeError."""
    cls = RECORD_TYPES[data["kind"]]
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{key: value for key, value in data.items() if key in names})


def read_jsonl(path) -> list[dict[str, Any]]:
    """Read one JSON object per line; raise ValueError naming the file and line on bad JSON."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {number}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}: line {number}: expected a JSON object")
            records.append(record)
    return records


RECORD_TYPES: dict[str, type[Record]] = {
    cls.kind: cls for cls in (ParityRecord, TimingRecord, ComparisonRecord, InspectRecord, CaseRecord)
}
