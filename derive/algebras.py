"""The algebras in which an order condition is evaluated.

An order condition (spec order-conditions.md §4.2) is built from the coefficient functions of the
method by three operations only: lift a coefficient function of one vertex variable, multiply the
contributions of different vertices, and add terms with constant weights c_i^k. Each class below
implements those operations for one question:

- :class:`TensorAlgebra` (operator setting, exact): every non-leaf vertex has its own variable,
  the condition is a sparse tensor over the phi basis with one slot per vertex (§4.3, §4.5a), and
  it holds strongly iff every entry vanishes.
- :class:`ExpPolyAlgebra` (scalar setting, exact): all variables are one z (L = +-1 for diffusion
  ODEs), products of phi functions of the same z are taken in exponential-polynomial normal form.
- :class:`SeriesAlgebra`: Taylor coefficients about 0 up to a total degree, multivariate (operator)
  or univariate (scalar). Degree 0 is the classical condition at z = 0; degree p - n the
  non-stiff condition of a tree of order n for non-stiff order p (§2.4).

Weak conditions (§2.3, §4.4) replace the root coefficient by its value at 0; every algebra does
that through :meth:`lift_root` with ``at_zero=True``.
"""

from __future__ import annotations

from typing import Any

from phiforge.derive.phibasis import (
    PhiCombination,
    Ring,
    at_zero,
    exp_poly,
    exp_poly_product,
    taylor,
)

__all__ = ["ExpPolyAlgebra", "SeriesAlgebra", "TensorAlgebra"]


class _Algebra:
    """Shared mechanics: elements are sparse dicts ``{key: coefficient}``."""

    def __init__(self, ring: Ring) -> None:
        self.ring = ring

    def zero(self) -> dict:
        return {}

    def add_scaled(self, target: dict, element: dict, weight: Any) -> None:
        for key, q in element.items():
            target[key] = target.get(key, 0) + weight * q

    def prune(self, element: dict) -> dict:
        return {key: q for key, q in element.items() if not self.ring.is_zero(q)}

    def is_zero(self, element: dict) -> bool:
        return all(self.ring.is_zero(q) for q in element.values())

    def lift_root(self, combination: PhiCombination, at_zero_value: bool) -> dict:
        if at_zero_value:
            return self.const(at_zero(combination))
        return self.lift(combination)

    def const(self, value: Any) -> dict:  # pragma: no cover - overridden
        raise NotImplementedError

    def lift(self, combination: PhiCombination) -> dict:  # pragma: no cover - overridden
        raise NotImplementedError


class TensorAlgebra(_Algebra):
    """Elements ``{(key_slot0, key_slot1, ...): q}``; multiplication is the outer product."""

    def const(self, value: Any) -> dict:
        return {(): value}

    def lift(self, combination: PhiCombination) -> dict:
        return {(key,): q for key, q in combination.items()}

    def mul(self, left: dict, right: dict) -> dict:
        return {k1 + k2: q1 * q2 for k1, q1 in left.items() for k2, q2 in right.items()}


class ExpPolyAlgebra(_Algebra):
    """Elements ``{(C, p): q}`` = sum q e^{C z} z^p (one variable z)."""

    def const(self, value: Any) -> dict:
        return {(0, 0): value}

    def lift(self, combination: PhiCombination) -> dict:
        return exp_poly(combination)

    def mul(self, left: dict, right: dict) -> dict:
        return exp_poly_product(left, right)


class SeriesAlgebra(_Algebra):
    """Taylor coefficients up to total degree ``degree``.

    Multivariate (``multivariate=True``, operator setting): keys are tuples of per-slot degrees.
    Univariate (scalar setting): keys are 1-tuples holding the degree of the one variable z.
    """

    def __init__(self, ring: Ring, degree: int, multivariate: bool) -> None:
        super().__init__(ring)
        self.degree = degree
        self.multivariate = multivariate

    def const(self, value: Any) -> dict:
        return {() if self.multivariate else (0,): value}

    def lift(self, combination: PhiCombination) -> dict:
        return {(m,): q for m, q in enumerate(taylor(combination, self.degree))}

    def mul(self, left: dict, right: dict) -> dict:
        limit = self.degree
        result: dict = {}
        for k1, q1 in left.items():
            d1 = sum(k1)
            for k2, q2 in right.items():
                if d1 + sum(k2) > limit:
                    continue
                key = k1 + k2 if self.multivariate else (k1[0] + k2[0],)
                result[key] = result.get(key, 0) + q1 * q2
        return result

    def valuation(self, element: dict) -> int | None:
        """Lowest total degree with a nonzero coefficient, or None if all vanish up to degree."""
        degrees = [sum(key) for key, q in element.items() if not self.ring.is_zero(q)]
        return min(degrees) if degrees else None
