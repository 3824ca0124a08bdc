"""How far two frameworks' float32 results may differ: the tolerance rule of every parity check.

Each framework runs the check twice from the same weights and data, in float32 and in float64.
Write t32, t64 for the reference's results and k32, k64 for the other framework's. Element by
element,
    |t32 - k32| <= |t32 - t64| + |t64 - k64| + |k64 - k32|,
and where both frameworks compute the same function, t64 and k64 agree to float64 rounding
(checked: to F64_AGREEMENT of the tolerance). So the two frameworks' own float32 errors, each
measured against its own float64 result, bound how far their float32 results can differ,
whatever either does inside (kernel choice, summation order, a cancellation one framework
suffers and the other avoids). A check passes when
    max|t32 - k32| / scale <= tol = max(floor, SAFETY_FACTOR * (err_reference + err_other))
and the float64 results agree, every error relative to the check's scale (max|t64|). A layout
or convention bug moves both of the other framework's results, so its own error stays small and
the difference does not: it fails (errors of 1e-3 and up, against tolerances of 1e-5 where a
computation is well conditioned).

Constraints: this module decides numbers only. It runs nothing and imports no framework; what is
measured, and on which scale, is harness/parity/checks.py's.
"""

from __future__ import annotations

# float32 has a unit roundoff of 6e-8; a dot product of k terms summed in a different order
# (oneDNN vs MKL blockings) differs by about sqrt(k) * 6e-8 relative to its scale, and
# k <= ~1e3 here (784 inputs, 3x3x64 = 576 conv taps): ~2e-6. The floor of 1e-5 leaves 5x
# headroom; observed forward errors are ~4e-7. It keeps a check that both frameworks happen to
# compute almost exactly (a loss, a first optimizer step) from demanding more than float32 can
# promise on another machine.
TOL_FLOOR = 1e-5
# The bound is worst-case for the very arrays compared: with t64 = k64 exactly, a factor of 1
# could not fail a correct port. 2 is a margin, not a correction, for what the bound assumes
# rather than measures (t64 = k64, checked only to F64_AGREEMENT; the check's own float64
# arithmetic). It costs little sensitivity: a bug hides only if it is smaller than twice the
# rounding, which is below 1e-4 in all but the ill-conditioned checks (BatchNorm's backward,
# gradients that are zero up to rounding), while layout and convention bugs are 1e-3 and up.
SAFETY_FACTOR = 2.0
# A tensor whose exact (float64) value is below this fraction of the largest tensor in its
# check is zero up to rounding: e.g. the gradient of a bias feeding BatchNorm (directly or
# through max-pooling, which commutes with a per-channel shift). Its float32 values are pure
# noise, so it is judged against the check's largest tensor: both frameworks must find ~0.
STRUCTURAL_ZERO = 1e-6
# The two float64 results must agree to this fraction of the tolerance for the bound to hold:
# their difference enters it additively, so at 1e-4 of the tolerance it cannot matter (1e-9 at
# the floor). Float64 rounds 2^29 (5e8) times finer than float32, so an ill-conditioned check
# that widens the tolerance loosens the float64 disagreement alike: measured over 50 random
# models, up to 1e-11 of the scale (gradients through BatchNorm) and 4e-9 of the tolerance. A
# convention that differs, or a float64 path that is not float64 (Keras rounds Python-float
# hyperparameters and penalty factors through float32: 7e-6 on an Adam step, 8e-9 on a loss
# with l1), fails the check instead of widening its tolerance.
F64_AGREEMENT = 1e-4


def tolerance(err_reference: float, err_other: float, floor: float = TOL_FLOOR) -> tuple[float, str]:
    """(tol, note): the largest relative difference two correct float32 implementations may show,
    given each one's own float32 error against its float64 result (relative to the check's
    scale); the note says when and why it is wider than the floor ("" when it is not)."""
    tol = max(floor, SAFETY_FACTOR * (err_reference + err_other))
    if tol <= floor:
        return tol, ""
    return tol, (f"tolerance widened to {SAFETY_FACTOR:g} x the frameworks' own float32 errors "
                 f"({err_reference:.1e} + {err_other:.1e})")
