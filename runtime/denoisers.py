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
``sklearn.datasets.load_digits``, scaled to [-1, 1]. ``gaussian`` and ``empirical`` are computed
from them; ``gmm`` is a 10-component EM fit to them that ships as a file
(``runtime/weights/digits-gmm.json`` and ``.bin``, float64, hash-checked), because EM's result
depends on the BLAS kernels of the machine it runs on (OpenBLAS' Haswell and SkylakeX kernels end
at parameters whose denoising errors differ by 1 %), and every stored figure of the project was
measured on one fixed mixture. ``phiforge mixture fit`` writes such a file, ``phiforge mixture
check`` compares the shipped one with a fit on this machine. Beside the exact denoisers,
``network`` is a trained one (an MLP fitted to ``gmm``, weights shipped;
:mod:`phiforge.runtime.network`).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from phiforge.runtime.checks import check_device, check_integer, check_seed
from phiforge.runtime.denoiser import Denoiser
from phiforge.runtime.errors import InputError
from phiforge.runtime.manifest import read_tensors, weights_dir, write_tensors
from phiforge.runtime.network import builtin_network

__all__ = [
    "BUILTIN_MIXTURE",
    "DENOISERS",
    "EmpiricalDenoiser",
    "GaussianDenoiser",
    "GaussianMixtureDenoiser",
    "builtin_denoiser",
    "digits",
    "fit_digits_mixture",
    "load_mixture",
    "save_mixture",
]

BUILTIN_MIXTURE = "digits-gmm"
MIXTURE_FORMAT = 1


@functools.lru_cache(maxsize=1)
def _digits_numpy() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().data.astype(np.float64) / 8.0 - 1.0


def digits() -> torch.Tensor:
    """The scikit-learn digits (1797 x 64, float64, values in [-1, 1]; images are 8 x 8)."""
    return torch.from_numpy(_digits_numpy().copy())


def _symmetric_root(basis: torch.Tensor, eigenvalues: torch.Tensor) -> torch.Tensor:
    """S^(1/2) = B diag(sqrt(l)) B^T (batched over leading dimensions): the one symmetric
    positive semi-definite root of S = B diag(l) B^T. Draws m + S^(1/2) z are a function of S
    and z alone; m + B diag(sqrt(l)) z would also depend on the basis that eigh picks inside
    repeated eigenvalues and on eigenvector signs, which differ between LAPACK code paths (the
    digits' covariances have many eigenvalues equal to reg_covar), so seeded draws would differ
    from machine to machine."""
    return (basis * eigenvalues.sqrt().unsqueeze(-2)) @ basis.transpose(-1, -2)


class GaussianDenoiser(Denoiser):
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
        self.root = _symmetric_root(basis, self.eigenvalues)
        self.dim = mean.numel()

    @classmethod
    def fit(cls, data: torch.Tensor) -> GaussianDenoiser:
        data = torch.as_tensor(data, dtype=torch.float64)
        return cls(data.mean(0), torch.cov(data.T, correction=0))

    def data_mean(self) -> torch.Tensor:
        return self.mean

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
        """n draws mean + S^(1/2) z with the symmetric root (see :func:`_symmetric_root`)."""
        noise = torch.randn(n, self.dim, dtype=self.mean.dtype, generator=generator)
        return self.mean + noise @ self.root


_CPU_ROWS = 512


class GaussianMixtureDenoiser(Denoiser):
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
        if eigenvalues.min() <= 0:
            raise InputError("parameter 'covariances' must be positive definite")
        self.weights, self.covariances = weights, covariances  # as given, for save_mixture
        self.info: dict[str, Any] = {}
        self.log_weights = weights.log()
        self.means, self.bases = means, bases
        self.eigenvalues = eigenvalues
        self.roots = _symmetric_root(bases, eigenvalues)
        self.dim = d
        # [B_1 ... B_K] as one (d, K d) matrix and the means in those coordinates, B_k^T m_k
        self.stacked_bases = bases.permute(1, 0, 2).reshape(d, k * d)
        self.projected_means = torch.einsum("kd,kde->ke", means, bases).reshape(k * d)

    @classmethod
    def fit(
        cls, data: torch.Tensor, components: int = 10, seed: int = 0
    ) -> GaussianMixtureDenoiser:
        """Maximum-likelihood fit (scikit-learn's EM, full covariances, reg_covar 1e-3); the
        fit's settings, versions, iterations and mean log-likelihood go to ``info``."""
        import sklearn
        from sklearn.mixture import GaussianMixture
        from threadpoolctl import threadpool_info

        data = np.asarray(data, dtype=np.float64)
        settings = {"components": components, "reg_covar": 1e-3, "random_state": seed}
        model = GaussianMixture(
            components, covariance_type="full", reg_covar=1e-3, random_state=seed
        ).fit(data)
        mixture = cls(
            torch.from_numpy(model.weights_),
            torch.from_numpy(model.means_),
            torch.from_numpy(model.covariances_),
        )
        mixture.info = {
            "fit": settings,
            "rows": int(data.shape[0]),
            "iterations": int(model.n_iter_),
            "converged": bool(model.converged_),
            "mean_log_likelihood": mixture.mean_log_likelihood(torch.from_numpy(data)),
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "blas": sorted(
                {
                    f"{pool['internal_api']} {pool['version']} {pool.get('architecture')}"
                    for pool in threadpool_info()
                    if pool["user_api"] == "blas"
                }
            ),
        }
        return mixture

    def log_density(self, x0: torch.Tensor) -> torch.Tensor:
        """log p(x0) per row: log sum_k w_k N(x0; m_k, S_k), with S_k = B_k diag(l_k) B_k^T."""
        k, d = self.means.shape
        coords = x0.reshape(x0.shape[0], -1) @ self.stacked_bases - self.projected_means
        coords = coords.view(-1, k, d)
        quadratic = (coords * coords / self.eigenvalues[None]).sum(-1)
        log_norm = self.eigenvalues.log().sum(-1) + d * math.log(2 * math.pi)
        return torch.logsumexp(self.log_weights - 0.5 * (quadratic + log_norm), dim=1)

    def mean_log_likelihood(self, data: torch.Tensor) -> float:
        """The mean of :meth:`log_density` over the rows of ``data`` (what EM increases)."""
        return float(self.log_density(torch.as_tensor(data, dtype=self.means.dtype)).mean())

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

    def data_mean(self) -> torch.Tensor:
        return self.log_weights.exp() @ self.means

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
        """n draws: a component k ~ w, then m_k + S_k^(1/2) z with the symmetric root."""
        labels = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, dtype=self.means.dtype, generator=generator)
        draws = self.means[labels]
        for k in labels.unique().tolist():
            rows = labels == k
            draws[rows] += noise[rows] @ self.roots[k]
        return draws


