"""Exact posterior-mean denoisers: models whose probability-flow ODE is known exactly.

Every denoiser here is the Bayes-optimal data prediction of a known data distribution p(x0),
written in the variance-exploding variables of EDM/k-diffusion: x~ = x/alpha = x0 + sigma~ eps,
sigma~ = sigma/alpha = e^-lambda, so ``denoiser(x~, sigma~) = E[x0 | x~]`` serves every noise
schedule (``output='edm'`` in the driver). All are batched torch code, float64-capable, and
run on the device of their parameters.

- :class:`GaussianDenoiser`: p = N(mu, S). D = mu + S (S + s^2 I)^-1 (x~ - mu) and the ODE
  solution is exact: in the eigenbasis of S each coordinate scales by
  sqrt(e + s_t^2)/sqrt(e + s_s^2) (spec-dpmsolver-res §10.6 for diagonal S).
- :class:`GaussianMixtureDenoiser`: p = sum_k w_k N(m_k, S_k); D is the responsibility-weighted
  sum of the component posterior means, the responsibilities from N(x~; m_k, S_k + s^2 I).
- :class:`EmpiricalDenoiser`: p = the empirical distribution of a data set; D is the softmax-
  weighted mean of the data points with weights exp(-|x~ - x_i|^2/(2 s^2)).

Built-in data (shipped with scikit-learn, no download): the 1797 8x8 handwritten digits of
``sklearn.datasets.load_digits``, scaled to [-1, 1]. Beside the exact denoisers, ``network`` is a
trained one (an MLP fitted to ``gmm``, weights shipped; :mod:`phiforge.runtime.network`).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from phiforge.runtime.errors import InputError

__all__ = [
    "DENOISERS",
    "EmpiricalDenoiser",
    "GaussianDenoiser",
    "GaussianMixtureDenoiser",
    "builtin_denoiser",
    "digits",
]


@functools.lru_cache(maxsize=1)
def _digits_numpy() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().data.astype(np.float64) / 8.0 - 1.0


def digits() -> torch.Tensor:
    """The scikit-learn digits (1797 x 64, float64, values in [-1, 1]; images are 8 x 8)."""
    return torch.from_numpy(_digits_numpy().copy())


def _sigma_column(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """sigma~ as a (batch, 1) tensor (a float or a per-sample tensor)."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return sigma.reshape(-1, 1).expand(x.shape[0], 1) if sigma.ndim else sigma.expand(x.shape[0], 1)


