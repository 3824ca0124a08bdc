"""Parity: the same weights in the reference (torch) and another backend, the same numbers out.
`checks` compares outputs, losses, gradients, optimizer steps and BatchNorm statistics, each
framework run in float32 and in float64; `tolerance` says how far two correct float32 results
may differ, from both frameworks' own float32 errors.
"""
