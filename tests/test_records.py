"""Records: the JSON round trip, its type checks, and verdicts derived from stored numbers."""

from __future__ import annotations

import math

import pytest

from harness.results.records import ComparisonRecord, ParityRecord, RecordError, TimingRecord, from_dict

TIMING = TimingRecord(backend="torch", model="mlp", variant="baseline", arm="baseline/eager", device="cpu",
                      mode="eager", threads=2, median_s=1e-3, iqr_s=1e-5, rounds=2, steps_per_round=3,
                      setup_s=0.5, warmup_s=0.1, params=10, flops_per_step=100, session="s",
                      times_s=(1e-3, 1.1e-3))


def test_round_trip_gives_the_same_record():
    assert from_dict(TIMING.as_dict()) == TIMING
    parity = ParityRecord("mlp", "baseline", "loss", ("torch", "tensorflow"), 1e-7, 1e-7, 1e-5, True)
    assert from_dict(parity.as_dict()) == parity


@pytest.mark.parametrize("change, field", [
    ({"kind": ["timing"]}, None),
    ({"kind": "timings"}, None),
    ({"median_s": "fast"}, "median_s"),
    ({"median_s": math.nan}, "median_s"),
    ({"threads": 2.5}, "threads"),
    ({"threads": True}, "threads"),
    ({"times_s": [1e-3, "x"]}, "times_s"),
    ({"times_s": [math.inf]}, "times_s"),
    ({"settings": []}, "settings"),
])
def test_a_wrong_kind_or_type_is_a_record_error_naming_the_field(change, field):
    with pytest.raises(RecordError, match=f"'{field}'" if field else "unknown kind"):
        from_dict({**TIMING.as_dict(), **change})


def test_a_missing_field_is_a_record_error():
    data = TIMING.as_dict()
    del data["session"]
    with pytest.raises(RecordError, match="without field 'session'"):
        from_dict(data)


def test_comparison_verdicts_are_derived_from_the_numbers():
    slower = ComparisonRecord("torch", "mlp", "cpu", "eager", 2, "a/eager", "b/eager", 1.10, 1.05, 1.15, 0.02, "s",
                              n_pairs=30)
    assert slower.verdict == "slower" and "10.0% slower" in slower.sentence
    inside_floor = ComparisonRecord("torch", "mlp", "cpu", "eager", 2, "a/eager", "b/eager", 1.10, 1.05, 1.15, 0.2,
                                    "s", n_pairs=30)
    assert inside_floor.verdict == "no detectable difference"
    stored = {**slower.as_dict(), "verdict": "faster", "sentence": "stale text from an older schema"}
    assert from_dict(stored).verdict == "slower"  # a stored verdict is never trusted
    assert "verdict" not in slower.as_dict() and "sentence" not in slower.as_dict()
