"""Stochastic fitted solvers (runtime.fitted with eta > 0): their noise has the exact variance of
the eta-dynamics, their drift keeps its polynomial exactness in the stretched step
(1 + eta) h, unfitted they converge to the data's law, fitted on the Frechet objective they
approach it at a budget where the unfitted ones are far off, and bad input is refused by name."""

import dataclasses
import json
import math

import mpmath
import numpy as np
import pytest
import torch
from scipy import linalg

from phiforge.runtime.denoisers import builtin_denoiser
from phiforge.runtime.errors import InputError
from phiforge.runtime.fitted import coupled_reference, fit_solver, load_solver
from phiforge.runtime.noise import per_sample_noise
from phiforge.runtime.verification import covariance_root, frechet_tensor, moments_root

SIGMA_MAX, SIGMA_MIN = 80.0, 0.002


def _exact_start(gmm, n, generator):
    x0 = gmm.sample_data(n, generator)
    return x0 + SIGMA_MAX * torch.randn(x0.shape, generator=generator, dtype=x0.dtype)


@pytest.fixture(scope="module")
def problem():
    gmm = builtin_denoiser("gmm")
    generator = torch.Generator().manual_seed(3)
    pilot = _exact_start(gmm, 256, generator)
    # samples of the model's distribution at sigma_min: the exact denoiser's is the mixture
    reference = gmm.sample_data(2048, generator)
    held = _exact_start(gmm, 2048, generator)
    return {"gmm": gmm, "pilot": pilot, "reference": reference, "held": held}


@pytest.fixture(scope="module")
def stochastic(problem):
    p = problem
    common = (p["gmm"], p["pilot"], p["reference"], SIGMA_MAX, SIGMA_MIN, 8)
    fitted = fit_solver(*common, eta=1.0, iterations=40, seed=5)
    plain = fit_solver(*common, eta=1.0, iterations=0)
    return fitted, plain


