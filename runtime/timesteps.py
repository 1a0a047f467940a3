"""Step schedules: the grid of log-SNR values a sampler steps through.

A grid is an increasing float64 array of lambda values (sampling goes from noise, small lambda,
to data, large lambda). Its first entry may be -inf (zero SNR, e.g. flow matching at t = 1) and
its last +inf (sigma = 0); the driver treats both ends as exact limits.

Kinds (spec-dpmsolver-res §5.1; Karras et al. 2022 eq. 5 for ``karras``):

- ``logsnr``:    lambda uniform between the end points (DPM-Solver's ``logSNR``);
- ``time``:      t uniform (``time_uniform``);
- ``quadratic``: sqrt(t) uniform (DDIM's quadratic skip, ``time_quadratic``);
- ``karras``:    sigma~^(1/rho) uniform, sigma~ = sigma/alpha = e^-lambda, rho = 7.

User-given grids: :func:`grid_from_sigmas` (descending sigma~ = e^-lambda, as k-diffusion
passes them, ending in 0 or not) and :func:`grid_from_times` (the schedule's own times).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from phiforge.runtime.errors import InputError
from phiforge.runtime.restart import karras_sigmas
from phiforge.runtime.schedules import NoiseSchedule

__all__ = [
    "STEP_SCHEDULES",
    "grid_from_sigmas",
    "grid_from_times",
    "lambda_grid",
    "per_sample_rows",
]

STEP_SCHEDULES = ("logsnr", "time", "quadratic", "karras")


def _check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise InputError(f"parameter 'steps' must be a positive integer, got {steps!r}")
    return int(steps)


def _check_grid(name: str, lambdas: np.ndarray) -> np.ndarray:
    """Strictly increasing, no NaN, infinite only at the ends."""
    if lambdas.ndim != 1 or lambdas.size < 2:
        raise InputError(f"parameter {name!r} must hold at least two points")
    if np.isnan(lambdas).any():
        raise InputError(f"parameter {name!r} contains NaN")
    inner = lambdas[1:-1]
    if not np.isfinite(inner).all() or lambdas[0] == math.inf or lambdas[-1] == -math.inf:
        raise InputError(
            f"parameter {name!r} may be infinite only at its ends (zero SNR first, sigma = 0 last)"
        )
    steps = np.diff(lambdas)
    if not (steps > 0).all():
        index = int(np.argmin(steps > 0))
        raise InputError(
            f"parameter {name!r} must be strictly monotone (noise to data); entries {index} and "
            f"{index + 1} are out of order or coincide"
        )
    return lambdas


def lambda_grid(
    schedule: NoiseSchedule,
    steps: int,
    kind: str = "logsnr",
    *,
    t_start: float | None = None,
    t_end: float | None = None,
    rho: float = 7.0,
) -> np.ndarray:
    """steps + 1 increasing lambda values from t_start (noise) to t_end (data)."""
    steps = _check_steps(steps)
    if kind not in STEP_SCHEDULES:
        raise InputError(
            f"parameter 'step_schedule' must be one of {', '.join(STEP_SCHEDULES)}, got {kind!r}"
        )
    low, high = schedule.time_range
    t_start = schedule.check_time(
        "t_start", schedule.t_start if t_start is None else t_start, low, high
    )
    t_end = schedule.check_time("t_end", schedule.t_end if t_end is None else t_end, low, high)
    if not t_start > t_end:
        raise InputError(f"parameter 't_start' ({t_start}) must be greater than t_end ({t_end})")
    lam_start, lam_end = float(schedule.lam(t_start)), float(schedule.lam(t_end))
    fraction = np.arange(steps + 1, dtype=np.float64) / steps
    if kind == "logsnr":
        if not (math.isfinite(lam_start) and math.isfinite(lam_end)):
            raise InputError(
                f"step schedule 'logsnr' needs finite log-SNR end points; t_start = {t_start} and "
                f"t_end = {t_end} give lambda = {lam_start}, {lam_end} (use 'time' or move the "
                "end points inside the interval)"
            )
        grid = lam_start + fraction * (lam_end - lam_start)
    elif kind == "time":
        grid = schedule.lam(t_start + fraction * (t_end - t_start))
    elif kind == "quadratic":
        root = math.sqrt(t_start) + fraction * (math.sqrt(t_end) - math.sqrt(t_start))
        grid = schedule.lam(root**2)
    else:
        if not (isinstance(rho, int | float) and math.isfinite(rho) and rho > 0):
            raise InputError(f"parameter 'rho' must be a finite positive number, got {rho!r}")
        sigma_max, sigma_min = math.exp(-lam_start), math.exp(-lam_end)
        if not (math.isfinite(sigma_max) and sigma_min > 0):
            raise InputError(
                "step schedule 'karras' needs 0 < sigma < inf at both end points; got sigma~ = "
                f"{sigma_max} at t_start and {sigma_min} at t_end"
            )
        grid = -np.log(karras_sigmas(sigma_max, sigma_min, steps + 1, rho))
    grid = np.asarray(grid, dtype=np.float64)
    grid[0], grid[-1] = lam_start, lam_end
    return _check_grid("step_schedule", grid)


def grid_from_sigmas(sigmas: Sequence[float] | np.ndarray) -> np.ndarray:
    """lambda = -log sigma~ for descending noise levels sigma~ = sigma/alpha (0 gives +inf)."""
    try:
        values = np.asarray([float(s) for s in np.asarray(sigmas, dtype=object).ravel()])
    except (TypeError, ValueError):
        raise InputError("parameter 'sigmas' must be a sequence of numbers") from None
    if np.isnan(values).any() or (values < 0).any():
        raise InputError("parameter 'sigmas' must hold non-negative numbers (no NaN)")
    with np.errstate(divide="ignore"):
        return _check_grid("sigmas", -np.log(values))


def grid_from_times(schedule: NoiseSchedule, times: Sequence[float] | np.ndarray) -> np.ndarray:
    """lambda(t) for descending times of the schedule."""
    try:
        table = np.asarray(times, dtype=object)
        values = np.asarray([float(t) for t in table.ravel()]).reshape(table.shape)
    except (TypeError, ValueError):
        raise InputError("parameter 'timesteps' must be a sequence of numbers") from None
    low, high = schedule.time_range
    if values.ndim != 1 or not np.all((values >= low) & (values <= high)):
        raise InputError(
            f"parameter 'timesteps' must be a 1-D sequence of times in [{low:g}, {high:g}]"
        )
    return _check_grid("timesteps", np.asarray(schedule.lam(values), dtype=np.float64))


def per_sample_rows(
    name: str, value: object, batch: int | None = None
) -> tuple[str, list[list[float]]] | None:
    """A 2-D ``sigmas`` or ``timesteps`` (one row per sample: a per-sample grid) as rows of
    floats, else None (a 1-D grid, or none). The one place that tells a per-sample grid from a
    shared one, for ``sample()``, the k-diffusion functions and the diffusers scheduler; with
    ``batch`` the rows must number one per sample."""
    import torch

    if value is None:
        return None
    if isinstance(value, torch.Tensor | np.ndarray):
        if value.ndim < 2:
            return None
        if value.ndim > 2:
            raise InputError(f"parameter {name!r} must be 1-D, or 2-D with one row per sample")
        rows = [[float(v) for v in row] for row in value.tolist()]
    elif isinstance(value, Sequence) and len(value) and not isinstance(value, str):
        if not any(isinstance(v, Sequence | torch.Tensor | np.ndarray) for v in value):
            return None
        try:
            rows = [[float(v) for v in row] for row in value]  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise InputError(
                f"parameter {name!r} must be 1-D, or 2-D with one row of numbers per sample"
            ) from None
    else:
        return None
    if batch is not None and len(rows) != batch:
        raise InputError(
            f"parameter {name!r}: a per-sample grid needs one row per sample ({batch}), "
            f"got {len(rows)}"
        )
    if len({len(row) for row in rows}) != 1:
        raise InputError(
            f"parameter {name!r}: the rows of a per-sample grid must have one length, got "
            f"{sorted({len(row) for row in rows})}"
        )
    return name, rows
