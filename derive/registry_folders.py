"""Where registry records live: the package's folder and the user's own folders.

The package's registry (``derive/registry`` in a checkout) is read-only data. A user's derived
methods live in folders of their own, named by ``--registry DIR`` on the command line, by the
``registry`` parameter of the Python API, or by the environment variable ``PHIFORGE_REGISTRY``
(folders separated by ``os.pathsep``). A user folder holds records ``NAME.json`` and, after
``phiforge generate --registry DIR``, their modules in ``DIR/generated/NAME.py``; every reader
(check, show, verify, sample, the adapters) searches the package first, then the user folders.
A name defined in two folders is refused rather than one of them silently chosen.

This module reads only the file system (no SymPy), so the runtime can list names cheaply.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from phiforge.derive.errors import InputError

__all__ = [
    "REGISTRY_ENV",
    "check_method_name",
    "default_registry_dir",
    "find_record",
    "registered_names",
    "registry_folders",
    "user_folders",
]

#: the environment variable naming user registry folders (``os.pathsep``-separated)
REGISTRY_ENV = "PHIFORGE_REGISTRY"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")

RegistryArg = str | os.PathLike | Sequence[str | os.PathLike] | None


def default_registry_dir() -> Path:
    """The registry folder of the installed package (``derive/registry`` in a checkout)."""
    return Path(str(resources.files("phiforge.derive").joinpath("registry")))


def check_method_name(name: object, parameter: str = "name") -> str:
    """A method name is a Python module name: lower-case letters, digits and underscores,
    starting with a letter, at most 64 characters (it names ``NAME.json`` and ``NAME.py``)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InputError(
            f"parameter {parameter!r}: a method name is 1-64 characters of a-z, 0-9 and '_', "
            f"starting with a letter (it names the files NAME.json and NAME.py), got {name!r}"
        )
    return name


def _folder(value: str | os.PathLike, source: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_dir():
        raise InputError(f"{source}: registry folder {str(path)!r} does not exist or is no folder")
    return path


def user_folders(registry: RegistryArg = None) -> list[Path]:
    """The user's registry folders: ``registry`` (one path or several), then those of
    ``PHIFORGE_REGISTRY``; each must be an existing folder."""
    if registry is None:
        given: list[str | os.PathLike] = []
    elif isinstance(registry, str | os.PathLike):
        given = [registry]
    else:
        given = list(registry)
    folders = [_folder(p, "parameter 'registry'") for p in given if str(p) != ""]
    env = os.environ.get(REGISTRY_ENV, "")
    folders += [
        _folder(p, f"environment variable {REGISTRY_ENV}") for p in env.split(os.pathsep) if p
    ]
    package = default_registry_dir().resolve()
    unique: list[Path] = []
    for folder in folders:
        if folder.resolve() != package and all(folder.resolve() != u.resolve() for u in unique):
            unique.append(folder)
    return unique


def registry_folders(registry: RegistryArg = None) -> list[Path]:
    """The package's registry folder, then the user's (:func:`user_folders`)."""
    return [default_registry_dir(), *user_folders(registry)]


def registered_names(registry: RegistryArg = None) -> dict[str, Path]:
    """Every registered name and the folder holding its record (package first); a name held
    by two folders is refused."""
    names: dict[str, Path] = {}
    for folder in registry_folders(registry):
        for path in sorted(folder.glob("*.json")):
            if path.stem in names:
                raise InputError(
                    f"method {path.stem!r} is registered twice: in {names[path.stem]} and in "
                    f"{folder}; rename or remove one of them"
                )
            names[path.stem] = folder
    return names


def find_record(name: str, registry: RegistryArg = None, parameter: str = "method") -> Path:
    """The record file of ``name`` in the package or the user's folders."""
    names = registered_names(registry)
    if not isinstance(name, str) or name not in names:
        hint = (
            ""
            if user_folders(registry)
            else f" (a method of your own: pass --registry DIR or set {REGISTRY_ENV})"
        )
        raise InputError(
            f"parameter {parameter!r}: unknown registry method {name!r}{hint}; registered "
            f"methods: {', '.join(sorted(names))}"
        )
    return names[name] / f"{name}.json"
