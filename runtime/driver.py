"""The sampling driver: any model, any noise schedule, any generated method.

The state is moved to the canonical semilinear equation in log-SNR time (DESIGN.md,
spec-dpmsolver-res §1.3): data prediction ``y = x/alpha``, ``dy/dlam = -y + x0(alpha y)``
(L = -1) or noise prediction ``y = x/sigma``, ``dy/dlam = y - eps(sigma y)`` (L = +1), and
stepped with generated modules only (:mod:`phiforge.runtime.stepping`). Coefficients are
float64; the state keeps the dtype asked for.

The ends of the grid may be exact limits: from zero SNR (lambda = -inf, alpha = 0) the first
step is the h -> inf limit of the exponential step, ``x1 = (sigma1/sigma0) x0 + alpha1 x0_hat``;
to sigma = 0 (lambda = +inf) the last step is ``x = x0_hat(x, lam_last)`` (k-diffusion's final
step). Each costs one model evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import torch

from phiforge.runtime.errors import InputError
from phiforge.runtime.models import CanonicalModel, Guidance
from phiforge.runtime.schedules import NoiseSchedule, noise_schedule
from phiforge.runtime.stepping import Step, generated_methods, load_method, plan_steps, run_steps
from phiforge.runtime.timesteps import grid_from_sigmas, grid_from_times, lambda_grid

__all__ = ["ALLOCATIONS", "SampleInfo", "allocate_singlestep", "sample", "sampling_plan"]

ALLOCATIONS = ("greedy", "dpm-solver-fast")


@dataclass
class SampleInfo:
    """What a sampling run did: NFE spent, the grid, and the method of every step."""

    nfe: int
    lambdas: list[float]
    methods: list[str]
    start_limit: bool
    final: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return len(self.lambdas) - 1


def _filler(module: ModuleType, stages: int) -> ModuleType:
    """The generated single-step method with ``stages`` evaluations to spend a remainder on:
    highest scalar stiff order, then the same prediction as ``module``, then by name."""
    candidates = [
        load_method(name)
        for name in generated_methods("singlestep")
        if stages == load_method(name).NFE_PER_STEP
    ]
    if not candidates:
        raise InputError(f"no generated single-step method with {stages} stage(s)")
    return max(
        candidates,
        key=lambda m: (
            m.ORDERS["scalar"]["stiff"],
            m.PREDICTION == module.PREDICTION,
            [-ord(c) for c in m.NAME],
        ),
    )


def allocate_singlestep(
    module: ModuleType, budget: int, allocation: str = "greedy"
) -> list[ModuleType]:
    """The single-step methods of each step for ``budget`` model evaluations.

    ``greedy``: as many steps of ``module`` as fit, the remainder r as one step of an r-stage
    method. ``dpm-solver-fast`` (spec-dpmsolver-res §5.2, for methods of 1-3 stages): order 3
    gives [3]*(K-2)+[2,1], [3]*(K-1)+[1] or [3]*(K-1)+[2] with K = budget//3 + 1; order 2 gives
    [2]*(budget//2) and a final 1 when odd.
    """
    s = int(module.NFE_PER_STEP)
    if allocation not in ALLOCATIONS:
        raise InputError(
            f"parameter 'allocation' must be one of {', '.join(ALLOCATIONS)}, got {allocation!r}"
        )
    if allocation == "greedy" or s == 1:
        orders = [s] * (budget // s) + ([budget % s] if budget % s else [])
    elif s == 2:
        orders = [2] * (budget // 2) + ([1] if budget % 2 else [])
    elif s == 3:
        k = budget // 3 + 1
        orders = {0: [3] * (k - 2) + [2, 1], 1: [3] * (k - 1) + [1], 2: [3] * (k - 1) + [2]}[
            budget % 3
        ]
        orders = [o for o in orders if o > 0]
    else:
        raise InputError(
            f"allocation 'dpm-solver-fast' is defined for methods of 1-3 stages; {module.NAME} "
            f"has {s}"
        )
    return [module if o == s else _filler(module, o) for o in orders]


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InputError(f"parameter {name!r} must be a positive integer, got {value!r}")
    return int(value)


def sampling_plan(
    schedule: NoiseSchedule,
    method: str | ModuleType,
    *,
    nfe: int | None = None,
    steps: int | None = None,
    step_schedule: str = "logsnr",
    t_start: float | None = None,
    t_end: float | None = None,
    rho: float = 7.0,
    sigmas: Sequence[float] | None = None,
    timesteps: Sequence[float] | None = None,
    warmup: str = "lower-order",
    lower_order_final: bool = False,
    final_denoise: bool = False,
    allocation: str = "greedy",
) -> tuple[np.ndarray, list[Step], SampleInfo]:
    """The grid, the method steps and the exact NFE of a run (before any model call)."""
    module = load_method(method)
    given = [
        name
        for name, v in (
            ("nfe", nfe),
            ("steps", steps),
            ("sigmas", sigmas),
            ("timesteps", timesteps),
        )
        if v is not None
    ]
    if len(given) != 1:
        raise InputError(
            "give exactly one of 'nfe', 'steps', 'sigmas' and 'timesteps'"
            + (f" (got {', '.join(given)})" if given else "")
        )
    per_step: list[ModuleType] | None = None
    if sigmas is not None:
        grid = grid_from_sigmas(sigmas)
    elif timesteps is not None:
        grid = grid_from_times(schedule, timesteps)
    else:
        probe = lambda_grid(schedule, 1, "time", t_start=t_start, t_end=t_end)
        limits = int(probe[0] == -math.inf) + int(probe[-1] == math.inf)
        if steps is not None:
            intervals = _check_count("steps", steps)
        else:
            budget = _check_count("nfe", nfe) - limits - int(final_denoise)
            if module.FAMILY == "singlestep":
                if budget < 1 and limits < 2:
                    raise InputError(f"parameter 'nfe' must be at least {nfe - budget + 1}")
                per_step = allocate_singlestep(module, budget, allocation) if budget > 0 else []
                intervals = len(per_step) + limits
            else:
                extra = _warmup_extra(module, warmup)
                intervals = budget - extra + limits
                if intervals < 1 + limits:
                    raise InputError(
                        f"parameter 'nfe' must be at least {nfe - intervals + 1 + limits} for "
                        f"{module.NAME} with warmup {warmup!r}"
                    )
        grid = lambda_grid(
            schedule, intervals, step_schedule, t_start=t_start, t_end=t_end, rho=rho
        )
    start_limit = bool(grid[0] == -math.inf)
    final = "limit" if grid[-1] == math.inf else ("denoise" if final_denoise else None)
    inner = grid[int(start_limit) : len(grid) - int(grid[-1] == math.inf)]
    if len(inner) < 2:
        method_steps: list[Step] = []
    else:
        modules = per_step if per_step is not None else module
        method_steps = plan_steps(
            modules, inner, warmup=warmup, lower_order_final=lower_order_final
        )
    total = int(start_limit) + sum(s.nfe for s in method_steps) + int(final is not None)
    if nfe is not None and total != nfe:  # the allocation above is exact; guard it
        raise AssertionError(f"planned {total} NFE for a budget of {nfe}")
    info = SampleInfo(
        nfe=total,
        lambdas=[float(v) for v in grid],
        methods=[s.module.NAME for s in method_steps],
        start_limit=start_limit,
        final=final,
    )
    return grid, method_steps, info


def _warmup_extra(module: ModuleType, warmup: str) -> int:
    """Model evaluations the starters spend beyond one per step."""
    if warmup != "order-preserving":
        return 0
    return sum(load_method(n).NFE_PER_STEP - 1 for n in module.WARMUP_ORDER_PRESERVING)


def sample(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    schedule: str | NoiseSchedule = "vp-linear",
    method: str | ModuleType = "res_2m",
    *,
    nfe: int | None = None,
    steps: int | None = None,
    step_schedule: str = "logsnr",
    t_start: float | None = None,
    t_end: float | None = None,
    rho: float = 7.0,
    sigmas: Sequence[float] | None = None,
    timesteps: Sequence[float] | None = None,
    output: str = "noise",
    prediction: str | None = None,
    dtype: torch.dtype | None = None,
    warmup: str = "lower-order",
    lower_order_final: bool = False,
    final_denoise: bool = False,
    allocation: str = "greedy",
    guidance: Guidance | float | None = None,
    thresholding: str | Callable[[torch.Tensor], torch.Tensor] | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = False,
    return_info: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, SampleInfo]:
    """Solve the probability-flow ODE from x (at t_start, noise) to t_end with a generated method.

    model(x, t, **model_kwargs) returns the ``output`` type (noise, data, v, score, flow, edm;
    see :mod:`phiforge.runtime.models`). Give exactly one of ``nfe`` (a budget spent exactly),
    ``steps``, ``sigmas`` (descending sigma~ = sigma/alpha, k-diffusion style, may end in 0) or
    ``timesteps`` (descending schedule times). ``prediction`` ('data' or 'noise') selects the
    canonical form (default: the method's). ``callback`` receives a dict with x, i, sigma,
    sigma_hat, sigma_next, t, denoised and nfe after every step. With ``return_info`` the
    :class:`SampleInfo` (exact NFE, grid, per-step methods) is returned too.
    """
    if not isinstance(x, torch.Tensor) or x.ndim < 1:
        raise InputError("parameter 'x' must be a tensor with a batch dimension")
    schedule = noise_schedule(schedule)
    module = load_method(method)
    prediction = prediction or module.PREDICTION or "data"
    if prediction not in ("data", "noise"):
        raise InputError(f"parameter 'prediction' must be 'data' or 'noise', got {prediction!r}")
    if isinstance(guidance, int | float) and not isinstance(guidance, bool):
        guidance = Guidance(float(guidance))
    grid, method_steps, info = sampling_plan(
        schedule,
        module,
        nfe=nfe,
        steps=steps,
        step_schedule=step_schedule,
        t_start=t_start,
        t_end=t_end,
        rho=rho,
        sigmas=sigmas,
        timesteps=timesteps,
        warmup=warmup,
        lower_order_final=lower_order_final,
        final_denoise=final_denoise,
        allocation=allocation,
    )
    canonical = CanonicalModel(
        model,
        schedule,
        output,
        model_kwargs=model_kwargs,
        guidance=guidance,
        thresholding=thresholding,
    )
    x = x.to(dtype) if dtype is not None else x
    if not torch.is_floating_point(x):
        raise InputError("parameter 'x' must be a floating-point tensor (or give 'dtype')")
    total_steps = len(method_steps) + int(info.start_limit) + int(info.final is not None)
    bar = _progress(total_steps, progress)
    step_counter = [0]
    denoised: list[torch.Tensor | None] = [None]

    def report(x_now: torch.Tensor, lam: float, lam_next: float, x0: torch.Tensor) -> None:
        if callback is not None:
            sigma = math.exp(-lam)
            callback(
                {
                    "x": x_now,
                    "i": step_counter[0],
                    "sigma": sigma,
                    "sigma_hat": sigma,
                    "sigma_next": math.exp(-lam_next),
                    "t": float(schedule.t_of_lam(lam)),
                    "denoised": x0,
                    "nfe": canonical.nfe,
                }
            )
        step_counter[0] += 1
        canonical.step_index = step_counter[0]
        if bar is not None:
            bar.update(1)

    canonical.step_index = 0
    if info.start_limit:
        lam1 = float(grid[1])
        _, sigma0 = schedule.alpha_sigma_of_lam(-math.inf)
        alpha1, sigma1 = schedule.alpha_sigma_of_lam(lam1)
        x0 = canonical.data(x, -math.inf)
        x = (sigma1 / sigma0) * x + alpha1 * x0
        report(x, -math.inf, lam1, x0)

    if method_steps:
        L = -1.0 if prediction == "data" else 1.0

        def to_state(x_now: torch.Tensor, lam: float) -> torch.Tensor:
            alpha, sigma = schedule.alpha_sigma_of_lam(lam)
            return x_now / (alpha if prediction == "data" else sigma)

        def to_x(y: torch.Tensor, lam: float) -> torch.Tensor:
            alpha, sigma = schedule.alpha_sigma_of_lam(lam)
            return y * (alpha if prediction == "data" else sigma)

        def f(y: torch.Tensor, lam: float) -> torch.Tensor:
            x_now = to_x(y, lam)
            x0 = canonical.data(x_now, lam)
            if denoised[0] is None:
                denoised[0] = x0
            if prediction == "data":
                return x0
            alpha, sigma = schedule.alpha_sigma_of_lam(lam)
            return -(x_now - alpha * x0) / sigma

        def on_step(index: int, step: Step, y_new: torch.Tensor, value: torch.Tensor) -> None:
            report(to_x(y_new, step.lam_next), step.lam, step.lam_next, denoised[0])
            denoised[0] = None

        y = run_steps(method_steps, to_state(x, method_steps[0].lam), L, f, on_step=on_step)
        x = to_x(y, method_steps[-1].lam_next)

    if info.final is not None:
        lam_last = float(grid[-2] if info.final == "limit" else grid[-1])
        x0 = canonical.data(x, lam_last)
        x = x0
        report(x, lam_last, float(grid[-1]) if info.final == "limit" else math.inf, x0)
    if bar is not None:
        bar.close()
    if canonical.nfe != info.nfe:  # the plan's accounting is the contract; never drift from it
        raise AssertionError(f"spent {canonical.nfe} NFE, planned {info.nfe}")
    return (x, info) if return_info else x


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step")
