"""Benchmark: the built-in U-Net sampled on a device in float32 and bfloat16.

For the EDM schedule (sigma 80 -> 0.002 on Karras sigmas, rho = 7, then the step to 0) and
methods res_2m, res_3m_pc and dpmpp_2s at NFE 10:
- agreement: the device's float32 (and bfloat16) samples of a small batch against the same
  solve on the CPU in float64 (max |difference|, values in [-1, 1]);
- defect at NFE 10 of float32 and of bfloat16 against a fine float32 solve on the device
  (res_3m_pc on 256 steps), and their ratio (target: bfloat16 at most 2x float32);
- throughput: images per second for a batch (256 on a GPU) at NFE 10, float32 and bfloat16,
  timed after a warm-up with the device synchronised.

Usage: python bench/unet_sampling.py [--device cuda] [--batch 256] [--format markdown|json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from phiforge.runtime.denoisers import builtin_denoiser
from phiforge.runtime.driver import sample
from phiforge.runtime.restart import karras_sigmas
from phiforge.runtime.verification import defect

METHODS = ("res_2m", "res_3m_pc", "dpmpp_2s")
NFE = 10
SIGMA_MAX, SIGMA_MIN = 80.0, 0.002


def _solve(unet, x: torch.Tensor, method: str, steps: int | None = None) -> torch.Tensor:
    """``steps`` Karras intervals then the step to 0 (default: NFE 10 worth of intervals)."""
    n = steps if steps is not None else (NFE // 2 if method == "dpmpp_2s" else NFE)
    sigmas = [*karras_sigmas(SIGMA_MAX, SIGMA_MIN, n), 0.0]
    return sample(unet, x, "edm", method, sigmas=sigmas, output="edm")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(device: str = "cpu", batch: int = 256, agreement_batch: int = 4) -> dict:
    target = torch.device(device)
    unet = builtin_denoiser("unet", device=target)
    cpu = builtin_denoiser("unet")
    generator = torch.Generator().manual_seed(0)
    x = SIGMA_MAX * torch.randn(batch, 3, 32, 32, generator=generator)
    rows = []
    small = x[:agreement_batch]
    fine = _solve(unet, x.to(target), "res_3m_pc", steps=256)
    for method in METHODS:
        reference64 = _solve(cpu, small.double(), method)
        f32 = _solve(unet, x.to(target), method)
        bf16 = _solve(unet, x.to(target, torch.bfloat16), method)
        d32, d16 = defect(f32.double(), fine.double()), defect(bf16.double(), fine.double())
        rows.append(
            {
                "method": method,
                "float32_vs_cpu_float64": float(
                    (f32[:agreement_batch].double().cpu() - reference64).abs().max()
                ),
                "bfloat16_vs_cpu_float64": float(
                    (bf16[:agreement_batch].double().cpu() - reference64).abs().max()
                ),
                "defect_float32": d32,
                "defect_bfloat16": d16,
                "bfloat16_over_float32": d16 / d32,
                "images_per_second_float32": _throughput(unet, x.to(target), method, target),
                "images_per_second_bfloat16": _throughput(
                    unet, x.to(target, torch.bfloat16), method, target
                ),
            }
        )
    meta = {
        "device": str(target),
        "name": torch.cuda.get_device_name(target) if target.type == "cuda" else platform.machine(),
        "batch": batch,
        "nfe": NFE,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    return {"meta": meta, "rows": rows}


def _throughput(unet, x: torch.Tensor, method: str, device: torch.device) -> float:
    _solve(unet, x, method)  # warm-up
    _sync(device)
    started = time.perf_counter()
    _solve(unet, x, method)
    _sync(device)
    return x.shape[0] / (time.perf_counter() - started)


def render(result: dict) -> str:
    meta = result["meta"]
    lines = [
        f"device {meta['device']} ({meta['name']}), batch {meta['batch']}, NFE {meta['nfe']}, "
        f"torch {meta['torch']}, {meta['threads']} threads\n",
        "| method | f32 vs CPU f64 | bf16 vs CPU f64 | defect f32 | defect bf16 | bf16/f32 | "
        "images/s f32 | images/s bf16 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['method']} | {r['float32_vs_cpu_float64']:.1e} | "
            f"{r['bfloat16_vs_cpu_float64']:.1e} | {r['defect_float32']:.3e} | "
            f"{r['defect_bfloat16']:.3e} | {r['bfloat16_over_float32']:.2f} | "
            f"{r['images_per_second_float32']:.0f} | {r['images_per_second_bfloat16']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--format", choices=["markdown", "json"], default="markdown")
    args = parser.parse_args()
    result = measure(args.device, args.batch)
    print(json.dumps(result, indent=2) if args.format == "json" else render(result))


if __name__ == "__main__":
    main()
