"""Per-training-step timing that can be trusted on a noisy machine.

`request` (the frozen timing request a command is turned into), `session` (one process's
interleaved rounds), `controls` (A/A, injected slowdown, the hand-written loop; paired comparisons
and noise floors), `replication` (worker processes until the CI is narrow enough), `worker` (one
such process), `percall` (the per-call cost of a layer, by dose-response), `calibration` (evidence
that the CIs are honest). The statistics live in harness/stats.py.
"""
