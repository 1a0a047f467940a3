"""The exponential Runge-Kutta tableau type: validation and rendering."""

import pytest
import sympy
from sympy import Rational

from phiforge.derive.catalogue import catalogue_method, catalogue_names
from phiforge.derive.errors import InputError
from phiforge.derive.phi import phi
from phiforge.derive.tableau import ExpRKTableau, Z

HALF = Rational(1, 2)


def test_first_column_and_b1_follow_from_row_sums():
    method = ExpRKTableau.from_coefficients("t", [0, HALF], {}, {2: phi(2, Z) / HALF})
    assert sympy.simplify(method.a_entry(2, 1) - HALF * phi(1, Z / 2)) == 0
    assert sympy.expand(method.b_entry(1) - (phi(1, Z) - 2 * phi(2, Z))) == 0


def test_row_sum_identity_with_a_product_is_accepted():
    # Cox-Matthews: a_41 = phi_1(z/2)(e^{z/2} - 1)/2 and a_43 = phi_1(z/2) sum to phi_1(z)
    method = catalogue_method("etdrk4_cox_matthews")
    assert method.a_entry(4, 1).has(sympy.exp)


def test_underlying_runge_kutta_tableau():
    A, b, _ = catalogue_method("etdrk4_cox_matthews").at_zero()
    assert b == [Rational(1, 6), Rational(1, 3), Rational(1, 3), Rational(1, 6)]
    assert A[3][2] == 1 and A[3][0] == 0


def test_not_explicit_is_rejected():
    with pytest.raises(InputError, match="explicit"):
        ExpRKTableau.from_coefficients("bad", [0, HALF], {(1, 2): phi(1, Z)}, {})


def test_row_sum_violation_is_rejected_with_the_defect():
    with pytest.raises(InputError, match=r"row 2 violates the row-sum assumption"):
        ExpRKTableau.from_coefficients("bad", [0, HALF], {(2, 1): phi(1, Z)}, {})


def test_weight_sum_violation_is_rejected():
    with pytest.raises(InputError, match=r"sum_i b_i\(z\) = phi_1\(z\)"):
        ExpRKTableau.from_coefficients("bad", [0, HALF], {}, {1: phi(1, Z), 2: phi(2, Z)})


def test_first_node_must_be_zero():
    with pytest.raises(InputError, match="c_1 = 0"):
        ExpRKTableau.from_coefficients("bad", [HALF], {}, {})


def test_coefficients_must_be_rational_in_phi_functions():
    weights = {2: sympy.sin(Z), 1: phi(1, Z) - sympy.sin(Z)}
    with pytest.raises(InputError, match=r"b\[2\]: sin\(z\) is not a polynomial in phi_k"):
        ExpRKTableau.from_coefficients("bad", [0, HALF], {}, weights)


def test_rational_coefficients_are_accepted():
    b2 = phi(2, Z) ** 2 / phi(1, Z)
    method = ExpRKTableau.from_coefficients("ratio", [0, HALF], {}, {2: b2, 1: phi(1, Z) - b2})
    assert not method.sparse.is_linear


def test_node_must_not_depend_on_z():
    with pytest.raises(InputError, match="node c_2"):
        ExpRKTableau.from_coefficients("bad", [0, Z], {}, {})


def test_bad_prediction_is_rejected():
    with pytest.raises(InputError, match="'prediction'"):
        ExpRKTableau.from_coefficients("bad", [0], {}, {}, prediction="score")


def test_markdown_rendering():
    text = catalogue_method("res_2s").to_markdown()
    assert text.splitlines()[0] == "| c | a_i1 |"
    assert "| 1/2 | φ_1(z/2)/2 |" in text
    assert "2*φ_2(z)" in text


def test_latex_rendering():
    text = catalogue_method("res_2s").to_latex()
    assert text.startswith("\\begin{array}{c|cc}")
    assert r"\varphi_{2}\left(z\right)" in text


def test_symbolic_family_and_substitution():
    family = catalogue_method("exprk2")
    assert {str(s) for s in family.free_symbols} == {"c2"}
    member = family.subs({"c2": 0.5})
    assert member.c[1] == HALF and not member.free_symbols
    with pytest.raises(InputError, match="unknown parameter 'c3'"):
        family.subs({"c3": 1})


def test_catalogue_lists_the_required_methods():
    required = {
        "exp_euler",
        "exp_midpoint",
        "etd2rk",
        "exprk2",
        "exprk3s3_ho",
        "etd3rk",
        "etdrk4_cox_matthews",
        "krogstad",
        "strehmel_weiner",
        "friedli",
        "exprk4s5_ho",
        "exprk4s6_luan",
        "exprk5s8_lo",
        "dpm_solver_2",
        "dpm_solver_3",
        "dpmpp_2s",
        "dpmpp_3s",
        "dpmpp_2s_taylor",
        "dpmpp_3s_taylor",
        "res_2s",
    }
    assert required <= set(catalogue_names())


def test_unknown_catalogue_name_lists_known_names():
    with pytest.raises(InputError, match=r"unknown method 'rk4'.*exp_euler"):
        catalogue_method("rk4")


def test_unknown_catalogue_parameter_is_rejected():
    with pytest.raises(InputError, match="unknown parameter 'c9'"):
        catalogue_method("exprk2", c9=1)
