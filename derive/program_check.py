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

import numpy as np
import sympy

from phiforge.derive.errors import InputError
from phiforge.derive.phi import phi
from phiforge.derive.phibasis import FRACTIONS
from phiforge.derive.straightline import (
    Definition,
    fold_program,
    phi_key,
    program_series,
    program_values,
    series_of,
)
from phiforge.derive.tableau import ExpRKTableau, SparseTableau, format_expression

__all__ = ["ProgramFunction", "ProgramTableau", "as_program"]


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

    def a_entry(self, i: int, j: int) -> sympy.Expr:
        """a_ij as the name of the definition that computes it (0 when absent)."""
        name = self.a_names.get((i, j))
        return sympy.Symbol(name) if name else sympy.Integer(0)

    def b_entry(self, i: int) -> sympy.Expr:
        name = self.b_names.get(i)
        return sympy.Symbol(name) if name else sympy.Integer(0)

    def to_markdown(self) -> str:
        """The tableau of definition names (:meth:`ExpRKTableau.to_markdown`), then the
        definitions in program order."""
        lines = [f"- {d.name} = {format_expression(d.expr)}" for d in self.definitions]
        table = ExpRKTableau.to_markdown(self)  # type: ignore[arg-type]
        return f"{table}\n\nwhere, in program order:\n\n" + "\n".join(lines)

    def to_latex(self) -> str:
        """The Butcher array of definition names, then the definitions as an ``aligned``
        block."""
        rows = [
            f"{sympy.latex(sympy.Symbol(d.name))} &= {sympy.latex(d.expr)}"
            for d in self.definitions
        ]
        array = ExpRKTableau.to_latex(self)  # type: ignore[arg-type]
        return f"{array}\n\\begin{{aligned}}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"

    def coefficient_arrays(
        self, z: np.ndarray
    ) -> tuple[dict[tuple[int, int], np.ndarray], dict[int, np.ndarray]]:
        """The non-zero a_ij and b_i at every real z of ``z``, in z's floating dtype (the
        operator setting's a_ij(hL) in L's eigenbasis, at z = h lambda_k): the program run in
        ball arithmetic at each distinct z (:func:`~phiforge.derive.straightline.program_values`,
        correct to 1e-20 relative, so neither float64 cancellation nor a Taylor disc enters)."""
        z = np.asarray(z)
        distinct, where = np.unique(z.ravel(), return_inverse=True)
        names = sorted({*self.a_names.values(), *self.b_names.values()})
        points = [np.format_float_scientific(x, unique=True) for x in distinct]
        values = program_values(self.definitions, names, points, z.dtype.type)
        arrays = {
            name: np.asarray(values[name], dtype=z.dtype)[where].reshape(z.shape) for name in names
        }
        a = {key: arrays[name] for key, name in self.a_names.items()}
        b = {i: arrays[name] for i, name in self.b_names.items()}
        return a, b


def as_program(method: ExpRKTableau | ProgramTableau) -> ProgramTableau:
    """``method`` as a program: a tableau's non-zero entries become one definition each (a_i_j,
    b_i), a program stays as it is. What runs a method numerically from its exact coefficients
    (:meth:`ProgramTableau.coefficient_arrays`) reads both kinds the same way."""
    if isinstance(method, ProgramTableau):
        return method
    s = method.stages
    a_names = {
        (i, j): f"a{i}_{j}"
        for i in range(2, s + 1)
        for j in range(1, i)
        if method.a_entry(i, j) != 0
    }
    b_names = {i: f"b{i}" for i in range(1, s + 1) if method.b_entry(i) != 0}
    definitions = [Definition(name, method.a_entry(*key)) for key, name in a_names.items()]
    definitions += [Definition(name, method.b_entry(i)) for i, name in b_names.items()]
    return ProgramTableau(
        method.name,
        tuple(method.c),
        tuple(definitions),
        a_names,
        b_names,
        description=method.description,
        prediction=method.prediction,
        free_symbols=method.free_symbols,
        source=method.source,
    )
