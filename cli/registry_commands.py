"""Subcommands that write and read the registry and generate code: derive, registry, generate."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from phiforge.cli.output import emit_json, output_dir, positive_int
from phiforge.cli.progress import QUIET_HELP, Progress
from phiforge.derive.codegen import generate
from phiforge.derive.errors import InputError
from phiforge.derive.plan import build_registry, derive_multistep_record, derive_singlestep_record
from phiforge.derive.records import Record
from phiforge.derive.registry import list_records, load_registered, save_record
from phiforge.derive.registry_folders import (
    REGISTRY_ENV,
    check_method_name,
    default_registry_dir,
    registered_names,
    registry_folders,
)

__all__ = ["register_registry_commands"]

_WRITE_HELP = (
    f"folder the record(s) are written to (default: the first folder of {REGISTRY_ENV}, "
    "else ./registry)"
)
_READ_HELP = (
    f"a user registry folder, searched after the package's (repeatable; also {REGISTRY_ENV})"
)


def _summary(record: Record) -> dict[str, Any]:
    scalar = record.orders["scalar"]
    provenance = record.provenance
    return {
        "name": record.name,
        "family": record.family,
        "stiff_order": scalar["stiff"],
        "weak_stiff_order": scalar["weak_stiff"],
        "nonstiff_order": scalar["nonstiff"],
        "classical_order": scalar["classical"],
        "operator_stiff_order": record.orders.get("operator", {}).get("stiff"),
        "nfe_per_step": record.nfe_per_step,
        "stages": record.stages,
        "steps": record.steps,
        "provenance": provenance.get("kind"),
        "source": provenance.get("citation", provenance.get("criterion", "")),
        "hash": record.hash,
    }


def _target_registry(args: argparse.Namespace) -> Path:
    """The folder a command writes records into: --registry, else the first folder of
    PHIFORGE_REGISTRY, else ./registry (never the installed package unless named); created or
    refused before any work."""
    if args.registry is not None:
        target = args.registry
    else:
        env = [p for p in os.environ.get(REGISTRY_ENV, "").split(os.pathsep) if p]
        target = Path(env[0]) if env else Path.cwd() / "registry"
    return output_dir(str(target), "--registry")


def _refuse_taken(names: list[str], target: Path) -> None:
    """A new record may not take the name of a method registered in another folder."""
    for name in names:
        check_method_name(name, "--name")
        taken = registered_names()
        folder = taken.get(name)
        if folder is not None and folder.resolve() != target.resolve():
            raise InputError(
                f"parameter '--name': {name!r} is already registered in {folder}; choose "
                f"another name"
            )


def _derive(args: argparse.Namespace) -> None:
    check_method_name(args.name, "--name")  # before any folder is made
    target = _target_registry(args)
    _refuse_taken([args.name], target)
    with Progress(None, f"derive {args.name}", quiet=args.quiet, heartbeat=True):
        record = _construct(args)
    path = save_record(record, target)
    _report_derived(args, record, path)


def _construct(args: argparse.Namespace) -> Record:
    if args.family == "singlestep":
        nodes = args.nodes.split(",") if args.nodes else None
        if nodes is None and args.stages == 1 and args.node_grid is None:
            nodes = []  # one stage: no nodes c2, ..., cs to give
        if nodes is None and args.node_grid is None:
            raise InputError("give parameter '--nodes c2,...,cs' or '--node-grid v1,v2,...'")
        record = derive_singlestep_record(
            args.name,
            args.stages,
            args.order,
            nodes=nodes,
            node_grid=args.node_grid.split(",") if args.node_grid else None,
            assumptions=args.assumptions,
            prediction=args.prediction,
            description=args.description or "",
            setting=args.setting,
            weak_top=args.weak_top,
            zero=[x for x in args.zero.split(",") if x] if args.zero else (),
            own_scale=args.own_scale,
            form=args.form_of_coefficients,
            fix=_fix(args.fix),
        )
    else:
        record = derive_multistep_record(
            args.name,
            args.order,
            prediction=args.prediction,
            description=args.description or "",
            corrector=args.corrector,
        )
    return record


def _fix(text: str | None) -> dict[str, str] | None:
    """--fix a4_2=1/2,b3=0 as {"a4_2": "1/2", "b3": "0"}."""
    if not text:
        return None
    pairs = [item.split("=") for item in text.split(",") if item]
    if any(len(pair) != 2 or not pair[0] for pair in pairs):
        raise InputError(f"parameter '--fix' must read NAME=VALUE,..., e.g. a4_2=1/2; got {text!r}")
    names = [name.strip() for name, _ in pairs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise InputError(f"parameter '--fix' gives {', '.join(twice)} twice")
    return {name.strip(): value.strip() for name, value in pairs}


def _report_derived(args: argparse.Namespace, record: Record, path: Path) -> None:
    summary = _summary(record) | {
        "path": str(path),
        "free_parameters": record.provenance.get("free_parameters"),
    }
    if args.format == "json":
        emit_json(summary)
        return
    print(f"wrote {path}")
    for key, value in summary.items():
        print(f"  {key}: {value}")


def _registry_list(args: argparse.Namespace) -> None:
    package = default_registry_dir()
    records = []
    for folder in registry_folders(args.registry):
        where = "package" if folder == package else str(folder)
        records += [_summary(r) | {"folder": where} for r in list_records(folder)]
    registered_names(args.registry)  # a name held twice is refused
    if args.format == "json":
        emit_json(records)
        return
    header = "name | family | stiff | weak | non-stiff | classical | NFE/step | provenance | folder"
    print(f"| {header} |\n" + "|---" * 9 + "|")
    for r in records:
        print(
            f"| {r['name']} | {r['family']} | {r['stiff_order']} | {r['weak_stiff_order']} | "
            f"{r['nonstiff_order']} | {r['classical_order']} | {r['nfe_per_step']} | "
            f"{r['provenance']} | {r['folder']} |"
        )


def _registry_show(args: argparse.Namespace) -> None:
    record = load_registered(args.name, args.registry)
    if args.format == "json":
        emit_json(record)
        return
    for key, value in _summary(record).items():
        print(f"{key}: {value}")
    print("coefficients:")
    for group, entries in record.coefficients.items():
        for index, text in entries.items():
            print(f"  {group}[{index}] = {text}")


def _registry_build(args: argparse.Namespace) -> None:
    target = _target_registry(args)
    with Progress(None, "registry build", quiet=args.quiet, heartbeat=True):
        paths = build_registry(target, args.names or None)
    if args.format == "json":
        emit_json([str(p) for p in paths])
    else:
        print("\n".join(f"wrote {p}" for p in paths))


def _generate(args: argparse.Namespace) -> int:
    if args.registry is not None and not args.registry.is_dir():
        raise InputError(f"parameter '--registry': {args.registry} is not a folder")
    default = args.registry / "generated" if args.registry is not None else Path("generated")
    out = Path(args.out) if args.out else default
    if args.check:
        if not out.is_dir():
            raise InputError(f"parameter '--out': {out} is not a folder (nothing to compare)")
    else:
        out = output_dir(str(out), "--out")
    differing = generate(args.registry, out, check=args.check)
    if args.format == "json":
        emit_json({"check": args.check, "out": str(out), "files": differing})
    elif args.check:
        if differing:
            print("generated/ differs from what the registry produces:")
            print("\n".join(f"  {name}" for name in differing))
            print("run 'phiforge generate' to regenerate")
        else:
            print(f"{out}: up to date")
    else:
        print(f"wrote {len(differing)} file(s) in {out}" + ("".join(f"\n  {n}" for n in differing)))
    return 1 if (args.check and differing) else 0


def register_registry_commands(commands: argparse._SubParsersAction) -> None:
    derive = commands.add_parser("derive", help="construct a method and write its record")
    families = derive.add_subparsers(dest="family", metavar="FAMILY", required=True)
    single = families.add_parser("singlestep", help="exponential Runge-Kutta from the conditions")
    single.add_argument("--stages", "-s", type=positive_int, required=True)
    single.add_argument("--order", "-p", type=positive_int, required=True)
    single.add_argument("--nodes", help="c2,...,cs, e.g. 1/3,2/3")
    single.add_argument(
        "--node-grid",
        help="choose the nodes from these values by the "
        "principal-error criterion, e.g. 1/4,1/3,1/2,2/3,1",
    )
    single.add_argument(
        "--setting",
        choices=("scalar", "operator"),
        default="scalar",
        help="scalar: diffusion ODEs (default); operator: stiff PDEs (ansatz)",
    )
    single.add_argument(
        "--weak-top",
        action="store_true",
        help="operator setting: top-order conditions in weakened form",
    )
    single.add_argument(
        "--zero",
        metavar="NAMES",
        help="operator setting: coefficients fixed to 0, e.g. b2,b3,a4_3 (Luan's ansatz: "
        "b2,b3,b4,a4_3,a5_2,a6_2,a6_5 with --own-scale --weak-top)",
    )
    single.add_argument(
        "--own-scale",
        action="store_true",
        help="operator setting: row i of the ansatz only in phi_k(c_i z) (Luan's family)",
    )
    single.add_argument(
        "--assumptions", choices=("none", "stage-order-2", "stage-order-3"), default="none"
    )
    single.add_argument(
        "--fix",
        metavar="NAME=VALUE,...",
        help="scalar setting: give coefficients values of your choice instead of the "
        "construction's 0 for free ones, e.g. a4_2=1/2,b3=0",
    )
    single.add_argument(
        "--coefficients",
        dest="form_of_coefficients",
        choices=("expanded", "program"),
        default="expanded",
        help="expanded: each coefficient one quotient of phi polynomials; program: a "
        "straight-line program of named values (scalar setting, --nodes; data prediction)",
    )
    multi = families.add_parser("multistep", help="exponential Adams of order K")
    multi.add_argument("--order", "-k", type=positive_int, required=True)
    multi.add_argument(
        "--corrector",
        action="store_true",
        help="add the exponential Adams-Moulton corrector: a PEC pair of order K + 1",
    )
    for sub in (single, multi):
        sub.add_argument("--name", required=True, help="the method's name: a-z, 0-9, '_'")
        sub.add_argument("--prediction", choices=("data", "noise"), default="data")
        sub.add_argument("--description")
        sub.add_argument("--registry", type=Path, help=_WRITE_HELP)
        sub.add_argument("--format", choices=("text", "json"), default="text")
        sub.add_argument("--quiet", "-q", action="store_true", help=QUIET_HELP)
        sub.set_defaults(handler=_derive)

    registry = commands.add_parser("registry", help="read or rebuild the registry")
    actions = registry.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="one line per registered method")
    listing.set_defaults(handler=_registry_list)
    show = actions.add_parser("show", help="one record")
    show.add_argument("name", metavar="NAME")
    show.set_defaults(handler=_registry_show)
    build = actions.add_parser("build", help="re-derive records from the registry plan")
    build.add_argument("names", nargs="*", metavar="NAME")
    build.set_defaults(handler=_registry_build)
    for sub in (listing, show):
        sub.add_argument("--registry", type=Path, action="append", help=_READ_HELP)
    build.add_argument("--registry", type=Path, help=_WRITE_HELP)
    build.add_argument("--quiet", "-q", action="store_true", help=QUIET_HELP)
    for sub in (listing, show, build):
        sub.add_argument("--format", choices=("text", "json"), default="text")

    gen = commands.add_parser("generate", help="write generated/ from the registry")
    gen.add_argument(
        "--check", action="store_true", help="only compare; exit 1 and name the files that differ"
    )
    gen.add_argument(
        "--registry", type=Path, help="the records' folder (default: the package's registry)"
    )
    gen.add_argument(
        "--out",
        help="output folder (default: REGISTRY/generated with --registry, else ./generated)",
    )
    gen.add_argument("--format", choices=("text", "json"), default="text")
    gen.set_defaults(handler=_generate)
