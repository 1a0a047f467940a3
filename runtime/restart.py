"""Restart sampling (Xu et al., "Restart sampling for improving generative processes", NeurIPS
2023; spec-seeds-restart.md §3) as a wrapper around any generated ODE method.

A restart interval (N, K, sigma_min, sigma_max), noise levels in sigma~ = sigma/alpha (EDM's
sigma), acts when the main ODE pass reaches the grid point nearest to sigma_min (sigma_j): K
times, jump forward with the exact transition kernel of the forward process from sigma_j to
sigma_max,

    x <- (alpha_max/alpha_j) x + s_noise sqrt(sigma_max^2 - (alpha_max/alpha_j)^2 sigma_j^2) z

(VE: x + sqrt(sigma~_max^2 - sigma~_j^2) z), then solve the ODE back from sigma_max to sigma_j
on a Karras sub-grid of N points (N - 1 steps, rho = 7) with the sampler's method, its multistep
history reset. With s_noise = 1 and an exact entry marginal the jump lands exactly on the marginal
at sigma_max. ``churn`` (the reference code's restart_gamma, off by default) adds EDM churn
sigma^ = (1 + churn) sigma inside the backward sub-steps with sigma in [churn_sigma_min,
churn_sigma_max].

NFE with EDM Heun (2 per step, the last main step to 0 is one evaluation):
(2 N_main - 1) + sum_i 2 K_i (N_i - 1) (spec §3.3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from phiforge.runtime.checks import check_flag, check_integer, check_real
from phiforge.runtime.errors import InputError

__all__ = ["PRESETS", "Restart", "RestartInterval", "karras_sigmas", "restart_from"]


def karras_sigmas(sigma_max: float, sigma_min: float, points: int, rho: float = 7.0) -> list[float]:
    """``points`` noise levels from sigma_max down to sigma_min, uniform in sigma^(1/rho)
    (Karras et al. 2022, eq. 5); both ends are included, so ``points`` >= 2."""
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise InputError(
            f"parameter 'points' must be an integer >= 2 (both ends are levels), got {points!r}"
        )
    if not (0 < sigma_min < sigma_max < math.inf):
        raise InputError(
            f"parameters 'sigma_min', 'sigma_max': need 0 < sigma_min < sigma_max < inf, got "
            f"{sigma_min!r}, {sigma_max!r}"
        )
    if not (math.isfinite(rho) and rho > 0):
        raise InputError(f"parameter 'rho' must be a positive number, got {rho!r}")
    ramp = np.linspace(sigma_max ** (1 / rho), sigma_min ** (1 / rho), points) ** rho
    ramp[0], ramp[-1] = sigma_max, sigma_min
    return [float(s) for s in ramp]


MAX_LEVELS = 1_000_000  # the most noise levels (or repeats) one interval may ask for


@dataclass(frozen=True)
class RestartInterval:
    """[N_restart, K, sigma_min, sigma_max] as in the Restart paper's configurations."""

    points: int
    repeats: int
    sigma_min: float
    sigma_max: float

    def __post_init__(self) -> None:
        check_integer("points", self.points, 2, MAX_LEVELS)
        check_integer("repeats", self.repeats, 1, MAX_LEVELS)
        for name in ("sigma_min", "sigma_max"):
            check_real(name, getattr(self, name))
        if not (0 < self.sigma_min < self.sigma_max < math.inf):
            raise InputError(
                "restart interval: need 0 < sigma_min < sigma_max < inf, got "
                f"{self.sigma_min!r}, {self.sigma_max!r}"
            )

    @property
    def nfe_steps(self) -> int:
        """Backward steps of all K repeats."""
        return self.repeats * (self.points - 1)


