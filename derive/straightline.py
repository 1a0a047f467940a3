"""Straight-line programs: a method's coefficients as a sequence of named definitions.

In the scalar setting (diffusion ODEs: L is a number, so every coefficient commutes with the
Jacobian) the stiff conditions are identities in z, and products of coefficients at one z may
cancel. The named elimination (:mod:`phiforge.derive.named_elimination`) solves them as a
sequence of small steps whose every pivot is a named function of z; the result is a program of
:class:`Definition` s, each a short polynomial in phi_k(c z), z and earlier names, divided by
earlier names. Expanded into one quotient of phi polynomials per coefficient
(:func:`compose`), the same coefficients cancel catastrophically in float64
(spec-dpmsolver-res.md §7, docs/registry-and-codegen.md) and take minutes to form; as a program
they are evaluated definition by definition.

This module reads such programs in every arithmetic the project needs, through one fold over
their grammar (:func:`fold_program`): exact Taylor series about 0 (the checker's and the
removable singularities', :func:`program_taylor`), Taylor series about any center in Arb's
ball arithmetic (the float64 constants of a generated module's discs, :func:`taylor_about`),
values in ball arithmetic at any real points (the operator setting's studies,
:func:`program_values`) and, in :mod:`phiforge.derive.program_check`, values modulo a prime.
It finds where a program's divisors vanish on [FAR_LOWEST, 0) (:func:`pivot_sign_changes`,
:func:`pivot_double_zeros` for zeros without a sign change at the grid's points,
:func:`program_singularities`: a pole of the method is refused; a removable singularity of the
program on [COVERED_LOWEST, 0) gets a Taylor disc, :func:`removable_expansions`; below, the
generated module's exact evaluation carries it), and gives definitions that are 0/0 at
z = 0 their series about 0 (:func:`with_series`). The float64 cover that adds discs where the
program cancels is :mod:`phiforge.derive.float_accuracy`.

res_5s (7 stages, scalar stiff order 5) and res_6s (10 stages, order 6) are such programs,
built by the general construction (``construct_singlestep(..., form="program")``). res_5s was
first built by a one-method recipe here (stage order 3 for stages 4..7, b_2 = b_3 = 0, the
quadrature conditions, then R1..R5 by small linear solves, a_52 = -n_52/d_52 with hand-placed
series); the general construction gives the same coefficients (test
``test_the_general_construction_gives_the_hand_built_method``) with a float64 evaluation 2.2x
(norm-wise) and 6.4x (entry-wise) more accurate, so the recipe was removed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from math import factorial
from typing import Any

import flint
import mpmath
import sympy
from sympy import QQ
from sympy.polys.rings import ring

from phiforge.derive.errors import InputError
from phiforge.derive.phi import phi
from phiforge.derive.phi_values import mp_phi
from phiforge.derive.tableau import ExpRKTableau, Z

__all__ = [
    "COVERED_LOWEST",
    "FAR_LOWEST",
    "Definition",
    "Expansion",
    "SingularAtZeroError",
    "Singularity",
    "StraightLineMethod",
    "compose",
    "evaluate_program",
    "expansions",
    "fold_program",
    "phi_key",
    "program_series",
    "program_singularities",
    "program_taylor",
    "program_values",
    "removable_expansions",
    "split_phi_linear",
    "taylor_about",
]


class SingularAtZeroError(InputError):
    """A division in a program by a series that vanishes at z = 0 faster than its numerator:
    a pole there, not a removable singularity."""


def phi_key(atom: phi) -> tuple[int, Fraction]:
    """(k, c) of a program's phi_k(c z), c rational."""
    scale = sympy.nsimplify(atom.args[1] / Z)
    return int(atom.args[0]), Fraction(int(scale.p), int(scale.q))


@dataclass(frozen=True)
class Expansion:
    """Where a definition is taken from its Taylor polynomial of degree ``degree`` about
    ``center``: |z - center| < ``radius``. About 0 the coefficients are exact rationals (a
    removable singularity there is divided out); about another center they are computed from
    the program's power series about the center at 120 digits (:func:`taylor_about`)."""

    center: sympy.Rational
    radius: sympy.Rational
    degree: int


@dataclass(frozen=True)
class Definition:
    """One step of a straight-line program: ``name = expr`` (expr in z, phi and earlier names).

    ``series``: the expansions used instead of ``expr`` where they apply (the first that
    applies; ``expr`` elsewhere), for a removable singularity at 0 and where ``expr`` loses
    digits to cancellation."""

    name: str
    expr: sympy.Expr
    series: tuple[Expansion, ...] = ()


@dataclass(frozen=True)
class StraightLineMethod:
    """A tableau whose coefficients are named results of a straight-line program."""

    tableau: ExpRKTableau | None
    definitions: tuple[Definition, ...]
    a_names: dict[tuple[int, int], str]
    b_names: dict[int, str]
    domain: str


