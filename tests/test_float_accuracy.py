"""Float64 accuracy of straight-line programs: the whole-program error, and the Taylor discs that
repair it (phiforge.derive.float_accuracy); the numeric Taylor series about 0 used for the
generated constants."""

import math

import mpmath
import sympy

from phiforge.derive.float_accuracy import TOLERANCE, accuracy_expansions, float64_errors
from phiforge.derive.phi import phi
from phiforge.derive.registry import load_record, program_from_record
from phiforge.derive.straightline import (
    Definition,
    Expansion,
    program_series,
    program_taylor,
    taylor_about,
    with_series,
)
from phiforge.derive.tableau import Z

# q = (1 + z/10)^2 - (1 + z/5) = z^2/100: in float64 its two O(1) terms cancel for |z| < ~2
P = Definition("p", 1 + Z / 10)
Q = Definition("q", sympy.Symbol("p") ** 2 - (1 + Z / 5))


def _with(program, added):
    return tuple(Definition(d.name, d.expr, (*d.series, *added.get(d.name, ()))) for d in program)


def test_float64_errors_find_the_cancellation():
    error, z = float64_errors((P, Q), ["q"])["q"]
    # q = z^2/100 computed from terms of size 1: a relative error near 1e-16 / q
    assert 1e-12 < error < 1e-8
    assert -2 < z < 0


def test_the_cover_repairs_the_cancellation():
    added, residuals = accuracy_expansions((P, Q), ["q"])
    assert residuals == []
    assert set(added) == {"q"}
    assert all(e.center <= 0 and 0 < e.radius <= 8 for e in added["q"])
    error, _ = float64_errors(_with((P, Q), added), ["q"])["q"]
    assert error <= TOLERANCE


def test_a_value_unused_where_its_user_takes_a_series_is_left_alone():
    # r = q / w = 1/100 (w = z^2) is 0/0 at 0: with_series gives it a series about 0 (radius
    # 2), so q is used only where |z| >= 2, where it does not cancel
    w = Definition("w", Z**2)
    r = Definition("r", sympy.Symbol("q") / sympy.Symbol("w"))
    program = with_series((P, Q, w, r))
    assert program[3].series and program[3].series[0].radius == 2
    added, residuals = accuracy_expansions(program, ["r"])
    assert "q" not in added and residuals == []
    assert float64_errors(_with(program, added), ["r"])["r"][0] <= TOLERANCE


def test_a_point_next_to_a_pole_is_a_residual():
    # g = (e - 1) / (e - exp(-1/2 - 1e-9)), e = exp(z): a pole 1e-9 left of the grid point
    # z = -1/2, where the denominator cancels to 6e-10 (error ~1e-7). No disc of radius >= 1/2
    # holding -1/2 converges: its series' tail or its values at the covered points refuse it
    e = Definition("e", phi(0, Z))
    pole = sympy.exp(sympy.Rational(-1, 2) - sympy.Rational(1, 10**9))
    g = Definition("g", (sympy.Symbol("e") - 1) / (sympy.Symbol("e") - pole))
    added, residuals = accuracy_expansions((e, g), ["g"], lowest=-1.0)
    assert added == {}
    assert [(r.name, r.z) for r in residuals] == [("g", -0.5)]
    assert 1e-9 < residuals[0].error < 1e-5


def test_numeric_series_about_zero_equal_the_exact_ones():
    definitions = program_from_record(load_record("res_5s"))
    exact = program_series(definitions, 20)
    numeric = program_series(definitions, 20, digits=120)
    with mpmath.workdps(120):
        for name in ("a5_2", "d20", "n20_1", "a7_6"):
            for q, x in zip(exact[name], numeric[name], strict=True):
                assert abs(mpmath.mpf(q.numerator) / q.denominator - x) <= mpmath.mpf(10) ** -60
    # the generated constants: exact zeros stay 0.0, the others round like the exact rationals
    series = program_taylor(definitions, "a5_2", 40)
    constants = taylor_about(definitions, "a5_2", Expansion(sympy.Integer(0), sympy.Integer(1), 40))
    assert constants == [float(q) for q in series]
    assert constants[0] == 0.0 and math.copysign(1, constants[0]) == 1  # a_52(0) = 0
