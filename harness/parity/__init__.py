"""Parity: the same weights in the reference (torch) and another backend, the same numbers out.
`checks` compares outputs, losses, gradients, optimizer steps and BatchNorm statistics against
a float64 oracle.
"""
