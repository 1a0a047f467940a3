"""Argument checks shared by the runtime's entry points (sampling options, the diffusers
scheduler, step_search, fitted): each raises :class:`~phiforge.runtime.errors.InputError`
naming the parameter and its range."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import torch

from phiforge.runtime.errors import InputError

__all__ = [
    "check_callable",
    "check_device",
    "check_flag",
    "check_integer",
    "check_mapping",
    "check_nonnegative",
    "check_real",
    "check_seed",
    "check_sigma_ends",
]

#: numpy's and scikit-learn's random_state range, and the command line's --seed
LARGEST_SEED = 2**32 - 1


def check_integer(name: str, value: Any, least: int, most: int | None = None) -> int:
    """``value`` as an int if it is an integer (Python's or numpy's, not a bool) in least..most
    (no upper bound if None)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise InputError(f"parameter {name!r} must be an integer >= {least}, got {value!r}")
    if most is not None and value > most:
        raise InputError(f"parameter {name!r} must be an integer in {least}..{most}, got {value}")
    return int(value)


def check_seed(value: Any, name: str = "seed") -> int:
    """``value`` as an int if it is an integer seed in 0..:data:`LARGEST_SEED`."""
    return check_integer(name, value, 0, LARGEST_SEED)


def check_flag(name: str, value: Any) -> bool:
    """``value`` if it is True or False (numpy's bools too); nothing else is read as a flag."""
    if value is True or value is False or type(value).__name__ == "bool_":
        return bool(value)
    raise InputError(f"parameter {name!r} must be True or False, got {value!r}")


def check_real(name: str, value: Any) -> float:
    """``value`` as a float if it is a real number (int, float, numpy scalar or a one-element
    tensor; not a bool, a string or a complex number); its range is the caller's to check."""
    if not isinstance(value, bool) and isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, "dtype"):  # a torch tensor or a numpy array of one element
        dtype = str(value.dtype)
        numel = getattr(value, "numel", None)
        count = numel() if callable(numel) else getattr(value, "size", None)
        if count == 1 and "complex" not in dtype and "bool" not in dtype:
            return float(value.reshape(()) if hasattr(value, "reshape") else value)
    raise InputError(f"parameter {name!r} must be a real number, got {value!r}")


def check_callable(name: str, value: Any, what: str) -> Any:
    """``value`` if it is None or callable; ``what`` says how it is called."""
    if value is not None and not callable(value):
        raise InputError(f"parameter {name!r} must be {what}, got {value!r}")
    return value


def check_mapping(name: str, value: Any, what: str) -> Any:
    """``value`` if it is None or a mapping with string keys; ``what`` names its values."""
    if value is not None and not (
        isinstance(value, Mapping) and all(isinstance(key, str) for key in value)
    ):
        raise InputError(
            f"parameter {name!r} must be a mapping from names to {what}, got {value!r}"
        )
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


def check_device(device: Any) -> torch.device:
    """A device torch can allocate on, or a clear error naming the parameter."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise InputError(
            f"parameter 'device' must be a torch device such as 'cpu' or 'cuda', got {device!r}"
        ) from error
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"parameter 'device': {device!r} asked for, but CUDA is not available")
    try:
        torch.empty(0, device=parsed)
    except (RuntimeError, AssertionError) as error:
        raise InputError(f"parameter 'device': {device!r} cannot be used here ({error})") from error
    if parsed.type == "cuda" and parsed.index is None:
        parsed = torch.device("cuda", torch.cuda.current_device())
    return parsed
