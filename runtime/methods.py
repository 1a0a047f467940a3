"""The generated methods: lookup of their modules by name.

Every registered method is a module of :mod:`phiforge.generated` (metadata, exact coefficient
functions and its call program, :mod:`phiforge.runtime.program`).
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import phiforge.generated
from phiforge.runtime.errors import InputError

__all__ = ["generated_methods", "load_method", "ode_methods"]


def generated_methods(family: str | None = None) -> list[str]:
    """Names of every generated method module (of one family if given)."""
    names = sorted(m.name for m in pkgutil.iter_modules(phiforge.generated.__path__))
    if family is None:
        return names
    return [n for n in names if family == load_method(n).FAMILY]


def ode_methods() -> list[str]:
    """The deterministic generated methods (their steps draw no noise)."""
    return [n for n in generated_methods() if not load_method(n).STOCHASTIC]


def load_method(name: str | ModuleType) -> ModuleType:
    """The generated module of a registered method; unknown names list the known ones."""
    if isinstance(name, ModuleType):
        return name
    known = sorted(m.name for m in pkgutil.iter_modules(phiforge.generated.__path__))
    if name not in known:
        raise InputError(f"parameter 'method': unknown method {name!r}; known: {', '.join(known)}")
    return importlib.import_module(f"phiforge.generated.{name}")
