"""Subcommands for the shipped digits mixture: ``mixture fit`` and ``mixture check``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from phiforge.cli.output import (
    emit_json,
    file_stem,
    markdown_table,
    output_dir,
    positive_int,
    seed_int,
    tolerance,
)

__all__ = ["register_mixture_commands"]


def _fit(args: argparse.Namespace) -> None:
    from phiforge.runtime.denoisers import BUILTIN_MIXTURE, fit_digits_mixture, save_mixture

    out = output_dir(args.out)  # checked before the fit, not after
    mixture = fit_digits_mixture(components=args.components, seed=args.seed)
    _, manifest = save_mixture(mixture, out, args.name or BUILTIN_MIXTURE)
    if args.format == "json":
        emit_json({"manifest": str(manifest), "info": mixture.info})
        return
    info = mixture.info
    print(
        f"EM: {info['iterations']} iterations (converged: {info['converged']}), mean "
        f"log-likelihood of the digits {info['mean_log_likelihood']:.10g}; BLAS {info['blas']}"
    )
    print(f"written: {manifest} (+ .bin)")


def _check(args: argparse.Namespace) -> int:
    from phiforge.runtime.denoisers import (
        BUILTIN_MIXTURE,
        digits,
        fit_digits_mixture,
        load_mixture,
    )
    from phiforge.runtime.manifest import weights_dir
    from phiforge.runtime.network import denoising_errors

    path = Path(args.path) if args.path else weights_dir() / f"{BUILTIN_MIXTURE}.json"
    shipped = load_mixture(path)
    stored = shipped.info["mean_log_likelihood"]
    measured = shipped.mean_log_likelihood(digits())
    difference = abs(measured - stored) / abs(stored)
    agrees = difference <= args.rtol
    result: dict[str, Any] = {
        "manifest": str(path),
        "mean_log_likelihood": measured,
        "relative_difference_to_stored": difference,
        "agrees": agrees,
    }
    if args.refit:
        fit = shipped.info["fit"]
        fresh = fit_digits_mixture(components=fit["components"], seed=fit["random_state"])
        result["refit"] = {
            "info": fresh.info,
            # RMS(fresh - shipped) under the network's error protocol: x~ = x0 + s eps, x0 from
            # the shipped mixture, against its Bayes error RMS(shipped - x0)
            "denoiser_differences": denoising_errors(fresh, shipped),
        }
    if args.format == "json":
        emit_json(result)
        return 0 if agrees else 1
    print(f"{path}: hashes match; mean log-likelihood of the digits {measured:.10g}")
    print(f"relative difference to the stored {stored:.10g}: {difference:.1e} (rtol {args.rtol:g})")
    if args.refit:
        info = result["refit"]["info"]
        print(
            f"EM here: {info['iterations']} iterations, mean log-likelihood "
            f"{info['mean_log_likelihood']:.10g}, BLAS {info['blas']}; its denoiser against the "
            "shipped one:"
        )
        rows = [
            [f"{r['sigma']:g}", f"{r['network_rms']:.3e}", f"{r['bayes_rms']:.3e}"]
            for r in result["refit"]["denoiser_differences"]
        ]
        print(markdown_table(["sigma~", "RMS(fit here - shipped)", "RMS(shipped - x0)"], rows))
    return 0 if agrees else 1


def register_mixture_commands(commands: argparse._SubParsersAction) -> None:
    mixture = commands.add_parser(
        "mixture",
        help="the built-in digits mixture: fit it with EM, or check a mixture file",
    )
    actions = mixture.add_subparsers(dest="action", metavar="ACTION", required=True)
    fit = actions.add_parser(
        "fit",
        help="fit a Gaussian mixture to the digits (scikit-learn's EM) and write it",
        description="Writes NAME.bin (float64 weights, means, covariances) and NAME.json (table, "
        "hashes, EM settings, versions and BLAS kernels). EM's result depends on the machine's "
        "BLAS kernels, which is why the built-in mixture ships as a file.",
    )
    fit.add_argument("--components", type=positive_int, default=10)
    fit.add_argument("--seed", type=seed_int, default=0, help="EM's random_state (default 0)")
    fit.add_argument("--out", metavar="DIR", help="default: the working directory")
    fit.add_argument("--name", type=file_stem, help="file stem (default: the built-in mixture's)")
    fit.add_argument("--format", choices=["text", "json"], default="text")
    fit.set_defaults(handler=_fit)

    check = actions.add_parser(
        "check",
        help="load a mixture file (hashes checked), re-measure its log-likelihood, compare a fit "
        "made here",
    )
    check.add_argument("path", nargs="?", metavar="NAME.json", help="default: the built-in")
    check.add_argument(
        "--rtol",
        type=tolerance,
        default=1e-9,
        help="allowed relative difference to the stored log-likelihood (default 1e-9)",
    )
    check.add_argument(
        "--no-refit", dest="refit", action="store_false", help="skip the fit on this machine"
    )
    check.add_argument("--format", choices=["text", "json"], default="text")
    check.set_defaults(handler=_check)
