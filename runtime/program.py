"""A method's step as data: its model calls and outputs as linear combinations.

Every method of every family (DESIGN.md, "The engine: every method is a call program") advances
the canonical equation y' = L y + N(y, lam) by a step from lam to lam + h through a few model
calls, each at a known log-SNR and at a state that is a linear combination of what is at hand:

- ``Y``: the state at the start of the step;
- ``value(m)``: N at the m-th grid point back (``value(0)``: at this step's start, the step's
  first call, shared with the multistep history);
- ``stage(i)``: N at this step's i-th call (i >= 1);
- ``draw(j)``: the j-th unit normal of the step (stochastic methods);
- ``NEW``: N at the step's end, known only once the next step has evaluated it (the corrector of
  a predict-evaluate-correct pair).

A generated module's ``program(lam, h, L, past_steps, eta, s_noise, **params)`` returns a
:class:`StepProgram` of plain floats; the planner (:mod:`phiforge.runtime.plan`) places the
programs of a whole run on one buffer of tensors and the executor
(:mod:`phiforge.runtime.engine`) runs it. Nothing here knows torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "NEW",
    "Call",
    "Ref",
    "StepProgram",
    "Terms",
    "Y",
    "combination",
    "draw",
    "stage",
    "value",
]

#: a reference to a term of a step: (kind, index)
Ref = tuple[str, int]
#: a linear combination: (term, coefficient) pairs
Terms = tuple[tuple[Ref, float], ...]

Y: Ref = ("y", 0)
NEW: Ref = ("new", 0)
KINDS = ("y", "value", "stage", "draw", "new")


def value(m: int) -> Ref:
    """N at the m-th grid point back (0: this step's start)."""
    return ("value", m)


def stage(i: int) -> Ref:
    """N at this step's i-th call (i >= 1; the 0-th is ``value(0)``)."""
    return ("stage", i)


def draw(j: int) -> Ref:
    """The j-th unit normal of this step (its j-th Brownian sub-interval)."""
    return ("draw", j)


def combination(decay: float, scale: float, weights: Sequence[float], refs: Sequence[Ref]) -> Terms:
    """``decay * Y + scale * sum_j weights[j] refs[j]`` (weights may be fewer than refs: an
    explicit stage reads the earlier ones); zero weights are left out."""
    pairs = zip(refs[: len(weights)], weights, strict=True)
    return ((Y, decay), *((ref, scale * w) for ref, w in pairs if w != 0))


@dataclass(frozen=True)
class Call:
    """A model call at lam + node * h on the state ``state`` (a combination)."""

    node: float
    state: Terms


@dataclass(frozen=True)
class StepProgram:
    """One step: its calls after the first, its output rows and its noise.

    ``calls[i - 1]`` gives ``stage(i)``; ``output`` is y at lam + h; ``embedded`` the embedded
    companion's (adaptive stepping), ``correction`` the step redone once ``NEW`` is known (PEC);
    ``noises`` the Brownian sub-intervals (fractions of h) whose unit normals ``draw(j)`` are;
    ``history`` the number of values ``value(0..history-1)`` the step reads.
    """

    calls: tuple[Call, ...]
    output: Terms
    embedded: Terms | None = None
    correction: Terms | None = None
    noises: tuple[tuple[float, float], ...] = ()
    history: int = 1

    def __post_init__(self) -> None:
        rows = [self.output, *(c.state for c in self.calls)]
        rows += [r for r in (self.embedded, self.correction) if r is not None]
        for row in rows:
            for (kind, index), _ in row:
                if kind not in KINDS:
                    raise ValueError(f"unknown term kind {kind!r}")
                if kind == "stage" and not 1 <= index <= len(self.calls):
                    raise ValueError(f"stage({index}) of a step with {len(self.calls)} calls")
                if kind == "draw" and not 0 <= index < len(self.noises):
                    raise ValueError(f"draw({index}) of a step with {len(self.noises)} draws")
                if kind == "value" and not 0 <= index < self.history:
                    raise ValueError(f"value({index}) beyond history {self.history}")
        if any(ref == NEW for c in self.calls for ref, _ in c.state):
            raise ValueError("NEW is known only after the step: a call cannot read it")
        for i, call in enumerate(self.calls, start=1):
            if any(ref[0] == "stage" and ref[1] >= i for ref, _ in call.state):
                raise ValueError(f"stage {i} reads a stage not yet evaluated (explicit methods)")
