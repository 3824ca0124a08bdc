"""The study's claims ledger: paired-by-seed effects of regularization, each with its 95% CI and
a verdict, and the cross-framework agreement of the final validation accuracy.

Seeds pair the runs: within a backend, one seed is the same initial weights and batch order in
every variant, so an effect is the mean over seeds of a per-seed difference (b - a, over the seeds
both variants ran), with a Student-t CI over seeds (n - 1 degrees of freedom). Across backends one
seed is also the same initial weights and batches (dropout masks differ), so agreement between
frameworks is paired by seed as well.

Verdicts follow the timing side (harness.stats): SUPPORTED only when the CI excludes the null (0
for a difference, 1 for a ratio) in the claimed direction; CONTRADICTED when it excludes it the
other way; otherwise "not detectable: at most X", X the largest distance of a CI end from the
null. A two-sided claim ("changes") is supported when the CI excludes the null either way. Below
MIN_SEEDS seeds: TOO_FEW_SEEDS; every per-seed value exactly at the null: IDENTICAL.

The variant labels the study runs (NONE ... BN_BEFORE_DROPOUT) are defined once, in
harness/study/suites.py. Constraints: framework-free (numpy; scipy.stats is imported when a CI is
computed); reads records (objects or their dicts) and measures nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from backends import REFERENCE
from harness.results.records import BNVarianceShiftRecord, Record, StudyEpochRecord, StudyRunRecord, from_dict
from harness.stats import CONFIDENCE
from harness.study.metrics import NEAR_ZERO
from harness.study.suites import (  # noqa: F401 (the variant labels, re-exported for the report)
    AUGMENT,
    BN_BEFORE_DROPOUT,
    BN_ONLY,
    DROPOUT,
    DROPOUT0_BEFORE_BN,
    DROPOUT_BEFORE_BN,
    EARLY_STOPPING,
    L1,
    L2,
    NONE,
    QUICK_VARIANTS,
    SGD,
    SGD_L1,
    STUDY_VARIANTS,
)

CONSTANCY_TOLERANCE = "0.001"  # the StudyEpochRecord.constancy tolerance the constancy claims read
MIN_SEEDS = 2

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
NOT_DETECTABLE = "not detectable"
TOO_FEW_SEEDS = "too few seeds"
IDENTICAL = "identical in every seed"
AGREE = "agree"
DIFFER = "differ"

PP = "pp"  # percentage points (accuracies and fractions x 100)
NATS = "nats"  # cross-entropy
RATIO = "ratio"
_DIGITS = {PP: 2, NATS: 4, RATIO: 3}
_STUDY_TYPES = (StudyEpochRecord, StudyRunRecord, BNVarianceShiftRecord)


@dataclass(frozen=True)
class SeedEstimate:
    """The mean of one value per seed, with its 95% Student-t CI (None below MIN_SEEDS seeds)."""

    mean: float
    ci_low: float | None
    ci_high: float | None
    seeds: tuple[int, ...]
    values: tuple[float, ...]


def seed_mean(values: Mapping[int, float]) -> SeedEstimate:
    """Mean over seeds of {seed: value} with a 95% t CI over them."""
    if not values:
        raise ValueError("no seeds to estimate from")
    seeds = tuple(sorted(values))
    x = np.array([values[seed] for seed in seeds], dtype=float)
    mean = float(x.mean())
    if x.size < MIN_SEEDS:
        return SeedEstimate(mean, None, None, seeds, tuple(map(float, x)))
    from scipy import stats

    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return SeedEstimate(mean, mean - half, mean + half, seeds, tuple(map(float, x)))


def paired_difference(a: Mapping[int, float], b: Mapping[int, float]) -> SeedEstimate:
    """b - a per seed, over the seeds both have: their mean and 95% t CI."""
    return seed_mean({seed: b[seed] - a[seed] for seed in a if seed in b})


def amount(value: float, unit: str, signed: bool = True) -> str:
    """A value in its unit; a difference (any unit but RATIO) with its sign unless `signed` is False."""
    if unit == RATIO:
        return f"{value:.{_DIGITS[unit]}f}"
    return f"{value:{'+' if signed else ''}.{_DIGITS[unit]}f} {unit}"


def judge(estimate: SeedEstimate, direction: int, unit: str, null: float = 0.0) -> str:
    """The verdict on a claim that the effect lies below (direction -1), above (+1) or anywhere but
    at (0) the null: SUPPORTED, CONTRADICTED, "not detectable: at most X", TOO_FEW_SEEDS, IDENTICAL."""
    if estimate.ci_low is None or estimate.ci_high is None:
        return TOO_FEW_SEEDS
    if all(value == null for value in estimate.values):
        return IDENTICAL
    below, above = estimate.ci_high < null, estimate.ci_low > null
    if (below and direction <= 0) or (above and direction >= 0):
        return SUPPORTED
    if below or above:
        return CONTRADICTED
    bound = max(abs(estimate.ci_low - null), abs(estimate.ci_high - null))
    return f"{NOT_DETECTABLE}: at most {amount(bound, unit, signed=False)}" + (f" from {null:g}" if null else "")


def label(verdict: str) -> str:
    """A verdict without its numbers ("not detectable: at most 1.20 pp" -> "not detectable")."""
    return verdict.split(":")[0]


def numbers(mean: float, ci_low: float | None, ci_high: float | None, seeds: int, unit: str) -> str:
    """"+1.20 pp (95% CI +0.40 pp to +2.00 pp, 5 seeds)"; without a CI: "+1.20 pp (1 seed, no CI)"."""
    if ci_low is None or ci_high is None:
        return f"{amount(mean, unit)} ({seeds} seed{'' if seeds == 1 else 's'}, no CI)"
    return f"{amount(mean, unit)} (95% CI {amount(ci_low, unit)} to {amount(ci_high, unit)}, {seeds} seeds)"


@dataclass(frozen=True)
class ClaimResult:
    """One claim in one backend on one (data, model): the effect (in `unit`), its CI and verdict."""

    claim: str
    backend: str
    data: str
    model: str
    effect: float
    ci_low: float | None
    ci_high: float | None
    seeds: int
    unit: str
    verdict: str
    sentence: str

    @property
    def label(self) -> str:
        return label(self.verdict)


@dataclass(frozen=True)
class _Runs:
    """One backend's study records on one (data, model), by variant, then seed."""

    runs: dict[str, dict[int, StudyRunRecord]]
    epochs: dict[str, dict[int, list[StudyEpochRecord]]]
    shifts: dict[str, dict[int, list[BNVarianceShiftRecord]]]


