"""The one exception type of the derive layer.

Every public entry point raises :class:`InputError` (a ``ValueError``) for bad input, with a
message that names the parameter and the allowed range, never a traceback from SymPy internals.
"""

from __future__ import annotations

__all__ = ["InputError", "integer_in"]


class InputError(ValueError):
    """Bad input to a public entry point; the message names the parameter."""


def integer_in(value: object, parameter: str, low: int, high: int, why: str = "") -> int:
    """``value`` if it is an int (not a bool) in low..high, else InputError naming ``parameter``
    (e.g. "'p' (order)") and the range, with ``why`` the reason for the upper bound."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        reason = f" ({why})" if why else ""
        raise InputError(
            f"parameter {parameter} must be an integer in {low}..{high}{reason}, got {value!r}"
        )
    return value
