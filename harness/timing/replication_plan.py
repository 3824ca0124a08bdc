"""How a timing comparison is replicated across worker processes: its precision target, budget
and process counts (harness/timing/replication.py spends them)."""

from __future__ import annotations

from dataclasses import dataclass

# A verdict needs 3 processes (stats.MIN_PROCESSES), but the 95% t quantile is 4.30 at 3 and 3.18
# at 4: the fourth process narrows the CI 1.56x (quantile and sqrt(n)), more than any later one.
# Measured: TensorFlow eager mlp (17 s processes) detected a 2% slowdown in 9 of 20 comparisons
# with 3 processes (median half-width ±2.0%); see README "How the numbers can be trusted".
DEFAULT_MIN_PROCESSES = 4


@dataclass(frozen=True)
class ReplicationPlan:
    precision: float = 0.01  # stop once the half-width that `precision_of` reports is at most this
    budget_s: float = 60.0  # wall time for the whole comparison
    min_processes: int = DEFAULT_MIN_PROCESSES
    max_processes: int = 40
    unit: str = "fraction"  # what `precision` is: "fraction" (of a ratio) or "s" (seconds, e.g. per call)
    # Processes the budget is shared over (one more than the minimum: the variance over processes
    # gets one more degree of freedom, and precision may still stop it after min_processes).
    planned_processes: int = DEFAULT_MIN_PROCESSES + 1

    def format(self, value: float) -> str:
        return f"±{value:.2%}" if self.unit == "fraction" else f"±{value * 1e6:.2f} µs"
