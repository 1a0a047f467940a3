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
from phiforge.derive.phibasis import coefficient_function, ring_for
from phiforge.derive.plan import plan_entries
from phiforge.derive.registry import load_record, program_from_record, tableau_from_record
from phiforge.derive.straightline import (
    Definition,
    Expansion,
    compose,
    construct_scalar_order5,
    evaluate_program,
    program_taylor,
    taylor_about,
)
from phiforge.derive.tableau import Z

NODES = plan_entries()["res_5s"]["nodes"]


@pytest.fixture(scope="module")
def method():
    return construct_scalar_order5(NODES, name="res_5s_test")


def test_every_scalar_condition_up_to_order_5_holds_exactly(method):
    report = check_tableau(method.tableau, 5, "scalar")
    assert report.verdict_row() == "S" * 16
    assert report.stiff_order == 5


def test_the_operator_setting_is_not_order_5(method):
    # products of coefficients at one z cancel only when L is a scalar
    assert check_tableau(method.tableau, 5, "operator").stiff_order == 3


def test_structure_b2_b3_zero_and_a63_free(method):
    tableau = method.tableau
    assert tableau.b_entry(2) == 0 and tableau.b_entry(3) == 0
    assert tableau.a_entry(6, 3) == 0
    assert tableau.at_zero()[1] == pytest.approx([7 / 90, 0, 0, 32 / 90, 12 / 90, 32 / 90, 7 / 90])


def test_a52_has_a_removable_singularity_at_zero(method):
    values = compose(method.definitions)
    ring = ring_for([values["d52"]], Z)
    d52 = coefficient_function(values["d52"], Z, ring, "d52").taylor(3)
    n52 = coefficient_function(values["n52"], Z, ring, "n52").taylor(3)
    assert d52[:2] == [0, 0] and d52[2] != 0  # d_52 = O(z^2)
    assert n52[:3] == [0, 0, 0] and n52[3] != 0  # n_52 = O(z^3)
    a52 = coefficient_function(values["a52"], Z, ring, "a52").taylor(2)
    assert a52[0] == 0 and a52[1] == Fraction(-n52[3], d52[2]) == Fraction(-3, 40)
    # the same series by power-series arithmetic through the program (what the codegen uses)
    assert program_taylor(method.definitions, "a52", 2) == a52
    assert program_taylor(method.definitions, "d52", 3) == d52


def test_program_taylor_refuses_a_pole_at_zero():
    program = [Definition("g", 1 / (Z * phi(1, Z)))]
    with pytest.raises(InputError, match="singular at z = 0"):
        program_taylor(program, "g", 4)


def test_the_record_composes_to_the_constructed_tableau(method):
    record = load_record("res_5s")
    stored = tableau_from_record(record)
    for i in range(2, 8):
        for j in range(1, i):
            expr = stored.a_entry(i, j) - method.tableau.a_entry(i, j)
            assert sympy.N(expr.subs(Z, sympy.Rational(-7, 3)), 40) == pytest.approx(0, abs=1e-30)
    assert record["domain"] == "z <= 0"
    assert [d.name for d in program_from_record(record)][-1] == "a76"


@pytest.mark.parametrize(
    ("nodes", "parameter"),
    [
        (["0", "1/3", "2/3", "1/4", "1/2", "3/4"], "nodes"),
        (["0", "1/3", "1/3", "1/4", "1/2", "3/4", "1"], "nodes"),
        (["0", "1/3", "2/3", "1/4", "1/2", "1/2", "1"], "nodes"),
        (["1/9", "1/3", "2/3", "1/4", "1/2", "3/4", "1"], "nodes"),
    ],
)
def test_bad_nodes_are_refused(nodes, parameter):
    with pytest.raises(InputError, match=parameter):
        construct_scalar_order5(nodes)


@pytest.mark.parametrize(
    ("series", "message"),
    [
        ([("0", "1", 0)], "degree"),
        ([("0", "-1", 40)], "radius"),
        ([("1/2", "1", 40)], "center"),
        ([("-2", "1", 30)], "about 0"),
        ("0, 1, 40", "triples"),
        ([], "at least one"),
    ],
)
def test_bad_series_parameters_are_refused(series, message):
    with pytest.raises(InputError, match=message):
        construct_scalar_order5(NODES, series=series)


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
    """res_5s, measured: norm-wise worst 6.1e-14; entry-wise relative worst 2.4e-13 (a_62 at
    h = 5.25, near its sign change). The phi-linear definitions are evaluated in psi_j form and
    a_52 from its Taylor series about 0, -9/2 and -27/2; before both, the worst entry-wise error
    was 2.3e-10 (a_54 at h = 6.7) and norm-wise 1.6e-11."""
    normwise, entrywise, _ = _errors_against_the_program("res_5s")
    assert normwise < 2e-13
    assert entrywise < 1e-12


def test_generated_coefficients_of_res_6s_match_the_exact_program():
    """res_6s (143 definitions; series about 0, about -139/64 over the removable zero at
    z = -2.1704, and the float64 cover's discs), measured: norm-wise worst 1.3e-13 (a_10,6 at
    h = 1.10); entry-wise 2.2e-13 over entries >= 1e-3 of their row (a_86 at h = 9.68). Before
    the cover: 3.3e-10 norm-wise at h = 1.22, just outside the series about 0."""
    normwise, _, large = _errors_against_the_program("res_6s")
    assert normwise < 5e-13
    assert large < 1e-12


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
