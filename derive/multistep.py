"""Exponential Adams (multistep) methods for variable steps.

With the last k nonlinearity values G_{n-m} at the points tau_m h (tau_0 = 0,
tau_m = -(r_1 + ... + r_m), r_m = h_{n-m}/h_n the ratio of the m-th previous step to the current
one), interpolate by a polynomial in theta = (t - t_n)/h and integrate exactly:

    u_{n+1} = e^{Z} u_n + h sum_{m<k} beta_m(Z) G_{n-m},
    beta_m(Z) = sum_{q<k} l_m^{(q)}(0) phi_{q+1}(Z),

l_m the Lagrange basis on the nodes tau (Hochbruck & Ostermann, "Exponential multistep methods of
Adams-type", BIT 51 (2011) 889-908; spec order-conditions.md §6.1-6.2). The order conditions are
the quadrature conditions

    psi^{(q+1)} := phi_{q+1}(Z) - sum_m beta_m(Z) tau_m^q / q! = 0,   q = 0, 1, ...

which hold identically for q < k by construction (stiff order k). For a diffusion ODE in log-SNR
time, Z = -h (data prediction, G = x0 prediction) or Z = +h (noise prediction, G = -eps).
An implicit (Adams-Moulton-type) formula adds the node tau_{-1} = 1, the new point: with k + 1
values G_{n+1}, G_n, ..., G_{n-k+1} it has stiff order k + 1. Used as the corrector of a k-step
predictor in PEC mode (predict, evaluate G at the prediction, correct; the next step starts from
the corrected state and reuses that evaluation, so no extra model call), the pair has order k + 1
(the predictor's local error O(h^{k+1}) enters multiplied by h gamma_{-1}). This is the
construction of UniPC's corrector UniC with exact integration of the interpolant (Zhao et al.,
"UniPC", arXiv 2302.04867, §3.1; B(h) = phi_1 rather than the paper's bh1/bh2 choices).
Published variants with other weights (DPM-Solver++(2M) with phi_1/2 in place of phi_2; the
reference-code 3M with its phi_3 term at half weight) are built from their formulas and receive
their true verdicts from the same conditions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from math import factorial
from typing import Any

import sympy
from sympy import QQ
from sympy.polys.fields import field as rational_function_field

from phiforge.derive.errors import InputError, integer_in
from phiforge.derive.phi import phi
from phiforge.derive.phibasis import (
    SYMBOLIC,
    phi_combination,
)
from phiforge.derive.tableau import Z, format_expression

__all__ = [
    "MAX_MULTISTEP_ORDER",
    "MultistepMethod",
    "MultistepReport",
    "check_multistep",
    "eta_noise_variances",
    "exponential_adams",
    "exponential_adams_moulton",
    "published_multistep",
    "step_ratios",
]


def step_ratios(k: int) -> tuple[sympy.Symbol, ...]:
    """The symbols r_1..r_{k-1}: ratios of the previous steps to the current one."""
    return tuple(sympy.Symbol(f"r{m}", positive=True) for m in range(1, k))


def _nodes(ratios: tuple[sympy.Expr, ...]) -> tuple[sympy.Expr, ...]:
    nodes = [sympy.Integer(0)]
    for r in ratios:
        nodes.append(nodes[-1] - r)
    return tuple(nodes)


@dataclass(frozen=True)
class MultistepMethod:
    """Weights beta_m(z) on G_{n-m}, m = 0..k-1, as expressions in phi(q, z) and the ratios.

    ``implicit``: the first weight belongs to the new point (node 1), the others to G_{n-m},
    m = 0..k-1; then there are k + 1 weights and k - 1 ratios."""

    name: str
    weights: tuple[sympy.Expr, ...]
    source: str = ""
    description: str = ""
    prediction: str | None = None
    ratios: tuple[sympy.Symbol, ...] = field(default=())
    implicit: bool = False

    def __post_init__(self) -> None:
        if len(self.weights) < 1 + int(self.implicit):
            raise InputError(f"{self.name}: a multistep method needs at least one past weight")
        if len(self.ratios) != self.steps - 1:
            raise InputError(f"{self.name}: need {self.steps - 1} step ratios")
        # sum_m beta_m(z) = phi_1(z), decided in Q(r_1, ...) weight by weight: expanding the sum
        # as one SymPy expression costs minutes from k = 6 on
        ratio_field, field_weights = self.field_weights
        total: dict[int, Any] = {}
        for weights in field_weights:
            for k, value in weights.items():
                total[k] = total.get(k, ratio_field.zero) + value
        total[1] = total.get(1, ratio_field.zero) - ratio_field.one
        residual = sympy.Add(*[ratio_field.back(v) * phi(k, Z) for k, v in total.items() if v])
        if residual != 0:
            raise InputError(
                f"{self.name}: the weights violate sum_m beta_m(z) = phi_1(z) "
                f"(residual {format_expression(residual)})"
            )

    @cached_property
    def field_weights(self) -> tuple[_RatioField, list[dict[int, Any]]]:
        """The field Q(r_1, ...) and each weight in it as {k: coefficient of phi_k(z)}: the form
        the sum check here and :func:`check_multistep` compute with (converted once)."""
        ratio_field = _RatioField(self.ratios)
        return ratio_field, _field_weights(self, ratio_field)

    @property
    def steps(self) -> int:
        """k: the values at the current and previous points the formula uses."""
        return len(self.weights) - int(self.implicit)

    @cached_property
    def nodes(self) -> tuple[sympy.Expr, ...]:
        """tau_m = -(r_1 + ... + r_m), the past points in units of the current step (preceded by
        1, the new point, for an implicit formula)."""
        return ((sympy.Integer(1),) if self.implicit else ()) + _nodes(self.ratios)

    def weights_equal_steps(self) -> tuple[sympy.Expr, ...]:
        """The weights with every ratio r_m = 1 (constant step size)."""
        values = {r: 1 for r in self.ratios}
        return tuple(sympy.simplify(w.subs(values)) for w in self.weights)


def eta_noise_variances() -> dict[str, sympy.Expr]:
    """The variance of the exact noise of one step of the eta-dynamics, in units of the
    canonical state at the step's end (spec-seeds-restart §2.2: the stochastic integrals of the
    variation-of-constants formula; Ito isometry, the integrands being deterministic):

        data form  (y = x/alpha):  e^{-2 lam_(n+1)} * 2 eta int_0^h e^{-2 eta (h - u)} du,
        noise form (y = x/sigma):                    2 eta int_0^h e^{2 (h - u)} du,

    the factor e^{-2 lam_(n+1)} (= sigma~_(n+1)^2) left to the runtime. The drift of the step is
    the exponential Adams formula in mu = (1 + eta) lam (data form: z = -(1 + eta) h, weights on
    x0_hat; noise form: z = h, N = -(1 + eta) eps), so an Adams method with this noise is the
    stochastic exponential Adams method: DPM-Solver++(2M) SDE for k = 2 with exact phi_2 weights
    (k-diffusion's ``solver_type='heun'``). Returned with expm1 where it avoids cancellation."""
    from sympy.codegen.rewriting import expm1_opt, optimize

    h, eta, u = (sympy.Symbol(name, positive=True) for name in ("h", "eta", "u"))
    data = sympy.integrate(2 * eta * sympy.exp(-2 * eta * (h - u)), (u, 0, h))
    noise = sympy.integrate(2 * eta * sympy.exp(2 * (h - u)), (u, 0, h))
    return {
        "data": optimize(sympy.simplify(data), [expm1_opt]),
        "noise": optimize(sympy.simplify(noise), [expm1_opt]),
    }


# The largest stiff order of a formula derived here. Measured on two cores (derive + check to
# order + 1): order 5 0.4 s, 6 4.5 s, 7 211 s; each order costs ~10-50x the previous one.
MAX_MULTISTEP_ORDER = 7


def _check_steps(k: object, meaning: str, order_offset: int) -> int:
    why = (
        f"formulas of stiff order up to {MAX_MULTISTEP_ORDER}; order {MAX_MULTISTEP_ORDER} already "
        "takes about 3.5 minutes to derive and check"
    )
    return integer_in(k, f"'k' ({meaning})", 1, MAX_MULTISTEP_ORDER - order_offset, why)


def exponential_adams(k: int, name: str | None = None, **metadata) -> MultistepMethod:
    """The k-step exponential Adams method for variable steps (stiff order k)."""
    _check_steps(k, "steps, = order", 0)
    ratios = step_ratios(k)
    return MultistepMethod(
        name=name or f"exp_adams_{k}",
        weights=_lagrange_weights(_nodes(ratios)),
        ratios=ratios,
        **metadata,
    )


def exponential_adams_moulton(k: int, name: str | None = None, **metadata) -> MultistepMethod:
    """The implicit exponential Adams formula on the new point and k past values, variable steps
    (stiff order k + 1): the corrector of a k-step PEC pair."""
    _check_steps(k, "past values, = order - 1", 1)
    ratios = step_ratios(k)
    return MultistepMethod(
        name=name or f"exp_adams_moulton_{k}",
        weights=_lagrange_weights((sympy.Integer(1), *_nodes(ratios))),
        ratios=ratios,
        implicit=True,
        **metadata,
    )


def _lagrange_weights(nodes: tuple[sympy.Expr, ...]) -> tuple[sympy.Expr, ...]:
    """beta_m(z) = sum_q l_m^{(q)}(0) phi_{q+1}(z): exact integration against e^{(1-theta)z} of
    the Lagrange interpolant on ``nodes`` (in units of the step, 0 = its start).

    The coefficients of theta^q in l_m(theta) = prod_{l != m} (theta - tau_l)/(tau_m - tau_l) are
    computed in Q(r_1, ...) (product of linear factors, one division), then factored."""
    ratios = tuple(sorted(set().union(*(sympy.sympify(n).free_symbols for n in nodes)), key=str))
    ratio_field = _RatioField(ratios)
    values = [ratio_field.convert(node) for node in nodes]
    weights = []
    for m, tau_m in enumerate(values):
        coefficients = [ratio_field.one]  # of theta^0, theta^1, ... in prod (theta - tau_l)
        denominator = ratio_field.one
        for index, tau in enumerate(values):
            if index == m:
                continue
            shifted = [ratio_field.zero, *coefficients]
            padded = [*coefficients, ratio_field.zero]
            coefficients = [a - tau * b for a, b in zip(shifted, padded, strict=True)]
            denominator *= tau_m - tau
        weights.append(
            sympy.Add(
                *[
                    ratio_field.back(c / denominator) * factorial(q) * phi(q + 1, Z)
                    for q, c in enumerate(coefficients)
                ]
            )
        )
    return tuple(weights)


class _RatioField:
    """Exact arithmetic in Q(r_1, ..., r_{k-1}) (SymPy's sparse rational functions; Q when there
    are no ratios): ``convert`` from and ``back`` to SymPy expressions (factored)."""

    def __init__(self, ratios: tuple[sympy.Symbol, ...]) -> None:
        if ratios:
            domain, *_ = rational_function_field(list(ratios), QQ)
            self.convert = domain.from_expr
            self.zero, self.one = domain.zero, domain.one
        else:
            self.convert = lambda value: QQ.from_sympy(sympy.nsimplify(value))
            self.zero, self.one = QQ.zero, QQ.one
        self._ratios = ratios

    # Multivariate factorisation (Wang's algorithm, randomised) of the residuals' numerators takes
    # from seconds to minutes once there are 4 or more ratios (k >= 5); there a value is shown as
    # its expanded numerator over its factored denominator. Every record of the registry has at
    # most 3 ratios (res_4m, res_4m_pc).
    FACTOR_RATIOS = 3

    def back(self, value: Any) -> sympy.Expr:
        """The value as a SymPy expression: factored (numerator expanded beyond 3 ratios)."""
        if not self._ratios:
            return QQ.to_sympy(value)
        if len(self._ratios) <= self.FACTOR_RATIOS:
            return sympy.factor(value.as_expr())
        return value.numer.as_expr() / sympy.factor(value.denom.as_expr())


def _field_weights(method: MultistepMethod, ratio_field: _RatioField) -> list[dict[int, Any]]:
    """Each weight as {k: coefficient of phi_k(z) in Q(r_1, ...)}; InputError unless every weight
    is a combination of phi_k(z), k >= 1."""
    weights = []
    for weight in method.weights:
        total: dict[int, Any] = {}
        for term in sympy.Add.make_args(weight):
            # a term coefficient * phi_k(z) is converted as it stands (its factored coefficient
            # is cheap to convert; expanded, it is thousands of terms); anything else goes
            # through the general phi-basis decomposition
            phis = [f for f in sympy.Mul.make_args(term) if f.has(Z)]
            if len(phis) == 1 and isinstance(phis[0], phi) and phis[0].args[1] == Z:
                parts = {int(phis[0].args[0]): term / phis[0]}
            else:
                combination = phi_combination(term, Z, SYMBOLIC, method.name)
                if any(c != 1 for _, c in combination):
                    raise InputError(
                        f"{method.name}: weights must be combinations of phi_k(z), k >= 1"
                    )
                parts = {k: q for (k, _), q in combination.items()}
            for k, q in parts.items():
                total[k] = total.get(k, ratio_field.zero) + ratio_field.convert(q)
        weights.append({k: v for k, v in total.items() if v})
    return weights


def published_multistep(name: str) -> MultistepMethod:
    """A published multistep method of the catalogue (``family = "multistep"`` in
    ``catalogue.toml``: DPM-Solver++(2M) 'dpmsolver' type, the reference-code DPM-Solver++(3M))
    from its update formula: the weight of each model value is its coefficient in the update
    (spec-dpmsolver-res.md §4.2)."""
    from phiforge.derive.catalogue import catalogue_entries, parse

    entries = catalogue_entries("multistep")
    if not isinstance(name, str) or name not in entries:
        raise InputError(
            f"unknown published multistep method {name!r}; known: {', '.join(entries)}"
        )
    entry = entries[name]
    values = sympy.symbols(entry["values"])
    ratios = step_ratios(len(values))
    if len(entry.get("ratios", [])) != len(ratios):
        raise InputError(f"{name}: {len(values)} values need {len(ratios)} step ratios")
    local: dict[str, Any] = {"phi": phi, "z": Z}
    local |= {str(v): v for v in values} | dict(zip(entry.get("ratios", []), ratios, strict=True))
    for key, text in entry.get("definitions", {}).items():
        local[key] = parse(text, local, f"{name}: definition {key}")
    update = sympy.expand(parse(entry["update"], local, f"{name}: update"))
    phis = sorted({f for f in update.atoms(phi) if f.args[0] > 1}, key=str)
    weights = tuple(sympy.factor_terms(sympy.collect(update.coeff(v), phis)) for v in values)
    return MultistepMethod(
        name=name,
        weights=weights,
        ratios=ratios,
        description=entry.get("title", ""),
        source=entry.get("source", ""),
        prediction=entry.get("prediction"),
    )


@dataclass
class MultistepReport:
    """Per quadrature condition q + 1 = 1..max_order: verdict, residual and leading term."""

    method: MultistepMethod
    max_order: int
    verdicts: list[str]
    residuals: list[sympy.Expr]
    leading_terms: list[sympy.Expr]

    def _largest(self, accepted: set[str]) -> int:
        order = 0
        for verdict in self.verdicts:
            if verdict not in accepted:
                break
            order += 1
        return order

    @property
    def stiff_order(self) -> int:
        return self._largest({"strong"})

    @property
    def weak_stiff_order(self) -> int:
        strong = self.stiff_order
        if strong < self.max_order and self.verdicts[strong] in ("weak",):
            return strong + 1
        return strong

    @property
    def classical_order(self) -> int:
        return self._largest({"strong", "weak"})

    @property
    def nonstiff_order(self) -> int:
        return self.classical_order


def check_multistep(method: MultistepMethod, max_order: int = 5) -> MultistepReport:
    """Verdicts of the quadrature conditions psi^{(q+1)} = 0 for q + 1 = 1..max_order, for all
    step ratios (the ratios stay symbolic). For a multistep method the only variable is the root's,
    so *weak* (= psi(0) = 0) coincides with the classical condition, and the non-stiff order
    (vanishing to Taylor degree p - q - 1) equals the classical order.

    Arithmetic is exact in the field Q(r_1, ..., r_{k-1}) (SymPy's sparse rational functions)."""
    if isinstance(max_order, bool) or not isinstance(max_order, int) or max_order < 1:
        raise InputError(f"parameter 'max_order' must be an integer >= 1, got {max_order!r}")
    ratio_field, weights = method.field_weights
    convert, back = ratio_field.convert, ratio_field.back
    nodes = [convert(tau) for tau in method.nodes]
    k_max = max(max(w) for w in weights)
    verdicts, residuals, leading = [], [], []
    for q in range(max_order):
        coefficients = {k: ratio_field.zero for k in range(k_max + 2)}
        coefficients[q + 1] = coefficients.get(q + 1, ratio_field.zero) + ratio_field.one
        for weight, tau in zip(weights, nodes, strict=True):
            factor = (tau**q if q else ratio_field.one) * QQ(1, factorial(q))
            for k, value in weight.items():
                coefficients[k] -= value * factor
        coefficients = {k: v for k, v in coefficients.items() if v}
        if not coefficients:
            verdicts.append("strong")
            residuals.append(sympy.Integer(0))
            leading.append(sympy.Integer(0))
            continue
        residuals.append(sympy.Add(*[back(v) * phi(k, Z) for k, v in coefficients.items()]))
        series = [
            sum((v * QQ(1, factorial(m + k)) for k, v in coefficients.items()), ratio_field.zero)
            for m in range(q + 9)
        ]
        first = next((m for m, value in enumerate(series) if value), None)
        leading.append(
            sympy.Order(Z ** (q + 9)) if first is None else back(series[first]) * Z**first
        )
        verdicts.append("weak" if series[0] == 0 else "fails")
    return MultistepReport(method, max_order, verdicts, residuals, leading)
