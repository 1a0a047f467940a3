"""Study: can a 4-stage explicit exponential Runge-Kutta method have stiff order 4 in the scalar
setting? The conditions, reduced to polynomial identities in the nodes, and exact checks of the
node sets that come closest.

In the scalar setting (spec order-conditions.md §4) the conditions of order <= 4 are the
quadrature conditions psi_1..psi_4 = 0 and

    (i)  sum b_i psi_{2,i} = 0,   (ii) sum b_i c_i psi_{2,i} = 0,   (iii) sum b_i psi_{3,i} = 0,
    (iv) sum_i b_i sum_j a_ij psi_{2,j} = 0,

with psi_{k,i} = c_i^k phi_k(c_i z) - sum_j a_ij c_j^(k-1)/(k-1)!. With s = 4 the quadrature
conditions need four distinct nodes 0, c2, c3, c4 and then fix b_1..b_4 (Vandermonde); (i), (ii)
fix psi_{2,3}, psi_{2,4} (hence a_32), (iii) fixes psi_{3,4} (hence a_42, a_43): the solution of
(i)-(iii) is unique for any such nodes, and (iv) must then hold identically in z. This script
writes (iv), its divisions cleared by factors that are not identically zero, as a power series
in z whose coefficients are polynomials in (c2, c3, c4) (truncated series arithmetic over
Q[c2, c3, c4], z^0..z^8), prints their factors, and evaluates them exactly at given node sets.
A node set admits a 4-stage method of scalar stiff order 4 only if every coefficient vanishes.

``--decompose`` settles the question for every real node set: a triangular decomposition of
the system "z^0..z^8 coefficients = 0" along the irreducible factors of the first coefficient
that does not vanish on the current branch. A factor linear in a node gives that node as a
rational function of the others (and a sub-branch where its pivot vanishes); a factor in one
node gives its real roots (isolated exactly); a factor in two nodes is intersected with a later
coefficient through their resultant. Every point found is checked against all coefficients at
60 digits (relative to the size of their terms). Node sets with a zero or repeated node are
excluded (the quadrature conditions need four distinct nodes); the elimination above divides
only by b_3, b_4, c_4 - c_3 and c_2 c_3 (c_3 - c_2), which do not vanish identically for such
nodes, so a 4-stage method of scalar stiff order 4 exists only at a surviving point.

Usage: python bench/four_stages.py [--decompose]   (about 2 minutes; with --decompose about 10)
"""

from __future__ import annotations

import sys
import time
from math import factorial

import mpmath
import sympy as sp
from sympy import QQ
from sympy.polys.rings import ring

DEGREE = 8
C2, C3, C4 = sp.symbols("c2 c3 c4")


def condition_iv_coefficients(degree: int = DEGREE) -> list[sp.Expr]:
    """The z^0..z^degree coefficients of (iv) times its cleared divisors, in (c2, c3, c4)."""
    R, c2, c3, c4, z = ring("c2 c3 c4 z", QQ)

    def trunc(p):
        return R({m: v for m, v in p.items() if m[3] <= degree})

    def mul(*factors):
        out = R.one
        for p in factors:
            out = trunc(out * p)
        return out

    def phi(k, c):  # phi_k(c z) = sum_m (c z)^m/(m + k)!
        return sum(c**m * z**m * QQ(1, factorial(m + k)) for m in range(degree + 1))

    symbols = (C2, C3, C4)
    nodes = [0, *symbols]
    vandermonde = sp.Matrix(
        [[nodes[i] ** (j - 1) / sp.factorial(j - 1) for i in range(4)] for j in range(1, 5)]
    )
    b = []  # b_i times det(V), by Cramer's rule
    for i in range(4):
        total = R.zero
        for j in range(4):
            minor = vandermonde.copy()
            minor.row_del(j)
            minor.col_del(i)
            cofactor = sp.expand((-1) ** (i + j) * minor.det())
            if cofactor != 0:
                total += mul(R.from_expr(cofactor), phi(j + 1, R.one))
        b.append(total)
    _, b2, b3, b4 = b
    psi22 = mul(c2**2 * R.one, phi(2, c2))
    psi32 = mul(c2**3 * R.one, phi(3, c2))
    d = mul(b3, b4) * (c4 - c3)  # every quantity below is scaled to avoid division
    psi23_d = -mul(b2, psi22, b4) * (c4 - c2)
    psi24_d = -mul(b2, psi22, b3) * (c2 - c3)
    a32_dc2 = mul(c3**2 * phi(2, c3), d) - psi23_d
    psi33_dc2 = mul(c3**3 * phi(3, c3), d) * c2 - a32_dc2 * c2**2 * QQ(1, 2)
    x = mul(d, b4) * c2
    psi34_x = -(mul(b2, psi32, d) * c2 + mul(b3, psi33_dc2))
    psi24_x = mul(psi24_d, b4) * c2
    r1 = mul(c4**2 * phi(2, c4), x) - psi24_x
    r2 = 2 * (mul(c4**3 * phi(3, c4), x) - psi34_x)
    det = c2 * c3**2 - c3 * c2**2
    a42 = r1 * c3**2 - r2 * c3
    a43 = r2 * c2 - r1 * c2**2
    iv = mul(b3, a32_dc2, psi22, x) * det + mul(
        b4, mul(a42, psi22, d) * c2 + mul(a43, psi23_d) * c2
    )
    return [
        R({(*k[:3], 0): v for k, v in iv.items() if k[3] == m}).as_expr() for m in range(degree + 1)
    ]


