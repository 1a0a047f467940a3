"""Step grids fitted to pilot samples: the search finds a known optimum, improves a real sampler
on held-out starting points, and rejects bad input by name."""

import math

import numpy as np
import pytest
import torch

from phiforge.runtime.driver import sample
from phiforge.runtime.errors import InputError
from phiforge.runtime.step_search import optimize_steps, search_sigmas
from phiforge.runtime.verification import builtin_problem, defect


def test_the_search_recovers_a_known_optimal_grid():
    # a "solver" whose end state is the grid's log-SNR points: the defect against the target
    # points is zero exactly at the target grid, which is not log-SNR uniform
    target = np.array([-2.0, -1.2, 0.1, 0.5, 2.0])
    reference = torch.tensor(target[1:-1]).reshape(1, -1)

    def solve(sigmas):
        return torch.tensor([-math.log(s) for s in sigmas[1:-1]]).reshape(1, -1)

    found = search_sigmas(solve, reference, math.exp(2.0), math.exp(-2.0), 4, max_evaluations=2000)
    assert found.uniform_defect > 0.2
    assert found.defect < 1e-3
    assert np.allclose(found.lambdas, target, atol=2e-3)
    assert found.sigmas[0] == pytest.approx(math.exp(2.0), rel=1e-14)
    assert found.sigmas[-1] == pytest.approx(math.exp(-2.0), rel=1e-14)


def test_grids_the_solver_refuses_are_no_optimum():
    # the "solver" refuses grids whose second step is shorter than 0.5 (as the driver refuses a
    # step of length 0); the search must keep to the grids it accepts and still improve
    target = np.array([-2.0, -1.8, -1.0, 0.0, 2.0])
    reference = torch.tensor(target[1:-1]).reshape(1, -1)

    def solve(sigmas):
        lam = [-math.log(s) for s in sigmas]
        if lam[2] - lam[1] < 0.5:
            raise InputError("step 1: too short")
        return torch.tensor(lam[1:-1]).reshape(1, -1)

    found = search_sigmas(solve, reference, math.exp(2.0), math.exp(-2.0), 4, max_evaluations=400)
    assert found.defect < found.uniform_defect
    assert found.lambdas[2] - found.lambdas[1] >= 0.5


def test_a_fitted_grid_lowers_the_defect_on_held_out_starting_points():
    pilot = builtin_problem("gmm", batch=8, seed=1)
    held_out = builtin_problem("gmm", batch=8, seed=2)
    lam0, lam1 = float(pilot.schedule.lam(1.0)), float(pilot.schedule.lam(1e-3))
    sigma_max, sigma_min = math.exp(-lam0), math.exp(-lam1)
    alpha0, _ = pilot.schedule.alpha_sigma_of_lam(lam0)
    alpha1, _ = pilot.schedule.alpha_sigma_of_lam(lam1)
    found = optimize_steps(
        pilot.denoiser,
        pilot.x_start / alpha0,
        "edm",
        "dpmpp_2m",
        steps=5,
        sigma_start=sigma_max,
        sigma_end=sigma_min,
        reference=pilot.reference / alpha1,
        max_evaluations=150,
        sample_options={"output": "edm"},
    )
    assert len(found.sigmas) == 6 and all(np.diff(found.sigmas) < 0)
    assert found.defect < 0.8 * found.uniform_defect
    x = held_out.x_start / alpha0

    def held_out_defect(sigmas):
        end = sample(held_out.denoiser, x, "edm", "dpmpp_2m", output="edm", sigmas=sigmas)
        return defect(alpha1 * end, held_out.reference)

    uniform = np.exp(-np.linspace(lam0, lam1, 6)).tolist()
    assert held_out_defect(found.sigmas) < 0.9 * held_out_defect(uniform)


def test_the_teacher_reference_is_the_converged_solution():
    # without a reference the search solves with the teacher; on a Gaussian the exact flow is
    # known, so the teacher's ends can be checked through the fitted search's pilot numbers
    pilot = builtin_problem("gaussian", batch=4, seed=3)
    lam0, lam1 = float(pilot.schedule.lam(1.0)), float(pilot.schedule.lam(1e-3))
    alpha0, _ = pilot.schedule.alpha_sigma_of_lam(lam0)
    alpha1, _ = pilot.schedule.alpha_sigma_of_lam(lam1)
    kwargs = dict(
        steps=3,
        sigma_start=math.exp(-lam0),
        sigma_end=math.exp(-lam1),
        max_evaluations=5,
        sample_options={"output": "edm"},
    )
    x = pilot.x_start / alpha0
    with_teacher = optimize_steps(pilot.denoiser, x, "edm", "res_2m", **kwargs)
    exact = optimize_steps(
        pilot.denoiser, x, "edm", "res_2m", reference=pilot.reference / alpha1, **kwargs
    )
    assert with_teacher.uniform_defect == pytest.approx(exact.uniform_defect, rel=1e-6)


def test_bad_input_is_rejected_by_name():
    reference = torch.zeros(1, 2)

    def solve(sigmas):
        return torch.zeros(1, 2)

    with pytest.raises(InputError, match="'steps'"):
        search_sigmas(solve, reference, 10.0, 0.1, 1)
    with pytest.raises(InputError, match="'sigma_end'"):
        search_sigmas(solve, reference, 0.1, 10.0, 3)
    with pytest.raises(InputError, match="'sigma_start'"):
        search_sigmas(solve, reference, math.inf, 0.1, 3)
    with pytest.raises(InputError, match="'sigma_end'"):
        search_sigmas(solve, reference, 10.0, 0.0, 3)
    with pytest.raises(InputError, match="'max_evaluations'"):
        search_sigmas(solve, reference, 10.0, 0.1, 3, max_evaluations=0)
    with pytest.raises(InputError, match="'initial'"):
        search_sigmas(solve, reference, 10.0, 0.1, 3, initial=[10.0, 1.0, 0.1])
    with pytest.raises(InputError, match="'initial'"):
        search_sigmas(solve, reference, 10.0, 0.1, 3, initial=[10.0, 0.5, 1.0, 0.1])
    problem = dict(
        model=lambda x, s: x,
        x=torch.zeros(2, 3),
        schedule="edm",
        method="res_2m",
        steps=3,
        sigma_start=10.0,
        sigma_end=0.1,
    )
    with pytest.raises(InputError, match="'sample_options'"):
        optimize_steps(**problem, sample_options={"steps": 4})
    with pytest.raises(InputError, match="'reference'"):
        optimize_steps(**problem, reference=torch.zeros(3, 3))
