"""`report --compare OLD NEW`: two runs of one machine, what got slower, and the exit code for CI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.cli.main import main
from harness.report import compare_report
from harness.report.compare import QUESTION_COST, STEP_TIME
from tests.test_report import ROUNDS, _comparison, _ok, _timing, _write_run


def _run(folder: Path, seed: int, base_s: float = 0.002, dropout_cost: float = 1.10) -> Path:
    """One torch session: baseline, dropout=absent and dropout=0 (dropout_cost × absent), 0.5% noise."""
    rng = np.random.default_rng(seed)
    drift = 1 + 0.03 * np.sin(np.arange(ROUNDS))
    noisy = lambda seconds: seconds * drift * (1 + 0.005 * rng.standard_normal(ROUNDS))  # noqa: E731
    session = "torch-mlp-cpu-eager"
    base = _timing("torch", "baseline", "baseline", noisy(base_s), session)
    absent = _timing("torch", "dropout=absent", "dropout=absent", noisy(base_s), session)
    zero = _timing("torch", "dropout=0", "dropout=0", noisy(base_s * dropout_cost), session)
    records = [base, absent, zero, _comparison(absent, zero, "dropout_p0_cost", 0.01)]
    return _write_run(folder, [("time/torch/mlp/cpu/eager", records, _ok("time/torch/mlp/cpu/eager"))])


def test_two_alike_runs_pass_and_the_comparison_explains_itself(tmp_path, capsys):
    old, new = _run(tmp_path / "old", 1), _run(tmp_path / "new", 2)
    assert main(["report", "--compare", str(old), str(new)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("No regression: none of the 4 step times and question costs compared is more than 5.0%")
    markdown = (new / "compare.md").read_text(encoding="utf-8")
    assert "new ÷ old" in markdown and "--fail-above" in markdown and "unpaired" in markdown
    assert "| torch mlp cpu eager 4 threads: baseline |" in markdown
    assert (new / "compare.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_a_slower_step_fails_above_the_threshold_only(tmp_path, capsys):
    old, new = _run(tmp_path / "old", 1), _run(tmp_path / "new", 2, base_s=0.0024)  # every arm 20% slower
    assert main(["report", "--compare", str(old), str(new), "--fail-above", "5"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("REGRESSION: 3 of 4 step times and question costs")
    assert "step time: torch mlp cpu eager 4 threads: baseline:" in out and "slower: +2" in out
    assert main(["report", "--compare", str(old), str(new), "--fail-above", "30"]) == 0  # 20% is within 30%


def test_a_question_that_got_dearer_fails_though_the_machine_did_not_slow_down(tmp_path):
    old, new = _run(tmp_path / "old", 1), _run(tmp_path / "new", 2, dropout_cost=1.30)
    _, comparison = compare_report(new, old, threshold=0.05)
    bad = {(c.kind, c.what.split(": ")[1]) for c in comparison.regressions}
    assert bad == {(STEP_TIME, "dropout=0"), (QUESTION_COST, "dropout=0 vs dropout=absent (dropout_p0_cost)")}
    cost = next(c for c in comparison.changes if c.kind == QUESTION_COST)
    assert 1.14 < cost.ratio < 1.22 and cost.ci_low > 1  # 1.30 / 1.10 = 1.18


def test_runs_of_two_machines_are_refused(tmp_path, capsys):
    old, new = _run(tmp_path / "old", 1), _run(tmp_path / "new", 2)
    environment = json.loads((new / "environment.json").read_text(encoding="utf-8"))
    (new / "environment.json").write_text(json.dumps({**environment, "cpu_model": "Other CPU"}), encoding="utf-8")
    assert main(["report", "--compare", str(old), str(new)]) == 2
    err = capsys.readouterr().err
    assert "'Other CPU'" in err and "'AMD EPYC 9654'" in err and "one machine" in err


@pytest.mark.parametrize("argv, said", [
    (["NEW", "--fail-above", "5"], "--fail-above: only with --compare"),
    (["--compare", "OLD", "NEW", "--fail-above", "-1"], "-1 is not a percentage"),
    (["--compare", "OLD", "NEW", "--fail-above", "five"], "'five' is not a number of percent"),
    (["--compare", "NEW"], "--compare: give two run folders, the old run then the new one (got 1:"),
], ids=["threshold-without-compare", "negative", "not-a-number", "one-folder"])
def test_bad_compare_options_exit_2_naming_the_value(tmp_path, capsys, argv, said):
    new = _run(tmp_path / "new", 2)
    old = _run(tmp_path / "old", 1)
    argv = [{"OLD": str(old), "NEW": str(new)}.get(a, a) for a in argv]
    try:
        code = main(["report", *argv])
    except SystemExit as exc:  # argparse rejects a bad --fail-above value
        code = exc.code
    assert code == 2 and said in capsys.readouterr().err


def test_a_run_compared_with_itself_is_refused(tmp_path, capsys):
    new = _run(tmp_path / "new", 2)
    assert main(["report", "--compare", str(new), str(new)]) == 2
    assert "compared with itself" in capsys.readouterr().err
