"""Output helpers shared by the subcommands: JSON, Markdown tables, argument types."""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from phiforge.derive.errors import InputError
from phiforge.runtime.checks import LARGEST_SEED

__all__ = [
    "emit_json",
    "figure_file",
    "file_stem",
    "markdown_table",
    "output_dir",
    "output_file",
    "positive_int",
    "seed_int",
    "tolerance",
]


def emit_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


LARGEST_COUNT = 2**31 - 1  # counts (batch, width, steps) beyond this are no one's intent


def _integer_in(low: int, high: int, what: str) -> Callable[[str], int]:
    """argparse type: ``what``, an integer in low..high."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what} >= {low}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer in {low}..{high}, got {value}")
        return value

    return parse


#: a count (batch, width, steps, pilots): an integer in 1..2**31 - 1
positive_int = _integer_in(1, LARGEST_COUNT, "an integer")
#: a random seed: an integer in 0..2**32 - 1
seed_int = _integer_in(0, LARGEST_SEED, "an integer seed")


def file_stem(text: str) -> str:
    """argparse type: the stem of the files a command writes (NAME.json, NAME.bin)."""
    from phiforge.runtime.manifest import check_file_stem

    try:
        return check_file_stem(text, "--name")
    except InputError as error:
        raise argparse.ArgumentTypeError("must " + str(error).split(" must ", 1)[1]) from None


def tolerance(text: str) -> float:
    """argparse type: a relative tolerance, a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def output_dir(value: str | None, parameter: str = "--out") -> Path:
    """The folder a command writes to: ``value``, else the working directory (never the
    installed package's folders). Created if missing and checked writable before any work."""
    path = Path(value) if value else Path.cwd()
    if path.exists() and not path.is_dir():
        raise InputError(f"parameter {parameter!r}: {path} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"parameter {parameter!r}: cannot create {path} ({error})") from None
    if not os.access(path, os.W_OK):
        raise InputError(f"parameter {parameter!r}: {path} is not writable")
    return path


def output_file(value: str | os.PathLike, parameter: str) -> Path:
    """A file a command will write: its folder is created if missing and checked writable,
    and the path must not be a folder, all before any work starts."""
    path = Path(value)
    if str(value) == "" or path.is_dir() or str(value).endswith(("/", os.sep)):
        raise InputError(f"parameter {parameter!r}: {str(value)!r} is a folder, not a file name")
    output_dir(str(path.parent) if str(path.parent) else None, parameter)
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"parameter {parameter!r}: {path} exists and is not writable")
    return path


def figure_file(value: str | os.PathLike, parameter: str) -> tuple[Path, str]:
    """A figure a command will write (:func:`output_file`) and its format: the suffix, one that
    matplotlib writes (png, pdf, svg, ...), or png for a name without one (written at that name
    exactly, not at NAME.png). Checked before any work starts."""
    from matplotlib.backend_bases import FigureCanvasBase

    path = output_file(value, parameter)
    kind = path.suffix[1:].lower() or "png"
    supported = FigureCanvasBase.get_supported_filetypes()
    if kind not in supported:
        raise InputError(
            f"parameter {parameter!r}: {str(value)!r} names a {kind!r} file; a figure is written "
            f"as one of {', '.join(sorted(supported))} (by its suffix)"
        )
    return path, kind
