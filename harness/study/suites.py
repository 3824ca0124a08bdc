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
BN_ONLY = "bn=after,dropout=absent"  # BatchNorm where the dropout was
DROPOUT0_BEFORE_BN = "bn=after,dropout=0"
DROPOUT_BEFORE_BN = "bn=after,dropout=0.5"  # the "disharmony" of Li et al. (CVPR 2019)
BN_BEFORE_DROPOUT = "bn=before,dropout=0.5"
STUDY_VARIANTS = (NONE, L2, DROPOUT, EARLY_STOPPING, BN_ONLY, DROPOUT0_BEFORE_BN, DROPOUT_BEFORE_BN,
                  BN_BEFORE_DROPOUT)

# The fastest mode of each framework whose numbers parity checks: tf.function runs these small
# steps ~5x faster than Keras eager; torch.compile's compile time (~10 s a model) would outweigh
# runs of a few seconds, so torch trains eagerly.
STUDY_MODES = {"torch": "eager", "tensorflow": "compiled"}
CASE_TIMEOUT_S = 1800


@dataclass(frozen=True)
class StudySuite:
    name: str
    datasets: tuple[tuple[str, str], ...]  # (data set, model)
    seeds: int
    epochs: int
    variants: tuple[str, ...] = STUDY_VARIANTS
    # Seconds per training run, for the progress display's time left (2 cores: digits 10 epochs
    # 1-3.5 s, 20 epochs 4-6 s; mnist1d 20 epochs ~9 s).
    expected_s_per_run: float = 3.0


STUDY_SUITES = {
    "quick": StudySuite("quick", (("digits", "mlp"),), seeds=3, epochs=10),
    "default": StudySuite("default", (("digits", "mlp"), ("mnist1d", "mlp")), seeds=5, epochs=20,
                          expected_s_per_run=7.0),
    "full": StudySuite("full", (("digits", "mlp"), ("digits", "cnn"), ("mnist1d", "mlp")), seeds=10, epochs=30,
                       expected_s_per_run=12.0),
}
