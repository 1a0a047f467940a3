"""``phiforge fit``: a solver fitted to a built-in denoiser (runtime.fitted), judged on held-out
starting points; ``phiforge sample --fitted FILE`` samples with it."""

from __future__ import annotations

import argparse
import dataclasses
import math

from phiforge.cli.output import emit_json, output_file, positive_int, seed_int
from phiforge.cli.progress import QUIET_HELP, Progress
from phiforge.runtime.denoisers import DENOISERS

__all__ = ["register_fit_commands", "starting_points"]

TEACHER, TEACHER_STEPS = "res_4m_pc", 512
# the registered methods a fit is judged beside on the held-out starts, unless --compare names
# others: the ODE's and the SDE's (eta > 0) third-order log-SNR baselines
COMPARE = {False: ("res_3m_pc",), True: ("seeds_3a",)}


def starting_points(dim: int, batch: int, sigma_start: float, seed: int):
    """x~ at sigma~ = sigma_start: N(0, sigma_start^2 I) draws (the prior of sample's start)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, dim, dtype=torch.float64, generator=generator) * sigma_start


def _fit(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from phiforge.runtime.denoisers import builtin_denoiser
    from phiforge.runtime.driver import sample, sampling_plan
    from phiforge.runtime.errors import InputError
    from phiforge.runtime.fitted import MAX_HISTORY, fit_solver, load_solver
    from phiforge.runtime.fitted_free import fit_free_solver, teacher_states
    from phiforge.runtime.schedules import noise_schedule
    from phiforge.runtime.verification import (
        defect,
        frechet_features,
        frechet_tensor,
        moments_root,
    )

    if args.grid_only and args.weights_only:
        raise InputError("parameters '--grid-only' and '--weights-only' exclude each other")
    if args.free:
        given = [
            name
            for name, value in (
                ("--base-steps", args.base_steps),
                ("--history", args.history),
                ("--order", args.order),
                ("--grid-only", args.grid_only or None),
                ("--weights-only", (args.weights_only and args.start is None) or None),
                ("--fit-noise", args.fit_noise or None),
                ("--fit-shift", args.fit_shift or None),
                ("--eta", args.eta or None),
            )
            if value is not None
        ]
        if given:
            raise InputError(
                f"parameter '--free' fits every weight of the deterministic solver (order 0, "
                f"all values, grid searched on the teacher's path): it does not combine with "
                f"{', '.join(given)}"
            )
    elif args.cycles is not None:
        raise InputError("parameter '--cycles' applies to '--free' (its grid search)")
    compare = _compared(args.compare, args.eta)
    out = output_file(args.out, "--out")  # before the fit, not after it
    denoiser = builtin_denoiser(args.denoiser)
    schedule = noise_schedule(args.schedule)
    _, _, plan = sampling_plan(schedule, "res_3m_pc", nfe=args.nfe, step_schedule="logsnr")
    lam0, lam1 = float(plan.lambdas[0]), float(plan.lambdas[-1])
    if not (math.isfinite(lam0) and math.isfinite(lam1)):
        raise InputError(
            f"parameter '--schedule': a fit needs finite grid ends; {schedule.name!r} runs "
            f"lambda {lam0} -> {lam1}"
        )
    sigma_start, sigma_end = math.exp(-lam0), math.exp(-lam1)
    if args.teacher_steps < args.nfe:
        raise InputError(
            f"parameter '--teacher-steps' must be at least --nfe ({args.nfe}): the teacher is "
            f"the fine solve the fit learns from, got {args.teacher_steps}"
        )
    teacher_grid = np.exp(-np.linspace(lam0, lam1, args.teacher_steps + 1)).tolist()

    def teacher(x):
        return sample(denoiser, x, "edm", TEACHER, output="edm", sigmas=teacher_grid)

    pilot = starting_points(denoiser.dim, args.pilot, sigma_start, args.seed + 1)
    # L-BFGS evaluates the objective at most 1.25 x its iterations (torch's max_eval default)
    progress = Progress(int(1.25 * args.iterations) + 1, "fit (evaluations)", quiet=args.quiet)
    # a stochastic fit's Frechet objective, and its judgement, in the denoiser's feature space
    features = frechet_features(denoiser) if args.eta > 0 else None
    if args.free and args.start is not None:  # a free fit continuing a fitted solver
        history = min(args.nfe, MAX_HISTORY)
        solver = fit_solver(
            denoiser, pilot, teacher(pilot), sigma_start, sigma_end, args.nfe,
            steps=min(3, history), history=history, free=True, iterations=args.iterations,
            fit_grid=not args.weights_only, start=load_solver(args.start),
            progress=progress.advance,
        )  # fmt: skip
    elif args.free:
        path = teacher_states(denoiser, pilot, teacher_grid, TEACHER)
        solver = fit_free_solver(
            denoiser, pilot, path, teacher_grid, args.nfe, cycles=args.cycles or 1,
            iterations=args.iterations, progress=progress.advance,
        )  # fmt: skip
    else:
        solver = fit_solver(
            denoiser, pilot, teacher(pilot), sigma_start, sigma_end, args.nfe,
            steps=3 if args.base_steps is None else args.base_steps,
            history=4 if args.history is None else args.history,
            order=args.order,
            fit_weights=not args.grid_only,
            fit_grid=not args.weights_only,
            fit_noise=args.fit_noise,
            fit_shift=args.fit_shift,
            iterations=args.iterations,
            eta=args.eta,
            seed=args.seed + 3,
            start=None if args.start is None else load_solver(args.start),
            features=features,
            progress=progress.advance,
        )  # fmt: skip
    progress.close()
    held = starting_points(denoiser.dim, args.held_out, sigma_start, args.seed + 2)
    held_reference = teacher(held)

    def peer(method: str, **noise) -> torch.Tensor:  # its nfe on log-SNR steps, the fit's ends
        return sample(
            denoiser, held, "edm", method, nfe=args.nfe, step_schedule="logsnr",
            t_start=sigma_start, t_end=sigma_end, output="edm", **noise,
        )  # fmt: skip

    if solver.eta == 0:
        judged = {f"{m}_logsnr": defect(peer(m), held_reference) for m in compare}
        judged["fitted"] = defect(solver.sample(denoiser, held), held_reference)
        measure = "defect"
    else:
        # the stochastic solvers are judged by the Frechet distance of their held-out samples
        # to the teacher's samples of the same starting points
        def seen(samples):
            return samples if features is None else features(samples)

        target = moments_root(seen(held_reference))

        def noise() -> torch.Generator:  # the same draws for every solver
            return torch.Generator().manual_seed(args.seed + 4)

        judged = {
            f"{m}_logsnr": float(
                frechet_tensor(seen(peer(m, eta=args.eta, generator=noise())), *target)
            )
            for m in compare
        }
        ours = solver.sample(denoiser, held, generator=noise())
        judged["fitted"] = float(frechet_tensor(seen(ours), *target))
        measure = "Frechet distance"
    best = min(judged[f"{m}_logsnr"] for m in compare)
    info = dict(
        solver.info,
        denoiser=args.denoiser,
        schedule=schedule.name,
        teacher=f"{TEACHER} on {args.teacher_steps} log-SNR steps",
        held_out=args.held_out,
        held_out_defect=judged,
        fitted_vs_best_compared=judged["fitted"] / best if best > 0 else math.inf,
    )
    objective = solver.info["objective"]
    solver = dataclasses.replace(solver, info=info)
    path = solver.save(out)
    if args.format == "json":
        emit_json({"output": str(path), "nfe": solver.nfe, "sigmas": solver.sigmas, **info})
        return
    print(
        f"fitted {args.nfe}-NFE solver (eta {solver.eta:g}) for {args.denoiser} "
        f"({schedule.name}, sigma~ {sigma_start:.4g} -> {sigma_end:.4g}), {args.pilot} pilots, "
        f"{solver.info['seconds']} s: pilot {objective} "
        f"{solver.info[f'pilot_{objective}_start']:.3e} -> {solver.info[f'pilot_{objective}']:.3e}"
        f"; held-out ({args.held_out}) {measure}: "
        + ", ".join(f"{m} log-SNR {judged[f'{m}_logsnr']:.3e}" for m in compare)
        + f", fitted {judged['fitted']:.3e} ({info['fitted_vs_best_compared']:.3g} x the best "
        f"compared) -> {path}"
    )
    search = solver.info.get("grid_search")
    if search is not None:
        descent = search["descent"]
        print(
            f"free solver: grid searched among the teacher's {search['fine']} steps, greedy "
            f"least-squares pilot defect {descent[0]['pilot']:.3e} (log-SNR grid) -> "
            f"{descent[-1]['pilot']:.3e} ({descent[-1]['evaluations']} grids); sigmas "
            + ", ".join(f"{sigma:.4g}" for sigma in solver.sigmas)
        )


def _compared(text: str | None, eta: float) -> tuple[str, ...]:
    """The methods of ``--compare`` (comma-separated registered names; default COMPARE), each
    checked before the fit: known, and stochastic when the fit is (eta > 0)."""
    from phiforge.runtime.errors import InputError
    from phiforge.runtime.methods import load_method

    if text is None:
        return COMPARE[eta > 0]
    names = [name.strip() for name in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise InputError(
            f"parameter '--compare' must be distinct method names separated by commas, got {text!r}"
        )
    for name in names:
        try:
            module = load_method(name)
        except InputError as error:
            raise InputError(f"parameter '--compare': {error}") from None
        if eta > 0 and not module.STOCHASTIC:
            raise InputError(
                f"parameter '--compare': {name} is deterministic; a stochastic fit (--eta "
                f"{eta:g}) is judged beside stochastic methods (seeds_3a, res_2m_sde, ...)"
            )
    return tuple(names)


def register_fit_commands(commands: argparse._SubParsersAction) -> None:
    fit = commands.add_parser(
        "fit",
        help="fit a solver's weights and steps to a built-in denoiser (runtime.fitted)",
    )
    fit.add_argument("--denoiser", choices=list(DENOISERS), default="gmm")
    fit.add_argument(
        "--schedule",
        default="vp-linear",
        choices=["vp-linear", "vp-cosine", "ddpm", "ve", "edm", "flow"],
    )
    fit.add_argument("--nfe", type=positive_int, default=10)
    fit.add_argument("--pilot", type=positive_int, default=256, help="pilot draws (seed + 1)")
    fit.add_argument("--held-out", type=positive_int, default=256, help="judged on (seed + 2)")
    fit.add_argument("--seed", type=seed_int, default=0)
    fit.add_argument("--base-steps", type=positive_int, help="res_Km_pc to start from (default 3)")
    fit.add_argument("--history", type=positive_int, help="values a step may use (default 4)")
    fit.add_argument("--order", type=positive_int, help="exactness kept per step (default 2)")
    fit.add_argument(
        "--free",
        action="store_true",
        help="the free linear solver (runtime.fitted_free): no exactness kept, every weight "
        "over all values fitted; its grid searched among the teacher's steps, its weights by "
        "least squares on the teacher's states, then refined end to end (--iterations); with "
        "--start, that solver refined instead",
    )
    fit.add_argument(
        "--cycles", type=positive_int, help="with --free: sweeps of the grid search (default 1)"
    )
    fit.add_argument("--iterations", type=positive_int, default=300, help="L-BFGS iterations")
    fit.add_argument(
        "--teacher-steps",
        type=positive_int,
        default=TEACHER_STEPS,
        help=f"log-SNR steps of the teacher's fine solve ({TEACHER}; a network such as the "
        "U-Net: fewer, e.g. 64, keep the fit affordable on a CPU)",
    )
    fit.add_argument(
        "--eta",
        type=float,
        default=0.0,
        help="noise of the dynamics: 0 the ODE (pathwise fit), > 0 a stochastic solver fitted "
        "on the Frechet distance to the teacher's samples, taken in the block colours of an "
        "image denoiser (1 the reverse SDE)",
    )
    fit.add_argument(
        "--start",
        metavar="FILE",
        help="a fitted solver (same --nfe, --base-steps, --history, --order and ends) to start "
        "from: its grid and its departure from its Adams weights (e.g. a fit at a lower --eta); "
        "with --free any solver of the same --nfe and ends, continued with every weight free "
        "(no grid search)",
    )
    fit.add_argument(
        "--compare",
        metavar="METHODS",
        help="registered methods (comma-separated) run on the held-out starts beside the fit, "
        "at its NFE on log-SNR steps (default: res_3m_pc; with --eta > 0 seeds_3a, at that eta)",
    )
    fit.add_argument("--grid-only", action="store_true", help="fit the steps, keep the weights")
    fit.add_argument("--weights-only", action="store_true", help="keep the log-SNR grid")
    fit.add_argument(
        "--fit-noise",
        action="store_true",
        help="also fit every step's noise amplitude (with --eta > 0; exact noise otherwise)",
    )
    fit.add_argument(
        "--fit-shift",
        action="store_true",
        help="also fit where each step calls the model, lambda_n + d_n with |d_n| <= 1",
    )
    fit.add_argument("--out", default="fitted-solver.json")
    fit.add_argument("--format", choices=["text", "json"], default="text")
    fit.add_argument("--quiet", "-q", action="store_true", help=QUIET_HELP)
    fit.set_defaults(handler=_fit)
