"""Benchmark: how the defect is spread over starting points, at a few (method, NFE) pairs.

The defect of bench/defect_vs_nfe.py is a mean over starting points of the RMS distance to the
reference. A mean can hide a few starting points whose paths end in another mode at a coarse
budget (a large error on a few, none on the rest), which no solver of that budget can repair;
or it can be spread over all of them, an error of the discretisation that a better solver can
reduce. This script prints, for each pair, the mean, the quantiles and the largest per-start
error, and the ratio of the largest to the median.

Problem: builtin_problem's (VP linear, t = 1 -> 1e-3), log-SNR-uniform sigmas, ``--batch``
starting points of ``--seed``.

Usage: python bench/defect_spread.py [--problem unet] [--batch 32] [--seed 2]
       [--cases dpmpp_2m@10 dpmpp_2m@20 dpmpp_2m@40 res_3m_pc@50] [--format markdown|json]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

import numpy as np
import torch

from phiforge.runtime.verification import builtin_problem, start_defects

CASES = ("dpmpp_2m@10", "dpmpp_2m@20", "dpmpp_2m@40", "res_3m_pc@50")
QUANTILES = (0.1, 0.5, 0.9)


def measure(problem: str, batch: int, seed: int, cases: tuple[str, ...]) -> dict:
    started = time.perf_counter()
    task = builtin_problem(problem, batch=batch, seed=seed)
    schedule = task.schedule
    lam0, lam1 = float(schedule.lam(task.t_start)), float(schedule.lam(task.t_end))
    rows = {}
    for case in cases:
        method, _, nfe = case.partition("@")
        out, _ = task.run(method, nfe=int(nfe))  # log-SNR-uniform steps, as the reference's
        errors = start_defects(out, task.reference).numpy()
        rows[case] = {
            "mean": float(errors.mean()),
            **{f"q{q:g}": float(np.quantile(errors, q)) for q in QUANTILES},
            "max": float(errors.max()),
            "errors": sorted(float(e) for e in errors),
        }
    return {
        "meta": {
            "problem": problem,
            "batch": batch,
            "seed": seed,
            "grid": f"log-SNR uniform, sigma~ {math.exp(-lam0):.4g} -> {math.exp(-lam1):.4g}",
            "reference": "exact or DOP853"
            if task.reference_solver is None
            else "{} on {} steps".format(*task.reference_solver),
            "seconds": round(time.perf_counter() - started, 1),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "rows": rows,
    }


def render(result: dict) -> str:
    meta = result["meta"]
    lines = [
        f"{meta['problem']}, {meta['batch']} starts (seed {meta['seed']}), {meta['grid']}, "
        f"reference {meta['reference']}; {meta['seconds']} s\n",
        "| method @ NFE | mean | "
        + " | ".join(f"{q:g} quantile" for q in QUANTILES)
        + " | max | max / median |",
        "|---|---|" + "---|" * len(QUANTILES) + "---|---|",
    ]
    for case, row in result["rows"].items():
        quantiles = " | ".join(f"{row[f'q{q:g}']:.2e}" for q in QUANTILES)
        lines.append(
            f"| {case} | {row['mean']:.2e} | {quantiles} | {row['max']:.2e} "
            f"| {row['max'] / row['q0.5']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="unet")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    parser.add_argument("--format", choices=["markdown", "json"], default="markdown")
    args = parser.parse_args()
    torch.set_num_threads(2)
    result = measure(args.problem, args.batch, args.seed, tuple(args.cases))
    print(json.dumps(result, indent=2) if args.format == "json" else render(result))


if __name__ == "__main__":
    main()
