"""The one planner and executor: call programs, deferred finiteness checks, no host reads in
the loop, CUDA-graph capture (GPU tests skip without CUDA)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from phiforge.runtime import sample
from phiforge.runtime.engine import Combine, Evaluate, execute
from phiforge.runtime.errors import InputError, ModelOutputError
from phiforge.runtime.kdiffusion import SAMPLERS
from phiforge.runtime.plan import Builder
from phiforge.runtime.program import Call, StepProgram, Y, stage, value
from phiforge.runtime.schedules import EDM

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class NoHostReads(torch.Tensor):
    """A state that fails the test on any read back to the host."""

    def _refuse(self, *args, **kwargs):
        raise AssertionError("the sampling loop read a tensor back to the host")

    __bool__ = __float__ = __int__ = item = tolist = _refuse


def torch_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """E[x0 | x0 + sigma eps] for x0 ~ N(0.3, 0.5), from torch operations only."""
    s2 = sigma.reshape(-1, *([1] * (x.ndim - 1))) ** 2
    return 0.3 + 0.5 / (0.5 + s2) * (x - 0.3)


def _start(batch: int = 3, dim: int = 5, dtype=torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    return 80.0 * torch.randn(batch, dim, generator=generator, dtype=dtype)


# one method of every family: single-step, multistep, PEC multistep, SEEDS, Heun's, and the
# stochastic exponential Adams methods
FAMILIES = ["res_3s", "res_2m", "res_3m_pc", "seeds_2a", "edm_heun", "res_2m_sde"]


@pytest.mark.parametrize("method", FAMILIES)
def test_sample_reads_nothing_back_from_the_state(method):
    x = _start()
    plain = sample(
        torch_denoiser,
        x,
        EDM(),
        method,
        steps=6,
        output="edm",
        generator=torch.Generator().manual_seed(1),
    )
    guarded = sample(
        torch_denoiser,
        x.as_subclass(NoHostReads),
        EDM(),
        method,
        steps=6,
        output="edm",
        generator=torch.Generator().manual_seed(1),
    )
    assert isinstance(guarded, NoHostReads)
    assert torch.equal(guarded.as_subclass(torch.Tensor), plain)


@pytest.mark.parametrize("method", FAMILIES)
def test_kdiffusion_functions_read_nothing_back_from_the_state(method):
    sigmas = torch.tensor([80.0, 20.0, 5.0, 1.0, 0.2, 0.0], dtype=torch.float64)
    noise = torch.randn(20, 3, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    draws = iter(noise)
    stochastic = method in ("seeds_2a", "res_2m_sde")
    options = {"noise_sampler": lambda a, b: next(draws)} if stochastic else {}
    out = SAMPLERS[method](torch_denoiser, _start().as_subclass(NoHostReads), sigmas, **options)
    draws = iter(noise)
    plain = SAMPLERS[method](torch_denoiser, _start(), sigmas, **options)
    assert isinstance(out, NoHostReads)
    assert torch.equal(out.as_subclass(torch.Tensor), plain)


def test_restart_reads_nothing_back_from_the_state():
    options = dict(sigmas=[80.0, 10.0, 2.0, 0.5, 0.1, 0.0], output="edm", restart="2,1,0.4,2.0")
    plain = sample(
        torch_denoiser,
        _start(),
        EDM(),
        "res_2s",
        generator=torch.Generator().manual_seed(5),
        **options,
    )
    guarded = sample(
        torch_denoiser,
        _start().as_subclass(NoHostReads),
        EDM(),
        "res_2s",
        generator=torch.Generator().manual_seed(5),
        **options,
    )
    assert torch.equal(guarded.as_subclass(torch.Tensor), plain)


def test_a_nan_is_reported_after_the_run_with_its_first_call():
    calls = []

    def model(x, sigma):
        calls.append(1)
        out = torch_denoiser(x, sigma)
        return out * float("nan") if len(calls) in (4, 5) else out

    with pytest.raises(ModelOutputError, match=r"at step 3 \(sigma~ = 2\.4"):
        sample(
            model, _start(), EDM(), "res_2m", sigmas=[80, 40, 10, 2.4, 0.5, 0.1, 0], output="edm"
        )
    assert len(calls) == 6  # the run went on: the flags are read once, at its end
    calls.clear()
    with pytest.raises(ModelOutputError, match=r"at step 3 "):
        sample(
            model,
            _start(),
            EDM(),
            "res_2m",
            sigmas=[80, 40, 10, 2.4, 0.5, 0.1, 0],
            output="edm",
            check_every=2,
        )
    assert len(calls) == 4  # checked after every second call: stopped at the fourth


def test_check_every_must_be_a_positive_integer():
    with pytest.raises(InputError, match="'check_every' must be a positive integer"):
        sample(torch_denoiser, _start(), EDM(), "res_2m", steps=4, output="edm", check_every=0)


def test_a_step_program_refuses_terms_it_cannot_know():
    with pytest.raises(ValueError, match="stage 1 reads a stage not yet evaluated"):
        StepProgram(calls=(Call(0.5, ((Y, 1.0), (stage(1), 0.5))),), output=((Y, 1.0),))
    with pytest.raises(ValueError, match=r"value\(2\) beyond history 2"):
        StepProgram(calls=(), output=((value(2), 1.0),), history=2)


def test_the_builder_merges_terms_and_skips_identities():
    builder = Builder()
    a, b = builder.input(), builder.input()
    assert builder.combine([(a, 1.0)]) == a  # no operation for a copy
    merged = builder.combine([(a, 0.25), (b, 2.0), (a, 0.5), (b, -2.0)])
    op = builder.program.ops[-1]
    assert isinstance(op, Combine) and op.dest == merged and op.terms == ((a, 0.75),)
    out = builder.evaluate(merged, 0.0)
    assert isinstance(builder.program.ops[-1], Evaluate)
    program = builder.finish([out])
    assert program.release == [(a,), (merged,)]  # b is never read: nothing to release
    (result,) = execute(program, [torch.tensor([4.0]), torch.tensor([9.0])], lambda s, lam: s + 1)
    assert float(result) == pytest.approx(4.0)  # 0.75 * 4 + 1


def test_capture_is_refused_on_the_cpu():
    with pytest.raises(InputError, match="'capture' needs x on a CUDA device"):
        sample(torch_denoiser, _start(), EDM(), "res_2m", steps=4, output="edm", capture=True)


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("method", ["res_2m", "res_3m_pc", "res_3s", "seeds_2a"])
def test_a_captured_run_replays_the_uncaptured_one(method):
    x = _start(4, 256, torch.float32).cuda()
    # seeds_2a at eta = 0 (its noise, drawn inside the graph, would differ); the deterministic
    # methods take no eta (refused since eta became strict; this test had never run on a GPU)
    options = dict(steps=10, output="edm", **({"eta": 0.0} if method == "seeds_2a" else {}))
    plain = sample(torch_denoiser, x, EDM(), method, **options)
    captured = sample(torch_denoiser, x, EDM(), method, capture=True, **options)
    scale = float(plain.abs().max())
    assert float((captured - plain).abs().max()) <= 1e-6 * max(scale, 1.0)


@pytest.mark.gpu
@cuda
def test_a_run_on_cuda_synchronises_once():
    x = _start(4, 256, torch.float32).cuda()
    sample(torch_denoiser, x, EDM(), "res_3m_pc", steps=3, output="edm")  # lazy init
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            sample(torch_denoiser, x, EDM(), "res_3m_pc", steps=20, output="edm")
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "called a synchronizing" in str(w.message)]
    assert len(syncs) <= 1, [str(w.message) for w in syncs]  # the end-of-run finiteness check
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            sample(
                torch_denoiser, x, EDM(), "res_3m_pc", steps=20, output="edm", check_finite=False
            )
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert not [w for w in caught if "called a synchronizing" in str(w.message)]


def _grids(batch: int, steps: int) -> torch.Tensor:
    """A different Karras-like grid per sample, ending at sigma = 0."""
    rows = []
    for b in range(batch):
        rho = 3.0 + 2.0 * b
        ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
        high, low = 80.0 - 10.0 * b, 0.002 * (b + 1)
        row = (high ** (1 / rho) + ramp * (low ** (1 / rho) - high ** (1 / rho))) ** rho
        rows.append(torch.cat([row, torch.zeros(1, dtype=torch.float64)]))
    return torch.stack(rows)


@pytest.mark.parametrize("method", FAMILIES)
def test_a_grid_per_sample_equals_separate_runs(method):
    x = _start(3, 5)
    sigmas = _grids(3, 9)
    seeds = [11, 12, 13]
    together = sample(torch_denoiser, x, EDM(), method, sigmas=sigmas, output="edm", seeds=seeds)
    for b in range(3):
        alone = sample(
            torch_denoiser,
            x[b : b + 1],
            EDM(),
            method,
            sigmas=sigmas[b].tolist(),
            output="edm",
            seeds=[seeds[b]],
        )
        assert float((together[b : b + 1] - alone).abs().max()) <= 1e-12


def test_a_grid_per_sample_with_a_noise_prediction_model_on_a_vp_schedule():
    from phiforge.runtime.schedules import VPLinear

    schedule = VPLinear()

    def eps_model(x, t):
        return 0.8 * x / torch.sqrt(1.0 + x * x)

    x = _start(2, 4) / 80.0
    times = torch.tensor(
        [[1.0, 0.7, 0.4, 0.2, 0.05], [0.9, 0.5, 0.3, 0.1, 0.02]], dtype=torch.float64
    )
    together = sample(eps_model, x, schedule, "res_3m_pc", timesteps=times, output="noise")
    for b in range(2):
        alone = sample(
            eps_model,
            x[b : b + 1],
            schedule,
            "res_3m_pc",
            timesteps=times[b].tolist(),
            output="noise",
        )
        assert float((together[b : b + 1] - alone).abs().max()) <= 1e-12


@pytest.mark.parametrize(
    ("sigmas", "message"),
    [
        (torch.ones(2, 4), "one row per sample \\(3\\), got 2"),
        ([[80.0, 1.0, 0.0], [80.0, 0.0], [9.0, 1.0, 0.0]], "one length, got \\[2, 3\\]"),
        ([[80.0, 1.0, 0.0], [1.0, 80.0, 0.0], [9.0, 1.0, 0.0]], "strictly monotone"),
        (torch.ones(3, 2, 2), "must be 1-D, or 2-D with one row per sample"),
    ],
)
def test_bad_per_sample_grids_are_refused(sigmas, message):
    with pytest.raises(InputError, match=message):
        sample(torch_denoiser, _start(3, 5), EDM(), "res_2m", sigmas=sigmas, output="edm")


def test_a_model_output_of_another_shape_is_refused():
    def broadcasting(x, sigma):
        return torch_denoiser(x, sigma)[:1]

    with pytest.raises(ModelOutputError, match=r"returned shape \(1, 5\) for an input of shape"):
        sample(broadcasting, _start(3, 5), EDM(), "res_2m", steps=4, output="edm")


def test_kdiffusion_functions_take_a_grid_per_sample():
    x, sigmas = _start(3, 5), _grids(3, 7)
    together = SAMPLERS["res_3m_pc"](torch_denoiser, x, sigmas)
    for b in range(3):
        alone = SAMPLERS["res_3m_pc"](torch_denoiser, x[b : b + 1], sigmas[b])
        assert float((together[b : b + 1] - alone).abs().max()) <= 1e-12


@pytest.mark.gpu
@cuda
def test_a_grid_per_sample_on_cuda_matches_the_cpu():
    x, sigmas = _start(3, 5), _grids(3, 9)
    cpu = sample(torch_denoiser, x, EDM(), "res_3m_pc", sigmas=sigmas, output="edm")
    gpu = sample(torch_denoiser, x.cuda(), EDM(), "res_3m_pc", sigmas=sigmas, output="edm")
    assert float((gpu.cpu() - cpu).abs().max()) <= 1e-9


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_builtin_mixture_samples_on_cuda_in_low_precision(dtype):
    from phiforge.runtime.denoisers import builtin_denoiser

    gmm = builtin_denoiser("gmm")
    x = 80.0 * torch.randn(16, 64, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    exact = sample(gmm, x, EDM(), "res_3m", steps=10, output="edm")
    low = sample(gmm, x.to("cuda", dtype), EDM(), "res_3m", steps=10, output="edm")
    assert low.dtype == dtype
    tolerance = 1e-3 if dtype == torch.float32 else 0.2  # bfloat16: 8 significant bits
    assert float((low.double().cpu() - exact).abs().max()) <= tolerance


def test_per_sample_rows_must_end_alike():
    sigmas = [[80.0, 5.0, 1.0, 0.0], [80.0, 5.0, 1.0, 0.5], [70.0, 4.0, 0.5, 0.0]]
    with pytest.raises(InputError, match=r"per-sample grid .* must give runs of one shape"):
        sample(torch_denoiser, _start(3, 5), EDM(), "res_2m", sigmas=sigmas, output="edm")


def test_a_plan_is_remembered_for_runs_with_the_same_plan(monkeypatch):
    import phiforge.runtime.driver as driver

    laid = []
    original = driver.place_steps

    def counting(*args, **kwargs):
        laid.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(driver, "place_steps", counting)
    monkeypatch.setattr(driver, "_PROGRAMS", type(driver._PROGRAMS)())
    sigmas = [80.0, 20.0, 5.0, 1.0, 0.2, 0.0]
    first = sample(torch_denoiser, _start(), EDM(), "res_3m_pc", sigmas=sigmas, output="edm")
    again = sample(torch_denoiser, _start(), EDM(), "res_3m_pc", sigmas=sigmas, output="edm")
    assert len(laid) == 1 and torch.equal(first, again)
    sample(torch_denoiser, _start(), EDM(), "res_3m_pc", sigmas=sigmas[1:], output="edm")
    assert len(laid) == 2  # another grid, another plan


def test_grouped_options_equal_plain_keywords():
    from phiforge.runtime.run_options import Grid, Noise, Wrapper

    x = _start()
    plain = sample(
        torch_denoiser,
        x,
        EDM(),
        "seeds_2a",
        steps=6,
        output="edm",
        eta=0.5,
        generator=torch.Generator().manual_seed(3),
    )
    grouped = sample(
        torch_denoiser,
        x,
        EDM(),
        "seeds_2a",
        grid=Grid(steps=6),
        wrapper=Wrapper(output="edm"),
        noise=Noise(eta=0.5, generator=torch.Generator().manual_seed(3)),
    )
    assert torch.equal(plain, grouped)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"grid": "steps=6"}, "parameter 'grid' must be a Grid, got str"),
        ({"steps": 6, "gird": 3}, "unknown parameter 'gird'"),
        ({"wrapper": "edm", "steps": 6}, "parameter 'wrapper' must be a Wrapper"),
        ({"eta": -1.0, "steps": 6}, "parameter 'eta' must be a finite number >= 0"),
        ({"prediction": "x0", "steps": 6}, "parameter 'prediction' must be 'data' or 'noise'"),
    ],
)
def test_bad_groups_are_refused_by_name(kwargs, message):
    with pytest.raises(InputError, match=message):
        sample(torch_denoiser, _start(), EDM(), "res_2m", **{"output": "edm", **kwargs})


def test_a_field_given_twice_is_refused():
    from phiforge.runtime.run_options import Grid

    with pytest.raises(InputError, match="'steps' is a field of grid=: give it there or as a"):
        sample(torch_denoiser, _start(), EDM(), "res_2m", grid=Grid(nfe=6), steps=6, output="edm")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_a_stacked_combination_equals_the_chain_of_additions(dtype):
    """The accelerators' form of a long combination (stack, product, sum; covered here since
    a CPU run uses the chain of additions) equals the exact combination to its dtype's rounding
    (bfloat16 is combined in float32 and rounded once)."""
    from phiforge.runtime import engine

    generator = torch.Generator().manual_seed(8)
    buffer = [
        torch.randn(3, 7, generator=generator, dtype=torch.float64).to(dtype) for _ in range(5)
    ]
    terms = tuple((slot, c) for slot, c in enumerate([0.75, -1.25, 2.0, 1e-3, -0.5]))
    row = torch.tensor(
        [c for _, c in terms], dtype=torch.float64 if dtype == torch.float64 else torch.float32
    )
    stacked = engine._stacked(buffer, terms, row)
    exact = sum(c * buffer[slot].double() for slot, c in terms)
    assert stacked.dtype == dtype
    tolerance = {torch.float64: 1e-14, torch.float32: 1e-6, torch.bfloat16: 2e-2}[dtype]
    assert float((stacked.double() - exact).abs().max()) <= tolerance * float(exact.abs().max())


def test_without_the_finiteness_check_a_nan_passes_through():
    def model(x, sigma):
        return torch_denoiser(x, sigma) * float("nan")

    out = sample(model, _start(), EDM(), "res_2m", steps=4, output="edm", check_finite=False)
    assert bool(torch.isnan(out).all())
    with pytest.raises(InputError, match="'check_finite' must be True or False"):
        sample(torch_denoiser, _start(), EDM(), "res_2m", steps=4, output="edm", check_finite=1)


@pytest.mark.gpu
@cuda
def test_a_grid_per_sample_can_be_captured():
    x = _start(3, 256, torch.float32).cuda()
    sigmas = _grids(3, 9)
    plain = sample(torch_denoiser, x, EDM(), "res_3m_pc", sigmas=sigmas, output="edm")
    captured = sample(
        torch_denoiser, x, EDM(), "res_3m_pc", sigmas=sigmas, output="edm", capture=True
    )
    assert float((captured - plain).abs().max()) <= 1e-6 * max(float(plain.abs().max()), 1.0)


def test_an_empty_batch_and_a_nan_start_are_refused_by_name():
    with pytest.raises(InputError, match="'x' must hold at least one sample"):
        sample(torch_denoiser, _start()[:0], EDM(), "res_2m", steps=4, output="edm")
    start = _start()
    start[1, 2] = float("nan")
    with pytest.raises(InputError, match="'x' holds NaN or inf"):
        sample(torch_denoiser, start, EDM(), "res_2m", steps=4, output="edm")


def test_phi_of_an_argument_whose_exponential_overflows_is_refused():
    from phiforge.runtime.phi import phi_float

    assert phi_float(2, 700.0) == pytest.approx(math.exp(700.0) / 700.0**2, rel=1e-3)
    with pytest.raises(InputError, match=r"phi: parameter .z. must be at most 709\.78"):
        phi_float(2, 1000.0)
