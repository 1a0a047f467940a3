"""phi_k values outside SymPy: float64 over numpy arrays, and any precision in mpmath.

:func:`phi_table` is the one float64 phi of ``derive/`` (pointwise feasibility): the algorithm of
``runtime.phi`` (which works on torch tensors) written in numpy, since ``derive/`` does not
import torch. :func:`mp_phi` is the one arbitrary-precision phi of the project's programs (their
exact values in ``derive.straightline`` and ``derive.float_accuracy``, and a generated module's
exact program beyond its float64 range, ``runtime.precise``); this module imports neither SymPy
nor torch, so the runtime reads it cheaply.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import mpmath
import numpy as np

__all__ = ["mp_phi", "phi_numpy", "phi_table"]

_SERIES_TERMS = 48  # as runtime.phi: |z| < k <= 16 leaves a tail below 1e-17 phi_k(z)
_INVERSE_FACTORIALS = [1.0 / math.factorial(n) for n in range(_SERIES_TERMS + 17)]


def phi_table(z: np.ndarray | float, k_max: int) -> list[np.ndarray]:
    """[phi_0(z), ..., phi_k_max(z)] for real z (arrays or numbers) in float64: the power series
    sum_m z^m / (m + k)! where |z| < k, else the recurrence phi_k = (phi_{k-1} - 1/(k-1)!) / z
    from phi_1 = expm1(z) / z (runtime.phi's algorithm, in numpy; measured 3.3e-16 relative or
    better against mpmath for k <= 8 on -5 <= z <= 1)."""
    z = np.asarray(z, dtype=np.float64)
    magnitude = np.abs(z)
    large = magnitude >= 1.0
    divisor = np.where(large, z, 1.0)
    with np.errstate(over="ignore"):  # z > 709 (an unstable method's scaled step): inf
        values = [np.exp(z)]
        recurrence = np.where(large, np.expm1(z) / divisor, 0.0)
    for k in range(1, k_max + 1):
        total = np.full_like(z, _INVERSE_FACTORIALS[_SERIES_TERMS - 1 + k])
        for m in range(_SERIES_TERMS - 2, -1, -1):
            total = total * z + _INVERSE_FACTORIALS[m + k]
        values.append(np.where(magnitude < k, total, recurrence))
        with np.errstate(invalid="ignore"):  # inf - const where e^z overflowed
            recurrence = np.where(large, (recurrence - _INVERSE_FACTORIALS[k]) / divisor, 0.0)
    return values


def phi_numpy(k: int, z: np.ndarray) -> np.ndarray:
    """phi_k(z) for real z (arrays): :func:`phi_table`'s entry k."""
    return phi_table(z, k)[k]


def mp_phi(k: Any, x: Any) -> Any:
    """phi_k(x) = 1F1(1; k + 1; x) / k! at mpmath's current precision (a program names the
    same phi_k(c z) in many definitions: the values are remembered per precision)."""
    return _mp_phi_at(int(k), x, mpmath.mp.prec)


@functools.lru_cache(maxsize=4096)
def _mp_phi_at(k: int, x: Any, prec: int) -> Any:
    with mpmath.workprec(prec):
        return mpmath.hyp1f1(1, k + 1, x) / mpmath.factorial(k)
