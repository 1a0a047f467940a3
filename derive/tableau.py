"""Explicit exponential Runge-Kutta methods as data: nodes c, coefficients a_ij(z), b_i(z).

One step of size h for u' = A u + g(t, u), with Z = hA (spec order-conditions.md §1,
spec-dpmsolver-res.md §2.3; in the diffusion ODE Z = -h for data prediction, +h for noise):

    U_i     = e^{c_i Z} u_n + h sum_{j<i} a_ij(Z) g(t_n + c_j h, U_j)
    u_{n+1} = e^{Z} u_n     + h sum_i    b_i(Z)  g(t_n + c_i h, U_i)

The coefficients are SymPy expressions in ``phi(k, c*z)`` (see :mod:`phiforge.derive.phi`) and the
nodes are exact numbers or free symbols. A tableau is validated once, on construction: explicit
(a_ij only for j < i), c_1 = 0, and the simplifying assumptions of Hochbruck & Ostermann (SINUM 43
(2005), conditions 1 and 3) hold as identities in z:

    sum_j a_ij(z) = c_i phi_1(c_i z)   (psi_{1,i} = 0),     sum_i b_i(z) = phi_1(z)   (psi_1 = 0).

The first column a_i1 and b_1 may be left out; they are then defined by those identities (the
reformulated form of Luan & Ostermann, where a_i1 and b_1 never enter a condition of order >= 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import sympy
from sympy.printing.str import StrPrinter

from phiforge.derive.errors import InputError
from phiforge.derive.phi import phi
from phiforge.derive.phibasis import (
    CoefficientFunction,
    Ring,
    coefficient_function,
    exp_poly_is_zero,
    expression_exp_poly,
    ring_for,
)

__all__ = ["ExpRKTableau", "Z", "format_expression"]

Z = sympy.Symbol("z")
PREDICTIONS = ("data", "noise")


class _PhiPrinter(StrPrinter):
    def _print_phi(self, expr: phi) -> str:
        k, argument = expr.args
        return f"φ_{k}({self._print(argument)})"


def format_expression(expr: sympy.Expr) -> str:
    """Human form with ``φ_k(c z)``; ``str(expr)`` gives the SymPy-parsable ``phi(k, c*z)``."""
    return _PhiPrinter().doprint(expr)


def _identically_zero(expr: sympy.Expr, ring: Ring, context: str) -> bool:
    """Exact test of expr == 0 as a function of z; a quotient is decided on its numerator."""
    if any(
        isinstance(p, sympy.Pow) and p.exp.is_negative and p.base.has(Z) and p.base != Z
        for p in sympy.preorder_traversal(expr)
    ):
        expr = sympy.fraction(sympy.together(expr))[0]
    return exp_poly_is_zero(expression_exp_poly(expr, Z, ring, context), ring)


@dataclass(frozen=True)
class ExpRKTableau:
    """An explicit exponential Runge-Kutta tableau (1-based stage indices in every method)."""

    name: str
    c: tuple[sympy.Expr, ...]
    a: tuple[tuple[sympy.Expr, ...], ...]
    b: tuple[sympy.Expr, ...]
    source: str = ""
    prediction: str | None = None
    description: str = ""
    parameters: Mapping[str, sympy.Expr] = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_coefficients(
        cls,
        name: str,
        c: list[Any] | tuple[Any, ...],
        a: Mapping[tuple[int, int], Any],
        b: Mapping[int, Any],
        **metadata: Any,
    ) -> ExpRKTableau:
        """Build from 1-based dicts ``a[(i, j)]`` and ``b[i]``; missing entries are 0, except
        a_i1 and b_1, which default to the values the row-sum identities require."""
        nodes = tuple(sympy.sympify(x) for x in c)
        s = len(nodes)
        if s < 1:
            raise InputError(f"{name}: parameter 'c' must hold at least one node")
        for i, j in a:
            if not (1 <= j < i <= s):
                raise InputError(
                    f"{name}: a[{i},{j}] is not below the diagonal of an explicit {s}-stage "
                    f"tableau; allowed are 1 <= j < i <= {s}"
                )
        for i in b:
            if not 1 <= i <= s:
                raise InputError(f"{name}: b[{i}] outside stages 1..{s}")
        rows = []
        for i in range(1, s + 1):
            row = [sympy.sympify(a.get((i, j), 0)) for j in range(1, i)]
            if i > 1 and (i, 1) not in a:
                row[0] = nodes[i - 1] * phi(1, nodes[i - 1] * Z) - sympy.Add(*row[1:])
            rows.append(tuple(row))
        weights = [sympy.sympify(b.get(i, 0)) for i in range(1, s + 1)]
        if 1 not in b:
            weights[0] = phi(1, Z) - sympy.Add(*weights[1:])
        return cls(name=name, c=nodes, a=tuple(rows), b=tuple(weights), **metadata)

    def __post_init__(self) -> None:
        name, s = self.name, len(self.c)
        if s < 1 or len(self.a) != s or len(self.b) != s:
            raise InputError(f"{name}: c, a and b must describe the same number of stages")
        for i, row in enumerate(self.a):
            if len(row) != i:
                raise InputError(
                    f"{name}: row {i + 1} of 'a' must hold exactly {i} entries (explicit method)"
                )
        if self.c[0] != 0:
            raise InputError(f"{name}: parameter 'c' must start with c_1 = 0, got {self.c[0]}")
        for i, node in enumerate(self.c, start=1):
            if node.has(Z) or (node.is_number and not (node.is_real and node.is_finite)):
                raise InputError(f"{name}: node c_{i} = {node} must be a real number or symbol")
        if self.prediction is not None and self.prediction not in PREDICTIONS:
            raise InputError(
                f"{name}: parameter 'prediction' must be one of {PREDICTIONS} or None, "
                f"got {self.prediction!r}"
            )
        ring = self.ring
        for i in range(2, s + 1):
            residual = sympy.Add(*self.a[i - 1]) - self.c[i - 1] * phi(1, self.c[i - 1] * Z)
            if not _identically_zero(residual, ring, f"{name}: row {i}"):
                raise InputError(
                    f"{name}: row {i} violates the row-sum assumption "
                    f"sum_j a_{i}j(z) = c_{i} phi_1(c_{i} z) (psi_{{1,{i}}} = "
                    f"{format_expression(sympy.simplify(-residual))})"
                )
        residual = sympy.Add(*self.b) - phi(1, Z)
        if not _identically_zero(residual, ring, f"{name}: b"):
            raise InputError(
                f"{name}: the weights violate sum_i b_i(z) = phi_1(z) "
                f"(psi_1 = {format_expression(sympy.simplify(-residual))})"
            )
        _ = self.sparse  # the coefficients that enter conditions must be phi-linear

    # ------------------------------------------------------------------ structure
    @property
    def stages(self) -> int:
        return len(self.c)

    def a_entry(self, i: int, j: int) -> sympy.Expr:
        """a_ij(z), 1-based; 0 when j >= i."""
        return self.a[i - 1][j - 1] if j < i else sympy.Integer(0)

    def b_entry(self, i: int) -> sympy.Expr:
        return self.b[i - 1]

    @property
    def definitions(self) -> tuple:
        """A tableau's entries are their own expressions: no program definitions (a straight-line
        method's are :attr:`~phiforge.derive.program_check.ProgramTableau.definitions`)."""
        return ()

    @cached_property
    def free_symbols(self) -> frozenset[sympy.Symbol]:
        """Free parameters (symbolic nodes or coefficients) other than z."""
        symbols: set[sympy.Symbol] = set()
        for expr in (*self.c, *self.b, *(x for row in self.a for x in row)):
            symbols |= expr.free_symbols
        return frozenset(symbols - {Z})

    @cached_property
    def ring(self) -> Ring:
        return ring_for((*self.c, *self.b, *(x for row in self.a for x in row)), Z)

    @cached_property
    def sparse(self) -> SparseTableau:
        """The reformulated coefficients (i, j >= 2) as exact coefficient functions."""
        ring = self.ring
        a: dict[tuple[int, int], CoefficientFunction] = {}
        for i in range(3, self.stages + 1):
            for j in range(2, i):
                entry = self.a_entry(i, j)
                if entry != 0:
                    a[(i, j)] = coefficient_function(entry, Z, ring, f"{self.name}: a[{i},{j}]")
        b = {}
        for i in range(2, self.stages + 1):
            entry = self.b_entry(i)
            if entry != 0:
                b[i] = coefficient_function(entry, Z, ring, f"{self.name}: b[{i}]")
        return SparseTableau(
            ring=ring,
            c=tuple(ring.coerce(x) for x in self.c),
            a=a,
            b=b,
        )

    def sparse_row_linear(self, i: int) -> bool:
        """True when every a_ij (j >= 2) of row i is phi-linear (then so is a_i1)."""
        sparse = self.sparse
        return all(sparse.a[(i, j)].is_linear for j in range(2, i) if (i, j) in sparse.a)

    def at_zero(self) -> tuple[list[list[sympy.Expr]], list[sympy.Expr], list[sympy.Expr]]:
        """The underlying Runge-Kutta tableau (A(0), b(0), c) as SymPy numbers/expressions.

        a_ij(0), b_i(0) (i, j >= 2) are the exact Taylor values of the sparse coefficient
        functions (no symbolic limits: a quotient of phi polynomials is expanded as series);
        a_i1(0) = c_i - sum_j a_ij(0) and b_1(0) = 1 - sum_i b_i(0) by the row-sum identities,
        which every tableau satisfies (checked in __post_init__)."""
        s, sparse = self.stages, self.sparse
        value = Ring.to_sympy
        matrix = [[sympy.Integer(0)] * s for _ in range(s)]
        for i in range(2, s + 1):
            for j in range(2, i):
                if (i, j) in sparse.a:
                    matrix[i - 1][j - 1] = value(sparse.a[(i, j)].at_zero())
            matrix[i - 1][0] = sympy.simplify(self.c[i - 1] - sympy.Add(*matrix[i - 1][1:]))
        weights = [sympy.Integer(0)] * s
        for i, function in sparse.b.items():
            weights[i - 1] = value(function.at_zero())
        weights[0] = sympy.simplify(1 - sympy.Add(*weights[1:]))
        return matrix, weights, list(self.c)

    def subs(
        self, values: Mapping[str | sympy.Symbol, Any], name: str | None = None
    ) -> ExpRKTableau:
        """Substitute values for free parameters (e.g. ``{'c2': 1/2}``)."""
        known = {str(sym): sym for sym in self.free_symbols}
        mapping = {}
        for key, value in values.items():
            if str(key) not in known:
                raise InputError(
                    f"{self.name}: unknown parameter {key!r}; free parameters are "
                    f"{sorted(known) or 'none'}"
                )
            mapping[known[str(key)]] = sympy.nsimplify(value)
        params = dict(self.parameters)
        params.update({str(k): v for k, v in mapping.items()})
        return ExpRKTableau(
            name=name or self.name,
            c=tuple(x.subs(mapping) for x in self.c),
            a=tuple(tuple(x.subs(mapping) for x in row) for row in self.a),
            b=tuple(x.subs(mapping) for x in self.b),
            source=self.source,
            prediction=self.prediction,
            description=self.description,
            parameters=params,
        )

    # ------------------------------------------------------------------ rendering
    def to_markdown(self) -> str:
        """A Butcher-style table: one row per stage (c_i | a_i1 ... a_i,s-1), then the weights."""
        s = self.stages
        header = "| c | " + " | ".join(f"a_i{j}" for j in range(1, s)) + " |" if s > 1 else "| c |"
        lines = [header, "|" + "---|" * max(s, 1)]
        for i in range(1, s + 1):
            cells = [format_expression(self.c[i - 1])]
            cells += [format_expression(self.a_entry(i, j)) if j < i else "" for j in range(1, s)]
            lines.append("| " + " | ".join(cells) + " |")
        weights = (format_expression(self.b_entry(i)) for i in range(1, s + 1))
        lines.append("| **b** | " + " | ".join(weights) + " |")
        if s == 1:
            lines[1] = "|---|---|"
            lines[0] = "| c | |"
        return "\n".join(lines)

    def to_latex(self) -> str:
        """A Butcher array in LaTeX (``array`` with a rule below the stages)."""
        s = self.stages
        columns = "c|" + "c" * s
        rows = []
        for i in range(1, s + 1):
            cells = [sympy.latex(self.c[i - 1])]
            cells += [sympy.latex(self.a_entry(i, j)) if j < i else "" for j in range(1, s + 1)]
            rows.append(" & ".join(cells) + r" \\")
        rows.append(r"\hline")
        rows.append(" & " + " & ".join(sympy.latex(self.b_entry(i)) for i in range(1, s + 1)))
        return "\\begin{array}{" + columns + "}\n" + "\n".join(rows) + "\n\\end{array}"


@dataclass(frozen=True)
class SparseTableau:
    """Nodes and the coefficients with indices >= 2 as exact functions, in one ring."""

    ring: Ring
    c: tuple[Any, ...]
    a: Mapping[tuple[int, int], CoefficientFunction]
    b: Mapping[int, CoefficientFunction]

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def is_linear(self) -> bool:
        """True when every coefficient is a linear combination of phi_k(c z)."""
        return all(f.is_linear for f in (*self.a.values(), *self.b.values()))

    def node(self, i: int) -> Any:
        return self.c[i - 1]
