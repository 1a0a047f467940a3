"""The sampling driver: formulations, output types, NFE accounting, limits, bad input."""

import itertools
import math

import numpy as np
import pytest
import torch

from phiforge.runtime.denoisers import GaussianDenoiser
from phiforge.runtime.driver import allocate_singlestep, sample, sampling_plan
from phiforge.runtime.errors import InputError, ModelOutputError
from phiforge.runtime.models import Guidance, dynamic_threshold
from phiforge.runtime.schedules import EDM, VE, DiscreteVP, RectifiedFlow, VPCosine, VPLinear
from phiforge.runtime.stepping import load_method

# spec-dpmsolver-res §10.6: four independent 1-D Gaussian problems
GAUSS = GaussianDenoiser(
    torch.tensor([0.5, -1.0, 0.2, 2.0], dtype=torch.float64),
    torch.diag(torch.tensor([0.05, 0.3, 1.0, 0.1], dtype=torch.float64) ** 2),
)
X_UNIT = torch.tensor([[-2.0, -0.5, 0.3, 1.7], [0.4, 1.1, -0.9, -0.2]], dtype=torch.float64)

SCHEDULES = [VPLinear(), VPCosine(), DiscreteVP.ddpm_linear(), VE(), EDM(), RectifiedFlow()]


def _time_from_model_time(schedule, value: float) -> float:
    if isinstance(schedule, DiscreteVP):
        return value / 1000.0 + 1.0 / schedule.n_train
    if isinstance(schedule, VE):
        return math.log(value / schedule.sigma_min) / math.log(
            schedule.sigma_max / schedule.sigma_min
        )
    return value


def _model_of_type(schedule, output: str):
    """The exact Gaussian posterior mean expressed as the given output type."""

    def model(x, t_batch):
        t = _time_from_model_time(schedule, float(t_batch[0]))
        alpha, sigma = float(schedule.alpha(t)), float(schedule.sigma(t))
        if alpha == 0:  # zero SNR: the posterior mean is the data mean, eps = x/sigma
            x0, eps = GAUSS.mean.expand_as(x), x / sigma
        else:
            x0 = GAUSS(x / alpha, sigma / alpha)
            eps = (x - alpha * x0) / sigma
        if output == "data":
            return x0
        if output == "noise":
            return eps
        if output == "v":
            return alpha * eps - sigma * x0
        if output == "score":
            return -eps / sigma
        d_alpha, d_sigma = schedule.alpha_sigma_derivatives(t)
        return d_alpha * x0 + d_sigma * eps

    return model


def _start(schedule, t_start):
    alpha, sigma = float(schedule.alpha(t_start)), float(schedule.sigma(t_start))
    return X_UNIT * sigma if alpha == 0 else X_UNIT * math.hypot(alpha, sigma)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: s.name)
@pytest.mark.parametrize("output", ["noise", "v", "score", "flow"])
def test_every_output_type_gives_the_data_prediction_trajectory(schedule, output):
    t_start = 0.9 if isinstance(schedule, RectifiedFlow) else schedule.t_start
    t_end = 0.01 if isinstance(schedule, RectifiedFlow) else schedule.t_end
    x = _start(schedule, t_start)
    kwargs = dict(steps=6, step_schedule="time", t_start=t_start, t_end=t_end)
    reference = sample(
        _model_of_type(schedule, "data"), x, schedule, "res_2m", output="data", **kwargs
    )
    other = sample(_model_of_type(schedule, output), x, schedule, "res_2m", output=output, **kwargs)
    assert torch.allclose(other, reference, rtol=1e-10, atol=1e-10)


