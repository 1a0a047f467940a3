"""Observed orders of every generated method through the full driver, property-tested.

Hypothesis draws Gaussian data (means, standard deviations), a noise schedule, a starting batch
and a method; the probability-flow ODE of Gaussian data has an exact solution
(:meth:`GaussianDenoiser.flow`), so the order observed between 128 and 256 log-SNR-uniform steps
(max-abs error, order-preserving multistep starters) must match the method's claimed order.
Measured over 40 random problems per method (see docs/runtime-and-verification.md): every method
within 0.08 of its claim, except res_3m, which is superconvergent on this linear problem
(+0.55 to +1.09; on the digits mixture it shows 3.06).
"""

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from phiforge.runtime.denoisers import GaussianDenoiser
from phiforge.runtime.driver import sample
from phiforge.runtime.schedules import EDM, VE, DiscreteVP, VPCosine, VPLinear
from phiforge.runtime.stepping import load_method, ode_methods

SCHEDULES = [VPLinear(), VPCosine(), DiscreteVP.ddpm_linear(), VE(), EDM()]
SUPERCONVERGENT_ON_GAUSSIAN = {"res_3m"}


PROBLEMS = dict(
    method=st.sampled_from(ode_methods()),
    schedule=st.sampled_from(SCHEDULES),
    means=st.lists(st.floats(-2, 2), min_size=3, max_size=3),
    stds=st.lists(st.floats(0.05, 1.5), min_size=3, max_size=3),
    start=st.lists(st.floats(-2.5, 2.5), min_size=3, max_size=3),
)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(**PROBLEMS)
def test_observed_order_matches_the_claim(method, schedule, means, stds, start):
    _check_order(method, schedule, means, stds, start)


@pytest.mark.slow
@settings(max_examples=120, deadline=None)
@given(**PROBLEMS)
def test_observed_order_matches_the_claim_many_problems(method, schedule, means, stds, start):
    _check_order(method, schedule, means, stds, start)


def _check_order(method, schedule, means, stds, start):
    gauss = GaussianDenoiser(torch.tensor(means), torch.diag(torch.tensor(stds) ** 2))
    x = torch.tensor([start], dtype=torch.float64) * float(schedule.sigma(schedule.t_start))
    lam0, lam1 = schedule.lam(schedule.t_start), schedule.lam(schedule.t_end)
    alpha0, sigma0 = schedule.alpha_sigma_of_lam(lam0)
    alpha1, sigma1 = schedule.alpha_sigma_of_lam(lam1)
    exact = alpha1 * gauss.flow(x / alpha0, sigma0 / alpha0, sigma1 / alpha1)
    errors = []
    for steps in (128, 256):
        y = sample(gauss, x, schedule, method, steps=steps, output="edm", warmup="order-preserving")
        errors.append(float((y - exact).abs().max()))
    # above round-off by 100x (256 steps round to ~1e-13; at 1e-12 res_5s read 5.32 from
    # 4.9e-11, 1.2e-12 on EDM); below it, e.g. data N(0, I) started at 0 is solved exactly
    assume(errors[1] > 1e-11)
    observed = math.log2(errors[0] / errors[1])
    claimed = load_method(method).CONVERGENCE_ORDER
    assert observed >= claimed - 0.15, (method, schedule.name, errors)
    if method not in SUPERCONVERGENT_ON_GAUSSIAN:
        assert observed <= claimed + 0.15, (method, schedule.name, errors)
