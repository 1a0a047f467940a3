"""A diffusers scheduler running any registered phiforge method (extra ``phiforge[diffusers]``).

``PhiforgeScheduler`` takes DPMSolverMultistepScheduler's configuration keys (so
``PhiforgeScheduler.from_config(pipe.scheduler.config, method="res_3m")`` works) plus ``method``
and ``warmup``. Its grid is the one DPMSolverMultistepScheduler builds for the same
configuration (timestep spacing, Karras/exponential/beta/Lu sigmas, flow sigmas and shift,
final sigma), computed by an internal instance of that scheduler.

The method runs in log-SNR time through phiforge's one planner and executor
(:mod:`phiforge.runtime.plan`, :mod:`phiforge.runtime.engine`): ``set_timesteps`` plans the whole
run as one program of model calls and linear combinations (every coefficient a number), and each
``step`` hands the executor the converted output of one call, lets it run on to the next call and
returns the state that call is to be made at; so ``step`` holds no ``.item()`` and no
data-dependent branch, and no per-method code. A method with s calls per step has its stage times
inserted into ``timesteps`` (Heun-style, ``order`` = s); a multistep method makes one, with its
starters (``warmup``) and diffusers' lower-order-final rule. A final sigma of 0 is the exact
limit ``x = x0_hat`` (one call). Stochastic (SEEDS) methods take ``eta``, ``s_noise`` and
``method_options`` (their nodes); a call draws the unit normal of the next Brownian sub-interval
from ``variance_noise`` or ``generator`` when it first needs it. A NaN or inf from the model is
reported with its call's step and sigma once the last call is made. ``set_timesteps(sigmas=S)``
with a 2-D ``S`` (one row per sample), or ``set_timesteps(timesteps=T)`` with a 2-D ``T`` (one
row of training timesteps per sample; VP configurations), gives every sample its own grid
(per-sample timesteps, which diffusers' own schedulers do not offer). Every configuration key
and every argument is checked before it reaches diffusers (``CONFIG_CHECKS``).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import torch

try:
    from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler
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

from phiforge.runtime.checks import (
    check_device,
    check_flag,
    check_integer,
    check_mapping,
    check_nonnegative,
    check_real,
)
from phiforge.runtime.engine import Evaluate, Execution, Program
from phiforge.runtime.errors import InputError, ModelOutputError
from phiforge.runtime.methods import load_method
from phiforge.runtime.plan import (
    Builder,
    merge_programs,
    place_steps,
    place_zero_snr_start,
    schedule_form,
)
from phiforge.runtime.schedules import RectifiedFlow, VPLinear
from phiforge.runtime.step_plan import WARMUP_POLICIES, diffusers_final_steps, plan_steps
from phiforge.runtime.timesteps import per_sample_rows

__all__ = ["PhiforgeScheduler"]

# alpha, sigma as functions of lambda: any VP schedule for diffusers' VP sigmas, rectified flow
# for flow sigmas
_VP, _FLOW = VPLinear(), RectifiedFlow()
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction", "flow_prediction")
# a grid sigma that rises by at most this much in log-SNR is diffusers' repeated final sigma in
# float32 round-off (use_lu_lambdas with final_sigmas_type='sigma_min' rises by 2e-7): a step
# of length zero, as diffusers' own step of that length all but is
_ROUNDOFF_LAMBDA = 1e-5
# the keys of a flow-matching scheduler's config (FlowMatchEulerDiscreteScheduler and kin) that
# shape its grid; from_config of such a config keeps them and runs on that grid
_FLOW_MATCH_KEYS = (
    "shift",
    "use_dynamic_shifting",
    "base_shift",
    "max_shift",
    "base_image_seq_len",
    "max_image_seq_len",
    "invert_sigmas",
    "shift_terminal",
    "use_karras_sigmas",
    "use_exponential_sigmas",
    "use_beta_sigmas",
    "time_shift_type",
)


def _choice(*allowed: Any) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if not any(value is a or (isinstance(value, str) and value == a) for a in allowed):
            raise InputError(
                f"parameter {name!r} must be one of {', '.join(map(repr, allowed))}, got {value!r}"
            )

    return check


def _in_range(low: float, high: float, *, closed_high: bool = False) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        number = check_real(name, value)
        if not (low < number < high or (closed_high and number == high)):
            bracket = "]" if closed_high else ")"
            raise InputError(
                f"parameter {name!r} must be in ({low:g}, {high:g}{bracket}, got {value!r}"
            )

    return check


def _integer(least: int, most: int) -> Callable[[str, Any], None]:
    return lambda name, value: check_integer(name, value, least, most)


def _not_nan(name: str, value: Any) -> None:
    if math.isnan(check_real(name, value)):
        raise InputError(f"parameter {name!r} must be a number or -inf (not NaN)")


def _betas(name: str, value: Any) -> None:
    if value is None:
        return
    try:
        betas = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        betas = None
    if betas is None or betas.ndim != 1 or betas.size == 0 or not ((betas > 0) & (betas < 1)).all():
        raise InputError(f"parameter {name!r} must be a 1-D sequence of betas in (0, 1), or None")


def _folder(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, str | os.PathLike):
        raise InputError(f"parameter {name!r} must be a folder (a path) or None, got {value!r}")


def _method_name(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise InputError(f"parameter {name!r} must be a registered method's name, got {value!r}")


def _mapping(name: str, value: Any) -> None:
    check_mapping(name, value, "values")
    if name == "method_options":
        for key, number in (value or {}).items():
            check_real(f"method_options[{key!r}]", number)


_FLAG = check_flag
#: the configuration keys and their checks, made before any of them reaches diffusers; the
#: allowed values are DPMSolverMultistepScheduler's (diffusers 0.3x) and FlowMatch's shift types
CONFIG_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "num_train_timesteps": _integer(2, 10**7),
    "beta_start": _in_range(0.0, 1.0),
    "beta_end": _in_range(0.0, 1.0),
    "beta_schedule": _choice("linear", "scaled_linear", "squaredcos_cap_v2"),
    "trained_betas": _betas,
    "solver_order": _integer(1, 3),
    "thresholding": _FLAG,
    "dynamic_thresholding_ratio": _in_range(0.0, 1.0, closed_high=True),
    "sample_max_value": _in_range(0.0, math.inf),
    "algorithm_type": _choice("dpmsolver", "dpmsolver++", "sde-dpmsolver", "sde-dpmsolver++"),
    "solver_type": _choice("midpoint", "heun", "logrho", "bh1", "bh2"),
    "lower_order_final": _FLAG,
    "euler_at_final": _FLAG,
    "use_karras_sigmas": _FLAG,
    "use_exponential_sigmas": _FLAG,
    "use_beta_sigmas": _FLAG,
    "use_lu_lambdas": _FLAG,
    "use_flow_sigmas": _FLAG,
    "flow_shift": _in_range(0.0, math.inf),
    "final_sigmas_type": _choice("zero", "sigma_min"),
    "lambda_min_clipped": _not_nan,
    "variance_type": _choice(None, "learned", "learned_range"),
    "timestep_spacing": _choice("linspace", "leading", "trailing"),
    "steps_offset": _integer(0, 10**7),
    "rescale_betas_zero_snr": _FLAG,
    "use_dynamic_shifting": _FLAG,
    "time_shift_type": _choice("exponential", "linear"),
    "method": _method_name,
    "warmup": _choice(*WARMUP_POLICIES),
    "eta": check_nonnegative,
    "s_noise": check_nonnegative,
    "method_options": _mapping,
    "registry": _folder,
    "flow_match": _mapping,
}


def _is_flow_match(config: Any) -> bool:
    name = str(config.get("_class_name", ""))
    return name.startswith("FlowMatch") or ("shift" in config and "beta_start" not in config)


def _numbers(name: str, value: Any) -> Any:
    """``value`` (None, or a 1-D or 2-D tensor, array or sequence of real numbers), refusing
    strings, mappings, scalars and non-numeric entries by name."""
    if value is None:
        return None
    message = f"parameter {name!r} must be a non-empty sequence of numbers, got {value!r}"
    if isinstance(value, str | bytes | Mapping):
        raise InputError(message)
    try:
        table = np.asarray(value.cpu() if isinstance(value, torch.Tensor) else value)
        numbers = table.astype(np.float64)
    except (TypeError, ValueError):  # ragged rows, entries that are no numbers
        raise InputError(message) from None
    if table.ndim == 0 or table.dtype.kind not in "iuf" or numbers.size == 0:
        raise InputError(message)
    if np.isnan(numbers).any():
        raise InputError(f"parameter {name!r} holds NaN")
    return value


def _real_tensor(name: str, value: Any, like: torch.Tensor | None = None) -> None:
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        kind = value.dtype if isinstance(value, torch.Tensor) else type(value).__name__
        raise InputError(f"parameter {name!r} must be a floating-point tensor, got {kind}")
    if like is not None and value.shape != like.shape:
        raise InputError(
            f"parameter {name!r} must have the sample's shape {tuple(like.shape)}, got "
            f"{tuple(value.shape)}"
        )


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
        registry: str | None = None,
        flow_match: dict[str, Any] | None = None,
    ) -> None:
        given = locals()
        for name, check in CONFIG_CHECKS.items():
            check(name, given[name])
        self._module = load_method(method, registry)
        if prediction_type not in PREDICTION_TYPES:
            raise InputError(
                f"parameter 'prediction_type' must be one of {', '.join(PREDICTION_TYPES)}, got "
                f"{prediction_type!r}"
            )
        if warmup not in WARMUP_POLICIES:
            raise InputError(f"parameter 'warmup' must be one of {', '.join(WARMUP_POLICIES)}")
        if flow_match is not None:  # the grid of a flow-matching scheduler (from_config)
            unknown = sorted(set(flow_match) - set(_FLOW_MATCH_KEYS))
            if unknown or not use_flow_sigmas or prediction_type != "flow_prediction":
                raise InputError(
                    "parameter 'flow_match' holds a flow-matching scheduler's grid settings "
                    f"({', '.join(_FLOW_MATCH_KEYS)}) with use_flow_sigmas=True and "
                    f"prediction_type='flow_prediction'; unknown keys: {unknown or 'none'}"
                )
            try:
                self._grid = FlowMatchEulerDiscreteScheduler(
                    num_train_timesteps=num_train_timesteps, **flow_match
                )
            except (TypeError, ValueError) as error:
                raise InputError(f"parameter 'flow_match': {error}") from None
            self.alphas_cumprod = None
            self.init_noise_sigma = 1.0
            self.timesteps = self._grid.timesteps
            self.sigmas = self._grid.sigmas
            self._reset()
            return
        self._grid = DPMSolverMultistepScheduler(
            num_train_timesteps=num_train_timesteps,
            beta_start=float(beta_start),
            beta_end=float(beta_end),
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
            lambda_min_clipped=float(lambda_min_clipped),
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
        self._reset()

    @classmethod
    def from_config(cls, config: Any = None, **kwargs: Any) -> PhiforgeScheduler:
        """As diffusers' ``from_config``; a flow-matching scheduler's config (e.g.
        ``FlowMatchEulerDiscreteScheduler``'s: ``shift``, dynamic shifting) becomes a flow
        scheduler on that scheduler's own grid (velocity outputs, sigma = t, a zero-SNR start
        at t = 1 taken as its exact limit) instead of being read as a VP configuration."""
        if config is not None and _is_flow_match(config) and "flow_match" not in config:
            config = dict(config)
            grid = {k: config.pop(k) for k in _FLOW_MATCH_KEYS if k in config}
            config.pop("stochastic_sampling", None)
            config.pop("_use_default_values", None)
            config.update(
                use_flow_sigmas=True,
                prediction_type="flow_prediction",
                flow_shift=float(grid.get("shift", 1.0)),
                flow_match=grid,
            )
        return super().from_config(config, **kwargs)

    def _reset(self) -> None:
        self.num_inference_steps: int | None = None
        self.order = int(self._module.NFE_PER_STEP)  # model calls per step
        self._program: Program | None = None
        self._run: Execution | None = None
        self._step_index: int | None = None
        self._begin_index: int | None = None
        self._columns: dict = {}  # per-sample alpha/sigma columns (_alpha_sigma_of)

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
        if self._program is None or begin_index == 0:
            return
        if self._lambdas is None:
            raise InputError(
                "parameter 'begin_index' needs one grid for the batch, not one per sample"
            )
        flags = [is_outer for _, is_outer in self._times]
        if not (0 <= begin_index < len(flags)) or not flags[begin_index]:
            raise InputError(
                f"parameter 'begin_index' must be the index of a grid point (not a stage call) in "
                f"0..{len(flags) - 1}, got {begin_index}"
            )
        outer = sum(flags[:begin_index])
        times = self._times
        self._build_program(self._lambdas[outer:], self.timesteps_outer[outer:])
        self._times = times

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
        timesteps), then the call program of the method on it. A 2-D ``sigmas`` or ``timesteps``
        (one row per sample, phiforge's extension) gives every sample its own grid:
        ``timesteps`` then has a column per sample (pass each row to the model as its
        per-sample timesteps)."""
        device = None if device is None else check_device(device)
        sigmas, timesteps = _numbers("sigmas", sigmas), _numbers("timesteps", timesteps)
        if mu is not None:
            if not math.isfinite(check_real("mu", mu)):
                raise InputError(f"parameter 'mu' must be a finite number, got {mu!r}")
            if self.config.flow_match is None and not self.config.use_dynamic_shifting:
                raise InputError(
                    "parameter 'mu' (the dynamic shift's exponent) needs use_dynamic_shifting=True"
                )
        per_sample = per_sample_rows("sigmas", sigmas)
        by_time = per_sample_rows("timesteps", timesteps)
        if by_time is not None:  # per-sample timesteps: each row's grid as diffusers makes it
            if self.config.flow_match is not None or self.config.use_flow_sigmas:
                raise InputError(
                    "parameter 'timesteps': a per-sample grid of a flow scheduler is given as "
                    "2-D 'sigmas'"
                )
            self._check_times(by_time[1])
            rows = []
            for row in by_time[1]:
                try:
                    self._grid.set_timesteps(timesteps=row)
                except (TypeError, ValueError) as error:
                    raise InputError(f"set_timesteps: {error}") from None
                rows.append(([float(v) for v in self._grid.sigmas], self._grid.timesteps.tolist()))
            self._set_per_sample(rows, device)
            return
        if per_sample is not None:
            self._set_per_sample([self._given(row) for row in per_sample[1]], device)
            return
        if self.config.flow_match is not None:  # the flow-matching scheduler's own grid
            if num_inference_steps is not None:
                self._check_steps(num_inference_steps)
            try:
                self._grid.set_timesteps(
                    num_inference_steps, sigmas=sigmas, mu=mu, timesteps=timesteps
                )
            except (TypeError, ValueError) as error:
                raise InputError(f"set_timesteps: {error}") from None
            outer = [float(s) for s in self._grid.sigmas]
            outer_times = [float(t) for t in self._grid.timesteps]
            self.num_inference_steps = len(outer_times)
        elif sigmas is not None:
            outer, outer_times = self._given(sigmas)
            self.num_inference_steps = len(outer) - 1
        else:
            if timesteps is None:
                self._check_steps(num_inference_steps)
            else:
                self._check_times(timesteps)
            try:
                self._grid.set_timesteps(num_inference_steps, mu=mu, timesteps=timesteps)
            except (AssertionError, TypeError, ValueError) as error:
                raise InputError(f"set_timesteps: {error}") from None
            outer = [float(s) for s in self._grid.sigmas]
            outer_times = [float(t) for t in self._grid.timesteps]
            self.num_inference_steps = len(outer_times)
        self._lambdas = self._checked_lambdas(outer)
        self._build_program(self._lambdas, outer_times)
        times = torch.tensor([t for t, _ in self._times], dtype=torch.float64)
        integral = self.config.flow_match is None and all(is_outer for _, is_outer in self._times)
        self.timesteps = (times.round().to(torch.int64) if integral else times.float()).to(device)
        self.sigmas = torch.tensor(outer, dtype=torch.float32)
        self._run = None
        self._step_index = None
        self._begin_index = None

    def _check_times(self, timesteps: Any) -> None:
        last = self.config.num_train_timesteps - 1
        given = np.asarray(timesteps, dtype=np.float64).reshape(-1)
        if not ((given >= 0) & (given <= last)).all():
            raise InputError(
                f"parameter 'timesteps' must hold training timesteps in [0, {last}], "
                f"got {timesteps!r}"
            )

    def _check_steps(self, steps: Any) -> None:
        limit = self.config.num_train_timesteps
        if (
            isinstance(steps, bool)
            or not isinstance(steps, int | np.integer)
            or not (1 <= steps <= limit)
        ):
            raise InputError(
                f"parameter 'num_inference_steps' must be an integer in 1..{limit} (the training "
                f"steps), got {steps!r}"
            )

    def _given(self, sigmas: Any) -> tuple[list[float], list[float]]:
        """Given sigmas (descending) with the configured final sigma appended, and their model
        times."""
        outer = [float(s) for s in sigmas]
        if any(b >= a for a, b in itertools.pairwise(outer)):
            raise InputError("parameter 'sigmas' must be strictly decreasing")
        final = 0.0
        if self.config.final_sigmas_type == "sigma_min":  # diffusers' sigma_last, in float32
            first = float(self._grid.alphas_cumprod[0])
            final = float(np.float32(((1 - first) / first) ** 0.5))
        outer_times = [self._model_time(self._lam(s)) for s in outer]
        return [*outer, final], outer_times

    def _checked_lambdas(self, outer: list[float]) -> list[float]:
        """The log-SNR of the grid's sigmas, which must not rise: a rise within float32
        round-off is a step of length zero (:data:`_ROUNDOFF_LAMBDA`), a larger one refused."""
        lambdas = [self._lam(s) for s in outer]
        if any(v == math.inf for v in lambdas[:-1]):
            raise InputError("the grid may reach sigma = 0 only at its end")
        if any(v == -math.inf for v in lambdas[1:]):
            raise InputError("the grid may start at zero SNR (flow sigma 1) only at its start")
        for i in range(1, len(lambdas)):
            if lambdas[i] < lambdas[i - 1] <= lambdas[i] + _ROUNDOFF_LAMBDA:
                lambdas[i] = lambdas[i - 1]
            elif lambdas[i] < lambdas[i - 1]:
                raise InputError(
                    f"the grid's sigma rises from {outer[i - 1]:.6g} to {outer[i]:.6g} at step "
                    f"{i - 1} (with final_sigmas_type='sigma_min' the grid ends at the training "
                    "sigma_min: given sigmas may not go below it)"
                )
        return lambdas

    def _set_per_sample(
        self, rows: list[tuple[list[float], list[float]]], device: str | torch.device | None
    ) -> None:
        """One grid per sample (each row's sigmas, final one included, and model times): the
        programs of the rows, merged (runtime.plan.merge_programs)."""
        programs, times = [], []
        for outer, outer_times in rows:
            self._build_program(self._checked_lambdas(outer), outer_times, keep_all=True)
            programs.append(self._program)
            times.append([t for t, _ in self._times])
        self._program = merge_programs(programs)
        self._call_lams = [op.lam for op in self._program.ops if isinstance(op, Evaluate)]
        self._times = [
            (tuple(column), is_outer)
            for column, (_, is_outer) in zip(zip(*times, strict=True), self._times, strict=True)
        ]
        self.timesteps = torch.tensor(times, dtype=torch.float64).T.float().to(device)
        self.sigmas = torch.tensor([outer[:-1] for outer, _ in rows], dtype=torch.float32)
        self.num_inference_steps = self.sigmas.shape[1]
        self._lambdas = None  # set_begin_index needs one grid
        self._run = None
        self._step_index = None
        self._begin_index = None

    def _build_program(
        self, lambdas: list[float], outer_times: list[float], keep_all: bool = False
    ) -> None:
        """The run's program on the grid (runtime.plan) and the model time of each of its calls:
        a grid point's diffusers timestep, a stage's the model time of its log-SNR."""
        module: ModuleType = self._module
        final_limit = lambdas[-1] == math.inf
        start_limit = lambdas[0] == -math.inf  # flow matching's t = 1
        inner = lambdas[int(start_limit) : len(lambdas) - int(final_limit)]
        steps = plan_steps(module, inner, warmup=self.config.warmup) if len(inner) > 1 else []
        steps = diffusers_final_steps(
            steps,
            module,
            len(outer_times),
            final_limit,
            self.config.lower_order_final,
            self.config.euler_at_final,
        )
        form = schedule_form(self._alpha_sigma, module.PREDICTION or "data")
        options = {
            "eta": float(self.config.eta),
            "s_noise": float(self.config.s_noise),
            **dict(self.config.method_options or {}),
        }
        builder = Builder(keep_all)
        state = builder.input()
        if start_limit:
            state = place_zero_snr_start(
                builder, state, self._alpha_sigma, inner[0], grid=True, report=False
            )
        state, _ = place_steps(
            builder, steps, state, form, options=options, report=False, zero_steps=True
        )
        if final_limit:  # to sigma = 0: x = x0_hat(x, lam_last), one call
            state = builder.evaluate(state, inner[-1], grid=True)
        self._program = builder.finish([state])
        self._call_lams = [op.lam for op in self._program.ops if isinstance(op, Evaluate)]
        grid_times = iter(outer_times)
        self._times = [
            (next(grid_times), True) if op.grid else (self._model_time(op.lam), False)
            for op in self._program.ops
            if isinstance(op, Evaluate)
        ]
        self.timesteps_outer = outer_times

    def _alpha_sigma_of(self, lam: float | tuple[float, ...], like: torch.Tensor):
        """alpha and sigma at lam: floats, or for per-sample grids (a tuple of log-SNRs) columns
        shaped to broadcast over ``like``, made once per call point, dtype and device."""
        if not isinstance(lam, tuple):
            return self._alpha_sigma(lam)
        key = (lam, like.dtype, like.device, like.ndim)
        columns = self.__dict__.setdefault("_columns", {})
        if key not in columns:
            pairs = torch.tensor([self._alpha_sigma(value) for value in lam], dtype=like.dtype)
            shape = (-1, *([1] * (like.ndim - 1)))
            columns[key] = tuple(pairs[:, k].reshape(shape).to(like.device) for k in (0, 1))
        return columns[key]

    def _nonfinite(self, error: ModelOutputError) -> ModelOutputError:
        """The executor's report, with the call numbered as diffusers numbers them."""
        calls = [op for op in self._program.ops if isinstance(op, Evaluate)]
        index = (self._begin_index or 0) + calls.index(error.call)
        lams = error.call.lam if isinstance(error.call.lam, tuple) else (error.call.lam,)
        sigmas = ", ".join(f"{math.exp(-lam):.6g}" for lam in lams)
        times = ", ".join(f"{t:.6g}" for t in self.timesteps[index].reshape(-1).tolist())
        return ModelOutputError(
            f"the model returned NaN or inf at step() call {index} (timestep {times}, "
            f"sigma~ = {sigmas}); reported after the last call"
        )

    def alpha_sigma(self, index: int | None = None) -> tuple[float, float]:
        """alpha and sigma (x = alpha x0 + sigma eps) of model call ``index`` (default: the next
        one), for callers that convert a model's output themselves."""
        if self._program is None:
            raise InputError("run 'set_timesteps' before 'alpha_sigma'")
        first = self._begin_index or 0
        index = (self._step_index or first) if index is None else index
        lams = self._call_lams
        if not first <= index < first + len(lams):
            raise InputError(
                f"parameter 'index' must be a model call in {first}..{first + len(lams) - 1}, "
                f"got {index}"
            )
        lam = lams[index - first]
        if isinstance(lam, tuple):  # per-sample grids: one pair per sample
            return tuple(zip(*(self._alpha_sigma(value) for value in lam), strict=True))
        return self._alpha_sigma(lam)

    # --- the step --------------------------------------------------------------------
    def _data_prediction(self, output: torch.Tensor, sample: torch.Tensor, lam: float):
        """The model's output as x0_hat at log-SNR lam (the one conversion, once per call); a
        tuple of log-SNRs (per-sample grids) gives per-sample columns."""
        alpha, sigma = self._alpha_sigma_of(lam, sample)
        kind = self.config.prediction_type
        if kind == "epsilon":
            x0 = (sample - sigma * output) / alpha
        elif kind == "sample":
            x0 = output
        elif kind == "v_prediction":
            x0 = alpha * sample - sigma * output
        else:  # flow_prediction: velocity d x/d t = eps - x0 on the path (1 - t) x0 + t eps
            x0 = sample - sigma * output
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
        """One model call of the program: hand the converted output to the executor, which runs
        on to the next call and returns the state it is to be made at (the next sample)."""
        if self._program is None:
            raise InputError("run 'set_timesteps' before 'step'")
        self._check_step(model_output, sample, generator, variance_noise, return_dict)
        if self._step_index is None:
            self._step_index = self._begin_index or 0
        work = (
            sample.to(torch.float32) if sample.dtype in (torch.float16, torch.bfloat16) else sample
        )
        if self._run is None or self._run.done:
            if self._run is not None:
                raise InputError(
                    f"'step' called after the last of the {len(self.timesteps)} model calls; "
                    "run 'set_timesteps' again"
                )
            self._run = Execution(self._program, [work])
            self._run.run()

        def unit_normal(lam_a: float, lam_b: float) -> torch.Tensor:
            if variance_noise is not None:
                return variance_noise.to(device=work.device, dtype=work.dtype)
            return randn_tensor(
                work.shape, generator=generator, device=work.device, dtype=work.dtype
            )

        call = self._run.waiting
        if call.grid:  # the caller's sample at a grid point (it may have edited it: inpainting)
            self._run.buffer[call.state] = work
        try:
            self._run.give(self._data_prediction(model_output.to(work.dtype), work, call.lam))
            self._run.noise = unit_normal
            result = self._run.run()
        except ModelOutputError as error:
            raise self._nonfinite(error) from None

        prev = result[0] if self._run.done else result
        self._step_index += 1
        prev = prev.to(sample.dtype)
        if not return_dict:
            return (prev,)
        return SchedulerOutput(prev_sample=prev)

    def _check_step(
        self,
        model_output: Any,
        sample: Any,
        generator: Any,
        variance_noise: Any,
        return_dict: Any,
    ) -> None:
        """step()'s arguments: real floating tensors of one shape (the noise too), a generator,
        a flag; diffusers' thresholding needs (batch, channels, ...) samples."""
        _real_tensor("sample", sample)
        _real_tensor("model_output", model_output, like=sample)
        if variance_noise is not None:
            _real_tensor("variance_noise", variance_noise, like=sample)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise InputError(f"parameter 'generator' must be a torch.Generator, got {generator!r}")
        check_flag("return_dict", return_dict)
        if self.config.thresholding and sample.ndim < 3:
            raise InputError(
                "parameter 'sample' must have shape (batch, channels, ...) with thresholding=True "
                f"(diffusers' dynamic thresholding works per channel), got {tuple(sample.shape)}"
            )

    def scale_noise(
        self, sample: torch.Tensor, timestep: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """Flow matching's name for :meth:`add_noise` (img2img pipelines of flow models)."""
        return self.add_noise(sample, noise, timestep)

    def add_noise(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """x_t = alpha_t x0 + sigma_t eps at the given (possibly fractional) training timesteps:
        one per sample, or one for all (a number or a 0-d tensor). Any training timestep gives
        its own noise level; diffusers' multistep scheduler reads a timestep off its inference
        grid as that grid's last sigma."""
        _real_tensor("original_samples", original_samples)
        _real_tensor("noise", noise, like=original_samples)
        one = isinstance(timesteps, int | float) and not isinstance(timesteps, bool)
        if one or (isinstance(timesteps, torch.Tensor) and timesteps.ndim == 0):
            timesteps = torch.as_tensor(timesteps).reshape(1)  # one time for all samples
        given = _numbers("timesteps", timesteps)
        t = np.asarray(given if given is not None else [], dtype=np.float64).reshape(-1)
        last = self.config.num_train_timesteps - (0 if self.config.use_flow_sigmas else 1)
        if t.size not in (1, original_samples.shape[0]) or not ((t >= 0) & (t <= last)).all():
            raise InputError(
                f"parameter 'timesteps' must hold one time in [0, {last}] per sample (or one for "
                f"all), got {timesteps!r}"
            )
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
