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
    "Execution",
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
    """slot[dest] = model(slot[state], lam); ``step`` names the call in errors, ``grid`` says
    that the call is at a grid point (a step's start), not at a stage."""

    dest: int
    state: int
    lam: float
    step: int
    grid: bool = False


@dataclass(frozen=True, slots=True)
class Draw:
    """slot[dest] = a unit normal for the sub-interval (lam_a, lam_b)."""

    dest: int
    lam_a: float
    lam_b: float


@dataclass(frozen=True, slots=True)
class Report:
    """Step ``step`` from lam to lam_next ended at slot ``state``; ``denoised`` is the model's
    value at its start (None where the step made no call); ``start`` is the state it advanced
    from (after a predict-evaluate-correct step's correction; None where the program names
    none)."""

    step: int
    state: int
    denoised: int | None
    lam: float
    lam_next: float
    start: int | None = None


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
        return tuple(slot for slot in (op.state, op.denoised, op.start) if slot is not None)
    return ()


STACKED = 4  # combinations of at least this many terms run as one product with a coefficient row
_HALF = (torch.float16, torch.bfloat16)


def _place(program: Program, like: Any) -> dict[int, torch.Tensor]:
    """The coefficient rows of the long combinations (a vector; on accelerators) and of the
    per-sample ones (a matrix: terms x samples) as tensors on ``like``'s device, indexed by
    operation: copied there once per run (float64 for float64 states, else float32)."""
    if not isinstance(like, torch.Tensor):
        return {}
    # long combinations are stacked where kernel launches dominate (accelerators); on a CPU the
    # memory passes do, and a chain of in-place additions makes fewer (bench/overhead.py)
    stack_long = like.device.type != "cpu"
    chosen = [
        i
        for i, op in enumerate(program.ops)
        if isinstance(op, Combine)
        and ((stack_long and len(op.terms) >= STACKED) or isinstance(op.terms[0][1], tuple))
        and not any(isinstance(c, torch.Tensor) for _, c in op.terms)
    ]
    if not chosen:
        return {}
    values: list[float] = []
    shapes: list[tuple[int, ...]] = []
    for i in chosen:
        terms = program.ops[i].terms
        if isinstance(terms[0][1], tuple):
            shapes.append((len(terms), len(terms[0][1])))
            values += [c for _, column in terms for c in column]
        else:
            shapes.append((len(terms),))
            values += [c for _, c in terms]
    dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
    host = torch.tensor(values, dtype=dtype)
    if like.device.type == "cuda":
        rows = host.pin_memory().to(like.device, non_blocking=True)
    else:
        rows = host.to(like.device)
    placed, start = {}, 0
    for i, shape in zip(chosen, shapes, strict=True):
        size = math.prod(shape)
        placed[i] = rows[start : start + size].reshape(shape)
        start += size
    return placed


def _stacked(buffer: list[Any], terms: tuple[tuple[int, Coefficient], ...], row: torch.Tensor):
    """sum_k row[k] slot_k in three kernels (stack, product, sum) whatever the number of terms;
    a row of per-sample columns (terms x samples) weights each sample by its own coefficients.
    Half-precision states are combined in float32."""
    tensors = [buffer[slot] for slot, _ in terms]
    dtype = tensors[0].dtype
    if row.ndim == 1 and any(t.dtype != dtype for t in tensors):
        return _combine(buffer, terms)
    stacked = torch.stack([t.to(dtype) for t in tensors]) if row.ndim == 2 else torch.stack(tensors)
    if dtype != row.dtype:
        stacked = stacked.to(row.dtype)
    # elementwise products and a sum, not a matmul: a matmul would follow the process's float32
    # matmul precision (TF32 or bfloat16 passes under torch.set_float32_matmul_precision)
    weights = row.reshape(*row.shape, *([1] * (stacked.ndim - row.ndim)))
    total = (stacked * weights).sum(0)
    return total if total.dtype == dtype else total.to(dtype)


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


