"""Multistep solvers whose weights and steps are fitted to one model, under order constraints.

At a budget of about ten evaluations no sampler is in its asymptotic range: the order of a
method says little, and the error depends on the particular model. A fitted solver keeps the
structure of the exponential Adams predictor-corrector pair res_km_pc (UniPC's scheme with
exact phi weights, spec-dpmsolver-res §4) and fits, on pilot starting points with reference
solutions, what the order conditions leave free.

Equation (data prediction, DESIGN.md's canonical form with L = -1): in lam = -log sigma~,

    x~'(lam) = -x~ + D(x~, e^{-lam}),

D the denoiser (x0 prediction). Step n goes from lam_n to lam_{n+1} = lam_n + h with the values
D_n, D_{n-1}, ... at the earlier grid points (PEC, one evaluation per step):

    predict   x~_{n+1} = e^{-h} x~_n + sum_m w_{n,m} D_{n-m}
    correct   x~_{n+1} = e^{-h} x~_n + c_{n,0} D_{n+1} + sum_m c_{n,m+1} D_{n-m}

(the evaluation D_{n+1} at the prediction corrects it and starts the next step; the last step is
not corrected). With tau_m the points in units of h relative to lam_n, the exponential Adams
weights integrate the interpolant of the values exactly,

    w = h V(tau)^{-1} mu,   V_{jm} = tau_m^j,
    mu_j = int_0^1 e^{-h (1 - s)} s^j ds = j! phi_{j+1}(-h),

so with k = min(n + 1, ``steps``) values (and the new one for the corrector) they are res_km_pc's
weights, its lower-order starters included (tests compare them with the generated modules).
A fitted solver adds to them any vector in the null space of the first ``order`` rows of V over
up to ``history`` values,

    w = w_Adams + P u,   P = I - V_q^T (V_q V_q^T)^{-1} V_q,   (V_q)_{jm} = tau_m^j, j < order,

so each step still integrates D exactly when D is a polynomial of degree < ``order`` in lam
(local error O(h^(order+1)) for smooth D), and fits the free directions u. The grid is
lam = lam_0 + (lam_end - lam_0) cumsum(softmax(0, theta)) (monotone with fixed ends, as in
:mod:`phiforge.runtime.step_search`; every step kept above 1e-4 of the span).
:func:`fit_solver` minimises

    log mean_b RMS_d(x~_b(end) - reference_b)

over u (and theta unless the grid is given) by L-BFGS, differentiating through the model with
autograd; ``fit_weights=False`` fits the grid alone (res_km_pc's weights, i.e. UniPC's scheme on
the best grid this search finds: the fair baseline for the fitted weights).

Free solvers (``free=True``, stored with order 0). The same loop with no constraint at all:
every weight over up to ``history`` values (at most 16) is free, and so is the weight of the
starting state x~_n in the predictor and in the corrector (``state``; e^{-H} in every other
solver, the exact decay of the linear part). Such a solver no longer integrates the linear part
exactly; it is the general linear one-evaluation-per-step scheme on its grid, fitted to the
model. :mod:`phiforge.runtime.fitted_free` builds one from a teacher's path (greedy least
squares, grid search) before the end-to-end fit.

Fitting solver coefficients and steps to teacher solutions is the idea of S4S (Frankel et al.,
"S4S: Solving for a Diffusion Model Solver", ICML 2025) and, for the steps alone, LD3 (Tong et
al. 2024); DPM-Solver-v3 (Zheng et al. 2023) fits model statistics instead. What is phiforge's
own here is the parametrisation: every fitted step keeps the exactness of order ``order`` and
starts from the derived weights. The fit is to one model, one NFE and one pair of end noise
levels: judge it on starting points it has not seen (``bench/fitted_solver.py`` does).

Stochastic solvers (``eta > 0``). The eta-family of reverse dynamics (spec-seeds-restart §1.2,
data prediction) has the exact step

    x~_{n+1} = e^{-(1+eta) h} x~_n + (1+eta) int_0^h e^{-(1+eta)(h-s)} D ds
               + sigma~_{n+1} sqrt(1 - e^{-2 eta h}) z_n,   z_n ~ N(0, I),

the noise term being SEEDS' exact one for a single stage (§2.3). In mu = (1+eta) lam the drift
is the ODE's above with the step H = (1+eta) h and the same point ratios tau, so the fitted
solver uses the weights of the module docstring with h replaced by H, and adds the exact noise
once per step (the corrector reuses its step's noise). A pathwise defect against a reference
would need the reference to share the noise path; the stochastic fit instead minimises the
Frechet distance between the Gaussian fits of the pilot outputs (fixed noise draws) and of a
reference sample set of the model's distribution (e.g. a fine ODE solve of the same starting
points), a weak-error objective on the first two moments:

    F = |m - m_ref|^2 + tr(C + C_ref - 2 (C_ref^{1/2} C C_ref^{1/2})^{1/2}).

``objective="frechet"`` is available for eta = 0 too.

Evaluation shift (``fit_shift``). A fitted solver may also call the model of step n at
lam_n + d_n instead of at its grid point lam_n, while its weights still integrate from the grid
(the "decoupled" evaluation times of LD3, Tong et al. 2024; the time-shift sampler of Li et al.
2024 moves them for exposure bias). The step then no longer uses D at the point its weights
assume, so its order constraints hold only for d_n = 0; the fit judges whether the freedom pays.
|d_n| <= MAX_SHIFT through d_n = MAX_SHIFT tanh(u_n / MAX_SHIFT), u_n the fitted unknown.

Noise amplitude (``fit_noise``). A fit may also scale step n's noise by a_n = e^(s_n) > 0,
the per-step counterpart of k-diffusion's ``s_noise`` (EDM's S_noise, Karras et al. 2022,
Algorithm 2), fitted with the rest; a_n = 1 is the exact noise above. A coarse step's drift
misses how the exact step's noise and drift interact, and its error in the output covariance
can be cheaper to correct with a_n than with the drift's free directions (measured in
docs/bench-distribution.md). The solver then no longer has the dynamics' exact noise; it keeps
its structure (one independent Gaussian per step, corrector reusing it).

Coupled reference (:func:`coupled_reference`). The noise of step n is the stochastic integral
e^{-(1+eta) lam_{n+1}} int sqrt(2 eta) e^{eta s} dW_s over [lam_n, lam_{n+1}] (its variance is
the one above), so it is a sum over any subdivision: with sub-steps [l_j, l_{j+1}] and their own
exact noises k_j = sigma~_{j+1} sqrt(1 - e^{-2 eta (l_{j+1} - l_j)}) zeta_j,

    sigma~_{n+1} sqrt(1 - e^{-2 eta h}) z_n = sum_j e^{-(1+eta)(lam_{n+1} - l_{j+1})} k_j,

and z_n so defined is exactly N(0, I) (the variances telescope). A fine solve on the sub-steps
driven by zeta and a coarse solver driven by these z_n then follow the same Brownian path: the
fine solve's samples are the reference, and the Frechet objective compares two sets whose
sampling noise is correlated, so part of it cancels (measured at NFE 10, eta 1, 4096 pilots:
the objective's value for the unfitted solver fell from 0.067 against the independent ODE
reference to 0.031 against the coupled one).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from phiforge.runtime.checks import (
    check_callable,
    check_integer,
    check_mapping,
    check_nonnegative,
    check_sigma_ends,
)
from phiforge.runtime.engine import Program, Report, execute
from phiforge.runtime.errors import InputError, ModelOutputError
from phiforge.runtime.manifest import check_path, content_hash, read_document, write_text
from phiforge.runtime.models import check_model_call
from phiforge.runtime.noise import gaussian_noise
from phiforge.runtime.phi import phi_all
from phiforge.runtime.plan import Builder
from phiforge.runtime.step_search import grid_lambdas, theta_of_sigmas
from phiforge.runtime.verification import defect_tensor, frechet_tensor, moments_root

__all__ = [
    "FittedSolver",
    "adams_weights",
    "coupled_reference",
    "fit_solver",
    "load_solver",
    "subdivide",
]

FORMAT_VERSION = 1
_DTYPE = torch.float64


def adams_weights(h: torch.Tensor, taus: torch.Tensor) -> torch.Tensor:
    """h V(tau)^{-1} mu: the weights of int_0^h e^{-(h - s)} p(s) ds over the values of p at
    lam_n + h tau_m (p the interpolant through them; module docstring)."""
    k = taus.shape[0]
    phis = phi_all(-h, k)
    moments = torch.stack([math.factorial(j) * phis[j + 1] for j in range(k)])
    vandermonde = torch.stack([taus**j for j in range(k)])
    return h * torch.linalg.solve(vandermonde, moments)


def _free_part(taus: torch.Tensor, u: torch.Tensor, order: int) -> torch.Tensor:
    """P u: the part of u that leaves sum_m w_m tau_m^j unchanged for j < order (all of u for a
    free solver, order 0)."""
    if order == 0:
        return u
    if order >= taus.shape[0]:
        return torch.zeros_like(u)
    constraints = torch.stack([taus**j for j in range(order)])
    gram = constraints @ constraints.T
    return u - constraints.T @ torch.linalg.solve(gram, constraints @ u)


MIN_STEP = 1e-4  # the smallest fitted step as a fraction of the log-SNR span (grid_lambdas)
MAX_HISTORY = 16  # the most values a fitted step may combine
MAX_SHIFT = 1.0  # the largest |d_n|, lam_n + d_n where step n's model is called (tanh-bounded)


def _sizes(nfe: int, history: int) -> list[tuple[int, int]]:
    """(predictor values, corrector values) of every step; the last step has no corrector."""
    return [
        (min(n + 1, history), min(n + 2, history + 1) if n < nfe - 1 else 0) for n in range(nfe)
    ]


def _weights(
    lams: torch.Tensor,
    u: torch.Tensor | None,
    steps: int,
    history: int,
    order: int,
    eta: float = 0.0,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Every step's predictor and corrector weights on the grid ``lams`` (module docstring;
    with ``eta`` the steps are H = (1 + eta) h)."""
    predictors, correctors, offset = [], [], 0
    for n, (kp, kc) in enumerate(_sizes(len(lams) - 1, history)):
        step = lams[n + 1] - lams[n]
        h = (1 + eta) * step
        k = min(n + 1, steps)
        points = torch.stack([(lams[n - m] - lams[n]) / step for m in range(kp)])
        base = torch.cat([adams_weights(h, points[:k]), torch.zeros(kp - k, dtype=_DTYPE)])
        if u is not None:
            base = base + _free_part(points, u[offset : offset + kp], order)
        offset += kp
        predictors.append(base)
        if kc:
            points = torch.cat([torch.ones(1, dtype=_DTYPE), points[: kc - 1]])
            base = torch.cat(
                [adams_weights(h, points[: k + 1]), torch.zeros(kc - k - 1, dtype=_DTYPE)]
            )
            if u is not None:
                base = base + _free_part(points, u[offset : offset + kc], order)
            offset += kc
            correctors.append(base)
    return predictors, correctors


