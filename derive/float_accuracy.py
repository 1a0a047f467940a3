"""Where a straight-line program loses digits in float64, and the Taylor discs that restore them.

A generated module evaluates a program (:mod:`phiforge.derive.straightline`) definition by
definition in float64. A definition that combines earlier names by sums and quotients can cancel:
the 0/0 quotients near z = 0 (a Taylor series about 0 covers a disc |z| < r there), and also
well beyond r, where numerator and denominator are sums of O(1) terms whose result is many
orders smaller, or where a later definition amplifies its inputs' rounding (res_5s's a_52 lost
3 digits for 2 < |z| < 20 and was given series about -9/2 and -27/2 by hand; the general 7-stage
order-5 program lost 4 digits in a_54 at z = -2.25 through its input a_52; the 10-stage order-6
program 6 digits at z = -1.22, just outside its series about 0).

This module finds those losses and covers them, for any program:

- :func:`float64_errors`: every definition's error when the whole program runs in float64 as
  the generated code runs it (each definition from the float64 values of its inputs, from its
  Taylor polynomial where one of its discs holds z; the definitions free of names in the code
  generator's cancellation-free forms, psi_j(c z) correctly rounded), relative
  to max(|value|, 1e-6 max over the grid), at real z on a grid of [lowest, 0) (steps of 1/8
  and log-spaced points down to -1e-8);
- :func:`accuracy_expansions`: the definitions are taken in program order; one whose error
  exceeds 3e-14 at a point where its value is used (it is a coefficient of the method, or a
  definition using it takes its formula there) gets Taylor discs, greedily from the bad point
  nearest 0 outward: the widest radius of 8, 6, 4, 3, 2, 3/2, 1, 1/2 whose disc (about 0 when
  the bad point is within r/4 of it, else centered on a grid of r/4 with the bad point near its
  right edge) has coefficients with a tail below 1e-17
  (the program's power series about that center in ball arithmetic,
  :func:`~phiforge.derive.straightline.taylor_about`) and a float64 Horner
  value within the tolerance at every grid point it covers. A series is computed from exact
  values, so it repairs its definition whatever its inputs' errors; comparing it with the exact
  values at the points it covers also refuses a disc that reaches past a singularity (where the
  tail test alone could be fooled by a truncated series). Points that no disc repairs are
  returned as residuals.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import mpmath
import sympy

from phiforge.derive.errors import InputError
from phiforge.derive.phi_values import mp_phi
from phiforge.derive.straightline import (
    COVERED_LOWEST,
    Definition,
    Expansion,
    evaluate_program,
    taylor_about,
)
from phiforge.derive.tableau import Z

__all__ = ["Residual", "accuracy_expansions", "float64_errors"]

#: the float64 error (relative to max(|value|, 1e-6 of its largest)) every used value must meet;
#: 1e-13 until 2026-12-06, when 3e-14 made res_6s's coefficients 3x (norm-wise) and 5x
#: (entry-wise over entries >= 1e-3 of their row) more accurate at 97 discs instead of 77, and
#: the general res_5s more accurate than the hand-built one on both measures
TOLERANCE = 3e-14
_RADII = tuple(Fraction(r) for r in ("8", "6", "4", "3", "2", "3/2", "1", "1/2"))
_DEGREES = (20, 30, 40, 50, 60)


@dataclass(frozen=True)
class Residual:
    """A definition still above the tolerance at z after the cover (no disc repaired it)."""

    name: str
    z: float
    error: float


def _grid(lowest: float) -> list[float]:
    """z in [lowest, 0): steps of 1/8 and 33 log-spaced points in [-1, -1e-8] (h down to 1e-8:
    a coefficient of order z computed from O(1) terms loses digits relative to itself there)."""
    steps = [-k / 8 for k in range(1, int(-lowest * 8) + 1)]
    near = [-(10 ** (-8 + k / 4)) for k in range(33)]
    return sorted(set(steps + near), key=abs)


def _digits(z: float) -> int:
    """Working digits for the exact values at z: 40, plus 16 per decade of |z| below 1 (a
    definition that is 0/0 at 0 to order v loses v digits per decade; v <= 16 here)."""
    return 40 + int(16 * max(0.0, -math.log10(abs(z))))


@functools.lru_cache(maxsize=8192)
def _float_phi(k: Any, x: float) -> float:
    """phi_k(x), correctly rounded (:func:`~phiforge.derive.phi_values.mp_phi` at 30
    digits)."""
    with mpmath.workdps(30):
        return float(mp_phi(k, mpmath.mpf(x)))


@functools.lru_cache(maxsize=1024)
def _float_function(expr: sympy.Expr, names: tuple[sympy.Symbol, ...]) -> Any:
    return sympy.lambdify([Z, *names], expr, modules=[{"phi": _float_phi}, "math"])


@functools.lru_cache(maxsize=8192)
def _float_psi(j: Any, x: float) -> float:
    """psi_j(x) = j! e^x phi_(j+1)(-x), correctly rounded."""
    with mpmath.workdps(30):
        x = mpmath.mpf(x)
        return float(mpmath.factorial(int(j)) * mpmath.exp(x) * mp_phi(int(j) + 1, -x))


@functools.lru_cache(maxsize=1024)
def _emitted(expr: sympy.Expr) -> Any:
    """A name-free definition in float64 as the code generator emits it
    (:func:`~phiforge.derive.codegen.name_free_form`), each phi and psi value correctly
    rounded."""
    from phiforge.derive.codegen import name_free_form

    form = name_free_form(expr, "z <= 0")
    return sympy.lambdify([Z], form, modules=[{"phi": _float_phi, "psi": _float_psi}, "math"])


def _horner(coefficients: list[float], x: float) -> float:
    value = 0.0
    for q in reversed(coefficients):
        value = value * x + q
    return value


def _inside(expansion: Expansion, z: float) -> bool:
    return abs(z - float(expansion.center)) < float(expansion.radius)


def _names_used(definition: Definition) -> set[str]:
    return {str(symbol) for symbol in definition.expr.free_symbols} - {"z"}


class _Study:
    """A program's exact values on the grid (40 digits, more below |z| = 1: :func:`_digits`),
    and its float64 runs."""

    def __init__(self, definitions: tuple[Definition, ...], lowest: float) -> None:
        self.definitions = definitions
        self.grid = _grid(lowest)
        self.names = tuple(sympy.Symbol(d.name) for d in definitions)
        self.exact = []
        for z in self.grid:
            with mpmath.workdps(_digits(z)):
                self.exact.append(evaluate_program(definitions, mpmath.mpf(z)))
        self.scale = {
            d.name: max(abs(values[d.name]) for values in self.exact) for d in definitions
        }
        self._constants: dict[tuple[str, Expansion], list[float]] = {}

    def error(self, name: str, index: int, value: float) -> float:
        exact = self.exact[index][name]
        floor = mpmath.mpf(10) ** -6 * self.scale[name]
        if not math.isfinite(value):
            return math.inf
        return float(abs(value - exact) / max(abs(exact), floor)) if floor else 0.0

    def series_value(self, name: str, expansion: Expansion, z: float) -> float:
        key = (name, expansion)
        if key not in self._constants:
            self._constants[key] = taylor_about(self.definitions, name, expansion)
        return _horner(self._constants[key], z - float(expansion.center))

    def run(self, program: dict[str, Definition], index: int) -> dict[str, float]:
        """Every definition's float64 value at grid point ``index``, as the module computes it."""
        z = self.grid[index]
        values: dict[str, float] = {}
        for definition in self.definitions:
            current = program[definition.name]
            disc = next((e for e in current.series if _inside(e, z)), None)
            if disc is not None:
                value = self.series_value(current.name, disc, z)
            elif not _names_used(current):
                # as the generated code writes it: phi-linear forms in psi_j(c z) (its sums of
                # large coefficients still cancel: 250 ulps in res_6s's n25_2 at z = -2.75)
                value = _emitted(current.expr)(z)
            else:
                function = _float_function(current.expr, self.names)
                arguments = [values.get(d.name, 0.0) for d in self.definitions]
                try:
                    value = float(function(z, *arguments))
                except (ZeroDivisionError, OverflowError, ValueError):
                    value = math.inf
            values[current.name] = value
        return values

    def errors(self, program: dict[str, Definition]) -> dict[str, list[float]]:
        runs = [self.run(program, i) for i in range(len(self.grid))]
        return {
            d.name: [self.error(d.name, i, run[d.name]) for i, run in enumerate(runs)]
            for d in self.definitions
        }

    def used(self, program: dict[str, Definition], outputs: Any) -> dict[str, list[bool]]:
        """Where each value is used: it is an output, or a user takes its formula there."""
        users: dict[str, list[str]] = {d.name: [] for d in self.definitions}
        for d in self.definitions:
            for name in _names_used(d):
                users[name].append(d.name)
        used: dict[str, list[bool]] = {}
        for d in reversed(self.definitions):
            used[d.name] = [
                d.name in outputs
                or any(
                    used[u][i] and not any(_inside(e, z) for e in program[u].series)
                    for u in users[d.name]
                )
                for i, z in enumerate(self.grid)
            ]
        return used