def test_vp_and_edm_trajectories_coincide_in_log_snr_time():
    vp, edm = VPLinear(), EDM()
    times = np.linspace(1.0, 1e-3, 9)
    lambdas = vp.lam(times)
    x_tilde = X_UNIT * math.exp(-lambdas[0])
    seen_vp, seen_edm = [], []
    out_vp = sample(
        GAUSS,
        x_tilde * vp.alpha(1.0),
        vp,
        "res_3s",
        timesteps=times,
        output="edm",
        callback=lambda d: seen_vp.append(
            d["x"] / vp.alpha_sigma_of_lam(-math.log(d["sigma_next"]))[0]
        ),
    )
    out_edm = sample(
        GAUSS,
        x_tilde,
        edm,
        "res_3s",
        sigmas=np.exp(-lambdas),
        output="edm",
        callback=lambda d: seen_edm.append(d["x"]),
    )
    assert torch.allclose(out_vp / vp.alpha(1e-3), out_edm, rtol=1e-12, atol=1e-12)
    for a, b in zip(seen_vp, seen_edm, strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


def test_noise_and_data_forms_agree_for_exponential_euler():
    """DPM-Solver-1 (noise form) = DPM-Solver++1 (data form) = DDIM (spec §10.3.1)."""
    s = VPLinear()
    x = _start(s, 1.0)
    data = sample(GAUSS, x, s, "exp_euler", steps=7, output="edm", prediction="data")
    noise = sample(GAUSS, x, s, "exp_euler", steps=7, output="edm", prediction="noise")
    assert torch.allclose(data, noise, rtol=1e-12, atol=1e-12)


def test_flow_matching_from_zero_snr_to_sigma_zero_converges():
    """t = 1 (lambda = -inf) to t = 0 (sigma = 0): both ends are exact limits, no NaN."""
    flow = RectifiedFlow()
    eps = X_UNIT
    exact = GAUSS.flow_from_zero_snr(eps, 0.0)
    errors = []
    for steps in (32, 64, 128, 256):
        x, info = sample(
            _model_of_type(flow, "flow"),
            eps,
            flow,
            "res_2s",
            steps=steps,
            step_schedule="time",
            output="flow",
            return_info=True,
        )
        assert info.start_limit and info.final == "limit"
        assert info.nfe == 1 + 2 * (steps - 2) + 1
        errors.append(float((x - exact).abs().max()))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert errors[-1] < 5e-4 and orders[-1] > 1.9 and (np.diff(orders) > 0).all(), (errors, orders)


def test_noise_prediction_at_zero_snr_is_refused():
    flow = RectifiedFlow()
    with pytest.raises(InputError, match="zero SNR"):
        sample(
            _model_of_type(flow, "noise"),
            X_UNIT,
            flow,
            "res_2m",
            steps=4,
            step_schedule="time",
            output="noise",
        )


@pytest.mark.parametrize(
    ("method", "nfe", "kwargs"),
    [
        ("res_2m", 10, {}),
        ("res_3m", 7, {"warmup": "order-preserving"}),
        ("res_4m", 12, {"warmup": "order-preserving", "final_denoise": True}),
        ("res_2s", 9, {}),
        ("res_4s", 13, {}),
        ("dpm_solver_3", 10, {"allocation": "dpm-solver-fast"}),
        ("exp_euler", 5, {"final_denoise": True}),
    ],
)
def test_a_budget_is_spent_exactly(method, nfe, kwargs):
    calls = []

    def model(x, sigma):
        calls.append(float(sigma[0]))
        return GAUSS(x, sigma)

    _, info = sample(
        model, X_UNIT * 80, EDM(), method, nfe=nfe, output="edm", return_info=True, **kwargs
    )
    assert info.nfe == nfe == len(calls)


@pytest.mark.parametrize("method", ["res_2m", "res_3s", "edm_heun", "dpm_solver_3"])
def test_final_denoise_on_a_grid_that_ends_at_sigma_zero_costs_nothing(method):
    """Flow matching from t = 1 to t = 0 ends with its denoising call already (the sigma = 0
    limit), so final_denoise changes neither the grid nor the NFE: the budget used to be cut
    twice for it, and the plan's guard raised AssertionError (planned NFE - 1)."""
    calls: list[torch.Tensor] = []

    def model(x, t):
        calls.append(t)
        return x - 0.5 * torch.tanh(x)  # a velocity v = eps - x0 for some data

    runs = []
    for final_denoise in (False, True):
        calls.clear()
        out, info = sample(
            model, X_UNIT, RectifiedFlow(), method, nfe=9, step_schedule="time", output="flow",
            final_denoise=final_denoise, return_info=True,
        )  # fmt: skip
        assert info.nfe == 9 == len(calls)
        runs.append((out, info.lambdas))
    assert runs[0][1] == runs[1][1] and torch.equal(runs[0][0], runs[1][0])


@pytest.mark.parametrize(
    ("method", "least"), [("res_4m", 7), ("res_3m_pc", 10), ("res_4m_pc", 21), ("res_3m", 3)]
)
def test_an_order_preserving_warm_up_is_spent_whole_or_refused(method, least):
    """The order-preserving starters (res_4m: res_3s, res_3s, res_3m; res_4m_pc: three res_5s)
    cost their extra calls whole: a budget that could not pay for all of them was planned
    short (res_4m_pc at nfe 20: 14 calls, an AssertionError); below the least budget it is an
    InputError naming it, from it on the budget is spent exactly."""
    with pytest.raises(InputError, match=f"'nfe' must be at least {least} for {method}"):
        sample(GAUSS, X_UNIT * 80, EDM(), method, nfe=least - 1, warmup="order-preserving",
               output="edm")  # fmt: skip
    for nfe in (least, least + 1, least + 5):
        _, info = sample(
            GAUSS, X_UNIT * 80, EDM(), method, nfe=nfe, warmup="order-preserving", output="edm",
            return_info=True,
        )  # fmt: skip
        assert info.nfe == nfe


@pytest.mark.parametrize(
    ("method", "nfe", "steps"),
    [
        ("res_5s", 20, ["res_5s", "res_5s", "res_4s", "exp_euler"]),  # 6 = 5 + 1
        ("res_4s", 9, ["res_4s", "res_3s", "exp_euler"]),  # 4 = 3 + 1
        ("seeds_res_4s", 19, ["seeds_res_4s"] * 3 + ["seeds_res_3s", "seeds_1"]),
    ],
)
def test_a_remainder_no_method_has_is_spent_in_smaller_steps(method, nfe, steps):
    """A budget whose remainder after the method's steps has no method of that many stages
    (none has 4, 6, 8 or 9 single-step stages) is spent in filler steps of the largest that
    fit, stated in the plan; it was refused ('no generated singlestep method with 6
    stage(s)' for res_5s at NFE 20)."""
    calls = []

    def model(x, sigma):
        calls.append(sigma)
        return GAUSS(x, sigma)

    _, info = sample(model, X_UNIT * 80, EDM(), method, nfe=nfe, output="edm", return_info=True)
    assert info.methods == steps and info.nfe == nfe == len(calls)


def test_dpm_solver_fast_allocation_of_spec_5_2():
    third = load_method("dpm_solver_3")
    stages = {
        9: [3, 3, 2, 1],
        10: [3, 3, 3, 1],
        12: [3, 3, 3, 2, 1],
        15: [3, 3, 3, 3, 2, 1],
        20: [3] * 6 + [2],
    }
    for budget, expected in stages.items():
        chosen = allocate_singlestep(third, budget, "dpm-solver-fast")
        assert [m.NFE_PER_STEP for m in chosen] == expected
    assert [m.NFE_PER_STEP for m in allocate_singlestep(third, 10, "greedy")] == [3, 3, 3, 1]


def test_a_budget_for_a_stochastic_method_is_spent_exactly_with_stochastic_fillers():
    # the SEEDS modules are single-step: nfe 7 is two SEEDS-3 steps and one SEEDS-1 step (this
    # used to plan one SEEDS-3 step per evaluation and stop at an internal assertion)
    for nfe, expected in ((6, [3, 3]), (7, [3, 3, 1]), (8, [3, 3, 2])):
        _, steps, info = sampling_plan(EDM(), "seeds_3a", nfe=nfe)
        assert info.nfe == nfe
        assert [s.module.NFE_PER_STEP for s in steps] == expected
        assert {s.module.FAMILY for s in steps} == {"stochastic"}


def test_multistep_warmup_and_lower_order_final_plans():
    _, steps, _ = sampling_plan(EDM(), "res_3m", steps=5)
    assert [s.module.NAME for s in steps] == ["exp_euler", "res_2m", "res_3m", "res_3m", "res_3m"]
    _, steps, _ = sampling_plan(EDM(), "res_3m", steps=5, lower_order_final=True)
    assert [s.module.NAME for s in steps] == [
        "exp_euler",
        "res_2m",
        "res_3m",
        "res_2m",
        "exp_euler",
    ]
    _, steps, info = sampling_plan(EDM(), "res_4m", steps=6, warmup="order-preserving")
    assert [s.module.NAME for s in steps][:4] == ["res_3s", "res_3s", "res_3m", "res_4m"]
    assert info.nfe == 6 + 2 + 2 + 0


def test_callback_reports_every_step_with_the_denoised_prediction():
    seen = []
    sigmas = [80.0, 20.0, 5.0, 1.0, 0.0]
    x = sample(
        GAUSS, X_UNIT * 80, EDM(), "res_2m", sigmas=sigmas, output="edm", callback=seen.append
    )
    assert [d["i"] for d in seen] == [0, 1, 2, 3]
    assert [d["sigma"] for d in seen] == pytest.approx(sigmas[:-1])
    assert {"x", "i", "sigma", "sigma_hat", "denoised"} <= set(seen[0])
    assert torch.allclose(seen[0]["denoised"], GAUSS(X_UNIT * 80, 80.0))
    assert torch.equal(seen[-1]["x"], x)


def test_nan_from_the_model_names_the_step_and_sigma():
    calls = []

    def model(x, sigma):
        calls.append(1)
        out = GAUSS(x, sigma)
        return out * float("nan") if len(calls) == 4 else out

    with pytest.raises(ModelOutputError, match=r"at step 3 \(sigma~ = "):
        sample(model, X_UNIT * 80, EDM(), "res_2m", steps=6, output="edm")


def test_float32_state_keeps_its_dtype_and_tracks_float64():
    x32 = sample(GAUSS, X_UNIT * 80, EDM(), "res_3s", steps=10, output="edm", dtype=torch.float32)
    x64 = sample(GAUSS, X_UNIT * 80, EDM(), "res_3s", steps=10, output="edm")
    assert x32.dtype == torch.float32
    assert torch.allclose(x32.double(), x64, rtol=1e-5, atol=1e-5)


def test_classifier_free_guidance_extrapolates_the_data_prediction():
    other = GaussianDenoiser(-GAUSS.mean, torch.eye(4, dtype=torch.float64))

    def model(x, sigma, cond=True):
        return GAUSS(x, sigma) if cond else other(x, sigma)

    def guided(x, sigma):
        return other(x, sigma) + 2.5 * (GAUSS(x, sigma) - other(x, sigma))

    common = dict(steps=8, output="edm")
    a = sample(
        model,
        X_UNIT * 80,
        EDM(),
        "res_2m",
        model_kwargs={"cond": True},
        guidance=Guidance(2.5, {"cond": False}),
        **common,
    )
    b = sample(guided, X_UNIT * 80, EDM(), "res_2m", **common)
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


def test_dynamic_thresholding_clamps_by_the_sample_quantile():
    x0 = torch.linspace(-3, 3, 1001, dtype=torch.float64).reshape(1, -1)
    out = dynamic_threshold(x0, ratio=0.9)
    s = float(torch.quantile(x0.abs(), 0.9))
    assert s == pytest.approx(2.7, abs=1e-9)
    assert float(out.max()) == pytest.approx(1.0) and float(out[0, 500]) == pytest.approx(
        0, abs=1e-15
    )
    assert float(out[0, 750]) == pytest.approx(1.5 / 2.7)
    small = torch.full((1, 5), 0.5, dtype=torch.float64)
    assert torch.equal(dynamic_threshold(small), small)  # s is at least 1: no change


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "res_9s", "steps": 4}, "unknown method 'res_9s'"),
        ({"method": "res_2m", "steps": 4, "nfe": 4}, "exactly one of"),
        ({"method": "res_2m"}, "exactly one of"),
        ({"method": "res_4s", "nfe": 0}, "'nfe' must be a positive integer"),
        ({"method": "res_2m", "steps": 4, "output": "logits"}, "'output' must be one of"),
        ({"method": "res_2m", "steps": 4, "prediction": "x0"}, "'prediction'"),
        ({"method": "res_2m", "steps": 4, "warmup": "none"}, "'warmup'"),
        ({"method": "res_4s", "nfe": 8, "allocation": "dpm-solver-fast"}, "1-3 stages"),
        ({"method": "res_2m", "sigmas": [80.0, 1.0, 2.0, 0.0]}, "strictly monotone"),
    ],
)
def test_bad_sampling_arguments_are_rejected(kwargs, message):
    with pytest.raises(InputError, match=message):
        sample(GAUSS, X_UNIT * 80, EDM(), **{"output": "edm", **kwargs})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sampling_on_cuda_matches_cpu():
    from phiforge.runtime.denoisers import builtin_denoiser

    gmm = builtin_denoiser("gmm")
    gmm_cuda = builtin_denoiser("gmm", device="cuda")
    x = torch.randn(64, 64, dtype=torch.float64) * 80
    cpu = sample(gmm, x, EDM(), "res_3m", steps=12, output="edm")
    gpu = sample(gmm_cuda, x.cuda(), EDM(), "res_3m", steps=12, output="edm")
    assert torch.allclose(gpu.cpu(), cpu, rtol=1e-9, atol=1e-9)
    single = sample(gmm_cuda, x.cuda().float(), EDM(), "res_3m", steps=12, output="edm")
    assert single.dtype == torch.float32
    assert float((single.double().cpu() - cpu).abs().max()) < 1e-3


def test_exponential_euler_is_ddim_on_a_discrete_schedule():
    """spec §10.3.1: DPM-Solver-1 = DDIM (eta = 0): x' = alpha' x0_hat + sigma' eps_hat."""
    ddpm = DiscreteVP.ddpm_linear()
    eps_model = _model_of_type(ddpm, "noise")
    times = [1.0, 0.7, 0.4, 0.15, 0.05, 0.001]
    x = X_UNIT.clone()
    expected = x.clone()
    for t, t_next in itertools.pairwise(times):
        alpha, sigma = float(ddpm.alpha(t)), float(ddpm.sigma(t))
        eps = eps_model(expected, torch.full((2,), float(ddpm.model_time(t))))
        x0 = (expected - sigma * eps) / alpha
        expected = float(ddpm.alpha(t_next)) * x0 + float(ddpm.sigma(t_next)) * eps
    for prediction in ("data", "noise"):
        got = sample(
            eps_model, x, ddpm, "exp_euler", timesteps=times, output="noise", prediction=prediction
        )
        assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12)
