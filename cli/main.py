"""The ``phiforge`` command line.

Every subcommand prints a human-readable result by default and takes ``--format json`` for a
machine-readable one. Bad input ends with exit status 2 and a message naming the parameter.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from phiforge import __version__
from phiforge.cli.commands import register_derive_commands
from phiforge.cli.fit_commands import register_fit_commands
from phiforge.cli.mixture_commands import register_mixture_commands
from phiforge.cli.network_commands import register_network_commands
from phiforge.cli.registry_commands import register_registry_commands
from phiforge.cli.runtime_commands import register_runtime_commands
from phiforge.derive.errors import InputError
from phiforge.runtime.errors import ModelOutputError

__all__ = ["build_parser", "main"]


def _has_default(action: argparse.Action) -> bool:
    """An option whose default is worth stating (not a flag's False, not None or empty)."""
    default = action.default
    empty = default is None or default is False or default is argparse.SUPPRESS or default == []
    return bool(action.option_strings) and not empty


class _HelpFormatter(argparse.HelpFormatter):
    """Help that states every option's default (unless its text already does)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if _has_default(action) and "default" not in text:
            text = f"{text} (default: %(default)s)".strip()
        return text


# text options where an empty value means what it says
_MAY_BE_EMPTY = ("--description",)


def _check_text(args: argparse.Namespace) -> None:
    """An empty text value is refused, not read as if the option were absent (``--restart ''``
    ran without Restart, ``generate --out ''`` wrote to the default place), and so is a value
    repeated in a list (``verify res_2m res_2m`` ran and printed it twice). The command's
    parser lists its text options (dest -> name) in the namespace as ``text_options``."""
    for dest, name in getattr(args, "text_options", {}).items():
        value = getattr(args, dest, None)
        if value == "" or (isinstance(value, list) and "" in value):
            raise InputError(f"parameter {name!r} must not be empty")
        if isinstance(value, list):
            twice = sorted({v for v in value if value.count(v) > 1})
            if twice:
                raise InputError(f"parameter {name!r} gives {', '.join(twice)} twice")


class _Parser(argparse.ArgumentParser):
    """argparse with the project's conventions: defaults in the help, text values never empty
    (:func:`_check_text`), and usage errors as one JSON object on stderr when the command
    line asks for ``--format json``."""

    json_errors = False

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        takes_text = kwargs.get("action", "store") in ("store", "append", "extend")
        if takes_text and action.type is None and not set(args) & set(_MAY_BE_EMPTY):
            name = max(action.option_strings, key=len) if action.option_strings else action.metavar
            options = self.get_default("text_options")
            if options is None:
                options = {}
                self.set_defaults(text_options=options)
            options[action.dest] = name or action.dest
        if action.help is None and _has_default(action):
            action.help = "(default: %(default)s)"
        return action

    def error(self, message: str) -> NoReturn:
        if _Parser.json_errors:
            print(json.dumps({"error": f"{self.prog}: {message}"}), file=sys.stderr)
            self.exit(2)
        super().error(message)


def _wants_json(argv: Sequence[str]) -> bool:
    items = list(argv)
    return "--format=json" in items or any(
        a == "--format" and b == "json" for a, b in itertools.pairwise(items)
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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


# options whose values may start with '-' (a negative node, e.g. --nodes -1/2,1/2): argparse
# would read such a value as an option and say "expected one argument"
_SIGNED_VALUES = ("--nodes", "--node-grid", "--param")


def _join_signed_values(argv: Sequence[str]) -> list[str]:
    items, joined = list(argv), []
    index = 0
    while index < len(items):
        item = items[index]
        following = items[index + 1] if index + 1 < len(items) else None
        signed = following is not None and following.startswith("-")
        if item in _SIGNED_VALUES and signed and not following.startswith("--"):
            joined.append(f"{item}={following}")
            index += 2
            continue
        joined.append(item)
        index += 1
    return joined


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = _join_signed_values(sys.argv[1:] if argv is None else argv)
    _Parser.json_errors = _wants_json(argv)
    args = parser.parse_args(argv)
    try:
        _check_text(args)
        result = args.handler(args)
    except BrokenPipeError:  # output piped into a reader that stopped early (e.g. head)
        sys.stderr.close()
        return 0
    except (InputError, ModelOutputError) as error:
        if getattr(args, "format", None) == "json":
            print(json.dumps({"error": str(error)}), file=sys.stderr)
        else:
            print(f"phiforge: error: {error}", file=sys.stderr)
        return 2
    return 0 if result is None else int(result)


if __name__ == "__main__":
    raise SystemExit(main())
