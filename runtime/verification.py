"""Convergence studies: observed order and numerical defect of generated methods.

A problem is a data distribution with an exact denoiser (:mod:`phiforge.runtime.denoisers`), a
noise schedule, an interval and a batch of starting points; its reference is the exact ODE
solution (Gaussian data) or a high-accuracy one (scipy's DOP853 on dy/dlambda = -y + D(y) in
the variance-exploding variable, rtol = atol = 1e-12, its accuracy estimated against a second
solve at 1e-10). The error of a run is the defect of spec-dpmsolver-res §7.9: the mean over the
batch of the RMS over dimensions of x - x_ref at the end.

The observed order is the least-squares slope of log(error) against log(steps) over the
asymptotic range: the finest ``fit_points`` step counts whose errors are at least 100 times the
reference's accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from phiforge.derive.convergence import (
    EXTENSION_FLOOR,
    extend_while_rising,
    local_orders,
    observed_order,
    still_rising,
)
from phiforge.runtime.checks import check_seed
from phiforge.runtime.denoisers import GaussianDenoiser, builtin_denoiser
from phiforge.runtime.driver import sample
from phiforge.runtime.errors import InputError
from phiforge.runtime.schedules import NoiseSchedule, noise_schedule
from phiforge.runtime.step_plan import method_kind
from phiforge.runtime.stepping import load_method

__all__ = [
    "PROBLEMS",
    "MethodStudy",
    "Problem",
    "builtin_problem",
    "covariance_root",
    "defect",
    "defect_tensor",
    "explore",
    "frechet_features",
    "frechet_tensor",
    "gaussian_problem",
    "moments_root",
    "observed_order",
    "start_defects",
    "study_method",
]

PROBLEMS = ("gaussian", "gmm", "empirical", "network", "unet")
#: problems whose reference is a fine solve (a float32 network: DOP853 at rtol 1e-12 would
#: resolve the model's rounding, at thousands of network calls)
_FINE_SOLVE = {"unet": ("res_3m_pc", 512)}
#: what a built-in problem's data are, where not the digits
_DATA = {"unet": "32 x 32 RGB image patches (U-Net)"}


@dataclass
class Problem:
    """A sampling problem with a reference solution at ``t_end``."""

    name: str
    denoiser: Any
    schedule: NoiseSchedule
    x_start: torch.Tensor
    t_start: float
    t_end: float
    reference_solver: tuple[str, int] | None = None  # (method, steps); None: exact or DOP853
    step_schedule: str = "logsnr"  # how steps/nfe points are placed (runtime.timesteps)
    data: str = "digits data"  # what the denoiser's distribution is, in words
    reference: torch.Tensor = field(init=False)
    reference_accuracy: float = field(init=False)

    def __post_init__(self) -> None:
        self.reference, self.reference_accuracy = self._solve_reference()

    def _solve_reference(self) -> tuple[torch.Tensor, float]:
        lam0, lam1 = float(self.schedule.lam(self.t_start)), float(self.schedule.lam(self.t_end))
        alpha0, sigma0 = self.schedule.alpha_sigma_of_lam(lam0)
        alpha1, sigma1 = self.schedule.alpha_sigma_of_lam(lam1)
        y0 = self.x_start / alpha0  # the variance-exploding variable x~ = x/alpha
        if isinstance(self.denoiser, GaussianDenoiser):
            exact = self.denoiser.flow(y0, sigma0 / alpha0, sigma1 / alpha1)
            return alpha1 * exact, 0.0
        if self.reference_solver is not None:  # its accuracy: against half the steps
            method, steps = self.reference_solver
            fine, _ = self.run(method, steps=steps)
            coarse, _ = self.run(method, steps=steps // 2)
            return fine, defect(coarse, fine)
        fine = self._dop853(y0, lam0, lam1, 1e-12)
        coarse = self._dop853(y0, lam0, lam1, 1e-10)
        return alpha1 * fine, defect(alpha1 * coarse, alpha1 * fine)

    def _dop853(self, y0: torch.Tensor, lam0: float, lam1: float, tol: float) -> torch.Tensor:
        from scipy.integrate import solve_ivp

        shape = y0.shape

        def rhs(lam: float, y: np.ndarray) -> np.ndarray:
            state = torch.from_numpy(y).reshape(shape)
            return (self.denoiser(state, math.exp(-lam)) - state).reshape(-1).numpy()

        solution = solve_ivp(
            rhs, (lam0, lam1), y0.reshape(-1).double().numpy(), method="DOP853", rtol=tol, atol=tol
        )
        if not solution.success:
            raise RuntimeError(f"reference solve failed: {solution.message}")
        return torch.from_numpy(solution.y[:, -1].copy()).reshape(shape)

    def run(self, method: str, **options: Any) -> tuple[torch.Tensor, int]:
        """The method's end state and NFE (``steps=`` or ``nfe=`` in options)."""
        x, info = sample(
            self.denoiser,
            self.x_start,
            self.schedule,
            method,
            output="edm",
            t_start=self.t_start,
            t_end=self.t_end,
            return_info=True,
            **({"step_schedule": self.step_schedule} | options),
        )
        return x, info.nfe


