"""Coefficient functions as sparse combinations over the phi basis, and their exact normal forms.

An exponential Runge-Kutta coefficient a_ij(z) or b_i(z) is, for every published method and every
method phiforge constructs, a combination sum_{(k, c)} q_{k,c} phi_k(c z) with coefficients q that
do not depend on z (rational numbers, or rational functions of symbolic nodes). It is stored as a
dict ``{(k, c): q}``; the key ``(0, 0)`` is the constant function 1 (phi_k(0 z) = 1/k! is folded
into it). {1} and {phi_k(c z): k >= 1, c != 0} are linearly independent over the constants
(spec order-conditions.md §4.5a), so such a dict is a unique normal form.

Products of coefficient functions of the *same* variable (the scalar setting of diffusion ODEs, or
Cox-Matthews' a_41 = phi_1(z/2)(e^{z/2} - 1)/2) leave that basis. Their exact normal form is the
*exponential polynomial* ``{(C, p): q}`` meaning sum q e^{C z} z^p with integer p (spec §4.5b):
the functions e^{C z} z^p with distinct (C, p) are linearly independent, so an expression is
identically zero iff every q vanishes.

Coefficients live in one of two rings: Python ``Fraction`` when every node and coefficient is
rational (fast), or SymPy expressions when nodes are free symbols (zero-tested by ``cancel``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from math import factorial
from typing import Any

import sympy
from sympy import Add, Mul, Pow
from sympy.polys.rings import ring

from phiforge.derive.errors import InputError
from phiforge.derive.phi import phi

__all__ = [
    "FRACTIONS",
    "SYMBOLIC",
    "PhiCombination",
    "Ring",
    "ring_for",
    "symbolic_is_zero",
]

Key = tuple[int, Any]
PhiCombination = dict[Key, Any]
ExpPoly = dict[tuple[Any, int], Any]

ONE_KEY: Key = (0, 0)


@dataclass(frozen=True)
class Ring:
    """Arithmetic of the coefficients q: coercion, zero test, conversion back to SymPy."""

    name: str

    def coerce(self, value: Any) -> Any:
        if self.name == "fractions":
            if isinstance(value, Fraction):
                return value
            if isinstance(value, int):
                return Fraction(value)
            value = sympy.nsimplify(value) if isinstance(value, float) else sympy.sympify(value)
            if not value.is_Rational:
                raise InputError(f"expected a rational number, got {value}")
            return Fraction(int(value.p), int(value.q))
        return sympy.sympify(value)

    def is_zero(self, value: Any) -> bool:
        if self.name == "fractions":
            return value == 0
        return symbolic_is_zero(value)

    def simplify(self, value: Any) -> Any:
        if self.name == "fractions":
            return value
        return sympy.factor(sympy.cancel(sympy.together(value)))

    @staticmethod
    def to_sympy(value: Any) -> sympy.Expr:
        if isinstance(value, Fraction):
            return sympy.Rational(value.numerator, value.denominator)
        return sympy.sympify(value)


_SCREEN_POINTS = (
    (
        sympy.Rational(37, 100),
        sympy.Rational(113, 71),
        sympy.Rational(5, 13),
        sympy.Rational(89, 7),
    ),
    (sympy.Rational(7, 11), sympy.Rational(3, 17), sympy.Rational(41, 29), sympy.Rational(2, 3)),
)


def symbolic_is_zero(value: Any) -> bool:
    """Exact zero test of a rational function of symbols: a value that is non-zero at an exact
    rational point is non-zero (cheap); otherwise the numerator over a common denominator is
    expanded and compared with 0 (a proof)."""
    value = sympy.sympify(value)
    symbols = sorted(value.free_symbols, key=str)
    if not symbols:
        return sympy.simplify(value) == 0
    for point in _SCREEN_POINTS:
        values = {s: point[n % len(point)] + n for n, s in enumerate(symbols)}
        try:
            screened = value.subs(values)
        except ZeroDivisionError:
            continue
        if screened.is_number and screened.is_finite and screened != 0:
            return False
    return sympy.expand(sympy.fraction(sympy.together(value))[0]) == 0


FRACTIONS = Ring("fractions")
SYMBOLIC = Ring("symbolic")


def ring_for(expressions: Iterable[sympy.Expr], z: sympy.Symbol) -> Ring:
    """FRACTIONS when no expression has a free symbol other than z, else SYMBOLIC."""
    for expr in expressions:
        if sympy.sympify(expr).free_symbols - {z}:
            return SYMBOLIC
    return FRACTIONS


def _scale(argument: sympy.Expr, z: sympy.Symbol, context: str) -> sympy.Expr:
    scale = sympy.simplify(argument / z)
    if scale.has(z):
        raise InputError(f"{context}: argument {argument} of a phi function is not c*z")
    return scale


def phi_combination(
    expr: sympy.Expr, z: sympy.Symbol, ring: Ring, context: str = "coefficient"
) -> PhiCombination:
    """The sparse phi-basis form of expr, or InputError if expr is not linear in phi_k(c z)."""
    result: PhiCombination = {}
    for term in Add.make_args(sympy.expand(sympy.sympify(expr))):
        coefficient = sympy.Integer(1)
        key: Key | None = None
        for factor in Mul.make_args(term):
            if not factor.has(z):
                coefficient *= factor
                continue
            if key is not None:
                raise InputError(f"{context}: {expr} is not a linear combination of phi_k(c z)")
            if isinstance(factor, phi):
                k, argument = factor.args
                key = (int(k), _scale(argument, z, context))
            elif isinstance(factor, sympy.exp):
                key = (0, _scale(factor.args[0], z, context))
            else:
                raise InputError(f"{context}: {expr} is not a linear combination of phi_k(c z)")
        if key is None:
            key = ONE_KEY
        k, c = key
        if c == 0:
            key, coefficient = ONE_KEY, coefficient / sympy.factorial(k)
        key = (key[0], ring.coerce(key[1]))
        result[key] = result.get(key, 0) + ring.coerce(coefficient)
    return {key: q for key, q in result.items() if not ring.is_zero(q)}


Z_KEY: Key = (-1, 1)  # the factor z itself, inside phi polynomials


def at_zero(combination: Mapping[Key, Any]) -> Any:
    """The value at z = 0: sum q / k!."""
    return sum(
        (q * Fraction(1, factorial(k)) for (k, _), q in combination.items() if k >= 0), Fraction(0)
    )


def taylor(combination: Mapping[Key, Any], degree: int) -> list[Any]:
    """Taylor coefficients t_0..t_degree about z = 0: t_m = sum q c^m / (m + k)!."""
    if Z_KEY in combination:
        rest = {key: q for key, q in combination.items() if key != Z_KEY}
        series = taylor(rest, degree)
        if degree >= 1:
            series[1] += combination[Z_KEY]
        return series
    return [
        sum(
            (q * c**m * Fraction(1, factorial(m + k)) for (k, c), q in combination.items()),
            Fraction(0),
        )
        for m in range(degree + 1)
    ]


def exp_poly(combination: Mapping[Key, Any]) -> ExpPoly:
    """Exponential-polynomial normal form: phi_k(c z) = e^{cz}/(cz)^k - sum_{j<k} (cz)^{j-k}/j!."""
    result: ExpPoly = {}
    for (k, c), q in combination.items():
        if (k, c) == ONE_KEY:
            _accumulate(result, (0, 0), q)
            continue
        if (k, c) == Z_KEY:
            _accumulate(result, (0, 1), q)
            continue
        _accumulate(result, (c, -k), q / c**k)
        for j in range(k):
            _accumulate(result, (0, j - k), -q * c ** (j - k) * Fraction(1, factorial(j)))
    return result


def _accumulate(target: dict, key: Any, value: Any) -> None:
    target[key] = target.get(key, 0) + value


def exp_poly_product(left: ExpPoly, right: ExpPoly) -> ExpPoly:
    result: ExpPoly = {}
    for (c1, p1), q1 in left.items():
        for (c2, p2), q2 in right.items():
            _accumulate(result, (c1 + c2, p1 + p2), q1 * q2)
    return result


def expression_exp_poly(expr: sympy.Expr, z: sympy.Symbol, ring: Ring, context: str) -> ExpPoly:
    """Exponential-polynomial normal form of any expression built from +, *, integer powers,
    phi_k(c z), exp(c z), z and z-free constants (used to validate row sums with products)."""
    expr = sympy.sympify(expr)
    if not expr.has(z):
        return {(ring.coerce(0), 0): ring.coerce(expr)}
    if expr == z:
        return {(ring.coerce(0), 1): ring.coerce(1)}
    if isinstance(expr, Add):
        result: ExpPoly = {}
        for arg in expr.args:
            for key, q in expression_exp_poly(arg, z, ring, context).items():
                _accumulate(result, key, q)
        return result
    if isinstance(expr, Mul):
        result = {(ring.coerce(0), 0): ring.coerce(1)}
        for arg in expr.args:
            result = exp_poly_product(result, expression_exp_poly(arg, z, ring, context))
        return result
    if isinstance(expr, Pow) and expr.exp.is_Integer:
        n = int(expr.exp)
        if expr.base == z:
            return {(ring.coerce(0), n): ring.coerce(1)}
        if n > 0:
            base = expression_exp_poly(expr.base, z, ring, context)
            result = {(ring.coerce(0), 0): ring.coerce(1)}
            for _ in range(n):
                result = exp_poly_product(result, base)
            return result
    if isinstance(expr, phi | sympy.exp):
        return exp_poly(phi_combination(expr, z, ring, context))
    raise InputError(f"{context}: cannot decide identities for the expression {expr}")


def exp_poly_is_zero(poly: ExpPoly, ring: Ring) -> bool:
    return all(ring.is_zero(q) for q in poly.values())


# ------------------------------------------------------------------------- rational coefficients
PhiPolynomial = dict[tuple[Key, ...], Any]  # monomial (sorted keys) -> coefficient


@lru_cache(maxsize=4096)
def _key_series(key: Key, degree: int) -> tuple:
    return tuple(taylor({key: 1}, degree))


def _series_product(left, right, degree: int) -> list:
    return [
        sum((left[i] * right[m - i] for i in range(m + 1)), Fraction(0)) for m in range(degree + 1)
    ]


_MAX_VALUATION = 8


@dataclass(frozen=True)
class CoefficientFunction:
    """A coefficient function N(z)/D(z), N and D polynomials in phi_k(c z) (D = 1 and N linear
    for the phi-linear coefficients of every published method). ``combination`` is the sparse
    phi-basis form when the function is phi-linear, else None."""

    numerator: tuple[tuple[tuple[Key, ...], Any], ...]
    denominator: tuple[tuple[tuple[Key, ...], Any], ...]
    combination: tuple[tuple[Key, Any], ...] | None

    @classmethod
    def linear(cls, combination: PhiCombination) -> CoefficientFunction:
        numerator = tuple(((key,) if key != ONE_KEY else (), q) for key, q in combination.items())
        return cls(numerator, (((), 1),), tuple(combination.items()))

    @property
    def is_linear(self) -> bool:
        return self.combination is not None

    def as_combination(self) -> PhiCombination:
        if self.combination is None:
            raise InputError("coefficient is not a linear combination of phi_k(c z)")
        return dict(self.combination)

    @staticmethod
    def _poly_taylor(poly, degree: int) -> list:
        """Taylor coefficients of a phi polynomial; monomials (sorted key tuples) share the
        series of their common prefixes."""
        total = [Fraction(0)] * (degree + 1)
        prefixes: dict[tuple[Key, ...], list] = {(): [Fraction(1)] + [Fraction(0)] * degree}
        for monomial, q in poly:
            n = len(monomial)
            while monomial[:n] not in prefixes:
                n -= 1
            series = prefixes[monomial[:n]]
            for m in range(n, len(monomial)):
                series = _series_product(series, _key_series(monomial[m], degree), degree)
                prefixes[monomial[: m + 1]] = series
            total = [t + q * s for t, s in zip(total, series, strict=True)]
        return total

    def taylor(self, degree: int) -> list:
        """Taylor coefficients t_0..t_degree about z = 0 (cached: a longer series is computed
        once and sliced)."""
        cached = self.__dict__.get("_series")
        if cached is None or len(cached) <= degree:
            cached = self._taylor(degree)
            object.__setattr__(self, "_series", cached)
        return list(cached[: degree + 1])

    def _taylor(self, degree: int) -> list:
        if self.combination is not None:
            return taylor(dict(self.combination), degree)
        # A removable singularity (numerator and denominator vanishing to the same order v at
        # z = 0, as for a_52 of the straight-line order-5 method) is divided out of both series.
        denominator = self._poly_taylor(self.denominator, degree + _MAX_VALUATION)
        v = next((m for m, q in enumerate(denominator) if q != 0), None)
        if v is None:
            raise InputError(
                f"a coefficient's denominator vanishes at z = 0 to order > {_MAX_VALUATION}"
            )
        numerator = self._poly_taylor(self.numerator, degree + v)
        if any(q != 0 for q in numerator[:v]):
            raise InputError("a coefficient has a pole at z = 0")
        numerator, denominator = numerator[v:], denominator[v : degree + v + 1]
        quotient: list = []
        for m in range(degree + 1):
            value = numerator[m] - sum(
                (quotient[i] * denominator[m - i] for i in range(m)), Fraction(0)
            )
            quotient.append(value / denominator[0])
        return quotient

    def at_zero(self) -> Any:
        return self.taylor(0)[0]

    def phi_keys(self) -> list[Key]:
        """The phi_k(c z) keys of its numerator and denominator."""
        return [key for monomial, _ in (*self.numerator, *self.denominator) for key in monomial]

    def modular_values(self, algebra: Any) -> Any:
        """Its values at a :class:`~phiforge.derive.algebras.ModularAlgebra`'s points."""
        return algebra.quotient_values(self)

    @staticmethod
    def poly_exp_poly(poly) -> ExpPoly:
        total: ExpPoly = {}
        for monomial, q in poly:
            term: ExpPoly = {(0, 0): q}
            for key in monomial:
                term = exp_poly_product(term, exp_poly({key: 1}))
            for key, value in term.items():
                _accumulate(total, key, value)
        return total


