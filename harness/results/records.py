"""Result records: the one long-format schema every command writes and every report reads.

Each measured thing is one flat record (a frozen dataclass turned into a JSON object), so any
table or plot is a group-by away. Every record carries `schema` (bump SCHEMA_VERSION when a field
changes meaning) and `kind`, which says which dataclass it came from.

This module defines the shapes, their JSON round trip and the one reader of results.jsonl
(RESULTS_FILE). It measures nothing; what a record says in words (a comparison's verdict) is
derived from its stored numbers when read, as torch.utils.benchmark's Measurement derives its
statistics from raw times.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from harness import stats
from harness.errors import HarnessInputError

# 2: comparisons store numbers only (verdict and sentence are derived), plus n_pairs.
# 3: timing replicated across processes (process_of_round, processes, ...); per_call records.
# 4: study records (study_epoch, study_run, bn_variance_shift).
# 5: a control's timing record names its base arm (`base`).
SCHEMA_VERSION = 5
RESULTS_FILE = "results.jsonl"


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
    max_rel_err <= tol; tol = max(a fixed float32 floor, 4 * f64_err). An `info` record reports a
    difference that is expected (with its reason in `detail`) and always has passed = True. For semantic checks (dropout with p > 0, where masks cannot match) the
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
    info: bool = False  # information, not a check (e.g. stock optimizers' divergence): never a failure


@dataclass(frozen=True)
class TimingRecord(Record):
    """Per-training-step time of one arm (a variant in a mode) measured in one session.

    `times_s` holds the per-step time of each round, from every process of the comparison;
    `process_of_round` says which process each round ran in. Arms measured in the same `session`
    were interleaved round by round, so their `times_s` are paired by index. `process_end_s`
    is the wall time since the comparison began at which each process had finished (processes
    start included): the cost of the precision reached after each. `stop_reason` says why no
    further process was started.
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
    optimizer_class: str = ""  # the optimizer the arm trained with, fully qualified ("" for a hand-written loop)
    processes: int = 1
    process_of_round: tuple[int, ...] = field(default_factory=tuple)
    instances: int = 1  # fresh models of this arm in each process
    process_end_s: tuple[float, ...] = field(default_factory=tuple)
    stop_reason: str = ""
    base: str = ""  # a control's base: the arm it copies ("" for an arm; records before schema 5)


@dataclass(frozen=True)
class ComparisonRecord(Record):
    """Paired comparison of arm `b` against arm `a` from one interleaved session.

    Only numbers are stored (see `ratio` below), over `n_pairs` paired rounds; `noise_floor` is the half-width of the session's A/A
    control (None without one). The verdict and its sentence are derived from them when read
    (harness.stats.verdict), so a report always applies the current rules to the stored numbers.
    `ratio` is exp(mean over `processes` of each process's trimmed-mean log ratio), with a t CI
    over those (harness/stats.py); `process_ratios` are the per-process estimates (the spread).
    `expected_ratio` is the true ratio where it is known (controls: 1 for A/A, 1 + the injected
    delay), which is what calibration checks the CI against.
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
    noise_floor: float | None
    session: str
    question: str = ""
    n_pairs: int = 0
    processes: int = 0  # 0: an older record that did not store it
    process_ratios: tuple[float, ...] = field(default_factory=tuple)
    expected_ratio: float | None = None

    @property
    def paired(self) -> stats.PairedRatio:
        """The stored numbers as the statistics module's ratio (its half-widths, its verdict)."""
        return stats.PairedRatio(self.ratio, self.ci_low, self.ci_high, self.n_pairs, self.processes,
                                 self.process_ratios)

    @property
    def judgement(self) -> stats.Verdict:
        return stats.verdict(f"{self.backend} {self.model} {self.a}", self.b, self.paired, self.noise_floor)

    @property
    def verdict(self) -> str:
        """"slower", "faster" or "no detectable difference"."""
        return self.judgement.label

    @property
    def sentence(self) -> str:
        return self.judgement.sentence


