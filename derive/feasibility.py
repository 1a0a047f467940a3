"""Pointwise feasibility of the scalar stiff order conditions: a numerical lower bound on stages.

In the scalar setting every order condition is an identity in z whose terms are products of the
coefficients a_ij(z), b_i(z) and of phi_k(c_i z) at the same z (spec order-conditions.md §4). At
one fixed value z0 each condition is therefore a polynomial equation in the numbers
a_ij(z0), b_i(z0) (and the nodes c_i, if they are free), with the numbers phi_k(c_i z0) as
coefficients. A method of stiff order p with s stages gives a solution of that system at every
z0; so a system with no real solution at some z0 proves (numerically) that no s-stage method of
stiff order p exists, for any nodes and without any simplifying assumption. The converse does
not hold: solutions at every z0 need not join into coefficients analytic in z (the 4-stage
order-4 case has pointwise solutions at z = 0 but no analytic family, docs/registry-and-codegen.md),
so a solved system is evidence, not a construction.

The equations are the construction's own (:func:`phiforge.derive.construct._equations`, the
conditions' recursion in the expression algebra) with phi_k(c z) as placeholders; they are
solved by least squares (scipy's ``least_squares``, trust-region reflective, nodes
kept in [0, 1]) from random starts. The smallest residual over the starts is the measurement:
about 1e-12 or below where the system is solvable, bounded away from 0 where it is not, and the
Jacobian's singular values at the best point give the dimension of the local solution set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy

from phiforge.derive.conditions import check_order
from phiforge.derive.errors import InputError, integer_in
from phiforge.derive.phi_values import phi_table

__all__ = ["BLOCKED", "SOLVED", "Feasibility", "pointwise_feasibility"]

#: a smallest residual at or below SOLVED is a solution; at or above BLOCKED, none exists in the
#: coefficient box (solvable systems reach ~1e-16; the blocked ones measured, 2e-8 .. 3e-2)
SOLVED = 1e-12
BLOCKED = 1e-9


@dataclass
class Feasibility:
    """The outcome of :func:`pointwise_feasibility`: the smallest residual norm over the starts,
    the residual of every start, the solution at the best one (unknown name -> value) and the
    singular values of the Jacobian there (``dimension``: unknowns less the numerical rank,
    the dimension of the local solution set when the residual is 0)."""

    stages: int
    order: int
    z: float | tuple[float, ...]
    bound: float
    equations: int
    unknowns: int
    best: float
    residuals: list[float] = field(default_factory=list)
    solution: dict[str, float] = field(default_factory=dict)
    singular_values: list[float] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """The verdict: "solvable" (a point solution), "blocked" (no start found one with
        coefficients in the box) or "undecided" (between SOLVED and BLOCKED: more starts, or a
        larger box). "blocked" is as firm as the search: firm when independent starts return to
        the same positive minimum (compare ``residuals``), weaker when they do not."""
        if self.best <= SOLVED:
            return "solvable"
        return "blocked" if self.best >= BLOCKED else "undecided"

    @property
    def size(self) -> float:
        """The largest |coefficient| at the best point: a residual that falls only as the
        coefficients grow is a solution at infinity, not a method."""
        return max((abs(v) for v in self.solution.values()), default=math.inf)

    @property
    def dimension(self) -> int:
        if not self.singular_values:
            return self.unknowns
        top = self.singular_values[0]
        rank = sum(v > 1e-8 * top for v in self.singular_values)
        return self.unknowns - rank


def _system(stages: int, order: int, nodes: list[Any] | None, assumptions: str):
    """The conditions as one numpy function of (unknowns, placeholders), the unknown symbols
    (weights, then free nodes) and the placeholders' (k, scale) keys."""
    from phiforge.derive.construct import _equations, _nodes

    s = stages
    free_nodes = nodes is None
    if free_nodes:
        node_symbols = list(sympy.symbols(f"c2:{s + 1}", real=True))
        values = _nodes(node_symbols, s, distinct=True)
    else:
        node_symbols = []
        values = _nodes(nodes, s, distinct=True)
    unknown_b = {i: sympy.Symbol(f"b{i}") for i in range(2, s + 1)}
    unknown_a = {(i, j): sympy.Symbol(f"a{i}_{j}") for i in range(3, s + 1) for j in range(2, i)}
    placeholders: dict = {}
    equations = _equations(s, order, tuple(values), unknown_b, unknown_a, placeholders, assumptions)
    unknowns = [*unknown_b.values(), *unknown_a.values(), *node_symbols]
    keys = list(placeholders)
    arguments = [*unknowns, *placeholders.values()]
    exprs = [expr for _, expr in equations]
    function = sympy.lambdify(arguments, exprs, "math")
    # partial derivatives in every unknown and placeholder: a node's column adds those of its
    # placeholders times d phi_k(c z) / dc (the chain rule)
    derivatives = [[sympy.diff(e, v) for v in arguments] for e in exprs]
    jacobian = sympy.lambdify(arguments, derivatives, "math")
    return function, jacobian, unknowns, keys, node_symbols, len(equations)


