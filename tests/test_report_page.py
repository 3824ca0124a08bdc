"""The report as a page a reader can take in quickly: answers first, a table of contents, folds,
no empty sections, tables that wrap, log axes, a stability warning and caveats on misleading rows."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from harness.report import build_report, plots
from harness.report.render import Fold, Heading, Table, Text, html_page, without_constant_columns
from harness.report.study import caveat, curves_figure
from harness.results.records import BNVarianceShiftRecord, StudyEpochRecord, StudyRunRecord
from harness.study.ledger import IDENTICAL, RATIO, SUPPORTED, ClaimResult
from harness.timing.controls import AA_CONTROL
from tests.test_report import _ok, _per_call, _session, _standard_cases, _write_run


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> tuple[str, str]:
    cases = [*_standard_cases(), ("percall", [_per_call("torch", "eager", "dropout=0", 3.1, 2.6, 3.6, 6.0)],
                                  _ok("percall"))]
    paths = build_report([_write_run(tmp_path_factory.mktemp("run"), cases)])
    return paths.markdown.read_text(encoding="utf-8"), paths.html.read_text(encoding="utf-8")


def test_the_answers_table_comes_first_with_a_verdict_and_ci_per_session(page):
    markdown, _ = page
    headings = re.findall(r"^## (.+)$", markdown, re.MULTILINE)
    assert headings[0] == "Answers"
    header = next(line for line in markdown.splitlines() if line.startswith("| question (b vs a) |"))
    assert header == "| question (b vs a) | torch mlp eager | tensorflow mlp eager |"
    dropout = next(line for line in markdown.splitlines() if line.startswith("| Dropout(p=0) vs no layer, per step |"))
    cells = [c.strip() for c in dropout.strip("|").split("|")]
    for cell in cells[1:]:  # +10% in both frameworks, the CI excluding 0; torch's marked: its per-call cost disagrees
        assert re.fullmatch(r"\+(9|10|11)\.\d% ▲ \[\+\d+\.\d%, \+\d+\.\d%\]( †)?", cell), cell
    assert cells[1].endswith(" †") and not cells[2].endswith(" †")
    per_call = next(line for line in markdown.splitlines() if line.startswith("| Dropout(p=0), one call |"))
    assert "| ▲ 3.10 µs [2.60, 3.60] 0.05% † | — |" in per_call


def test_step_level_and_per_call_answers_that_disagree_are_explained(page):
    markdown, _ = page
    notes = [line for line in markdown.split("## Per-call cost")[0].splitlines() if line.startswith("† ")]
    assert len(notes) == 1 and notes[0].startswith("† torch mlp eager: the two measures of Dropout(p=0) differ.")
    # the mlp has 2 Dropout layers: step level about +10% of the ~2 ms step without them, ~100 µs per layer;
    # per call 3.10 µs, 2 of them +0.3% of that step: far apart, in standard errors and in µs
    assert re.search(r"Step level, the mlp's 2 Dropout\(p=0\) layers cost \+(9|10)\.\d% \(CI .* of the 2\.0\d+ ms step "
                     r"without them: \d{2,3}\.\d µs per layer", notes[0]), notes[0]
    assert "Per call (dose–response): 3.10 µs (CI 2.60 to 3.60), i.e. +0.3% for 2." in notes[0]
    assert re.search(r"They are \d+\.\d standard errors apart", notes[0])
    assert "reports/dropout0-step-vs-percall/" in notes[0]
    assert "†: the session's two Dropout(p=0) measures differ by more than their CIs allow" in markdown
    per_call_section = markdown.split("## Per-call cost")[1].split("\n## ")[0]
    assert notes[0] in per_call_section  # and the per-call section says it beside its own figure


def test_measures_that_agree_get_no_note(tmp_path):
    # tensorflow: +10% of its ~3 ms step without dropout, ~150 µs per layer; 2 x 150 µs per call predicts +10% too
    # (the per-call record's own step, 6 ms, is the preset's with its active dropout: not the denominator)
    cases = [*_standard_cases(), ("percall", [_per_call("tensorflow", "eager", "dropout=0", 150.0, 140.0, 160.0,
                                                        6.0)], _ok("percall"))]
    markdown = build_report([_write_run(tmp_path / "run", cases)]).markdown.read_text(encoding="utf-8")
    assert "†" not in markdown and "disagree" not in markdown


def test_table_of_contents_links_every_section_and_folds_start_closed(page):
    _, html = page
    toc = re.search(r'<nav class="toc">(.*?)</nav>', html, re.S).group(1)
    targets = re.findall(r'href="#([^"]+)"', toc)
    assert len(targets) >= 6 and len(set(targets)) == len(targets)
    for target in targets:
        assert f'id="{target}"' in html
    assert "<details" in html and "<details open" not in html  # the environment is recorded: nothing opens itself
    assert re.search(r'<details id="raw-table-comparisons"><summary><h2>Raw table: Comparisons</h2>', html)


def test_a_section_without_data_is_left_out_and_named_once(tmp_path):
    folder = _write_run(tmp_path / "run", [("time", _session("torch", 0.002, 1), _ok("time"))])
    markdown = build_report([folder]).markdown.read_text(encoding="utf-8")
    assert "Graph inspection" not in markdown and "Raw table: Parity" not in markdown
    assert "no data in this run" not in markdown and "Not measured in this run.\n" not in markdown
    assert len(re.findall(r"^_Not measured in this run \(\d+\): ", markdown, re.MULTILINE)) == 1
    summary = markdown.split("\n\n")[1]
    assert "0 parity checks" not in summary and "device/mode cpu/eager" in summary


def _noisy_session(tmp_path, half_width: float):
    session = _session("torch", 0.002, 1)
    aa = next(r for r in session if getattr(r, "question", "") == AA_CONTROL)
    session[session.index(aa)] = replace(aa, ratio=1.0, ci_low=1 - half_width, ci_high=1 + half_width)
    folder = _write_run(tmp_path / f"run-{half_width}", [("time", session, _ok("time"))])
    return build_report([folder]).markdown.read_text(encoding="utf-8")


def test_a_wide_noise_floor_warns_of_an_unstable_machine(tmp_path):
    warned = _noisy_session(tmp_path, 0.034)
    line = next(line for line in warned.splitlines() if line.startswith("Unstable machine:"))
    assert "wider than ±2% in 1 of 1 sessions (widest ±3.4%, torch mlp cpu eager" in line
    assert "Unstable machine" not in _noisy_session(tmp_path, 0.008)


def test_constant_columns_are_named_once_so_wide_tables_fit():
    table = Table(("backend", "device", "ms"), (("torch", "cpu", "1.0"), ("tensorflow", "cpu", "2.0")))
    said, narrow = without_constant_columns(table)
    assert said == Text("In every row: device cpu.") and narrow.headers == ("backend", "ms")
    assert narrow.rows == (("torch", "1.0"), ("tensorflow", "2.0"))


def test_cells_wrap_and_long_words_may_break():
    html = html_page("t", [Heading("t", 1), Table(("a",), (("x" * 30,), ("short",)))])
    assert "nowrap" not in html
    assert '<td class="long">' + "x" * 30 in html and "<td>short</td>" in html


def test_fold_renders_as_closed_details_and_as_a_heading_in_markdown(tmp_path):
    from harness.report.render import markdown

    fold = Fold("Raw table: X", (Text("inside"),))
    assert markdown([fold], tmp_path) == "## Raw table: X\n\ninside\n"
    assert '<details id="raw-table-x"><summary><h2>Raw table: X</h2></summary>\n<p class="">inside</p>\n</details>' \
        in html_page("t", [Heading("t", 1), Heading("A"), fold])


def test_step_times_and_framework_ratios_are_on_log_axes():
    session = [r for r in _session("torch", 0.002, 1) + _session("tensorflow", 0.02, 2) if hasattr(r, "times_s")]
    assert plots.step_time_figure(session).axes[0].get_xscale() == "log"
    from harness.stats import PairedRatio

    ratios = [("tensorflow", "mlp / cpu / eager", PairedRatio(0.1, 0.09, 0.11, 10))]
    assert plots.framework_ratio_figure("torch", ratios).axes[0].get_xscale() == "log"


def _claim(text: str, label: str, low: float | None = None, high: float | None = None) -> ClaimResult:
    return ClaimResult(text, "torch", "digits", "mlp", 2.73, low, high, 5, RATIO, label, "")


def _shift(rate: float, shift: float) -> BNVarianceShiftRecord:
    return BNVarianceShiftRecord("torch", "digits", "mlp", "v", 0, 1, rate, shift)


def _run(stopped: int | None) -> StudyRunRecord:
    return StudyRunRecord("torch", "digits", "mlp", "early_stopping", 0, 20, True, stopped, None, 0.1, 0.99, 0.2, 0.95,
                          1.0)


def test_a_variance_shift_whose_ci_excludes_one_over_one_minus_p_says_so():
    claim = "Dropout before BN shifts BN's variance by about 1/(1-p)"
    said = caveat(_claim(claim, SUPPORTED, 2.68, 2.78), [_shift(0.5, 2.7)])
    assert said.replaces_verdict  # "supported" would say that the 1/(1-p) of the claim was
    assert said.text.startswith("a shift, yes (CI above 1); by 1/(1-p) = 2, no: the CI excludes 2")
    assert caveat(_claim(claim, SUPPORTED, 1.9, 2.1), [_shift(0.5, 2.0)]) is None  # 2 inside the CI


def test_early_stopping_that_never_stopped_is_not_tested():
    claim = "Early stopping lowers the final validation loss"
    said = caveat(_claim(claim, IDENTICAL), [_run(None), _run(None)])
    assert said.replaces_verdict and said.text.startswith("not tested: early stopping never stopped any of the 2 runs")
    assert caveat(_claim(claim, IDENTICAL), [_run(None), _run(7)]) is None


def test_dropout0_identical_loss_beside_a_shift_above_one_is_explained():
    said = caveat(_claim("Dropout(p=0) before BN changes BN's statistics", IDENTICAL), [_shift(0.0, 1.056)])
    assert not said.replaces_verdict  # "identical" stays: the loss was
    assert "variance shift at p = 0 is 1.056" in said.text and "drops nothing" in said.text


def test_study_curves_tell_the_backends_apart_by_width_and_marker():
    epochs = [StudyEpochRecord(backend=b, data="digits", model="mlp", variant="none", seed=0, epoch=e, train_loss=0.1,
                               train_acc=0.9, val_loss=0.2, val_acc=0.8, fit_loss=0.1, constancy={})
              for b in ("torch", "tensorflow") for e in range(3)]
    lines = curves_figure(epochs).axes[0].get_lines()
    widths = {line.get_color(): line.get_linewidth() for line in lines}
    assert len(widths) == 2 and len(set(widths.values())) == 2
    marks = {line.get_color(): (line.get_marker(), line.get_markerfacecolor() == "white") for line in lines}
    assert len(set(marks.values())) == 2  # a filled circle, then a hollow square: distinguishable where they overlap


def test_a_benchmark_of_several_steps_per_call_is_shown_per_step_and_machine_facts_are_folded(tmp_path):
    import json

    from tests.test_report import _benchmark_json

    path = _benchmark_json(tmp_path / "bench.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    data["benchmarks"][1]["extra_info"]["steps_per_call"] = 10  # tensorflow: a fit() of 10 steps, 3.2 ms a call
    path.write_text(json.dumps(data), encoding="utf-8")
    paths = build_report([path])
    markdown, html = paths.markdown.read_text(encoding="utf-8"), paths.html.read_text(encoding="utf-8")
    assert "| test_step[tensorflow-mlp] | step | 0.32 | ×1.00 |" in markdown  # now the group's fastest per step
    assert "| test_step[torch-mlp] | step | 2.1 | ×6.56 |" in markdown
    assert re.search(r'<details id="[^"]+"><summary><h2>Machine and commit: bench.json</h2>', html)


def test_question_panels_stand_two_abreast_so_the_figure_stays_short():
    from tests.test_report import _control

    rows = tuple((f"torch / mlp / cpu / eager {i}", _control("torch", i, 1.0, 1.01, 0.01)) for i in range(8))
    panels = [plots.QuestionPanel(f"Question {k}?", rows) for k in range(10)]
    fig = plots.question_figure(panels)
    fig.draw_without_rendering()
    assert [ax.get_window_extent().x0 < fig.bbox.width / 2 for ax in fig.axes[:2]] == [True, False]  # side by side
    assert fig.get_size_inches()[1] * fig.dpi < 1600  # ten questions of eight sessions: the reference run's
