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

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import torch

from phiforge.runtime.adaptive import Adaptive, run_adaptive
from phiforge.runtime.engine import Report, execute
from phiforge.runtime.engine import capture as engine_capture
from phiforge.runtime.errors import InputError
from phiforge.runtime.methods import generated_methods, load_method
from phiforge.runtime.models import CanonicalModel, Guidance
from phiforge.runtime.noise import gaussian_noise, per_sample_noise
from phiforge.runtime.plan import Builder, Step, place_steps, plan_steps, schedule_form
from phiforge.runtime.restart import Restart, RestartInterval, karras_sigmas, restart_from
from phiforge.runtime.schedules import NoiseSchedule, noise_schedule
from phiforge.runtime.timesteps import grid_from_sigmas, grid_from_times, lambda_grid

__all__ = [
    "ALLOCATIONS",
    "RestartEvent",
    "SampleInfo",
    "allocate_singlestep",
    "sample",
    "sampling_plan",
]

ALLOCATIONS = ("greedy", "dpm-solver-fast")


@dataclass
class RestartEvent:
    """A restart interval in a plan: at inner grid point ``index`` (log-SNR ``lam_min``), K times
    jump to ``lam_max`` and run ``backward`` (pairs: lambda before churn or None, step)."""

    index: int
    interval: RestartInterval
    lam_min: float
    lam_max: float
    backward: list[tuple[float | None, Step]]
    s_noise: float

    @property
    def nfe(self) -> int:
        return self.interval.repeats * sum(step.nfe for _, step in self.backward)


@dataclass
class SampleInfo:
    """What a sampling run did: NFE spent, the grid, and the method of every step."""

    nfe: int
    lambdas: list[float]
    methods: list[str]
    start_limit: bool
    final: str | None
    restarts: list[RestartEvent] = field(default_factory=list)
    segments: list[tuple[int, int]] = field(default_factory=list)
    adaptive: dict[str, int] | None = None
    #: with ``capture=True``: ``replay(x)`` runs the captured graph again from a new start x
    replay: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def steps(self) -> int:
        return len(self.lambdas) - 1


def _filler(module: ModuleType, stages: int) -> ModuleType:
    """The generated single-step method of ``module``'s family (deterministic or stochastic)
    with ``stages`` evaluations to spend a remainder on: highest scalar stiff order, then the
    same prediction as ``module``, then by name."""
    candidates = [
        load_method(name)
        for name in generated_methods(module.FAMILY)
        if stages == load_method(name).NFE_PER_STEP
    ]
    if not candidates:
        raise InputError(f"no generated {module.FAMILY} method with {stages} stage(s)")
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
    restart: Restart | str | None = None,
) -> tuple[np.ndarray, list[Step], SampleInfo]:
    """The grid, the method steps and the exact NFE of a run (before any model call)."""
    module = load_method(method)
    if restart is not None:
        restart = restart_from(restart)
        if nfe is not None:
            raise InputError(
                "with 'restart' give the main grid ('steps', 'sigmas', 'timesteps' "
                "or a preset's), not an 'nfe' budget"
            )
        if steps is None and sigmas is None and timesteps is None:
            sigmas = restart.main_sigmas()
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
            if module.FAMILY in ("singlestep", "stochastic"):  # one step at a time
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
    modules = per_step if per_step is not None else [module] * (len(inner) - 1)
    events = _restart_events(restart, module, grid, inner) if restart is not None else []
    cuts = sorted({0, max(len(inner) - 1, 0)} | {e.index for e in events})
    method_steps: list[Step] = []
    segments = []
    for start, stop in itertools.pairwise(cuts):
        planned = plan_steps(
            modules[start:stop],
            inner[start : stop + 1],
            warmup=warmup,
            lower_order_final=lower_order_final,
        )
        segments.append((len(method_steps), len(method_steps) + len(planned)))
        method_steps += planned
    total = int(start_limit) + sum(s.nfe for s in method_steps) + int(final is not None)
    total += sum(e.nfe for e in events)
    if nfe is not None and total != nfe:  # the allocation above is exact; guard it
        raise AssertionError(f"planned {total} NFE for a budget of {nfe}")
    info = SampleInfo(
        nfe=total,
        lambdas=[float(v) for v in grid],
        methods=[s.module.NAME for s in method_steps],
        start_limit=start_limit,
        final=final,
        restarts=events,
        segments=segments,
    )
    return grid, method_steps, info