class _Denoiser:
    """Common shape handling: inputs (batch, *shape) flattened to (batch, dim)."""

    dim: int
    image_shape: tuple[int, ...] | None = None

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(shape[0], -1)
        if flat.shape[1] != self.dim:
            raise InputError(
                f"parameter 'x' must have {self.dim} values per sample, got {flat.shape[1]}"
            )
        s = _sigma_column(sigma, flat)
        return self._denoise(flat, s).reshape(shape)

    def _denoise(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def to(self, device=None, dtype=None):
        for name, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                setattr(self, name, value.to(device=device, dtype=dtype))
        return self


class GaussianDenoiser(_Denoiser):
    """Posterior mean of x0 ~ N(mean, covariance) given x~ = x0 + sigma~ eps."""

    def __init__(self, mean: torch.Tensor, covariance: torch.Tensor) -> None:
        mean = torch.as_tensor(mean, dtype=torch.float64)
        covariance = torch.as_tensor(covariance, dtype=torch.float64)
        if mean.ndim != 1 or covariance.shape != (mean.numel(), mean.numel()):
            raise InputError("parameters 'mean' (d,) and 'covariance' (d, d) must match")
        eigenvalues, basis = torch.linalg.eigh(0.5 * (covariance + covariance.T))
        if eigenvalues.min() < -1e-10 * max(1.0, float(eigenvalues.max())):
            raise InputError("parameter 'covariance' must be positive semi-definite")
        self.mean, self.basis = mean, basis
        self.eigenvalues = eigenvalues.clamp(min=0.0)
        self.dim = mean.numel()

    @classmethod
    def fit(cls, data: torch.Tensor) -> GaussianDenoiser:
        data = torch.as_tensor(data, dtype=torch.float64)
        return cls(data.mean(0), torch.cov(data.T, correction=0))

    def _denoise(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        coords = (x - self.mean) @ self.basis
        shrink = self.eigenvalues / (self.eigenvalues + s * s)
        return self.mean + (coords * shrink) @ self.basis.T

    def flow(self, x: torch.Tensor, sigma_from: float, sigma_to: float) -> torch.Tensor:
        """The exact probability-flow ODE map x~(sigma_from) -> x~(sigma_to) (VE variables)."""
        shape = x.shape
        flat = x.reshape(shape[0], -1).to(self.mean.dtype)
        coords = (flat - self.mean) @ self.basis
        scale = torch.sqrt((self.eigenvalues + sigma_to**2) / (self.eigenvalues + sigma_from**2))
        return (self.mean + (coords * scale) @ self.basis.T).reshape(shape)

    def flow_from_zero_snr(self, noise: torch.Tensor, sigma_to: float) -> torch.Tensor:
        """The exact ODE solution at sigma~ = sigma_to started at zero SNR from x = sigma eps
        (given as ``noise`` = x/sigma): the sigma_from -> inf limit of :meth:`flow`."""
        shape = noise.shape
        coords = noise.reshape(shape[0], -1).to(self.mean.dtype) @ self.basis
        scale = torch.sqrt(self.eigenvalues + sigma_to**2)
        return (self.mean + (coords * scale) @ self.basis.T).reshape(shape)

    def sample_data(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(n, self.dim, dtype=self.mean.dtype, generator=generator)
        return self.mean + (noise * self.eigenvalues.sqrt()) @ self.basis.T


_CPU_ROWS = 512


class GaussianMixtureDenoiser(_Denoiser):
    """Posterior mean of x0 ~ sum_k w_k N(m_k, S_k) given x~ = x0 + sigma~ eps."""

    def __init__(
        self, weights: torch.Tensor, means: torch.Tensor, covariances: torch.Tensor
    ) -> None:
        weights = torch.as_tensor(weights, dtype=torch.float64)
        means = torch.as_tensor(means, dtype=torch.float64)
        covariances = torch.as_tensor(covariances, dtype=torch.float64)
        k, d = means.shape
        if weights.shape != (k,) or covariances.shape != (k, d, d):
            raise InputError("parameters 'weights' (K,), 'means' (K, d), 'covariances' (K, d, d)")
        if (weights <= 0).any() or abs(float(weights.sum()) - 1.0) > 1e-9:
            raise InputError("parameter 'weights' must be positive and sum to 1")
        eigenvalues, bases = torch.linalg.eigh(0.5 * (covariances + covariances.transpose(1, 2)))
        self.log_weights = weights.log()
        self.means, self.bases = means, bases
        self.eigenvalues = eigenvalues.clamp(min=0.0)
        self.dim = d
        # [B_1 ... B_K] as one (d, K d) matrix and the means in those coordinates, B_k^T m_k
        self.stacked_bases = bases.permute(1, 0, 2).reshape(d, k * d)
        self.projected_means = torch.einsum("kd,kde->ke", means, bases).reshape(k * d)

    @classmethod
    def fit(
        cls, data: torch.Tensor, components: int = 10, seed: int = 0
    ) -> GaussianMixtureDenoiser:
        """Maximum-likelihood fit (scikit-learn's EM, full covariances)."""
        from sklearn.mixture import GaussianMixture

        model = GaussianMixture(
            components, covariance_type="full", reg_covar=1e-3, random_state=seed
        ).fit(np.asarray(data, dtype=np.float64))
        return cls(
            torch.from_numpy(model.weights_),
            torch.from_numpy(model.means_),
            torch.from_numpy(model.covariances_),
        )

    def _denoise(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        # Rows in blocks: the (rows, K, d) intermediates then stay in cache on a CPU (about 4x
        # faster at 20000 rows than one block, bench/denoisers.py); a GPU takes the batch whole.
        rows = x.shape[0] if x.device.type != "cpu" else _CPU_ROWS
        if x.shape[0] <= rows:
            return self._denoise_block(x, s)
        blocks = zip(x.split(rows), s.split(rows), strict=True)
        return torch.cat([self._denoise_block(a, b) for a, b in blocks])

    def _denoise_block(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        # coords[b, k, :] = B_k^T (x_b - m_k), all K projections in one product
        k, d = self.means.shape
        coords = (x @ self.stacked_bases - self.projected_means).view(-1, k, d)
        precision = 1.0 / (self.eigenvalues[None] + (s * s)[:, :, None])  # (b, k, d)
        log_density = -0.5 * (coords * coords * precision - precision.log()).sum(-1)
        responsibility = torch.softmax(self.log_weights + log_density, dim=1)  # (b, k)
        # E[x0 | x] = sum_k r_k (m_k + B_k diag(l_k / (l_k + s^2)) coords_k)
        shrunk = coords * (self.eigenvalues[None] * precision) * responsibility[:, :, None]
        return responsibility @ self.means + shrunk.reshape(-1, k * d) @ self.stacked_bases.T

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The data distribution's exact mean and covariance (law of total covariance):
        mu = sum_k w_k m_k, Sigma = sum_k w_k (S_k + m_k m_k^T) - mu mu^T."""
        weights = self.log_weights.exp()
        covariances = torch.einsum("kde,ke,kfe->kdf", self.bases, self.eigenvalues, self.bases)
        mean = weights @ self.means
        second = torch.einsum("k,kdf->df", weights, covariances)
        second = second + torch.einsum("k,kd,kf->df", weights, self.means, self.means)
        return mean, second - torch.outer(mean, mean)

    def sample_data(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        labels = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, dtype=self.means.dtype, generator=generator)
        scaled = noise * self.eigenvalues[labels].sqrt()
        return self.means[labels] + torch.einsum("nd,ned->ne", scaled, self.bases[labels])


class EmpiricalDenoiser(_Denoiser):
    """Posterior mean of x0 drawn uniformly from a finite data set, given x~ = x0 + sigma~ eps."""

    def __init__(self, data: torch.Tensor) -> None:
        data = torch.as_tensor(data, dtype=torch.float64)
        if data.ndim != 2 or data.shape[0] < 1:
            raise InputError("parameter 'data' must be a (n, d) tensor with n >= 1")
        self.data = data
        self.squared_norms = (data * data).sum(1)
        self.dim = data.shape[1]

    def _denoise(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        # -|x - x_i|^2/(2 s^2), dropping |x|^2 which the softmax ignores
        logits = (x @ self.data.T - 0.5 * self.squared_norms[None]) / (s * s)
        return torch.softmax(logits, dim=1) @ self.data

    def sample_data(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        index = torch.randint(self.data.shape[0], (n,), generator=generator)
        return self.data[index]


def _digits_gaussian() -> GaussianDenoiser:
    return GaussianDenoiser.fit(digits())


def _digits_mixture() -> GaussianMixtureDenoiser:
    return GaussianMixtureDenoiser.fit(digits(), components=10, seed=0)


def _digits_empirical() -> EmpiricalDenoiser:
    return EmpiricalDenoiser(digits())


def _digits_network() -> _Denoiser:
    from phiforge.runtime.network import builtin_network

    return builtin_network()


DENOISERS = {
    "gaussian": _digits_gaussian,
    "gmm": _digits_mixture,
    "empirical": _digits_empirical,
    "network": _digits_network,
}


@functools.cache
def _cached(name: str) -> _Denoiser:
    denoiser = DENOISERS[name]()
    denoiser.image_shape = (8, 8)
    return denoiser


def builtin_denoiser(name: str, device: str | torch.device | None = None) -> _Denoiser:
    """A built-in denoiser on the digits data: the exact ``gaussian``, ``gmm`` and ``empirical``
    posterior means, or ``network``, an MLP trained on ``gmm`` (:mod:`phiforge.runtime.network`)."""
    if name not in DENOISERS:
        raise InputError(
            f"parameter 'denoiser' must be one of {', '.join(DENOISERS)}, got {name!r}"
        )
    denoiser = _cached(name)
    if device is not None and torch.device(device) != torch.device("cpu"):
        import copy

        denoiser = copy.copy(denoiser).to(device=device)
    return denoiser
