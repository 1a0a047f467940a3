"""The generated methods: lookup of their modules by name, in the package and the user's folders.

Every registered method is a module (metadata, exact coefficient functions and its call program,
:mod:`phiforge.runtime.program`). The package's are :mod:`phiforge.generated`. A user's own
methods live in registry folders (``registry=`` here, ``--registry DIR`` on the command line, or
the environment variable ``PHIFORGE_REGISTRY``; :mod:`phiforge.derive.registry_folders`): the
record ``DIR/NAME.json`` is read and hash-checked, and its module is ``DIR/generated/NAME.py``
when that file was generated from this very record (its ``RECORD_HASH``), else it is rendered
from the record in memory by the same templates (``phiforge generate --registry DIR`` writes the
files once and saves that rendering).
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import threading
from pathlib import Path
from types import ModuleType

import phiforge.generated
from phiforge.derive.registry_folders import RegistryArg, registered_names, user_folders
from phiforge.runtime.errors import InputError

__all__ = ["generated_methods", "load_method", "ode_methods"]

_USER_MODULES: dict[tuple[str, str], ModuleType] = {}
_LOCK = threading.Lock()


def _package_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(phiforge.generated.__path__))


def _user_names(registry: RegistryArg) -> dict[str, Path]:
    """Names of the user's registered methods and their folders."""
    if not user_folders(registry):
        return {}
    folders = registered_names(registry)
    package = set(_package_names())
    return {name: folder for name, folder in folders.items() if name not in package}


def generated_methods(family: str | None = None, registry: RegistryArg = None) -> list[str]:
    """Names of every registered method (the package's, then the user's folders'), of one
    family if given."""
    names = _package_names() + sorted(_user_names(registry))
    if family is None:
        return names
    return [n for n in names if family == load_method(n, registry).FAMILY]


def ode_methods(registry: RegistryArg = None) -> list[str]:
    """The deterministic registered methods (their steps draw no noise)."""
    names = generated_methods(registry=registry)
    return [n for n in names if not load_method(n, registry).STOCHASTIC]


def _user_module(name: str, folder: Path) -> ModuleType:
    """The module of a user's record: its generated file if made from this record, else the
    templates' rendering of the record (both hash-checked against the record)."""
    from phiforge.derive.codegen import render_module
    from phiforge.derive.registry import load_record

    record = load_record(name, folder)
    key = (str(folder.resolve() / name), record.hash)
    with _LOCK:
        if key in _USER_MODULES:
            return _USER_MODULES[key]
        path = folder / "generated" / f"{name}.py"
        source = path.read_text(encoding="utf-8") if path.is_file() else ""
        if f'RECORD_HASH = "{record.hash}"' not in source:
            source = render_module(record)
        module = ModuleType(f"phiforge_user_methods.{name}")
        module.__file__ = str(path)
        exec(compile(source, str(path), "exec"), module.__dict__)
        _USER_MODULES[key] = module
        return module


def load_method(name: str | ModuleType, registry: RegistryArg = None) -> ModuleType:
    """The module of a registered method (the package's, or a user folder's; see the module's
    docstring); unknown names list the known ones."""
    if isinstance(name, ModuleType):
        return name
    known = _package_names()
    if isinstance(name, str) and name in known:
        if user_folders(registry):
            registered_names(registry)  # a user's record of the same name is refused
        return importlib.import_module(f"phiforge.generated.{name}")
    user = _user_names(registry)
    if isinstance(name, str) and name in user:
        return _user_module(name, user[name])
    hint = "" if user_folders(registry) else " (your own: --registry DIR or PHIFORGE_REGISTRY)"
    raise InputError(
        f"parameter 'method': unknown method {name!r}{hint}; known: "
        f"{', '.join(known + sorted(user))}"
    )
