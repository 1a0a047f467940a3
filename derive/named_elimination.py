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
Each coefficient is therefore tested for zero by exact evaluation at random rational values of
the placeholders, every name evaluated through its definition in QQ (Schwartz-Zippel: a
non-zero rational function of degree D vanishes at a point drawn from a set S of size N with
probability at most D/N; here N ~ 4e12 per coordinate, at two points). Treating the phi values
as independent transcendentals is what ``_eliminate`` does too, and the result is verified by
the exact checker afterwards.

When no equation is linear in an unknown with a coefficient free of unknowns, an unknown of the
first pending equation is fixed to 0 (reported), as ``_eliminate`` does in the end; unknowns
that no condition determines are 0 (res_5s: a_63).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import sympy

from phiforge.derive.straightline import Definition, split_phi_linear

__all__ = ["NamedSolution", "eliminate_named", "program_definitions"]

_DRAW = 2 * 10**6  # numerators and denominators of the random points: 1..2e6, either sign


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
    """Definitions and their exact values at random rational points (the zero test)."""

    def __init__(self, placeholders: list[sympy.Symbol], points: int = 2, seed: int = 0) -> None:
        draw = random.Random(seed)

        def rational() -> sympy.Rational:
            sign = draw.choice((1, -1))
            return sign * sympy.Rational(draw.randint(1, _DRAW), draw.randint(1, _DRAW))

        self.points = [{x: rational() for x in placeholders} for _ in range(points)]
        self.definitions: list[Definition] = []
        self.known: dict[sympy.Expr, sympy.Symbol] = {}

    def is_zero(self, expr: sympy.Expr) -> bool:
        if expr.is_Rational:
            return expr == 0
        return all(expr.xreplace(point) == 0 for point in self.points)

    def define(self, label: str, expr: sympy.Expr) -> sympy.Symbol:
        symbol = sympy.Symbol(label)
        for point in self.points:
            value = expr.xreplace(point)
            if not value.is_Rational:
                raise ValueError(f"internal: {label} does not evaluate to a rational: {value}")
            point[symbol] = value
        self.definitions.append(Definition(label, expr))
        return symbol

    def named(self, label: str, expr: sympy.Expr) -> sympy.Expr:
        """expr itself (expanded) when it is a rational or one name, else its definition (one
        per distinct expression: an expression met again, or its negative, reuses the name)."""
        expr = sympy.expand(expr)
        if expr.is_Rational or isinstance(expr, sympy.Symbol):
            return expr
        if -expr in self.known:
            return -self.known[-expr]
        if expr not in self.known:
            self.known[expr] = self.define(label, expr)
        return self.known[expr]


def _terms(
    expr: sympy.Expr, unknowns: list[sympy.Symbol], names: _Names
) -> dict[tuple, sympy.Expr]:
    """{monomial: coefficient} of an expanded polynomial in the unknowns, coefficients that
    vanish at the random points dropped; a monomial is ((unknown, degree), ...)."""
    present = [u for u in unknowns if expr.has(u)]
    if not present:
        return {} if names.is_zero(expr) else {(): expr}
    terms = {}
    for monomial, coefficient in sympy.Poly(expr, *present).terms():
        coefficient = sympy.expand(coefficient)
        if not names.is_zero(coefficient):
            key = tuple((present[i], d) for i, d in enumerate(monomial) if d)
            terms[key] = coefficient
    return terms


def _expr(terms: dict[tuple, sympy.Expr]) -> sympy.Expr:
    return sympy.Add(*[c * sympy.Mul(*[u**d for u, d in m]) for m, c in terms.items()])


def _unknowns_of(terms: dict[tuple, sympy.Expr]) -> set[sympy.Symbol]:
    return {u for monomial in terms for u, _ in monomial}


def _numerator(expr: sympy.Expr) -> sympy.Expr:
    """An equation (= 0) times the divisors of its terms, expanded: a polynomial again. Each term
    is multiplied on its own, so that a divisor cancels in the product before anything is
    distributed."""
    expr = sympy.expand(expr)
    powers: dict[sympy.Expr, int] = {}
    for power in expr.atoms(sympy.Pow):
        if power.exp.is_Integer and power.exp < 0:
            powers[power.base] = max(powers.get(power.base, 0), -int(power.exp))
    if not powers:
        return expr
    factor = sympy.Mul(*[base**k for base, k in powers.items()])
    return sympy.expand(sympy.Add(*[term * factor for term in sympy.Add.make_args(expr)]))


def _without_common_factor(terms: dict[tuple, sympy.Expr]) -> dict[tuple, sympy.Expr]:
    """The coefficients of one equation divided by their polynomial gcd (in the placeholders
    and names): a factor shared by the pivot and the rest (res_5s's condition [[[tau]]] is
    psi_{2,2} times sum_i b_i a_i2) would otherwise stay in every quotient of the program."""
    coefficients = list(terms.values())
    if len(coefficients) < 2 or all(c.is_Rational for c in coefficients):
        return terms
    common = sympy.gcd_list(coefficients)
    if common.is_Rational:
        return terms
    return {m: sympy.expand(sympy.cancel(c / common)) for m, c in terms.items()}


def eliminate_named(
    equations: list[tuple[str, sympy.Expr]],
    unknowns: list[sympy.Symbol],
    placeholders: list[sympy.Symbol],
) -> NamedSolution:
    """Solve ``equations`` (label, polynomial in ``unknowns`` over QQ[placeholders]) by
    elimination with named values (module docstring)."""
    names = _Names(placeholders)
    pending = []
    for label, expr in equations:
        terms = _terms(sympy.expand(expr), unknowns, names)
        if terms:
            pending.append((label, terms))
    solved: list[tuple[sympy.Symbol, sympy.Expr]] = []
    fixed: list[sympy.Symbol] = []
    while pending:
        for label, terms in pending:
            if not _unknowns_of(terms):
                return NamedSolution(names.definitions, solved, fixed, label)
        present = [_unknowns_of(terms) for _, terms in pending]
        ranked = sorted(range(len(pending)), key=lambda n: (len(present[n]), n))
        choice = None
        for n in ranked:
            terms = pending[n][1]
            for u in reversed(unknowns):
                if u not in present[n]:
                    continue
                with_u = [m for m in terms if any(v == u for v, _ in m)]
                if with_u == [((u, 1),)]:  # linear, coefficient free of unknowns
                    choice = (n, u)
                    break
            if choice is not None:
                break
        if choice is None:
            u = next(v for v in reversed(unknowns) if v in present[ranked[0]])
            fixed.append(u)
            value: sympy.Expr = sympy.Integer(0)
        else:
            n, u = choice
            terms = _without_common_factor(pending[n][1])
            step = len(solved) + 1
            pivot = names.named(f"d{step}", terms[((u, 1),)])
            value = sympy.Integer(0)
            for number, (monomial, coefficient) in enumerate(terms.items()):
                if monomial == ((u, 1),):
                    continue
                label = f"s{step}_{number}"
                if pivot.is_Rational:
                    part = names.named(label, -coefficient / pivot)
                else:  # a quotient stays an expression: it cancels against its divisor
                    part = -names.named(f"n{step}_{number}", coefficient) / pivot
                value += part * sympy.Mul(*[v**d for v, d in monomial])
            solved.append((u, value))
        updated = []
        for label, terms in pending:
            if u in _unknowns_of(terms):
                terms = _terms(_numerator(_expr(terms).xreplace({u: value})), unknowns, names)
            if terms:
                updated.append((label, terms))
        pending = updated
    return NamedSolution(names.definitions, solved, fixed, None)


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
