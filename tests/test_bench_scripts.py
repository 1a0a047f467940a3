"""The benchmark scripts run and report the right counts (their timings are not asserted)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from phiforge.runtime.fitted import load_solver

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_conditions_benchmark_counts_and_orders():
    rows = _load("conditions").measure(5)
    assert [r["conditions"] for r in rows] == [1, 3, 7, 16]
    assert [r["stiff_order"] for r in rows] == [2, 3, 4, 4]
    assert [r["weak_stiff_order"] for r in rows] == [2, 3, 4, 5]
    assert [r["scalar_stiff_order"] for r in rows] == [2, 3, 4, 4]


def test_defect_benchmark_spends_each_budget_and_ranks_both_sides():
    bench = _load("defect_vs_nfe")
    result = bench.measure(batch=2, budgets=(6, 10), methods=["dpmpp_2m", "res_3s"])
    adaptive = result["adaptive"]["res_3s"]  # NFE grows as the tolerance tightens
    assert list(adaptive) == sorted(adaptive, key=lambda run: -run[0])
    assert adaptive[0][1] < adaptive[-1][1] and adaptive[0][2] > adaptive[-1][2]
    assert "dpmpp_2m" not in result["adaptive"]  # no embedded pair
    rows = result["defects"]
    assert set(rows) >= {"dpmpp_2m (karras)", "dpmpp_2m (logsnr)", "res_3s (logsnr)"}
    assert rows["dpmpp_2m (logsnr)"][10][0] == 10  # the NFE used equals the budget
    assert rows["res_3s (logsnr)"][10][0] == 9  # 3 stages: the largest count within 10
    best = result["summary"][10]["best_phiforge"]
    peer_prefixes = bench.PEER_PREFIXES
    assert best["defect"] == min(
        row[10][1] for name, row in rows.items() if not name.startswith(peer_prefixes)
    )
    if result["meta"]["kdiffusion"]:  # the same method in both libraries, same grid
        ours, theirs = rows["dpmpp_2m (karras)"][10][1], rows["k:dpmpp_2m (karras)"][10][1]
        assert abs(ours - theirs) <= 1e-9 * theirs
    if result["meta"]["diffusers"]:  # diffusers steps in float32 (it upcasts to float32)
        ours, theirs = rows["dpmpp_2m (logsnr)"][10][1], rows["d:dpmpp_2m (logsnr)"][10][1]
        assert abs(ours - theirs) <= 1e-4 * theirs
        assert rows["d:unipc_bh2_3 (karras)"][10][0] == 10
        peers = [row[10][1] for name, row in rows.items() if name.startswith(peer_prefixes)]
        assert result["summary"][10]["best_peer"]["defect"] == min(peers)


def test_step_search_benchmark_fits_on_pilots_and_judges_on_the_test_set():
    bench = _load("step_search")
    result = bench.measure(
        nfe=4,
        pilot_batch=4,
        evaluations=40,
        ours=("dpmpp_2m",),
        peers=("k:dpmpp_2m",),
        test_batch=2,
        held_out_batch=2,
    )
    rows = result["rows"]
    ours = rows["dpmpp_2m"]
    assert ours["pilot_fitted"] < ours["pilot_uniform"]  # the search improves what it fits
    assert len(ours["lambda_steps"]) == 4
    from phiforge.runtime.schedules import noise_schedule

    schedule = noise_schedule("vp-linear")  # the ends stay: the problem's t = 1 -> 1e-3
    span = float(schedule.lam(1e-3)) - float(schedule.lam(1.0))
    assert abs(sum(ours["lambda_steps"]) - span) < 0.01
    summary = result["summary"]
    assert summary["best_phiforge_fitted"]["defect"] == ours["fitted"]
    if "k:dpmpp_2m" in rows:  # the same method in both libraries: the same fit
        theirs = rows["k:dpmpp_2m"]
        assert abs(theirs["logsnr"] - ours["logsnr"]) <= 1e-9 * ours["logsnr"]
        assert summary["ratio_vs_peer_fitted"] == ours["fitted"] / theirs["fitted"]


def test_overhead_benchmark_counts_evaluations():
    from phiforge.runtime.peers import kdiffusion_sampling

    if kdiffusion_sampling() is None:  # its baselines are k-diffusion's samplers
        pytest.skip("k-diffusion is not installed")
    result = _load("overhead").measure(
        steps=3, methods=["res_2m", "res_3s"], shape=(2, 4, 8, 8), repeats=1
    )
    rows = {r["method"]: r for r in result["rows"]}
    assert rows["res_2m"]["nfe"] == 3 and rows["res_3s"]["nfe"] == 9
    assert result["evaluation_ms"] > 0 and all(r["per_step_us"] > 0 for r in rows.values())
    assert rows["k:sample_euler"]["per_step_over_euler"] == 1.0  # the baseline, same run


def test_distribution_benchmark_measures_against_the_true_distribution():
    bench = _load("distribution_vs_nfe")
    result = bench.measure(
        samples=400, budgets=(10, 30), labels=["seeds_2", "res_2s + restart"], floor_sets=3
    )
    rows = result["rows"]
    assert [r["nfe"] for r in rows["seeds_2"]] == [9, 29]  # 2 per step, the last step 1
    assert [r["budget"] for r in rows["res_2s + restart"]] == [30]  # no room for it at 10
    assert rows["seeds_2"][1]["frechet"] < rows["seeds_2"][0]["frechet"]
    floor = result["floor"]
    assert floor["frechet"] > 0 and floor["sliced_w2"] > 0 and floor["sets"] == 3
    rows = [{"nfe": 10, "frechet": 0.4}, {"nfe": 20, "frechet": 0.1}, {"nfe": 40, "frechet": 0.05}]
    assert bench.crossing_nfe(rows, 0.2) == pytest.approx(10 * 2**0.5)  # slope -2 in log-log
    assert bench.crossing_nfe(rows, 0.01) is None and bench.crossing_nfe(rows, 0.5) == 10
    # below at the first budget, above later (a fitted row that hovers): the first budget, not
    # the later fall (which gave 9.6 for a row at 0.0174 < 0.0180 from NFE 6)
    hovering = [{"nfe": 6, "frechet": 0.0174}, {"nfe": 9, "frechet": 0.024}]
    hovering.append({"nfe": 10, "frechet": 0.0155})
    assert bench.crossing_nfe(hovering, 0.018) == 6
    # the Frechet floor of n exact samples against the exact moments falls like 1/n
    small = bench.measure(samples=100, budgets=(), labels=[], floor_sets=3)["floor"]
    assert 2.5 < small["frechet"] / floor["frechet"] < 6.5
    # the trained network as the model: same truth, same floor, different samples
    options = {"samples": 200, "budgets": (20,), "labels": ["res_3m (ODE)"], "floor_sets": 2}
    exact = bench.measure(**options)
    learned = bench.measure(**options, denoiser="network")
    assert learned["meta"]["denoiser"] == "network" and learned["floor"] == exact["floor"]
    gap = (
        learned["rows"]["res_3m (ODE)"][0]["frechet"] - exact["rows"]["res_3m (ODE)"][0]["frechet"]
    )
    assert abs(gap) > 1e-6


def test_four_stage_study_reduces_the_last_condition_to_the_classical_one_at_z0():
    import sympy

    bench = _load("four_stages")
    c2, c3, c4 = bench.C2, bench.C3, bench.C4
    coefficients = bench.condition_iv_coefficients(degree=2)
    _, factors = sympy.factor_list(coefficients[0], c2, c3, c4)
    small = {str(f) for f, _ in factors}
    assert {"c4 - 1", "6*c2*c4 - 4*c2 - 4*c4 + 3", "6*c2*c3 - 4*c2 - 4*c3 + 3"} <= small

    def first_non_zero(nodes):
        values = [
            sympy.radsimp(sympy.expand(q.subs(dict(zip((c2, c3, c4), nodes, strict=True)))))
            for q in coefficients
        ]
        return next((m for m, v in enumerate(values) if v != 0), None)

    assert first_non_zero(bench.NODE_SETS["(1/3, 2/3, 1)"]) == 1  # 3/8 rule: classical only
    assert first_non_zero(bench.NODE_SETS["Radau IA (6 -+ sqrt 6)/10, 1"]) is None  # to z^2


def test_denoiser_benchmark_compares_equal_computations():
    result = _load("denoisers").measure(rows=(3, 700), repeats=1)
    rows = {r["rows"]: r for r in result["rows"]}
    assert set(rows) == {3, 700}  # 700 rows: two CPU blocks
    assert all(r["max_difference"] < 1e-12 for r in rows.values())


def test_fitted_solver_benchmark_judges_every_row_on_both_sets():
    bench = _load("fitted_solver")
    result = bench.measure(
        budgets=(6,), pilot_batch=4, iterations=3, test_batch=2, held_out_batch=2
    )
    entry = result["budgets"][6]
    rows = entry["rows"]
    assert {"res_3m_pc (logsnr)", "res_3m_pc (fitted grid)", "fitted weights + grid"} <= set(rows)
    both = rows["fitted weights + grid"]
    assert both["fit"]["pilot_defect"] <= both["fit"]["pilot_defect_start"]
    assert len(both["lambda_steps"]) == 6
    standard = min(
        r["test"] for n, r in rows.items() if n.endswith("(logsnr)") and "fitted" not in n
    )
    assert entry["ratios"]["test"]["both_vs_standard"] == both["test"] / standard
    if result["meta"]["diffusers_in_process"]:  # UniPC-3 and res_3m_pc: one scheme, any grid
        pairs = (("(logsnr)", "(logsnr)"), ("(fitted grid)", "(that grid)"))
        for grid, same in pairs:
            ours, theirs = rows[f"res_3m_pc {grid}"]["test"], rows[f"{bench.PEER} {same}"]["test"]
            assert abs(ours - theirs) <= 2e-2 * theirs


def test_fitted_sde_benchmark_adds_fitted_rows_and_compares_crossings(capsys):
    bench = _load("fitted_sde")
    extra, fits = bench.fitted_runs(eta=1.0, pilot=128, iterations=3, fit_max=6, seed=0)
    result = bench.measure(
        samples=200, budgets=(6, 10), labels=["seeds_3"], floor_sets=2, extra_rows=extra
    )
    rows = result["rows"][bench.LABEL]
    assert [(r["budget"], r["nfe"]) for r in rows] == [(6, 6)]  # no fit beyond fit_max
    assert list(fits) == [6] and fits[6]["pilot_frechet"] < fits[6]["pilot_frechet_start"]
    assert fits[6]["sigmas"][0] == bench.SIGMA_MAX and len(fits[6]["sigmas"]) == 7
    assert [step["eta"] for step in fits[6]["chain"]] == [1.0]
    summary = bench.summary(result)
    for key in ("frechet", "sliced_w2"):
        assert summary[key]["threshold"] == 1.25 * result["floor"][key]
        assert set(summary[key]["crossing"]) == {"seeds_3", bench.LABEL}
    # the report of a --format json result read back (--render) shows the fit and the figures
    saved = json.loads(json.dumps({**result, "fits": fits, "summary": summary}))
    capsys.readouterr()
    bench.print_report(saved)
    report = capsys.readouterr().out
    before = f"{fits[6]['pilot_frechet_start']:.4g}"
    assert f"| 6 | 1 | ODE (from karras7) | 128 | weights, grid | {before} |" in report
    assert f"fitted SDE solver: {rows[0]['frechet']:.7f} (NFE 6)" in report
    assert f"exact: threshold {summary['frechet']['threshold']:.7f};" in report
    # a continuation fits eta 0.5 first and starts the eta 1 fit where that one ended
    extra, fits = bench.fitted_runs(1.0, 128, 3, 6, 0, continuation=(0.5,))
    out, nfe = extra[bench.LABEL](torch.full((4, 64), 80.0, dtype=torch.float64), 6)
    first, second = fits[6]["chain"]
    assert (first["eta"], second["eta"], nfe) == (0.5, 1.0, 6) and second["warm_start"]
    assert not first["warm_start"] and out.shape == (4, 64)
    # a coupled refit keeps the last grid and starts from the last solver
    extra, fits = bench.fitted_runs(1.0, 128, 3, 6, 0, coupled=2)
    extra[bench.LABEL](torch.full((4, 64), 80.0, dtype=torch.float64), 6)
    plain, refit = fits[6]["chain"]
    assert "coupled" not in plain and plain["fit_grid"]
    assert refit["coupled"] == 2 and refit["warm_start"] and not refit["fit_grid"]
    assert refit["pilot_frechet"] <= refit["pilot_frechet_start"]
    assert fits[6]["noise_scale"] is None
    # on fresh pilots, with the grid and the noise amplitudes
    extra, fits = bench.fitted_runs(1.0, 128, 3, 6, 0, coupled=2, coupled_pilot=160,
                                    coupled_full=True)  # fmt: skip
    extra[bench.LABEL](torch.full((4, 64), 80.0, dtype=torch.float64), 6)
    plain, refit = fits[6]["chain"]
    assert (plain["pilot_batch"], refit["pilot_batch"]) == (128, 160)
    assert refit["fit_grid"] and refit["fit_noise"] and len(fits[6]["noise_scale"]) == 6


def test_fitted_sde_benchmark_keeps_the_best_of_several_starting_grids(monkeypatch):
    bench = _load("fitted_sde")
    karras3, logsnr = bench.start_grid("karras3", 4), bench.start_grid("logsnr", 4)
    assert karras3 == bench.karras_sigmas(bench.SIGMA_MAX, bench.SIGMA_MIN, 5, 3.0)
    ratios = np.array(logsnr[:-1]) / np.array(logsnr[1:])  # uniform in log sigma
    assert (logsnr[0], logsnr[-1]) == (bench.SIGMA_MAX, bench.SIGMA_MIN)
    assert np.ptp(ratios) < 1e-9 * ratios[0]
    for bad in ("karras", "karras-1", "uniform"):
        with pytest.raises(ValueError, match="parameter 'starts'"):
            bench.fitted_runs(1.0, 16, 1, 6, 0, starts=("karras7", bad))
    calls, fit = [], bench.fit_solver

    def recorded(*args, **kwargs):
        calls.append((kwargs, fit(*args, **kwargs)))
        return calls[-1][1]

    monkeypatch.setattr(bench, "fit_solver", recorded)
    extra, fits = bench.fitted_runs(1.0, 128, 3, 6, 0, continuation=(0.5,),
                                    starts=("karras7", "logsnr"))  # fmt: skip
    extra[bench.LABEL](torch.full((4, 64), 80.0, dtype=torch.float64), 6)
    assert calls[0][0]["sigmas"] == bench.start_grid("karras7", 6)
    assert calls[1][0]["sigmas"] == bench.start_grid("logsnr", 6)
    first, second, last = fits[6]["chain"]
    assert [(s["start"], s["eta"]) for s in (first, second)] == [("karras7", 0.5), ("logsnr", 0.5)]
    assert "start" not in last and last["eta"] == 1.0 and last["warm_start"]
    assert first["kept"] != second["kept"]  # exactly one is continued: the lower objective
    kept, dropped = (first, second) if first["kept"] else (second, first)
    assert kept["pilot_frechet"] <= dropped["pilot_frechet"]
    assert calls[2][0]["start"] is calls[0 if first["kept"] else 1][1]


def test_unet_sampling_benchmark_measures_agreement_defect_and_throughput():
    result = _load("unet_sampling").measure("cpu", batch=2, agreement_batch=1)
    rows = {r["method"]: r for r in result["rows"]}
    assert set(rows) == {"res_2m", "res_3m_pc", "dpmpp_2s"}
    for row in rows.values():
        assert row["float32_vs_cpu_float64"] < 1e-3  # float32 against float64, same solve
        assert row["bfloat16_vs_cpu_float64"] > row["float32_vs_cpu_float64"]
        assert 0 < row["defect_float32"] < 0.5 and row["images_per_second_float32"] > 0
    assert "| res_3m_pc |" in _load("unet_sampling").render(result)


def test_unet_distribution_benchmark_has_floors_and_rows(monkeypatch):
    pytest.importorskip("skimage")
    module = _load("unet_distribution")
    monkeypatch.setattr(module, "TEACHER_STEPS", 8)  # coarse fine solves: a test of the plumbing
    monkeypatch.setattr(module, "FINE_SDE_STEPS", 4)
    result = module.measure(
        samples=8, budgets=(4,), fit=50, ode_pilot=4, fit_budgets=(4,), iterations=1,
        model_reference=16,
    )  # fmt: skip
    floor = result["floor"]
    assert floor["held-out sets"]["frechet"] > 0 and floor["training patches"]["frechet"] > 0
    fine = floor["fine ODE solve of these starts"]["frechet_model"]
    assert 0 < fine < floor["held-out sets"]["frechet_model"]  # the model's own samples
    rows = result["rows"]
    assert {"seeds_2", "res_3m_pc (ODE)", "res_2s + restart", *module.FITTED} <= set(rows)
    cells = [cell for row in rows.values() for cell in row]
    assert all(cell["frechet"] > 0 and cell["frechet_model"] > 0 for cell in cells)
    ode, sde = (result["fits"][f"{label}, NFE 4"] for label in module.FITTED)
    assert ode["objective"] == "defect" and sde["features"] == "block_colours_8"
    assert sde["warm_start"] and sde["pilot_batch"] == 50  # continued from the ODE fit
    text = module.render(result)
    assert "| floor | Frechet / SW2 / model |" in text and "| fitted SDE solver |" in text


def test_defect_spread_quantiles_are_those_of_the_per_start_errors():
    from phiforge.runtime.verification import builtin_problem, defect

    module = _load("defect_spread")
    result = module.measure("gmm", 8, 2, ("dpmpp_2m@10",))
    row = result["rows"]["dpmpp_2m@10"]
    errors = row["errors"]
    assert len(errors) == 8 and errors == sorted(errors)
    assert row["q0.5"] == pytest.approx(float(np.median(errors)), rel=1e-12)
    assert errors[0] < row["q0.1"] < row["q0.5"] < row["q0.9"] < row["max"] == errors[-1]
    problem = builtin_problem("gmm", batch=8, seed=2)  # the mean is the benchmarks' defect
    out, _ = problem.run("dpmpp_2m", nfe=10)
    assert row["mean"] == pytest.approx(defect(out, problem.reference), rel=1e-12)
    assert "| dpmpp_2m@10 |" in module.render(result)


def test_fitted_limits_least_squares_recovers_exact_combinations():
    module = _load("fitted_limits")
    generator = torch.Generator().manual_seed(0)
    f = [torch.randn(6, 5, generator=generator, dtype=torch.float64) for _ in range(3)]
    target = 0.3 * f[0] - 2.0 * f[1] + 0.5 * f[2]
    shared = module.least_squares(f, target, "shared")
    assert shared.shape == (1, 3)
    assert shared[0].tolist() == pytest.approx([0.3, -2.0, 0.5], abs=1e-12)
    per_value = torch.tensor([[0.1 * j, 1.0 - j, 2.0] for j in range(5)], dtype=torch.float64)
    target = sum(per_value[:, i] * f[i] for i in range(3))
    weights = module.least_squares(f, target, "value")
    assert weights.shape == (5, 3)
    assert torch.allclose(weights, per_value, atol=1e-12)
    assert torch.allclose(module.combine(weights, f), target, atol=1e-12)


def test_fitted_limits_exact_states_are_the_fine_solve_at_the_grid_points():
    from phiforge.runtime.driver import sample
    from phiforge.runtime.verification import builtin_problem

    module = _load("fitted_limits")
    problem = builtin_problem("gmm", batch=3, seed=0)
    x = problem.x_start / 0.0066  # any start of the right size
    grid = [150.0, 20.0, 2.0, 0.3, 0.02]
    states = module.exact_states(problem.denoiser, x, grid, 4)
    assert len(states) == 5 and torch.equal(states[0], x)
    lams = -torch.log(torch.tensor(grid, dtype=torch.float64))
    fine = torch.cat([lams[:-1, None] + torch.arange(4) / 4 * lams.diff()[:, None]]).flatten()
    fine = torch.exp(-torch.cat([fine, lams[-1:]])).tolist()
    for n in (2, 4):  # a solve stopped at grid point n
        alone = sample(
            problem.denoiser, x, "edm", "res_3m_pc", output="edm", sigmas=fine[: 4 * n + 1]
        )
        assert torch.allclose(states[n], alone, rtol=0, atol=1e-10)
    states = module.exact_states(problem.denoiser, x, grid, 48)
    for out in module.continued(problem.denoiser, states, grid, 48):  # the path, continued
        assert torch.allclose(out, states[-1], rtol=0, atol=1e-4)  # an index off: O(1)


def test_fitted_limits_greedy_fit_is_exact_where_the_flow_is_in_the_span():
    """Isotropic Gaussian data N(m, s^2 I): D(x, sigma) = (s^2 x + sigma^2 m) / (s^2 + sigma^2)
    and the flow x(sigma) = m + (x_T - m) sqrt((s^2 + sigma^2) / (s^2 + sigma_T^2)) both lie in
    the span of x_T and D_0, so the greedy fit (and the exact-path weights) reach the fine
    solve's accuracy, far below a 2nd-order solver's error on the same grid."""
    from phiforge.runtime.denoisers import GaussianDenoiser
    from phiforge.runtime.driver import sample

    module = _load("fitted_limits")
    dim, s2 = 4, 0.25
    mean = torch.linspace(-1.0, 1.0, dim, dtype=torch.float64)
    model = GaussianDenoiser(mean, s2 * torch.eye(dim, dtype=torch.float64))
    generator = torch.Generator().manual_seed(3)
    grid = torch.exp(-torch.linspace(-4.0, 4.0, 7, dtype=torch.float64)).tolist()
    starts = {
        key: grid[0] * torch.randn(batch, dim, generator=generator, dtype=torch.float64)
        for key, batch in (("pilot", 8), ("test", 5))
    }

    def flow(x: torch.Tensor, sigma: float) -> torch.Tensor:
        return mean + (x - mean) * ((s2 + sigma**2) / (s2 + grid[0] ** 2)) ** 0.5

    exact = module.exact_states(model, starts["pilot"], grid, 64)
    assert torch.allclose(exact[3], flow(starts["pilot"], grid[3]), atol=1e-6)
    result = module.greedy(model, starts, exact, grid, "shared")
    error = (result["test"] - flow(starts["test"], grid[-1])).abs().max().item()
    coarse = sample(model, starts["test"], "edm", "dpmpp_2m", output="edm", sigmas=grid)
    assert error < 1e-6 < (coarse - flow(starts["test"], grid[-1])).abs().max().item()


def test_fitted_limits_benchmark_separates_path_from_weights():
    module = _load("fitted_limits")
    result = module.measure("gmm", 6, 16, 4, 4, substeps=8, iterations=2, groups=("shared",))
    rows = result["rows"]
    peer = rows["dpmpp_2m (log-SNR)"]
    assert peer["test_vs_peer"] == 1.0
    for grid in ("log-SNR", "fitted"):
        fine = rows[f"fine solve ({grid}, 8 substeps)"]
        assert fine["test"] < 1e-2 * peer["test"]
        assert rows[f"exact path ({grid})"]["test"] < 0.1 * peer["test"]
        assert f"greedy least squares, shared ({grid})" in rows
    assert "fitted solver, final combination refitted (shared)" in rows
    for name, entries in result["where"].items():  # k = 1 .. nfe - 1 on the solver's own grid
        assert [e["k"] for e in entries] == [1, 2, 3, 4, 5]
        assert all(0 < e["test"] < 10 * peer["test"] for e in entries), name
    text = module.render(result)
    assert "| exact path (log-SNR) |" in text and "sigma_k, fitted solver" in text


def test_fitted_limits_greedy_is_the_package_greedy_solver():
    """The bench's greedy fit with shared weights and runtime.fitted_free.greedy_solver are one
    construction: the package's solver, replayed by the executor, reproduces the bench's results
    on every set, and a nudged weight moves them (replay is not a copy of the result)."""
    import dataclasses

    from phiforge.runtime.fitted_free import greedy_solver
    from phiforge.runtime.verification import builtin_denoiser

    module = _load("fitted_limits")
    model = builtin_denoiser("gmm")
    grid = torch.exp(-torch.linspace(-3.0, 3.0, 6, dtype=torch.float64)).tolist()
    generator = torch.Generator().manual_seed(4)
    starts = {
        key: grid[0] * torch.randn(batch, model.dim, generator=generator, dtype=torch.float64)
        for key, batch in (("pilot", 8), ("test", 4))
    }
    exact = module.exact_states(model, starts["pilot"], grid, 16)
    fitted = module.greedy(model, starts, exact, grid, "shared")
    solver, _ = greedy_solver(model, starts["pilot"], exact, grid)
    # a prediction per step, no first correction
    assert len(solver.predictor) + len(solver.corrector) == 2 * (len(grid) - 1) - 1
    for key in starts:
        assert float((solver.sample(model, starts[key]) - fitted[key]).abs().max()) < 1e-9
    state = [list(pair) for pair in solver.state]
    state[1][0] += 0.01  # the second prediction's weight on the state
    moved = dataclasses.replace(solver, state=state).sample(model, starts["test"])
    assert (moved - fitted["test"]).abs().max() > 1e-3


def test_fitted_search_benchmark_end_to_end_on_the_mixture(tmp_path):
    module = _load("fitted_search")
    result = module.measure(
        "gmm", 5, 24, 6, 6, fine=50, iterations=3, groups=("shared",), fit_grid=True,
        save=tmp_path / "solver.json",
    )  # fmt: skip
    rows = result["rows"]
    peer = rows["dpmpp_2m (log-SNR)"]
    assert rows["fine solve"]["test"] < 1e-2 * peer["test"]
    uniform = rows["greedy least squares, shared (log-SNR)"]
    searched = rows["greedy least squares, shared (searched)"]
    refined = rows["free weights refined end to end (searched)"]
    # the descent starts from the log-SNR grid and only accepts a lower pilot defect
    start = result["meta"]["descent"][0]["pilot"]
    assert searched["pilot"] <= start and uniform["pilot"] == pytest.approx(start, rel=1e-12)
    assert searched["pilot"] == pytest.approx(result["meta"]["descent"][-1]["pilot"], rel=1e-12)
    assert refined["pilot"] <= searched["pilot"] * (1 + 1e-12)
    together = rows["then grid and weights refined together"]
    assert together["pilot"] <= refined["pilot"] * (1 + 1e-12)
    sigmas = result["meta"]["searched_sigmas"]
    assert len(sigmas) == 6 and sigmas == sorted(sigmas, reverse=True)
    moved = result["meta"]["moved_sigmas"]
    assert len(moved) == 6 and moved[0] == sigmas[0] and moved[-1] == sigmas[-1]
    text = module.render(result)
    assert "| greedy least squares, shared (searched) |" in text and "searched sigmas:" in text
    # the saved solver is the last one; replayed on the held-out starts against its own fine
    # solve it gives the last row's defect and the start-by-start ratios of the summary
    saved = load_solver(tmp_path / "solver.json")
    assert saved.order == 0 and saved.sigmas == moved and saved.info["denoiser"] == "gmm"
    drawn = module.draw_sets("gmm", {"pilot": 24, "test": 6, "held_out": 6})
    model, x = drawn.problems["pilot"].denoiser, drawn.starts["held_out"]
    points = torch.exp(-torch.linspace(drawn.lam0, drawn.lam1, 51, dtype=torch.float64)).tolist()
    end = module.teacher_states(model, x, points, "res_3m_pc")[-1]
    ours = (saved.sample(model, x) - end).reshape(6, -1).pow(2).mean(1).sqrt()
    assert float(ours.mean()) == pytest.approx(together["held_out"], rel=1e-9)
    logsnr = [points[i * 10] for i in range(6)]
    theirs = module.sample(model, x, "edm", "dpmpp_2m", output="edm", sigmas=logsnr) - end
    ratio = ours / theirs.reshape(6, -1).pow(2).mean(1).sqrt()
    spread = result["meta"]["per_start"]["held_out"]
    assert spread["starts"] == 6
    assert spread["ratio_median"] == pytest.approx(float(ratio.median() + ratio.sort()[0][3]) / 2)
    assert spread["ratio_where_peer_best"] + spread["ratio_where_peer_worst"] == pytest.approx(
        2 * float(ratio.mean())
    )
    assert "| held_out | 6 |" in text
