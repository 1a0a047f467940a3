"""Benchmark: stochastic solvers fitted to the model, against SEEDS and k-diffusion's SDE samplers.

The protocol of ``bench/distribution_vs_nfe.py`` (the built-in digits mixture sampled exactly,
x_T at sigma = 80, Frechet distance of n samples to the exact moments and sliced W2 to n exact
samples, the floor of exact sets, "reaches the floor" at 1.25 x its mean) with extra rows: for
every budget up to ``--fit-max``, a stochastic solver of runtime.fitted (eta as the other
samplers', the drift's Adams weights and the grid fitted under order-2 exactness, SEEDS'
exact single-stage noise) of exactly that many evaluations, from sigma = 80 to 0.002 (its
output is x at sigma = 0.002; the other samplers step to 0).

The fit sees none of the benchmark's points or noise: ``--pilot`` starting points of their own
seed, as reference the samples of a 512-step res_4m_pc ODE solve of those points (the model's
distribution, not the data), fixed pilot noise, the Karras grid (rho 7) as the starting grid
(``--starts karras7 karras3 logsnr``: the first fit from each, the lowest pilot objective kept),
and the objective the Frechet distance between the Gaussian fits of the pilot outputs and of
that reference. The benchmark's Frechet distance measures the same functional (on fresh
points and noise, against the exact moments); the sliced W2 column is the check that does not
share the objective, and the summary gives the crossing of both.

``--continuation 0.5`` fits every budget first at eta = 0.5 (from the Karras grid) and then at
``--eta`` from that solver: at eta = 1 the fit from the Karras grid stops in poor minima.
``--coupled 32`` then refits the weights (grid kept) against a fine solve with 32 sub-steps per
step that shares the pilot noise's Brownian path (runtime.fitted.coupled_reference), which
lowers the objective's sampling noise. ``--coupled-pilot N`` does that refit on N fresh pilots
(their own seed) and ``--coupled-full`` fits the grid and every step's noise amplitude with the
weights (the coupled normals kept fixed while the grid moves: they stay unit and independent,
the coupling only loosens).

Usage: python bench/fitted_sde.py [--eta 1] [--continuation 0.5] [--coupled 32]
       [--coupled-pilot 12288] [--coupled-full] [--starts karras7 logsnr] [--pilot 4096]
       [--iterations 200]
       [--budgets 6 7 8 9 10 12 15 20 30 50] [--fit-max 15] [--samples 10000] [--seed 0]
       [--format markdown|json]
       python bench/fitted_sde.py --render result.json   (the report of a saved json result)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from distribution_vs_nfe import (
    SIGMA_MAX,
    SIGMA_MIN,
    crossing_nfe,
    exact_starts,
    measure,
    print_tables,
)

from phiforge.runtime.denoisers import builtin_denoiser
from phiforge.runtime.driver import sample
from phiforge.runtime.fitted import coupled_reference, fit_solver
from phiforge.runtime.restart import karras_sigmas

BUDGETS = (6, 7, 8, 9, 10, 12, 15, 20, 30, 50)
COMPARED = ["seeds_3", "res_3m_pc (ODE)", "dpmpp_2m (ODE)", "k:dpmpp_2m_sde", "k:dpmpp_3m_sde"]
PEER_SDE = ("k:dpmpp_2m_sde", "k:dpmpp_3m_sde", "k:dpmpp_2s_ancestral", "k:euler_ancestral")
TEACHER, TEACHER_STEPS = "res_4m_pc", 512
LABEL = "fitted SDE solver"


def start_grid(name: str, budget: int) -> list[float]:
    """The starting grid ``name`` of ``budget`` steps from SIGMA_MAX to SIGMA_MIN:
    ``karras<rho>`` (uniform in sigma^(1/rho), Karras et al. 2022, eq. 5) or ``logsnr``
    (uniform in lambda = -log sigma, DPM-Solver's logSNR; the rho -> infinity limit)."""
    if name == "logsnr":
        lams = np.linspace(-math.log(SIGMA_MAX), -math.log(SIGMA_MIN), budget + 1)
        grid = np.exp(-lams)
        grid[0], grid[-1] = SIGMA_MAX, SIGMA_MIN
        return [float(s) for s in grid]
    if name.startswith("karras"):
        try:
            rho = float(name[len("karras") :])
        except ValueError:
            rho = math.nan
        if math.isfinite(rho) and rho > 0:
            return karras_sigmas(SIGMA_MAX, SIGMA_MIN, budget + 1, rho)
    raise ValueError(
        f"parameter 'starts': unknown starting grid {name!r}; allowed: 'logsnr' or "
        "'karras<rho>' with rho > 0 (e.g. 'karras7')"
    )


def fitted_runs(
    eta: float,
    pilot: int,
    iterations: int,
    fit_max: int,
    seed: int,
    denoiser: str = "gmm",
    continuation: tuple[float, ...] = (),
    coupled: int = 0,
    coupled_pilot: int = 0,
    coupled_full: bool = False,
    starts: tuple[str, ...] = ("karras7",),
) -> tuple[dict, dict]:
    """The extra row for :func:`measure` and the record of every fit (filled as it runs).
    ``continuation``: lower etas fitted first, each fit starting from the previous one
    (fit_solver's ``start``) and the last at ``eta``; ``coupled``: sub-steps of a coupled
    reference on which the last solver's weights are refitted (0: none), on ``coupled_pilot``
    fresh pilots (0: the same ones), with the grid and noise amplitudes if ``coupled_full``;
    ``starts``: the starting grids (:func:`start_grid`) of the first level's fits, of which the
    one with the lowest pilot objective is continued."""
    for name in starts:
        start_grid(name, 2)  # unknown names are refused before any fit runs
    model = builtin_denoiser(denoiser)
    gmm = builtin_denoiser("gmm")
    x_pilot = exact_starts(gmm, pilot, torch.Generator().manual_seed(1000 + seed))
    lams = np.linspace(-math.log(SIGMA_MAX), -math.log(SIGMA_MIN), TEACHER_STEPS + 1)
    teacher = sample(model, x_pilot, "edm", TEACHER, output="edm", sigmas=np.exp(-lams).tolist())
    fits: dict[int, dict] = {}
    x_coupled = x_pilot
    if coupled_pilot:
        x_coupled = exact_starts(gmm, coupled_pilot, torch.Generator().manual_seed(2000 + seed))

    def run(x_start: torch.Tensor, budget: int):
        if budget > fit_max or budget < 2:
            return None
        solver, chain = None, []
        levels = (*continuation, eta)
        for name in starts:  # the first level from every starting grid; the best is kept
            candidate = fit_solver(
                model, x_pilot, teacher, SIGMA_MAX, SIGMA_MIN, budget, eta=levels[0],
                iterations=iterations, seed=7 + seed, sigmas=start_grid(name, budget),
            )  # fmt: skip
            if solver is None or candidate.info["pilot_frechet"] < solver.info["pilot_frechet"]:
                solver = candidate
                for step in chain:
                    step["kept"] = False
            chain.append({"eta": levels[0], "start": name, "kept": solver is candidate,
                          **candidate.info})  # fmt: skip
        for level in levels[1:]:
            solver = fit_solver(
                model, x_pilot, teacher, SIGMA_MAX, SIGMA_MIN, budget, eta=level,
                iterations=iterations, seed=7 + seed, start=solver,
            )  # fmt: skip
            chain.append({"eta": level, **solver.info})
        if coupled:
            samples, normals = coupled_reference(
                model, x_coupled, solver.sigmas, eta, coupled, seed=11 + seed
            )
            solver = fit_solver(
                model, x_coupled, samples, SIGMA_MAX, SIGMA_MIN, budget, eta=eta,
                iterations=iterations, start=solver, fit_grid=coupled_full,
                fit_noise=coupled_full, noise=normals,
            )  # fmt: skip
            chain.append({"eta": eta, "coupled": coupled, **solver.info})
        fits[budget] = {
            **solver.info, "sigmas": solver.sigmas, "noise_scale": solver.noise_scale,
            "chain": chain,
        }  # fmt: skip
        print(
            f"fitted NFE {budget}: "
            + ", ".join(f"{step['pilot_frechet']:.4g} ({step['seconds']} s)" for step in chain),
            file=sys.stderr, flush=True,
        )  # fmt: skip
        out = solver.sample(model, x_start, generator=torch.Generator().manual_seed(1 + seed))
        return out, solver.nfe

    return {LABEL: run}, fits


def summary(result: dict) -> dict:
    """Crossings of both distances for the fitted row and the best peer SDE sampler."""
    floor = result["floor"]
    out = {}
    for key in ("frechet", "sliced_w2"):
        threshold = 1.25 * floor[key]
        crossings = {
            label: crossing_nfe(rows, threshold, key) for label, rows in result["rows"].items()
        }
        peers = {k: v for k, v in crossings.items() if k in PEER_SDE and v is not None}
        best = min(peers, key=peers.get) if peers else None
        ours = crossings.get(LABEL)
        out[key] = {
            "threshold": threshold,
            "crossing": crossings,
            "best_peer_sde": best,
            "ratio": ours / peers[best] if ours is not None and best is not None else None,
        }
    return out


def print_report(result: dict) -> None:
    """The markdown report of a result (of this run, or of ``--format json`` output read back
    with ``--render``): the benchmark's tables, every fit of the chain, the crossings."""
    print_tables(result)
    iterations = sorted(
        {step["iterations"] for fit in result["fits"].values() for step in fit["chain"]}
    )
    shown_iterations = "/".join(str(n) for n in iterations)
    print(f"\nfits ({shown_iterations} L-BFGS iterations at most)\n")
    print("| NFE | eta | reference | pilots | fitted | pilot Frechet before | after | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for budget, fit in result["fits"].items():
        for step in fit["chain"]:
            reference = f"coupled, {step['coupled']} sub-steps" if "coupled" in step else "ODE"
            if "start" in step:
                kept = "" if step["kept"] else ", not kept"
                reference += f" (from {step['start']}{kept})"
            fitted = [
                name
                for name, key in (("weights", "fit_weights"), ("grid", "fit_grid"),
                                  ("noise", "fit_noise"))
                if step[key]
            ]  # fmt: skip
            print(
                f"| {budget} | {step['eta']:g} | {reference} | {step['pilot_batch']} "
                f"| {', '.join(fitted)} | {step['pilot_frechet_start']:.4g} "
                f"| {step['pilot_frechet']:.4g} | {step['seconds']} |"
            )
        if fit["noise_scale"] is not None:
            scales = ", ".join(f"{a:.3f}" for a in fit["noise_scale"])
            print(f"| {budget} | | noise amplitudes a_n: {scales} | | | | | |")
    for key, entry in result["summary"].items():
        crossing = entry["crossing"]
        best = entry["best_peer_sde"]

        def shown(label, crossing=crossing):
            value = crossing.get(label)
            return "-" if value is None else f"{value:.1f}"

        ratio = "-" if entry["ratio"] is None else f"{entry['ratio']:.2f}"
        print(
            f"\n{key}: 1.25 x floor = {entry['threshold']:.4f}; crossing NFE: {LABEL} "
            f"{shown(LABEL)}, seeds_3 {shown('seeds_3')}, best peer SDE sampler {best} "
            f"{shown(best)}; ratio {ratio}"
        )
    rows = ", ".join(
        f"{row['frechet']:.7f} (NFE {row['nfe']})" for row in result["rows"].get(LABEL, [])
    )
    print(f"\nexact: threshold {result['summary']['frechet']['threshold']:.7f}; {LABEL}: {rows}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eta", type=float, default=1.0)
    parser.add_argument("--pilot", type=int, default=4096)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    parser.add_argument("--fit-max", type=int, default=15)
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--continuation", type=float, nargs="*", default=[], help="lower etas fitted first"
    )
    parser.add_argument(
        "--coupled", type=int, default=0, help="sub-steps of a coupled refit (0: none)"
    )
    parser.add_argument(
        "--coupled-pilot", type=int, default=0, help="fresh pilots of the coupled refit"
    )
    parser.add_argument(
        "--coupled-full", action="store_true", help="the coupled refit fits grid and noise too"
    )
    parser.add_argument(
        "--starts", nargs="+", default=["karras7"],
        help="starting grids of the first fit (karras<rho>, logsnr); the best is continued",
    )  # fmt: skip
    parser.add_argument("--denoiser", choices=["gmm", "network"], default="gmm")
    parser.add_argument("--format", choices=["markdown", "json"], default="markdown")
    parser.add_argument(
        "--render", type=Path, help="print the report of a saved --format json result; no run"
    )
    args = parser.parse_args()
    if args.render is not None:
        print_report(json.loads(args.render.read_text()))
        return
    torch.set_num_threads(2)
    started = time.perf_counter()
    extra, fits = fitted_runs(
        args.eta, args.pilot, args.iterations, args.fit_max, args.seed, args.denoiser,
        tuple(args.continuation), args.coupled, args.coupled_pilot, args.coupled_full,
        tuple(args.starts),
    )  # fmt: skip
    result = measure(
        args.samples, tuple(args.budgets), labels=COMPARED, seed=args.seed, eta=args.eta,
        denoiser=args.denoiser, extra_rows=extra,
    )  # fmt: skip
    result["fits"] = fits
    result["summary"] = summary(result)
    result["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    if args.format == "json":
        print(json.dumps(result, indent=2))
        return
    print_report(result)


if __name__ == "__main__":
    main()