class Execution:
    """A program being run: its slot buffer, its position and its finiteness flags.

    :meth:`run` goes on from the current position; given ``evaluate`` it makes every model call
    itself, without it stops at the next call (:attr:`waiting`) and returns its state, and
    :meth:`give` hands in that call's value (the diffusers scheduler: one model call per
    ``step()``). Non-finite values raise :class:`ModelOutputError` naming the first bad call,
    when the run ends (or every ``check_every`` calls).
    """

    def __init__(
        self,
        program: Program,
        inputs: Sequence[Any],
        *,
        noise: Callable[[float, float], Any] | None = None,
        on_report: Callable[[Report, list[Any]], None] | None = None,
        check_every: int | None = None,
        check_finite: bool = True,
        placed: dict[int, torch.Tensor] | None = None,
    ) -> None:
        if len(inputs) != len(program.inputs):
            raise InputError(f"the program takes {len(program.inputs)} inputs, got {len(inputs)}")
        if check_every is not None and (
            isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 1
        ):
            raise InputError(
                f"parameter 'check_every' must be a positive integer, got {check_every!r}"
            )
        self.program = program
        self.buffer: list[Any] = [None] * program.slots
        for slot, given in zip(program.inputs, inputs, strict=True):
            self.buffer[slot] = given
        self.placed = _place(program, inputs[0] if inputs else None) if placed is None else placed
        self.noise, self.on_report = noise, on_report
        self.check_every, self.check_finite = check_every, check_finite
        self.position = 0
        self.flags: list[Any] = []
        self.calls: list[Evaluate] = []

    @property
    def done(self) -> bool:
        return self.position >= len(self.program.ops)

    @property
    def waiting(self) -> Evaluate | None:
        """The model call the run stopped at, if any."""
        op = None if self.done else self.program.ops[self.position]
        return op if isinstance(op, Evaluate) else None

    def give(self, value: Any) -> None:
        """The value of the call the run stopped at."""
        op = self.waiting
        if op is None:
            raise InputError("no model call is waiting for a value")
        state = self.buffer[op.state]
        if isinstance(state, torch.Tensor) and (
            not isinstance(value, torch.Tensor) or value.shape != state.shape
        ):
            got = f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else repr(value)
            raise ModelOutputError(
                f"the model returned {got[:80]} for an input of shape {tuple(state.shape)} at "
                f"step {op.step}; its output must be a tensor of the input's shape"
            )
        self.buffer[op.dest] = value
        if self.check_finite:
            self.flags.append(_finite(value, op))
            self.calls.append(op)
            if self.check_every is not None and len(self.calls) % self.check_every == 0:
                _check(self.flags, self.calls)
        self._release()

    def _release(self) -> None:
        for slot in self.program.release[self.position]:
            self.buffer[slot] = None
        self.position += 1

    def run(self, evaluate: Callable[[Any, float], Any] | None = None) -> Any:
        """Go on until the end (returns the outputs) or, without ``evaluate``, until the next
        model call (returns the state it is to be made at)."""
        ops, buffer, placed = self.program.ops, self.buffer, self.placed
        while self.position < len(ops):
            index = self.position
            op = ops[index]
            if isinstance(op, Evaluate):
                if evaluate is None:
                    return buffer[op.state]
                self.give(evaluate(buffer[op.state], op.lam))
                continue
            if isinstance(op, Combine):
                row = placed.get(index)
                buffer[op.dest] = (
                    _combine(buffer, op.terms) if row is None else _stacked(buffer, op.terms, row)
                )
            elif isinstance(op, Draw):
                if self.noise is None:
                    raise InputError("this method draws noise: give a noise source")
                buffer[op.dest] = self.noise(op.lam_a, op.lam_b)
            elif self.on_report is not None:
                self.on_report(op, buffer)
            self._release()
        if self.check_finite:
            _check(self.flags, self.calls)
        return tuple(buffer[slot] for slot in self.program.outputs)