def compose(definitions: tuple[Definition, ...] | list[Definition]) -> dict[str, sympy.Expr]:
    """The exact value of every definition as one quotient N/D of expanded polynomials in z and
    phi_k(c z), earlier names substituted.

    Every division in a program is by an earlier name, so a value is kept as
    (N, {divisor: power}) with polynomial divisors (a name's value, or the numerator of a name's
    quotient value: 1/(N/D) = D/N), and sums bring terms to the common monomial in the divisors:
    exact, and free of the polynomial gcds a rational-function field would compute (which take
    minutes here)."""
    atoms = sorted(set().union(*(d.expr.atoms(phi) for d in definitions)), key=str)
    polynomial_ring, *generators = ring([Z, *atoms], QQ)
    leaves = dict(zip([Z, *atoms], generators, strict=True))
    values: dict[str, tuple[Any, dict[str, int]]] = {}
    one = polynomial_ring.one

    def common(left, right):
        (n1, d1), (n2, d2) = left, right
        divisors = {k: max(d1.get(k, 0), d2.get(k, 0)) for k in {*d1, *d2}}

        def lift(n, d):
            for k, power in divisors.items():
                n = n * values[k][0] ** (power - d.get(k, 0))
            return n

        return lift(n1, d1), lift(n2, d2), divisors

    def normal(numerator, divisors: dict[str, int]):
        """Divisors of negative power multiply the numerator; zero powers are dropped."""
        for k, power in divisors.items():
            if power < 0:
                numerator = numerator * values[k][0] ** (-power)
        return numerator, {k: power for k, power in divisors.items() if power > 0}

    def evaluate(expr: sympy.Expr):
        return normal(*raw(expr))

    def raw(expr: sympy.Expr):
        if expr in leaves:
            return leaves[expr], {}
        if isinstance(expr, sympy.Symbol):
            if expr.name not in values:
                raise InputError(f"definition uses {expr.name} before it is defined")
            numerator, divisors = values[expr.name]
            return numerator, dict(divisors)
        if expr.is_Rational:
            return one * QQ.convert(expr), {}
        if expr.is_Add:
            total = evaluate(expr.args[0])
            for term in expr.args[1:]:
                n1, n2, divisors = common(total, evaluate(term))
                total = (n1 + n2, divisors)
            return total
        if expr.is_Mul:
            numerator, divisors = one, {}
            for factor in expr.args:
                n, d = raw(factor)
                numerator = numerator * n
                for k, power in d.items():
                    divisors[k] = divisors.get(k, 0) + power
            return normal(numerator, divisors)
        if expr.is_Pow and expr.exp.is_Integer:
            if expr.exp > 0:
                n, d = evaluate(expr.base)
                return n ** int(expr.exp), {k: p * int(expr.exp) for k, p in d.items()}
            base, power = expr.base, -int(expr.exp)
            if isinstance(base, sympy.Symbol) and base.name in values:
                numerator, divisors = values[base.name]
                if not divisors:
                    return one, {base.name: power}
                # 1/(N/D) = D/N: the numerator N becomes a divisor of its own, and D a divisor
                # of negative power (cancelled against equal divisors of the other factors).
                key = f"{base.name}.numerator"
                values.setdefault(key, (numerator, {}))
                return one, {key: power} | {k: -p * power for k, p in divisors.items()}
        raise InputError(
            f"definition term {expr} is not a polynomial in z, phi and earlier names divided by "
            "earlier names"
        )

    exact: dict[str, sympy.Expr] = {}
    for definition in definitions:
        numerator, divisors = evaluate(definition.expr)
        values[definition.name] = (numerator, divisors)
        denominator = one
        for k, power in sorted(divisors.items()):
            denominator = denominator * values[k][0] ** power
        if denominator == one or not numerator:
            exact[definition.name] = numerator.as_expr()
        else:
            exact[definition.name] = sympy.Mul(
                numerator.as_expr(), sympy.Pow(denominator.as_expr(), -1), evaluate=False
            )
    return exact


def expansions(series: Any) -> tuple[Expansion, ...]:
    """(center, radius, degree) triples as validated :class:`Expansion` s: rational centers
    <= 0, radii in (0, 8], degrees in 1..60."""
    try:
        triples = [tuple(item) for item in series]
    except TypeError:
        triples = [()]
    result = []
    for triple in triples:
        if len(triple) != 3:
            raise InputError(
                f"parameter 'series' must hold (center, radius, degree) triples, got {series!r}"
            )
        center, radius = sympy.nsimplify(triple[0]), sympy.nsimplify(triple[1])
        degree = triple[2]
        if not (center.is_Rational and center <= 0):
            raise InputError(f"parameter 'series': center must be a rational <= 0, got {center}")
        if not (radius.is_Rational and 0 < radius <= 8):
            raise InputError(
                f"parameter 'series': radius must be a rational in (0, 8], got {radius}"
            )
        if isinstance(degree, bool) or not (isinstance(degree, int) and 1 <= degree <= 60):
            raise InputError(
                f"parameter 'series': degree must be an integer in 1..60, got {degree!r}"
            )
        result.append(Expansion(center, radius, degree))
    if not result:
        raise InputError("parameter 'series' must hold at least one (center, radius, degree)")
    return tuple(result)


def evaluate_program(
    definitions: tuple[Definition, ...] | list[Definition], z: Any, upto: str | None = None
) -> dict[str, Any]:
    """Every definition (up to and including ``upto``) evaluated from its expr in mpmath at the
    current precision; z may be complex."""
    names = [sympy.Symbol(d.name) for d in definitions]
    values: dict[str, Any] = {}
    for definition in definitions:
        function = _lambdified(definition.expr, tuple(names))
        values[definition.name] = function(z, *values.values(), *[0] * (len(names) - len(values)))
        if definition.name == upto:
            break
    return values


@functools.lru_cache(maxsize=512)
def _lambdified(expr: sympy.Expr, names: tuple[sympy.Symbol, ...]) -> Any:
    return sympy.lambdify([Z, *names], expr, modules=[{"phi": mp_phi}, "mpmath"])


def taylor_about(
    definitions: tuple[Definition, ...] | list[Definition], name: str, expansion: Expansion
) -> list[float]:
    """Taylor coefficients t_0..t_N (N = expansion.degree) of definition ``name`` about the
    expansion's center, as float64, from the program's truncated power series about that
    center at 120 digits (:func:`program_series`, one pass for every definition, remembered
    per program and center). Refused when the tail max(|t_(N-1)| r^(N-1), |t_N| r^N) is not
    below 1e-17 of max_k |t_k| r^k (the degree is too low, or the disc too large: the
    coefficients of a disc beyond the nearest singularity do not decay)."""
    series = series_of(
        _series_about(_program_key(definitions), Fraction(expansion.center)), name, expansion.degree
    )[: expansion.degree + 1]
    with mpmath.workdps(_SERIES_DIGITS):
        r = mpmath.mpf(expansion.radius.p) / expansion.radius.q
        terms = [abs(t) * r**k for k, t in enumerate(series)]
        tail = max(terms[-2:])
        if not tail < mpmath.mpf("1e-17") * max(terms):
            raise InputError(
                f"{name}: the expansion about {expansion.center} of degree {expansion.degree} "
                f"leaves a tail {mpmath.nstr(tail, 3)} of {mpmath.nstr(max(terms), 3)} on "
                f"|z - {expansion.center}| < {expansion.radius}; raise the degree or shrink the "
                "radius"
            )
        return [float(q) for q in series]  # a ball holding 0 came back as 0 exactly


def _program_key(
    definitions: tuple[Definition, ...] | list[Definition],
) -> tuple[tuple[str, sympy.Expr], ...]:
    """A program's content without its expansions (the key of the cache below)."""
    return tuple((d.name, d.expr) for d in definitions)


_SERIES_DIGITS = 120  # precision of the float64 Taylor constants (see _TruncatedSeries)


