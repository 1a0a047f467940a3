"""The 7-stage straight-line method of scalar stiff order 5 (res_5s): construction, exactness,
its removable singularity, and the accuracy of its generated coefficients."""

import importlib
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import sympy

from phiforge.derive.check import check_tableau
from phiforge.derive.errors import InputError
from phiforge.derive.phi import phi
from phiforge.derive.plan import plan_entries
from phiforge.derive.registry import checked_method_from_record, load_record, program_from_record
from phiforge.derive.straightline import (
    Definition,
    Expansion,
    compose,
    evaluate_program,
    expansions,
    program_taylor,
    singular_at_zero,
    taylor_about,
)
from phiforge.derive.tableau import Z

NODES = plan_entries()["res_5s"]["nodes"]


@pytest.fixture(scope="module")
def method():
    """res_5s as registered: the general construction's straight-line program (54 definitions,
    read by the checker as it stands)."""
    return checked_method_from_record(load_record("res_5s"))


def test_every_scalar_condition_up_to_order_5_holds_exactly(method):
    report = check_tableau(method, 5, "scalar")
    assert report.verdict_row() == "S" * 16
    assert report.stiff_order == 5


def test_the_operator_setting_is_not_order_5(method):
    # products of coefficients at one z cancel only when L is a scalar
    assert check_tableau(method, 5, "operator").stiff_order == 3


def test_structure_b2_b3_zero_and_a63_free(method):
    assert method.b_entry(2) == 0 and method.b_entry(3) == 0
    assert method.a_entry(6, 3) == 0
    assert method.at_zero()[1] == pytest.approx([7 / 90, 0, 0, 32 / 90, 12 / 90, 32 / 90, 7 / 90])


def test_a52_has_a_removable_singularity_at_zero(method):
    """a_52's divisor vanishes at z = 0 (the classical limit leaves a_52 out of its condition):
    the program divides 0 by 0 there, and the series through the program resolves it."""
    assert singular_at_zero(method.definitions) == ["a5_2"]
    assert program_taylor(method.definitions, "a5_2", 3) == [
        0, Fraction(-3, 40), Fraction(-53, 2400), Fraction(-81071, 16128000)
    ]  # fmt: skip


def test_program_taylor_refuses_a_pole_at_zero():
    program = [Definition("g", 1 / (Z * phi(1, Z)))]
    with pytest.raises(InputError, match="singular at z = 0"):
        program_taylor(program, "g", 4)


# res_5s's coefficients at z = -7/3 (40 digits, rounded) as the one-method construction of
# commits up to 2026-12-06 built them (stage order 3, b_2 = b_3 = 0, R1..R5 by small linear
# solves, a_63 = 0): the general construction that replaced it gives the same method
HAND_BUILT_A = {
    "2,1": 0.23167464684174574, "3,1": -0.08431551457086388, "3,2": 0.42242747694611094,
    "4,1": 0.09295066858272098, "4,2": 0.11502876368898154, "4,3": -0.018565923316008415,
    "5,1": 0.019625804713574866, "5,2": 0.09715078542751812, "5,3": 0.026018596311605392,
    "5,4": 0.1523177175839026, "6,1": 0.08608113470662988, "6,2": -0.1357217557491244,
    "6,3": 0.0, "6,4": -0.052178396651286756, "6,5": 0.45591589907216196,
    "7,1": -0.28544863402206005, "7,2": 0.26201564492854756, "7,3": 0.011957235239335267,
    "7,4": 0.8731922549436746, "7,5": -1.22051760095008, "7,6": 0.7458131136329803,
}  # fmt: skip
HAND_BUILT_B = {
    "1": 0.0049460727461631505, "2": 0.0, "3": 0.0, "4": 0.07400050036879925,
    "5": 0.01960357428183176, "6": 0.21621856661613087, "7": 0.07224329975947279,
}  # fmt: skip


def test_the_general_construction_gives_the_hand_built_method():
    record = load_record("res_5s")
    with mpmath.workdps(40):
        values = evaluate_program(program_from_record(record), mpmath.mpf(-7) / 3)
    for part, reference in (("a", HAND_BUILT_A), ("b", HAND_BUILT_B)):
        for key, expected in reference.items():
            name = record.coefficients[part][key]
            got = float(values[name]) if name != "0" else 0.0
            assert got == pytest.approx(expected, rel=1e-15, abs=1e-300), (part, key)
    assert record["domain"] == "z <= 0" and record.provenance["free_parameters"] == {"a6_3": "0"}


