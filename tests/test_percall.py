"""`harness percall`: the layer argument, the k-copy specs, the dose-response estimate, the
busy-wait layer of known cost, and one small run of the command. No assertion on wall time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import harness.model.spin
from harness.errors import HarnessInputError
from harness.model.layers import Activation, BatchNorm, BusyWait, Dropout
from harness.model.spec import PRESETS, infer_shapes
from harness.results.records import PerCallRecord, TimingRecord, from_dict
from harness.timing.percall import parse_layer_arg, per_call_estimate, with_copies

REPO = Path(__file__).resolve().parents[1]
HANG_GUARD_S = 300


@pytest.mark.parametrize("text, layer", [
    ("dropout=0", Dropout(0.0)),
    ("busywait=20", BusyWait(20.0)),
    ("activation=linear", Activation("linear")),
    ("batchnorm=0.9", BatchNorm(momentum=0.9)),
    ('{"type": "batchnorm", "epsilon": 1e-5}', BatchNorm(epsilon=1e-5)),
    ('{"type": "dropout", "rate": 0.5}', Dropout(0.5)),
])
def test_parse_layer_arg(text, layer):
    assert parse_layer_arg(text) == layer


@pytest.mark.parametrize("text, fragments", [
    pytest.param("dense=3", ["'dense=3'", "changes its input's shape", "dropout, activation, batchnorm, busywait"],
                 id="dense-not-stackable"),
    pytest.param('{"type": "dense", "units": 3}',
                 ['"dense"', "only a layer that keeps its input's shape can be stacked"],
                 id="json-dense-not-stackable"),
    pytest.param('{"type": "flatten"}', ['"flatten"', "can be stacked"], id="json-flatten-not-stackable"),
    pytest.param("dropout=x", ["'dropout=x'", "'x' is not a number"], id="rate-not-a-number"),
    pytest.param("dropout=1.5", ["--layer.rate: 1.5 is not in [0, 1)"], id="rate-out-of-range"),
    pytest.param("busywait=-1", ["--layer.microseconds: -1 is not in [0, "], id="microseconds-negative"),
    pytest.param("activation=wobble", ["'wobble'", "relu"], id="activation-unknown"),
    pytest.param("dropout=", ["'dropout='"], id="no-value"),
    pytest.param("{bad", ["'{bad'", "not valid JSON"], id="bad-json"),
    pytest.param('{"type": "dropout", "rate": 0, "wobble": 1}', ["unknown field 'wobble'"], id="json-unknown-field"),
])
def test_parse_layer_arg_refuses_naming_the_value(text, fragments):
    with pytest.raises(HarnessInputError) as caught:
        parse_layer_arg(text)
    message = str(caught.value)
    assert message.startswith("--layer"), message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("model", ["mlp", "cnn"])
@pytest.mark.parametrize("copies", [0, 1, 5])
def test_with_copies_inserts_right_after_the_first_layer(model, copies):
    spec = PRESETS[model]
    layer = Dropout(0.0)

    found = with_copies(spec, layer, copies)

    assert found.layers[0] == spec.layers[0]
    assert found.layers[1:1 + copies] == (layer,) * copies
    assert found.layers[1 + copies:] == spec.layers[1:]
    assert found.name == spec.name and found.optimizer == spec.optimizer and found.input_shape == spec.input_shape
    shapes, base = infer_shapes(found), infer_shapes(spec)
    assert shapes.outputs[1:1 + copies] == (base.outputs[0],) * copies  # every copy keeps the first layer's shape
    assert shapes.outputs[-1] == (spec.num_classes,)
    if copies == 0:
        assert found.layers == spec.layers


def _timing(arm: str, times: np.ndarray, processes: list[int]) -> TimingRecord:
    return TimingRecord(
        backend="fake", model="mlp", variant=arm, arm=arm, device="cpu", mode="eager", threads=2,
        median_s=float(np.median(times)), iqr_s=0.0, rounds=len(times), steps_per_round=1, setup_s=0.0,
        warmup_s=0.0, params=0, flops_per_step=0, session="s", times_s=tuple(float(t) for t in times),
        processes=len(set(processes)), process_of_round=tuple(processes), instances=1)


def test_per_call_estimate_recovers_a_known_slope():
    rng = np.random.default_rng(7)
    copies, per_call, rounds = (0, 32, 64, 128), 3e-6, 20
    processes = [p for p in range(3) for _ in range(rounds)]
    # Each process has its own speed and every round its own drift, shared by the arms of the round.
    base = 1e-3 * (1 + np.repeat(rng.normal(0, 0.05, 3), rounds)) + rng.normal(0, 2e-5, 3 * rounds)
    records = [_timing(f"{k} x dropout=0", base + k * per_call + rng.normal(0, 2e-6, 3 * rounds), processes)
               for k in copies]

    found = per_call_estimate(records, copies)

    assert found.ci_low <= per_call <= found.ci_high, found
    assert found.ci_high - found.ci_low < 0.2 * per_call, found  # drift cancels: the CI is narrow
    assert len(found.process_values) == 3
    reversed_found = per_call_estimate(records[::-1], copies[::-1])  # the records follow `copies`, in any order
    assert reversed_found.value == pytest.approx(found.value)


def test_per_call_estimate_net_of_a_reference_layer_subtracts_its_slope():
    rng = np.random.default_rng(9)
    copies, overhead, spin, rounds = (0, 32, 64, 128), 280e-6, 100e-6, 20
    processes = [p for p in range(4) for _ in range(rounds)]
    base = 40e-3 * (1 + np.repeat(rng.normal(0, 0.02, 4), rounds)) + rng.normal(0, 2e-4, 4 * rounds)
    layer = [_timing(f"{k} x busywait=100", base + k * (overhead + spin) + rng.normal(0, 2e-5, 4 * rounds), processes)
             for k in copies]
    reference = [_timing(f"{k} x busywait=0", base + k * overhead + rng.normal(0, 2e-5, 4 * rounds), processes)
                 for k in copies[1:]]

    net = per_call_estimate(layer + reference, copies, reference=True)
    gross = per_call_estimate(layer + reference, copies)

    assert net.ci_low <= spin <= net.ci_high and net.ci_high - net.ci_low < 0.2 * spin, net
    assert gross.ci_low <= overhead + spin <= gross.ci_high, gross  # only the layer's own arms
    with pytest.raises(ValueError):
        per_call_estimate(layer + reference[:1], copies, reference=True)  # a reference arm missing


def _per_call(per_call_s: float, ci_low_s: float, ci_high_s: float) -> PerCallRecord:
    return PerCallRecord(backend="torch", model="mlp", mode="eager", layer="dropout=0", per_call_s=per_call_s,
                         ci_low_s=ci_low_s, ci_high_s=ci_high_s, step_s=1e-3, fraction_of_step=per_call_s / 1e-3,
                         copies=(0, 32, 64, 128), processes=3, session="s")


def test_sentence_gives_the_cost_or_its_bound():
    measured = _per_call(3.1e-6, 2.5e-6, 3.7e-6).sentence
    assert "3.10 µs per call of dropout=0" in measured and "0.310% of a 1.00 ms step" in measured
    assert "95% CI 2.50 to 3.70 µs, 3 processes" in measured
    bounded = _per_call(0.2e-6, -0.5e-6, 0.9e-6).sentence
    assert "no measurable cost per call of dropout=0: at most 0.90 µs" in bounded and "µs per call" not in bounded


def test_busywait_is_refused_in_compiled_mode_before_anything_runs():
    from harness.timing.percall import LayerArg, check_per_call

    with pytest.raises(HarnessInputError, match=r"--layer busywait=20: .*eager.*\(not compiled\)"):
        check_per_call(LayerArg.parse("busywait=20"), None, "compiled", (0, 32))
    with pytest.raises(HarnessInputError, match="--copies 5: needs at least two different counts"):
        check_per_call(LayerArg.parse("dropout=0"), None, "eager", (5, 5))


def test_busywait_is_the_identity_that_spins_in_torch(backend_factory, monkeypatch):
    from backends import _torch_layers

    backend = backend_factory("torch")
    torch = backend.torch
    spun = []
    monkeypatch.setattr(harness.model.spin, "spin", spun.append)
    module, pad, _ = _torch_layers.BUILDERS[BusyWait](torch, (8,), BusyWait(20.0))
    x = torch.randn(4, 8)

    assert pad is None
    assert torch.equal(module(x), x)
    assert spun == [pytest.approx(20e-6)]
    # In a model: the same weights and outputs as without the copies, one spin per copy per forward.
    spun.clear()
    batch = np.random.default_rng(0).normal(size=(4, 784)).astype(np.float32)
    plain = backend.build(PRESETS["mlp"])
    stacked = backend.build(with_copies(PRESETS["mlp"], BusyWait(20.0), 3))
    np.testing.assert_array_equal(stacked.forward(batch, training=False), plain.forward(batch, training=False))
    assert len(spun) == 3


def test_busywait_is_the_identity_that_spins_in_keras(backend_factory, monkeypatch):
    from backends import _keras_layers

    backend = backend_factory("tensorflow")
    spun = []
    monkeypatch.setattr(harness.model.spin, "spin", spun.append)
    layer = _keras_layers.BUILDERS[BusyWait](backend.keras, BusyWait(20.0), 0, 0)
    x = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)

    np.testing.assert_array_equal(np.asarray(layer(x)), x)
    assert spun == [pytest.approx(20e-6)]


@pytest.mark.slow
def test_percall_command_recovers_its_records(tmp_path):
    out = tmp_path / "pc.json"
    command = [sys.executable, "-m", "harness", "percall", "--backend", "torch", "--layer", "busywait=200",
               "--copies", "0,16", "--rounds", "10", "--instances", "1", "--min-processes", "3",
               "--max-processes", "3", "--warmup", "1", "--json", str(out)]
    done = subprocess.run(command, cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=HANG_GUARD_S, check=False)

    assert done.returncode == 0, done.stderr
    written = json.loads(out.read_text(encoding="utf-8"))
    records = [from_dict(data) for data in written]
    timings = [r for r in records if isinstance(r, TimingRecord)]
    per_call = [r for r in records if isinstance(r, PerCallRecord)]
    assert len(records) == 3 and len(timings) == 2 and len(per_call) == 1
    assert [t.arm for t in timings] == ["0 x busywait=200/eager", "16 x busywait=200/eager"]
    assert all(t.processes == 3 and t.rounds == 30 and t.instances == 1 for t in timings)
    assert all(sorted(set(t.process_of_round)) == [0, 1, 2] for t in timings)
    assert timings[0].session == timings[1].session
    record = per_call[0]
    assert record.expected_per_call_s == pytest.approx(2e-4)
    assert record.processes == 3 and record.copies == (0, 16) and record.layer == "busywait=200"
    assert len(record.process_per_call_s) == 3
    assert record.ci_low_s <= record.per_call_s <= record.ci_high_s
    assert record.step_s == timings[0].median_s
    assert record.fraction_of_step == pytest.approx(record.per_call_s / record.step_s)
    assert record.session == timings[0].session
    # The printed answer is the record's sentence: "µs per call" where the CI excludes 0 (a loaded
    # machine can widen it past 0: then the bound is printed, "no measurable cost per call").
    assert record.sentence in done.stdout, done.stdout
    assert written[-1]["derived"] == {"sentence": record.sentence}  # for scripts, beside the stored numbers
    assert all("derived" not in data for data in written[:-1])  # timings derive nothing
    assert ("µs per call of busywait=200" in done.stdout) == (record.ci_low_s > 0 or record.ci_high_s < 0)
