"""SEEDS: exact stage-noise laws, the spec-seeds-restart §4 test vectors, reductions, orders."""

import math

import numpy as np
import pytest
import sympy
import torch

from phiforge.derive.stochastic import ETA, H, stage_noise
from phiforge.runtime.denoisers import GaussianDenoiser, builtin_denoiser
from phiforge.runtime.driver import sample
from phiforge.runtime.errors import InputError
from phiforge.runtime.kdiffusion import SAMPLERS
from phiforge.runtime.peers import kdiffusion_sampling
from phiforge.runtime.schedules import EDM
from phiforge.runtime.stepping import load_method

S2 = 0.25
GAUSS = GaussianDenoiser(torch.zeros(1, dtype=torch.float64), torch.full((1, 1), S2))
DRAWS = 64


def _unit_noise():
    calls = [0]

    def draw(sigma, sigma_next):
        z = torch.zeros(1 + DRAWS, 1, dtype=torch.float64)
        calls[0] += 1
        z[calls[0]] = 1.0
        return z

    return draw, calls


def _affine(method, sigmas, **kwargs):
    """x_end = A x_start + sum_j c_j z_j for Gaussian data: (A, [c_j])."""
    noise, calls = _unit_noise()
    x = torch.zeros(1 + DRAWS, 1, dtype=torch.float64)
    x[0] = 1.0
    out = sample(
        GAUSS, x, EDM(), method, sigmas=sigmas, output="edm", noise_sampler=noise, **kwargs
    )
    return float(out[0, 0]), [float(v) for v in out[1 : 1 + calls[0], 0]]


@pytest.mark.parametrize(
    ("method", "kwargs", "a", "c"),
    [
        ("seeds_1", {}, 0.4, [0.4330127019]),
        ("seeds_2a", {}, 0.4, [0.375, 0.3535533906]),
        ("seeds_2b", {}, 0.4, [0.4029964532, 0.3535533906]),
        ("seeds_2a", {"options": {"r": 1 / 3}}, 0.4, [0.3459209071, 0.3883135772]),
        ("seeds_3a", {}, 0.4, [0.2978963312, 0.3433763106, 0.3041543502]),
        ("seeds_2a", {"eta": 0.0}, 0.6276142375, []),
        ("seeds_3a", {"eta": 0.0}, 0.6325213916, []),
        ("seeds_1", {"prediction": "noise"}, 0.2, [0.8660254038]),
        ("seeds_2a", {"prediction": "noise"}, 0.4990187583, [0.0404401145, 0.5]),
        (
            "seeds_3a",
            {"prediction": "noise"},
            0.3809215753,
            [0.4573637317, 0.1705766242, 0.3832104683],
        ),
    ],
)
def test_single_step_vectors_of_spec_4_4(method, kwargs, a, c):
    """s^2 = 0.25, sigma 1 -> 0.5 (h = ln 2), VE coordinates."""
    got_a, got_c = _affine(method, [1.0, 0.5], **kwargs)
    assert got_a == pytest.approx(a, abs=1e-9)
    assert [abs(v) for v in got_c] == pytest.approx(c, abs=1e-9)


@pytest.mark.parametrize(
    ("method", "options", "form"),
    [
        ("seeds_2a", {"r": 0.3}, "data"),
        ("seeds_3a", {"r1": 0.2, "r2": 0.7}, "data"),
        ("seeds_2a", {"r": 0.3}, "noise"),
        ("seeds_3a", {"r1": 0.2, "r2": 0.7}, "noise"),
    ],
)
def test_empirical_covariance_of_the_stage_noises(method, options, form):
    """10^6 draws of (N_1, ..., N_m) from the generated weights against the derived covariance
    (non-uniform nodes: catches swapped weights, bug B1 of the reference code)."""
    module = load_method(method)
    h, eta = 0.7, 1.0
    weights = np.array(
        [
            list(row) + [0.0] * (3 - len(row))
            for row in module.noise_weights(h, eta, form, **options)
        ]
    )
    m = weights.shape[0]
    z = np.random.default_rng(0).standard_normal((1_000_000, 3))[:, :m]
    empirical = np.cov((z @ weights[:, :m].T).T)
    nodes = [sympy.nsimplify(v) for v in module.noisy_nodes(**options)]
    exact = stage_noise(nodes, form).covariance
    expected = np.array(
        [
            [float(exact[k][ell].subs({H: h, ETA: eta}).evalf()) for ell in range(m)]
            for k in range(m)
        ]
    )
    assert np.allclose(empirical, expected, atol=4e-3 * expected.max())


