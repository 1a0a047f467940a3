"""``phiforge verify --explore N`` in the scalar setting: random one-dimensional Gaussian problems
(any schedule, any step spacing) drawn by hypothesis, the observed minus claimed order per
problem, and the smallest problem that misses as a command that reproduces it."""

import json
import math
import types

import pytest

from phiforge.cli.main import main
from phiforge.runtime.stepping import load_method
from phiforge.runtime.verification import (
    defect,
    explore,
    gaussian_problem,
    problem_parameters,
    study_method,
)


def test_gaussian_problem_reference_is_the_exact_flow():
    # the exact flow against a fine run of a 4th-order pair (1.3e-8 apart; a wrong reference,
    # schedule end or start: 1e-2 or more): the problem is what the spec names
    problem = gaussian_problem(0.7, 0.3, -1.5, "ve", "karras")
    assert problem.name == "gaussian:mean=0.7,std=0.3,start=-1.5,schedule=ve,spacing=karras"
    assert problem.x_start.shape == (1, 1) and problem.step_schedule == "karras"
    fine, _ = problem.run("res_3m_pc", steps=512)
    assert defect(fine, problem.reference) < 1e-7
    assert float(problem.reference) != pytest.approx(float(problem.x_start), abs=1e-3)
    flow = gaussian_problem(schedule="flow")  # pure-noise start moved to t = 0.99
    assert (flow.t_start, flow.t_end) == (0.99, 1e-3)


def test_problem_spec_round_trips():
    spec = "gaussian:mean=-1.25,std=0.05,start=2.5,schedule=edm,spacing=time"
    values = problem_parameters(spec)
    assert gaussian_problem(**values).name == spec
    assert problem_parameters("gaussian:") == {}


def test_explore_finds_no_miss_for_a_true_claim():
    report = explore("res_2m", 5, seed=3)
    assert report["examples"] == 5 and report["misses"] == 0 and report["smallest"] is None
    decided = report["margins"]
    assert len(decided) + report["undecided"] == 5 and len(decided) >= 2
    assert all(-0.2 < m < 0.6 for m in decided), decided


def test_explore_catches_an_overstated_claim_and_shrinks_it():
    # res_2m's module with a claim of order 3: every decided problem misses by about one order
    real = load_method("res_2m")
    overstated = types.ModuleType("res_2m_overstated")
    overstated.__dict__.update({k: v for k, v in vars(real).items() if not k.startswith("__")})
    overstated.CONVERGENCE_ORDER = 3
    report = explore(overstated, 5, seed=1)
    assert report["misses"] == len(report["margins"]) >= 2
    assert all(-1.3 < m < -0.4 for m in report["margins"] if math.isfinite(m))
    smallest = report["smallest"]
    assert smallest["steps"][1] == 2 * smallest["steps"][0]
    problem = gaussian_problem(**problem_parameters(smallest["problem"]))
    study = study_method(problem, real, steps=smallest["steps"], nfe_budgets=())
    assert study.observed_order < 3 - 0.2  # the command reproduces the miss


def test_verify_explore_cli_writes_its_database_in_the_working_directory(
    capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    code = main(["verify", "--explore", "3", "res_2s", "--quiet", "--format", "json"])
    (report,) = json.loads(capsys.readouterr().out)["explore"]
    assert code == 0 and report["name"] == "res_2s" and report["claimed"] == 2
    assert report["examples"] == 3 and report["misses"] == 0
    assert (tmp_path / ".phiforge-hypothesis").is_dir()
    code = main(["verify", "--explore", "2", "res_2s", "--quiet"])
    text = capsys.readouterr().out
    assert code == 0 and "| res_2s | 2 | 2 |" in text


def test_the_shared_runner_counts_misses_and_shrinks_to_the_smallest(tmp_path):
    # derive.convergence.explore_margins on a synthetic claim: "misses" above 50, undecided at 7
    from hypothesis import strategies as st

    from phiforge.derive.convergence import explore_margins

    def margin(n: int) -> float | None:
        return None if n == 7 else (-1.0 if n > 50 else 0.1)

    from hypothesis.configuration import storage_directory

    home = storage_directory(intent_to_write=False).home_directory
    report = explore_margins(st.integers(0, 100), margin, 60, seed=2, database=str(tmp_path))
    assert report["examples"] == 60 and len(report["margins"]) == 60 - report["undecided"]
    assert report["misses"] == sum(m < -0.2 for m in report["margins"]) >= 1
    assert all(n > 50 for n in report["missed"])
    assert report["smallest"] == 51  # hypothesis shrinks the failing integer to the boundary
    assert storage_directory(intent_to_write=False).home_directory == home  # restored