def coefficient_function(
    expr: sympy.Expr, z: sympy.Symbol, ring: Ring, context: str
) -> CoefficientFunction:
    """Phi-linear form when possible, else numerator/denominator polynomials in phi_k(c z)."""
    expr = sympy.sympify(expr)
    numerator, denominator = sympy.fraction(expr)
    if not denominator.has(z):
        try:
            return CoefficientFunction.linear(phi_combination(expr, z, ring, context))
        except InputError:
            pass
        numerator, denominator = sympy.fraction(sympy.together(expr))
    return CoefficientFunction(
        _phi_polynomial(numerator, z, ring, context),
        _phi_polynomial(denominator, z, ring, context),
        None,
    )


def _is_monomial(term: sympy.Expr) -> bool:
    """A number times powers of z, phi_k(c z) and exp(c z) (nothing left to expand)."""
    for factor in Mul.make_args(term):
        base, power = factor.as_base_exp()
        if not (
            factor.is_Number
            or (
                power.is_Integer
                and power > 0
                and (base.is_Symbol or isinstance(base, phi | sympy.exp))
            )
        ):
            return False
    return True


def _phi_polynomial(expr: sympy.Expr, z: sympy.Symbol, ring: Ring, context: str):
    result: dict[tuple[Key, ...], Any] = {}
    terms = Add.make_args(expr)
    if not all(_is_monomial(term) for term in terms):  # composed programs arrive expanded
        terms = Add.make_args(sympy.expand(expr))
    for term in terms:
        coefficient, keys = sympy.Integer(1), []
        for factor in Mul.make_args(term):
            base, power = factor.as_base_exp()
            if not factor.has(z):
                coefficient *= factor
                continue
            if base == z and power.is_Integer and power > 0:
                keys.extend([Z_KEY] * int(power))
                continue
            if not (isinstance(base, phi | sympy.exp) and power.is_Integer and power > 0):
                raise InputError(f"{context}: {expr} is not a polynomial in phi_k(c z)")
            ((key, value),) = phi_combination(base, z, ring, context).items()
            coefficient *= Ring.to_sympy(value) ** power
            keys.extend([key] * int(power))
        monomial = tuple(sorted(keys, key=repr))
        result[monomial] = result.get(monomial, 0) + ring.coerce(coefficient)
    return tuple((m, q) for m, q in result.items() if not ring.is_zero(q))


