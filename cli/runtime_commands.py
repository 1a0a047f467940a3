"""Subcommands that run the solvers: verify (convergence studies) and sample."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from phiforge.cli.output import (
    emit_json,
    figure_file,
    markdown_table,
    output_dir,
    output_file,
    positive_int,
    seed_int,
)
from phiforge.cli.progress import QUIET_HELP as _QUIET_HELP
from phiforge.cli.progress import Progress
from phiforge.runtime.denoisers import DENOISERS
from phiforge.runtime.errors import InputError
from phiforge.runtime.verification import GAUSSIAN_SPEC, PROBLEMS, problem_parameters

__all__ = ["register_runtime_commands"]

DEFAULT_PROBLEMS = ["gaussian", "gmm"]
_REGISTRY_HELP = (
    "a user registry folder whose methods join the package's (repeatable; also PHIFORGE_REGISTRY)"
)


def _verify_operator(args: argparse.Namespace) -> int:
    """``verify --setting operator``: catalogue or registry tableaus on the stiff PDE problems
    of :mod:`phiforge.derive.stiff_pde`, observed orders against the derived ones."""
    from phiforge.cli.commands import method_tableau
    from phiforge.derive.catalogue import catalogue_method, catalogue_names
    from phiforge.derive.check import check_tableau
    from phiforge.derive.stiff_pde import PROBLEMS as PDE_PROBLEMS
    from phiforge.derive.stiff_pde import stiff_problem, study

    problems = args.problem or list(PDE_PROBLEMS)
    for name in problems:
        if name.partition(":")[0] not in PDE_PROBLEMS:
            raise InputError(
                f"parameter '--problem' with --setting operator must be one of "
                f"{', '.join(PDE_PROBLEMS)} (heat-ho and heat-compatible take :n=N,eps=E), got "
                f"{name!r}"
            )
        stiff_problem(name)  # parameters checked before any work
    if args.nfe_given:
        raise InputError("parameter '--nfe' applies to --setting scalar (the diffusion problems)")
    names = args.methods or [n for n in catalogue_names() if not catalogue_method(n).free_symbols]
    methods = [method_tableau(name, {}, args.registry) for name in names]
    steps = args.steps if args.steps_given else [16, 32, 64, 128, 256]
    if len(set(steps)) < 3:
        raise InputError("parameter '--steps' needs at least three distinct step counts")
    orders = {}
    for method in methods:
        report = check_tableau(method, 6, "operator")
        orders[method.name] = {
            "stiff": report.stiff_order,
            "weak_stiff": report.weak_stiff_order,
            "classical": report.classical_order,
        }
    if args.explore is not None:
        from phiforge.derive.stiff_pde import explore

        tableaus = {method.name: method for method in methods}
        return _explore(
            args,
            list(tableaus),
            lambda name, database: explore(
                tableaus[name], orders[name], args.explore, args.seed, database
            ),
            "random stiff heat problems",
            "derived stiff order",
        )
    results = []
    progress = Progress(len(problems) * len(methods), "verify", quiet=args.quiet)
    for name in problems:
        problem = stiff_problem(name)
        rows = []
        for method in methods:
            rows.append(study(method, problem, orders[method.name], steps, args.extend_to))
            progress.advance(note=f"{name} {method.name}")
        results.append({"problem": name, "norm_L": problem.norm, "methods": rows})
    progress.close()
    if args.format == "json":
        emit_json({"setting": "operator", "problems": results})
    else:
        for result in results:
            print(
                f"## {result['problem']}: ||L|| = {result['norm_L']:.3g}, steps "
                f"{' '.join(map(str, steps))} on [0, 1] (doubled up to {args.extend_to} while "
                "a miss is still pre-asymptotic), discrete L2 error at T = 1\n"
            )
            swept = sorted({n for r in result["methods"] for n in r["steps"]})
            header = ["method", "stiff", "weak", "classical", "observed", "local orders"]
            header += ["agrees"] + [f"N={n}" for n in swept]
            body = [
                [
                    r["name"], r["stiff"], r["weak_stiff"], r["classical"],
                    _fmt(r["observed_order"], ".2f"),
                    ", ".join(f"{v:.2f}" for v in r["local_orders"]) or "-",
                    "yes" if r["agrees"] else "NO",
                ]
                + [_error(dict(zip(r["steps"], r["errors"], strict=True)).get(n)) for n in swept]
                for r in result["methods"]
            ]  # fmt: skip
            print(markdown_table(header, body))
            notes = [
                f"- {r['name']}: {r['verdict']}" for r in result["methods"] if r["verdict"] != "yes"
            ]
            if notes:
                print("\n" + "\n".join(notes))
            print()
    failing = [(r["problem"], m["name"], m["verdict"]) for r in results for m in r["methods"]]
    failing = [f for f in failing if not f[2].startswith("yes")]
    if failing and args.strict:
        for problem_name, name, verdict in failing:
            print(f"verify --strict: {name} on {problem_name}: {verdict}", file=sys.stderr)
        return 1
    return 0


def _explore(
    args: argparse.Namespace, names: list[str], run: Any, problems: str, claimed: str
) -> int:
    """``verify --explore N``: each method on N random problems drawn by hypothesis (database in
    ./.phiforge-hypothesis), ``run(name, database)`` giving one method's report; prints the
    distribution of observed minus claimed order and the smallest problem that misses as a
    command reproducing it."""
    import statistics

    database = output_dir(".phiforge-hypothesis", "--explore")
    reports = []
    with Progress(len(names), "explore", quiet=args.quiet) as progress:
        for name in names:
            reports.append(run(name, str(database)))
            progress.advance(note=name)
    if args.format == "json":
        emit_json({"setting": args.setting, "explore": reports})
    else:
        print(
            f"{args.explore} {problems} per method (hypothesis, seed {args.seed}; database "
            f"{database}): observed order minus the {claimed}\n"
        )
        header = ["method", "claimed", "problems", "undecided", "min", "median", "max", "misses"]
        body = []
        for r in reports:
            finite = [m for m in r["margins"] if math.isfinite(m)] or [-math.inf]
            misses = str(r["misses"])
            if r.get("still_rising"):
                misses += f" ({r['still_rising']} still pre-asymptotic at the finest sweep)"
            body.append(
                [r["name"], r["claimed"], r["examples"], r["undecided"], f"{min(finite):+.2f}",
                 f"{statistics.median(finite):+.2f}", f"{max(finite):+.2f}", misses]
            )  # fmt: skip
        print(markdown_table(header, body))
        for r in reports:
            smallest = r["smallest"]
            if smallest is None:
                continue
            command = (
                f"phiforge verify {r['name']} --setting {args.setting} --problem "
                f"{smallest['problem']} --steps {' '.join(map(str, smallest['steps']))}"
            )
            if "extend_to" in smallest:
                command += f" --extend-to {smallest['extend_to']}"
            verdict = f"\n  ({smallest['verdict']})" if smallest.get("verdict") else ""
            print(
                f"\n{r['name']} misses its claimed order; the smallest problem found:\n"
                f"  {command}{verdict}"
            )
    missed = [r["name"] for r in reports if r["misses"]]
    if missed and args.strict:
        print(f"verify --strict: {', '.join(missed)} miss their claimed order", file=sys.stderr)
        return 1
    return 0


def _verify(args: argparse.Namespace) -> int:
    from phiforge.runtime.stepping import load_method, ode_methods

    args.steps_given = args.steps is not None
    args.nfe_given = args.nfe is not None
    if args.setting == "operator":
        return _verify_operator(args)
    args.steps = args.steps or [8, 16, 32, 64, 128, 256]
    args.nfe = args.nfe or [5, 6, 8, 10, 12, 15, 20, 30, 50]
    if args.problem:
        for name in args.problem:
            if ":" in name:
                problem_parameters(name)
            elif name not in PROBLEMS:
                raise InputError(
                    f"parameter '--problem' must be one of {', '.join(PROBLEMS)} (gaussian also "
                    f"as {GAUSSIAN_SPEC}), got {name!r}"
                )
    from phiforge.runtime.verification import builtin_problem, explore, study_method

    names = args.methods or ode_methods(args.registry)
    methods = [load_method(name, args.registry) for name in names]  # unknown names fail first
    noisy = [m.NAME for m in methods if m.STOCHASTIC]
    if noisy:
        raise InputError(
            f"parameter 'METHOD': verify measures the pathwise order of deterministic methods; "
            f"{', '.join(noisy)} draw noise (their weak orders: docs/seeds.md, "
            "tests/test_sde_adams.py)"
        )
    if args.explore is not None:
        modules = {method.NAME: method for method in methods}
        return _explore(
            args,
            list(modules),
            lambda name, database: explore(modules[name], args.explore, args.seed, database),
            "random one-dimensional Gaussian problems (any schedule and step spacing)",
            "claimed order",
        )
    plot = figure_file(args.plot, "--plot") if args.plot else None
    if len(set(args.steps)) < 3:
        raise InputError(
            "parameter '--steps' needs at least three distinct step counts to fit an order, got "
            f"{' '.join(map(str, args.steps))}"
        )
    problems = args.problem or DEFAULT_PROBLEMS
    results = []
    progress = Progress(len(problems) * len(methods), "verify", quiet=args.quiet)
    for problem_name in problems:
        started = time.perf_counter()
        problem = builtin_problem(problem_name, batch=args.batch, seed=args.seed)
        studies = []
        for method in methods:
            studies.append(
                study_method(
                    problem,
                    method,
                    steps=args.steps,
                    nfe_budgets=args.nfe,
                    warmup=args.warmup,
                    extend_to=args.extend_to,
                )
            )
            progress.advance(note=f"{problem_name} {method.NAME}")
        results.append(
            {
                "problem": problem_name,
                "schedule": problem.schedule.name,
                "t_start": problem.t_start,
                "t_end": problem.t_end,
                "batch": int(problem.x_start.shape[0]),
                "data": problem.data,
                "spacing": problem.step_schedule,
                "reference": (
                    "exact"
                    if problem.reference_accuracy == 0
                    else "DOP853 rtol 1e-12"
                    if problem.reference_solver is None
                    else "{} on {} steps".format(*problem.reference_solver)
                ),
                "reference_accuracy": problem.reference_accuracy,
                "seconds": round(time.perf_counter() - started, 2),
                "methods": [s.to_dict() for s in studies],
            }
        )
    progress.close()
    if plot is not None:
        _plot(results, plot)
    if args.format == "json":
        emit_json({"problems": results, "plot": args.plot})
    else:
        for result in results:
            _print_problem(result)
        if args.plot:
            print(f"plot: {args.plot}")
    disagreeing = [
        (r["problem"], m["name"], m["verdict"])
        for r in results
        for m in r["methods"]
        if r["problem"] != "empirical" and m["agrees"] is False
    ]
    if disagreeing and args.strict:
        for problem_name, name, verdict in disagreeing:
            print(f"verify --strict: {name} on {problem_name}: {verdict}", file=sys.stderr)
        return 1
    return 0


def _fmt(value: float | None, spec: str = ".2e") -> str:
    return "-" if value is None else format(value, spec)


def _error(value: float | None) -> str:
    """An error in a sweep's table: '-' where the sweep has no such N, 'inf' where it blew up."""
    return "-" if value is None else _fmt(value) if math.isfinite(value) else "inf"


