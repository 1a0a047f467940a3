"""The 7-stage straight-line method of scalar stiff order 5 (res_5s): construction, exactness,
its removable singularity, and the accuracy of its generated coefficients."""

import importlib
from fractions import Fraction

import mpmath
import pytest
import sympy

from phiforge.derive.check import check_tableau
from phiforge.derive.errors import InputError
from phiforge.derive.phibasis import coefficient_function, ring_for
from phiforge.derive.plan import plan_entries
from phiforge.derive.registry import load_record, program_from_record, tableau_from_record
from phiforge.derive.straightline import Definition, compose, construct_scalar_order5
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


def test_bad_series_parameters_are_refused():
    with pytest.raises(InputError, match="series_degree"):
        construct_scalar_order5(NODES, series_degree=0)
    with pytest.raises(InputError, match="series_below"):
        construct_scalar_order5(NODES, series_below=-1)


def test_compose_refuses_a_name_used_before_its_definition():
    with pytest.raises(InputError, match="before it is defined"):
        compose([Definition("x", sympy.Symbol("y") + 1)])


def _mp_phi(k, x):
    return mpmath.hyp1f1(1, k + 1, x) / mpmath.factorial(k)


def _program_values(definitions, z):
    """The straight-line program evaluated at 80 digits (exact arithmetic of the record)."""
    names = [sympy.Symbol(d.name) for d in definitions]
    values: list = []
    for definition in definitions:
        function = sympy.lambdify(
            [Z, *names], definition.expr, modules=[{"phi": _mp_phi}, "mpmath"]
        )
        values.append(function(z, *values, *[0] * (len(names) - len(values))))
    return dict(zip([d.name for d in definitions], values, strict=True))


def test_generated_coefficients_match_the_exact_program():
    """Measured worst relative error 1.2e-10 (a_51 at z = -20: the phi-linear b_i cancel like
    1/z^2 at large |z|); for |z| < 1 every entry is within 1e-13 (Taylor branch of a_52)."""
    mpmath.mp.dps = 80
    record = load_record("res_5s")
    definitions = program_from_record(record)
    module = importlib.import_module("phiforge.generated.res_5s")
    nodes = [sympy.Rational(c) for c in record["nodes"]]
    worst_small, worst = 0.0, 0.0
    for h in [1e-8, 3e-6, 1e-3, 0.05, 0.4, 0.99, 1.0, 1.01, 2.7, 7.5, 20.0]:
        z = -h
        exact = _program_values(definitions, mpmath.mpf(z))
        a, b = module.coefficients(z)
        pairs = []
        for i in range(2, 8):
            names = [record["coefficients"]["a"][f"{i},{m}"] for m in range(2, i)]
            row = sum(exact[n] for n in names if n != "0")
            pairs.append((a[i - 1][0], nodes[i - 1] * _mp_phi(1, nodes[i - 1] * z) - row))
            pairs.extend((a[i - 1][m - 1], exact[n]) for m, n in enumerate(names, 2) if n != "0")
        names = [record["coefficients"]["b"][str(i)] for i in range(1, 8)]
        pairs.extend((b[i], exact[n]) for i, n in enumerate(names) if n != "0")
        error = max(float(abs(got - ref) / abs(ref)) for got, ref in pairs)
        worst = max(worst, error)
        if h < 1:
            worst_small = max(worst_small, error)
    assert worst_small < 2e-13
    assert worst < 3e-10


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
