"""Built-in exact denoisers: Tweedie's formula, exact flows, the shipped data."""

import pytest
import torch

from phiforge.runtime.denoisers import (
    EmpiricalDenoiser,
    GaussianDenoiser,
    GaussianMixtureDenoiser,
    builtin_denoiser,
    digits,
)
from phiforge.runtime.errors import InputError

torch.manual_seed(0)
D = 5
_A = torch.randn(3, D, D, dtype=torch.float64)
COVS = _A @ _A.transpose(1, 2) / D + 0.05 * torch.eye(D, dtype=torch.float64)
MEANS = torch.randn(3, D, dtype=torch.float64) * 2
WEIGHTS = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)


def _log_density(x, sigma):
    """log p_sigma(x) of the noised mixture, by torch.distributions."""
    components = torch.distributions.MultivariateNormal(
        MEANS, COVS + sigma**2 * torch.eye(D, dtype=torch.float64)
    )
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(WEIGHTS), components
    )
    return mixture.log_prob(x)


@pytest.mark.parametrize("sigma", [0.05, 0.7, 4.0])
def test_mixture_denoiser_satisfies_tweedie(sigma):
    """E[x0 | x] = x + sigma^2 grad log p_sigma(x) (Tweedie / Robbins)."""
    x = (torch.randn(7, D, dtype=torch.float64) * 2).requires_grad_(True)
    (grad,) = torch.autograd.grad(_log_density(x, sigma).sum(), x)
    expected = x.detach() + sigma**2 * grad
    got = GaussianMixtureDenoiser(WEIGHTS, MEANS, COVS)(x.detach(), sigma)
    assert torch.allclose(got, expected, rtol=1e-10, atol=1e-10)


def test_mixture_denoiser_in_row_blocks_matches_tweedie_on_every_row():
    """A batch larger than the CPU block (512 rows) is split; each row still gets its own sigma
    and the Tweedie value, including rows on both sides of each block boundary."""
    x = (torch.randn(1100, D, dtype=torch.float64) * 2).requires_grad_(True)
    sigmas = torch.logspace(-1.5, 1.0, 1100, dtype=torch.float64)
    (grad,) = torch.autograd.grad(_log_density_per_row(x, sigmas).sum(), x)
    expected = x.detach() + sigmas[:, None] ** 2 * grad
    got = GaussianMixtureDenoiser(WEIGHTS, MEANS, COVS)(x.detach(), sigmas)
    assert torch.allclose(got, expected, rtol=1e-9, atol=1e-9)


def _log_density_per_row(x, sigmas):
    components = torch.distributions.MultivariateNormal(
        MEANS[None], COVS[None] + (sigmas**2)[:, None, None, None] * torch.eye(D).double()
    )
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(WEIGHTS.expand(len(sigmas), 3)), components
    )
    return mixture.log_prob(x)


def test_mixture_moments_are_those_of_its_samples():
    mixture = GaussianMixtureDenoiser(WEIGHTS, MEANS, COVS)
    mean, covariance = mixture.moments()
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(WEIGHTS),
        torch.distributions.MultivariateNormal(MEANS, COVS),
    )
    assert torch.allclose(mean, reference.mean, atol=1e-12)
    assert torch.allclose(covariance.diagonal(), reference.variance, atol=1e-12)
    draws = mixture.sample_data(200_000, torch.Generator().manual_seed(3))
    # off-diagonal entries too: sample covariance of 2e5 draws, entries of order 1 to 4
    assert torch.allclose(torch.cov(draws.T), covariance, atol=0.06)
    assert not torch.allclose(torch.cov(draws.T), covariance.diagonal().diag(), atol=0.06)


def test_empirical_denoiser_satisfies_tweedie():
    data = torch.randn(40, D, dtype=torch.float64)
    x = torch.randn(6, D, dtype=torch.float64).requires_grad_(True)
    sigma = 0.6
    log_p = torch.logsumexp(-((x[:, None] - data[None]) ** 2).sum(-1) / (2 * sigma**2), dim=1)
    (grad,) = torch.autograd.grad(log_p.sum(), x)
    got = EmpiricalDenoiser(data)(x.detach(), sigma)
    assert torch.allclose(got, x.detach() + sigma**2 * grad, rtol=1e-10, atol=1e-10)


