"""Check an exponential Runge-Kutta tableau against the stiff order conditions, exactly.

Per condition (spec order-conditions.md §4.4) the verdict is

- ``strong``: Cond(t) vanishes identically (operator: in all vertex variables; scalar: in z);
- ``weak``: it vanishes once the root variable is set to 0 (b_i -> b_i(0), psi_n -> psi_n(0));
- ``classical-only``: it vanishes when every variable is 0;
- ``fails``: none of these.

Strong and weak are decided exactly for phi-linear coefficients: in the operator setting by the
sparse tensor over the phi basis (§4.5a), in the scalar setting by the exponential-polynomial
normal form (§4.5b), both with exact rational (or, for symbolic nodes, rational-function)
coefficients. Coefficients that are ratios of phi polynomials are decided by evaluation at random
points modulo a 61-bit prime (one set of points per vertex variable in the operator setting;
failure probability below 1e-60), falling back to exact fractions where a denominator vanishes at
a sample point. Per method:

- stiff order: the largest p with every condition of order <= p strong;
- weak stiff order: the largest p with every condition of order < p strong and of order p at
  least weak;
- non-stiff order: the largest p such that every condition of order n <= p vanishes to total
  Taylor degree p - n (§2.4);
- classical order: Butcher's conditions for the Runge-Kutta tableau at z = 0.

Orders are capped by ``max_order`` (a method that satisfies everything checked reports
``max_order``; the report says so in ``capped``). psi_1 and the row sums psi_{1,i} hold by
construction of every tableau, so every order is at least 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property

import sympy

from phiforge.derive.algebras import (
    ExpPolyAlgebra,
    FractionAlgebra,
    InconclusiveError,
    ModularAlgebra,
    SeriesAlgebra,
    TensorAlgebra,
)
from phiforge.derive.butcher import classical_order
from phiforge.derive.conditions import (
    Condition,
    ConditionEvaluator,
    check_order,
    check_setting,
    stiff_conditions,
)
from phiforge.derive.phi import phi
from phiforge.derive.phibasis import ONE_KEY, Ring
from phiforge.derive.tableau import ExpRKTableau, SparseTableau, Z

__all__ = ["CheckReport", "ConditionResult", "Verdict", "check_tableau"]


class Verdict(Enum):
    STRONG = "strong"
    WEAK = "weak"
    CLASSICAL = "classical-only"
    FAILS = "fails"

    @property
    def letter(self) -> str:
        """One-letter code of spec order-conditions.md §5.1: S, W, C, x."""
        return {"strong": "S", "weak": "W", "classical-only": "C", "fails": "x"}[self.value]


def _variables(condition: Condition) -> list[sympy.Symbol]:
    if condition.setting == "scalar":
        return [Z]
    return [sympy.Symbol(f"z{v}") for v in range(condition.tree.nonleaf_vertices)]


@dataclass
class ConditionResult:
    """The outcome of one condition for one method; residual and leading term on demand."""

    condition: Condition
    verdict: Verdict
    nonstiff_valuation: int | None  # lowest total Taylor degree with a nonzero coefficient
    _tensors: ConditionEvaluator | None = field(repr=False)  # phi-linear methods: for display
    _method: ExpRKTableau = field(repr=False)

    @property
    def number(self) -> int:
        return self.condition.number

    @property
    def tree(self):
        return self.condition.tree

    @property
    def order(self) -> int:
        return self.condition.order

    @cached_property
    def residual(self) -> sympy.Expr:
        """Cond(t) as a SymPy expression in phi functions (0 when strong)."""
        if self.verdict is Verdict.STRONG:
            return sympy.Integer(0)
        variables = _variables(self.condition)
        if self._tensors is None:
            return condition_expression(self.condition.tree, self._method, variables)
        element = self._tensors.condition(self.condition.tree)
        return sympy.expand(tensor_to_sympy(element, variables))

    @cached_property
    def leading_term(self) -> sympy.Expr:
        """Lowest-degree homogeneous part of the Taylor expansion of Cond(t) about 0."""
        if self.verdict is Verdict.STRONG:
            return sympy.Integer(0)
        variables = _variables(self.condition)
        sparse = self._method.sparse
        ring = sparse.ring
        scalar = self.condition.setting == "scalar"
        for degree in range(0, 4 * self.order + 8):
            algebra = SeriesAlgebra(ring, degree, multivariate=not scalar)
            evaluator = ConditionEvaluator(sparse, algebra)
            element = algebra.prune(evaluator.condition(self.condition.tree))
            terms = [(key, q) for key, q in element.items() if sum(key) == degree]
            if terms:
                return sympy.Add(
                    *[
                        ring.simplify(Ring.to_sympy(q))
                        * sympy.Mul(
                            *[
                                (variables[0] if scalar else variables[v]) ** m
                                for v, m in enumerate(key)
                            ]
                        )
                        for key, q in terms
                    ]
                )
        return sympy.Order(variables[0] ** (4 * self.order + 8))


def condition_expression(tree, method: ExpRKTableau, variables: list[sympy.Symbol]) -> sympy.Expr:
    """Cond(t) built directly from the tableau's SymPy expressions (any coefficient form): the
    conditions' own recursion in the :class:`~phiforge.derive.algebras.ExpressionAlgebra`, one
    variable per vertex unless ``variables`` is [z] (scalar setting)."""
    from phiforge.derive.algebras import ExpressionAlgebra

    s = method.stages
    weights = SparseTableau(
        None,  # type: ignore[arg-type]
        tuple(method.c),
        {
            (i, j): method.a_entry(i, j)
            for i in range(3, s + 1)
            for j in range(2, i)
            if method.a_entry(i, j) != 0
        },
        {i: method.b_entry(i) for i in range(2, s + 1)},
    )
    multivariate = list(variables) != [Z]  # operator setting: one variable per vertex
    algebra = ExpressionAlgebra(lambda q, scale, z: phi(q, scale * z), multivariate)
    return algebra.value(ConditionEvaluator(weights, algebra).condition(tree), variables)


def tensor_to_sympy(element: dict, variables: list[sympy.Symbol]) -> sympy.Expr:
    """sum q prod_v phi_{k_v}(c_v z_v) (all z_v = z in the scalar setting)."""
    scalar = len(variables) == 1
    terms = []
    for keys, q in element.items():
        factors = []
        for slot, (k, c) in enumerate(keys):
            if (k, c) == ONE_KEY:
                continue
            z = variables[0] if scalar else variables[slot]
            factors.append(phi(k, Ring.to_sympy(c) * z))
        terms.append(Ring.to_sympy(q) * sympy.Mul(*factors))
    return sympy.Add(*terms)


@dataclass
class CheckReport:
    """Verdicts for every condition up to ``max_order`` and the method's orders."""

    method: ExpRKTableau
    setting: str
    max_order: int
    results: list[ConditionResult]

    def _largest(self, predicate) -> int:
        order = 1
        for p in range(2, self.max_order + 1):
            if all(predicate(r, p) for r in self.results if r.order <= p):
                order = p
            else:
                break
        return order

    @cached_property
    def stiff_order(self) -> int:
        return self._largest(lambda r, p: r.verdict is Verdict.STRONG)

    @cached_property
    def weak_stiff_order(self) -> int:
        return self._largest(
            lambda r, p: r.verdict is Verdict.STRONG or (r.order == p and r.verdict is Verdict.WEAK)
        )

    @cached_property
    def nonstiff_order(self) -> int:
        return self._largest(
            lambda r, p: r.nonstiff_valuation is None or r.nonstiff_valuation > p - r.order
        )

    @cached_property
    def classical_order(self) -> int:
        A, b, c = self.method.at_zero()
        return classical_order(A, b, c, self.max_order)

    @property
    def capped(self) -> dict[str, bool]:
        """Which orders reached ``max_order`` (the true order may be higher)."""
        return {
            name: getattr(self, name) == self.max_order
            for name in ("stiff_order", "weak_stiff_order", "nonstiff_order", "classical_order")
        }

    def verdict_row(self) -> str:
        """The verdict letters S/W/C/x in condition order (spec §5.1 row format)."""
        return "".join(r.verdict.letter for r in self.results)


