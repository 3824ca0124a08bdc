"""The study layer: what regularization does to training, on real data, in both frameworks.

`datasets` (offline data sets), `train` (one training run through the backend interface),
`metrics` (weight constancy, BN variance shift, early stopping), `suites` (the study suites and
variants), `plan` (a study suite as cases), `worker` (one case), `ledger` (the claims ledger).
"""
