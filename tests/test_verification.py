"""Convergence studies and the verify / sample commands."""

import functools
import itertools
import json
import math

import pytest
import torch

from phiforge.cli.main import main
from phiforge.runtime.schedules import noise_schedule
from phiforge.runtime.verification import builtin_problem, defect, observed_order, study_method


def test_observed_order_is_the_least_squares_slope_over_the_finest_points():
    steps = [8, 16, 32, 64]
    errors = [5.0, 2.0**-3, 2.0**-6, 2.0**-9]  # the finest three: exactly third order
    assert observed_order(steps, errors) == pytest.approx(3.0, abs=1e-12)
    # points at the reference's accuracy are excluded
    assert observed_order(steps, [1e-2, 1e-4, 1e-9, 1e-9], floor=1e-10) == pytest.approx(
        6.64385619, rel=1e-6
    )
    assert observed_order([8, 16], [1e-14, 1e-14]) is None


def test_defect_is_the_mean_rms_distance():
    x = torch.zeros(2, 4, dtype=torch.float64)
    ref = torch.tensor([[1.0, 1.0, 1.0, 1.0], [2.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    assert defect(x, ref) == pytest.approx((1.0 + 1.0) / 2)


@pytest.fixture(scope="module")
def gmm_problem():
    return builtin_problem("gmm", batch=4, seed=1)


def test_mixture_reference_is_accurate(gmm_problem):
    assert gmm_problem.reference_accuracy < 1e-9


@pytest.mark.parametrize(("method", "claimed"), [("res_2s", 2), ("res_3s", 3), ("res_3m", 3)])
def test_observed_order_on_the_mixture_matches_the_claim(gmm_problem, method, claimed):
    study = study_method(gmm_problem, method, steps=(64, 128, 256), nfe_budgets=(10,))
    assert study.claimed_order == claimed
    assert study.observed_order == pytest.approx(claimed, abs=0.3)  # pre-asymptotic spread
    assert study.defect_nfe == [10]


@pytest.mark.parametrize(("method", "claimed"), [("res_2m", 2), ("res_3s", 3), ("res_3m", 3)])
def test_observed_order_on_the_trained_network_matches_the_claim(method, claimed):
    """A trained denoiser (runtime.network) has a smooth ODE too: the orders are the same
    (measured over N = 64, 128, 256: res_2m 2.03, res_3s 2.93, res_3m 2.88)."""
    problem = network_problem()
    assert problem.reference_accuracy < 1e-9
    study = study_method(problem, method, steps=(64, 128, 256), nfe_budgets=(10,))
    assert study.observed_order == pytest.approx(claimed, abs=0.2)


@functools.cache
def network_problem():
    return builtin_problem("network", batch=4, seed=1)


def test_a_stiff_order_violation_shows_at_low_nfe(gmm_problem):
    """spec §7.5: DPM-Solver++(2S) fails psi_2 (stiff order 1); RES-2S satisfies it. Both are
    order 2 as h -> 0, but at NFE 10 the violation costs accuracy."""
    degenerate = study_method(gmm_problem, "dpmpp_2s", steps=(16,), nfe_budgets=(10,))
    consistent = study_method(gmm_problem, "res_2s", steps=(16,), nfe_budgets=(10,))
    assert degenerate.scalar_stiff_order == 1 and consistent.scalar_stiff_order == 2
    assert consistent.defects[0] < 0.8 * degenerate.defects[0]
    assert consistent.errors[0] < 0.8 * degenerate.errors[0]


def test_verify_command_prints_tables_and_json(capsys, tmp_path):
    plot = tmp_path / "verify.png"
    code = main(
        [
            "verify",
            "res_2s",
            "exp_euler",
            "--problem",
            "gaussian",
            "--steps",
            "16",
            "32",
            "64",
            "--nfe",
            "6",
            "10",
            "--batch",
            "4",
            "--plot",
            str(plot),
            "--format",
            "json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    methods = {m["name"]: m for m in result["problems"][0]["methods"]}
    assert methods["res_2s"]["observed_order"] == pytest.approx(2.0, abs=0.1)
    assert methods["exp_euler"]["observed_order"] == pytest.approx(1.0, abs=0.1)
    assert methods["res_2s"]["defect_nfe"] == [6, 10]
    assert plot.stat().st_size > 10_000
    main(
        [
            "verify",
            "res_2m",
            "--problem",
            "gaussian",
            "--steps",
            "8",
            "16",
            "32",
            "--nfe",
            "8",
            "--batch",
            "2",
        ]
    )
    text = capsys.readouterr().out
    assert "| res_2m | 1 | 2 | 2 |" in text and "NFE 8" in text


def test_sample_command_writes_samples_and_a_grid(capsys, tmp_path):
    out = tmp_path / "digits.pt"
    assert (
        main(
            [
                "sample",
                "--denoiser",
                "gmm",
                "--method",
                "res_3s",
                "--nfe",
                "9",
                "--batch",
                "4",
                "--out",
                str(out),
                "--format",
                "json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["nfe"] == 9 and result["steps"] == 3 and result["method"] == "res_3s"
    samples = torch.load(out)
    assert samples.shape == (4, 8, 8) and torch.isfinite(samples).all()
    assert (tmp_path / "digits.png").stat().st_size > 500


def test_sample_command_fits_its_grid_on_pilot_draws(capsys, tmp_path):
    out = tmp_path / "digits.pt"
    argv = ["sample", "--method", "res_3m_pc", "--nfe", "6", "--batch", "2", "--out", str(out)]
    fit = ["--fit-steps", "16", "--fit-evaluations", "40", "--format", "json"]
    assert main(argv + fit) == 0
    result = json.loads(capsys.readouterr().out)
    sigmas = result["fitted_sigmas"]
    assert result["nfe"] == 6 and result["steps"] == 6 and result["step_schedule"] == "fitted"
    assert len(sigmas) == 7 and all(a > b for a, b in itertools.pairwise(sigmas))
    assert result["pilot_defect"]["fitted"] < result["pilot_defect"]["uniform"]
    schedule = noise_schedule("vp-linear")  # the ends of the default grid, t = 1 -> 1e-3
    assert sigmas[0] == pytest.approx(math.exp(-float(schedule.lam(1.0))), rel=1e-12)
    assert sigmas[-1] == pytest.approx(math.exp(-float(schedule.lam(1e-3))), rel=1e-12)
    assert main(["sample", "--restart", "cifar10-vp-43", "--out", str(out), *fit]) == 2
    assert "'--fit-steps'" in capsys.readouterr().err


def test_unknown_method_is_an_input_error(capsys):
    assert main(["verify", "res_9x", "--problem", "gaussian"]) == 2
    assert "unknown method 'res_9x'" in capsys.readouterr().err
    assert main(["sample", "--method", "nope", "--out", "/dev/null"]) == 2


def test_an_order_needs_three_distinct_step_counts(capsys):
    assert main(["verify", "res_3m", "--problem", "gaussian", "--steps", "8", "8", "8"]) == 2
    assert "at least three distinct step counts" in capsys.readouterr().err


def _study(errors, claimed, steps=(8, 16, 32, 64)):
    from phiforge.runtime.verification import MethodStudy, observed_order

    return MethodStudy(
        name="m",
        claimed_order=claimed,
        scalar_stiff_order=claimed,
        nfe_per_step=1,
        steps=list(steps),
        nfe=list(steps),
        errors=list(errors),
        observed_order=observed_order(steps, errors),
        defect_nfe=[],
        defects=[],
    )


def test_a_pre_asymptotic_sweep_is_told_from_a_missed_claim():
    rising = _study([1e-1, 2e-2, 2e-3, 1.4e-4], claimed=4)  # local orders 2.32, 3.32, 3.84
    assert rising.agrees is False and rising.rising
    assert rising.verdict.startswith("not asymptotic yet at N=64: local orders 2.32, 3.32, 3.84")
    settled = _study([1e-1, 2.5e-2, 6.25e-3, 1.5625e-3], claimed=3)  # second order throughout
    assert settled.agrees is False and not settled.rising
    assert settled.verdict == "NO: local orders 2.00, 2.00, 2.00 do not rise to 3"
    assert _study([1e-1, 1.25e-2, 1.5625e-3, 1.953125e-4], claimed=3).verdict == "yes"
    # a slow rise (dpm_solver_3 on a time-uniform VP grid: 2.40, 2.49, ... 2.98 up to N = 4096)
    slow = _study([9.95e-4, 1.89e-4, 3.37e-5], 3, (32, 64, 128))  # local orders 2.40, 2.49
    assert slow.agrees is False and slow.rising
    assert not _study([9.95e-4, 1.89e-4, 3.6e-5], 3, (32, 64, 128)).rising  # 2.40, 2.39


def test_the_sweep_is_extended_until_a_pre_asymptotic_method_agrees():
    from phiforge.runtime.verification import builtin_problem, study_method

    problem = builtin_problem("gaussian", batch=4, seed=0)
    plain = study_method(problem, "res_3m_pc", steps=(64, 128, 256), nfe_budgets=())
    extended = study_method(
        problem, "res_3m_pc", steps=(64, 128, 256), nfe_budgets=(), extend_to=1024
    )
    assert plain.agrees is False and plain.rising
    assert extended.agrees and extended.extended and extended.steps[-1] in (512, 1024)
    assert extended.verdict.startswith("yes (sweep extended to N=")


def test_strict_names_the_failing_methods_on_stderr(capsys):
    args = ["verify", "exp_euler", "res_4m", "--problem", "gaussian", "--steps", "4", "8", "16"]
    code = main([*args, "--nfe", "10", "--batch", "4", "--extend-to", "16", "--strict"])
    err = capsys.readouterr().err
    assert code == 1
    assert "verify --strict: exp_euler on gaussian: not asymptotic yet at N=16" in err
