"""Merged reports: several run folders, or one Ray run over several machines, in one report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import HarnessInputError
from harness.report import build_report
from harness.report.reading import read_run_folders
from harness.results.records import CaseRecord, PerCallRecord
from tests.test_report import _session, _write_run


def _machine(host: str, node: str = "") -> dict:
    return {"host": host, "cpu_model": f"CPU of {host}", "cores": 8, "gpu": "",
            "frameworks": {"torch": "2.13.0"}, "ray_node_id": node}


def _per_call(per_call_us: float) -> PerCallRecord:
    return PerCallRecord(backend="torch", model="mlp", mode="eager", layer="dropout=0", per_call_s=per_call_us * 1e-6,
                         ci_low_s=(per_call_us - 1) * 1e-6, ci_high_s=(per_call_us + 1) * 1e-6, step_s=0.005,
                         fraction_of_step=per_call_us * 1e-6 / 0.005, copies=(0, 32, 64, 128), processes=4,
                         session="s")


def _ended(case_id: str, machine: dict) -> CaseRecord:
    return CaseRecord(case_id, "ok", ("python", "-m", "harness"), 10.0, started_at=1.0, ended_at=11.0,
                      machine=machine)


def _folder(path: Path, host: str, per_call_us: float, node: str = "") -> Path:
    machine = _machine(host, node)
    return _write_run(path, [
        ("percall/torch/mlp/eager/dropout=0", [_per_call(per_call_us)],
         _ended("percall/torch/mlp/eager/dropout=0", machine)),
        ("time/torch/mlp/cpu/eager", _session("torch", 0.002, 1), _ended("time/torch/mlp/cpu/eager", machine)),
    ])


def _section(text: str, heading: str) -> str:
    return text.split(f"## {heading}\n", 1)[1].split("\n#", 1)[0]


def test_two_run_folders_make_one_report_with_a_per_machine_table(tmp_path):
    a = _folder(tmp_path / "box-a", "box-a", 14.2)
    b = _folder(tmp_path / "box-b", "box-b", 3.5)
    paths = build_report([a, b])

    assert paths.markdown.parent == tmp_path / "merged-box-a+box-b"
    text = paths.markdown.read_text()
    machines = _section(text, "Machines")
    assert "box-a" in machines and "CPU of box-b" in machines
    table = _section(text, "Same question, per machine")
    row = next(line for line in table.splitlines() if "per-call cost of dropout=0" in line)
    assert row.index("14.20 µs [13.20, 15.20]") < row.index("3.50 µs [2.50, 4.50]")  # box-a's column first
    assert "# Machine box-a" in text and "# Machine box-b" in text
    plots = {p.parent.parent.name for p in paths.plots}
    assert plots == {"machine-1", "machine-2"}  # each machine's plots apart
    assert all(p.exists() for p in paths.plots)


def test_a_ray_run_over_two_nodes_is_split_by_machine(tmp_path):
    folder = tmp_path / "ray-run"
    _write_run(folder, [
        ("percall/torch/mlp/eager/dropout=0", [_per_call(10.0)],
         _ended("percall/torch/mlp/eager/dropout=0", _machine("host", "aaaaaaaa1111"))),
        ("percall/torch/mlp/compiled/dropout=0", [_per_call(1.0)],
         _ended("percall/torch/mlp/compiled/dropout=0", _machine("host", "bbbbbbbb2222"))),
    ])
    runs = read_run_folders(folder)
    assert [r.machine for r in runs] == ["host/aaaaaaaa", "host/bbbbbbbb"]
    assert [len(r.of(PerCallRecord)) for r in runs] == [1, 1]
    assert runs[1].environment["ray_node_id"] == "bbbbbbbb2222"

    text = build_report([folder]).markdown.read_text()
    row = next(line for line in _section(text, "Same question, per machine").splitlines() if "dropout=0" in line)
    assert "10.00 µs" in row and "1.00 µs" in row


def test_one_machine_one_folder_is_the_plain_report(tmp_path):
    folder = _folder(tmp_path / "solo", "solo", 5.0)
    text = build_report([folder]).markdown.read_text()
    assert "## Same question, per machine" not in text
    assert text.startswith("# Cross-framework run report: solo")


def test_a_run_folder_and_a_json_file_are_refused(tmp_path):
    folder = _folder(tmp_path / "a", "a", 5.0)
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"benchmarks": []}))
    with pytest.raises(HarnessInputError, match="bench.json"):
        build_report([folder, bench])


def test_runs_on_one_machine_make_one_report_named_by_run(tmp_path):
    timing = _folder(tmp_path / "timing", "box-a", 14.2)
    sweep = _folder(tmp_path / "sweep", "box-a", 13.8)
    text = build_report([timing, sweep], tmp_path / "reference").markdown.read_text()

    assert text.startswith("# Report: 2 runs on one machine")
    runs = _section(text, "Runs")
    assert "all made on one machine" in runs and "CPU of box-a" in runs
    row = next(line for line in _section(text, "Same question, per run").splitlines() if "dropout=0" in line)
    assert row.index("14.20 µs") < row.index("13.80 µs")  # the runs' columns in the order given
    assert "# Run timing" in text and "# Run sweep" in text and "# Machine" not in text
