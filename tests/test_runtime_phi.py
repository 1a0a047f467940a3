"""runtime.phi: accuracy against mpmath, no NaN/inf, autograd, float path."""

import mpmath
import numpy as np
import pytest
import torch

from phiforge.runtime.phi import phi, phi_all, phi_all_float, psi_all_float

mpmath.mp.dps = 40
GRID = np.concatenate(
    [
        np.linspace(-60, 60, 481),
        np.geomspace(1e-14, 1, 40),
        -np.geomspace(1e-14, 1, 40),
        [0.0, 1e-300, -1e-300],
        np.linspace(-9.5, 9.5, 77),
    ]
)


def reference(k: int, x: float) -> float:
    return float(mpmath.hyp1f1(1, k + 1, mpmath.mpf(x)) / mpmath.factorial(k))


REFERENCE = {k: np.array([reference(k, x) for x in GRID]) for k in range(9)}


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-13), (torch.float32, 2e-6)])
def test_tensor_phi_relative_error(dtype, tolerance):
    values = phi_all(torch.tensor(GRID, dtype=dtype), 8)
    for k in range(9):
        got = values[k].double().numpy()
        assert np.isfinite(got).all()
        error = np.abs(got - REFERENCE[k]) / np.abs(REFERENCE[k])
        assert error.max() <= tolerance, (k, GRID[error.argmax()], error.max())


def test_float_phi_relative_error():
    for index, x in enumerate(GRID):
        values = phi_all_float(float(x), 8)
        for k in range(9):
            assert abs(values[k] - REFERENCE[k][index]) <= 1e-13 * abs(REFERENCE[k][index])


def test_autograd_matches_derivative_identity():
    z = torch.linspace(-30, 30, 121, dtype=torch.float64, requires_grad=True)
    for k in range(1, 8):
        (grad,) = torch.autograd.grad(phi(k, z).sum(), z)
        expected = phi(k, z.detach()) - k * phi(k + 1, z.detach())
        assert torch.isfinite(grad).all()
        assert torch.allclose(grad, expected, rtol=1e-10, atol=1e-15)


def test_gradient_at_zero_is_finite():
    z = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(phi(3, z).sum(), z)
    assert torch.allclose(grad, torch.full((4,), 1 / 24, dtype=torch.float64))


def test_float_and_tensor_agree():
    assert phi(2, -1.0) == pytest.approx(float(np.exp(-1)), rel=1e-15)
    tensor = phi(2, torch.tensor([-1.0], dtype=torch.float64))
    assert float(tensor[0]) == pytest.approx(phi(2, -1.0), rel=1e-15)


@pytest.mark.parametrize("bad", [-1, 13, 2.5])
def test_bad_k(bad):
    with pytest.raises(ValueError, match="'k'"):
        phi(bad, 0.5)


def test_non_finite_z_is_rejected():
    with pytest.raises(ValueError, match="'z'"):
        phi_all_float(float("nan"), 2)


def test_psi_matches_its_integral_definition():
    """psi_j(x) = int_0^1 e^{s x} s^j ds for x <= 0; measured worst 7e-16 relative."""
    worst = 0.0
    with mpmath.workdps(40):
        for x in [0.0, -1e-12, -1e-4, -0.3, -1.0, -2.5, -7.0, -22.2, -60.0, -150.0]:
            values = psi_all_float(x, 11)
            for j, value in enumerate(values):
                exact = mpmath.quad(lambda s, j=j, x=x: mpmath.exp(s * x) * s**j, [0, 1])
                worst = max(worst, float(abs(value - exact) / exact))
        for x in [-699.0, -701.0, -1e6]:  # both sides of the switch to j!/|x|^(j+1)
            exact = [
                mpmath.factorial(j)
                * mpmath.exp(x)
                * mpmath.hyp1f1(1, j + 2, -x)
                / mpmath.factorial(j + 1)
                for j in range(6)
            ]
            values = psi_all_float(x, 5)
            errors = [float(abs(v - e) / e) for v, e in zip(values, exact, strict=True)]
            worst = max(worst, *errors)
    assert worst < 3e-15


def test_psi_refuses_positive_or_non_finite_x():
    with pytest.raises(ValueError, match="'x'"):
        psi_all_float(0.5, 3)
    with pytest.raises(ValueError, match="'x'"):
        psi_all_float(float("nan"), 3)
