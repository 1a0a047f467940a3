"""Noise sources with k-diffusion's interface: ``noise(sigma, sigma_next)`` returns unit normals
shaped like the state, for the interval between two noise levels (sigma~ = sigma/alpha).

- :func:`gaussian_noise`: i.i.d. draws from one torch generator (or the global RNG);
- :func:`per_sample_noise`: one generator per sample from a list of seeds, so that a sample's
  noise does not depend on the batch it is drawn in;
- :class:`BrownianTreeNoise`: increments of one Brownian path per sample (torchsde's Brownian
  interval, optional extra), normalised by the interval length: the draws for disjoint intervals
  are independent unit normals (the law is unchanged) and refining the steps refines the same path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from phiforge.runtime.errors import InputError

__all__ = ["BrownianTreeNoise", "gaussian_noise", "per_sample_noise"]

NoiseSampler = Callable[[float, float], torch.Tensor]


def gaussian_noise(x: torch.Tensor, generator: torch.Generator | None = None) -> NoiseSampler:
    def draw(sigma: float, sigma_next: float) -> torch.Tensor:
        if generator is None:
            return torch.randn_like(x)
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=generator.device)
        return z.to(x.device)

    return draw


def per_sample_noise(x: torch.Tensor, seeds: Sequence[int]) -> NoiseSampler:
    if len(seeds) != x.shape[0]:
        raise InputError(
            f"parameter 'seeds' must give one seed per sample ({x.shape[0]}), got {len(seeds)}"
        )
    generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]

    def draw(sigma: float, sigma_next: float) -> torch.Tensor:
        rows = [torch.randn(x.shape[1:], generator=g, dtype=x.dtype) for g in generators]
        return torch.stack(rows).to(x.device)

    return draw


class BrownianTreeNoise:
    """Normalised increments of per-sample Brownian paths in sigma~ (needs torchsde)."""

    def __init__(
        self, x: torch.Tensor, sigma_min: float, sigma_max: float, seeds: Sequence[int] | int = 0
    ) -> None:
        try:
            import torchsde
        except ImportError:
            raise InputError("Brownian-tree noise needs torchsde: pip install torchsde") from None
        if not 0 <= sigma_min < sigma_max:
            raise InputError("BrownianTreeNoise: need 0 <= sigma_min < sigma_max")
        seeds = [seeds + i for i in range(x.shape[0])] if isinstance(seeds, int) else list(seeds)
        if len(seeds) != x.shape[0]:
            raise InputError("parameter 'seeds' must give one seed per sample")
        self.shape, self.dtype, self.device = x.shape[1:], x.dtype, x.device
        self.trees = [
            torchsde.BrownianInterval(
                t0=float(sigma_min),
                t1=float(sigma_max),
                size=(1, *self.shape),
                dtype=torch.float64,
                entropy=int(seed),
                tol=1e-6,
                pool_size=24,
                halfway_tree=True,
            )
            for seed in seeds
        ]
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    def __call__(self, sigma: float, sigma_next: float) -> torch.Tensor:
        low, high = sorted((float(sigma), float(sigma_next)))
        low, high = max(low, self.sigma_min), min(high, self.sigma_max)
        if not high > low:
            raise InputError(f"Brownian-tree noise: interval [{low}, {high}] outside the tree")
        increment = torch.cat([tree(low, high) for tree in self.trees]) / (high - low) ** 0.5
        return increment.to(device=self.device, dtype=self.dtype)
