"""Argument checks shared by the runtime's entry points (sampling options, the diffusers
scheduler, step_search, fitted): each raises :class:`~phiforge.runtime.errors.InputError`
naming the parameter and its range."""

from __future__ import annotations

import math
from typing import Any

from phiforge.runtime.errors import InputError

__all__ = ["check_integer", "check_nonnegative", "check_sigma_ends"]


def check_integer(name: str, value: Any, least: int, most: int | None = None) -> int:
    """``value`` if it is an int (not a bool) in least..most (no upper bound if None)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InputError(f"parameter {name!r} must be an integer >= {least}, got {value!r}")
    if most is not None and value > most:
        raise InputError(f"parameter {name!r} must be an integer in {least}..{most}, got {value}")
    return value


def check_nonnegative(name: str, value: Any) -> float:
    """``value`` as a float if it is a finite number >= 0 (not a bool)."""
    if isinstance(value, bool) or not (
        isinstance(value, int | float) and math.isfinite(value) and value >= 0
    ):
        raise InputError(f"parameter {name!r} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_sigma_ends(sigma_start: float, sigma_end: float) -> None:
    """Both ends finite and positive, sigma_end below sigma_start."""
    for name, value in (("sigma_start", sigma_start), ("sigma_end", sigma_end)):
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise InputError(f"parameter {name!r} must be finite and > 0, got {value!r}")
    if not sigma_end < sigma_start:
        raise InputError(
            f"parameter 'sigma_end' must be below 'sigma_start' ({sigma_end} >= {sigma_start})"
        )
