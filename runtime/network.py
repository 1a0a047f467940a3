"""A trained denoiser: a small residual MLP fitted to a data distribution, and its weights file.

The exact denoisers of :mod:`phiforge.runtime.denoisers` make the probability-flow ODE known; a
real diffusion model is a network whose data prediction only approximates the posterior mean.
This module trains such a network here, on CPU in minutes, and ships one (``network``, fitted
to the built-in digits mixture ``gmm``), so that convergence studies and distribution benchmarks
also run on a trained model, with the exact posterior mean at hand to measure its error.

Preconditioning (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based
Generative Models", Table 1, EDM column), in the variance-exploding variables x~ = x0 + s eps:

    D(x~, s) = c_skip(s) x~ + c_out(s) F(c_in(s) x~, c_noise(s)),
    c_skip = sd^2/(s^2 + sd^2), c_out = s sd/sqrt(s^2 + sd^2), c_in = 1/sqrt(s^2 + sd^2),
    c_noise = ln(s)/4,

with sd the data's RMS. Training minimises E ||F(c_in x~, c_noise) - (y - c_skip x~)/c_out||^2,
which is EDM's weighted loss lambda(s) ||D(x~, s) - y||^2 with lambda = 1/c_out^2, over
s log-uniform on [sigma_min, sigma_max]. The regression target y is either the clean sample x0
(``target='data'``: denoising score matching, how diffusion models are trained) or the exact
posterior mean E[x0 | x~] of the training distribution (``target='posterior'``: the same
minimiser with far less variance, i.e. distillation of the exact denoiser).

F is a residual MLP with SiLU activations (smooth, so the sampling ODE is smooth and solvers
show their orders): the input c_in x~ joined to Fourier features sin/cos(f_j c_noise) of the
noise level, ``blocks`` residual blocks h += W2 silu(W1 silu(h) + E e), a linear read-out.

Weights file: ``NAME.bin`` (the float32 tensors, little-endian, in the manifest's order) and
``NAME.json`` (architecture, training configuration, tensor table, the SHA-256 of the .bin, the
measured denoising errors, and a content hash over all of it). A file whose hashes do not match
was edited and is refused.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from phiforge.runtime.checks import check_seed
from phiforge.runtime.denoiser import Denoiser
from phiforge.runtime.errors import InputError
from phiforge.runtime.manifest import module_arrays, read_tensors, weights_dir, write_tensors

__all__ = [
    "BUILTIN_NETWORK",
    "EVALUATION_SIGMAS",
    "DenoiserMLP",
    "NetworkConfig",
    "NetworkDenoiser",
    "TrainingConfig",
    "builtin_network",
    "denoising_errors",
    "edm_preconditioning",
    "load_network",
    "require_positive",
    "save_network",
    "train_network",
    "weights_dir",
]

FORMAT_VERSION = 1
BUILTIN_NETWORK = "digits-gmm-mlp"
TARGETS = ("data", "posterior")
# noise levels of the error table stored with every network (the built-in problems' VP schedule
# runs from sigma~ = 151 at t = 1 to 0.0105 at t = 1e-3)
EVALUATION_SIGMAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0)
_EVALUATION_SAMPLES = 4096
_EVALUATION_SEED = 12345


def require_positive(config: Any, integers: Sequence[str], reals: Sequence[str]) -> None:
    """Every named field an integer >= 1 (``integers``) or a finite real > 0 (``reals``)."""
    for name in integers:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"parameter {name!r} must be an integer >= 1, got {value!r}")
    for name in reals:
        value = getattr(config, name)
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise InputError(f"parameter {name!r} must be finite and > 0, got {value!r}")


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture of :class:`DenoiserMLP` and the preconditioning's sigma_data (None: measured
    on the training data by :func:`train_network`)."""

    dim: int = 64
    width: int = 256
    blocks: int = 2
    frequencies: int = 16
    sigma_data: float | None = None

    def __post_init__(self) -> None:
        reals = () if self.sigma_data is None else ("sigma_data",)
        require_positive(self, ("dim", "width", "blocks", "frequencies"), reals)


@dataclass(frozen=True)
class TrainingConfig:
    """Adam with a one-cycle learning rate; fresh samples of the teacher at every step."""

    steps: int = 16000
    batch: int = 512
    learning_rate: float = 2e-3
    seed: int = 0
    sigma_min: float = 0.004
    sigma_max: float = 300.0
    target: str = "posterior"

    def __post_init__(self) -> None:
        require_positive(self, ("steps", "batch"), ("learning_rate", "sigma_min", "sigma_max"))
        check_seed(self.seed)
        if not self.sigma_min < self.sigma_max:
            raise InputError(
                "parameters 'sigma_min', 'sigma_max' must be finite with 0 < sigma_min < "
                f"sigma_max, got {self.sigma_min!r}, {self.sigma_max!r}"
            )
        if self.target not in TARGETS:
            raise InputError(
                f"parameter 'target' must be one of {', '.join(TARGETS)}, got {self.target!r}"
            )


