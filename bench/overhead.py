"""Benchmark: the sampler's own cost per step next to one model evaluation.

The model is a small convolutional network on a latent-sized batch (4 x 4 x 64 x 64, float32,
the shape of a Stable-Diffusion latent batch), timed alone as the baseline; then every generated
method samples 50 steps with (a) that network and (b) a free model that returns a fixed tensor.
Overhead per step = time with the free model / steps (the driver, coefficients, linear
combinations and checks); the ratio is overhead per step over one network evaluation.

Usage: python bench/overhead.py [--steps 50] [--device cpu|cuda] [--format markdown|json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from phiforge.runtime.driver import sample
from phiforge.runtime.stepping import load_method, ode_methods


def network(device: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(4, 64, 3, padding=1),
        torch.nn.SiLU(),
        torch.nn.Conv2d(64, 64, 3, padding=1),
        torch.nn.SiLU(),
        torch.nn.Conv2d(64, 4, 3, padding=1),
    ).to(device)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(steps: int = 50, device: str = "cpu", methods: list[str] | None = None) -> dict:
    net = network(device)
    x = torch.randn(4, 4, 64, 64, device=device)
    sigma = torch.full((4,), 1.0, device=device)

    @torch.no_grad()
    def model(x_in, sigma_in):
        return x_in - net(x_in) * 0.01

    fixed = model(x, sigma)

    def free(x_in, sigma_in):
        return fixed

    for _ in range(3):
        model(x, sigma)
    _sync(device)
    repeats = 20
    start = time.perf_counter()
    for _ in range(repeats):
        model(x, sigma)
    _sync(device)
    evaluation = (time.perf_counter() - start) / repeats
    rows = []
    for name in methods or ode_methods():
        module = load_method(name)
        sample(free, x, "edm", name, steps=4, output="edm")  # warm caches
        _sync(device)
        start = time.perf_counter()
        _, info = sample(free, x, "edm", name, steps=steps, output="edm", return_info=True)
        _sync(device)
        free_time = time.perf_counter() - start
        start = time.perf_counter()
        sample(model, x, "edm", name, steps=steps, output="edm")
        _sync(device)
        full_time = time.perf_counter() - start
        overhead = free_time / steps
        rows.append(
            {
                "method": name,
                "nfe_per_step": module.NFE_PER_STEP,
                "nfe": info.nfe,
                "overhead_per_step_ms": overhead * 1e3,
                "overhead_per_nfe_ms": free_time / info.nfe * 1e3,
                "ratio_to_evaluation": free_time / info.nfe / evaluation,
                "total_s": full_time,
            }
        )
    return {
        "evaluation_ms": evaluation * 1e3,
        "steps": steps,
        "device": device,
        "shape": list(x.shape),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--format", choices=["markdown", "json"], default="markdown")
    args = parser.parse_args()
    result = measure(args.steps, args.device)
    if args.format == "json":
        print(json.dumps(result, indent=2))
        return
    print(
        f"device {result['device']}, batch {result['shape']} float32, torch {result['torch']}, "
        f"{result['threads']} threads; one network evaluation: "
        f"{result['evaluation_ms']:.2f} ms; {result['steps']} steps\n"
    )
    print(
        "| method | NFE/step | overhead per step (ms) | overhead per NFE (ms) | "
        "overhead / evaluation | total with network (s) |"
    )
    print("|---|---|---|---|---|---|")
    for r in result["rows"]:
        print(
            f"| {r['method']} | {r['nfe_per_step']} | {r['overhead_per_step_ms']:.3f} | "
            f"{r['overhead_per_nfe_ms']:.3f} | {r['ratio_to_evaluation']:.3%} | "
            f"{r['total_s']:.2f} |"
        )


if __name__ == "__main__":
    main()
