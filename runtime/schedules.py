"""Noise schedules of Gaussian diffusion models, each mapped onto log-SNR time.

A forward process ``x_t = alpha_t x0 + sigma_t eps`` is described by ``alpha(t)``, ``sigma(t)``
and the half log-SNR ``lambda(t) = log alpha_t - log sigma_t`` (spec-dpmsolver-res §1.1),
strictly decreasing in t. The solvers work in lambda only; a schedule supplies the maps
between t and lambda, ``alpha`` and ``sigma`` as functions of lambda (so that the endpoints
lambda = -inf (zero SNR) and +inf (sigma = 0) are exact limits, never log 0), the time the
model is conditioned on, and d alpha/dt, d sigma/dt (for flow-velocity outputs).

All values are float64 (numpy); the torch layer only ever sees Python floats from here.

Schedules (spec-dpmsolver-res §6, §1.5; Karras et al. 2022 for EDM; Liu et al. 2022 and
Lipman et al. 2022 for rectified flow):

- ``VPLinear``:  log alpha = -(b1 - b0) t^2/4 - b0 t/2, sigma^2 = 1 - alpha^2 (ScoreSDE).
- ``VPCosine``:  alpha = cos((t + s)/(1 + s) pi/2) / cos(s/(1 + s) pi/2) (Nichol & Dhariwal).
- ``DiscreteVP``: DDPM betas or alphas_cumprod, log alpha piecewise linear through
  t_n = (n + 1)/N (spec §6.2), model time 1000 (t - 1/N).
- ``VE``:        alpha = 1, sigma = s_min (s_max/s_min)^t (ScoreSDE VE).
- ``EDM``:       alpha = 1, sigma = t.
- ``RectifiedFlow``: alpha = 1 - t, sigma = t.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from phiforge.runtime.checks import check_real
from phiforge.runtime.errors import InputError

__all__ = [
    "EDM",
    "SCHEDULES",
    "VE",
    "DiscreteVP",
    "NoiseSchedule",
    "RectifiedFlow",
    "VPCosine",
    "VPLinear",
    "noise_schedule",
]

ArrayLike = float | np.ndarray | Sequence[float]


def _array(value: ArrayLike) -> np.ndarray:
    return np.asarray(value, dtype=np.float64)


def _scalar_or_array(value: np.ndarray) -> float | np.ndarray:
    return float(value) if value.ndim == 0 else value


def _log_sigmoid_float(x: float) -> float:
    """log(1/(1 + e^-x)) for a Python float, exact limits at +-inf."""
    if x >= 0:
        return -math.log1p(math.exp(-x))
    if x == -math.inf:
        return -math.inf
    return x - math.log1p(math.exp(x))


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    """log(1/(1 + e^-x)) without overflow; exact limits at +-inf."""
    with np.errstate(over="ignore"):
        return -np.logaddexp(0.0, -x)


class NoiseSchedule:
    """Base class: subclasses define alpha/sigma as functions of t and of lambda."""

    name: str = ""
    #: default sampling interval [t_end, t_start] of the schedule's time variable
    t_start: float = 1.0
    t_end: float = 1e-3
    #: VP schedules have alpha^2 + sigma^2 = 1 (alpha and sigma follow from lambda alone)
    variance_preserving: bool = True

    # --- time-dependent quantities -------------------------------------------------------
    def log_alpha(self, t: ArrayLike) -> float | np.ndarray:
        raise NotImplementedError

    def log_sigma(self, t: ArrayLike) -> float | np.ndarray:
        t = _array(t)
        # VP: sigma^2 = 1 - alpha^2 = -expm1(2 log alpha)
        return _scalar_or_array(0.5 * np.log(-np.expm1(2.0 * _array(self.log_alpha(t)))))

    def alpha(self, t: ArrayLike) -> float | np.ndarray:
        return _scalar_or_array(np.exp(_array(self.log_alpha(t))))

    def sigma(self, t: ArrayLike) -> float | np.ndarray:
        return _scalar_or_array(np.exp(_array(self.log_sigma(t))))

    def lam(self, t: ArrayLike) -> float | np.ndarray:
        """Half log-SNR lambda(t) = log alpha_t - log sigma_t (may be +-inf at the ends)."""
        t = _array(t)
        with np.errstate(divide="ignore"):
            return _scalar_or_array(_array(self.log_alpha(t)) - _array(self.log_sigma(t)))

    def t_of_lam(self, lam: ArrayLike) -> float | np.ndarray:
        raise NotImplementedError

    def alpha_sigma_derivatives(self, t: float) -> tuple[float, float]:
        """(d alpha/dt, d sigma/dt) at t."""
        raise NotImplementedError

    def model_time(self, t: ArrayLike) -> float | np.ndarray:
        """The time input the model is conditioned on (t itself unless the schedule says)."""
        return _scalar_or_array(_array(t))

    # --- lambda-dependent quantities -----------------------------------------------------
    def alpha_sigma_of_lam(self, lam: float) -> tuple[float, float]:
        """(alpha, sigma) at log-SNR lambda, exact at lambda = -inf and +inf."""
        lam = float(lam)
        if self.variance_preserving:
            # alpha^2 = sigmoid(2 lambda), sigma^2 = sigmoid(-2 lambda)
            return (
                math.exp(0.5 * _log_sigmoid_float(2.0 * lam)),
                math.exp(0.5 * _log_sigmoid_float(-2.0 * lam)),
            )
        t = float(self.t_of_lam(lam))
        return float(self.alpha(t)), float(self.sigma(t))

    def check_time(self, name: str, t: float, lower: float, upper: float) -> float:
        t = check_real(name, t)
        if not (math.isfinite(t) and lower <= t <= upper):
            raise InputError(
                f"parameter {name!r} must be a time in [{lower:g}, {upper:g}] for the "
                f"{self.name} schedule, got {t!r}"
            )
        return t

    @property
    def time_range(self) -> tuple[float, float]:
        """The closed interval of admissible times."""
        return (0.0, 1.0)


def _check_positive(name: str, value: float) -> float:
    value = check_real(name, value)
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"parameter {name!r} must be a finite positive number, got {value!r}")
    return value


@dataclass(frozen=True)
class VPLinear(NoiseSchedule):
    """Continuous VP with linear beta(t) = b0 + (b1 - b0) t (ScoreSDE defaults 0.1, 20)."""

    beta_min: float = 0.1
    beta_max: float = 20.0
    name: str = field(default="vp-linear", init=False)

    def __post_init__(self) -> None:
        _check_positive("beta_min", self.beta_min)
        _check_positive("beta_max", self.beta_max)
        if self.beta_max < self.beta_min:
            raise InputError("parameter 'beta_max' must be >= beta_min")

    @property
    def time_range(self) -> tuple[float, float]:
        return (0.0, 1.0)

    def log_alpha(self, t: ArrayLike) -> float | np.ndarray:
        t = _array(t)
        b0, b1 = self.beta_min, self.beta_max
        return _scalar_or_array(-(b1 - b0) * t**2 / 4.0 - b0 * t / 2.0)

    def t_of_lam(self, lam: ArrayLike) -> float | np.ndarray:
        # -log alpha = log(1 + e^{-2 lambda})/2 =: L/2; solve the quadratic (spec §6.1)
        lam = _array(lam)
        b0, b1 = self.beta_min, self.beta_max
        big_l = np.logaddexp(0.0, -2.0 * lam)
        return _scalar_or_array(2.0 * big_l / (b0 + np.sqrt(b0**2 + 2.0 * (b1 - b0) * big_l)))

    def alpha_sigma_derivatives(self, t: float) -> tuple[float, float]:
        b0, b1 = self.beta_min, self.beta_max
        alpha, sigma = float(self.alpha(t)), float(self.sigma(t))
        d_alpha = alpha * (-(b1 - b0) * t / 2.0 - b0 / 2.0)
        return d_alpha, -alpha * d_alpha / sigma


@dataclass(frozen=True)
class VPCosine(NoiseSchedule):
    """Cosine VP schedule, alpha_t = cos((t + s)/(1 + s) pi/2)/cos(s/(1 + s) pi/2).

    ``t_start`` defaults to 0.9946 as in DPM-Solver's code (lambda(1) is -inf; beyond 0.9946
    lambda is below -5.1, where the schedule is numerically useless).
    """

    s: float = 0.008
    name: str = field(default="vp-cosine", init=False)
    t_start: float = field(default=0.9946, init=False)

    def _angle(self, t: np.ndarray) -> np.ndarray:
        return (t + self.s) / (1.0 + self.s) * (math.pi / 2.0)

    def log_alpha(self, t: ArrayLike) -> float | np.ndarray:
        t = _array(t)
        with np.errstate(divide="ignore"):
            value = np.log(np.cos(self._angle(t))) - math.log(math.cos(self._angle(np.float64(0))))
        return _scalar_or_array(value)

    def t_of_lam(self, lam: ArrayLike) -> float | np.ndarray:
        lam = _array(lam)
        log_alpha = -0.5 * np.logaddexp(0.0, -2.0 * lam)
        cos_value = np.exp(log_alpha) * math.cos(self._angle(np.float64(0)))
        return _scalar_or_array(np.arccos(cos_value) * 2.0 * (1.0 + self.s) / math.pi - self.s)

    def alpha_sigma_derivatives(self, t: float) -> tuple[float, float]:
        alpha, sigma = float(self.alpha(t)), float(self.sigma(t))
        d_log_alpha = -math.tan(float(self._angle(np.float64(t)))) * math.pi / (2 * (1 + self.s))
        d_alpha = alpha * d_log_alpha
        return d_alpha, -alpha * d_alpha / sigma


class DiscreteVP(NoiseSchedule):
    """A discrete-time DPM (N training steps) made continuous as in DPM-Solver (spec §6.2).

    log alpha_n = log(alphas_cumprod_n)/2 sits at t_n = (n + 1)/N; log alpha(t) is the
    piecewise-linear interpolation through these points, extended linearly beyond the ends.
    The model is conditioned on the discrete step ``1000 (t - 1/N)`` (= n when N = 1000).
    """

    name = "ddpm"

    def __init__(
        self,
        betas: ArrayLike | None = None,
        alphas_cumprod: ArrayLike | None = None,
    ) -> None:
        if (betas is None) == (alphas_cumprod is None):
            raise InputError("DiscreteVP: give exactly one of 'betas' and 'alphas_cumprod'")
        if betas is not None:
            betas = _array(betas)
            if betas.ndim != 1 or betas.size < 2 or not np.all((betas > 0) & (betas < 1)):
                raise InputError("parameter 'betas' must be a 1-D sequence of values in (0, 1)")
            log_alphas = 0.5 * np.cumsum(np.log1p(-betas))
        else:
            cumprod = _array(alphas_cumprod)
            if cumprod.ndim != 1 or cumprod.size < 2 or not np.all((cumprod > 0) & (cumprod < 1)):
                raise InputError(
                    "parameter 'alphas_cumprod' must be a 1-D sequence of values in (0, 1)"
                )
            if np.any(np.diff(cumprod) >= 0):
                raise InputError("parameter 'alphas_cumprod' must be strictly decreasing")
            log_alphas = 0.5 * np.log(cumprod)
        self.n_train = log_alphas.size
        self.t_grid = np.arange(1, self.n_train + 1, dtype=np.float64) / self.n_train
        self.log_alpha_grid = log_alphas
        self.t_end = 1.0 / self.n_train
        self.t_start = 1.0

    @classmethod
    def ddpm_linear(cls, n_train: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        """DDPM's linear betas (Ho et al. 2020): beta_n from beta_start to beta_end."""
        return cls(betas=np.linspace(beta_start, beta_end, int(n_train)))

    @property
    def time_range(self) -> tuple[float, float]:
        return (0.0, 1.0)

    @staticmethod
    def _interp(x: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Piecewise-linear interpolation through increasing xs, extended linearly."""
        inner = np.interp(x, xs, ys)
        left = ys[0] + (x - xs[0]) * (ys[1] - ys[0]) / (xs[1] - xs[0])
        right = ys[-1] + (x - xs[-1]) * (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
        return np.where(x < xs[0], left, np.where(x > xs[-1], right, inner))

    def log_alpha(self, t: ArrayLike) -> float | np.ndarray:
        return _scalar_or_array(self._interp(_array(t), self.t_grid, self.log_alpha_grid))

    def t_of_lam(self, lam: ArrayLike) -> float | np.ndarray:
        log_alpha = -0.5 * np.logaddexp(0.0, -2.0 * _array(lam))
        xs, ys = self.log_alpha_grid[::-1], self.t_grid[::-1]
        return _scalar_or_array(self._interp(log_alpha, xs, ys))

    def alpha_sigma_derivatives(self, t: float) -> tuple[float, float]:
        index = int(np.clip(np.searchsorted(self.t_grid, t) - 1, 0, self.n_train - 2))
        slope = (self.log_alpha_grid[index + 1] - self.log_alpha_grid[index]) / (
            self.t_grid[index + 1] - self.t_grid[index]
        )
        alpha, sigma = float(self.alpha(t)), float(self.sigma(t))
        return alpha * slope, -alpha * alpha * slope / sigma

    def model_time(self, t: ArrayLike) -> float | np.ndarray:
        return _scalar_or_array(1000.0 * (_array(t) - 1.0 / self.n_train))


@dataclass(frozen=True)
class VE(NoiseSchedule):
    """Variance exploding: alpha = 1, sigma(t) = sigma_min (sigma_max/sigma_min)^t.

    The model is conditioned on sigma (as ScoreSDE's NCSN++ models are).
    """

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    name: str = field(default="ve", init=False)
    variance_preserving: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        _check_positive("sigma_min", self.sigma_min)
        _check_positive("sigma_max", self.sigma_max)
        if self.sigma_max <= self.sigma_min:
            raise InputError("parameter 'sigma_max' must be > sigma_min")

    def log_alpha(self, t: ArrayLike) -> float | np.ndarray:
        return _scalar_or_array(np.zeros_like(_array(t)))

    def log_sigma(self, t: ArrayLike) -> float | np.ndarray:
        t = _array(t)
        ratio = math.log(self.sigma_max / self.sigma_min)
        return _scalar_or_array(math.log(self.sigma_min) + t * ratio)

    def t_of_lam(self, lam: ArrayLike) -> float | np.ndarray:
        ratio = math.log(self.sigma_max / self.sigma_min)
        return _scalar_or_array((-_array(lam) - math.log(self.sigma_min)) / ratio)

    def alpha_sigma_of_lam(self, lam: float) -> tuple[float, float]:
        return 1.0, math.exp(-float(lam))

    def alpha_sigma_derivatives(self, t: float) -> tuple[float, float]:
        return 0.0, float(self.sigma(t)) * math.log(self.sigma_max / self.sigma_min)

    def model_time(self, t: ArrayLike) -> float | np.ndarray:
        return self.sigma(t)


@dataclass(frozen=True)
class EDM(NoiseSchedule):
    """EDM (Karras et al. 2022): alpha = 1, sigma(t) = t; lambda = -log t."""

    name: str = field(default="edm", init=False)
    variance_preserving: bool = field(default=False, init=False)
    t_start: float = field(default=80.0, init=False)
    t_end: float = field(default=0.002, init=False)

    @property
    def time_range(self) -> tuple[float, float]:
        return (0.0, math.inf)

    def log_alpha(self, t: ArrayLike) -> float | np.ndarray:
        return _scalar_or_array(np.zeros_like(_array(t)))

    def log_sigma(self, t: ArrayLike) -> float | np.ndarray:
        with np.errstate(divide="ignore"):
            return _scalar_or_array(np.log(_array(t)))

    def t_of_lam(self, lam: ArrayLike) -> float | np.ndarray:
        return _scalar_or_array(np.exp(-_array(lam)))

    def alpha_sigma_of_lam(self, lam: float) -> tuple[float, float]:
        return 1.0, math.exp(-float(lam))

    def alpha_sigma_derivatives(self, t: float) -> tuple[float, float]:
        return 0.0, 1.0


@dataclass(frozen=True)
class RectifiedFlow(NoiseSchedule):
    """Rectified flow / flow matching: alpha = 1 - t, sigma = t; lambda = log((1 - t)/t).

    Sampling runs from t = 1 (lambda = -inf, pure noise) to t = 0 (lambda = +inf); both ends
    are exact limits in the solver driver.
    """

    name: str = field(default="flow", init=False)
    variance_preserving: bool = field(default=False, init=False)
    t_start: float = field(default=1.0, init=False)
    t_end: float = field(default=0.0, init=False)

    def log_alpha(self, t: ArrayLike) -> float | np.ndarray:
        with np.errstate(divide="ignore"):
            return _scalar_or_array(np.log1p(-_array(t)))

    def log_sigma(self, t: ArrayLike) -> float | np.ndarray:
        with np.errstate(divide="ignore"):
            return _scalar_or_array(np.log(_array(t)))

    def t_of_lam(self, lam: ArrayLike) -> float | np.ndarray:
        # t = sigmoid(-lambda)
        return _scalar_or_array(np.exp(_log_sigmoid(-_array(lam))))

    def alpha_sigma_of_lam(self, lam: float) -> tuple[float, float]:
        lam = float(lam)
        return math.exp(_log_sigmoid_float(lam)), math.exp(_log_sigmoid_float(-lam))

    def alpha_sigma_derivatives(self, t: float) -> tuple[float, float]:
        return -1.0, 1.0


SCHEDULES: dict[str, Callable[..., NoiseSchedule]] = {
    "vp-linear": VPLinear,
    "vp-cosine": VPCosine,
    "ddpm": DiscreteVP.ddpm_linear,
    "ve": VE,
    "edm": EDM,
    "flow": RectifiedFlow,
}


def noise_schedule(name: str | NoiseSchedule, **parameters: float) -> NoiseSchedule:
    """A schedule by name (``vp-linear``, ``vp-cosine``, ``ddpm``, ``ve``, ``edm``, ``flow``)."""
    if isinstance(name, NoiseSchedule):
        return name
    if name not in SCHEDULES:
        raise InputError(
            f"parameter 'schedule' must be one of {', '.join(SCHEDULES)}, got {name!r}"
        )
    try:
        return SCHEDULES[name](**parameters)
    except TypeError as error:
        raise InputError(f"schedule {name!r}: {error}") from None