def test_swapped_weights_do_not_factorise_the_covariance():
    noise = stage_noise([sympy.Rational(3, 10)], "data")
    w = noise.weights
    swapped = (
        w[0],
        (
            sympy.exp(-ETA * sympy.Rational(3, 10) * H)
            * sympy.sqrt(1 - sympy.exp(-2 * ETA * sympy.Rational(7, 10) * H)),
            w[1][1],
        ),
    )
    value = {H: 0.9, ETA: 1.0}
    good = float((w[1][0] ** 2 + w[1][1] ** 2).subs(value))
    bad = float((swapped[1][0] ** 2 + swapped[1][1] ** 2).subs(value))
    cross_good = float((w[1][0] * w[0][0]).subs(value))
    cross_bad = float((swapped[1][0] * w[0][0]).subs(value))
    exact = noise.covariance
    assert good == pytest.approx(float(exact[1][1].subs(value).evalf()), rel=1e-12)
    assert cross_good == pytest.approx(float(exact[1][0].subs(value).evalf()), rel=1e-12)
    assert abs(cross_bad - cross_good) > 0.05 and abs(bad - good) > 1e-3


@pytest.mark.parametrize(
    ("stochastic", "deterministic", "options"),
    [
        ("seeds_2a", "dpmpp_2s", {}),
        ("seeds_2b", "res_2s", {}),
        ("seeds_3a", "dpmpp_3s", {}),
        ("seeds_3b", "dpmpp_3s_taylor", {}),
        ("seeds_res_4s", "res_4s", {}),
        ("seeds_1", "exp_euler", {}),
    ],
)
def test_eta_zero_is_the_deterministic_method(stochastic, deterministic, options):
    gmm = builtin_denoiser("gmm")
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 80
    sigmas = [80.0, 20.0, 5.0, 1.2, 0.3, 0.05, 0.0]
    a = sample(gmm, x, EDM(), stochastic, sigmas=sigmas, output="edm", eta=0.0, options=options)
    b = sample(gmm, x, EDM(), deterministic, sigmas=sigmas, output="edm")
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


K = kdiffusion_sampling()


