"""Orders of convergence from an error sweep: the one fit used by every study (the diffusion
problems of ``runtime.verification`` and the stiff PDEs of ``derive.stiff_pde``), and the one
property-test runner behind ``phiforge verify --explore`` in both settings."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "EXTENSION_FLOOR",
    "RISE",
    "explore_margins",
    "extend_while_rising",
    "local_orders",
    "observed_order",
    "still_rising",
]

#: a sweep is extended only while its finest error is this far above round-off and the floor
EXTENSION_FLOOR = 1000
#: the last local order exceeds the one before by more than this: still pre-asymptotic
RISE = 0.03


def observed_order(
    steps: Sequence[int],
    errors: Sequence[float],
    floor: float = 0.0,
    fit_points: int = 3,
    least: float = 1e-13,
) -> float | None:
    """Least-squares slope of -log(error) against log(steps) over the finest ``fit_points``
    errors above max(100 floor, least) (``least``: where round-off starts to show, 1e-13 in
    float64); None without two distinct step counts there."""
    usable = [(n, e) for n, e in zip(steps, errors, strict=True) if e > max(100 * floor, least)]
    usable = usable[-fit_points:]
    if len({n for n, _ in usable}) < 2:  # no slope from one step count, repeated or not
        return None
    x = np.log([n for n, _ in usable])
    y = np.log([e for _, e in usable])
    return float(-np.polyfit(x, y, 1)[0])


def local_orders(steps: Sequence[int], errors: Sequence[float]) -> list[float]:
    """The slopes log(e0/e1)/log(n1/n0) between consecutive points of a sweep."""
    pairs = list(zip(steps, errors, strict=True))
    return [
        math.log(e0 / e1) / math.log(n1 / n0)
        for (n0, e0), (n1, e1) in itertools.pairwise(pairs)
        if e0 > 0 and e1 > 0 and n1 > n0
    ]


def still_rising(steps: Sequence[int], errors: Sequence[float], rise: float = RISE) -> bool:
    """Still in the pre-asymptotic range: the last local order exceeds the one before it by
    more than ``rise`` (a fit over the finest points is dragged down by coarser ones). A
    negative ``rise`` counts level local orders as not yet settled: only more steps tell a
    plateau before a rise from the asymptotic order.
    Slow rises are real: on time-uniform VP grids dpm_solver_3's local orders go 2.40, 2.49,
    2.60, ... 2.98 from N = 32 to 4096; res_6s on the stiff heat problem 3.61, 4.11, 4.39, 4.77
    from N = 16 to 256."""
    local = local_orders(steps, errors)
    return len(local) >= 2 and local[-1] > local[-2] + rise


def extend_while_rising(
    steps: list[int],
    errors: list[float],
    error_at: Callable[[int], float],
    reaches: Callable[[float | None], bool],
    extend_to: int,
    floor: float = 0.0,
    fit_points: int = 3,
    least: float = 1e-13,
    rise: float = RISE,
    headroom: float = EXTENSION_FLOOR,
) -> bool:
    """Double a sweep (``steps`` and ``errors``, extended in place with ``error_at(N)``) while
    its fit (:func:`observed_order`) does not ``reach`` the claim, its local orders still rise
    (:func:`still_rising` with ``rise``), its finest error is over ``headroom`` times
    max(``floor``, ``least``) (:data:`EXTENSION_FLOOR`), and 2N <= ``extend_to``: an order is
    judged over the asymptotic range, where a method below its claim on a coarse sweep may be
    pre-asymptotic rather than reduced. Returns whether the sweep was extended."""
    extended = False
    while (
        not reaches(observed_order(steps, errors, floor, fit_points, least))
        and still_rising(steps, errors, rise)
        and 2 * steps[-1] <= extend_to
        and errors[-1] > headroom * max(floor, least)
    ):
        steps.append(2 * steps[-1])
        errors.append(error_at(steps[-1]))
        extended = True
    return extended


def explore_margins(
    problems: Any,
    margin: Callable[[Any], float | None],
    examples: int,
    seed: int = 0,
    database: str | None = None,
    tolerance: float = 0.2,
) -> dict[str, Any]:
    """Property-test an order claim: ``margin(problem)`` (observed minus claimed order; None when
    the problem cannot decide it, e.g. every error at round-off) over ``examples`` problems drawn
    from the hypothesis strategy ``problems`` with ``seed``. Returns the margins, the problems
    below ``-tolerance`` (``missed``, their number ``misses``) and, if any, the smallest such
    problem after hypothesis's shrinking. Hypothesis's files (its example database included) go
    to ``database``, a folder of the user's, never into the package; without it nothing is
    stored."""
    import random

    from hypothesis import HealthCheck, Phase, find, given, settings
    from hypothesis import seed as seed_for
    from hypothesis.configuration import set_hypothesis_home_dir, storage_directory
    from hypothesis.database import DirectoryBasedExampleDatabase
    from hypothesis.errors import NoSuchExample

    def misses(problem: Any) -> bool:
        value = margin(problem)
        return value is not None and value < -tolerance

    previous_home = storage_directory(intent_to_write=False).home_directory
    if database:
        set_hypothesis_home_dir(database)
    config = settings(
        max_examples=examples,
        deadline=None,
        database=DirectoryBasedExampleDatabase(database) if database else None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
    )
    margins: list[float] = []
    undecided = 0
    missed: list[Any] = []

    @seed_for(seed)
    @config
    @given(problems)
    def run(problem: Any) -> None:
        nonlocal undecided
        value = margin(problem)
        if value is None:
            undecided += 1
            return
        margins.append(value)
        if value < -tolerance:
            missed.append(problem)

    smallest = None
    try:
        run()
        if missed:
            try:
                smallest = find(
                    problems,
                    misses,
                    random=random.Random(seed),
                    settings=settings(
                        config,
                        max_examples=max(examples, 20),
                        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
                    ),
                )
            except NoSuchExample:
                smallest = missed[0]
    finally:
        set_hypothesis_home_dir(previous_home)
    return {
        "examples": len(margins) + undecided,
        "undecided": undecided,
        "margins": margins,
        "misses": len(missed),
        "missed": missed,
        "smallest": smallest,
    }
