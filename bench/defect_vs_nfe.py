"""Benchmark: numerical defect against NFE on the digits mixture, phiforge next to its peers.

Every sampler starts from the same x_T and solves the same probability-flow ODE of the built-in
10-component Gaussian mixture fitted to scikit-learn's digits (VP linear, t = 1 -> 1e-3, i.e.
sigma~ = sigma/alpha from 152 to 0.0105); the defect is the mean RMS distance to the DOP853
reference (rtol 1e-12) at the end (spec-dpmsolver-res §7.9). k-diffusion's deterministic samplers
(``k:``) and diffusers' ODE schedulers (``d:``, see :func:`diffusers_run`) run in the same process
when those packages are installed; every sampler, peer or ours, runs on Karras sigmas
(k-diffusion's default, rho = 7) and on log-SNR-uniform sigmas, and the summary compares the best
of each side over both grids. Each sampler gets the largest step count whose NFE does not exceed
the budget; the NFE it used is printed.

Usage: python bench/defect_vs_nfe.py [--batch 32] [--problem gmm|network|unet] [--format ...]
(``--problem unet``: the U-Net on image patches, reference res_3m_pc on 512 steps.)
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections.abc import Callable

import numpy as np
import torch

from phiforge.runtime.adaptive import Adaptive
from phiforge.runtime.driver import sample
from phiforge.runtime.peers import diffusers_available, kdiffusion_sampling
from phiforge.runtime.restart import karras_sigmas
from phiforge.runtime.schedules import NoiseSchedule
from phiforge.runtime.stepping import load_method, ode_methods
from phiforge.runtime.verification import builtin_problem, defect

PEER_PREFIXES = ("k:", "d:")  # k-diffusion's and diffusers' rows
BUDGETS = (5, 6, 8, 10, 12, 15, 20, 30, 50)
RTOLS = (0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002)

# k-diffusion samplers that are deterministic ODE solvers, with their NFE for n intervals
# ending at sigma_min > 0 (no final step to 0): name -> (function name, nfe(n), options)
KDIFFUSION = {
    "k:euler": ("sample_euler", lambda n: n, {}),
    "k:heun": ("sample_heun", lambda n: 2 * n, {}),
    "k:dpm_2": ("sample_dpm_2", lambda n: 2 * n, {}),
    "k:lms": ("sample_lms", lambda n: n, {}),
    "k:dpmpp_2m": ("sample_dpmpp_2m", lambda n: n, {}),
    "k:dpmpp_2s(eta=0)": ("sample_dpmpp_2s_ancestral", lambda n: 2 * n, {"eta": 0.0}),
    "k:dpmpp_2m_sde(eta=0)": ("sample_dpmpp_2m_sde", lambda n: n, {"eta": 0.0}),
    "k:dpmpp_3m_sde(eta=0)": ("sample_dpmpp_3m_sde", lambda n: n, {"eta": 0.0}),
}


# diffusers schedulers that are deterministic ODE solvers (one model evaluation per step):
# label -> (class name, configuration). Each runs with prediction_type="sample" (the denoiser's
# x0) and lower_order_final=False; final_sigmas_type="sigma_min" where the scheduler has it
# (otherwise diffusers treats the last step as one to sigma = 0 and drops to first order). The
# run ends at sigma_min > 0, where diffusers' low-order final steps are not needed for stability.
_END = {"lower_order_final": False, "final_sigmas_type": "sigma_min"}
DIFFUSERS = {
    "d:dpmpp_2m": ("DPMSolverMultistepScheduler", {"solver_order": 2, **_END}),
    "d:dpmpp_3m": ("DPMSolverMultistepScheduler", {"solver_order": 3, **_END}),
    "d:dpmpp_3s": ("DPMSolverSinglestepScheduler", {"solver_order": 3, **_END}),
    "d:unipc_bh1_3": ("UniPCMultistepScheduler", {"solver_order": 3, "solver_type": "bh1", **_END}),
    "d:unipc_bh2_3": ("UniPCMultistepScheduler", {"solver_order": 3, "solver_type": "bh2", **_END}),
    "d:deis_3": ("DEISMultistepScheduler", {"solver_order": 3, "lower_order_final": False}),
}


def diffusers_run(
    class_name: str,
    config: dict,
    denoiser: Callable,
    x_tilde: torch.Tensor,
    sigmas: list[float],
    schedule: NoiseSchedule,
    n_train: int = 1000,
) -> tuple[torch.Tensor, int]:
    """Solve the probability-flow ODE with a diffusers scheduler over the sigma grid ``sigmas``
    (sigma~ = sigma/alpha, descending, n + 1 values): n scheduler steps, n model evaluations.
    The scheduler is built on ``trained_betas`` whose alphas_cumprod at index k is alpha(t_k)^2
    of the variance-preserving ``schedule`` at t_k = (k + 1)/n_train (DiscreteVP's grid), and is
    given the same float64 grid as every other sampler (its own grid is float32); the model sees
    the state x = alpha x~ and returns the denoiser's x0 = D(x~, sigma~). Returns x~ at
    sigmas[-1] and the number of model evaluations the scheduler asked for."""
    import diffusers

    alphas_cumprod = np.asarray(schedule.alpha(np.arange(1, n_train + 1) / n_train)) ** 2
    betas = 1.0 - alphas_cumprod / np.concatenate([[1.0], alphas_cumprod[:-1]])
    scheduler = getattr(diffusers, class_name)(
        num_train_timesteps=n_train,
        trained_betas=betas.tolist(),
        prediction_type="sample",
        **config,
    )
    n = len(sigmas) - 1
    scheduler.set_timesteps(n)
    grid = torch.tensor(sigmas, dtype=torch.float64)
    if len(scheduler.sigmas) != len(grid):
        raise RuntimeError(f"{class_name}: {len(scheduler.sigmas)} sigmas for {n} steps")
    scheduler.sigmas = grid

    def alpha(sigma: float) -> float:
        return schedule.alpha_sigma_of_lam(-math.log(sigma))[0]

    x = alpha(sigmas[0]) * x_tilde
    evaluations = 0
    for sigma, t in zip(sigmas, scheduler.timesteps, strict=False):
        x0 = denoiser(x.double() / alpha(sigma), torch.full((x.shape[0],), sigma).double())
        evaluations += 1
        x = scheduler.step(x0.to(x.dtype), t, x).prev_sample
    return x.double() / alpha(sigmas[-1]), evaluations


def _karras(sigma_max: float, sigma_min: float, n: int) -> list[float]:
    return karras_sigmas(sigma_max, sigma_min, n + 1)


def logsnr(sigma_max: float, sigma_min: float, n: int) -> list[float]:
    return np.exp(np.linspace(math.log(sigma_max), math.log(sigma_min), n + 1)).tolist()


def measure(
    batch: int = 32,
    budgets: tuple[int, ...] = BUDGETS,
    methods: list[str] | None = None,
    problem_name: str = "gmm",
) -> dict:
    """Defects per sampler and budget, and the best of each side per budget, on the built-in
    problem ``problem_name`` (gmm: DOP853 reference; unet: res_3m_pc on 512 steps)."""
    started = time.perf_counter()
    problem = builtin_problem(problem_name, batch=batch, seed=0)
    lam0, lam1 = float(problem.schedule.lam(1.0)), float(problem.schedule.lam(1e-3))
    alpha0, _ = problem.schedule.alpha_sigma_of_lam(lam0)
    alpha1, _ = problem.schedule.alpha_sigma_of_lam(lam1)
    sigma_max, sigma_min = math.exp(-lam0), math.exp(-lam1)
    x_tilde = problem.x_start / alpha0
    rows: dict[str, dict[int, tuple[int, float]]] = {}

    def record(name: str, run: Callable[[int], tuple[torch.Tensor, int]], per_step: int) -> None:
        rows[name] = {}
        for budget in budgets:
            n = budget // per_step
            while n >= 1:
                x, used = run(n)
                if used <= budget:
                    rows[name][budget] = (used, defect(x, problem.reference))
                    break
                n -= 1

    k = kdiffusion_sampling()
    if k is not None:
        for label, (function, nfe_of, options) in KDIFFUSION.items():
            sampler = getattr(k, function)

            for grid_name, grid in (("karras", _karras), ("logsnr", logsnr)):

                def run(n, sampler=sampler, nfe_of=nfe_of, options=options, grid=grid):
                    sigmas = torch.tensor(grid(sigma_max, sigma_min, n), dtype=torch.float64)
                    x = sampler(problem.denoiser, x_tilde, sigmas, disable=True, **options)
                    return alpha1 * x, nfe_of(n)

                record(f"{label} ({grid_name})", run, 1)

    if diffusers_available():
        # the training sigmas of the discrete schedule run from sigma~(1e-3) to sigma~(1), the
        # ends of this problem
        for label, (class_name, config) in DIFFUSERS.items():
            for grid_name, grid in (("karras", _karras), ("logsnr", logsnr)):

                def run(n, class_name=class_name, config=config, grid=grid):
                    x, used = diffusers_run(
                        class_name,
                        config,
                        problem.denoiser,
                        x_tilde,
                        grid(sigma_max, sigma_min, n),
                        problem.schedule,
                    )
                    return alpha1 * x, used

                record(f"{label} ({grid_name})", run, 1)

    for name in methods or ode_methods():
        module = load_method(name)
        s = module.NFE_PER_STEP

        def run_karras(n, name=name):
            x, info = sample(
                problem.denoiser,
                x_tilde,
                "edm",
                name,
                output="edm",
                sigmas=karras_sigmas(sigma_max, sigma_min, n + 1),
                return_info=True,
            )
            return alpha1 * x, info.nfe

        def run_logsnr(budget_steps, name=name):
            x, info = sample(
                problem.denoiser,
                problem.x_start,
                problem.schedule,
                name,
                output="edm",
                t_start=1.0,
                t_end=1e-3,
                steps=budget_steps,
                return_info=True,
            )
            return x, info.nfe

        record(f"{name} (karras)", run_karras, s)
        record(f"{name} (logsnr)", run_logsnr, s)

    adaptive_rows: dict[str, list[tuple[float, int, float]]] = {}
    for name in methods or ode_methods():
        module = load_method(name)
        if getattr(module, "EMBEDDED_ORDER", None) is None:
            continue
        adaptive_rows[name] = []
        for rtol in RTOLS:
            x, info = sample(
                problem.denoiser,
                problem.x_start,
                problem.schedule,
                name,
                output="edm",
                t_start=1.0,
                t_end=1e-3,
                return_info=True,
                adaptive=Adaptive(rtol=rtol, atol=rtol / 6),
            )
            adaptive_rows[name].append((rtol, info.nfe, defect(x, problem.reference)))

    elapsed = time.perf_counter() - started
    peers = [r for r in rows if r.startswith(PEER_PREFIXES)]
    ours = [r for r in rows if not r.startswith(PEER_PREFIXES)]
    summary = {}
    for budget in budgets:
        best_ours = min((rows[r][budget][1], r) for r in ours if budget in rows[r])
        best_peer = (
            min((rows[r][budget][1], r) for r in peers if budget in rows[r]) if peers else None
        )
        summary[budget] = {
            "best_phiforge": {"name": best_ours[1], "defect": best_ours[0]},
            "best_peer": None
            if best_peer is None
            else {"name": best_peer[1], "defect": best_peer[0]},
            "ratio": None if best_peer is None else best_ours[0] / best_peer[0],
        }
    meta = {
        "problem": (
            "digits GMM (10 components), VP linear t 1 -> 1e-3, DOP853 reference"
            if problem.reference_solver is None
            else f"{problem_name}, VP linear t 1 -> 1e-3, reference {{}} on {{}} steps".format(
                *problem.reference_solver
            )
        ),
        "batch": batch,
        "reference_accuracy": problem.reference_accuracy,
        "kdiffusion": k is not None,
        "diffusers": diffusers_available(),
        "seconds": round(elapsed, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    return {"meta": meta, "defects": rows, "summary": summary, "adaptive": adaptive_rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--format", choices=["markdown", "json"], default="markdown")
    parser.add_argument("--problem", choices=["gmm", "network", "unet"], default="gmm")
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = measure(args.batch, tuple(args.budgets), problem_name=args.problem)
    if args.format == "json":
        print(json.dumps(result, indent=2))
        return
    meta, rows, summary = result["meta"], result["defects"], result["summary"]
    print(
        f"problem: {meta['problem']}; batch {meta['batch']}; reference accuracy "
        f"{meta['reference_accuracy']:.1e}; k-diffusion in process: {meta['kdiffusion']}; "
        f"diffusers in process: {meta['diffusers']}; "
        f"{meta['seconds']} s (python {meta['python']}, torch {meta['torch']})\n"
    )
    budgets = tuple(args.budgets)
    print("| sampler | " + " | ".join(f"NFE {b}" for b in budgets) + " |")
    print("|---|" + "---|" * len(budgets))
    for name, row in rows.items():
        cells = []
        for b in budgets:
            if b not in row:
                cells.append("-")
            else:
                used, value = row[b]
                cells.append(f"{value:.2e}" + ("" if used == b else f" ({used})"))
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\n| NFE | best phiforge | defect | best peer | defect | ratio |")
    print("|---|---|---|---|---|---|")
    for b, s in summary.items():
        peer = s["best_peer"] or {"name": "-", "defect": float("nan")}
        ratio = "-" if s["ratio"] is None else f"{s['ratio']:.2f}"
        print(
            f"| {b} | {s['best_phiforge']['name']} | {s['best_phiforge']['defect']:.2e} | "
            f"{peer['name']} | {peer['defect']:.2e} | {ratio} |"
        )
    if result["adaptive"]:
        print(
            "\nAdaptive steps (embedded pairs; atol = rtol/6): NFE spent (rejected attempts "
            "included) and defect\n"
        )
        print("| method | " + " | ".join(f"rtol {r:g}" for r in RTOLS) + " |")
        print("|---|" + "---|" * len(RTOLS))
        for name, runs in result["adaptive"].items():
            print(f"| {name} | " + " | ".join(f"{n}: {d:.2e}" for _, n, d in runs) + " |")


if __name__ == "__main__":
    main()