@functools.lru_cache(maxsize=64)
def _series_about(program: tuple[tuple[str, sympy.Expr], ...], center: Fraction) -> dict[str, list]:
    """Every definition's Taylor coefficients about ``center`` to degree 60, at 120 digits."""
    definitions = [Definition(name, expr) for name, expr in program]
    return program_series(definitions, _AUTO_DEGREE, digits=_SERIES_DIGITS, center=center)


#: a program's divisors are scanned for zeros (:func:`program_singularities`) and its float64
#: evaluation covered (:mod:`phiforge.derive.float_accuracy`) on [COVERED_LOWEST, 0); below,
#: a generated module evaluates the program's exact definitions in mpmath
#: (``phiforge.runtime.precise``)
COVERED_LOWEST = -20.0
#: the divisors are scanned for zeros on [FAR_LOWEST, COVERED_LOWEST) too, on a log grid of 8
#: points per decade (res_6s: 113 points, 1.3 s): a pole there would make the generated
#: module's exact values large without an error (z = h lambda reaches -1e5 h on a stiff PDE)
FAR_LOWEST = -1e15

_EXTRA_DEGREE = 8  # series are carried this far beyond the degree asked for, for divisions


def program_taylor(
    definitions: tuple[Definition, ...] | list[Definition], name: str, degree: int
) -> list[Fraction]:
    """The exact Taylor coefficients t_0..t_degree about z = 0 of definition ``name``, by
    truncated power-series arithmetic through the program (phi_k(c z) = sum c^m z^m/(m+k)!);
    a division by a series that vanishes at 0 to order v divides the common z^v out of both
    (a removable singularity), which costs v coefficients of the degree carried. Cheaper by far
    than expanding the composed quotient: the cost grows with the program, not with its
    expansion."""
    if name not in {d.name for d in definitions}:
        raise InputError(f"{name}: no such definition in the program")
    return series_of(program_series(definitions, degree, upto=name), name, degree)


def fold_program(
    definitions: tuple[Definition, ...] | list[Definition],
    arithmetic: Any,
    upto: str | None = None,
) -> dict[str, Any]:
    """Every definition (up to and including ``upto``) evaluated in one arithmetic: the one
    reading of a program's grammar (rationals, z, phi_k(c z), e^(c z) = phi_0(c z), earlier
    names, sums, products of integer powers), shared by the Taylor series
    (:func:`program_series`), the values modulo p (:mod:`phiforge.derive.program_check`) and
    the values in ball arithmetic (:func:`program_values`). ``arithmetic`` gives
    ``rational(q)``, ``leaf(key)`` (key (k, c) of phi_k(c z), or (-1, 1) for z), ``add(terms)``
    and ``mul(numerators, denominators, where)`` (the factors of a product, those of negative
    integer power among the denominators, repeated by their power; ``where``: the definition's
    name)."""
    values: dict[str, Any] = {}

    def evaluate(expr: sympy.Expr, where: str) -> Any:
        if expr.is_Rational:
            return arithmetic.rational(Fraction(int(expr.p), int(expr.q)))
        if expr == Z:
            return arithmetic.leaf((-1, Fraction(1)))
        if isinstance(expr, phi):
            return arithmetic.leaf(phi_key(expr))
        if isinstance(expr, sympy.exp) and (expr.args[0] / Z).is_Rational:
            scale = expr.args[0] / Z  # e^(c z) = phi_0(c z)
            return arithmetic.leaf((0, Fraction(int(scale.p), int(scale.q))))
        if isinstance(expr, sympy.Symbol):
            if expr.name not in values:
                raise InputError(f"{where}: uses {expr.name} before it is defined")
            return values[expr.name]
        if expr.is_Add:
            return arithmetic.add([evaluate(term, where) for term in expr.args])
        if expr.is_Mul or (expr.is_Pow and expr.exp.is_Integer):
            numerators, denominators = [], []
            for factor in sympy.Mul.make_args(expr):
                if factor.is_Pow and factor.exp.is_Integer:
                    target = numerators if factor.exp > 0 else denominators
                    target.extend([evaluate(factor.base, where)] * abs(int(factor.exp)))
                else:
                    numerators.append(evaluate(factor, where))
            return arithmetic.mul(numerators, denominators, where)
        raise InputError(
            f"{where}: the program term {expr} is not a polynomial in z, phi and earlier names "
            "divided by earlier names"
        )

    for definition in definitions:
        values[definition.name] = evaluate(definition.expr, definition.name)
        if definition.name == upto:
            break
    return values


