"""The general construction as a straight-line program (``construct_singlestep(form="program")``):
elimination with named values, the program's own check (res_5s is registered through it: its
record is rebuilt byte for byte by tests/test_registry_codegen.py, and it equals the hand-built
method it replaced, tests/test_straightline.py)."""

import mpmath
import pytest
import sympy
from sympy import Rational

from phiforge.derive.check import check_tableau
from phiforge.derive.construct import construct_singlestep
from phiforge.derive.errors import InputError
from phiforge.derive.program_check import ProgramTableau
from phiforge.derive.straightline import Definition, Expansion, evaluate_program
from phiforge.derive.tableau import Z

NODES = ["1/3", "2/3", "1/2", "1"]


@pytest.fixture(scope="module")
def composed():
    return construct_singlestep(
        5, 4, NODES, assumptions="stage-order-2", form="program", compose=True
    )


def _values(program, z):
    values = evaluate_program(program.definitions, z)
    a = {key: values[name] for key, name in program.a_names.items()}
    b = {i: values[name] for i, name in program.b_names.items()}
    return a, b


def test_the_checker_reads_the_program_as_it_reads_the_composed_tableau(composed):
    assert composed.success and composed.free_parameters == {"a4_2": "0"}
    assert composed.report.verdict_row() == "S" * 7 and composed.report.stiff_order == 4
    program = composed.program
    as_program = ProgramTableau("p", composed.nodes, program.definitions, program.a_names,
                                program.b_names)  # fmt: skip
    for setting in ("scalar", "operator"):
        mine = check_tableau(as_program, 6, setting)
        exact = check_tableau(composed.tableau, 6, setting)
        assert mine.verdict_row() == exact.verdict_row(), setting
        assert [r.nonstiff_valuation for r in mine.results] == [
            r.nonstiff_valuation for r in exact.results
        ]
        assert mine.classical_order == exact.classical_order == 4
    row = check_tableau(as_program, 6, "scalar").verdict_row()
    assert row == "SSSSSSSCxSCxxSSxxxCCxxxxSSCSCxxSxSSx"


def test_the_program_gives_the_coefficients_of_the_expanded_construction(composed):
    expanded = construct_singlestep(5, 4, NODES, assumptions="stage-order-2")
    assert expanded.free_parameters == composed.free_parameters
    for z in (Rational(-1, 100), Rational(-7, 10), Rational(-3), Rational(-12)):
        with mpmath.workdps(40):
            a, b = _values(composed.program, mpmath.mpf(z.p) / z.q)
        for i in range(1, 6):
            exact = sympy.N(expanded.tableau.b_entry(i).subs(Z, z), 40)
            assert abs(b.get(i, 0) - exact) < 1e-30, (i, z)
            for j in range(1, i):
                exact = sympy.N(expanded.tableau.a_entry(i, j).subs(Z, z), 40)
                assert abs(a.get((i, j), 0) - exact) < 1e-30, (i, j, z)


def test_the_program_is_checked_without_composing_it():
    result = construct_singlestep(3, 3, ["1/3", "2/3"], form="program")
    assert result.success and isinstance(result.tableau, ProgramTableau)
    assert result.program.tableau is result.tableau
    assert result.report.verdict_row() == "SSS" and result.report.classical_order == 3


def test_a_wrong_coefficient_fails_the_program_check(composed):
    program = composed.program
    target = program.a_names[(5, 3)]
    wrong = [
        Definition(d.name, d.expr + Rational(1, 1000) * Z**2, d.series) if d.name == target else d
        for d in program.definitions
    ]
    tableau = ProgramTableau("wrong", composed.nodes, wrong, program.a_names, program.b_names)
    check = check_tableau(tableau, 4, "scalar")
    assert check.stiff_order == 3  # a_53 enters first at order 4: [[tau^2]] and [[[tau]]]
    assert check.verdict_row()[:3] == "SSS" and check.verdict_row()[3:] != "SSSS"
    assert check.nonstiff_order == 4  # the change is O(z^2): classically invisible


def test_a_blocked_request_names_the_same_condition_as_the_expanded_form():
    nodes = [Rational(1, 3), Rational(2, 3), 1]
    expanded = construct_singlestep(4, 4, nodes)
    program = construct_singlestep(4, 4, nodes, form="program")
    assert not program.success
    assert program.blocked_by == expanded.blocked_by
    assert program.blocked_by.startswith("condition 5 [[τ^2]]")