def divide_out_z(expr: sympy.Expr, z: sympy.Symbol, degree: int = 16) -> tuple[int, sympy.Expr]:
    """(v, g) with expr = z^v g and g(0) != 0, for a polynomial in phi_k(c z) and z: each
    phi_k(c z) is written sum_{j<v} (c z)^j/(k+j)! + (c z)^v phi_{k+v}(c z), the expansion's part
    of z-degree < v cancels exactly (checked), and the rest is divided by z^v. Done by
    composition in a sparse polynomial ring (the expansions are large)."""
    atoms = sorted(expr.atoms(phi), key=str)
    heads = [sympy.Dummy(f"P{a.args[0]}") for a in atoms]
    tails = [sympy.Dummy(f"Q{a.args[0]}") for a in atoms]
    others = sorted(expr.free_symbols - {z}, key=str)
    domain = sympy.QQ.frac_field(*others) if others else sympy.QQ
    polynomial_ring, zg, *generators = ring([z, *heads, *tails], domain)
    p_generators, q_generators = generators[: len(atoms)], generators[len(atoms) :]
    polynomial = polynomial_ring.from_expr(expr.xreplace(dict(zip(atoms, heads, strict=True))))
    scales = [domain.from_sympy(sympy.nsimplify(a.args[1] / z)) for a in atoms]

    def head(atom, c, terms: int):
        k = atom.args[0]
        total = polynomial_ring.zero
        for j in range(terms):
            total += (zg * c) ** j * domain.from_sympy(sympy.Rational(1, sympy.factorial(k + j)))
        return total

    truncated = polynomial.compose(
        [(g, head(a, c, degree + 1)) for a, c, g in zip(atoms, scales, p_generators, strict=True)]
    )
    degrees = [m[0] for m, _ in truncated.terms() if m[0] <= degree]
    v = min(degrees) if degrees else degree + 1
    if v == 0:
        return 0, expr
    substitution = [
        (g, head(a, c, v) + (zg * c) ** v * q)
        for a, c, g, q in zip(atoms, scales, p_generators, q_generators, strict=True)
    ]
    expanded = polynomial.compose(substitution)
    for monomial, _ in expanded.terms():
        if monomial[0] < v and not any(monomial[1 + len(atoms) :]):
            raise InputError(f"internal: the terms of degree < {v} of {expr} do not cancel")
    quotient = expanded.exquo(zg**v)
    back = dict(zip(tails, [phi(a.args[0] + v, a.args[1]) for a in atoms], strict=True))
    return v, quotient.as_expr().xreplace(back)
