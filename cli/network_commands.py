"""Subcommands for the trained denoiser: ``network train`` and ``network check``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from phiforge.cli.output import emit_json, markdown_table, output_dir, positive_int
from phiforge.derive.errors import InputError

__all__ = ["register_network_commands"]


def _error_table(rows: list[dict[str, float]]) -> str:
    body = [
        [
            f"{r['sigma']:g}",
            f"{r['network_rms']:.3e}",
            f"{r['bayes_rms']:.3e}",
            f"{r['network_rms'] / r['bayes_rms']:.3f}",
        ]
        for r in rows
    ]
    header = ["sigma~", "RMS(network - exact)", "RMS(exact - x0)", "ratio"]
    return markdown_table(header, body)


def _train(args: argparse.Namespace) -> None:
    from phiforge.runtime.denoisers import builtin_denoiser
    from phiforge.runtime.network import (
        BUILTIN_NETWORK,
        NetworkConfig,
        TrainingConfig,
        denoising_errors,
        save_network,
        train_network,
    )

    out = output_dir(args.out)  # checked before the training, not after
    teacher = builtin_denoiser("gmm")
    training = TrainingConfig(
        steps=args.steps, batch=args.batch, seed=args.seed, target=args.target
    )
    network = NetworkConfig(
        dim=teacher.dim,
        width=args.width or NetworkConfig.width,
        blocks=args.blocks or NetworkConfig.blocks,
    )

    def progress(step: int, loss: float) -> None:
        if args.format == "text":
            print(f"step {step}/{args.steps}: loss {loss:.4e}", file=sys.stderr, flush=True)

    trained = train_network(teacher, network, training, progress=progress)
    errors = denoising_errors(trained, teacher)
    _, manifest = save_network(trained, out, args.name or BUILTIN_NETWORK, "gmm", errors)
    if args.format == "json":
        emit_json({"manifest": str(manifest), "info": trained.info, "denoising_errors": errors})
        return
    print(f"trained in {trained.info['seconds']} s, final loss {trained.info['final_loss']:.4e}")
    print(_error_table(errors))
    print(f"written: {manifest} (+ .bin)")


def _check(args: argparse.Namespace) -> int:
    from phiforge.runtime.denoisers import builtin_denoiser
    from phiforge.runtime.network import (
        BUILTIN_NETWORK,
        denoising_errors,
        load_network,
        save_network,
        weights_dir,
    )

    if args.store and not args.path:
        raise InputError(
            "parameter '--store' rewrites a manifest: name it (PATH); the package's shipped "
            "files are read-only"
        )
    path = Path(args.path) if args.path else weights_dir() / f"{BUILTIN_NETWORK}.json"
    network = load_network(path)
    measured = denoising_errors(network, builtin_denoiser("gmm"))
    stored = network.info["denoising_errors"]
    worst = max(
        abs(m["network_rms"] - s["network_rms"]) / s["network_rms"]
        for m, s in zip(measured, stored, strict=True)
    )
    agrees = worst <= args.rtol
    result: dict[str, Any] = {
        "manifest": str(path),
        "denoising_errors": measured,
        "largest_relative_difference_to_stored": worst,
        "agrees": agrees,
    }
    if args.store:  # the same float32 weights (their SHA-256 was checked), a new table and hash
        network.info.pop("denoising_errors")
        save_network(network, path.parent, path.stem, "gmm", measured)
        agrees = result["stored"] = True
    if args.format == "json":
        emit_json(result)
    else:
        print(f"{path}: hashes match; denoising errors measured now against the exact mixture:")
        print(_error_table(measured))
        print(f"largest relative difference to the stored table: {worst:.1e} (rtol {args.rtol:g})")
        if args.store:
            print(f"stored this table in {path} (weights unchanged)")
    return 0 if agrees else 1


def register_network_commands(commands: argparse._SubParsersAction) -> None:
    network = commands.add_parser(
        "network",
        help="the trained denoiser: train it on the built-in mixture, or check a weights file",
    )
    actions = network.add_subparsers(dest="action", metavar="ACTION", required=True)
    train = actions.add_parser(
        "train",
        help="train the MLP denoiser on fresh samples of the digits mixture (CPU, minutes)",
        description="Trains phiforge.runtime.network.DenoiserMLP (EDM preconditioning) on "
        "the built-in mixture and writes NAME.bin and NAME.json with its denoising errors.",
    )
    train.add_argument("--steps", type=positive_int, default=16000)
    train.add_argument("--batch", type=positive_int, default=512)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--target",
        choices=["posterior", "data"],
        default="posterior",
        help="regress on the exact posterior mean (default) or on x0 (score matching)",
    )
    train.add_argument("--width", type=positive_int)
    train.add_argument("--blocks", type=positive_int)
    train.add_argument("--out", metavar="DIR", help="default: the working directory")
    train.add_argument("--name", help="file stem (default: the built-in network's)")
    train.add_argument("--format", choices=["text", "json"], default="text")
    train.set_defaults(handler=_train)

    check = actions.add_parser(
        "check",
        help="load a weights file (hashes checked) and re-measure its denoising errors",
    )
    check.add_argument("path", nargs="?", metavar="NAME.json", help="default: the built-in")
    check.add_argument(
        "--rtol",
        type=float,
        default=1e-5,
        help="allowed relative difference to the stored error table (default 1e-5)",
    )
    check.add_argument(
        "--store",
        action="store_true",
        help="write the table measured now into the manifest (after a change of the protocol)",
    )
    check.add_argument("--format", choices=["text", "json"], default="text")
    check.set_defaults(handler=_check)
