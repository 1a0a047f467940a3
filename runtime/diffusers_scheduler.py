"""A diffusers scheduler running any registered phiforge method (extra ``phiforge[diffusers]``).

``PhiforgeScheduler`` takes DPMSolverMultistepScheduler's configuration keys (so
``PhiforgeScheduler.from_config(pipe.scheduler.config, method="res_3m")`` works) plus ``method``
and ``warmup``. Its grid is the one DPMSolverMultistepScheduler builds for the same
configuration (timestep spacing, Karras/exponential/beta/Lu sigmas, flow sigmas and shift,
final sigma), computed by an internal instance of that scheduler.

The method runs in log-SNR time: each model call is one ``step``. At ``set_timesteps`` the whole
sequence is compiled into a program of static linear combinations, one per call,

    next sample = scale_next * (A * y_anchor + sum_j w_j N_j),

where y_anchor is the canonical state (x/alpha in data form, x/sigma in noise form) at the start
of the current step and N_j are earlier converted model outputs; so ``step`` holds no ``.item()``
and no data-dependent branch (torch.compile-friendly). A single-step method with s stages makes
s calls per step, its stage times inserted into ``timesteps`` (Heun-style, ``order`` = s); a
multistep method makes one, with its starters (``warmup``) and diffusers' lower-order-final rule;
a corrected (PEC) one first replaces the anchor by the previous step redone with the new output.
A final sigma of 0 is the exact limit ``x = x0_hat`` (one call). Stochastic (SEEDS) methods take
``eta``, ``s_noise`` and ``method_options`` (their nodes); a call draws the unit normal of the
next Brownian sub-interval from ``variance_noise`` or ``generator`` when it first needs it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import torch

try:
    from diffusers import DPMSolverMultistepScheduler
    from diffusers.configuration_utils import ConfigMixin, register_to_config
    from diffusers.schedulers.scheduling_utils import (
        KarrasDiffusionSchedulers,
        SchedulerMixin,
        SchedulerOutput,
    )
    from diffusers.utils.torch_utils import randn_tensor
except ImportError as error:  # pragma: no cover - exercised only without diffusers
    raise ImportError(
        "phiforge.runtime.diffusers_scheduler needs diffusers: pip install 'phiforge[diffusers]'"
    ) from error

from phiforge.runtime.errors import InputError
from phiforge.runtime.schedules import RectifiedFlow, VPLinear
from phiforge.runtime.stepping import WARMUP_POLICIES, Step, load_method, plan_steps

__all__ = ["PhiforgeScheduler"]

# alpha, sigma as functions of lambda: any VP schedule for diffusers' VP sigmas, rectified flow
# for flow sigmas
_VP, _FLOW = VPLinear(), RectifiedFlow()
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction", "flow_prediction")


@dataclass(frozen=True)
class _Call:
    """One model call: where it is evaluated and how the next sample is formed."""

    lam: float
    alpha: float
    sigma: float
    anchor: bool
    scale: float  # canonical state = sample / scale (alpha or sigma at this call)
    decay: float  # A: factor on the anchor state
    terms: tuple[tuple[int, float], ...]  # (call index, weight) on converted outputs
    scale_next: float
    release: tuple[int, ...]  # outputs no longer needed after this call
    draw: bool = False  # stochastic methods: draw one unit normal at this call
    noise_terms: tuple[tuple[int, float], ...] = ()  # (call index of the draw, weight)
    # PEC (corrected multistep modules): the anchor is first replaced by
    # correct_decay * previous anchor + sum_j w_j N_j, the previous step redone with this output
    correct_decay: float | None = None
    correct_terms: tuple[tuple[int, float], ...] = ()


class PhiforgeScheduler(SchedulerMixin, ConfigMixin):
    """Any registered phiforge method (``method``) as a diffusers scheduler."""

    _compatibles: ClassVar[list[str]] = [e.name for e in KarrasDiffusionSchedulers]
    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: np.ndarray | list[float] | None = None,
        solver_order: int = 2,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        sample_max_value: float = 1.0,
        algorithm_type: str = "dpmsolver++",
        solver_type: str = "midpoint",
        lower_order_final: bool = True,
        euler_at_final: bool = False,
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        use_lu_lambdas: bool = False,
        use_flow_sigmas: bool = False,
        flow_shift: float = 1.0,
        final_sigmas_type: str = "zero",
        lambda_min_clipped: float = -float("inf"),
        variance_type: str | None = None,
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
        use_dynamic_shifting: bool = False,
        time_shift_type: str = "exponential",
        method: str = "res_2m",
        warmup: str = "lower-order",
        eta: float = 1.0,
        s_noise: float = 1.0,
        method_options: dict[str, float] | None = None,
    ) -> None:
        self._module = load_method(method)
        if prediction_type not in PREDICTION_TYPES:
            raise InputError(
                f"parameter 'prediction_type' must be one of {', '.join(PREDICTION_TYPES)}, got "
                f"{prediction_type!r}"
            )
        if warmup not in WARMUP_POLICIES:
            raise InputError(f"parameter 'warmup' must be one of {', '.join(WARMUP_POLICIES)}")
        self._grid = DPMSolverMultistepScheduler(
            num_train_timesteps=num_train_timesteps,
            beta_start=beta_start,
            beta_end=beta_end,
            beta_schedule=beta_schedule,
            trained_betas=trained_betas,
            solver_order=2,
            prediction_type=prediction_type,
            thresholding=thresholding,
            dynamic_thresholding_ratio=dynamic_thresholding_ratio,
            sample_max_value=sample_max_value,
            lower_order_final=lower_order_final,
            euler_at_final=euler_at_final,
            use_karras_sigmas=use_karras_sigmas,
            use_exponential_sigmas=use_exponential_sigmas,
            use_beta_sigmas=use_beta_sigmas,
            use_lu_lambdas=use_lu_lambdas,
            use_flow_sigmas=use_flow_sigmas,
            flow_shift=flow_shift,
            final_sigmas_type=final_sigmas_type,
            lambda_min_clipped=lambda_min_clipped,
            timestep_spacing=timestep_spacing,
            steps_offset=steps_offset,
            rescale_betas_zero_snr=rescale_betas_zero_snr,
            use_dynamic_shifting=use_dynamic_shifting,
            time_shift_type=time_shift_type,
        )
        self.alphas_cumprod = self._grid.alphas_cumprod
        self.init_noise_sigma = 1.0
        self.timesteps = self._grid.timesteps
        self.sigmas = self._grid.sigmas
        self.num_inference_steps: int | None = None
        self.order = self._module.NFE_PER_STEP if self._module.FAMILY == "singlestep" else 1
        self._program: list[_Call] = []
        self._values: dict[int, torch.Tensor] = {}
        self._draws: dict[int, torch.Tensor] = {}
        self._anchor: torch.Tensor | None = None
        self._step_index: int | None = None
        self._begin_index: int | None = None

    # --- bookkeeping as in diffusers -------------------------------------------------
    @property
    def step_index(self) -> int | None:
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start at call ``begin_index`` (img2img): the program is rebuilt from that grid point
        with a fresh multistep history, as diffusers' multistep scheduler warms up again."""
        self._begin_index = begin_index
        if not self._program or begin_index == 0:
            return
        flags = [is_outer for _, is_outer in self._times]
        if not (0 <= begin_index < len(flags)) or not flags[begin_index]:
            raise InputError(
                f"parameter 'begin_index' must be the index of a grid point (not a stage call) in "
                f"0..{len(flags) - 1}, got {begin_index}"
            )
        outer = sum(flags[:begin_index])
        times, outer_times = self._times, self.timesteps_outer
        self._build_program(self._lambdas[outer:], outer_times[outer:], begin_index)
        self._program = [None] * begin_index + self._program
        self._times, self.timesteps_outer = times, outer_times

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    def scale_model_input(self, sample: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return sample

    # --- schedule ------------------------------------------------------------------------
    def _lam(self, sigma: float) -> float:
        """log alpha - log sigma of a diffusers sigma (VP: sigma~ = sigma/alpha; flow: sigma)."""
        if sigma <= 0:
            return math.inf
        if self.config.use_flow_sigmas:
            return -math.inf if sigma >= 1 else math.log((1 - sigma) / sigma)
        return -math.log(sigma)

    def _alpha_sigma(self, lam: float) -> tuple[float, float]:
        schedule = _FLOW if self.config.use_flow_sigmas else _VP
        return schedule.alpha_sigma_of_lam(lam)

    def _model_time(self, lam: float) -> float:
        if self.config.use_flow_sigmas:
            return self._alpha_sigma(lam)[1] * self.config.num_train_timesteps
        log_sigmas = np.log(((1 - self.alphas_cumprod) / self.alphas_cumprod).numpy() ** 0.5)
        return float(self._grid._sigma_to_t(np.array(math.exp(-lam)), log_sigmas))

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        sigmas: list[float] | None = None,
        timesteps: list[int] | None = None,
        mu: float | None = None,
    ) -> None:
        """The grid of DPMSolverMultistepScheduler for this configuration (or the given sigmas or
        timesteps), then the call program of the method on it."""
        if sigmas is not None:
            outer = [float(s) for s in sigmas]
            if any(b >= a for a, b in itertools.pairwise(outer)):
                raise InputError("parameter 'sigmas' must be strictly decreasing")
            final = (
                0.0
                if self.config.final_sigmas_type == "zero"
                else float(self._grid.sigmas[-1] if self._grid.sigmas is not None else outer[-1])
            )
            outer_times = [self._model_time(self._lam(s)) for s in outer]
            outer.append(final)
            self.num_inference_steps = len(outer) - 1
        else:
            self._grid.set_timesteps(num_inference_steps, mu=mu, timesteps=timesteps)
            outer = [float(s) for s in self._grid.sigmas]
            outer_times = [float(t) for t in self._grid.timesteps]
            self.num_inference_steps = len(outer_times)
        lambdas = [self._lam(s) for s in outer]
        if not all(math.isfinite(v) for v in lambdas[:-1]):
            raise InputError("the grid may reach sigma = 0 only at its end")
        self._lambdas = lambdas
        self._build_program(lambdas, outer_times)
        times = torch.tensor([t for t, _ in self._times], dtype=torch.float64)
        integral = all(is_outer for _, is_outer in self._times)
        self.timesteps = (times.round().to(torch.int64) if integral else times.float()).to(device)
        self.sigmas = torch.tensor(outer, dtype=torch.float32)
        self._values, self._anchor, self._draws = {}, None, {}
        self._step_index = None
        self._begin_index = None

    def _steps(self, inner: list[float]) -> list[Step]:
        module = self._module
        steps = plan_steps(module, inner, warmup=self.config.warmup)
        n = len(self.timesteps_outer)
        short = self.config.lower_order_final and n < 15
        if module.FAMILY == "multistep" and module.STEPS > 2 and short and len(steps) >= 1:
            last = len(steps) - 1 if self._final_limit else len(steps) - 2
            replace = 0 <= last < len(steps) and steps[last].module.FAMILY == "multistep"
            if replace and steps[last].module.STEPS > 2:  # diffusers' lower_order_second
                steps[last] = Step(
                    load_method(module.WARMUP[1]), steps[last].lam, steps[last].lam_next
                )
        if not self._final_limit and steps and (self.config.euler_at_final or short):
            first_order = load_method(module.WARMUP[0]) if module.FAMILY == "multistep" else None
            if first_order is not None:
                steps[-1] = Step(first_order, steps[-1].lam, steps[-1].lam_next)
        return steps

    def _build_program(
        self, lambdas: list[float], outer_times: list[float], offset: int = 0
    ) -> None:
        """Compile the calls of the method on the grid; call indices start at ``offset``."""
        module: ModuleType = self._module
        prediction = module.PREDICTION or "data"
        self._noise_form = prediction == "noise"
        L = 1.0 if self._noise_form else -1.0
        self._final_limit = lambdas[-1] == math.inf
        inner = lambdas[:-1] if self._final_limit else lambdas
        self.timesteps_outer = outer_times
        calls: list[dict[str, Any]] = []
        times: list[tuple[float, bool]] = []

        def scale(lam: float) -> float:
            alpha, sigma = self._alpha_sigma(lam)
            return sigma if self._noise_form else alpha

        history: list[tuple[int, float]] = []  # (call index, lam) of grid-point evaluations
        pending: dict[str, Any] = {}  # the correction the next grid-point call applies
        for index, step in enumerate(self._steps(list(inner)) if len(inner) > 1 else []):
            h = step.lam_next - step.lam
            z = L * h
            first = offset + len(calls)
            times.append((outer_times[index], True))
            history.insert(0, (first, step.lam))
            correction, pending = pending, {}
            if correction:  # the new value, then the values the corrected step used
                correction["correct_terms"] = (
                    (first, correction.pop("new_weight")),
                    *correction["correct_terms"],
                )
            if h == 0:  # diffusers' grids may repeat their last sigma: a step of length 0
                calls.append(
                    dict(lam=step.lam, anchor=True, decay=1.0, terms=(), lam_next=step.lam_next)
                    | correction
                )
                continue
            if step.module.FAMILY == "multistep":
                k = step.module.STEPS
                points = [lam for _, lam in history[:k]]
                past = [points[m] - points[m + 1] for m in range(k - 1)]
                ratios = tuple(p / h for p in past)
                beta = step.module.weights(z, ratios)
                terms = tuple((history[m][0], h * beta[m]) for m in range(k))
                calls.append(
                    dict(
                        lam=step.lam,
                        anchor=True,
                        decay=math.exp(z),
                        terms=terms,
                        lam_next=step.lam_next,
                        **correction,
                    )
                )
                if getattr(step.module, "CORRECTED", False):
                    gamma = step.module.corrector_weights(z, ratios)
                    pending = dict(
                        correct_decay=math.exp(z),
                        new_weight=h * gamma[0],
                        correct_terms=tuple((history[m][0], h * gamma[m + 1]) for m in range(k)),
                    )
                continue
            stochastic = step.module.FAMILY == "stochastic"
            params = dict(self.config.method_options or {}) if stochastic else {}
            # SEEDS (spec-seeds-restart §2.2): data form z = -(1 + eta) h, noise form N scaled
            eta = float(self.config.eta) if stochastic else 0.0
            width = (1.0 + eta) * h if stochastic and not self._noise_form else h
            gain = 1.0 + eta if stochastic and self._noise_form else 1.0
            z = L * width
            a, b = step.module.coefficients(z, **params)
            nodes = step.module.nodes(**params) if stochastic else step.module.NODES
            noisy = step.module.noisy_nodes(**params) if stochastic else ()
            noise_on = stochastic and eta > 0 and self.config.s_noise != 0
            if noise_on:
                form = "noise" if self._noise_form else "data"
                noise_w = step.module.noise_weights(h, eta, form, **params)
            drawn = 0
            for stage in range(len(nodes)):
                lam_here = step.lam + nodes[stage] * h
                if stage > 0:
                    times.append((self._model_time(lam_here), False))
                if stage + 1 < len(nodes):
                    weights = a[stage + 1]
                    node = nodes[stage + 1]
                    target = step.lam + node * h
                    decay = math.exp(node * z)
                else:
                    weights, node, target, decay = b, 1.0, step.lam_next, math.exp(z)
                terms = tuple(
                    (first + j, width * gain * w)
                    for j, w in enumerate(weights[: stage + 1])
                    if w != 0
                )
                draw, noise_terms = False, ()
                if noise_on:
                    k = noisy.index(node)
                    draw = k >= drawn
                    drawn = max(drawn, k + 1)
                    factor = self.config.s_noise * (
                        1.0 if self._noise_form else math.exp(-(step.lam + node * h))
                    )
                    noise_terms = tuple((first + j, factor * noise_w[k][j]) for j in range(k + 1))
                calls.append(
                    dict(
                        lam=lam_here,
                        anchor=stage == 0,
                        decay=decay,
                        terms=terms,
                        lam_next=target,
                        draw=draw,
                        noise_terms=noise_terms,
                        **(correction if stage == 0 else {}),
                    )
                )
        if self._final_limit:
            last = offset + len(calls)
            times.append((outer_times[len(inner) - 1], True))
            calls.append(
                dict(
                    lam=inner[-1],
                    anchor=True,
                    decay=0.0,
                    terms=((last, 1.0),),
                    lam_next=math.inf,
                    limit=True,
                )
            )
        last_use: dict[int, int] = {}
        for n, call in enumerate(calls, start=offset):
            for j, _ in (*call["terms"], *call.get("correct_terms", ())):
                last_use[j] = n
        program = []
        for n, call in enumerate(calls, start=offset):
            alpha, sigma = self._alpha_sigma(call["lam"])
            limit = call.get("limit", False)
            program.append(
                _Call(
                    lam=call["lam"],
                    alpha=alpha,
                    sigma=sigma,
                    anchor=call["anchor"],
                    scale=sigma if self._noise_form else alpha,
                    decay=call["decay"],
                    terms=call["terms"],
                    scale_next=1.0 if limit else scale(call["lam_next"]),
                    release=tuple(j for j, last in last_use.items() if last == n),
                    draw=call.get("draw", False),
                    noise_terms=call.get("noise_terms", ()),
                    correct_decay=call.get("correct_decay"),
                    correct_terms=call.get("correct_terms", ()),
                )
            )
        self._limit_calls = {n for n, call in enumerate(calls, start=offset) if call.get("limit")}
        self._program = program
        self._times = times

    # --- the step --------------------------------------------------------------------
    def _data_prediction(self, output: torch.Tensor, sample: torch.Tensor, call: _Call):
        kind = self.config.prediction_type
        if kind == "epsilon":
            x0 = (sample - call.sigma * output) / call.alpha
        elif kind == "sample":
            x0 = output
        elif kind == "v_prediction":
            x0 = call.alpha * sample - call.sigma * output
        else:  # flow_prediction: velocity d x/d t = eps - x0 on the path (1 - t) x0 + t eps
            x0 = sample - call.sigma * output
        if self.config.thresholding:
            x0 = self._grid._threshold_sample(x0)
        return x0

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        variance_noise: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple:
        """One model call of the program: store the converted output, return the next sample."""
        if not self._program:
            raise InputError("run 'set_timesteps' before 'step'")
        if self._step_index is None:
            self._step_index = self._begin_index or 0
        n = self._step_index
        call = self._program[n]
        work = (
            sample.to(torch.float32) if sample.dtype in (torch.float16, torch.bfloat16) else sample
        )
        x0 = self._data_prediction(model_output.to(work.dtype), work, call)
        if n in self._limit_calls:
            prev = x0
        else:
            value = -(work - call.alpha * x0) / call.sigma if self._noise_form else x0
            self._values[n] = value
            if call.anchor:
                if call.correct_decay is not None:  # PEC: the previous step, corrected
                    corrected = call.correct_decay * self._anchor
                    for j, weight in call.correct_terms:
                        corrected = corrected + weight * self._values[j]
                    self._anchor = corrected
                else:
                    self._anchor = work / call.scale
            if call.draw:  # one unit normal per Brownian sub-interval (stochastic methods)
                self._draws[n] = (
                    variance_noise.to(device=work.device, dtype=work.dtype)
                    if variance_noise is not None
                    else randn_tensor(
                        work.shape, generator=generator, device=work.device, dtype=work.dtype
                    )
                )
            prev = call.decay * self._anchor
            for j, weight in call.terms:
                prev = prev + weight * self._values[j]
            for j, weight in call.noise_terms:
                prev = prev + weight * self._draws[j]
            prev = call.scale_next * prev
            for j in call.release:
                self._values.pop(j, None)
        self._step_index = n + 1
        prev = prev.to(sample.dtype)
        if not return_dict:
            return (prev,)
        return SchedulerOutput(prev_sample=prev)

    def add_noise(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """x_t = alpha_t x0 + sigma_t eps at the given (possibly fractional) timesteps."""
        t = torch.as_tensor(timesteps, dtype=torch.float64).reshape(-1).cpu().numpy()
        if self.config.use_flow_sigmas:
            sigma = t / self.config.num_train_timesteps
            alpha = 1.0 - sigma
        else:
            cumprod = self.alphas_cumprod.double().numpy()
            alpha_bar = np.interp(t, np.arange(cumprod.size), cumprod)
            alpha, sigma = np.sqrt(alpha_bar), np.sqrt(1.0 - alpha_bar)
        shape = (-1,) + (1,) * (original_samples.ndim - 1)
        alpha_t = torch.as_tensor(
            alpha, dtype=original_samples.dtype, device=original_samples.device
        ).reshape(shape)
        sigma_t = torch.as_tensor(
            sigma, dtype=original_samples.dtype, device=original_samples.device
        ).reshape(shape)
        return alpha_t * original_samples + sigma_t * noise
