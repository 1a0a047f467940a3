"""A method given by a straight-line program, checked without composing it.

A program (:class:`~phiforge.derive.straightline.Definition` list) from the named elimination
(:mod:`phiforge.derive.named_elimination`) has nested quotients; composed into one quotient of
expanded phi polynomials per coefficient (:func:`~phiforge.derive.straightline.compose`), the
7-stage order-5 case takes over 6 minutes before the checker starts. The checker does not need
that form. For numeric nodes it decides every condition by evaluation at random points modulo
p = 2^61 - 1 (:class:`~phiforge.derive.algebras.ModularAlgebra`: z and w = e^{z/d} are
algebraically independent, every phi_k(c z) is a rational function of (z, w), and a non-zero
rational function of degree D vanishes at a random point with probability at most D/p,
Schwartz-Zippel), and the non-stiff orders and weak verdicts from Taylor coefficients about 0
(:class:`~phiforge.derive.algebras.SeriesAlgebra`). A :class:`ProgramFunction` gives both from
the program: its values at the algebra's points by running the program in GF(p) (a few field
operations per definition), its Taylor coefficients by truncated power-series arithmetic through
the program (:func:`~phiforge.derive.straightline.program_series`). :class:`ProgramTableau`
holds such functions where a tableau holds quotients, so that
:func:`~phiforge.derive.check.check_tableau` (the one checker, the conditions' one recursion)
and the registry read a program as they read a tableau.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from typing import Any

import sympy

from phiforge.derive.errors import InputError
from phiforge.derive.phi import phi
from phiforge.derive.phibasis import FRACTIONS
from phiforge.derive.straightline import (
    Definition,
    fold_program,
    phi_key,
    program_series,
    series_of,
)
from phiforge.derive.tableau import ExpRKTableau, SparseTableau

__all__ = ["ProgramFunction", "ProgramTableau"]


class _Run:
    """One program's values at an algebra's points and its Taylor coefficients, cached."""

    def __init__(self, definitions: tuple[Definition, ...]) -> None:
        self.definitions = definitions
        self._modular: dict[int, tuple[Any, dict[str, list[int]]]] = {}
        self._series: tuple[int, dict[str, list[Fraction]]] | None = None

    def series(self, degree: int) -> dict[str, list[Fraction]]:
        if self._series is None or self._series[0] < degree:
            self._series = (degree, program_series(self.definitions, degree))
        return self._series[1]

    def modular(self, algebra: Any) -> dict[str, list[int]]:
        """Every definition at every (slot, point) of ``algebra``, flattened slot by slot."""
        if id(algebra) not in self._modular:
            values = fold_program(self.definitions, _Modular(algebra))
            self._modular[id(algebra)] = (algebra, values)
        return self._modular[id(algebra)][1]


class _Modular:
    """GF(p) values at every (slot, point) of a ModularAlgebra, for
    :func:`~phiforge.derive.straightline.fold_program`."""

    def __init__(self, algebra: Any) -> None:
        self.algebra = algebra
        self.p = algebra.PRIME
        self.width = sum(len(slot) for slot in algebra._points)
        self.leaves: dict[tuple[int, Fraction], list[int]] = {}

    def rational(self, q: Fraction) -> list[int]:
        return [q.numerator % self.p * pow(q.denominator, -1, self.p) % self.p] * self.width

    def leaf(self, key: tuple[int, Fraction]) -> list[int]:
        if key not in self.leaves:
            self.leaves[key] = [v for slot in self.algebra.phi_key(key) for v in slot]
        return self.leaves[key]

    def add(self, terms: list[list[int]]) -> list[int]:
        return [sum(column) % self.p for column in zip(*terms, strict=True)]

    def _product(self, factors: list[list[int]]) -> list[int]:
        total = [1] * self.width
        for factor in factors:
            total = [x * y % self.p for x, y in zip(total, factor, strict=True)]
        return total

    def mul(self, numerators: list, denominators: list, where: str) -> list[int]:
        numerator, denominator = self._product(numerators), self._product(denominators)
        if 0 in denominator:
            raise InputError(
                f"{where}: the program divides by a value that vanishes at a sample point of the "
                "check; compose the program to check it"
            )
        pairs = zip(numerator, denominator, strict=True)
        return [n * pow(d, -1, self.p) % self.p for n, d in pairs]


@dataclass(frozen=True, eq=False)
class ProgramFunction:
    """The coefficient function named ``name`` in a program: what the algebras read of a
    :class:`~phiforge.derive.phibasis.CoefficientFunction` (not phi-linear; Taylor
    coefficients; value at 0; values modulo p at an algebra's points)."""

    run: _Run = field(repr=False)
    name: str
    combination = None
    is_linear = False

    def taylor(self, degree: int) -> list[Fraction]:
        return list(series_of(self.run.series(degree), self.name, degree)[: degree + 1])

    def at_zero(self) -> Fraction:
        return self.taylor(0)[0]

    def phi_keys(self) -> list[tuple[int, Fraction]]:
        atoms = set().union(*(d.expr.atoms(phi) for d in self.run.definitions))
        return [phi_key(atom) for atom in atoms]

    def modular_values(self, algebra: Any) -> tuple[tuple[int, ...], ...]:
        flat = self.run.modular(algebra)[self.name]
        width = len(algebra._points[0])
        return tuple(tuple(flat[o * width : (o + 1) * width]) for o in range(len(algebra._points)))


@dataclass
class ProgramTableau:
    """A single-step method whose coefficients are definitions of a program, read by the
    checker and the registry as an :class:`~phiforge.derive.tableau.ExpRKTableau` is (name,
    nodes, ``sparse``, ``at_zero``); ``a_names``/``b_names`` map a_ij (j >= 1), b_i to
    definition names (absent: 0)."""

    name: str
    c: tuple[sympy.Expr, ...]
    definitions: tuple[Definition, ...]
    a_names: dict[tuple[int, int], str]
    b_names: dict[int, str]
    description: str = ""
    prediction: str | None = None
    free_symbols: frozenset = frozenset()
    source: str = ""

    @property
    def stages(self) -> int:
        return len(self.c)

    @cached_property
    def sparse(self) -> SparseTableau:
        run = _Run(tuple(self.definitions))
        return SparseTableau(
            ring=FRACTIONS,
            c=tuple(FRACTIONS.coerce(x) for x in self.c),
            a={k: ProgramFunction(run, n) for k, n in self.a_names.items() if k[1] != 1},  # type: ignore[misc]
            b={i: ProgramFunction(run, n) for i, n in self.b_names.items() if i != 1},  # type: ignore[misc]
        )

    at_zero = ExpRKTableau.at_zero
