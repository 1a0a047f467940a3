"""The ``phiforge`` command line.

Every subcommand prints a human-readable result by default and takes ``--format json`` for a
machine-readable one. Bad input ends with exit status 2 and a message naming the parameter.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from phiforge import __version__
from phiforge.cli.commands import register_derive_commands
from phiforge.cli.fit_commands import register_fit_commands
from phiforge.cli.mixture_commands import register_mixture_commands
from phiforge.cli.network_commands import register_network_commands
from phiforge.cli.registry_commands import register_registry_commands
from phiforge.cli.runtime_commands import register_runtime_commands
from phiforge.derive.errors import InputError
from phiforge.runtime.errors import InputError as RuntimeInputError
from phiforge.runtime.errors import ModelOutputError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phiforge",
        description="Derive exponential integrators from their order conditions and verify them.",
    )
    parser.add_argument("--version", action="version", version=f"phiforge {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    register_derive_commands(commands)
    register_registry_commands(commands)
    register_runtime_commands(commands)
    register_network_commands(commands)
    register_mixture_commands(commands)
    register_fit_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    except BrokenPipeError:  # output piped into a reader that stopped early (e.g. head)
        sys.stderr.close()
        return 0
    except (InputError, RuntimeInputError, ModelOutputError) as error:
        if getattr(args, "format", None) == "json":
            print(json.dumps({"error": str(error)}), file=sys.stderr)
        else:
            print(f"phiforge: error: {error}", file=sys.stderr)
        return 2
    return 0 if result is None else int(result)


if __name__ == "__main__":
    raise SystemExit(main())