def test_frechet_tensor_is_the_gaussian_frechet_distance():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((400, 5)) @ rng.standard_normal((5, 5))
    b = rng.standard_normal((300, 5)) * [1, 2, 3, 0.5, 1] + 0.3
    mean_a, cov_a = a.mean(0), np.cov(a, rowvar=False)
    mean_b, cov_b = b.mean(0), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b).real
    expected = ((mean_a - mean_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root)
    ours = frechet_tensor(torch.from_numpy(a), *moments_root(torch.from_numpy(b)))
    assert float(ours) == pytest.approx(expected, rel=1e-9)
    assert float(frechet_tensor(torch.from_numpy(b), *moments_root(torch.from_numpy(b)))) < 1e-9


def test_the_noise_has_the_exact_variance_of_the_eta_dynamics(stochastic):
    """D = 0 and x = 0: x_end = sum_n e^{-(1+eta)(lam_end - lam_(n+1))} sigma_(n+1)
    sqrt(1 - e^{-2 eta h_n}) z_n, whose variance telescopes to sigma_end^2 (1 - e^{-2 eta L})."""
    fitted, _ = stochastic
    x = torch.zeros(200000, 1, dtype=torch.float64)
    out = fitted.sample(lambda x, sigma: torch.zeros_like(x), x, generator=torch.Generator())
    span = math.log(SIGMA_MAX / SIGMA_MIN)
    expected = SIGMA_MIN**2 * -math.expm1(-2 * span)
    assert float(out.var()) == pytest.approx(expected, rel=0.02)
    assert abs(float(out.mean())) < 4 * math.sqrt(expected / x.shape[0])


def test_the_fitted_drift_is_exact_for_linear_data_predictions(stochastic):
    """With D = p(lam) and no noise the solution is e^{-(1+eta) L} x + (1+eta) int
    e^{-(1+eta)(lam_end - s)} p(s) ds: exact for p of degree < order (2), not beyond."""
    fitted, _ = stochastic
    assert fitted.eta == 1.0 and fitted.order == 2

    def model(coefficients):
        def denoise(x, sigma):
            lam = -torch.log(sigma.double())
            value = sum(c * lam**j for j, c in enumerate(coefficients))
            return value.reshape(-1, 1).expand_as(x)

        return denoise

    def exact(coefficients, x):
        lam0, lam1 = -math.log(SIGMA_MAX), -math.log(SIGMA_MIN)

        def integrand(s):
            return (
                2 * mpmath.exp(-2 * (lam1 - s)) * sum(c * s**j for j, c in enumerate(coefficients))
            )

        integral = mpmath.quad(integrand, [lam0, lam1])
        return math.exp(-2 * (lam1 - lam0)) * x + float(integral)

    x = torch.tensor([[1.5], [-2.0]], dtype=torch.float64)

    def silent(sigma, sigma_next):
        return torch.zeros_like(x)

    for coefficients, exact_to in (([0.3, -0.7], True), ([0.3, -0.7, 0.2], False)):
        out = fitted.sample(model(coefficients), x, noise_sampler=silent)
        error = float((out - exact(coefficients, x)).abs().max())
        assert error < 1e-11 if exact_to else error > 1e-6


def test_unfitted_on_many_steps_it_samples_a_gaussian_exactly():
    """Data N(0.5, 0.3^2) with its exact denoiser: 400 steps of the eta = 1 solver reach the
    law N(0.5, 0.3^2 + sigma_min^2) (a wrong decay or drift scale would miss it by far)."""
    mean, var = 0.5, 0.09

    def gaussian(x, sigma):
        return mean + var / (var + sigma.reshape(-1, 1) ** 2) * (x - mean)

    generator = torch.Generator().manual_seed(0)
    n = 40000
    x = torch.randn(n, 1, generator=generator, dtype=torch.float64) * math.hypot(SIGMA_MAX, 0.3)
    x = x + mean
    solver = fit_solver(
        gaussian, x[:4], x[:4], SIGMA_MAX, SIGMA_MIN, 400, eta=1.0, objective="frechet",
        iterations=0,
    )  # fmt: skip
    out = solver.sample(gaussian, x, generator=generator)
    assert float(out.mean()) == pytest.approx(mean, abs=4 * math.sqrt(var / n))
    assert float(out.var()) == pytest.approx(var + SIGMA_MIN**2, rel=4 * math.sqrt(2 / n))


def _frechet_to_truth(out, gmm):
    mean, cov = gmm.moments()
    return float(frechet_tensor(out, mean, covariance_root(cov)))


def test_a_stochastic_fit_approaches_the_law_on_held_out_points(problem, stochastic):
    """At NFE 8 the Adams weights with noise are far from the data (unstable third-order
    extrapolation of noisy values, like dpmpp_3m_sde); 40 L-BFGS iterations on 256 pilots
    bring the held-out Frechet distance to the exact moments down by more than 10x."""
    fitted, plain = stochastic
    assert fitted.info["objective"] == "frechet"
    assert fitted.info["pilot_frechet"] < 0.2 * fitted.info["pilot_frechet_start"]
    gmm, held = problem["gmm"], problem["held"]
    ours = _frechet_to_truth(fitted.sample(gmm, held, generator=torch.Generator()), gmm)
    unfitted = _frechet_to_truth(plain.sample(gmm, held, generator=torch.Generator()), gmm)
    assert ours < 0.1 * unfitted


def test_seeded_sampling_is_reproducible_and_survives_a_round_trip(problem, stochastic, tmp_path):
    fitted, _ = stochastic
    gmm, x = problem["gmm"], problem["held"][:6]
    again = load_solver(fitted.save(tmp_path / "sde.json"))
    assert again.eta == 1.0
    first = fitted.sample(gmm, x, noise_sampler=per_sample_noise(x, range(6)))
    second = again.sample(gmm, x, noise_sampler=per_sample_noise(x, range(6)))
    assert torch.equal(first, second)
    # per-sample seeds: a sample does not depend on its batch
    alone = again.sample(gmm, x[2:3], noise_sampler=per_sample_noise(x[2:3], [2]))
    assert torch.allclose(alone, first[2:3], rtol=0, atol=1e-12)
    other = again.sample(gmm, x, noise_sampler=per_sample_noise(x, range(6, 12)))
    assert not torch.allclose(other, first)


def test_bad_stochastic_input_is_rejected_by_name(problem, stochastic):
    p = problem
    common = (p["gmm"], p["pilot"], p["reference"], SIGMA_MAX, SIGMA_MIN, 4)
    with pytest.raises(InputError, match="'eta' must be a finite number >= 0"):
        fit_solver(*common, eta=-0.5)
    with pytest.raises(InputError, match="with eta > 0 use 'frechet'"):
        fit_solver(*common, eta=1.0, objective="defect")
    with pytest.raises(InputError, match="'objective' must be 'defect' or 'frechet'"):
        fit_solver(*common, objective="kl")
    with pytest.raises(InputError, match=r"more rows than dimensions \(64\)"):
        fit_solver(p["gmm"], p["pilot"][:32], p["reference"], SIGMA_MAX, SIGMA_MIN, 4, eta=1.0)
    deterministic = fit_solver(*common, iterations=0, objective="frechet")
    with pytest.raises(InputError, match="'noise_sampler', 'generator' apply to a stochastic"):
        deterministic.sample(p["gmm"], p["held"][:2], generator=torch.Generator())


def test_fit_command_judges_seeds_between_the_fits_ends(capsys, tmp_path):
    """The stochastic baseline runs from the fit's sigma~_max to its sigma~_min (vp-linear:
    152.2 -> 0.0105; it once ran over EDM's 80 -> 0.002 from the same starts) with the same
    draws: recomputed here on an explicit grid, two SEEDS-3 steps for NFE 6."""
    from phiforge.cli.fit_commands import TEACHER, starting_points
    from phiforge.cli.main import main
    from phiforge.runtime.denoisers import builtin_denoiser
    from phiforge.runtime.driver import sample
    from phiforge.runtime.verification import frechet_features, frechet_tensor, moments_root

    argv = ["fit", "--eta", "1", "--nfe", "6", "--pilot", "70", "--held-out", "70",
            "--iterations", "2", "--teacher-steps", "48", "--format", "json"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "s.json")]) == 0
    result = json.loads(capsys.readouterr().out)
    denoiser = builtin_denoiser("gmm")
    assert frechet_features(denoiser) is None  # the mixture is judged in its own 64 values
    ends = math.log(result["sigmas"][0]), math.log(result["sigmas"][-1])
    held = starting_points(denoiser.dim, 70, result["sigmas"][0], 0 + 2)

    def logsnr(steps: int) -> list[float]:
        return torch.exp(torch.linspace(*ends, steps + 1, dtype=torch.float64)).tolist()

    target = moments_root(sample(denoiser, held, "edm", TEACHER, output="edm", sigmas=logsnr(48)))
    plain = sample(
        denoiser, held, "edm", "seeds_3a", output="edm", sigmas=logsnr(2), eta=1.0,
        generator=torch.Generator().manual_seed(0 + 4),
    )  # fmt: skip
    expected = float(frechet_tensor(plain, *target))
    assert result["held_out_defect"]["seeds_3a_logsnr"] == pytest.approx(expected, rel=1e-9)


