"""Stochastic exponential Adams methods (res_1m_sde, res_2m_sde, res_3m_sde): the eta-dynamics'
drift in mu = (1 + eta) lam with exact phi weights for variable steps, and the exact noise of
every step; one family through every entry point."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from phiforge.runtime import sample
from phiforge.runtime.kdiffusion import SAMPLERS
from phiforge.runtime.peers import kdiffusion_sampling
from phiforge.runtime.schedules import EDM, VPLinear
from phiforge.runtime.stepping import load_method

VARIANCE = 0.5  # data x0 ~ N(0, VARIANCE) per coordinate


def gaussian(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    s2 = sigma.reshape(-1, *([1] * (x.ndim - 1))) ** 2
    return VARIANCE / (VARIANCE + s2) * x


def _start(batch: int = 4, dim: int = 3) -> torch.Tensor:
    return 80.0 * torch.randn(batch, dim, generator=torch.Generator().manual_seed(0)).double()


def _sigmas(n: int, high: float = 80.0, low: float = 0.05) -> list[float]:
    return list(np.exp(np.linspace(math.log(high), math.log(low), n + 1)))


@pytest.mark.parametrize(
    ("name", "ode"),
    [("res_1m_sde", "exp_euler"), ("res_2m_sde", "res_2m"), ("res_3m_sde", "res_3m")],
)
def test_at_eta_zero_the_method_is_its_ode_method(name, ode):
    sigmas = _sigmas(9)
    stochastic = sample(gaussian, _start(), EDM(), name, sigmas=sigmas, output="edm", eta=0.0)
    deterministic = sample(gaussian, _start(), EDM(), ode, sigmas=sigmas, output="edm")
    assert float((stochastic - deterministic).abs().max()) <= 1e-12


@pytest.mark.parametrize("eta", [1.0, 0.5])
def test_res_2m_sde_is_kdiffusion_dpmpp_2m_sde_heun(eta):
    kd = kdiffusion_sampling()
    if kd is None:
        pytest.skip("k-diffusion is not installed")
    sigmas = kd.get_sigmas_karras(10, 0.01, 80.0).double()
    noise = torch.randn(20, 4, 3, generator=torch.Generator().manual_seed(1)).double()
    draws = iter(noise)
    ours = sample(
        gaussian,
        _start(),
        EDM(),
        "res_2m_sde",
        sigmas=sigmas.tolist(),
        output="edm",
        eta=eta,
        noise_sampler=lambda a, b: next(draws),
    )
    draws = iter(noise)
    theirs = kd.sample_dpmpp_2m_sde(
        gaussian,
        _start(),
        sigmas,
        eta=eta,
        solver_type="heun",
        disable=True,
        noise_sampler=lambda a, b: next(draws),
    )
    assert float((ours - theirs).abs().max()) <= 1e-10


@pytest.mark.parametrize(("h", "eta"), [(0.3, 1.0), (2.0, 0.25), (1e-6, 1.0)])
def test_the_noise_variance_is_the_ito_isometry_of_the_step(h, eta):
    module = load_method("res_2m_sde")
    data, _ = quad(lambda u: 2 * eta * math.exp(-2 * eta * (h - u)), 0, h, epsabs=0, epsrel=1e-13)
    noise, _ = quad(lambda u: 2 * eta * math.exp(2 * (h - u)), 0, h, epsabs=0, epsrel=1e-13)
    assert module.noise_variance(h, eta, "data") == pytest.approx(data, rel=1e-12)
    assert module.noise_variance(h, eta, "noise") == pytest.approx(noise, rel=1e-12)


def _output_variance(name: str, steps: int) -> float:
    """The exact variance of the sampler's output on 1-D Gaussian data: the run is linear,
    x_end = a x_start + sum_j b_j z_j, so one run per coefficient gives it."""
    sigmas = _sigmas(steps)
    one = torch.ones(1, 1, dtype=torch.float64)

    def unit(j: int):
        calls = iter(range(steps + 1))
        return lambda a, b: one if next(calls) == j else 0 * one

    a = float(
        sample(gaussian, one, EDM(), name, sigmas=sigmas, output="edm", noise_sampler=unit(-1))
    )
    b = [
        float(
            sample(
                gaussian, 0 * one, EDM(), name, sigmas=sigmas, output="edm", noise_sampler=unit(j)
            )
        )
        for j in range(steps)
    ]
    return a * a * (VARIANCE + sigmas[0] ** 2) + sum(v * v for v in b)


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [("res_1m_sde", 0.8, 1.2), ("res_2m_sde", 1.8, 2.3), ("res_3m_sde", 1.9, 2.6)],
)
def test_weak_order_on_gaussian_data(name, low, high):
    """The output variance against the exact one (VARIANCE + sigma_end^2) at 40 and 80 steps:
    weak orders 1, 2 and, with the lower-order warm-up, about 2 (measured 0.92, 2.04, 2.21)."""
    exact = VARIANCE + 0.05**2
    errors = [abs(_output_variance(name, n) - exact) for n in (40, 80)]
    assert low <= math.log2(errors[0] / errors[1]) <= high


def test_the_kdiffusion_function_is_the_driver():
    sigmas = torch.tensor([*_sigmas(8), 0.0], dtype=torch.float64)
    noise = torch.randn(20, 4, 3, generator=torch.Generator().manual_seed(2)).double()
    draws = iter(noise)
    kdiff = SAMPLERS["res_3m_sde"](
        gaussian, _start(), sigmas, noise_sampler=lambda a, b: next(draws)
    )
    draws = iter(noise)
    direct = sample(
        gaussian,
        _start(),
        EDM(),
        "res_3m_sde",
        sigmas=sigmas.tolist(),
        output="edm",
        noise_sampler=lambda a, b: next(draws),
    )
    assert torch.equal(kdiff, direct)


def test_the_diffusers_scheduler_is_the_driver():
    pytest.importorskip("diffusers")
    from phiforge.runtime.diffusers_scheduler import PhiforgeScheduler

    scheduler = PhiforgeScheduler(method="res_2m_sde", eta=0.8)
    scheduler.set_timesteps(6)
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def eps_model(xx, t):
        return 0.8 * xx / torch.sqrt(1.0 + xx * xx)

    start, generator = x.clone(), torch.Generator().manual_seed(21)
    for t in scheduler.timesteps:
        x = scheduler.step(eps_model(x, t), t, x, generator=generator).prev_sample
    expected = sample(
        eps_model,
        start,
        VPLinear(),
        "res_2m_sde",
        sigmas=scheduler.sigmas.double().tolist(),
        output="noise",
        eta=0.8,
        generator=torch.Generator().manual_seed(21),
    )
    assert torch.allclose(x, expected, rtol=1e-10, atol=1e-10)
