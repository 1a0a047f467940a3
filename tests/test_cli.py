"""The phiforge command line: output formats and bad-input handling."""

import json
import subprocess
import sys

import pytest

from phiforge.cli.main import main
from phiforge.runtime.methods import generated_methods


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_conditions_json_lists_order_tree_expression(capsys):
    code, out, _ = run(
        capsys, "conditions", "--order", "4", "--setting", "scalar", "--format", "json"
    )
    records = json.loads(out)
    assert code == 0 and len(records) == 7
    assert {"order", "tree", "expression"} <= set(records[0])
    assert records[5]["tree"] == "[[t]t]"
    assert records[5]["expression"] == "sum_i b_i(z) c_i psi_{2,i}(z)"


def test_conditions_count_to_order_8(capsys):
    code, out, _ = run(capsys, "conditions", "--order", "8", "--format", "json")
    assert code == 0 and len(json.loads(out)) == 199


def test_conditions_markdown_and_latex(capsys):
    _, out, _ = run(capsys, "conditions", "--order", "3", "--format", "markdown")
    assert out.splitlines()[0] == "| # | order | tree | condition |"
    assert len(out.strip().splitlines()) == 2 + 3
    _, out, _ = run(
        capsys, "conditions", "--order", "3", "--setting", "operator", "--format", "latex"
    )
    assert out.startswith("\\begin{align*}") and r"J\left(\psi_{2,i}(z_{1})\right)" in out


def test_classical_and_nonstiff_kinds(capsys):
    _, out, _ = run(capsys, "conditions", "--order", "5", "--kind", "classical", "--format", "json")
    assert len(json.loads(out)) == 17
    _, out, _ = run(capsys, "conditions", "--order", "3", "--kind", "nonstiff", "--format", "json")
    assert [r["taylor_degree"] for r in json.loads(out)] == [1, 0, 0]


def test_check_json_fields(capsys):
    code, out, _ = run(capsys, "check", "dpmpp_2s", "--format", "json")
    report = json.loads(out)
    assert code == 0
    assert (
        report["stiff_order"],
        report["weak_stiff_order"],
        report["nonstiff_order"],
        report["classical_order"],
    ) == (1, 2, 2, 2)
    first = report["conditions"][0]
    assert (first["tree"], first["order"], first["verdict"]) == ("[t]", 2, "weak")
    assert first["leading_term"] == "-z/12"


def test_check_with_parameter(capsys):
    _, out, _ = run(capsys, "check", "exprk2", "--param", "c2=2/3", "--format", "json")
    assert json.loads(out)["conditions"][2]["verdict"] == "weak"


def test_check_all_catalogue_as_table(capsys):
    code, out, _ = run(capsys, "check", "--order", "4")
    assert code == 0
    assert "| exprk4s5_ho | scalar | S | S | S | S | W | S | W | 3 | 4 | 4 | 4 |" in out


def test_check_both_settings_text(capsys):
    code, out, _ = run(capsys, "check", "etd3rk", "--setting", "both", "--order", "3")
    assert code == 0 and "operator setting" in out and "scalar setting" in out
    assert "classical-only" in out


def test_show_and_catalogue_and_trees(capsys):
    _, out, _ = run(capsys, "show", "krogstad", "--format", "json")
    assert json.loads(out)["a"]["4,3"] == "2*phi(2, z)" and json.loads(out)["definitions"] == {}
    # a straight-line record is shown as its program: the tableau names its definitions
    _, out, _ = run(capsys, "show", "res_6s", "--format", "json")
    shown = json.loads(out)
    assert shown["a"]["10,9"] == "a10_9" and shown["b"]["2"] == "0"
    assert len(shown["definitions"]) == 143 and "phi(2, 2*z/3)" in shown["definitions"]["a3_2"]
    _, out, _ = run(capsys, "show", "res_6s")
    assert "| 1 | a10_1 |" in out and "where, in program order:" in out
    _, out, _ = run(capsys, "show", "res_6s", "--format", "latex")
    assert "\\begin{aligned}" in out and "a_{10 1} &=" in out
    _, out, _ = run(capsys, "catalogue", "--format", "json")
    assert any(r["name"] == "exprk5s8_lo" and r["stages"] == 8 for r in json.loads(out))
    families = {r["name"]: (r["family"], r.get("steps", r.get("stages"))) for r in json.loads(out)}
    assert families["dpmpp_3m_ref"] == ("multistep", 3)
    assert families["seeds_2a"] == ("stochastic", 2)
    _, out, _ = run(capsys, "trees", "--order", "5", "--format", "json")
    assert len(json.loads(out)) == 9


