"""Benchmark: what fitted weights can reach at a fixed budget, and where the rest of the error is
made (the fitted solver's 0.3 x target of docs/bench-unet.md).

A fitted solver (runtime.fitted), like every exponential Adams or Runge-Kutta scheme on a fixed
grid, is linear in what it computes: its output is a fixed linear combination of the start x_T
and its ``nfe`` model values D_n = D(x_n, sigma_n), and so is every state x_n at which it calls
the model. The weights are free; the states x_n, and so the values, follow from the earlier
weights. Four measurements separate the two (weights from the pilots, seed 1, by linear least
squares; every row judged on the test starts, seed 0, and on held-out starts, seed 2):

1. **exact path**: the values at the exact states, D(x(sigma_n), sigma_n) (x(sigma_n) from a
   fine solve, ``--substeps`` res_3m_pc steps per step of the grid), combined with x_T by the
   least-squares weights: the error of ``nfe`` values at these noise levels, were the solver's
   states exact.
2. **greedy least squares**: step by step, x_(n+1) = a x_n + sum_(k<=n) b_k D_k with (a, b) the
   least-squares fit of the pilots' exact states at sigma_(n+1); the value D_(n+1) at that
   prediction then corrects it by the same fit over x_n and D_0..D_(n+1) (predict, evaluate,
   correct, as runtime.fitted). Every weight ranges over the whole history and is fitted where
   its state is made. ``--groups``: one set of weights for all components (``shared``) or one
   per component (``value``, as DPM-Solver-v3's per-dimension model statistics).
3. **final combination refitted**: a fitted solver (fit_solver, history 4, order 2,
   ``--iterations`` L-BFGS iterations on the pilots) on its own path, and the least-squares
   weights over x_T and its values along that path: what its last combination leaves.
4. **where the error is made** (test starts): the peer's and the fitted solver's first k steps,
   then a fine solve from the state they reached to the end: the error of those k steps, carried
   to the end exactly (a later coarse step may cancel part of it).

Rows beside them: the peer (``--peer``, default dpmpp_2m, the best peer of the U-Net's defect
table at NFE 10) on log-SNR-uniform steps. Measurements 1 and 2 run on that grid and on the
fitted solver's. If 1 is far below 2 and 3, the error is made where the model is called, not in
how its values are combined.

Usage: python bench/fitted_limits.py [--problem unet] [--nfe 10] [--pilot 32] [--test 8]
       [--held-out 16] [--substeps 48] [--iterations 40] [--groups shared,value]
       [--format markdown|json]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections.abc import Callable
from typing import NamedTuple

import torch

from phiforge.runtime.driver import sample
from phiforge.runtime.fitted import fit_solver, subdivide
from phiforge.runtime.verification import Problem, builtin_problem, defect

GROUPS = ("shared", "value")
SEEDS = {"pilot": 1, "test": 0, "held_out": 2}


def least_squares(features: list[torch.Tensor], target: torch.Tensor, group: str) -> torch.Tensor:
    """The weights w minimising sum over rows and components of |sum_i w_i f_i - target|^2:
    one row of weights (``shared``, shape (1, k)) or one per component (``value``, (dim, k))."""
    columns = torch.stack([f.reshape(f.shape[0], -1) for f in features], -1)  # (batch, dim, k)
    rows = target.reshape(target.shape[0], -1)
    if group == "shared":
        system, right = columns.reshape(1, -1, columns.shape[-1]), rows.reshape(1, -1, 1)
    else:
        system, right = columns.transpose(0, 1), rows.T[..., None]  # (dim, batch, k)
    return torch.linalg.lstsq(system, right).solution[..., 0]


def combine(weights: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
    """sum_i w_i f_i with :func:`least_squares`' weights (either grouping)."""
    columns = torch.stack([f.reshape(f.shape[0], -1) for f in features], -1)
    return (columns * weights).sum(-1).reshape(features[0].shape)


def subdivided(sigmas: list[float], substeps: int) -> list[float]:
    """The grid ``sigmas`` with every step cut into ``substeps`` log-SNR-uniform steps."""
    lams = -torch.log(torch.tensor(sigmas, dtype=torch.float64))
    return torch.exp(-subdivide(lams, substeps)).tolist()


