"""Adaptive step size from an embedded pair (DPM-Solver-12/23's controller, spec-dpmsolver-res
§5.3, with the pairs phiforge derives: a single-step method of order p and a companion of order
p - 1 on the same stages: the ``embedded`` row of the generated module's call program).

After an attempted step from lambda to lambda + h with results x_high, x_low (in x space),

    delta = max(atol, rtol max(|x_low|, |x_prev|))  (elementwise),
    E = max over the batch of the RMS over dimensions of (x_high - x_low)/delta;

the step is accepted when E <= 1 (x <- x_high, x_prev <- x_low), and in either case
h <- min(theta h E^(-1/p), lambda_end - lambda). Every attempt costs its model evaluations,
rejected ones included, except that the evaluation at the step's start is reused after a
rejection (the state there has not changed; DPM-Solver's code re-evaluates it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch

from phiforge.runtime.checks import check_integer
from phiforge.runtime.engine import Report, execute
from phiforge.runtime.errors import InputError
from phiforge.runtime.plan import Builder, Form, place_steps
from phiforge.runtime.step_plan import Step

__all__ = ["Adaptive", "run_adaptive"]


@dataclass(frozen=True)
class Adaptive:
    """Controller settings (defaults: DPM-Solver's adaptive sampler)."""

    rtol: float = 0.05
    atol: float = 0.0078
    h_init: float = 0.05
    theta: float = 0.9
    max_attempts: int = 100_000

    def __post_init__(self) -> None:
        for name in ("rtol", "atol", "h_init", "theta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (
                isinstance(value, int | float) and math.isfinite(value) and value > 0
            ):
                raise InputError(
                    f"adaptive: parameter {name!r} must be a positive number, got {value!r}"
                )
            object.__setattr__(self, name, float(value))  # a huge int would overflow torch
        check_integer("max_attempts", self.max_attempts, 1, 10**9)
        if self.theta >= 1:
            raise InputError(f"adaptive: parameter 'theta' must be < 1, got {self.theta!r}")


def run_adaptive(
    module: ModuleType,
    x: torch.Tensor,
    lam_start: float,
    lam_end: float,
    form: Form,
    evaluate: Callable[[Any, float], Any],
    settings: Adaptive,
    on_report: Callable[[Report, list[Any]], None] | None = None,
    reports: int = 0,
) -> tuple[torch.Tensor, int, int]:
    """Integrate from x at lam_start to lam_end; returns (x, accepted, rejected).

    Each attempt is a one-step program of the planner with the embedded row as a second output,
    run by the executor; ``evaluate`` and ``form`` are the model and the canonical form of the
    run, ``reports`` the number of steps reported before (the step index of the first attempt).
    """
    if getattr(module, "EMBEDDED_ORDER", None) is None:
        raise InputError(
            f"parameter 'adaptive': {module.NAME} has no embedded companion; use one of the "
            "single-step methods with EMBEDDED_ORDER (res_2s, res_3s, res_4s)"
        )
    order = int(module.CONVERGENCE_ORDER)
    lam = lam_start
    h = min(settings.h_init, lam_end - lam)
    x_prev = x
    accepted = rejected = 0
    start_value: Any = None
    for _ in range(settings.max_attempts):
        if lam >= lam_end:
            return x, accepted, rejected
        lam_next = lam_end if h >= lam_end - lam else lam + h
        attempted = lam_next - lam
        builder = Builder()
        builder.reports = reports + accepted
        state = builder.input()
        # the start's value is reused after a rejection: an input then, else this attempt's call
        start = builder.input() if start_value is not None else builder.evaluate(state, lam)
        high, low = place_steps(
            builder,
            [Step(module, lam, lam_next)],
            state,
            form,
            start_value=start,
            embedded=True,
            report=False,
        )
        inputs = [x] if start_value is None else [x, start_value]
        x_high, x_low, start_value = execute(builder.finish([high, low, start]), inputs, evaluate)
        delta = torch.clamp(
            settings.rtol * torch.maximum(x_low.abs(), x_prev.abs()), min=settings.atol
        )
        ratio = ((x_high - x_low) / delta).reshape(x_high.shape[0], -1)
        error = float(ratio.pow(2).mean(dim=1).sqrt().max())  # the one host read per attempt
        if error <= 1.0:
            if on_report is not None:
                on_report(
                    Report(reports + accepted, 0, 1, lam, lam_next, start=2),
                    [x_high, start_value, x],
                )
            x, x_prev = x_high, x_low
            lam = lam_next
            start_value = None
            accepted += 1
        else:
            rejected += 1
        growth = 10.0 if error == 0 else settings.theta * error ** (-1.0 / order)
        h = min(attempted * growth, lam_end - lam)
    raise InputError(
        f"adaptive: no convergence within {settings.max_attempts} attempts "
        "(parameter 'max_attempts')"
    )
