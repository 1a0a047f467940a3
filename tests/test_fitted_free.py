"""The free linear solver (runtime.fitted_free): its family holds the exponential Adams methods
(greedy least squares on one of them recovers it), the greedy weights replay exactly as a fitted
solver, the grid search descends, the end-to-end fit beats the best peer on starting points it
has not seen, and bad input is rejected by name."""

import itertools
import json
import math

import pytest
import torch

from phiforge.runtime.driver import sample
from phiforge.runtime.errors import InputError, ModelOutputError
from phiforge.runtime.fitted import fit_solver, load_solver
from phiforge.runtime.fitted_free import (
    fit_free_solver,
    greedy_solver,
    search_grid,
    teacher_states,
)
from phiforge.runtime.manifest import content_hash
from phiforge.runtime.verification import builtin_problem, defect


@pytest.fixture(scope="module")
def setting():
    pilot = builtin_problem("gmm", batch=32, seed=1)
    held_out = builtin_problem("gmm", batch=32, seed=2)
    lam0, lam1 = float(pilot.schedule.lam(1.0)), float(pilot.schedule.lam(1e-3))
    alpha0, _ = pilot.schedule.alpha_sigma_of_lam(lam0)
    fine = torch.exp(-torch.linspace(lam0, lam1, 121, dtype=torch.float64)).tolist()
    x, held = pilot.x_start / alpha0, held_out.x_start / alpha0
    model = pilot.denoiser
    return {
        "model": model,
        "x": x,
        "held": held,
        "fine": fine,
        "path": teacher_states(model, x, fine),
        "held_end": teacher_states(model, held, fine)[-1],
    }


def test_the_teacher_path_is_the_solve_at_every_point(setting):
    s = setting
    path = s["path"]
    assert len(path) == len(s["fine"]) and torch.equal(path[0], s["x"])
    full = sample(s["model"], s["x"], "edm", "res_4m_pc", output="edm", sigmas=s["fine"])
    assert torch.equal(path[-1], full)
    # an interior state is the solve's there, to its accuracy: against a solve on 4 x finer
    # steps stopped at that point, 5.1e-5 (the uncorrected last step of a solve stopped there
    # on the same steps: 2.5e-4)
    lams = torch.linspace(-math.log(s["fine"][0]), -math.log(s["fine"][-1]), 481)
    finer = torch.exp(-lams.double()).tolist()[:241]
    half = sample(s["model"], s["x"], "edm", "res_4m_pc", output="edm", sigmas=finer)
    assert float((path[60] - half).abs().max()) < 1e-4


def test_greedy_least_squares_on_an_adams_teacher_recovers_it(setting):
    """res_2m on a grid is one of the free family (state weight e^-h, no corrector): fitted to
    its own states, the greedy solver reproduces its result and its state weights."""
    s = setting
    grid = s["fine"][::20]
    nfe = len(grid) - 1
    states: list[torch.Tensor] = []
    out = sample(
        s["model"], s["x"], "edm", "res_2m", output="edm", sigmas=grid,
        callback=lambda event: states.append(event["x_start"]),
    )  # fmt: skip
    solver, result = greedy_solver(s["model"], s["x"], [*states, out], grid)
    assert solver.order == 0 and solver.history == nfe
    assert float((result - out).abs().max()) < 1e-9
    lams = [-math.log(sigma) for sigma in grid]
    for n, pair in enumerate(solver.state):
        decay = math.exp(-(lams[n + 1] - lams[n]))
        assert pair == pytest.approx([decay] * len(pair), rel=1e-7)
    # a different teacher (res_3m) is not in reach of these values: the fit is not trivial
    other = sample(s["model"], s["x"], "edm", "res_3m", output="edm", sigmas=grid)
    assert float((other - out).abs().max()) > 1e-4


def test_greedy_weights_replay_as_a_fitted_solver_and_survive_a_save(setting, tmp_path):
    s = setting
    indices = [0, 30, 60, 80, 100, 120]
    grid = [s["fine"][i] for i in indices]
    solver, result = greedy_solver(s["model"], s["x"], [s["path"][i] for i in indices], grid)
    replay = solver.sample(s["model"], s["x"])
    assert float((replay - result).abs().max()) < 1e-12
    path = solver.save(tmp_path / "free.json")
    again = load_solver(path)
    assert again == solver and torch.equal(
        again.sample(s["model"], s["held"]), solver.sample(s["model"], s["held"])
    )
    # the state weights matter: a nudged one moves the result
    nudged = json.loads(path.read_text())
    nudged["state"][1][1] += 0.01
    del nudged["hash"]
    nudged["hash"] = content_hash(nudged)
    path.write_text(json.dumps(nudged))
    moved = load_solver(path).sample(s["model"], s["held"])
    assert float((moved - again.sample(s["model"], s["held"])).abs().max()) > 1e-3
    # a free solver without its state weights, or a constrained one with them, is refused
    document = json.loads(path.read_text())
    for edit in ({"state": None}, {"order": 2}):
        broken = {**document, **edit}
        if broken["state"] is None:
            del broken["state"]
        del broken["hash"]
        broken["hash"] = content_hash(broken)
        path.write_text(json.dumps(broken))
        with pytest.raises(InputError, match="'state' must be given exactly when 'order' is 0"):
            load_solver(path)


