"""The one door to a user's model: any parameterisation in, the canonical prediction out.

A diffusion model predicts one of (spec-dpmsolver-res §1.2, Salimans & Ho 2022 for v, Lipman
et al. 2022 / Liu et al. 2022 for flow velocity, Karras et al. 2022 for the EDM denoiser):

- ``noise``: eps;  ``data``: x0;  ``v``: v = alpha eps - sigma x0;
- ``score``: grad log p = -eps/sigma;
- ``flow``: the velocity dx/dt = alpha' x0 + sigma' eps of the forward path;
- ``edm``: a denoiser D(x~, sigma~) of the variance-exploding variable x~ = x/alpha at
  sigma~ = sigma/alpha (k-diffusion's and EDM's convention), returning x0. At zero SNR
  (alpha = 0: the flow schedule's t = 1) it is called with sigma~ = inf and x~ = x/sigma (the
  finite limit of x~/sigma~); an exact posterior mean returns the data mean there, which the
  built-in denoisers do.

With x = alpha x0 + sigma eps, each output is affine in (x0, eps) at fixed x and t, so every type
converts exactly to the data prediction x0 and the noise prediction eps. Classifier-free guidance
u + s (c - u) commutes with these affine maps, so it is applied to the data prediction.
Dynamic thresholding (Imagen; spec §4.4) acts on x0 inside every evaluation.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from phiforge.runtime.checks import check_mapping
from phiforge.runtime.errors import InputError, ModelOutputError
from phiforge.runtime.schedules import NoiseSchedule

__all__ = ["OUTPUT_TYPES", "CanonicalModel", "Guidance", "check_model_call", "dynamic_threshold"]

OUTPUT_TYPES = ("noise", "data", "v", "score", "flow", "edm")
THRESHOLDING = ("dynamic", "static")


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance: D = D_uncond + scale (D_cond - D_uncond).

    The conditional call uses the sampler's ``model_kwargs``, the unconditional one
    ``uncond_kwargs``; one guided evaluation counts as one NFE (the usual convention).
    """

    scale: float
    uncond_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.scale, bool) or not (
            isinstance(self.scale, int | float) and math.isfinite(self.scale)
        ):
            raise InputError(
                f"parameter 'guidance.scale' must be a finite number, got {self.scale!r}"
            )
        object.__setattr__(self, "scale", float(self.scale))  # a huge int would overflow torch
        check_mapping("guidance.uncond_kwargs", self.uncond_kwargs, "the model's keyword arguments")
        if self.uncond_kwargs is None:  # no keywords for the unconditional call
            object.__setattr__(self, "uncond_kwargs", {})


def dynamic_threshold(
    x0: torch.Tensor, ratio: float = 0.995, max_value: float = 1.0
) -> torch.Tensor:
    """Imagen's dynamic thresholding: s = max(quantile_p |x0|, max_value) per sample,
    x0 <- clamp(x0, -s, s)/s (DPM-Solver's ``dynamic_thresholding_ratio`` and
    ``thresholding_max_val``)."""
    flat = x0.reshape(x0.shape[0], -1).abs()
    s = torch.quantile(flat, ratio, dim=1).clamp(min=max_value)
    s = s.reshape((-1,) + (1,) * (x0.ndim - 1))
    return torch.maximum(torch.minimum(x0, s), -s) / s


INTEGER_OUTPUTS = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def check_model_call(
    model: Callable[..., Any],
    kwargs: Mapping[str, Any] | None,
    form: str = "model(x, t, **model_kwargs)",
) -> None:
    """Refuse a model whose signature cannot take ``model(x, t, **kwargs)`` (where Python can
    read its signature), before the run rather than from inside it."""
    try:
        signature = inspect.signature(model)
    except (TypeError, ValueError):  # builtins and C extensions: nothing to read
        return
    try:
        signature.bind(None, None, **dict(kwargs or {}))
    except TypeError as error:
        raise InputError(
            f"parameter 'model' must be callable as {form} with keywords "
            f"{sorted(kwargs or {})}; its signature {signature} does not take "
            f"that ({error})"
        ) from None


