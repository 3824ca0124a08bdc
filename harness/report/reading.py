"""Read a run folder (results file and environment file) into a frozen RunFolder for the report.

Records are kept by kind (`run.of(TimingRecord)`), so a new record kind needs no new field here.
Each case keeps its records only when its latest attempt ended ok; the other cases are listed as
missing, with what they left out.

Constraints: this module reads and never measures or renders. The file is read by
harness.results.reading.read_results (a truncated last line is skipped with a warning there; a corrupt
line elsewhere raises HarnessInputError naming file and line). A line that is JSON but not a
valid record (unknown kind, missing field, wrong type, a ratio or time <= 0) is skipped with a
warning naming the file, the record number and the error: the report never builds a verdict from
it. An unusable environment.json (see _read_environment) is a warning too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from harness.errors import HarnessInputError
from harness.files import parse_json, read_small_file
from harness.results.environment import ENVIRONMENT_FILE, machine_label
from harness.results.reading import read_results
from harness.results.records import (
    RESULTS_FILE,
    SCHEMA_VERSION,
    CaseRecord,
    ComparisonRecord,
    Record,
    RecordError,
    TimingRecord,
    from_dict,
)

R = TypeVar("R", bound=Record)


@dataclass(frozen=True)
class MissingCase:
    case_id: str
    status: str
    error: str
    command: str
    records_left_out: int


@dataclass(frozen=True)
class RunFolder:
    """What a run folder holds: the kept records by kind, the cases that did not finish, the machine."""

    folder: Path
    records: dict[str, tuple[Record, ...]]  # by Record.kind, in file order; only cases that ended ok
    cases_ok: int
    missing: tuple[MissingCase, ...]
    has_case_records: bool
    environment: dict[str, Any] | None
    warnings: tuple[str, ...]
    machine: str = ""  # the machine these records come from, where the folder holds several (a Ray run)

    def of(self, cls: type[R]) -> tuple[R, ...]:
        """The kept records of one kind, e.g. `run.of(TimingRecord)`."""
        return self.records.get(cls.kind, ())  # type: ignore[return-value]

    @property
    def several_thread_counts(self) -> bool:
        return len({r.threads for r in (*self.of(TimingRecord), *self.of(ComparisonRecord))}) > 1


def read_run_folder(folder: Path) -> RunFolder:
    """Read a run folder; keep each case's records only when its latest attempt ended ok."""
    return read_run_folders(folder, split=False)[0]


def read_run_folders(folder: Path, split: bool = True) -> list[RunFolder]:
    """Read a run folder as one RunFolder per machine its cases ran on (a Ray run's cases land on
    several; a local run's on one), so that comparisons stay within one machine. The machine of
    a case is the `machine` of its last CaseRecord; without one (a run before Ray, a skipped
    case) it is the machine of environment.json."""
    path = folder / RESULTS_FILE
    if not path.exists():  # one that is not a regular file (a FIFO, a device) is refused by read_results
        raise HarnessInputError(f"{folder}: no {RESULTS_FILE} here (is it a run folder?)")
    results = read_results(path)
    if not results.records:
        raise HarnessInputError(f"{path}: no complete records in this file")
    warnings = list(results.warnings)
    entries = []
    for index, raw in enumerate(results.records, start=1):
        try:
            entries.append((str(raw.get("case_id", "")), _refuse_impossible(from_dict(raw))))
        except RecordError as exc:
            warnings.append(f"{path}: record {index} was skipped: {exc}.")
    if any(isinstance(raw.get("schema"), int) and raw["schema"] > SCHEMA_VERSION for raw in results.records):
        warnings.append(f"{path}: written with a newer record schema than {SCHEMA_VERSION}; fields may be misread.")
    environment, environment_warning = _read_environment(folder / ENVIRONMENT_FILE)
    machines = {case_id: dict(record.machine) for case_id, record in entries
                if isinstance(record, CaseRecord) and record.machine and record.status != CaseRecord.SKIPPED}
    labels = {case_id: machine_label(machine) for case_id, machine in machines.items()}
    default = machine_label({"host": (environment or {}).get("host")}) if not labels else \
        max(set(labels.values()), key=list(labels.values()).count)
    def label_of(case_id: str) -> str:
        return labels.get(case_id, default) if split else default

    groups = dict.fromkeys(label_of(case_id) for case_id, _ in entries)
    found = []
    for label in groups:
        mine = [(case_id, record) for case_id, record in entries if label_of(case_id) == label]
        kept, cases_ok, missing, attempt_warnings = _latest_attempts(mine, path)
        described = next((m for c, m in machines.items() if labels[c] == label), {})
        found.append(RunFolder(
            folder=folder,
            records={kind: tuple(r for r in kept if r.kind == kind) for kind in dict.fromkeys(r.kind for r in kept)},
            cases_ok=cases_ok,
            missing=tuple(missing),
            has_case_records=any(isinstance(r, CaseRecord) for _, r in mine),
            environment=_on_machine(environment, described),
            warnings=tuple(warnings + attempt_warnings + environment_warning),
            machine=label if len(groups) > 1 else "",
        ))
    return found


