"""The catalogue of published exponential Runge-Kutta methods (data in ``catalogue.toml``).

The entries are test data with their sources: the checker derives their verdicts, it does not
read them from anywhere. ``catalogue_method(name)`` builds the validated tableau;
``catalogue_method("exprk2")`` keeps the family symbolic, ``catalogue_method("exprk2", c2=1/2)``
fixes a member.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Any

import sympy

from phiforge.derive.errors import InputError
from phiforge.derive.phi import phi
from phiforge.derive.tableau import ExpRKTableau, Z

__all__ = ["catalogue_method", "catalogue_names"]


@cache
def _entries() -> dict[str, dict[str, Any]]:
    text = resources.files("phiforge.derive").joinpath("catalogue.toml").read_text("utf-8")
    return tomllib.loads(text)


def catalogue_names() -> list[str]:
    """Names of all catalogue methods, in file order."""
    return list(_entries())


def _parse(text: str, local: dict[str, Any], context: str) -> sympy.Expr:
    try:
        return sympy.sympify(text, locals=local)
    except (sympy.SympifyError, SyntaxError, TypeError) as error:
        raise InputError(f"{context}: cannot parse {text!r}: {error}") from None


@cache
def _build(name: str, overrides: tuple[tuple[str, str], ...]) -> ExpRKTableau:
    entry = _entries()[name]
    local: dict[str, Any] = {"phi": phi, "z": Z, "exp": sympy.exp}
    for key, text in entry.get("definitions", {}).items():
        local[key] = _parse(text, local, f"{name}: definition {key}")
    nodes = [_parse(x, local, f"{name}: node") for x in entry["nodes"]]
    a = {}
    for key, text in entry.get("a", {}).items():
        i, j = (int(x) for x in key.split(","))
        a[(i, j)] = _parse(text, local, f"{name}: a[{key}]")
    b = {int(i): _parse(text, local, f"{name}: b[{i}]") for i, text in entry.get("b", {}).items()}
    values = {
        sympy.Symbol(k): _parse(v, local, f"{name}: parameter {k}")
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
    if name not in _entries():
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
