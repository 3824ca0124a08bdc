"""Result records: the one long-format schema every command writes and every report reads.

Each measured thing is one flat record (a frozen dataclass turned into a JSON object), so any
table or plot is a group-by away. Every record carries `schema` (bump SCHEMA_VERSION when a field
changes meaning) and `kind`, which says which dataclass it came from.

This module defines the shapes and their JSON round trip (as_dict, from_dict); reading
results.jsonl (RESULTS_FILE) from disk is harness/results/reading.py's. It measures nothing and
touches no file; what a record says in words (a comparison's verdict) is derived from its stored
numbers when read, as torch.utils.benchmark's Measurement derives its statistics from raw times.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from harness import stats

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

    def derived(self) -> dict[str, Any]:
        """What is computed from the stored numbers when read (a verdict, its sentence): written
        under "derived" by the commands' --json, for scripts; never read back (from_dict ignores
        it), so the rules that make it can improve without rewriting stored results."""
        return {}


@dataclass(frozen=True)
class ParityRecord(Record):
    """One parity check between two backends on one model and variant.

    `max_rel_err` is max|a - b| / max|reference| over the tensor (the error relative to the
    tensor's own scale; element-wise ratios blow up at zero crossings). `passed` means
    max_rel_err <= tol (and the two frameworks' float64 results agree); tol = max(a fixed float32
    floor, 2 * (f64_err + other_f64_err)), harness/parity/tolerance.py. An `info` record reports a
    difference that is expected (with its reason in `detail`) and always has passed = True. For
    semantic checks (dropout with p > 0, where masks cannot match) the "error" is the deviation
    from the expected statistic and `backends` names one backend.
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
    other_f64_err: float | None = None  # the other framework's, likewise (None: records before it was measured)
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

    Only numbers are stored (see `ratio` below), over `n_pairs` paired rounds; `noise_floor` is
    the half-width of the session's A/A control (None without one). The verdict and its sentence
    are derived from them when read (harness.stats.verdict), so a report always applies the
    current rules to the stored numbers.
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

    def derived(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "sentence": self.sentence}


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

    @property
    def sentence(self) -> str:
        """The answer in words, e.g. 'torch mlp eager: 3.1 µs per call of dropout=0 (95% CI ...)'."""
        us = 1e6
        where = f"{self.backend} {self.model} {self.mode}"
        interval = f"95% CI {self.ci_low_s * us:.2f} to {self.ci_high_s * us:.2f} µs, {self.processes} processes"
        if self.net_of:
            interval += f"; net of {self.net_of}, timed in the same rounds"
        if self.ci_low_s <= 0.0 <= self.ci_high_s:
            bound = max(abs(self.ci_low_s), abs(self.ci_high_s)) * us
            return (f"{where}: no measurable cost per call of {self.layer}: at most {bound:.2f} µs "
                    f"({bound / us / self.step_s:.3%} of a {self.step_s * 1e3:.2f} ms step; {interval}).")
        return (f"{where}: {self.per_call_s * us:.2f} µs per call of {self.layer}, {self.fraction_of_step:.3%} of a "
                f"{self.step_s * 1e3:.2f} ms step ({interval}).")

    def derived(self) -> dict[str, Any]:
        return {"sentence": self.sentence}


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
    # Per kernel layer after training: {"size", "exact" (fraction exactly 0), "near" (fraction within
    # 1e-6 of the layer's largest |w|)} (harness/study/metrics.py: sparsity); {} in older records.
    sparsity: dict[str, dict[str, float]] = field(default_factory=dict)


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
# The JSON types of a tuple field's items.
_ITEM_TYPES: dict[str, tuple[type, ...]] = {
    "tuple[str, ...]": (str,), "tuple[float, ...]": (int, float), "tuple[int, ...]": (int,),
}


def _checked(f: dataclasses.Field, value: Any) -> Any:
    annotation = str(f.type)
    items = value if annotation.startswith("tuple[") and isinstance(value, (list, tuple)) else [value]
    item_type = _ITEM_TYPES.get(annotation)
    if not isinstance(value, _JSON_TYPES[annotation]) or any(
            isinstance(item, bool) and bool not in (item_type or _JSON_TYPES[annotation])
            or (item_type is not None and not isinstance(item, item_type))
            or (isinstance(item, float) and not math.isfinite(item)) for item in items):
        raise RecordError(f"field {f.name!r} is {json.dumps(value)[:40]}; expected {annotation} (numbers finite)")
    return tuple(value) if isinstance(value, list) else value


RECORD_TYPES: dict[str, type[Record]] = {
    cls.kind: cls for cls in (ParityRecord, TimingRecord, ComparisonRecord, PerCallRecord, InspectRecord,
                              StudyEpochRecord, StudyRunRecord, BNVarianceShiftRecord, CaseRecord)
}
