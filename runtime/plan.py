"""The planner: a grid and a method become the run's whole program, every coefficient a number.

Two passes. :func:`plan_steps` decides which generated module takes which interval of the
log-SNR grid (multistep starters from the modules' ``WARMUP`` metadata, lower-order final steps).
:class:`Builder` and :func:`place_steps` then lay the steps' call programs
(:mod:`phiforge.runtime.program`) onto one buffer of slots for the executor
(:mod:`phiforge.runtime.engine`).

The executor's slots hold the state x itself and the model's values V; a :class:`Form` says how
the canonical equation y' = L y + N(y, lam) sits in them (DESIGN.md, "One canonical equation"):
``y = x / scale(lam)`` and ``N = p(lam) V + q(lam) x``. Data prediction: scale = alpha,
N = V (the denoiser's x0); noise prediction: scale = sigma, N = -eps = (alpha V - x)/sigma; a
plain test equation: scale = 1, N = V. Every step's combination in y and N becomes one
combination of slots, the scales folded into its coefficients (float64, once). This is the one
place that reads a method's family.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from phiforge.runtime.engine import Combine, Draw, Evaluate, Program, Report
from phiforge.runtime.errors import InputError
from phiforge.runtime.methods import load_method
from phiforge.runtime.program import Ref, StepProgram, Terms

__all__ = [
    "WARMUP_POLICIES",
    "Builder",
    "Form",
    "Point",
    "Step",
    "canonical_form",
    "place_steps",
    "plan_steps",
    "schedule_form",
]

WARMUP_POLICIES = ("lower-order", "order-preserving")
HISTORY = 8  # values kept: enough for any starter or multistep method (k <= 8)


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


@dataclass(frozen=True)
class Form:
    """The canonical equation in the executor's slots: y = x / scale(lam), N = p V + q x with
    (p, q) = ``value(lam)``; ``L`` is the linear part (-1 data, +1 noise prediction)."""

    L: float
    scale: Callable[[float], float]
    value: Callable[[float], tuple[float, float]]


def canonical_form(L: float) -> Form:
    """A plain equation y' = L y + N: the state is y and the model returns N."""
    return Form(float(L), lambda lam: 1.0, lambda lam: (1.0, 0.0))


def schedule_form(alpha_sigma: Callable[[float], tuple[float, float]], prediction: str) -> Form:
    """Diffusion sampling with a data-prediction model V = x0_hat(x, lam): the data form
    (y = x/alpha, N = x0_hat) or the noise form (y = x/sigma, N = -eps_hat =
    (alpha V - x)/sigma)."""
    if prediction == "data":
        return Form(-1.0, lambda lam: alpha_sigma(lam)[0], lambda lam: (1.0, 0.0))

    def noise_value(lam: float) -> tuple[float, float]:
        alpha, sigma = alpha_sigma(lam)
        return alpha / sigma, -1.0 / sigma

    return Form(1.0, lambda lam: alpha_sigma(lam)[1], noise_value)


@dataclass(frozen=True)
class Point:
    """An evaluation: the model's value in slot ``value`` at the state in slot ``state``."""

    value: int
    state: int
    lam: float


class Builder:
    """Lays operations onto a :class:`~phiforge.runtime.engine.Program`'s slots."""

    def __init__(self) -> None:
        self.program = Program()
        self.reports = 0  # steps reported so far: the step index of the next call

    def _slot(self) -> int:
        self.program.slots += 1
        return self.program.slots - 1

    def input(self) -> int:
        slot = self._slot()
        self.program.inputs = (*self.program.inputs, slot)
        return slot

    def combine(self, terms: Sequence[tuple[int, float]]) -> int:
        """A slot holding sum c * slot (like slots merged, zero coefficients dropped)."""
        merged: dict[int, float] = {}
        for slot, c in terms:
            merged[slot] = merged.get(slot, 0.0) + c
        kept = tuple((slot, c) for slot, c in merged.items() if c != 0)
        if not kept:
            raise ValueError("an empty combination")
        if len(kept) == 1 and kept[0][1] == 1.0:
            return kept[0][0]
        dest = self._slot()
        self.program.ops.append(Combine(dest, kept))
        return dest

    def evaluate(self, state: int, lam: float) -> int:
        dest = self._slot()
        self.program.ops.append(Evaluate(dest, state, float(lam), self.reports))
        return dest

    def draw(self, lam_a: float, lam_b: float) -> int:
        dest = self._slot()
        self.program.ops.append(Draw(dest, float(lam_a), float(lam_b)))
        return dest

    def report(self, state: int, denoised: int | None, lam: float, lam_next: float) -> None:
        self.program.ops.append(Report(self.reports, state, denoised, float(lam), float(lam_next)))
        self.reports += 1

    def finish(self, outputs: Sequence[int]) -> Program:
        return self.program.finish(outputs)