NODE_SETS = {
    "(1/3, 2/3, 1)": (sp.Rational(1, 3), sp.Rational(2, 3), sp.Integer(1)),
    "(1/4, 1/2, 1)": (sp.Rational(1, 4), sp.Rational(1, 2), sp.Integer(1)),
    "Lobatto (5 -+ sqrt 5)/10, 1": ((5 - sp.sqrt(5)) / 10, (5 + sp.sqrt(5)) / 10, sp.Integer(1)),
    "Radau IA (6 -+ sqrt 6)/10, 1": ((6 - sp.sqrt(6)) / 10, (6 + sp.sqrt(6)) / 10, sp.Integer(1)),
    "Radau IA swapped": ((6 + sp.sqrt(6)) / 10, (6 - sp.sqrt(6)) / 10, sp.Integer(1)),
}


EXCLUDED = (C2, C3, C4, C2 - C3, C2 - C4, C3 - C4)


class Decomposition:
    """Common real zeros of ``coefficients`` (polynomials in c2, c3, c4) off EXCLUDED."""

    def __init__(self, coefficients: list[sp.Expr]) -> None:
        self.coefficients = coefficients
        self.points: list[tuple[str, dict, int | None]] = []  # (branch, point, first non-zero)
        self.unhandled: list[str] = []
        self.families: list[str] = []

    def _excluded(self, f: sp.Expr, subs: dict, variables: list) -> bool:
        monic = sp.Poly(f, *variables).monic().as_expr()
        for e in EXCLUDED:
            g = sp.numer(sp.together(e.subs(subs)))
            if not g.is_number and sp.expand(monic - sp.Poly(g, *variables).monic().as_expr()) == 0:
                return True
        return False

    def _check(self, point: dict, branch: str) -> None:
        values = {k: sp.N(v, 60) for k, v in point.items()}
        if any(v.is_finite is not True for v in values.values()):
            return  # a pole of the branch's parametrisation (its pivot sub-branch covers it)
        if any(abs(sp.N(e.subs(values), 40)) < 1e-30 for e in EXCLUDED):
            return
        first = None
        for m, q in enumerate(self.coefficients):
            size = sum(abs(sp.N(t.subs(values), 60)) for t in sp.Add.make_args(sp.expand(q)))
            if size and abs(sp.N(q.subs(values), 60)) / size > 1e-40:
                first = m
                break
        self.points.append((branch, values, first))

    def solve(self, subs: dict, variables: list, branch: str, extra: tuple = ()) -> None:
        equations = (*extra, *self.coefficients)
        polys = [sp.expand(sp.numer(sp.together(q.subs(subs)))) for q in equations]
        nonzero = [(m - len(extra), p) for m, p in enumerate(polys) if p != 0]
        if not variables:
            self._check(subs, branch)
            return
        if not nonzero:
            self.families.append(branch)
            return
        m0, p = nonzero[0]
        if p.is_number:
            return  # a non-zero constant: no solution on this branch
        for f, _ in sp.factor_list(p, *variables)[1]:
            if f.is_number or self._excluded(f, subs, variables):
                continue
            name = f"{branch}; {'pivot' if m0 < 0 else f'z^{m0}'} factor {sp.sstr(f)}"
            linear = [v for v in variables if sp.degree(f, v) == 1]
            if linear:
                self._linear(f, linear[0], subs, variables, name)
            elif len(variables) == 1:
                for root in _real_roots(f, variables[0]):
                    point = {k: w.subs(variables[0], root) for k, w in subs.items()}
                    self._check(point | {variables[0]: root}, name)
            elif len(variables) == 2:
                self._curve(f, variables, subs, nonzero[1:], name)
            else:
                self.unhandled.append(name)

    def _linear(self, f: sp.Expr, v: sp.Symbol, subs: dict, variables: list, name: str) -> None:
        lead, rest = sp.Poly(f, v).all_coeffs()
        value = -rest / lead
        branch = {k: sp.together(w.subs(v, value)) for k, w in subs.items()} | {v: value}
        self.solve(branch, [w for w in variables if w != v], name)
        if lead.is_number:
            return
        others = [w for w in variables if w != v]  # where the pivot vanishes, rest must too
        for g, _ in sp.factor_list(lead, *others)[1]:
            if self._excluded(g, subs, others):
                continue
            linear = [w for w in others if sp.degree(g, w) == 1]
            if not linear:
                self.unhandled.append(f"{name} [pivot factor {sp.sstr(g)}]")
                continue
            w = linear[0]
            gl, gr = sp.Poly(g, w).all_coeffs()
            value = -gr / gl
            pivot = {k: sp.together(x.subs(w, value)) for k, x in subs.items()} | {w: value}
            rest_there = sp.together(rest.subs(w, value))
            self.solve(pivot, [x for x in variables if x != w], f"{name} [pivot 0]", (rest_there,))

    def _curve(self, f, variables, subs, later, name) -> None:
        x, y = variables
        for _, q in later:
            resultant = sp.resultant(f, q, y)
            if sp.expand(resultant) == 0:
                continue  # q vanishes on the curve f = 0: try the next coefficient
            for r in _real_roots(resultant, x):
                for t in _float_real_roots(f.subs(x, r), y):
                    point = {k: w.subs({x: r, y: t}) for k, w in subs.items()} | {x: r, y: t}
                    self._check(point, name)
            return
        self.families.append(name)


