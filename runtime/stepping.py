"""Integrate the canonical semilinear ODE y' = L y + N(y, lam) over a grid with a generated method.

One loop per method family, none per method: single-step modules expose
``step(y, lam, h, L, f)``, multistep modules ``step(y, h, L, values, past_steps)``
(see ``templates/``). This is the core the sampling driver builds on.
"""

from __future__ import annotations

import importlib
import itertools
import pkgutil
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import phiforge.generated

__all__ = ["generated_methods", "integrate", "load_method"]


def generated_methods() -> list[str]:
    """Names of every generated method module."""
    return sorted(m.name for m in pkgutil.iter_modules(phiforge.generated.__path__))


def load_method(name: str) -> ModuleType:
    """The generated module of a registered method; unknown names list the known ones."""
    known = generated_methods()
    if name not in known:
        raise ValueError(f"unknown method {name!r}; generated methods: {', '.join(known)}")
    return importlib.import_module(f"phiforge.generated.{name}")


def integrate(
    method: ModuleType,
    y: Any,
    lambdas: Sequence[float],
    L: float,
    f: Callable[[Any, float], Any],
    start: Sequence[tuple[Any, float]] | None = None,
) -> Any:
    """y at lambdas[-1], starting from y at lambdas[0].

    A multistep method with k steps can be given exact states at lambdas[0..k-1] (``start``:
    pairs (y, lam), oldest first; the last one is where stepping begins); without them it warms
    up with the values at hand (exponential Euler first, then 2-step exponential Adams).
    """
    lambdas = [float(x) for x in lambdas]
    if any(b <= a for a, b in itertools.pairwise(lambdas)):
        raise ValueError("parameter 'lambdas' must be strictly increasing")
    if method.FAMILY == "singlestep":
        for lam, lam_next in itertools.pairwise(lambdas):
            y = method.step(y, lam, lam_next - lam, L, f)
        return y
    values: list[Any] = []
    points: list[float] = []
    first = 0
    if start:
        for state, lam in start[:-1]:
            values.insert(0, f(state, lam))
            points.insert(0, lam)
        y, lam0 = start[-1]
        first = lambdas.index(float(lam0))
    for index in range(first, len(lambdas) - 1):
        lam, lam_next = lambdas[index], lambdas[index + 1]
        values.insert(0, f(y, lam))
        points.insert(0, lam)
        del values[method.STEPS :], points[method.STEPS :]
        h = lam_next - lam
        past = [points[m] - points[m + 1] for m in range(len(points) - 1)]
        if len(values) < method.STEPS:
            y = _lower_order_step(y, h, L, values, past)
        else:
            y = method.step(y, h, L, values, past)
    return y


def _lower_order_step(y: Any, h: float, L: float, values: list, past: list) -> Any:
    from phiforge.generated import res_2m  # warm-up: exponential Adams with the values at hand

    if len(values) == 1:
        from phiforge.generated import exp_euler

        return exp_euler.step(y, 0.0, h, L, lambda _state, _lam: values[0])
    return res_2m.step(y, h, L, values[:2], past[:1])