def start_defects(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """||x_b - x_ref,b||_2 / sqrt(d) for every start b of the batch (float64, shape [batch]):
    the RMS error that :func:`defect_tensor` averages."""
    diff = (x - reference).reshape(x.shape[0], -1).double()
    return diff.pow(2).mean(1).sqrt()


def defect_tensor(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """mean_b ||x_b - x_ref,b||_2 / sqrt(d) (spec-dpmsolver-res §7.9, our operationalisation),
    as a 0-d float64 tensor (differentiable: runtime.fitted minimises it)."""
    return start_defects(x, reference).mean()


def defect(x: torch.Tensor, reference: torch.Tensor) -> float:
    """:func:`defect_tensor` as a float."""
    return float(defect_tensor(x, reference))


def frechet_tensor(
    samples: torch.Tensor, mean: torch.Tensor, covariance_root: torch.Tensor
) -> torch.Tensor:
    """|m - mean|^2 + tr(C + R^2 - 2 (R C R)^{1/2}): the Frechet distance between the Gaussian
    fit (m, C) of ``samples`` (rows) and N(mean, R^2), R = ``covariance_root`` symmetric
    (Dowson & Landau 1982; differentiable in the samples: runtime.fitted minimises it,
    bench/distribution_vs_nfe.py measures with it)."""
    flat = samples.reshape(samples.shape[0], -1).double()
    m = flat.mean(0)
    c = torch.cov(flat.T).reshape(flat.shape[1], flat.shape[1])
    inner = torch.linalg.eigvalsh(covariance_root @ c @ covariance_root)
    return (
        (m - mean).pow(2).sum()
        + torch.trace(c)
        + covariance_root.pow(2).sum()
        - 2 * inner.clamp_min(1e-300).sqrt().sum()
    )


def covariance_root(covariance: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a covariance matrix (eigenvalues below 0 read as 0)."""
    values, vectors = torch.linalg.eigh(covariance.double())
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def moments_root(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and the symmetric square root of the covariance of ``samples`` (rows)."""
    flat = samples.reshape(samples.shape[0], -1).double()
    dim = flat.shape[1]
    return flat.mean(0), covariance_root(torch.cov(flat.T).reshape(dim, dim))


#: the side of the square tiles whose mean colours are an image's Frechet features
FEATURE_BLOCK = 8
#: the most values per sample whose covariance a Frechet distance estimates directly
FRECHET_DIRECT = 256


def block_colours(images: torch.Tensor, image_shape: Sequence[int]) -> torch.Tensor:
    """The mean colour of every FEATURE_BLOCK x FEATURE_BLOCK tile of each image: rows of
    ``images`` (batch, C * H * W, or batch-first in ``image_shape``, (C, H, W) or (H, W)) ->
    (batch, C * H/8 * W/8), in float64. A linear map, so differentiable, and fixed: the feature
    space of the U-Net's distribution distances (48 features for 3 x 32 x 32 patches;
    docs/bench-unet.md)."""
    channels, height, width = (1, *image_shape) if len(image_shape) == 2 else image_shape
    if height % FEATURE_BLOCK or width % FEATURE_BLOCK:
        raise InputError(
            f"parameter 'image_shape': block colours need sides divisible by {FEATURE_BLOCK}, "
            f"got {height} x {width}"
        )
    tiles = torch.nn.functional.avg_pool2d(
        images.reshape(-1, channels, height, width).double(), FEATURE_BLOCK
    )
    return tiles.reshape(tiles.shape[0], -1)


def frechet_features(denoiser: Any) -> Any:
    """The feature map in which a Frechet distance of ``denoiser``'s samples is taken: the
    block colours (:func:`block_colours`) for an image denoiser (one with an ``image_shape``)
    of more than FRECHET_DIRECT values, whose covariance no affordable sample set estimates;
    None (the values themselves) otherwise (the 64 values of the digits)."""
    shape = getattr(denoiser, "image_shape", None)
    if shape is None or math.prod(shape) <= FRECHET_DIRECT:
        return None

    def features(images: torch.Tensor) -> torch.Tensor:
        return block_colours(images, shape)

    features.__name__ = f"block_colours_{FEATURE_BLOCK}"
    return features


def builtin_problem(
    name: str,
    batch: int = 16,
    seed: int = 0,
    schedule: str = "vp-linear",
    t_start: float = 1.0,
    t_end: float = 1e-3,
) -> Problem:
    """Digits data as a Gaussian (exact flow), a 10-component mixture, the empirical
    distribution, or the network trained on the mixture (references: closed form or DOP853 at
    rtol 1e-12); or ``unet``, the U-Net on 32 x 32 RGB patches (reference: res_3m_pc on 512
    lambda-uniform steps, its accuracy the defect of 256 steps). VP linear schedule from t = 1
    to 1e-3 (lambda from -5.02 to 4.56), x_T ~ N(0, sigma_T^2 I)."""
    if isinstance(name, str) and ":" in name:
        return gaussian_problem(**problem_parameters(name))
    if name not in PROBLEMS:
        raise InputError(
            f"parameter 'problem' must be one of {', '.join(PROBLEMS)} (gaussian also as "
            f"{GAUSSIAN_SPEC}), got {name!r}"
        )
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InputError(f"parameter 'batch' must be a positive integer, got {batch!r}")
    seed = check_seed(seed)
    denoiser = builtin_denoiser(name)
    generator = torch.Generator().manual_seed(int(seed))
    sched = noise_schedule(schedule)
    x_start = torch.randn(batch, denoiser.dim, dtype=torch.float64, generator=generator)
    x_start = x_start * float(sched.sigma(t_start))
    data = _DATA.get(name, "digits data")
    return Problem(name, denoiser, sched, x_start, t_start, t_end, _FINE_SOLVE.get(name), data=data)


#: a drawn problem's parameters, as ``phiforge verify --problem`` takes them
GAUSSIAN_SPEC = "gaussian:mean=M,std=S,start=X,schedule=NAME,spacing=KIND"
#: the finest sweep of a drawn problem whose local orders still rise (``study_method``)
EXPLORE_EXTEND_TO = 4096
#: schedules whose own start is pure noise (lambda = -inf) start drawn problems here instead
_FINITE_ENDS = {"flow": (0.99, 1e-3)}


def problem_parameters(spec: str) -> dict[str, Any]:
    """The parameters of a problem spec ``gaussian:mean=M,std=S,start=X,schedule=NAME,
    spacing=KIND`` (every key optional: mean 0, std 0.5, start 1, vp-linear, logsnr)."""
    from phiforge.runtime.schedules import SCHEDULES
    from phiforge.runtime.timesteps import STEP_SCHEDULES

    kind, _, text = str(spec).partition(":")
    if kind != "gaussian":
        raise InputError(
            f"parameter 'problem': parameters apply to gaussian ({GAUSSIAN_SPEC}), got {kind!r}"
        )
    values: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key not in ("mean", "std", "start", "schedule", "spacing") or key in values:
            raise InputError(f"parameter 'problem': expected {GAUSSIAN_SPEC}, got {spec!r}")
        if key in ("schedule", "spacing"):
            allowed = SCHEDULES if key == "schedule" else STEP_SCHEDULES
            if value not in allowed:
                raise InputError(
                    f"parameter 'problem': {key} must be one of {', '.join(allowed)}, got {value!r}"
                )
            values[key] = value
            continue
        try:
            number = float(value)
        except ValueError:
            message = f"parameter 'problem': {key} must be a number, got {value!r}"
            raise InputError(message) from None
        if not math.isfinite(number) or (key == "std" and number <= 0):
            bound = "a positive number" if key == "std" else "a finite number"
            raise InputError(f"parameter 'problem': {key} must be {bound}, got {value!r}")
        values[key] = number
    return values


def gaussian_problem(
    mean: float = 0.0,
    std: float = 0.5,
    start: float = 1.0,
    schedule: str = "vp-linear",
    spacing: str = "logsnr",
) -> Problem:
    """One-dimensional data N(mean, std^2) started at x_T = start * sigma_T, between the
    schedule's own ends (flow matching: t = 0.99 to 1e-3), steps placed by ``spacing``: the
    probability-flow ODE's exact solution (:meth:`GaussianDenoiser.flow`) is the reference, so
    the observed order depends on nothing but the method, the schedule and the grid. The
    problems ``verify --explore`` draws, and ``--problem gaussian:...`` reproduces."""
    values = problem_parameters(
        f"gaussian:mean={mean},std={std},start={start},schedule={schedule},spacing={spacing}"
    )
    sched = noise_schedule(values["schedule"])
    t_start, t_end = _FINITE_ENDS.get(values["schedule"], (sched.t_start, sched.t_end))
    denoiser = GaussianDenoiser(
        torch.tensor([values["mean"]]), torch.tensor([[values["std"] ** 2]])
    )
    x_start = torch.tensor([[values["start"] * float(sched.sigma(t_start))]], dtype=torch.float64)
    spec = ",".join(f"{key}={value}" for key, value in values.items())
    return Problem(
        f"gaussian:{spec}", denoiser, sched, x_start, t_start, t_end,
        step_schedule=values["spacing"], data=f"N({values['mean']}, {values['std']}^2) data",
    )  # fmt: skip


def explore(
    method: str, examples: int, seed: int = 0, database: str | None = None, registry: Any = None
) -> dict[str, Any]:
    """Property-test ``method``'s claimed order on ``examples`` random one-dimensional Gaussian
    problems (:func:`gaussian_problem`: mean in [-2, 2], std in [0.05, 1.5], start in
    [-2.5, 2.5], every noise schedule and step spacing, a doubling sweep from 32, 64 or 128
    steps, extended like ``verify``'s up to 4096 steps while its local orders still rise), drawn
    by hypothesis from ``seed`` (:func:`~phiforge.derive.convergence.explore_margins`): observed
    minus claimed order per problem (None when every error is at round-off), how many misses
    were still pre-asymptotic at the finest sweep (``still_rising``), and the smallest problem
    after shrinking that shows an order below the claim minus 0.2, as a problem spec, steps and
    the study's verdict. Hypothesis's files go to ``database``."""
    from hypothesis import strategies as st

    from phiforge.derive.convergence import explore_margins
    from phiforge.runtime.schedules import SCHEDULES
    from phiforge.runtime.timesteps import STEP_SCHEDULES

    module = load_method(method, registry)
    claimed = int(module.CONVERGENCE_ORDER)

    def number(low: float, high: float) -> Any:
        return st.floats(min_value=low, max_value=high).map(lambda v: round(v, 3))

    problems = st.tuples(
        number(-2.0, 2.0),
        number(0.05, 1.5),
        number(-2.5, 2.5),
        st.sampled_from(list(SCHEDULES)),
        st.sampled_from(list(STEP_SCHEDULES)),
        st.sampled_from([32, 64, 128]),
    )

    verdicts: dict[tuple, str] = {}

    def margin(drawn: tuple) -> float | None:
        *parameters, first = drawn
        study = study_method(
            gaussian_problem(*parameters),
            module,
            steps=[first, 2 * first, 4 * first],
            nfe_budgets=(),
            extend_to=EXPLORE_EXTEND_TO,
        )
        if not all(math.isfinite(e) for e in study.errors):
            return -math.inf
        if study.observed_order is None:
            return None
        verdicts[drawn] = study.verdict
        return study.observed_order - claimed

    report = explore_margins(problems, margin, examples, seed, database)
    smallest = report.pop("smallest")
    if smallest is not None:
        *parameters, first = smallest
        smallest = {
            "problem": gaussian_problem(*parameters).name,
            "steps": [first, 2 * first, 4 * first],
            "extend_to": EXPLORE_EXTEND_TO,
            "verdict": verdicts.get(smallest, ""),
        }
    missed = report.pop("missed")
    rising = sum(verdicts[drawn].startswith("not asymptotic") for drawn in missed)
    return {
        "name": module.NAME,
        "claimed": claimed,
        **report,
        "still_rising": rising,
        "smallest": smallest,
    }


#: a study agrees when its observed order reaches the claimed one within this
AGREE = 0.15


@dataclass
class MethodStudy:
    name: str
    claimed_order: int
    scalar_stiff_order: int
    nfe_per_step: int
    steps: list[int]
    nfe: list[int]
    errors: list[float]
    observed_order: float | None
    defect_nfe: list[int]
    defects: list[float]
    extended: bool = False  # steps were added to the sweep to leave the pre-asymptotic range
    floor: float = 0.0  # the reference's accuracy
    kind: str = ""  # single-step, multistep, ... (step_plan.method_kind), for grouping

    @property
    def agrees(self) -> bool | None:
        """The observed order reaches the claimed one (within 0.15)."""
        if self.observed_order is None:
            return None
        return self.observed_order >= self.claimed_order - AGREE

    @property
    def local_orders(self) -> list[float]:
        """The slopes between consecutive points of the sweep."""
        return local_orders(self.steps, self.errors)

    @property
    def rising(self) -> bool:
        """Still in the pre-asymptotic range (:func:`~phiforge.derive.convergence.still_rising`)."""
        return still_rising(self.steps, self.errors)

    @property
    def verdict(self) -> str:
        """'yes', or why not: still pre-asymptotic at the finest N (with the local orders), or
        below the claim with local orders that do not rise."""
        if self.agrees is None:
            return "no order: the errors are at the reference's floor"
        local = ", ".join(f"{v:.2f}" for v in self.local_orders[-3:])
        if self.agrees:
            return f"yes (sweep extended to N={self.steps[-1]})" if self.extended else "yes"
        if self.rising:
            bound = (
                f"; the reference's accuracy ({self.floor:.1e}) bounds a finer sweep"
                if self.errors[-1] <= EXTENSION_FLOOR * self.floor
                else "; a finer sweep settles it"
            )
            return (
                f"not asymptotic yet at N={self.steps[-1]}: local orders {local} still rising "
                f"towards {self.claimed_order}{bound}"
            )
        return f"NO: local orders {local} do not rise to {self.claimed_order}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "agrees": self.agrees,
            "kind": self.kind,
            "local_orders": self.local_orders,
            "verdict": self.verdict,
        }


def study_method(
    problem: Problem,
    method: str,
    steps: Sequence[int] = (8, 16, 32, 64, 128, 256),
    nfe_budgets: Sequence[int] = (5, 6, 8, 10, 12, 15, 20, 30, 50),
    warmup: str = "order-preserving",
    fit_points: int = 3,
    extend_to: int | None = None,
) -> MethodStudy:
    """Errors over a step sweep (uniform in lambda) and defects over NFE budgets. With
    ``extend_to``, a method below its claim whose local orders still rise gets the sweep
    doubled (up to N = ``extend_to``) until it agrees or its local orders settle."""
    module = load_method(method)
    errors, nfes = [], []
    for n in steps:
        x, used = problem.run(method, steps=int(n), warmup=warmup)
        errors.append(defect(x, problem.reference))
        nfes.append(used)
    budgets, defects = [], []
    for budget in nfe_budgets:
        try:
            x, used = problem.run(method, nfe=int(budget))
        except InputError:  # a budget below the method's minimum (e.g. 5 for a 5-stage method)
            continue
        budgets.append(used)
        defects.append(defect(x, problem.reference))
    steps = [int(n) for n in steps]
    study = MethodStudy(
        name=module.NAME,
        claimed_order=int(module.CONVERGENCE_ORDER),
        scalar_stiff_order=int(module.ORDERS["scalar"]["stiff"]),
        nfe_per_step=int(module.NFE_PER_STEP),
        steps=steps,
        nfe=nfes,
        errors=errors,
        observed_order=observed_order(steps, errors, problem.reference_accuracy, fit_points),
        defect_nfe=budgets,
        defects=defects,
        floor=problem.reference_accuracy,
        kind=method_kind(module),
    )
    if extend_to is not None:

        def error_at(n: int) -> float:
            x, used = problem.run(method, steps=n, warmup=warmup)
            nfes.append(used)
            return defect(x, problem.reference)

        study.extended = extend_while_rising(
            steps,
            errors,
            error_at,
            lambda observed: observed is None or observed >= study.claimed_order - AGREE,
            extend_to,
            problem.reference_accuracy,
            fit_points,
        )
        study.observed_order = observed_order(steps, errors, problem.reference_accuracy, fit_points)
    return study