class EmpiricalDenoiser(Denoiser):
    """Posterior mean of x0 drawn uniformly from a finite data set, given x~ = x0 + sigma~ eps."""

    def __init__(self, data: torch.Tensor) -> None:
        data = torch.as_tensor(data, dtype=torch.float64)
        if data.ndim != 2 or data.shape[0] < 1:
            raise InputError("parameter 'data' must be a (n, d) tensor with n >= 1")
        self.data = data
        self.squared_norms = (data * data).sum(1)
        self.dim = data.shape[1]

    def data_mean(self) -> torch.Tensor:
        return self.data.mean(dim=0)

    def _denoise(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        # -|x - x_i|^2/(2 s^2), dropping |x|^2 which the softmax ignores
        logits = (x @ self.data.T - 0.5 * self.squared_norms[None]) / (s * s)
        return torch.softmax(logits, dim=1) @ self.data

    def sample_data(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        index = torch.randint(self.data.shape[0], (n,), generator=generator)
        return self.data[index]


def _digits_gaussian() -> GaussianDenoiser:
    return GaussianDenoiser.fit(digits())


def fit_digits_mixture(components: int = 10, seed: int = 0) -> GaussianMixtureDenoiser:
    """EM on the digits as the shipped ``gmm`` was made (its result depends on the machine's BLAS:
    see the module docstring)."""
    data = digits()
    check_integer("components", components, 1, data.shape[0])
    check_seed(seed)
    return GaussianMixtureDenoiser.fit(data, components=components, seed=seed)


def save_mixture(
    mixture: GaussianMixtureDenoiser, directory: str | Path, name: str = BUILTIN_MIXTURE
) -> tuple[Path, Path]:
    """Write ``NAME.bin`` (weights, means, covariances as float64) and ``NAME.json`` (their
    table, hashes and ``mixture.info``); returns both paths."""
    arrays = {
        "weights": mixture.weights.cpu().numpy(),
        "means": mixture.means.cpu().numpy(),
        "covariances": mixture.covariances.cpu().numpy(),
    }
    document = {"format": MIXTURE_FORMAT, "name": name, "info": mixture.info}
    return write_tensors(directory, name, document, arrays, element="<f8")


def load_mixture(json_path: str | Path) -> GaussianMixtureDenoiser:
    """Read a mixture written by :func:`save_mixture`, refusing edited files (hash mismatch)."""
    document, arrays = read_tensors(
        json_path,
        "mixture file",
        MIXTURE_FORMAT,
        element="<f8",
        required=("info",),
        names=("weights", "means", "covariances"),
        model="mixture",
    )
    if sorted(arrays) != ["covariances", "means", "weights"]:
        raise InputError(f"{json_path}: expected tensors weights, means, covariances")
    mixture = GaussianMixtureDenoiser(
        *(torch.from_numpy(arrays[key]) for key in ("weights", "means", "covariances"))
    )
    mixture.info = document["info"]
    return mixture


def _digits_mixture() -> GaussianMixtureDenoiser:
    return load_mixture(weights_dir() / f"{BUILTIN_MIXTURE}.json")


def _digits_empirical() -> EmpiricalDenoiser:
    return EmpiricalDenoiser(digits())


def _digits_network() -> Denoiser:
    return builtin_network()


def _patches_unet() -> Denoiser:
    from phiforge.runtime.unet import builtin_unet

    return builtin_unet()


DENOISERS = {
    "gaussian": _digits_gaussian,
    "gmm": _digits_mixture,
    "empirical": _digits_empirical,
    "network": _digits_network,
    "unet": _patches_unet,
}


@functools.cache
def _cached(name: str) -> Denoiser:
    denoiser = DENOISERS[name]()
    if denoiser.image_shape is None:  # the digits: 8 x 8 grey images
        denoiser.image_shape = (8, 8)
    return denoiser


def builtin_denoiser(name: str, device: str | torch.device | None = None) -> Denoiser:
    """A built-in denoiser: on the digits data the exact ``gaussian``, ``gmm`` and ``empirical``
    posterior means, or ``network``, an MLP trained on ``gmm`` (:mod:`phiforge.runtime.network`);
    ``unet``, a convolutional U-Net trained on 32 x 32 RGB patches of pictures that ship with
    scikit-image and scikit-learn (:mod:`phiforge.runtime.unet`)."""
    if not isinstance(name, str) or name not in DENOISERS:
        raise InputError(
            f"parameter 'denoiser' must be one of {', '.join(DENOISERS)}, got {name!r}"
        )
    denoiser = _cached(name)
    if device is None:
        return denoiser
    return denoiser._on(check_device(device))