class CanonicalModel:
    """``model(x, t_model, **kwargs)`` wrapped to give x0 and eps at a log-SNR ``lam``.

    ``t_model`` is a tensor of shape (batch,) holding the schedule's model time (for ``edm``
    outputs: sigma~). Every evaluation is counted in ``nfe``; the executor checks its values for
    NaN/inf (:mod:`phiforge.runtime.engine`).
    """

    def __init__(
        self,
        model: Callable[..., torch.Tensor],
        schedule: NoiseSchedule,
        output: str = "noise",
        *,
        model_kwargs: Mapping[str, Any] | None = None,
        guidance: Guidance | None = None,
        thresholding: str | Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if not callable(model):
            raise InputError("parameter 'model' must be callable as model(x, t, **kwargs)")
        check_model_call(model, model_kwargs)
        if output not in OUTPUT_TYPES:
            raise InputError(
                f"parameter 'output' must be one of {', '.join(OUTPUT_TYPES)}, got {output!r}"
            )
        if (
            thresholding is not None
            and not callable(thresholding)
            and thresholding not in THRESHOLDING
        ):
            raise InputError(
                f"parameter 'thresholding' must be one of {', '.join(THRESHOLDING)}, a callable "
                f"or None, got {thresholding!r}"
            )
        self.model = model
        self.schedule = schedule
        self.output = output
        self.model_kwargs = dict(model_kwargs or {})
        self.guidance = guidance
        self.thresholding = thresholding
        self.nfe = 0
        self._columns: dict[Any, torch.Tensor] = {}  # per-sample grids' columns, by value

    # --- evaluation ------------------------------------------------------------------
    def _per_sample(self, values: list[float], x: torch.Tensor) -> torch.Tensor:
        """One value per sample as a column broadcasting against x, made once per run and
        placement (so a captured run's replays copy nothing to the device)."""
        key = (tuple(values), x.dtype, x.device, x.ndim)
        column = self._columns.get(key)
        if column is None:
            column = torch.tensor(values, dtype=x.dtype)
            if x.device.type != "cpu":
                column = column.pin_memory().to(x.device, non_blocking=True)
            column = self._columns[key] = column.reshape(-1, *([1] * (x.ndim - 1)))
        return column

    def _alpha_sigma(self, lam: float | tuple[float, ...], x: torch.Tensor):
        """alpha and sigma at lam: floats, or per-sample columns for a tuple of log-SNRs."""
        if not isinstance(lam, tuple):
            return self.schedule.alpha_sigma_of_lam(lam)
        pairs = [self.schedule.alpha_sigma_of_lam(value) for value in lam]
        return (
            self._per_sample([a for a, _ in pairs], x),
            self._per_sample([s for _, s in pairs], x),
        )

    def _model_time(self, lam: float | tuple[float, ...], x: torch.Tensor) -> torch.Tensor:
        """The model's time input, shape (batch,): sigma~ for ``edm`` outputs, else the
        schedule's model time."""
        lams = lam if isinstance(lam, tuple) else (lam,)
        if self.output == "edm":
            times = [math.exp(-value) for value in lams]
        else:
            times = [
                float(self.schedule.model_time(float(self.schedule.t_of_lam(v)))) for v in lams
            ]
        if not isinstance(lam, tuple):
            return torch.full((x.shape[0],), times[0], dtype=x.dtype, device=x.device)
        return self._per_sample(times, x).reshape(-1)

    def _call(
        self, x: torch.Tensor, lam: float | tuple[float, ...], kwargs: Mapping[str, Any]
    ) -> torch.Tensor:
        t_in = self._model_time(lam, x)
        if self.output == "edm":
            alpha, sigma = self._alpha_sigma(lam, x)
            if isinstance(alpha, float):
                if alpha == 1.0:  # VE, EDM
                    scaled = x
                elif alpha == 0.0:  # zero SNR: x~ = x/alpha is undefined, sigma~ = inf
                    scaled = x / sigma
                else:
                    scaled = x / alpha
            else:  # per-sample columns, some rows possibly at zero SNR
                scaled = torch.where(alpha == 0, x / sigma, x / alpha)
            return self.model(scaled, t_in, **kwargs)
        return self.model(x, t_in, **kwargs)

    def _to_data(
        self, raw: torch.Tensor, x: torch.Tensor, lam: float | tuple[float, ...]
    ) -> torch.Tensor:
        if not isinstance(raw, torch.Tensor) or not (
            raw.is_floating_point() or raw.dtype in INTEGER_OUTPUTS
        ):
            kind = raw.dtype if isinstance(raw, torch.Tensor) else type(raw).__name__
            raise ModelOutputError(
                f"the model returned {kind} for an input of shape {tuple(x.shape)}; its output "
                "must be a real tensor of the input's shape"
            )
        if raw.shape != x.shape:
            raise ModelOutputError(
                f"the model returned shape {tuple(raw.shape)} for an input of shape "
                f"{tuple(x.shape)}; its output must have the shape of its input"
            )
        raw = raw.to(x.dtype)
        if self.output in ("data", "edm"):
            return raw
        alpha, sigma = self._alpha_sigma(lam, x)
        at_zero_snr = lam == -math.inf or (isinstance(lam, tuple) and -math.inf in lam)
        if self.output in ("noise", "score") and at_zero_snr:
            raise InputError(
                f"a {self.output}-prediction model determines no data prediction at zero SNR "
                "(alpha = 0); start sampling at a time with alpha > 0 ('t_start' or 'sigmas')"
            )
        if self.output == "noise":
            return (x - sigma * raw) / alpha
        if self.output == "score":  # eps = -sigma * score
            return (x + sigma * sigma * raw) / alpha
        if self.output == "v":  # v = alpha eps - sigma x0
            return (alpha * x - sigma * raw) / (alpha * alpha + sigma * sigma)
        if isinstance(lam, tuple):  # flow: u = alpha' x0 + sigma' eps, per sample
            rows = [self._flow_row(value) for value in lam]
            d_sigma = self._per_sample([r[0] for r in rows], x)
            denominator = self._per_sample([r[1] for r in rows], x)
        else:
            d_sigma, denominator = self._flow_row(lam)
        return (d_sigma * x - sigma * raw) / denominator

    def _flow_row(self, lam: float) -> tuple[float, float]:
        """sigma' and alpha sigma' - sigma alpha' at lam (flow-velocity outputs)."""
        alpha, sigma = self.schedule.alpha_sigma_of_lam(lam)
        d_alpha, d_sigma = self.schedule.alpha_sigma_derivatives(float(self.schedule.t_of_lam(lam)))
        return d_sigma, alpha * d_sigma - sigma * d_alpha

    def data(self, x: torch.Tensor, lam: float | tuple[float, ...]) -> torch.Tensor:
        """The (guided, thresholded) data prediction x0 at log-SNR lam (a tuple: one log-SNR
        per sample, for per-sample grids)."""
        x0 = self._to_data(self._call(x, lam, self.model_kwargs), x, lam)
        if self.guidance is not None:
            kwargs = {**self.model_kwargs, **self.guidance.uncond_kwargs}
            uncond = self._to_data(self._call(x, lam, kwargs), x, lam)
            x0 = uncond + self.guidance.scale * (x0 - uncond)
        if self.thresholding == "dynamic":
            x0 = dynamic_threshold(x0)
        elif self.thresholding == "static":
            x0 = x0.clamp(-1.0, 1.0)
        elif callable(self.thresholding):
            x0 = self.thresholding(x0)
        self.nfe += 1
        return x0

    def noise(self, x: torch.Tensor, lam: float) -> torch.Tensor:
        """The noise prediction eps = (x - alpha x0)/sigma at finite lam."""
        alpha, sigma = self.schedule.alpha_sigma_of_lam(lam)
        return (x - alpha * self.data(x, lam)) / sigma
