"""`harness calibrate`: coverage, detection and CI half-widths of the controls, computed by hand
from made-up comparisons; the known-cost check; one small run of the command. No assertion on
wall time: whether a tiny run meets the targets is the machine's business, not the test's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.results.records import ComparisonRecord, PerCallRecord, TimingRecord, from_dict
from harness.stats import SLOWER
from harness.timing.calibration import known_cost_error, known_cost_passed, known_cost_sentence, summarize_controls

REPO = Path(__file__).resolve().parents[1]
HANG_GUARD_S = 300


def _comparison(ratio: float, ci_low: float, ci_high: float, expected: float | None, backend: str = "torch",
                model: str = "mlp", mode: str = "eager") -> ComparisonRecord:
    return ComparisonRecord(backend=backend, model=model, device="cpu", mode=mode, threads=2, a="baseline/eager",
                            b="control", ratio=ratio, ci_low=ci_low, ci_high=ci_high, noise_floor=0.005, session="s",
                            question="", n_pairs=30, processes=3, expected_ratio=expected)


def _aa(contain: int, n: int = 10, **where) -> list[ComparisonRecord]:
    """n A/A comparisons of which the first `contain` CIs contain 1 (widths vary)."""
    found = []
    for i in range(n):
        width = 0.004 + 0.001 * i
        centre = 1.0 if i < contain else 1.0 + 2 * width
        found.append(_comparison(centre, centre - width, centre + width, 1.0, **where))
    return found


def _injected(detected: int, n: int = 10, **where) -> list[ComparisonRecord]:
    """n comparisons against a 2% slowdown of which the first `detected` are judged slower."""
    found = []
    for i in range(n):
        width = 0.003 + 0.002 * i
        ratio = 1.02 if i < detected else 1.002  # not detected: the CI reaches below 1
        found.append(_comparison(ratio, ratio - width, ratio + width * 1.5, 1.02, **where))
    return found


def _width(c: ComparisonRecord) -> float:  # the CI's half-width about its estimate, relative to it
    return max(c.ratio - c.ci_low, c.ci_high - c.ratio) / c.ratio


def test_summaries_by_hand():
    aa_mlp, aa_cnn, aa_tf = _aa(9), _aa(8, model="cnn"), _aa(10, backend="tensorflow")
    aa_compiled = _aa(9, n=5, mode="compiled")
    injected, injected_tf = _injected(9), _injected(8, backend="tensorflow")
    ordinary = [_comparison(1.5, 1.4, 1.6, None)]  # not a control: ignored
    comparisons = [*injected, *aa_cnn, *ordinary, *aa_mlp, *injected_tf, *aa_tf, *aa_compiled]
    assert [c.verdict for c in injected].count(SLOWER) == 9  # the made-up records mean what they say

    summaries = summarize_controls(comparisons)

    expected = [  # (backend, model, mode, expected ratio), group, covered, detected, half-width, passed
        (("tensorflow", "mlp", "eager", 1.0), aa_tf, 10, 0, _width, True),
        (("tensorflow", "mlp", "eager", 1.02), injected_tf, None, 8, _width, False),
        (("torch", "cnn", "eager", 1.0), aa_cnn, 8, 2, _width, False),  # A/A "slower": false positives
        (("torch", "mlp", "compiled", 1.0), aa_compiled, 5, 0, _width, True),
        (("torch", "mlp", "eager", 1.0), aa_mlp, 9, 1, _width, True),
        (("torch", "mlp", "eager", 1.02), injected, None, 9, _width, True),
    ]
    assert [(s.backend, s.model, s.mode, s.expected_ratio) for s in summaries] == [key for key, *_ in expected]
    for summary, (_, group, covered, detected, width, passed) in zip(summaries, expected):
        widths = np.array([width(c) for c in group])
        assert summary.comparisons == len(group)
        if covered is not None:
            assert summary.covered == covered
        assert summary.covered == sum(c.ci_low <= summary.expected_ratio <= c.ci_high for c in group)
        assert summary.detected == detected
        assert summary.median_half_width == pytest.approx(np.median(widths))
        assert summary.p90_half_width == pytest.approx(np.percentile(widths, 90))
        assert summary.passed == passed, summary
    by_key = {(s.backend, s.model, s.mode, s.expected_ratio): s for s in summaries}
    assert by_key["torch", "mlp", "eager", 1.0].coverage == pytest.approx(0.9)
    assert by_key["torch", "cnn", "eager", 1.0].coverage == pytest.approx(0.8)
    assert by_key["torch", "mlp", "eager", 1.02].detection_rate == pytest.approx(0.9)
    assert by_key["tensorflow", "mlp", "eager", 1.02].detection_rate == pytest.approx(0.8)


def test_summary_sentences_carry_the_numbers():
    aa, failing, injected = (summarize_controls(group)[0] for group in (_aa(9), _aa(8, model="cnn"), _injected(9)))

    text = aa.sentence()
    assert text.startswith("torch mlp eager: 9 of 10 A/A CIs contain 1 (coverage 90%, target ≥ 90%: pass)"), text
    assert f"median ±{aa.median_half_width:.2%}" in text and f"90th percentile ±{aa.p90_half_width:.2%}" in text
    assert "8 of 10 A/A CIs contain 1 (coverage 80%, target ≥ 90%: FAIL)" in failing.sentence()
    text = injected.sentence()
    assert "a 2.0% injected slowdown was detected in 9 of 10 comparisons (90%, target ≥ 90%: pass)" in text, text
    assert f"its CI contained the true ratio in {injected.covered};" in text
    assert f"median ±{injected.median_half_width:.2%}" in text


def _known(per_call_s: float, expected: float | None = 2e-4) -> PerCallRecord:
    return PerCallRecord(backend="torch", model="mlp", mode="eager", layer="busywait=200", per_call_s=per_call_s,
                         ci_low_s=per_call_s - 1e-5, ci_high_s=per_call_s + 1e-5, step_s=5e-3,
                         fraction_of_step=per_call_s / 5e-3, copies=(0, 32, 64, 128), processes=3, session="s",
                         expected_per_call_s=expected)


@pytest.mark.parametrize("per_call_s, error, passed", [
    (2.2e-4, 0.10, True), (2.6e-4, 0.30, False), (1.7e-4, -0.15, True), (1.5e-4, -0.25, False), (2e-4, 0.0, True),
])
def test_known_cost_error_and_target(per_call_s, error, passed):
    record = _known(per_call_s)
    assert known_cost_error(record) == pytest.approx(error)
    assert known_cost_passed(record) == passed


def test_known_cost_sentence_and_missing_cost():
    text = known_cost_sentence(_known(2.2e-4))
    assert ("torch mlp eager: a layer known to cost 200.0 µs per call was measured at 220.00 µs "
            "(95% CI 210.00 to 230.00), +10.0% (target within ±20%: pass).") == text
    assert "+30.0% (target within ±20%: FAIL)" in known_cost_sentence(_known(2.6e-4))
    with pytest.raises(ValueError, match="busywait=200: no known cost"):
        known_cost_error(_known(2e-4, expected=None))


@pytest.mark.slow
def test_calibrate_command_writes_its_controls(tmp_path):
    out = tmp_path / "cal.json"
    command = [sys.executable, "-m", "harness", "calibrate", "--backend", "torch", "--comparisons", "1",
               "--rounds", "10", "--instances", "1", "--min-processes", "3", "--max-processes", "3",
               "--known-cost-us", "200", "--json", str(out)]
    done = subprocess.run(command, cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=HANG_GUARD_S, check=False)

    assert done.returncode in (0, 1), done.stderr
    records = [from_dict(data) for data in json.loads(out.read_text(encoding="utf-8"))]
    timings = [r for r in records if isinstance(r, TimingRecord)]
    comparisons = [r for r in records if isinstance(r, ComparisonRecord)]
    known = [r for r in records if isinstance(r, PerCallRecord)]
    # The session's 3 arms and 2 comparisons; the known-cost fit's 4 arms of busywait=200, 3 of
    # busywait=0 (its 0 copies are the same arm) and its record.
    assert len(records) == 13, records
    assert [t.role for t in timings[:3]] == ["arm", "aa", "injected"]
    assert [t.arm for t in timings[3:]] == [*(f"{k} x busywait=200/eager" for k in (0, 32, 64, 128)),
                                            *(f"{k} x busywait=0/eager" for k in (32, 64, 128))]
    assert all(t.processes == 3 and t.rounds == 30 for t in timings[:3])
    assert [(c.question, c.expected_ratio) for c in comparisons] == [("aa_control", 1.0), ("injected_control", 1.02)]
    assert all(c.processes == 3 and c.n_pairs == 30 for c in comparisons)
    assert len(known) == 1
    record = known[0]
    assert record.expected_per_call_s == pytest.approx(2e-4) and record.layer == "busywait=200"
    assert record.net_of == "busywait=0" and "net of busywait=0" in known_cost_sentence(record)
    assert record.copies == (0, 32, 64, 128) and record.processes == 3 and record.mode == "eager"
    # The printed summary is the summary of the written records, and the exit code follows it.
    summaries = summarize_controls(comparisons)
    verdicts = [s.sentence() for s in summaries] + [known_cost_sentence(record)]
    for line in verdicts:
        assert line in done.stdout, done.stdout
    targets = [line for line in done.stdout.splitlines() if "target" in line]
    assert targets == verdicts, done.stdout
    # One session is too few to hold coverage or detection against a target: those lines say so.
    assert all(not s.checked and "not checked" in s.sentence() for s in summaries)
    passed = known_cost_passed(record)
    assert (": pass)" in targets[-1]) == passed and (": FAIL)" in targets[-1]) == (not passed)
    assert done.returncode == (0 if passed else 1), done.stdout