def pointwise_feasibility(
    stages: int,
    order: int,
    z: float | list[float] | tuple[float, ...],
    nodes: list[Any] | None = None,
    assumptions: str = "none",
    starts: int = 20,
    seed: int = 0,
    bound: float = 100.0,
) -> Feasibility:
    """Solve the scalar stiff conditions of orders 2..``order`` at the value ``z`` for an
    s-stage method, from ``starts`` random starting points (``seed``): with ``nodes`` None the
    nodes c_2..c_s are unknowns in [0, 1] too, else they are the given numbers; every a_ij(z)
    and b_i(z) is kept in [-``bound``, ``bound``], so a positive smallest residual says that no
    method with coefficients that size exists (a residual that falls only as coefficients grow
    is a solution at infinity). ``z`` may list several values: the conditions at all of them
    are solved together, each with its own coefficients and the nodes shared, as a method's
    nodes are (a method needs the same nodes at every z). Returns the smallest residual found
    (module docstring)."""
    from scipy.optimize import least_squares

    from phiforge.derive.construct import ASSUMPTIONS, _check_stages

    s = _check_stages(stages, 2)
    p = check_order(order, "order")
    starts = integer_in(starts, "'starts'", 1, 10_000)
    seed = integer_in(seed, "'seed'", 0, 2**32 - 1)
    values_z = list(z) if isinstance(z, list | tuple) else [z]
    if not values_z or any(
        isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
        for v in values_z
    ):
        raise InputError(f"parameter 'z' must be a finite real number or a list of them, got {z!r}")
    if len(set(values_z)) != len(values_z):
        raise InputError(f"parameter 'z' lists a value twice: {values_z}")
    if assumptions not in ASSUMPTIONS:
        raise InputError(
            f"parameter 'assumptions' must be one of {ASSUMPTIONS}, got {assumptions!r}"
        )
    if isinstance(bound, bool) or not isinstance(bound, int | float) or not 0 < bound < math.inf:
        raise InputError(f"parameter 'bound' must be a finite number > 0, got {bound!r}")
    function, jacobian, unknowns, keys, node_symbols, count = _system(s, p, nodes, assumptions)
    weights = len(unknowns) - len(node_symbols)
    blocks = len(values_z)
    size = blocks * weights + len(node_symbols)  # every z's weights, then the shared nodes
    node_slot = {symbol: n for n, symbol in enumerate(node_symbols)}
    k_max = max((k for k, _ in keys), default=1)

    def placeholder_values(node_values: np.ndarray, at: float) -> tuple[list[float], list[float]]:
        """phi_k(c z) of every placeholder and its derivative in c, z phi_k'(c z) =
        z (phi_k(c z) - k phi_(k+1)(c z))."""
        cache: dict[float, list[float]] = {}
        values, slopes = [], []
        for k, scale in keys:
            if isinstance(scale, sympy.Symbol):
                c = float(node_values[node_slot[scale]])
            else:
                c = float(scale)
            if c not in cache:
                cache[c] = [float(v) for v in phi_table(c * at, k_max + 1)]
            table = cache[c]
            values.append(table[k])
            slopes.append(at * (table[k] - k * table[k + 1]))
        return values, slopes

    def arguments(x: np.ndarray, block: int) -> list[float]:
        return [*x[block * weights : (block + 1) * weights], *x[blocks * weights :]]

    def residual(x: np.ndarray) -> np.ndarray:
        parts = []
        for block, at in enumerate(values_z):
            values = placeholder_values(x[blocks * weights :], at)[0]
            parts.append(np.array(function(*arguments(x, block), *values), dtype=float))
        return np.concatenate(parts)

    def residual_jacobian(x: np.ndarray) -> np.ndarray:
        out = np.zeros((blocks * count, size))
        for block, at in enumerate(values_z):
            values, slopes = placeholder_values(x[blocks * weights :], at)
            full = np.array(jacobian(*arguments(x, block), *values), dtype=float)
            full = full.reshape(count, -1)
            rows = slice(block * count, (block + 1) * count)
            out[rows, block * weights : (block + 1) * weights] = full[:, :weights]
            out[rows, blocks * weights :] = full[:, weights : len(unknowns)]
            for n, (_, scale) in enumerate(keys):
                if isinstance(scale, sympy.Symbol):
                    column = blocks * weights + node_slot[scale]
                    out[rows, column] += full[:, len(unknowns) + n] * slopes[n]
        return out

    lower = np.full(size, -float(bound))
    upper = np.full(size, float(bound))
    lower[blocks * weights :], upper[blocks * weights :] = 0.0, 1.0
    generator = np.random.default_rng(seed)
    where = float(values_z[0]) if blocks == 1 else tuple(float(v) for v in values_z)
    result = Feasibility(s, p, where, float(bound), blocks * count, size, math.inf)
    best_x = None
    for _ in range(starts):
        x0 = np.clip(generator.normal(0.0, 1.0, size), -bound / 2, bound / 2)
        x0[blocks * weights :] = np.sort(generator.uniform(0.05, 1.0, len(node_symbols)))
        try:
            fit = least_squares(residual, x0, jac=residual_jacobian, bounds=(lower, upper),
                                xtol=1e-15, ftol=1e-15, gtol=1e-15,
                                max_nfev=100 * size)  # fmt: skip
        except (ValueError, OverflowError, ZeroDivisionError):
            continue
        norm = float(np.linalg.norm(fit.fun))
        result.residuals.append(norm)
        if norm < result.best:
            result.best, best_x = norm, fit.x
            result.singular_values = [float(v) for v in np.linalg.svd(fit.jac, compute_uv=False)]
    if best_x is not None:
        names = []
        for at in values_z:
            suffix = "" if blocks == 1 else f"@{at:g}"
            names += [f"{u}{suffix}" for u in unknowns[:weights]]
        names += [str(u) for u in node_symbols]
        result.solution = {name: float(v) for name, v in zip(names, best_x, strict=True)}
    return result
