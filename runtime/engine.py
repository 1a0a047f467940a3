"""The one executor: runs a planned program of model calls and linear combinations.

A :class:`Program` (made by :mod:`phiforge.runtime.plan`) is a flat list of operations on a
buffer of slots, every coefficient already a number:

- :class:`Combine`: ``slot[dest] = sum_k c_k slot[s_k]`` (a state, an output row, a jump);
- :class:`Evaluate`: ``slot[dest] = model(slot[state], lam)``, the one kind of model call;
- :class:`Draw`: ``slot[dest]`` = a unit normal for the Brownian sub-interval (lam_a, lam_b);
- :class:`Report`: a step has ended (callbacks, progress).

The loop reads nothing back to the host: a model output's finiteness is recorded as a device
flag per call, and the flags are read once, at the end of the run (or every ``check_every``
calls), naming the first bad call's step and log-SNR. So a run with a capturable model can be
captured whole as one CUDA graph (:func:`capture`). Coefficients are Python floats (one per
term, shared by the batch) or tensors with a batch axis (per-sample grids); the state's dtype is
kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from phiforge.runtime.errors import InputError, ModelOutputError

__all__ = [
    "Combine",
    "Draw",
    "Evaluate",
    "Program",
    "Report",
    "capture",
    "execute",
]

Coefficient = float | torch.Tensor


@dataclass(frozen=True, slots=True)
class Combine:
    """slot[dest] = sum of coefficient * slot over ``terms``."""

    dest: int
    terms: tuple[tuple[int, Coefficient], ...]


@dataclass(frozen=True, slots=True)
class Evaluate:
    """slot[dest] = model(slot[state], lam); ``step`` names the call in errors."""

    dest: int
    state: int
    lam: float
    step: int


@dataclass(frozen=True, slots=True)
class Draw:
    """slot[dest] = a unit normal for the sub-interval (lam_a, lam_b)."""

    dest: int
    lam_a: float
    lam_b: float


@dataclass(frozen=True, slots=True)
class Report:
    """Step ``step`` from lam to lam_next ended at slot ``state``; ``denoised`` is the model's
    value at its start (None where the step made no call)."""

    step: int
    state: int
    denoised: int | None
    lam: float
    lam_next: float


Operation = Combine | Evaluate | Draw | Report


@dataclass
class Program:
    """A whole run: ``inputs`` are the slots given to :func:`execute`, ``outputs`` the slots it
    returns; ``release[i]`` the slots no longer read after operation i."""

    ops: list[Operation] = field(default_factory=list)
    slots: int = 0
    inputs: tuple[int, ...] = ()
    outputs: tuple[int, ...] = ()
    release: list[tuple[int, ...]] = field(default_factory=list)

    @property
    def calls(self) -> int:
        """Model evaluations the program makes."""
        return sum(isinstance(op, Evaluate) for op in self.ops)

    def finish(self, outputs: Sequence[int]) -> Program:
        """Fix the outputs and compute when each slot can be released."""
        self.outputs = tuple(outputs)
        last: dict[int, int] = {}
        for index, op in enumerate(self.ops):
            for slot in _reads(op):
                last[slot] = index
        keep = set(self.outputs)
        release: list[list[int]] = [[] for _ in self.ops]
        for slot, index in last.items():
            if slot not in keep:
                release[index].append(slot)
        self.release = [tuple(r) for r in release]
        return self


def _reads(op: Operation) -> tuple[int, ...]:
    if isinstance(op, Combine):
        return tuple(slot for slot, _ in op.terms)
    if isinstance(op, Evaluate):
        return (op.state,)
    if isinstance(op, Report):
        return (op.state,) if op.denoised is None else (op.state, op.denoised)
    return ()


def _combine(buffer: list[Any], terms: tuple[tuple[int, Coefficient], ...]) -> Any:
    (first, c0), *rest = terms
    head = buffer[first]
    if not rest and not isinstance(c0, torch.Tensor) and c0 == 1.0:
        return head
    if not isinstance(head, torch.Tensor):  # plain numbers (scalar test equations)
        total = c0 * head
        for slot, c in rest:
            total = total + c * buffer[slot]
        return total
    total = head * c0
    for slot, c in rest:
        term = buffer[slot]
        if isinstance(c, torch.Tensor) or term.dtype != total.dtype:
            total = total + c * term
        else:
            total = total.add_(term, alpha=c)  # fresh tensor: in place saves a kernel
    return total


def execute(
    program: Program,
    inputs: Sequence[Any],
    evaluate: Callable[[Any, float], Any],
    *,
    noise: Callable[[float, float], Any] | None = None,
    on_report: Callable[[Report, list[Any]], None] | None = None,
    check_every: int | None = None,
    check_finite: bool = True,
) -> tuple[Any, ...]:
    """Run ``program`` on ``inputs``; ``evaluate(state, lam)`` is the model in the form the plan
    was made for, ``noise(lam_a, lam_b)`` a unit normal shaped like the state. Returns the
    output slots. Non-finite model values raise :class:`ModelOutputError` naming the first bad
    call, after the run (or at the next multiple of ``check_every`` calls)."""
    if len(inputs) != len(program.inputs):
        raise InputError(f"the program takes {len(program.inputs)} inputs, got {len(inputs)}")
    if check_every is not None and (
        isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 1
    ):
        raise InputError(f"parameter 'check_every' must be a positive integer, got {check_every!r}")
    buffer: list[Any] = [None] * program.slots
    for slot, given in zip(program.inputs, inputs, strict=True):
        buffer[slot] = given
    flags: list[Any] = []
    calls: list[Evaluate] = []
    for op, release in zip(program.ops, program.release, strict=True):
        if isinstance(op, Combine):
            buffer[op.dest] = _combine(buffer, op.terms)
        elif isinstance(op, Evaluate):
            result = evaluate(buffer[op.state], op.lam)
            buffer[op.dest] = result
            if check_finite:
                flags.append(_finite(result, op))
                calls.append(op)
                if check_every is not None and len(calls) % check_every == 0:
                    _check(flags, calls)
        elif isinstance(op, Draw):
            if noise is None:
                raise InputError("this method draws noise: give a noise source")
            buffer[op.dest] = noise(op.lam_a, op.lam_b)
        elif on_report is not None:
            on_report(op, buffer)
        for slot in release:
            buffer[slot] = None
    if check_finite:
        _check(flags, calls)
    return tuple(buffer[slot] for slot in program.outputs)


def _finite(result: Any, op: Evaluate) -> Any:
    if isinstance(result, torch.Tensor):
        return torch.isfinite(result).all()
    if not math.isfinite(result):  # a host number: nothing to defer
        raise ModelOutputError(_message(op))
    return True


def _check(flags: list[Any], calls: list[Evaluate]) -> None:
    """One host read for all flags so far: the first non-finite call, if any."""
    tensors = [f for f in flags if isinstance(f, torch.Tensor)]
    if not tensors:
        return
    # the flags are plain booleans; a subclassed state's flags are read as plain tensors
    stacked = torch.stack([t.as_subclass(torch.Tensor) for t in tensors]).cpu()
    if bool(stacked.all()):
        return
    positions = [i for i, f in enumerate(flags) if isinstance(f, torch.Tensor)]
    first = positions[int((~stacked).nonzero()[0, 0])]
    raise ModelOutputError(_message(calls[first]))


def _message(op: Evaluate) -> str:
    return (
        f"the model returned NaN or inf at step {op.step} (sigma~ = {math.exp(-op.lam):.6g}, "
        f"lambda = {op.lam:.6g})"
    )


def capture(
    program: Program,
    inputs: Sequence[torch.Tensor],
    evaluate: Callable[[Any, float], Any],
    *,
    noise: Callable[[float, float], Any] | None = None,
    warmup: int = 1,
) -> Callable[[Sequence[torch.Tensor]], tuple[torch.Tensor, ...]]:
    """Capture the whole run as one CUDA graph; returns ``replay(inputs) -> outputs``.

    The model must be capturable (no host reads, no allocation that depends on data); noise is
    drawn inside the graph from the CUDA generator, so each replay draws afresh. Refused on CPU.
    """
    if not inputs or not all(isinstance(t, torch.Tensor) and t.is_cuda for t in inputs):
        raise InputError("parameter 'capture' needs CUDA tensors (CUDA graphs run on a GPU only)")
    static = [t.clone() for t in inputs]
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):  # warm-up outside the graph: allocator and lazy init
            execute(program, static, evaluate, noise=noise)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    flags: list[torch.Tensor] = []

    def recording(state: Any, lam: float) -> Any:
        value = evaluate(state, lam)
        flags.append(torch.isfinite(value).all())
        return value

    try:
        with torch.cuda.graph(graph):
            outputs = execute(program, static, recording, noise=noise, check_finite=False)
    except InputError:
        raise
    except Exception as error:
        raise InputError(
            f"parameter 'capture': the model cannot be captured in a CUDA graph ({error})"
        ) from error
    calls = [op for op in program.ops if isinstance(op, Evaluate)]

    def replay(new_inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        for target, given in zip(static, new_inputs, strict=True):
            target.copy_(given)
        graph.replay()
        _check(flags, calls)
        return tuple(o.clone() for o in outputs)

    return replay
