"""Numerically stable phi functions for torch tensors and Python floats.

phi_0(z) = e^z and phi_k(z) = sum_{m>=0} z^m / (m + k)! (k >= 1), see spec-dpmsolver-res.md §2.1.
Two evaluations, each used where it is accurate (no cancellation, no NaN, no inf):

- |z| < max(k, 1): the Taylor series, summed by Horner's rule with enough terms that the
  truncation error is below float64 rounding on the whole disc. Its terms decrease monotonically
  there (ratio |z|/(m + k + 1) < 1), so the alternating sum for negative z loses at most a small
  constant factor.
- |z| >= max(k, 1): phi_1 = expm1(z)/z, then the forward recurrence
  phi_{j+1} = (phi_j - 1/j!)/z, whose error amplification per step is j/|z| <= 1 there.

Both branches are evaluated on safe arguments (the other branch's points replaced by a harmless
value) so that neither values nor gradients pick up NaN from the branch not taken; autograd
differentiates through the chosen branch (phi_k' = phi_k - k phi_{k+1}).
"""

from __future__ import annotations

import math
import sys

import torch

from phiforge.runtime.errors import InputError

__all__ = ["MAX_K", "phi", "phi_all", "phi_all_float", "phi_float", "psi_all_float"]

MAX_K = 12
_SERIES_TERMS = 48  # |z| < 12: 12^48/(48+k)! < 1e-17 phi_k(z) for every k <= MAX_K


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= MAX_K:
        raise InputError(f"phi: parameter 'k' must be an integer in 0..{MAX_K}, got {k!r}")
    return k


def _series(z: torch.Tensor, k: int) -> torch.Tensor:
    """sum_{m < M} z^m/(m+k)! by Horner's rule."""
    result = torch.full_like(z, 1.0 / math.factorial(_SERIES_TERMS - 1 + k))
    for m in range(_SERIES_TERMS - 2, -1, -1):
        result = result * z + 1.0 / math.factorial(m + k)
    return result


def phi_all(z: torch.Tensor, k_max: int) -> list[torch.Tensor]:
    """[phi_0(z), ..., phi_{k_max}(z)], each with the shape and dtype of z."""
    _check_k(k_max)
    if not torch.is_floating_point(z):
        z = z.to(torch.get_default_dtype())
    values = [torch.exp(z)]
    if k_max == 0:
        return values
    magnitude = z.abs()
    # Recurrence branch on |z| >= 1 (points inside get a safe stand-in value).
    outside = magnitude >= 1.0
    z_far = torch.where(outside, z, torch.full_like(z, 2.0))
    recurrence = [torch.expm1(z_far) / z_far]
    for j in range(1, k_max):
        recurrence.append((recurrence[-1] - 1.0 / math.factorial(j)) / z_far)
    for k in range(1, k_max + 1):
        radius = float(max(k, 1))
        use_series = magnitude < radius
        z_near = torch.where(use_series, z, torch.zeros_like(z))
        values.append(torch.where(use_series, _series(z_near, k), recurrence[k - 1]))
    return values


def phi(k: int, z: torch.Tensor | float) -> torch.Tensor | float:
    """phi_k(z) for a tensor (same shape and dtype) or a float (returns a float, float64)."""
    _check_k(k)
    if isinstance(z, torch.Tensor):
        return phi_all(z, k)[k]
    return phi_all_float(z, k)[k]


_EXP_MAX = math.log(sys.float_info.max)  # 709.78...: the largest z with a finite e^z
_INVERSE_FACTORIALS = tuple(1.0 / math.factorial(n) for n in range(_SERIES_TERMS + MAX_K + 1))


def phi_all_float(z: float, k_max: int) -> list[float]:
    """[phi_0(z), ..., phi_{k_max}(z)] for a Python float, in float64 (same algorithm as
    :func:`phi_all`, in plain Python: a few microseconds, for per-step coefficients)."""
    _check_k(k_max)
    z = float(z)
    if not math.isfinite(z):
        raise InputError(f"phi: parameter 'z' must be finite, got {z!r}")
    if z > _EXP_MAX:
        raise InputError(
            f"phi: parameter 'z' must be at most {_EXP_MAX:.6f} (e^z overflows float64 beyond), "
            f"got {z!r}"
        )
    values = [math.exp(z)]
    magnitude = abs(z)
    recurrence = math.expm1(z) / z if magnitude >= 1.0 else 0.0
    for k in range(1, k_max + 1):
        if magnitude < k:
            total = _INVERSE_FACTORIALS[_SERIES_TERMS - 1 + k]
            for m in range(_SERIES_TERMS - 2, -1, -1):
                total = total * z + _INVERSE_FACTORIALS[m + k]
            values.append(total)
        else:
            values.append(recurrence)
        if magnitude >= 1.0:
            recurrence = (recurrence - _INVERSE_FACTORIALS[k]) / z
    return values


def phi_float(k: int, z: float) -> float:
    """phi_k(z) for a Python float, in float64."""
    return phi_all_float(z, _check_k(k))[k]


_PSI_ASYMPTOTIC = 700.0  # beyond, e^{-y} y^j / j! < 1e-290: psi_j(-y) = j!/y^(j+1) in float64


def psi_all_float(x: float, j_max: int) -> list[float]:
    """[psi_0(x), ..., psi_{j_max}(x)] for a float x <= 0, in float64, where

        psi_j(x) = int_0^1 e^{s x} s^j ds = j! e^x phi_{j+1}(-x).

    The integrand is positive, so a combination sum_j r_j psi_j(c z) of a polynomial
    p(s) = sum_j r_j s^j loses no digits to cancellation unless p itself changes sign where
    e^{s c z} is large: this is the form in which phi-linear coefficients that decay like 1/z^2
    (quadrature weights of spec-dpmsolver-res.md §2.2, whose polynomial vanishes at s = 0) are
    evaluated for z <= 0 (phi_k(z) = int_0^1 e^{(1-theta) z} theta^{k-1}/(k-1)! dtheta with
    s = 1 - theta). phi_{j+1}(-x) has positive Taylor terms and a forward recurrence that
    amplifies nothing for -x >= j + 1, so every psi_j is accurate to a few ulps."""
    _check_k(j_max + 1)
    x = float(x)
    if not (math.isfinite(x) and x <= 0):
        raise ValueError(f"psi: parameter 'x' must be finite and <= 0, got {x!r}")
    y = -x
    if y > _PSI_ASYMPTOTIC:
        return [math.factorial(j) / y ** (j + 1) for j in range(j_max + 1)]
    scale = math.exp(x)
    values = phi_all_float(y, j_max + 1)
    return [math.factorial(j) * scale * values[j + 1] for j in range(j_max + 1)]