def test_unknown_method_is_a_clear_error(capsys):
    code, _, err = run(capsys, "check", "dpm_solver_9")
    assert code == 2 and "unknown method 'dpm_solver_9'" in err and "res_2s" in err


def test_unknown_method_json_error(capsys):
    code, _, err = run(capsys, "check", "nope", "--format", "json")
    assert code == 2 and "unknown method" in json.loads(err)["error"]


def test_bad_parameter_is_a_clear_error(capsys):
    code, _, err = run(capsys, "check", "exprk2", "--param", "c2")
    assert code == 2 and "'--param'" in err
    code, _, err = run(capsys, "check", "exprk2", "--param", "c2=abc")
    assert code == 2 and "must be a number" in err


@pytest.mark.parametrize("order", ["0", "-2", "x"])
def test_bad_order_exits_with_usage_error(capsys, order):
    with pytest.raises(SystemExit) as exit_info:
        main(["conditions", "--order", order])
    assert exit_info.value.code == 2
    assert "--order" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["conditions", "check", "trees"])
def test_order_beyond_the_enumeration_limit_is_refused_at_once(capsys, command):
    # order 99 used to start enumerating ~1e40 trees; now it is refused naming the range
    code, _, err = run(capsys, command, "--order", "99")
    assert code == 2 and "must be an integer in 1..16" in err and "got 99" in err


def test_multistep_order_beyond_the_limit_is_refused_at_once(capsys, tmp_path):
    code, _, err = run(
        capsys, "derive", "multistep", "--order", "40", "--name", "x", "--registry", str(tmp_path)
    )
    assert code == 2 and "must be an integer in 1..7" in err and "got 40" in err
    assert not list(tmp_path.iterdir())


def test_module_entry_point_runs():
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "phiforge",
            "conditions",
            "--order",
            "2",
            "--setting",
            "operator",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(completed.stdout)[0]["expression"] == "psi_2(z0)"


def test_derive_singlestep_writes_a_verified_record(capsys, tmp_path):
    code, out, _ = run(
        capsys,
        "derive",
        "singlestep",
        "--stages",
        "3",
        "--order",
        "3",
        "--nodes",
        "1/3,2/3",
        "--name",
        "full3",
        "--registry",
        str(tmp_path),
        "--format",
        "json",
    )
    summary = json.loads(out)
    assert code == 0 and summary["stiff_order"] == 3 and summary["operator_stiff_order"] == 2
    record = json.loads((tmp_path / "full3.json").read_text())
    assert record["provenance"]["kind"] == "derived" and record["nfe_per_step"] == 3


def test_derive_reports_the_blocking_condition(capsys, tmp_path):
    code, _, err = run(
        capsys,
        "derive",
        "singlestep",
        "--stages",
        "4",
        "--order",
        "4",
        "--nodes",
        "1/3,2/3,1",
        "--name",
        "x",
        "--registry",
        str(tmp_path),
    )
    assert code == 2 and "blocked by condition 5 [[τ^2]]" in err


def test_derive_operator_setting(capsys, tmp_path):
    code, out, _ = run(
        capsys,
        "derive",
        "singlestep",
        "--stages",
        "3",
        "--order",
        "3",
        "--nodes",
        "1/3,2/3",
        "--setting",
        "operator",
        "--weak-top",
        "--name",
        "ho3",
        "--registry",
        str(tmp_path),
        "--format",
        "json",
    )
    summary = json.loads(out)
    assert code == 0
    assert (summary["operator_stiff_order"], summary["weak_stiff_order"]) == (2, 3)


def test_derive_multistep_and_registry_list(capsys, tmp_path):
    code, _, _ = run(
        capsys, "derive", "multistep", "--order", "3", "--name", "m3", "--registry", str(tmp_path)
    )
    assert code == 0
    _, out, _ = run(capsys, "registry", "list", "--registry", str(tmp_path), "--format", "json")
    (entry,) = [e for e in json.loads(out) if e["folder"] == str(tmp_path)]
    assert len(json.loads(out)) == 1 + len(generated_methods())  # the package's, then the user's
    assert {
        k: entry[k]
        for k in ("name", "family", "stiff_order", "nonstiff_order", "nfe_per_step", "provenance")
    } == {
        "name": "m3",
        "family": "multistep",
        "stiff_order": 3,
        "nonstiff_order": 3,
        "nfe_per_step": 1,
        "provenance": "derived",
    }


