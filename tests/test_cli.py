"""The CLI as a user meets it: exit codes, one-line errors, and a small run that resumes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.results.records import from_dict


def harness(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


@pytest.mark.parametrize("args, fragment", [
    (["parity", "--spec", "no/such/spec.json"], "no/such/spec.json"),
    (["parity", "--model", "mlp", "--variant", "dropout=2"], "dropout=2"),
    (["time", "--backend", "torch", "--variant", "wobble=1"], "wobble=1"),
    (["inspect", "--backend", "torch", "--variant", "baseline", "--spec", "tests/specs/issue_example.json",
      "--model", "mlp"], "not allowed with"),
])
def test_bad_input_exits_2_with_one_line(args, fragment):
    result = harness(*args)
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_spec_field_is_located(tmp_path):
    spec = json.load(open("tests/specs/issue_example.json"))
    spec["layers"][3]["rate"] = 1.5
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    result = harness("parity", "--spec", str(path))
    assert result.returncode == 2
    assert "bad.json" in result.stderr and "layers[3]" in result.stderr and "rate" in result.stderr


def test_time_json_records(tmp_path):
    out = tmp_path / "t.json"
    result = harness("time", "--backend", "torch", "--variant", "dropout=absent", "--variant", "dropout=0",
                     "--aa", "--rounds", "5", "--steps", "3", "--instances", "2", "--min-processes", "3",
                     "--max-processes", "3", "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "stopped: maximum number of processes reached" in result.stderr or "precision reached" in result.stderr
    records = json.loads(out.read_text())
    timing = [r for r in records if r["kind"] == "timing"]
    comparisons = [r for r in records if r["kind"] == "comparison"]
    assert [r["role"] for r in timing] == ["arm", "arm", "aa"]
    for r in timing:  # three worker processes of 5 rounds each, merged
        assert len(r["times_s"]) == 15 and r["median_s"] > 0 and r["processes"] == 3 and r["instances"] == 2
        assert r["process_of_round"] == [0] * 5 + [1] * 5 + [2] * 5
        assert len(r["process_end_s"]) == 3 and r["process_end_s"] == sorted(r["process_end_s"])
    assert len({r["session"] for r in timing}) == 1
    assert {"a", "b", "ratio", "ci_low", "ci_high", "noise_floor", "n_pairs", "processes"} <= comparisons[0].keys()
    assert comparisons[0]["n_pairs"] == 15 and comparisons[0]["processes"] == 3
    assert len(comparisons[0]["process_ratios"]) == 3
    assert comparisons[0]["ci_low"] <= comparisons[0]["ratio"] <= comparisons[0]["ci_high"]
    assert comparisons[1]["question"] == "aa_control" and comparisons[1]["expected_ratio"] == 1.0
    # Each comparison's verdict and sentence come with it, marked derived, as the stored numbers make them.
    for data in comparisons:
        record = from_dict(data)
        assert data["derived"] == {"verdict": record.verdict, "sentence": record.sentence}
        assert data["derived"]["verdict"] in ("slower", "faster", "no detectable difference")
        assert data["derived"]["sentence"] in result.stdout


@pytest.mark.slow
def test_run_writes_a_report_and_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["run", "--suite", "quick", "--backends", "torch", "--models", "mlp", "--variants", "baseline",
            "dropout=0", "--out", str(out)]
    first = harness(*args)
    assert first.returncode == 0, first.stderr
    assert (out / "report.md").exists() and (out / "index.html").exists()
    assert len(list((out / "plots").glob("*.png"))) >= 2  # the PyTorch/TF ratio plot needs both backends
    lines = (out / "results.jsonl").read_text().splitlines()
    again = harness(*args, "--resume")
    assert again.returncode == 0, again.stderr
    assert "2 already ok from an earlier run" in again.stdout
    assert (out / "results.jsonl").read_text().splitlines() == lines  # nothing redone


def test_a_missing_device_is_a_skip_with_its_reason():
    result = harness("time", "--backend", "torch", "--variant", "baseline", "--device", "cuda")
    if result.returncode == 0:
        pytest.skip("this machine has a CUDA GPU")
    assert result.returncode == 3, result.stderr
    assert result.stderr.strip() == "skipped: --device cuda: this torch build sees no CUDA GPU"


def test_missing_tensorflow_is_a_skip_with_its_reason(monkeypatch, capsys):
    import backends.tensorflow_backend as tfb
    from backends.base import Availability
    from harness.cli.main import main

    monkeypatch.setattr(tfb.TensorFlowBackend, "availability",
                        classmethod(lambda cls: Availability(False, "not installed here")))
    # (`time` meets a missing framework in its worker process: test_a_missing_device_is_a_skip_with_its_reason
    # follows that path, a worker's exit 3, to the same message and exit code.)
    assert main(["parity", "--model", "mlp", "--variant", "baseline", "--against", "tensorflow"]) == 3
    assert "not installed here" in capsys.readouterr().err