def _real_roots(poly: sp.Expr, var: sp.Symbol) -> list[sp.Float]:
    """Every real root of a rational polynomial, isolated exactly to width 1e-45."""
    p = sp.Poly(poly, var)
    if p.degree() < 1:
        return []
    eps = sp.Rational(1, 10**45)
    return [sp.Float((a + b) / 2, 60) for (a, b), _ in p.sqf_part().intervals(eps=eps)]


def _float_real_roots(expr: sp.Expr, var: sp.Symbol) -> list[sp.Float]:
    coefficients = [mpmath.mpf(str(sp.N(c, 60))) for c in sp.Poly(expr, var).all_coeffs()]
    while coefficients and coefficients[0] == 0:
        coefficients.pop(0)
    if len(coefficients) < 2:
        return []
    roots = mpmath.polyroots(coefficients, maxsteps=2000, extraprec=400)
    return [sp.Float(mpmath.re(r), 60) for r in roots if abs(mpmath.im(r)) < mpmath.mpf(10) ** -30]


def decompose() -> None:
    mpmath.mp.dps = 60
    start = time.time()
    coefficients = condition_iv_coefficients()
    print(f"coefficients of z^0..z^{DEGREE}: {time.time() - start:.1f} s")
    study = Decomposition(coefficients)
    study.solve({}, [C2, C3, C4], "all nodes")
    print("\n| branch | c2, c3, c4 | first non-zero coefficient |")
    print("|---|---|---|")
    for branch, point, first in study.points:
        nodes = ", ".join(f"{float(point[c]):.6g}" for c in (C2, C3, C4))
        print(f"| {branch} | {nodes} | {'none (survives)' if first is None else f'z^{first}'} |")
    survivors = [p for p in study.points if p[2] is None]
    print(
        f"\n{len(study.points)} real points, {len(survivors)} surviving z^0..z^{DEGREE}, "
        f"{len(study.families)} curves or families, {len(study.unhandled)} branches not "
        f"handled; {time.time() - start:.1f} s"
    )
    for name in study.families + study.unhandled:
        print("  open:", name)


def main() -> None:
    if "--decompose" in sys.argv[1:]:
        decompose()
        return
    start = time.time()
    coefficients = condition_iv_coefficients()
    print(f"coefficients of z^0..z^{DEGREE}: {time.time() - start:.1f} s")
    for m, q in enumerate(coefficients[:3]):
        _, factors = sp.factor_list(q, C2, C3, C4)
        small = sorted(str(f) for f, _ in factors if sp.Poly(f, C2, C3, C4).total_degree() <= 2)
        print(f"z^{m}: factors of degree <= 2: {small}")
    print(f"factored z^0..z^2: {time.time() - start:.1f} s")
    for label, (a, b, c) in NODE_SETS.items():
        values = [sp.radsimp(sp.expand(q.subs({C2: a, C3: b, C4: c}))) for q in coefficients]
        first = next((m for m, v in enumerate(values) if v != 0), None)
        shown = "all vanish" if first is None else f"first non-zero z^{first}: {values[first]}"
        print(f"c = (0, {label}): {shown}")
    print(f"done: {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
