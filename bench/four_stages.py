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

Usage: python bench/four_stages.py   (about 2 minutes on 2 cores)
"""

from __future__ import annotations

import time
from math import factorial

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


def main() -> None:
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
