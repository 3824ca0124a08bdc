"""A run folder's plan.json: a resume continues the same plan or is refused, naming the difference."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessInputError
from harness.running.case import Case
from harness.running.plan_file import PLAN_FILE, RunPlan, settle_plan
from harness.running.session import check_run_folder
from harness.suite.planning import RunRequest, plan_cases
from harness.suite.suites import SUITES

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def case(case_id: str, *argv: str) -> Case:
    return Case(case_id, tuple(argv), timeout_s=10.0, label=case_id, expected_s=1.0)


def plan(*cases: Case, command: str = "run", threads: int | None = 2) -> RunPlan:
    return RunPlan.of(command, threads, cases)


def suite_plan(suite: str, backends=("torch",)) -> RunPlan:
    """The plan `run --suite SUITE --backends ... --models mlp` makes."""
    chosen = SUITES[suite]
    request = RunRequest(suite=chosen, backends=backends, models=("mlp",),
                         variants=tuple(chosen.timing_variants), devices=("cpu",), modes=tuple(chosen.modes))
    return RunPlan.of("run", 2, plan_cases(request, {}))


def test_the_same_plan_has_no_difference_and_survives_the_file(tmp_path):
    first = suite_plan("quick")
    settle_plan(tmp_path, first, resume=False)
    assert RunPlan.read(tmp_path / PLAN_FILE) == first
    assert suite_plan("quick").difference(first) == ""
    settle_plan(tmp_path, suite_plan("quick"), resume=True)  # no error


def test_the_quick_and_default_suites_share_case_ids_but_not_plans():
    quick, default = suite_plan("quick"), suite_plan("default")
    assert set(quick.cases) & set(default.cases), "the trap: ids in common"
    why = default.difference(quick)
    assert why, "a default-suite resume of a quick-suite folder must be refused"
    assert "only in this plan" in why or "planned differently" in why


def test_a_changed_argv_names_the_case_and_the_changed_tokens():
    before = plan(case("inspect/mlp", "inspect", "--variant", "a", "b"))
    after = plan(case("inspect/mlp", "inspect", "--variant", "a", "b", "c"))
    why = after.difference(before)
    assert why.startswith("case inspect/mlp is planned differently")
    assert "`b c`" in why and "`b`" in why


@pytest.mark.parametrize("after, words", [
    (plan(case("x", "a"), command="study"), "holds a `run` run, this is `study`"),
    (plan(case("x", "a"), threads=1), "used 2 threads, this one 1"),
    (plan(case("x", "a"), case("y", "b")), "1 case only in this plan (y)"),
    (plan(), "1 case only in the folder's (x)"),
])
def test_each_kind_of_difference_is_named(after, words):
    assert words in after.difference(plan(case("x", "a")))


def test_a_resume_of_another_plan_is_refused_before_anything_is_written(tmp_path):
    settle_plan(tmp_path, plan(case("x", "a")), resume=False)
    written = (tmp_path / PLAN_FILE).read_bytes()
    with pytest.raises(HarnessInputError, match=r"--resume: .* holds another plan: .*only in this plan \(y\)"):
        settle_plan(tmp_path, plan(case("x", "a"), case("y", "b")), resume=True)
    assert (tmp_path / PLAN_FILE).read_bytes() == written


def test_a_run_killed_in_its_first_case_can_be_resumed_but_not_overwritten(tmp_path):
    """SIGKILL during the first case leaves plan.json and no results.jsonl."""
    settle_plan(tmp_path, plan(case("x", "a")), resume=False)
    check_run_folder(tmp_path, resume=True)  # accepted
    with pytest.raises(HarnessInputError, match="already has a run; use --resume"):
        check_run_folder(tmp_path, resume=False)


def test_a_folder_without_a_plan_cannot_be_resumed(tmp_path):
    (tmp_path / "results.jsonl").write_text('{"kind": "case"}\n', encoding="utf-8")
    with pytest.raises(HarnessInputError, match="no plan.json.*older harness"):
        check_run_folder(tmp_path, resume=True)


def test_a_damaged_plan_is_named(tmp_path):
    (tmp_path / PLAN_FILE).write_text(json.dumps({"command": "run"}), encoding="utf-8")
    with pytest.raises(HarnessInputError, match="plan.json: not a run plan"):
        settle_plan(tmp_path, plan(), resume=True)


def test_study_resume_on_a_run_folder_is_refused_through_the_cli(tmp_path):
    """End to end: exit 2, one line naming both commands, nothing written, within seconds."""
    folder = tmp_path / "X"
    folder.mkdir()
    plan(case("x", "a")).write(folder / PLAN_FILE)
    before = sorted(p.name for p in folder.iterdir())
    done = subprocess.run([sys.executable, "-m", "harness", "study", "--resume", "--backends", "torch",
                           "--out", str(folder)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "holds a `run` run, this is `study`" in done.stderr
    assert sorted(p.name for p in folder.iterdir()) == before
