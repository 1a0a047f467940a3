"""A convolutional image denoiser: a small U-Net with EDM preconditioning, trained here on image
patches that ship with packages (:mod:`phiforge.runtime.images`), and its weights file.

Preconditioning and loss follow Karras et al. 2022 ("Elucidating the Design Space of
Diffusion-Based Generative Models", Table 1, EDM column) in the variance-exploding variables
x~ = x0 + s eps:

    D(x~, s) = c_skip(s) x~ + c_out(s) F(c_in(s) x~, c_noise(s)),
    c_skip = sd^2/(s^2 + sd^2), c_out = s sd/sqrt(s^2 + sd^2), c_in = 1/sqrt(s^2 + sd^2),
    c_noise = ln(s)/4, sd = 0.5,

trained on E ||F(c_in x~, c_noise) - (x0 - c_skip x~)/c_out||^2 (EDM's loss with its weight
lambda = 1/c_out^2) with ln s ~ N(P_mean, P_std^2) (EDM: -1.2, 1.2), Adam with a one-cycle
learning rate, and an exponential moving average of the weights (the shipped ones).

F (:class:`UNet`): a 3x3 stem, per resolution one residual block (GroupNorm, SiLU, 3x3 conv,
the noise embedding added per channel, GroupNorm, SiLU, 3x3 conv) and, at the listed
resolutions, single-head self-attention; strided convolutions down, nearest upsampling and a
conv up, skip connections joined by concatenation, a zero-initialised read-out. Every
nonlinearity is smooth (SiLU, softmax), so the sampling ODE is smooth and solvers show their
orders. The noise level enters through Fourier features sin/cos(f_j c_noise) and a two-layer MLP.

Weights file: ``NAME.bin`` (float16 tensors, little-endian, in the manifest's order) and
``NAME.json`` (architecture, training recipe and data, tensor table, SHA-256 of the .bin, loss
summary, measured denoising errors, content hash); loaded as float32.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from phiforge.runtime.checks import check_integer, check_seed
from phiforge.runtime.errors import InputError
from phiforge.runtime.manifest import module_arrays, read_tensors, weights_dir, write_tensors
from phiforge.runtime.network import ModuleDenoiser, edm_preconditioning, require_positive

__all__ = [
    "BUILTIN_UNET",
    "UNet",
    "UNetConfig",
    "UNetDenoiser",
    "UNetTraining",
    "builtin_unet",
    "load_unet",
    "save_unet",
    "train_unet",
    "unet_errors",
]

FORMAT_VERSION = 1
BUILTIN_UNET = "patches-unet"
EVALUATION_SIGMAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0)


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`UNet` (images ``channels`` x ``size`` x ``size``)."""

    size: int = 32
    channels: int = 3
    base: int = 32
    mults: tuple[int, ...] = (1, 2, 4)
    attention: tuple[int, ...] = (8,)  # resolutions with self-attention
    embedding: int = 128
    frequencies: int = 16
    groups: int = 8
    sigma_data: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "mults", tuple(self.mults))
        object.__setattr__(self, "attention", tuple(self.attention))
        require_positive(
            self,
            ("size", "channels", "base", "embedding", "frequencies", "groups"),
            ("sigma_data",),
        )
        if not self.mults or self.size % 2 ** (len(self.mults) - 1):
            raise InputError(
                f"parameter 'size' ({self.size}) must be divisible by 2^(levels - 1) = "
                f"{2 ** (len(self.mults) - 1)}"
            )
        if any((self.base * m) % self.groups for m in self.mults):
            raise InputError("parameter 'groups' must divide every level's channel count")


@dataclass(frozen=True)
class UNetTraining:
    """EDM training on fresh random crops of the training pictures at every step (Adam, a
    linear warm-up over 5 % of the steps, then a cosine decay to 5 % of the rate)."""

    steps: int = 4000
    batch: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    p_mean: float = -1.2
    p_std: float = 1.2
    ema: float = 0.999

    def __post_init__(self) -> None:
        require_positive(self, ("steps", "batch"), ("learning_rate", "p_std"))
        check_seed(self.seed)
        if not 0 <= self.ema < 1:
            raise InputError(f"parameter 'ema' must lie in [0, 1), got {self.ema!r}")


