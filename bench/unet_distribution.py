"""Benchmark: distribution distance against NFE for the U-Net on image patches.

The samplers of ``bench/distribution_vs_nfe.py`` (SEEDS, the stochastic exponential Adams
methods, Restart, ODE methods, and k-diffusion's SDE samplers when installed) draw n patches from
the built-in U-Net (EDM schedule, x_T = 80 z, Karras sigmas with rho = 7, then the step to 0).
Feature space (fixed, documented): each 3 x 32 x 32 patch averaged over 8 x 8 blocks, i.e. a 48-
dimensional vector of the mean colour of its 16 blocks. Distances to the held-out patches
(pictures the U-Net never saw): the Frechet distance of the features' Gaussian fit to the
moments of 4096 held-out patches, and a sliced Wasserstein-2 distance (128 random directions)
to n held-out patches. Floors, measured in the same run: other held-out sets of size n (the
finite-sample floor), and n training patches (the gap between the training and the held-out
pictures, which no model of the training data closes).

A third distance isolates the sampler from the model: the Frechet distance to the moments of
``--model-reference`` samples of the model itself (a fine ODE solve, res_3m_pc on
``TEACHER_STEPS`` log-SNR steps, of starting points of their own seed), with its floor the same
fine solve of the benchmark's own starting points.

``--fit P`` adds solvers fitted to the U-Net (runtime.fitted) at the budgets ``--fit-budgets``,
on starting points the benchmark never uses (seed 1000 + seed) and judged in its rows:

- ``fitted ODE solver``: weights and grid fitted on the defect against the fine solve of
  ``--ode-pilot`` pilots (the pathwise objective of bench/fitted_solver.py);
- ``fitted SDE solver`` (eta = 1, SEEDS' exact noise per step): drift weights and grid fitted on
  the Frechet distance, in the block colours, between its P pilot outputs (noise drawn once)
  and the fine ODE solve of the same pilots, starting from the fitted ODE solver of its budget
  (a continuation in eta, fit_solver's ``start``); the ODE fit starts from the Karras grid
  (rho 7) on which the other rows step.

The model column's floor is a fine solve of the benchmark's starting points: for the ODE rows
the fine ODE solve (they follow the same paths), for the stochastic rows a fine SEEDS-3 solve
with the rows' noise seed (a finer path of the same dynamics, with other noise increments).

Both end at sigma = SIGMA_MIN (the other rows step on to 0).

Usage: python bench/unet_distribution.py [--samples 128] [--budgets 10 20] [--fit 128]
       [--ode-pilot 32] [--fit-budgets 10] [--iterations 30] [--model-reference 512]
       [--format ...]
       python bench/unet_distribution.py --render result.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from distribution_vs_nfe import OURS, SIGMA_MAX, SIGMA_MIN, _steps_for, peer_runs

from phiforge.runtime.denoisers import builtin_denoiser
from phiforge.runtime.driver import sample
from phiforge.runtime.fitted import fit_solver
from phiforge.runtime.images import image_patches
from phiforge.runtime.methods import load_method
from phiforge.runtime.peers import kdiffusion_sampling
from phiforge.runtime.restart import karras_sigmas, restart_from
from phiforge.runtime.verification import (
    covariance_root,
    frechet_features,
    frechet_tensor,
    moments_root,
)

REFERENCE_PATCHES = 4096
TEACHER, TEACHER_STEPS = "res_3m_pc", 64
FINE_SDE_STEPS = 64  # SEEDS-3 steps of the stochastic samplers' floor (3 evaluations each)
FITTED = ("fitted ODE solver", "fitted SDE solver")


def starts(n: int, seed: int) -> torch.Tensor:
    """x_T = SIGMA_MAX z for n images, z from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return SIGMA_MAX * torch.randn(n, 3, 32, 32, generator=generator)


def _sde_solve(unet, x_start: torch.Tensor, steps: int, seed: int):
    """SEEDS-3 at eta = 1 on ``steps`` Karras steps and the step to 0, its noise from seed + 1
    (the benchmark's stochastic rows' protocol)."""
    sigmas = [*karras_sigmas(SIGMA_MAX, SIGMA_MIN, steps), 0.0]
    return sample(
        unet, x_start, "edm", "seeds_3a", sigmas=sigmas, output="edm", eta=1.0,
        generator=torch.Generator().manual_seed(1 + seed),
    )  # fmt: skip


