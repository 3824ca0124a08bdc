"""The machine-stability warning of a run report, from the sessions' A/A noise floors.

pyperf warns when a machine looks unstable; this harness has a direct measure instead: each
session's A/A control (two identical arms), whose CI half-width is the session's noise floor. A
floor above harness.timing.controls.NOISY_FLOOR means an effect of a few percent cannot be told
from noise in that session; the warning says how many sessions, how wide, and what to do.

Constraints: reads the stored A/A comparisons only; measures nothing, renders nothing.
"""

from __future__ import annotations

from statistics import median

from harness.report.reading import RunFolder
from harness.results.records import ComparisonRecord
from harness.timing.controls import AA_CONTROL, NOISY_FLOOR


def noise_floors(run: RunFolder) -> list[tuple[ComparisonRecord, float]]:
    """Each A/A comparison with its noise floor (the half-width of its CI, a fraction)."""
    return [(c, c.paired.half_width) for c in run.of(ComparisonRecord) if c.question == AA_CONTROL]


def stability_warning(run: RunFolder) -> str:
    """A sentence when some session's noise floor is above NOISY_FLOOR; "" otherwise."""
    floors = noise_floors(run)
    noisy = [(c, f) for c, f in floors if f > NOISY_FLOOR]
    if not noisy:
        return ""
    widest, width = max(noisy, key=lambda pair: pair[1])
    return (f"Unstable machine: the A/A noise floor was wider than ±{NOISY_FLOOR:.0%} in {len(noisy)} of "
            f"{len(floors)} sessions (widest ±{width:.1%}, {widest.backend} {widest.model} {widest.device} "
            f"{widest.mode}; median ±{median(f for _, f in floors):.1%}): there, an effect below the floor is noise. "
            "Usual causes: another program, CPU frequency scaling, a shared host; rerun with the machine idle.")


def noise_line(run: RunFolder) -> str:
    """The noise floors of a run in one sentence ("" without A/A controls)."""
    floors = sorted(f for _, f in noise_floors(run))
    if not floors:
        return ""
    return (f"Noise floors (A/A, {len(floors)} sessions): ±{floors[0]:.1%} to ±{floors[-1]:.1%}, median "
            f"±{median(floors):.1%}; each verdict's own floor is in the verdicts and the comparisons table.")