@pytest.mark.skipif(K is None, reason="k-diffusion not installed")
def test_seeds_1_is_the_ddpm_ancestral_step():
    """DP SEEDS-1 at eta = 1 = k-diffusion's euler_ancestral(eta = 1) (spec §4.3.2)."""
    gmm = builtin_denoiser("gmm")
    x = torch.randn(2, 64, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 80
    sigmas = torch.tensor([80.0, 10.0, 2.0, 0.4, 0.05, 0.0], dtype=torch.float64)
    draws = torch.randn(
        len(sigmas), 2, 64, generator=torch.Generator().manual_seed(6), dtype=torch.float64
    )

    def replay():
        count = [0]

        def noise(sigma, sigma_next):
            count[0] += 1
            return draws[count[0] - 1]

        return noise

    theirs = K.sample_euler_ancestral(gmm, x, sigmas, eta=1.0, noise_sampler=replay(), disable=True)
    ours = SAMPLERS["seeds_1"](gmm, x, sigmas, noise_sampler=replay(), disable=True)
    assert torch.allclose(ours, theirs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "method",
    ["seeds_1", "seeds_2a", "seeds_2b", "seeds_3a", "seeds_3b", "seeds_res_3s", "seeds_res_4s"],
)
def test_the_mean_is_preserved(method):
    """Data N(mu, s^2) started at its mean: every step keeps it (D(mu) = mu, zero-mean noise)."""
    mu = torch.tensor([1.5, -0.7], dtype=torch.float64)
    gauss = GaussianDenoiser(mu, torch.diag(torch.tensor([0.2, 0.6], dtype=torch.float64)))
    x = mu.reshape(1, 2).clone()

    def zero(sigma, sigma_next):
        return torch.zeros(1, 2, dtype=torch.float64)

    out = sample(
        gauss,
        x,
        EDM(),
        method,
        sigmas=[20.0, 4.0, 0.8, 0.1, 0.02],
        output="edm",
        noise_sampler=zero,
    )
    assert torch.allclose(out, x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("method", "variances"),
    [
        ("seeds_1", (0.119323, 0.203419, 0.237380)),
        ("seeds_2a", (0.196423, 0.245131, 0.250043)),
        ("seeds_2b", (0.227226, 0.248516, 0.250279)),
        ("seeds_3a", (0.250596, 0.250744, 0.250435)),
    ],
)
def test_final_variances_of_spec_4_5(method, variances):
    """N steps uniform in lambda from sigma 20 to 0.02, exact start N(0, s^2 + 20^2)."""
    for steps, expected in zip((8, 32, 128), variances, strict=True):
        sigmas = np.exp(-np.linspace(-math.log(20.0), -math.log(0.02), steps + 1)).tolist()
        global DRAWS
        saved, DRAWS = DRAWS, 3 * steps + 1
        try:
            a, c = _affine(method, sigmas)
        finally:
            DRAWS = saved
        variance = a * a * (S2 + 400.0) + sum(v * v for v in c)
        assert variance == pytest.approx(expected, abs=2e-6)


def test_weak_order_two_for_seeds_2_and_3_and_one_for_seeds_1():
    exact = S2 + 0.02**2
    orders = {}
    for method in ("seeds_1", "seeds_2a", "seeds_3a"):
        errors = []
        for steps in (64, 128, 256):
            sigmas = np.exp(-np.linspace(-math.log(20.0), -math.log(0.02), steps + 1)).tolist()
            global DRAWS
            saved, DRAWS = DRAWS, 3 * steps + 1
            try:
                a, c = _affine(method, sigmas)
            finally:
                DRAWS = saved
            errors.append(abs(a * a * (S2 + 400.0) + sum(v * v for v in c) - exact))
        orders[method] = math.log2(errors[1] / errors[2])
    assert orders["seeds_1"] == pytest.approx(1.0, abs=0.1)
    assert orders["seeds_2a"] == pytest.approx(2.0, abs=0.15)
    assert orders["seeds_3a"] == pytest.approx(2.0, abs=0.25)


def test_per_sample_seeds_make_results_independent_of_the_batch():
    gmm = builtin_denoiser("gmm")
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(7), dtype=torch.float64) * 80
    sigmas = [80.0, 10.0, 1.0, 0.1, 0.0]
    batch = sample(gmm, x, EDM(), "seeds_2a", sigmas=sigmas, output="edm", seeds=[11, 12, 13])
    again = sample(gmm, x, EDM(), "seeds_2a", sigmas=sigmas, output="edm", seeds=[11, 12, 13])
    alone = sample(gmm, x[1:2], EDM(), "seeds_2a", sigmas=sigmas, output="edm", seeds=[12])
    assert torch.equal(batch, again)
    # the same noise per sample; the batched model evaluation may differ in the last bits
    assert torch.allclose(batch[1:2], alone, rtol=1e-12, atol=1e-12)


def test_k_diffusion_style_seeds_functions():
    for name in (
        "seeds_1",
        "seeds_2",
        "seeds_3",
        "seeds_2a",
        "seeds_2b",
        "seeds_3a",
        "seeds_3b",
        "seeds_res_4s",
    ):
        assert name in SAMPLERS
    gmm = builtin_denoiser("gmm")
    calls = []

    def model(x, sigma, **extra):
        calls.append(1)
        assert "seed" not in extra
        return gmm(x, sigma)

    x = torch.randn(2, 64, generator=torch.Generator().manual_seed(8), dtype=torch.float64) * 80
    sigmas = [80.0, 10.0, 1.0, 0.1, 0.0]
    a = SAMPLERS["seeds_2"](model, x, sigmas, extra_args={"seed": 3}, r=0.4, eta=0.8, disable=True)
    b = SAMPLERS["seeds_2"](model, x, sigmas, extra_args={"seed": 3}, r=0.4, eta=0.8, disable=True)
    assert torch.equal(a, b) and len(calls) == 2 * (2 * 3 + 1)
    c = SAMPLERS["seeds_3"](model, x, sigmas, r_1=0.25, r_2=0.6, s_noise=0.0, disable=True)
    assert torch.isfinite(c).all()


def test_bad_stochastic_options():
    x = torch.ones(1, 1, dtype=torch.float64) * 20
    with pytest.raises(InputError, match="takes"):
        sample(GAUSS, x, EDM(), "seeds_2a", sigmas=[20.0, 1.0], output="edm", options={"q": 1})
    with pytest.raises(InputError, match="must increase"):
        sample(
            GAUSS,
            x,
            EDM(),
            "seeds_3a",
            sigmas=[20.0, 1.0],
            output="edm",
            options={"r1": 0.7, "r2": 0.3},
        )
    with pytest.raises(InputError, match="'eta'"):
        sample(GAUSS, x, EDM(), "seeds_2a", sigmas=[20.0, 1.0], output="edm", eta=-1.0)
    with pytest.raises(InputError, match="stochastic methods"):
        sample(GAUSS, x, EDM(), "res_2s", sigmas=[20.0, 1.0], output="edm", options={"r": 0.3})


