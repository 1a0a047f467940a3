"""The options of a sampling run, in three groups: the grid, the model wrapper, the noise.

``sample(model, x, schedule, method, grid=Grid(...), wrapper=Wrapper(...), noise=Noise(...))``
takes them grouped; each group is validated once, where it is made. The same fields are also
accepted as plain keywords (``sample(..., steps=10, eta=0.5)``, k-diffusion's convention), which
:func:`group_options` sorts into the groups; a field given both ways, or a keyword that belongs
to no group, is refused by name.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from phiforge.runtime.adaptive import Adaptive
from phiforge.runtime.checks import (
    check_callable,
    check_flag,
    check_integer,
    check_mapping,
    check_nonnegative,
    check_real,
)
from phiforge.runtime.errors import InputError
from phiforge.runtime.models import Guidance
from phiforge.runtime.restart import Restart
from phiforge.runtime.step_plan import ALLOCATIONS

__all__ = ["MAX_STEPS", "Grid", "Noise", "Wrapper", "group_options"]

MAX_STEPS = 1_000_000  # the most steps (or model calls) one run may ask for


def _check_text(name: str, value: Any) -> None:
    """The value of an option chosen by name is a string (its allowed names are checked where
    they are read)."""
    if not isinstance(value, str):
        raise InputError(f"parameter {name!r} must be a string, got {value!r}")


@dataclass(frozen=True)
class Grid:
    """Where the run steps. Exactly one of ``nfe`` (a budget spent exactly), ``steps``,
    ``sigmas`` (descending sigma~ = sigma/alpha, may end in 0; 2-D: one row per sample) or
    ``timesteps`` (descending schedule times; 2-D likewise), unless a ``restart`` preset brings
    its grid or ``adaptive`` chooses the steps; ``step_schedule``, ``t_start``, ``t_end`` and
    ``rho`` place ``nfe``/``steps`` points; ``warmup``, ``lower_order_final``,
    ``final_denoise`` and ``allocation`` shape the first and last steps and single-step
    budgets."""

    nfe: int | None = None
    steps: int | None = None
    step_schedule: str = "logsnr"
    t_start: float | None = None
    t_end: float | None = None
    rho: float = 7.0
    sigmas: Any = None
    timesteps: Any = None
    warmup: str = "lower-order"
    lower_order_final: bool = False
    final_denoise: bool = False
    allocation: str = "greedy"
    restart: Restart | str | None = None
    adaptive: Adaptive | bool | None = None

    def __post_init__(self) -> None:
        for name in ("nfe", "steps"):
            value = getattr(self, name)
            if value is not None and not (
                isinstance(value, numbers.Integral)
                and not isinstance(value, bool)
                and 1 <= value <= MAX_STEPS
            ):
                raise InputError(
                    f"parameter {name!r} must be a positive integer (at most {MAX_STEPS}), "
                    f"got {value!r}"
                )
        for name in ("t_start", "t_end"):
            if getattr(self, name) is not None:
                check_real(name, getattr(self, name))
        rho = check_real("rho", self.rho)
        if not (math.isfinite(rho) and rho > 0):
            raise InputError(f"parameter 'rho' must be a finite positive number, got {self.rho!r}")
        for name in ("sigmas", "timesteps"):
            if isinstance(getattr(self, name), str | bytes | Mapping):
                raise InputError(
                    f"parameter {name!r} must be a sequence of numbers (1-D) or one row per "
                    f"sample (2-D), got {getattr(self, name)!r}"
                )
        for name in ("step_schedule", "warmup", "allocation"):
            _check_text(name, getattr(self, name))
        if self.allocation not in ALLOCATIONS:  # refused even where no budget is allocated
            raise InputError(
                f"parameter 'allocation' must be one of {', '.join(ALLOCATIONS)}, "
                f"got {self.allocation!r}"
            )
        check_flag("lower_order_final", self.lower_order_final)
        check_flag("final_denoise", self.final_denoise)
        if not (self.adaptive is None or isinstance(self.adaptive, Adaptive)):
            check_flag("adaptive", self.adaptive)


@dataclass(frozen=True)
class Wrapper:
    """How the model is called and read: ``model(x, t, **model_kwargs)`` returns the ``output``
    type (noise, data, v, score, flow, edm), converted once to the data prediction, with
    classifier-free ``guidance`` and ``thresholding``; ``prediction`` ('data' or 'noise') picks
    the canonical form (default: the method's); ``dtype`` the state's."""

    output: str = "noise"
    prediction: str | None = None
    dtype: torch.dtype | None = None
    guidance: Guidance | float | None = None
    thresholding: str | Callable[[torch.Tensor], torch.Tensor] | None = None
    model_kwargs: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        _check_text("output", self.output)
        if not (
            self.dtype is None
            or (isinstance(self.dtype, torch.dtype) and self.dtype.is_floating_point)
        ):
            raise InputError(
                "parameter 'dtype' must be a floating-point torch.dtype (torch.float64, "
                f"torch.float32, torch.float16, torch.bfloat16), got {self.dtype!r}"
            )
        check_mapping("model_kwargs", self.model_kwargs, "the model's keyword arguments")
        if self.prediction not in (None, "data", "noise"):
            raise InputError(
                f"parameter 'prediction' must be 'data' or 'noise', got {self.prediction!r}"
            )


@dataclass(frozen=True)
class Noise:
    """The noise of stochastic methods and Restart: ``eta`` (0: the probability-flow ODE, 1: the
    reverse SDE and the default; given > 0 to a deterministic method it is refused),
    ``s_noise`` (a scale on every draw), ``options`` (a SEEDS method's nodes, e.g. r, r1, r2);
    draws from ``noise_sampler(sigma, sigma_next)``, else per-sample ``seeds``, else
    ``generator``."""

    eta: float | None = None  # the method's default: 1 for stochastic methods
    s_noise: float = 1.0
    options: Mapping[str, float] | None = None
    noise_sampler: Callable[[float, float], torch.Tensor] | None = None
    generator: torch.Generator | None = None
    seeds: Sequence[int] | None = None

    def __post_init__(self) -> None:
        if self.eta is not None:
            check_nonnegative("eta", self.eta)
        check_nonnegative("s_noise", self.s_noise)
        check_mapping("options", self.options, "numbers")
        for key, value in (self.options or {}).items():
            check_real(f"options[{key!r}]", value)
        check_callable("noise_sampler", self.noise_sampler, "a function (sigma, sigma_next)")
        if self.generator is not None and not isinstance(self.generator, torch.Generator):
            raise InputError(
                f"parameter 'generator' must be a torch.Generator, got {self.generator!r}"
            )
        if self.seeds is not None:
            seeds = self.seeds
            if isinstance(seeds, torch.Tensor):
                seeds = seeds.tolist() if seeds.ndim == 1 else None
            if not isinstance(seeds, Sequence) or isinstance(seeds, str | bytes):
                raise InputError(
                    f"parameter 'seeds' must be a sequence of integers (one per sample), "
                    f"got {self.seeds!r}"
                )
            for seed in seeds:
                check_integer("seeds", seed, 0, 2**64 - 1)


GROUPS: dict[str, type] = {"grid": Grid, "wrapper": Wrapper, "noise": Noise}
_FIELDS = {f.name: group for group, kind in GROUPS.items() for f in dataclasses.fields(kind)}


def group_options(
    grid: Grid | None, wrapper: Wrapper | None, noise: Noise | None, loose: Mapping[str, Any]
) -> tuple[Grid, Wrapper, Noise]:
    """The three groups, with the plain keywords ``loose`` sorted into them."""
    given = {"grid": grid, "wrapper": wrapper, "noise": noise}
    for name, group in given.items():
        if group is not None and not isinstance(group, GROUPS[name]):
            raise InputError(
                f"parameter {name!r} must be a {GROUPS[name].__name__}, got {type(group).__name__}"
            )
    fields: dict[str, dict[str, Any]] = {name: {} for name in GROUPS}
    for key, value in loose.items():
        group = _FIELDS.get(key)
        if group is None:
            raise InputError(
                f"unknown parameter {key!r}; sample() takes grid=, wrapper=, noise=, callback, "
                f"progress, return_info, capture, check_every and the fields of the groups: "
                f"{', '.join(sorted(_FIELDS))}"
            )
        if given[group] is not None:
            raise InputError(
                f"parameter {key!r} is a field of {group}=: give it there or as a keyword, not both"
            )
        fields[group][key] = value
    return tuple(  # type: ignore[return-value]
        given[name] if given[name] is not None else GROUPS[name](**fields[name]) for name in GROUPS
    )
