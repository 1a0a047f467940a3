"""Pointwise feasibility of the scalar stiff conditions (derive.feasibility): known answers."""

import math

import pytest

from phiforge.derive.errors import InputError
from phiforge.derive.feasibility import pointwise_feasibility
from phiforge.derive.phi_values import phi_table


def test_phi_table_matches_the_closed_form_on_both_branches():
    # the one float64 phi of derive/ (stiff PDE study and feasibility): series and recurrence
    for x in (-7.5, -1.9, -0.3, 0.0, 0.4, 2.5):
        values = [float(v) for v in phi_table(x, 5)]
        assert values[0] == pytest.approx(math.exp(x), rel=1e-15)
        if x != 0:
            assert values[1] == pytest.approx(math.expm1(x) / x, rel=1e-13)
            assert values[3] == pytest.approx((math.expm1(x) - x - x * x / 2) / x**3, rel=1e-7)
        else:
            assert values[4] == 1 / 24


def test_three_stages_cannot_reach_order_four_at_any_nodes():
    # the residual stays bounded away from 0 (classically 3 stages give order 3 at most)
    result = pointwise_feasibility(3, 4, -1.0, starts=6, seed=1)
    assert result.best > 1e-3
    assert len(result.residuals) == 6


def test_five_stages_solve_order_four_pointwise_with_free_directions():
    result = pointwise_feasibility(5, 4, -1.0, starts=3, seed=0)
    assert result.best < 1e-12
    assert result.dimension >= 1  # 14 unknowns, 7 equations: a family
    assert result.size < 100
    assert set(result.solution) >= {"b2", "a5_4", "c5"}


def test_four_stages_order_four_is_solvable_pointwise_though_no_analytic_method_exists():
    # the documented limitation: a point solution is evidence, not a method (bench/four_stages.py
    # proves that no 4-stage coefficients analytic in z reach scalar stiff order 4)
    assert pointwise_feasibility(4, 4, -1.0, starts=4, seed=0).best < 1e-12


def test_five_stages_stop_short_of_order_five_at_z_zero():
    # Butcher's barrier (no 5-stage explicit method of order 5) seen pointwise at z = 0: a
    # positive minimum inside the coefficient box, 10 orders of magnitude above a solution
    result = pointwise_feasibility(5, 5, 0.0, starts=3, seed=0)
    assert 1e-8 < result.best < 1e-3


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"z": float("nan")}, "'z'"),
        ({"z": -1.0, "starts": 0}, "'starts'"),
        ({"z": -1.0, "bound": 0.0}, "'bound'"),
        ({"z": -1.0, "assumptions": "stage-order-9"}, "'assumptions'"),
        ({"z": -1.0, "seed": -1}, "'seed'"),
    ],
)
def test_bad_input_names_the_parameter(kwargs, parameter):
    with pytest.raises(InputError, match=parameter):
        pointwise_feasibility(3, 3, **kwargs)


def test_feasibility_command_reports_a_verdict_per_z(capsys):
    import json

    from phiforge.cli.main import main

    argv = ["feasibility", "--stages", "3", "--starts", "3", "--quiet", "--format", "json"]
    assert main([*argv, "--order", "4", "--z", "-1", "0"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [row["verdict"] for row in result["rows"]] == ["blocked", "blocked"]
    assert all(row["smallest_residual"] > 1e-3 for row in result["rows"])
    assert main([*argv, "--order", "3"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["rows"]
    assert row["verdict"] == "solvable" and row["local_dimension"] == 2
    assert set(row["solution"]) == {"b2", "b3", "a3_2", "c2", "c3"}
    assert main([*argv, "--order", "3", "--assumptions", "stage-order-9"]) == 2
    assert "'assumptions'" in capsys.readouterr().err
    assert main([*argv, "--order", "3", "--bound", "-1"]) == 2
    assert "'bound'" in capsys.readouterr().err
    assert main(["feasibility", "--stages", "3", "--order", "3", "--quiet"]) == 0
    assert "z = -1: solvable" in capsys.readouterr().out
    assert main([*argv, "--order", "3", "--z", "0", "-2", "--joint"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["rows"]
    assert row["z"] == [0.0, -2.0] and row["verdict"] == "solvable"


def test_several_z_share_the_nodes():
    # res_4s-like 5-stage methods exist: solvable at three z together with one node set; the
    # solution names each z's coefficients and the shared nodes once
    result = pointwise_feasibility(5, 4, [0.0, -1.0, -4.0], starts=2, seed=0)
    assert result.best < 1e-12 and result.z == (0.0, -1.0, -4.0)
    assert result.equations == 21 and result.unknowns == 3 * 10 + 4
    assert {"b2@0", "b2@-1", "b2@-4", "c5"} <= set(result.solution)
    assert "c5@-1" not in result.solution
    # 3 stages stay blocked at order 4 however many z
    assert pointwise_feasibility(3, 4, [0.0, -1.0], starts=2, seed=0).verdict == "blocked"
    with pytest.raises(InputError, match="twice"):
        pointwise_feasibility(3, 3, [-1.0, -1.0])
    with pytest.raises(InputError, match="'z'"):
        pointwise_feasibility(3, 3, [])


@pytest.mark.slow
def test_five_values_of_z_with_shared_nodes_see_that_no_four_stage_method_exists():
    # one z at a time the 4-stage order-4 system is solvable; at five z with one node set it
    # is not, the exact result of bench/four_stages.py --decompose (75 s on 2 cores)
    result = pointwise_feasibility(4, 4, [0.0, -0.5, -1.0, -2.0, -4.0], starts=10, seed=0)
    assert result.verdict == "blocked"
