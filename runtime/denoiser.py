"""The common ground of the built-in denoisers: shapes, dtypes and devices.

A denoiser is ``D(x~, sigma~)``, the posterior mean of x0 given x~ = x0 + sigma~ eps (EDM's and
k-diffusion's convention); :class:`Denoiser` flattens a batch to (batch, dim), follows the
input's dtype and device, and leaves the mathematics to ``_denoise`` (the exact denoisers of
:mod:`phiforge.runtime.denoisers`, the trained one of :mod:`phiforge.runtime.network`).
"""

from __future__ import annotations

import torch

from phiforge.runtime.checks import check_real
from phiforge.runtime.errors import InputError

__all__ = ["Denoiser"]


def _sigma_column(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """sigma~ as a (batch, 1) tensor (a number, or a real tensor of one value or one per sample).
    A number is checked (>= 0, not NaN); a tensor's values are not read (no host read per call),
    only its dtype and size."""
    if isinstance(sigma, torch.Tensor):
        if sigma.is_complex() or sigma.dtype == torch.bool or sigma.numel() not in (1, x.shape[0]):
            raise InputError(
                f"parameter 'sigma' must be a real tensor of 1 or {x.shape[0]} values (one per "
                f"sample), got dtype {sigma.dtype} and shape {tuple(sigma.shape)}"
            )
    else:
        value = check_real("sigma", sigma)
        if not value >= 0:
            raise InputError(f"parameter 'sigma' must be a noise level >= 0, got {sigma!r}")
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return sigma.reshape(-1, 1).expand(x.shape[0], 1)


class Denoiser:
    """Common shape handling: inputs (batch, *shape) flattened to (batch, dim).

    A denoiser follows its input: x of any floating dtype (float64, float32, float16, bfloat16)
    on any device is evaluated in the precision of the denoiser's parameters (float64 for the
    exact ones) on x's device (the parameters are copied there once and kept), and the result
    comes back in x's dtype."""

    dim: int
    image_shape: tuple[int, ...] | None = None

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
            kind = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(
                "parameter 'x' must be a floating-point tensor (float64, float32, float16 or "
                f"bfloat16), got {kind}"
            )
        shape = x.shape
        flat = x.reshape(shape[0], -1)
        if flat.shape[1] != self.dim:
            raise InputError(
                f"parameter 'x' must have {self.dim} values per sample, got {flat.shape[1]}"
            )
        device, dtype = self._placement()
        target = self if flat.device == device else self._on(flat.device)
        flat = flat.to(dtype)
        s = _sigma_column(sigma, flat)
        # sigma~ = inf (zero SNR: the flow schedule's t = 1, a zero-terminal-SNR start): the
        # posterior mean's exact limit, the data mean, whatever x~ is (no host read: where)
        infinite = torch.isinf(s)
        out = target._denoise(flat, torch.where(infinite, torch.ones_like(s), s))
        out = torch.where(infinite, target.data_mean().to(out.dtype), out)
        return out.reshape(shape).to(x.dtype)

    def _denoise(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def data_mean(self) -> torch.Tensor:
        """E[x0], shape (dim,): lim D(x~, s) as s -> inf, for x~ = x0 + s eps (the posterior
        mean's correction is O(|x~| / s^2) = O(1 / s))."""
        raise NotImplementedError

    def _placement(self) -> tuple[torch.device, torch.dtype]:
        """The device and dtype of the parameters."""
        for value in vars(self).values():
            if isinstance(value, torch.Tensor):
                return value.device, value.dtype
        raise TypeError(f"{type(self).__name__} holds no tensors")

    def _on(self, device: torch.device) -> Denoiser:
        """A copy on ``device``, made once per device."""
        if device == self._placement()[0]:
            return self
        copies = self.__dict__.setdefault("_copies", {})
        if device not in copies:
            import copy

            moved = copy.copy(self)
            moved.__dict__["_copies"] = {}
            copies[device] = moved.to(device=device)
        return copies[device]

    def to(self, device=None, dtype=None):
        for name, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                setattr(self, name, value.to(device=device, dtype=dtype))
        return self