def exact_states(
    model: Callable[..., torch.Tensor], x: torch.Tensor, sigmas: list[float], substeps: int
) -> list[torch.Tensor]:
    """x~ at every sigma of the grid along the fine solve from x (res_3m_pc, ``substeps``
    log-SNR-uniform steps per step); the last one is the fine solve's result."""
    after: list[torch.Tensor] = []  # the callback's x: the state at the end of step i
    out = sample(
        model, x, "edm", "res_3m_pc", output="edm", sigmas=subdivided(sigmas, substeps),
        callback=lambda event: after.append(event["x"]),
    )  # fmt: skip
    return [x, *(after[n * substeps - 1] for n in range(1, len(sigmas) - 1)), out]


def continued(
    model: Callable[..., torch.Tensor],
    states: list[torch.Tensor],
    sigmas: list[float],
    substeps: int,
) -> list[torch.Tensor]:
    """For k = 1 .. nfe - 1, the fine solve from a solver's state ``states[k]`` at sigmas[k] to
    the end: the error the solver made in its first k steps, carried to the end exactly."""
    outs = []
    for k in range(1, len(sigmas) - 1):
        fine = subdivided(sigmas[k:], substeps)
        outs.append(sample(model, states[k], "edm", "res_3m_pc", output="edm", sigmas=fine))
    return outs


def linear_run(
    model: Callable[..., torch.Tensor],
    starts: dict[str, torch.Tensor],
    sigmas: list[float],
    weights: Callable[[int, list[torch.Tensor]], torch.Tensor],
) -> dict[str, torch.Tensor]:
    """The predict-evaluate-correct loop of measurement 2 on every set of ``starts``:
    ``weights(j, features)`` gives the j-th combination (even j: the prediction of
    x_(j/2 + 1), odd j: the correction of x_((j+1)/2); ``features`` the pilots' state and
    values it combines), so one loop serves the greedy fit and the replay of fixed weights."""
    states = dict(starts)
    values: dict[str, list[torch.Tensor]] = {key: [] for key in starts}
    previous = states
    j = 0
    for n, sigma in enumerate(sigmas[:-1]):
        for key, x in states.items():
            values[key].append(model(x, torch.full((x.shape[0],), sigma, dtype=x.dtype)))
        if n:  # correct x_n with the value at its prediction
            w = weights(j, [previous["pilot"], *values["pilot"]])
            states = {key: combine(w, [previous[key], *values[key]]) for key in starts}
            j += 1
        previous = states
        w = weights(j, [states["pilot"], *values["pilot"]])
        states = {key: combine(w, [states[key], *values[key]]) for key in starts}
        j += 1
    return states


