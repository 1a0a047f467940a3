"""The phi functions of exponential integrators as a SymPy function class.

phi_0(z) = e^z and, for k >= 1,

    phi_k(z) = int_0^1 e^{(1-theta) z} theta^{k-1} / (k-1)! dtheta
             = sum_{m >= 0} z^m / (m + k)!
             = (e^z - sum_{m < k} z^m / m!) / z^k,

so phi_k(0) = 1/k!, phi_{k+1}(z) = (phi_k(z) - 1/k!) / z and phi_k'(z) = phi_k(z) - k phi_{k+1}(z).
The series shows phi_k(z) = 1F1(1; k + 1; z) / k!, which is how values are computed at any
precision (mpmath's confluent hypergeometric function; no cancellation near z = 0).
Source: Hochbruck & Ostermann, "Exponential integrators", Acta Numerica 19 (2010), §2;
spec order-conditions.md §1 and spec-dpmsolver-res.md §2.1.

Because ``phi`` defines ``eval``, ``fdiff``, series expansion, leading terms, numerical
evaluation and a rewrite to ``exp``, SymPy's ``series``, ``limit``, ``diff``, ``evalf`` and
``nsimplify`` work on expressions that contain it.
"""

from __future__ import annotations

import mpmath
import sympy
from sympy import Add, Integer, Order, exp, factorial
from sympy.core.function import ArgumentIndexError

from phiforge.derive.errors import InputError

__all__ = ["as_psi", "phi", "psi"]


def _check_index(k: sympy.Expr) -> None:
    if k.is_number and not (k.is_Integer and k >= 0):
        raise InputError(f"phi: parameter 'k' must be an integer >= 0, got {k}")


class phi(sympy.Function):  # noqa: N801  (SymPy function classes are lower case: exp, sin, ...)
    """phi_k(z), written ``phi(k, z)``; ``phi(0, z)`` evaluates to ``exp(z)``."""

    nargs = 2

    @classmethod
    def eval(cls, k, z):
        _check_index(k)
        if k.is_Integer:
            if k == 0:
                return exp(z)
            if z.is_zero:
                return Integer(1) / factorial(k)
        return None

    def fdiff(self, argindex: int = 2):
        if argindex != 2:
            raise ArgumentIndexError(self, argindex)
        k, z = self.args
        return phi(k, z) - k * phi(k + 1, z)

    def _eval_rewrite_as_exp(self, k, z, **kwargs):
        if not k.is_Integer:
            return None
        return (exp(z) - Add(*[z**m / factorial(m) for m in range(int(k))])) / z**k

    def _eval_rewrite_as_tractable(self, k, z, limitvar=None, **kwargs):
        return self._eval_rewrite_as_exp(k, z)

    def _eval_evalf(self, prec):
        k, z = self.args
        if not k.is_Integer:
            return None
        zf = z._eval_evalf(prec)
        if zf is None or not zf.is_number:
            return None
        with mpmath.workprec(prec + 10):
            argument = zf._to_mpmath(prec + 10)
            value = mpmath.hyp1f1(1, int(k) + 1, argument) / mpmath.factorial(int(k))
        return sympy.Expr._from_mpmath(value, prec)

    def _eval_nseries(self, x, n, logx, cdir=0):
        k, z = self.args
        if not k.is_Integer or z.subs(x, 0) != 0:
            return super()._eval_nseries(x, n, logx, cdir)
        polynomial = Add(*[z**m / factorial(m + k) for m in range(n + 1)])
        return (polynomial + Order(z ** (n + 1), x)).nseries(x, n=n, logx=logx)

    def _eval_as_leading_term(self, x, logx=None, cdir=0):
        k, z = self.args
        if k.is_Integer and k > 0 and z.as_leading_term(x).subs(x, 0) == 0:
            return Integer(1) / factorial(k)
        return self.func(k, z.as_leading_term(x))

    def _eval_is_real(self):
        return self.args[1].is_extended_real

    def _eval_is_positive(self):
        if self.args[1].is_extended_real:
            return True
        return None

    def _eval_is_finite(self):
        return self.args[1].is_finite

    def _latex(self, printer, exp=None):
        k, z = self.args
        base = rf"\varphi_{{{printer._print(k)}}}\left({printer._print(z)}\right)"
        return base if exp is None else rf"{base}^{{{exp}}}"

    def _pretty_name(self) -> str:
        return f"phi_{self.args[0]}"


class psi(sympy.Function):  # noqa: N801
    """psi_j(x) = int_0^1 e^{s x} s^j ds = j! e^x phi_{j+1}(-x), written ``psi(j, x)``.

    The kernel of phi_k with theta = 1 - s: phi_k(x) = sum_j C(k-1, j) (-1)^j psi_j(x)/(k-1)!.
    Used by the code generator only (see :func:`as_psi`); it rewrites to ``phi``."""

    nargs = 2

    @classmethod
    def eval(cls, j, x):
        _check_index(j)
        if j.is_Integer and x.is_zero:
            return Integer(1) / (j + 1)
        return None

    def _eval_rewrite_as_phi(self, j, x, **kwargs):
        return factorial(j) * exp(x) * phi(j + 1, -x)


def as_psi(expr: sympy.Expr, z: sympy.Symbol) -> sympy.Expr:
    """A phi-linear expression sum q phi_k(c z) (+ terms free of phi) rewritten exactly as
    sum_c sum_j r_{c,j} psi_j(c z): the polynomial p(theta) = sum_k q theta^{k-1}/(k-1)! of each
    scale, re-expanded in s = 1 - theta (phi_0 = e^{c z} terms are kept as they are)."""
    s = sympy.Symbol("s")
    polynomials: dict[sympy.Expr, sympy.Expr] = {}
    rest = []
    for term in Add.make_args(sympy.expand(expr)):
        coefficient, atom = term.as_independent(phi)
        if isinstance(atom, phi) and not coefficient.has(z):
            k, argument = int(atom.args[0]), atom.args[1]
            polynomial = coefficient * (1 - s) ** (k - 1) / factorial(k - 1)
            polynomials[argument] = polynomials.get(argument, 0) + polynomial
        elif not term.has(phi):
            rest.append(term)
        else:
            raise InputError(f"as_psi: {term} is not a rational multiple of phi_k(c z)")
    result = [*rest]
    for argument, polynomial in polynomials.items():
        coefficients = sympy.Poly(sympy.expand(polynomial), s).all_coeffs()[::-1]
        result.extend(r * psi(j, argument) for j, r in enumerate(coefficients) if r != 0)
    return Add(*result)
