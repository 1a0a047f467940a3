"""Stiff order conditions of explicit exponential Runge-Kutta methods, generated from rooted trees.

For every rooted tree t with n >= 2 vertices there is one condition of order n (spec
order-conditions.md §4.1-4.2; Hochbruck & Ostermann, SINUM 43 (2005) for n <= 4; Luan & Ostermann,
SINUM 51 (2013) and JCAM 262 (2014) for n = 5; Luan & Alhsmy, arXiv 2311.08600 for n = 6). With
the root having k leaf children and non-leaf children t_1..t_m, and for a non-leaf subtree S
(k' leaf children, non-leaf children S_1..S_m'):

    W_i(S)  = psi_{|S|,i}                                        if S has only leaf children
            = sum_j a_ij c_j^{k'} G_{m',k'}(W_j(S_1), ..., W_j(S_m'))   otherwise
    Cond(t) = psi_n                                              if the root has only leaf children
            = sum_i b_i c_i^k G_{m,k}(W_i(t_1), ..., W_i(t_m))   otherwise

with psi_q = phi_q - sum_i b_i c_i^{q-1}/(q-1)! and psi_{q,i} = c_i^q phi_q(c_i z)
- sum_j a_ij c_j^{q-1}/(q-1)! (exact minus method, HO's convention), and G_{m,k} the bounded
operator d^k/dt^k d^m g/du^m along the solution (J = G_{1,0}, K = G_{1,1}, L = G_{1,2},
B = G_{2,0}). The condition is Cond(t) = 0.

Settings (§4.3): **operator** - every non-leaf vertex carries its own variable z_v (b_i and psi_n
at the root's, a_ij and psi_{q,j} at their vertex's), the stiff PDE setting; **scalar** - all
variables equal one z, as in the diffusion ODE where the linear part is the scalar L = +-1.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from itertools import count
from math import factorial
from typing import Any

from phiforge.derive.algebras import _Algebra
from phiforge.derive.errors import InputError, integer_in
from phiforge.derive.tableau import SparseTableau
from phiforge.derive.trees import (
    CONDITIONS_UP_TO_MAX_ORDER,
    MAX_ORDER,
    RootedTree,
    trees,
    trees_up_to,
)

__all__ = [
    "SETTINGS",
    "ClassicalCondition",
    "Condition",
    "classical_conditions",
    "nonstiff_conditions",
    "stiff_conditions",
]

SETTINGS = ("operator", "scalar")
_INDEX_LETTERS = "ijklmnpqrsuvwxy"
_OPERATORS = {(1, 0): "J", (1, 1): "K", (1, 2): "L", (2, 0): "B"}


def check_setting(setting: str) -> str:
    if setting not in SETTINGS:
        raise InputError(f"parameter 'setting' must be one of {SETTINGS}, got {setting!r}")
    return setting


def check_order(p: object, name: str = "p") -> int:
    """``p`` as an order of conditions: an integer in 1..MAX_ORDER (see :mod:`.trees`)."""
    return integer_in(
        p,
        f"'{name}' (order)",
        1,
        MAX_ORDER,
        f"the number of conditions grows about 3x per order: order {MAX_ORDER} is already "
        f"{CONDITIONS_UP_TO_MAX_ORDER:,}",
    )


# ---------------------------------------------------------------------------------- rendering
@dataclass(frozen=True)
class _Style:
    sigma: Callable[[str], str]
    coefficient: Callable[[str, str, str], str]  # (name, indices, variable)
    node_power: Callable[[str, int], str]
    psi: Callable[[str, str | None, str], str]  # (order, stage index or None, variable)
    apply: Callable[[str, list[str]], str]  # (operator, arguments)
    power: Callable[[str, int], str]
    variable: Callable[[int | None], str]


def _text_style(unicode: bool) -> _Style:
    psi_name = "ψ" if unicode else "psi"

    def psi(order: str, index: str | None, var: str) -> str:
        sub = order if index is None else f"{order},{index}"
        return f"{psi_name}_{{{sub}}}({var})" if index else f"{psi_name}_{order}({var})"

    return _Style(
        sigma=(lambda i: f"Σ_{i}") if unicode else (lambda i: f"sum_{i}"),
        coefficient=lambda name, idx, var: f"{name}_{idx}({var})",
        node_power=lambda i, k: "" if k == 0 else (f"c_{i}" if k == 1 else f"c_{i}^{k}"),
        psi=psi,
        apply=lambda op, args: f"{op}({', '.join(args)})",
        power=lambda base, m: base if m == 1 else f"({base})^{m}" if " " in base else f"{base}^{m}",
        variable=lambda v: "z" if v is None else f"z{v}",
    )


def _latex_style() -> _Style:
    def psi(order: str, index: str | None, var: str) -> str:
        sub = order if index is None else f"{order},{index}"
        return rf"\psi_{{{sub}}}({var})"

    def power(base: str, m: int) -> str:
        if m == 1:
            return base
        return rf"\left({base}\right)^{{{m}}}" if " " in base else rf"{base}^{{{m}}}"

    return _Style(
        sigma=lambda i: rf"\sum_{{{i}}}",
        coefficient=lambda name, idx, var: f"{name}_{{{idx}}}({var})",
        node_power=lambda i, k: (
            "" if k == 0 else (f"c_{{{i}}}" if k == 1 else f"c_{{{i}}}^{{{k}}}")
        ),
        psi=psi,
        apply=lambda op, args: rf"{op}\left({', '.join(args)}\right)",
        power=power,
        variable=lambda v: "z" if v is None else f"z_{{{v}}}",
    )


def _operator_name(m: int, k: int, latex: bool) -> str:
    if (m, k) in _OPERATORS:
        return _OPERATORS[(m, k)]
    return f"G_{{{m},{k}}}" if latex else f"G_{m},{k}"


def _render(tree: RootedTree, setting: str, style: _Style, latex: bool) -> str:
    variables = count()
    letters = iter(_INDEX_LETTERS)
    scalar = setting == "scalar"

    def var() -> str:
        v = next(variables)
        return style.variable(None if scalar else v)

    def join(parts: list[str]) -> str:
        return " ".join(p for p in parts if p)

    def children(parent: RootedTree, index: str) -> str:
        kids = parent.subtree_children
        m, k = len(kids), parent.leaf_children
        if scalar:
            rendered = Counter(w(kid, index) for kid in kids)
            return join([style.power(text, mult) for text, mult in rendered.items()])
        return style.apply(_operator_name(m, k, latex), [w(kid, index) for kid in kids])

    def w(subtree: RootedTree, index: str) -> str:
        v = var()
        if subtree.is_bushy:
            return style.psi(str(subtree.order), index, v)
        inner = next(letters)
        return join(
            [
                style.sigma(inner),
                style.coefficient("a", f"{index}{inner}", v),
                style.node_power(inner, subtree.leaf_children),
                children(subtree, inner),
            ]
        )

    root_var = var()
    if tree.is_bushy:
        return style.psi(str(tree.order), None, root_var)
    index = next(letters)
    return join(
        [
            style.sigma(index),
            style.coefficient("b", index, root_var),
            style.node_power(index, tree.leaf_children),
            children(tree, index),
        ]
    )


@dataclass(frozen=True)
class Condition:
    """The stiff order condition of one rooted tree (number = position in generator order)."""

    number: int
    tree: RootedTree
    setting: str

    @property
    def order(self) -> int:
        return self.tree.order

    @property
    def variables(self) -> int:
        """Independent variables of the condition: one per non-leaf vertex (operator) or 1."""
        return 1 if self.setting == "scalar" else self.tree.nonleaf_vertices

    def expression(self, form: str = "ascii") -> str:
        """The condition's left-hand side (= 0) as text: ``ascii``, ``unicode`` or ``latex``."""
        if form == "latex":
            return _render(self.tree, self.setting, _latex_style(), latex=True)
        if form not in ("ascii", "unicode"):
            raise InputError(f"parameter 'form' must be ascii, unicode or latex, got {form!r}")
        return _render(self.tree, self.setting, _text_style(form == "unicode"), latex=False)

    def __str__(self) -> str:
        return f"{self.number}: {self.tree} (order {self.order}): {self.expression('unicode')} = 0"


