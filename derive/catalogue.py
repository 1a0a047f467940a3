"""The catalogue of published methods of every family (data in ``catalogue.toml``).

The entries are test data with their sources: the checker derives their verdicts, it does not
read them from anywhere. Each entry has a ``family``: ``singlestep`` (the default; exponential
Runge-Kutta tableaus), ``multistep`` (update formulas, built by
:func:`phiforge.derive.multistep.published_multistep`) or ``stochastic`` (SEEDS methods, built by
:func:`phiforge.derive.stochastic.stochastic_method`). ``catalogue_method(name)`` builds the
validated tableau of a single-step entry; ``catalogue_method("exprk2")`` keeps the family
symbolic, ``catalogue_method("exprk2", c2=1/2)`` fixes a member.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Any

import sympy

from phiforge.derive.errors import InputError
from phiforge.derive.phi import phi
from phiforge.derive.records import FAMILIES
from phiforge.derive.tableau import ExpRKTableau, Z

__all__ = ["FAMILIES", "catalogue_entries", "catalogue_method", "catalogue_names", "parse"]


@cache
def _all_entries() -> dict[str, dict[str, Any]]:
    text = resources.files("phiforge.derive").joinpath("catalogue.toml").read_text("utf-8")
    entries = tomllib.loads(text)
    for name, entry in entries.items():
        if entry.get("family", "singlestep") not in FAMILIES:
            raise InputError(
                f"catalogue entry {name!r}: family must be one of {', '.join(FAMILIES)}, got "
                f"{entry['family']!r}"
            )
    return entries


def catalogue_entries(family: str = "singlestep") -> dict[str, dict[str, Any]]:
    """The catalogue's entries of one family (raw TOML tables), in file order."""
    if family not in FAMILIES:
        raise InputError(f"parameter 'family' must be one of {', '.join(FAMILIES)}, got {family!r}")
    return {
        name: entry
        for name, entry in _all_entries().items()
        if entry.get("family", "singlestep") == family
    }


def _entries() -> dict[str, dict[str, Any]]:
    return catalogue_entries("singlestep")


def catalogue_names(family: str = "singlestep") -> list[str]:
    """Names of the catalogue methods of one family, in file order."""
    return list(catalogue_entries(family))


def parse(text: str, local: dict[str, Any], context: str) -> sympy.Expr:
    """A catalogue expression in SymPy syntax with the names of ``local``; bad text is an
    InputError naming ``context``."""
    try:
        return sympy.sympify(text, locals=local)
    except (sympy.SympifyError, SyntaxError, TypeError) as error:
        raise InputError(f"{context}: cannot parse {text!r}: {error}") from None


@cache
def _build(name: str, overrides: tuple[tuple[str, str], ...]) -> ExpRKTableau:
    entry = _entries()[name]
    local: dict[str, Any] = {"phi": phi, "z": Z, "exp": sympy.exp}
    for key, text in entry.get("definitions", {}).items():
        local[key] = parse(text, local, f"{name}: definition {key}")
    nodes = [parse(x, local, f"{name}: node") for x in entry["nodes"]]
    a = {}
    for key, text in entry.get("a", {}).items():
        i, j = (int(x) for x in key.split(","))
        a[(i, j)] = parse(text, local, f"{name}: a[{key}]")
    b = {int(i): parse(text, local, f"{name}: b[{i}]") for i, text in entry.get("b", {}).items()}
    values = {
        sympy.Symbol(k): parse(v, local, f"{name}: parameter {k}")
        for k, v in entry.get("parameters", {}).items()
    }
    values.update({sympy.Symbol(k): sympy.nsimplify(sympy.sympify(v)) for k, v in overrides})
    nodes = [x.subs(values) for x in nodes]
    a = {key: x.subs(values) for key, x in a.items()}
    b = {key: x.subs(values) for key, x in b.items()}
    distinct = [x for x in nodes if not x.is_number]
    if len(set(distinct)) != len(distinct):
        raise InputError(f"{name}: symbolic nodes must be distinct")
    return ExpRKTableau.from_coefficients(
        name,
        nodes,
        a,
        b,
        source=entry.get("source", ""),
        description=entry.get("title", ""),
        prediction=entry.get("prediction"),
        parameters={str(k): v for k, v in values.items()},
    )


def catalogue_method(name: str, **parameters: Any) -> ExpRKTableau:
    """The validated tableau of a catalogue method; keyword values fix free parameters."""
    if not isinstance(name, str) or name not in _entries():
        raise InputError(
            f"unknown method {name!r}; known catalogue methods: {', '.join(catalogue_names())}"
        )
    entry = _entries()[name]
    symbols = {str(s) for x in entry["nodes"] for s in sympy.sympify(x).free_symbols}
    for key in parameters:
        if key not in symbols:
            raise InputError(
                f"{name}: unknown parameter {key!r}; parameters of this method: "
                f"{sorted(symbols) or 'none'}"
            )
    overrides = []
    for key, value in sorted(parameters.items()):
        try:
            number = sympy.nsimplify(value)
        except (TypeError, ValueError, sympy.SympifyError):
            number = None
        if number is None or not number.is_Rational:
            raise InputError(f"{name}: parameter {key!r} must be a rational number, got {value!r}")
        overrides.append((key, str(number)))
    try:
        return _build(name, tuple(overrides))
    except (InputError, ZeroDivisionError, TypeError, ValueError) as error:
        given = ", ".join(f"{k} = {v}" for k, v in overrides)
        raise InputError(f"{name}: parameter(s) {given} give no valid tableau ({error})") from None
