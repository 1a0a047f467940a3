"""Restart sampling against spec-seeds-restart.md §3.4 and §4.6.

For Gaussian data every step is affine in the state and the injected noise, x_end = A x_T +
sum_j c_j z_j, so variances follow exactly (no Monte Carlo): a batch carries x_T = 1 in row 0
and, in row j + 1, the response to the j-th noise draw alone.
"""

import math

import pytest
import torch

from phiforge.runtime.denoisers import GaussianDenoiser
from phiforge.runtime.driver import sample, sampling_plan
from phiforge.runtime.errors import InputError
from phiforge.runtime.kdiffusion import SAMPLERS
from phiforge.runtime.restart import PRESETS, Restart, RestartInterval, karras_sigmas, restart_from
from phiforge.runtime.schedules import EDM, VPLinear

S2 = 0.25
GAUSS = GaussianDenoiser(torch.zeros(1, dtype=torch.float64), torch.full((1, 1), S2))
DRAWS = 200


def _unit_noise():
    calls = [0]

    def draw(sigma, sigma_next):
        z = torch.zeros(1 + DRAWS, 1, dtype=torch.float64)
        calls[0] += 1
        assert calls[0] <= DRAWS
        z[calls[0]] = 1.0
        return z

    return draw


def _final_variance(entry_variance, **kwargs):
    x = torch.zeros(1 + DRAWS, 1, dtype=torch.float64)
    x[0] = 1.0
    out, info = sample(
        GAUSS, x, EDM(), output="edm", noise_sampler=_unit_noise(), return_info=True, **kwargs
    )
    a, c = float(out[0]), out[1:, 0]
    return a * a * entry_variance + float((c * c).sum()), info


@pytest.mark.parametrize(
    ("restart", "expected_nfe"),
    [(name, int(name.rsplit("-", 1)[1])) for name in PRESETS]
    + [("a1111-24", 47), ("a1111-40", 79)],
)
def test_nfe_formula_of_every_configuration(restart, expected_nfe):
    """(2 N_main - 1) + sum 2 K (N - 1) with EDM Heun (spec §3.3); A1111: 2 steps - 1."""
    _, _, info = sampling_plan(EDM(), "edm_heun", restart=restart)
    assert info.nfe == expected_nfe


def test_heun_pipeline_variances_of_spec_4_6():
    base = {"method": "edm_heun"}
    v0 = S2 + 80.0**2
    plain, info = _final_variance(v0, sigmas=restart_from("cifar10-vp-43").main_sigmas(), **base)
    assert info.nfe == 35 and plain == pytest.approx(0.278399, abs=1e-6)
    cifar, info = _final_variance(v0, restart="cifar10-vp-43", **base)
    assert info.nfe == 43 and cifar == pytest.approx(0.269504, abs=1e-6)
    churned = Restart(PRESETS["cifar10-vp-43"].intervals, churn=0.05, main_steps=18)
    assert _final_variance(v0, restart=churned, **base)[0] == pytest.approx(0.269459, abs=1e-6)
    imagenet, info = _final_variance(v0, restart="imagenet64-203", **base)
    assert info.nfe == 203 and imagenet == pytest.approx(0.253967, abs=1e-6)
    plain_imagenet = Restart(PRESETS["imagenet64-203"].intervals, main_steps=36)
    assert _final_variance(v0, restart=plain_imagenet, **base)[0] == pytest.approx(
        0.251861, abs=1e-6
    )


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        ((3, 2, 0.06, 0.30), 0.257101),
        ((3, 10, 0.06, 0.30), 0.261187),
        ((3, 2, 0.14, 0.30), 0.270622),
        ((9, 30, 0.06, 0.20), 0.253787),
    ],
)
def test_restart_interval_with_heun_from_the_exact_entry_variance(interval, expected):
    seen = []
    restart = Restart((RestartInterval(*interval),))
    sigma_min = interval[2]
    x = torch.zeros(1 + DRAWS, 1, dtype=torch.float64)
    x[0] = 1.0
    sample(
        GAUSS,
        x,
        EDM(),
        "edm_heun",
        sigmas=[sigma_min, sigma_min / 2],
        output="edm",
        restart=restart,
        noise_sampler=_unit_noise(),
        callback=seen.append,
    )
    at_entry = seen[-2]["x"]  # the state after the last backward step, back at sigma_min
    variance = float(at_entry[0, 0]) ** 2 * (S2 + sigma_min**2) + float(
        (at_entry[1:, 0] ** 2).sum()
    )
    assert variance == pytest.approx(expected, abs=1e-6)


def _restart_map(interval, entry_variance, schedule=None, method="res_4s", repeats=None):
    schedule = schedule or EDM()
    sigma_min = interval.sigma_min
    seen = []
    restart = Restart((interval,))
    x = torch.zeros(1 + DRAWS, 1, dtype=torch.float64)
    lam = -math.log(sigma_min)
    alpha = schedule.alpha_sigma_of_lam(lam)[0]
    x[0] = alpha  # x = alpha x~: row 0 carries x~ = 1
    sample(
        GAUSS,
        x,
        schedule,
        method,
        sigmas=[sigma_min, sigma_min / 2],
        output="edm",
        restart=restart,
        noise_sampler=_unit_noise(),
        callback=seen.append,
    )
    at_entry = seen[-2]["x"] / alpha
    return float(at_entry[0, 0]) ** 2 * entry_variance + float((at_entry[1:, 0] ** 2).sum())