@dataclass(frozen=True)
class PerCallRecord(Record):
    """Marginal time of one more call of `layer` in a training step, from a dose-response fit:
    steps with `copies` of the layer inserted were timed interleaved, and the slope of step time
    against copies is `per_call_s` with its 95% CI. `step_s` is the step without copies;
    `fraction_of_step` = per_call_s / step_s. `expected_per_call_s` is the true cost where it is
    known (a busy-wait layer: the method's validation). With `net_of`, per_call_s is the layer's
    cost minus that layer's, both timed in the same rounds."""

    kind: ClassVar[str] = "per_call"
    backend: str
    model: str
    mode: str
    layer: str
    per_call_s: float
    ci_low_s: float
    ci_high_s: float
    step_s: float
    fraction_of_step: float
    copies: tuple[int, ...]
    processes: int
    session: str
    device: str = "cpu"
    threads: int = 0
    process_per_call_s: tuple[float, ...] = field(default_factory=tuple)
    expected_per_call_s: float | None = None
    elapsed_s: float = 0.0
    net_of: str = ""  # a layer timed in the same rounds whose per-call cost was subtracted ("" none)

    @property
    def half_width_s(self) -> float:
        return max(self.per_call_s - self.ci_low_s, self.ci_high_s - self.per_call_s)


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
class StudyEpochRecord(Record):
    """One epoch of one training run of the study (harness/study/train.py). train_* and val_* are
    evaluation-mode cross-entropy (no penalty, dropout off) and accuracy on each split, so the
    gap compares like with like; `fit_loss` is the mean training-step loss of the epoch (penalty
    included, dropout on: what Keras's fit prints). `constancy` = {layer: {tolerance: fraction of
    its kernel constant since the previous epoch}} (harness/study/metrics.py)."""

    kind: ClassVar[str] = "study_epoch"
    backend: str
    data: str
    model: str
    variant: str
    seed: int
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    fit_loss: float
    constancy: dict[str, dict[str, float]]


@dataclass(frozen=True)
class StudyRunRecord(Record):
    """How one training run ended: epochs run, early stopping's stop and restore (0-based epochs,
    as Keras counts; None without it), and the final metrics of the weights it ended with."""

    kind: ClassVar[str] = "study_run"
    backend: str
    data: str
    model: str
    variant: str
    seed: int
    epochs_run: int
    early_stopping: bool
    stopped_epoch: int | None
    restored_epoch: int | None
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    elapsed_s: float


@dataclass(frozen=True)
class BNVarianceShiftRecord(Record):
    """A BatchNorm layer right after a dropout layer, after training: per channel, its running
    variance over the variance of its input in evaluation mode on the validation data; `shift` is
    the median over channels (about 1 at rate 0, about 1/(1-rate) for zero-mean inputs)."""

    kind: ClassVar[str] = "bn_variance_shift"
    backend: str
    data: str
    model: str
    variant: str
    seed: int
    layer: int
    dropout_rate: float
    shift: float
    shift_per_channel: tuple[float, ...] = ()


@dataclass(frozen=True)
class CaseRecord(Record):
    """The end of one case of a run: written after the case's own records, last.

    `status` is "ok", "failed" (it raised or crashed, or was "interrupted"; `error` says how),
    "timeout" (it ran past its limit and was killed) or "skipped" (its framework or device is not
    available here). `--resume` skips the cases whose latest CaseRecord is "ok".
    """

    OK: ClassVar[str] = "ok"
    FAILED: ClassVar[str] = "failed"
    TIMEOUT: ClassVar[str] = "timeout"
    SKIPPED: ClassVar[str] = "skipped"
    INTERRUPTED: ClassVar[str] = "interrupted"  # the `error` of a case failed by Ctrl-C or SIGTERM

    kind: ClassVar[str] = "case"
    case_id: str
    status: str
    command: tuple[str, ...]
    elapsed_s: float
    error: str = ""
    returncode: int | None = None
    # Wall-clock (time.time()) start and end of the attempt, and the machine it ran on
    # (harness.results.environment.machine_identity): with Ray a run's cases land on several machines.
    started_at: float | None = None
    ended_at: float | None = None
    machine: dict[str, object] = field(default_factory=dict)