def _state_weights(
    lams: torch.Tensor, v: torch.Tensor | None, eta: float = 0.0
) -> list[torch.Tensor]:
    """Every step's weights of its starting state x~_n: in the predictor and (but the last
    step) in the corrector, e^{-H} + v (H = (1 + eta) h; v the fitted offsets of a free solver,
    two per step and one for the last, or none: the exact e^{-H})."""
    decays = torch.exp(-(1 + eta) * (lams[1:] - lams[:-1]))
    pairs = torch.stack([decays, decays], 1).flatten()[:-1]
    weights = pairs if v is None else pairs + v
    return [weights[2 * n : 2 * n + 2] for n in range(len(decays))]


def _program(
    lams: torch.Tensor,
    predictors: list[torch.Tensor],
    correctors: list[torch.Tensor],
    eta: float = 0.0,
    stochastic: bool = False,
    amplitude: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    state: list[torch.Tensor] | None = None,
) -> Program:
    """The PEC loop of the module docstring as a program for the executor (x~ and the values
    D in its slots; the weights, the grid and the amplitudes stay tensors, so the program is
    differentiable in them). With ``stochastic`` each step draws its unit normal z_n, scaled by
    the exact noise scale and ``amplitude[n]`` when given (a_n of the module docstring); with
    ``shift`` the model of step n is called at lam_n + shift[n] (module docstring); ``state``:
    every step's weights of x~_n, predictor's and corrector's (:func:`_state_weights`; default
    the exact e^{-H})."""
    state_weights = _state_weights(lams, None, eta) if state is None else state
    builder = Builder(keep_all=True)
    state = builder.input()
    values: list[int] = []
    pending = None
    for n, weights in enumerate(predictors):
        denoised = builder.evaluate(state, lams[n] if shift is None else lams[n] + shift[n])
        if pending is not None:
            start, decay, corrector, kick = pending
            state = builder.combine(
                [*kick, (start, decay), *zip([denoised, *values], corrector, strict=False)]
            )
        builder.report(state, denoised, lams[n], lams[n + 1])  # the callback's x: step start
        values.insert(0, denoised)
        del values[MAX_HISTORY:]
        step = lams[n + 1] - lams[n]
        decay = state_weights[n][0]
        kick = []
        if eta > 0 and stochastic:
            scale = torch.exp(-lams[n + 1]) * torch.sqrt(-torch.expm1(-2 * eta * step))
            if amplitude is not None:
                scale = scale * amplitude[n]
            kick = [(builder.draw(lams[n], lams[n + 1]), scale)]
        if n < len(correctors):
            pending = (state, state_weights[n][1], correctors[n], kick)
        state = builder.combine([*kick, (state, decay), *zip(values, weights, strict=False)])
    return builder.finish([state])


