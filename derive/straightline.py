"""A 7-stage exponential Runge-Kutta method of scalar stiff order 5, as a straight-line program.

In the scalar setting (diffusion ODEs: L is a number, so every coefficient commutes with the
Jacobian) the stiff conditions of order 5 are identities in z, and products of coefficients at
one z may cancel. The construction below solves them under simplifying assumptions, as a short
sequence of small linear solves whose every pivot is a named, well-conditioned function of z:

- stage order 3 for stages 4..7 (psi_{2,i} = psi_{3,i} = 0), stage order 2 for stage 3,
  b_2 = b_3 = 0 (Hochbruck & Ostermann, SINUM 43 (2005) §5, the C(q)-type assumptions); then
  the 16 conditions of order <= 5 (spec order-conditions.md §4) reduce to the quadrature
  conditions psi_1..psi_5 = 0, which fix b_1, b_4..b_7 as phi-linear combinations, and

      R1: sum_i b_i a_i2 = 0,          R2: sum_i b_i c_i a_i2 = 0,     R3: sum_i b_i a_i3 = 0,
      R4: sum_i b_i sum_j a_ij a_j2 = 0,                               R5: sum_i b_i psi_{4,i} = 0

  in the six unknowns a_52, a_62, a_63, a_72, a_73, a_74 (the rest of rows 5..7 follows from the
  stage-order identities). a_63 = 0 is the free choice; with a_52 = 0 instead, or a_62 = 0, or
  a_72 = 0, the remaining system is singular and inconsistent for every node set tried.
- R1, R2 give a_62, a_72 affine in a_52 (pivots b_6, b_7); R3, R5 give a_73, a_74 (pivot b_7);
  R4 is then affine in a_52 (its quadratic term cancels identically), a_52 = -n_52/d_52.

n_52 and d_52 vanish at z = 0 to orders 3 and 2 (in the classical limit a_52 does not enter
R4), so a_52 has a removable singularity there; the generated code evaluates it from its exact
Taylor series for |z| below a radius recorded with the definition, and from the quotient above.
Elsewhere every definition is a short polynomial in phi values and earlier definitions, which is
what keeps float64 evaluation accurate (the same coefficients expanded into quotients of phi
polynomials cancel catastrophically: spec-dpmsolver-res.md §7 and docs/registry-and-codegen.md).

The pivots b_6, b_7 and d_52 must not vanish where the method is used; for the registered nodes
they are positive on z < 0 (data prediction, z = -h) and b_7 vanishes near z = +3.2, so such a
method is recorded with the domain z < 0 and refused in noise-prediction form.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import factorial
from typing import Any

import sympy
from sympy import QQ
from sympy.polys.rings import ring

from phiforge.derive.errors import InputError
from phiforge.derive.phi import phi
from phiforge.derive.tableau import ExpRKTableau, Z

__all__ = ["Definition", "StraightLineMethod", "compose", "construct_scalar_order5"]


@dataclass(frozen=True)
class Definition:
    """One step of a straight-line program: ``name = expr`` (expr in z, phi and earlier names).

    ``series_below`` (a positive rational r) and ``series_degree`` (N): for |z| < r the value is
    taken from the exact Taylor polynomial of degree N about z = 0 (removable singularity)."""

    name: str
    expr: sympy.Expr
    series_below: sympy.Rational | None = None
    series_degree: int | None = None


@dataclass(frozen=True)
class StraightLineMethod:
    """A tableau whose coefficients are named results of a straight-line program."""

    tableau: ExpRKTableau
    definitions: tuple[Definition, ...]
    a_names: dict[tuple[int, int], str]
    b_names: dict[int, str]
    domain: str


def compose(definitions: tuple[Definition, ...] | list[Definition]) -> dict[str, sympy.Expr]:
    """The exact value of every definition as one quotient N/D of expanded polynomials in z and
    phi_k(c z), earlier names substituted.

    Every division in a program is by a name whose value is a polynomial (b_6, b_7, d_52), so a
    value is kept as (N, {divisor: power}) and sums bring terms to the common monomial in the
    divisors: exact, and free of the polynomial gcds a rational-function field would compute
    (which take minutes here)."""
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

    def evaluate(expr: sympy.Expr):
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
                n, d = evaluate(factor)
                numerator = numerator * n
                for k, power in d.items():
                    divisors[k] = divisors.get(k, 0) + power
            return numerator, divisors
        if expr.is_Pow and expr.exp.is_Integer:
            if expr.exp > 0:
                n, d = evaluate(expr.base)
                return n ** int(expr.exp), {k: p * int(expr.exp) for k, p in d.items()}
            base = expr.base
            if isinstance(base, sympy.Symbol) and base.name in values and not values[base.name][1]:
                return one, {base.name: -int(expr.exp)}
        raise InputError(
            f"definition term {expr} is not a polynomial in z, phi and earlier names divided by "
            "names whose values are polynomials"
        )

    exact: dict[str, sympy.Expr] = {}
    for definition in definitions:
        numerator, divisors = evaluate(definition.expr)
        values[definition.name] = (numerator, divisors)
        denominator = one
        for k, power in sorted(divisors.items()):
            denominator = denominator * values[k][0] ** power
        if denominator == one:
            exact[definition.name] = numerator.as_expr()
        else:
            exact[definition.name] = sympy.Mul(
                numerator.as_expr(), sympy.Pow(denominator.as_expr(), -1), evaluate=False
            )
    return exact


def _check_nodes(nodes: list[Any]) -> tuple[sympy.Rational, ...]:
    if len(nodes) != 7:
        raise InputError(
            f"parameter 'nodes' must hold the 7 nodes c_1..c_7 (c_1 = 0), got {len(nodes)}"
        )
    c = tuple(sympy.nsimplify(x) for x in nodes)
    for i, x in enumerate(c, start=1):
        if not (x.is_Rational and 0 <= x <= 1):
            raise InputError(f"parameter 'nodes': c_{i} = {x} must be a rational in [0, 1]")
    if c[0] != 0:
        raise InputError(f"parameter 'nodes': c_1 must be 0, got {c[0]}")
    for group, label in (((1, 2), "c_2, c_3"), ((0, 3, 4, 5, 6), "c_1, c_4, ..., c_7")):
        values = [c[i] for i in group]
        if len(set(values)) != len(values) or (group == (1, 2) and 0 in values):
            raise InputError(
                f"parameter 'nodes': {label} must be distinct (and c_2, c_3 non-zero); got "
                f"{[str(v) for v in values]}"
            )
    return c


def _solve_linear(equations: list[sympy.Expr], unknowns: list[sympy.Symbol]) -> dict:
    matrix, rhs = sympy.linear_eq_to_matrix([sympy.expand(e) for e in equations], unknowns)
    if sympy.expand(matrix.det()) == 0:
        raise InputError(
            f"the linear system for {[str(u) for u in unknowns]} is singular for these nodes"
        )
    solution = matrix.LUsolve(rhs)
    return {u: sympy.cancel(v) for u, v in zip(unknowns, solution, strict=True)}


def construct_scalar_order5(
    nodes: list[Any],
    name: str = "scalar_order5",
    series_below: Any = 1,
    series_degree: int = 40,
    domain: str = "z < 0",
    **metadata: Any,
) -> StraightLineMethod:
    """The 7-stage scalar stiff-order-5 method on ``nodes`` (see the module docstring)."""
    c = _check_nodes(nodes)
    if not (isinstance(series_degree, int) and 1 <= series_degree <= 60):
        raise InputError(
            f"parameter 'series_degree' must be an integer in 1..60, got {series_degree}"
        )
    radius = sympy.nsimplify(series_below)
    if not (radius.is_Rational and 0 < radius <= 2):
        raise InputError(f"parameter 'series_below' must be a rational in (0, 2], got {radius}")

    def P(k: int, x: sympy.Expr) -> sympy.Expr:
        return phi(k, x * Z)

    S = sympy.Symbol
    definitions: list[Definition] = []

    def define(label: str, expr: sympy.Expr) -> sympy.Symbol:
        definitions.append(Definition(label, sympy.sympify(expr)))
        return S(label)

    # Quadrature: sum_i b_i c_i^(q-1)/(q-1)! = phi_q(z), q = 1..5, on stages 1, 4, 5, 6, 7.
    weighted = (1, 4, 5, 6, 7)
    unknown_b = [S(f"b{i}") for i in weighted]
    quadrature = [
        sympy.Add(*[u * c[i - 1] ** (q - 1) for u, i in zip(unknown_b, weighted, strict=True)])
        / factorial(q - 1)
        - P(q, 1)
        for q in range(1, 6)
    ]
    b_solution = _solve_linear(quadrature, unknown_b)
    b = {
        i: define(f"b{i}", sympy.expand(b_solution[u]))
        for u, i in zip(unknown_b, weighted, strict=True)
    }

    def stage_order(i: int, known: dict[int, sympy.Expr], solve_for: tuple[int, int]) -> tuple:
        """a_ij, a_ik of row i from psi_{2,i} = psi_{3,i} = 0 given the other entries."""
        x, y = sympy.symbols("x y")
        j, k = solve_for
        rows = [
            x * c[j - 1] ** (q - 1)
            + y * c[k - 1] ** (q - 1)
            + sympy.Add(*[v * c[m - 1] ** (q - 1) for m, v in known.items()])
            - factorial(q - 1) * c[i - 1] ** q * P(q, c[i - 1])
            for q in (2, 3)
        ]
        solution = _solve_linear(rows, [x, y])
        return sympy.expand(solution[x]), sympy.expand(solution[y])

    a: dict[tuple[int, int], sympy.Expr] = {}
    a[(3, 2)] = define("a32", c[2] ** 2 * P(2, c[2]) / c[1])
    a42, a43 = stage_order(4, {}, (2, 3))
    a[(4, 2)], a[(4, 3)] = define("a42", a42), define("a43", a43)
    u = {n: S(n) for n in ("a52", "a62", "a72", "a73", "a74")}
    rows: dict[tuple[int, int], sympy.Expr] = {(5, 2): u["a52"], (6, 2): u["a62"], (6, 3): 0}
    rows[(5, 3)], rows[(5, 4)] = stage_order(5, {2: u["a52"]}, (3, 4))
    rows[(6, 4)], rows[(6, 5)] = stage_order(6, {2: u["a62"]}, (4, 5))
    rows[(7, 2)], rows[(7, 3)], rows[(7, 4)] = u["a72"], u["a73"], u["a74"]
    rows[(7, 5)], rows[(7, 6)] = stage_order(7, {2: u["a72"], 3: u["a73"], 4: u["a74"]}, (5, 6))
    entry = {**a, **rows}

    def A(i: int, j: int) -> sympy.Expr:
        return entry.get((i, j), sympy.Integer(0))

    rows_b = range(4, 8)
    r1 = sympy.Add(*[b[i] * A(i, 2) for i in rows_b])
    r2 = sympy.Add(*[b[i] * c[i - 1] * A(i, 2) for i in rows_b])
    r3 = sympy.Add(*[b[i] * A(i, 3) for i in rows_b])
    r4 = sympy.Add(*[b[i] * A(i, j) * A(j, 2) for i in rows_b for j in range(3, i)])
    r5 = sympy.Add(
        *[
            b[i]
            * (
                c[i - 1] ** 4 * P(4, c[i - 1])
                - sympy.Add(*[A(i, j) * c[j - 1] ** 3 for j in range(2, i)]) / 6
            )
            for i in rows_b
        ]
    )
    first = _solve_linear([r1, r2], [u["a62"], u["a72"]])
    r3, r4, r5 = (sympy.expand(r.xreplace(first)) for r in (r3, r4, r5))
    second = _solve_linear([r3, r5], [u["a73"], u["a74"]])
    r4 = sympy.together(sympy.expand(r4.xreplace(second)))
    numerator = sympy.expand(sympy.numer(r4))
    if sympy.Poly(numerator, u["a52"]).degree() != 1:
        raise InputError("internal: condition R4 is not affine in a_52 for these nodes")
    n52 = define("n52", numerator.coeff(u["a52"], 0))
    d52 = define("d52", numerator.coeff(u["a52"], 1))
    definitions.append(Definition("a52", -n52 / d52, radius, series_degree))
    names = {(5, 2): "a52", (6, 2): "a62", (7, 2): "a72", (7, 3): "a73", (7, 4): "a74"}
    solved = {(6, 2): first[u["a62"]], (7, 2): first[u["a72"]]}
    solved |= {(7, 3): second[u["a73"]], (7, 4): second[u["a74"]]}
    for key in ((5, 3), (5, 4), (6, 2), (6, 4), (6, 5), (7, 2), (7, 3), (7, 4), (7, 5), (7, 6)):
        label = f"a{key[0]}{key[1]}"
        define(label, sympy.expand(solved.get(key, rows[key])))
        names[key] = label
    values = compose(definitions)
    symbols = {S(k): v for k, v in values.items()}
    a_names = {(3, 2): "a32", (4, 2): "a42", (4, 3): "a43"} | names
    b_names = {i: f"b{i}" for i in weighted}
    tableau = ExpRKTableau.from_coefficients(
        name,
        list(c),
        {key: symbols[S(label)] for key, label in a_names.items()},
        {i: symbols[S(label)] for i, label in b_names.items()},
        **metadata,
    )
    return StraightLineMethod(tableau, tuple(definitions), a_names, b_names, domain)