def test_fit_command_with_eta_and_seeded_sampling(capsys, tmp_path):
    from phiforge.cli.main import main

    path = tmp_path / "sde.json"
    argv = ["fit", "--eta", "1", "--nfe", "5", "--pilot", "80", "--held-out", "80"]
    assert main([*argv, "--iterations", "3", "--out", str(path), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["objective"] == "frechet"
    assert result["pilot_frechet"] < result["pilot_frechet_start"]
    assert set(result["held_out_defect"]) == {"seeds_3a_logsnr", "fitted"}
    assert load_solver(path).eta == 1.0
    assert result["fitted_vs_best_compared"] == pytest.approx(
        result["held_out_defect"]["fitted"] / result["held_out_defect"]["seeds_3a_logsnr"]
    )
    drawn = []
    for seed in ("0", "0", "1"):
        out = tmp_path / f"samples{len(drawn)}.pt"
        sample_argv = ["sample", "--fitted", str(path), "--batch", "3", "--seed", seed]
        assert main([*sample_argv, "--out", str(out), "--format", "json"]) == 0
        assert json.loads(capsys.readouterr().out)["eta"] == 1.0
        drawn.append(torch.load(out))
    assert torch.equal(drawn[0], drawn[1]) and not torch.equal(drawn[0], drawn[2])
    # --start continues from the file: the same pilots and noise, so it starts where it ended
    again = tmp_path / "again.json"
    resumed = [*argv, "--iterations", "1", "--start", str(path), "--out", str(again)]
    assert main([*resumed, "--format", "json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["warm_start"] and not result["warm_start"]
    assert second["pilot_frechet_start"] == pytest.approx(result["pilot_frechet"], rel=1e-9)
    assert main([*argv, "--nfe", "6", "--start", str(path), "--out", str(again)]) == 2
    assert "its (nfe, steps, history, order) (5, 3, 4, 2) differ" in capsys.readouterr().err
    assert main(["fit", "--eta", "-1", "--pilot", "80"]) == 2
    assert "'eta' must be a finite number >= 0" in capsys.readouterr().err
    # --fit-noise: the amplitudes are fitted (from 1) and saved; refused for an ODE fit
    noisy = tmp_path / "noisy.json"
    fitted = [*argv, "--iterations", "3", "--fit-noise", "--out", str(noisy), "--format", "json"]
    assert main(fitted) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["fit_noise"] and result["pilot_frechet"] < result["pilot_frechet_start"]
    assert max(abs(a - 1) for a in load_solver(noisy).noise_scale) > 0.1  # measured 0.31
    assert main(["fit", "--fit-noise", "--pilot", "80", "--out", str(noisy)]) == 2
    assert "'fit_noise' applies to a stochastic fit" in capsys.readouterr().err


def test_warm_start_keeps_the_solver_and_continues_in_eta(problem, stochastic):
    p = problem
    fitted, _ = stochastic
    common = (p["gmm"], p["pilot"], p["reference"], SIGMA_MAX, SIGMA_MIN, 8)
    same = fit_solver(*common, eta=1.0, iterations=0, seed=5, start=fitted)
    assert same.sigmas == pytest.approx(fitted.sigmas, rel=1e-12)
    for ours, theirs in zip(
        same.predictor + same.corrector, fitted.predictor + fitted.corrector, strict=True
    ):
        assert ours == pytest.approx(theirs, rel=0, abs=1e-12)
    assert same.info["pilot_frechet_start"] == pytest.approx(fitted.info["pilot_frechet"], 1e-9)
    # at another eta: the same departure from that eta's Adams weights, which stay exact
    lower = fit_solver(*common, eta=0.5, iterations=0, start=fitted)
    plain = fit_solver(*common, eta=0.5, iterations=0, sigmas=fitted.sigmas)
    adams = fit_solver(*common, eta=1.0, iterations=0, sigmas=fitted.sigmas)
    moved = 0.0
    for ours, base, theirs, own in zip(
        lower.predictor, plain.predictor, fitted.predictor, adams.predictor, strict=True
    ):
        departure = np.subtract(theirs, own)
        assert np.subtract(ours, base) == pytest.approx(departure, rel=0, abs=1e-12)
        moved = max(moved, np.abs(departure).max())
    assert moved > 1e-3  # the fit moved the weights, so the check can fail
    with pytest.raises(InputError, match=r"'start': its \(nfe, steps, history, order\)"):
        fit_solver(
            p["gmm"], p["pilot"], p["reference"], SIGMA_MAX, SIGMA_MIN, 6, eta=1.0, start=fitted
        )
    with pytest.raises(InputError, match="'start' and 'sigmas' exclude each other"):
        fit_solver(*common, eta=1.0, start=fitted, sigmas=fitted.sigmas)
    with pytest.raises(InputError, match="its sigma ends"):
        fit_solver(p["gmm"], p["pilot"], p["reference"], 40.0, SIGMA_MIN, 8, eta=1.0, start=fitted)


def test_coupled_reference_puts_the_coarse_solver_on_the_fine_path(problem):
    """For D constant both solves are exact, so a coarse solver driven by the coupled normals
    lands on the fine solve's samples to rounding; the normals are unit and independent."""
    x = SIGMA_MAX * torch.randn(50000, 2, dtype=torch.float64, generator=torch.Generator())
    value = torch.tensor([0.3, -0.5], dtype=torch.float64)

    def constant(x, sigma):
        return value.expand_as(x)

    grid = np.exp(np.linspace(math.log(SIGMA_MAX), math.log(SIGMA_MIN), 7)).tolist()
    samples, normals = coupled_reference(constant, x, grid, 1.0, substeps=8, seed=3)
    assert len(normals) == 6
    solver = fit_solver(
        constant, x[:4], samples[:4], SIGMA_MAX, SIGMA_MIN, 6, eta=1.0, iterations=0, sigmas=grid
    )
    kept = iter(normals)
    coarse = solver.sample(constant, x, noise_sampler=lambda sigma, sigma_next: next(kept))
    assert float((coarse - samples).abs().max()) < 1e-12
    z = torch.stack(normals).flatten(1)  # (steps, draws)
    assert float((z.var(dim=1) - 1).abs().max()) < 0.03  # 1e5 draws: sd of the variance 0.0045
    correlation = torch.corrcoef(z)
    assert float((correlation - torch.eye(6, dtype=torch.float64)).abs().max()) < 0.02
    # another seed: another path
    _, others = coupled_reference(constant, x, grid, 1.0, substeps=8, seed=4)
    assert not torch.allclose(others[0], normals[0])


def test_coupled_noise_drives_the_fit_and_bad_input_is_refused(problem):
    """On the digits mixture at NFE 8 the coarse solver on the coupled path ends nearer the fine
    samples than on other noise (RMS measured 0.53-0.56 against 0.96-0.98, seeds 0-2), and the
    fit's objective is computed on the noise it was given."""
    p = problem
    grid = np.exp(np.linspace(math.log(SIGMA_MAX), math.log(SIGMA_MIN), 9)).tolist()
    samples, normals = coupled_reference(p["gmm"], p["pilot"], grid, 1.0, substeps=4, seed=1)
    common = (p["gmm"], p["pilot"], samples, SIGMA_MAX, SIGMA_MIN, 8)
    coupled = fit_solver(*common, eta=1.0, iterations=0, sigmas=grid, noise=normals)
    kept = iter(normals)
    on_path = coupled.sample(p["gmm"], p["pilot"], noise_sampler=lambda s, t: next(kept))
    elsewhere = coupled.sample(p["gmm"], p["pilot"], generator=torch.Generator().manual_seed(1))

    def rms(points):
        return float((points - samples).pow(2).mean().sqrt())

    assert rms(on_path) < 0.7 * rms(elsewhere)
    objective = float(frechet_tensor(on_path, *moments_root(samples)))
    assert coupled.info["pilot_frechet_start"] == pytest.approx(objective, rel=1e-9)
    common = (*common[:-1], 4)
    with pytest.raises(InputError, match="'noise' must be 4 float64 tensors"):
        fit_solver(*common, eta=1.0, iterations=0, noise=normals[:3])
    with pytest.raises(InputError, match="'noise' applies to a stochastic fit"):
        fit_solver(*common, iterations=0, objective="frechet", noise=normals[:4])
    with pytest.raises(InputError, match="'eta' must be a finite number > 0"):
        coupled_reference(p["gmm"], p["pilot"], grid, 0.0)
    with pytest.raises(InputError, match="'substeps' must be an integer >= 1"):
        coupled_reference(p["gmm"], p["pilot"], grid, 1.0, substeps=0)
    with pytest.raises(InputError, match="'sigmas' must be strictly descending"):
        coupled_reference(p["gmm"], p["pilot"], [80.0, 90.0, 0.002], 1.0)
    with pytest.raises(InputError, match="'sigmas' must hold at least 2 values"):
        coupled_reference(p["gmm"], p["pilot"], [80.0], 1.0)


def test_noise_amplitudes_scale_each_steps_noise_and_survive_a_round_trip(tmp_path):
    """With D = 0 the solver is x_(n+1) = e^(-2 h_n) x_n + a_n sigma_(n+1) sqrt(1 - e^(-2 h_n))
    z_n (eta 1), whose final variance follows by recursion; 1e5 draws match it within 3 %."""
    grid = np.exp(np.linspace(math.log(SIGMA_MAX), math.log(0.5), 5)).tolist()

    def zero(x, sigma):
        return torch.zeros_like(x)

    x = SIGMA_MAX * torch.randn(100000, 1, dtype=torch.float64, generator=torch.Generator())
    exact = fit_solver(zero, x[:4], x[:4], SIGMA_MAX, 0.5, 4, eta=1.0, iterations=0, sigmas=grid)
    assert exact.noise_scale is None and "noise_scale" not in exact.to_dict()
    scales = [0.5, 2.0, 1.0, 1.5]
    scaled = dataclasses.replace(exact, noise_scale=scales)
    variance = SIGMA_MAX**2
    for n, a in enumerate(scales):
        h = math.log(grid[n] / grid[n + 1])
        variance = math.exp(-4 * h) * variance + a**2 * grid[n + 1] ** 2 * -math.expm1(-2 * h)
    out = scaled.sample(zero, x, generator=torch.Generator().manual_seed(2))
    assert float(out.var()) == pytest.approx(variance, rel=0.03)
    plain = exact.sample(zero, x, generator=torch.Generator().manual_seed(2))
    assert abs(float(plain.var()) / variance - 1) > 0.2  # the scales matter here
    back = load_solver(scaled.save(tmp_path / "scaled.json"))
    assert back.noise_scale == scales and back.to_dict()["hash"] == scaled.to_dict()["hash"]
    # a warm start keeps them (and fits from them with fit_noise)
    kept = fit_solver(zero, x[:4], x[:4], SIGMA_MAX, 0.5, 4, eta=1.0, iterations=0, start=back)
    assert kept.noise_scale == pytest.approx(scales, rel=1e-12)
    bad = dataclasses.replace(exact, noise_scale=[1.0, 1.0, -1.0, 1.0])
    (tmp_path / "bad.json").write_text(json.dumps(bad.to_dict()))
    with pytest.raises(InputError, match="'noise_scale' must be 4 finite numbers > 0"):
        load_solver(tmp_path / "bad.json")
    with pytest.raises(InputError, match="'fit_noise' applies to a stochastic fit"):
        fit_solver(zero, x[:4], x[:4], SIGMA_MAX, 0.5, 4, iterations=0, fit_noise=True)


def test_fitting_the_noise_amplitudes_alone_lowers_the_objective(problem, stochastic):
    """Weights and grid kept (log-SNR uniform, unfitted), only a_n fitted: the pilot Frechet
    distance falls and the held-out one follows (digits mixture, NFE 8, eta 1, 256 pilots)."""
    p = problem
    _, plain = stochastic
    common = (p["gmm"], p["pilot"], p["reference"], SIGMA_MAX, SIGMA_MIN, 8)
    noisy = fit_solver(
        *common, eta=1.0, iterations=20, seed=5, start=plain, fit_weights=False, fit_grid=False,
        fit_noise=True,
    )  # fmt: skip
    assert noisy.info["fit_noise"]
    assert noisy.sigmas == pytest.approx(plain.sigmas, rel=1e-12)
    for ours, theirs in zip(noisy.predictor, plain.predictor, strict=True):
        assert ours == pytest.approx(theirs, rel=0, abs=1e-12)
    assert max(abs(a - 1) for a in noisy.noise_scale) > 1e-2
    assert noisy.info["pilot_frechet"] < 0.3 * noisy.info["pilot_frechet_start"]  # 7.17 -> 0.644
    generator = torch.Generator().manual_seed(9)
    before = _frechet_to_truth(plain.sample(p["gmm"], p["held"], generator=generator), p["gmm"])
    generator = torch.Generator().manual_seed(9)
    after = _frechet_to_truth(noisy.sample(p["gmm"], p["held"], generator=generator), p["gmm"])
    assert after < 0.2 * before  # measured 6.23 -> 0.228


def test_block_colours_are_the_tile_means_and_images_get_them():
    from phiforge.runtime.verification import FRECHET_DIRECT, block_colours, frechet_features

    images = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).reshape(2, 3, 16, 16)
    out = block_colours(images.reshape(2, -1), (3, 16, 16))
    assert out.shape == (2, 12) and out.dtype == torch.float64
    # image 1, channel 2, tile (row 1, column 0): rows 8..15, columns 0..7
    tile = images[1, 2, 8:16, 0:8].double().mean()
    assert float(out[1, 2 * 4 + 1 * 2 + 0]) == float(tile)
    grey = block_colours(torch.ones(1, 16 * 8), (16, 8))
    assert grey.tolist() == [[1.0, 1.0]]
    with pytest.raises(InputError, match="divisible by 8"):
        block_colours(torch.ones(1, 3 * 12 * 12), (3, 12, 12))

    class Patches:
        image_shape = (3, 32, 32)

    features = frechet_features(Patches())
    assert features(torch.zeros(5, 3 * 32 * 32)).shape == (5, 48)
    # the digits' 64 values are few enough to be their own features
    assert math.prod(builtin_denoiser("gmm").image_shape) <= FRECHET_DIRECT
    assert frechet_features(builtin_denoiser("gmm")) is None


def test_a_frechet_fit_in_a_feature_space_needs_rows_for_its_features_only(problem):
    """32 pilots cannot fit the 64 x 64 covariance of the digits, but can fit that of 16
    features; the fit's objective is the Frechet distance of the features (recomputed here
    from the unfitted solver's samples with the same noise), and the fit lowers it."""
    p = problem
    pilot = p["pilot"][:32]

    def first_sixteen(samples):
        return samples.reshape(samples.shape[0], -1)[:, :16]

    common = (p["gmm"], pilot, p["reference"], SIGMA_MAX, SIGMA_MIN, 6)
    with pytest.raises(InputError, match=r"more rows than dimensions \(64\)"):
        fit_solver(*common, eta=1.0)
    plain = fit_solver(*common, eta=1.0, iterations=0, seed=4, features=first_sixteen)
    generator = torch.Generator().manual_seed(4)
    draws = iter([torch.randn(pilot.shape, generator=generator, dtype=torch.float64)
                  for _ in range(6)])  # fmt: skip
    out = plain.sample(p["gmm"], pilot, noise_sampler=lambda a, b: next(draws))
    target = moments_root(first_sixteen(p["reference"]))
    expected = float(frechet_tensor(first_sixteen(out), *target))
    assert plain.info["pilot_frechet_start"] == pytest.approx(expected, rel=1e-9)
    assert plain.info["features"] == "first_sixteen"
    fitted = fit_solver(*common, eta=1.0, iterations=10, seed=4, features=first_sixteen)
    assert fitted.info["pilot_frechet"] < 0.8 * fitted.info["pilot_frechet_start"]


def test_bad_feature_maps_are_rejected_by_name(problem):
    p = problem
    common = (p["gmm"], p["pilot"], p["reference"], SIGMA_MAX, SIGMA_MIN, 4)
    with pytest.raises(InputError, match="'features' must be callable"):
        fit_solver(*common, eta=1.0, features="blocks")
    with pytest.raises(InputError, match=r"'features' must map rows .* gave \(2,\)"):
        fit_solver(*common, eta=1.0, features=lambda s: s.sum(1))
    with pytest.raises(InputError, match="'features' failed on two reference rows"):
        fit_solver(*common, eta=1.0, features=lambda s: s.reshape(3, -1))
    with pytest.raises(InputError, match="'features' applies to the 'frechet' objective"):
        fit_solver(*common, features=lambda s: s)
