"""The study ledger and its report section, on synthetic study records with known effects.

Every metric is a formula of (backend, variant, seed), so each claim's effect and verdict is
known: L2 and dropout narrow the gap, early stopping lowers the validation loss, L2 lowers the
first layer's constancy far more than the last's, BN before dropout beats dropout before BN,
the variance shift is about 2 at p = 0.5, and Dropout(p=0) before BN is identical to BN alone.
Between backends the accuracies are identical (no regularization), about equal (most variants)
or 2 points apart (dropout). Statistics are checked against a hand computation with scipy's t.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from harness.report.reading import read_run_folder
from harness.report.render import Image, html_page, markdown
from harness.report.render import images as images_in
from harness.report.study import study_blocks
from harness.results.records import BNVarianceShiftRecord, CaseRecord, Record, StudyEpochRecord, StudyRunRecord
from harness.study.ledger import (
    AGREE,
    AUGMENT,
    BN_BEFORE_DROPOUT,
    BN_ONLY,
    CLAIMS,
    CONTRADICTED,
    DIFFER,
    DROPOUT,
    DROPOUT0_BEFORE_BN,
    DROPOUT_BEFORE_BN,
    EARLY_STOPPING,
    IDENTICAL,
    L1,
    L2,
    NONE,
    PP,
    RATIO,
    SGD,
    SGD_L1,
    STUDY_VARIANTS,
    SUPPORTED,
    TOO_FEW_SEEDS,
    agreement,
    judge,
    kernel_layers,
    ledger,
    paired_difference,
    seed_mean,
)

SEEDS = (0, 1, 2, 3, 4)
BACKENDS = ("torch", "tensorflow")
LAYERS = ("0.weight", "1.weight", "2.weight")
# variant: (train_acc, val_acc, val_loss) of the final weights, before the per-seed jitter
FINAL = {NONE: (1.00, 0.90, 0.40), L2: (0.99, 0.93, 0.30), DROPOUT: (0.97, 0.94, 0.28),
         EARLY_STOPPING: (0.96, 0.91, 0.35), BN_ONLY: (1.00, 0.92, 0.33), DROPOUT0_BEFORE_BN: (1.00, 0.92, 0.33),
         DROPOUT_BEFORE_BN: (0.95, 0.88, 0.45), BN_BEFORE_DROPOUT: (0.97, 0.93, 0.30), AUGMENT: (0.98, 0.93, 0.32),
         L1: (0.99, 0.92, 0.33), SGD: (1.00, 0.89, 0.42), SGD_L1: (0.99, 0.91, 0.35)}
KERNEL_SIZES = (100.0, 50.0, 10.0)  # of LAYERS


def _sparsity(variant: str, seed: int) -> dict[str, dict[str, float]]:
    """No weight exactly 0 anywhere; with L1, 0.2-0.3% of each layer within 1e-6 of its largest |w|."""
    near = 0.002 + 0.001 * (seed % 2) if variant in (L1, SGD_L1) else 0.0
    return {layer: {"size": size, "exact": 0.0, "near": near} for layer, size in zip(LAYERS, KERNEL_SIZES)}
# variant: fraction of each layer's kernel constant at tolerance 0.001
CONSTANT = {NONE: (0.30, 0.10, 0.02), L2: (0.05, 0.08, 0.015)}
CLAIM = {claim.text: claim for claim in CLAIMS}


def _jitter(variant: str, seed: int) -> float:
    """Seed noise, the same for BN alone and Dropout(p=0) before BN (they train identically)."""
    return 0.003 * math.sin(1.7 * seed + STUDY_VARIANTS.index(BN_ONLY if variant == DROPOUT0_BEFORE_BN else variant))


def _tf_offset(variant: str, seed: int) -> float:
    """TensorFlow's val_acc minus torch's: none at all without regularization, 2 points with dropout."""
    if variant == NONE:
        return 0.0
    if variant == DROPOUT:
        return 0.02 + 0.001 * (seed % 2)
    return 0.002 * (-1) ** seed


def _run(backend: str, variant: str, seed: int, data: str = "digits") -> StudyRunRecord:
    train, val, loss = FINAL[variant]
    val += _jitter(variant, seed) + (_tf_offset(variant, seed) if backend == "tensorflow" else 0.0)
    return StudyRunRecord(backend, data, "mlp", variant, seed, epochs_run=3, early_stopping=variant == EARLY_STOPPING,
                          stopped_epoch=None, restored_epoch=None, train_loss=0.05, train_acc=train, val_loss=loss
                          + _jitter(variant, seed), val_acc=val, elapsed_s=1.0, sparsity=_sparsity(variant, seed))


def _epochs(backend: str, variant: str, seed: int) -> list[StudyEpochRecord]:
    fractions = CONSTANT.get(variant, (0.2, 0.2, 0.2))
    if variant == L2:
        fractions = (fractions[0] + 0.01 * (seed % 2), *fractions[1:])
    constancy = {layer: {"0": f / 2, "0.001": f, "0.01": min(2 * f, 1.0), "0.1": min(4 * f, 1.0)}
                 for layer, f in zip(LAYERS, fractions)}
    return [StudyEpochRecord(backend, "digits", "mlp", variant, seed, epoch, train_loss=1.0 / (epoch + 1),
                             train_acc=0.7 + 0.1 * epoch, val_loss=1.2 / (epoch + 1), val_acc=0.65 + 0.08 * epoch
                             + _jitter(variant, seed), fit_loss=1.1 / (epoch + 1), constancy=constancy)
            for epoch in range(3)]


def _shifts(backend: str, variant: str, seed: int) -> list[BNVarianceShiftRecord]:
    rate = {DROPOUT_BEFORE_BN: 0.5, DROPOUT0_BEFORE_BN: 0.0}.get(variant)
    if rate is None:
        return []
    return [BNVarianceShiftRecord(backend, "digits", "mlp", variant, seed, layer, rate,
                                  1 / (1 - rate) - 0.05 + 0.02 * seed + 0.01 * layer, (1.0, 2.0))
            for layer in (2, 5)]


def _study(backends=BACKENDS, variants=STUDY_VARIANTS, seeds=SEEDS) -> list[Record]:
    return [record for backend in backends for variant in variants for seed in seeds
            for record in (*_epochs(backend, variant, seed), *_shifts(backend, variant, seed),
                           _run(backend, variant, seed))]


def _row(rows, claim: str, backend: str = "torch"):
    return next(r for r in rows if r.claim == claim and r.backend == backend)


# ---- statistics and verdicts ------------------------------------------------------------------


def test_paired_difference_is_the_mean_per_seed_difference_with_a_student_t_ci():
    found = paired_difference({0: 1.0, 1: 2.0, 2: 4.0, 7: 3.0}, {0: 1.5, 1: 2.1, 2: 5.0, 9: 0.0})
    differences = np.array([0.5, 0.1, 1.0])  # seeds 0, 1, 2: the only ones both have
    half = stats.t.ppf(0.975, 2) * differences.std(ddof=1) / np.sqrt(3)
    assert found.seeds == (0, 1, 2)
    assert found.values == pytest.approx(tuple(differences))
    assert found.mean == pytest.approx(0.533333, abs=1e-6)
    assert (found.ci_low, found.ci_high) == pytest.approx((differences.mean() - half, differences.mean() + half))
    assert found.ci_high - found.ci_low == pytest.approx(2 * 1.12013, abs=1e-4)  # 4.3027 * 0.45092 / sqrt(3)


@pytest.mark.parametrize("values, direction, expected", [
    ({0: -3.0, 1: -2.0, 2: -4.0, 3: -2.5}, -1, SUPPORTED),
    ({0: -3.0, 1: -2.0, 2: -4.0, 3: -2.5}, 1, CONTRADICTED),
    ({0: -3.0, 1: -2.0, 2: -4.0, 3: -2.5}, 0, SUPPORTED),
    ({0: 3.0, 1: 2.0, 2: 4.0, 3: 2.5}, -1, CONTRADICTED),
    ({0: 3.0, 1: 2.0, 2: 4.0, 3: 2.5}, 0, SUPPORTED),
    ({0: -5.0}, -1, TOO_FEW_SEEDS),
    ({0: 0.0, 1: 0.0, 2: 0.0}, 0, IDENTICAL),
], ids=["supported", "contradicted-above", "two-sided-below", "contradicted-below", "two-sided-above", "one-seed",
        "identical"])
def test_verdict_branches(values, direction, expected):
    assert judge(seed_mean(values), direction, PP) == expected


def test_not_detectable_gives_the_largest_effect_the_ci_allows():
    found = seed_mean({0: -1.0, 1: 1.0, 2: -0.5, 3: 0.6})
    half = stats.t.ppf(0.975, 3) * np.std([-1.0, 1.0, -0.5, 0.6], ddof=1) / 2
    bound = max(abs(found.mean - half), abs(found.mean + half))
    assert judge(found, -1, PP) == f"not detectable: at most {bound:.2f} pp"
    assert judge(found, -1, PP).startswith("not detectable: at most 1.5")


def test_a_ratio_is_judged_against_1():
    assert judge(seed_mean({0: 1.9, 1: 2.1, 2: 2.0}), 1, RATIO, null=1.0) == SUPPORTED
    said = judge(seed_mean({0: 0.9, 1: 1.1, 2: 1.0}), 1, RATIO, null=1.0)
    assert said.startswith("not detectable: at most 0.") and said.endswith(" from 1")


def test_one_seed_has_no_ci():
    found = seed_mean({3: 0.25})
    assert (found.mean, found.ci_low, found.ci_high, found.seeds) == (0.25, None, None, (3,))
    with pytest.raises(ValueError, match="no seeds"):
        paired_difference({0: 1.0}, {1: 1.0})


def test_kernel_layers_are_in_layer_order_not_text_order():
    record = _epochs("torch", NONE, 0)[0]
    keys = {"10.weight": {"0.001": 0.1}, "2.weight": {"0.001": 0.1}, "0.weight": {"0.001": 0.1}}
    other = replace(record, constancy={**keys, "12.weight": {"0.001": 0.0}})
    assert kernel_layers([replace(record, constancy=keys), other]) == ["0.weight", "2.weight", "10.weight"]


# ---- the ledger -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rows():
    return ledger(_study())


def test_every_claim_has_a_row_per_backend_in_order(rows):
    assert [(r.claim, r.backend) for r in rows] == [(c.text, b) for c in CLAIMS for b in BACKENDS]
    assert {r.seeds for r in rows} == {5}


def test_gap_claim_matches_a_hand_computation(rows):
    runs = {(r.variant, r.seed): r for r in _study(backends=("torch",)) if isinstance(r, StudyRunRecord)}
    gap = {v: np.array([runs[v, s].train_acc - runs[v, s].val_acc for s in SEEDS]) for v in (NONE, L2)}
    differences = (gap[L2] - gap[NONE]) * 100
    half = stats.t.ppf(0.975, 4) * differences.std(ddof=1) / np.sqrt(5)
    row = _row(rows, "L2 narrows the train/validation gap")
    assert row.effect == pytest.approx(differences.mean()) and row.effect == pytest.approx(-4.05, abs=0.01)
    assert (row.ci_low, row.ci_high) == pytest.approx((differences.mean() - half, differences.mean() + half))
    assert row.unit == PP and row.verdict == SUPPORTED
    assert row.sentence.startswith(f"{CLAIM[row.claim].measure}: {row.effect:+.2f} pp (95% CI {row.ci_low:+.2f} pp")


@pytest.mark.parametrize("claim, effect, verdict", [
    ("Dropout narrows the train/validation gap", -7.0, SUPPORTED),
    ("Early stopping lowers the final validation loss", -0.05, SUPPORTED),
    ("L2 makes fewer weights stay constant between epochs", -24.6, SUPPORTED),
    ("L2's drop in constant weights is mostly in the early layers", -24.1, SUPPORTED),
    ("Dropout before BN hurts; put BN before dropout", 5.0, SUPPORTED),
    ("Dropout before BN shifts BN's variance by about 1/(1-p)", 2.025, SUPPORTED),
    ("Dropout(p=0) before BN changes BN's statistics", 0.0, IDENTICAL),
    ("Data augmentation narrows the train/validation gap", -5.0, SUPPORTED),
    ("BatchNorm alone narrows the train/validation gap", -2.0, SUPPORTED),
    ("L1 makes some weights exactly 0 (Adam)", 0.0, IDENTICAL),
    ("L1 makes some weights exactly 0 (SGD)", 0.0, IDENTICAL),
    ("L1 drives weights to about 0 (Adam)", 0.24, SUPPORTED),
    ("L1 drives weights to about 0 (SGD)", 0.24, SUPPORTED),
])
def test_each_claims_effect_and_verdict(rows, claim, effect, verdict):
    """Effects in torch (TensorFlow's dropout runs validate 2 points better); verdicts in both."""
    assert _row(rows, claim).effect == pytest.approx(effect, abs=0.2 if _row(rows, claim).unit == PP else 0.003)
    assert [_row(rows, claim, backend).verdict for backend in BACKENDS] == [verdict, verdict]


def test_sentences_carry_the_notes(rows):
    assert _row(rows, "Dropout before BN shifts BN's variance by about 1/(1-p)").sentence.endswith(
        ": supported. Expected 1/(1-p) = 2 at p = 0.5.")
    identical = _row(rows, "Dropout(p=0) before BN changes BN's statistics").sentence
    assert ": identical in every seed. BN's variance shift at p = 0: 1.025 (1: no shift)." in identical
    assert _row(rows, "L1 drives weights to about 0 (SGD)").sentence.endswith(
        "With L1, per layer (mean over seeds): 0.weight 0.24%, 1.weight 0.24%, 2.weight 0.24%.")
    assert "Layer 0.weight against layer 2.weight." in _row(
        rows, "L2's drop in constant weights is mostly in the early layers").sentence


def test_a_row_appears_only_when_its_variants_exist():
    records = _study(variants=(NONE, L2)) + _study(backends=("torch",), variants=(DROPOUT,))
    found = {(r.claim, r.backend) for r in ledger(records)}
    constancy = ("L2 makes fewer weights stay constant between epochs",
                 "L2's drop in constant weights is mostly in the early layers")
    assert found == {(claim, backend) for claim in ("L2 narrows the train/validation gap", *constancy)
                     for backend in BACKENDS} | {("Dropout narrows the train/validation gap", "torch")}
    assert ledger(_study(variants=(BN_ONLY, BN_BEFORE_DROPOUT, SGD_L1))) == []


def test_seeds_pair_only_where_both_variants_ran():
    records = _study(variants=(NONE,)) + _study(variants=(L2,), seeds=(3, 4, 5))
    row = _row(ledger(records), "L2 narrows the train/validation gap")
    assert row.seeds == 2


def test_dicts_and_other_kinds_are_accepted():
    records = _study(variants=(NONE, L2))
    case = CaseRecord("study/x", "ok", ("xfw-harness",), 1.0)
    assert ledger([case.as_dict(), *(r.as_dict() for r in records)]) == ledger(records)


# ---- cross-framework agreement ----------------------------------------------------------------


def test_agreement_per_variant():
    found = {a.variant: a for a in agreement(_study())}
    assert list(found) == list(STUDY_VARIANTS)
    assert found[NONE].verdict == f"{AGREE}: {IDENTICAL}" and found[NONE].effect == 0.0
    assert found[DROPOUT].verdict == DIFFER
    assert found[DROPOUT].effect == pytest.approx(-2.04)  # torch - tensorflow, percentage points
    assert (found[DROPOUT].reference, found[DROPOUT].other) == ("torch", "tensorflow")
    differences = np.array([-0.2 * (-1) ** s for s in SEEDS])
    half = stats.t.ppf(0.975, 4) * differences.std(ddof=1) / np.sqrt(5)
    bound = max(abs(differences.mean() - half), abs(differences.mean() + half))
    assert found[L2].verdict == f"{AGREE}: no detectable difference, at most {bound:.2f} pp"


def test_agreement_needs_two_seeds_and_the_reference():
    (one,) = [a for a in agreement(_study(seeds=(0,))) if a.variant == DROPOUT]
    assert one.verdict == TOO_FEW_SEEDS and one.ci_low is None
    assert agreement(_study(backends=("tensorflow",))) == []


# ---- the report section -----------------------------------------------------------------------


def _write_run(folder: Path, records: list[Record]) -> Path:
    """One case per backend and variant (its records, then its CaseRecord), as the study runner writes them."""
    folder.mkdir(parents=True)
    lines = []
    for backend in BACKENDS:
        for variant in STUDY_VARIANTS:
            case_id = f"study/{backend}/digits/mlp/{variant}"
            mine = [r for r in records if (r.backend, r.variant) == (backend, variant)]
            end = CaseRecord(case_id, "ok", ("xfw-harness", "study"), 3.0)
            lines += [json.dumps({**r.as_dict(), "case_id": case_id}) for r in (*mine, end)]
    (folder / "results.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def section(tmp_path_factory):
    folder = _write_run(tmp_path_factory.mktemp("study") / "run", _study())
    blocks = study_blocks(read_run_folder(folder), folder)
    return folder, blocks, markdown(blocks, folder), html_page("study", blocks)


def test_section_leads_with_the_ledger_then_agreement_then_plots(section):
    _, _, text, _ = section
    assert text.startswith("## Study: what regularization does to training\n")
    assert text.index("### Claims ledger") < text.index("### Each claim in words") \
        < text.index("### Cross-framework agreement") < text.index("### Study plot: ")
    assert "This ledger tests 28 claim rows at 95% confidence, so about 1 of them" in text


def test_the_variants_named_are_those_the_run_trained(tmp_path):
    trained = STUDY_VARIANTS[:3]
    folder = _write_run(tmp_path / "run", _study(variants=trained))
    text = markdown(study_blocks(read_run_folder(folder), folder), folder)
    listed = text.split("Variants: ", 1)[1].split(". This ledger", 1)[0].split("; ")
    assert listed == list(trained)  # not every variant a study may hold


def test_ledger_table_has_a_column_pair_per_backend(section):
    _, _, text, page = section
    assert ("| data / model | claim | effect measured | torch effect (95% CI) | torch verdict | "
            "tensorflow effect (95% CI) | tensorflow verdict |") in text
    line = next(ln for ln in text.splitlines() if ln.startswith("| digits / mlp | L2 narrows the train/validation gap"))
    assert line.count(" | supported |") == 2
    assert '<tr class="good"><td>digits / mlp</td><td>L2 narrows the train/validation gap</td>' in page
    identical = next(ln for ln in text.splitlines() if "| Dropout(p=0) before BN changes" in ln)
    assert identical.count("identical in every seed") == 2


def test_agreement_table_rows(section):
    _, _, text, _ = section
    agreement_text = text[text.index("### Cross-framework agreement"):text.index("### Study plot: ")]
    dropout = next(ln for ln in agreement_text.splitlines() if ln.startswith(f"| digits / mlp | {DROPOUT} |"))
    assert "torch − tensorflow: -2.04 pp (95% CI" in dropout and dropout.endswith(" | differ |")


def test_section_writes_three_plots_two_of_them_folded(section):
    folder, blocks, text, _ = section
    images = images_in(blocks)
    assert [b.path.name for b in blocks if isinstance(b, Image)] == ["study_bn_shift.png"]  # the others folded
    assert [i.path.name for i in images] == ["study_curves.png", "study_constancy.png", "study_bn_shift.png"]
    for image in images:
        assert image.path.parent == folder / "plots"
        assert image.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({image.path.relative_to(folder).as_posix()})" in text


def test_a_run_without_study_records_has_no_section(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    end = CaseRecord("parity/mlp", "ok", ("xfw-harness",), 1.0)
    (folder / "results.jsonl").write_text(json.dumps({**end.as_dict(), "case_id": "parity/mlp"}) + "\n")
    assert study_blocks(read_run_folder(folder), folder) == []
    assert not (folder / "plots").exists()


def test_l1_rows_say_when_no_weight_was_exactly_zero_in_either_variant(rows):
    assert _row(rows, "L1 makes some weights exactly 0 (Adam)").sentence.endswith(
        ": identical in every seed. No kernel weight was exactly 0, with or without L1.")


def test_a_variant_a_target_did_not_train_gets_no_empty_axes():
    from harness.report.study import curves_figure

    records = [r for r in _study(backends=("torch",), variants=(NONE, L1)) if isinstance(r, StudyEpochRecord)]
    records += [replace(r, data="mnist1d") for r in _study(backends=("torch",), variants=(NONE,))
                if isinstance(r, StudyEpochRecord)]  # mnist1d trained NONE only
    fig = curves_figure(records)
    off = [ax for ax in fig.axes if not ax.axison]
    assert len(off) == 1 and "not trained" in off[0].texts[0].get_text() and not off[0].lines
    assert all(ax.lines for ax in fig.axes if ax.axison)  # every shown panel has curves