def float64_errors(
    definitions: tuple[Definition, ...] | list[Definition],
    outputs: list[str] | tuple[str, ...],
    lowest: float = COVERED_LOWEST,
) -> dict[str, tuple[float, float]]:
    """For each definition whose value is used somewhere on the grid of [lowest, 0): (worst
    float64 error of the whole-program run where it is used, the z where it occurs)."""
    study = _Study(tuple(definitions), lowest)
    program = {d.name: d for d in study.definitions}
    errors, used = study.errors(program), study.used(program, outputs)
    result = {}
    for d in study.definitions:
        where = [i for i in range(len(study.grid)) if used[d.name][i]]
        if where:
            worst = max(where, key=errors[d.name].__getitem__)
            result[d.name] = (errors[d.name][worst], study.grid[worst])
    return result


def _disc(study: _Study, name: str, z_bad: float, radius: Fraction, used: list[bool]) -> Any:
    """An expansion of ``name`` of the given radius holding z_bad whose float64 Horner value
    meets the tolerance at every used grid point it covers, or None: about 0 when z_bad is
    within r/4 of it (a value of order z^k near 0 is accurate relative to itself only from its
    series about 0), else about a center with z_bad near the disc's right edge."""
    step = radius / 4  # centers on a grid of r/4: nearby bad points share a center's series
    centers = [Fraction(0)] if abs(z_bad) < step else []
    lattice = round(Fraction(z_bad) / step - 3) * step
    if lattice < 0 and abs(z_bad - float(lattice)) < float(radius):
        centers.append(lattice)
    for center in centers:
        expansion = next(
            (e for degree in _DEGREES if (e := _expansion(study, name, center, radius, degree))),
            None,
        )
        if expansion is None:
            continue
        covered = [i for i, z in enumerate(study.grid) if used[i] and _inside(expansion, z)]
        if all(
            study.error(name, i, study.series_value(name, expansion, study.grid[i])) <= TOLERANCE
            for i in covered
        ):
            return expansion
    return None


