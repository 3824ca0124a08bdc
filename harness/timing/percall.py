"""Per-call cost of a layer that should be free, by dose-response.

A step-level A/B test can only bound a cost of a few microseconds in a millisecond step ("at
most 1%"). Instead, k copies of the layer are inserted after the model's first layer (k = 0, 32,
64, 128 by default: a Dropout with rate 0 is numerically the identity, so stacking copies changes
only the cost), the k-arms are timed interleaved and replicated across processes exactly as
`harness time` does (harness/timing/replication.py), and the slope of step time against k is the
marginal cost of one call, with a 95% CI across processes (harness/stats.py: dose_response).

A layer that only works as the identity may be stacked; one that changes the shape (dense,
conv2d, flatten, maxpool2d) cannot be and is refused. The BusyWait layer (a known cost) checks
the method: `harness calibrate` recovers it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness import stats
from harness.errors import HarnessInputError
from harness.model.layers import LAYER_TYPES, BusyWait, Layer, parse_layer
from harness.model.spec import ModelSpec, check_spec
from harness.model.variants import Arm
from harness.results.records import PerCallRecord, TimingRecord
from harness.timing.replication import Replicated, run_replicated
from harness.timing.request import TimingRequest

# A slope is most precise with doses far apart; the middle doses check that the cost is linear.
DEFAULT_COPIES = (0, 32, 64, 128)
STACKABLE = ("dropout", "activation", "batchnorm", "busywait")  # keep the shape: copies can follow each other
# One instance per dose by default (`time`: 8 per arm). A slope varies between processes however
# many instances a process holds (layout, hash seeds: the CI over processes carries it), and 8
# instances of 4 arms up to 129 layers deep take seconds to build, so processes buy more than
# instances here (README, "How the numbers can be trusted", has the measurement).
PERCALL_INSTANCES = 1
# `--layer TYPE=VALUE`: the one field VALUE sets, per type.
MAIN_FIELD = {"dropout": "rate", "activation": "activation", "busywait": "microseconds", "batchnorm": "momentum"}


def parse_layer_arg(text: str, where: str = "--layer") -> Layer:
    """A layer from 'TYPE=VALUE' (dropout=0, busywait=20, activation=linear) or a JSON object
    ('{"type": "batchnorm", "epsilon": 1e-5}'), checked as a spec's layer is."""
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise HarnessInputError(f"{where}: {text!r} is not valid JSON ({exc})") from None
    else:
        kind, _, value = text.partition("=")
        if kind in LAYER_TYPES and kind not in STACKABLE:
            raise HarnessInputError(f"{where}: {text!r}: a {kind} layer changes its input's shape, so copies cannot "
                                    f"follow each other; stack one of {', '.join(STACKABLE)}")
        if kind not in MAIN_FIELD or not value:
            raise HarnessInputError(f"{where}: {text!r}: expected TYPE=VALUE with TYPE one of "
                                    f"{', '.join(MAIN_FIELD)} (e.g. dropout=0), or a JSON layer object")
        field = MAIN_FIELD[kind]
        data = {"type": kind, field: value if field == "activation" else _number(value, f"{where} {text!r}")}
    kind = data.get("type") if isinstance(data, dict) else None
    if kind not in STACKABLE:
        raise HarnessInputError(f"{where}: {text!r}: only a layer that keeps its input's shape can be stacked "
                                f"({', '.join(STACKABLE)})")
    return parse_layer(LAYER_TYPES[kind], data, where)


