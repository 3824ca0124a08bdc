"""What the commands print: parity's summary, TensorFlow's C++ log lines kept off stderr, `time`'s
settings line and precision messages (no "±inf%", no "±0.00%" reached by a single arm)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

from harness.cli.native_log import without_log_lines
from harness.cli.parity import _print_records
from harness.cli.time import settings_text
from harness.results.records import ParityRecord
from harness.timing.controls import widest_half_width
from harness.timing.replication import Replicated, _progress_line
from harness.timing.replication_plan import ReplicationPlan
from tests.test_report import ROUNDS, _timing

TF_NOTE = ("I0000 00:00:1796519806.198662    3480 port.cc:153] oneDNN custom operations are on. You may see "
           "slightly different numerical results")
ABSL_NOTE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def _records() -> list[ParityRecord]:
    ok = [ParityRecord("mlp", variant, check, ("torch", "tensorflow"), 1e-8, 2e-7, 1e-5, True)
          for variant in ("baseline", "dropout=0") for check in ("loss", "grad[0.weight]", "grad[0.bias]")]
    bad = ParityRecord("mlp", "bn=before", "bn_running_stats", ("torch", "tensorflow"), 3e-3, 2.5e-2, 1e-5, False)
    info = ParityRecord("mlp", "baseline", "adam_stock", ("torch", "tensorflow"), 1e-2, 0.18, 1e-5, True, info=True)
    return [*ok, bad, info]


def test_parity_prints_a_summary_per_check_kind_and_the_failures(capsys):
    _print_records(_records())
    out = capsys.readouterr().out.splitlines()
    grad = next(line for line in out if line.startswith("grad "))
    assert grad.split()[1:5] == ["4", "4", "0", "0"]  # checks, passed, failed, info
    assert next(line for line in out if line.startswith("bn_running_stats ")).split()[1:5] == ["1", "0", "1", "0"]
    rows = [line for line in out if line.startswith("torch-tensorflow")]
    assert len(rows) == 1 and "bn_running_stats" in rows[0] and rows[0].endswith("FAIL")
    assert "--table prints every row" in out[-1]


def test_parity_table_prints_every_row(capsys):
    _print_records(_records(), table=True)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("torch-tensorflow")]
    assert len(rows) == 8


def test_tensorflow_log_lines_are_dropped_and_other_native_output_kept():
    assert without_log_lines(f"{ABSL_NOTE}\n{TF_NOTE}\nSegmentation fault\n") == "Segmentation fault\n"
    script = textwrap.dedent(f"""
        import os, sys
        from harness.cli.native_log import quiet_native_logs

        @quiet_native_logs
        def command():
            os.write(2, {(ABSL_NOTE + chr(10) + TF_NOTE + chr(10) + "a native line" + chr(10)).encode()!r})
            print("a progress line", file=sys.stderr)
            return 3

        sys.exit(command())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert "a progress line" in done.stderr and "a native line" in done.stderr
    assert "port.cc" not in done.stderr and "absl" not in done.stderr


def test_settings_are_printed_as_words_not_a_dict():
    said = settings_text({"framework": "torch", "version": "2.13.0", "intra_op_threads": 2, "tf32_matmul": False,
                          "extra": {"a": 1}})
    assert said == "torch 2.13.0; intra op threads 2; tf32 matmul off; extra a 1"


def test_a_single_arm_reaches_its_own_step_time_precision_not_zero():
    rng = np.random.default_rng(0)
    process = tuple(int(p) for p in np.repeat(np.arange(4), ROUNDS))
    arm = _timing("torch", "baseline", "baseline", 0.002 * (1 + 0.01 * rng.standard_normal(4 * ROUNDS)), "s",
                  processes=4, process_of_round=process)
    reached = widest_half_width([arm])
    assert 0.0005 < reached < 0.05  # a t interval over 4 processes of 1% noise: not 0, not the target at once


def test_no_infinite_half_width_is_printed():
    plan = ReplicationPlan()
    arm = _timing("torch", "baseline", "baseline", [0.002] * ROUNDS, "s", processes=1)
    summary = Replicated([arm], "maximum number of processes reached", 12.0, float("inf"), plan).summary()
    assert "inf" not in summary and "no CI over processes" in summary and "after 1 process," in summary
    assert "inf" not in _progress_line(1, 5.0, 12.0, float("inf"), plan)
    assert "±1.20%" in _progress_line(1, 5.0, 12.0, 0.012, plan)


def test_time_warns_of_a_noisy_session_and_prints_no_infinite_precision(capsys):
    from types import SimpleNamespace

    from harness.cli.time import _print_session
    from harness.timing.controls import NOISY_FLOOR, compare

    rng = np.random.default_rng(1)
    process = tuple(int(p) for p in np.repeat(np.arange(4), ROUNDS))
    noisy = lambda: 0.002 * (1 + 0.05 * rng.standard_normal(4 * ROUNDS))  # noqa: E731
    base = _timing("torch", "baseline", "baseline", noisy(), "s", processes=4, process_of_round=process,
                   settings={"framework": "torch", "version": "2.13.0", "tf32_matmul": False})
    aa = _timing("torch", "baseline", "baseline (A/A copy)", noisy(), "s", role="aa", processes=4,
                 process_of_round=process)
    floor = compare(base, aa, None).paired.half_width
    assert floor > NOISY_FLOOR  # 5% noise per round: an A/A floor of several percent
    aa_comparison = compare(base, aa, floor, "aa_control")
    request = SimpleNamespace(backend=SimpleNamespace(name="torch"), device="cpu", threads=2)
    found = SimpleNamespace(records=[base, aa], reached=float("inf"), stop_reason="budget spent")
    _print_session(request, found, [aa_comparison], precision=0.01)
    out = capsys.readouterr().out
    assert "torch mlp on cpu, 2 threads; torch 2.13.0; tf32 matmul off" in out.splitlines()[0]
    assert f"warning: this session was noisy (eager: A/A noise floor ±{floor:.1%}, above ±2%)" in out
    assert "inf" not in out and "no CI: it needs two processes" in out