def _vanishes(
    exact: ConditionEvaluator, fallback: ConditionEvaluator | None, tree, weak: bool
) -> bool:
    try:
        return exact.algebra.is_zero(exact.condition(tree, weak=weak))
    except InconclusiveError:
        return fallback.algebra.is_zero(fallback.condition(tree, weak=weak))


def check_tableau(
    method: ExpRKTableau,
    max_order: int = 5,
    setting: str = "operator",
    progress: Callable[[], object] | None = None,
) -> CheckReport:
    """Check ``method`` against every stiff condition of orders 2..max_order (``progress`` is
    called after each condition)."""
    check_order(max_order, "max_order")
    check_setting(setting)
    sparse = method.sparse
    ring = sparse.ring
    scalar = setting == "scalar"
    fallback = None
    if sparse.is_linear:
        tensors = ConditionEvaluator(sparse, TensorAlgebra(ring))
        exact = ConditionEvaluator(sparse, ExpPolyAlgebra(ring)) if scalar else tensors
    else:
        tensors = None
        exact = ConditionEvaluator(sparse, FractionAlgebra(ring, multivariate=not scalar))
    if not sparse.is_linear and ring.name == "fractions":  # numeric nodes: evaluate modulo p
        fallback = exact
        modular = ModularAlgebra.for_tableau(sparse, max_order, multivariate=not scalar)
        exact = ConditionEvaluator(sparse, modular)
    series = {  # one evaluator (and memo) per truncation degree max_order - n
        degree: ConditionEvaluator(sparse, SeriesAlgebra(ring, degree, multivariate=not scalar))
        for degree in range(max_order - 1)
    }
    results = []
    for condition in stiff_conditions(max_order, setting):
        tree = condition.tree
        truncated = series[max_order - tree.order]
        valuation = truncated.algebra.valuation(truncated.condition(tree))
        if _vanishes(exact, fallback, tree, weak=False):
            verdict = Verdict.STRONG
        elif _vanishes(exact, fallback, tree, weak=True):
            verdict = Verdict.WEAK
        elif valuation is None or valuation > 0:
            verdict = Verdict.CLASSICAL
        else:
            verdict = Verdict.FAILS
        results.append(ConditionResult(condition, verdict, valuation, tensors, method))
        if progress is not None:
            progress()
    return CheckReport(method, setting, max_order, results)