def _number(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise HarnessInputError(f"{where}: {text.split('=')[-1]!r} is not a number") from None


def with_copies(spec: ModelSpec, layer: Layer, copies: int) -> ModelSpec:
    """The spec with `copies` of `layer` right after its first layer."""
    layers = (spec.layers[0], *([layer] * copies), *spec.layers[1:])
    found = spec.with_layers(layers, name=spec.name)
    check_spec(found, f"{spec.name} with {copies} x {layer.type}")
    return found


def arm_label(copies: int, layer_text: str) -> str:
    return f"{copies} x {layer_text}"


def per_call_estimate(records: Sequence[TimingRecord], copies: Sequence[int],
                      reference: bool = False) -> stats.Estimate:
    """The slope of step time against copies, from one session's arms: the layer's arms in
    `copies` order, then (with `reference`) the reference layer's arms for the copies above 0,
    whose slope is subtracted (both share the arm without copies)."""
    times = {k: record.times_s for k, record in zip(copies, records[:len(copies)], strict=True)}
    if not reference:
        return stats.dose_response(times, records[0].process_of_round)
    reference_times = {copies[0]: records[0].times_s,
                       **{k: record.times_s for k, record in zip(copies[1:], records[len(copies):], strict=True)}}
    return stats.dose_response_difference(times, reference_times, records[0].process_of_round)


@dataclass(frozen=True)
class LayerArg:
    """A --layer (or --net-of) value, parsed once: its text (the arms' labels) and its layer."""

    text: str
    layer: Layer

    @classmethod
    def parse(cls, text: str, where: str = "--layer") -> LayerArg:
        return cls(text, parse_layer_arg(text, where))


def check_per_call(layer: LayerArg, net_of: LayerArg | None, mode: str, copies: Sequence[int]) -> None:
    """Refuse a per-call measurement that cannot mean anything, before anything runs."""
    for flag, arg in (("--layer", layer), ("--net-of", net_of)):
        if arg is not None and isinstance(arg.layer, BusyWait) and mode != "eager":
            raise HarnessInputError(f"{flag} {arg.text}: a busy-wait layer spins in Python, which only an eager "
                                    f"step runs on every call; use --mode eager (not {mode})")
    distinct = sorted(set(copies))
    if len(distinct) < 2:
        raise HarnessInputError(f"--copies {','.join(map(str, distinct))}: needs at least two different counts")


def measure_per_call(request: TimingRequest, layer: LayerArg, copies: Sequence[int] = DEFAULT_COPIES,
                     net_of: LayerArg | None = None,
                     progress: Callable[[str], None] = lambda message: None) -> tuple[PerCallRecord, Replicated]:
    """Time the request's spec with each number of copies of the layer, in the request's one mode;
    the per-call cost with its CI. `request.replication.precision` is the target CI half-width of
    the per-call cost, in seconds. With `net_of` (another layer), copies of that one are timed in
    the same rounds and its per-call cost is subtracted: e.g. busywait=100 net of busywait=0 is the
    spin alone, without the framework's own cost of calling a layer (about 280 µs per call in
    Keras eager, a few µs in torch eager)."""
    mode, spec = request.plan.modes[0], request.spec
    copies = tuple(sorted(set(copies)))
    check_per_call(layer, net_of, mode, copies)
    arms = [Arm(arm_label(k, layer.text), with_copies(spec, layer.layer, k)) for k in copies]
    if net_of is not None:
        arms += [Arm(arm_label(k, net_of.text), with_copies(spec, net_of.layer, k)) for k in copies[1:]]
    request = request.with_plan(arms=tuple(arms), modes=(mode,), aa=False, inject=0.0, reference_loop=False)

    def precision_of(records: list[TimingRecord]) -> float:
        found = per_call_estimate(records, copies, net_of is not None)
        return max(found.value - found.ci_low, found.ci_high - found.value)

    found = run_replicated(request, precision_of, progress)
    estimate = per_call_estimate(found.records, copies, net_of is not None)
    base = found.records[0]
    expected = (_known_cost(layer.layer) - (_known_cost(net_of.layer) if net_of else 0.0)
                if isinstance(layer.layer, BusyWait) else None)
    return PerCallRecord(
        backend=request.backend.name, model=spec.name, mode=mode, layer=layer.text, per_call_s=estimate.value,
        ci_low_s=estimate.ci_low, ci_high_s=estimate.ci_high, step_s=base.median_s,
        fraction_of_step=estimate.value / base.median_s, copies=copies, processes=base.processes,
        session=base.session, device=request.device, threads=request.threads,
        process_per_call_s=estimate.process_values, expected_per_call_s=expected,
        elapsed_s=found.elapsed_s, net_of=net_of.text if net_of else "",
    ), found


def _known_cost(layer: Layer) -> float:
    return layer.microseconds * 1e-6 if isinstance(layer, BusyWait) else 0.0
