"""Step grids fitted to a model: the log-SNR points minimising a solver's defect on pilot samples.

At a small NFE the error of a sampler depends on where its few steps lie as much as on its order.
Given a solver as a function ``solve(sigmas) -> x_end`` and reference ends for a pilot batch
(a high-accuracy solve from the same starting points), :func:`search_sigmas` moves the interior
points of the grid, keeping its ends, to minimise

    log defect(solve(sigmas), reference),   defect = mean_b RMS_d(x_b - x_ref,b)

(:func:`phiforge.runtime.verification.defect`, spec-dpmsolver-res §7.9). The grid is
parametrised by its log-SNR increments, h_i = (lam_end - lam_start) softmax(theta)_i, so every
candidate is strictly monotone with the given ends and no constraint is needed; the search is
derivative-free (SciPy's adaptive Nelder-Mead, then Powell from its result), since the samplers
it serves need not be differentiable. This is the discretisation-learning idea of Tong et al.,
"Learning to Discretize Denoising Diffusion ODEs" (LD3, arXiv 2405.15506), which fits the steps
to teacher solutions, with a derivative-free search in place of their gradient descent.

The grid is fitted to the pilot batch: judge it on other starting points (held-out seeds), as
``bench/step_search.py`` does. :func:`optimize_steps` wraps the search for
:func:`phiforge.runtime.driver.sample`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import torch

from phiforge.runtime.checks import (
    check_callable,
    check_integer,
    check_mapping,
    check_real,
    check_sigma_ends,
)
from phiforge.runtime.errors import InputError, ModelOutputError
from phiforge.runtime.verification import defect

__all__ = ["StepSearch", "grid_lambdas", "optimize_steps", "search_sigmas", "theta_of_sigmas"]

# the objective (a log-defect) of grids the solver refuses: finite, so that the line searches stay
# finite, and above any log-defect a float64 run can return (log(1e300) < 691)
_REFUSED = 1000.0


@dataclass(frozen=True)
class StepSearch:
    """The fitted grid (``sigmas``: sigma~ = sigma/alpha, descending, ends as given), the pilot
    defect on the log-SNR-uniform grid and on the fitted one, and the solves spent."""

    sigmas: list[float]
    uniform_defect: float
    defect: float
    evaluations: int

    @property
    def lambdas(self) -> list[float]:
        return [-math.log(s) for s in self.sigmas]


def grid_lambdas(
    theta: torch.Tensor, lam_start: float, lam_end: float, min_step: float = 0.0
) -> torch.Tensor:
    """lam_start + (lam_end - lam_start) cumsum(min_step + (1 - n min_step) softmax(0, theta)),
    with lam_start first (n steps): the grid's log-SNR points (float64, differentiable in theta;
    runtime.fitted fits it too). ``min_step`` > 0 keeps every step above that fraction of the
    span, so that a line search exploring a vanishing step cannot make two points coincide."""
    weights = torch.softmax(torch.cat([torch.zeros(1, dtype=theta.dtype), theta]), 0)
    weights = min_step + (1 - weights.shape[0] * min_step) * weights
    start = torch.tensor([lam_start], dtype=theta.dtype)
    return torch.cat([start, lam_start + (lam_end - lam_start) * torch.cumsum(weights, 0)])


def _grid(theta: np.ndarray, lam_start: float, lam_end: float) -> list[float]:
    lam = grid_lambdas(torch.from_numpy(np.asarray(theta, dtype=np.float64)), lam_start, lam_end)
    sigmas = torch.exp(-lam).tolist()
    sigmas[-1] = math.exp(-lam_end)
    return sigmas


def theta_of_sigmas(
    name: str,
    grid: Sequence[float],
    sigma_start: float,
    sigma_end: float,
    steps: int,
    min_step: float = 0.0,
) -> np.ndarray:
    """The theta of :func:`grid_lambdas` (with ``min_step``) for a given grid (``name`` the
    parameter holding it), which must hold steps + 1 strictly descending sigmas with the given
    ends, every step above ``min_step`` of the log-SNR span."""
    if isinstance(grid, str | bytes) or not isinstance(grid, Sequence | np.ndarray | torch.Tensor):
        raise InputError(f"parameter {name!r} must be a sequence of sigmas, got {grid!r}")
    grid = [check_real(name, s) for s in grid]
    if len(grid) < 2:
        raise InputError(f"parameter {name!r} must hold {steps + 1} sigmas, got {len(grid)}")
    if len(grid) != steps + 1 or not np.allclose([grid[0], grid[-1]], [sigma_start, sigma_end]):
        raise InputError(
            f"parameter {name!r} must hold {steps + 1} values from {sigma_start} to "
            f"{sigma_end}, got {len(grid)} from {grid[0]} to {grid[-1]}"
        )
    h = np.diff(-np.log(grid))
    if not np.all(h > 0):
        raise InputError(f"parameter {name!r} must be strictly descending")
    if min_step:
        h = h / math.log(sigma_start / sigma_end) - min_step
        if not np.all(h > 0):
            raise InputError(
                f"parameter {name!r}: every step must exceed {min_step:g} of the log-SNR span"
            )
    return np.log(h[1:] / h[0])


def search_sigmas(
    solve: Callable[[list[float]], torch.Tensor],
    reference: torch.Tensor,
    sigma_start: float,
    sigma_end: float,
    steps: int,
    *,
    max_evaluations: int = 3000,
    initial: Sequence[float] | None = None,
    progress: Callable[[], object] | None = None,
) -> StepSearch:
    """Fit the ``steps - 1`` interior points of a sigma~ grid from ``sigma_start`` down to
    ``sigma_end`` (both finite and positive) to ``solve``'s defect against ``reference``.

    ``solve(sigmas)`` returns the solver's end state for the pilot batch on the grid ``sigmas``
    (steps + 1 values, descending). ``initial`` is a starting grid with the same ends (default:
    uniform in log-SNR). ``max_evaluations`` bounds the solves of each of the two searches;
    ``progress`` is called after every solve."""
    from scipy.optimize import minimize

    steps = check_integer("steps", steps, 2)
    max_evaluations = check_integer("max_evaluations", max_evaluations, 1)
    check_sigma_ends(sigma_start, sigma_end)
    lam_start, lam_end = -math.log(sigma_start), -math.log(sigma_end)
    theta0 = np.zeros(steps - 1)
    if initial is not None:
        theta0 = theta_of_sigmas("initial", initial, sigma_start, sigma_end, steps)
    evaluations = 0

    def objective(theta: np.ndarray) -> float:
        nonlocal evaluations
        evaluations += 1
        if progress is not None:
            progress()
        try:
            x = solve(_grid(theta, lam_start, lam_end))
        except (InputError, ModelOutputError):
            # a candidate the solver refuses (a step rounded to length 0, a model output gone
            # non-finite on an extreme grid) is no optimum
            return _REFUSED
        value = defect(x, reference)
        if not math.isfinite(value):
            return _REFUSED
        return math.log(max(value, 1e-300))

    def defect_of(value: float) -> float:
        return math.inf if value >= _REFUSED else math.exp(value)

    uniform = defect_of(objective(np.zeros(steps - 1)))
    first = minimize(
        objective,
        theta0,
        method="Nelder-Mead",
        options={"maxfev": max_evaluations, "xatol": 1e-4, "fatol": 1e-5, "adaptive": True},
    )
    second = minimize(
        objective, first.x, method="Powell", options={"maxfev": max_evaluations, "xtol": 1e-4}
    )
    best = second if second.fun <= first.fun else first
    return StepSearch(
        sigmas=_grid(best.x, lam_start, lam_end),
        uniform_defect=uniform,
        defect=defect_of(best.fun),
        evaluations=evaluations,
    )


def optimize_steps(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    schedule: Any,
    method: str | ModuleType,
    *,
    steps: int,
    sigma_start: float,
    sigma_end: float,
    reference: torch.Tensor | None = None,
    teacher: str = "res_3m_pc",
    teacher_steps: int = 512,
    max_evaluations: int = 3000,
    sample_options: Mapping[str, Any] | None = None,
    progress: Callable[[], object] | None = None,
) -> StepSearch:
    """A grid of ``steps`` intervals for ``method`` under :func:`~phiforge.runtime.driver.sample`
    (same ``schedule``, ``model`` and ``sample_options``, e.g. ``output``), fitted on the pilot
    batch ``x`` (the states at ``sigma_start``). The reference ends are ``reference`` or a solve
    with ``teacher`` on ``teacher_steps`` log-SNR-uniform steps. Use the result as
    ``sample(..., sigmas=result.sigmas)``; ``progress`` is called after every solve."""
    from phiforge.runtime.driver import sample

    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise InputError("parameter 'x' must be a batch tensor (batch first)")
    check_sigma_ends(sigma_start, sigma_end)
    check_integer("steps", steps, 1, 10_000)
    check_mapping("sample_options", sample_options, "sample()'s options")
    check_callable("progress", progress, "a function of no arguments")
    if reference is not None and not isinstance(reference, torch.Tensor):
        raise InputError(f"parameter 'reference' must be a tensor shaped like x, got {reference!r}")
    options = dict(sample_options or {})
    for key in ("sigmas", "steps", "nfe", "timesteps", "return_info"):
        if key in options:
            raise InputError(f"parameter 'sample_options' must not set {key!r}")
    if reference is None:
        teacher_steps = check_integer("teacher_steps", teacher_steps, 1, 1_000_000)
        lam = np.linspace(-math.log(sigma_start), -math.log(sigma_end), teacher_steps + 1)
        reference = sample(model, x, schedule, teacher, sigmas=np.exp(-lam).tolist(), **options)
    elif reference.shape != x.shape:
        raise InputError(
            f"parameter 'reference' must have the shape of x {tuple(x.shape)}, got "
            f"{tuple(reference.shape)}"
        )

    def solve(sigmas: list[float]) -> torch.Tensor:
        return sample(model, x, schedule, method, sigmas=sigmas, **options)

    return search_sigmas(
        solve,
        reference,
        sigma_start,
        sigma_end,
        steps,
        max_evaluations=max_evaluations,
        progress=progress,
    )
