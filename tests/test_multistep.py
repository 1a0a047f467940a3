"""Exponential Adams weights (spec order-conditions.md §6.2) and published variants."""

import pytest
import sympy

from phiforge.derive.errors import InputError
from phiforge.derive.multistep import (
    check_multistep,
    exponential_adams,
    exponential_adams_moulton,
    published_multistep,
    step_ratios,
)
from phiforge.derive.phi import phi
from phiforge.derive.tableau import Z

P1, P2, P3, P4 = (phi(k, Z) for k in range(1, 5))


def _equal(left, right):
    return all(sympy.simplify(a - b) == 0 for a, b in zip(left, right, strict=True))


def test_two_step_variable_weights():
    (r,) = step_ratios(2)
    assert _equal(exponential_adams(2).weights, (P1 + P2 / r, -P2 / r))


def test_three_step_variable_weights():
    r1, r2 = step_ratios(3)
    expected = (
        P1 + (2 * r1 + r2) / (r1 * (r1 + r2)) * P2 + 2 / (r1 * (r1 + r2)) * P3,
        -(r1 + r2) / (r1 * r2) * P2 - 2 / (r1 * r2) * P3,
        r1 / (r2 * (r1 + r2)) * P2 + 2 / (r2 * (r1 + r2)) * P3,
    )
    assert _equal(exponential_adams(3).weights, expected)


def test_constant_step_weights():
    assert _equal(
        exponential_adams(3).weights_equal_steps(),
        (P1 + 3 * P2 / 2 + P3, -2 * P2 - 2 * P3, P2 / 2 + P3),
    )
    assert _equal(
        exponential_adams(4).weights_equal_steps(),
        (
            P1 + sympy.Rational(11, 6) * P2 + 2 * P3 + P4,
            -3 * P2 - 5 * P3 - 3 * P4,
            sympy.Rational(3, 2) * P2 + 4 * P3 + 3 * P4,
            -P2 / 3 - P3 - P4,
        ),
    )


@pytest.mark.parametrize(
    "k",
    [1, 2, 3, 4, 5, pytest.param(6, marks=pytest.mark.slow)],
)
def test_exponential_adams_has_stiff_order_k(k):
    report = check_multistep(exponential_adams(k), k + 1)
    assert report.stiff_order == k
    assert report.verdicts[k] == "fails"


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_exponential_adams_moulton_has_stiff_order_k_plus_1(k):
    corrector = exponential_adams_moulton(k)
    assert corrector.implicit and corrector.steps == k and len(corrector.weights) == k + 1
    assert corrector.nodes[:2] == (1, 0)
    report = check_multistep(corrector, k + 2)
    assert report.stiff_order == k + 1
    assert report.verdicts[k + 1] == "fails"


def test_residual_of_the_first_failing_condition_is_exact():
    # k = 5 has 4 ratios, where residuals are shown as an expanded numerator over a factored
    # denominator: the value must still be phi_6(z) - sum_m beta_m(z) tau_m^5 / 5!
    method = exponential_adams(5)
    report = check_multistep(method, 6)
    point = dict(
        zip(method.ratios, (sympy.Rational(3, 7), 2, sympy.Rational(5, 4), 1), strict=True)
    )
    point[Z] = sympy.Rational(-3, 10)
    direct = phi(6, Z) - sum(
        w * tau**5 / 120 for w, tau in zip(method.weights, method.nodes, strict=True)
    )
    difference = (report.residuals[5] - direct).subs(point)
    assert abs(sympy.N(difference, 30)) < 1e-25
    assert abs(sympy.N(direct.subs(point), 30)) > 1e-3  # the condition does fail
    assert report.leading_terms[5].subs(point) != 0


def test_exponential_trapezoid_is_the_one_value_corrector():
    # integrate the line through G_n (theta = 0) and G_{n+1} (theta = 1) against e^{(1-theta)z}
    assert _equal(exponential_adams_moulton(1).weights, (P2, P1 - P2))


def test_dpmpp_2m_dpmsolver_variant_is_weak_order_2():
    report = check_multistep(published_multistep("dpmpp_2m"), 4)
    assert report.verdicts[:2] == ["strong", "weak"]
    assert (report.stiff_order, report.weak_stiff_order, report.classical_order) == (1, 2, 2)
    assert report.leading_terms[1] == -Z / 12


def test_reference_3m_is_second_order():
    report = check_multistep(published_multistep("dpmpp_3m_ref"), 4)
    assert report.verdicts[:3] == ["strong", "strong", "fails"]
    assert report.leading_terms[2] == sympy.Rational(1, 12)
    # spec-dpmsolver-res.md §4.2: with the phi_3 weight doubled (kappa = 2) it is exponential AB3
    weights = published_multistep("dpmpp_3m_ref").weights_equal_steps()
    assert sympy.simplify(weights[2] - (P2 / 2 + P3 / 2)) == 0


def test_bad_input():
    with pytest.raises(InputError, match="'k'"):
        exponential_adams(0)
    with pytest.raises(InputError, match="'k'"):
        exponential_adams_moulton(0)
    # refused at once, naming the range, rather than running for hours
    with pytest.raises(InputError, match=r"'k' \(steps, = order\) must be an integer in 1\.\.7"):
        exponential_adams(8)
    with pytest.raises(InputError, match=r"'k' \(past values, = order - 1\) .* in 1\.\.6"):
        exponential_adams_moulton(7)
    with pytest.raises(InputError, match="unknown published multistep"):
        published_multistep("dpmpp_9m")


def test_published_multistep_methods_are_catalogue_data():
    # one catalogue for every family: the multistep entries are update formulas in
    # catalogue.toml; dpmpp_2m's weights are phi_1 (1 + 1/(2 r1)) and -phi_1/(2 r1)
    from phiforge.derive.catalogue import catalogue_names

    assert catalogue_names("multistep") == ["dpmpp_2m", "dpmpp_3m_ref"]
    assert "seeds_2a" in catalogue_names("stochastic")
    assert not set(catalogue_names()) & set(catalogue_names("multistep"))
    method = published_multistep("dpmpp_2m")
    (r1,) = method.ratios
    expected = (phi(1, Z) * (1 + 1 / (2 * r1)), -phi(1, Z) / (2 * r1))
    assert all(sympy.simplify(w - e) == 0 for w, e in zip(method.weights, expected, strict=True))
    with pytest.raises(InputError, match="known: dpmpp_2m, dpmpp_3m_ref"):
        published_multistep("dpmpp_9m")
