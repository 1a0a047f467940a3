"""Flow matching end to end: the built-in denoisers under the rectified-flow schedule from its
zero-SNR start (t = 1), the CLI, and diffusers' flow-matching configs in PhiforgeScheduler."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from phiforge.cli.main import main
from phiforge.runtime import sample
from phiforge.runtime.denoisers import builtin_denoiser
from phiforge.runtime.errors import InputError


@pytest.mark.parametrize("name", ["gaussian", "gmm", "empirical", "network"])
def test_builtin_denoisers_return_the_data_mean_at_infinite_sigma(name):
    denoiser = builtin_denoiser(name)
    x = torch.randn(3, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([math.inf, 2.0, math.inf], dtype=torch.float64)
    out = denoiser(x, sigma)
    mean = builtin_denoiser("gmm" if name == "network" else name).data_mean()
    assert torch.isfinite(out).all()
    assert torch.allclose(out[0], mean, atol=1e-12) and torch.allclose(out[2], mean, atol=1e-12)
    assert torch.allclose(out[1], denoiser(x[1:2], 2.0)[0], atol=1e-12)
    if name != "network":  # the exact posterior mean tends to the data mean as sigma grows
        far = denoiser(x * 1e4, 1e4)
        assert (far - mean).abs().max() < 1e-2


def test_flow_schedule_from_t_1_converges_to_the_exact_flow():
    """Gaussian data: the exact probability-flow solution from zero SNR is known in closed form.
    The zero-SNR start is the h -> inf limit of the exponential Euler step, which caps the
    global order at 2 (its error ~ eigenvalue^1.5 / N^2); measured orders 1.97-2.0 (res_2s),
    2.2-2.9 (res_3m_pc) between N = 16 and 128."""
    gaussian = builtin_denoiser("gaussian")
    eps = torch.randn(16, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t_end = 0.05
    exact = (1 - t_end) * gaussian.flow_from_zero_snr(eps, t_end / (1 - t_end))
    for method, low in (("res_2s", 1.9), ("res_3m_pc", 1.9), ("exp_euler", 0.9)):
        errors = []
        for steps in (16, 32, 64):
            x = sample(
                gaussian, eps, "flow", method, steps=steps, step_schedule="time",
                output="edm", t_end=t_end,
            )  # fmt: skip
            errors.append(float((x - exact).pow(2).mean(1).sqrt().mean()))
        orders = [math.log2(a / b) for a, b in itertools.pairwise(errors)]
        assert min(orders) > low, (method, errors)
    assert errors[-1] < 2e-2


def test_flow_schedule_per_sample_grids_match_separate_runs():
    gmm = builtin_denoiser("gmm")
    eps = torch.randn(2, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    schedule_sigmas = [[math.inf, 8.0, 2.0, 0.5, 0.1, 0.0], [math.inf, 5.0, 1.0, 0.3, 0.05, 0.0]]
    together = sample(gmm, eps, "flow", "res_2m", sigmas=schedule_sigmas, output="edm")
    for row in range(2):
        alone = sample(gmm, eps[row : row + 1], "flow", "res_2m", sigmas=schedule_sigmas[row],
                       output="edm")  # fmt: skip
        assert torch.allclose(together[row], alone[0], atol=1e-12)


def test_cli_samples_the_flow_schedule_with_every_builtin(capsys, tmp_path):
    for denoiser in ("gaussian", "gmm", "empirical", "network"):
        out = tmp_path / f"{denoiser}.pt"
        code = main(
            ["sample", "--schedule", "flow", "--denoiser", denoiser, "--nfe", "8", "--batch", "4",
             "--out", str(out), "--format", "json"]
        )  # fmt: skip
        result = json.loads(capsys.readouterr().out)
        samples = torch.load(out)
        assert code == 0 and result["step_schedule"] == "time" and result["nfe"] == 8
        assert torch.isfinite(samples).all() and samples.abs().max() < 5


# ------------------------------------------------------------------------- diffusers
def _unet():
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    return (
        diffusers.UNet2DModel(
            sample_size=8,
            in_channels=3,
            out_channels=3,
            layers_per_block=1,
            block_out_channels=(16, 32),
            down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"),
            norm_num_groups=8,
        )
        .double()
        .eval()
    )


def _run(unet, scheduler, steps, x, **options):
    scheduler.set_timesteps(steps, **options)
    for t in scheduler.timesteps:
        with torch.no_grad():
            velocity = unet(x, t).sample
        x = scheduler.step(velocity, t, x).prev_sample
    return x


def test_flow_match_config_runs_a_flow_unet_like_flow_match_euler():
    """PhiforgeScheduler.from_config(FlowMatchEulerDiscreteScheduler's config): the same grid
    (shift 3, t = 1 start), velocity outputs; exp_euler is Euler on the linear path, so it equals
    FlowMatchEuler up to that scheduler's float32 sigmas."""
    unet = _unet()
    from diffusers import FlowMatchEulerDiscreteScheduler

    from phiforge.runtime.diffusers_scheduler import PhiforgeScheduler

    reference = FlowMatchEulerDiscreteScheduler(shift=3.0)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ours = PhiforgeScheduler.from_config(reference.config, method="exp_euler")
    assert ours.config.use_flow_sigmas and ours.config.prediction_type == "flow_prediction"
    theirs = _run(unet, reference, 10, x)
    assert (_run(unet, ours, 10, x) - theirs).abs().max() < 1e-5
    assert torch.equal(ours.timesteps, reference.timesteps)
    fine = _run(unet, PhiforgeScheduler.from_config(reference.config, method="res_2s"), 300, x)
    for method in ("res_2m", "res_2s", "res_3m_pc"):
        scheduler = PhiforgeScheduler.from_config(reference.config, method=method)
        coarse, finer = (float((_run(unet, scheduler, n, x) - fine).abs().max()) for n in (10, 80))
        assert finer < 0.5 * coarse, (method, coarse, finer)
    # dynamic shifting: the pipeline's mu, as FlowMatchEuler uses it
    shifting = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    ours = PhiforgeScheduler.from_config(shifting.config, method="exp_euler")
    expected = _run(unet, shifting, 6, x, mu=0.8)
    assert (_run(unet, ours, 6, x, mu=0.8) - expected).abs().max() < 1e-5
    with pytest.raises(InputError, match="set_timesteps"):
        ours.set_timesteps(6)  # no mu with dynamic shifting
    with pytest.raises(InputError, match="flow_match"):
        PhiforgeScheduler(flow_match={"shift": 2.0})  # a flow grid needs flow outputs