def _expansion(
    study: _Study, name: str, center: Fraction, radius: Fraction, degree: int
) -> Expansion | None:
    """The expansion if its series leaves a tail below 1e-17 on the disc, else None."""
    expansion = Expansion(sympy.Rational(center), sympy.Rational(radius), degree)
    try:
        taylor_about(study.definitions, name, expansion)
    except InputError:
        return None
    return expansion


def accuracy_expansions(
    definitions: tuple[Definition, ...] | list[Definition],
    outputs: list[str] | tuple[str, ...],
    lowest: float = COVERED_LOWEST,
) -> tuple[dict[str, tuple[Expansion, ...]], list[Residual]]:
    """Expansions (per definition, to append after its own) that bring the float64 error of
    every value of the program below 3e-14 wherever it is used on [lowest, 0)
    (:func:`float64_errors`; ``outputs``: the method's coefficients), and the points where no
    Taylor disc can. The centers chosen are <= 0."""
    study = _Study(tuple(definitions), lowest)
    program = {d.name: d for d in study.definitions}
    used = study.used(program, outputs)
    added: dict[str, tuple[Expansion, ...]] = {}
    residuals: list[Residual] = []
    given_up: dict[str, set[int]] = {d.name: set() for d in study.definitions}
    errors = study.errors(program)
    for definition in study.definitions:
        name = definition.name
        while True:
            current = program[name]
            bad = [
                i
                for i, z in enumerate(study.grid)
                if used[name][i]
                and i not in given_up[name]
                and not any(_inside(e, z) for e in current.series)
                and errors[name][i] > TOLERANCE
            ]
            if not bad:
                break
            z_bad = study.grid[bad[0]]  # the grid is sorted by |z|: the bad point nearest 0
            found = next(
                (e for r in _RADII if (e := _disc(study, name, z_bad, r, used[name])) is not None),
                None,
            )
            if found is None:
                residuals.append(Residual(name, z_bad, errors[name][bad[0]]))
                given_up[name].add(bad[0])
                continue
            program[name] = Definition(name, current.expr, (*current.series, found))
            added[name] = (*added.get(name, ()), found)
            errors = study.errors(program)
    return added, residuals