def test_grid_descent_reaches_the_minimum_of_a_separable_score():
    """Coordinate descent with deltas halving to 1 reaches the minimiser of a separable convex
    score over ordered grids, and its record never rises."""
    target = [0, 3, 17, 18, 40, 71, 100]

    def score(indices: list[int]) -> float:
        return float(sum((i - t) ** 2 for i, t in zip(indices, target, strict=True)))

    found, record = search_grid(score, 100, 6)
    assert found == target
    assert [r["delta"] for r in record] == [None, 4, 2, 1]
    pilots = [r["pilot"] for r in record]
    assert pilots == sorted(pilots, reverse=True) and pilots[-1] == 0.0
    # a second sweep moves nothing at the minimum, and the search stops after it
    again, record = search_grid(score, 100, 6, cycles=5)
    assert again == target and [r["cycle"] for r in record] == [0, 1, 1, 1, 2, 2, 2]
    # started at the minimum it stays there; a start off the minimum is where it begins
    stay, record = search_grid(score, 100, 6, start=target)
    assert stay == target and [r["pilot"] for r in record] == [0.0] * 4
    start = [0, 10, 20, 30, 50, 80, 100]
    _, record = search_grid(score, 100, 6, start=start)
    assert record[0]["pilot"] == score(start)
    for bad in ([0, 10, 10, 30, 50, 80, 100], [1, 10, 20, 30, 50, 80, 100], [0, 50, 100]):
        with pytest.raises(InputError, match="'start' must be 7 increasing fine-point indices"):
            search_grid(score, 100, 6, start=bad)


def test_the_free_fit_beats_the_best_peer_on_held_out_starts(setting):
    s = setting
    nfe = 6
    solver = fit_free_solver(s["model"], s["x"], s["path"], s["fine"], nfe, iterations=5)
    search = solver.info["grid_search"]
    descent = [entry["pilot"] for entry in search["descent"]]
    assert descent == sorted(descent, reverse=True) and descent[-1] < 0.5 * descent[0]
    assert solver.info["pilot_defect"] <= search["greedy_pilot_defect"] * (1 + 1e-12)
    assert solver.sigmas == pytest.approx([s["fine"][i] for i in search["indices"]], rel=1e-12)
    # a descent started from the searched grid starts at its greedy defect and stays there
    again = fit_free_solver(
        s["model"], s["x"], s["path"], s["fine"], nfe, iterations=0, grid=solver.sigmas
    )
    first = again.info["grid_search"]["descent"][0]["pilot"]
    assert first == pytest.approx(search["greedy_pilot_defect"], rel=1e-9)
    assert again.info["grid_search"]["indices"] == search["indices"]
    uniform = torch.exp(
        torch.linspace(math.log(s["fine"][0]), math.log(s["fine"][-1]), nfe + 1)
    ).tolist()
    peers = [
        defect(sample(s["model"], s["held"], "edm", m, output="edm", sigmas=uniform), s["held_end"])
        for m in ("dpmpp_2m", "res_3m_pc")
    ]
    ours = defect(solver.sample(s["model"], s["held"]), s["held_end"])
    assert ours < 0.5 * min(peers)


def test_a_model_returning_nan_is_reported_with_its_step(setting):
    s = setting

    def broken(x, sigma):
        out = s["model"](x, sigma)
        return out * float("nan") if float(sigma[0]) < 1.0 else out

    grid = s["fine"][::30]
    states = [s["path"][i] for i in range(0, 121, 30)]
    with pytest.raises(ModelOutputError, match=r"step \d+ \(sigma"):
        greedy_solver(broken, s["x"], states, grid)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"nfe": 200}, "'nfe' must be an integer in 2..120"),
        ({"nfe": 1}, "'nfe' must be an integer >= 2"),
        ({"cycles": 0}, "'cycles' must be an integer >= 1"),
        ({"path": "short"}, "'path' must hold the pilots' states at every sigma"),
        ({"sigmas": "reversed"}, "'sigmas' must be finite, positive and strictly descending"),
        ({"x": "float32"}, "'x' must be a float64 batch tensor"),
        ({"grid": [1.0, 2.0]}, "'grid' must hold 5 of the teacher's noise levels"),
    ],
)
def test_bad_input_is_rejected_by_name(setting, options, message):
    s = setting
    arguments = {
        "model": s["model"], "x": s["x"][:2], "path": [p[:2] for p in s["path"]],
        "sigmas": s["fine"], "nfe": 4, "iterations": 0,
    }  # fmt: skip
    special = {
        "short": arguments["path"][:-1],
        "reversed": s["fine"][::-1],
        "float32": s["x"][:2].float(),
    }
    arguments |= {k: special.get(v, v) if isinstance(v, str) else v for k, v in options.items()}
    with pytest.raises(InputError, match=message):
        fit_free_solver(**arguments)


