"""k-diffusion-style functions: one per generated method, parity with k-diffusion itself."""

import pytest
import torch

from phiforge.runtime import kdiffusion
from phiforge.runtime.denoisers import builtin_denoiser
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
