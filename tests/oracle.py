"""An independent numerical oracle for order conditions (spec order-conditions.md §4.5c).

Evaluates Cond(t) by the tree recursion in plain mpmath arithmetic at given vertex values, from
the tableau's SymPy expressions (closed-form phi at 60 digits), sharing no code with the exact
checker beyond the tableau and the tree type.
"""

from __future__ import annotations

from functools import cache

import mpmath
import sympy

from phiforge.derive.tableau import Z
from phiforge.derive.trees import RootedTree

DIGITS = 60


def phi_value(k: int, x: mpmath.mpc) -> mpmath.mpc:
    if x == 0:
        return mpmath.mpf(1) / mpmath.factorial(k)
    return (mpmath.exp(x) - mpmath.fsum(x**m / mpmath.factorial(m) for m in range(k))) / x**k


def _number(expr: sympy.Expr) -> mpmath.mpf:
    with mpmath.workdps(DIGITS + 10):
        return mpmath.mpmathify(str(sympy.N(expr, DIGITS + 10)))


def _numeric(expr: sympy.Expr):
    expr = sympy.sympify(expr)
    if expr.is_number:
        value = _number(expr)
        return lambda x: value
    return sympy.lambdify(Z, expr, modules=[{"phi": phi_value}, "mpmath"])


class NumericMethod:
    def __init__(self, method) -> None:
        s = method.stages
        self.s = s
        self.c = [_number(x) for x in method.c]
        self._a = {
            (i, j): _numeric(method.a_entry(i, j)) for i in range(1, s + 1) for j in range(1, i)
        }
        self._b = {i: _numeric(method.b_entry(i)) for i in range(1, s + 1)}
        self.a = cache(lambda i, j, x: self._a[(i, j)](x))
        self.b = cache(lambda i, x: self._b[i](x))

    def psi(self, q: int, x) -> mpmath.mpc:
        return phi_value(q, x) - mpmath.fsum(
            self.b(i, x) * self.c[i - 1] ** (q - 1) for i in range(1, self.s + 1)
        ) / mpmath.factorial(q - 1)

    def psi_stage(self, q: int, i: int, x) -> mpmath.mpc:
        ci = self.c[i - 1]
        return ci**q * phi_value(q, ci * x) - mpmath.fsum(
            self.a(i, j, x) * self.c[j - 1] ** (q - 1) for j in range(1, i)
        ) / mpmath.factorial(q - 1)


def condition_value(method: NumericMethod, tree: RootedTree, values: list) -> mpmath.mpc:
    """Cond(t) with ``values[v]`` the variable of the v-th non-leaf vertex (DFS preorder)."""

    def product_over_children(parent: RootedTree, index: int, first_var: int):
        result, var = mpmath.mpf(1), first_var
        for child in parent.subtree_children:
            result *= w(index, child, var)
            var += child.nonleaf_vertices
        return result

    def w(i: int, subtree: RootedTree, var: int):
        x = values[var]
        if subtree.is_bushy:
            return method.psi_stage(subtree.order, i, x)
        k = subtree.leaf_children
        return mpmath.fsum(
            method.a(i, j, x) * method.c[j - 1] ** k * product_over_children(subtree, j, var + 1)
            for j in range(1, i)
        )

    with mpmath.workdps(DIGITS):
        x0 = values[0]
        if tree.is_bushy:
            return method.psi(tree.order, x0)
        k = tree.leaf_children
        return mpmath.fsum(
            method.b(i, x0) * method.c[i - 1] ** k * product_over_children(tree, i, 1)
            for i in range(1, method.s + 1)
        )


SAMPLES = [
    mpmath.mpf("-0.37"),
    mpmath.mpf("-1.9"),
    mpmath.mpf("-4.3"),
    mpmath.mpf("-11.7"),
    mpmath.mpf("0.83"),
    mpmath.mpc("-2.2", "3.1"),
    mpmath.mpf("-27.1"),
]


def numeric_verdict(method: NumericMethod, tree: RootedTree, setting: str) -> str:
    """S, W, C or x from evaluations at sample points (threshold 1e-40 at 60 digits)."""
    n = tree.nonleaf_vertices
    assignments = []
    for shift in range(3):
        if setting == "scalar":
            assignments.append([SAMPLES[shift]] * n)
        else:
            assignments.append([SAMPLES[(shift + 2 * v) % len(SAMPLES)] for v in range(n)])

    def vanishes(candidates) -> bool:
        return all(abs(condition_value(method, tree, values)) < 1e-40 for values in candidates)

    if vanishes(assignments):
        return "S"
    if vanishes([[0, *values[1:]] for values in assignments]):
        return "W"
    if vanishes([[0] * n]):
        return "C"
    return "x"