Estimator = Callable[[_Runs], tuple[SeedEstimate, str] | None]  # the estimate and a note for its sentence


@dataclass(frozen=True)
class Claim:
    """A claim of the ledger: its words, what its effect measures, and how to estimate it per backend."""

    text: str
    measure: str  # what the effect is, in words
    unit: str
    direction: int  # -1: claimed below the null; +1: above; 0: anywhere but at it
    estimate: Estimator
    null: float = 0.0


def _paired(a: Mapping[int, float], b: Mapping[int, float]) -> SeedEstimate | None:
    return paired_difference(a, b) if set(a) & set(b) else None


def _final(s: _Runs, variant: str, value: Callable[[StudyRunRecord], float]) -> dict[int, float]:
    return {seed: value(run) for seed, run in s.runs.get(variant, {}).items()}


def _run_difference(a: str, b: str, value: Callable[[StudyRunRecord], float]) -> Estimator:
    def estimate(s: _Runs) -> tuple[SeedEstimate, str] | None:
        found = _paired(_final(s, a, value), _final(s, b, value))
        return (found, "") if found else None

    return estimate


def _gap(run: StudyRunRecord) -> float:
    return (run.train_acc - run.val_acc) * 100


def _val_loss(run: StudyRunRecord) -> float:
    return run.val_loss