def test_one_component_mixture_is_the_gaussian():
    gauss = GaussianDenoiser(MEANS[0], COVS[0])
    mixture = GaussianMixtureDenoiser(torch.ones(1, dtype=torch.float64), MEANS[:1], COVS[:1])
    x = torch.randn(4, D, dtype=torch.float64)
    sigmas = torch.tensor([0.01, 0.3, 1.0, 30.0], dtype=torch.float64)
    assert torch.allclose(gauss(x, sigmas), mixture(x, sigmas), rtol=1e-11, atol=1e-12)


def test_gaussian_flow_solves_the_probability_flow_ode():
    """d x~/d sigma = (x~ - D(x~, sigma))/sigma along the exact flow (central differences)."""
    gauss = GaussianDenoiser(MEANS[1], COVS[1])
    x = torch.randn(3, D, dtype=torch.float64)
    sigma, h = 0.8, 1e-5
    plus, minus = gauss.flow(x, 2.0, sigma + h), gauss.flow(x, 2.0, sigma - h)
    here = gauss.flow(x, 2.0, sigma)
    derivative = (plus - minus) / (2 * h)
    assert torch.allclose(derivative, (here - gauss(here, sigma)) / sigma, rtol=1e-7, atol=1e-8)
    # the zero-SNR start is the sigma_from -> inf limit of the flow
    far = 1e8
    assert torch.allclose(
        gauss.flow_from_zero_snr(x, 0.3), gauss.flow(x * far, far, 0.3), rtol=1e-7, atol=1e-7
    )


def test_builtin_denoisers_use_the_shipped_digits():
    data = digits()
    assert data.shape == (1797, 64) and float(data.min()) == -1.0 and float(data.max()) == 1.0
    x = data[:3] + 1e-3 * torch.randn(3, 64, dtype=torch.float64)
    for name in ("gaussian", "gmm", "empirical"):
        denoiser = builtin_denoiser(name)
        assert denoiser.image_shape == (8, 8)
        out = denoiser(x.reshape(3, 8, 8), 1e-3)
        assert out.shape == (3, 8, 8) and torch.isfinite(out).all()
    # at tiny noise the empirical posterior mean is the nearest data point
    assert torch.allclose(builtin_denoiser("empirical")(x, 1e-3), data[:3], atol=1e-9)


def test_denoiser_input_errors():
    with pytest.raises(InputError, match="'denoiser'"):
        builtin_denoiser("cifar10")
    with pytest.raises(InputError, match="64 values per sample"):
        builtin_denoiser("gaussian")(torch.zeros(2, 10, dtype=torch.float64), 1.0)
    with pytest.raises(InputError, match="'weights'"):
        GaussianMixtureDenoiser(torch.tensor([0.5, 0.6]), MEANS[:2], COVS[:2])


@pytest.mark.parametrize(
    ("dtype", "tolerance"),
    [(torch.float32, 1e-5), (torch.float16, 4e-3), (torch.bfloat16, 3e-2)],
)
@pytest.mark.parametrize("name", ["gaussian", "gmm", "network"])
def test_builtin_denoisers_follow_the_input_dtype(name, dtype, tolerance):
    from phiforge.runtime.denoisers import builtin_denoiser

    denoiser = builtin_denoiser(name)
    x = torch.randn(6, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    low = x.to(dtype)
    out = denoiser(low, 0.7)
    exact = denoiser(low.double(), 0.7)  # the same input, evaluated in float64
    assert out.dtype == dtype
    assert float((out.double() - exact).abs().max()) <= tolerance * float(exact.abs().max())


def test_builtin_denoisers_refuse_what_they_cannot_run():
    from phiforge.runtime.denoisers import builtin_denoiser

    with pytest.raises(InputError, match=r"'x' must be a floating-point tensor.*torch.int64"):
        builtin_denoiser("gmm")(torch.zeros(2, 64, dtype=torch.int64), 0.5)
    with pytest.raises(InputError, match="parameter 'device' must be a torch device"):
        builtin_denoiser("gmm", device="nowhere")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match=r"parameter 'device'.*CUDA is not available"):
            builtin_denoiser("gmm", device="cuda")
