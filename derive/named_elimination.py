"""The order conditions solved as a straight-line program: elimination with named values.

:func:`phiforge.derive.construct._eliminate` solves the scalar conditions in the field K of
rational functions of the phi values, so every solved coefficient is one expanded quotient of
phi polynomials. That is exact, but for 7 stages of order 5 such a quotient has ~10^4 terms and
loses every digit to cancellation in float64 near |z| = 10 (docs/registry-and-codegen.md). The
elimination here makes the same choices and keeps each value a *name* instead:

- an equation is a polynomial in the unknowns b_i, a_ij whose coefficients are polynomials in
  the phi placeholders and earlier names;
- an equation linear in an unknown u whose coefficient d is free of unknowns (fewest unknowns
  first, the last unknown first: the rule of ``_eliminate``) gives
  u = sum_m (-c_m / d) m over the monomials m of the other unknowns; d and every c_m become
  definitions (the equation's coefficients divided by their gcd first), the quotients stay
  c_m / d in names, and an equation into which u is substituted is multiplied by its divisors;
- u is substituted as that short sum of named products, so no coefficient is ever expanded
  into phi values.

Names are not independent: a coefficient can vanish as a function of z while its expression in
names does not (res_5s's condition [[[[tau]]]] is quadratic in a_52 in names, affine in value).
Each coefficient is therefore tested for zero by evaluating it, through the names' definitions,
with the true values phi_k(c z) at random points (z, w = e^{z/d}) of GF(p), p = 2^61 - 1 (the
checker's :class:`~phiforge.derive.algebras.ModularAlgebra`, another seed): zero as a function
of z, with failure probability at most (D/p)^3 for a numerator of degree D (Schwartz-Zippel).
So every pivot is non-zero as a function and a blocking residual is non-zero as a function:
when no unknown had to be fixed, a block proves that the equations have no solution.

The equations are sparse polynomials over QQ (:mod:`sympy.polys.rings`) in the unknowns, the
placeholders and a pool of name generators: the same pass over SymPy expressions spent its time
in ``expand`` (80 s per unknown late in the 8-stage order-6 run, which now takes 13 s in all).

When no equation is linear in an unknown with a coefficient free of unknowns, an unknown of the
first pending equation is fixed to 0 (reported: a block after that is a consequence of the
choice, not a proof; ``_eliminate`` continues over numerators there instead); unknowns that no
condition determines are 0 (res_5s: a_63).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import sympy
from sympy import QQ
from sympy.polys.rings import ring

from phiforge.derive.straightline import Definition, split_phi_linear

__all__ = ["NamedSolution", "eliminate_named", "program_definitions"]

_PRIME = 2**61 - 1  # the zero test works in GF(p)
_POOL = 64  # name generators of the first ring (doubled when they run out)


@dataclass
class NamedSolution:
    """``definitions``: (name, expr in placeholders and earlier names), in order;
    ``solved``: (unknown, value as a polynomial in later-solved unknowns with named
    coefficients), in the order of solving; ``fixed``: unknowns fixed to 0 where nothing was
    linear; ``blocked``: the label of an equation left without unknowns and not zero."""

    definitions: list[Definition]
    solved: list[tuple[sympy.Symbol, sympy.Expr]]
    fixed: list[sympy.Symbol]
    blocked: str | None


class _Names:
    """The polynomial ring of the elimination, the definitions, and every generator's values at
    random points modulo p = 2^61 - 1 (the zero test).

    Generators: the unknowns, the phi placeholders, then a pool of names (``_name0``, ...),
    renamed to their labels at the end; the pool doubles when it runs out (every pending
    equation is carried into the larger ring)."""

    def __init__(
        self,
        unknowns: list[sympy.Symbol],
        placeholders: dict[tuple[int, Any], sympy.Symbol],
        points: int = 3,
    ) -> None:
        from phiforge.derive.algebras import ModularAlgebra
        from phiforge.derive.phibasis import FRACTIONS

        self.unknowns = list(unknowns)
        self.placeholders = list(placeholders.values())
        # phi_k(c z) at random points (z, w = e^{z/d}) of GF(p): the checker's own evaluation
        keys = [(k, Fraction(str(scale))) for k, scale in placeholders]
        modular = ModularAlgebra(FRACTIONS, keys, points=points, seed=1)  # not the check's
        values = [modular.phi_key(key)[0] for key in keys]
        self.points = [[0] * len(unknowns) + [value[n] for value in values] for n in range(points)]
        self.labels: list[str] = []
        self.definitions: list[tuple[str, Any]] = []
        self.known: dict[Any, Any] = {}
        self.ring: Any = None
        self._grow(_POOL)

    def _grow(self, capacity: int) -> None:
        pool = [sympy.Symbol(f"_name{k}") for k in range(capacity)]
        self.ring = ring([*self.unknowns, *self.placeholders, *pool], QQ)[0]
        self.capacity = capacity

    def carry(self, polynomial: Any) -> Any:
        """``polynomial`` in the current ring (after the pool grew)."""
        return polynomial if polynomial.ring == self.ring else polynomial.set_ring(self.ring)

    def _value(self, polynomial: Any, point: list[int]) -> int:
        total = 0
        for monomial, q in polynomial.terms():
            term = int(q.numerator) % _PRIME * pow(int(q.denominator), -1, _PRIME) % _PRIME
            for index, degree in enumerate(monomial):
                if degree:
                    term = term * pow(point[index], degree, _PRIME) % _PRIME
            total = (total + term) % _PRIME
        return total

    def is_zero(self, polynomial: Any) -> bool:
        if polynomial.is_ground:
            return not polynomial
        return all(self._value(polynomial, point) == 0 for point in self.points)

    def named(self, label: str, polynomial: Any) -> Any:
        """``polynomial`` itself when it is a constant or one generator, else the generator of
        its definition (one per distinct polynomial: met again, or its negative, it reuses
        the name)."""
        polynomial = self.carry(polynomial)
        if polynomial.is_ground or (
            len(polynomial) == 1 and polynomial.LC == 1 and sum(polynomial.LM) == 1
        ):
            return polynomial
        if -polynomial in self.known:
            return -self.known[-polynomial]
        if polynomial not in self.known:
            if len(self.labels) == self.capacity:
                self._grow(2 * self.capacity)
                polynomial = self.carry(polynomial)
                self.known = {self.carry(k): self.carry(v) for k, v in self.known.items()}
            for point in self.points:
                point.append(self._value(polynomial, point))
            generator = self.ring.gens[
                len(self.unknowns) + len(self.placeholders) + len(self.labels)
            ]
            self.labels.append(label)
            self.definitions.append((label, polynomial))
            self.known[polynomial] = generator
        return self.known[polynomial]

    def expression(self, value: Any) -> sympy.Expr:
        """A SymPy expression with the names under their labels."""
        expr = value.as_expr() if hasattr(value, "as_expr") else sympy.sympify(value)
        rename = {
            sympy.Symbol(f"_name{k}"): sympy.Symbol(label) for k, label in enumerate(self.labels)
        }
        return expr.xreplace(rename)


def _groups(equation: Any, names: _Names) -> dict[tuple[int, ...], Any]:
    """{degrees in the unknowns: coefficient (a polynomial in placeholders and names)} of an
    equation, the coefficients that vanish at the random points dropped."""
    count = len(names.unknowns)
    collected: dict[tuple[int, ...], dict] = {}
    for monomial, q in equation.terms():
        key = monomial[:count]
        collected.setdefault(key, {})[(0,) * count + monomial[count:]] = q
    groups = {}
    for key, terms in collected.items():
        coefficient = names.ring.from_dict(terms)
        if not names.is_zero(coefficient):
            groups[key] = coefficient
    return groups


def _polynomial(groups: dict[tuple[int, ...], Any], names: _Names) -> Any:
    total = names.ring.zero
    count = len(names.unknowns)
    for key, coefficient in groups.items():
        total += names.carry(coefficient) * names.ring.from_dict(
            {key + (0,) * (names.ring.ngens - count): 1}
        )
    return total


def _without_common_factor(groups: dict[tuple[int, ...], Any]) -> dict[tuple[int, ...], Any]:
    """The coefficients of one equation divided by their polynomial gcd (in the placeholders
    and names): a factor shared by the pivot and the rest (res_5s's condition [[[tau]]] is
    psi_{2,2} times sum_i b_i a_i2) would otherwise stay in every quotient of the program."""
    coefficients = list(groups.values())
    if len(coefficients) < 2 or all(c.is_ground for c in coefficients):
        return groups
    common = coefficients[0]
    for coefficient in coefficients[1:]:
        common = common.gcd(coefficient)
        if common.is_ground:
            return groups
    return {key: c.exquo(common) for key, c in groups.items()}


def _substitute(equation: Any, index: int, numerator: Any, divisor: Any) -> Any:
    """divisor^k * equation(u = numerator/divisor), k the degree of u (generator ``index``):
    sum_j e_j numerator^j divisor^(k - j) over the parts e_j u^j of the equation."""
    parts: dict[int, dict] = {}
    for monomial, q in equation.terms():
        j = monomial[index]
        parts.setdefault(j, {})[(*monomial[:index], 0, *monomial[index + 1 :])] = q
    k = max(parts)
    ring_ = equation.ring
    total = ring_.zero
    for j, terms in parts.items():
        power = numerator**j if j else ring_.one
        total += ring_.from_dict(terms) * power * (divisor ** (k - j) if k > j else ring_.one)
    return total


def eliminate_named(
    equations: list[tuple[str, sympy.Expr]],
    unknowns: list[sympy.Symbol],
    placeholders: dict[tuple[int, Any], sympy.Symbol],
    progress: Callable[[str], object] | None = None,
) -> NamedSolution:
    """Solve ``equations`` (label, polynomial in ``unknowns`` over QQ[placeholders]) by
    elimination with named values (module docstring); ``placeholders`` maps (k, c) to the
    symbol standing for phi_k(c z); ``progress`` gets a line per unknown solved or fixed."""
    names = _Names(unknowns, placeholders)
    count = len(unknowns)
    pending = []
    for label, expr in equations:
        groups = _groups(names.ring(sympy.expand(expr)), names)
        if groups:
            pending.append((label, groups))

    def present(groups: dict) -> set[int]:
        return {i for key in groups for i in range(count) if key[i]}

    def unit(i: int) -> tuple[int, ...]:
        return tuple(int(k == i) for k in range(count))

    solved: list[tuple[sympy.Symbol, Any]] = []
    fixed: list[sympy.Symbol] = []
    while pending:
        for label, groups in pending:
            if not present(groups):
                return _solution(names, solved, fixed, label)
        holds = [present(groups) for _, groups in pending]
        ranked = sorted(range(len(pending)), key=lambda n: (len(holds[n]), n))
        choice = None
        for n in ranked:
            groups = pending[n][1]
            for i in reversed(range(count)):
                if i not in holds[n]:
                    continue
                with_u = [key for key in groups if key[i]]
                if with_u == [unit(i)]:  # linear, coefficient free of unknowns
                    choice = (n, i)
                    break
            if choice is not None:
                break
        if choice is None:
            i = next(v for v in reversed(range(count)) if v in holds[ranked[0]])
            fixed.append(unknowns[i])
            numerator, divisor = names.ring.zero, names.ring.one
        else:
            n, i = choice
            groups = _without_common_factor(pending[n][1])
            step = len(solved) + 1
            pivot = names.named(f"d{step}", groups[unit(i)])
            numerator = names.ring.zero
            parts = []
            for number, (key, coefficient) in enumerate(groups.items()):
                if key == unit(i):
                    continue
                monomial = names.ring.from_dict({key + (0,) * (names.ring.ngens - count): 1})
                if pivot.is_ground:
                    part = names.named(
                        f"s{step}_{number}", -names.carry(coefficient) * (1 / pivot.LC)
                    )
                    parts.append((part, None, monomial))
                else:  # a quotient stays n/d: it cancels against its divisor
                    part = names.named(f"n{step}_{number}", names.carry(coefficient))
                    parts.append((-part, names.carry(pivot), monomial))
                numerator = names.carry(numerator) + names.carry(parts[-1][0]) * names.carry(
                    monomial
                )
            divisor = names.ring.one if pivot.is_ground else names.carry(pivot)
            solved.append((unknowns[i], parts))
        if progress is not None:
            size = max((len(_polynomial(g, names)) for _, g in pending), default=0)
            progress(
                f"{'fixed' if choice is None else 'solved'} {unknowns[i]}: {len(pending)} "
                f"equations pending (largest {size} terms), {len(names.labels)} names"
            )
        updated = []
        for label, groups in pending:
            if i in present(groups):
                equation = _polynomial(groups, names)
                groups = _groups(
                    _substitute(equation, i, names.carry(numerator), names.carry(divisor)), names
                )
            if groups:
                updated.append((label, groups))
        pending = updated
    return _solution(names, solved, fixed, None)


def _solution(
    names: _Names, solved: list, fixed: list[sympy.Symbol], blocked: str | None
) -> NamedSolution:
    """The solution with SymPy expressions: definitions and each solved unknown's value
    sum_m (part_m / divisor) m over monomials m of the unknowns solved after it."""
    definitions = [Definition(label, names.expression(p)) for label, p in names.definitions]
    values = []
    for u, parts in solved:
        value = sympy.Integer(0)
        for part, divisor, monomial in parts:
            term = names.expression(part) * names.expression(monomial)
            value += term / names.expression(divisor) if divisor is not None else term
        values.append((u, value))
    return NamedSolution(definitions, values, fixed, blocked)


def program_definitions(
    solution: NamedSolution,
    nodes: tuple[sympy.Expr, ...],
    unknown_a: dict[tuple[int, int], sympy.Symbol],
    unknown_b: dict[int, sympy.Symbol],
    back: dict[sympy.Symbol, sympy.Expr],
) -> tuple[list[Definition], dict[tuple[int, int], str], dict[int, str], list[sympy.Symbol]]:
    """The straight-line program of a named solution: its names, the unknowns in the reverse
    order of solving (each a polynomial in later ones), a_i1 = c_i phi_1(c_i z) - sum_j a_ij
    and b_1 = phi_1(z) - sum_i b_i; unknowns left free are 0. Then three passes that change no
    value:

    - aliases: a definition that is one name or a rational is substituted into its uses (a
      coefficient keeps its own name: the name it aliases is renamed to it);
    - phi-linear definitions (their value, earlier phi-linear names substituted, is a rational
      combination of phi values) are stored expanded, to be evaluated in psi form without
      cancellation instead of as a chain of eliminations;
    - definitions that no coefficient uses are dropped.

    Returns the definitions, the names of a_ij and b_i (or "0"), and the free unknowns."""
    from phiforge.derive.phi import phi
    from phiforge.derive.tableau import Z

    s = len(nodes)
    solved = {u for u, _ in solution.solved}
    every = [*unknown_b.values(), *unknown_a.values()]
    free = [u for u in every if u not in solved]
    zero = {u: sympy.Integer(0) for u in free}
    definitions = [Definition(d.name, d.expr.xreplace(back)) for d in solution.definitions]
    for u, value in reversed(solution.solved):
        definitions.append(Definition(u.name, sympy.expand(value.xreplace(zero).xreplace(back))))

    def entry(symbol: sympy.Symbol) -> sympy.Expr:
        return zero.get(symbol, symbol)

    for i in range(2, s + 1):
        rest = sympy.Add(*[entry(unknown_a[(i, j)]) for j in range(2, i)])
        definitions.append(Definition(f"a{i}_1", nodes[i - 1] * phi(1, nodes[i - 1] * Z) - rest))
    definitions.append(
        Definition("b1", phi(1, Z) - sympy.Add(*[entry(b) for b in unknown_b.values()]))
    )
    coefficients = {f"a{i}_{j}" for i in range(2, s + 1) for j in range(1, i)} | {
        f"b{i}" for i in range(1, s + 1)
    }
    definitions = _name_phi_linear(definitions)
    definitions = _inline_aliases(definitions, coefficients)
    definitions = _expand_phi_linear(definitions)
    defined = {d.name for d in definitions}
    a_names = {
        (i, j): f"a{i}_{j}" if f"a{i}_{j}" in defined else "0"
        for i in range(2, s + 1)
        for j in range(1, i)
    }
    b_names = {i: f"b{i}" if f"b{i}" in defined else "0" for i in range(1, s + 1)}
    used = {n for n in (*a_names.values(), *b_names.values()) if n != "0"}
    return _live(definitions, used), a_names, b_names, free


def _is_phi_linear(expr: sympy.Expr) -> bool:
    from phiforge.derive.phi import phi

    atoms = list(expr.atoms(phi))
    if not atoms or expr.free_symbols - set().union(*(a.free_symbols for a in atoms)):
        return False
    return expr.is_polynomial(*atoms) and sympy.Poly(expr, *atoms).total_degree() <= 1


def _name_phi_linear(definitions: list[Definition]) -> list[Definition]:
    """Give the phi-linear sums inside each definition names of their own (equal ones shared):
    divisors first, then the phi-linear factor of each monomial in the names
    (:func:`~phiforge.derive.straightline.split_phi_linear`). A phi-linear sum is evaluated in
    its own cancellation-free (psi) form instead of being spread over products."""
    groups: dict[sympy.Expr, sympy.Symbol] = {}
    result: list[Definition] = []

    def define(label: str, value: sympy.Expr) -> sympy.Symbol:
        result.append(Definition(label, value))
        return sympy.Symbol(label)

    def group(value: sympy.Expr) -> sympy.Expr:
        if -value in groups:
            return -groups[-value]
        if value not in groups:
            groups[value] = define(f"f{len(groups) + 1}", value)
        return groups[value]

    for definition in definitions:
        expr = definition.expr
        bases = {
            p.base: group(p.base)
            for p in expr.atoms(sympy.Pow)
            if p.exp.is_negative and p.base.is_Add and _is_phi_linear(p.base)
        }
        expr = split_phi_linear(expr.xreplace(bases), groups, define)
        result.append(Definition(definition.name, expr, definition.series))
    return result


def _inline_aliases(definitions: list[Definition], keep: set[str]) -> list[Definition]:
    """Substitute every definition whose value is one name or a rational into its uses. A
    coefficient in ``keep`` that aliases a name ``x`` (not itself kept) takes x's place: x is
    renamed to it. A coefficient equal to 0 is dropped (the record says "0"); one equal to
    another rational stays a definition."""
    result = list(definitions)
    while True:
        position = next(
            (
                k
                for k, d in enumerate(result)
                if isinstance(d.expr, sympy.Symbol)
                or (d.expr.is_Rational and (d.expr == 0 or d.name not in keep))
            ),
            None,
        )
        if position is None:
            return result
        alias = result.pop(position)
        target = alias.expr
        if isinstance(target, sympy.Symbol) and alias.name in keep and target.name not in keep:
            mapping = {target: sympy.Symbol(alias.name)}
            result = [
                Definition(alias.name if d.name == target.name else d.name,
                           d.expr.xreplace(mapping), d.series)
                for d in result
            ]  # fmt: skip
            continue
        if isinstance(target, sympy.Symbol) and alias.name in keep:
            # two coefficients equal: keep both names, the second a copy of the first's value
            source = next(d for d in result if d.name == target.name)
            result.insert(position, Definition(alias.name, source.expr, source.series))
            continue
        mapping = {sympy.Symbol(alias.name): target}
        result = [Definition(d.name, d.expr.xreplace(mapping), d.series) for d in result]


def _expand_phi_linear(definitions: list[Definition]) -> list[Definition]:
    """Store every definition whose value is a rational combination of phi values expanded."""
    from phiforge.derive.phi import phi

    linear: dict[sympy.Symbol, sympy.Expr] = {}
    result = []
    for definition in definitions:
        value = sympy.expand(definition.expr.xreplace(linear))
        atoms = list(value.atoms(phi))
        names = value.free_symbols - set().union(*(a.free_symbols for a in atoms))
        polynomial = not atoms or value.is_polynomial(*atoms)
        degree = sympy.Poly(value, *atoms).total_degree() if atoms and polynomial else 0
        if not names and polynomial and degree <= 1:
            linear[sympy.Symbol(definition.name)] = value
            result.append(Definition(definition.name, value, definition.series))
        else:
            result.append(definition)
    return result


def _live(definitions: list[Definition], used: set[str]) -> list[Definition]:
    """The definitions that the names ``used`` depend on, in order."""
    needed = set(used)
    for definition in reversed(definitions):
        if definition.name in needed:
            needed |= {x.name for x in definition.expr.free_symbols}
    return [d for d in definitions if d.name in needed]
