"""Subcommands for the trained denoiser: ``network train`` and ``network check``."""

from __future__ import annotations

import argparse
import sys
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
from phiforge.derive.errors import InputError

__all__ = ["register_network_commands"]


# columns of the stored error tables: (header, key or a function of the row)
_MLP_COLUMNS = (
    ("RMS(network - exact)", "network_rms"),
    ("RMS(exact - x0)", "bayes_rms"),
)
_UNET_COLUMNS = (
    ("RMS(U-Net - x0), held-out", "network_rms_held_out"),
    ("RMS(empirical - x0), held-out", "empirical_rms_held_out"),
    ("RMS(U-Net - empirical), train", "network_vs_empirical_rms_train"),
)


def _table(rows: list[dict[str, float]], columns: tuple, ratio: bool = False) -> str:
    """A denoising-error table per sigma: the named columns (and network/Bayes for the MLP)."""
    header = ["sigma~", *(name for name, _ in columns)] + (["ratio"] if ratio else [])
    body = [
        [f"{r['sigma']:g}", *(f"{r[key]:.3e}" for _, key in columns)]
        + ([f"{r['network_rms'] / r['bayes_rms']:.3f}"] if ratio else [])
        for r in rows
    ]
    return markdown_table(header, body)


def _error_table(rows: list[dict[str, float]]) -> str:
    return _table(rows, _MLP_COLUMNS, ratio=True)


def _unet_table(rows: list[dict[str, float]]) -> str:
    return _table(rows, _UNET_COLUMNS)


def _train_unet(args: argparse.Namespace, out: Path) -> None:
    from phiforge.runtime.unet import (
        BUILTIN_UNET,
        UNetConfig,
        UNetTraining,
        save_unet,
        train_unet,
        unet_errors,
    )

    for option in ("target", "width", "blocks"):
        if getattr(args, option) is not None:
            raise InputError(f"parameter '--{option}' applies to --model mlp only")
    training = UNetTraining(
        steps=args.steps or UNetTraining.steps, batch=args.batch or UNetTraining.batch,
        seed=args.seed,
    )  # fmt: skip
    config = UNetConfig(base=args.base or UNetConfig.base)

    trained = train_unet(config, training, progress=_step_printer(args, training.steps))
    errors = unet_errors(trained)
    _, manifest = save_unet(trained, out, args.name or BUILTIN_UNET, errors)
    _report_trained(args, trained.info, manifest, errors, _unet_table)


def _train(args: argparse.Namespace) -> None:
    out = output_dir(args.out)  # checked before the training, not after
    if args.model == "unet":
        _train_unet(args, out)
        return
    if args.base is not None:
        raise InputError("parameter '--base' applies to --model unet only")
    _train_mlp(args, out)


def _train_mlp(args: argparse.Namespace, out: Path) -> None:
    from phiforge.runtime.denoisers import builtin_denoiser
    from phiforge.runtime.network import (
        BUILTIN_NETWORK,
        NetworkConfig,
        TrainingConfig,
        denoising_errors,
        save_network,
        train_network,
    )

    teacher = builtin_denoiser("gmm")
    training = TrainingConfig(
        steps=args.steps or TrainingConfig.steps,
        batch=args.batch or TrainingConfig.batch,
        seed=args.seed,
        target=args.target or TrainingConfig.target,
    )
    network = NetworkConfig(
        dim=teacher.dim,
        width=args.width or NetworkConfig.width,
        blocks=args.blocks or NetworkConfig.blocks,
    )

    trained = train_network(
        teacher, network, training, progress=_step_printer(args, training.steps)
    )
    errors = denoising_errors(trained, teacher)
    _, manifest = save_network(trained, out, args.name or BUILTIN_NETWORK, "gmm", errors)
    _report_trained(args, trained.info, manifest, errors, _error_table)


def _step_printer(args: argparse.Namespace, steps: int) -> Any:
    """The training's progress callback: one line per report on stderr (text, not --quiet)."""

    def progress(step: int, loss: float) -> None:
        if args.format == "text" and not args.quiet:
            print(f"step {step}/{steps}: loss {loss:.4e}", file=sys.stderr, flush=True)

    return progress


def _report_trained(
    args: argparse.Namespace, info: dict, manifest: Path, errors: Any, table: Any
) -> None:
    """What ``network train`` prints for either model: time, loss, the error table, the file."""
    if args.format == "json":
        emit_json({"manifest": str(manifest), "info": info, "denoising_errors": errors})
        return
    print(f"trained in {info['seconds']} s, final loss {info['final_loss']:.4e}")
    print(table(errors))
    print(f"written: {manifest} (+ .bin)")


