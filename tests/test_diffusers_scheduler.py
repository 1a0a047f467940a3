"""The diffusers scheduler: config round trips, parity with DPMSolverMultistepScheduler, the
driver's results inside diffusers' one-call-per-step protocol, a pipeline with a small UNet."""

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from diffusers import DDPMPipeline, DPMSolverMultistepScheduler, UNet2DModel  # noqa: E402

from phiforge.runtime.diffusers_scheduler import PhiforgeScheduler  # noqa: E402
from phiforge.runtime.driver import sample  # noqa: E402
from phiforge.runtime.errors import InputError, ModelOutputError  # noqa: E402
from phiforge.runtime.methods import generated_methods  # noqa: E402
from phiforge.runtime.schedules import VPLinear  # noqa: E402


def _eps_model(x, t):
    """A deterministic epsilon model with O(1) outputs (Gaussian-like data plus a wiggle)."""
    return 0.8 * x / torch.sqrt(1.0 + x * x) + 0.05 * torch.sin(3.0 * x + float(t) / 150.0)


def _loop(scheduler, steps, dtype=torch.float32, **kwargs):
    scheduler.set_timesteps(steps, **kwargs)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=dtype)
    for t in scheduler.timesteps:
        x = scheduler.step(_eps_model(x, t), t, x).prev_sample
    return x


def test_config_round_trip_and_from_config(tmp_path):
    scheduler = PhiforgeScheduler(method="res_3m", beta_schedule="scaled_linear")
    scheduler.save_config(tmp_path)
    loaded = PhiforgeScheduler.from_pretrained(tmp_path)
    assert loaded.config.method == "res_3m" and loaded.config.beta_schedule == "scaled_linear"
    dpm = DPMSolverMultistepScheduler(use_karras_sigmas=True, prediction_type="v_prediction")
    ours = PhiforgeScheduler.from_config(dpm.config, method="res_4m")
    assert ours.config.use_karras_sigmas and ours.config.prediction_type == "v_prediction"
    assert ours.config.method == "res_4m"
    assert "DPMSolverMultistepScheduler" in PhiforgeScheduler._compatibles


@pytest.mark.parametrize(("ours", "solver_type"), [("dpmpp_2m", "midpoint"), ("res_2m", "heun")])
@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"use_karras_sigmas": True},
        {"final_sigmas_type": "sigma_min"},
        {"timestep_spacing": "trailing"},
    ],
    ids=["default", "karras", "sigma_min", "trailing"],
)
@pytest.mark.parametrize("steps", [5, 12, 20])
def test_2m_equals_diffusers_dpmsolver_multistep(ours, solver_type, extra, steps):
    """DPM-Solver++(2M) 'midpoint' is phiforge's dpmpp_2m; 'heun' is res_2m (RES-2M, taylor)."""
    reference = DPMSolverMultistepScheduler(solver_type=solver_type, **extra)
    scheduler = PhiforgeScheduler.from_config(reference.config, method=ours)
    expected, got = _loop(reference, steps), _loop(scheduler, steps)
    assert torch.equal(scheduler.timesteps, reference.timesteps)
    scale = float(expected.abs().max())
    assert float((got - expected).abs().max()) <= 1e-6 * max(1.0, scale)


@pytest.mark.parametrize("steps", [5, 12])
def test_a_repeated_last_sigma_is_a_step_of_length_zero(steps):
    """Karras sigmas with final_sigmas_type='sigma_min' end in sigma_min twice; diffusers'
    'midpoint' 2M treats the last interval as a no-op ('heun' returns NaN there)."""
    reference = DPMSolverMultistepScheduler(
        solver_type="midpoint", use_karras_sigmas=True, final_sigmas_type="sigma_min"
    )
    assert reference.set_timesteps(steps) is None and reference.sigmas[-1] == reference.sigmas[-2]
    scheduler = PhiforgeScheduler.from_config(reference.config, method="dpmpp_2m")
    expected, got = _loop(reference, steps), _loop(scheduler, steps)
    scale = float(expected.abs().max())
    assert float((got - expected).abs().max()) <= 1e-6 * max(1.0, scale)


