"""Noise schedules and step schedules against spec-dpmsolver-res §6 and §10.7."""

import math

import numpy as np
import pytest

from phiforge.runtime.errors import InputError
from phiforge.runtime.schedules import (
    EDM,
    VE,
    DiscreteVP,
    RectifiedFlow,
    VPCosine,
    VPLinear,
    noise_schedule,
)
from phiforge.runtime.timesteps import grid_from_sigmas, grid_from_times, lambda_grid

ALL = [VPLinear(), VPCosine(), DiscreteVP.ddpm_linear(), VE(), EDM(), RectifiedFlow()]


def test_vp_linear_lambda_values_of_spec_10_7():
    s = VPLinear()
    assert s.lam(1.0) == pytest.approx(-5.024978406659, abs=1e-11)
    assert s.lam(1e-3) == pytest.approx(4.557714932730, abs=1e-11)
    assert s.lam(1e-4) == pytest.approx(5.751510, abs=1e-6)
    assert s.t_of_lam(s.lam(0.37)) == pytest.approx(0.37, abs=1e-14)


def test_ddpm_linear_betas_of_spec_10_7():
    s = DiscreteVP.ddpm_linear()
    assert s.log_alpha(1 / 1000) == pytest.approx(-5.00025e-5, rel=1e-6)
    assert s.lam(1 / 1000) == pytest.approx(4.605120183, abs=1e-9)
    assert s.lam(1.0) == pytest.approx(-5.058836592, abs=1e-9)
    grid = lambda_grid(s, 10, "logsnr", t_start=1.0, t_end=1e-3)
    expected = [
        1,
        0.899294,
        0.785817,
        0.653590,
        0.493114,
        0.303308,
        0.139040,
        0.052723,
        0.017803,
        0.004952,
        0.001,
    ]
    assert np.allclose(s.t_of_lam(grid), expected, atol=1.5e-6)
    assert s.model_time(1 / 1000) == pytest.approx(0.0) and s.model_time(1.0) == pytest.approx(999)


def test_time_quadratic_grid_of_spec_10_7():
    s = VPLinear()
    grid = lambda_grid(s, 10, "quadratic", t_start=1.0, t_end=1e-3)
    expected = [
        1,
        0.815702,
        0.650159,
        0.503372,
        0.375339,
        0.266061,
        0.175539,
        0.103772,
        0.050759,
        0.016502,
        0.001,
    ]
    assert np.allclose(s.t_of_lam(grid), expected, atol=1e-6)


def test_karras_grid_is_the_rho_schedule():
    grid = lambda_grid(EDM(), 5, "karras", rho=7.0)
    ramp = np.linspace(80 ** (1 / 7), 0.002 ** (1 / 7), 6) ** 7
    assert np.allclose(np.exp(-grid), ramp, rtol=1e-13)


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: s.name)
def test_lambda_and_its_inverse_agree(schedule):
    low = schedule.t_end if schedule.t_end > 0 else 1e-3
    high = schedule.t_start if schedule.t_start < 1 or schedule.name != "flow" else 0.999
    times = np.linspace(low, high, 17)
    assert np.allclose(schedule.t_of_lam(schedule.lam(times)), times, rtol=1e-10, atol=1e-12)
    for t in times:  # alpha, sigma from lambda match alpha, sigma from t
        alpha, sigma = schedule.alpha_sigma_of_lam(schedule.lam(t))
        assert alpha == pytest.approx(schedule.alpha(t), rel=1e-10)
        assert sigma == pytest.approx(schedule.sigma(t), rel=1e-10)


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: s.name)
def test_derivatives_match_finite_differences(schedule):
    t, eps = 0.4003 if schedule.name != "edm" else 3.0, 1e-7  # off the ddpm grid nodes
    d_alpha, d_sigma = schedule.alpha_sigma_derivatives(t)
    assert d_alpha == pytest.approx(
        (schedule.alpha(t + eps) - schedule.alpha(t - eps)) / (2 * eps), rel=1e-6, abs=1e-9
    )
    assert d_sigma == pytest.approx(
        (schedule.sigma(t + eps) - schedule.sigma(t - eps)) / (2 * eps), rel=1e-6, abs=1e-9
    )


def test_infinite_log_snr_ends_are_exact():
    flow = RectifiedFlow()
    assert flow.lam(1.0) == -math.inf and flow.lam(0.0) == math.inf
    assert flow.alpha_sigma_of_lam(-math.inf) == (0.0, 1.0)
    assert flow.alpha_sigma_of_lam(math.inf) == (1.0, 0.0)
    assert VPLinear().alpha_sigma_of_lam(math.inf) == (1.0, 0.0)
    grid = lambda_grid(flow, 4, "time")
    assert grid[0] == -math.inf and grid[-1] == math.inf
    assert np.allclose(grid[1:-1], np.log([1 / 3, 1.0, 3.0]))


def test_user_sigmas_ending_in_zero():
    grid = grid_from_sigmas([80.0, 10.0, 1.0, 0.0])
    assert grid[-1] == math.inf and grid[0] == pytest.approx(-math.log(80))
    times = grid_from_times(VPLinear(), [1.0, 0.5, 0.1])
    assert np.allclose(times, VPLinear().lam(np.array([1.0, 0.5, 0.1])))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: grid_from_sigmas([80.0, 10.0, 10.0, 0.0]), "strictly monotone"),
        (lambda: grid_from_sigmas([80.0, float("nan"), 0.0]), "NaN"),
        (lambda: grid_from_sigmas([1.0, 2.0]), "strictly monotone"),
        (lambda: grid_from_sigmas([80.0, 0.0, 0.0]), "infinite only at its ends"),
        (lambda: lambda_grid(VPLinear(), 0), "'steps'"),
        (lambda: lambda_grid(VPLinear(), 4, "cubic"), "'step_schedule'"),
        (lambda: lambda_grid(VPLinear(), 4, t_start=2.0), "'t_start'"),
        (lambda: lambda_grid(VPLinear(), 4, t_start=0.1, t_end=0.5), "greater than t_end"),
        (lambda: lambda_grid(RectifiedFlow(), 4, "logsnr"), "finite log-SNR"),
        (lambda: noise_schedule("vp-quadratic"), "'schedule'"),
        (lambda: VE(sigma_min=1.0, sigma_max=0.5), "'sigma_max'"),
        (lambda: DiscreteVP(betas=[0.1, 1.5]), "'betas'"),
    ],
)
def test_bad_schedules_are_rejected_with_the_parameter_named(call, message):
    with pytest.raises(InputError, match=message):
        call()