def kernel_layers(epochs: Iterable[StudyEpochRecord]) -> list[str]:
    """The layer keys every record's constancy holds, in layer order ("0.weight", "2.weight", ...)."""
    keys = [set(r.constancy) for r in epochs]
    return sorted(set.intersection(*keys), key=lambda key: int(key.split(".")[0])) if keys else []


def _constant_fraction(s: _Runs, variant: str, layer: str) -> dict[int, float]:
    """Per seed, the percentage of `layer`'s kernel constant at CONSTANCY_TOLERANCE, mean over epochs."""
    return {seed: 100 * float(np.mean([r.constancy[layer][CONSTANCY_TOLERANCE] for r in rows]))
            for seed, rows in s.epochs.get(variant, {}).items()}


def _constancy_changes(s: _Runs) -> tuple[list[str], list[dict[int, float]]]:
    """The kernel layers NONE and L2 share, and per layer {seed: fraction(L2) - fraction(NONE)}."""
    if not (s.epochs.get(NONE) and s.epochs.get(L2)):
        return [], []
    layers = kernel_layers(r for v in (NONE, L2) for rows in s.epochs[v].values() for r in rows)
    changes = []
    for layer in layers:
        none, l2 = _constant_fraction(s, NONE, layer), _constant_fraction(s, L2, layer)
        changes.append({seed: l2[seed] - none[seed] for seed in none if seed in l2})
    return layers, changes


def _first_layer_constancy(s: _Runs) -> tuple[SeedEstimate, str] | None:
    layers, changes = _constancy_changes(s)
    if not layers or not changes[0]:
        return None
    return seed_mean(changes[0]), f" Layer {layers[0]}, tolerance {CONSTANCY_TOLERANCE}."


def _early_against_late_constancy(s: _Runs) -> tuple[SeedEstimate, str] | None:
    layers, changes = _constancy_changes(s)
    if len(layers) < 2:
        return None
    first, last = changes[0], changes[-1]
    both = {seed: first[seed] - last[seed] for seed in first if seed in last}
    return (seed_mean(both), f" Layer {layers[0]} against layer {layers[-1]}.") if both else None


def _shift_by_seed(s: _Runs, variant: str) -> dict[int, float]:
    """Per seed, the mean over the run's BatchNorm layers of each one's variance shift."""
    return {seed: float(np.mean([r.shift for r in rows])) for seed, rows in s.shifts.get(variant, {}).items() if rows}


def _variance_shift(s: _Runs) -> tuple[SeedEstimate, str] | None:
    shifts = _shift_by_seed(s, DROPOUT_BEFORE_BN)
    if not shifts:
        return None
    rates = sorted({r.dropout_rate for rows in s.shifts[DROPOUT_BEFORE_BN].values() for r in rows})
    expected = ", ".join(f"1/(1-p) = {1 / (1 - p):.3g} at p = {p:g}" for p in rates)
    return seed_mean(shifts), f" Expected {expected}."


def _dropout0_before_bn(s: _Runs) -> tuple[SeedEstimate, str] | None:
    found = _paired(_final(s, BN_ONLY, _val_loss), _final(s, DROPOUT0_BEFORE_BN, _val_loss))
    if found is None:
        return None
    shifts = _shift_by_seed(s, DROPOUT0_BEFORE_BN)
    note = f" BN's variance shift at p = 0: {np.mean(list(shifts.values())):.3f} (1: no shift)." if shifts else ""
    return found, note


def _sparsity_by_seed(s: _Runs, variant: str, key: str) -> dict[int, float]:
    """Per seed, the % of all kernel weights (layers pooled by size) whose sparsity `key` holds
    ("exact": exactly 0; "near": within NEAR_ZERO of the layer's largest |w|)."""
    found = {}
    for seed, run in s.runs.get(variant, {}).items():
        layers = run.sparsity.values()
        size = sum(layer["size"] for layer in layers)
        if size:
            found[seed] = 100 * sum(layer[key] * layer["size"] for layer in layers) / size
    return found


