"""Output helpers shared by the subcommands: JSON, Markdown tables, argument types."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from phiforge.derive.errors import InputError

__all__ = ["emit_json", "markdown_table", "output_dir", "output_file", "positive_int"]


def emit_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
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
