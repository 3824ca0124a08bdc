"""Any number of backends in the report: Keras engines beside their engine, and the engine question
("What does Keras add over the engine it runs on?") from synthetic TimingRecords."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

import harness.report.ordering as ordering
from harness import stats
from harness.report import build_report
from harness.report.engines import engine_comparisons
from harness.report.ordering import backend_order, keras_label
from harness.report.reading import read_run_folder
from harness.results.records import TimingRecord
from harness.stats import SLOWER
from harness.suite.questions import ENGINE_QUESTION
from harness.timing.controls import pooled_arm
from tests.test_report import ROUNDS, _comparison, _ok, _timing, _write_run

PROCESSES = 4


class _Plain:  # a backend class that is not Keras
    pass


def _keras_on(engine: str) -> type:
    return type(f"Keras{engine}", (), {"KERAS_ENGINE": engine})


# The registry's order (LOAD_ORDER, then name) as the project has it: Keras backends after every engine.
FAKE_REGISTRY = {"torch": _Plain, "tensorflow": _keras_on("tensorflow"), "jax": _Plain,
                 "keras_torch": _keras_on("torch"), "keras_jax": _keras_on("jax")}


@pytest.fixture(autouse=True)
def five_backends(monkeypatch):
    monkeypatch.setattr(ordering, "registry", lambda: FAKE_REGISTRY)


def _baseline(backend: str, step_s: float, seed: int, mode: str = "eager", variant: str = "baseline") -> TimingRecord:
    """A baseline arm of 4 processes whose levels differ by about 1% (what a process's layout does)."""
    rng = np.random.default_rng(seed)
    process = np.repeat(np.arange(PROCESSES), ROUNDS // PROCESSES + 1)[:ROUNDS]
    level = 1 + 0.01 * rng.standard_normal(PROCESSES)
    times = step_s * level[process] * (1 + 0.005 * rng.standard_normal(ROUNDS))
    return _timing(backend, variant, variant, times, f"{backend}-mlp-cpu-{mode}", mode=mode,
                   processes=PROCESSES, process_of_round=tuple(int(p) for p in process))


def _run(tmp_path, backends: dict[str, float]):
    cases = [(f"time/{b}", [_baseline(b, s, i)], _ok(f"time/{b}")) for i, (b, s) in enumerate(backends.items())]
    return _write_run(tmp_path / "run", cases)


def test_keras_backends_stand_beside_their_engine_in_registry_order():
    names = ["keras_jax", "old_backend", "tensorflow", "torch", "keras_torch", "jax"]
    assert backend_order(names) == ["torch", "keras_torch", "tensorflow", "jax", "keras_jax", "old_backend"]
    assert keras_label("keras_torch") == "Keras[torch]" and keras_label("tensorflow") == "tensorflow"


def test_engine_question_is_an_unpaired_ratio_over_processes_per_pair(tmp_path):
    folder = _run(tmp_path, {"torch": 0.002, "keras_torch": 0.003, "jax": 0.001, "keras_jax": 0.0012,
                             "tensorflow": 0.02})
    found = {c.backend: c for c in engine_comparisons(read_run_folder(folder))}
    assert set(found) == {"keras_torch", "keras_jax"}  # tensorflow is Keras on itself: no pair
    torch_side = found["keras_torch"]
    assert (torch_side.a, torch_side.b, torch_side.question) == ("torch", "Keras[torch]", ENGINE_QUESTION.key)
    a, b = _baseline("torch", 0.002, 0), _baseline("keras_torch", 0.003, 1)
    expected = stats.unpaired_across_processes(a.times_s, a.process_of_round, b.times_s, b.process_of_round)
    assert torch_side.ratio == pytest.approx(expected.ratio) and torch_side.ci_low == pytest.approx(expected.ci_low)
    assert torch_side.processes == expected.processes == PROCESSES  # the smaller side's count
    assert 1.45 < torch_side.ratio < 1.55 and torch_side.ci_low > 1 and torch_side.verdict == SLOWER
    assert 1.15 < found["keras_jax"].ratio < 1.25


def test_arms_of_several_sessions_are_pooled_with_distinct_processes():
    first, second = _baseline("torch", 0.002, 0), _baseline("torch", 0.002, 1)
    pooled = pooled_arm([first, second])
    assert pooled.processes == 2 * PROCESSES and len(pooled.times_s) == 2 * ROUNDS
    assert set(pooled.process_of_round) == set(range(2 * PROCESSES))


def test_the_report_answers_the_engine_question_only_when_both_sides_ran(tmp_path):
    folder = _run(tmp_path, {"torch": 0.002, "keras_torch": 0.003, "tensorflow": 0.02})
    markdown = build_report([folder]).markdown.read_text(encoding="utf-8")
    section = markdown.split(f"## {ENGINE_QUESTION.text}\n", 1)[1]
    row = next(line for line in section.splitlines() if line.startswith("| Keras[torch] vs torch |"))
    assert re.fullmatch(r"\| Keras\[torch\] vs torch \| \+(4[5-9]|5[0-5])\.\d% ▲ \[\+\d+\.\d%, \+\d+\.\d%\] \|", row)
    assert "Keras[jax]" not in markdown  # no jax records: no row, no empty one

    alone = _write_run(tmp_path / "alone", [("time/torch", [_baseline("torch", 0.002, 0)], _ok("time/torch"))])
    assert ENGINE_QUESTION.text not in build_report([alone]).markdown.read_text(encoding="utf-8")


def test_answers_table_has_a_column_per_backend_with_keras_beside_its_engine(tmp_path):
    cases = []
    for seed, backend in enumerate(["tensorflow", "keras_torch", "torch"]):
        absent, zero = (_baseline(backend, 0.002 * factor, seed, variant=variant)
                        for factor, variant in ((1.0, "dropout=absent"), (1.05, "dropout=0")))
        cases.append((f"time/{backend}", [absent, zero, _comparison(absent, zero, "dropout_p0_cost", 0.01)],
                      _ok(f"time/{backend}")))
    markdown = build_report([_write_run(tmp_path / "run", cases)]).markdown.read_text(encoding="utf-8")
    header = next(line for line in markdown.splitlines() if line.startswith("| question (b vs a) |"))
    assert header == "| question (b vs a) | torch mlp eager | keras_torch mlp eager | tensorflow mlp eager |"


def test_five_backends_two_models_two_modes_make_a_table_per_model(tmp_path):
    cases = []
    for seed, backend in enumerate(FAKE_REGISTRY):
        for model in ("mlp", "cnn"):
            for mode in ("eager", "compiled"):
                absent, zero = (replace(_baseline(backend, 0.002 * factor, seed, mode=mode, variant=variant),
                                        model=model, session=f"{backend}-{model}-{mode}")
                                for factor, variant in ((1.0, "dropout=absent"), (1.05, "dropout=0")))
                cases.append((f"time/{backend}/{model}/{mode}",
                              [absent, zero, _comparison(absent, zero, "dropout_p0_cost", 0.01)],
                              _ok(f"time/{backend}/{model}/{mode}")))
    markdown = build_report([_write_run(tmp_path / "run", cases)]).markdown.read_text(encoding="utf-8")
    answers = markdown.split("## Answers\n", 1)[1].split("\n## ", 1)[0]
    headers = [line for line in answers.splitlines() if line.startswith("| question (b vs a) |")]
    assert len(headers) == 2 and "\nmlp:\n" in answers and "\ncnn:\n" in answers
    first = [cell.strip() for cell in headers[0].strip("|").split("|")][1:]
    assert len(first) == 10  # 5 backends x 2 modes: what fits 1280 px
    assert [label.split()[0] for label in first[::2]] == ["torch", "keras_torch", "tensorflow", "jax", "keras_jax"]