@cache
def _stiff_conditions(p: int, setting: str) -> tuple[Condition, ...]:
    return tuple(
        Condition(number, tree, setting)
        for number, tree in enumerate(trees_up_to(p, start=2), start=1)
    )


def stiff_conditions(p: int, setting: str = "operator") -> tuple[Condition, ...]:
    """All stiff order conditions of orders 2..p (one per rooted tree with 2..p vertices).

    The order-1 condition psi_1 = 0 and the row-sum assumption psi_{1,i} = 0 are not listed: every
    :class:`~phiforge.derive.tableau.ExpRKTableau` satisfies them by construction.
    """
    return _stiff_conditions(check_order(p), check_setting(setting))


@dataclass(frozen=True)
class NonStiffCondition:
    """Non-stiff condition of a tree of order n for non-stiff order p: the Taylor coefficients of
    the stiff condition of total degree <= p - n vanish (spec order-conditions.md §2.4)."""

    condition: Condition
    degree: int

    def expression(self, form: str = "ascii") -> str:
        inner = self.condition.expression(form)
        if form == "latex":
            return rf"\left[{inner}\right]_{{\deg \le {self.degree}}}"
        return f"[{inner}]_(deg<={self.degree})"


def nonstiff_conditions(p: int, setting: str = "operator") -> tuple[NonStiffCondition, ...]:
    """The non-stiff conditions for order p: one truncated Taylor condition per tree."""
    return tuple(
        NonStiffCondition(condition, p - condition.order)
        for condition in stiff_conditions(p, setting)
    )


