"""The study's suites and variants: names and sizes only, so that the CLI can list them without
loading the study (numpy, the data sets, the ledger). harness/study/plan.py plans their cases;
harness/study/ledger.py reads the variants' records.
"""

from __future__ import annotations

from dataclasses import dataclass

NONE = "dropout=absent"  # the overfitting baseline: no dropout, no L2, no BatchNorm
L2 = "dropout=absent,l2=0.001"
DROPOUT = "dropout=0.5"
EARLY_STOPPING = "dropout=absent,early_stopping"
AUGMENT = "dropout=absent,augment"  # shifts and noise on the training split (harness/study/augment.py)
BN_ONLY = "bn=after,dropout=absent"  # BatchNorm where the dropout was
DROPOUT0_BEFORE_BN = "bn=after,dropout=0"
DROPOUT_BEFORE_BN = "bn=after,dropout=0.5"  # the "disharmony" of Li et al. (CVPR 2019)
BN_BEFORE_DROPOUT = "bn=before,dropout=0.5"
L1 = "dropout=absent,l1=0.001"  # as strong as the L2 variant: the best case for "L1 makes weights 0"
SGD = "dropout=absent,optimizer=sgd"  # SGD (lr 0.01, momentum 0.9): L1's sparsity under both optimizers
SGD_L1 = "dropout=absent,l1=0.001,optimizer=sgd"

# The variants, grouped by the claims they answer (harness/study/ledger.py).
GAP_VARIANTS = (NONE, L2, DROPOUT, EARLY_STOPPING, AUGMENT, BN_ONLY)  # what narrows the train/val gap
BN_ORDER_VARIANTS = (DROPOUT0_BEFORE_BN, DROPOUT_BEFORE_BN, BN_BEFORE_DROPOUT)  # dropout and BatchNorm
L1_VARIANTS = (L1, SGD, SGD_L1)  # with NONE: does L1 make weights exactly 0, with Adam and with SGD
STUDY_VARIANTS = (*GAP_VARIANTS, *BN_ORDER_VARIANTS, *L1_VARIANTS)
# The quick study's: its first 8 (the claims of the first ledger), within its 3-minute bar.
QUICK_VARIANTS = (NONE, L2, DROPOUT, EARLY_STOPPING, BN_ONLY, *BN_ORDER_VARIANTS)

# The fastest mode of each framework whose numbers parity checks: tf.function (and jax.jit, Keras
# on JAX's jit) runs these small steps several times faster than eager; torch.compile's compile
# time (~10 s a model, tens of seconds for Keras on torch) would outweigh runs of a few seconds, so
# torch and Keras on torch train eagerly.
STUDY_MODES = {"torch": "eager", "tensorflow": "compiled", "jax": "compiled", "keras_jax": "compiled",
               "keras_torch": "eager"}
CASE_TIMEOUT_S = 1800


@dataclass(frozen=True)
class StudyTarget:
    """One data set and model of a study suite, with the variants trained on it."""

    data: str
    model: str
    variants: tuple[str, ...] = STUDY_VARIANTS


@dataclass(frozen=True)
class StudySuite:
    name: str
    targets: tuple[StudyTarget, ...]
    seeds: int
    epochs: int
    # Seconds per training run of one variant (both frameworks' mean), for the progress display's
    # time left (2 cores, 20 epochs: digits mlp ~1.6 s, digits cnn ~3 s, mnist1d mlp ~3.2 s).
    expected_s_per_run: float = 3.0


# The default study answers every claim on the digits mlp; the digits cnn adds the gap and L1 claims
# for a CNN, MNIST-1D the gap and BatchNorm claims on a second data set (6.1 min on 2 cores, 2 jobs;
# all 12 variants on all three would train 36 per seed instead of 30).
STUDY_SUITES = {
    "quick": StudySuite("quick", (StudyTarget("digits", "mlp", QUICK_VARIANTS),), seeds=3, epochs=10),
    "default": StudySuite("default", (StudyTarget("digits", "mlp"),
                                      StudyTarget("digits", "cnn", (*GAP_VARIANTS, *L1_VARIANTS)),
                                      StudyTarget("mnist1d", "mlp", (*GAP_VARIANTS, *BN_ORDER_VARIANTS))),
                          seeds=5, epochs=20, expected_s_per_run=3.0),
    "full": StudySuite("full", (StudyTarget("digits", "mlp"), StudyTarget("digits", "cnn"),
                                StudyTarget("mnist1d", "mlp")), seeds=10, epochs=30, expected_s_per_run=5.0),
}
