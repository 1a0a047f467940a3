"""Butcher's classical order conditions of a Runge-Kutta tableau (A, b, c).

For a rooted tree t, the elementary weight is Phi(t) = sum_i b_i Phi_i(t) with
Phi_i(t) = prod over the root's children u of (sum_j a_ij Phi_j(u)) (a leaf child contributes
sum_j a_ij = c_i); the method has order p iff Phi(t) = 1/gamma(t) for all trees with |t| <= p
(Butcher, "Numerical Methods for Ordinary Differential Equations", 3rd ed. (2016), §31-32).
Applied to an exponential method at z = 0 this is the *classical order* of spec
order-conditions.md §2.4.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import sympy

from phiforge.derive.trees import RootedTree, trees_up_to

__all__ = ["classical_order", "elementary_weight"]


def _weights(A: Sequence[Sequence[Any]], c: Sequence[Any]):
    s = len(c)

    @cache
    def stage(tree: RootedTree) -> tuple[Any, ...]:
        values = [sympy.Integer(1)] * s
        for child in tree.children:
            inner = stage(child)
            values = [
                values[i] * sum((A[i][j] * inner[j] for j in range(s)), sympy.Integer(0))
                for i in range(s)
            ]
        return tuple(values)

    return stage


def elementary_weight(
    tree: RootedTree, A: Sequence[Sequence[Any]], b: Sequence[Any], c: Sequence[Any]
) -> Any:
    """Phi(t) = sum_i b_i Phi_i(t)."""
    stage = _weights(A, c)(tree)
    return sum((b[i] * stage[i] for i in range(len(b))), sympy.Integer(0))


def classical_order(
    A: Sequence[Sequence[Any]], b: Sequence[Any], c: Sequence[Any], max_order: int
) -> int:
    """Largest p <= max_order with Phi(t) = 1/gamma(t) for every tree of order <= p."""
    stage = _weights(A, c)
    order = 0
    for p in range(1, max_order + 1):
        for tree in trees_up_to(p, start=p):
            value = sum((b[i] * stage(tree)[i] for i in range(len(b))), sympy.Integer(0))
            if sympy.simplify(value - sympy.Rational(1, tree.density)) != 0:
                return order
        order = p
    return order