def _restart_events(
    restart: Restart, module: ModuleType, grid: np.ndarray, inner: np.ndarray
) -> list[RestartEvent]:
    """Where each restart interval acts (the inner grid point nearest its sigma_min) and its
    backward plan (Karras sub-grid; churn as (lambda before, step from the raised level))."""
    if restart.churn > 0 and module.FAMILY == "multistep":
        raise InputError("restart 'churn' needs a single-step method (it breaks multistep history)")
    sigmas = np.exp(-inner)
    finite = np.exp(-grid[np.isfinite(grid)])
    events = []
    for interval in restart.intervals:
        index = int(np.argmin(np.abs(sigmas - interval.sigma_min)))
        sigma_low = float(sigmas[index])
        sigma_high = interval.sigma_max
        if restart.snap_sigma_max:
            sigma_high = float(finite[np.argmin(np.abs(finite - interval.sigma_max))])
        if not sigma_high > sigma_low:
            raise InputError(
                f"restart interval {interval}: sigma_max {sigma_high:g} is not above the grid "
                f"point {sigma_low:g} that sigma_min snaps to"
            )
        sub = -np.log(karras_sigmas(sigma_high, sigma_low, interval.points, restart.rho))
        backward: list[tuple[float | None, Step]] = []
        if restart.churn > 0:
            for lam, lam_next in itertools.pairwise(sub):
                sigma = math.exp(-lam)
                if restart.churn_sigma_min <= sigma <= restart.churn_sigma_max:
                    raised = -math.log(sigma * (1.0 + restart.churn))
                    backward.append((float(lam), Step(module, raised, float(lam_next))))
                else:
                    backward.append((None, Step(module, float(lam), float(lam_next))))
        else:
            backward = [(None, step) for step in plan_steps(module, sub)]
        events.append(
            RestartEvent(index, interval, float(sub[-1]), float(sub[0]), backward, restart.s_noise)
        )
    return sorted(events, key=lambda e: e.index)


def _warmup_extra(module: ModuleType, warmup: str) -> int:
    """Model evaluations the starters spend beyond one per step."""
    if warmup != "order-preserving":
        return 0
    return sum(load_method(n).NFE_PER_STEP - 1 for n in module.WARMUP_ORDER_PRESERVING)


