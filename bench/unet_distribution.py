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

Usage: python bench/unet_distribution.py [--samples 128] [--budgets 10 20] [--format ...]
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
from phiforge.runtime.images import image_patches
from phiforge.runtime.methods import load_method
from phiforge.runtime.peers import kdiffusion_sampling
from phiforge.runtime.restart import karras_sigmas, restart_from
from phiforge.runtime.verification import covariance_root, frechet_tensor

REFERENCE_PATCHES = 4096


def features(patches: torch.Tensor) -> torch.Tensor:
    """The 48 block colours: mean over 8 x 8 blocks of each channel."""
    images = patches.reshape(-1, 3, 32, 32).double()
    return torch.nn.functional.avg_pool2d(images, 8).reshape(images.shape[0], -1)


def measure(samples: int = 128, budgets: tuple[int, ...] = (10, 20), seed: int = 0) -> dict:
    started = time.perf_counter()
    unet = builtin_denoiser("unet")
    reference = features(image_patches("held-out", REFERENCE_PATCHES, 32, seed=100 + seed))
    truth = (reference.mean(0), covariance_root(torch.cov(reference.T)))
    directions = np.random.default_rng(0).standard_normal((48, 128))
    directions /= np.linalg.norm(directions, axis=0)
    held = features(image_patches("held-out", samples, 32, seed=200 + seed)).numpy()

    def distances(points: torch.Tensor) -> dict[str, float]:
        f = features(points)
        a, b = np.sort(f.numpy() @ directions, axis=0), np.sort(held @ directions, axis=0)
        return {
            "frechet": float(frechet_tensor(f, *truth)),
            "sliced_w2": float(np.sqrt(((a - b) ** 2).mean())),
        }

    floors = {
        "held-out sets": [
            distances(image_patches("held-out", samples, 32, seed=300 + seed + k)) for k in range(4)
        ],
        "training patches": [
            distances(image_patches("train", samples, 32, seed=400 + seed + k)) for k in range(4)
        ],
    }
    floor = {
        name: {key: float(np.mean([d[key] for d in rows])) for key in ("frechet", "sliced_w2")}
        for name, rows in floors.items()
    }
    x_start = SIGMA_MAX * torch.randn(
        samples, 3, 32, 32, generator=torch.Generator().manual_seed(seed)
    )
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
    return {
        "meta": {
            "samples": samples,
            "budgets": list(budgets),
            "seconds": round(time.perf_counter() - started, 1),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "kdiffusion": k is not None,
        },
        "floor": floor,
        "rows": rows,
    }


def render(result: dict) -> str:
    meta, floor = result["meta"], result["floor"]
    budgets = meta["budgets"]
    lines = [
        f"{meta['samples']} samples per row, {meta['seconds']} s, torch {meta['torch']}\n",
        "| floor | Frechet | sliced W2 |",
        "|---|---|---|",
    ]
    lines += [
        f"| {name} | {f['frechet']:.4f} | {f['sliced_w2']:.4f} |" for name, f in floor.items()
    ]
    lines += [
        "",
        "| sampler | " + " | ".join(f"NFE {b}: Frechet / SW2" for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for label, cells in result["rows"].items():
        by_budget = {c["budget"]: c for c in cells}
        text = [
            f"{by_budget[b]['frechet']:.4f} / {by_budget[b]['sliced_w2']:.4f}"
            + ("" if by_budget[b]["nfe"] == b else f" ({by_budget[b]['nfe']})")
            if b in by_budget
            else "-"
            for b in budgets
        ]
        lines.append(f"| {label} | " + " | ".join(text) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--budgets", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=["markdown", "json"], default="markdown")
    args = parser.parse_args()
    result = measure(args.samples, tuple(args.budgets), args.seed)
    print(json.dumps(result, indent=2) if args.format == "json" else render(result))


if __name__ == "__main__":
    main()