def test_a_block_after_a_free_choice_is_not_claimed_as_a_proof():
    # no condition is linear with a coefficient free of the other unknowns: the elimination
    # fixes unknowns to 0 and says so (the expanded form finds b2 = 1, a3_2 = a4_2 = 0 here)
    result = construct_singlestep(5, 4, ["1/4", "1/2", "3/4", "1"], form="program")
    assert not result.success
    assert result.blocked_by.startswith("condition 5 [[τ^2]] (order 4) after fixing a5_4 = 0")
    assert "not a proof" in result.blocked_by


def test_eight_stages_with_stage_order_three_cannot_reach_scalar_order_six():
    # every step of the elimination is a forced linear solve (no unknown fixed), every pivot and
    # the final residual tested with the true phi_k(c z) at random points of GF(2^61 - 1): the
    # residual of condition 20 is not identically 0, so no such method exists on these nodes
    # (about 13 s; the expanded form did not finish in 30 minutes)
    nodes = ["1/3", "2/3", "1/5", "2/5", "3/5", "4/5", "1"]
    result = construct_singlestep(8, 6, nodes, assumptions="stage-order-3", form="program")
    assert not result.success
    assert result.blocked_by == "condition 20 [[[[τ]]τ]] (order 6)"


def test_bad_input_for_the_program_form():
    with pytest.raises(InputError, match="'form' must be one of"):
        construct_singlestep(3, 3, NODES[:2], form="tree")
    with pytest.raises(InputError, match="'series' and 'compose' apply to form='program'"):
        construct_singlestep(3, 3, NODES[:2], compose=True)
    with pytest.raises(InputError, match="'series' and 'compose' apply to form='program'"):
        construct_singlestep(3, 3, NODES[:2], series={"a3_2": [["0", "1", 10]]})
    c2 = sympy.Symbol("c2", positive=True)
    with pytest.raises(InputError, match="'nodes' must be numbers for form='program'"):
        construct_singlestep(3, 3, [c2, Rational(2, 3)], form="program")
    with pytest.raises(InputError, match="'series' names"):
        construct_singlestep(3, 3, NODES[:2], form="program", series={"x9": [["0", "1", 10]]})


@pytest.mark.slow
def test_a_program_record_runs_like_the_expanded_record_of_the_same_method(tmp_path):
    # the whole path: conditions -> named elimination -> record with definitions -> generated
    # module -> sampler; the same coefficients expanded into quotients sample the same way
    import torch

    from phiforge.cli.main import main
    from phiforge.runtime import load_method, sample
    from phiforge.runtime.denoisers import builtin_denoiser

    folder = tmp_path / "methods"
    for form in ("program", "expanded"):
        code = main(["derive", "singlestep", "--stages", "5", "--order", "4", "--nodes",
                     ",".join(NODES), "--assumptions", "stage-order-2", "--coefficients", form,
                     "--name", f"m54_{form}", "--registry", str(folder), "--quiet"])  # fmt: skip
        assert code in (0, None)
    program = load_method("m54_program", registry=folder)
    expanded = load_method("m54_expanded", registry=folder)
    assert program.ORDERS["scalar"]["stiff"] == 4 == expanded.ORDERS["scalar"]["stiff"]
    assert program.DOMAIN == "z <= 0" and not hasattr(expanded, "DOMAIN")
    denoiser = builtin_denoiser("gmm")
    x = torch.randn(8, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    ours = sample(denoiser, x, "vp-linear", program, nfe=20, output="edm")
    theirs = sample(denoiser, x, "vp-linear", expanded, nfe=20, output="edm")
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-11)


def test_the_program_form_is_refused_where_it_does_not_apply(tmp_path, capsys):
    from phiforge.cli.main import main
    from phiforge.derive.plan import derive_singlestep_record

    code = main(["derive", "singlestep", "--setting", "operator", "--stages", "3", "--order",
                 "3", "--nodes", "1/3,2/3", "--coefficients", "program", "--name", "bad",
                 "--registry", str(tmp_path / "r"), "--quiet"])  # fmt: skip
    assert code != 0 and "--coefficients" in capsys.readouterr().err
    with pytest.raises(InputError, match="'form' \\(--coefficients\\) must be one of"):
        derive_singlestep_record("bad", 3, 3, nodes=NODES[:2], form="tree")
    with pytest.raises(InputError, match="without an embedded companion"):
        derive_singlestep_record("bad", 3, 3, nodes=NODES[:2], form="program", embedded=2)


