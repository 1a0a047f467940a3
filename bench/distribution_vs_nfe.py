"""Benchmark: distance to the true distribution against NFE, stochastic and deterministic samplers.

The built-in 10-component Gaussian mixture on scikit-learn's digits (64 dimensions) is sampled
exactly, so every sampler can be compared with the true distribution: x_T = x0 + 80 eps with x0
drawn from the mixture is the exact marginal at sigma = 80 (EDM coordinates), and each sampler
solves to sigma = 0 on Karras sigmas (rho = 7). Distances of n generated samples to the truth:
the Frechet distance of their Gaussian fit to the mixture's exact mean and covariance (no
sampling noise on the target side), and a sliced Wasserstein-2 distance (256 random directions)
to n exact samples. The floor is the same distance for exact sample sets of size n, averaged over
``floor_sets`` independent sets (its spread is printed). k-diffusion's samplers run in the same
process when installed, with independent Gaussian increments as their noise (the law of their
samples on a fixed grid is that of their Brownian-tree default, which costs ~10x more at this n).
A sampler "reaches the floor" at the smallest NFE where its Frechet distance is at most 1.25 x the
mean floor.

``--denoiser network`` samples the trained MLP of :mod:`phiforge.runtime.network` (fitted to the
same mixture) instead of the exact posterior mean, against the same truth: the samplers then
converge to the network's distribution, whose distance to the truth is model error.

Usage: python bench/distribution_vs_nfe.py [--samples 10000] [--seed 0] [--eta 1]
       [--denoiser gmm|network] [--budgets 5 7 ...] [--format markdown|json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import time
from collections.abc import Callable

import numpy as np
import torch

from phiforge.runtime.denoisers import builtin_denoiser
from phiforge.runtime.driver import sample
from phiforge.runtime.methods import load_method
from phiforge.runtime.peers import kdiffusion_sampling
from phiforge.runtime.restart import karras_sigmas, restart_from
from phiforge.runtime.verification import covariance_root, frechet_tensor

BUDGETS = (5, 7, 10, 15, 20, 30, 50, 100, 200)
SIGMA_MAX, SIGMA_MIN = 80.0, 0.002

# (label, method, NFE per step, options); the final step to 0 costs one evaluation
OURS = [
    ("seeds_1", "seeds_1", 1, {}),
    ("seeds_2", "seeds_2a", 2, {}),
    ("seeds_3", "seeds_3a", 3, {}),
    ("seeds_res_4s", "seeds_res_4s", 5, {}),
    ("res_2m_sde", "res_2m_sde", 1, {}),
    ("res_3m_sde", "res_3m_sde", 1, {}),
    ("res_2s + restart", "res_2s", 2, {"restart": "3,2,0.06,0.30"}),
    ("res_3m (ODE)", "res_3m", 1, {}),
    ("res_3m_pc (ODE)", "res_3m_pc", 1, {}),
    ("dpmpp_2m (ODE)", "dpmpp_2m", 1, {}),
]
PEERS = {
    "k:euler_ancestral": ("sample_euler_ancestral", 1),
    "k:dpmpp_2s_ancestral": ("sample_dpmpp_2s_ancestral", 2),
    "k:dpmpp_2m_sde": ("sample_dpmpp_2m_sde", 1),
    "k:dpmpp_3m_sde": ("sample_dpmpp_3m_sde", 1),
}


def exact_starts(gmm, n: int, generator: torch.Generator) -> torch.Tensor:
    """n starting points x0 + SIGMA_MAX z with x0 exact draws of the mixture (x~ at SIGMA_MAX)."""
    x0 = gmm.sample_data(n, generator)
    return x0 + SIGMA_MAX * torch.randn(x0.shape, generator=generator, dtype=x0.dtype)


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, directions: np.ndarray) -> float:
    pa, pb = np.sort(a @ directions, axis=0), np.sort(b @ directions, axis=0)
    return float(np.sqrt(((pa - pb) ** 2).mean()))


def crossing_nfe(results: list[dict], threshold: float, key: str = "frechet") -> float | None:
    """The NFE where the distance ``key`` first falls to ``threshold``, interpolating
    log distance against log NFE between the two budgets around the first hit (a finer figure
    than the first budget that hits, for comparing samplers between budgets). A row already
    at or below the threshold at its first budget crosses there (an upper bound), whatever it
    does later."""
    if results and results[0][key] <= threshold:
        return float(results[0]["nfe"])
    for before, after in itertools.pairwise(results):
        if before[key] > threshold >= after[key] and after["nfe"] > before["nfe"]:
            slope = math.log(after[key] / before[key]) / math.log(after["nfe"] / before["nfe"])
            return before["nfe"] * math.exp(math.log(threshold / before[key]) / slope)
    return None


def _steps_for(budget: int, per_step: int, restart_extra: int = 0) -> int:
    """Intervals (the last to 0 costs 1) with NFE <= budget."""
    return max(1, (budget - 1 - restart_extra) // per_step + 1)


def peer_runs(k, model, x_start: torch.Tensor, seed: int, eta: float) -> dict:
    """label -> run(budget) for k-diffusion's stochastic samplers (none without k-diffusion):
    Karras sigmas with the step to 0, independent Gaussian increments from seed + 1, the
    model's calls counted."""
    if k is None:
        return {}
    runs = {}
    for label, (function, per_step) in PEERS.items():
        sampler = getattr(k, function)

        def run(budget, sampler=sampler, per_step=per_step):
            n = _steps_for(budget, per_step)
            if n < 2:
                return None
            sigmas = torch.tensor(
                [*karras_sigmas(SIGMA_MAX, SIGMA_MIN, n), 0.0], dtype=x_start.dtype
            )
            torch.manual_seed(1 + seed)
            calls = [0]

            def counted(x, sigma):
                calls[0] += 1
                return model(x, sigma)

            out = sampler(
                counted,
                x_start,
                sigmas,
                disable=True,
                eta=eta,
                noise_sampler=k.default_noise_sampler(x_start),
            )
            return out, calls[0]

        runs[label] = run
    return runs