def _print_problem(result: dict[str, Any]) -> None:
    methods = result["methods"]
    print(
        f"## problem {result['problem']}: {result['data']}, {result['schedule']} schedule, t "
        f"{result['t_start']:g} -> {result['t_end']:g}, batch {result['batch']}, reference "
        f"{result['reference']} (accuracy {result['reference_accuracy']:.1e}), "
        f"{result['seconds']} s\n"
    )
    steps = methods[0]["steps"]
    steps = sorted({n for m in methods for n in m["steps"]})
    header = ["method", "NFE/step", "stiff (scalar)", "claimed", "observed", "agrees"]
    header += [f"N={n}" for n in steps]
    rows = []
    for m in methods:
        by_steps = dict(zip(m["steps"], m["errors"], strict=True))
        agrees = {True: "yes", False: "NO", None: "-"}[m["agrees"]]
        if m["agrees"] is False and m["verdict"].startswith("not asymptotic"):
            agrees = "not asymptotic"
        rows.append(
            [
                m["name"],
                m["nfe_per_step"],
                m["scalar_stiff_order"],
                m["claimed_order"],
                _fmt(m["observed_order"], ".2f"),
                agrees,
            ]
            + [_fmt(by_steps.get(n)) for n in steps]
        )
    print(
        "Error at the end (RMS per sample, mean over the batch) over N steps "
        f"({result['spacing']} spacing); "
        "observed order: least-squares slope over the finest 3 usable N; a method below its "
        "claim whose local orders still rise gets the sweep doubled (--extend-to).\n"
    )
    print(markdown_table(header, rows))
    notes = [f"- {m['name']}: {m['verdict']}" for m in methods if m["verdict"] != "yes"]
    if notes:
        print("\n" + "\n".join(notes))
    budgets = sorted({n for m in methods for n in m["defect_nfe"]})
    rows = []
    for m in methods:
        by_nfe = dict(zip(m["defect_nfe"], m["defects"], strict=True))
        rows.append([m["name"]] + [_fmt(by_nfe.get(n)) for n in budgets])
    best = {
        n: min(
            (dict(zip(m["defect_nfe"], m["defects"], strict=True)).get(n, math.inf), m["name"])
            for m in methods
        )
        for n in budgets
    }
    rows.append(["best"] + [best[n][1] for n in budgets])
    print("\nDefect against NFE (budget spent exactly; lower-order warm-up):\n")
    print(markdown_table(["method"] + [f"NFE {n}" for n in budgets], rows))
    print()