@dataclass(frozen=True)
class _TruncatedSeries:
    """Truncated power series about ``center`` as (t_0..t_known, known), for
    :func:`fold_program`: ``carried`` coefficients to start with, fewer after a division by a
    series of valuation v (the numerator's first v coefficients must vanish with it: else a pole
    at the center).

    ``digits`` None: exact rationals (what the order conditions need; about 0 only). Else
    FLINT's Arb balls at that precision (python-flint ``arb``, products and quotients as
    ``arb_series``): float64 Taylor constants need no exact rationals, whose digits run to
    thousands in a 10-stage program (minutes per series), and a ball says rigorously which
    coefficients are zero: those whose ball holds 0 (a removable singularity's exact zeros come
    out of the cancellation as balls of radius ~10^-digits about 0). A ball that holds 0 but is
    not that narrow means the precision ran out, and is refused."""

    carried: int
    digits: int | None = None
    center: Fraction = Fraction(0)

    def _number(self, q: Fraction) -> Any:
        return q if self.digits is None else flint.arb(q.numerator) / q.denominator

    def _is_zero(self, q: Any) -> bool:
        if self.digits is None:
            return q == 0
        zero = bool(q.contains(0))
        if zero and q.rad() > flint.arb(10) ** (-(self.digits // 2)):
            raise InputError(
                f"a Taylor coefficient is indistinguishable from 0 at {self.digits} digits "
                f"(ball {q.str(5)}): the program cancels beyond that precision"
            )
        return zero

    def rational(self, q: Fraction) -> tuple[list, int]:
        zero = self._number(Fraction(0))
        return [self._number(q)] + [zero] * self.carried, self.carried

    def leaf(self, key: tuple[int, Fraction]) -> tuple[list, int]:
        k, c = key
        if k == -1:
            first = (self.center, Fraction(1))
            z = [self._number(first[m] if m < 2 else Fraction(0)) for m in range(self.carried + 1)]
            return z, self.carried
        if c * self.center != 0:
            return list(_phi_series(k, c, self.center, self.carried, self.digits)), self.carried
        terms = [self._number(c**m / factorial(m + k)) for m in range(self.carried + 1)]
        return terms, self.carried

    def add(self, terms: list) -> tuple[list, int]:
        known = min(k for _, k in terms)
        return [sum(t[m] for t, _ in terms) for m in range(known + 1)], known

    def _convolve(self, a: list, b: list, known: int) -> list:
        if self.digits is None:
            return [sum(a[i] * b[m - i] for i in range(m + 1)) for m in range(known + 1)]
        return _coefficients(
            flint.arb_series(a[: known + 1]) * flint.arb_series(b[: known + 1]), known
        )

    def _product(self, factors: list) -> tuple[list, int]:
        if not factors:
            return self.rational(Fraction(1))
        result = factors[0]
        for b, kb in factors[1:]:
            a, ka = result
            known = min(ka, kb)
            if not any(b[1 : known + 1]):  # a constant factor (a rational of the program)
                result = [q * b[0] for q in a[: known + 1]], known
            elif not any(a[1 : known + 1]):
                result = [a[0] * q for q in b[: known + 1]], known
            else:
                result = self._convolve(a, b, known), known
        return result

    def mul(self, numerators: list, denominators: list, where: str) -> tuple[list, int]:
        (a, ka), (b, kb) = self._product(numerators), self._product(denominators)
        v = next((m for m in range(kb + 1) if not self._is_zero(b[m])), None)
        if v is None or not all(self._is_zero(q) for q in a[: min(v, ka + 1)]):
            raise SingularAtZeroError(
                f"{where}: a division in the program is singular at z = {self.center}"
            )
        a, b, known = a[v:], b[v:], min(ka, kb) - v
        if self.digits is not None:
            quotient = flint.arb_series(a[: known + 1]) / flint.arb_series(b[: known + 1])
            return _coefficients(quotient, known), known
        result: list = []
        for m in range(known + 1):
            result.append((a[m] - sum(result[i] * b[m - i] for i in range(m))) / b[0])
        return result, known


def _coefficients(series: Any, known: int) -> list:
    """t_0..t_known of an ``arb_series`` (which drops trailing zeros)."""
    coefficients = list(series.coeffs())[: known + 1]
    return coefficients + [flint.arb(0)] * (known + 1 - len(coefficients))


@functools.lru_cache(maxsize=1024)
def _phi_series(k: int, c: Fraction, center: Fraction, carried: int, digits: int) -> tuple:
    """Taylor coefficients in w of phi_k(c (center + w)) as Arb balls, c center != 0: e^x
    about x0 = c center has e^x0 c^m / m!, and phi_j(x) = (phi_(j-1)(x) - 1/(j-1)!) / x
    (spec phi-functions: phi_(j-1) = x phi_j + 1/(j-1)!) divides by the linear series
    x0 + c w, term by term. Called within :func:`program_series`'s precision."""
    x0 = flint.arb(c.numerator * center.numerator) / (c.denominator * center.denominator)
    scale = flint.arb(c.numerator) / c.denominator
    power, series = x0.exp(), []
    for m in range(carried + 1):
        series.append(power)
        power = power * scale / (m + 1)
    for j in range(1, k + 1):
        shifted = [series[0] - flint.arb(1) / factorial(j - 1), *series[1:]]
        quotient: list = []
        for m in range(carried + 1):
            previous = quotient[m - 1] if m else 0
            quotient.append((shifted[m] - scale * previous) / x0)
        series = quotient
    return tuple(series)


def _to_mpmath(ball: Any) -> Any:
    """A ball's midpoint as an mpmath number (0 exactly when the ball holds 0)."""
    if ball.contains(0):
        return mpmath.mpf(0)
    mantissa, exponent = ball.mid().man_exp()
    return mpmath.mpf((int(mantissa), int(exponent)))


def program_series(
    definitions: tuple[Definition, ...] | list[Definition],
    degree: int,
    upto: str | None = None,
    digits: int | None = None,
    center: Fraction = Fraction(0),
) -> dict[str, list]:
    """The Taylor coefficients about ``center`` of every definition (up to and including
    ``upto``) in one pass: t_0..t_degree, fewer where a division leaves fewer known
    (:func:`series_of` says so); exact rationals (about 0 only), or at ``digits`` digits in
    Arb's ball arithmetic, returned as mpmath numbers (:class:`_TruncatedSeries`)."""
    if center != 0 and digits is None:
        raise InputError("program_series: a series about a center != 0 needs 'digits'")
    if digits is None:
        folded = fold_program(definitions, _TruncatedSeries(degree + _EXTRA_DEGREE), upto)
        return {name: t[: min(degree, known) + 1] for name, (t, known) in folded.items()}
    carried = degree + _EXTRA_DEGREE
    saved = flint.ctx.prec, flint.ctx.cap
    try:
        flint.ctx.prec, flint.ctx.cap = int(digits * 3.33) + 16, carried + 1
        arithmetic = _TruncatedSeries(carried, digits, Fraction(center))
        folded = fold_program(definitions, arithmetic, upto)
    finally:
        flint.ctx.prec, flint.ctx.cap = saved
    with mpmath.workdps(digits):
        return {
            name: [_to_mpmath(q) for q in t[: min(degree, known) + 1]]
            for name, (t, known) in folded.items()
        }


class _Balls:
    """Arb balls of every definition at a list of real points, for :func:`fold_program` (one
    ball per point in each value). A division by a ball that holds 0 gives an unbounded ball,
    which :func:`program_values` reads as too little precision, or as a zero of the divisor."""

    def __init__(self, points: list[Any]) -> None:
        self.points = points
        self.leaves: dict[tuple[int, Fraction], list[Any]] = {}

    def rational(self, q: Fraction) -> list[Any]:
        return [flint.arb(q.numerator) / q.denominator] * len(self.points)

    def leaf(self, key: tuple[int, Fraction]) -> list[Any]:
        k, c = key
        if key not in self.leaves:
            scale = flint.arb(c.numerator) / c.denominator
            if k == -1:
                self.leaves[key] = list(self.points)
            else:
                self.leaves[key] = [
                    (scale * x).hypgeom_1f1(1, k + 1) / factorial(k) for x in self.points
                ]  # phi_k(x) = 1F1(1; k + 1; x) / k!
        return self.leaves[key]

    def add(self, terms: list[list[Any]]) -> list[Any]:
        return [sum(column[1:], column[0]) for column in zip(*terms, strict=True)]

    def mul(self, numerators: list, denominators: list, where: str) -> list[Any]:
        result = []
        for index in range(len(self.points)):
            value = flint.arb(1)
            for factor in numerators:
                value *= factor[index]
            for factor in denominators:
                value /= factor[index]
            result.append(value)
        return result


class _Jets(_Balls):
    """Arb balls of every definition and of its derivative d/dz at a list of real points (dual
    numbers, one (value, derivative) pair per point), for the scan's local minima of |divisor|
    (:func:`pivot_double_zeros`): d/dz phi_k(c z) = c (phi_k(c z) - k phi_(k+1)(c z)), the
    product and quotient rules."""

    def rational(self, q: Fraction) -> list[Any]:
        return [(flint.arb(q.numerator) / q.denominator, flint.arb(0))] * len(self.points)

    def leaf(self, key: tuple[int, Fraction]) -> list[Any]:
        k, c = key
        if k == -1:
            return [(x, flint.arb(1)) for x in self.points]
        values, following = super().leaf(key), super().leaf((k + 1, c))
        scale = flint.arb(c.numerator) / c.denominator
        return [(v, scale * (v - k * w)) for v, w in zip(values, following, strict=True)]

    def add(self, terms: list[list[Any]]) -> list[Any]:
        return [
            (
                sum((t[0] for t in column[1:]), column[0][0]),
                sum((t[1] for t in column[1:]), column[0][1]),
            )
            for column in zip(*terms, strict=True)
        ]

    def mul(self, numerators: list, denominators: list, where: str) -> list[Any]:
        result = []
        for index in range(len(self.points)):
            value, derivative = flint.arb(1), flint.arb(0)
            for factor in numerators:
                u, du = factor[index]
                value, derivative = value * u, derivative * u + value * du
            for factor in denominators:
                u, du = factor[index]
                value, derivative = value / u, (derivative * u - value * du) / (u * u)
            result.append((value, derivative))
        return result


_VALUE_BITS = (128, 256, 512, 1024, 2048, 4096)


def program_values(
    definitions: tuple[Definition, ...] | list[Definition],
    names: list[str] | tuple[str, ...],
    points: list[float] | list[str],
    convert: Callable[[str], Any] = float,
) -> dict[str, list[Any]]:
    """The definitions ``names`` at real ``points`` (numbers, or decimal strings read exactly
    enough for any precision), each correct to 1e-20 relative, rigorously: the program runs in
    Arb's ball arithmetic at 128 bits, and again at twice the bits for the points where a
    value's ball is wider than 1e-20 of its midpoint, up to 4096 bits. Each value is the
    ball's midpoint to 25 digits read by ``convert`` (``float``; ``numpy.longdouble`` for
    extended precision). A point where the balls stay wide is a zero of a divisor (a pole of the
    method, or a removable singularity of this program that no precision resolves at the point
    itself), refused with its z."""
    values: dict[str, list[Any]] = {name: [math.nan] * len(points) for name in names}
    pending = list(range(len(points)))
    saved = flint.ctx.prec
    try:
        for bits in _VALUE_BITS:
            flint.ctx.prec = bits
            balls = fold_program(definitions, _Balls([flint.arb(points[i]) for i in pending]))
            wide = []
            for position, index in enumerate(pending):
                column = [balls[name][position] for name in names]
                if all(_determined(ball) for ball in column):
                    for name, ball in zip(names, column, strict=True):
                        values[name][index] = convert(ball.mid().str(25, radius=False))
                else:
                    wide.append(index)
            pending = wide
            if not pending:
                return values
    finally:
        flint.ctx.prec = saved
    raise InputError(
        f"the program's value at z = {points[pending[0]]!r} is not determined at "
        f"{_VALUE_BITS[-1]} bits: a divisor vanishes there (a pole, or a removable singularity "
        "of the program at that very point)"
    )


def _determined(ball: Any) -> bool:
    """A ball narrower than 1e-20 of its midpoint (or than 1e-300: zero in float64)."""
    return bool(ball.is_finite()) and (
        ball.rad() <= abs(ball.mid()) * flint.arb(10) ** -20 or ball.rad() < flint.arb(10) ** -300
    )


def series_of(series: dict[str, list[Fraction]], name: str, degree: int) -> list[Fraction]:
    """t_0..t_degree of ``name`` from :func:`program_series`, or the error that says why the
    program does not determine them."""
    coefficients = series[name]
    if len(coefficients) <= degree:
        raise InputError(
            f"{name}: its divisions vanish at 0 to order > {_EXTRA_DEGREE}; the series is known "
            f"to degree {len(coefficients) - 1} only"
        )
    return coefficients


def split_phi_linear(
    expr: sympy.Expr, groups: dict[sympy.Expr, sympy.Symbol], define: Any
) -> sympy.Expr:
    """expr (a polynomial in names and phi values, linear in the phi values) as
    sum_m m * f_m with m a monomial in the names and f_m phi-linear; each f_m with more than one
    term becomes a definition of its own (``define(label, value)``; equal ones are shared through
    ``groups``). A phi-linear f_m is then evaluated in its own cancellation-free form, instead of
    its terms being spread over a sum of products."""
    collected: dict[sympy.Expr, sympy.Expr] = {}
    for term in sympy.Add.make_args(sympy.expand(expr)):
        coefficient, phi_part = term.as_independent(phi)
        rational, monomial = coefficient.as_coeff_Mul()
        collected[monomial] = collected.get(monomial, 0) + rational * phi_part
    result = []
    for monomial, value in collected.items():
        if value.has(phi) and len(sympy.Add.make_args(value)) > 1:
            if -value in groups:
                value = -groups[-value]
            else:
                if value not in groups:
                    groups[value] = define(f"f{len(groups) + 1}", value)
                value = groups[value]
        result.append(monomial * value)
    return sympy.Add(*result)


def divisors(expr: sympy.Expr) -> set[str]:
    """The names that ``expr`` divides by."""
    return {
        p.base.name
        for p in expr.atoms(sympy.Pow)
        if p.exp.is_negative and isinstance(p.base, sympy.Symbol)
    }


def singular_at_zero(definitions: tuple[Definition, ...] | list[Definition]) -> list[str]:
    """The definitions that divide by a name whose value vanishes at z = 0 (0/0 there: their
    expression cannot be evaluated near 0 and needs a Taylor series about 0)."""
    names = set().union(*(divisors(d.expr) for d in definitions))
    if not names:
        return []
    values = program_series(definitions, 0)
    vanishing = {n for n in names if series_of(values, n, 0)[0] == 0}
    return [d.name for d in definitions if divisors(d.expr) & vanishing]


_AUTO_DEGREE = 60
_AUTO_TAIL = Fraction(1, 10**17)


def automatic_expansion(
    definitions: tuple[Definition, ...] | list[Definition],
    name: str,
    series: dict[str, list[Fraction]] | None = None,
) -> Expansion:
    """An expansion about 0 for a definition that is 0/0 there: the widest disc |z| < r of
    r = 2, 1, 1/2, 1/4, 1/8 whose exact Taylor polynomial of some degree N <= 60 leaves a tail
    max(|t_{N-1}| r^(N-1), |t_N| r^N) below 1e-17 of max_k |t_k| r^k, with the smallest such N
    (``series``: the program's series to degree 60, when at hand; else they are computed at 120
    digits)."""
    if series is None:
        series = _series_about(_program_key(definitions), Fraction(0))
    coefficients = series_of(series, name, _AUTO_DEGREE)
    for radius in (Fraction(2), Fraction(1), Fraction(1, 2), Fraction(1, 4), Fraction(1, 8)):
        terms = [abs(t) * radius**k for k, t in enumerate(coefficients)]
        scale = max(terms)
        if scale == 0:
            return Expansion(sympy.Integer(0), sympy.Rational(radius), 1)
        for degree in range(2, _AUTO_DEGREE + 1):
            if max(terms[degree - 1], terms[degree]) < _AUTO_TAIL * scale:
                return Expansion(sympy.Integer(0), sympy.Rational(radius), degree)
    raise InputError(
        f"{name}: no Taylor polynomial of degree <= {_AUTO_DEGREE} about 0 reaches 1e-17 even "
        "on |z| < 1/8; give its expansions in parameter 'series'"
    )


_REMOVABLE_DISCS = ((Fraction(1, 2), 30), (Fraction(1, 2), 45), (Fraction(1, 4), 30),
                    (Fraction(1, 4), 45), (Fraction(1, 8), 40))  # fmt: skip


def removable_expansions(
    definitions: tuple[Definition, ...] | list[Definition],
    found: Singularity,
    carried: dict[str, tuple[Expansion, ...]] | None = None,
) -> dict[str, Expansion]:
    """Expansions that carry a program over a removable singularity at found.z < 0 (a zero of
    the divisor found.divisor where every coefficient stays finite): each definition that
    divides by a divisor vanishing there (found.divisor and the pivots chained to it, which can
    vanish to higher order without a sign change) must be 0/0 there (finite at z0 +- 1e-12 as
    at z0 +- 1e-6, tested at 100 digits), and gets its Taylor polynomial about c = z0 rounded
    to 1/64 on the first disc of _REMOVABLE_DISCS (radius, degree) whose coefficients
    (:func:`taylor_about`) leave a tail below 1e-17.
    A divider with a pole there (cancelled only later in the program) is refused: a series
    of it would be wrong near z0. A divider that ``carried`` (the expansions placed for the
    zeros found before) already takes from a disc holding z0 needs no other: its Taylor
    polynomial there is that of a function analytic across z0 (res_6s: d31's zero at
    z = -2.2256 lies in the disc about -139/64 of radius 1/2 placed for d26's at -2.1704)."""
    center = sympy.Rational(round(found.z * 64), 64)
    result = {}
    far, near = _magnitudes_near(definitions, Fraction(found.z), 100)
    # every divisor that vanishes at z0, with or without a sign change (chained pivots vanish
    # there to higher orders: |value| shrinks by 1e6 per order from z0 +- 1e-6 to z0 +- 1e-12)
    vanishing = {
        n
        for n in set().union(*(divisors(d.expr) for d in definitions))
        if near[n] < mpmath.mpf(10) ** -3 * far[n]
    }
    dividers = [d.name for d in definitions if divisors(d.expr) & vanishing]
    for name in dividers:
        if _unbounded(far[name], near[name]):
            raise InputError(
                f"{name} divides by a divisor that vanishes at z = {found.z:.6g} and has a pole "
                "there, which only later definitions cancel: no series of it can carry the "
                "program there"
            )
        z0 = found.exact if found.exact is not None else Fraction(found.z)
        if any(
            abs(z0 - Fraction(str(e.center))) < Fraction(str(e.radius))
            for e in (carried or {}).get(name, ())
        ):
            continue
        for radius, degree in _REMOVABLE_DISCS:
            expansion = Expansion(center, sympy.Rational(radius), degree)
            try:
                taylor_about(definitions, name, expansion)
            except InputError:
                continue
            result[name] = expansion
            break
        else:
            raise InputError(
                f"{name}: no Taylor polynomial about {center} (radius <= 1/2, degree <= 45) "
                "reaches 1e-17 across its removable singularity"
            )
    return result


def with_series(
    definitions: tuple[Definition, ...] | list[Definition],
    series: dict[str, Any] | None = None,
    extra: dict[str, tuple[Expansion, ...]] | None = None,
) -> tuple[Definition, ...]:
    """The program with Taylor expansions attached: ``series`` maps definition names to
    (center, radius, degree) triples (:func:`expansions`); every definition that is 0/0 at
    z = 0 needs one about 0 first, and gets :func:`automatic_expansion` when ``series`` does
    not name it; ``extra`` (:func:`removable_expansions`, one per removable zero) adds its
    expansions after those."""
    extra = extra or {}
    series = dict(series or {})
    if not isinstance(series, dict):
        raise InputError(
            f"parameter 'series' must map definition names to (center, radius, degree) "
            f"triples, got {series!r}"
        )
    defined = [d.name for d in definitions]
    unknown = sorted(set(series) - set(defined))
    if unknown:
        raise InputError(
            f"parameter 'series' names {unknown}, which the program does not define (it "
            f"defines {defined})"
        )
    singular = set(singular_at_zero(definitions))
    deep = None  # every definition's series to degree 60 (120 digits), computed once
    result = []
    for definition in definitions:
        given = expansions(series[definition.name]) if definition.name in series else ()
        if definition.name in singular:
            if not given:
                if deep is None:
                    deep = _series_about(_program_key(definitions), Fraction(0))
                given = (automatic_expansion(definitions, definition.name, deep),)
            elif given[0].center != 0:
                raise InputError(
                    f"parameter 'series': {definition.name} is 0/0 at z = 0, so its first "
                    "expansion must be about 0"
                )
        given = (*given, *extra.get(definition.name, ()))
        result.append(Definition(definition.name, definition.expr, given))
    return tuple(result)


def pivot_sign_changes(
    definitions: tuple[Definition, ...] | list[Definition],
    lowest: float = COVERED_LOWEST,
    far: float | None = None,
) -> list[tuple[str, float, float]]:
    """(divisor, z_left, z_right) where a name that the program divides by changes sign between
    neighbouring points of z in [lowest, 0) (steps of 1/8 and 40 log-spaced points in
    [-0.85, -1e-3]) and, given ``far`` < ``lowest``, of 8 log-spaced points per decade in
    [far, lowest), the signs decided in ball arithmetic (:func:`_signs`): a zero of a divisor
    there, which is a pole of the method or a removable singularity of the program
    (:func:`program_singularities` tells which). Ordered by the right end, then by name."""
    names = sorted(set().union(*(divisors(d.expr) for d in definitions)))
    if not names:
        return []
    grid = _scan_grid(lowest, far)
    signs = _signs(definitions, names, [Fraction(z) for z in grid], _last(definitions, names))
    return [
        (n, grid[index - 1], grid[index])
        for index in range(1, len(grid))
        for n in names
        if signs[n][index] != signs[n][index - 1]
    ]


def _scan_grid(lowest: float, far: float | None) -> list[float]:
    """The points of :func:`pivot_sign_changes`, increasing."""
    decades = 0 if far is None else math.ceil(8 * math.log10(far / lowest))
    return sorted(
        {*(-k / 8 for k in range(1, int(-lowest * 8) + 1)),
         *(-(10 ** (-3 + 3 * k / 40)) for k in range(40)),
         *(lowest * 10 ** (k / 8) for k in range(1, decades + 1))}
    )  # fmt: skip


def pivot_double_zeros(
    definitions: tuple[Definition, ...] | list[Definition],
    lowest: float = COVERED_LOWEST,
    far: float | None = None,
) -> list[tuple[str, Fraction, Fraction, Fraction, int]]:
    """Zeros of a divisor that :func:`pivot_sign_changes` cannot see, where its sign is the
    same at both ends of a cell of the grid but |divisor| has a minimum inside (the derivative
    d/dz, :class:`_Jets`, has the divisor's opposite sign at the left end and its sign at the
    right end): the minimum z* is located by bisecting the derivative's sign (as
    :func:`program_singularities` bisects a value), and the divisor's sign there returned as
    (divisor, left, z*, right, sign at z* times its sign at the ends): -1, two zeros in the
    cell (one on each side of z*); 0, a zero of even multiplicity at z* (the divisor is 0 there,
    or below :data:`_EVEN_ZERO` of its values at the cell's ends), as a removable program has
    where a pivot is chained to a divisor that changes sign (res_6s: d29 and d30 at
    z = -2.1704, d26's zero); 1, no zero. (A zero of even multiplicity at a point of the grid
    is a sign 0 there, which :func:`pivot_sign_changes` reports.) Not seen: zeros in a cell
    whose derivative has the same sign at both ends (two extrema inside)."""
    names = sorted(set().union(*(divisors(d.expr) for d in definitions)))
    if not names:
        return []
    grid = [Fraction(z) for z in _scan_grid(lowest, far)]
    values = _signs(definitions, names, grid, _last(definitions, names))
    slopes = _signs(definitions, names, grid, _last(definitions, names), derivative=True)
    found = []
    for n in names:
        value, slope = values[n], slopes[n]
        for index in range(1, len(grid)):
            side = value[index]
            if not (side != 0 and value[index - 1] == side and slope[index - 1] == -side):
                continue
            if slope[index] != side:
                continue
            low, high = _bisect(
                lambda points, n=n: _signs(definitions, [n], points, n, derivative=True)[n],
                grid[index - 1],
                grid[index],
                -side,
            )
            minimum = (low + high) / 2
            (at,) = _signs(definitions, [n], [minimum], n)[n]
            if at == side:  # a zero of even multiplicity, or a minimum above 0?
                (bottom, left, right), *_ = program_values(
                    definitions[: _position(definitions, n) + 1],
                    [n],
                    [str(minimum), str(grid[index - 1]), str(grid[index])],
                    mpmath.mpf,
                ).values()
                at = side if abs(bottom) > _EVEN_ZERO * min(abs(left), abs(right)) else 0
            found.append((n, grid[index - 1], minimum, grid[index], at * side))
    return found


#: |divisor| at its located minimum below this fraction of its values at the cell's ends reads
#: as a zero of even multiplicity: the minimum is located to 1e-19 of the cell, so such a zero
#: leaves about 1e-38 of it there, and a minimum above 0 leaves no such gap
_EVEN_ZERO = 1e-24


def _position(definitions: tuple[Definition, ...] | list[Definition], name: str) -> int:
    return next(i for i, d in enumerate(definitions) if d.name == name)


def _last(definitions: tuple[Definition, ...] | list[Definition], names: list[str]) -> str:
    """The last of ``names`` in program order: a scan of them evaluates no further."""
    return definitions[max(_position(definitions, n) for n in names)].name


def _bisect(
    sign: Callable[[list[Fraction]], list[int]], a: Fraction, b: Fraction, side: int
) -> tuple[Fraction, Fraction]:
    """[a, b] narrowed to 2^-60 of its width around where ``sign`` leaves ``side`` (its value
    at a): 15 passes of 16-section, four halvings each, the dyadic points 60 halvings visit."""
    for _ in range(15):
        step = (b - a) / 16
        values = sign([a + k * step for k in range(1, 16)])
        low, high = 0, 16
        for _ in range(4):
            middle = (low + high) // 2
            if values[middle - 1] == side:
                low = middle
            else:
                high = middle
        a, b = a + low * step, a + high * step
    return a, b


def _signs(
    definitions: tuple[Definition, ...] | list[Definition],
    names: list[str],
    points: list[Fraction],
    upto: str | None = None,
    derivative: bool = False,
) -> dict[str, list[int]]:
    """The signs (-1, 0, 1) of the definitions ``names`` at every point, all points in one pass
    through the program (:class:`_Balls`; an expanded 7-stage quotient of 45 000 operations
    costs 4 s per point walked in mpmath, 0.03 s per point in one pass), each decided by a ball
    that excludes 0 at 128 bits, or at twice the bits up to 4096 for the points where one does
    not; 0 where none does (a zero of the value, or of a divisor before it, at the point).
    With ``derivative``, the signs of their derivatives d/dz (:class:`_Jets`)."""
    signs = {name: [0] * len(points) for name in names}
    pending = list(range(len(points)))
    saved = flint.ctx.prec
    try:
        for bits in _VALUE_BITS:
            flint.ctx.prec = bits
            arguments = [flint.arb(points[i].numerator) / points[i].denominator for i in pending]
            arithmetic = _Jets(arguments) if derivative else _Balls(arguments)
            balls = fold_program(definitions, arithmetic, upto)
            undecided = []
            for position, index in enumerate(pending):
                column = [balls[name][position] for name in names]
                if derivative:
                    column = [pair[1] for pair in column]
                if all(b.is_finite() and not b.contains(0) for b in column):
                    for name, ball in zip(names, column, strict=True):
                        signs[name][index] = 1 if ball > 0 else -1
                else:
                    undecided.append(index)
            pending = undecided
            if not pending:
                break
    finally:
        flint.ctx.prec = saved
    return signs


@dataclass(frozen=True)
class Singularity:
    """Where the divisor ``divisor`` of a program vanishes on z < 0: at ``z`` (to about 1e-18).
    ``pole`` names a coefficient that is unbounded there (a pole of the method itself, whatever
    program computes it), None when every coefficient stays finite (a removable singularity of
    this program: its float64 evaluation loses digits near ``z``)."""

    divisor: str
    z: float
    pole: str | None
    exact: Fraction | None = field(default=None, compare=False, repr=False)  # z's dyadic value


def program_singularities(
    definitions: tuple[Definition, ...] | list[Definition],
    coefficients: list[str] | tuple[str, ...],
    lowest: float = COVERED_LOWEST,
    digits: int = 100,
    far: float | None = FAR_LOWEST,
) -> list[Singularity]:
    """The zeros of the program's divisors on [far, 0) (:func:`pivot_sign_changes`; a divisor
    that changes sign at a zero already found, a pivot chained to it, adds none), each located
    by bisection (60 halvings of its grid cell, the signs in ball arithmetic: :func:`_signs`),
    then the zeros without a sign change at the grid's points (:func:`pivot_double_zeros`: a
    zero of even multiplicity, or two zeros in one cell), each classified by the coefficients'
    growth: with f = max |coefficient| at z0 +- 1e-6 and at z0 +- 1e-12 (times |z0| below
    COVERED_LOWEST, :func:`_scale`), a pole of order m >= 1 gives a ratio of about 1e6 m, a
    removable singularity about 1 (``pole`` when the ratio is over 1e3, :func:`_unbounded`).
    ``digits``: the working precision, above the digits that the program's cancellation near z0
    costs (about 12 per power of the divisor)."""
    found: list[Singularity] = []
    coefficients = [c for c in coefficients if c != "0"]
    margin = Fraction(1, 10**15)  # above the bisection's 1e-19 and float64's 4e-16, relative

    def classify(divisor: str, z0: Fraction) -> None:
        if any(abs(s.exact - z0) < _scale(z0) * margin for s in found):
            return  # the same zero, where the sign test above could not tell
        wide, close = _magnitudes_near(definitions, z0, digits)
        pole = max(coefficients, key=lambda c: close[c] / (wide[c] + 1), default=None)
        if pole is not None and not _unbounded(wide[pole], close[pole]):
            pole = None
        found.append(Singularity(divisor, float(z0), pole, z0))

    for divisor, left, right in pivot_sign_changes(definitions, lowest, far):

        def sign(points: list[Fraction], divisor: str = divisor) -> list[int]:
            return _signs(definitions, [divisor], points, divisor)[divisor]

        def changes_at(z0: Fraction, sign: Callable = sign) -> bool:
            width = _scale(z0) * margin
            return len(set(sign([z0 - width, z0 + width]))) > 1

        if any(left <= s.z <= right and changes_at(s.exact) for s in found):
            continue  # a pivot chained to one found: the same zero
        a, b = Fraction(left), Fraction(right)
        (side,) = sign([a])
        a, b = _bisect(sign, a, b, side)
        classify(divisor, (a + b) / 2)
    for divisor, left, minimum, right, kind in pivot_double_zeros(definitions, lowest, far):
        if kind == 0:  # a zero of even multiplicity at the minimum of |divisor|
            classify(divisor, minimum)
            continue
        for a, b in ((left, minimum), (minimum, right)) if kind < 0 else ():
            (side,) = _signs(definitions, [divisor], [a], divisor)[divisor]
            a, b = _bisect(
                lambda points, d=divisor: _signs(definitions, [d], points, d)[d], a, b, side
            )
            classify(divisor, (a + b) / 2)
    return found


def _magnitudes_near(
    definitions: tuple[Definition, ...] | list[Definition], z0: Fraction, digits: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """max |value| of every definition over z0 +- 1e-6 (far) and over z0 +- 1e-12 (near), times
    :func:`_scale` (z0), in ball arithmetic at ``digits`` digits (inf where a ball is unbounded), as
    mpmath numbers."""
    far: dict[str, Any] = {}
    near: dict[str, Any] = {}
    saved = flint.ctx.prec
    try:
        flint.ctx.prec = int(digits * 3.33) + 16
        center = flint.arb(z0.numerator) / z0.denominator
        scale = int(_scale(z0))  # a power of two, or 1
        eps = [flint.arb(10) ** -6 * scale, flint.arb(10) ** -12 * scale]
        points = [center - eps[0], center + eps[0], center - eps[1], center + eps[1]]
        balls = fold_program(definitions, _Balls(points))
    finally:
        flint.ctx.prec = saved
    with mpmath.workdps(digits):
        for name, values in balls.items():
            magnitudes = [_to_mpmath(abs(v).mid()) if v.is_finite() else mpmath.inf for v in values]
            far[name] = max(magnitudes[:2])
            near[name] = max(magnitudes[2:])
    return far, near


def _scale(z0: Fraction) -> Fraction:
    """The scale of a zero's neighbourhood: 1 on [COVERED_LOWEST, 0), |z0| rounded up to a power
    of two below (where the coefficients vary on the scale of |z|)."""
    if z0 >= COVERED_LOWEST:
        return Fraction(1)
    return Fraction(2 ** math.ceil(math.log2(abs(z0))))


def _unbounded(far: Any, near: Any) -> bool:
    """A pole at z0: the value grows by over 1e3 from z0 +- 1e-6 to z0 +- 1e-12 (about 1e6 m for
    a pole of order m; about 1 where it stays finite)."""
    return near > 1000 * (far + 1)
