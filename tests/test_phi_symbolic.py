"""phi_k as a SymPy function: values, recurrence, derivative, series, limits, precision."""

import mpmath
import pytest
import sympy
from sympy import Rational, exp, factorial, oo

from phiforge.derive.errors import InputError
from phiforge.derive.phi import as_psi, phi, psi


def reference(k: int, z: mpmath.mpf) -> mpmath.mpf:
    """The closed form at 200 digits, or the Taylor series where the closed form cancels."""
    with mpmath.workdps(200):
        if abs(z) < 1:
            return mpmath.fsum(z**m / mpmath.factorial(m + k) for m in range(120))
        return (mpmath.exp(z) - sum(z**m / mpmath.factorial(m) for m in range(k))) / z**k


def test_phi_0_is_exp_and_phi_k_at_0_is_inverse_factorial(z):
    assert phi(0, z) == exp(z)
    assert [phi(k, 0) for k in range(6)] == [
        1,
        1,
        Rational(1, 2),
        Rational(1, 6),
        Rational(1, 24),
        Rational(1, 120),
    ]


@pytest.mark.parametrize("k", range(0, 6))
def test_recurrence_phi_k_plus_1_equals_phi_k_minus_inverse_factorial_over_z(z, k):
    identity = phi(k + 1, z) - (phi(k, z) - Rational(1, factorial(k))) / z
    assert sympy.simplify(identity.rewrite(exp)) == 0


@pytest.mark.parametrize("k", range(0, 5))
def test_derivative_matches_derivative_of_closed_form(z, k):
    symbolic = sympy.diff(phi(k, 3 * z), z)
    reference = sympy.diff(phi(k, 3 * z).rewrite(exp), z)
    for point in (Rational(-7, 3), Rational(1, 5), Rational(5, 2)):
        assert abs(sympy.N(symbolic.subs(z, point) - reference.subs(z, point), 40)) < 1e-35


@pytest.mark.parametrize("k", range(1, 6))
def test_series_about_0_has_coefficients_inverse_factorial_m_plus_k(z, k):
    series = sympy.series(phi(k, z), z, 0, 9).removeO()
    expected = [Rational(1, factorial(m + k)) for m in range(9)]
    assert [series.coeff(z, m) for m in range(9)] == expected


def test_series_of_products_and_scaled_arguments(z):
    series = sympy.series(phi(2, z / 2) * phi(1, z), z, 0, 3).removeO()
    assert series == Rational(1, 2) + z / 3 + Rational(13, 96) * z**2


def test_limits(z):
    assert sympy.limit(phi(3, z), z, 0) == Rational(1, 6)
    assert sympy.limit(phi(1, z), z, -oo) == 0
    assert sympy.limit(z * phi(1, z), z, -oo) == -1
    assert sympy.limit((phi(1, z) / 2 - phi(2, z)) / z, z, 0) == Rational(1, 12)


@pytest.mark.parametrize("k", range(1, 9))
@pytest.mark.parametrize("value", ["-60", "-3.7", "-1e-12", "1e-30", "0.5", "17"])
def test_evalf_at_50_digits_matches_reference(k, value):
    got = phi(k, sympy.Float(value, 60)).evalf(50)
    with mpmath.workdps(200):
        expected = reference(k, mpmath.mpf(value))
        assert abs(mpmath.mpf(got) - expected) <= abs(expected) * mpmath.mpf(10) ** -48


def test_evalf_complex_argument(z):
    value = phi(3, 1 + 2 * sympy.I).evalf(30)
    reference = sympy.N(phi(3, z).rewrite(exp).subs(z, 1 + 2 * sympy.I), 30)
    assert abs(value - reference) < 1e-28


@pytest.mark.parametrize(
    ("argument", "expected"),
    [  # spec-dpmsolver-res.md §10.1
        (-1, (0.632120558829, 0.367879441171, 0.132120558829, 0.0345461078381)),
        (1, (1.71828182846, 0.718281828459, 0.218281828459, 0.0516151617924)),
        (Rational(-1, 2), (0.786938680575, 0.426122638851, 0.147754722299, 0.0378238887355)),
        (2, (3.19452804947, 1.09726402473, 0.298632012366, 0.0659826728498)),
    ],
)
def test_spec_values(argument, expected):
    for k, value in enumerate(expected, start=1):
        assert float(phi(k, argument).evalf(20)) == pytest.approx(value, rel=1e-10)


def test_nsimplify_recovers_rational_coefficients(z):
    expr = 0.5 * phi(2, z) + 0.333333333333333 * phi(3, z / 2)
    assert sympy.nsimplify(expr) == phi(2, z) / 2 + phi(3, z / 2) / 3


def test_latex_and_rewrite(z):
    assert sympy.latex(phi(2, z / 2)) == r"\varphi_{2}\left(\frac{z}{2}\right)"
    assert sympy.simplify(phi(2, z).rewrite(exp) - (exp(z) - 1 - z) / z**2) == 0


@pytest.mark.parametrize("k", [-1, Rational(1, 2)])
def test_bad_index_is_rejected_naming_k(z, k):
    with pytest.raises(InputError, match="'k'"):
        phi(k, z)


def test_as_psi_rewrites_a_phi_linear_combination_exactly():
    z = sympy.Symbol("z")
    b4 = 16 * phi(2, z) - Rational(416, 3) * phi(3, z) + 576 * phi(4, z) - 1024 * phi(5, z)
    expr = b4 + phi(1, z / 2) / 2 - 3 * phi(3, 3 * z / 4) + 5
    form = as_psi(expr, z)
    assert form.coeff(psi(0, z)) == 0  # b_4 = O(1/z^2): its polynomial vanishes at s = 0
    assert form.coeff(psi(1, z)) == Rational(16, 3)
    for value in (Rational(-37, 10), Rational(-1, 1000), Rational(-25, 1)):
        difference = (expr - form.rewrite(phi)).subs(z, value)
        assert sympy.N(difference, 60) == pytest.approx(0, abs=1e-50)
    assert psi(3, 0) == Rational(1, 4)


def test_as_psi_refuses_products_of_phi():
    z = sympy.Symbol("z")
    with pytest.raises(InputError, match="not a rational multiple"):
        as_psi(phi(1, z) * phi(2, z), z)