def _fourier(c_noise: torch.Tensor, frequencies: torch.Tensor) -> torch.Tensor:
    angle = c_noise * frequencies
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)


class _ResBlock(nn.Module):
    def __init__(self, inp: int, out: int, embedding: int, groups: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, inp), nn.Conv2d(inp, out, 3, padding=1)
        self.emb = nn.Linear(embedding, out)
        self.norm2, self.conv2 = nn.GroupNorm(groups, out), nn.Conv2d(out, out, 3, padding=1)
        self.skip = nn.Conv2d(inp, out, 1) if inp != out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(nn.functional.silu(self.norm2(h)))
        return self.skip(x) + h


class _Attention(nn.Module):
    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        weights = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(c), dim=-1)  # (b, hw, hw)
        out = (v @ weights.transpose(1, 2)).reshape(b, c, h, w)
        return x + self.proj(out)


class UNet(nn.Module):
    """F(c_in x~, c_noise) of the EDM preconditioning on (batch, channels, size, size)."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        frequencies = torch.exp(torch.linspace(0.0, math.log(64.0), config.frequencies))
        self.register_buffer("frequencies", frequencies)
        e, g = config.embedding, config.groups
        self.embed = nn.Sequential(
            nn.Linear(2 * config.frequencies, e), nn.SiLU(), nn.Linear(e, e), nn.SiLU()
        )
        widths = [config.base * m for m in config.mults]
        resolutions = [config.size // 2**i for i in range(len(widths))]
        self.stem = nn.Conv2d(config.channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.down_attention = nn.ModuleList()
        self.downsample = nn.ModuleList()
        previous = widths[0]
        for level, (width, resolution) in enumerate(zip(widths, resolutions, strict=True)):
            self.down.append(_ResBlock(previous, width, e, g))
            self.down_attention.append(
                _Attention(width, g) if resolution in config.attention else nn.Identity()
            )
            last = level == len(widths) - 1
            self.downsample.append(
                nn.Identity() if last else nn.Conv2d(width, width, 3, stride=2, padding=1)
            )
            previous = width
        self.middle1 = _ResBlock(previous, previous, e, g)
        self.middle_attention = _Attention(previous, g)
        self.middle2 = _ResBlock(previous, previous, e, g)
        self.up = nn.ModuleList()
        self.up_attention = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(len(widths))):
            width = widths[level]
            self.up.append(_ResBlock(previous + width, width, e, g))
            self.up_attention.append(
                _Attention(width, g) if resolutions[level] in config.attention else nn.Identity()
            )
            self.upsample.append(
                nn.Conv2d(width, widths[level - 1], 3, padding=1) if level > 0 else nn.Identity()
            )
            previous = widths[level - 1] if level > 0 else width
        self.out_norm = nn.GroupNorm(g, widths[0])
        self.out = nn.Conv2d(widths[0], config.channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        emb = self.embed(_fourier(c_noise.reshape(-1, 1), self.frequencies))
        h = self.stem(x_in)
        skips = []
        for block, attention, down in zip(
            self.down, self.down_attention, self.downsample, strict=True
        ):
            h = attention(block(h, emb))
            skips.append(h)
            h = down(h)
        h = self.middle2(self.middle_attention(self.middle1(h, emb)), emb)
        for block, attention, up in zip(self.up, self.up_attention, self.upsample, strict=True):
            h = attention(block(torch.cat([h, skips.pop()], dim=1), emb))
            if not isinstance(up, nn.Identity):
                h = up(nn.functional.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(nn.functional.silu(self.out_norm(h)))


class UNetDenoiser(ModuleDenoiser):
    """D(x~, s) = c_skip x~ + c_out F(c_in x~, c_noise) with a trained :class:`UNet`, on
    flattened images of ``channels * size * size`` values (``image_shape`` gives the shape).
    Evaluated in the dtype of its parameters (float32 as trained; ``to(dtype=...)``)."""

    def __init__(self, module: UNet, info: dict[str, Any] | None = None) -> None:
        self.module = module.eval().requires_grad_(False)
        config = module.config
        self.config = config
        self.dim = config.channels * config.size * config.size
        self.image_shape = (config.channels, config.size, config.size)
        self.info = dict(info or {})
        mean = self.info.get("data_mean", [0.0] * config.channels)
        self._mean = torch.tensor(mean, dtype=torch.float32)

    def _denoise(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        dtype = self._weight().dtype
        images, s_in = x.to(dtype).reshape(-1, *self.image_shape), s.to(dtype)
        c_skip, c_out, c_in, c_noise = (
            c.reshape(-1, 1, 1, 1) for c in edm_preconditioning(s_in, self.config.sigma_data)
        )
        out = c_skip * images + c_out * self.module(c_in * images, c_noise.reshape(-1, 1))
        return out.reshape(x.shape[0], -1).to(x.dtype)

    def data_mean(self) -> torch.Tensor:
        """The training patches' per-channel mean at every pixel (random crops with flips make
        the mean the same at every position): the posterior mean's limit at sigma~ = inf."""
        per_pixel = self._mean.to(*self._placement())[:, None]
        return per_pixel.expand(-1, self.config.size**2).reshape(-1)