def measure(
    samples: int = 128,
    budgets: tuple[int, ...] = (10, 20),
    seed: int = 0,
    fit: int = 0,
    ode_pilot: int = 32,
    fit_budgets: tuple[int, ...] = (10,),
    iterations: int = 30,
    model_reference: int = 512,
) -> dict:
    started = time.perf_counter()
    unet = builtin_denoiser("unet")
    features = frechet_features(unet)
    reference = features(image_patches("held-out", REFERENCE_PATCHES, 32, seed=100 + seed))
    truth = (reference.mean(0), covariance_root(torch.cov(reference.T)))
    lams = np.linspace(-np.log(SIGMA_MAX), -np.log(SIGMA_MIN), TEACHER_STEPS + 1)
    teacher_grid = np.exp(-lams).tolist()

    def teacher(x: torch.Tensor) -> torch.Tensor:
        """The fine ODE solve from x_T (float64 state) to SIGMA_MIN."""
        return sample(unet, x.double(), "edm", TEACHER, sigmas=teacher_grid, output="edm")

    model = moments_root(features(teacher(starts(model_reference, 5000 + seed))))
    directions = np.random.default_rng(0).standard_normal((48, 128))
    directions /= np.linalg.norm(directions, axis=0)
    held = features(image_patches("held-out", samples, 32, seed=200 + seed)).numpy()

    def distances(points: torch.Tensor) -> dict[str, float]:
        f = features(points)
        a, b = np.sort(f.numpy() @ directions, axis=0), np.sort(held @ directions, axis=0)
        return {
            "frechet": float(frechet_tensor(f, *truth)),
            "sliced_w2": float(np.sqrt(((a - b) ** 2).mean())),
            "frechet_model": float(frechet_tensor(f, *model)),
        }

    floors = {
        "held-out sets": [
            distances(image_patches("held-out", samples, 32, seed=300 + seed + k)) for k in range(4)
        ],
        "training patches": [
            distances(image_patches("train", samples, 32, seed=400 + seed + k)) for k in range(4)
        ],
    }
    x_start = starts(samples, seed)
    floors["fine ODE solve of these starts"] = [distances(teacher(x_start))]
    fine_sde = _sde_solve(unet, x_start, FINE_SDE_STEPS, seed)
    floors[f"fine SDE solve of these starts (seeds_3, {FINE_SDE_STEPS} steps)"] = [
        distances(fine_sde)
    ]
    floor = {
        name: {key: float(np.mean([d[key] for d in rows])) for key in rows[0]}
        for name, rows in floors.items()
    }
    rows: dict[str, list[dict]] = {}

    def record(label, run) -> None:
        rows[label] = []
        for budget in budgets:
            result = run(budget)
            if result is not None:
                out, nfe = result
                rows[label].append({"budget": budget, "nfe": nfe, **distances(out)})

    for label, method, per_step, options in OURS:
        restart = restart_from(options["restart"]) if "restart" in options else None
        extra = per_step * sum(i.nfe_steps for i in restart.intervals) if restart else 0

        def run(budget, method=method, per_step=per_step, options=options, extra=extra):
            n = _steps_for(budget, per_step, extra)
            if n < 2 or (extra and n < 4):
                return None
            sigmas = [*karras_sigmas(SIGMA_MAX, SIGMA_MIN, n), 0.0]
            stochastic = load_method(method).STOCHASTIC
            out, info = sample(
                unet,
                x_start,
                "edm",
                method,
                sigmas=sigmas,
                output="edm",
                generator=torch.Generator().manual_seed(1 + seed),
                return_info=True,
                **({"eta": 1.0} if stochastic else {}),
                **options,
            )
            return out, info.nfe

        record(label, run)
    k = kdiffusion_sampling()
    for label, run in peer_runs(k, unet, x_start, seed, 1.0).items():
        record(label, run)
    fits = {}
    if fit:
        for label, run in fitted_runs(
            unet, teacher, features, x_start, fit, ode_pilot, fit_budgets, iterations, seed, fits
        ).items():
            record(label, run)
    return {
        "meta": {
            "samples": samples,
            "budgets": list(budgets),
            "seconds": round(time.perf_counter() - started, 1),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "kdiffusion": k is not None,
            "teacher": f"{TEACHER} on {TEACHER_STEPS} log-SNR steps",
            "model_reference": model_reference,
            "fit": {"pilot": fit, "ode_pilot": ode_pilot, "iterations": iterations},
        },
        "floor": floor,
        "rows": rows,
        "fits": fits,
    }


