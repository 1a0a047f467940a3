"""Benchmark: the sampler's own cost per step, beside k-diffusion's loops and one network call.

Every method samples ``--steps`` steps with a free model (it returns a fixed tensor), so the time
is the sampler's alone: planning, coefficient evaluation, the linear combinations and the
finiteness flags. In the same process, on the same device and latent (default 4 x 4 x 128 x 128
float32), k-diffusion's ``sample_euler`` and ``sample_dpmpp_2m`` run the same free model on the
same sigmas (the baselines); on CUDA every method also runs captured as one CUDA graph
(``sample(capture=True)``, replays timed), and the synchronising calls of one uncaptured run are
counted under ``torch.cuda.set_sync_debug_mode("warn")``, with and without the end-of-run
finiteness check. One evaluation of a convolutional
network (``--layers`` 3x3 convolutions of ``--channels`` channels, fp16 on CUDA, float32 on the
CPU) gives the scale.

Usage: python bench/overhead.py [--steps 50] [--device cpu|cuda] [--shape 4 4 128 128]
       [--methods NAME ...] [--format markdown|json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings

import torch

from phiforge.runtime.driver import sample
from phiforge.runtime.peers import kdiffusion_sampling
from phiforge.runtime.schedules import EDM
from phiforge.runtime.stepping import load_method, ode_methods

EDM_SCHEDULE = EDM()


def network(channels: int, layers: int, device: str, dtype: torch.dtype) -> torch.nn.Module:
    torch.manual_seed(0)
    blocks: list[torch.nn.Module] = [torch.nn.Conv2d(4, channels, 3, padding=1)]
    for _ in range(layers - 2):
        blocks += [torch.nn.SiLU(), torch.nn.Conv2d(channels, channels, 3, padding=1)]
    blocks += [torch.nn.SiLU(), torch.nn.Conv2d(channels, 4, 3, padding=1)]
    return torch.nn.Sequential(*blocks).to(device=device, dtype=dtype).eval()


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _timed(run, device: str, repeats: int) -> float:
    """Seconds per call of ``run`` (after one warm-up call), median of ``repeats``."""
    run()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        run()
        _sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _kdiffusion():
    kd = kdiffusion_sampling()
    if kd is None:
        raise SystemExit("bench/overhead.py needs k-diffusion's sampling module (see .ci/run)")
    return kd


def _syncs(run) -> int:
    """Synchronising calls made by one ``run`` (CUDA only)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("called a synchronizing" in str(w.message) for w in caught)


def measure(
    steps: int = 50,
    device: str = "cpu",
    shape: tuple[int, ...] = (4, 4, 128, 128),
    methods: list[str] | None = None,
    layers: int | None = None,
    channels: int | None = None,
    repeats: int = 5,
) -> dict:
    kd = _kdiffusion()
    cuda = device == "cuda"
    x = torch.randn(*shape, device=device)
    fixed = torch.zeros_like(x)
    # Karras sigmas from 80 to 0.002 (no final step to 0: every step is a method step)
    sigmas = kd.get_sigmas_karras(steps + 1, 0.002, 80.0, device=device).double()[:-1]
    sigma_list = [float(s) for s in sigmas.cpu()]

    def free(x_in, sigma_in, **kwargs):
        return fixed

    layers = layers or (7 if cuda else 3)
    channels = channels or (320 if cuda else 64)
    dtype = torch.float16 if cuda else torch.float32
    net = network(channels, layers, device, dtype)
    with torch.no_grad():
        evaluation = _timed(lambda: net(x.to(dtype)), device, repeats)
    peers = {
        "k:sample_euler": lambda: kd.sample_euler(free, x, sigmas.float(), disable=True),
        "k:sample_dpmpp_2m": lambda: kd.sample_dpmpp_2m(free, x, sigmas.float(), disable=True),
    }
    baseline = {name: _timed(run, device, repeats) / steps for name, run in peers.items()}
    rows = [
        {
            "method": name,
            "nfe_per_step": 1,
            "nfe": steps,
            "per_step_us": t * 1e6,
            "captured_us": None,
        }
        for name, t in baseline.items()
    ]
    euler = baseline["k:sample_euler"]
    for name in methods or ode_methods():
        module = load_method(name)

        def run(name=name):
            return sample(free, x, EDM_SCHEDULE, name, sigmas=sigma_list, output="edm")

        _, info = sample(
            free, x, EDM_SCHEDULE, name, sigmas=sigma_list, output="edm", return_info=True
        )
        row = {
            "method": name,
            "nfe_per_step": int(module.NFE_PER_STEP),
            "nfe": info.nfe,
            "per_step_us": _timed(run, device, repeats) / steps * 1e6,
            "captured_us": None,
        }
        if cuda:
            _, info = sample(
                free,
                x,
                EDM_SCHEDULE,
                name,
                sigmas=sigma_list,
                output="edm",
                capture=True,
                return_info=True,
            )
            row["captured_us"] = _timed(lambda info=info: info.replay(x), device, repeats)
            row["captured_us"] *= 1e6 / steps
            row["syncs_per_run"] = _syncs(run)
            row["syncs_unchecked"] = _syncs(
                lambda name=name: sample(
                    free,
                    x,
                    EDM_SCHEDULE,
                    name,
                    sigmas=sigma_list,
                    output="edm",
                    check_finite=False,
                )
            )
        rows.append(row)
    for row in rows:
        row["per_step_over_euler"] = row["per_step_us"] / (euler * 1e6)
        row["per_step_over_evaluation"] = row["per_step_us"] / (evaluation * 1e6)
    return {
        "device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
        "steps": steps,
        "shape": list(shape),
        "network": f"{layers} conv layers, {channels} channels, {str(dtype).split('.')[-1]}",
        "evaluation_ms": evaluation * 1e3,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "rows": rows,
    }


def print_report(result: dict) -> None:
    print(
        f"{result['device']}, latent {result['shape']} float32, torch {result['torch']}, "
        f"{result['threads']} threads, {result['steps']} steps; one evaluation of the network "
        f"({result['network']}): {result['evaluation_ms']:.2f} ms\n"
    )
    print(
        "| method | NFE/step | per step (us) | / k:sample_euler | / network evaluation | "
        "captured per step (us) | syncs per run | syncs, check_finite=False |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in result["rows"]:
        captured = "-" if r["captured_us"] is None else f"{r['captured_us']:.1f}"
        print(
            f"| {r['method']} | {r['nfe_per_step']} | {r['per_step_us']:.1f} | "
            f"{r['per_step_over_euler']:.2f} | {r['per_step_over_evaluation']:.2%} | "
            f"{captured} | {r.get('syncs_per_run', '-')} | {r.get('syncs_unchecked', '-')} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--shape", type=int, nargs="+", default=[4, 4, 128, 128])
    parser.add_argument("--methods", nargs="+", default=None)
    parser.add_argument("--layers", type=int, default=None)
    parser.add_argument("--channels", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--format", choices=["markdown", "json"], default="markdown")
    parser.add_argument("--render", metavar="FILE", help="print the report of a saved json result")
    args = parser.parse_args()
    if args.render:
        with open(args.render, encoding="utf-8") as handle:
            print_report(json.load(handle))
        return
    result = measure(
        args.steps,
        args.device,
        tuple(args.shape),
        args.methods,
        args.layers,
        args.channels,
        args.repeats,
    )
    if args.format == "json":
        print(json.dumps(result, indent=2))
    else:
        print_report(result)


if __name__ == "__main__":
    main()
