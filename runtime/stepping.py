"""Step through a log-SNR grid with generated methods: the one loop every sampler shares.

The canonical equation is y' = L y + N(y, lam) (DESIGN.md): a single-step module exposes
``step(y, lam, h, L, f)``, a multistep module ``step(y, h, L, values, past_steps)`` (see
``templates/``). :func:`plan_steps` turns a method and a grid into a list of :class:`Step`
(which generated module takes which interval, warm-up included), and :func:`run_steps` executes
any such list with one model evaluation at the start of every step, shared between a single-step
method's first stage (node 0) and the multistep history. Nothing here branches on a method's name:
starters and lower-order finals are read from the modules' ``WARMUP`` metadata.
"""

from __future__ import annotations

import importlib
import itertools
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import phiforge.generated
from phiforge.runtime.errors import InputError

__all__ = [
    "WARMUP_POLICIES",
    "Step",
    "generated_methods",
    "integrate",
    "load_method",
    "ode_methods",
    "plan_steps",
    "run_steps",
]

WARMUP_POLICIES = ("lower-order", "order-preserving")


def generated_methods(family: str | None = None) -> list[str]:
    """Names of every generated method module (of one family if given)."""
    names = sorted(m.name for m in pkgutil.iter_modules(phiforge.generated.__path__))
    if family is None:
        return names
    return [n for n in names if family == load_method(n).FAMILY]


def ode_methods() -> list[str]:
    """The deterministic (single-step and multistep) generated methods."""
    return [n for n in generated_methods() if load_method(n).FAMILY != "stochastic"]


def load_method(name: str | ModuleType) -> ModuleType:
    """The generated module of a registered method; unknown names list the known ones."""
    if isinstance(name, ModuleType):
        return name
    known = sorted(m.name for m in pkgutil.iter_modules(phiforge.generated.__path__))
    if name not in known:
        raise InputError(f"parameter 'method': unknown method {name!r}; known: {', '.join(known)}")
    return importlib.import_module(f"phiforge.generated.{name}")


@dataclass(frozen=True)
class Step:
    """One step of the plan: ``module`` advances the state from ``lam`` to ``lam_next``."""

    module: ModuleType
    lam: float
    lam_next: float

    @property
    def nfe(self) -> int:
        return int(self.module.NFE_PER_STEP)


def _starter(module: ModuleType, values: int, policy: str) -> ModuleType:
    names = module.WARMUP if policy == "lower-order" else module.WARMUP_ORDER_PRESERVING
    return load_method(names[values - 1])


def plan_steps(
    method: str | ModuleType | Sequence[str | ModuleType],
    lambdas: Sequence[float],
    *,
    warmup: str = "lower-order",
    lower_order_final: bool = False,
    history: int = 0,
) -> list[Step]:
    """Which module takes which interval of the grid ``lambdas`` (finite, increasing).

    ``method`` is one method for every step or one per interval (single-step allocations).
    A k-step method with fewer than k values at hand (``history`` values are given before the
    first step) uses its starters: ``warmup='lower-order'`` (the published convention, one
    evaluation per step) or ``'order-preserving'`` (starters that keep global order k).
    ``lower_order_final`` lowers a multistep method's order on the last steps of short runs
    (fewer than 10 steps, DPM-Solver's current rule, spec-dpmsolver-res §4.3): the step with
    index i of n uses order min(k, n - i).
    """
    if warmup not in WARMUP_POLICIES:
        raise InputError(
            f"parameter 'warmup' must be one of {', '.join(WARMUP_POLICIES)}, got {warmup!r}"
        )
    n = len(lambdas) - 1
    if isinstance(method, str | ModuleType):
        modules = [load_method(method)] * n
    else:
        modules = [load_method(m) for m in method]
        if len(modules) != n:
            raise InputError(f"parameter 'method': {len(modules)} methods for {n} intervals")
    steps = []
    values = history
    for index, (module, lam, lam_next) in enumerate(
        zip(modules, lambdas[:-1], lambdas[1:], strict=True)
    ):
        values += 1  # the evaluation at the start of this step
        chosen = module
        if module.FAMILY == "multistep":
            order = module.STEPS
            if lower_order_final and n < 10:
                order = min(order, n - index)
            available = min(values, order)
            if available < module.STEPS:
                chosen = _starter(
                    module, available, warmup if values < module.STEPS else "lower-order"
                )
        steps.append(Step(chosen, float(lam), float(lam_next)))
    return steps