def greedy(
    model: Callable[..., torch.Tensor],
    starts: dict[str, torch.Tensor],
    exact: list[torch.Tensor],
    sigmas: list[float],
    group: str,
) -> dict[str, torch.Tensor]:
    """Measurement 2 of the module docstring: every set's result, the weights fitted on
    ``starts["pilot"]`` against its exact states ``exact`` at the grid ``sigmas`` (with
    ``group`` "shared" the construction of runtime.fitted_free.greedy_solver, a test checks)."""

    def fit(j: int, features: list[torch.Tensor]) -> torch.Tensor:
        return least_squares(features, exact[(j + 2) // 2], group)

    return linear_run(model, starts, sigmas, fit)


class Sets(NamedTuple):
    """The pilot, test and held-out problems of one benchmark (seeds SEEDS), their starts x~ at
    sigma~_max = e^(-lam0), and the scale alpha1 of x at the end, lam1."""

    problems: dict[str, Problem]
    starts: dict[str, torch.Tensor]
    lam0: float
    lam1: float
    alpha1: float


def draw_sets(problem: str, batches: dict[str, int]) -> Sets:
    """``batches`` starting points per set of SEEDS, drawn as builtin_problem draws them."""
    problems = {key: builtin_problem(problem, batch=batches[key], seed=SEEDS[key]) for key in SEEDS}
    task = problems["pilot"]
    lam0, lam1 = float(task.schedule.lam(task.t_start)), float(task.schedule.lam(task.t_end))
    alpha0, _ = task.schedule.alpha_sigma_of_lam(lam0)
    alpha1, _ = task.schedule.alpha_sigma_of_lam(lam1)
    starts = {key: p.x_start / alpha0 for key, p in problems.items()}
    return Sets(problems, starts, lam0, lam1, float(alpha1))


def against_peer(rows: dict[str, dict], peer: str) -> None:
    """Every row's test and held-out defect as a ratio to the row ``peer``'s (rows without a
    test defect, such as a reference's accuracy, are left as they are)."""
    best = rows[peer]
    for row in rows.values():
        if "pilot" in row:
            row["test_vs_peer"] = row["test"] / best["test"]
            row["held_out_vs_peer"] = row["held_out"] / best["held_out"]


def ratio_table(rows: dict[str, dict]) -> list[str]:
    """The markdown lines of the rows' pilot, test, held-out defects and ratios to the peer."""
    lines = [
        "| row | pilot | test | held-out | test / peer | held-out / peer |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['pilot']:.3e} | {row['test']:.3e} | {row['held_out']:.3e} | "
            f"{row['test_vs_peer']:.2f} | {row['held_out_vs_peer']:.2f} |"
        )
    return lines


def measure(
    problem: str = "unet",
    nfe: int = 10,
    pilot_batch: int = 32,
    test_batch: int = 8,
    held_out_batch: int = 16,
    substeps: int = 48,
    iterations: int = 40,
    groups: tuple[str, ...] = GROUPS,
    peer: str = "dpmpp_2m",
) -> dict:
    started = time.perf_counter()
    batches = {"pilot": pilot_batch, "test": test_batch, "held_out": held_out_batch}
    drawn = draw_sets(problem, batches)
    sets, starts, alpha1 = drawn.problems, drawn.starts, drawn.alpha1
    lam0, lam1 = drawn.lam0, drawn.lam1
    task = sets["pilot"]
    model = task.denoiser
    sigma_max, sigma_min = math.exp(-lam0), math.exp(-lam1)

    def judge(outs: dict[str, torch.Tensor]) -> dict[str, float]:
        return {key: defect(alpha1 * outs[key], p.reference) for key, p in sets.items()}

    rows: dict[str, dict] = {}
    logsnr = torch.exp(-torch.linspace(lam0, lam1, nfe + 1, dtype=torch.float64)).tolist()
    grids = {"log-SNR": logsnr}
    with torch.no_grad():
        after: list[torch.Tensor] = []  # test starts: the state at sigma_(i+1) after step i

        def keep(event: dict) -> None:
            after.append(event["x"])

        peer_outs = {}
        for key, x in starts.items():
            record = keep if key == "test" else None
            peer_outs[key] = sample(
                model, x, "edm", peer, output="edm", sigmas=logsnr, callback=record
            )
        rows[f"{peer} (log-SNR)"] = judge(peer_outs)
        test = sets["test"].reference
        outs = continued(model, [starts["test"], *after], logsnr, substeps)
        where = {
            peer: [
                {"k": k, "sigma": logsnr[k], "test": defect(alpha1 * out, test)}
                for k, out in enumerate(outs, start=1)
            ]
        }
    if iterations:
        solver = fit_solver(
            model, starts["pilot"], task.reference / alpha1, sigma_max, sigma_min, nfe,
            iterations=iterations,
        )  # fmt: skip
        grids["fitted"] = solver.sigmas
        outs, paths = {}, {}
        for key, x in starts.items():
            paths[key] = [x]
            outs[key] = solver.sample(
                model, x, callback=lambda e, p=paths[key]: p.append(e["denoised"])
            )
        rows["fitted solver"] = judge(outs) | {"fit_seconds": solver.info["seconds"]}
        starting: list[torch.Tensor] = []  # the fitted solver's callback x: step n's start
        solver.sample(model, starts["test"], callback=lambda e: starting.append(e["x"]))
        outs = continued(model, starting, solver.sigmas, substeps)
        where["fitted solver"] = [
            {"k": k, "sigma": solver.sigmas[k], "test": defect(alpha1 * out, test)}
            for k, out in enumerate(outs, start=1)
        ]
        with torch.no_grad():
            for group in groups:
                weights = least_squares(paths["pilot"], task.reference / alpha1, group)
                rows[f"fitted solver, final combination refitted ({group})"] = judge(
                    {key: combine(weights, path) for key, path in paths.items()}
                )
    with torch.no_grad():
        for name, sigmas in grids.items():
            exact = {key: exact_states(model, x, sigmas, substeps) for key, x in starts.items()}
            on_path = {}  # x_T and the values at the exact states of the grid
            for key, states in exact.items():
                on_path[key] = [starts[key]] + [
                    model(state, torch.full((state.shape[0],), sigma, dtype=state.dtype))
                    for state, sigma in zip(states[:-1], sigmas, strict=False)
                ]
            rows[f"fine solve ({name}, {substeps} substeps)"] = judge(
                {key: states[-1] for key, states in exact.items()}
            )
            weights = least_squares(on_path["pilot"], exact["pilot"][-1], "shared")
            rows[f"exact path ({name})"] = judge(
                {key: combine(weights, values) for key, values in on_path.items()}
            )
            for group in groups:
                rows[f"greedy least squares, {group} ({name})"] = judge(
                    greedy(model, starts, exact["pilot"], sigmas, group)
                )
    against_peer(rows, f"{peer} (log-SNR)")
    return {
        "meta": {
            "problem": f"{problem}, sigma~ {sigma_max:.4g} -> {sigma_min:.4g}; weights from the "
            "pilots (seed 1), judged on test (seed 0) and held-out (seed 2) starts",
            "nfe": nfe,
            "batches": batches,
            "substeps": substeps,
            "iterations": iterations,
            "peer": peer,
            "seconds": round(time.perf_counter() - started, 1),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "rows": rows,
        "where": where,
    }


def render(result: dict) -> str:
    meta = result["meta"]
    b = meta["batches"]
    lines = [
        f"problem: {meta['problem']}; NFE {meta['nfe']}; pilots {b['pilot']}, test {b['test']}, "
        f"held-out {b['held_out']}; {meta['seconds']} s (python {meta['python']}, torch "
        f"{meta['torch']})",
        "",
        *ratio_table(result["rows"]),
    ]
    solvers = list(result["where"])
    lines += [
        "",
        "Where the error is made: each solver's first k steps, then a fine solve to the end "
        "(test starts)",
        "",
        "| k | " + " | ".join(f"sigma_k, {name} | then exact" for name in solvers) + " |",
        "|---|" + "---|---|" * len(solvers),
    ]
    for k, entries in enumerate(zip(*result["where"].values(), strict=True), start=1):
        cells = " | ".join(f"{e['sigma']:.4g} | {e['test']:.3e}" for e in entries)
        lines.append(f"| {k} | {cells} |")
    return "\n".join(lines)


def arguments(
    description: str, pilot: int, extra: Callable[[argparse.ArgumentParser], None]
) -> tuple[argparse.Namespace, tuple[str, ...]]:
    """The command line both fitted-limits benchmarks share (sets, budget, groups, peer,
    format; ``pilot`` the default pilot count), ``extra`` adding a benchmark's own options;
    the parsed arguments and the groups, checked."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--problem", default="unet")
    parser.add_argument("--nfe", type=int, default=10)
    parser.add_argument("--pilot", type=int, default=pilot)
    parser.add_argument("--test", type=int, default=8)
    parser.add_argument("--held-out", type=int, default=16)
    parser.add_argument("--groups", default=",".join(GROUPS))
    parser.add_argument("--peer", default="dpmpp_2m")
    parser.add_argument("--format", choices=["markdown", "json"], default="markdown")
    extra(parser)
    args = parser.parse_args()
    groups = tuple(args.groups.split(","))
    if not set(groups) <= set(GROUPS):
        parser.error(f"--groups must name some of {', '.join(GROUPS)}, got {args.groups!r}")
    return args, groups


def main() -> None:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--substeps", type=int, default=48)
        parser.add_argument("--iterations", type=int, default=40, help="0: no fitted solver")

    args, groups = arguments(__doc__.splitlines()[0], 32, extra)
    torch.set_num_threads(2)
    result = measure(
        args.problem, args.nfe, args.pilot, args.test, args.held_out, args.substeps,
        args.iterations, groups, args.peer,
    )  # fmt: skip
    print(json.dumps(result, indent=2) if args.format == "json" else render(result))


if __name__ == "__main__":
    main()