def _l1_sparsity(without: str, with_l1: str, key: str) -> Estimator:
    def estimate(s: _Runs) -> tuple[SeedEstimate, str] | None:
        base, l1 = _sparsity_by_seed(s, without, key), _sparsity_by_seed(s, with_l1, key)
        found = _paired(base, l1)
        if found is None:
            return None
        if not any(base.values()) and not any(l1.values()):  # what "identical in every seed" means here
            return found, f" No kernel weight was {'exactly' if key == 'exact' else 'about'} 0, with or without L1."
        runs = s.runs[with_l1].values()
        per_layer = ", ".join(f"{layer} {100 * np.mean([r.sparsity[layer][key] for r in runs]):.2f}%"
                              for layer in next(iter(runs)).sparsity)
        return found, f" With L1, per layer (mean over seeds): {per_layer}."

    return estimate


CLAIMS = (
    Claim("L2 narrows the train/validation gap", "(train - val accuracy) with L2 minus without", PP, -1,
          _run_difference(NONE, L2, _gap)),
    Claim("Dropout narrows the train/validation gap", "(train - val accuracy) with dropout 0.5 minus without", PP, -1,
          _run_difference(NONE, DROPOUT, _gap)),
    Claim("Data augmentation narrows the train/validation gap",
          "(train - val accuracy) with shifted, noisy training data minus without", PP, -1,
          _run_difference(NONE, AUGMENT, _gap)),
    Claim("BatchNorm alone narrows the train/validation gap",
          "(train - val accuracy) with BN where the dropout was minus without", PP, -1,
          _run_difference(NONE, BN_ONLY, _gap)),
    Claim("Early stopping lowers the final validation loss", "final val loss with early stopping minus without", NATS,
          -1, _run_difference(NONE, EARLY_STOPPING, _val_loss)),
    Claim("L2 makes fewer weights stay constant between epochs",
          f"% of first-layer kernel weights constant at tolerance {CONSTANCY_TOLERANCE} (mean over epochs), "
          "L2 minus none", PP, -1, _first_layer_constancy),
    Claim("L2's drop in constant weights is mostly in the early layers",
          "change in % constant (L2 minus none) in the first kernel layer minus in the last", PP, -1,
          _early_against_late_constancy),
    Claim("Dropout before BN hurts; put BN before dropout",
          "final val accuracy, BN before dropout minus dropout before BN", PP, 1,
          _run_difference(DROPOUT_BEFORE_BN, BN_BEFORE_DROPOUT, lambda r: r.val_acc * 100)),
    Claim("Dropout before BN shifts BN's variance by about 1/(1-p)",
          "BN's running variance / its evaluation-mode input variance (median over channels, mean over BN layers)",
          RATIO, 1, _variance_shift, null=1.0),
    Claim("Dropout(p=0) before BN changes BN's statistics", "final val loss, dropout(p=0) before BN minus BN alone",
          NATS, 0, _dropout0_before_bn),
    Claim("L1 makes some weights exactly 0 (Adam)", "% of kernel weights exactly 0 after training, L1 minus none",
          PP, 1, _l1_sparsity(NONE, L1, "exact")),
    Claim("L1 makes some weights exactly 0 (SGD)", "% of kernel weights exactly 0 after training, L1 minus none",
          PP, 1, _l1_sparsity(SGD, SGD_L1, "exact")),
    Claim("L1 drives weights to about 0 (Adam)",
          f"% of kernel weights within {NEAR_ZERO:g} x their layer's largest |w| of 0, L1 minus none", PP, 1,
          _l1_sparsity(NONE, L1, "near")),
    Claim("L1 drives weights to about 0 (SGD)",
          f"% of kernel weights within {NEAR_ZERO:g} x their layer's largest |w| of 0, L1 minus none", PP, 1,
          _l1_sparsity(SGD, SGD_L1, "near")),
)