@pytest.mark.parametrize("form", ["expanded", "program"])
def test_fixed_values_replace_the_constructions_zeros(form):
    result = construct_singlestep(
        5, 4, NODES, assumptions="stage-order-2", form=form, fix={"a4_2": "1/2"}
    )
    assert result.success and result.free_parameters == {}
    assert result.report.stiff_order == 4
    if form == "expanded":
        assert result.tableau.a_entry(4, 2) == Rational(1, 2)
    else:
        values = evaluate_program(result.program.definitions, mpmath.mpf(-3))
        assert values[result.program.a_names[(4, 2)]] == Rational(1, 2)
    # a value the conditions cannot take is reported as what blocks
    clash = construct_singlestep(5, 4, NODES, assumptions="stage-order-2", form=form,
                                 fix={"b2": "1"})  # fmt: skip
    assert not clash.success and "b_2 = 0" in clash.blocked_by


def test_fixed_values_are_checked(tmp_path, capsys):
    from phiforge.cli.main import main
    from phiforge.derive.registry import load_record

    for fix, message in (({"x1": 1}, "not a coefficient"), ({"a4_2": "pi"}, "rational number"),
                         (["a4_2"], "must map coefficient names")):  # fmt: skip
        with pytest.raises(InputError, match=f"parameter 'fix'.*{message}"):
            construct_singlestep(5, 4, NODES, assumptions="stage-order-2", fix=fix)
    folder = str(tmp_path / "r")
    argv = ["derive", "singlestep", "--stages", "5", "--order", "4", "--nodes", ",".join(NODES),
            "--assumptions", "stage-order-2", "--name", "fixed", "--registry", folder,
            "--quiet"]  # fmt: skip
    assert main([*argv, "--fix", "a4_2"]) != 0
    assert "--fix" in capsys.readouterr().err
    assert main([*argv, "--fix", "a4_2=1/2"]) in (0, None)
    record = load_record("fixed", tmp_path / "r")
    assert record.provenance["fixed"] == {"a4_2": "1/2"}
    assert record.coefficients["a"]["4,2"] == "1/2"


def test_a_program_record_keeps_the_expansions_it_is_given():
    from phiforge.derive.plan import derive_singlestep_record

    series = {"b3": [["0", "1/2", 30], ["-4", "3", 40]]}
    record = derive_singlestep_record(
        "expanded_b3", 5, 4, nodes=NODES, assumptions="stage-order-2", form="program",
        series=series,
    )  # fmt: skip
    entry = next(d for d in record["definitions"] if d["name"] == "b3")
    assert entry["series"] == [["0", "1/2", 30], ["-4", "3", 40]]
    with pytest.raises(InputError, match="'series' and 'compose' apply to form='program'"):
        derive_singlestep_record("bad", 5, 4, nodes=NODES, series=series)


def test_the_pool_of_names_grows_without_changing_the_result(monkeypatch, composed):
    # the elimination names 9 to 16 values here: a pool of 2 grows to 4, 8 and 16 on the way
    from phiforge.derive import named_elimination

    monkeypatch.setattr(named_elimination, "_POOL", 2)
    grown = construct_singlestep(5, 4, NODES, assumptions="stage-order-2", form="program")
    assert grown.report.verdict_row() == "S" * 7
    assert grown.program.definitions == composed.program.definitions


UNIFORM = ["1/4", "1/2", "3/4", "1"]


@pytest.mark.parametrize("form", ["expanded", "program"])
def test_a_pole_of_a_coefficient_on_the_negative_axis_is_refused(form):
    # b2 = 1/2 (a3_2 = a4_2 = 0) satisfies every condition, but a5_2 = N/D with D(z0) = 0 and
    # N(z0) != 0 at z0 = -0.8376: no method for z <= 0; both forms locate the same pole (the
    # expanded form through its quotient, the program through its pivot)
    fix = {"b2": "1/2", "a3_2": "0", "a4_2": "0"}
    result = construct_singlestep(5, 4, UNIFORM, form=form, fix=fix)
    assert not result.success
    assert result.blocked_by.startswith("coefficient a5_2 has a pole at z = -0.837604 ")


def test_a_pole_at_zero_blocks_the_program():
    # b2 = 0 leaves a pole at z = 0 (the expanded form avoids b2 = 0 for that reason)
    fix = {"b2": "0", "a3_2": "0", "a4_2": "0"}
    result = construct_singlestep(5, 4, UNIFORM, form="program", fix=fix, verify=False)
    assert not result.success
    assert result.blocked_by.startswith("the program has a pole at z = 0 (a4_3: a division")


