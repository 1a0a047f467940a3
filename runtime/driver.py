"""The sampling driver: any model, any noise schedule, any generated method.

The state is moved to the canonical semilinear equation in log-SNR time (DESIGN.md,
spec-dpmsolver-res §1.3): data prediction ``y = x/alpha``, ``dy/dlam = -y + x0(alpha y)``
(L = -1) or noise prediction ``y = x/sigma``, ``dy/dlam = y - eps(sigma y)`` (L = +1).
``sample()`` is the step plan (:mod:`phiforge.runtime.step_plan`), the run's program of model
calls and linear combinations (:mod:`phiforge.runtime.plan`, from the generated modules' call
programs) and the one executor (:mod:`phiforge.runtime.engine`). Coefficients are float64
numbers; the state keeps the dtype asked for.

The ends of the grid may be exact limits: from zero SNR (lambda = -inf, alpha = 0) the first
step is the h -> inf limit of the exponential step, ``x1 = (sigma1/sigma0) x0 + alpha1 x0_hat``;
to sigma = 0 (lambda = +inf) the last step is ``x = x0_hat(x, lam_last)`` (k-diffusion's final
step). Each costs one model evaluation.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import torch

from phiforge.runtime.adaptive import Adaptive, run_adaptive
from phiforge.runtime.checks import check_callable, check_flag
from phiforge.runtime.engine import Program, Report, execute
from phiforge.runtime.engine import capture as engine_capture
from phiforge.runtime.errors import InputError, ModelOutputError
from phiforge.runtime.methods import load_method
from phiforge.runtime.models import CanonicalModel, Guidance
from phiforge.runtime.noise import gaussian_noise, per_sample_noise
from phiforge.runtime.plan import (
    Builder,
    Form,
    merge_programs,
    place_steps,
    place_zero_snr_start,
    schedule_form,
)
from phiforge.runtime.restart import restart_from
from phiforge.runtime.run_options import Grid, Noise, Wrapper, group_options
from phiforge.runtime.schedules import NoiseSchedule, noise_schedule
from phiforge.runtime.step_plan import (
    ALLOCATIONS,
    RestartEvent,
    SampleInfo,
    Step,
    allocate_singlestep,
    check_domain,
    check_method,
    sampling_plan,
)
from phiforge.runtime.timesteps import per_sample_rows

__all__ = [
    "ALLOCATIONS",
    "Grid",
    "Noise",
    "RestartEvent",
    "SampleInfo",
    "Wrapper",
    "allocate_singlestep",
    "sample",
    "sampling_plan",
]


def sample(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    schedule: str | NoiseSchedule = "vp-linear",
    method: str | ModuleType | None = None,
    *,
    grid: Grid | None = None,
    wrapper: Wrapper | None = None,
    noise: Noise | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = False,
    return_info: bool = False,
    capture: bool = False,
    check_every: int | None = None,
    check_finite: bool = True,
    **fields: Any,
) -> torch.Tensor | tuple[torch.Tensor, SampleInfo]:
    """Solve the probability-flow ODE from x (at t_start, noise) to t_end with a generated method.

    The options come in three groups (:mod:`phiforge.runtime.run_options`): ``grid`` (a
    :class:`Grid`: where the run steps), ``wrapper`` (a :class:`Wrapper`: how the model is
    called and read) and ``noise`` (a :class:`Noise`: stochastic methods and Restart); their
    fields may also be given as plain keywords (``steps=10``, ``output="edm"``, ``eta=0.5``).

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
    a dict with x, x_start, i, sigma, sigma_hat, sigma_next, t, denoised and nfe after every
    step: x is the state the step ended at (sigma_next), x_start the one it started from (sigma;
    after a predict-evaluate-correct method's correction), denoised the model's value at the
    step's start. With
    ``return_info`` the :class:`SampleInfo` (exact NFE, grid, per-step methods, restarts) is
    returned too. The run is one program (:mod:`phiforge.runtime.plan`) run by the executor
    (:mod:`phiforge.runtime.engine`), which reads nothing back from the device until the end:
    a non-finite model value is reported after the run (or every ``check_every`` calls; never
    with ``check_finite=False``, which spares the run's one read-back) with the
    step and sigma of its first call. ``capture=True`` records the whole run as one CUDA graph
    and replays it (CUDA tensors and a capturable model; no callback, progress bar or adaptive
    stepping).
    """
    grid, wrapper, noise = group_options(grid, wrapper, noise, fields)
    for name, flag in (
        ("check_finite", check_finite),
        ("capture", capture),
        ("progress", progress),
        ("return_info", return_info),
    ):
        check_flag(name, flag)
    check_callable("callback", callback, "a function of one dict (called after every step)")
    nfe, steps, step_schedule = grid.nfe, grid.steps, grid.step_schedule
    t_start, t_end, rho, sigmas, timesteps = (
        grid.t_start,
        grid.t_end,
        grid.rho,
        grid.sigmas,
        grid.timesteps,
    )
    warmup, lower_order_final, final_denoise = (
        grid.warmup,
        grid.lower_order_final,
        grid.final_denoise,
    )
    allocation, restart, adaptive = grid.allocation, grid.restart, grid.adaptive
    output, prediction, dtype = wrapper.output, wrapper.prediction, wrapper.dtype
    guidance, thresholding, model_kwargs = (
        wrapper.guidance,
        wrapper.thresholding,
        wrapper.model_kwargs,
    )
    eta, s_noise, options = noise.eta, noise.s_noise, noise.options
    noise_sampler, generator, seeds = noise.noise_sampler, noise.generator, noise.seeds
    if not isinstance(x, torch.Tensor) or x.ndim < 1:
        raise InputError("parameter 'x' must be a tensor with a batch dimension")
    if x.shape[0] == 0:
        raise InputError("parameter 'x' must hold at least one sample (its batch is empty)")
    schedule = noise_schedule(schedule)
    if restart is not None:
        restart = restart_from(restart)
        if restart.method is not None:  # refused by name even where 'method' overrides it
            load_method(restart.method)
    if method is None:
        method = restart.method if restart is not None and restart.method else "res_2m"
    module = load_method(method)
    prediction = prediction or module.PREDICTION or "data"
    if isinstance(guidance, int | float) and not isinstance(guidance, bool):
        guidance = Guidance(float(guidance))
    elif guidance is not None and not isinstance(guidance, Guidance):
        raise InputError(
            "parameter 'guidance' must be a number (the scale) or a Guidance(scale, "
            f"uncond_kwargs), got {guidance!r}"
        )
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

    def plan(sigmas: Any, timesteps: Any) -> tuple[np.ndarray, list[Step], SampleInfo]:
        return sampling_plan(
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

    table = per_sample_rows("sigmas", sigmas, x.shape[0]) or per_sample_rows(
        "timesteps", timesteps, x.shape[0]
    )
    rows = None
    if table is not None:  # a grid per sample
        if adaptive or restart is not None:
            raise InputError(
                "a per-sample grid (2-D 'sigmas' or 'timesteps') takes no 'adaptive' or 'restart'"
            )
        name, values = table
        rows = [plan(row, None) if name == "sigmas" else plan(None, row) for row in values]
        grid, method_steps, info = rows[0]
    else:
        grid, method_steps, info = plan(sigmas, timesteps)
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
        draw_noise = noise_sampler
    elif seeds is not None:
        draw_noise = per_sample_noise(x, seeds)
    else:
        draw_noise = gaussian_noise(x, generator)
    params = check_method(module, prediction, options, eta)
    used = [s.module for s in method_steps]
    used += [step.module for event in info.restarts for _, step in event.backward]
    for other in {m.NAME: m for m in used if m is not module}.values():
        check_domain(other, prediction, used_by=module.NAME)
    eta = 1.0 if eta is None else eta  # stochastic methods: the reverse SDE by default
    options = {"eta": float(eta), "s_noise": float(s_noise), **params}
    form = schedule_form(schedule.alpha_sigma_of_lam, prediction)
    backward_steps = sum(e.interval.repeats * len(e.backward) for e in info.restarts)
    total_steps = (
        len(method_steps) + backward_steps + int(info.start_limit) + int(info.final is not None)
    )
    bar = _progress(total_steps, progress)

    def on_report(event: Report, buffer: list) -> None:
        if callback is not None:
            sigma = _per_sample(math.exp(-lam) for lam in _lams(event.lam))
            callback(
                {
                    "x": buffer[event.state],
                    "x_start": None if event.start is None else buffer[event.start],
                    "i": event.step,
                    "sigma": sigma,
                    "sigma_hat": sigma,
                    "sigma_next": _per_sample(math.exp(-lam) for lam in _lams(event.lam_next)),
                    "t": _per_sample(float(schedule.t_of_lam(lam)) for lam in _lams(event.lam)),
                    "denoised": None if event.denoised is None else buffer[event.denoised],
                    "nfe": canonical.nfe,
                }
            )
        if bar is not None:
            bar.update(1)

    def unit_normal(lam_a: float, lam_b: float) -> torch.Tensor:
        return draw_noise(math.exp(-lam_a), math.exp(-lam_b))

    def run_program(
        row_grid: np.ndarray, row_steps: list[Step], row_info: SampleInfo, keep_all: bool = False
    ) -> Program:
        layout = _Layout(Builder(keep_all), schedule, form, options)
        state = layout.steps(layout.start(row_grid, row_info), row_steps, row_info)
        return layout.builder.finish([layout.final(state, row_grid, row_info)])

    if rows is not None:  # per-sample grids: one program per row, merged
        program = merge_programs([run_program(*row, keep_all=True) for row in rows])
        info.per_sample = [row_info.lambdas for _, _, row_info in rows]
    elif adaptive and method_steps:
        layout = _Layout(Builder(), schedule, form, options)
        state = layout.start(grid, info)
        (x,) = execute(layout.builder.finish([state]), [x], canonical.data, on_report=on_report)
        lam_a, lam_b = method_steps[0].lam, method_steps[-1].lam_next
        x, accepted, rejected = run_adaptive(
            module,
            x,
            lam_a,
            lam_b,
            form,
            canonical.data,
            adaptive,
            on_report,
            layout.builder.reports,
        )
        info.adaptive = {"accepted": accepted, "rejected": rejected}
        layout = _Layout(Builder(), schedule, form, options)
        layout.builder.reports = int(info.start_limit) + accepted
        state = layout.builder.input()
        program = layout.builder.finish([layout.final(state, grid, info)])
    else:
        key = None
        if not info.restarts:  # a program depends on these alone: plan once, run many
            key = (schedule, prediction, tuple(info.lambdas), tuple(info.methods), info.final)
            key += (info.start_limit, tuple(sorted(options.items())))
        program = _remembered(key, lambda: run_program(grid, method_steps, info))
    if info.adaptive is None and program.calls != info.nfe:  # the plan's accounting is the contract
        raise AssertionError(f"the program makes {program.calls} calls, planned {info.nfe}")
    if capture:
        replay = engine_capture(
            program, [x], canonical.data, noise=unit_normal, check_finite=check_finite
        )
        (x,) = replay([x])
        info.replay = lambda start: replay([start])[0]
    else:
        try:
            (x,) = execute(
                program,
                [x],
                canonical.data,
                noise=unit_normal,
                on_report=on_report,
                check_every=check_every,
                check_finite=check_finite,
            )
        except ModelOutputError:
            if not bool(torch.isfinite(x).all()):  # read only on this error path
                raise InputError(
                    "parameter 'x' holds NaN or inf (the start, not the model)"
                ) from None
            raise
    if bar is not None:
        bar.close()
    if info.adaptive is not None:
        info.nfe = canonical.nfe  # known only after the run: every attempt counted
    return (x, info) if return_info else x


@dataclass
class _Layout:
    """Lays a sampling run onto a :class:`~phiforge.runtime.plan.Builder`: the limit steps at
    the grid's ends, the method steps (fresh multistep history after every Restart jump) and
    Restart's jumps (the forward process's exact kernel: a combination with a draw)."""

    builder: Builder
    schedule: NoiseSchedule
    form: Form
    options: dict[str, Any]

    def start(self, grid: np.ndarray, info: SampleInfo) -> int:
        """The input slot, moved by the h -> inf limit step from zero SNR if the grid starts
        there: x1 = (sigma1/sigma0) x0 + alpha1 x0_hat(x0)."""
        state = self.builder.input()
        if not info.start_limit:
            return state
        return place_zero_snr_start(
            self.builder, state, self.schedule.alpha_sigma_of_lam, float(grid[1])
        )

    def steps(self, state: int, method_steps: list[Step], info: SampleInfo) -> int:
        """The method steps and restart intervals (main steps and inner grid intervals
        correspond one to one, so a segment boundary is the grid index where restarts act)."""
        pending = list(info.restarts)
        for start, stop in info.segments or [(0, 0)]:
            while pending and pending[0].index == start:
                state = self._restart(state, pending.pop(0))
            state = self._advance(state, method_steps[start:stop])
        for event in pending:
            state = self._restart(state, event)
        return state

    def final(self, state: int, grid: np.ndarray, info: SampleInfo) -> int:
        """The last step to sigma = 0 (x = x0_hat(x, lam_last)) or the final denoise."""
        if info.final is None:
            return state
        lam_last = float(grid[-2] if info.final == "limit" else grid[-1])
        x0 = self.builder.evaluate(state, lam_last, grid=True)
        lam_end = float(grid[-1]) if info.final == "limit" else math.inf
        self.builder.report(x0, x0, lam_last, lam_end, start=state)
        return x0

    def _advance(self, state: int, planned: Sequence[Step]) -> int:
        if not planned:
            return state
        return place_steps(self.builder, planned, state, self.form, options=self.options)[0]

    def _jump(self, state: int, lam_from: float, lam_to: float, s_noise: float) -> int:
        """The forward process's exact transition kernel from lam_from down to lam_to."""
        alpha_a, sigma_a = self.schedule.alpha_sigma_of_lam(lam_from)
        alpha_b, sigma_b = self.schedule.alpha_sigma_of_lam(lam_to)
        ratio = alpha_b / alpha_a
        spread = math.sqrt(max(sigma_b**2 - (ratio * sigma_a) ** 2, 0.0))
        z = self.builder.draw(lam_from, lam_to)
        return self.builder.combine([(state, ratio), (z, s_noise * spread)])

    def _restart(self, state: int, event: RestartEvent) -> int:
        for _ in range(event.interval.repeats):
            state = self._jump(state, event.lam_min, event.lam_max, event.s_noise)
            if all(before is None for before, _ in event.backward):
                state = self._advance(state, [step for _, step in event.backward])
                continue
            for before, step in event.backward:  # churn: raise the noise level, then step
                if before is not None:
                    state = self._jump(state, before, step.lam, event.s_noise)
                state = self._advance(state, [step])
        return state


_PROGRAMS: OrderedDict[Any, Program] = OrderedDict()
_PROGRAMS_LOCK = threading.Lock()  # sample() may run in several threads
REMEMBERED = 32  # programs kept for repeated runs with the same plan


def _remembered(key: Any, make: Callable[[], Program]) -> Program:
    """The program of ``key`` if planned recently, else ``make()`` (kept: the 32 latest). A key
    that cannot be hashed (a schedule holding arrays) is planned every time."""
    try:
        hash(key)
    except TypeError:
        key = None
    if key is None:
        return make()
    with _PROGRAMS_LOCK:
        if key in _PROGRAMS:
            _PROGRAMS.move_to_end(key)
            return _PROGRAMS[key]
    program = make()
    with _PROGRAMS_LOCK:
        _PROGRAMS[key] = program
        while len(_PROGRAMS) > REMEMBERED:
            _PROGRAMS.popitem(last=False)
    return program


def _lams(lam: float | tuple[float, ...]) -> tuple[float, ...]:
    return lam if isinstance(lam, tuple) else (lam,)


def _per_sample(values: Iterable[float]) -> float | torch.Tensor:
    """One float, or a float64 tensor of one value per sample (per-sample grids)."""
    values = list(values)
    return values[0] if len(values) == 1 else torch.tensor(values, dtype=torch.float64)


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step")
