"""Benchmark: the grid searched for the free linear solver on a teacher trajectory, and its
weights refined end to end (the fitted solver's 0.3 x target of docs/bench-unet.md).

bench/fitted_limits.py found that the states leave the exact path in the high-noise steps, and
that weights fitted step by step to the exact states on the fitted solver's grid land where the
end-to-end fit does. Two freedoms that measurement left fixed are searched here:

1. **the grid, for the free solver**: one fine solve per starting point (res_3m_pc on
   ``--fine`` log-SNR-uniform steps) keeps the exact state at every fine point. A grid of
   ``nfe`` steps is a choice of ``nfe - 1`` interior fine points, searched by coordinate
   descent on the pilots' defect of the greedy least-squares solver (every prediction and
   correction a combination of the state and all values so far, fitted to the pilots' exact
   states), which costs ``nfe`` evaluations per pilot and no solve per candidate grid
   (``--cycles`` sweeps at most);
2. **end-to-end refinement**: on the searched grid, the same free weights (state coefficient
   included, not the PEC pair's fixed e^-h) fitted by L-BFGS through the model to the pilots'
   final defect, from the greedy weights (``--iterations``); with ``--fit-grid`` the grid and
   the weights are then refined together for as many iterations again.

Both are the package's: ``runtime.fitted_free.fit_free_solver`` (``phiforge fit --free``); the
result is a fitted solver run by the one executor.

Rows: the peer (``--peer``, default dpmpp_2m on log-SNR steps, the best peer of the U-Net's
defect table at NFE 10); the greedy solver on the log-SNR grid and on the searched grid (per
``--groups``: one set of weights, ``shared``, or one per component, ``value``); the refined
solver. Pilots seed 1, judged on test (seed 0) and held-out (seed 2) starts, as in
bench/fitted_limits.py; every set's reference is its own fine solve (its accuracy: the
problem's reference solve on the judged sets, printed as ``fine solve``). Then, start by start,
the last solver's error over the peer's (quantiles, and on the peer's easier and harder half of
the starts). ``--save FILE`` writes the last solver, to run or judge again (``load_solver``).

Usage: python bench/fitted_search.py [--problem unet] [--nfe 10] [--pilot 64] [--test 8]
       [--held-out 16] [--fine 400] [--iterations 30] [--cycles 1] [--start-grid FILE]
       [--fit-grid] [--save FILE] [--groups shared,value] [--format markdown|json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fitted_limits import GROUPS, against_peer, arguments, draw_sets, greedy, ratio_table

from phiforge.runtime.driver import sample
from phiforge.runtime.fitted import MAX_HISTORY, fit_solver
from phiforge.runtime.fitted_free import fit_free_solver, teacher_states
from phiforge.runtime.verification import defect, start_defects


def measure(
    problem: str = "unet",
    nfe: int = 10,
    pilot_batch: int = 64,
    test_batch: int = 8,
    held_out_batch: int = 16,
    fine: int = 400,
    iterations: int = 30,
    groups: tuple[str, ...] = GROUPS,
    peer: str = "dpmpp_2m",
    cycles: int = 1,
    fit_grid: bool = False,
    start_grid: list[float] | None = None,
    save: Path | None = None,
) -> dict:
    started = time.perf_counter()
    batches = {"pilot": pilot_batch, "test": test_batch, "held_out": held_out_batch}
    drawn = draw_sets(problem, batches)
    sets, starts, alpha1 = drawn.problems, drawn.starts, drawn.alpha1
    model = sets["pilot"].denoiser
    lams = torch.linspace(drawn.lam0, drawn.lam1, fine + 1, dtype=torch.float64)
    points = torch.exp(-lams).tolist()
    paths = {key: teacher_states(model, x, points, "res_3m_pc") for key, x in starts.items()}
    ends = {key: path[-1] for key, path in paths.items()}

    def judge(outs: dict[str, torch.Tensor]) -> dict[str, float]:
        return {key: defect(outs[key], ends[key]) for key in sets}

    def grid(indices: list[int]) -> tuple[list[float], list[torch.Tensor]]:
        return [points[i] for i in indices], [paths["pilot"][i] for i in indices]

    rows: dict[str, dict] = {
        "fine solve": {
            key: defect(alpha1 * ends[key], p.reference)
            for key, p in sets.items()
            if key != "pilot"
        }
    }
    uniform = [round(i * fine / nfe) for i in range(nfe + 1)]
    with torch.no_grad():
        peer_outs = {
            key: sample(model, x, "edm", peer, output="edm", sigmas=grid(uniform)[0])
            for key, x in starts.items()
        }
    rows[f"{peer} (log-SNR)"] = judge(peer_outs)

    solver = fit_free_solver(
        model, starts["pilot"], paths["pilot"], points, nfe, cycles=cycles,
        iterations=iterations, grid=start_grid,
    )  # fmt: skip
    searched = solver.info["grid_search"]["indices"]
    descent = solver.info["grid_search"]["descent"]
    with torch.no_grad():
        for name, indices in (("log-SNR", uniform), ("searched", searched)):
            sigmas, exact = grid(indices)
            for group in groups:
                rows[f"greedy least squares, {group} ({name})"] = judge(
                    greedy(model, starts, exact, sigmas, group)
                )
    sigmas = grid(searched)[0]
    final = solver
    if iterations:
        final_outs = {key: solver.sample(model, x) for key, x in starts.items()}
        rows["free weights refined end to end (searched)"] = judge(final_outs)
    if fit_grid and iterations:
        final = fit_solver(
            model, starts["pilot"], ends["pilot"], points[0], points[-1], nfe,
            history=min(nfe, MAX_HISTORY), free=True, start=solver, iterations=iterations,
        )  # fmt: skip
        final_outs = {key: final.sample(model, x) for key, x in starts.items()}
        rows["then grid and weights refined together"] = judge(final_outs)
    if save is not None:  # named for its denoiser: phiforge sample --fitted checks it
        dataclasses.replace(final, info=dict(final.info, denoiser=problem)).save(save)
    against_peer(rows, f"{peer} (log-SNR)")
    return {
        "meta": {
            "problem": f"{problem}, sigma~ {points[0]:.4g} -> {points[-1]:.4g}; weights from the "
            "pilots (seed 1), judged on test (seed 0) and held-out (seed 2) starts",
            "nfe": nfe,
            "batches": batches,
            "fine": fine,
            "iterations": iterations,
            "cycles": cycles,
            "start_grid": "log-SNR" if start_grid is None else start_grid,
            "peer": peer,
            "searched_sigmas": sigmas,
            **({"moved_sigmas": final.sigmas} if fit_grid and iterations else {}),
            "descent": descent,
            **(
                {"per_start": per_start(final_outs, peer_outs, ends, ("test", "held_out"))}
                if iterations
                else {}
            ),
            "seconds": round(time.perf_counter() - started, 1),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "rows": rows,
    }


def per_start(
    outs: dict[str, torch.Tensor],
    peer_outs: dict[str, torch.Tensor],
    ends: dict[str, torch.Tensor],
    keys: tuple[str, ...],
) -> dict[str, dict[str, float]]:
    """Start by start on the sets ``keys``: the ratio r_b = e_b / e_peer,b of the solver's RMS
    error to the peer's (quantiles 0.1, 0.5, 0.9), and the mean ratio over the half of the starts
    where the peer's error is smallest and over the half where it is largest (whether the solver
    gains most where the peer fails most)."""
    summary = {}
    for key in keys:
        ours, theirs = start_defects(outs[key], ends[key]), start_defects(peer_outs[key], ends[key])
        ratio = ours / theirs
        order = torch.argsort(theirs)
        half = len(order) // 2
        low, mid, high = torch.quantile(ratio, torch.tensor([0.1, 0.5, 0.9], dtype=ratio.dtype))
        summary[key] = {
            "starts": len(order),
            "ratio_q10": float(low),
            "ratio_median": float(mid),
            "ratio_q90": float(high),
            "ratio_where_peer_best": float(ratio[order[:half]].mean()),
            "ratio_where_peer_worst": float(ratio[order[half:]].mean()),
        }
    return summary


def render(result: dict) -> str:
    meta = result["meta"]
    b = meta["batches"]
    rows = dict(result["rows"])
    fine = rows.pop("fine solve")
    lines = [
        f"problem: {meta['problem']}; NFE {meta['nfe']}; pilots {b['pilot']}, test {b['test']}, "
        f"held-out {b['held_out']}; references: res_3m_pc on {meta['fine']} steps (against the "
        f"problem's reference: test {fine['test']:.1e}, held-out {fine['held_out']:.1e}); "
        f"{meta['seconds']} s (python {meta['python']}, torch {meta['torch']})",
        "",
        "searched sigmas: " + ", ".join(f"{s:.4g}" for s in meta["searched_sigmas"]),
        "",
        *ratio_table(rows),
    ]
    if "per_start" in meta:
        lines += [
            "",
            "start by start, the last solver's RMS error over the peer's:",
            "",
            "| set | starts | q10 | median | q90 | mean, peer's easier half | mean, harder half |",
            "|---|---|---|---|---|---|---|",
        ]
        for key, s in meta["per_start"].items():
            lines.append(
                f"| {key} | {s['starts']} | {s['ratio_q10']:.2f} | {s['ratio_median']:.2f} | "
                f"{s['ratio_q90']:.2f} | {s['ratio_where_peer_best']:.2f} | "
                f"{s['ratio_where_peer_worst']:.2f} |"
            )
    return "\n".join(lines)


def main() -> None:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--fine", type=int, default=400)
        parser.add_argument("--iterations", type=int, default=30, help="0: no refinement")
        parser.add_argument("--cycles", type=int, default=1, help="sweeps of the descent")
        parser.add_argument(
            "--start-grid",
            metavar="FILE",
            help="start the descent from the searched grid of an earlier run's JSON (same "
            "--problem, --nfe, --fine), not from log-SNR steps",
        )
        parser.add_argument(
            "--fit-grid",
            action="store_true",
            help="then refine grid and weights together (as many iterations again)",
        )
        parser.add_argument(
            "--save", metavar="FILE", help="write the last solver (phiforge's fitted-solver JSON)"
        )

    args, groups = arguments(__doc__.splitlines()[0], 64, extra)
    if args.fine < 2 * args.nfe:
        raise SystemExit(f"--fine must be at least 2 * --nfe ({2 * args.nfe}), got {args.fine}")
    if args.save is not None and not Path(args.save).parent.is_dir():
        raise SystemExit(f"--save: folder {Path(args.save).parent} does not exist")
    start_grid = None
    if args.start_grid is not None:
        start_grid = json.loads(Path(args.start_grid).read_text())["meta"]["searched_sigmas"]
    torch.set_num_threads(2)
    result = measure(
        args.problem, args.nfe, args.pilot, args.test, args.held_out, args.fine,
        args.iterations, groups, args.peer, args.cycles, args.fit_grid, start_grid,
        None if args.save is None else Path(args.save),
    )  # fmt: skip
    print(json.dumps(result, indent=2) if args.format == "json" else render(result))


if __name__ == "__main__":
    main()