@pytest.mark.parametrize(
    ("series", "message"),
    [
        ([("0", "1", 0)], "degree"),
        ([("0", "-1", 40)], "radius"),
        ([("1/2", "1", 40)], "center"),
        ("0, 1, 40", "triples"),
        ([], "at least one"),
    ],
)
def test_bad_series_parameters_are_refused(series, message):
    with pytest.raises(InputError, match=message):
        expansions(series)


def test_taylor_about_a_center_matches_the_derivatives():
    """The power series about -3 (ball arithmetic) reproduces phi_1's Taylor series there."""
    program = [Definition("g", phi(1, Z))]
    got = taylor_about(program, "g", Expansion(sympy.Integer(-3), sympy.Integer(2), 30))
    with mpmath.workdps(40):
        exact = mpmath.taylor(lambda x: mpmath.expm1(x) / x, -3, 30)
    assert max(abs(g - float(e)) / abs(float(e)) for g, e in zip(got, exact, strict=True)) < 1e-14


def test_taylor_about_refuses_a_degree_that_leaves_a_tail():
    program = [Definition("g", phi(1, Z))]
    with pytest.raises(InputError, match="raise the degree"):
        taylor_about(program, "g", Expansion(sympy.Integer(-3), sympy.Integer(2), 5))


def test_compose_refuses_a_name_used_before_its_definition():
    with pytest.raises(InputError, match="before it is defined"):
        compose([Definition("x", sympy.Symbol("y") + 1)])


def _mp_phi(k, x):
    return mpmath.hyp1f1(1, k + 1, x) / mpmath.factorial(k)


# h in [1e-8, 20]: 60 log-spaced points and every 1/4 from 1/2 to 20 (the series discs of a_52
# end at |z| = 2, 7.25 and 20.25).
GRID = sorted({*(10 ** (-8 + 9.30103 * k / 59) for k in range(60)), *(k / 4 for k in range(2, 81))})


def _errors_against_the_program(name: str) -> tuple[float, float, float]:
    """Worst norm-wise (an entry's error over its row's largest entry), entry-wise relative, and
    entry-wise relative over entries >= 1e-3 of their row, of the generated coefficients against
    the record's program at 60 digits, z = -h on GRID."""
    record = load_record(name)
    definitions = program_from_record(record)
    module = importlib.import_module(f"phiforge.generated.{name}")
    s = record["stages"]
    entrywise, large, normwise = 0.0, 0.0, 0.0
    with mpmath.workdps(60):
        for h in GRID:
            z = -h
            exact = evaluate_program(definitions, mpmath.mpf(z))
            a, b = module.coefficients(z)
            rows = []
            for i in range(2, s + 1):
                names = [record["coefficients"]["a"][f"{i},{m}"] for m in range(1, i)]
                rows.append((a[i - 1], [exact[n] if n != "0" else 0 for n in names]))
            names = [record["coefficients"]["b"][str(i)] for i in range(1, s + 1)]
            rows.append((b, [exact[n] if n != "0" else 0 for n in names]))
            for got, reference in rows:
                scale = max(abs(r) for r in reference)
                for g, r in zip(got, reference, strict=True):
                    normwise = max(normwise, float(abs(g - r) / scale))
                    if r != 0:
                        entrywise = max(entrywise, float(abs(g - r) / abs(r)))
                    if abs(r) >= scale / 1000:
                        large = max(large, float(abs(g - r) / abs(r)))
            # the first column is the program's own definition; it equals the row-sum identity
            row = [exact.get(record["coefficients"]["a"][f"{s},{m}"], 0) for m in range(1, s)]
            assert abs(mpmath.fsum(row) - _mp_phi(1, mpmath.mpf(z))) < 1e-50
    return normwise, entrywise, large


def test_generated_coefficients_match_the_exact_program():
    """res_5s (the general construction's program, the float64 cover's 25 discs at 3e-14),
    measured: norm-wise worst 2.1e-14 (b_6 at h = 0.029), entry-wise 3.8e-14 (b_7 at
    h = 0.0023). The hand-built recipe it replaced: 4.5e-14 and 2.4e-13 (a_62 at h = 5.25, near
    its sign change); before psi forms and a_52's series, 1.6e-11 and 2.3e-10."""
    normwise, entrywise, _ = _errors_against_the_program("res_5s")
    assert normwise < 5e-14
    assert entrywise < 1e-13