def _brownian_path(batch: int, cells: int, seed: int):
    """One Brownian path in sigma per sample, exact at the nodes of a fine lambda-uniform grid
    from sigma 20 to 0.02; noise(sigma_a, sigma_b) = normalised increment between two nodes."""
    lams = np.linspace(-math.log(20.0), -math.log(0.02), cells + 1)
    sigmas = np.exp(-lams)
    steps = np.random.default_rng(seed).standard_normal((cells, batch))
    path = np.vstack(
        [
            np.zeros((1, batch)),
            np.cumsum(steps * np.sqrt(sigmas[:-1] - sigmas[1:])[:, None], axis=0),
        ]
    )

    def node(sigma):
        return round((-math.log(sigma) - lams[0]) / (lams[1] - lams[0]))

    def noise(sigma_a, sigma_b):
        a, b = node(sigma_a), node(sigma_b)
        return torch.from_numpy((path[b] - path[a]) / math.sqrt(abs(sigmas[a] - sigmas[b])))[
            :, None
        ]

    return noise


def test_strong_order_one_on_a_shared_brownian_path():
    """RMS distance to a fine solution on the same path (SEEDS-2 with 2048 steps)."""
    batch = 300
    x = torch.randn(
        batch, 1, generator=torch.Generator().manual_seed(9), dtype=torch.float64
    ) * math.sqrt(S2 + 400.0)
    noise = _brownian_path(batch, 4096, seed=10)

    def grid(n):
        return np.exp(-np.linspace(-math.log(20.0), -math.log(0.02), n + 1)).tolist()

    reference = sample(
        GAUSS, x, EDM(), "seeds_2a", sigmas=grid(2048), output="edm", noise_sampler=noise
    )
    for method in ("seeds_1", "seeds_2a"):
        errors = [
            float(
                (
                    sample(
                        GAUSS, x, EDM(), method, sigmas=grid(n), output="edm", noise_sampler=noise
                    )
                    - reference
                )
                .pow(2)
                .mean()
                .sqrt()
            )
            for n in (32, 64, 128)
        ]
        slope = -np.polyfit(np.log([32, 64, 128]), np.log(errors), 1)[0]
        assert 0.8 < slope < 1.2, (method, errors)


def test_brownian_tree_noise_is_one_path():
    pytest.importorskip("torchsde")
    from phiforge.runtime.noise import BrownianTreeNoise

    x = torch.zeros(3, 2, dtype=torch.float64)
    tree = BrownianTreeNoise(x, 0.01, 80.0, seeds=[1, 2, 3])
    whole = tree(80.0, 1.0) * math.sqrt(79.0)
    parts = tree(80.0, 10.0) * math.sqrt(70.0) + tree(10.0, 1.0) * math.sqrt(9.0)
    assert torch.allclose(whole, parts, atol=1e-12)
    alone = BrownianTreeNoise(x[1:2], 0.01, 80.0, seeds=[2])
    assert torch.allclose(alone(80.0, 1.0), tree(80.0, 1.0)[1:2], atol=1e-12)


def test_restart_and_seeds_compose():
    gmm = builtin_denoiser("gmm")
    x = torch.randn(2, 64, generator=torch.Generator().manual_seed(11), dtype=torch.float64) * 80
    out, info = sample(
        gmm,
        x,
        EDM(),
        "seeds_2a",
        restart="cifar10-vp-43",
        output="edm",
        seeds=[1, 2],
        return_info=True,
    )
    assert info.nfe == 43 and torch.isfinite(out).all()


@pytest.mark.parametrize(("method", "order"), [("seeds_2a", 2), ("seeds_3a", 3)])
def test_eta_zero_order_on_the_mixture(method, order):
    """Deterministic order k of SEEDS-k at eta = 0 on the digits mixture (DOP853 reference)."""
    from phiforge.runtime.verification import builtin_problem, defect

    problem = builtin_problem("gmm", batch=2, seed=5)
    errors = []
    for steps in (64, 128, 256):
        x = sample(
            problem.denoiser,
            problem.x_start,
            problem.schedule,
            method,
            steps=steps,
            t_start=1.0,
            t_end=1e-3,
            output="edm",
            eta=0.0,
        )
        errors.append(defect(x, problem.reference))
    slope = -np.polyfit(np.log([64, 128, 256]), np.log(errors), 1)[0]
    assert slope == pytest.approx(order, abs=0.3)
