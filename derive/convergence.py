"""Orders of convergence from an error sweep: the one fit used by every study (the diffusion
problems of ``runtime.verification`` and the stiff PDEs of ``derive.stiff_pde``)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["local_orders", "observed_order"]


def observed_order(
    steps: Sequence[int], errors: Sequence[float], floor: float = 0.0, fit_points: int = 3
) -> float | None:
    """Least-squares slope of -log(error) against log(steps) over the finest ``fit_points``
    errors above max(100 floor, 1e-13); None without two distinct step counts there."""
    usable = [(n, e) for n, e in zip(steps, errors, strict=True) if e > max(100 * floor, 1e-13)]
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