class DenoiserMLP(nn.Module):
    """F(x_in, c_noise) of the EDM preconditioning: a residual SiLU MLP on (batch, dim) inputs."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        width, features = config.width, 2 * config.frequencies
        # frequencies 1 ... 64 on a geometric grid; c_noise = ln(s)/4 spans about -1.4 ... 1.4
        frequencies = torch.exp(torch.linspace(0.0, math.log(64.0), config.frequencies))
        self.register_buffer("frequencies", frequencies)
        self.inp = nn.Linear(config.dim + features, width)
        self.embed = nn.ModuleList(nn.Linear(features, width) for _ in range(config.blocks))
        self.first = nn.ModuleList(nn.Linear(width, width) for _ in range(config.blocks))
        self.second = nn.ModuleList(nn.Linear(width, width) for _ in range(config.blocks))
        self.out = nn.Linear(width, config.dim)

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        angle = c_noise * self.frequencies
        features = torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)
        h = self.inp(torch.cat([x_in, features], dim=1))
        for first, second, embed in zip(self.first, self.second, self.embed, strict=True):
            h = h + second(nn.functional.silu(first(nn.functional.silu(h)) + embed(features)))
        return self.out(nn.functional.silu(h))


def edm_preconditioning(
    s: torch.Tensor, sigma_data: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """c_skip, c_out, c_in, c_noise of EDM (Karras et al. 2022, Table 1) for (batch, 1) sigmas."""
    total = s * s + sigma_data**2
    return sigma_data**2 / total, s * sigma_data / total.sqrt(), total.rsqrt(), s.log() / 4


class ModuleDenoiser(Denoiser):
    """A denoiser around a trained torch module (``self.module``), evaluated where the module's
    parameters are: their device and dtype are the denoiser's (the MLP here, the U-Net of
    :mod:`phiforge.runtime.unet`)."""

    module: nn.Module

    def _weight(self) -> torch.Tensor:
        return next(self.module.parameters())

    def _placement(self) -> tuple[torch.device, torch.dtype]:
        weight = self._weight()
        return weight.device, weight.dtype

    def to(self, device=None, dtype=None):
        # a copy of the module: builtin_denoiser shallow-copies the shared built-in and moves
        # the copy, which must leave the original where it was
        self.module = copy.deepcopy(self.module).to(device=device, dtype=dtype)
        return self


class NetworkDenoiser(ModuleDenoiser):
    """D(x~, s) = c_skip x~ + c_out F(c_in x~, c_noise) with a trained :class:`DenoiserMLP`.

    Frozen weights (differentiable in x only), evaluated in the dtype of its parameters
    (float64 by default: the float32 weights are exact in float64, so the model is the same
    function, evaluated with less rounding; ``to(dtype=torch.float32)`` gives the network as
    trained)."""

    def __init__(
        self,
        module: DenoiserMLP,
        config: NetworkConfig,
        info: dict[str, Any] | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        self.config = config
        self.module = module.to(dtype=dtype).eval().requires_grad_(False)
        self.dim = config.dim
        self.info = dict(info or {})

    def _denoise(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        dtype = self._weight().dtype
        x_in, s_in = x.to(dtype), s.to(dtype)
        c_skip, c_out, c_in, c_noise = edm_preconditioning(s_in, self.config.sigma_data)
        # the weights are frozen (no gradient); the output is differentiable in x when x
        # requires a gradient (runtime.fitted differentiates solves through the model)
        out = c_skip * x_in + c_out * self.module(c_in * x_in, c_noise)
        return out.to(x.dtype)

    def data_mean(self) -> torch.Tensor:
        """The mean of the distribution the network was trained on (the digits mixture): the
        exact limit of its target at sigma~ = inf, beyond the sigmas it was trained on."""
        from phiforge.runtime.denoisers import builtin_denoiser

        device, dtype = self._placement()
        return builtin_denoiser("gmm").data_mean().to(device=device, dtype=dtype)


def denoising_errors(
    network: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    teacher: Any,
    sigmas: Sequence[float] = EVALUATION_SIGMAS,
    samples: int = _EVALUATION_SAMPLES,
    seed: int = _EVALUATION_SEED,
) -> list[dict[str, float]]:
    """Per noise level s: the RMS of network - exact posterior mean over x~ = x0 + s eps,
    x0 ~ teacher, and the RMS of exact - x0 (the Bayes error no denoiser can beat)."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for sigma in sigmas:
        x0 = teacher.sample_data(samples, generator)
        x = x0 + sigma * torch.randn(x0.shape, dtype=x0.dtype, generator=generator)
        exact = teacher(x, sigma)
        predicted = network(x, sigma).to(exact.dtype)
        rows.append(
            {
                "sigma": float(sigma),
                "network_rms": float((predicted - exact).pow(2).mean().sqrt()),
                "bayes_rms": float((exact - x0).pow(2).mean().sqrt()),
            }
        )
    return rows