def test_a_removable_singularity_of_the_program_is_carried_by_a_series(tmp_path):
    # b2 = 1: the method of the expanded form (b2 = 1 is its own choice), but this elimination
    # order divides by d9, which vanishes at z0 = -1.52825 where a5_3 is 0/0; a Taylor series
    # about -49/32 carries the program over it, and the generated module agrees with the
    # expanded module's quotients on [-20, 0) and at z0 itself
    from phiforge.cli.main import main
    from phiforge.derive.straightline import program_singularities
    from phiforge.runtime import load_method

    fix = {"b2": "1", "a3_2": "0", "a4_2": "0"}
    result = construct_singlestep(5, 4, UNIFORM, form="program", fix=fix)
    assert result.success and result.report.stiff_order == 4
    plain = [Definition(d.name, d.expr) for d in result.program.definitions]
    coefficients = [*result.program.a_names.values(), *result.program.b_names.values()]
    (found,) = program_singularities(plain, coefficients)
    assert found.pole is None and found.z == pytest.approx(-1.52825, abs=1e-5)
    carried = {d.name: d.series for d in result.program.definitions if d.series}
    assert carried["a5_3"][0] == Expansion(Rational(-49, 32), Rational(1, 2), 30)
    # the others are the float64 cover's discs (derive/float_accuracy.py), about centers <= 0
    assert all(e.center <= 0 for es in carried.values() for e in es)
    assert result.float64_residuals == []
    folder = tmp_path / "r"
    for form in ("program", "expanded"):
        argv = ["derive", "singlestep", "--stages", "5", "--order", "4", "--nodes",
                ",".join(UNIFORM), "--coefficients", form, "--fix", "b2=1,a3_2=0,a4_2=0",
                "--name", f"m_{form}", "--registry", str(folder), "--quiet"]  # fmt: skip
        assert main(argv) in (0, None)
    program, expanded = (load_method(f"m_{f}", registry=folder) for f in ("program", "expanded"))
    worst = 0.0
    for z in [-k / 16 for k in range(1, 321)] + [found.z, found.z + 1e-9, -1.53, -1.52]:
        (a1, b1), (a2, b2) = program.coefficients(z), expanded.coefficients(z)
        pairs = [*zip(b1, b2, strict=True)]
        for r1, r2 in zip(a1, a2, strict=True):
            pairs += zip(r1, r2, strict=True)
        worst = max(worst, *(abs(x - y) for x, y in pairs))
    assert worst < 1e-10


def test_a_product_of_phi_values_is_emitted_without_the_psi_rewrite():
    # from order 6 on the named elimination meets definitions free of names that multiply phi
    # values (10 stages: -84 phi_2(z) phi_3(z/3) + ...): the module evaluates each phi_k(c z)
    # itself instead of refusing the definition (as_psi takes phi-linear forms only)
    from phiforge.derive.codegen import name_free_form
    from phiforge.derive.phi import phi

    expr = -84 * phi(2, Z) * phi(3, Z / 3) + 14 * phi(1, Z) * phi(2, Z / 3) - Rational(7, 3)
    form = name_free_form(expr, "z <= 0")
    for z in (Rational(-1, 1000), Rational(-5, 2), Rational(-17)):
        assert sympy.N((form - expr).subs(Z, z), 30) == pytest.approx(0, abs=1e-25)
    # 12 phi_2(z) phi_3(z/3) - 1 = O(z): emitted as z * g, g finite at 0 (no 0/0 near z = 0)
    vanishing = 12 * phi(2, Z) * phi(3, Z / 3) - 1
    form = name_free_form(vanishing, "z <= 0")
    assert isinstance(form, sympy.Mul) and form.args[0] == Z
    inner = sympy.Mul(*form.args[1:])
    assert sympy.N(inner.subs(Z, Rational(-1, 10**30)), 30) == pytest.approx(5 / 12, rel=1e-12)
    for z in (Rational(-1, 1000), Rational(-17)):
        assert sympy.N((form - vanishing).subs(Z, z), 30) == pytest.approx(0, abs=1e-25)
    linear = name_free_form(phi(2, Z) - phi(3, Z), "z <= 0")
    assert "psi" in str(linear) and "phi" not in str(linear)