_MARKERS = "osD^v<>ph*XP8"


def _plot(results: list[dict[str, Any]], figure: tuple[Path, str]) -> None:
    """One row of panels per kind of method (single-step, multistep, ...), two panels per
    problem (error over the step sweep, defect over NFE budgets); within a row every method has
    its own colour and marker, the legend sits outside the panels, and a method that misses its
    claimed order is drawn dotted and marked in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = sorted({m.get("kind") or "methods" for r in results for m in r["methods"]})
    columns = 2 * len(results)
    fig, axes = plt.subplots(
        len(kinds), columns, figsize=(4.2 * columns + 3.2, 3.6 * len(kinds)), squeeze=False
    )
    for row, kind in enumerate(kinds):
        names = sorted(
            {
                m["name"]
                for r in results
                for m in r["methods"]
                if (m.get("kind") or "methods") == kind
            }
        )
        colours = plt.cm.tab10.colors if len(names) <= 10 else plt.cm.tab20.colors
        style = {
            name: (colours[i % len(colours)], _MARKERS[i % len(_MARKERS)])
            for i, name in enumerate(names)
        }
        handles: dict[str, Any] = {}
        for index, result in enumerate(results):
            sweep, budget = axes[row][2 * index], axes[row][2 * index + 1]
            for m in result["methods"]:
                if (m.get("kind") or "methods") != kind:
                    continue
                colour, marker = style[m["name"]]
                missed = m["agrees"] is False and result["problem"] != "empirical"
                line = ":" if missed else "-"
                (handle,) = sweep.loglog(
                    m["nfe"], m["errors"], line, color=colour, marker=marker, ms=4, lw=1.3
                )
                budget.loglog(
                    m["defect_nfe"], m["defects"], line, color=colour, marker=marker, ms=4, lw=1.3
                )
                label = m["name"] + (f" (misses order on {result['problem']})" if missed else "")
                if missed or m["name"] not in handles:
                    handles[m["name"] if not missed else label] = (handle, label)
            sweep.set_title(f"{result['problem']} / {kind}: error, step sweep", fontsize=9)
            budget.set_title(f"{result['problem']} / {kind}: defect vs NFE budget", fontsize=9)
            for axis in (sweep, budget):
                axis.set_xlabel("NFE")
                axis.set_ylabel("RMS error at t_end")
                axis.grid(True, which="both", alpha=0.3)
        axes[row][-1].legend(
            [h for h, _ in handles.values()],
            [label for _, label in handles.values()],
            fontsize=8,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            borderaxespad=0.0,
        )
    fig.tight_layout()
    path, kind = figure
    fig.savefig(path, format=kind, dpi=100, bbox_inches="tight")
    plt.close(fig)


def _sample(args: argparse.Namespace) -> None:
    import torch

    from phiforge.runtime.denoisers import builtin_denoiser
    from phiforge.runtime.driver import sample, sampling_plan
    from phiforge.runtime.errors import InputError
    from phiforge.runtime.methods import load_method
    from phiforge.runtime.restart import restart_from
    from phiforge.runtime.schedules import noise_schedule

    if args.fit_steps is not None and args.restart:
        raise InputError("parameter '--fit-steps' does not combine with '--restart'")
    if args.nfe is not None and args.steps is not None:
        raise InputError(
            "parameters '--nfe' and '--steps' exclude each other: give an NFE budget or a "
            "number of main steps"
        )
    _sample_paths(args.out)
    if args.fitted is not None:
        _sample_fitted(args)
        return
    denoiser = builtin_denoiser(args.denoiser)
    schedule = noise_schedule(args.schedule)
    restart = restart_from(args.restart) if args.restart else None
    if args.step_schedule is None:  # log-SNR uniform where its ends are finite, else time
        ends = [float(schedule.lam(t)) for t in (schedule.t_start, schedule.t_end)]
        args.step_schedule = "logsnr" if all(map(math.isfinite, ends)) else "time"
    name = args.method or (restart.method if restart and restart.method else "res_3m")
    method = load_method(name, args.registry)
    name = method.NAME
    grid_args: dict[str, Any] = {}
    if args.steps is not None:
        grid_args["steps"] = args.steps
    elif restart is None or args.nfe is not None:
        grid_args["nfe"] = args.nfe or 10
    _, _, plan = sampling_plan(
        schedule, method, step_schedule=args.step_schedule, restart=restart, **grid_args
    )
    generator = torch.Generator().manual_seed(args.seed)
    _, sigma_start = schedule.alpha_sigma_of_lam(plan.lambdas[0])
    x = torch.randn(args.batch, denoiser.dim, dtype=torch.float64, generator=generator)
    x = x * sigma_start
    fitted = None
    if args.fit_steps is not None:
        fitted = _fit_steps(args, denoiser, schedule, method, plan, sigma_start)
        grid_args = {"sigmas": fitted.sigmas}
    progress = not args.quiet and sys.stderr.isatty()
    samples, info = sample(
        denoiser,
        x,
        schedule,
        method,
        step_schedule=args.step_schedule,
        output="edm",
        return_info=True,
        progress=progress,
        restart=restart,
        generator=generator,
        **grid_args,
    )
    out, grid = _write_samples(samples, denoiser, args)
    others = _substitutes(info.methods, name)
    result = {
        "method": name,
        "denoiser": args.denoiser,
        "schedule": schedule.name,
        "step_schedule": "fitted" if fitted is not None else args.step_schedule,
        "restart": None if restart is None else restart.name,
        "nfe": info.nfe,
        "steps": info.steps,
        "methods_per_step": info.methods,
        "output": str(out),
        "grid": None if grid is None else str(grid),
        "samples": args.batch,
        "note": others,
    }
    if fitted is not None:
        result["fitted_sigmas"] = fitted.sigmas
        result["pilot_defect"] = {"uniform": fitted.uniform_defect, "fitted": fitted.defect}
    if args.format == "json":
        emit_json(result)
    else:
        print(
            f"{args.batch} samples of {args.denoiser} with {name}"
            + (f" + restart {restart.name}" if restart else "")
            + f": {info.nfe} NFE, {info.steps} main steps "
            f"({'fitted' if fitted is not None else args.step_schedule}, "
            f"{schedule.name}) -> {out}" + (f", grid {grid}" if grid else "")
        )
        if others:
            print(f"note: {others}")
        if fitted is not None:
            print(
                f"fitted grid ({args.fit_steps} pilots, {fitted.evaluations} solves): pilot "
                f"defect {fitted.uniform_defect:.3e} -> {fitted.defect:.3e}; sigmas "
                + ", ".join(f"{s:.6g}" for s in fitted.sigmas)
            )


def _substitutes(methods: list[str], name: str) -> str | None:
    """What ran instead of ``name`` when none of its steps fit the NFE budget, stated rather
    than silently substituted."""
    if name in methods:  # warm-up starters and final steps are the method's own convention
        return None
    runs: list[list[Any]] = []
    for m in methods:
        if runs and runs[-1][0] == m:
            runs[-1][1] += 1
        else:
            runs.append([m, 1])
    steps = ", ".join(f"{m} x{k}" if k > 1 else m for m, k in runs)
    return f"{name} did not run (its step does not fit the budget); steps run: {steps}"


def _sample_paths(value: str) -> tuple[Path, Path]:
    """``--out`` (a torch file) and the PNG grid beside it, both checked before any work: the
    grid must not be the torch file itself (``--out x.png`` would overwrite the samples)."""
    from phiforge.runtime.errors import InputError

    out = output_file(value, "--out")
    if out.suffix.lower() == ".png":
        raise InputError(
            f"parameter '--out': {value!r} is the torch file of the samples, and their PNG grid "
            "is written beside it with the suffix .png; give another suffix, e.g. samples.pt"
        )
    return out, output_file(out.with_suffix(".png"), "--out (its PNG grid)")


def _write_samples(samples, denoiser, args: argparse.Namespace):
    """The samples as a torch file at ``--out``, and a PNG grid beside it for image data."""
    import torch

    out, grid_path = _sample_paths(args.out)
    torch.save(samples.reshape(args.batch, *denoiser.image_shape).float(), out)
    grid = None
    if denoiser.image_shape is not None:
        grid = grid_path
        _image_grid(samples.reshape(args.batch, *denoiser.image_shape), grid)
    return out, grid


def _sample_fitted(args: argparse.Namespace) -> None:
    """``phiforge sample --fitted FILE``: the solver of ``phiforge fit`` (its grid and NFE; a
    stochastic one draws its noise from --seed + 1)."""
    import torch

    from phiforge.cli.fit_commands import starting_points
    from phiforge.runtime.denoisers import builtin_denoiser
    from phiforge.runtime.errors import InputError
    from phiforge.runtime.fitted import load_solver

    solver = load_solver(args.fitted)
    fitted_for = solver.info.get("denoiser")
    if fitted_for is not None and fitted_for != args.denoiser:
        raise InputError(
            f"parameter '--fitted': {args.fitted} was fitted to {fitted_for!r}, not "
            f"{args.denoiser!r} (pass --denoiser {fitted_for})"
        )
    for name in ("method", "nfe", "steps", "restart", "fit_steps"):
        if getattr(args, name) is not None:
            raise InputError(
                f"parameter '--{name.replace('_', '-')}' does not combine with '--fitted'"
            )
    denoiser = builtin_denoiser(args.denoiser)
    x = starting_points(denoiser.dim, args.batch, solver.sigmas[0], args.seed)
    noise = {"generator": torch.Generator().manual_seed(args.seed + 1)} if solver.eta else {}
    samples = solver.sample(denoiser, x, **noise)
    out, grid = _write_samples(samples, denoiser, args)
    result = {
        "method": "fitted",
        "fitted": str(args.fitted),
        "denoiser": args.denoiser,
        "eta": solver.eta,
        "nfe": solver.nfe,
        "steps": solver.nfe,
        "sigmas": solver.sigmas,
        "output": str(out),
        "grid": None if grid is None else str(grid),
        "samples": args.batch,
    }
    if args.format == "json":
        emit_json(result)
    else:
        print(
            f"{args.batch} samples of {args.denoiser} with the fitted solver {args.fitted}: "
            f"{solver.nfe} NFE -> {out}" + (f", grid {grid}" if grid else "")
        )


def _fit_steps(args, denoiser, schedule, method, plan, sigma_start):
    """The fitted grid for ``phiforge sample --fit-steps``: the plan's ends and step count."""
    import torch

    from phiforge.runtime.errors import InputError
    from phiforge.runtime.step_search import optimize_steps

    lambdas = [float(v) for v in plan.lambdas]
    if not all(math.isfinite(v) for v in (lambdas[0], lambdas[-1])):
        raise InputError(
            f"parameter '--fit-steps' needs finite grid ends; schedule {schedule.name!r} runs "
            f"lambda {lambdas[0]} -> {lambdas[-1]}"
        )
    pilots = torch.randn(
        args.fit_steps,
        denoiser.dim,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(args.seed + 1),
    )
    bound = 2 * args.fit_evaluations  # two searches, each at most this many solves
    with Progress(bound, "fit-steps (solves)", quiet=args.quiet) as progress:
        return optimize_steps(
            denoiser,
            pilots * sigma_start,
            schedule,
            method,
            steps=len(lambdas) - 1,
            sigma_start=math.exp(-lambdas[0]),
            sigma_end=math.exp(-lambdas[-1]),
            max_evaluations=args.fit_evaluations,
            sample_options={"output": "edm"},
            progress=progress.advance,
        )


