"""k-diffusion-style functions: one per generated method, parity with k-diffusion itself."""

import itertools

import pytest
import torch

from phiforge.runtime import kdiffusion
from phiforge.runtime.denoisers import builtin_denoiser
from phiforge.runtime.driver import sample
from phiforge.runtime.peers import kdiffusion_sampling
from phiforge.runtime.stepping import generated_methods

SIGMAS = torch.tensor([80.0, 30.0, 9.0, 2.5, 0.6, 0.12, 0.02, 0.0], dtype=torch.float64)


def _start():
    generator = torch.Generator().manual_seed(3)
    return torch.randn(4, 64, dtype=torch.float64, generator=generator) * 80.0


def test_every_generated_method_has_a_sampler():
    assert set(kdiffusion.SAMPLERS) == set(generated_methods()) | set(kdiffusion.ALIASES)
    for name, function in kdiffusion.SAMPLERS.items():
        assert function.__name__ == f"sample_{name}"
        assert getattr(kdiffusion, f"sample_{name}") is function


def test_final_step_to_zero_is_one_denoising_call():
    calls, seen = [], []
    gmm = builtin_denoiser("gmm")

    def model(x, sigma, **extra):
        calls.append(float(sigma[0]))
        assert extra == {"tag": 1}
        return gmm(x, sigma)

    x = kdiffusion.sample_res_2m(
        model, _start(), SIGMAS, extra_args={"tag": 1}, callback=seen.append, disable=True
    )
    assert calls == pytest.approx(SIGMAS[:-1].tolist())
    assert len(seen) == len(SIGMAS) - 1
    assert torch.equal(x, seen[-1]["denoised"])


K = kdiffusion_sampling()


@pytest.mark.skipif(K is None, reason="k-diffusion (with torchsde, torchdiffeq) not installed")
@pytest.mark.parametrize(
    ("ours", "theirs"),
    [("dpmpp_2m", "sample_dpmpp_2m"), ("exp_euler", "sample_euler"), ("edm_heun", "sample_heun")],
)
def test_parity_with_k_diffusion(ours, theirs):
    gmm = builtin_denoiser("gmm")
    x = _start()
    expected = getattr(K, theirs)(gmm, x, SIGMAS, disable=True)
    got = kdiffusion.SAMPLERS[ours](gmm, x, SIGMAS, disable=True)
    assert torch.allclose(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.skipif(K is None, reason="k-diffusion (with torchsde, torchdiffeq) not installed")
def test_parity_with_k_diffusion_dpmpp_2m_sde_at_eta_zero_is_res_2m():
    """spec §10.3.3: RES-2M = k-diffusion dpmpp_2m_sde(eta = 0, 'heun')."""
    gmm = builtin_denoiser("gmm")
    x = _start()
    expected = K.sample_dpmpp_2m_sde(gmm, x, SIGMAS, eta=0.0, solver_type="heun", disable=True)
    got = kdiffusion.sample_res_2m(gmm, x, SIGMAS, disable=True)
    assert torch.allclose(got, expected, rtol=1e-10, atol=1e-10)


def test_a_seed_that_is_not_an_integer_is_refused():
    from phiforge.runtime.errors import InputError

    x = torch.zeros(4, 2, dtype=torch.float64)
    with pytest.raises(InputError, match=r"extra_args\['seed'\] must be an integer"):
        kdiffusion.SAMPLERS["seeds_2"](
            lambda x, s: x, x, [10.0, 1.0, 0.0], extra_args={"seed": [1, 2, 3, 4]}
        )


@pytest.mark.skipif(K is None, reason="k-diffusion (with torchsde, torchdiffeq) not installed")
@pytest.mark.parametrize(
    ("ours", "theirs"), [("dpmpp_2m", "sample_dpmpp_2m"), ("exp_euler", "sample_euler")]
)
def test_callbacks_follow_k_diffusions_protocol(ours, theirs):
    """x is the state at sigma that step i starts from, denoised the model's value there."""
    gmm = builtin_denoiser("gmm")
    expected, got = [], []
    getattr(K, theirs)(gmm, _start(), SIGMAS, callback=expected.append, disable=True)
    kdiffusion.SAMPLERS[ours](gmm, _start(), SIGMAS, callback=got.append, disable=True)
    assert [e["i"] for e in got] == [e["i"] for e in expected] == list(range(len(SIGMAS) - 1))
    for theirs_event, ours_event in zip(expected, got, strict=True):
        assert float(ours_event["sigma"]) == pytest.approx(float(theirs_event["sigma"]))
        for key in ("x", "denoised"):
            assert torch.allclose(ours_event[key], theirs_event[key], rtol=1e-10, atol=1e-10)


def test_callback_x_is_the_state_each_step_starts_from():
    """Without k-diffusion: step i's x is step i-1's end (the driver's x) and step 0's the input;
    a predict-evaluate-correct method's start is its corrected state, not the prediction (but
    the last method step is not corrected, so the final denoise starts from its end)."""
    gmm = builtin_denoiser("gmm")
    for name in ("res_2m", "res_3m_pc"):
        k_style, driver = [], []
        x = _start()
        kdiffusion.SAMPLERS[name](gmm, x, SIGMAS, callback=k_style.append, disable=True)
        sample(gmm, x, "edm", name, sigmas=SIGMAS.tolist(), output="edm", callback=driver.append)
        assert torch.equal(k_style[0]["x"], x)
        for i in range(1, len(SIGMAS) - 1):
            assert torch.equal(k_style[i]["x"], driver[i]["x_start"])
            assert torch.equal(k_style[i]["denoised"], driver[i]["denoised"])
            moved = (k_style[i]["x"] - driver[i - 1]["x"]).abs().max().item()
            corrected = name == "res_3m_pc" and i < len(SIGMAS) - 2  # not the final denoise's
            assert (moved > 0) == corrected, (name, i, moved)


def test_adaptive_steps_report_where_each_step_starts():
    gmm = builtin_denoiser("gmm")
    events = []
    x = _start()
    sample(gmm, x, "edm", "res_2s", sigmas=[80.0, 0.02], output="edm", adaptive=True,
           callback=events.append)  # fmt: skip
    assert len(events) > 2 and torch.equal(events[0]["x_start"], x)
    for before, after in itertools.pairwise(events):  # accepted steps chain
        assert torch.equal(after["x_start"], before["x"])
