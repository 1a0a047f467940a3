"""Embedded pairs derived from the conditions, and the adaptive step-size controller."""

import math

import pytest
import sympy
import torch

from phiforge.derive.construct import construct_embedded
from phiforge.derive.errors import InputError as DeriveInputError
from phiforge.derive.phi import phi
from phiforge.derive.registry import load_record, tableau_from_record
from phiforge.derive.tableau import Z
from phiforge.runtime.adaptive import Adaptive
from phiforge.runtime.denoisers import GaussianDenoiser
from phiforge.runtime.driver import sample
from phiforge.runtime.errors import InputError
from phiforge.runtime.schedules import EDM
from phiforge.runtime.stepping import load_method, step_with_error
from phiforge.runtime.verification import builtin_problem, defect


def test_res_3s_companion_is_the_second_order_method_on_its_third_stage():
    weights = construct_embedded(tableau_from_record(load_record("res_3s")), 2)
    expected = {1: phi(1, Z) - 2 * phi(2, Z), 2: 0, 3: 2 * phi(2, Z)}
    assert all(sympy.simplify(weights[i] - expected[i]) == 0 for i in expected)


def test_dpm_solver_3_companion_is_dpm_solver_2_on_its_first_node():
    """DPM-Solver-23 (spec §5.3): zeroing the last weight would give DPM-Solver-3's own b
    (b_2 = 0), so the construction moves on to the companion on stage 2 (r1 = 1/3)."""
    weights = construct_embedded(tableau_from_record(load_record("dpm_solver_3")), 2)
    assert sympy.simplify(weights[2] - 3 * phi(2, Z)) == 0 and weights[3] == 0


def test_a_companion_without_spare_stages_is_refused():
    with pytest.raises(DeriveInputError, match="no usable order-2 companion"):
        construct_embedded(tableau_from_record(load_record("res_2s")), 2)


@pytest.mark.parametrize("name", ["res_2s", "res_3s", "res_4s"])
def test_generated_embedded_weights_match_the_record(name):
    record = load_record(name)
    module = load_method(name)
    for h in (1e-6, 0.3, 2.0, 9.0):
        got = module.embedded_weights(-h)
        for i, text in record["embedded"]["b"].items():
            exact = sympy.sympify(text, locals={"phi": phi, "z": Z}).subs(Z, -h)
            assert got[int(i) - 1] == pytest.approx(float(exact.evalf(30)), rel=1e-11, abs=1e-14)


@pytest.mark.parametrize(
    ("name", "low"), [("res_2s", 1), ("res_3s", 2), ("res_4s", 3), ("dpm_solver_3", 2)]
)
def test_the_companion_has_its_local_order(name, low):
    """The gap y_high - y_low of one step is O(h^(low + 1)) on the mixture-like problem
    y' = -y + D(y, lambda) with a nonlinear D."""
    module = load_method(name)

    def f(y, lam):
        return torch.tanh(2 * y) * math.exp(-0.3 * lam) + math.sin(lam)

    y0 = torch.tensor([0.7], dtype=torch.float64)
    gaps = []
    for h in (0.01, 0.005):
        high, lowest = step_with_error(module, y0, 0.2, h, -1.0, f)
        gaps.append(float((high - lowest).abs()))
    assert math.log2(gaps[0] / gaps[1]) == pytest.approx(low + 1, abs=0.15)


GAUSS = GaussianDenoiser(torch.tensor([0.5, -1.0, 0.2]), torch.diag(torch.tensor([0.05, 0.3, 1.0])))


@pytest.mark.parametrize("method", ["res_3s", "res_4s"])
def test_tighter_tolerances_cost_more_and_err_less(method):
    problem = builtin_problem("gmm", batch=2, seed=3)
    results = []
    for rtol in (0.1, 0.01, 0.001):
        calls = []

        def model(xx, sigma, calls=calls):
            calls.append(1)
            return problem.denoiser(xx, sigma)

        out, info = sample(
            model,
            problem.x_start,
            problem.schedule,
            method,
            t_start=1.0,
            t_end=1e-3,
            output="edm",
            adaptive=Adaptive(rtol=rtol, atol=rtol / 6),
            return_info=True,
        )
        exact = problem.reference
        assert info.nfe == len(calls)
        results.append((info.nfe, defect(out, exact)))
    (n1, e1), (n2, e2), (n3, e3) = results
    assert n1 < n2 < n3 and e1 > e2 > e3


def test_nfe_counts_attempts_and_reuses_the_start_evaluation():
    calls = []

    def model(xx, sigma):
        calls.append(float(sigma[0]))
        return GAUSS(xx, sigma)

    x = torch.ones(1, 3, dtype=torch.float64) * 80
    _, info = sample(
        model,
        x,
        EDM(),
        "res_2s",
        sigmas=[80.0, 0.01],
        output="edm",
        adaptive=Adaptive(rtol=0.01, atol=0.001, h_init=3.0),
        return_info=True,
    )
    accepted, rejected = info.adaptive["accepted"], info.adaptive["rejected"]
    assert rejected > 0  # h_init = 3 is far too large
    assert info.nfe == len(calls) == 2 * accepted + rejected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "res_2m", "sigmas": [80.0, 0.01]}, "no embedded companion"),
        ({"method": "res_2s", "steps": 10}, "give no 'nfe', 'steps'"),
    ],
)
def test_bad_adaptive_arguments(kwargs, message):
    with pytest.raises(InputError, match=message):
        sample(
            GAUSS,
            torch.ones(1, 3, dtype=torch.float64),
            EDM(),
            output="edm",
            adaptive=True,
            **kwargs,
        )
    with pytest.raises(InputError, match="'rtol'"):
        Adaptive(rtol=-1.0)