def test_generated_coefficients_of_res_6s_match_the_exact_program():
    """res_6s (143 definitions; 97 discs at the cover's 3e-14: series about 0, about -139/64
    over the removable zero at z = -2.1704, and the cover's), measured: norm-wise and
    entry-wise worst 4.4e-14 (b_7 at h = 4.2e-5). At the cover's 1e-13: 1.3e-13 norm-wise
    (a_10,6 at h = 1.10) and 2.2e-13 entry-wise over entries >= 1e-3 of their row; before the
    cover: 3.3e-10 norm-wise at h = 1.22, just outside the series about 0."""
    normwise, entrywise, large = _errors_against_the_program("res_6s")
    assert normwise < 1e-13
    assert large < 1e-13 and entrywise < 1e-13


@pytest.mark.parametrize("name", ["res_5s", "res_6s"])
def test_coefficients_below_the_float64_domain_come_from_the_exact_program(name):
    """Below FLOAT64_DOWN_TO (-20) the module runs its exact definitions in mpmath
    (runtime.precise). Before: res_6s's float64 program was 6e-11 off at z = -32.6, 5e-8 at
    -85, 7 (relative) at -1857, and divided by 0 beyond; res_5s 6e-4 at -1e6. Now every entry
    is within 1e-15 of the program in ball arithmetic, out to -1e9."""
    from phiforge.derive.program_check import as_program
    from phiforge.derive.registry import checked_method_from_record

    module = importlib.import_module(f"phiforge.generated.{name}")
    assert module.FLOAT64_DOWN_TO == -20.0
    zs = [-20.5, -32.6, -85.0, -1857.0, -2e4, -1e6, -1e9]
    exact_a, exact_b = as_program(checked_method_from_record(load_record(name))).coefficient_arrays(
        np.array(zs)
    )
    for k, z in enumerate(zs):
        a, b = module.coefficients(z)
        largest = max(abs(v[k]) for v in (*exact_a.values(), *exact_b.values()))
        for (i, j), v in exact_a.items():
            assert abs(a[i - 1][j - 1] - v[k]) <= 1e-15 * max(abs(v[k]), 1e-3 * largest), (z, i, j)
        for i, v in exact_b.items():
            assert abs(b[i - 1] - v[k]) <= 1e-15 * max(abs(v[k]), 1e-3 * largest), (z, i)


def test_precise_coefficients_refuse_a_program_that_never_settles():
    from phiforge.runtime.precise import precise_coefficients

    def dividing_by_zero(z, mpf, phi):
        return ((0.0,), (phi(1, z) / (z - z), 0.0)), (phi(1, z),)

    with pytest.raises(InputError, match="parameter 'z'"):
        precise_coefficients(dividing_by_zero, -30.0)


def test_coefficients_outside_the_domain_are_refused():
    module = importlib.import_module("phiforge.generated.res_5s")
    with pytest.raises(ValueError, match="z <= 0"):
        module.coefficients(0.5)


def test_noise_prediction_is_refused_by_the_driver():
    import torch

    from phiforge.runtime.driver import sample
    from phiforge.runtime.errors import InputError as RuntimeInputError

    with pytest.raises(RuntimeInputError, match="prediction"):
        sample(
            lambda x, s: x, torch.zeros(1, 2), "edm", method="res_5s", steps=2, prediction="noise"
        )


def test_divisor_signs_are_decided_in_ball_arithmetic():
    """pivot_sign_changes reads signs from balls that exclude 0 (0 where the value is 0)."""
    from phiforge.derive.straightline import _signs, pivot_sign_changes

    d = Definition("d", Z + sympy.Rational(1, 2))
    points = [Fraction(-1), Fraction(-1, 2), Fraction(-1, 4)]
    assert _signs([d], ["d"], points)["d"] == [-1, 0, 1]
    program = [Definition("d", Z + sympy.Rational(3, 16)), Definition("q", 1 / sympy.Symbol("d"))]
    ((name, left, right),) = pivot_sign_changes(program)
    assert name == "d" and left < -3 / 16 < right and right - left < 0.04


def test_divisor_zeros_far_below_the_covered_range_are_found_and_classified():
    """The scan covers [-1e15, -20) on a log grid too: phi_1(z) - 1e-6 vanishes at
    z = -1e6 (1 - e^(-1e6)) (phi_1(z) = (e^z - 1)/z), a pole of 1/d and a removable zero of n/d
    with n = d."""
    from phiforge.derive.straightline import pivot_sign_changes, program_singularities

    d = Definition("d", phi(1, Z) - sympy.Rational(1, 10**6))
    pole = [d, Definition("q", 1 / sympy.Symbol("d"))]
    n = Definition("n", phi(1, Z) - sympy.Rational(1, 10**6))
    removable = [d, n, Definition("q", sympy.Symbol("n") / sympy.Symbol("d"))]
    assert pivot_sign_changes(pole) == []  # [-20, 0) only, as before
    ((name, left, right),) = pivot_sign_changes(pole, far=-1e15)
    assert name == "d" and left < -1e6 < right and right / left > 0.7
    (found,) = program_singularities(pole, ["q"])
    assert found.pole == "q" and found.z == pytest.approx(-1e6, rel=1e-15)
    (found,) = program_singularities(removable, ["q"])
    assert found.pole is None and found.z == pytest.approx(-1e6, rel=1e-15)
    assert program_singularities(pole, ["q"], far=None) == []