def _image_grid(images, path: Path) -> None:
    """A PNG grid of the samples: grey images (H, W) or RGB ones (3, H, W), values in
    [-1, 1] (clipped)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = images.shape[0]
    columns = min(count, 8)
    rows = math.ceil(count / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns, rows), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= count:
            continue
        image = images[index].detach().float().cpu()
        if image.ndim == 3:  # channels first: RGB in [-1, 1] -> [0, 1]
            axis.imshow(((image.permute(1, 2, 0) + 1) / 2).clamp(0, 1).numpy())
        else:
            axis.imshow(image.numpy(), cmap="gray_r", vmin=-1, vmax=1)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def register_runtime_commands(commands: argparse._SubParsersAction) -> None:
    verify = commands.add_parser(
        "verify",
        help="convergence study of generated methods on the built-in problems",
        description="Observed order (error vs lambda-uniform steps) and defect vs NFE of each "
        "method on built-in problems with exact or high-accuracy reference solutions.",
    )
    verify.add_argument("methods", nargs="*", metavar="METHOD", help="default: every method")
    verify.add_argument(
        "--setting",
        choices=["scalar", "operator"],
        default="scalar",
        help="scalar: the diffusion problems; operator: stiff PDE problems (heat-ho, "
        "heat-compatible, heat-nonstiff) for catalogue and registry tableaus",
    )
    verify.add_argument(
        "--problem",
        action="append",
        help=f"repeatable; scalar: {', '.join(PROBLEMS)} or {GAUSSIAN_SPEC} (default: "
        "gaussian and gmm; network: "
        "the MLP trained on gmm; unet: the U-Net on image patches); operator: heat-ho, "
        "heat-compatible, heat-nonstiff (default: all)",
    )
    verify.add_argument(
        "--steps",
        type=positive_int,
        nargs="+",
        help="default: 8 16 32 64 128 256 (scalar), 16 32 64 128 256 (operator)",
    )
    verify.add_argument(
        "--nfe", type=positive_int, nargs="+", help="default: 5 6 8 10 12 15 20 30 50"
    )
    verify.add_argument(
        "--extend-to",
        type=positive_int,
        default=1024,
        metavar="N",
        help="double the sweep of a method still pre-asymptotic up to N steps (default: 1024)",
    )
    verify.add_argument("--batch", type=positive_int, default=16)
    verify.add_argument("--seed", type=seed_int, default=0)
    verify.add_argument(
        "--warmup",
        choices=["order-preserving", "lower-order"],
        default="order-preserving",
        help="multistep starters in the step sweep",
    )
    verify.add_argument(
        "--plot",
        metavar="FILE.png",
        help="write a figure of both studies (PNG; or PDF, SVG, ... by the suffix)",
    )
    verify.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 if an observed order misses its claim (empirical excluded)",
    )
    verify.add_argument("--format", choices=["text", "json"], default="text")
    verify.add_argument("--registry", action="append", help=_REGISTRY_HELP)
    verify.add_argument("--quiet", "-q", action="store_true", help=_QUIET_HELP)
    verify.add_argument(
        "--explore",
        type=positive_int,
        metavar="N",
        help="N random problems per method (hypothesis, --seed; scalar: one-dimensional "
        "Gaussian data, any schedule and step spacing; operator: stiff heat problems), the "
        "distribution of observed minus claimed order and the smallest miss as a command",
    )
    verify.set_defaults(handler=_verify)

    sampler = commands.add_parser(
        "sample",
        help="draw samples from a built-in denoiser with a generated method",
    )
    sampler.add_argument("--denoiser", choices=list(DENOISERS), default="gmm")
    sampler.add_argument("--method", help="default: res_3m, or a restart preset's method")
    sampler.add_argument("--nfe", type=positive_int, help="NFE budget (default 10)")
    sampler.add_argument("--steps", type=positive_int, help="main steps instead of a budget")
    sampler.add_argument(
        "--restart",
        metavar="PRESET|SPEC",
        help="Restart: a preset (cifar10-vp-43, imagenet64-203, ..., a1111-STEPS) "
        "or N,K,SIGMA_MIN,SIGMA_MAX[;...]",
    )
    sampler.add_argument(
        "--schedule",
        default="vp-linear",
        choices=["vp-linear", "vp-cosine", "ddpm", "ve", "edm", "flow"],
    )
    sampler.add_argument(
        "--step-schedule",
        choices=["logsnr", "time", "quadratic", "karras"],
        help="default: logsnr, or time where the schedule's log-SNR ends are infinite (flow)",
    )
    sampler.add_argument(
        "--fit-steps",
        type=positive_int,
        metavar="PILOTS",
        help="fit the grid's interior points to the method's defect on PILOTS pilot draws "
        "(seed + 1, teacher res_3m_pc on 512 steps) before sampling (runtime.optimize_steps)",
    )
    sampler.add_argument(
        "--fit-evaluations",
        type=positive_int,
        default=1500,
        help="solves per search stage with --fit-steps (default 1500)",
    )
    sampler.add_argument(
        "--fitted",
        metavar="FILE",
        help="sample with a solver written by 'phiforge fit' (its own grid and NFE)",
    )
    sampler.add_argument("--batch", type=positive_int, default=16)
    sampler.add_argument("--seed", type=seed_int, default=0)
    sampler.add_argument("--out", default="samples.pt", help="a torch file; a PNG grid beside it")
    sampler.add_argument("--format", choices=["text", "json"], default="text")
    sampler.add_argument("--registry", action="append", help=_REGISTRY_HELP)
    sampler.add_argument("--quiet", "-q", action="store_true", help=_QUIET_HELP)
    sampler.set_defaults(handler=_sample)