def _check(args: argparse.Namespace) -> int:
    from phiforge.runtime.network import (
        BUILTIN_NETWORK,
        weights_dir,
    )

    if args.store and not args.path:
        raise InputError(
            "parameter '--store' rewrites a manifest: name it (PATH); the package's shipped "
            "files are read-only"
        )
    path = Path(args.path) if args.path else weights_dir() / f"{BUILTIN_NETWORK}.json"
    kind = _MODELS["unet" if _is_unet(path) else "mlp"]
    model = kind["load"](path)
    measured = kind["measure"](model)
    stored = model.info["denoising_errors"]
    worst = max(
        abs(m[key] - s[key]) / s[key]
        for m, s in zip(measured, stored, strict=True)
        for key in kind["compared"]
    )
    agrees = worst <= args.rtol
    result: dict[str, Any] = {
        "manifest": str(path),
        "denoising_errors": measured,
        "largest_relative_difference_to_stored": worst,
        "agrees": agrees,
    }
    if args.store:  # the same weights (their SHA-256 was checked), a new table and hash
        model.info.pop("denoising_errors")
        kind["save"](model, path, measured)
        agrees = result["stored"] = True
    if args.format == "json":
        emit_json(result)
    else:
        print(f"{path}: hashes match; denoising errors measured now {kind['against']}:")
        print(kind["table"](measured))
        print(f"largest relative difference to the stored table: {worst:.1e} (rtol {args.rtol:g})")
        if args.store:
            print(f"stored this table in {path} (weights unchanged)")
    return 0 if agrees else 1


def _is_unet(path: Path) -> bool:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8")).get("model") == "unet"
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return False  # the loader names what is wrong with the file


def _mlp_load(path: Path):
    from phiforge.runtime.network import load_network

    return load_network(path)


def _mlp_measure(model):
    from phiforge.runtime.denoisers import builtin_denoiser
    from phiforge.runtime.network import denoising_errors

    return denoising_errors(model, builtin_denoiser("gmm"))


def _mlp_save(model, path: Path, measured) -> None:
    from phiforge.runtime.network import save_network

    save_network(model, path.parent, path.stem, "gmm", measured)


def _unet_load(path: Path):
    from phiforge.runtime.unet import load_unet

    return load_unet(path)


def _unet_measure(model):
    from phiforge.runtime.unet import unet_errors

    return unet_errors(model)


def _unet_save(model, path: Path, measured) -> None:
    from phiforge.runtime.unet import save_unet

    save_unet(model, path.parent, path.stem, measured)


# what 'network check' does per kind of weights file (the manifest's "model": absent = MLP)
_MODELS: dict[str, dict[str, Any]] = {
    "mlp": {
        "load": _mlp_load,
        "measure": _mlp_measure,
        "save": _mlp_save,
        "compared": ("network_rms",),
        "table": _error_table,
        "against": "against the exact mixture",
    },
    "unet": {
        "load": _unet_load,
        "measure": _unet_measure,
        "save": _unet_save,
        "compared": ("network_rms_held_out", "network_vs_empirical_rms_train"),
        "table": _unet_table,
        "against": "on held-out and training patches",
    },
}


def register_network_commands(commands: argparse._SubParsersAction) -> None:
    network = commands.add_parser(
        "network",
        help="the trained denoiser: train it on the built-in mixture, or check a weights file",
    )
    actions = network.add_subparsers(dest="action", metavar="ACTION", required=True)
    train = actions.add_parser(
        "train",
        help="train a denoiser: the MLP on the digits mixture, or the U-Net on image patches",
        description="--model mlp: phiforge.runtime.network.DenoiserMLP on fresh samples of the "
        "built-in mixture; --model unet: phiforge.runtime.unet.UNet on fresh crops of the "
        "pictures that ship with scikit-image and scikit-learn (EDM preconditioning and loss). "
        "Writes NAME.bin and NAME.json with the measured denoising errors.",
    )
    train.add_argument("--model", choices=["mlp", "unet"], default="mlp")
    train.add_argument("--steps", type=positive_int, help="default: 16000 (mlp), 4000 (unet)")
    train.add_argument("--batch", type=positive_int, help="default: 512 (mlp), 32 (unet)")
    train.add_argument("--seed", type=seed_int, default=0)
    train.add_argument(
        "--target",
        choices=["posterior", "data"],
        help="mlp: regress on the exact posterior mean (default) or on x0 (score matching)",
    )
    train.add_argument("--width", type=positive_int, help="mlp: hidden width (default 256)")
    train.add_argument("--blocks", type=positive_int, help="mlp: residual blocks (default 2)")
    train.add_argument("--base", type=positive_int, help="unet: channels at full size (32)")
    train.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    train.add_argument("--out", metavar="DIR", help="default: the working directory")
    train.add_argument("--name", type=file_stem, help="file stem (default: the built-in network's)")
    train.add_argument("--format", choices=["text", "json"], default="text")
    train.set_defaults(handler=_train)

    check = actions.add_parser(
        "check",
        help="load a weights file (hashes checked) and re-measure its denoising errors",
    )
    check.add_argument("path", nargs="?", metavar="NAME.json", help="default: the built-in")
    check.add_argument(
        "--rtol",
        type=tolerance,
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
