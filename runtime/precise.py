"""Coefficients of a straight-line program from its exact definitions, in mpmath.

A generated module of a straight-line record (res_5s, res_6s) evaluates its program in float64
on [FLOAT64_DOWN_TO, 0], where the record's construction measured it and covered its
cancellations with Taylor series (``phiforge.derive.float_accuracy``). Beyond, for large -z,
phi_k(c z) = -sum_{j<k} (c z)^(j-k)/j! + e^(c z) (c z)^(-k), and the method's combinations
cancel the leading terms of those expansions: res_6s's float64 program loses 5 digits at
z = -85, all of them near z = -1850, and divides by an exact 0 beyond. There the module calls
:func:`precise_coefficients` with its exact program, which is run in mpmath at 40 digits and
again at twice the digits until the two runs agree to 1e-18 of each entry (or of 1e-12 of the
largest entry, for entries crossing zero); a run that never agrees by 1280 digits is refused.
One call costs milliseconds: such steps (h = -z > 20 in log-SNR) are rare in sampling.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mpmath

from phiforge.derive.phi_values import mp_phi
from phiforge.runtime.errors import InputError

__all__ = ["precise_coefficients"]

_DIGITS = (40, 80, 160, 320, 640, 1280)
_AGREEMENT = mpmath.mpf("1e-18")

Coefficients = tuple[tuple[tuple[float, ...], ...], tuple[float, ...]]


def _entries(a: Any, b: Any) -> list[Any]:
    return [x for row in a for x in row] + list(b)


def precise_coefficients(program: Callable[..., Any], z: float) -> Coefficients:
    """(a, b) of ``program(z, mpf, phi)`` as float64, from runs at rising precision that agree
    (module docstring)."""
    previous = None
    for digits in _DIGITS:
        with mpmath.workdps(digits):
            try:
                a, b = program(mpmath.mpf(z), mpmath.mpf, mp_phi)
            except ZeroDivisionError:
                previous = None
                continue
            entries = [mpmath.mpf(x) for x in _entries(a, b)]
            if previous is not None:
                largest = max(abs(x) for x in entries)
                if all(
                    abs(x - y) <= _AGREEMENT * max(abs(x), largest * mpmath.mpf("1e-12"))
                    for x, y in zip(entries, previous, strict=True)
                ):
                    return (
                        tuple(tuple(float(x) for x in row) for row in a),
                        tuple(float(x) for x in b),
                    )
            previous = entries
    raise InputError(
        f"parameter 'z' ({z!r}): the coefficients are not determined at {_DIGITS[-1]} digits (a "
        "divisor of the method's program vanishes there)"
    )
