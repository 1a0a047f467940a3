"""The free linear solver: every prediction and correction a combination of the state and all
model values so far, its grid searched on a teacher's path, its weights fitted by least squares
step by step and then end to end.

A solver of :mod:`phiforge.runtime.fitted` with ``order`` 0 (``fit_solver(free=True)``) keeps
the predict-evaluate-correct loop (one evaluation per step) but none of the constraints: in the
data-prediction form x~'(lam) = -x~ + D(x~, e^{-lam}),

    predict   x~_{n+1} = a_n x~_n + sum_{m <= n} w_{n,m} D_{n-m}
    correct   x~_{n+1} = c_n x~_n + sum_{m <= n+1} v_{n,m} D_{n+1-m}

with every a, w, c, v free (over at most ``history`` values). Any explicit linear multistep or
Runge-Kutta scheme with one evaluation per step is such a loop on its grid, so the free solver
contains them all, the exponential Adams pairs (a_n = c_n = e^{-h}) among them.

Greedy least squares (:func:`greedy_solver`). Given every pilot's exact state x~(lam_n) at the
grid points (a teacher's fine solve), the weights of each combination are the least-squares fit,
over all pilots and components together, of the exact state it stands for from the state and
the values the solver has computed so far on its own path (so a later combination corrects the
errors of the earlier ones). The fit costs ``nfe`` evaluations per pilot and no gradient.

Grid search (:func:`search_grid`). On a teacher's fine grid lam_0 < ... < lam_F (its states
kept at every point), a grid of ``nfe`` steps is a choice of ``nfe - 1`` interior points; since
the greedy solver needs no solve on a new grid, coordinate descent moves one point at a time by
+-delta fine points (delta halving from F / 25 to 1) while the pilots' final defect falls.

End to end (:func:`fit_free_solver`): on the searched grid, every weight refined by L-BFGS
through the model from the greedy ones, minimising the pilots' final defect (``fit_solver``).

Fitting a solver's coefficients and steps to teacher solutions is the idea of S4S (Frankel et
al., ICML 2025) and, for the steps, LD3 (Tong et al. 2024); what is phiforge's own here is the
construction: the greedy least-squares start on the teacher's states, which makes the grid
search affordable, and the one executor running the result. Measured on the built-in U-Net at
NFE 10 in docs/bench-unet.md ("The grid, searched for the free solver"). A fit is to one model,
one NFE and one pair of end noise levels: judge it on starting points it has not seen.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from typing import Any

import torch

from phiforge.runtime.checks import check_callable, check_integer, check_mapping
from phiforge.runtime.errors import InputError, ModelOutputError
from phiforge.runtime.fitted import MAX_HISTORY, FittedSolver, fit_solver
from phiforge.runtime.verification import defect

__all__ = ["fit_free_solver", "greedy_solver", "search_grid", "teacher_states"]

_DTYPE = torch.float64


def teacher_states(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: list[float],
    method: str = "res_4m_pc",
    extra_args: dict[str, Any] | None = None,
) -> list[torch.Tensor]:
    """x~ at every sigma~ of the fine grid ``sigmas`` along ``method``'s solve from x (x~ at
    sigmas[0]): the corrected state at each step's start, then the result (``len(sigmas)``
    tensors; the path :func:`fit_free_solver` learns from)."""
    from phiforge.runtime.driver import sample

    starts: list[torch.Tensor] = []
    with torch.no_grad():
        out = sample(
            model, x, "edm", method, output="edm", sigmas=sigmas, model_kwargs=extra_args,
            callback=lambda event: starts.append(event["x_start"]),
        )  # fmt: skip
    return [*starts, out]


def _least_squares(columns: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """The weights w minimising sum over rows and components |sum_i w_i f_i - target|^2."""
    system = torch.stack([c.reshape(-1) for c in columns], 1)
    return torch.linalg.lstsq(system, target.reshape(-1, 1)).solution[:, 0]


def _combine(weights: torch.Tensor, columns: list[torch.Tensor]) -> torch.Tensor:
    return sum(w * c for w, c in zip(weights.tolist(), columns, strict=True))


def greedy_solver(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    states: list[torch.Tensor],
    sigmas: list[float],
    *,
    steps: int = 3,
    history: int | None = None,
    extra_args: dict[str, Any] | None = None,
) -> tuple[FittedSolver, torch.Tensor]:
    """The free solver on the grid ``sigmas`` whose weights are fitted step by step to the
    pilots' exact states ``states`` (x~ at every sigma of the grid, states[0] = x; module
    docstring), over at most ``history`` values (default min(nfe, 16)); ``steps``: the Adams
    pair a later end-to-end fit moves its weights from (``fit_solver``'s). Returns the solver
    and its result on the pilots."""
    nfe = len(sigmas) - 1
    history = min(nfe, MAX_HISTORY) if history is None else history
    args = dict(extra_args or {})
    state = previous = x
    values: list[torch.Tensor] = []  # newest first
    predictor, corrector, state_weights = [], [], []
    with torch.no_grad():
        for n in range(nfe):
            value = model(state, torch.full((x.shape[0],), sigmas[n], dtype=x.dtype), **args)
            if not bool(torch.isfinite(value).all()):
                raise ModelOutputError(
                    f"the model returned non-finite values at step {n} (sigma {sigmas[n]:.6g})"
                )
            values = [value, *values][: history + 1]
            if n:  # correct x~_n with the value at its prediction
                w = _least_squares([previous, *values], states[n])
                state_weights[-1].append(float(w[0]))
                corrector.append(w[1:].tolist())
                state = _combine(w, [previous, *values])
            previous = state
            w = _least_squares([state, *values[:history]], states[n + 1])
            state_weights.append([float(w[0])])
            predictor.append(w[1:].tolist())
            state = _combine(w, [state, *values[:history]])
    solver = FittedSolver(
        sigmas=list(sigmas),
        predictor=predictor,
        corrector=corrector,
        steps=steps,
        history=history,
        order=0,
        state=state_weights,
        info={
            "objective": "defect",
            "construction": "greedy least squares on the teacher's states",
            "pilot_batch": int(x.shape[0]),
            "pilot_defect": defect(state, states[-1]),
        },
    )
    return solver, state


def search_grid(
    score: Callable[[list[int]], float],
    fine: int,
    nfe: int,
    cycles: int = 1,
    start: list[int] | None = None,
) -> tuple[list[int], list[dict]]:
    """Coordinate descent over the interior points of a grid of fine-point indices (0 and
    ``fine`` fixed), from ``start`` (default the uniform grid): ``score(indices)`` is minimised
    by moving one point at a time by +-delta while it falls, delta halving from fine / 25 to 1;
    up to ``cycles`` such sweeps, stopping after one that moves nothing. Returns the grid and
    the descent's record (cycle, delta, score, evaluations so far; first the start, delta
    None)."""
    nfe = check_integer("nfe", nfe, 1)
    fine = check_integer("fine", fine, nfe)
    cycles = check_integer("cycles", cycles, 1)
    indices = [round(i * fine / nfe) for i in range(nfe + 1)]
    if start is not None:
        if (
            not isinstance(start, list)
            or len(start) != nfe + 1
            or start[0] != 0
            or start[-1] != fine
            or any(not isinstance(i, int) or i >= j for i, j in itertools.pairwise(start))
        ):
            raise InputError(
                f"parameter 'start' must be {nfe + 1} increasing fine-point indices from 0 to "
                f"{fine}, got {start!r}"
            )
        indices = list(start)
    seen: dict[tuple[int, ...], float] = {}

    def value(candidate: list[int]) -> float:
        key = tuple(candidate)
        if key not in seen:
            seen[key] = score(candidate)
        return seen[key]

    best = value(indices)
    record: list[dict] = [{"cycle": 0, "delta": None, "pilot": best, "evaluations": 1}]
    for cycle in range(1, cycles + 1):
        before, delta = best, max(1, fine // 25)
        while delta:
            improved = True
            while improved:
                improved = False
                for j in range(1, nfe):
                    for move in (-delta, delta):
                        candidate = list(indices)
                        candidate[j] += move
                        ordered = candidate[j - 1] < candidate[j] < candidate[j + 1]
                        if ordered and value(candidate) < best:
                            best, indices, improved = value(candidate), candidate, True
            record.append({"cycle": cycle, "delta": delta, "pilot": best, "evaluations": len(seen)})
            delta //= 2
        if best == before:
            break
    return indices, record


def _check_path(x: torch.Tensor, path: list[torch.Tensor], sigmas: list[float]) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.dtype != _DTYPE:
        raise InputError("parameter 'x' must be a float64 batch tensor (batch first)")
    if not isinstance(sigmas, list | tuple) or len(sigmas) < 3:
        raise InputError("parameter 'sigmas' must be a list of at least 3 noise levels")
    if not all(
        isinstance(s, int | float) and math.isfinite(s) and s > 0 and (i == 0 or s < sigmas[i - 1])
        for i, s in enumerate(sigmas)
    ):
        raise InputError("parameter 'sigmas' must be finite, positive and strictly descending")
    if (
        not isinstance(path, list | tuple)
        or len(path) != len(sigmas)
        or any(not isinstance(p, torch.Tensor) or p.shape != x.shape for p in path)
    ):
        raise InputError(
            f"parameter 'path' must hold the pilots' states at every sigma ({len(sigmas)} "
            f"tensors shaped like x {tuple(x.shape)}; teacher_states makes them)"
        )


def _indices(grid: list[float] | None, sigmas: list[float], nfe: int) -> list[int] | None:
    """The positions of ``grid``'s noise levels among the teacher's ``sigmas`` (to 1e-9)."""
    if grid is None:
        return None
    found = []
    for sigma in grid if isinstance(grid, list | tuple) else []:
        matches = [
            i
            for i, s in enumerate(sigmas)
            if isinstance(sigma, int | float) and math.isclose(s, sigma, rel_tol=1e-9)
        ]
        found.extend(matches[:1])
    if not isinstance(grid, list | tuple) or len(grid) != nfe + 1 or len(found) != nfe + 1:
        raise InputError(
            f"parameter 'grid' must hold {nfe + 1} of the teacher's noise levels 'sigmas' "
            f"(the descent's start), got {grid!r}"
        )
    return found


def fit_free_solver(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    path: list[torch.Tensor],
    sigmas: list[float],
    nfe: int,
    *,
    cycles: int = 1,
    iterations: int = 30,
    fit_grid: bool = False,
    steps: int | None = None,
    grid: list[float] | None = None,
    extra_args: dict[str, Any] | None = None,
    progress: Callable[[], object] | None = None,
) -> FittedSolver:
    """The free solver of ``nfe`` evaluations for the pilots ``x`` (x~ at sigmas[0], float64):
    its grid searched among the teacher's fine grid ``sigmas`` (``cycles`` sweeps at most), the
    greedy least-squares weights on it from the teacher's states ``path`` (x~ at every sigma,
    :func:`teacher_states`), then every weight refined end to end by ``iterations`` L-BFGS
    iterations through the model (and the grid too with ``fit_grid``; its weights then move
    from res_{steps}m_pc's, default 3), to the pilots' final defect against path[-1] (module
    docstring). The info records the descent (``grid_search``) and the greedy solver's pilot
    defect. ``grid``: the descent's starting grid (``nfe + 1`` of the teacher's ``sigmas``, e.g.
    an earlier search's; default log-SNR-uniform among them)."""
    _check_path(x, path, sigmas)
    fine = len(sigmas) - 1
    nfe = check_integer("nfe", nfe, 2, fine)
    cycles = check_integer("cycles", cycles, 1, 10_000)
    check_mapping("extra_args", extra_args, "the model's keyword arguments")
    check_callable("progress", progress, "a function of no arguments")
    history = min(nfe, MAX_HISTORY)
    steps = min(3, history) if steps is None else check_integer("steps", steps, 1, min(8, history))

    def greedy(indices: list[int]) -> tuple[FittedSolver, torch.Tensor]:
        grid = [float(sigmas[i]) for i in indices]
        return greedy_solver(
            model, x, [path[i] for i in indices], grid, steps=steps, history=history,
            extra_args=extra_args,
        )  # fmt: skip

    def score(indices: list[int]) -> float:
        return defect(greedy(indices)[1], path[-1])

    indices, record = search_grid(score, fine, nfe, cycles, _indices(grid, sigmas, nfe))
    start, _ = greedy(indices)
    solver = fit_solver(
        model, x, path[-1], float(sigmas[0]), float(sigmas[-1]), nfe, steps=steps,
        history=history, free=True, fit_grid=fit_grid, iterations=iterations, start=start,
        extra_args=extra_args, progress=progress,
    )  # fmt: skip
    info = dict(
        solver.info,
        grid_search={
            "fine": fine,
            "indices": indices,
            "descent": record,
            "greedy_pilot_defect": start.info["pilot_defect"],
        },
    )
    return dataclasses.replace(solver, info=info)