def measure(
    samples: int = 10000,
    budgets: tuple[int, ...] = BUDGETS,
    labels: list[str] | None = None,
    seed: int = 0,
    eta: float = 1.0,
    floor_sets: int = 8,
    denoiser: str = "gmm",
    extra_rows: dict[str, Callable[[torch.Tensor, int], tuple[torch.Tensor, int] | None]]
    | None = None,
) -> dict:
    """``seed`` draws the exact sets, the starting points and every sampler's noise (seed 0 is
    the documented table); ``eta`` is the stochastic samplers' (SEEDS and k-diffusion's);
    ``denoiser`` is the model the samplers call (the truth is always the mixture);
    ``extra_rows`` adds rows: label -> run(x_start, budget) returning (samples, NFE) or None
    (bench/fitted_sde.py adds the fitted stochastic solvers this way)."""
    started = time.perf_counter()
    gmm = builtin_denoiser("gmm")
    model_denoiser = builtin_denoiser(denoiser)
    mean, covariance = gmm.moments()
    truth = (mean, covariance_root(covariance))

    def frechet(points: torch.Tensor) -> float:
        """The Frechet distance of the points' Gaussian fit to the exact moments."""
        return float(frechet_tensor(points, *truth))

    generator = torch.Generator().manual_seed(seed)
    exact = gmm.sample_data(samples, generator).numpy()
    x_start = exact_starts(gmm, samples, generator)
    directions = np.random.default_rng(0).standard_normal((64, 256))
    directions /= np.linalg.norm(directions, axis=0)
    floor_draws = {"frechet": [], "sliced_w2": []}
    for _ in range(floor_sets):
        other = gmm.sample_data(samples, generator)
        floor_draws["frechet"].append(frechet(other))
        floor_draws["sliced_w2"].append(sliced_wasserstein(other.numpy(), exact, directions))
    floor = {name: float(np.mean(v)) for name, v in floor_draws.items()}
    floor["spread"] = {name: float(np.std(v, ddof=1)) for name, v in floor_draws.items()}
    floor["sets"] = floor_sets
    rows: dict[str, list[dict]] = {}

    def record(label: str, run) -> None:
        rows[label] = []
        for budget in budgets:
            result = run(budget)
            if result is None:  # the configuration does not fit the budget
                continue
            out, nfe = result
            generated = out.numpy()
            rows[label].append(
                {
                    "budget": budget,
                    "nfe": nfe,
                    "frechet": frechet(out),
                    "sliced_w2": sliced_wasserstein(generated, exact, directions),
                }
            )

    for label, method, per_step, options in OURS:
        if labels and label not in labels:
            continue
        restart = restart_from(options["restart"]) if "restart" in options else None
        extra = per_step * sum(i.nfe_steps for i in restart.intervals) if restart else 0

        def run(budget, method=method, per_step=per_step, options=options, extra=extra):
            n = _steps_for(budget, per_step, extra)
            if n < 2 or (extra and n < 4):  # a grid has both ends; a restart needs points
                return None  # around its interval
            sigmas = [*karras_sigmas(SIGMA_MAX, SIGMA_MIN, n), 0.0]
            out, info = sample(
                model_denoiser,
                x_start,
                "edm",
                method,
                sigmas=sigmas,
                output="edm",
                seeds=[seed * samples + i for i in range(samples)]
                if method.startswith("seeds")
                else None,
                generator=torch.Generator().manual_seed(1 + seed),
                return_info=True,
                **({"eta": eta} if load_method(method).STOCHASTIC else {}),  # ODEs refuse eta
                **options,
            )
            return out, info.nfe

        record(label, run)
    k = kdiffusion_sampling()
    for label, run in peer_runs(k, model_denoiser, x_start, seed, eta).items():
        if not labels or label in labels:
            record(label, run)
    for label, run_extra in (extra_rows or {}).items():
        record(label, lambda budget, run_extra=run_extra: run_extra(x_start, budget))
    reach, crossing = {}, {}
    for label, results in rows.items():
        hits = [r["nfe"] for r in results if r["frechet"] <= 1.25 * floor["frechet"]]
        reach[label] = min(hits) if hits else None
        crossing[label] = crossing_nfe(results, 1.25 * floor["frechet"])
    return {
        "meta": {
            "samples": samples,
            "eta": eta,
            "denoiser": denoiser,
            "seconds": round(time.perf_counter() - started, 1),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "kdiffusion": k is not None,
        },
        "floor": floor,
        "rows": rows,
        "reach": reach,
        "crossing": crossing,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eta", type=float, default=1.0)
    parser.add_argument("--denoiser", choices=["gmm", "network"], default="gmm")
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    parser.add_argument("--format", choices=["markdown", "json"], default="markdown")
    args = parser.parse_args()
    torch.set_num_threads(2)
    result = measure(
        args.samples, tuple(args.budgets), seed=args.seed, eta=args.eta, denoiser=args.denoiser
    )
    if args.format == "json":
        print(json.dumps(result, indent=2))
        return
    print_tables(result)


def print_tables(result: dict) -> None:
    """The floor line and the markdown table of :func:`measure`'s result."""
    meta, floor = result["meta"], result["floor"]
    spread = floor["spread"]
    print(
        f"digits GMM (model: {meta['denoiser']}), {meta['samples']} samples per sampler, eta "
        f"{meta['eta']:g}; floor (mean "
        f"+- sd over {floor['sets']} exact sets): Frechet {floor['frechet']:.4f} +- "
        f"{spread['frechet']:.4f}, sliced W2 {floor['sliced_w2']:.4f} +- "
        f"{spread['sliced_w2']:.4f}; {meta['seconds']} s\n"
    )
    budgets = sorted({r["budget"] for rows in result["rows"].values() for r in rows})
    print("Frechet distance (sliced W2) at NFE <= budget (NFE used in brackets when lower)\n")
    print(
        "| sampler | "
        + " | ".join(f"NFE {b}" for b in budgets)
        + " | reaches 1.25 x floor at | interpolated |"
    )
    print("|---|" + "---|" * (len(budgets) + 2))
    for label, results in result["rows"].items():
        by_budget = {r["budget"]: r for r in results}
        cells = [
            "-"
            if b not in by_budget
            else f"{by_budget[b]['frechet']:.4f} "
            f"({by_budget[b]['sliced_w2']:.4f})"
            + ("" if by_budget[b]["nfe"] == b else f" [{by_budget[b]['nfe']}]")
            for b in budgets
        ]
        reach, crossing = result["reach"][label], result["crossing"][label]
        print(
            f"| {label} | "
            + " | ".join(cells)
            + f" | {reach if reach else '-'} | {f'{crossing:.1f}' if crossing else '-'} |"
        )


if __name__ == "__main__":
    main()
