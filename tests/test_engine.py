"""The one planner and executor: call programs, deferred finiteness checks, no host reads in
the loop, CUDA-graph capture (GPU tests skip without CUDA)."""

from __future__ import annotations

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


# one method of every family: single-step, multistep, PEC multistep, stochastic, and Heun's
FAMILIES = ["res_3s", "res_2m", "res_3m_pc", "seeds_2a", "edm_heun"]


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
    options = {"noise_sampler": lambda a, b: next(draws)} if method == "seeds_2a" else {}
    out = SAMPLERS[method](torch_denoiser, _start().as_subclass(NoHostReads), sigmas, **options)
    draws = iter(noise)
    plain = SAMPLERS[method](torch_denoiser, _start(), sigmas, **options)
    assert isinstance(out, NoHostReads)
    assert torch.equal(out.as_subclass(torch.Tensor), plain)


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
    options = dict(steps=10, output="edm", eta=0.0 if method == "seeds_2a" else 1.0)
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
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    assert len(syncs) <= 1, [str(w.message) for w in syncs]  # the end-of-run finiteness check
