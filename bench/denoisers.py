"""Benchmark: one evaluation of the built-in mixture denoiser against the direct einsum form.

The built-in 10-component digits mixture (64 dimensions) is evaluated on ``rows`` noisy points
(sigma~ = 0.7) in float64, as :class:`~phiforge.runtime.denoisers.GaussianMixtureDenoiser` does
it (all K eigenbasis projections in one (d, K d) product, rows in blocks on a CPU) and as the
direct formula E[x0 | x] = sum_k r_k(x) (m_k + B_k diag(l_k / (l_k + s^2)) B_k^T (x - m_k))
written with per-component einsums over the whole batch (the baseline, measured in the same run).
The largest difference between the two is printed next to the timings.

Usage: python bench/denoisers.py [--rows 16 1000 5000 20000] [--repeats 10] [--format markdown|json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from phiforge.runtime.denoisers import GaussianMixtureDenoiser, builtin_denoiser

SIGMA = 0.7


def direct(mixture: GaussianMixtureDenoiser, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """The posterior mean with one (rows, K, d) tensor per intermediate (the baseline)."""
    centred = x[:, None, :] - mixture.means[None]
    coords = torch.einsum("bkd,kde->bke", centred, mixture.bases)
    variance = mixture.eigenvalues[None] + (s * s)[:, :, None]
    log_density = -0.5 * ((coords * coords) / variance + variance.log()).sum(-1)
    responsibility = torch.softmax(mixture.log_weights + log_density, dim=1)
    shrunk = coords * (mixture.eigenvalues[None] / variance)
    posterior = mixture.means[None] + torch.einsum("bke,kde->bkd", shrunk, mixture.bases)
    return torch.einsum("bk,bkd->bd", responsibility, posterior)


def _best_of(repeats: int, call) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(rows: tuple[int, ...] = (16, 1000, 5000, 20000), repeats: int = 10) -> dict:
    mixture = builtin_denoiser("gmm")
    generator = torch.Generator().manual_seed(0)
    results = []
    for n in rows:
        x = mixture.sample_data(n, generator)
        x = x + SIGMA * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        s = torch.full((n, 1), SIGMA, dtype=x.dtype)
        ours, baseline = mixture(x, SIGMA), direct(mixture, x, s)
        results.append(
            {
                "rows": n,
                "builtin_ms": 1e3 * _best_of(repeats, lambda x=x: mixture(x, SIGMA)),
                "direct_ms": 1e3 * _best_of(repeats, lambda x=x, s=s: direct(mixture, x, s)),
                "max_difference": float((ours - baseline).abs().max()),
            }
        )
    return {
        "meta": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "repeats": repeats,
        },
        "rows": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[16, 1000, 5000, 20000])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--format", choices=["markdown", "json"], default="markdown")
    args = parser.parse_args()
    result = measure(tuple(args.rows), args.repeats)
    if args.format == "json":
        print(json.dumps(result, indent=2))
        return
    meta = result["meta"]
    print(
        f"digits mixture (K = 10, d = 64), float64, best of {meta['repeats']}, "
        f"{meta['threads']} threads, torch {meta['torch']}\n"
    )
    print("| rows | built-in (ms) | direct einsum (ms) | direct / built-in | max difference |")
    print("|---|---|---|---|---|")
    for r in result["rows"]:
        print(
            f"| {r['rows']} | {r['builtin_ms']:.3f} | {r['direct_ms']:.3f} | "
            f"{r['direct_ms'] / r['builtin_ms']:.2f} | {r['max_difference']:.1e} |"
        )


if __name__ == "__main__":
    main()