@dataclass(frozen=True)
class Restart:
    """Restart intervals and their options; ``main_steps`` and ``method`` are a preset's main pass
    (main_steps Karras points from 80 to 0.002, then 0), used when the sampler is given no grid."""

    intervals: tuple[RestartInterval, ...]
    s_noise: float = 1.0
    churn: float = 0.0
    churn_sigma_min: float = 0.01
    churn_sigma_max: float = 1.0
    rho: float = 7.0
    snap_sigma_max: bool = False
    main_steps: int | None = None
    method: str | None = None
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.intervals, tuple | list) or not all(
            isinstance(interval, RestartInterval) for interval in self.intervals
        ):
            raise InputError(
                "parameter 'restart': 'intervals' must be a sequence of RestartInterval, got "
                f"{self.intervals!r}"
            )
        if not self.intervals:
            raise InputError("parameter 'restart' must have at least one interval")
        for name in ("s_noise", "churn", "churn_sigma_min", "churn_sigma_max", "rho"):
            check_real(name, getattr(self, name))
        if not (0 <= self.churn_sigma_min < self.churn_sigma_max):
            raise InputError(
                "restart: parameters 'churn_sigma_min', 'churn_sigma_max' need 0 <= "
                f"churn_sigma_min < churn_sigma_max, got {self.churn_sigma_min!r}, "
                f"{self.churn_sigma_max!r}"
            )
        if not (math.isfinite(self.rho) and self.rho > 0):
            raise InputError(
                f"restart: parameter 'rho' must be a positive number, got {self.rho!r}"
            )
        check_flag("snap_sigma_max", self.snap_sigma_max)
        if self.main_steps is not None:
            check_integer("main_steps", self.main_steps, 2, MAX_LEVELS)
        for name in ("method", "name"):
            value = getattr(self, name)
            if not (isinstance(value, str) or (name == "method" and value is None)):
                raise InputError(f"restart: parameter {name!r} must be a string, got {value!r}")
        if not (math.isfinite(self.s_noise) and self.s_noise > 0):
            raise InputError(f"restart: parameter 's_noise' must be positive, got {self.s_noise!r}")
        if not (math.isfinite(self.churn) and self.churn >= 0):
            raise InputError(f"restart: parameter 'churn' must be >= 0, got {self.churn!r}")

    def main_sigmas(self) -> list[float]:
        if self.main_steps is None:
            raise InputError("restart: give the main grid ('steps' or 'sigmas') for a custom spec")
        return [*karras_sigmas(80.0, 0.002, self.main_steps, self.rho), 0.0]

    @classmethod
    def a1111(cls, steps: int) -> Restart:
        """The AUTOMATIC1111 rule (spec §3.4): from 20 steps one interval [0.1, 2] with 9
        restart steps and K = 1 (from 36 steps: steps//4 restart steps, K = 2), the main grid
        shortened so that the Heun steps total ``steps``; both ends snapped to the main grid."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 20:
            raise InputError(f"restart 'a1111' needs steps >= 20 (no restart below), got {steps!r}")
        restart_steps, repeats = (steps // 4, 2) if steps >= 36 else (9, 1)
        interval = RestartInterval(restart_steps + 1, repeats, 0.1, 2.0)
        return cls(
            (interval,),
            snap_sigma_max=True,
            main_steps=steps - restart_steps * repeats,
            method="edm_heun",
            name=f"a1111-{steps}",
        )


def _intervals(rows: Sequence[tuple[int, int, float, float]]) -> tuple[RestartInterval, ...]:
    return tuple(RestartInterval(*row) for row in rows)


_IMAGENET = ((19.35, 40.79), (1.09, 1.92), (0.59, 1.09), (0.30, 0.59), (0.06, 0.30))


# which of the five ImageNet-64 intervals a configuration with 3, 4 or 5 intervals uses
_IMAGENET_SPANS = {3: (0, 1, 4), 4: (0, 1, 2, 4), 5: (0, 1, 2, 3, 4)}


def _imagenet(main: int, rows: Sequence[tuple[int, int]], name: str) -> Restart:
    spans = [_IMAGENET[i] for i in _IMAGENET_SPANS[len(rows)]]
    intervals = tuple(
        RestartInterval(n, k, lo, hi) for (n, k), (lo, hi) in zip(rows, spans, strict=True)
    )
    return Restart(
        intervals, s_noise=1.003, churn=0.05, main_steps=main, method="edm_heun", name=name
    )


def _cifar(main: int, row: tuple[int, int, float, float], name: str) -> Restart:
    return Restart(_intervals([row]), main_steps=main, method="edm_heun", name=name)


#: The Restart paper's configurations (spec-seeds-restart §3.4), named by setting and NFE.
PRESETS: dict[str, Restart] = {
    preset.name: preset
    for preset in (
        _cifar(18, (3, 2, 0.06, 0.30), "cifar10-vp-43"),
        _cifar(18, (3, 5, 0.06, 0.30), "cifar10-vp-55"),
        _cifar(18, (3, 10, 0.06, 0.30), "cifar10-vp-75"),
        _cifar(18, (3, 20, 0.06, 0.30), "cifar10-vp-115"),
        _cifar(20, (9, 30, 0.06, 0.20), "cifar10-vp-519"),
        _cifar(18, (3, 2, 0.14, 0.30), "cifar10-edm-43"),
        _imagenet(14, [(3, 1), (3, 1), (3, 1)], "imagenet64-39"),
        _imagenet(18, [(5, 1), (5, 1), (5, 1), (5, 1)], "imagenet64-67"),
        _imagenet(18, [(3, 1), (4, 1), (4, 4), (4, 1), (4, 4)], "imagenet64-99"),
        _imagenet(18, [(3, 1), (4, 1), (4, 5), (4, 5), (4, 10)], "imagenet64-165"),
        _imagenet(36, [(4, 1), (4, 1), (4, 5), (4, 5), (6, 6)], "imagenet64-203"),
        _imagenet(36, [(3, 1), (6, 1), (6, 5), (6, 5), (6, 20)], "imagenet64-385"),
        _imagenet(36, [(6, 1), (6, 1), (7, 6), (7, 6), (7, 25)], "imagenet64-535"),
        _imagenet(36, [(10, 3), (10, 3), (7, 6), (7, 6), (7, 25)], "imagenet64-623"),
    )
}


def restart_from(value: Restart | str) -> Restart:
    """A :class:`Restart` from itself, a preset name, ``a1111-STEPS``, or a spec
    ``N,K,SMIN,SMAX[;N,K,SMIN,SMAX...]``."""
    if isinstance(value, Restart):
        return value
    if not isinstance(value, str):
        raise InputError(
            f"parameter 'restart' must be a Restart, a preset or a spec, got {value!r}"
        )
    if value in PRESETS:
        return PRESETS[value]
    if value.startswith("a1111-"):
        try:
            steps = int(value.split("-", 1)[1])
        except ValueError:
            raise InputError(f"parameter 'restart': {value!r} is not 'a1111-STEPS'") from None
        return Restart.a1111(steps)
    rows = []
    for part in value.split(";"):
        fields = part.split(",")
        try:
            if len(fields) != 4:
                raise ValueError
            rows.append((int(fields[0]), int(fields[1]), float(fields[2]), float(fields[3])))
        except ValueError:
            raise InputError(
                f"parameter 'restart' must be a preset ({', '.join(PRESETS)}, a1111-STEPS) or "
                f"'N,K,SMIN,SMAX[;...]', got {value!r}"
            ) from None
    return Restart(_intervals(rows))
