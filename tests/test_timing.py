"""Timing machinery without wall-time assertions: a fake backend records what ran, in what order."""

from __future__ import annotations

import re

import pytest

from backends.base import Availability, Backend, Model
from harness.errors import HarnessInputError
from harness.model.spec import PRESETS, model_cost
from harness.model.variants import Arm, parse_variant, variant_arms
from harness.timing.controls import compare_against_first
from harness.timing.session import SpecSubject, TimingPlan, measure


def _plan(variants, *args, spec=PRESETS["mlp"], **kwargs) -> TimingPlan:
    """A TimingPlan whose arms are these variants of `spec` (each parsed once, as the CLI does)."""
    return TimingPlan(variant_arms(spec, [parse_variant(text) for text in variants]), *args, **kwargs)



class _FakeModel(Model):
    """Times nothing: each step appends the model's label to the backend's log."""

    def __init__(self, spec, mode, log):
        super().__init__(spec, mode)
        self.log, self.label = log, f"{spec.name}/{mode}"
        self.optimizer = object()

    def timed_step(self, x, y):
        return lambda: self.log.append(self.label)

    def _unused(self, *args):
        raise AssertionError("timing must only call timed_step")

    get_weights = _load_weights = forward = layer_input = loss = gradients = apply_gradients = train_step = _unused
    graph_counts = _unused


class _FakeBackend(Backend):
    name = "fake"
    MODES = ("eager", "compiled")
    DEVICES = ("cpu",)

    @classmethod
    def availability(cls):
        return Availability(True)

    def _configure(self, device, threads):
        self.log = []

    def _build(self, spec, mode, dtype):
        return _FakeModel(spec, mode, self.log)

    def settings(self):
        return {"intra_op_threads": 2, "tf32": False}

    def dropout_probe(self, rate, x, training):
        raise AssertionError("timing must not probe dropout")


def _measure_fake(spec, plan, *args, **options):
    backend = _FakeBackend()
    return measure(backend, SpecSubject(backend, spec), plan, *args, **options)


def test_arms_roles_and_pairing():
    backend = _FakeBackend()
    plan = _plan(("dropout=absent", "dropout=0"), ("eager",), rounds=6, steps=2, warmup=1, aa=True, inject=0.05)
    records = measure(backend, SpecSubject(backend, PRESETS["mlp"]), plan, "cpu", 2)
    assert [r.arm for r in records] == ["dropout=absent/eager", "dropout=0/eager",
                                        "dropout=absent/eager (A/A copy)", "dropout=absent/eager (+5% injected)"]
    assert [r.role for r in records] == ["arm", "arm", "aa", "injected"]
    assert len({r.session for r in records}) == 1
    assert all(len(r.times_s) == 6 and r.steps_per_round == 2 for r in records)
    assert records[3].injected_slowdown == 0.05
    assert all(r.settings == {"intra_op_threads": 2, "tf32": False} for r in records)


def test_every_round_runs_every_arm_once_in_a_varying_order():
    backend = _FakeBackend()
    variants = ("dropout=absent", "dropout=0", "bn=before", "bn=after")
    plan = _plan(variants, rounds=20, steps=1, warmup=0)
    measure(backend, SpecSubject(backend, PRESETS["mlp"]), plan, "cpu", 2)
    timed = backend.log[-80:]  # 20 rounds x 4 arms x 1 step, after the first calls and calibration
    rounds = [timed[i:i + 4] for i in range(0, 80, 4)]
    assert all(len(set(r)) == 4 for r in rounds)
    assert len({r[0] for r in rounds}) == 4  # every arm gets to go first
    assert len({tuple(r) for r in rounds}) > 5


def test_comparisons_use_the_aa_floor_and_name_the_controls():
    plan = _plan(("baseline", "dropout=0"), rounds=5, steps=1, warmup=0, aa=True, inject=0.05)
    records = _measure_fake(PRESETS["mlp"], plan, "cpu", 2)
    comparisons = compare_against_first(records)
    assert [c.question for c in comparisons] == ["", "aa_control", "injected_control"]
    assert [c.a for c in comparisons] == ["baseline/eager"] * 3  # controls against their base
    assert len({c.noise_floor for c in comparisons}) == 1 and comparisons[0].noise_floor is not None


def test_each_mode_gets_its_own_controls():
    plan = _plan(("baseline", "dropout=0"), ("eager", "compiled"), rounds=4, steps=1, warmup=0, aa=True,
                      inject=0.05)
    records = _measure_fake(PRESETS["mlp"], plan, "cpu", 2)
    controls = [(r.arm, r.role) for r in records if r.role != "arm"]
    assert controls == [("baseline/eager (A/A copy)", "aa"), ("baseline/eager (+5% injected)", "injected"),
                        ("baseline/compiled (A/A copy)", "aa"), ("baseline/compiled (+5% injected)", "injected")]
    comparisons = {c.b: c for c in compare_against_first(records)}
    assert comparisons["baseline/compiled (A/A copy)"].a == "baseline/compiled"


