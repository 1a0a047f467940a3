"""The stiff order conditions checked on a straight-line program, without composing it.

A program (:class:`~phiforge.derive.straightline.Definition` list) from the named elimination
(:mod:`phiforge.derive.named_elimination`) has nested quotients; composed into one quotient of
expanded phi polynomials per coefficient (:func:`~phiforge.derive.straightline.compose`), the
7-stage order-5 case takes over 6 minutes before the checker starts. The checker itself does not
need that form: for numeric nodes it decides every condition by evaluation at random points
modulo p = 2^61 - 1 (:class:`~phiforge.derive.algebras.ModularAlgebra`: z and w = e^{z/d} are
algebraically independent, every phi_k(c z) is a rational function of (z, w), and a non-zero
rational function of degree D vanishes at a random point with probability at most D/p,
Schwartz-Zippel). Here the coefficients at those points come from running the program in
GF(p): every definition is a sum of products of phi values, z, rationals and earlier names
(divided by earlier names), so its value at a point is a few field operations. The conditions
are the checker's own (:class:`~phiforge.derive.conditions.ConditionEvaluator`, the one
elementary-weight recursion), so this is the strong verdict of
:func:`~phiforge.derive.check.check_tableau` with the same failure bound (below 1e-60 at 4
points), for the scalar setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import sympy

from phiforge.derive.algebras import InconclusiveError, ModularAlgebra
from phiforge.derive.conditions import Condition, ConditionEvaluator, stiff_conditions
from phiforge.derive.errors import InputError
from phiforge.derive.phi import phi
from phiforge.derive.phibasis import FRACTIONS
from phiforge.derive.straightline import Definition
from phiforge.derive.tableau import Z

__all__ = ["ProgramCheck", "check_program"]


@dataclass(frozen=True)
class _Name:
    """A coefficient of the program, by the name of its definition."""

    name: str


@dataclass
class _ProgramMethod:
    """What :class:`ConditionEvaluator` reads of a method: nodes, a_ij (j >= 2), b_i."""

    c: tuple[Fraction, ...]
    a: dict[tuple[int, int], _Name]
    b: dict[int, _Name]

    def node(self, i: int) -> Fraction:
        return self.c[i - 1]


class _ProgramAlgebra(ModularAlgebra):
    """:class:`ModularAlgebra` whose coefficients are the values of a program at its points."""

    def __init__(self, definitions: list[Definition], nodes: tuple[Fraction, ...], order: int):
        atoms = set().union(*(d.expr.atoms(phi) for d in definitions))
        keys = [(q, c) for q in range(1, order + 2) for c in {*nodes, Fraction(1)} if c != 0]
        keys += [(int(atom.args[0]), _scale(atom)) for atom in atoms]
        super().__init__(FRACTIONS, keys)
        self._values = self._run(definitions)

    def _run(self, definitions: list[Definition]) -> dict[str, tuple[int, ...]]:
        points = self._points[0]
        values: dict[str, tuple[int, ...]] = {}
        for definition in definitions:
            values[definition.name] = tuple(
                self._evaluate(definition.expr, n, values) for n in range(len(points))
            )
        return values

    def _evaluate(self, expr: sympy.Expr, n: int, values: dict[str, tuple[int, ...]]) -> int:
        p = self.PRIME
        if expr.is_Rational:
            return self._number(expr)
        if expr == Z:
            return self._points[0][n][0]
        if isinstance(expr, phi):
            return self._phi_values(int(expr.args[0]), _scale(expr), [self._points[0][n]])[0]
        if isinstance(expr, sympy.Symbol):
            if expr.name not in values:
                raise InputError(f"program definition uses {expr.name} before it is defined")
            return values[expr.name][n]
        if expr.is_Add:
            return sum(self._evaluate(term, n, values) for term in expr.args) % p
        if expr.is_Mul:
            total = 1
            for factor in expr.args:
                total = total * self._evaluate(factor, n, values) % p
            return total
        if expr.is_Pow and expr.exp.is_Integer:
            base = self._evaluate(expr.base, n, values)
            if expr.exp < 0 and base == 0:
                raise InconclusiveError(f"{expr.base} vanishes at a sample point")
            return pow(base, int(expr.exp), p)
        raise InputError(f"program term {expr} is not a polynomial in z, phi values and names")

    def lift(self, function: Any) -> dict:
        if isinstance(function, _Name):
            return {"k": 1, "v": (self._values[function.name],)}
        return super().lift(function)


def _scale(atom: phi) -> Fraction:
    """c of phi_k(c z)."""
    return Fraction(str(sympy.nsimplify(atom.args[1] / Z)))


@dataclass
class ProgramCheck:
    """Per condition (generator order) whether it holds identically in z (strong)."""

    results: list[tuple[Condition, bool]]

    @property
    def stiff_order(self) -> int:
        """The largest p with every condition of order <= p strong (at least 1)."""
        failing = [c.order for c, strong in self.results if not strong]
        top = max((c.order for c, _ in self.results), default=1)
        return min(failing) - 1 if failing else top

    def verdict_row(self) -> str:
        """S (strong) or x per condition, as :meth:`CheckReport.verdict_row` writes them."""
        return "".join("S" if strong else "x" for _, strong in self.results)


def check_program(
    definitions: list[Definition] | tuple[Definition, ...],
    nodes: tuple[Any, ...],
    a_names: dict[tuple[int, int], str],
    b_names: dict[int, str],
    max_order: int,
) -> ProgramCheck:
    """The scalar-setting stiff conditions of orders 2..max_order on the program (module
    docstring). ``a_names``/``b_names`` map a_ij, b_i to definition names ("0": zero); the row
    sums a_i1, b_1 are the program's own (every condition assumes them)."""
    c = tuple(Fraction(str(x)) for x in nodes)
    definitions = list(definitions)
    method = _ProgramMethod(
        c,
        {k: _Name(n) for k, n in a_names.items() if n != "0" and k[1] != 1},
        {i: _Name(n) for i, n in b_names.items() if n != "0"},
    )
    try:
        evaluator = ConditionEvaluator(method, _ProgramAlgebra(definitions, c, max_order))  # type: ignore[arg-type]
        results = [
            (condition, evaluator.algebra.is_zero(evaluator.condition(condition.tree)))
            for condition in stiff_conditions(max_order, "scalar")
        ]
    except InconclusiveError as error:
        raise InputError(f"the program cannot be checked at its sample points ({error})") from None
    return ProgramCheck(results)