def test_a_final_sigma_risen_by_round_off_is_a_step_of_length_zero():
    """Log-SNR-uniform sigmas (use_lu_lambdas) of the cosine schedule with final_sigmas_type=
    'sigma_min' end in a sigma 2e-7 above its predecessor in log-SNR (float32 round-off):
    diffusers steps back by that much, phiforge takes a step of length zero (it refused the
    grid as not increasing); the samples agree as for the other grids."""
    reference = DPMSolverMultistepScheduler(
        solver_type="midpoint",
        beta_schedule="squaredcos_cap_v2",
        use_lu_lambdas=True,
        final_sigmas_type="sigma_min",
    )
    reference.set_timesteps(25)
    assert 0 < float(reference.sigmas[-1] / reference.sigmas[-2]) - 1 < 1e-5
    scheduler = PhiforgeScheduler.from_config(reference.config, method="dpmpp_2m")
    # float64 states: the cosine schedule's sigma_max (6e4) leaves float32 6e-8 x 6e4 apart
    expected = _loop(reference, 25, dtype=torch.float64)
    got = _loop(scheduler, 25, dtype=torch.float64)
    scale = float(expected.abs().max())
    assert float((got - expected).abs().max()) <= 1e-6 * max(1.0, scale)


@pytest.mark.parametrize("method", sorted(generated_methods()))
def test_every_method_ends_at_a_final_sigma_min(method):
    """final_sigmas_type='sigma_min' (and diffusers' lower-order rule for the last interval)
    with every registered method: one model call per timestep, and on data N(0, 0.5^2) with its
    exact noise prediction sigma x / (alpha^2 0.25 + sigma^2) samples of standard deviation
    near 0.5 (192 values; the first-order methods make 0.34-0.39 in 12 steps). The 1-step
    methods with a corrector or noise (res_1m_pc, res_1m_sde) raised IndexError: the rule
    asked for their 1-step starter, which a 1-step method does not list (it is its own)."""
    scheduler = PhiforgeScheduler(method=method, final_sigmas_type="sigma_min")
    scheduler.set_timesteps(12)
    log_abar = torch.log(scheduler._grid.alphas_cumprod.double())

    def exact_eps(x, t):  # alpha^2 at a fractional (stage) time by log-linear interpolation
        low = min(int(float(t)), len(log_abar) - 2)
        abar = torch.exp(torch.lerp(log_abar[low], log_abar[low + 1], float(t) - low))
        return (1 - abar).sqrt() * x / (abar * 0.25 + 1 - abar)

    x = torch.randn(4, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    calls = 0
    for t in scheduler.timesteps:
        noise = torch.Generator().manual_seed(calls)
        x = scheduler.step(exact_eps(x, t), t, x, generator=noise).prev_sample
        calls += 1
    assert calls == len(scheduler.timesteps) >= 12
    assert 0.3 < float(x.std()) < 0.7


def test_given_sigmas_end_at_the_training_sigma_min():
    """With final_sigmas_type='sigma_min' given sigmas end, as diffusers' grids do, at the
    training sigma_min sqrt((1 - abar_0) / abar_0) (the last of the training sigmas, sigma_max,
    was appended before); sigmas below it are refused."""
    scheduler = PhiforgeScheduler(final_sigmas_type="sigma_min")
    scheduler.set_timesteps(sigmas=[10.0, 1.0, 0.1])
    first = float(scheduler._grid.alphas_cumprod[0])
    assert float(scheduler.sigmas[-1]) == pytest.approx(((1 - first) / first) ** 0.5, rel=1e-6)
    assert float(scheduler.sigmas[-1]) == pytest.approx(0.0100013, rel=1e-5)
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    for t in scheduler.timesteps:
        x = scheduler.step(_eps_model(x, t), t, x).prev_sample
    assert torch.isfinite(x).all()
    with pytest.raises(InputError, match="may not go below it"):
        scheduler.set_timesteps(sigmas=[10.0, 1.0, 0.001])


@pytest.mark.parametrize(
    "method", ["res_3s", "res_4s", "res_3m", "res_3m_pc", "dpm_solver_3", "edm_heun"]
)
def test_scheduler_runs_the_driver_s_computation(method):
    """Inside the one-call-per-step protocol the method computes what the driver computes on the
    same log-SNR grid (float64; diffusers' lower-order-final rule off, the driver has its own)."""
    scheduler = PhiforgeScheduler(method=method, lower_order_final=False)
    scheduler.set_timesteps(8)
    sigmas = scheduler.sigmas.double().tolist()
    model_calls = len(scheduler.timesteps)
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def eps_model(xx, t):
        return 0.8 * xx / torch.sqrt(1.0 + xx * xx)

    start = x.clone()
    for t in scheduler.timesteps:
        x = scheduler.step(eps_model(x, t), t, x).prev_sample
    expected, info = sample(
        eps_model, start, VPLinear(), method, sigmas=sigmas, output="noise", return_info=True
    )
    assert info.nfe == model_calls
    assert torch.allclose(x, expected, rtol=1e-10, atol=1e-10)
    if scheduler.order > 1:  # stage times inserted: fractional timesteps, order = stages
        assert scheduler.timesteps.dtype == torch.float32
        assert len(scheduler.timesteps) == scheduler.order * 7 + 1


@pytest.mark.parametrize("kind", ["epsilon", "sample", "v_prediction"])
def test_prediction_types_agree(kind):
    def x0_model(x, t):
        return 0.5 * torch.tanh(x)

    def as_type(x, t, scheduler):
        alpha, sigma = scheduler.alpha_sigma()
        x0 = x0_model(x, t)
        eps = (x - alpha * x0) / sigma
        return {"epsilon": eps, "sample": x0, "v_prediction": alpha * eps - sigma * x0}[kind]

    results = []
    for prediction_type in ("sample", kind):
        scheduler = PhiforgeScheduler(method="res_3s", prediction_type=prediction_type)
        scheduler.set_timesteps(6)
        x = torch.randn(1, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        for t in scheduler.timesteps:
            output = as_type(x, t, scheduler) if prediction_type == kind else x0_model(x, t)
            x = scheduler.step(output, t, x).prev_sample
        results.append(x)
    assert torch.allclose(results[0], results[1], rtol=1e-10, atol=1e-10)


def test_flow_sigmas_with_flow_prediction():
    scheduler = PhiforgeScheduler(
        method="res_2m", use_flow_sigmas=True, flow_shift=3.0, prediction_type="flow_prediction"
    )
    reference = DPMSolverMultistepScheduler(
        use_flow_sigmas=True, flow_shift=3.0, prediction_type="flow_prediction", solver_type="heun"
    )
    expected, got = _loop(reference, 10), _loop(scheduler, 10)
    assert float((got - expected).abs().max()) <= 1e-5 * max(1.0, float(expected.abs().max()))


def test_add_noise_matches_diffusers():
    scheduler, reference = PhiforgeScheduler(), DPMSolverMultistepScheduler()
    reference.set_timesteps(10)
    scheduler.set_timesteps(10)
    x0 = torch.randn(3, 4)
    noise = torch.randn(3, 4)
    timesteps = reference.timesteps[[0, 4, 9]]
    assert torch.allclose(
        scheduler.add_noise(x0, noise, timesteps),
        reference.add_noise(x0, noise, timesteps),
        atol=1e-6,
    )


def test_add_noise_takes_one_time_for_all_and_any_training_time():
    """One timestep for the batch may be a number or a 0-d tensor (it was refused as no
    sequence); a training timestep off the inference grid gets its own noise level,
    sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (diffusers' multistep scheduler gives it the grid's
    last sigma)."""
    scheduler = PhiforgeScheduler()
    scheduler.set_timesteps(10)
    x0, noise = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    per_sample = scheduler.add_noise(x0, noise, torch.tensor([500, 500, 500]))
    for one in (500, 500.0, torch.tensor(500)):
        assert torch.equal(scheduler.add_noise(x0, noise, one), per_sample)
    abar = scheduler.alphas_cumprod.double()[500]
    assert torch.allclose(per_sample, abar.sqrt() * x0 + (1 - abar).sqrt() * noise, atol=1e-12)
    with pytest.raises(InputError, match="timesteps"):
        scheduler.add_noise(x0, noise, True)


def test_pipeline_with_a_small_random_unet():
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    scheduler = PhiforgeScheduler(method="res_3s")
    pipe = DDPMPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    image = pipe(
        batch_size=2,
        num_inference_steps=4,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images
    assert image.shape == (2, 8, 8, 3) and (image >= 0).all() and (image <= 1).all()
    assert len(scheduler.timesteps) == 3 * 3 + 1


def test_bad_configuration_is_rejected():
    with pytest.raises(InputError, match="unknown method"):
        PhiforgeScheduler(method="res_9m")
    with pytest.raises(InputError, match="'prediction_type'"):
        PhiforgeScheduler(prediction_type="logits")
    scheduler = PhiforgeScheduler()
    with pytest.raises(InputError, match="set_timesteps"):
        scheduler.step(torch.zeros(1), 999, torch.zeros(1))


@pytest.mark.slow
def test_step_compiles_without_graph_breaks():
    scheduler = PhiforgeScheduler(method="res_2m")
    scheduler.set_timesteps(6)
    compiled = torch.compile(scheduler.step, fullgraph=True)
    x = torch.randn(1, 4)
    for t in scheduler.timesteps:
        x = compiled(_eps_model(x, t), t, x).prev_sample
    assert torch.isfinite(x).all()


def test_common_scheduler_checks():
    """diffusers' SchedulerCommonTest essentials: public API, return_dict equivalence, same
    outputs after save/load, any sample shape, trained betas equal to the named schedule."""
    scheduler = PhiforgeScheduler(method="res_3s")
    for name in (
        "init_noise_sigma",
        "scale_model_input",
        "step",
        "set_timesteps",
        "add_noise",
        "set_begin_index",
        "order",
        "timesteps",
        "sigmas",
    ):
        assert hasattr(scheduler, name)
    assert scheduler.init_noise_sigma == 1.0 and scheduler.order == 3
    for shape in [(1, 4), (2, 3, 4, 4), (1, 2, 3, 4, 5)]:
        scheduler.set_timesteps(4)
        x = torch.randn(*shape)
        t = scheduler.timesteps[0]
        assert torch.equal(scheduler.scale_model_input(x, t), x)
        out = scheduler.step(_eps_model(x, t), t, x)
        assert out.prev_sample.shape == x.shape and out.prev_sample.dtype == x.dtype
        scheduler.set_timesteps(4)
        (as_tuple,) = scheduler.step(_eps_model(x, t), t, x, return_dict=False)
        assert torch.equal(as_tuple, out.prev_sample)


def test_save_load_gives_the_same_samples(tmp_path):
    scheduler = PhiforgeScheduler(method="res_4m", use_karras_sigmas=True)
    scheduler.save_config(tmp_path)
    loaded = PhiforgeScheduler.from_pretrained(tmp_path)
    assert torch.equal(_loop(scheduler, 9), _loop(loaded, 9))


def test_trained_betas_equal_the_named_schedule():
    betas = torch.linspace(0.0001, 0.02, 1000).tolist()
    named, trained = PhiforgeScheduler(), PhiforgeScheduler(trained_betas=betas)
    assert torch.allclose(_loop(named, 7), _loop(trained, 7), rtol=1e-6, atol=1e-6)


def test_begin_index_starts_mid_schedule():
    scheduler = PhiforgeScheduler(method="res_2m")
    scheduler.set_timesteps(10)
    scheduler.set_begin_index(3)
    x = torch.randn(1, 4)
    for t in scheduler.timesteps[3:]:
        x = scheduler.step(_eps_model(x, t), t, x).prev_sample
    assert scheduler.step_index == len(scheduler.timesteps) and torch.isfinite(x).all()


@pytest.mark.parametrize(
    ("method", "options"), [("seeds_2a", None), ("seeds_3a", {"r1": 0.25, "r2": 0.6})]
)
def test_stochastic_methods_match_the_driver_with_the_same_generator(method, options):
    """SEEDS inside the one-call protocol: each call draws the unit normal it first needs (from
    ``generator`` or ``variance_noise``), in the driver's order."""
    scheduler = PhiforgeScheduler(method=method, eta=0.7, method_options=options)
    scheduler.set_timesteps(6)
    sigmas = scheduler.sigmas.double().tolist()
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def eps_model(xx, t):
        return 0.8 * xx / torch.sqrt(1.0 + xx * xx)

    start = x.clone()
    generator = torch.Generator().manual_seed(21)
    for t in scheduler.timesteps:
        x = scheduler.step(eps_model(x, t), t, x, generator=generator).prev_sample
    expected = sample(
        eps_model,
        start,
        VPLinear(),
        method,
        sigmas=sigmas,
        output="noise",
        eta=0.7,
        options=options,
        generator=torch.Generator().manual_seed(21),
    )
    assert torch.allclose(x, expected, rtol=1e-10, atol=1e-10)
    scheduler.set_timesteps(6)
    y = start.clone()
    for t in scheduler.timesteps:  # caller-supplied noise: zero noise = the eta-drift only
        y = scheduler.step(eps_model(y, t), t, y, variance_noise=torch.zeros_like(y)).prev_sample
    zero = sample(
        eps_model,
        start,
        VPLinear(),
        method,
        sigmas=sigmas,
        output="noise",
        eta=0.7,
        options=options,
        noise_sampler=lambda a, b: torch.zeros_like(start),
    )
    assert torch.allclose(y, zero, rtol=1e-10, atol=1e-10)


def test_res_3m_pc_is_unipc_3_up_to_its_error_constant():
    """diffusers' UniPC (order 3, bh2) and res_3m_pc (exact integration of the same
    interpolants) differ at the order-4 level: on the digits mixture the gap falls by ~16 per
    halving of the step (measured 1.1e-3, 5.6e-6, 3.8e-7 RMS at 5, 10, 20 steps)."""
    from phiforge.runtime.verification import builtin_problem, defect

    problem = builtin_problem("gmm", batch=4, seed=0)
    schedule = problem.schedule
    lam0, lam1 = float(schedule.lam(1.0)), float(schedule.lam(1e-3))
    alpha0, _ = schedule.alpha_sigma_of_lam(lam0)
    x = problem.x_start / alpha0
    gaps = []
    for steps in (10, 20):
        lambdas = torch.linspace(lam0, lam1, steps + 1, dtype=torch.float64)
        sigmas = torch.exp(-lambdas).tolist()
        ours = sample(problem.denoiser, x, "edm", "res_3m_pc", output="edm", sigmas=sigmas)
        unipc = diffusers.UniPCMultistepScheduler(
            solver_order=3, solver_type="bh2", lower_order_final=False, prediction_type="sample"
        )
        unipc.set_timesteps(steps)
        unipc.sigmas = torch.tensor(sigmas, dtype=torch.float64)
        # the state in x~ = x/alpha form is the EDM form: alpha_t = 1/sqrt(1 + sigma^2) in
        # diffusers' sigma bookkeeping, so hand diffusers x = alpha x~
        y = x / (1.0 + sigmas[0] ** 2) ** 0.5
        for sigma, t in zip(sigmas, unipc.timesteps, strict=False):
            alpha = (1.0 + sigma**2) ** -0.5
            x0 = problem.denoiser(y / alpha, torch.full((y.shape[0],), sigma, dtype=torch.float64))
            y = unipc.step(x0, t, y).prev_sample
        theirs = y * (1.0 + sigmas[-1] ** 2) ** 0.5
        gaps.append(defect(theirs, ours))
        assert gaps[-1] < 1e-3 * defect(ours, torch.zeros_like(ours))
    assert gaps[0] / gaps[1] > 8, gaps


def test_a_nan_from_the_model_is_reported_with_its_call():
    scheduler = PhiforgeScheduler(method="res_3s")
    scheduler.set_timesteps(4)
    x = torch.randn(1, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with pytest.raises(ModelOutputError, match=r"at step\(\) call 4 \(timestep "):
        for index, t in enumerate(scheduler.timesteps):
            output = _eps_model(x, t) * (float("nan") if index == 4 else 1.0)
            x = scheduler.step(output, t, x).prev_sample
    assert scheduler.step_index == len(scheduler.timesteps) - 1  # raised at the last call


def test_a_step_past_the_last_call_is_refused():
    scheduler = PhiforgeScheduler(method="res_2m")
    scheduler.set_timesteps(3)
    x = torch.randn(1, 4)
    for t in scheduler.timesteps:
        x = scheduler.step(_eps_model(x, t), t, x).prev_sample
    with pytest.raises(InputError, match="'step' called after the last of the 3 model calls"):
        scheduler.step(_eps_model(x, 0), 0, x)


@pytest.mark.parametrize("method", ["res_3m_pc", "res_3s", "seeds_2a"])
def test_a_grid_per_sample_equals_separate_schedulers(method):
    """2-D sigmas: every sample its own grid; timesteps get a column per sample."""
    rows = [[14.0, 6.0, 2.5, 1.0, 0.4, 0.1], [10.0, 5.0, 2.0, 0.8, 0.3, 0.05]]
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(6), dtype=torch.float64)

    def eps_model(xx, t):
        return 0.8 * xx / torch.sqrt(1.0 + xx * xx)

    scheduler = PhiforgeScheduler(method=method, eta=0.0)
    scheduler.set_timesteps(sigmas=rows)
    assert scheduler.timesteps.shape[1] == 2
    together = x.clone()
    for t in scheduler.timesteps:
        together = scheduler.step(eps_model(together, t), t, together).prev_sample
    for b, row in enumerate(rows):
        alone = PhiforgeScheduler(method=method, eta=0.0)
        alone.set_timesteps(sigmas=row)
        y = x[b : b + 1].clone()
        for t in alone.timesteps:
            y = alone.step(eps_model(y, t), t, y).prev_sample
        assert float((together[b : b + 1] - y).abs().max()) <= 1e-12


@pytest.mark.parametrize("method", ["res_2m", "res_3s"])
def test_timesteps_per_sample_equal_separate_schedulers(method):
    """2-D timesteps (one row of training timesteps per sample): each row's grid is the one
    set_timesteps(timesteps=row) makes, so the batch equals separate runs; the model sees every
    sample's own time."""
    rows = [[999, 700, 400, 100], [950, 600, 300, 50]]
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64)

    def eps_model(xx, t):
        t = torch.as_tensor(t, dtype=xx.dtype).reshape(-1, 1)
        return 0.8 * xx / torch.sqrt(1.0 + xx * xx) * (1 + t / 1000)

    scheduler = PhiforgeScheduler(method=method)
    scheduler.set_timesteps(timesteps=rows)
    assert scheduler.timesteps.shape[1] == 2
    assert scheduler.timesteps[0].tolist() == [999.0, 950.0]
    together = x.clone()
    for t in scheduler.timesteps:
        together = scheduler.step(eps_model(together, t), t, together).prev_sample
    for b, row in enumerate(rows):
        alone = PhiforgeScheduler(method=method)
        alone.set_timesteps(timesteps=row)
        y = x[b : b + 1].clone()
        for t in alone.timesteps:
            y = alone.step(eps_model(y, t), t, y).prev_sample
        assert float((together[b : b + 1] - y).abs().max()) <= 1e-12


@pytest.mark.parametrize("steps", [0, -5, 2.5, 2000, True, "10"])
def test_set_timesteps_refuses_a_step_count_outside_the_training_steps(steps):
    with pytest.raises(InputError, match=r"'num_inference_steps' must be an integer in 1\.\.1000"):
        PhiforgeScheduler(method="res_2m").set_timesteps(steps)


@pytest.mark.parametrize(
    ("key", "value"), [("eta", -1.0), ("s_noise", float("nan")), ("eta", True)]
)
def test_negative_or_non_finite_noise_settings_are_refused(key, value):
    with pytest.raises(InputError, match=f"'{key}' must be a finite number >= 0"):
        PhiforgeScheduler(method="seeds_2a", **{key: value})