def test_zeros_without_a_sign_change_at_the_grid_points_are_found():
    """pivot_double_zeros: where |divisor| has a minimum inside a grid cell (its derivative,
    in dual numbers, changes sign), a double zero (phi_1(z) - 1/2)^2 at z = -1.5936 and two
    zeros in the cell (-1.125, -1) of (z + 1.01)(z + 1.04) are found, which no sign change at
    the grid's points shows, and classified: a pole of 1/d, removable in n/d."""
    from phiforge.derive.straightline import (
        pivot_double_zeros,
        pivot_sign_changes,
        program_singularities,
    )

    half = sympy.Rational(1, 2)
    square = Definition("d", (phi(1, Z) - half) ** 2)
    pole = [square, Definition("q", 1 / sympy.Symbol("d"))]
    removable = [square, Definition("n", phi(1, Z) - half),
                 Definition("q", sympy.Symbol("n") ** 2 / sympy.Symbol("d"))]  # fmt: skip
    assert pivot_sign_changes(pole) == []
    ((name, left, minimum, right, kind),) = pivot_double_zeros(pole)
    assert (name, kind) == ("d", 0) and left < minimum < right
    assert float(minimum) == pytest.approx(-1.5936242600400, abs=1e-12)
    (found,) = program_singularities(pole, ["q"])
    assert found.pole == "q" and found.z == pytest.approx(-1.59362426004004, abs=1e-13)
    (found,) = program_singularities(removable, ["q"])
    assert found.pole is None and found.z == pytest.approx(-1.59362426004004, abs=1e-13)
    pair = Definition("d", (Z + sympy.Rational(101, 100)) * (Z + sympy.Rational(104, 100)))
    program = [pair, Definition("q", 1 / sympy.Symbol("d"))]
    assert pivot_sign_changes(program) == []
    ((name, left, minimum, right, kind),) = pivot_double_zeros(program)
    assert kind == -1 and (left, right) == (-1.125, -1.0)
    assert float(minimum) == pytest.approx(-1.025, abs=1e-15)
    found = program_singularities(program, ["q"])
    assert sorted(s.z for s in found) == pytest.approx([-1.04, -1.01], abs=1e-15)
    assert all(s.pole == "q" for s in found)
    # a minimum above 0 is no zero: (phi_1(z) - 1/2)^2 + 1/10^6
    lifted = [Definition("d", (phi(1, Z) - half) ** 2 + sympy.Rational(1, 10**6)),
              Definition("q", 1 / sympy.Symbol("d"))]  # fmt: skip
    assert [kind for *_, kind in pivot_double_zeros(lifted)] == [1]
    assert program_singularities(lifted, ["q"]) == []


def test_a_removable_zero_inside_a_disc_already_placed_needs_no_other():
    """Two removable zeros 0.11 apart (phi_1(z) = 1/2 at z = -1.5936, phi_1(z) = 12/25 at
    z = -1.7044): the disc placed for the first holds the second, so the divider q = n/d
    gets no second disc (res_6s: d31's zero at -2.2256 in the disc of d26's at -2.1704)."""
    from phiforge.derive.straightline import program_singularities, removable_expansions

    first = phi(1, Z) - sympy.Rational(1, 2)
    second = phi(1, Z) - sympy.Rational(12, 25)
    program = [Definition("d", first * second), Definition("n", sympy.expand(first * second)),
               Definition("q", sympy.Symbol("n") / sympy.Symbol("d"))]  # fmt: skip
    found = sorted(program_singularities(program, ["q"]), key=lambda s: -s.z)
    assert [s.pole for s in found] == [None, None]
    assert [round(s.z, 4) for s in found] == [-1.5936, -1.7044]
    placed = removable_expansions(program, found[0])
    (disc,) = placed.values()
    assert set(placed) == {"q"} and abs(found[1].z - float(disc.center)) < disc.radius
    assert removable_expansions(program, found[1], {"q": (disc,)}) == {}
    assert set(removable_expansions(program, found[1])) == {"q"}  # without it, its own disc
