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
- :class:`FractionAlgebra` (either setting, exact): for coefficient functions that are ratios of
  phi polynomials (e.g. the scalar-setting 3-stage order-3 family, spec-dpmsolver-res.md §7.6);
  terms are kept over products of the coefficients' denominators, and zero is decided on the
  numerator over the common denominator, in exponential-polynomial form (one set of slots per
  vertex variable in the operator setting).
- :class:`ModularAlgebra` (either setting, any rational coefficients): values at random points
  (z, w = e^{z/d}) modulo a 61-bit prime, one point set per vertex variable in the operator
  setting; z and e^{z/d} are algebraically independent, so this decides zero with a failure
  probability below 1e-60 (Schwartz-Zippel).
- :class:`SeriesAlgebra`: Taylor coefficients about 0 up to a total degree, multivariate (operator)
  or univariate (scalar). Degree 0 is the classical condition at z = 0; degree p - n the
  non-stiff condition of a tree of order n for non-stiff order p (§2.4).
- :class:`ExpressionAlgebra`: SymPy expressions of coefficients in any form (unknowns of a
  construction with phi placeholders, or a tableau's own expressions), one variable per vertex
  in the operator setting: the equations of the construction and the residuals displayed for
  methods whose coefficients are not phi-linear.

One recursion (:class:`~phiforge.derive.conditions.ConditionEvaluator`) evaluates every
condition in every algebra: conditions, checker and construction differ only in the algebra.

Weak conditions (§2.3, §4.4) replace the root coefficient by its value at 0; every algebra does
that through :meth:`lift_root` with ``at_zero=True``.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

import sympy

from phiforge.derive.phibasis import (
    CoefficientFunction,
    Ring,
    exp_poly,
    exp_poly_product,
)

__all__ = [
    "ExpPolyAlgebra",
    "ExpressionAlgebra",
    "FractionAlgebra",
    "InconclusiveError",
    "ModularAlgebra",
    "SeriesAlgebra",
    "TensorAlgebra",
]


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

    def lift_root(self, function: CoefficientFunction, at_zero_value: bool) -> dict:
        if at_zero_value:
            return self.const(function.at_zero())
        return self.lift(function)

    def phi(self, q: int, scale: Any, weight: Any) -> dict:
        """weight * phi_q(scale z) of one vertex variable z."""
        ring = self.ring
        return self.lift(CoefficientFunction.linear({(q, ring.coerce(scale)): ring.coerce(weight)}))

    def const(self, value: Any) -> dict:  # pragma: no cover - overridden
        raise NotImplementedError

    def lift(self, function: CoefficientFunction) -> dict:  # pragma: no cover - overridden
        raise NotImplementedError


class TensorAlgebra(_Algebra):
    """Elements ``{(key_slot0, key_slot1, ...): q}``; multiplication is the outer product."""

    def const(self, value: Any) -> dict:
        return {(): value}

    def lift(self, function: CoefficientFunction) -> dict:
        return {(key,): q for key, q in function.as_combination().items()}

    def mul(self, left: dict, right: dict) -> dict:
        return {k1 + k2: q1 * q2 for k1, q1 in left.items() for k2, q2 in right.items()}


class ExpPolyAlgebra(_Algebra):
    """Elements ``{(C, p): q}`` = sum q e^{C z} z^p (one variable z)."""

    def const(self, value: Any) -> dict:
        return {(0, 0): value}

    def lift(self, function: CoefficientFunction) -> dict:
        return exp_poly(function.as_combination())

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

    def lift(self, function: CoefficientFunction) -> dict:
        return {(m,): q for m, q in enumerate(function.taylor(self.degree))}

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


class FractionAlgebra(_Algebra):
    """Elements ``{(denominators, numerator_key): q}`` over exponential polynomials.

    Scalar: ``denominators`` is the sorted tuple of the denominator ids multiplied in, and
    ``numerator_key`` one (C, p). Operator: both are tuples with one entry per slot (vertex
    variable), 0 meaning no denominator. Denominator id 0 is the constant 1.
    """

    def __init__(self, ring: Ring, multivariate: bool) -> None:
        super().__init__(ring)
        self.multivariate = multivariate
        self._ids: dict[Any, int] = {}
        self._denominators: list[dict] = [{(0, 0): ring.coerce(1)}]

    def _denominator_id(self, function: CoefficientFunction) -> int:
        if function.denominator == (((), 1),) or function.is_linear:
            return 0
        key = function.denominator
        if key not in self._ids:
            self._ids[key] = len(self._denominators)
            self._denominators.append(CoefficientFunction.poly_exp_poly(key))
        return self._ids[key]

    def const(self, value: Any) -> dict:
        if self.multivariate:
            return {((), ()): value}
        return {((), (0, 0)): value}

    def lift(self, function: CoefficientFunction) -> dict:
        numerator = CoefficientFunction.poly_exp_poly(function.numerator)
        den = self._denominator_id(function)
        if self.multivariate:
            return {((den,), (key,)): q for key, q in numerator.items()}
        return {(((den,) if den else ()), key): q for key, q in numerator.items()}

    def mul(self, left: dict, right: dict) -> dict:
        result: dict = {}
        for (d1, k1), q1 in left.items():
            for (d2, k2), q2 in right.items():
                if self.multivariate:
                    key = (d1 + d2, k1 + k2)
                else:
                    key = (tuple(sorted(d1 + d2)), (k1[0] + k2[0], k1[1] + k2[1]))
                result[key] = result.get(key, 0) + q1 * q2
        return result

    def _times(self, poly: dict, factor: dict, slot: int | None) -> dict:
        result: dict = {}
        for key, q in poly.items():
            for (c, p), f in factor.items():
                if slot is None:
                    new = (key[0] + c, key[1] + p)
                else:
                    c0, p0 = key[slot]
                    new = (*key[:slot], (c0 + c, p0 + p), *key[slot + 1 :])
                result[new] = result.get(new, 0) + q * f
        return result

    def is_zero(self, element: dict) -> bool:
        groups: dict[Any, dict] = {}
        for (den, key), q in element.items():
            groups.setdefault(den, {})
            groups[den][key] = groups[den].get(key, 0) + q
        if not groups:
            return True
        total: dict = {}
        if self.multivariate:
            slots = len(next(iter(groups)))
            per_slot = [sorted({den[v] for den in groups} - {0}) for v in range(slots)]
            for den, poly in groups.items():
                for v in range(slots):
                    for other in per_slot[v]:
                        if other != den[v]:
                            poly = self._times(poly, self._denominators[other], v)
                for key, q in poly.items():
                    total[key] = total.get(key, 0) + q
        else:
            common: dict[int, int] = {}
            for den in groups:
                for ident in set(den):
                    common[ident] = max(common.get(ident, 0), den.count(ident))
            for den, poly in groups.items():
                for ident, power in common.items():
                    for _ in range(power - den.count(ident)):
                        poly = self._times(poly, self._denominators[ident], None)
                for key, q in poly.items():
                    total[key] = total.get(key, 0) + q
        return all(self.ring.is_zero(q) for q in total.values())


class InconclusiveError(ValueError):
    """ModularAlgebra could not decide (a denominator vanishes at a sample point); the caller
    falls back to FractionAlgebra."""


class ModularAlgebra(_Algebra):
    """Any rational coefficients, either setting: an element is evaluated at random points.

    Let d be the common denominator of the phi scales c. With w = e^{z/d}, every phi_k(c z) =
    (w^{cd} - sum_{m<k} (cz)^m/m!)/(cz)^k is a rational function of (z, w) over Q, and z and
    e^{z/d} are algebraically independent, so an element (a rational expression in the phi
    values) is zero as a function of z iff it is zero in Q(z, w). It is evaluated at ``points``
    independent random points (z, w) of GF(p), p = 2^61 - 1: a non-zero value proves it
    non-zero; a non-zero numerator of total degree D vanishes at all of them with probability
    at most (D/p)^points (Schwartz-Zippel), below 1e-60 for D < 10^3 and 4 points. Replaces
    symbolic normalisation in Q(P_1, ..., P_n), whose gcds grow without bound for methods with
    many rational coefficients (the 7-stage order-5 construction).

    Operator setting (``multivariate=True``): every vertex variable z_v gets its own random
    points (the pairs (z_v, e^{z_v/d}) of different vertices are algebraically independent too,
    so the same bound holds for the multivariate numerator). Products place the right factor's
    vertices after the left factor's, so an element keeps its values for every placement
    (offset o of its first vertex, o < ``slots``): ``{"k": vertices, "v": values[o][point]}``;
    a product at offset o multiplies the left values at o by the right values at o + k_left.
    """

    PRIME = 2**61 - 1

    def __init__(
        self,
        ring: Ring,
        keys: list,
        points: int = 4,
        seed: int = 20261123,
        multivariate: bool = False,
        slots: int = 8,
    ) -> None:
        import random
        from math import lcm

        super().__init__(ring)
        scales = [Fraction(str(Ring.to_sympy(c))) for c in {c for _, c in keys}] or [Fraction(1)]
        self._d = lcm(*(max(1, s.denominator) for s in scales))
        generator = random.Random(seed)
        self._slots = slots if multivariate else 1
        self._points = [
            [
                (generator.randrange(2, self.PRIME - 1), generator.randrange(2, self.PRIME - 1))
                for _ in range(points)
            ]
            for _ in range(self._slots)
        ]
        self._keys: dict[Any, tuple[tuple[int, ...], ...]] = {}
        self._lifted: dict[int, tuple[Any, tuple[tuple[int, ...], ...]]] = {}

    @classmethod
    def for_tableau(cls, sparse, max_order: int, multivariate: bool) -> ModularAlgebra:
        """The algebra for checking ``sparse`` (a SparseTableau) up to ``max_order``: every phi
        key of its coefficient functions and of the conditions (phi_q(c z), q <= max_order + 1)
        fixes the common scale denominator d."""
        keys = [(q, c) for q in range(1, max_order + 2) for c in {*sparse.c, 1} if c != 0]
        for function in (*sparse.a.values(), *sparse.b.values()):
            keys.extend(function.phi_keys())
        return cls(sparse.ring, keys, multivariate=multivariate, slots=max_order + 1)

    def _number(self, value: Any) -> int:
        value = Fraction(str(Ring.to_sympy(value)))
        return value.numerator % self.PRIME * pow(value.denominator, -1, self.PRIME) % self.PRIME

    def _phi_values(self, k: int, c: Fraction, points) -> tuple[int, ...]:
        p = self.PRIME
        values = []
        for z, w in points:
            x = self._number(c) * z % p
            if k == -1:  # the factor z (scaled)
                values.append(x)
                continue
            e = pow(w, int(c * self._d), p)  # e^{cz} = w^{cd}
            if k == 0:
                values.append(e)
                continue
            term, total = 1, 0
            for m in range(k):  # sum_{m<k} x^m/m!
                total = (total + term) % p
                term = term * x % p * pow(m + 1, -1, p) % p
            values.append((e - total) % p * pow(pow(x, k, p), -1, p) % p)
        return tuple(values)

    def phi_key(self, key: Any) -> tuple[tuple[int, ...], ...]:
        """phi_k(c z) (k >= 0) or c z (k = -1) at every slot's points."""
        if key not in self._keys:
            c = Fraction(str(Ring.to_sympy(key[1])))
            self._keys[key] = tuple(self._phi_values(key[0], c, pts) for pts in self._points)
        return self._keys[key]

    def _poly(self, poly) -> tuple[tuple[int, ...], ...]:
        p = self.PRIME
        n_points = len(self._points[0])
        totals = [[0] * n_points for _ in range(self._slots)]
        for monomial, q in poly:
            weight = self._number(q)
            values = [self.phi_key(key) for key in monomial]
            for o in range(self._slots):
                row = totals[o]
                for n in range(n_points):
                    term = weight
                    for value in values:
                        term = term * value[o][n] % p
                    row[n] = (row[n] + term) % p
        return tuple(tuple(row) for row in totals)

    def _constant(self, value: int, k: int) -> dict:
        return {"k": k, "v": ((value,) * len(self._points[0]),) * self._slots}

    def zero(self) -> dict:
        return self._constant(0, 0)

    def const(self, value: Any) -> dict:
        return self._constant(self._number(value), 0)

    def quotient_values(self, function: CoefficientFunction) -> tuple[tuple[int, ...], ...]:
        """N/D at every slot's points (a vanishing D is inconclusive here)."""
        p = self.PRIME
        numerator = self._poly(function.numerator)
        denominator = self._poly(function.denominator)
        if any(v == 0 for row in denominator for v in row):
            raise InconclusiveError("a denominator vanishes at a sample point")
        return tuple(
            tuple(n * pow(d, -1, p) % p for n, d in zip(nums, dens, strict=True))
            for nums, dens in zip(numerator, denominator, strict=True)
        )

    def lift(self, function: CoefficientFunction) -> dict:
        """A coefficient function's values at the points: a quotient evaluates its
        polynomials (:meth:`quotient_values`), a program runs itself
        (:class:`~phiforge.derive.program_check.ProgramFunction`)."""
        if id(function) not in self._lifted:
            self._lifted[id(function)] = (function, function.modular_values(self))
        return {"k": 1, "v": self._lifted[id(function)][1]}

    def add_scaled(self, target: dict, element: dict, weight: Any) -> None:
        q, p = self._number(weight), self.PRIME
        rows = min(len(target["v"]), len(element["v"]))
        target["v"] = tuple(
            tuple((a + q * b) % p for a, b in zip(target["v"][o], element["v"][o], strict=True))
            for o in range(rows)
        )
        target["k"] = max(target["k"], element["k"])

    def mul(self, left: dict, right: dict) -> dict:
        p = self.PRIME
        shift = left["k"] if self._slots > 1 else 0
        rows = min(len(left["v"]), len(right["v"]) - shift)
        if rows < 1:
            raise ValueError(f"ModularAlgebra: more than {self._slots} vertex variables")
        return {
            "k": left["k"] + right["k"],
            "v": tuple(
                tuple(a * b % p for a, b in zip(left["v"][o], right["v"][o + shift], strict=True))
                for o in range(rows)
            ),
        }

    def prune(self, element: dict) -> dict:
        return element

    def is_zero(self, element: dict) -> bool:
        return all(v == 0 for v in element["v"][0])


class ExpressionAlgebra(_Algebra):
    """Elements ``{slots: expression}``: SymPy expressions in the vertex variables z_0, z_1, ...
    (operator setting, ``multivariate=True``; a product shifts the right factor's variables past
    the left's) or in the one variable z (scalar setting, ``slots`` always 0). Coefficients are
    SymPy expressions in :data:`~phiforge.derive.tableau.Z` (or constants, e.g. the unknowns of a
    construction); ``phi_of(q, scale, z)`` gives phi_q(scale z), or a placeholder for it.
    Expressions are not expanded here; :meth:`value` gives the sum."""

    def __init__(
        self, phi_of: Callable[[int, Any, sympy.Symbol], sympy.Expr], multivariate: bool = False
    ) -> None:
        super().__init__(None)  # type: ignore[arg-type]
        self.phi_of = phi_of
        self.multivariate = multivariate

    @staticmethod
    def variable(slot: int) -> sympy.Symbol:
        return sympy.Symbol(f"z_{slot}")

    def _slots(self, count: int) -> int:
        return count if self.multivariate else 0

    def add_scaled(self, target: dict, element: dict, weight: Any) -> None:
        weight = sympy.sympify(weight)
        for key, expr in element.items():
            target[key] = target.get(key, sympy.Integer(0)) + weight * expr

    def prune(self, element: dict) -> dict:
        return {key: expr for key, expr in element.items() if expr != 0}

    def is_zero(self, element: dict) -> bool:
        return all(sympy.expand(expr) == 0 for expr in element.values())

    def lift_root(self, function: Any, at_zero_value: bool) -> dict:
        if at_zero_value:  # the root's value at z = 0; its variable keeps its slot
            return {self._slots(1): sympy.sympify(function).subs(_z(), 0)}
        return self.lift(function)

    def const(self, value: Any) -> dict:
        return {self._slots(1): sympy.sympify(value)}

    def lift(self, function: Any) -> dict:
        expr = sympy.sympify(function)
        if self.multivariate:
            expr = expr.subs(_z(), self.variable(0))
        return {self._slots(1): expr}

    def phi(self, q: int, scale: Any, weight: Any) -> dict:
        z = self.variable(0) if self.multivariate else _z()
        return {self._slots(1): sympy.sympify(weight) * self.phi_of(q, scale, z)}

    def mul(self, left: dict, right: dict) -> dict:
        result: dict = {}
        for n1, e1 in left.items():
            for n2, e2 in right.items():
                if n1 and n2:
                    shift = {self.variable(k): self.variable(k + n1) for k in range(n2)}
                    e2 = e2.subs(shift, simultaneous=True)
                result[n1 + n2] = result.get(n1 + n2, sympy.Integer(0)) + e1 * e2
        return result

    def value(self, element: dict, variables: list[sympy.Symbol] | None = None) -> sympy.Expr:
        """The element as one expression; ``variables`` renames z_0, z_1, ... (multivariate)."""
        total = sympy.Add(*element.values())
        if self.multivariate and variables:
            names = {self.variable(k): v for k, v in enumerate(variables)}
            total = total.subs(names, simultaneous=True)
        return total


def _z() -> sympy.Symbol:
    from phiforge.derive.tableau import Z

    return Z
