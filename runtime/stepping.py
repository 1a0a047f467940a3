"""Integrate a plain equation y' = L y + N(y, lam) with a generated method (the test equations of
the verification ladder), through the one planner and executor.

The method lookup lives in :mod:`phiforge.runtime.methods`, the step planning in
:mod:`phiforge.runtime.step_plan`; both are re-exported here for their callers.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from phiforge.runtime.engine import execute
from phiforge.runtime.errors import InputError
from phiforge.runtime.methods import generated_methods, load_method, ode_methods
from phiforge.runtime.plan import Builder, Point, canonical_form, place_steps
from phiforge.runtime.step_plan import WARMUP_POLICIES, Step, plan_steps

__all__ = [
    "WARMUP_POLICIES",
    "Step",
    "generated_methods",
    "integrate",
    "load_method",
    "ode_methods",
    "plan_steps",
    "step_with_error",
]


def integrate(
    method: str | ModuleType,
    y: Any,
    lambdas: Sequence[float],
    L: float,
    f: Callable[[Any, float], Any],
    start: Sequence[tuple[Any, float]] | None = None,
    warmup: str = "lower-order",
) -> Any:
    """y at lambdas[-1], starting from y at lambdas[0]; ``f(y, lam)`` returns N.

    A multistep method with k steps can be given exact states at its first k grid points
    (``start``: pairs (y, lam), oldest first; stepping begins at the last one); otherwise it
    warms up with its starters (``warmup``).
    """
    lambdas = [float(x) for x in lambdas]
    if any(b <= a for a, b in itertools.pairwise(lambdas)):
        raise InputError("parameter 'lambdas' must be strictly increasing")
    builder = Builder()
    history: list[Point] = []
    inputs: list[Any] = []
    if start:
        for state, lam in start[:-1]:
            slot = builder.input()
            inputs.append(state)
            history.insert(0, Point(builder.evaluate(slot, lam), slot, float(lam)))
        y, lam0 = start[-1]
        lambdas = lambdas[lambdas.index(float(lam0)) :]
    first = builder.input()
    inputs.append(y)
    steps = plan_steps(method, lambdas, warmup=warmup, history=len(history))
    final, _ = place_steps(builder, steps, first, canonical_form(L), history=history, report=False)
    (result,) = execute(builder.finish([final]), inputs, f)
    return result


def step_with_error(
    method: str | ModuleType, y: Any, lam: float, h: float, L: float, f: Callable[[Any, float], Any]
) -> tuple[Any, Any]:
    """One step of a single-step method with an embedded companion from lam to lam + h:
    (y_new of the method's order, y_new of the companion's), from the same calls."""
    module = load_method(method)
    if getattr(module, "EMBEDDED_ORDER", None) is None:
        raise InputError(f"parameter 'method': {module.NAME} has no embedded companion")
    builder = Builder()
    first = builder.input()
    high, low = place_steps(
        builder,
        [Step(module, float(lam), float(lam + h))],
        first,
        canonical_form(L),
        embedded=True,
        report=False,
    )
    return execute(builder.finish([high, low]), [y], f)