def test_free_and_order_exclude_each_other_and_a_free_fit_moves_every_weight(setting):
    s = setting
    ends = (s["fine"][0], s["fine"][-1], 4)
    with pytest.raises(InputError, match="'free' and 'order' exclude each other"):
        fit_solver(s["model"], s["x"], s["path"][-1], *ends, free=True, order=2)
    # from the Adams weights, without a teacher's states: the state weights move too
    solver = fit_solver(s["model"], s["x"], s["path"][-1], *ends, free=True, iterations=5)
    assert solver.order == 0 and solver.info["pilot_defect"] < solver.info["pilot_defect_start"]
    lams = [-math.log(sigma) for sigma in solver.sigmas]
    decays = [math.exp(-(b - a)) for a, b in itertools.pairwise(lams)]
    assert max(abs(p[0] - d) for p, d in zip(solver.state, decays, strict=True)) > 1e-6


def test_fit_command_free(capsys, tmp_path):
    from phiforge.cli.main import main

    path = tmp_path / "free.json"
    argv = ["fit", "--free", "--nfe", "5", "--pilot", "16", "--held-out", "16"]
    argv += ["--iterations", "3", "--teacher-steps", "60", "--out", str(path)]
    assert main([*argv, "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    judged = result["held_out_defect"]
    assert judged["fitted"] < judged["res_3m_pc_logsnr"]
    assert result["grid_search"]["fine"] == 60 and len(result["sigmas"]) == 6
    assert load_solver(path).order == 0
    assert main([*argv, "--order", "2"]) == 2
    assert "'--free'" in capsys.readouterr().err
    # --free --start: a structured fit continued with every weight free, no grid search
    structured = tmp_path / "structured.json"
    base = ["fit", "--nfe", "5", "--pilot", "16", "--held-out", "16", "--teacher-steps", "60"]
    assert main([*base, "--iterations", "3", "--out", str(structured), "-q"]) == 0
    capsys.readouterr()
    continued = tmp_path / "continued.json"
    argv = [*base, "--free", "--start", str(structured), "--iterations", "3"]
    assert main([*argv, "--out", str(continued), "--format", "json", "-q"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert "grid_search" not in result and result["warm_start"]
    assert result["pilot_defect"] <= load_solver(structured).info["pilot_defect"] * (1 + 1e-9)
    assert load_solver(continued).order == 0 and load_solver(continued).history == 5


def test_a_free_fit_continues_a_structured_one(setting):
    """Every structured solver is one of the free family: a free fit started from one runs it
    unchanged (state weights e^-h) before its first iteration, and then goes lower."""
    s = setting
    ends = (s["fine"][0], s["fine"][-1], 5)
    structured = fit_solver(s["model"], s["x"], s["path"][-1], *ends, iterations=3)
    same = fit_solver(  # history 4 -> 5: the weights padded with zeros
        s["model"], s["x"], s["path"][-1], *ends, free=True, history=5, start=structured,
        iterations=0,
    )  # fmt: skip
    # the grid goes through its log-sigma parameters: equal to rounding, not bit for bit
    assert same.order == 0 and same.sigmas == pytest.approx(structured.sigmas, rel=1e-12)
    difference = same.sample(s["model"], s["held"]) - structured.sample(s["model"], s["held"])
    assert float(difference.abs().max()) < 1e-12
    lower = fit_solver(
        s["model"], s["x"], s["path"][-1], *ends, free=True, start=structured, iterations=5
    )
    assert lower.info["pilot_defect"] < 0.95 * structured.info["pilot_defect"]
    with pytest.raises(InputError, match=r"'start': its \(nfe, steps, history, order\)"):
        fit_solver(s["model"], s["x"], s["path"][-1], *ends, start=same, iterations=0)
    with pytest.raises(InputError, match="'start': a free fit starts from a solver of its nfe"):
        fit_solver(s["model"], s["x"], s["path"][-1], *ends, free=True, history=3, start=same)