def test_reference_loop_needs_the_mlp_baseline():
    plan = _plan(("dropout=0",), reference_loop=True)
    with pytest.raises(HarnessInputError, match="reference-loop"):
        _measure_fake(PRESETS["mlp"], plan, "cpu", 2)
    with pytest.raises(HarnessInputError, match="reference-loop"):
        _measure_fake(PRESETS["cnn"], _plan(("baseline",), reference_loop=True), "cpu", 2)


def test_model_cost_of_the_mlp_by_hand():
    params, flops = model_cost(PRESETS["mlp"])
    assert params == 784 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10
    assert flops == 3 * 2 * (784 * 512 + 512 * 256 + 256 * 10) * 32


class _InstanceModel(_FakeModel):
    """A fake model that knows which build it was: each step logs (arm label, build number)."""

    def __init__(self, spec, mode, log, number):
        super().__init__(spec, mode, log)
        self.number = number

    def timed_step(self, x, y):
        return lambda: self.log.append((self.label, self.number))


class _CountingBackend(_FakeBackend):
    """Records every build, in order."""

    def _configure(self, device, threads):
        super()._configure(device, threads)
        self.builds = []

    def _build(self, spec, mode, dtype):
        self.builds.append(f"{spec.name}/{mode}")
        return _InstanceModel(spec, mode, self.log, len(self.builds))


TWO_ARMS = ("dropout=absent", "dropout=0")


def _three_instances(rounds: int, steps: int = 1) -> TimingPlan:
    """Two arms, three instances each; short calibration of steps (the fake steps cost nothing)."""
    return _plan(TWO_ARMS, rounds=rounds, steps=steps, warmup=0, instances=3, round_s=0.001)


def test_instances_are_built_per_arm_in_an_interleaved_order():
    orders = []
    for seed in range(5):
        backend = _CountingBackend()
        measure(backend, SpecSubject(backend, PRESETS["mlp"]), _three_instances(rounds=3), "cpu", 2, seed=seed)
        assert sorted(backend.builds) == ["mlp[dropout=0]/eager"] * 3 + ["mlp[dropout=absent]/eager"] * 3
        orders.append(tuple(backend.builds))
    arm_by_arm = {tuple(["mlp[dropout=absent]/eager"] * 3 + ["mlp[dropout=0]/eager"] * 3),
                  tuple(["mlp[dropout=0]/eager"] * 3 + ["mlp[dropout=absent]/eager"] * 3)}
    assert any(order not in arm_by_arm for order in orders), orders
    assert len(set(orders)) > 1  # the seed drives the order


def test_each_round_runs_one_instance_chosen_at_random():
    backend = _CountingBackend()
    rounds, steps = 30, 2
    records = measure(backend, SpecSubject(backend, PRESETS["mlp"]), _three_instances(rounds, steps), "cpu", 2)
    timed = backend.log[-rounds * len(TWO_ARMS) * steps:]
    runs = [timed[i:i + steps] for i in range(0, len(timed), steps)]  # one arm's steps in one round
    assert all(len(set(run)) == 1 for run in runs), "a round mixed instances"
    for record in records:
        label = f"mlp[{record.variant}]/{record.mode}"  # what its fake models log
        own = {number for number, built in enumerate(backend.builds, start=1) if built == label}
        used = [run[0][1] for run in runs if run[0][0] == label]
        assert len(own) == 3 and len(used) == rounds, record.arm
        assert set(used) <= own, f"{record.arm} ran another arm's instance"
        assert len(set(used)) > 1, f"{record.arm}: one instance in all {rounds} rounds"


@pytest.mark.parametrize("rounds", [1, 7])
def test_rounds_process_session_and_instances_are_recorded(rounds):
    records = _measure_fake(PRESETS["mlp"], _three_instances(rounds), "cpu", 2, process=4, session="abc")
    for record in records:
        assert record.rounds == rounds and len(record.times_s) == rounds
        assert record.processes == 1 and record.process_of_round == (4,) * rounds
        assert record.instances == 3 and record.session == "abc"


@pytest.mark.parametrize("variants, named", [
    pytest.param(("dropout=0", "dropout=0"), "dropout=0/eager", id="same-text"),
    pytest.param(("no-dropout", "dropout=absent"), "dropout=absent/eager", id="two-spellings"),
])
def test_a_variant_given_twice_is_refused(variants, named):
    backend = _CountingBackend()
    with pytest.raises(HarnessInputError, match=f"{re.escape(named)} given twice"):
        measure(backend, SpecSubject(backend, PRESETS["mlp"]), _plan(variants, rounds=2, steps=1, warmup=0), "cpu", 2)
    assert backend.builds == []  # refused before anything is built


def test_a_named_spec_given_twice_is_refused():
    named = (Arm("k", PRESETS["mlp"]), Arm("k", PRESETS["mlp"]))
    with pytest.raises(HarnessInputError, match="k/eager given twice"):
        _measure_fake(PRESETS["mlp"], TimingPlan(named, rounds=2), "cpu", 2)
