"""The planner: a grid and a method become the run's whole program, every coefficient a number.

The step plan (:mod:`phiforge.runtime.step_plan`) decides which generated module takes which
interval of the log-SNR grid; :class:`Builder` and :func:`place_steps` here lay the steps' call
programs (:mod:`phiforge.runtime.program`) onto one buffer of slots for the executor
(:mod:`phiforge.runtime.engine`), and :func:`merge_programs` joins the programs of per-sample
grids into one with coefficient columns.

The executor's slots hold the state x itself and the model's values V; a :class:`Form` says how
the canonical equation y' = L y + N(y, lam) sits in them (DESIGN.md, "One canonical equation"):
``y = x / scale(lam)`` and ``N = p(lam) V + q(lam) x``. Data prediction: scale = alpha,
N = V (the denoiser's x0); noise prediction: scale = sigma, N = -eps = (alpha V - x)/sigma; a
plain test equation: scale = 1, N = V. Every step's combination in y and N becomes one
combination of slots, the scales folded into its coefficients (float64, once). Nothing here
reads a method's family: a module's ``program`` says what its steps are.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from phiforge.runtime.engine import Combine, Draw, Evaluate, Program, Report
from phiforge.runtime.errors import InputError
from phiforge.runtime.program import StepProgram, Terms
from phiforge.runtime.step_plan import Step

__all__ = [
    "Builder",
    "Form",
    "Point",
    "canonical_form",
    "merge_programs",
    "place_steps",
    "schedule_form",
]

HISTORY = 8  # values kept: enough for any starter or multistep method (k <= 8)


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

    def __init__(self, keep_all: bool = False) -> None:
        self.program = Program()
        self.reports = 0  # steps reported so far: the step index of the next call
        # keep zero terms and copies: programs of several grids then have one structure
        self.keep_all = keep_all

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
        kept = tuple((slot, c) for slot, c in merged.items() if self.keep_all or c != 0)
        if not kept:
            raise ValueError("an empty combination")
        if not self.keep_all and len(kept) == 1 and kept[0][1] == 1.0:
            return kept[0][0]
        dest = self._slot()
        self.program.ops.append(Combine(dest, kept))
        return dest

    def evaluate(self, state: int, lam: float, grid: bool = False) -> int:
        """A model call; ``grid``: at a grid point (a step's start), not at a stage."""
        dest = self._slot()
        lam = lam if isinstance(lam, torch.Tensor) else float(lam)  # a tensor: differentiable
        self.program.ops.append(Evaluate(dest, state, lam, self.reports, grid))
        return dest

    def draw(self, lam_a: float, lam_b: float) -> int:
        dest = self._slot()
        self.program.ops.append(Draw(dest, _number(lam_a), _number(lam_b)))
        return dest

    def report(
        self,
        state: int,
        denoised: int | None,
        lam: float,
        lam_next: float,
        start: int | None = None,
    ) -> None:
        self.program.ops.append(
            Report(self.reports, state, denoised, _number(lam), _number(lam_next), start)
        )
        self.reports += 1

    def finish(self, outputs: Sequence[int]) -> Program:
        return self.program.finish(outputs)


def _number(value: float | torch.Tensor) -> float:
    """A log-SNR as a float (a differentiable grid's tensor, detached)."""
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


class _Context:
    """What a step's references mean: its start state, the points at hand, its stages and draws."""

    def __init__(
        self,
        builder: Builder,
        form: Form,
        state: int,
        lam: float,
        h: float,
        points: list[Point],
        noises: tuple[tuple[float, float], ...],
    ):
        self.builder = builder
        self.form = form
        self.points = points  # newest first: points[0] is this step's start
        self.stages: list[Point] = []
        self.start = (state, 1.0 / form.scale(lam))
        self.lam, self.h = lam, h
        self.noises = noises
        self.draws: list[int] = []

    def draw(self, index: int) -> int:
        """The slot of the step's index-th unit normal, drawn when first read (in order, so a
        caller that feeds one normal per model call gets them as the calls need them)."""
        while len(self.draws) <= index:
            a, b = self.noises[len(self.draws)]
            self.draws.append(self.builder.draw(self.lam + a * self.h, self.lam + b * self.h))
        return self.draws[index]

    def terms(self, row: Terms, lam_target: float, new: Point | None = None) -> list:
        """The row (a combination in y and N) as slot terms for x at ``lam_target``."""
        out: list[tuple[int, float]] = []
        target = self.form.scale(lam_target)
        for (kind, index), c in row:
            c *= target
            if kind == "y":
                out.append((self.start[0], c * self.start[1]))
                continue
            if kind == "draw":
                out.append((self.draw(index), c))
                continue
            if kind == "value":
                point = self.points[index]
            elif kind == "stage":
                point = self.stages[index - 1]
            elif new is not None:
                point = new
            else:
                raise ValueError(f"term {(kind, index)} is not known here")
            p, q = self.form.value(point.lam)
            out.append((point.value, c * p))
            if q != 0:
                out.append((point.state, c * q))
        return out


def merge_programs(programs: Sequence[Program]) -> Program:
    """One program for a batch whose samples have their own grids: the programs of the rows
    (built with ``Builder(keep_all=True)`` from the same methods and step counts) have one
    structure; every coefficient becomes a tuple with one entry per sample (a term missing in a
    row has coefficient 0 there), every log-SNR a tuple. The executor places the tuples on the
    device as columns; the model wrapper takes per-sample log-SNRs."""
    first = programs[0]
    rows = len(programs)
    shape_error = InputError(
        "a per-sample grid ('sigmas' or 'timesteps' with one row per sample) must give runs of "
        "one shape: the same number of steps, every row ending at sigma = 0 or none"
    )
    if any(len(p.ops) != len(first.ops) for p in programs):
        raise shape_error
    ops: list = []
    for index, op in enumerate(first.ops):
        column = [p.ops[index] for p in programs]
        if any(type(o) is not type(op) or _dest(o) != _dest(op) for o in column):
            raise shape_error
        if isinstance(op, Combine):
            slots: dict[int, list[float]] = {}
            for row, o in enumerate(column):
                for slot, c in o.terms:
                    slots.setdefault(slot, [0.0] * rows)[row] += c
            ops.append(Combine(op.dest, tuple((slot, tuple(cs)) for slot, cs in slots.items())))
        elif isinstance(op, Evaluate):
            lams = tuple(o.lam for o in column)
            ops.append(Evaluate(op.dest, op.state, lams, op.step, op.grid))
        elif isinstance(op, Draw):
            ops.append(Draw(op.dest, column[0].lam_a, column[0].lam_b))
        else:
            lams = tuple(o.lam for o in column)
            ops.append(
                Report(
                    op.step,
                    op.state,
                    op.denoised,
                    lams,
                    tuple(o.lam_next for o in column),
                    op.start,
                )
            )
    merged = Program(ops, first.slots, first.inputs)
    return merged.finish(first.outputs)


def _dest(op: Any) -> Any:
    return getattr(op, "dest", None), getattr(op, "state", None)


def place_zero_snr_start(
    builder: Builder,
    state: int,
    alpha_sigma: Callable[[float], tuple[float, float]],
    lam1: float,
    *,
    grid: bool = False,
    report: bool = True,
) -> int:
    """The first step of a grid that starts at zero SNR (lambda = -inf, alpha = 0): the
    h -> inf limit of the data-form exponential step (spec-dpmsolver-res §2),
    x1 = (sigma1/sigma0) x0 + alpha1 x0_hat(x0), one model call at lambda = -inf."""
    _, sigma0 = alpha_sigma(-math.inf)
    alpha1, sigma1 = alpha_sigma(lam1)
    x0 = builder.evaluate(state, -math.inf, grid=grid)
    moved = builder.combine([(state, sigma1 / sigma0), (x0, alpha1)])
    if report:
        builder.report(moved, x0, -math.inf, lam1, start=state)
    return moved


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
    zero_steps: bool = False,
) -> tuple[int, int | None]:
    """Lay ``steps`` from the state in slot ``state`` onto ``builder``; returns the slot of the
    final state (and of the embedded companion's, for one step with ``embedded``).

    ``history``: earlier evaluations, newest first (a fresh multistep history when empty);
    ``start_value``: the slot of the model's value at the first step's start, if already made;
    ``options``: eta, s_noise and node parameters for the methods that take them. After a
    predict-evaluate-correct step the evaluation at its prediction corrects it before the next
    step starts from the corrected state; the last step stays uncorrected. With ``zero_steps``
    a step of length 0 (diffusers' grids may repeat their last sigma) is a call that changes
    nothing.
    """
    points = list(history)
    pending: Callable[[Point], int] | None = None
    low = None
    for index, step in enumerate(steps):
        lam, lam_next = step.lam, step.lam_next
        h = lam_next - lam
        if not (h > 0 or (zero_steps and h == 0)):
            raise InputError(f"step {index}: the grid must increase (lambda {lam} -> {lam_next})")
        given = start_value if index == 0 else None
        start = Point(
            builder.evaluate(state, lam, grid=True) if given is None else given, state, lam
        )
        if pending is not None:
            state = pending(start)
            pending = None
        if h == 0:
            if report:
                builder.report(state, start.value, lam, lam_next, start=state)
            continue
        points.insert(0, start)
        del points[HISTORY:]
        past = tuple(points[m].lam - points[m + 1].lam for m in range(len(points) - 1))
        program: StepProgram = step.module.program(lam, h, form.L, past, **_options(step, options))
        if program.history > len(points):
            raise InputError(
                f"step {index}: {step.module.NAME} needs {program.history} values, "
                f"{len(points)} at hand"
            )
        context = _Context(builder, form, state, lam, h, list(points), program.noises)
        for call in program.calls:
            at = lam + call.node * h
            stage_state = builder.combine(context.terms(call.state, at))
            context.stages.append(Point(builder.evaluate(stage_state, at), stage_state, at))
        new_state = builder.combine(context.terms(program.output, lam_next))
        if embedded and program.embedded is not None:
            low = builder.combine(context.terms(program.embedded, lam_next))
        if program.correction is not None and index + 1 < len(steps):
            pending = _corrector(builder, context, program.correction, lam_next)
        begun, state = state, new_state
        if report:
            builder.report(state, start.value, lam, lam_next, start=begun)
    return state, low


def _corrector(
    builder: Builder, context: _Context, row: Terms, lam_next: float
) -> Callable[[Point], int]:
    def correct(new: Point) -> int:
        return builder.combine(context.terms(row, lam_next, new))

    return correct


def _options(step: Step, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The program's keyword options: eta and s_noise for every program (deterministic ones
    ignore them), node parameters for the methods that declare ``PARAMETERS``."""
    if not options:
        return {}
    parameters = getattr(step.module, "PARAMETERS", None) or {}
    return {k: v for k, v in options.items() if k in ("eta", "s_noise") or k in parameters}