def from_dict(data: dict[str, Any]) -> Record:
    """The record a dict from as_dict() (or a results.jsonl line) describes. Keys that are not
    fields (schema, kind, case_id, fields of older schemas) are dropped.

    Raises RecordError for an unknown kind, a missing field or a value of the wrong JSON type
    (a string where a number belongs, a list where a name belongs, a non-finite number).
    """
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in RECORD_TYPES:
        raise RecordError(f"unknown kind {kind!r}")
    cls = RECORD_TYPES[kind]
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            values[f.name] = _checked(f, data[f.name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecordError(f"{kind} record without field {f.name!r}")
    return cls(**values)


class RecordError(ValueError):
    """A JSON object that is not a valid record (its message says which field is wrong)."""


# The JSON types each annotation accepts (records are flat: these are all the field types).
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
    "float | None": (int, float, type(None)), "int | None": (int, type(None)),
    "dict[str, int]": (dict,), "dict[str, object]": (dict,), "dict[str, dict[str, float]]": (dict,),
    "tuple[str, ...]": (list, tuple), "tuple[float, ...]": (list, tuple), "tuple[int, ...]": (list, tuple),
}


def _checked(f: dataclasses.Field, value: Any) -> Any:
    annotation = str(f.type)
    items = value if annotation.startswith("tuple[") and isinstance(value, (list, tuple)) else [value]
    item_type = {"tuple[str, ...]": (str,), "tuple[float, ...]": (int, float), "tuple[int, ...]": (int,)}.get(annotation)
    if not isinstance(value, _JSON_TYPES[annotation]) or any(
            isinstance(item, bool) and bool not in (item_type or _JSON_TYPES[annotation])
            or (item_type is not None and not isinstance(item, item_type))
            or (isinstance(item, float) and not math.isfinite(item)) for item in items):
        raise RecordError(f"field {f.name!r} is {json.dumps(value)[:40]}; expected {annotation} (numbers finite)")
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class ResultsFile:
    """What a results.jsonl holds: `records` in file order, of which the first `finished` belong
    to finished cases (they end with the file's last CaseRecord, at byte `finished_end`)."""

    records: tuple[dict[str, Any], ...]
    finished: int
    finished_end: int
    warnings: tuple[str, ...]


# Bounds on what the report and the runner read, so that a damaged or hostile file is refused in
# one line instead of filling memory: a record is a few hundred kB at most (10^4 round times).
MAX_LINE_BYTES = 16 * 1024 * 1024  # one line of results.jsonl
MAX_JSON_FILE_BYTES = 64 * 1024 * 1024  # environment.json, a pytest-benchmark JSON file
MAX_JSON_DEPTH = 100  # nesting of any JSON read; records and environments nest 3 or 4 deep
_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def read_results(path: Path) -> ResultsFile:
    """Read one JSON object per line: the one reader of results files (runner and report).

    A last line that is not a complete JSON object is the trace of a run killed while writing
    it: it is skipped with a warning. Anything else that is not a JSON object raises
    HarnessInputError naming the file and line, as do a line longer than MAX_LINE_BYTES (never
    read whole) and one nested deeper than MAX_JSON_DEPTH. A CaseRecord counts as finished only
    with its newline (the runner writes a block's lines in one write, newline last).
    """
    records: list[dict[str, Any]] = []
    finished, finished_end, offset, bad, number = 0, 0, 0, None, 0
    try:
        with open_regular_file(path) as handle:
            while raw := handle.readline(MAX_LINE_BYTES + 1):
                number += 1
                if len(raw) > MAX_LINE_BYTES:
                    raise HarnessInputError(f"{path}: line {number}: longer than {MAX_LINE_BYTES // 2**20} MiB, "
                                            "not a record")
                offset += len(raw)
                if not raw.strip():
                    continue
                if bad is not None:
                    raise HarnessInputError(f"{path}: line {bad}: not a JSON object")
                try:
                    record = parse_json(raw, f"{path}: line {number}")
                except _TooDeep:
                    raise
                except HarnessInputError:  # not JSON, also a UTF-8 sequence cut in half
                    record = None
                if not isinstance(record, dict):
                    bad = number
                    continue
                records.append(record)
                if record.get("kind") == CaseRecord.kind and raw.endswith(b"\n"):
                    finished, finished_end = len(records), offset
    except OSError as exc:
        raise HarnessInputError(f"{path}: cannot read ({exc.strerror})") from None
    warnings = [f"{path}: line {bad} is incomplete (the run stopped while writing it) and was skipped."] \
        if bad is not None else []
    return ResultsFile(tuple(records), finished, finished_end, tuple(warnings))


@contextmanager
def open_regular_file(path: Path, limit: int | None = None) -> Iterator[BinaryIO]:
    """`path` opened for binary reading, refused (HarnessInputError naming it) unless it is a
    regular file of at most `limit` bytes. The type is checked before opening (opening a FIFO
    waits for a writer; opening a device can act on it) and again on the opened file (it may have
    been replaced meanwhile). Raises OSError as open() does (a missing file)."""
    _refuse_unless_regular(path, os.stat(path), limit)
    with open(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as handle:
        _refuse_unless_regular(path, os.fstat(handle.fileno()), limit)
        yield handle


def read_small_file(path: Path, limit: int = MAX_JSON_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (open_regular_file); at most limit + 1
    bytes are read, so a file that grows while it is read cannot run away either."""
    try:
        with open_regular_file(path, limit) as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise HarnessInputError(f"{path}: cannot read ({exc.strerror})") from None
    if len(raw) > limit:
        raise HarnessInputError(f"{path}: grew past the {limit // 2**20} MiB limit while it was read")
    return raw


def _refuse_unless_regular(path: Path, info: os.stat_result, limit: int | None) -> None:
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for is_kind, name in _FILE_KINDS if is_kind(info.st_mode)), "not a regular file")
        raise HarnessInputError(f"{path}: is {kind}, not a regular file")
    if limit is not None and info.st_size > limit:
        raise HarnessInputError(f"{path}: {info.st_size} bytes, more than the {limit // 2**20} MiB limit")


class _TooDeep(HarnessInputError):
    """JSON nested deeper than MAX_JSON_DEPTH: refused even as the last line of a results file,
    which is otherwise taken for a write cut short."""


def parse_json(raw: bytes, source: str) -> Any:
    """One JSON document, or HarnessInputError in one line naming `source`: not JSON, not UTF-8,
    an integer over Python's digit limit (ValueError), or nesting deeper than MAX_JSON_DEPTH
    (absurd nesting otherwise ends in RecursionError, here or in whatever walks the value)."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise _TooDeep(f"{source}: JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise HarnessInputError(f"{source}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") \
            from None
    except ValueError as exc:  # not UTF-8; an integer of more than 4300 digits
        raise HarnessInputError(f"{source}: not valid JSON ({str(exc)[:100]})") from None
    stack = [(value, 1)]
    while stack:  # iterative: a recursive walk would be what fails
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise _TooDeep(f"{source}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return value


RECORD_TYPES: dict[str, type[Record]] = {
    cls.kind: cls for cls in (ParityRecord, TimingRecord, ComparisonRecord, PerCallRecord, InspectRecord,
                              StudyEpochRecord, StudyRunRecord, BNVarianceShiftRecord, CaseRecord)
}
