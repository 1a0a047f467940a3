"""The step plan of a sampling run: its grid, which generated method takes which interval, and
what it costs, decided before any model call (the program is then laid out by
:mod:`phiforge.runtime.plan` and run by :mod:`phiforge.runtime.engine`).

This module and :mod:`phiforge.runtime.plan` are the only places that read a method's family:
multistep warm-up and lower-order final steps (from the modules' ``WARMUP`` metadata, nothing
by name), exact NFE budgets (single-step allocations, DPM-Solver-fast's rule), restart events,
diffusers' rules for the last steps, and the checks of a method's options.
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

from phiforge.runtime.errors import InputError
from phiforge.runtime.methods import generated_methods, load_method
from phiforge.runtime.restart import Restart, RestartInterval, karras_sigmas, restart_from
from phiforge.runtime.schedules import NoiseSchedule
from phiforge.runtime.timesteps import grid_from_sigmas, grid_from_times, lambda_grid

__all__ = [
    "ALLOCATIONS",
    "WARMUP_POLICIES",
    "RestartEvent",
    "SampleInfo",
    "Step",
    "allocate_singlestep",
    "check_domain",
    "check_method",
    "diffusers_final_steps",
    "plan_steps",
    "sampling_plan",
]

WARMUP_POLICIES = ("lower-order", "order-preserving")


@dataclass(frozen=True)
class Step:
    """One step of the plan: ``module`` advances the state from ``lam`` to ``lam_next``."""

    module: ModuleType
    lam: float
    lam_next: float

    @property
    def nfe(self) -> int:
        return int(self.module.NFE_PER_STEP)


def _starter(module: ModuleType, values: int, policy: str) -> ModuleType:
    names = module.WARMUP if policy == "lower-order" else module.WARMUP_ORDER_PRESERVING
    if len(names) < values:
        raise InputError(
            f"parameter 'warmup': {module.NAME} has no {policy!r} starters; use 'lower-order'"
        )
    return load_method(names[values - 1])


def plan_steps(
    method: str | ModuleType | Sequence[str | ModuleType],
    lambdas: Sequence[float],
    *,
    warmup: str = "lower-order",
    lower_order_final: bool = False,
    history: int = 0,
) -> list[Step]:
    """Which module takes which interval of the grid ``lambdas`` (finite, increasing).

    ``method`` is one method for every step or one per interval (single-step allocations).
    A k-step method with fewer than k values at hand (``history`` values are given before the
    first step) uses its starters: ``warmup='lower-order'`` (the published convention, one
    evaluation per step) or ``'order-preserving'`` (starters that keep global order k).
    ``lower_order_final`` lowers a multistep method's order on the last steps of short runs
    (fewer than 10 steps, DPM-Solver's current rule, spec-dpmsolver-res §4.3): the step with
    index i of n uses order min(k, n - i).
    """
    if warmup not in WARMUP_POLICIES:
        raise InputError(
            f"parameter 'warmup' must be one of {', '.join(WARMUP_POLICIES)}, got {warmup!r}"
        )
    n = len(lambdas) - 1
    if isinstance(method, str | ModuleType):
        modules = [load_method(method)] * n
    else:
        modules = [load_method(m) for m in method]
        if len(modules) != n:
            raise InputError(f"parameter 'method': {len(modules)} methods for {n} intervals")
    steps = []
    values = history
    for index, (module, lam, lam_next) in enumerate(
        zip(modules, lambdas[:-1], lambdas[1:], strict=True)
    ):
        values += 1  # the evaluation at the start of this step
        chosen = module
        if module.FAMILY == "multistep":
            order = module.STEPS
            if lower_order_final and n < 10:
                order = min(order, n - index)
            available = min(values, order)
            if available < module.STEPS:
                chosen = _starter(
                    module, available, warmup if values < module.STEPS else "lower-order"
                )
        steps.append(Step(chosen, float(lam), float(lam_next)))
    return steps


def diffusers_final_steps(
    steps: list[Step],
    module: ModuleType,
    outer: int,
    final_limit: bool,
    lower_order_final: bool,
    euler_at_final: bool,
) -> list[Step]:
    """diffusers' DPMSolverMultistepScheduler rules for the last steps of a grid of ``outer``
    points: with ``lower_order_final`` and fewer than 15 steps a k-step method (k > 2) takes its
    2-step starter on the second-to-last interval ('lower_order_second'), and the last interval
    before a final sigma > 0 (or any, with ``euler_at_final``) takes the 1-step starter, a
    1-step method its own step (``module`` is the run's method, ``steps`` its planned steps)."""
    steps = list(steps)
    short = lower_order_final and outer < 15
    multistep = bool(steps) and module.FAMILY == "multistep"
    if multistep and module.STEPS > 2 and short:
        last = len(steps) - 1 if final_limit else len(steps) - 2
        replace = 0 <= last < len(steps) and steps[last].module.FAMILY == "multistep"
        if replace and steps[last].module.STEPS > 2:
            steps[last] = Step(load_method(module.WARMUP[1]), steps[last].lam, steps[last].lam_next)
    if multistep and module.STEPS > 1 and not final_limit and (euler_at_final or short):
        steps[-1] = Step(load_method(module.WARMUP[0]), steps[-1].lam, steps[-1].lam_next)
    return steps


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
    #: with a per-sample grid: every sample's log-SNR grid (``lambdas`` is the first's)
    per_sample: list[list[float]] | None = None

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


def _remainder_steps(module: ModuleType, remainder: int) -> list[int]:
    """The stage counts of the filler steps that spend ``remainder`` evaluations: one step if
    ``module``'s family has a method of that many stages, else the largest that fit, in turn."""
    counts = {int(load_method(n).NFE_PER_STEP) for n in generated_methods(module.FAMILY)}
    steps: list[int] = []
    while remainder > 0:
        fits = [c for c in counts if c <= remainder]
        if not fits:
            raise InputError(f"no generated {module.FAMILY} method with {remainder} stage(s)")
        chosen = remainder if remainder in counts else max(fits)
        steps.append(chosen)
        remainder -= chosen
    return steps


def allocate_singlestep(
    module: ModuleType, budget: int, allocation: str = "greedy"
) -> list[ModuleType]:
    """The single-step methods of each step for ``budget`` model evaluations.

    ``greedy``: as many steps of ``module`` as fit, the remainder r as one step of an r-stage
    method, or where the family has none (the single-step methods have 1, 2, 3, 5, 7 and 10
    stages), as steps of the largest that fit (r = 4: 3 + 1, r = 6: 5 + 1). ``dpm-solver-fast``
    (spec-dpmsolver-res §5.2, for methods of 1-3 stages): order 3 gives [3]*(K-2)+[2,1],
    [3]*(K-1)+[1] or [3]*(K-1)+[2] with K = budget//3 + 1; order 2 gives [2]*(budget//2) and a
    final 1 when odd.
    """
    s = int(module.NFE_PER_STEP)
    if allocation not in ALLOCATIONS:
        raise InputError(
            f"parameter 'allocation' must be one of {', '.join(ALLOCATIONS)}, got {allocation!r}"
        )
    if allocation == "greedy" or s == 1:
        orders = [s] * (budget // s) + _remainder_steps(module, budget % s)
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
            # a grid that ends at sigma = 0 ends with its denoising call already (the limit)
            denoise = final_denoise and probe[-1] != math.inf
            budget = _check_count("nfe", nfe) - limits - int(denoise)
            if module.FAMILY in ("singlestep", "stochastic"):  # one step at a time
                if budget < 0 or (budget < 1 and limits < 2):  # two limits: a call each
                    least = nfe - budget + int(limits < 2)
                    raise InputError(f"parameter 'nfe' must be at least {least}")
                per_step = allocate_singlestep(module, budget, allocation) if budget > 0 else []
                intervals = len(per_step) + limits
            else:
                extra = _warmup_extra(module, warmup)
                intervals = budget - extra + limits
                # every starter the extra counts must run (a budget that cuts the warm-up
                # short would leave calls unspent), and one step at least
                steps_needed = max(1, len(module.WARMUP_ORDER_PRESERVING) * bool(extra))
                if intervals < steps_needed + limits:
                    least = nfe - intervals + steps_needed + limits
                    raise InputError(
                        f"parameter 'nfe' must be at least {least} for {module.NAME} with "
                        f"warmup {warmup!r}"
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


def method_kind(module: ModuleType) -> str:
    """A label for grouping methods in reports: single-step, multistep, multistep
    predictor-corrector, stochastic."""
    if module.STOCHASTIC:
        return "stochastic"
    if module.FAMILY == "multistep":
        return "multistep predictor-corrector" if module.CORRECTED else "multistep"
    return "single-step"


def check_domain(module: ModuleType, prediction: str, used_by: str | None = None) -> None:
    """The canonical form ``prediction`` must lie in the coefficient domain of ``module`` (z =
    -h in data form, +h in noise form); ``used_by``: the run's method, when ``module`` is one
    of the other steps its plan takes (warm-up starters, fillers, final steps)."""
    domain = getattr(module, "DOMAIN", None)
    if (domain == "z <= 0" and prediction == "noise") or (
        domain == "z >= 0" and prediction == "data"
    ):
        role = "" if used_by is None else f" (a step of {used_by}'s plan: warm-up or filler)"
        raise InputError(
            f"method {module.NAME!r}{role} has coefficients for {domain} only, so parameter "
            f"'prediction' must be {'data' if domain == 'z <= 0' else 'noise'}, got "
            f"{prediction!r}"
        )


def check_method(
    module: ModuleType,
    prediction: str,
    options: Mapping[str, float] | None,
    eta: float | None = None,
) -> dict[str, float]:
    """The method's node options, checked: they apply to methods with parameters (SEEDS) only,
    by name, with increasing noisy nodes in (0, 1]; the canonical form ``prediction`` must
    lie in the method's coefficient domain (z = -h in data form, +h in noise form); and an
    ``eta`` > 0 needs a method whose steps draw noise (never silently ignored)."""
    if eta is not None and eta > 0 and not module.STOCHASTIC:
        raise InputError(
            f"parameter 'eta' ({eta}) applies to stochastic methods (their steps draw noise); "
            f"{module.NAME} is deterministic: omit eta, or pick an SDE method (res_2m_sde, "
            "seeds_2a, ...)"
        )
    check_domain(module, prediction)
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
    return params