def _run(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    lams: torch.Tensor,
    predictors: list[torch.Tensor],
    correctors: list[torch.Tensor],
    extra_args: dict[str, Any],
    callback: Callable[[dict[str, Any]], None] | None = None,
    eta: float = 0.0,
    noise: Callable[[int], torch.Tensor] | None = None,
    amplitude: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    state: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Run the solver's program (:func:`_program`) with the one executor; x is x~ at lam_0, the
    result x~ at lam_end. With ``eta`` > 0, ``noise(n)`` gives step n's unit normals z_n."""
    program = _program(
        lams, predictors, correctors, eta, noise is not None, amplitude, shift, state
    )
    steps = iter(range(len(predictors)))

    def evaluate(state: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        sigma = torch.exp(-lam).to(state.dtype).expand(state.shape[0])
        return model(state, sigma, **extra_args)

    def report(event: Report, buffer: list) -> None:
        callback(
            {
                "x": buffer[event.state],
                "i": event.step,
                "sigma": math.exp(-float(event.lam)),
                "denoised": buffer[event.denoised],
            }
        )

    (out,) = execute(
        program,
        [x],
        evaluate,
        noise=None if noise is None else lambda lam_a, lam_b: noise(next(steps)),
        on_report=None if callback is None else report,
    )
    return out


@dataclass(frozen=True)
class FittedSolver:
    """A fitted PEC multistep solver: its sigma~ grid (descending, ``nfe + 1`` values), every
    step's predictor weights (over D_n, D_(n-1), ...) and corrector weights (over D_(n+1),
    D_n, ...; none for the last step), the constraints it was fitted under, the noise of its
    dynamics (``eta``: 0 the probability-flow ODE, 1 the reverse SDE; module docstring), every
    step's noise amplitude a_n (``noise_scale``; None: the exact noise, a_n = 1), where every
    step calls the model (``shift``; None: at its grid point), every step's weights of its
    starting state x~_n in the predictor and the corrector (``state``, a free solver's, order
    0; None: the exact e^{-H}) and the fit's record (``info``: objective, pilot values before
    and after, iterations, seconds)."""

    sigmas: list[float]
    predictor: list[list[float]]
    corrector: list[list[float]]
    steps: int
    history: int
    order: int
    info: dict[str, Any] = field(default_factory=dict)
    eta: float = 0.0
    noise_scale: list[float] | None = None
    shift: list[float] | None = None
    state: list[list[float]] | None = None

    @property
    def nfe(self) -> int:
        return len(self.sigmas) - 1

    def sample(
        self,
        model: Callable[..., torch.Tensor],
        x: torch.Tensor,
        extra_args: dict[str, Any] | None = None,
        callback: Callable[[dict[str, Any]], None] | None = None,
        noise_sampler: Callable[[float, float], torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Solve from x at sigma~ = sigmas[0] to sigmas[-1], k-diffusion's convention:
        ``model(x, sigma_batch, **extra_args)`` returns the denoised x0, x is the state in the
        variance-exploding scale (x~ = x / alpha). ``nfe`` model evaluations. A stochastic
        solver (eta > 0) draws step n's unit normals from ``noise_sampler(sigma_n,
        sigma_(n+1))`` (k-diffusion's protocol, e.g. :mod:`phiforge.runtime.noise`), else from
        ``generator`` (else torch's global one)."""
        if not isinstance(x, torch.Tensor) or x.ndim < 1 or not torch.is_floating_point(x):
            raise InputError("parameter 'x' must be a floating-point batch tensor (batch first)")
        if not callable(model):
            raise InputError("parameter 'model' must be callable as model(x, sigma, **extra_args)")
        check_mapping("extra_args", extra_args, "the model's keyword arguments")
        check_model_call(model, extra_args, "model(x, sigma, **extra_args)")
        check_callable("callback", callback, "a function of one dict (called at every step)")
        check_callable("noise_sampler", noise_sampler, "a function (sigma, sigma_next)")
        if self.eta == 0 and (noise_sampler is not None or generator is not None):
            raise InputError(
                "parameters 'noise_sampler', 'generator' apply to a stochastic fitted solver "
                "(eta > 0); this one has eta = 0 (deterministic)"
            )
        lams = -torch.log(torch.tensor(self.sigmas, dtype=_DTYPE))
        predictors = [torch.tensor(w, dtype=_DTYPE) for w in self.predictor]
        correctors = [torch.tensor(w, dtype=_DTYPE) for w in self.corrector]
        if noise_sampler is None:
            noise_sampler = gaussian_noise(x, generator)

        def noise(n: int) -> torch.Tensor:
            return noise_sampler(self.sigmas[n], self.sigmas[n + 1])

        amplitude = None
        if self.noise_scale is not None:
            amplitude = torch.tensor(self.noise_scale, dtype=_DTYPE)
        shift = None if self.shift is None else torch.tensor(self.shift, dtype=_DTYPE)
        state = None
        if self.state is not None:
            state = [torch.tensor(pair, dtype=_DTYPE) for pair in self.state]
        with torch.no_grad():
            return _run(
                model, x, lams, predictors, correctors, dict(extra_args or {}), callback,
                self.eta, noise, amplitude, shift, state,
            )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        document = {"format": FORMAT_VERSION, **asdict(self)}
        for name in ("noise_scale", "shift", "state"):  # unused: the document of before them
            if document[name] is None:
                del document[name]
        document["hash"] = content_hash(document)
        return document

    def save(self, path: str | Path) -> Path:
        """Write the solver as JSON with its content hash (:func:`load_solver` checks it)."""
        path = check_path(path, "fitted solver")
        return write_text(path, json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")


def load_solver(path: str | Path) -> FittedSolver:
    """Read a solver written by :meth:`FittedSolver.save`, refusing a file edited by hand."""
    names = [f.name for f in dataclasses.fields(FittedSolver)]
    document = read_document(path, "fitted solver", FORMAT_VERSION, ("predictor", "sigmas"))
    fields = {k: v for k, v in document.items() if k not in ("format", "hash")}
    unknown = sorted(set(fields) - set(names))
    if unknown:
        raise InputError(f"{path} is not a fitted solver: unknown field(s) {', '.join(unknown)}")
    try:
        solver = FittedSolver(**fields)
    except TypeError as error:
        raise InputError(f"{path} is not a fitted solver: {error}") from None
    _check_solver(solver)
    return solver


def _numbers(value: Any) -> bool:
    """A list of finite numbers (not bools)."""
    return isinstance(value, list) and all(
        isinstance(a, int | float) and not isinstance(a, bool) and math.isfinite(a) for a in value
    )


def _check_fields(solver: FittedSolver) -> None:
    """Every field's type and range, before their sizes are compared (a file's JSON may hold
    anything)."""
    sigmas = solver.sigmas
    if not (
        _numbers(sigmas)
        and len(sigmas) >= 3
        and all(a > 0 for a in sigmas)
        and all(a > b for a, b in itertools.pairwise(sigmas))
    ):
        raise InputError(
            "fitted solver: 'sigmas' must be at least 3 finite numbers > 0, strictly "
            f"decreasing (nfe >= 2), got {sigmas!r}"
        )
    for name in ("predictor", "corrector"):
        rows = getattr(solver, name)
        if not (isinstance(rows, list) and all(_numbers(row) for row in rows)):
            raise InputError(
                f"fitted solver: {name!r} must be a list of lists of finite numbers (one per "
                f"step), got {rows!r}"
            )
    for name, least, most in (
        ("steps", 1, 8),
        ("history", solver.steps if isinstance(solver.steps, int) else 1, MAX_HISTORY),
        ("order", 0, solver.steps if isinstance(solver.steps, int) else 8),
    ):
        value = getattr(solver, name)
        if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
            raise InputError(
                f"fitted solver: {name!r} must be an integer in {least}..{most}, got {value!r}"
            )
    if not isinstance(solver.info, dict):
        raise InputError(f"fitted solver: 'info' must be a JSON object, got {solver.info!r}")
    denoiser = solver.info.get("denoiser")
    if denoiser is not None and not isinstance(denoiser, str):
        raise InputError(f"fitted solver: info 'denoiser' must be a name, got {denoiser!r}")
    eta = solver.eta
    if isinstance(eta, bool) or not (isinstance(eta, int | float) and math.isfinite(eta)):
        raise InputError(f"fitted solver: 'eta' must be a finite number >= 0, got {eta!r}")
    if eta < 0:
        raise InputError(f"fitted solver: 'eta' must be a finite number >= 0, got {eta!r}")
    for name in ("noise_scale", "shift"):
        value = getattr(solver, name)
        if value is not None and not _numbers(value):
            raise InputError(f"fitted solver: {name!r} must be a list of finite numbers")
    if solver.state is not None and not (
        isinstance(solver.state, list) and all(_numbers(pair) for pair in solver.state)
    ):
        raise InputError(
            f"fitted solver: 'state' must be a list of lists of finite numbers, got "
            f"{solver.state!r}"
        )


def _check_solver(solver: FittedSolver) -> None:
    _check_fields(solver)
    expected = _sizes(solver.nfe, solver.history)
    found = [
        (len(p), len(c)) for p, c in zip(solver.predictor, [*solver.corrector, []], strict=False)
    ]
    if found != expected:
        raise InputError(f"fitted solver: weight counts {found} do not match {expected}")
    state = solver.state
    pairs = None
    if isinstance(state, list):
        pairs = [len(pair) if isinstance(pair, list) else -1 for pair in state]
    if (solver.order == 0) != (state is not None) or (
        state is not None
        and (
            pairs != [2] * (solver.nfe - 1) + [1]
            or not all(isinstance(a, float) and math.isfinite(a) for pair in state for a in pair)
        )
    ):
        raise InputError(
            f"fitted solver: 'state' must be given exactly when 'order' is 0 (a free solver), "
            f"as {solver.nfe} lists of finite numbers (2 each, 1 for the last step); got order "
            f"{solver.order} and state {state!r}"
        )
    shift = solver.shift
    if shift is not None and (
        len(shift) != solver.nfe
        or not all(isinstance(d, float) and math.isfinite(d) and abs(d) <= MAX_SHIFT for d in shift)
    ):
        raise InputError(
            f"fitted solver: 'shift' must be {solver.nfe} finite numbers in [-{MAX_SHIFT}, "
            f"{MAX_SHIFT}], got {shift!r}"
        )
    scales = solver.noise_scale
    if scales is not None and (
        solver.eta == 0
        or len(scales) != solver.nfe
        or not all(isinstance(a, float) and math.isfinite(a) and a > 0 for a in scales)
    ):
        raise InputError(
            f"fitted solver: 'noise_scale' must be {solver.nfe} finite numbers > 0 on a "
            f"stochastic solver (eta > 0), got {scales!r} with eta {solver.eta}"
        )


def _departure(
    start: FittedSolver,
    nfe: int,
    steps: int,
    history: int,
    order: int,
    sigma_start: float,
    sigma_end: float,
    sigmas: list[float] | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The free part u of a warm start: its weights less its own Adams weights, step by step
    (in the null space of its constraints, so P u = u on its grid); and a free solver's state
    weights less e^{-H} (v of :func:`_state_weights`; None for a constrained start)."""
    if not isinstance(start, FittedSolver):
        raise InputError(f"parameter 'start' must be a FittedSolver, got {type(start).__name__}")
    if sigmas is not None:
        raise InputError("parameters 'start' and 'sigmas' exclude each other (start has a grid)")
    found = (start.nfe, start.steps, start.history, start.order)
    # a free fit (order 0) may start from any solver of its nfe and at most its history: every
    # solver is one of the free family (its weights, padded with zeros, are free weights)
    if order == 0 and (start.nfe != nfe or start.history > history):
        raise InputError(
            f"parameter 'start': a free fit starts from a solver of its nfe ({nfe}) and at most "
            f"its history ({history}); got nfe {start.nfe}, history {start.history}"
        )
    if order != 0 and found != (nfe, steps, history, order):
        raise InputError(
            f"parameter 'start': its (nfe, steps, history, order) {found} differ from this fit's "
            f"{(nfe, steps, history, order)}"
        )
    ends = (start.sigmas[0], start.sigmas[-1])
    if not all(
        math.isclose(a, b, rel_tol=1e-12)
        for a, b in zip(ends, (sigma_start, sigma_end), strict=True)
    ):
        raise InputError(
            f"parameter 'start': its sigma ends {ends} differ from {(sigma_start, sigma_end)}"
        )
    lams = -torch.log(torch.tensor(start.sigmas, dtype=_DTYPE))
    predictors, correctors = _weights(lams, None, steps, history, order, start.eta)
    parts = []

    def padded(weights: list[float], like: torch.Tensor) -> torch.Tensor:
        return torch.tensor(weights + [0.0] * (len(like) - len(weights)), dtype=_DTYPE)

    for n, predictor in enumerate(predictors):
        parts.append(padded(start.predictor[n], predictor) - predictor)
        if n < len(correctors):
            parts.append(padded(start.corrector[n], correctors[n]) - correctors[n])
    if start.state is None:
        return torch.cat(parts), None
    exact = torch.cat(_state_weights(lams, None, start.eta))
    return torch.cat(parts), torch.tensor(
        [a for pair in start.state for a in pair], dtype=_DTYPE
    ) - exact


def subdivide(lams: torch.Tensor, substeps: int) -> torch.Tensor:
    """The grid ``lams`` (log-SNR) with every step cut into ``substeps`` equal steps."""
    fraction = torch.arange(substeps, dtype=lams.dtype) / substeps
    inner = (lams[:-1, None] + fraction * (lams[1:] - lams[:-1])[:, None]).flatten()
    return torch.cat([inner, lams[-1:]])


def coupled_reference(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: list[float],
    eta: float,
    substeps: int = 32,
    seed: int = 0,
    extra_args: dict[str, Any] | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A fine solve of the eta-dynamics from the pilots ``x`` (x~ at sigmas[0]) on ``substeps``
    log-SNR-uniform sub-steps of every step of the grid ``sigmas``, with res_3m_pc's weights and
    exact noise from ``seed``; returns its samples at sigmas[-1] and the unit normals z_n that
    put a solver on ``sigmas`` on the same Brownian path (module docstring), for
    ``fit_solver(..., reference=samples, noise=normals, sigmas=sigmas)``."""
    substeps = check_integer("substeps", substeps, 1)
    seed = check_integer("seed", seed, 0)
    if isinstance(eta, bool) or not isinstance(eta, int | float) or not 0 < eta < math.inf:
        raise InputError(f"parameter 'eta' must be a finite number > 0, got {eta!r}")
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.dtype != _DTYPE:
        raise InputError("parameter 'x' must be a float64 batch tensor (batch first)")
    if len(sigmas) < 2:
        raise InputError(f"parameter 'sigmas' must hold at least 2 values, got {len(sigmas)}")
    check_sigma_ends(sigmas[0], sigmas[-1])
    nfe = len(sigmas) - 1
    theta_of_sigmas("sigmas", sigmas, sigmas[0], sigmas[-1], nfe)  # strictly descending
    lams = -torch.log(torch.tensor(sigmas, dtype=_DTYPE))
    fine = subdivide(lams, substeps)
    generator = torch.Generator().manual_seed(seed)
    zeta = [torch.randn(x.shape, generator=generator, dtype=_DTYPE) for _ in range(len(fine) - 1)]
    predictors, correctors = _weights(fine, None, 3, 4, 2, eta)
    with torch.no_grad():
        samples = _run(
            model, x, fine, predictors, correctors, dict(extra_args or {}), None, eta,
            zeta.__getitem__,
        )  # fmt: skip
    # k_j's scale, carried to the end of its coarse step, over the coarse step's noise scale
    ends = fine[1:]
    kick = torch.exp(-ends) * torch.sqrt(-torch.expm1(-2 * eta * (ends - fine[:-1])))
    coarse_end = lams[1:].repeat_interleave(substeps)
    coarse_h = (lams[1:] - lams[:-1]).repeat_interleave(substeps)
    scale = torch.exp(-coarse_end) * torch.sqrt(-torch.expm1(-2 * eta * coarse_h))
    factors = (torch.exp(-(1 + eta) * (coarse_end - ends)) * kick / scale).tolist()
    normals = [
        sum(factors[j] * zeta[j] for j in range(n * substeps, (n + 1) * substeps))
        for n in range(nfe)
    ]
    return samples, normals


def _values(samples: torch.Tensor) -> torch.Tensor:
    """The identity feature map: a Frechet distance of the samples' own values."""
    return samples


def _name(features: Callable[[torch.Tensor], torch.Tensor]) -> str:
    return getattr(features, "__name__", type(features).__name__)


def _feature_count(
    features: Callable[[torch.Tensor], torch.Tensor], reference: torch.Tensor
) -> int:
    """The number of features ``features`` maps one row to, checking it maps rows to rows."""
    if not callable(features):
        raise InputError(f"parameter 'features' must be callable, got {type(features).__name__}")
    try:
        with torch.no_grad():
            rows = features(reference[:2])
    except (RuntimeError, ValueError, TypeError, IndexError) as error:
        raise InputError(f"parameter 'features' failed on two reference rows: {error}") from None
    if not isinstance(rows, torch.Tensor) or rows.ndim != 2 or rows.shape[0] != 2:
        shape = tuple(rows.shape) if isinstance(rows, torch.Tensor) else type(rows).__name__
        raise InputError(
            f"parameter 'features' must map rows (batch, ...) to a (batch, features) tensor; "
            f"two rows gave {shape}"
        )
    return int(rows.shape[1])


def fit_solver(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    reference: torch.Tensor,
    sigma_start: float,
    sigma_end: float,
    nfe: int,
    *,
    steps: int = 3,
    history: int = 4,
    order: int | None = None,
    free: bool = False,
    fit_weights: bool = True,
    fit_grid: bool = True,
    fit_noise: bool = False,
    fit_shift: bool = False,
    sigmas: list[float] | None = None,
    iterations: int = 400,
    extra_args: dict[str, Any] | None = None,
    eta: float = 0.0,
    objective: str | None = None,
    seed: int = 0,
    start: FittedSolver | None = None,
    noise: list[torch.Tensor] | None = None,
    features: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: Callable[[], object] | None = None,
) -> FittedSolver:
    """Fit a solver of ``nfe`` evaluations from ``sigma_start`` down to ``sigma_end`` on the
    pilot batch ``x`` (x~ at sigma_start, float64). ``objective`` "defect" (the default for
    eta = 0): ``reference`` holds x~ at sigma_end from a high-accuracy solve of the same
    starting points; "frechet" (the default and the only choice for eta > 0): ``reference``
    is any set of samples of the model's distribution at sigma_end (rows; e.g. that solve),
    and the pilot noise is drawn once from ``seed``. ``steps``: the Adams pair the weights
    start from (res_{steps}m_pc, 1..8); ``history``: values a fitted step may use (steps..16);
    ``order``: the polynomial exactness every step keeps (1..steps, default 2); ``free``: keep
    none (order 0): every weight, the state's in the predictor and the corrector included, is
    fitted (the free linear solver of :mod:`phiforge.runtime.fitted_free`); ``sigmas``: the
    starting grid (default log-SNR uniform), kept if ``fit_grid`` is false; ``eta``: the dynamics'
    noise, 0 (ODE) to 1 (reverse SDE) or more; ``start``: a solver of the same ``nfe``,
    ``steps``, ``history``, ``order`` and ends (for a free fit: any solver of its ``nfe``,
    ``history`` at most its own, and ends) to start from instead of the Adams weights on
    ``sigmas`` (a warm start: its grid and its departure P u from its own
    Adams weights, kept when ``eta`` differs, which makes fits at rising eta a continuation;
    with ``free``, its state weights, e^{-H} for a constrained start); ``noise``: the pilot
    noise, step n's unit normals shaped like x (``nfe`` tensors; default drawn from ``seed``),
    e.g. from :func:`coupled_reference` with its samples as ``reference``; ``fit_noise``: fit
    every step's noise amplitude a_n too (eta > 0; module docstring; a ``start``'s amplitudes
    are its starting point, and kept when not fitted); ``fit_shift``: fit where each step's
    model is called, lam_n + d_n, apart from its grid point (module docstring; a ``start``'s
    shifts likewise); ``features``: the "frechet" objective's feature map, rows of samples to
    rows of features (linear or differentiable; e.g. runtime.verification.frechet_features,
    the block colours of an image; default the values themselves), which then needs more
    pilots than features, not than values; ``progress``: called after every
    objective-and-gradient evaluation. ``model`` must be differentiable in x (torch
    operations)."""
    nfe = check_integer("nfe", nfe, 2)
    steps = check_integer("steps", steps, 1, 8)
    history = check_integer("history", history, steps, MAX_HISTORY)
    if not isinstance(free, bool):
        raise InputError(f"parameter 'free' must be True or False, got {free!r}")
    if free and order is not None:
        raise InputError(
            "parameters 'free' and 'order' exclude each other: a free solver keeps no "
            "polynomial exactness (order 0)"
        )
    order = 0 if free else check_integer("order", 2 if order is None else order, 1, steps)
    iterations = check_integer("iterations", iterations, 0, 1_000_000)
    seed = check_integer("seed", seed, 0, 2**63 - 1)
    check_mapping("extra_args", extra_args, "the model's keyword arguments")
    check_callable("progress", progress, "a function of no arguments")
    check_sigma_ends(sigma_start, sigma_end)
    eta = check_nonnegative("eta", eta)
    if objective is None:
        objective = "defect" if eta == 0 else "frechet"
    if objective not in ("defect", "frechet"):
        raise InputError(f"parameter 'objective' must be 'defect' or 'frechet', got {objective!r}")
    if fit_noise and eta == 0:
        raise InputError("parameter 'fit_noise' applies to a stochastic fit (eta > 0)")
    if features is not None and objective != "frechet":
        raise InputError("parameter 'features' applies to the 'frechet' objective")
    if objective == "defect" and eta > 0:
        raise InputError(
            "parameter 'objective': 'defect' compares paths, and a stochastic solver's path "
            "does not share the reference's noise; with eta > 0 use 'frechet'"
        )
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.dtype != _DTYPE:
        raise InputError("parameter 'x' must be a float64 batch tensor (batch first)")
    dim = math.prod(x.shape[1:])
    if objective == "defect" and (
        not isinstance(reference, torch.Tensor) or reference.shape != x.shape
    ):
        raise InputError(f"parameter 'reference' must have the shape of x {tuple(x.shape)}")
    if objective == "frechet":
        if not isinstance(reference, torch.Tensor) or reference.shape[1:] != x.shape[1:]:
            raise InputError(
                f"parameter 'reference' must be samples shaped like x's rows {tuple(x.shape[1:])}"
            )
        if features is not None:
            dim = _feature_count(features, reference)
        kind = "dimensions" if features is None else "features"
        if min(x.shape[0], reference.shape[0]) <= dim:
            raise InputError(
                f"objective 'frechet' needs more rows than {kind} ({dim}) in 'x' and "
                f"'reference' (a full-rank covariance), got {x.shape[0]} and {reference.shape[0]}"
            )
    args = dict(extra_args or {})
    if iterations:
        probe = x[:1].clone().requires_grad_()
        sigma = torch.full((1,), float(sigma_start), dtype=_DTYPE)
        if not model(probe, sigma, **args).requires_grad:
            raise InputError(
                "parameter 'model' must be differentiable in x (torch operations, no "
                "torch.no_grad): its output carries no gradient, so the fit could not move"
            )
    lam_start, lam_end = -math.log(sigma_start), -math.log(sigma_end)
    theta = torch.zeros(nfe - 1, dtype=_DTYPE)
    u = torch.zeros(sum(p + c for p, c in _sizes(nfe, history)), dtype=_DTYPE)
    v = torch.zeros(2 * nfe - 1, dtype=_DTYPE)  # a free solver's state weights less e^{-H}
    log_scale = torch.zeros(nfe, dtype=_DTYPE)
    scaled = fit_noise
    shift = torch.zeros(nfe, dtype=_DTYPE)
    shifted = fit_shift
    if start is not None:
        u, departed = _departure(start, nfe, steps, history, order, sigma_start, sigma_end, sigmas)
        if departed is not None:
            v = departed
        sigmas = start.sigmas
        if start.noise_scale is not None and eta > 0:
            log_scale = torch.log(torch.tensor(start.noise_scale, dtype=_DTYPE))
            scaled = True
        if start.shift is not None:  # the stored d_n = MAX_SHIFT tanh(u_n / MAX_SHIFT)
            bounded = torch.tensor(start.shift, dtype=_DTYPE) / MAX_SHIFT
            shift = MAX_SHIFT * torch.atanh(bounded.clamp(-1 + 1e-12, 1 - 1e-12))
            shifted = True
    if sigmas is not None:
        theta = torch.from_numpy(
            theta_of_sigmas("sigmas", sigmas, sigma_start, sigma_end, nfe, MIN_STEP)
        )
    unknowns = []
    if fit_weights:
        unknowns.append(u.requires_grad_())
        if free:
            unknowns.append(v.requires_grad_())
    if fit_grid:
        unknowns.append(theta.requires_grad_())
    if fit_noise:
        unknowns.append(log_scale.requires_grad_())
    if fit_shift:
        unknowns.append(shift.requires_grad_())
    if noise is None:
        generator = torch.Generator().manual_seed(seed)
        draws = [
            torch.randn(x.shape, generator=generator, dtype=_DTYPE)
            for _ in range(nfe if eta > 0 else 0)
        ]
    elif eta == 0:
        raise InputError("parameter 'noise' applies to a stochastic fit (eta > 0)")
    elif len(noise) != nfe or any(
        not isinstance(z, torch.Tensor) or z.shape != x.shape or z.dtype != _DTYPE for z in noise
    ):
        raise InputError(
            f"parameter 'noise' must be {nfe} float64 tensors shaped like x {tuple(x.shape)}"
        )
    else:
        draws = list(noise)
    if features is None:
        features = _values
    if objective == "frechet":
        with torch.no_grad():
            target = moments_root(features(reference))

    def objective_value() -> torch.Tensor:
        lams = grid_lambdas(theta, lam_start, lam_end, MIN_STEP)
        predictors, correctors = _weights(lams, u, steps, history, order, eta)
        amplitude = torch.exp(log_scale) if scaled else None
        offsets = MAX_SHIFT * torch.tanh(shift / MAX_SHIFT) if shifted else None
        state = _state_weights(lams, v, eta) if free else None
        out = _run(
            model, x, lams, predictors, correctors, args, None, eta, draws.__getitem__,
            amplitude, offsets, state,
        )  # fmt: skip
        if objective == "defect":
            return torch.log(defect_tensor(out, reference))
        return torch.log(frechet_tensor(features(out), *target))

    started = time.perf_counter()
    with torch.no_grad():
        before = math.exp(float(objective_value()))
    if unknowns and iterations:
        optimizer = torch.optim.LBFGS(
            unknowns, lr=1.0, max_iter=iterations, history_size=50, line_search_fn="strong_wolfe"
        )

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = objective_value()
            loss.backward()
            if progress is not None:
                progress()  # one objective and gradient evaluation
            return loss

        optimizer.step(closure)
    with torch.no_grad():
        after = math.exp(float(objective_value()))
        lams = grid_lambdas(theta, lam_start, lam_end, MIN_STEP)
        predictors, correctors = _weights(lams, u, steps, history, order, eta)
        state = _state_weights(lams, v, eta) if free else None
    if not math.isfinite(after) or after > before:
        # the line search never accepts a worse point; a non-finite one means the model broke
        raise ModelOutputError(f"fit_solver: the pilot {objective} went from {before} to {after}")
    grid = torch.exp(-lams).tolist()
    grid[0], grid[-1] = float(sigma_start), float(sigma_end)
    return FittedSolver(
        sigmas=grid,
        predictor=[w.tolist() for w in predictors],
        corrector=[w.tolist() for w in correctors],
        steps=steps,
        history=history,
        order=order,
        eta=eta,
        noise_scale=torch.exp(log_scale).tolist() if scaled else None,
        shift=(MAX_SHIFT * torch.tanh(shift / MAX_SHIFT)).tolist() if shifted else None,
        state=None if state is None else [w.tolist() for w in state],
        info={
            "objective": objective,
            "pilot_batch": int(x.shape[0]),
            f"pilot_{objective}_start": before,
            f"pilot_{objective}": after,
            "fit_weights": bool(fit_weights),
            "fit_grid": bool(fit_grid),
            "fit_noise": bool(fit_noise),
            "fit_shift": bool(fit_shift),
            **({} if features is _values else {"features": _name(features)}),
            "warm_start": start is not None,
            "iterations": iterations,
            "seconds": round(time.perf_counter() - started, 1),
        },
    )
