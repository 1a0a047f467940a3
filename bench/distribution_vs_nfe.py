"""Benchmark: distance to the true distribution against NFE, stochastic and deterministic samplers.

The built-in 10-component Gaussian mixture on scikit-learn's digits (64 dimensions) is sampled
exactly, so every sampler can be compared with exact samples: x_T = x0 + 80 eps with x0 drawn
from the mixture is the exact marginal at sigma = 80 (EDM coordinates), and each sampler solves
to sigma = 0 on Karras sigmas (rho = 7). Distances between n generated and n exact samples:
the Frechet distance of their Gaussian fits and a sliced Wasserstein-2 distance (256 random
directions); the floor is the same distance between two independent exact sample sets of size n.
k-diffusion's SDE samplers run in the same process when installed. A sampler "reaches the floor"
at the smallest NFE where its Frechet distance is at most 1.25 x the floor.

Usage: python bench/distribution_vs_nfe.py [--samples 1000] [--seed 0] [--format markdown|json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
from scipy import linalg

from phiforge.runtime.denoisers import builtin_denoiser
from phiforge.runtime.driver import sample
from phiforge.runtime.peers import kdiffusion_sampling
from phiforge.runtime.restart import karras_sigmas, restart_from

BUDGETS = (10, 15, 20, 30, 50, 100, 200)
SIGMA_MAX, SIGMA_MIN = 80.0, 0.002

# (label, method, NFE per step, options); the final step to 0 costs one evaluation
OURS = [
    ("seeds_1", "seeds_1", 1, {}),
    ("seeds_2", "seeds_2a", 2, {}),
    ("seeds_3", "seeds_3a", 3, {}),
    ("seeds_res_4s", "seeds_res_4s", 5, {}),
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


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, directions: np.ndarray) -> float:
    pa, pb = np.sort(a @ directions, axis=0), np.sort(b @ directions, axis=0)
    return float(np.sqrt(((pa - pb) ** 2).mean()))


def _steps_for(budget: int, per_step: int, restart_extra: int = 0) -> int:
    """Intervals (the last to 0 costs 1) with NFE <= budget."""
    return max(1, (budget - 1 - restart_extra) // per_step + 1)


def measure(
    samples: int = 1000,
    budgets: tuple[int, ...] = BUDGETS,
    labels: list[str] | None = None,
    seed: int = 0,
) -> dict:
    """``seed`` draws the exact sets, the starting points and every sampler's noise (seed 0 is
    the documented table; other seeds show how much the threshold figures move)."""
    started = time.perf_counter()
    gmm = builtin_denoiser("gmm")
    generator = torch.Generator().manual_seed(seed)
    exact = gmm.sample_data(samples, generator).numpy()
    floor_set = gmm.sample_data(samples, generator).numpy()
    x0 = gmm.sample_data(samples, generator)
    x_start = x0 + SIGMA_MAX * torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    directions = np.random.default_rng(0).standard_normal((64, 256))
    directions /= np.linalg.norm(directions, axis=0)
    floor = {
        "frechet": frechet(floor_set, exact),
        "sliced_w2": sliced_wasserstein(floor_set, exact, directions),
    }
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
                    "frechet": frechet(generated, exact),
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
            if extra and n < 4:  # a restart needs main grid points around its interval
                return None
            sigmas = [*karras_sigmas(SIGMA_MAX, SIGMA_MIN, n), 0.0]
            out, info = sample(
                gmm,
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
                **options,
            )
            return out, info.nfe

        record(label, run)
    k = kdiffusion_sampling()
    if k is not None:
        for label, (function, per_step) in PEERS.items():
            if labels and label not in labels:
                continue
            sampler = getattr(k, function)

            def run(budget, sampler=sampler, per_step=per_step):
                n = _steps_for(budget, per_step)
                sigmas = torch.tensor(
                    [*karras_sigmas(SIGMA_MAX, SIGMA_MIN, n), 0.0], dtype=torch.float64
                )
                torch.manual_seed(1 + seed)
                calls = [0]

                def model(x, sigma):
                    calls[0] += 1
                    return gmm(x, sigma)

                return sampler(model, x_start, sigmas, disable=True), calls[0]

            record(label, run)
    reach = {}
    for label, results in rows.items():
        hits = [r["nfe"] for r in results if r["frechet"] <= 1.25 * floor["frechet"]]
        reach[label] = min(hits) if hits else None
    return {
        "meta": {
            "samples": samples,
            "seconds": round(time.perf_counter() - started, 1),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "kdiffusion": k is not None,
        },
        "floor": floor,
        "rows": rows,
        "reach": reach,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=["markdown", "json"], default="markdown")
    args = parser.parse_args()
    torch.set_num_threads(2)
    result = measure(args.samples, seed=args.seed)
    if args.format == "json":
        print(json.dumps(result, indent=2))
        return
    meta, floor = result["meta"], result["floor"]
    print(
        f"digits GMM, {meta['samples']} samples per sampler; floor (two exact sets): Frechet "
        f"{floor['frechet']:.3f}, sliced W2 {floor['sliced_w2']:.4f}; {meta['seconds']} s\n"
    )
    budgets = sorted({r["budget"] for rows in result["rows"].values() for r in rows})
    print("Frechet distance (sliced W2) at NFE <= budget (NFE used in brackets when lower)\n")
    print("| sampler | " + " | ".join(f"NFE {b}" for b in budgets) + " | reaches 1.25 x floor at |")
    print("|---|" + "---|" * (len(budgets) + 1))
    for label, results in result["rows"].items():
        by_budget = {r["budget"]: r for r in results}
        cells = [
            "-"
            if b not in by_budget
            else f"{by_budget[b]['frechet']:.3f} "
            f"({by_budget[b]['sliced_w2']:.4f})"
            + ("" if by_budget[b]["nfe"] == b else f" [{by_budget[b]['nfe']}]")
            for b in budgets
        ]
        reach = result["reach"][label]
        print(f"| {label} | " + " | ".join(cells) + f" | {reach if reach else '-'} |")


if __name__ == "__main__":
    main()