def _patch_batch(batch: int, seed: int, step: int, size: int) -> torch.Tensor:
    from phiforge.runtime.images import image_patches

    return image_patches("train", batch, size, seed=seed * 1_000_003 + step)


def train_unet(
    config: UNetConfig | None = None,
    training: UNetTraining | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> UNetDenoiser:
    """Train a :class:`UNetDenoiser` with EDM's loss on fresh crops of the training pictures
    (:func:`phiforge.runtime.images.image_patches`, split ``train``); returns the moving
    average of the weights. Deterministic for a seed, torch version and thread count."""
    config = config or UNetConfig()
    training = training or UNetTraining()
    generator = torch.Generator().manual_seed(training.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(training.seed)
        module = UNet(config)
    average = copy.deepcopy(module).requires_grad_(False)
    optimiser = torch.optim.Adam(module.parameters(), lr=training.learning_rate)
    warmup = max(1, training.steps // 20)

    def rate(step: int) -> float:  # linear warm-up over 5 %, then cosine down to 5 %
        if step < warmup:
            return (step + 1) / warmup
        done = (step - warmup) / max(1, training.steps - warmup)
        return 0.05 + 0.475 * (1 + math.cos(math.pi * min(1.0, done)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, rate)
    started, window, curve = time.perf_counter(), [], []
    mean = torch.zeros(config.channels, dtype=torch.float64)
    for step in range(training.steps):
        x0 = _patch_batch(training.batch, training.seed, step, config.size)
        mean += x0.double().mean(dim=(0, 2, 3)) / training.steps
        ln_s = training.p_mean + training.p_std * torch.randn(
            training.batch, 1, generator=generator
        )
        s = ln_s.exp()
        x = x0 + s.reshape(-1, 1, 1, 1) * torch.randn(x0.shape, generator=generator)
        c_skip, c_out, c_in, c_noise = (
            c.reshape(-1, 1, 1, 1) for c in edm_preconditioning(s, config.sigma_data)
        )
        loss = (module(c_in * x, c_noise.reshape(-1, 1)) - (x0 - c_skip * x) / c_out).pow(2)
        loss = loss.mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        with torch.no_grad():
            decay = min(training.ema, (1 + step) / (10 + step))
            for kept, new in zip(average.parameters(), module.parameters(), strict=True):
                kept.mul_(decay).add_(new, alpha=1 - decay)
        window.append(float(loss.detach()))
        if (step + 1) % max(1, training.steps // 20) == 0:  # means over twentieths of the run
            curve.append(round(sum(window) / len(window), 5))
            window = []
            if progress is not None:
                progress(step + 1, curve[-1])
    info = {
        "training": asdict(training),
        "data": {
            "recipe": "runtime.images.image_patches('train', batch, size, seed*1000003 + step)",
            "pictures": list(_train_pictures()),
            "patches_seen": training.steps * training.batch,
        },
        "loss_curve": curve,
        "final_loss": curve[-1] if curve else None,
        "data_mean": [round(float(v), 6) for v in mean],
        "seconds": round(time.perf_counter() - started, 1),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": "cpu",
    }
    average = average.half().float()  # the weights as shipped (float16), measured as such
    return UNetDenoiser(average, info)


def _train_pictures() -> tuple[str, ...]:
    from phiforge.runtime.images import TRAIN_IMAGES

    return TRAIN_IMAGES


def unet_errors(
    denoiser: UNetDenoiser,
    sigmas: Sequence[float] = EVALUATION_SIGMAS,
    samples: int = 256,
    reference_patches: int = 4096,
    seed: int = 12345,
) -> list[dict[str, float]]:
    """Per noise level s, on x~ = x0 + s eps: RMS(network - x0) and RMS(empirical - x0) for
    held-out patches x0 (the empirical denoiser of ``reference_patches`` training patches, the
    exact posterior mean of that finite set, which memorises at small s), and RMS(network -
    empirical) for training patches x0 (how far the network is from that exact denoiser)."""
    from phiforge.runtime.denoisers import EmpiricalDenoiser
    from phiforge.runtime.images import image_patches

    samples = check_integer("samples", samples, 1, 1_000_000)
    reference_patches = check_integer("reference_patches", reference_patches, 1, 1_000_000)
    seed = check_seed(seed)
    size = denoiser.config.size
    empirical = EmpiricalDenoiser(
        image_patches("train", reference_patches, size, seed + 1).flatten(1)
    )
    held = image_patches("held-out", samples, size, seed + 2).flatten(1).double()
    train = image_patches("train", samples, size, seed + 3).flatten(1).double()
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for sigma in sigmas:
        noisy_held = held + sigma * torch.randn(held.shape, dtype=held.dtype, generator=generator)
        noisy_train = train + sigma * torch.randn(
            train.shape, dtype=train.dtype, generator=generator
        )
        rows.append(
            {
                "sigma": float(sigma),
                "network_rms_held_out": _rms(denoiser(noisy_held, sigma) - held),
                "empirical_rms_held_out": _rms(empirical(noisy_held, sigma) - held),
                "network_vs_empirical_rms_train": _rms(
                    denoiser(noisy_train, sigma) - empirical(noisy_train, sigma)
                ),
            }
        )
    return rows


def _rms(difference: torch.Tensor) -> float:
    return float(difference.double().pow(2).mean().sqrt())


def save_unet(
    denoiser: UNetDenoiser, directory: str | Path, name: str, errors: list[dict[str, float]]
) -> tuple[Path, Path]:
    """Write ``NAME.bin`` (float16) and ``NAME.json`` (see the module docstring)."""
    arrays = module_arrays(denoiser.module)
    document = {
        "format": FORMAT_VERSION,
        "model": "unet",
        "name": name,
        "architecture": asdict(denoiser.config),
        "info": denoiser.info,
        "denoising_errors": errors,
    }
    return write_tensors(directory, name, document, arrays, element="<f2")


def load_unet(json_path: str | Path) -> UNetDenoiser:
    """Read a U-Net written by :func:`save_unet` (as float32), refusing edited files (hash
    mismatch), files of another kind and weights of another architecture."""
    manifest, arrays = read_tensors(
        json_path,
        "U-Net manifest",
        FORMAT_VERSION,
        element="<f2",
        required=("model", "architecture", "info", "denoising_errors"),
        model="unet",
    )
    try:
        config = UNetConfig(**manifest["architecture"])
        module = UNet(config)
        module.load_state_dict(
            {key: torch.from_numpy(value).float() for key, value in arrays.items()}
        )
    except (TypeError, RuntimeError) as error:
        raise InputError(
            f"{json_path}: the weights do not fit the architecture it names ({error})"
        ) from None
    info = dict(manifest["info"], denoising_errors=manifest["denoising_errors"])
    return UNetDenoiser(module, info)


@functools.cache
def builtin_unet() -> UNetDenoiser:
    """The shipped U-Net trained on the patches (``phiforge network train --model unet``)."""
    return load_unet(weights_dir() / f"{BUILTIN_UNET}.json")
