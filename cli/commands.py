"""Subcommands of the derive layer: conditions, check, catalogue, show, trees."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import sympy

from phiforge.cli.output import emit_json, markdown_table, positive_int, seed_int
from phiforge.cli.progress import QUIET_HELP as _QUIET_HELP
from phiforge.cli.progress import Progress
from phiforge.derive.catalogue import catalogue_method, catalogue_names
from phiforge.derive.check import CheckReport, check_tableau
from phiforge.derive.conditions import (
    SETTINGS,
    classical_conditions,
    nonstiff_conditions,
    stiff_conditions,
)
from phiforge.derive.errors import InputError
from phiforge.derive.program_check import ProgramTableau
from phiforge.derive.registry import (
    checked_method_from_record,
    load_record,
)
from phiforge.derive.registry_folders import REGISTRY_ENV, registered_names, user_folders
from phiforge.derive.tableau import ExpRKTableau, format_expression
from phiforge.derive.trees import trees

__all__ = ["method_tableau", "register_derive_commands"]

_REGISTRY_HELP = f"a user registry folder, searched after the package's (also {REGISTRY_ENV})"


# ---------------------------------------------------------------------------- conditions
def _conditions(args: argparse.Namespace) -> None:
    p = args.order
    if args.kind == "classical":
        items = classical_conditions(p)
        pairs = [(c, c) for c in items]
    elif args.kind == "nonstiff":
        items = nonstiff_conditions(p, args.setting)
        pairs = [(c.condition, c) for c in items]
    else:
        items = stiff_conditions(p, args.setting)
        pairs = [(c, c) for c in items]
    # render only the forms the output format shows: one tick per condition
    forms = {"json": ("ascii", "latex"), "markdown": ("ascii",), "latex": ("latex",)}
    records, human = [], []
    with Progress(len(pairs), "conditions", quiet=args.quiet) as progress:
        for cond, shown in pairs:
            record: dict[str, Any] = {
                "number": cond.number,
                "order": cond.order,
                "tree": cond.tree.ascii,
            }
            if args.kind != "classical":
                record |= {"setting": cond.setting, "variables": cond.variables}
            for form in forms.get(args.format, ()):
                record["expression" if form == "ascii" else form] = shown.expression(form)
            if args.kind == "nonstiff":
                record["taylor_degree"] = shown.degree
            records.append(record)
            if args.format == "text":
                text = shown.expression("unicode")
                head = f"{cond.number:4d}  order {cond.order}  "
                human.append(
                    f"{head}{cond.tree}  {text}"
                    if args.kind == "classical"
                    else f"{head}{cond.tree!s:14s} {text} = 0"
                )
            progress.advance()
    if args.format == "json":
        emit_json(records)
    elif args.format == "markdown":
        print(
            markdown_table(
                ["#", "order", "tree", "condition"],
                [
                    [r["number"], r["order"], f"`{r['tree']}`", f"`{r['expression']}`"]
                    for r in records
                ],
            )
        )
    elif args.format == "latex":
        print("\\begin{align*}")
        print(
            " \\\\\n".join(
                f"  &\\text{{{r['number']}}}\\ (p={r['order']}): && {r['latex']}"
                + ("" if args.kind == "classical" else " = 0")
                for r in records
            )
        )
        print("\\end{align*}")
    else:
        print(
            f"{len(records)} {args.kind} conditions of order <= {p}"
            + ("" if args.kind == "classical" else f" ({args.setting} setting)")
        )
        print("\n".join(human))


# ---------------------------------------------------------------------------- check
def _parse_parameters(items: list[str]) -> dict[str, Any]:
    values = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"parameter '--param' expects NAME=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        if key.strip() in values:
            raise InputError(f"parameter '--param {key.strip()}' is given twice")
        try:
            values[key.strip()] = sympy.Rational(sympy.nsimplify(value.strip()))
        except (TypeError, ValueError, sympy.SympifyError):
            raise InputError(f"parameter '--param {key}' must be a number, got {value!r}") from None
    return values


def report_record(report: CheckReport, residuals: bool) -> dict[str, Any]:
    """The JSON form of a check report."""
    conditions = []
    for result in report.results:
        record: dict[str, Any] = {
            "number": result.condition.number,
            "tree": result.tree.ascii,
            "order": result.order,
            "verdict": result.verdict.value,
            "expression": result.condition.expression("ascii"),
        }
        if residuals and result.verdict.value != "strong":
            record["residual"] = str(result.residual)
            record["leading_term"] = str(result.leading_term)
        conditions.append(record)
    method = report.method
    return {
        "name": method.name,
        "description": method.description,
        "source": method.source,
        "stages": method.stages,
        "nodes": [str(x) for x in method.c],
        "free_parameters": sorted(str(s) for s in method.free_symbols),
        "setting": report.setting,
        "max_order": report.max_order,
        "stiff_order": report.stiff_order,
        "weak_stiff_order": report.weak_stiff_order,
        "nonstiff_order": report.nonstiff_order,
        "classical_order": report.classical_order,
        "capped": report.capped,
        "conditions": conditions,
    }


def _orders(report: CheckReport) -> str:
    def show(name: str) -> str:
        value = getattr(report, name)
        return f">={value}" if report.capped[name] else str(value)

    return (
        f"stiff {show('stiff_order')}, weak {show('weak_stiff_order')}, "
        f"non-stiff {show('nonstiff_order')}, classical {show('classical_order')}"
    )


def method_tableau(
    name: str, parameters: dict[str, Any], registry: Any
) -> ExpRKTableau | ProgramTableau:
    """A catalogue method (its free parameters fixed by ``parameters``), else a single-step
    record of the package's or the user's registry: its tableau, or a straight-line record's
    program uncomposed (:func:`~phiforge.derive.registry.checked_method_from_record`: composing
    res_6s's 143 definitions would take hours; the checker, ``show`` and the operator-setting
    study read the program as it stands)."""
    if name in catalogue_names():
        return catalogue_method(name, **parameters)
    registered = registered_names(registry)
    if name not in registered:
        hint = "" if user_folders(registry) else f" (your own: --registry DIR or {REGISTRY_ENV})"
        raise InputError(
            f"parameter 'NAME': unknown method {name!r}{hint}; known catalogue methods: "
            f"{', '.join(catalogue_names())}; registry methods: {', '.join(sorted(registered))}"
        )
    record = load_record(name, registered[name])
    if record.family != "singlestep":
        raise InputError(
            f"parameter 'NAME': {name!r} is a {record.family} method, not an exponential "
            f"Runge-Kutta tableau; its verdicts and coefficients: phiforge registry show {name}"
        )
    if parameters:
        raise InputError(f"parameter '--param': registry method {name!r} has no free parameters")
    return checked_method_from_record(record)


def _check(args: argparse.Namespace) -> None:
    names = args.names or catalogue_names()
    parameters = _parse_parameters(args.param)
    if parameters and len(names) != 1:
        raise InputError("parameter '--param' needs exactly one method NAME")
    settings = list(SETTINGS) if args.setting == "both" else [args.setting]
    methods = [method_tableau(n, parameters, args.registry) for n in names]
    count = len(stiff_conditions(args.order, "scalar")) * len(methods) * len(settings)
    with Progress(count, "check", quiet=args.quiet) as progress:
        reports = [
            check_tableau(m, args.order, s, progress=progress.advance)
            for m in methods
            for s in settings
        ]
    residuals = len(reports) <= 2 or args.residuals
    if args.format == "json":
        records = [report_record(r, residuals) for r in reports]
        emit_json(records[0] if len(records) == 1 else records)
        return
    if args.format == "markdown" or len(reports) > 2:
        header = [
            "method",
            "setting",
            *[str(c.number) for c in reports[0].results],
            "stiff",
            "weak",
            "non-stiff",
            "classical",
        ]
        rows = [
            [
                r.method.name,
                r.setting,
                *[x.verdict.letter for x in r.results],
                r.stiff_order,
                r.weak_stiff_order,
                r.nonstiff_order,
                r.classical_order,
            ]
            for r in reports
        ]
        print(
            f"Verdicts per condition (S strong, W weak, C classical only, x fails), "
            f"conditions 1..{len(reports[0].results)} of orders 2..{args.order}:\n"
        )
        print(markdown_table(header, rows))
        return
    for report in reports:
        method = report.method
        print(f"{method.name}: {method.description}")
        print(f"  source: {method.source}")
        print(
            f"  {report.setting} setting, conditions of order <= {report.max_order}: "
            f"{_orders(report)}"
        )
        for result in report.results:
            line = (
                f"  {result.condition.number:4d} {result.tree!s:14s} order {result.order}  "
                f"{result.verdict.value:15s}"
            )
            if result.verdict.value != "strong":
                line += f" residual {format_expression(result.residual)}  ~ {result.leading_term}"
            print(line)


# ---------------------------------------------------------------------------- catalogue / show
def _catalogue(args: argparse.Namespace) -> None:
    """Every published method of the catalogue, single-step, multistep and stochastic."""
    from phiforge.derive.catalogue import catalogue_entries

    records = []
    for m in (catalogue_method(n) for n in catalogue_names()):
        records.append(
            {
                "name": m.name,
                "family": "singlestep",
                "stages": m.stages,
                "description": m.description,
                "source": m.source,
                "prediction": m.prediction,
                "free_parameters": sorted(str(s) for s in m.free_symbols),
            }
        )
    for family, size, key in (("multistep", "steps", "values"), ("stochastic", "stages", "nodes")):
        for name, entry in catalogue_entries(family).items():
            record = {"name": name, "family": family, "description": entry.get("title", "")}
            if key in entry:
                record[size] = len(entry[key])
            if "drift" in entry:
                record["drift"] = entry["drift"]
            record["source"] = entry.get("source", "")
            records.append(record)
    if args.format == "json":
        emit_json(records)
        return
    rows = [
        [r["name"], r["family"], r.get("stages", r.get("steps", f"drift {r.get('drift')}")),
         r["description"], r["source"]]
        for r in records
    ]  # fmt: skip
    print(markdown_table(["name", "family", "stages / steps", "description", "source"], rows))


def _show(args: argparse.Namespace) -> None:
    method = method_tableau(args.name, _parse_parameters(args.param), args.registry)
    if args.format == "json":
        emit_json(
            {
                "name": method.name,
                "description": method.description,
                "source": method.source,
                "prediction": method.prediction,
                "nodes": [str(x) for x in method.c],
                "a": {
                    f"{i},{j}": str(method.a_entry(i, j))
                    for i in range(2, method.stages + 1)
                    for j in range(1, i)
                },
                "b": {str(i): str(method.b_entry(i)) for i in range(1, method.stages + 1)},
                "definitions": {d.name: str(d.expr) for d in method.definitions},
            }
        )
    elif args.format == "latex":
        print(method.to_latex())
    else:
        print(f"{method.name}: {method.description}\nsource: {method.source}\n")
        print(method.to_markdown())


def _trees(args: argparse.Namespace) -> None:
    items = list(trees(args.order))
    if args.format == "json":
        emit_json(
            [
                {
                    "tree": t.ascii,
                    "levels": list(t.levels),
                    "density": t.density,
                    "symmetry": t.symmetry,
                }
                for t in items
            ]
        )
        return
    print(f"{len(items)} rooted trees with {args.order} vertices")
    for t in items:
        print(f"  {t!s:20s} levels {list(t.levels)}  gamma {t.density}  sigma {t.symmetry}")


def _feasibility(args: argparse.Namespace) -> None:
    from phiforge.derive.feasibility import pointwise_feasibility

    rows = []
    groups = [args.z] if args.joint else [[z] for z in args.z]
    with Progress(
        len(groups), "feasibility (values of z)", quiet=args.quiet, heartbeat=True
    ) as progress:
        for group in groups:
            z = group if args.joint else group[0]
            result = pointwise_feasibility(
                args.stages, args.order, z, assumptions=args.assumptions, starts=args.starts,
                seed=args.seed, bound=args.bound,
            )  # fmt: skip
            rows.append(
                {
                    "z": z,
                    "verdict": result.verdict,
                    "smallest_residual": result.best,
                    "residuals": sorted(result.residuals),
                    "local_dimension": result.dimension,
                    "largest_coefficient": result.size,
                    "equations": result.equations,
                    "unknowns": result.unknowns,
                    "solution": result.solution,
                }
            )
            progress.advance()
    if args.format == "json":
        emit_json(
            {"stages": args.stages, "order": args.order, "assumptions": args.assumptions,
             "bound": args.bound, "starts": args.starts, "seed": args.seed, "rows": rows}
        )  # fmt: skip
        return
    print(
        f"{args.stages} stages, scalar stiff order {args.order}, assumptions {args.assumptions}: "
        f"conditions solved at each z from {args.starts} starts (nodes in [0, 1], coefficients "
        f"in [-{args.bound:g}, {args.bound:g}])"
    )
    for row in rows:
        where = row["z"] if args.joint else f"{row['z']:g}"
        print(
            f"  z = {where}: {row['verdict']}, smallest residual "
            f"{row['smallest_residual']:.2e} ({row['equations']} equations, {row['unknowns']} "
            f"unknowns, local dimension {row['local_dimension']}, largest coefficient "
            f"{row['largest_coefficient']:.3g})"
        )


# ---------------------------------------------------------------------------- registration


def register_derive_commands(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser("conditions", help="list the order conditions up to an order")
    sub.add_argument("--order", "-p", type=positive_int, required=True, help="order p >= 1")
    sub.add_argument(
        "--setting",
        choices=SETTINGS,
        default="scalar",
        help="scalar (diffusion ODEs, L = +-1) or operator (stiff PDEs)",
    )
    sub.add_argument("--kind", choices=("stiff", "nonstiff", "classical"), default="stiff")
    sub.add_argument("--format", choices=("text", "json", "markdown", "latex"), default="text")
    sub.add_argument("--quiet", "-q", action="store_true", help=_QUIET_HELP)
    sub.set_defaults(handler=_conditions)

    sub = commands.add_parser(
        "check",
        help="check catalogue or registry methods against the conditions (all catalogue "
        "methods if no NAME)",
    )
    sub.add_argument("names", nargs="*", metavar="NAME")
    sub.add_argument("--registry", type=Path, action="append", help=_REGISTRY_HELP)
    sub.add_argument(
        "--order",
        "-p",
        type=positive_int,
        default=5,
        help="check conditions of orders 2..P (default 5)",
    )
    sub.add_argument(
        "--setting",
        choices=(*SETTINGS, "both"),
        default="scalar",
        help="operator (stiff PDEs) or scalar (diffusion ODEs, the default)",
    )
    sub.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fix a free parameter of a family, e.g. c2=1/2",
    )
    sub.add_argument(
        "--residuals",
        action="store_true",
        help="include residuals in JSON for many methods (default for one)",
    )
    sub.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    sub.add_argument("--quiet", "-q", action="store_true", help=_QUIET_HELP)
    sub.set_defaults(handler=_check)

    sub = commands.add_parser("catalogue", help="list the published methods of the catalogue")
    sub.add_argument("--format", choices=("text", "json"), default="text")
    sub.set_defaults(handler=_catalogue)

    sub = commands.add_parser("show", help="print a catalogue or registry method's tableau")
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("--registry", type=Path, action="append", help=_REGISTRY_HELP)
    sub.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    sub.add_argument("--format", choices=("markdown", "latex", "json"), default="markdown")
    sub.set_defaults(handler=_show)

    sub = commands.add_parser(
        "feasibility",
        help="solve the scalar stiff conditions at fixed z: whether any S-stage method of "
        "order P can exist (a positive smallest residual says no, for every set of nodes)",
    )
    sub.add_argument("--stages", "-s", type=positive_int, required=True)
    sub.add_argument("--order", "-p", type=positive_int, required=True)
    sub.add_argument(
        "--z", type=float, nargs="+", default=[-1.0], help="values of z = -h (default -1)"
    )
    sub.add_argument(
        "--assumptions",
        default="none",
        help="none, stage-order-2 or stage-order-3 (the construction's simplifying assumptions)",
    )
    sub.add_argument(
        "--joint",
        action="store_true",
        help="solve the conditions at every --z together, the nodes shared (as a method's are)",
    )
    sub.add_argument("--starts", type=positive_int, default=20, help="random starts per z")
    sub.add_argument("--seed", type=seed_int, default=0)
    sub.add_argument(
        "--bound", type=float, default=100.0, help="largest |a_ij|, |b_i| searched (100)"
    )
    sub.add_argument("--format", choices=("text", "json"), default="text")
    sub.add_argument("--quiet", "-q", action="store_true", help=_QUIET_HELP)
    sub.set_defaults(handler=_feasibility)

    sub = commands.add_parser("trees", help="enumerate the rooted trees with N vertices")
    sub.add_argument("--order", "-n", type=positive_int, required=True)
    sub.add_argument("--format", choices=("text", "json"), default="text")
    sub.set_defaults(handler=_trees)