def sample(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    schedule: str | NoiseSchedule = "vp-linear",
    method: str | ModuleType | None = None,
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
    restart: Restart | str | None = None,
    adaptive: Adaptive | bool | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    options: Mapping[str, float] | None = None,
    noise_sampler: Callable[[float, float], torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
    seeds: Sequence[int] | None = None,
    guidance: Guidance | float | None = None,
    thresholding: str | Callable[[torch.Tensor], torch.Tensor] | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = False,
    return_info: bool = False,
    capture: bool = False,
    check_every: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, SampleInfo]:
    """Solve the probability-flow ODE from x (at t_start, noise) to t_end with a generated method.

    model(x, t, **model_kwargs) returns the ``output`` type (noise, data, v, score, flow, edm;
    see :mod:`phiforge.runtime.models`). Give exactly one of ``nfe`` (a budget spent exactly),
    ``steps``, ``sigmas`` (descending sigma~ = sigma/alpha, k-diffusion style, may end in 0) or
    ``timesteps`` (descending schedule times). ``method`` defaults to a restart preset's method,
    else ``res_2m``. ``prediction`` ('data' or 'noise') selects the canonical form (default: the
    method's). ``restart`` (a :class:`~phiforge.runtime.restart.Restart`, a preset name, or a
    spec) adds Restart intervals; their noise comes from ``noise_sampler(sigma, sigma_next)``
    (unit normals shaped like x) or ``generator``. ``adaptive`` (True or an
    :class:`~phiforge.runtime.adaptive.Adaptive`) chooses the steps between the grid's ends by an
    embedded pair's error estimate (give no ``nfe``/``steps``; ``sigmas``/``timesteps`` give the
    ends). Stochastic (SEEDS) methods take ``eta`` (0: the probability-flow ODE, 1: the reverse
    SDE), ``s_noise`` and ``options`` (their nodes, e.g. r, r1, r2); their noise and Restart's come
    from ``noise_sampler``, else per-sample ``seeds``, else ``generator``. ``callback`` receives
    a dict with x, i, sigma, sigma_hat, sigma_next, t, denoised and nfe after every step. With
    ``return_info`` the :class:`SampleInfo` (exact NFE, grid, per-step methods, restarts) is
    returned too. The run is one program (:mod:`phiforge.runtime.plan`) run by the executor
    (:mod:`phiforge.runtime.engine`), which reads nothing back from the device until the end:
    a non-finite model value is reported after the run (or every ``check_every`` calls) with the
    step and sigma of its first call. ``capture=True`` records the whole run as one CUDA graph
    and replays it (CUDA tensors and a capturable model; no callback, progress bar or adaptive
    stepping).
    """
    if not isinstance(x, torch.Tensor) or x.ndim < 1:
        raise InputError("parameter 'x' must be a tensor with a batch dimension")
    schedule = noise_schedule(schedule)
    if restart is not None:
        restart = restart_from(restart)
    if method is None:
        method = restart.method if restart is not None and restart.method else "res_2m"
    module = load_method(method)
    prediction = prediction or module.PREDICTION or "data"
    if prediction not in ("data", "noise"):
        raise InputError(f"parameter 'prediction' must be 'data' or 'noise', got {prediction!r}")
    domain = getattr(module, "DOMAIN", None)  # z = -h in data form, +h in noise form
    if (domain == "z <= 0" and prediction == "noise") or (
        domain == "z >= 0" and prediction == "data"
    ):
        raise InputError(
            f"method {method!r} has coefficients for {domain} only, so parameter 'prediction' "
            f"must be {'data' if domain == 'z <= 0' else 'noise'}, got {prediction!r}"
        )
    if isinstance(guidance, int | float) and not isinstance(guidance, bool):
        guidance = Guidance(float(guidance))
    if capture and (adaptive or callback is not None or progress):
        raise InputError(
            "parameter 'capture' records one fixed program: give no 'adaptive', 'callback' or "
            "'progress' with it"
        )
    if capture and not x.is_cuda:
        raise InputError("parameter 'capture' needs x on a CUDA device (CUDA graphs run on a GPU)")
    if adaptive is True:
        adaptive = Adaptive()
    if adaptive:
        if restart is not None or nfe is not None or steps is not None:
            raise InputError(
                "parameter 'adaptive' chooses the steps itself: give no 'nfe', 'steps' or 'restart'"
            )
        if sigmas is not None:
            sigmas = [sigmas[0], sigmas[-1]]
        elif timesteps is not None:
            timesteps = [timesteps[0], timesteps[-1]]
        else:
            steps, step_schedule = 1, "time"
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
        restart=restart,
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
    if noise_sampler is not None:
        noise = noise_sampler
    elif seeds is not None:
        noise = per_sample_noise(x, seeds)
    else:
        noise = gaussian_noise(x, generator)
    if not (isinstance(eta, int | float) and math.isfinite(eta) and eta >= 0):
        raise InputError(f"parameter 'eta' must be a finite number >= 0, got {eta!r}")
    if not (isinstance(s_noise, int | float) and math.isfinite(s_noise) and s_noise >= 0):
        raise InputError(f"parameter 's_noise' must be a finite number >= 0, got {s_noise!r}")
    params = dict(options or {})
    if params and module.FAMILY != "stochastic":
        raise InputError(
            f"parameter 'options' applies to stochastic methods; {module.NAME} is {module.FAMILY}"
        )
    if module.FAMILY == "stochastic":
        unknown = sorted(set(params) - set(module.PARAMETERS))
        if unknown:
            raise InputError(
                f"parameter 'options': {module.NAME} takes {sorted(module.PARAMETERS)}"
                f", got {unknown}"
            )
        merged = {**module.PARAMETERS, **params}
        nodes = module.noisy_nodes(**merged)
        if any(b <= a for a, b in itertools.pairwise(nodes)) or not nodes[0] > 0:
            raise InputError(
                f"parameter 'options': the nodes of {module.NAME} must increase in "
                f"(0, 1], got {nodes}"
            )
    options = {"eta": float(eta), "s_noise": float(s_noise), **params}
    canonical.check_finite = False  # the executor checks every call, once, after the run
    form = schedule_form(schedule.alpha_sigma_of_lam, prediction)
    backward_steps = sum(e.interval.repeats * len(e.backward) for e in info.restarts)
    total_steps = (
        len(method_steps) + backward_steps + int(info.start_limit) + int(info.final is not None)
    )
    bar = _progress(total_steps, progress)

    def on_report(event: Report, buffer: list) -> None:
        if callback is not None:
            sigma = math.exp(-event.lam)
            callback(
                {
                    "x": buffer[event.state],
                    "i": event.step,
                    "sigma": sigma,
                    "sigma_hat": sigma,
                    "sigma_next": math.exp(-event.lam_next),
                    "t": float(schedule.t_of_lam(event.lam)),
                    "denoised": None if event.denoised is None else buffer[event.denoised],
                    "nfe": canonical.nfe,
                }
            )
        if bar is not None:
            bar.update(1)

    def unit_normal(lam_a: float, lam_b: float) -> torch.Tensor:
        return noise(math.exp(-lam_a), math.exp(-lam_b))

    builder = Builder()
    state = builder.input()
    if info.start_limit:  # the h -> inf limit of the exponential step from zero SNR
        lam1 = float(grid[1])
        _, sigma0 = schedule.alpha_sigma_of_lam(-math.inf)
        alpha1, sigma1 = schedule.alpha_sigma_of_lam(lam1)
        x0 = builder.evaluate(state, -math.inf)
        state = builder.combine([(state, sigma1 / sigma0), (x0, alpha1)])
        builder.report(state, x0, -math.inf, lam1)

    def advance(state: int, planned: Sequence[Step]) -> int:
        """Planned steps with a fresh multistep history."""
        return place_steps(builder, planned, state, form, options=options)[0] if planned else state

    def jump(state: int, lam_from: float, lam_to: float, s_noise: float) -> int:
        """The forward process's exact transition kernel from lam_from down to lam_to."""
        alpha_a, sigma_a = schedule.alpha_sigma_of_lam(lam_from)
        alpha_b, sigma_b = schedule.alpha_sigma_of_lam(lam_to)
        ratio = alpha_b / alpha_a
        spread = math.sqrt(max(sigma_b**2 - (ratio * sigma_a) ** 2, 0.0))
        z = builder.draw(lam_from, lam_to)
        return builder.combine([(state, ratio), (z, s_noise * spread)])

    def restart_interval(state: int, event: RestartEvent) -> int:
        for _ in range(event.interval.repeats):
            state = jump(state, event.lam_min, event.lam_max, event.s_noise)
            if all(before is None for before, _ in event.backward):
                state = advance(state, [step for _, step in event.backward])
                continue
            for before, step in event.backward:  # churn: raise the noise level, then step
                if before is not None:
                    state = jump(state, before, step.lam, event.s_noise)
                state = advance(state, [step])
        return state

    # main steps and inner grid intervals correspond one to one, so a segment boundary in
    # method_steps is the inner grid index where its restarts act
    pending = list(info.restarts)
    if adaptive and method_steps:
        lam_a, lam_b = method_steps[0].lam, method_steps[-1].lam_next
        (x,) = execute(builder.finish([state]), [x], canonical.data, on_report=on_report)
        x, accepted, rejected = run_adaptive(
            module, x, lam_a, lam_b, form, canonical.data, adaptive, on_report, builder.reports
        )
        info.adaptive = {"accepted": accepted, "rejected": rejected}
        builder = Builder()
        builder.reports = int(info.start_limit) + accepted
        state = builder.input()
        method_steps = []
        info.segments = []
    for start, stop in info.segments or [(0, 0)]:
        while pending and pending[0].index == start:
            state = restart_interval(state, pending.pop(0))
        state = advance(state, method_steps[start:stop])
    for event in pending:
        state = restart_interval(state, event)
    if info.final is not None:
        lam_last = float(grid[-2] if info.final == "limit" else grid[-1])
        x0 = builder.evaluate(state, lam_last)
        builder.report(x0, x0, lam_last, float(grid[-1]) if info.final == "limit" else math.inf)
        state = x0
    program = builder.finish([state])
    if info.adaptive is None and program.calls != info.nfe:  # the plan's accounting is the contract
        raise AssertionError(f"the program makes {program.calls} calls, planned {info.nfe}")
    if capture:
        replay = engine_capture(program, [x], canonical.data, noise=unit_normal)
        (x,) = replay([x])
        info.replay = lambda start: replay([start])[0]
    else:
        (x,) = execute(
            program,
            [x],
            canonical.data,
            noise=unit_normal,
            on_report=on_report,
            check_every=check_every,
        )
    if bar is not None:
        bar.close()
    if info.adaptive is not None:
        info.nfe = canonical.nfe  # known only after the run: every attempt counted
    return (x, info) if return_info else x


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step")