def run_steps(
    steps: Sequence[Step],
    y: Any,
    L: float,
    f: Callable[[Any, float], Any],
    *,
    history: Sequence[tuple[Any, float]] = (),
    on_step: Callable[[int, Step, Any, Any], None] | None = None,
    stochastic: dict[str, Any] | None = None,
) -> Any:
    """Execute a plan on y' = L y + N(y, lam); ``f(y, lam)`` returns N.

    After a step of a corrected multistep module (``CORRECTED``, a PEC pair), the evaluation at
    its prediction also corrects it (``module.correct``) before the next step starts from the
    corrected state; the plan's last step stays uncorrected (no evaluation follows it).
    ``history`` holds (N value, lam) pairs of earlier points, oldest first. ``on_step(i, step,
    y_new, value)`` is called after every step with the evaluation made at its start (y_new of a
    corrected step is its prediction). ``stochastic`` (eta, noise(lam_a, lam_b), s_noise, params)
    drives stochastic modules.
    """
    values: list[Any] = [v for v, _ in reversed(history)]
    points: list[float] = [float(p) for _, p in reversed(history)]
    pending: tuple[ModuleType, Any, float, list[float], list[Any]] | None = None
    for index, step in enumerate(steps):
        lam, h = step.lam, step.lam_next - step.lam
        if not h > 0:
            raise InputError(
                f"step {index}: the grid must increase (lambda {lam} -> {step.lam_next})"
            )
        value = f(y, lam)
        if pending is not None:
            # PEC: redo the previous step with the value just evaluated at its prediction
            corrector, y_before, h_before, past_before, values_before = pending
            y = corrector.correct(y_before, h_before, L, [value, *values_before], past_before)
            pending = None
        start_state = y
        values.insert(0, value)
        points.insert(0, lam)
        module = step.module
        if module.FAMILY in ("singlestep", "stochastic"):

            def stage_f(state, at, _y=start_state, _lam=lam, _value=value):
                # the first stage (node 0) is the evaluation already made at the step start
                return _value if state is _y and at == _lam else f(state, at)

            if module.FAMILY == "stochastic":
                options = stochastic or {}
                if options.get("noise") is None and options.get("eta", 1.0) > 0:
                    raise InputError(f"step {index}: {module.NAME} needs a noise source")
                y = module.step(
                    y,
                    lam,
                    h,
                    L,
                    stage_f,
                    options.get("eta", 1.0),
                    options.get("noise"),
                    options.get("s_noise", 1.0),
                    **options.get("params", {}),
                )
            else:
                y = module.step(y, lam, h, L, stage_f)
        else:
            k = module.STEPS
            past = [points[m] - points[m + 1] for m in range(k - 1)]
            if getattr(module, "CORRECTED", False):
                pending = (module, y, h, past, values[:k])
            y = module.step(y, h, L, values[:k], past)
        keep = 8  # enough for any starter or multistep method (k <= 8)
        del values[keep:], points[keep:]
        if on_step is not None:
            on_step(index, step, y, value)
    return y


def integrate(
    method: str | ModuleType,
    y: Any,
    lambdas: Sequence[float],
    L: float,
    f: Callable[[Any, float], Any],
    start: Sequence[tuple[Any, float]] | None = None,
    warmup: str = "lower-order",
) -> Any:
    """y at lambdas[-1], starting from y at lambdas[0].

    A multistep method with k steps can be given exact states at its first k grid points
    (``start``: pairs (y, lam), oldest first; stepping begins at the last one); otherwise it
    warms up with its starters (``warmup``).
    """
    lambdas = [float(x) for x in lambdas]
    if any(b <= a for a, b in itertools.pairwise(lambdas)):
        raise InputError("parameter 'lambdas' must be strictly increasing")
    history: list[tuple[Any, float]] = []
    if start:
        history = [(f(state, lam), lam) for state, lam in start[:-1]]
        y, lam0 = start[-1]
        lambdas = lambdas[lambdas.index(float(lam0)) :]
    steps = plan_steps(method, lambdas, warmup=warmup, history=len(history))
    return run_steps(steps, y, L, f, history=history)