@dataclass
class _Context:
    """What a step's references mean: its start state, the points at hand, its stages and draws."""

    form: Form
    state: int
    lam: float
    points: list[Point]  # newest first: points[0] is this step's start
    stages: list[Point]
    draws: list[int]

    def terms(self, row: Terms, lam_target: float, new: Point | None = None) -> list:
        """The row (a combination in y and N) as slot terms for x at ``lam_target``."""
        out: list[tuple[int, float]] = []
        target = self.form.scale(lam_target)
        for ref, c in row:
            out += self._resolve(ref, c * target, new)
        return out

    def _resolve(self, ref: Ref, c: float, new: Point | None) -> list[tuple[int, float]]:
        kind, index = ref
        if kind == "y":
            return [(self.state, c / self.form.scale(self.lam))]
        if kind == "draw":
            return [(self.draws[index], c)]
        point = {"value": lambda: self.points[index], "stage": lambda: self.stages[index - 1]}.get(
            kind, lambda: new
        )()
        if point is None:
            raise ValueError(f"term {ref} is not known here")
        p, q = self.form.value(point.lam)
        return [(point.value, c * p)] + ([(point.state, c * q)] if q != 0 else [])


def place_steps(
    builder: Builder,
    steps: Sequence[Step],
    state: int,
    form: Form,
    *,
    history: Sequence[Point] = (),
    start_value: int | None = None,
    options: Mapping[str, Any] | None = None,
    embedded: bool = False,
    report: bool = True,
) -> tuple[int, int | None]:
    """Lay ``steps`` from the state in slot ``state`` onto ``builder``; returns the slot of the
    final state (and of the embedded companion's, for one step with ``embedded``).

    ``history``: earlier evaluations, newest first (a fresh multistep history when empty);
    ``start_value``: the slot of the model's value at the first step's start, if already made;
    ``options``: eta, s_noise and node parameters for the methods that take them. After a
    predict-evaluate-correct step the evaluation at its prediction corrects it before the next
    step starts from the corrected state; the last step stays uncorrected.
    """
    points = list(history)
    pending: Callable[[Point], int] | None = None
    low = None
    for index, step in enumerate(steps):
        lam, lam_next = step.lam, step.lam_next
        h = lam_next - lam
        if not h > 0:
            raise InputError(f"step {index}: the grid must increase (lambda {lam} -> {lam_next})")
        given = start_value if index == 0 else None
        start = Point(builder.evaluate(state, lam) if given is None else given, state, lam)
        if pending is not None:
            state = pending(start)
            pending = None
        points.insert(0, start)
        del points[HISTORY:]
        past = tuple(points[m].lam - points[m + 1].lam for m in range(len(points) - 1))
        program: StepProgram = step.module.program(lam, h, form.L, past, **_options(step, options))
        if program.history > len(points):
            raise InputError(
                f"step {index}: {step.module.NAME} needs {program.history} values, "
                f"{len(points)} at hand"
            )
        draws = [builder.draw(lam + a * h, lam + b * h) for a, b in program.noises]
        context = _Context(form, state, lam, list(points), [], draws)
        for call in program.calls:
            at = lam + call.node * h
            stage_state = builder.combine(context.terms(call.state, at))
            context.stages.append(Point(builder.evaluate(stage_state, at), stage_state, at))
        new_state = builder.combine(context.terms(program.output, lam_next))
        if embedded and program.embedded is not None:
            low = builder.combine(context.terms(program.embedded, lam_next))
        if program.correction is not None and index + 1 < len(steps):
            pending = _corrector(builder, context, program.correction, lam_next)
        state = new_state
        if report:
            builder.report(state, start.value, lam, lam_next)
    return state, low


def _corrector(
    builder: Builder, context: _Context, row: Terms, lam_next: float
) -> Callable[[Point], int]:
    def correct(new: Point) -> int:
        return builder.combine(context.terms(row, lam_next, new))

    return correct


def _options(step: Step, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The program's keyword options: eta, s_noise and node parameters go to the methods that
    take them (stochastic ones); deterministic programs get none."""
    if not options or step.module.FAMILY != "stochastic":
        return {}
    return dict(options)
