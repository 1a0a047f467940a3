"""The shipped digits mixture: file, hashes, EM fixed point, draws independent of the machine."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch

from phiforge.cli.main import main
from phiforge.runtime.denoisers import (
    BUILTIN_MIXTURE,
    GaussianMixtureDenoiser,
    builtin_denoiser,
    digits,
    load_mixture,
    save_mixture,
)
from phiforge.runtime.errors import InputError
from phiforge.runtime.manifest import weights_dir

SHIPPED = weights_dir() / f"{BUILTIN_MIXTURE}.json"


def _one_em_step(mixture: GaussianMixtureDenoiser) -> GaussianMixtureDenoiser:
    """One E and one M step of scikit-learn's EM (the fit's settings) from ``mixture``."""
    from sklearn.mixture import GaussianMixture

    model = GaussianMixture(
        len(mixture.weights),
        covariance_type="full",
        reg_covar=1e-3,
        max_iter=1,
        weights_init=mixture.weights.numpy(),
        means_init=mixture.means.numpy(),
        precisions_init=np.linalg.inv(mixture.covariances.numpy()),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "did not converge" after its one iteration
        model.fit(digits().numpy())
    return GaussianMixtureDenoiser(
        *(torch.from_numpy(a) for a in (model.weights_, model.means_, model.covariances_))
    )


def test_the_builtin_gmm_is_the_shipped_file_and_an_em_fixed_point():
    gmm = builtin_denoiser("gmm")
    assert gmm.weights.shape == (10,) and gmm.means.shape == (10, 64)
    assert torch.equal(gmm.covariances, load_mixture(SHIPPED).covariances)
    # its stored log-likelihood is what it gives the digits now (a deterministic float64 sum)
    now = gmm.mean_log_likelihood(digits())
    assert now == pytest.approx(gmm.info["mean_log_likelihood"], rel=1e-12)
    # converged: one more EM step gains less than EM's stopping tolerance 1e-3 (measured 4e-7),
    # while from means moved by 0.05 the same step gains about 20 (21.5 -> 42.0)
    gain = _one_em_step(gmm).mean_log_likelihood(digits()) - now
    assert -1e-9 < gain < 1e-3
    moved = GaussianMixtureDenoiser(
        gmm.weights,
        gmm.means
        + 0.05
        * torch.randn(10, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0)),
        gmm.covariances,
    )
    assert (
        _one_em_step(moved).mean_log_likelihood(digits())
        > moved.mean_log_likelihood(digits()) + 1.0
    )


def test_log_density_is_that_of_torch_distributions():
    g = torch.Generator().manual_seed(4)
    a = torch.randn(3, 5, 5, dtype=torch.float64, generator=g)
    covariances = a @ a.transpose(1, 2) / 5 + 0.1 * torch.eye(5, dtype=torch.float64)
    means = torch.randn(3, 5, dtype=torch.float64, generator=g)
    weights = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(weights),
        torch.distributions.MultivariateNormal(means, covariances),
    )
    x = 2 * torch.randn(50, 5, dtype=torch.float64, generator=g)
    got = GaussianMixtureDenoiser(weights, means, covariances).log_density(x)
    assert torch.allclose(got, reference.log_prob(x), rtol=1e-12, atol=1e-12)


def test_seeded_draws_do_not_depend_on_the_eigenbasis():
    """A covariance with a repeated eigenvalue (as reg_covar makes in the digits' components) and
    the same matrix moved by 1e-13: eigh returns bases that differ by O(1) inside the repeated
    eigenspace, the seeded draws agree to rounding (through the symmetric root)."""
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64, generator=g))
    covariance = q @ torch.diag(torch.tensor([1e-3] * 4 + [0.5, 2.0]).double()) @ q.T
    bump = torch.randn(6, 6, dtype=torch.float64, generator=g)
    one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, 6, dtype=torch.float64)
    a = GaussianMixtureDenoiser(one, zero, covariance[None])
    b = GaussianMixtureDenoiser(one, zero, (covariance + 1e-13 * (bump + bump.T))[None])
    assert float((a.bases - b.bases).abs().max()) > 0.1  # the precondition: other bases
    draws_a = a.sample_data(1000, torch.Generator().manual_seed(1))
    draws_b = b.sample_data(1000, torch.Generator().manual_seed(1))
    assert float((draws_a - draws_b).abs().max()) < 1e-9
    assert torch.allclose(torch.cov(draws_a.T), covariance, atol=0.2)


def test_mixture_files_round_trip_and_edited_files_are_refused(tmp_path):
    shipped = load_mixture(SHIPPED)
    _, path = save_mixture(shipped, tmp_path, "copy")
    again = load_mixture(path)
    for name in ("weights", "means", "covariances"):
        assert torch.equal(getattr(again, name), getattr(shipped, name))
    assert again.info == shipped.info
    payload = bytearray(path.with_suffix(".bin").read_bytes())
    payload[8] ^= 1
    path.with_suffix(".bin").write_bytes(bytes(payload))
    with pytest.raises(InputError, match="SHA-256 mismatch"):
        load_mixture(path)
    shutil.copy(SHIPPED.with_suffix(".bin"), path.with_suffix(".bin"))
    document = json.loads(path.read_text())
    document["info"]["mean_log_likelihood"] = 50.0
    path.write_text(json.dumps(document))
    with pytest.raises(InputError, match="edited by hand"):
        load_mixture(path)
    with pytest.raises(InputError, match="no mixture file"):
        load_mixture(tmp_path / "missing.json")


def test_mixture_commands(capsys, tmp_path):
    assert main(["mixture", "check", "--no-refit", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["agrees"] and report["relative_difference_to_stored"] < 1e-12
    assert main(["mixture", "fit", "--components", "3", "--out", str(tmp_path)]) == 0
    assert "written:" in capsys.readouterr().out
    fitted = load_mixture(tmp_path / f"{BUILTIN_MIXTURE}.json")
    assert fitted.weights.shape == (3,) and fitted.info["converged"]
    assert fitted.info["mean_log_likelihood"] < load_mixture(SHIPPED).info["mean_log_likelihood"]
    # the 3-component fit refitted here is the same fit: its denoiser differs by rounding only
    assert (
        main(["mixture", "check", str(tmp_path / f"{BUILTIN_MIXTURE}.json"), "--format", "json"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    differences = report["refit"]["denoiser_differences"]
    assert max(row["network_rms"] / row["bayes_rms"] for row in differences) < 1e-6
    (tmp_path / f"{BUILTIN_MIXTURE}.bin").write_bytes(b"\0" * 8)
    assert main(["mixture", "check", str(tmp_path / f"{BUILTIN_MIXTURE}.json")]) == 2
    assert "SHA-256 mismatch" in capsys.readouterr().err
