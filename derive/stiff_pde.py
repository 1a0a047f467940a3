"""Stiff test problems for the operator setting: semilinear parabolic PDEs with exact solutions.

The operator-setting verdicts of :mod:`phiforge.derive.check` (stiff order p: the error bound
C h^p holds with C independent of ||L||) are statements about problems u' = L u + g(t, u) with L
an unbounded operator. This module measures them: the heat equation on [0, 1] with homogeneous
Dirichlet conditions, discretised by the second difference on ``n`` interior points (L
symmetric, eigenvalues -4 eps/dx^2 sin^2(k pi dx / 2), so ||L|| = O(n^2)), with a source chosen so
that a known function solves the *semi-discrete* system exactly (the second difference of a
quadratic is exact, so no spatial error enters the measured one):

- ``heat-ho``: Hochbruck & Ostermann's example (SIAM J. Numer. Anal. 43 (2005), §6):
  u_t = u_xx + 1/(1 + u^2) + Phi(x, t), u = x (1 - x) e^t. Phi(0, t) = 2e^t - 1 != 0: the
  source does not vanish on the boundary, so g(t, u(t)) lies in no domain of a power of L, and
  methods that satisfy only the non-stiff conditions lose order.
- ``heat-compatible``: u_t = u_xx + u^2 + Phi, u = x^2 (1 - x)^2 e^t: the source vanishes on
  the boundary (g(t, u(t)) = 0 there), the milder setting.
- ``heat-nonstiff``: ``heat-ho`` with diffusion eps = 1e-4 on 20 points (h ||L|| < 1 for
  h <= 1): every method shows its classical order.

A step of an exponential Runge-Kutta method is taken in L's eigenbasis, where every
coefficient a_ij(hL), b_i(hL) is the scalar function evaluated at h lambda_k
(:meth:`~phiforge.derive.program_check.ProgramTableau.coefficient_arrays`: a tableau as a program
of one definition per entry, :func:`~phiforge.derive.program_check.as_program`, a straight-line
record as its own program, res_6s's 143 definitions uncomposed; every value in ball arithmetic to
1e-20 relative, read into :data:`DTYPE`); no matrix exponential is formed. Errors are discrete
L2 norms sqrt(dx sum (u_i - u(x_i, T))^2) at T = 1.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import scipy.fft

from phiforge.derive.convergence import (
    explore_margins,
    extend_while_rising,
    local_orders,
    observed_order,
    still_rising,
)
from phiforge.derive.errors import InputError
from phiforge.derive.program_check import ProgramTableau, as_program
from phiforge.derive.tableau import ExpRKTableau

Method = ExpRKTableau | ProgramTableau

__all__ = [
    "PROBLEMS",
    "STIFF_PROBLEMS",
    "StiffProblem",
    "explore",
    "heat_problem",
    "observed_orders",
    "solve",
    "stiff_problem",
    "study",
]


DTYPE = np.longdouble  # extended precision: 64-bit mantissa on x86-64 (float64 where it is not)
_PI = DTYPE("3.14159265358979323846264338327950288")
#: errors below this are round-off, not truncation (the fit's floor): 1e-13 in float64, scaled
#: by the precision the study runs in (4.9e-17 in x86-64's extended precision)
ROUND_OFF = 1e-13 * float(np.finfo(DTYPE).eps / np.finfo(np.float64).eps)


def _exact_number(value: Any) -> Any:
    """A node or parameter (a rational, a SymPy number, a float) in :data:`DTYPE` without a
    float64 rounding on the way (c = 1/7 is not a float64)."""
    q = Fraction(str(value)) if not isinstance(value, float) else Fraction(value)
    return DTYPE(q.numerator) / DTYPE(q.denominator)


@dataclass(frozen=True)
class StiffProblem:
    """u' = L u + g(t, u) on [0, 1] with L = V diag(lam) V^T, V the orthonormal sine vectors
    (applied as the orthonormal discrete sine transform of type I, which is its own inverse),
    and the exact solution ``exact``; every array in :data:`DTYPE`."""

    name: str
    x: np.ndarray
    lam: np.ndarray
    g: Callable[[Any, np.ndarray], np.ndarray]
    exact: Callable[[Any], np.ndarray]

    @property
    def norm(self) -> float:
        """||L|| (the largest |eigenvalue|)."""
        return float(np.abs(self.lam).max())

    @staticmethod
    def transform(u: np.ndarray) -> np.ndarray:
        """u in L's eigenbasis, and back (V = V^T = V^-1)."""
        return scipy.fft.dst(u, type=1, norm="ortho")

    def error(self, u: np.ndarray, t: float) -> float:
        """The discrete L2 error sqrt(dx sum (u_i - u(x_i, t))^2); inf beyond float64's range
        (a method that blew up)."""
        dx = self.x[1] - self.x[0]
        with np.errstate(over="ignore", invalid="ignore"):
            value = float(np.sqrt(dx * np.sum((u - self.exact(t)) ** 2)))
        return value if math.isfinite(value) else math.inf