# ---------------------------------------------------------------------------------- classical
@dataclass(frozen=True)
class ClassicalCondition:
    """Butcher's condition Phi(t) = 1/gamma(t) of the Runge-Kutta tableau (A(0), b(0), c)."""

    number: int
    tree: RootedTree

    @property
    def order(self) -> int:
        return self.tree.order

    def expression(self, form: str = "ascii") -> str:
        letters = iter(_INDEX_LETTERS)
        latex = form == "latex"

        def weight(t: RootedTree, index: str) -> str:
            parts = []
            k = t.leaf_children
            if k:
                c = f"c_{{{index}}}" if latex else f"c_{index}"
                parts.append(c if k == 1 else (f"{c}^{{{k}}}" if latex else f"{c}^{k}"))
            for kid in t.subtree_children:
                inner = next(letters)
                if latex:
                    parts.append(rf"\sum_{{{inner}}} a_{{{index}{inner}}} {weight(kid, inner)}")
                else:
                    sigma = "Σ" if form == "unicode" else "sum"
                    parts.append(f"{sigma}_{inner} a_{index}{inner} {weight(kid, inner)}")
            return " ".join(parts)

        index = next(letters)
        sigma = r"\sum" if latex else ("Σ" if form == "unicode" else "sum")
        body = weight(self.tree, index)
        lhs = f"{sigma}_{{{index}}} b_{{{index}}}" if latex else f"{sigma}_{index} b_{index}"
        rhs = rf"\frac{{1}}{{{self.tree.density}}}" if latex else f"1/{self.tree.density}"
        return f"{lhs} {body} = {rhs}".replace("  ", " ")


def classical_conditions(p: int) -> tuple[ClassicalCondition, ...]:
    """Butcher's order conditions of orders 1..p (1, 2, 4, 8, 17, 37, 85, 200 cumulative)."""
    return tuple(
        ClassicalCondition(number, tree)
        for number, tree in enumerate(trees_up_to(check_order(p), start=1), start=1)
    )


# ---------------------------------------------------------------------------------- evaluation
class ConditionEvaluator:
    """Evaluates Cond(t) of one method in one algebra, memoising W_i(S) over subtrees."""

    def __init__(self, method: SparseTableau, algebra: _Algebra) -> None:
        self.method = method
        self.algebra = algebra
        self._w: dict[tuple[int, RootedTree], dict] = {}

    def _phi(self, q: int, scale: Any, weight: Any) -> dict:
        return self.algebra.phi(q, scale, weight)

    def _defect(self, q: int, exact: dict, terms: Any, root: bool, weak: bool) -> dict:
        """exact - sum_j w_j c_j^{q-1}/(q-1)! (w_j = b_j or a_ij), as an algebra element."""
        alg = self.algebra
        result = alg.zero()
        alg.add_scaled(result, exact, 1)
        for j, function in terms:
            weight = self.method.node(j) ** (q - 1) * Fraction(1, factorial(q - 1))
            if weight != 0:
                lifted = alg.lift_root(function, weak) if root else alg.lift(function)
                alg.add_scaled(result, lifted, -weight)
        return alg.prune(result)

    def psi(self, q: int, weak: bool = False) -> dict:
        """psi_q = phi_q(z) - sum_i b_i c_i^{q-1}/(q-1)!; at z = 0 when ``weak``."""
        exact = self.algebra.const(Fraction(1, factorial(q))) if weak else self._phi(q, 1, 1)
        return self._defect(q, exact, self.method.b.items(), root=True, weak=weak)

    def psi_stage(self, q: int, i: int) -> dict:
        """psi_{q,i} = c_i^q phi_q(c_i z) - sum_j a_ij c_j^{q-1}/(q-1)!."""
        ci = self.method.node(i)
        exact = self._phi(q, ci, ci**q) if ci != 0 else self.algebra.zero()
        row = [(j, self.method.a[(i, j)]) for j in range(2, i) if (i, j) in self.method.a]
        return self._defect(q, exact, row, root=False, weak=False)

    def condition(self, tree: RootedTree, weak: bool = False) -> dict:
        """Cond(t) as an element of the algebra; ``weak`` evaluates the root at z_0 = 0."""
        alg = self.algebra
        if tree.is_bushy:
            return self.psi(tree.order, weak)
        total = alg.zero()
        k = tree.leaf_children
        for i, b_i in self.method.b.items():
            weight = self.method.node(i) ** k
            if weight == 0:
                continue
            term = alg.lift_root(b_i, weak)
            for child in tree.subtree_children:
                term = alg.mul(term, self.w(i, child))
            alg.add_scaled(total, term, weight)
        return alg.prune(total)

    def w(self, i: int, subtree: RootedTree) -> dict:
        key = (i, subtree)
        if key in self._w:
            return self._w[key]
        alg = self.algebra
        if subtree.is_bushy:
            result = self.psi_stage(subtree.order, i)
        else:
            result = alg.zero()
            k = subtree.leaf_children
            for j in range(2, i):
                a_ij = self.method.a.get((i, j))
                weight = self.method.node(j) ** k
                if a_ij is None or weight == 0:
                    continue
                term = alg.lift(a_ij)
                for child in subtree.subtree_children:
                    term = alg.mul(term, self.w(j, child))
                alg.add_scaled(result, term, weight)
            result = alg.prune(result)
        self._w[key] = result
        return result


def count_conditions(p: int) -> int:
    """Number of stiff conditions of orders 2..p."""
    return sum(sum(1 for _ in trees(n)) for n in range(2, check_order(p) + 1))
