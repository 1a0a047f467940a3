"""Order conditions generated from trees: counts, the published list, renderings."""

import pytest

from phiforge.derive.conditions import (
    classical_conditions,
    count_conditions,
    nonstiff_conditions,
    stiff_conditions,
)
from phiforge.derive.errors import InputError

# spec order-conditions.md §3: rows 1-36 (tree, operator-setting condition). Test data only.
SPEC_ROWS = {
    1: ("[τ]", "ψ_2"),
    2: ("[[τ]]", "Σ_i b_i J(ψ_{2,i})"),
    3: ("[τ^2]", "ψ_3"),
    4: ("[[[τ]]]", "Σ_i b_i J(Σ_j a_ij J(ψ_{2,j}))"),
    5: ("[[τ^2]]", "Σ_i b_i J(ψ_{3,i})"),
    6: ("[[τ]τ]", "Σ_i b_i c_i K(ψ_{2,i})"),
    7: ("[τ^3]", "ψ_4"),
    8: ("[[[[τ]]]]", "Σ_i b_i J(Σ_j a_ij J(Σ_k a_jk J(ψ_{2,k})))"),
    11: ("[[[τ]]τ]", "Σ_i b_i c_i K(Σ_j a_ij J(ψ_{2,j}))"),
    14: ("[[τ][τ]]", "Σ_i b_i B(ψ_{2,i}, ψ_{2,i})"),
    15: ("[[τ]τ^2]", "Σ_i b_i c_i^2 L(ψ_{2,i})"),
    16: ("[τ^4]", "ψ_5"),
    25: ("[[[τ][τ]]]", "Σ_i b_i J(Σ_j a_ij B(ψ_{2,j}, ψ_{2,j}))"),
    28: ("[[[τ]][τ]]", "Σ_i b_i B(Σ_j a_ij J(ψ_{2,j}), ψ_{2,i})"),
    34: ("[[τ][τ]τ]", "Σ_i b_i c_i G_2,1(ψ_{2,i}, ψ_{2,i})"),
    35: ("[[τ]τ^3]", "Σ_i b_i c_i^3 G_1,3(ψ_{2,i})"),
    36: ("[τ^5]", "ψ_6"),
}


def _strip_variables(text: str) -> str:
    for v in range(6):
        text = text.replace(f"(z{v})", "")
    return text


def test_cumulative_counts():
    assert [len(stiff_conditions(p)) for p in range(1, 9)] == [0, 1, 3, 7, 16, 36, 84, 199]
    assert count_conditions(10) == 1204


def test_classical_counts_are_butchers():
    assert [len(classical_conditions(p)) for p in range(1, 9)] == [1, 2, 4, 8, 17, 37, 85, 200]


@pytest.mark.parametrize(("number", "row"), SPEC_ROWS.items())
def test_generated_conditions_equal_published_rows(number, row):
    condition = stiff_conditions(6)[number - 1]
    assert condition.number == number
    assert str(condition.tree) == row[0]
    assert _strip_variables(condition.expression("unicode")) == row[1]


def test_operator_setting_has_one_variable_per_nonleaf_vertex():
    conditions = stiff_conditions(5)
    assert conditions[7].expression() == (
        "sum_i b_i(z0) J(sum_j a_ij(z1) J(sum_k a_jk(z2) J(psi_{2,k}(z3))))"
    )
    assert [c.variables for c in conditions[:7]] == [1, 2, 1, 3, 2, 2, 1]


def test_scalar_setting_collapses_variables_and_multiplies():
    conditions = stiff_conditions(5, "scalar")
    assert conditions[13].expression() == "sum_i b_i(z) psi_{2,i}(z)^2"
    assert conditions[14].expression() == "sum_i b_i(z) c_i^2 psi_{2,i}(z)"
    assert all(c.variables == 1 for c in conditions)


def test_latex_rendering():
    assert stiff_conditions(4)[5].expression("latex") == (
        r"\sum_{i} b_{i}(z_{0}) c_{i} K\left(\psi_{2,i}(z_{1})\right)"
    )


def test_nonstiff_conditions_carry_taylor_degree():
    degrees = [c.degree for c in nonstiff_conditions(4)]
    assert degrees == [2, 1, 1, 0, 0, 0, 0]
    assert nonstiff_conditions(3)[0].expression() == "[psi_2(z0)]_(deg<=1)"


def test_classical_condition_rendering():
    rendered = [c.expression() for c in classical_conditions(4)]
    assert rendered[0] == "sum_i b_i = 1/1"
    assert "sum_i b_i c_i sum_j a_ij c_j = 1/8" in rendered


@pytest.mark.parametrize("bad", [0, -1, 2.0, "3", None, 17, 99])
def test_bad_order_is_rejected(bad):
    with pytest.raises(InputError, match=r"'p' \(order\) must be an integer in 1\.\.16"):
        stiff_conditions(bad)


def test_bad_setting_is_rejected():
    with pytest.raises(InputError, match="'setting'"):
        stiff_conditions(3, "matrix")