def fitted_runs(
    unet, teacher, features, x_start, pilot, ode_pilot, fit_budgets, iterations, seed, fits
) -> dict:
    """label -> run(budget) for the fitted ODE and SDE solvers (module docstring), each fitted
    when its budget is first run; ``fits`` collects every fit's record."""
    x_pilot = starts(pilot, 1000 + seed).double()
    x_ode = x_pilot[:ode_pilot]
    taught = teacher(x_pilot)

    solvers = {}

    def fitted(label: str, budget: int, **options):
        if budget not in fit_budgets:
            return None
        start = solvers.get((FITTED[0], budget)) if options.get("eta") else None
        if start is None:  # the ODE fit starts from the Karras grid, the SDE fit from it
            options["sigmas"] = karras_sigmas(SIGMA_MAX, SIGMA_MIN, budget + 1)
        solver = fit_solver(
            unet, options.pop("x"), options.pop("reference"), SIGMA_MAX, SIGMA_MIN, budget,
            iterations=iterations, seed=7 + seed, start=start, **options,
        )  # fmt: skip
        solvers[label, budget] = solver
        fits[f"{label}, NFE {budget}"] = {**solver.info, "sigmas": solver.sigmas}
        print(f"{label}, NFE {budget}: {solver.info}", file=sys.stderr, flush=True)
        noise = {"generator": torch.Generator().manual_seed(1 + seed)} if solver.eta else {}
        return solver.sample(unet, x_start.double(), **noise).float(), solver.nfe

    return {
        FITTED[0]: lambda budget: fitted(FITTED[0], budget, x=x_ode, reference=taught[:ode_pilot]),
        FITTED[1]: lambda budget: fitted(
            FITTED[1], budget, x=x_pilot, reference=taught, eta=1.0, features=features
        ),
    }


def _cell(values: dict) -> str:
    """Frechet / sliced W2 (to held-out patches) / Frechet to the model, where measured."""
    shown = [f"{values['frechet']:.4f}", f"{values['sliced_w2']:.4f}"]
    if "frechet_model" in values:
        shown.append(f"{values['frechet_model']:.4f}")
    return " / ".join(shown)


def render(result: dict) -> str:
    meta, floor = result["meta"], result["floor"]
    budgets = meta["budgets"]
    model = "frechet_model" in next(iter(floor.values()))
    head = "Frechet / SW2" + (" / model" if model else "")
    lines = [
        f"{meta['samples']} samples per row, {meta['seconds']} s, torch {meta['torch']}"
        + (f"; model: {meta['model_reference']} samples of {meta['teacher']}" if model else "")
        + "\n",
        f"| floor | {head} |",
        "|---|---|",
    ]
    lines += [f"| {name} | {_cell(f)} |" for name, f in floor.items()]
    lines += [
        "",
        "| sampler | " + " | ".join(f"NFE {b}: {head}" for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for label, cells in result["rows"].items():
        by_budget = {c["budget"]: c for c in cells}
        text = [
            _cell(by_budget[b]) + ("" if by_budget[b]["nfe"] == b else f" ({by_budget[b]['nfe']})")
            if b in by_budget
            else "-"
            for b in budgets
        ]
        lines.append(f"| {label} | " + " | ".join(text) + " |")
    fits = result.get("fits") or {}
    if fits:
        lines += [
            "",
            "| fit | pilots | objective | pilot before | after | seconds |",
            "|---|---|---|---|---|---|",
        ]
        for name, info in fits.items():
            objective = info["objective"]
            lines.append(
                f"| {name} | {info['pilot_batch']} | {objective}"
                + (f" ({info['features']})" if "features" in info else "")
                + f" | {info[f'pilot_{objective}_start']:.4g} | {info[f'pilot_{objective}']:.4g} "
                f"| {info['seconds']} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--budgets", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fit", type=int, default=0, help="pilots of the SDE fit (0: no fits)")
    parser.add_argument("--ode-pilot", type=int, default=32, help="pilots of the ODE fit")
    parser.add_argument("--fit-budgets", type=int, nargs="+", default=[10])
    parser.add_argument("--iterations", type=int, default=30, help="L-BFGS iterations per fit")
    parser.add_argument("--model-reference", type=int, default=512, help="the model's samples")
    parser.add_argument("--format", choices=["markdown", "json"], default="markdown")
    parser.add_argument("--render", type=Path, help="print the report of a saved json result")
    args = parser.parse_args()
    if args.render is not None:
        print(render(json.loads(args.render.read_text())))
        return
    torch.set_num_threads(2)
    result = measure(
        args.samples, tuple(args.budgets), args.seed, args.fit, args.ode_pilot,
        tuple(args.fit_budgets), args.iterations, args.model_reference,
    )  # fmt: skip
    print(json.dumps(result, indent=2) if args.format == "json" else render(result))


if __name__ == "__main__":
    main()