def execute(
    program: Program,
    inputs: Sequence[Any],
    evaluate: Callable[[Any, float], Any],
    *,
    noise: Callable[[float, float], Any] | None = None,
    on_report: Callable[[Report, list[Any]], None] | None = None,
    check_every: int | None = None,
    check_finite: bool = True,
    placed: dict[int, torch.Tensor] | None = None,
) -> tuple[Any, ...]:
    """Run ``program`` on ``inputs``; ``evaluate(state, lam)`` is the model in the form the plan
    was made for, ``noise(lam_a, lam_b)`` a unit normal shaped like the state. Returns the
    output slots. Non-finite model values raise :class:`ModelOutputError` naming the first bad
    call, after the run (or at the next multiple of ``check_every`` calls). ``placed``: the
    coefficient rows already on the device (:func:`capture` places them once for all replays)."""
    run = Execution(
        program,
        inputs,
        noise=noise,
        on_report=on_report,
        check_every=check_every,
        check_finite=check_finite,
        placed=placed,
    )
    return run.run(evaluate)


def _finite(result: Any, op: Evaluate) -> Any:
    """A device flag for the value: its sum, which is NaN or inf where any entry is (one
    reduction; half-precision values are summed in float32 so that finite ones cannot
    overflow)."""
    if isinstance(result, torch.Tensor):
        return result.sum(dtype=torch.float32 if result.dtype in _HALF else None)
    if not math.isfinite(result):  # a host number: nothing to defer
        raise ModelOutputError(_message(op))
    return True


def _check(flags: list[Any], calls: list[Evaluate]) -> None:
    """One host read for all flags so far: the first non-finite call, if any."""
    tensors = [f for f in flags if isinstance(f, torch.Tensor)]
    if not tensors or torch.compiler.is_compiling():  # a compiled graph cannot raise on data
        return
    # the flags are plain booleans; a subclassed state's flags are read as plain tensors
    sums = torch.stack([t.as_subclass(torch.Tensor).detach().to(torch.float64) for t in tensors])
    finite = torch.isfinite(sums).cpu()
    if bool(finite.all()):
        return
    positions = [i for i, f in enumerate(flags) if isinstance(f, torch.Tensor)]
    first = positions[int((~finite).nonzero()[0, 0])]
    error = ModelOutputError(_message(calls[first]))
    error.call = calls[first]  # the Evaluate operation, for callers that number calls otherwise
    raise error


def _message(op: Evaluate) -> str:
    if isinstance(op.lam, tuple):  # a per-sample grid
        sigmas = ", ".join(f"{math.exp(-lam):.6g}" for lam in op.lam)
        return f"the model returned NaN or inf at step {op.step} (sigma~ per sample = {sigmas})"
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
    check_finite: bool = True,
) -> Callable[[Sequence[torch.Tensor]], tuple[torch.Tensor, ...]]:
    """Capture the whole run as one CUDA graph; returns ``replay(inputs) -> outputs``.

    The model must be capturable (no host reads, no allocation that depends on data); noise is
    drawn inside the graph from the CUDA generator, so each replay draws afresh. Refused on CPU.
    Each replay reads its finiteness flags back (one synchronisation) unless ``check_finite``
    is false.
    """
    if not inputs or not all(isinstance(t, torch.Tensor) and t.is_cuda for t in inputs):
        raise InputError("parameter 'capture' needs CUDA tensors (CUDA graphs run on a GPU only)")
    static = [t.clone() for t in inputs]
    placed = _place(program, static[0])
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):  # warm-up outside the graph: allocator and lazy init
            execute(program, static, evaluate, noise=noise, placed=placed)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    flags: list[torch.Tensor] = []

    def recording(state: Any, lam: float) -> Any:
        value = evaluate(state, lam)
        flags.append(_finite(value, None))
        return value

    try:
        with torch.cuda.graph(graph):
            outputs = execute(
                program, static, recording, noise=noise, check_finite=False, placed=placed
            )
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
        if check_finite:
            _check(flags, calls)
        return tuple(o.clone() for o in outputs)

    return replay