def _refuse_impossible(record: Record) -> Record:
    """The record, or RecordError for numbers of the right type that no measurement gives: a ratio
    or its CI bound <= 0 (the report divides by them and takes their logs), a time <= 0."""
    if isinstance(record, ComparisonRecord):
        positive = ("ratio", "ci_low", "ci_high", "process_ratios", "expected_ratio")
    elif isinstance(record, TimingRecord):
        positive = ("median_s", "times_s")
    else:
        return record
    for name in positive:
        value = getattr(record, name)
        values = value if isinstance(value, tuple) else () if value is None else (value,)
        for index, item in enumerate(values):
            if not item > 0:  # non-finite numbers were refused by from_dict
                shown = f"{name}[{index}]" if isinstance(value, tuple) else name
                raise RecordError(f"field {shown!r} is {item}; expected a number > 0")
    return record


def _on_machine(environment: dict[str, Any] | None, machine: dict[str, Any]) -> dict[str, Any] | None:
    """environment.json as seen from a machine the cases ran on: its host, CPU, cores, GPU and
    framework versions replace the driver's (a Ray run's environment.json is the driver's)."""
    if not machine:
        return environment
    node = {"host": machine.get("host"), "cpu_model": machine.get("cpu_model"),
            "available_cores": machine.get("cores"), "gpu": machine.get("gpu") or None,
            "frameworks": machine.get("frameworks"), "ray_node_id": machine.get("ray_node_id") or None}
    return {**(environment or {}), **{k: v for k, v in node.items() if v is not None}}


def _latest_attempts(entries: list[tuple[str, Record]], path: Path) -> tuple[list[Record], int, list[MissingCase],
                                                                         list[str]]:
    """Split records by the latest CaseRecord of their case: ok cases are kept, others are missing.

    A case's records precede its CaseRecord, so the records between two CaseRecords of one case
    are one attempt. Records after a case's last CaseRecord belong to an attempt that never ended.
    Without any CaseRecord (not written by `run`) every record is kept.
    """
    if not any(isinstance(record, CaseRecord) for _, record in entries):
        return [r for _, r in entries], len({case_id for case_id, _ in entries}), [], [
            f"{RESULTS_FILE} has no case records, so cases that did not finish cannot be listed."]
    pending: dict[str, list[Record]] = {}
    ends: dict[str, tuple[CaseRecord, list[Record]]] = {}
    for case_id, record in entries:
        if isinstance(record, CaseRecord):
            ends[case_id] = (record, pending.pop(case_id, []))
        else:
            pending.setdefault(case_id, []).append(record)
    finished_ok = [case_id for case_id, record in entries
                   if isinstance(record, CaseRecord) and record.status == CaseRecord.OK]
    twice = sorted({case_id for case_id in finished_ok if finished_ok.count(case_id) > 1})
    if twice:  # a resumed run never reruns a finished case: these are two runs' files joined
        raise HarnessInputError(f"{path}: case {twice[0]} finished ok twice: this file holds more than one "
                                "run; report each run folder on its own")
    kept: list[Record] = []
    missing, warnings = [], []
    for case_id in dict.fromkeys(case_id for case_id, _ in entries):
        end, records = ends.get(case_id, (None, []))
        unfinished = pending.get(case_id, [])
        if end is not None and end.status == CaseRecord.OK:
            kept.extend(records)
            if unfinished:
                warnings.append(f"case {case_id}: {len(unfinished)} records of an unfinished re-run were left out.")
        elif end is not None:
            missing.append(MissingCase(case_id, end.status, end.error, " ".join(end.command),
                                       len(records) + len(unfinished)))
        else:
            missing.append(MissingCase(case_id, "interrupted", "no case record: the run stopped during this case",
                                       "", len(unfinished)))
    order = {id(record): index for index, (_, record) in enumerate(entries)}
    kept.sort(key=lambda record: order[id(record)])
    return kept, sum(1 for end, _ in ends.values() if end.status == CaseRecord.OK), missing, warnings


def _read_environment(path: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """environment.json, or None and a warning when it is unusable (the report goes on without it):
    not a regular file of at most MAX_JSON_FILE_BYTES, not JSON, nested too deeply, not an object."""
    if not path.exists():
        return None, []
    try:
        environment = parse_json(read_small_file(path), str(path))
    except HarnessInputError as exc:
        return None, [f"{exc}; the environment is not shown."]
    if not isinstance(environment, dict):
        return None, [f"{path}: expected a JSON object; the environment is not shown."]
    return environment, []