def test_derive_multistep_with_corrector_is_one_order_higher(capsys, tmp_path):
    code, out, _ = run(
        capsys,
        "derive",
        "multistep",
        "--order",
        "2",
        "--corrector",
        "--name",
        "pc2",
        "--registry",
        str(tmp_path),
        "--format",
        "json",
    )
    assert code == 0 and json.loads(out)["stiff_order"] == 3
    record = json.loads((tmp_path / "pc2.json").read_text())
    assert record["predictor_orders"]["stiff"] == 2 and record["corrector_orders"]["stiff"] == 3
    assert record["orders"]["scalar"]["stiff"] == record["convergence_order"] == 3
    assert len(record["coefficients"]["gamma"]) == 3
    assert record["conditions"]["corrector_quadrature"][3]["verdict"] == "fails"


def test_registry_show_refuses_edited_record(capsys, tmp_path):
    run(capsys, "derive", "multistep", "--order", "2", "--name", "m2", "--registry", str(tmp_path))
    path = tmp_path / "m2.json"
    path.write_text(path.read_text().replace('"nfe_per_step": 1', '"nfe_per_step": 2'))
    code, _, err = run(capsys, "registry", "show", "m2", "--registry", str(tmp_path))
    assert code == 2 and "edited by hand" in err


def test_generate_check_exit_status(capsys, tmp_path):
    code, out, _ = run(capsys, "generate", "--check", "--format", "json")
    assert code == 0 and json.loads(out)["files"] == []
    code, out, _ = run(capsys, "generate", "--check", "--out", str(tmp_path))
    assert code == 1 and "res_2s.py" in out


def test_sample_states_a_method_that_did_not_fit_the_budget(capsys, tmp_path):
    """No silent substitution: NFE 2 is less than one res_5s step (7 calls), so the run's
    steps are named in a note (text) and in methods_per_step (JSON)."""
    out = str(tmp_path / "s.pt")
    code, text, _ = run(capsys, "sample", "--nfe", "2", "--method", "res_5s", "--out", out)
    assert code == 0 and "note: res_5s did not run" in text and "dpmpp_2s_taylor" in text
    code, text, _ = run(capsys, "sample", "--nfe", "10", "--method", "res_2m", "--out", out)
    assert code == 0 and "note:" not in text  # the warm-up is the method's own convention
    code, text, _ = run(
        capsys, "sample", "--nfe", "2", "--method", "res_5s", "--out", out, "--format", "json"
    )
    result = json.loads(text)
    assert result["methods_per_step"] == ["dpmpp_2s_taylor"] and "res_5s" in result["note"]


def test_sample_writes_its_torch_file_and_grid_apart(capsys, tmp_path):
    """The PNG grid goes beside the torch file; both paths are checked before the run: a grid
    path that is a folder is refused with nothing written, and ``--out x.png`` (where the grid
    overwrote the samples) is refused."""
    import torch

    out = tmp_path / "s.pt"
    code, _, _ = run(capsys, "sample", "--nfe", "4", "--batch", "3", "--out", str(out))
    assert code == 0 and torch.load(out).shape == (3, 8, 8)
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "t.png").mkdir()
    code, _, err = run(capsys, "sample", "--nfe", "4", "--out", str(tmp_path / "t.pt"))
    assert code == 2 and "t.png' is a folder" in err and not (tmp_path / "t.pt").exists()
    code, _, err = run(capsys, "sample", "--nfe", "4", "--out", str(tmp_path / "u.png"))
    assert code == 2 and "suffix .png" in err and not (tmp_path / "u.png").exists()


def test_verify_plot_format_follows_the_suffix(capsys, tmp_path):
    """--plot writes the figure at the name given, in the format of its suffix (PNG without
    one; matplotlib alone would have written NAME.png beside the name printed)."""
    study = ["verify", "exp_euler", "--problem", "gaussian", "--steps", "8", "16", "32"]
    study += ["--nfe", "5", "--batch", "2", "--quiet"]
    for name, magic in (("v.svg", b"<?xml"), ("v", b"\x89PNG"), ("v.PDF", b"%PDF")):
        code, _, _ = run(capsys, *study, "--plot", str(tmp_path / name))
        assert code == 0 and (tmp_path / name).read_bytes().startswith(magic)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v", "v.PDF", "v.svg"]


def test_help_states_defaults_and_usage_errors_honour_json(capsys):
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    text = capsys.readouterr().out
    assert "--batch BATCH         (default: 16)" in text and "(default: 0)" in text
    with pytest.raises(SystemExit) as stop:
        main(["sample", "--nfe", "abc", "--format", "json"])
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert json.loads(err)["error"].startswith("phiforge sample: argument --nfe")