def train_network(
    teacher: Any,
    network: NetworkConfig | None = None,
    training: TrainingConfig | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> NetworkDenoiser:
    """Train a :class:`NetworkDenoiser` on fresh samples of ``teacher`` (an object with
    ``sample_data(n, generator)``, ``dim`` and, for ``target='posterior'``, its exact denoiser
    as ``teacher(x~, sigma)``). sigma_data, unless given, is the RMS of 10^5 teacher samples.

    Deterministic for a given seed, torch version and thread count (float32 CPU training)."""
    training = training or TrainingConfig()
    generator = torch.Generator().manual_seed(training.seed)
    network = network or NetworkConfig(dim=teacher.dim)
    if network.dim != teacher.dim:
        raise InputError(f"parameter 'network.dim' must be {teacher.dim}, got {network.dim}")
    if network.sigma_data is None:
        rms = float(teacher.sample_data(100_000, generator).pow(2).mean().sqrt())
        network = dataclasses.replace(network, sigma_data=rms)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(training.seed)
        module = DenoiserMLP(network)
    optimiser = torch.optim.Adam(module.parameters(), lr=training.learning_rate / 2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=training.learning_rate, total_steps=training.steps, pct_start=0.05
    )
    low, high = math.log(training.sigma_min), math.log(training.sigma_max)
    started, window, last_mean = time.perf_counter(), [], math.nan
    for step in range(training.steps):
        x0 = teacher.sample_data(training.batch, generator)
        u = torch.rand(training.batch, 1, dtype=torch.float64, generator=generator)
        s = torch.exp(low + (high - low) * u)
        x = x0 + s * torch.randn(x0.shape, dtype=x0.dtype, generator=generator)
        target = x0 if training.target == "data" else teacher(x, s)
        x, s, target = x.float(), s.float(), target.float()
        c_skip, c_out, c_in, c_noise = edm_preconditioning(s, network.sigma_data)
        loss = (module(c_in * x, c_noise) - (target - c_skip * x) / c_out).pow(2).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        window.append(float(loss.detach()))
        if (step + 1) % max(1, training.steps // 20) == 0:  # means over twentieths of the run
            last_mean, window = sum(window) / len(window), []
            if progress is not None:
                progress(step + 1, last_mean)
    info = {
        "training": asdict(training),
        "final_loss": sum(window) / len(window) if window else last_mean,
        "seconds": round(time.perf_counter() - started, 1),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    return NetworkDenoiser(module, network, info)


def save_network(
    denoiser: NetworkDenoiser,
    directory: str | Path,
    name: str,
    teacher_name: str,
    errors: list[dict[str, float]],
) -> tuple[Path, Path]:
    """Write ``NAME.bin`` and ``NAME.json`` (see the module docstring); returns both paths."""
    arrays = module_arrays(denoiser.module)
    document = {
        "format": FORMAT_VERSION,
        "name": name,
        "teacher": teacher_name,
        "architecture": asdict(denoiser.config),
        "info": denoiser.info,
        "denoising_errors": errors,
    }
    return write_tensors(directory, name, document, arrays, element="<f4")


def load_network(json_path: str | Path, dtype: torch.dtype = torch.float64) -> NetworkDenoiser:
    """Read a network written by :func:`save_network`, refusing edited files (hash mismatch)."""
    manifest, arrays = read_tensors(
        json_path,
        "network manifest",
        FORMAT_VERSION,
        element="<f4",
        required=("architecture", "info", "denoising_errors"),
        model="mlp",
    )
    config = NetworkConfig(**manifest["architecture"])
    module = DenoiserMLP(config)
    module.load_state_dict({key: torch.from_numpy(value) for key, value in arrays.items()})
    info = dict(manifest["info"], denoising_errors=manifest["denoising_errors"])
    return NetworkDenoiser(module, config, info, dtype=dtype)


@functools.cache
def builtin_network() -> NetworkDenoiser:
    """The shipped MLP trained on the built-in digits mixture (``phiforge network train``)."""
    return load_network(weights_dir() / f"{BUILTIN_NETWORK}.json")
