"""Timing a user's own model pair (#22): each framework's side timed by the session that times spec
arms, the sides compared per mode without pairing (their processes are the observations)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from harness import stats
from harness.model.variants import Arm
from harness.ported.pair import PairSource
from harness.ported.timing import PortedSubject, side_label
from harness.results.records import TimingRecord
from harness.timing.controls import FRAMEWORK, framework_comparisons
from harness.timing.session import TimingPlan, measure

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TEXT = PairSource("examples.text_classifier:make_torch", "examples.text_classifier:make_keras", (40,), 10,
                  input_ints=1000)


def _rounds(rng, median: float, processes: int, per_process: int = 40, spread: float = 0.02):
    """Per-round times around `median`, each process shifted by its own layout offset."""
    times, ids = [], []
    for process in range(processes):
        offset = rng.normal(0.0, spread)
        times += list(median * np.exp(offset + rng.normal(0.0, 0.01, per_process)))
        ids += [process] * per_process
    return np.array(times), np.array(ids)


def test_an_unpaired_ratio_recovers_a_known_ratio_within_its_ci():
    rng = np.random.default_rng(3)
    covered = 0
    for _ in range(40):
        a, a_ids = _rounds(rng, 1e-3, processes=5)
        b, b_ids = _rounds(rng, 1.25e-3, processes=4)
        found = stats.unpaired_across_processes(a, a_ids, b, b_ids)
        covered += found.ci_low <= 1.25 <= found.ci_high
        assert found.processes == 4 and found.n_pairs == 160
    assert covered >= 34  # a 95% interval: 38 of 40 expected, 34 is far in the tail


def test_the_unpaired_ci_counts_processes_not_rounds():
    """Process offsets of ±2% with 1% round noise: a bootstrap over rounds would claim ±0.1%."""
    rng = np.random.default_rng(5)
    a, a_ids = _rounds(rng, 1e-3, processes=4, per_process=400)
    b, b_ids = _rounds(rng, 1e-3, processes=4, per_process=400)
    found = stats.unpaired_across_processes(a, a_ids, b, b_ids)
    rounds_only = stats.unpaired_ratio(a, b)
    assert found.ci_half_width > 3 * rounds_only.ci_half_width


def test_one_process_on_a_side_gives_no_verdict():
    rng = np.random.default_rng(1)
    a, a_ids = _rounds(rng, 1e-3, processes=3)
    b, b_ids = _rounds(rng, 2e-3, processes=1)
    found = stats.unpaired_across_processes(a, a_ids, b, b_ids)
    assert found.processes == 1 and found.ci_high == np.inf
    assert stats.verdict("torch", "keras", found, None).label == stats.TOO_FEW_PROCESSES


def _record(backend: str, mode: str, times, ids) -> TimingRecord:
    return TimingRecord(backend=backend, model="pair", variant=side_label(backend), arm=f"{side_label(backend)}/{mode}",
                        device="cpu", mode=mode, threads=2, median_s=float(np.median(times)), iqr_s=0.0,
                        rounds=len(times), steps_per_round=1, setup_s=0.0, warmup_s=0.0, params=1, flops_per_step=0,
                        session=backend, times_s=tuple(times), process_of_round=tuple(int(i) for i in ids),
                        processes=len(set(ids)))


def test_each_mode_compares_the_other_framework_with_the_first():
    rng = np.random.default_rng(2)
    records = [_record("torch", mode, *_rounds(rng, 1e-3, 3)) for mode in ("eager", "compiled")]
    records += [_record("tensorflow", mode, *_rounds(rng, factor * 1e-3, 3))
                for mode, factor in (("eager", 10.0), ("compiled", 1.0))]
    eager, compiled = framework_comparisons(records)
    assert (eager.mode, eager.a, eager.b, eager.question) == ("eager", "torch/eager", "keras on tensorflow/eager",
                                                               FRAMEWORK)
    assert eager.verdict == stats.SLOWER and 9.0 < eager.ratio < 11.0
    assert compiled.a == "torch/compiled" and compiled.ci_low < 1.0 < compiled.ci_high


@pytest.mark.parametrize("backend_name", ["torch", "tensorflow"])
def test_a_sides_step_trains_the_users_model_and_is_timed_per_mode(backend_name):
    from backends import create_backend

    backend = create_backend(backend_name, threads=2)
    subject = PortedSubject(backend, TEXT)
    model = subject.build(SimpleNamespace(mode="eager"))  # what a session's arm gives it
    def weights():
        if backend_name == "torch":
            return [w.detach().numpy().copy() for w in model.module.state_dict().values()]
        return model.model.get_weights()

    before = weights()
    model.timed_step(*subject.batch())()
    after = weights()
    assert any(not np.array_equal(b, a) for b, a in zip(before, after, strict=True))

    plan = TimingPlan(arms=(Arm(side_label(backend_name), None),), modes=("eager",), rounds=3, steps=1, warmup=0,
                      instances=1)
    (record,) = measure(backend, subject, plan, "cpu", 2)
    assert record.arm == f"{side_label(backend_name)}/eager" and record.model == "examples.text_classifier"
    assert record.rounds == 3 and all(t > 0 for t in record.times_s)
    assert record.optimizer_class.rsplit(".", 1)[-1] == "SGD"
    from examples import text_classifier

    expected = (sum(p.numel() for p in text_classifier.make_torch().parameters()) if backend_name == "torch"
                else text_classifier.make_keras().count_params())
    assert record.params == expected


@pytest.mark.slow
def test_time_of_your_own_models_through_the_cli(tmp_path):
    out = tmp_path / "t.json"
    done = subprocess.run([sys.executable, "-m", "harness", "time", "--torch", TEXT.torch, "--keras", TEXT.keras,
                           "--input-shape", "40", "--input-ints", "1000", "--classes", "10", "--mode", "eager",
                           "--mode", "compiled", "--rounds", "12", "--instances", "1", "--min-processes", "3",
                           "--max-processes", "3", "--json", str(out)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    records = json.loads(out.read_text())
    timings = [r for r in records if r["kind"] == "timing"]
    assert [(r["backend"], r["arm"]) for r in timings] == [
        ("torch", "torch/eager"), ("torch", "torch/compiled"),
        ("tensorflow", "keras on tensorflow/eager"), ("tensorflow", "keras on tensorflow/compiled")]
    across = [r for r in records if r["kind"] == "comparison" and r["question"] == FRAMEWORK]
    assert [(r["mode"], r["a"], r["b"]) for r in across] == [
        ("eager", "torch/eager", "keras on tensorflow/eager"),
        ("compiled", "torch/compiled", "keras on tensorflow/compiled")]
    assert all(r["processes"] == 3 and r["derived"]["sentence"] in done.stdout for r in across)


def test_a_pair_is_timed_on_torch_and_tensorflow_only():
    done = subprocess.run([sys.executable, "-m", "harness", "time", "--torch", TEXT.torch, "--keras", TEXT.keras,
                           "--input-shape", "40", "--input-ints", "1000", "--classes", "10", "--backend", "jax"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--backend jax: a pair given with --torch/--keras is timed on torch or tensorflow" in done.stderr
