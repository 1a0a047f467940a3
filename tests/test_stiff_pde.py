"""The operator-setting verdicts measured on stiff PDEs (derive.stiff_pde, verify --setting
operator): the heat equation with a nonlinear source, semi-discrete exact solutions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from phiforge.cli.main import main
from phiforge.derive.catalogue import catalogue_method
from phiforge.derive.errors import InputError
from phiforge.derive.phi_values import phi_numpy
from phiforge.derive.program_check import as_program
from phiforge.derive.registry import checked_method_from_record, load_registered
from phiforge.derive.stiff_pde import (
    DTYPE,
    heat_problem,
    observed_orders,
    solve,
    stiff_problem,
    study,
)
from phiforge.derive.straightline import Definition, evaluate_program, program_values
from phiforge.derive.tableau import Z

EXTENDED = np.finfo(DTYPE).eps < np.finfo(np.float64).eps


def test_phi_numpy_matches_the_definition():
    z = np.array([-1e5, -30.0, -1.5, -1.0, -0.3, -1e-6, 0.0, 0.5, 2.0])
    for k in range(5):
        expected = [
            float(sum(v**m / math.factorial(m + k) for m in range(80)))
            if abs(v) < 5
            else (math.exp(v) - sum(v**m / math.factorial(m) for m in range(k))) / v**k
            for v in z
        ]
        assert np.allclose(phi_numpy(k, z), expected, rtol=1e-13, atol=1e-300)


def test_semi_discrete_solution_is_exact_for_the_problems():
    """The sources make the known functions solve the semi-discrete systems: a fine solve with
    a fourth-order method reaches them to roundoff-level accuracy."""
    for name in ("heat-ho", "heat-compatible", "heat-nonstiff"):
        problem = stiff_problem(name)
        u = solve(catalogue_method("krogstad"), problem, 256)
        assert problem.error(u, 1.0) < 1e-10, name


@pytest.mark.parametrize(
    ("method", "low", "high"),
    [
        ("exp_euler", 0.8, 1.2),  # stiff 1 = classical 1
        ("etd2rk", 1.8, 2.2),  # stiff 2 = classical 2
        ("etd3rk", 1.8, 2.8),  # stiff 2, classical 3: reduced (measured 2.49)
        ("krogstad", 2.8, 4.2),  # stiff 3, classical 4 (measured 4.02)
    ],
)
def test_observed_order_on_the_stiff_problem_lies_between_stiff_and_classical(method, low, high):
    result = observed_orders(
        catalogue_method(method), stiff_problem("heat-ho"), steps=(16, 32, 64, 128)
    )
    assert low <= result["observed_order"] <= high, result


def test_order_reduction_shows_on_the_stiff_problem_only():
    """etd3rk satisfies the stiff conditions to order 2 only: order 3 on the non-stiff
    problem, about 2.5 on the stiff one (Hochbruck & Ostermann's example)."""
    method = catalogue_method("etd3rk")
    stiff = observed_orders(method, stiff_problem("heat-ho"), steps=(32, 64, 128, 256))
    nonstiff = observed_orders(method, stiff_problem("heat-nonstiff"), steps=(16, 32, 64))
    assert abs(nonstiff["observed_order"] - 3) < 0.1
    assert stiff["observed_order"] < 2.75


def test_cli_verify_operator_setting(capsys):
    code = main(
        ["verify", "--setting", "operator", "--problem", "heat-nonstiff", "exprk3s3_ho",
         "etdrk4_cox_matthews", "--steps", "16", "32", "64", "--format", "json"]
    )  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    (problem,) = result["problems"]
    assert code == 0 and problem["problem"] == "heat-nonstiff" and problem["norm_L"] < 1
    by_name = {m["name"]: m for m in problem["methods"]}
    assert abs(by_name["exprk3s3_ho"]["observed_order"] - 3) < 0.2
    assert abs(by_name["etdrk4_cox_matthews"]["observed_order"] - 4) < 0.2
    assert by_name["etdrk4_cox_matthews"]["stiff"] == 2 and all(
        m["agrees"] for m in by_name.values()
    )
    # a method without an exponential treatment of L blows up on the stiff problem: named
    code = main(["verify", "--setting", "operator", "--problem", "heat-ho", "edm_heun",
                 "--steps", "16", "32", "64", "--strict"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1 and "edm_heun on heat-ho: unstable" in captured.err


def test_bad_operator_inputs(capsys):
    code = main(["verify", "--setting", "operator", "--problem", "gmm"])
    assert code == 2 and "heat-ho" in capsys.readouterr().err
    code = main(["verify", "krogstad", "--setting", "operator", "--nfe", "10"])
    assert code == 2 and "--nfe" in capsys.readouterr().err
    with pytest.raises(InputError, match="problem"):
        stiff_problem("wave")
    with pytest.raises(InputError, match="steps"):
        solve(catalogue_method("krogstad"), stiff_problem("heat-ho"), 0)


@settings(max_examples=6, deadline=None, derandomize=True)
@given(
    kind=st.sampled_from(["ho", "compatible"]),
    n=st.integers(min_value=60, max_value=240),
    eps=st.floats(min_value=0.3, max_value=3.0),
    name=st.sampled_from(["exp_euler", "etd2rk", "exprk3s3_ho", "krogstad"]),
)
def test_derived_stiff_order_holds_over_problem_parameters(kind, n, eps, name):
    """Property: on any stiff heat problem of the family (grid, diffusion, source), the observed
    order reaches the derived operator stiff order (within 0.2), the bound that holds whatever
    ||L|| is. (No upper bound: over coarse sweeps the error constant still changes, e.g.
    etd2rk shows 2.49 on 'compatible' with n = 60 between N = 16 and 64, falling towards 2.)"""
    from phiforge.derive.check import check_tableau

    method = catalogue_method(name)
    report = check_tableau(method, 5, "operator")
    result = observed_orders(method, heat_problem(kind, n, eps), steps=(16, 32, 64))
    assert result["observed_order"] >= report.stiff_order - 0.2


def test_a_grid_too_coarse_to_be_stiff_is_refused():
    with pytest.raises(InputError, match="too coarse to be stiff"):
        heat_problem("ho", n=10, eps=1.0)
    with pytest.raises(InputError, match="'kind'"):
        heat_problem("wave")
    with pytest.raises(InputError, match="'eps'"):
        heat_problem("ho", eps=-1.0)


def test_explore_reports_margins_and_a_reproducible_smallest_miss(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["verify", "--setting", "operator", "--explore", "6", "krogstad", "etd3rk",
                 "edm_heun", "--quiet", "--format", "json"])  # fmt: skip
    reports = {r["name"]: r for r in json.loads(capsys.readouterr().out)["explore"]}
    assert code == 0 and reports["krogstad"]["examples"] == 6
    assert reports["krogstad"]["misses"] == 0 and min(reports["krogstad"]["margins"]) > -0.2
    # etd3rk's coarse sweeps (from N = 8) read below its stiff order 2 (1.77 on one problem)
    # until the sweep is doubled past them: no miss over the asymptotic range
    assert reports["etd3rk"]["misses"] == 0 and min(reports["etd3rk"]["margins"]) > -0.2
    # edm_heun (explicit in L) blows up where h ||L|| is large: the shrunk smallest miss
    smallest = reports["edm_heun"]["smallest"]
    assert reports["edm_heun"]["misses"] >= 4 and smallest["problem"].startswith("heat-")
    assert smallest["verdict"].startswith("unstable")
    code = main(["verify", "edm_heun", "--setting", "operator", "--problem", smallest["problem"],
                 "--steps", *map(str, smallest["steps"]), "--extend-to",
                 str(smallest["extend_to"]), "--format", "json"])  # fmt: skip
    (study,) = json.loads(capsys.readouterr().out)["problems"][0]["methods"]
    assert study["observed_order"] is None and not study["agrees"]  # it reproduces
    assert (tmp_path / ".phiforge-hypothesis").is_dir()  # the user's folder, not the package


def test_a_pre_asymptotic_sweep_is_extended_until_it_reaches_the_stiff_order():
    """res_6s on heat-ho (n = 60, eps = 3) reads local orders 2.45, 3.62, 3.55 at N = 8 ... 64,
    level or falling, and rises to 4.1 beyond: every miss is doubled (up to extend_to) and
    judged over the finest three points above round-off."""
    from phiforge.cli.commands import method_tableau

    method = method_tableau("res_6s", {}, None)
    orders = {"stiff": 4, "weak_stiff": 4, "classical": 6}
    problem = heat_problem("ho", 60, 3.0)
    coarse = study(method, problem, orders, [8, 16, 32])
    assert not coarse["agrees"] and coarse["observed_order"] < 3.7
    assert coarse["verdict"].startswith("not asymptotic yet at N=32: observed 3.03")
    extended = study(method, problem, orders, [8, 16, 32], extend_to=512)
    assert extended["agrees"] and extended["extended"]
    assert extended["steps"] == [8, 16, 32, 64, 128, 256]
    assert 3.9 < extended["observed_order"] < 4.2
    assert extended["verdict"].startswith("yes (sweep extended to N=256)")
    short = study(method, problem, orders, [8, 16, 32], extend_to=64)  # stops at extend_to
    assert short["steps"] == [8, 16, 32, 64] and not short["agrees"]


def test_program_values_are_the_program_at_high_precision():
    """program_values (ball arithmetic) against the program in mpmath at 60 digits: res_6s's
    143 definitions near 0, beside its removable singularity at z ~ -2.1704, and at the
    h lambda of a stiff grid (-1e4)."""
    import mpmath

    program = checked_method_from_record(load_registered("res_6s"))
    names = sorted(program.b_names.values())
    points = [-1e-6, -0.04, -2.17041, -7.3, -1e4]
    values = program_values(program.definitions, names, points)
    with mpmath.workdps(60):
        for index, z in enumerate(points):
            exact = evaluate_program(program.definitions, mpmath.mpf(z))
            for name in names:
                assert values[name][index] == pytest.approx(float(exact[name]), rel=1e-15), (
                    z,
                    name,
                )
    extended = program_values(program.definitions, ["b9"], ["-0.04"], DTYPE)["b9"][0]
    assert isinstance(extended, DTYPE)


def test_program_values_refuse_a_zero_of_a_divisor():
    definitions = [Definition("d", Z + 1), Definition("q", 1 / sympy.Symbol("d"))]
    assert program_values(definitions, ["q"], [-3.0])["q"] == [pytest.approx(-0.5, rel=1e-16)]
    with pytest.raises(InputError, match=r"z = -1\.0 is not determined"):
        program_values(definitions, ["q"], [-3.0, -1.0])


def test_a_tableau_and_its_program_give_the_same_values():
    """as_program: a tableau's entries (exp(z/2) of etdrk4 included) evaluated as a program
    equal the expressions evaluated directly."""
    method = catalogue_method("etdrk4_cox_matthews")
    z = np.array([-1e-3, -0.5, -40.0])
    a, b = as_program(method).coefficient_arrays(z)
    assert set(a) == {(i, j) for i in range(2, 5) for j in range(1, i) if method.a_entry(i, j) != 0}
    expected = [float(method.b_entry(1).subs(Z, v).evalf(30)) for v in z]
    assert np.allclose(b[1], expected, rtol=1e-14, atol=0)
    assert np.allclose(a[(4, 3)], [float(method.a_entry(4, 3).subs(Z, v).evalf(30)) for v in z])


def test_a_program_method_meets_its_operator_orders():
    """res_6s, read as its program (143 definitions, never composed): stiff order 4 on the
    stiff problem whatever ||L|| (the errors at n = 60 equal those at n = 200 to 3 digits), the
    classical order 6 on the non-stiff one, whose errors fall to 1e-16: measured in extended
    precision, below float64's round-off."""
    record = load_registered("res_6s")
    method = checked_method_from_record(record)
    stiff = observed_orders(method, heat_problem("ho", 60), steps=(32, 64, 128))
    assert stiff["observed_order"] >= record.orders["operator"]["stiff"] - 0.2
    assert stiff["errors"][0] == pytest.approx(1.59e-12, rel=0.01)
    if EXTENDED:
        nonstiff = observed_orders(method, stiff_problem("heat-nonstiff"), steps=(16, 32, 64))
        assert nonstiff["observed_order"] == pytest.approx(6, abs=0.2)
        assert nonstiff["errors"][-1] < 1e-15