def _laplacian(n: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    dx = DTYPE(1) / (n + 1)
    x = np.arange(1, n + 1, dtype=DTYPE) * dx
    k = np.arange(1, n + 1, dtype=DTYPE)
    lam = -4 * _exact_number(eps) / dx**2 * np.sin(k * _PI * dx / 2) ** 2
    return x, lam


def _heat_ho(n: int, eps: float, name: str) -> StiffProblem:
    x, lam = _laplacian(n, eps)
    shape = x * (1 - x)
    eps_ = _exact_number(eps)

    def exact(t: Any) -> np.ndarray:
        return shape * np.exp(DTYPE(t))

    def g(t: Any, u: np.ndarray) -> np.ndarray:
        w = exact(t)  # u_t - eps u_xx - 1/(1 + w^2), with u_xx = -2 e^t exactly on the grid
        source = w + 2 * eps_ * np.exp(DTYPE(t)) - 1 / (1 + w * w)
        return 1 / (1 + u * u) + source

    return StiffProblem(name, x, lam, g, exact)


def _heat_compatible(n: int, eps: float = 1.0) -> StiffProblem:
    """u = x^2 (1 - x)^2 e^t is no quadratic, so the source holds the grid's own second
    difference of it: the semi-discrete system is solved exactly. g(t, u(t)) = u_t - L u
    vanishes on the boundary to second order."""
    x, lam = _laplacian(n, eps)
    shape = x**2 * (1 - x) ** 2
    laplace_shape = StiffProblem.transform(lam * StiffProblem.transform(shape))

    def exact(t: Any) -> np.ndarray:
        return shape * np.exp(DTYPE(t))

    def g(t: Any, u: np.ndarray) -> np.ndarray:
        w = exact(t)
        source = w - laplace_shape * np.exp(DTYPE(t)) - w * w
        return u * u + source

    return StiffProblem("heat-compatible", x, lam, g, exact)


def heat_problem(kind: str = "ho", n: int = 200, eps: float = 1.0) -> StiffProblem:
    """A heat problem of ``kind`` 'ho' (boundary-incompatible source) or 'compatible' on ``n``
    interior points with diffusion ``eps``; a stiff one needs ||L|| = 4 eps (n+1)^2 >= 1000
    (h ||L|| >= 60 at the coarsest step of the default sweep, h = 1/16)."""
    if kind not in ("ho", "compatible"):
        raise InputError(f"parameter 'kind' must be 'ho' or 'compatible', got {kind!r}")
    if isinstance(n, bool) or not isinstance(n, int) or not 3 <= n <= 2000:
        raise InputError(f"parameter 'n' (interior grid points) must be in 3..2000, got {n!r}")
    if not (isinstance(eps, int | float) and math.isfinite(eps) and eps > 0):
        raise InputError(f"parameter 'eps' (diffusion) must be finite and > 0, got {eps!r}")
    if 4 * eps * (n + 1) ** 2 < 1000:
        raise InputError(
            f"parameters 'n' = {n}, 'eps' = {eps}: the grid is too coarse to be stiff "
            f"(||L|| ~ 4 eps (n+1)^2 = {4 * eps * (n + 1) ** 2:.3g} < 1000); use "
            "'heat-nonstiff' for a non-stiff problem"
        )
    if kind == "ho":
        return _heat_ho(n, eps, "heat-ho")
    return _heat_compatible(n, eps)


PROBLEMS = {
    "heat-ho": lambda: _heat_ho(200, 1.0, "heat-ho"),
    "heat-compatible": lambda: _heat_compatible(200),
    "heat-nonstiff": lambda: _heat_ho(20, 1e-4, "heat-nonstiff"),
}
STIFF_PROBLEMS = ("heat-ho", "heat-compatible")  # h ||L|| >> 1 over the default sweep
TOLERANCE = 0.2


@functools.cache
def stiff_problem(name: str) -> StiffProblem:
    """A named problem, or a stiff heat problem with its parameters, e.g.
    ``heat-ho:n=120,eps=0.7`` (kind ho or compatible; n interior points; diffusion eps)."""
    if isinstance(name, str) and ":" in name:
        kind, _, spec = name.partition(":")
        if kind not in ("heat-ho", "heat-compatible"):
            raise InputError(
                "parameter 'problem': parameters apply to heat-ho and heat-compatible, got "
                f"{kind!r}"
            )
        values: dict[str, float] = {}
        for item in spec.split(","):
            key, _, text = item.partition("=")
            if key not in ("n", "eps") or key in values:
                raise InputError(f"parameter 'problem': expected n=N,eps=E, got {spec!r}")
            try:
                values[key] = int(text) if key == "n" else float(text)
            except ValueError:
                raise InputError(
                    f"parameter 'problem': {key} must be a number, got {text!r}"
                ) from None
        return heat_problem(
            kind.removeprefix("heat-"), int(values.get("n", 200)), values.get("eps", 1.0)
        )
    if name not in PROBLEMS:
        raise InputError(f"parameter 'problem' must be one of {', '.join(PROBLEMS)}, got {name!r}")
    return PROBLEMS[name]()


def solve(method: Method, problem: StiffProblem, steps: int, t_end: float = 1.0) -> np.ndarray:
    """The end state of ``steps`` constant steps of ``method`` from the exact u(0), in
    :data:`DTYPE`: every coefficient at z = h lambda_k from the exact one
    (:meth:`~phiforge.derive.program_check.ProgramTableau.coefficient_arrays`)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"parameter 'steps' must be an integer >= 1, got {steps!r}")
    program = as_program(method)
    h = _exact_number(t_end) / steps
    z = h * problem.lam
    nodes = [_exact_number(c) for c in program.c]
    a, b = program.coefficient_arrays(z)
    w = problem.transform(problem.exact(0.0))
    with np.errstate(over="ignore", invalid="ignore"):  # an unstable method: inf, reported
        for n in range(steps):
            t = n * h
            forces = []  # the stages' g in the eigenbasis
            for i, c in enumerate(nodes, start=1):
                stage = np.exp(c * z) * w
                for j in range(1, i):
                    if (i, j) in a:
                        stage = stage + h * a[(i, j)] * forces[j - 1]
                forces.append(problem.transform(problem.g(t + c * h, problem.transform(stage))))
            w = np.exp(z) * w + h * sum((b[i] * forces[i - 1] for i in b), np.zeros_like(w))
        return problem.transform(w)


def observed_orders(
    method: Method,
    problem: StiffProblem,
    steps: Sequence[int] = (16, 32, 64, 128, 256),
    reaches: Callable[[float | None], bool] | None = None,
    extend_to: int | None = None,
) -> dict:
    """Errors at T = 1 over the step sweep, the local orders between consecutive step counts
    and the least-squares order over the finest three. With ``reaches`` (the claim) and
    ``extend_to``, a sweep whose fit misses is doubled up to N = ``extend_to``
    (:func:`~phiforge.derive.convergence.extend_while_rising`); ``extended`` says so. Every
    miss is extended, whatever its local orders do (a solve costs
    milliseconds, and coarse local orders do not tell a plateau from the asymptotic order):
    res_6s on heat-ho n = 60 reads 3.59, 3.61 at N = 8, 16, 32 and 4.11, 4.40, 4.78 beyond; with
    eps = 3 it reads 2.45, 3.62, 3.55, 3.87, 4.11 and reaches 3.99 at N = 64, 128, 256, its
    error there 3.4e-16."""
    steps = [int(n) for n in steps]
    errors = [problem.error(solve(method, problem, n), 1.0) for n in steps]
    if not all(math.isfinite(e) for e in errors):
        return {"steps": steps, "errors": errors, "local_orders": [], "observed_order": None,
                "extended": False}  # fmt: skip
    extended = False
    if reaches is not None and extend_to is not None:
        extended = extend_while_rising(
            steps,
            errors,
            lambda n: problem.error(solve(method, problem, n), 1.0),
            reaches,
            extend_to,
            least=ROUND_OFF,
            rise=-math.inf,
            headroom=10.0,  # the fit reads errors down to ROUND_OFF (the solution is exact)
        )
    return {
        "steps": steps,
        "errors": errors,
        "local_orders": local_orders(steps, errors),
        "observed_order": observed_order(steps, errors, least=ROUND_OFF),
        "extended": extended,
    }


def _reaches(problem: StiffProblem, orders: dict[str, int]) -> Callable[[float | None], bool]:
    """The claim an observed order is judged by: on a stiff problem the stiff order is a bound
    that holds whatever ||L|| is, so the observed order must reach it (within
    :data:`TOLERANCE`); on the non-stiff problem every method shows its classical order."""
    stiff, classical = orders["stiff"], orders["classical"]
    if problem.name in STIFF_PROBLEMS:
        return lambda observed: observed is not None and observed >= stiff - TOLERANCE
    return lambda observed: observed is not None and abs(observed - classical) <= TOLERANCE


def study(
    method: Method,
    problem: StiffProblem,
    orders: dict[str, int],
    steps: Sequence[int] = (16, 32, 64, 128, 256),
    extend_to: int | None = None,
) -> dict:
    """The sweep of :func:`observed_orders` with a verdict against the derived ``orders``
    (operator setting: stiff, weak_stiff, classical; :func:`_reaches`). On a stiff problem the
    observed order may exceed the stiff order up to the classical one when the data are
    smoother than the bound assumes, and an observed order below the classical one is order
    reduction. With ``extend_to``, a sweep that misses is doubled up to that N; a miss whose
    local orders still rise at the finest N says so."""
    reaches = _reaches(problem, orders)
    result = observed_orders(method, problem, steps, reaches, extend_to)
    observed = result["observed_order"]
    classical = orders["classical"]
    agrees = reaches(observed)
    extended = f" (sweep extended to N={result['steps'][-1]})" if result["extended"] else ""
    if observed is None:
        verdict = "unstable: the solution blew up (no exponential treatment of L)"
    elif not agrees and still_rising(result["steps"], result["errors"]):
        local = ", ".join(f"{v:.2f}" for v in result["local_orders"][-3:])
        claim = orders["stiff"] if problem.name in STIFF_PROBLEMS else classical
        verdict = (
            f"not asymptotic yet at N={result['steps'][-1]}: observed {observed:.2f}, local "
            f"orders {local} still rising towards {claim}"
        )
    elif not agrees and problem.name in STIFF_PROBLEMS:
        verdict = f"NO: observed {observed:.2f} below the stiff order {orders['stiff']}"
    elif not agrees:
        verdict = f"NO: observed {observed:.2f}, classical {classical}"
    elif problem.name in STIFF_PROBLEMS and observed < classical - TOLERANCE:
        verdict = f"yes{extended}; order reduction: {observed:.2f} < classical {classical}"
    else:
        verdict = f"yes{extended}"
    return result | {"name": method.name, **orders, "agrees": agrees, "verdict": verdict}


#: the finest sweep of a drawn heat problem whose fit misses the stiff order (``explore``)
EXPLORE_EXTEND_TO = 512


def explore(
    method: Method,
    orders: dict[str, int],
    examples: int,
    seed: int = 0,
    database: str | None = None,
) -> dict:
    """Property-test ``method`` on ``examples`` random stiff heat problems (kind, grid n in
    60..400, diffusion eps in 0.3..3, coarsest step count 8, 16 or 32 of a doubling sweep of 3
    points, extended like ``verify``'s up to N = :data:`EXPLORE_EXTEND_TO` while its fit
    misses), drawn by hypothesis from ``seed``
    (:func:`~phiforge.derive.convergence.explore_margins`): observed minus stiff order per
    problem, how many misses were still pre-asymptotic at the finest sweep (``still_rising``),
    and, when a problem shows an order below the stiff order - 0.2, the smallest such problem
    after shrinking (as a problem spec, steps and the study's verdict), with hypothesis's files
    in ``database`` (a folder of the user's)."""
    from hypothesis import strategies as st

    problems = st.tuples(
        st.sampled_from(["ho", "compatible"]),
        st.integers(min_value=60, max_value=400),
        st.floats(min_value=0.3, max_value=3.0).map(lambda v: round(v, 3)),
        st.sampled_from([8, 16, 32]),
    )
    studies: dict[tuple, dict] = {}

    def margin(drawn: tuple[str, int, float, int]) -> float:
        kind, n, eps, start = drawn
        problem = heat_problem(kind, n, eps)
        result = study(method, problem, orders, [start, 2 * start, 4 * start], EXPLORE_EXTEND_TO)
        studies[drawn] = result
        observed = result["observed_order"]
        return -math.inf if observed is None else observed - orders["stiff"]

    report = explore_margins(problems, margin, examples, seed, database, TOLERANCE)
    smallest = report.pop("smallest")
    missed = report.pop("missed")
    rising = sum(studies[drawn]["verdict"].startswith("not asymptotic") for drawn in missed)
    return {
        "name": method.name,
        **orders,
        "claimed": orders["stiff"],
        **report,
        "still_rising": rising,
        "smallest": None
        if smallest is None
        else {
            "problem": f"heat-{smallest[0]}:n={smallest[1]},eps={smallest[2]}",
            "steps": [smallest[3], 2 * smallest[3], 4 * smallest[3]],
            "extend_to": EXPLORE_EXTEND_TO,
            "verdict": studies[smallest]["verdict"],
        },
    }
