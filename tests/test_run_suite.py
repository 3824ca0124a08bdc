"""`run`'s planning and its answers to the timing questions, without running anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from backends import backend_class
from harness.results.records import TimingRecord, from_dict
from harness.running.runner import Case
from harness.suite.answers import question_comparisons
from harness.suite.planning import RunRequest, plan_cases
from harness.suite.suites import SUITES
from harness.timing.controls import AA_SUFFIX


def _arm(variant, mode, times, role="arm"):
    label = f"{variant}/{mode}" + (AA_SUFFIX if role == "aa" else "")
    return TimingRecord(
        backend="torch", model="mlp", variant=variant, arm=label, device="cpu", mode=mode, threads=2,
        median_s=float(np.median(times)), iqr_s=0.0, rounds=len(times), steps_per_round=1, setup_s=0.0,
        warmup_s=0.0, params=1, flops_per_step=1, session="s1", role=role, times_s=tuple(times),
        processes=4, process_of_round=tuple(i * 4 // len(times) for i in range(len(times))),  # 4 processes
    ).as_dict()


def test_questions_are_answered_once_per_mode_and_once_across_modes():
    rng = np.random.default_rng(0)
    base = 1e-3 * (1 + 0.01 * rng.standard_normal(20))
    noisy = base * (1 + 0.05 * rng.standard_normal(20))  # the compiled A/A copy is much noisier
    records = [
        _arm("baseline", "eager", base),
        _arm("dropout=absent", "eager", base),
        _arm("dropout=0", "eager", base * 1.10),
        _arm("baseline", "compiled", base * 0.5),
        _arm("dropout=absent", "compiled", base * 0.5),
        _arm("dropout=0", "compiled", base * 0.5),
        _arm("baseline", "eager", base * (1 + 0.001 * rng.standard_normal(20)), role="aa"),
        _arm("baseline", "compiled", noisy * 0.5, role="aa"),
    ]
    case = Case("time/torch/mlp/cpu/eager+compiled", ("x",), 1.0, "x", 1.0)
    found = question_comparisons(case, records)
    keys = sorted((c["question"], c["mode"]) for c in found)
    assert keys == [("compiled_vs_eager", "eager->compiled"),
                    ("dropout_p0_cost", "compiled"), ("dropout_p0_cost", "eager")]
    by_key = {(c["question"], c["mode"]): c for c in found}
    assert from_dict(by_key[("dropout_p0_cost", "eager")]).verdict == "slower"
    assert from_dict(by_key[("compiled_vs_eager", "eager->compiled")]).verdict == "faster"
    eager_floor = by_key[("dropout_p0_cost", "eager")]["noise_floor"]
    compiled_floor = by_key[("dropout_p0_cost", "compiled")]["noise_floor"]
    assert compiled_floor > 5 * eager_floor  # each mode is judged against its own A/A
    assert by_key[("compiled_vs_eager", "eager->compiled")]["noise_floor"] == compiled_floor  # the larger


def test_non_timing_cases_add_nothing():
    assert question_comparisons(Case("parity/mlp", ("x",), 1.0, "x", 1.0), [{"kind": "parity"}]) == []


def test_plan_without_tensorflow_has_no_parity_and_no_tf_cases():
    suite = SUITES["quick"]
    request = RunRequest(suite=suite, backends=("torch",), models=("mlp", "cnn"), variants=suite.timing_variants,
                         devices=("cpu",), modes=suite.modes)
    ids = [case.case_id for case in plan_cases(request)]
    assert ids == ["time/torch/mlp/cpu/eager", "inspect/torch/mlp", "time/torch/cnn/cpu/eager", "inspect/torch/cnn"]
    assert all("{json}" in case.argv for case in plan_cases(request))


def test_resume_hint_repeats_the_users_options():
    from harness.running.session import resume_command

    argv = ["--suite", "quick", "--backends", "torch", "--out", "x/y", "--resume", "--models", "mlp"]
    assert resume_command("run", argv, Path("a b")) == ("python -m harness run --suite quick --backends torch "
                                                       "--models mlp --out 'a b' --resume")
    assert resume_command("study", ["--out=x", "--threads", "1"], Path("x")) == \
        "python -m harness study --threads 1 --out x --resume"


def test_the_local_executor_path_imports_no_ray():
    """`--executor local` (the default) must work without the ray extra and never import it."""
    code = ("import argparse, sys\nfrom harness.cli.main import build_parser\n"
            "from harness.running.session import make_executor\n"
            "args = build_parser().parse_args(['run', '--suite', 'quick'])\n"
            "executor = make_executor(args.executor, args.ray_address, args.threads)\n"
            "assert (args.executor, executor.name) == ('local', 'local') and executor.threads >= 1\n"
            "assert 'ray' not in sys.modules, 'ray was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_per_call_case_a_backend_cannot_measure_is_planned_as_skipped_with_its_reason():
    suite = SUITES["default"]
    request = RunRequest(suite=suite, backends=("torch", "keras_torch"), models=("mlp",),
                         variants=suite.timing_variants, devices=("cpu",), modes=("eager", "compiled"))
    reasons = {case.case_id: case.skip_reason for case in plan_cases(request) if case.case_id.startswith("percall/")}
    why = backend_class("keras_torch").PERCALL_UNMEASURABLE["compiled"]

    assert {case_id for case_id, reason in reasons.items() if reason} == {
        "percall/keras_torch/mlp/compiled/dropout=0", "percall/keras_torch/mlp/compiled/activation=linear"}
    assert {reasons["percall/keras_torch/mlp/compiled/dropout=0"]} == {why} and "recompile limit" in why