@pytest.mark.parametrize("schedule", [EDM(), VPLinear()], ids=["ve", "vp"])
def test_exact_ode_contracts_the_variance_error_by_kappa(schedule):
    """kappa = (s^2 + t_min^2)/(s^2 + t_max^2) per iteration; the true marginal is the fixed
    point (exact forward kernel, VE or VP, and an accurate ODE solve)."""
    interval = RestartInterval(40, 1, 0.06, 0.30)
    exact = S2 + 0.06**2
    kappa = exact / (S2 + 0.30**2)
    assert kappa == pytest.approx(0.7459, abs=1e-4)
    assert _restart_map(interval, exact, schedule) == pytest.approx(exact, rel=1e-8)
    error = 0.1
    after = _restart_map(interval, exact + error, schedule)
    assert (after - exact) / error == pytest.approx(kappa, rel=1e-6)
    three = _restart_map(RestartInterval(40, 3, 0.06, 0.30), exact + error, schedule)
    assert (three - exact) / error == pytest.approx(kappa**3, rel=1e-5)


def test_multistep_history_is_reset_at_each_restart():
    _, steps, info = sampling_plan(EDM(), "res_3m", steps=12, restart="3,2,1.0,3.0")
    event = info.restarts[0]
    assert [s.module.NAME for _, s in event.backward] == ["exp_euler", "res_2m"]
    start, _ = info.segments[1]  # the main pass warms up again after the restart
    assert [s.module.NAME for s in steps[start : start + 3]] == ["exp_euler", "res_2m", "res_3m"]
    assert info.nfe == 12 + 2 * 2


def test_restart_through_the_k_diffusion_style_function():
    calls = []

    def model(x, sigma):
        calls.append(1)
        return GAUSS(x, sigma)

    sigmas = [80.0, 10.0, 2.0, 0.5, 0.1, 0.0]
    generator = torch.Generator().manual_seed(0)
    x = SAMPLERS["res_2s"](
        model,
        torch.ones(3, 1, dtype=torch.float64) * 80,
        sigmas,
        disable=True,
        restart="3,2,0.5,2.0",
        generator=generator,
    )
    assert len(calls) == 4 * 2 + 1 + 2 * 2 * 2 and torch.isfinite(x).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {
                "method": "res_2m",
                "steps": 10,
                "restart": Restart((RestartInterval(3, 1, 0.1, 1.0),), churn=0.05),
            },
            "single-step",
        ),
        ({"method": "res_2m", "nfe": 10, "restart": "cifar10-vp-43"}, "not an 'nfe' budget"),
        ({"method": "res_2m", "steps": 10, "restart": "cifar-43"}, "'restart' must be a preset"),
        ({"method": "res_2m", "steps": 10, "restart": "3,1,2.0,1.0"}, "sigma_min < sigma_max"),
        ({"method": "res_2m", "steps": 10, "restart": "a1111-12"}, "steps >= 20"),
        ({"method": "res_2m", "restart": "3,1,0.1,1.0"}, "custom spec"),
    ],
)
def test_bad_restart_arguments(kwargs, message):
    with pytest.raises(InputError, match=message):
        sample(GAUSS, torch.ones(1, 1, dtype=torch.float64) * 80, EDM(), output="edm", **kwargs)


@pytest.mark.parametrize(("preset", "nfe"), [("cifar10-vp-43", 43), ("imagenet64-203", 203)])
def test_sample_command_with_a_restart_preset_reports_the_spec_counter(
    preset, nfe, tmp_path, capsys
):
    import json

    from phiforge.cli.main import main

    assert (
        main(
            [
                "sample",
                "--restart",
                preset,
                "--batch",
                "2",
                "--out",
                str(tmp_path / "r.pt"),
                "--format",
                "json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["nfe"] == nfe and result["method"] == "edm_heun" and result["restart"] == preset


def test_karras_sigmas_keep_both_ends_and_reject_a_single_point():
    sigmas = karras_sigmas(80.0, 0.002, 4)
    assert sigmas[0] == 80.0 and sigmas[-1] == 0.002 and len(sigmas) == 4
    assert sigmas[1] == pytest.approx((80 ** (1 / 7) + (0.002 ** (1 / 7) - 80 ** (1 / 7)) / 3) ** 7)
    # one point cannot hold both ends (it used to return [sigma_min] alone)
    for args, message in (
        ((80.0, 0.002, 1), "'points' must be an integer >= 2"),
        ((80.0, 0.002, 2.5), "'points' must be an integer >= 2"),
        ((0.002, 80.0, 5), "0 < sigma_min < sigma_max"),
        ((80.0, 0.0, 5), "0 < sigma_min < sigma_max"),
        ((80.0, 0.002, 5, -1.0), "'rho' must be a positive"),
    ):
        with pytest.raises(InputError, match=message):
            karras_sigmas(*args)
