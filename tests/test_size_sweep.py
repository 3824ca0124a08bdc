"""The size sweep (harness/timing/size_sweep.py, `python -m harness sweep`): sized presets, the
cases it plans, the threshold step times it derives from per-call records, and its bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessInputError
from harness.model.layers import Conv2D, Dense
from harness.model.spec import PRESETS, load_spec
from harness.results.records import PerCallRecord
from harness.timing.size_sweep import Threshold, plan_sweep_cases, pooled, size_of, sized_spec, thresholds

REPO = Path(__file__).resolve().parent.parent


def _widths(spec):
    return [layer.units if isinstance(layer, Dense) else layer.filters for layer in spec.layers
            if isinstance(layer, (Dense, Conv2D))]


def test_the_preset_size_is_the_preset_and_other_sizes_scale_the_hidden_layers_only():
    assert sized_spec("mlp", 512).layers == PRESETS["mlp"].layers
    assert sized_spec("cnn", 32).layers == PRESETS["cnn"].layers
    assert _widths(sized_spec("mlp", 64)) == [64, 32, 10]
    assert _widths(sized_spec("cnn", 8)) == [8, 16, 128, 10]
    assert sized_spec("mlp", 64).name == "mlp@64" and size_of("mlp@64") == 64 and size_of("mlp") is None
    with pytest.raises(HarnessInputError, match="too small"):
        sized_spec("mlp", 1)


def test_plan_writes_each_sized_spec_and_a_percall_case_per_backend_mode_and_size(tmp_path):
    cases = plan_sweep_cases(tmp_path, "mlp", (64, 256), ("torch", "tensorflow"), ("eager", "xla"), "dropout=0",
                             30.0, {"tensorflow": "not installed"},
                             {"torch": ("eager", "compiled"), "tensorflow": ("eager", "compiled", "xla")})
    assert [c.case_id for c in cases] == [f"sweep/{backend}/mlp@{size}/{mode}/dropout=0" for size in (64, 256)
                                          for backend, mode in (("torch", "eager"), ("tensorflow", "eager"),
                                                                ("tensorflow", "xla"))]
    assert [c.skip_reason for c in cases[:2]] == ["", "not installed"]
    argv = cases[0].argv
    spec_file = Path(argv[argv.index("--spec") + 1])
    assert load_spec(spec_file) == sized_spec("mlp", 64)  # the case times exactly the sized spec
    assert argv[argv.index("--budget") + 1] == "30" and argv[-2:] == ("--json", "{json}")


def _record(backend, mode, size, per_call_us, half_us, step_ms=1.0, net_of=""):
    return PerCallRecord(backend=backend, model=f"mlp@{size}", mode=mode, layer="dropout=0",
                         per_call_s=per_call_us * 1e-6, ci_low_s=(per_call_us - half_us) * 1e-6,
                         ci_high_s=(per_call_us + half_us) * 1e-6, step_s=step_ms * 1e-3,
                         fraction_of_step=per_call_us * 1e-3 / step_ms, copies=(0, 32), processes=4, session="s",
                         net_of=net_of)


def test_pooled_per_call_cost_weights_each_size_by_its_precision():
    mean, low, high = pooled([_record("torch", "eager", 64, 4.0, 0.5), _record("torch", "eager", 256, 8.0, 1.0)])
    # weights 1/0.5^2 = 4 and 1/1^2 = 1: (4*4 + 8)/5 = 4.8; half-width 1.96/sqrt(4/0.255^2 + 1/0.510^2) ~ 0.447
    assert mean * 1e6 == pytest.approx(4.8)
    assert (high - mean) * 1e6 == pytest.approx(1 / (1 / 0.25 + 1) ** 0.5, rel=1e-3)
    assert low < mean < high


def test_thresholds_per_backend_and_mode_from_two_sizes_or_more():
    records = [_record("torch", "eager", 64, 5.0, 0.5), _record("torch", "eager", 1024, 5.0, 0.5),
               _record("torch", "compiled", 64, 1.0, 0.5),  # one size only: no threshold
               _record("torch", "eager", 256, 50.0, 1.0, net_of="busywait=0")]  # a net-of record is not a sweep's
    found = thresholds(records)
    assert [(t.backend, t.mode, t.share) for t in found] == [("torch", "eager", 0.01), ("torch", "eager", 0.001)]
    one_percent = found[0]
    assert one_percent.sizes == (64, 1024) and one_percent.step_s == pytest.approx(5e-6 / 0.01)  # 0.5 ms
    assert one_percent.sentence.startswith("torch eager: below 0.5 ms per step (95% CI ")
    assert "costs more than 1% of it" in one_percent.sentence and "pooled over sizes 64, 1024" in one_percent.sentence


def test_a_cost_indistinguishable_from_zero_has_no_threshold_sentence():
    free = Threshold("tensorflow", "compiled", "dropout=0", 0.01, -0.2e-6, -1.0e-6, -0.1e-6, (64, 256))
    assert "no measurable cost at any size" in free.sentence
    bounded = Threshold("tensorflow", "compiled", "dropout=0", 0.01, -0.01e-6, -0.11e-6, 0.1e-6, (64, 4096))
    assert bounded.sentence == ("tensorflow compiled: no measurable cost per dropout=0 call (-0.01 µs, 95% CI -0.11 to "
                                "0.10, pooled over sizes 64, 4096); even at the CI's upper end, it costs more than 1% "
                                "of a step only below 0.01 ms per step")


@pytest.mark.parametrize("args, message", [
    (["--sizes", "64"], "--sizes '64': expected at least two different sizes"),
    (["--sizes", "64,x"], "--sizes '64,x': expected comma-separated whole numbers"),
    (["--model", "cnn", "--sizes", "1,8"], "--sizes '1,8': expected at least two different sizes from 2"),
    (["--layer", "dense=4"], "a dense layer changes its input's shape"),
    (["--budget", "0"], "--budget"),
])
def test_bad_sweep_options_exit_2_naming_the_value(tmp_path, args, message):
    done = subprocess.run([sys.executable, "-m", "harness", "sweep", *args, "--out", str(tmp_path / "s")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "s").exists()  # nothing written for a refused command


@pytest.mark.slow
def test_sweep_measures_two_sizes_into_a_run_folder_and_states_the_threshold(tmp_path):
    out = tmp_path / "sweep"
    done = subprocess.run([sys.executable, "-m", "harness", "sweep", "--sizes", "32,64", "--backends", "torch",
                           "--modes", "eager", "--budget", "4", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    per_call = [r for r in records if r["kind"] == "per_call"]
    assert sorted(r["model"] for r in per_call) == ["mlp@32", "mlp@64"]
    assert "torch eager: below " in done.stdout and "costs more than 1% of it" in done.stdout
    assert (out / "report.md").is_file() and (out / "specs" / "mlp-32.json").is_file()


def test_the_report_section_states_thresholds_plots_shares_with_both_lines_and_tabulates_sizes(tmp_path):
    from harness.report.render import Fold, Image, VerdictGroup
    from harness.report.size_sweep import share_figure, size_sweep_blocks

    assert size_sweep_blocks([_record("torch", "eager", 64, 5.0, 0.5)], tmp_path) == []  # one size: no section
    records = [_record("torch", "eager", 64, 5.0, 0.5, step_ms=0.4), _record("torch", "eager", 1024, 5.2, 0.6,
                                                                               step_ms=20.0),
               _record("tensorflow", "eager", 64, 120.0, 3.0, step_ms=8.0),
               _record("tensorflow", "eager", 1024, 118.0, 4.0, step_ms=60.0)]
    group, image, fold = size_sweep_blocks(records, tmp_path)
    assert isinstance(group, VerdictGroup) and len(group.lines) == 4  # 2 backends x (1%, 0.1%)
    assert group.lines[0].sentence.startswith("torch eager: below 0.5")
    assert isinstance(image, Image) and image.path.is_file()
    assert isinstance(fold, Fold) and [row[2] for row in fold.blocks[0].rows] == ["mlp@64", "mlp@1024"] * 2
    ax = share_figure(records).axes[0]
    lines = {round(line.get_ydata()[0], 6) for line in ax.get_lines() if len(set(line.get_ydata())) == 1}
    assert {1.0, 0.1} <= lines and ax.get_xscale() == ax.get_yscale() == "log"
    torch_points = next(c for c in ax.containers if c.get_label() == "torch eager").lines[0].get_ydata()
    assert list(torch_points) == pytest.approx([100 * 5.0e-6 / 0.4e-3, 100 * 5.2e-6 / 20e-3])