def study_records(records: Iterable[Record | dict]) -> list[Record]:
    """The study records among `records` (record objects or their dicts); any other kind is left out."""
    kinds = {cls.kind for cls in _STUDY_TYPES}
    return [from_dict(r) if isinstance(r, dict) else r for r in records
            if (r.get("kind") if isinstance(r, dict) else getattr(r, "kind", None)) in kinds]


def _index(records: Iterable[Record | dict]) -> dict[tuple[str, str, str], _Runs]:
    """The study records by (backend, data, model), then variant and seed, in order of appearance."""
    index: dict[tuple[str, str, str], _Runs] = {}
    for r in study_records(records):
        s = index.setdefault((r.backend, r.data, r.model), _Runs({}, {}, {}))
        if isinstance(r, StudyRunRecord):
            s.runs.setdefault(r.variant, {})[r.seed] = r
        elif isinstance(r, StudyEpochRecord):
            s.epochs.setdefault(r.variant, {}).setdefault(r.seed, []).append(r)
        else:
            s.shifts.setdefault(r.variant, {}).setdefault(r.seed, []).append(r)
    return index


def ledger(records: Iterable[Record | dict]) -> list[ClaimResult]:
    """One row per claim, backend and (data, model) that has the variants the claim needs; rows
    ordered by (data, model), then claim (CLAIMS order), then backend."""
    index = _index(records)
    rows = []
    for data, model in dict.fromkeys((data, model) for _, data, model in index):
        for claim in CLAIMS:
            for backend in dict.fromkeys(b for b, d, m in index if (d, m) == (data, model)):
                found = claim.estimate(index[backend, data, model])
                if found is None:
                    continue
                estimate, note = found
                verdict = judge(estimate, claim.direction, claim.unit, claim.null)
                said = numbers(estimate.mean, estimate.ci_low, estimate.ci_high, len(estimate.seeds), claim.unit)
                rows.append(ClaimResult(claim.text, backend, data, model, estimate.mean, estimate.ci_low,
                                        estimate.ci_high, len(estimate.seeds), claim.unit, verdict,
                                        f"{claim.measure}: {said}: {verdict}.{note}"))
    return rows


@dataclass(frozen=True)
class Agreement:
    """Final validation accuracy of `reference` minus `other` for one (data, model, variant),
    paired by seed, in percentage points, with its verdict: AGREE (with why), DIFFER, TOO_FEW_SEEDS."""

    data: str
    model: str
    variant: str
    reference: str
    other: str
    effect: float
    ci_low: float | None
    ci_high: float | None
    seeds: int
    verdict: str

    @property
    def label(self) -> str:
        return label(self.verdict)


def agreement(records: Iterable[Record | dict], reference: str = REFERENCE) -> list[Agreement]:
    """The reference backend against each other backend (by name), per (data, model, variant)
    both ran with at least one common seed; in order of appearance."""
    runs = [r for r in study_records(records) if isinstance(r, StudyRunRecord)]
    acc: dict[tuple[str, str, str], dict[str, dict[int, float]]] = {}
    for r in runs:
        acc.setdefault((r.data, r.model, r.variant), {}).setdefault(r.backend, {})[r.seed] = r.val_acc * 100
    found = []
    for (data, model, variant), by_backend in acc.items():
        if reference not in by_backend:
            continue
        for other in sorted(b for b in by_backend if b != reference):
            estimate = _paired(by_backend[other], by_backend[reference])
            if estimate is not None:
                found.append(Agreement(data, model, variant, reference, other, estimate.mean, estimate.ci_low,
                                       estimate.ci_high, len(estimate.seeds), _agreement_verdict(estimate)))
    return found


def _agreement_verdict(estimate: SeedEstimate) -> str:
    said = judge(estimate, 0, PP)
    if said == SUPPORTED:
        return DIFFER
    if said == IDENTICAL:
        return f"{AGREE}: {IDENTICAL}"
    if said == TOO_FEW_SEEDS:
        return TOO_FEW_SEEDS
    return f"{AGREE}: no detectable difference, {said.split(': ', 1)[1]}"
