"""The trained denoiser: shipped weights, their hashes, training, and sampling with it."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from phiforge.cli.main import main
from phiforge.runtime.denoisers import builtin_denoiser
from phiforge.runtime.driver import sample
from phiforge.runtime.errors import InputError
from phiforge.runtime.manifest import content_hash
from phiforge.runtime.network import (
    BUILTIN_NETWORK,
    NetworkConfig,
    NetworkDenoiser,
    TrainingConfig,
    builtin_network,
    denoising_errors,
    load_network,
    train_network,
    weights_dir,
)
from phiforge.runtime.schedules import noise_schedule

GMM = builtin_denoiser("gmm")


def test_the_shipped_network_is_the_one_its_manifest_describes():
    network = builtin_denoiser("network")
    assert isinstance(network, NetworkDenoiser) and network.image_shape == (8, 8)
    stored = network.info["denoising_errors"]
    measured = denoising_errors(network, GMM)  # the stored protocol: equal to rounding
    assert [row["sigma"] for row in measured] == [row["sigma"] for row in stored]
    for now, then in zip(measured, stored, strict=True):
        assert now["network_rms"] == pytest.approx(then["network_rms"], rel=1e-6)
        assert now["bayes_rms"] == pytest.approx(then["bayes_rms"], rel=1e-9)


def test_the_shipped_network_approximates_the_exact_posterior_mean():
    """Its error is a fraction of the Bayes error at every noise level, but not zero: a trained
    model, not the exact one (measured: ratios 0.02-0.4, largest near sigma~ = 0.3-1)."""
    for row in builtin_network().info["denoising_errors"]:
        ratio = row["network_rms"] / row["bayes_rms"]
        assert 1e-3 < ratio < 0.5, row


def test_float32_evaluation_is_the_same_function():
    x = GMM.sample_data(64, torch.Generator().manual_seed(1)) + 0.7 * torch.randn(64, 64)
    network64 = builtin_network()
    network32 = builtin_denoiser("network")
    import copy

    network32 = copy.copy(network32).to(dtype=torch.float32)
    out64, out32 = network64(x, 0.7), network32(x.float(), 0.7)
    assert out32.dtype == torch.float32 and out64.dtype == torch.float64
    assert float((out32.double() - out64).abs().max()) < 1e-5
    # the built-in was not changed by converting a copy
    assert builtin_network().module.inp.weight.dtype == torch.float64


def test_edited_weight_files_are_refused(tmp_path):
    source = weights_dir() / f"{BUILTIN_NETWORK}.json"
    for suffix in (".json", ".bin"):
        shutil.copy(source.with_suffix(suffix), tmp_path / f"copy{suffix}")
    manifest = tmp_path / "copy.json"
    assert isinstance(load_network(manifest), NetworkDenoiser)
    payload = bytearray((tmp_path / "copy.bin").read_bytes())
    payload[100] ^= 1
    (tmp_path / "copy.bin").write_bytes(bytes(payload))
    with pytest.raises(InputError, match="SHA-256 mismatch"):
        load_network(manifest)
    record = json.loads(manifest.read_text())
    record["architecture"]["width"] = 128
    manifest.write_text(json.dumps(record))
    with pytest.raises(InputError, match="edited by hand"):
        load_network(manifest)
    with pytest.raises(InputError, match="no network manifest"):
        load_network(tmp_path / "absent.json")


def test_training_lowers_the_denoising_error_and_is_deterministic():
    config = NetworkConfig(dim=64, width=32, blocks=1, sigma_data=0.85)
    short = TrainingConfig(steps=10, batch=64, seed=3)
    first = train_network(GMM, config, short)
    again = train_network(GMM, config, short)
    for a, b in zip(first.module.parameters(), again.module.parameters(), strict=True):
        assert torch.equal(a, b)
    longer = train_network(GMM, config, TrainingConfig(steps=300, batch=128, seed=3))
    # measured (width 32): 0.54 -> 0.38 at sigma~ = 1, 0.61 -> 0.073 at sigma~ = 10
    early = denoising_errors(first, GMM, (1.0, 10.0), samples=512)
    late = denoising_errors(longer, GMM, (1.0, 10.0), samples=512)
    assert late[0]["network_rms"] < 0.8 * early[0]["network_rms"]
    assert late[1]["network_rms"] < 0.3 * early[1]["network_rms"]
    assert longer.info["final_loss"] < first.info["final_loss"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 0}, "'steps'"),
        ({"batch": 2.5}, "'batch'"),
        ({"learning_rate": float("nan")}, "'learning_rate'"),
        ({"sigma_min": 1.0, "sigma_max": 0.5}, "0 < sigma_min < sigma_max"),
        ({"target": "score"}, "'target' must be one of data, posterior"),
    ],
)
def test_bad_training_configurations_are_rejected(kwargs, message):
    with pytest.raises(InputError, match=message):
        TrainingConfig(**kwargs)


def test_bad_network_configurations_are_rejected():
    with pytest.raises(InputError, match="'width'"):
        NetworkConfig(width=0)
    with pytest.raises(InputError, match="'sigma_data'"):
        NetworkConfig(sigma_data=-1.0)
    with pytest.raises(InputError, match=r"'network\.dim' must be 64"):
        train_network(GMM, NetworkConfig(dim=10), TrainingConfig(steps=1))


def test_a_trained_network_samples_like_the_mixture_it_learned():
    """Same start, same solver: the network's ODE ends near the exact mixture's, not on it."""
    generator = torch.Generator().manual_seed(0)
    schedule = noise_schedule("vp-linear")
    x = torch.randn(32, 64, dtype=torch.float64, generator=generator) * float(schedule.sigma(1.0))
    options = {"output": "edm", "t_start": 1.0, "t_end": 1e-3, "steps": 40}
    exact = sample(GMM, x, schedule, "res_3m", **options)
    learned = sample(builtin_denoiser("network"), x, schedule, "res_3m", **options)
    gap = float((learned - exact).pow(2).mean(1).sqrt().mean())
    spread = float((exact - exact.mean(0)).pow(2).mean(1).sqrt().mean())
    assert 1e-3 < gap < 0.5 * spread, (gap, spread)


def test_network_commands(capsys, tmp_path):
    assert main(["network", "check", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["agrees"] and report["largest_relative_difference_to_stored"] < 1e-6
    args = ["network", "train", "--steps", "4", "--batch", "16", "--width", "16"]
    assert main([*args, "--out", str(tmp_path), "--name", "tiny"]) == 0
    assert "written:" in capsys.readouterr().out
    trained = load_network(tmp_path / "tiny.json")
    assert trained.config.width == 16 and trained.info["training"]["steps"] == 4
    assert main(["network", "check", str(tmp_path / "tiny.json")]) == 0
    # --store rewrites the table (here from a manifest whose table was edited and re-hashed),
    # never the weights
    weights = (tmp_path / "tiny.bin").read_bytes()
    manifest = json.loads((tmp_path / "tiny.json").read_text())
    manifest["denoising_errors"][0]["network_rms"] *= 2
    manifest["hash"] = content_hash(manifest)
    (tmp_path / "tiny.json").write_text(json.dumps(manifest))
    assert main(["network", "check", str(tmp_path / "tiny.json")]) == 1
    capsys.readouterr()
    assert main(["network", "check", str(tmp_path / "tiny.json"), "--store"]) == 0
    assert "stored this table" in capsys.readouterr().out
    assert main(["network", "check", str(tmp_path / "tiny.json")]) == 0
    assert (tmp_path / "tiny.bin").read_bytes() == weights
    (tmp_path / "tiny.bin").write_bytes(b"\0" * 8)
    assert main(["network", "check", str(tmp_path / "tiny.json")]) == 2
    assert "SHA-256 mismatch" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_network_on_cuda_matches_cpu():
    x = torch.randn(256, 64, dtype=torch.float64) * 3
    cpu = builtin_network()(x, 0.5)
    gpu = builtin_denoiser("network", device="cuda")(x.cuda(), 0.5)
    assert torch.allclose(gpu.cpu(), cpu, rtol=1e-9, atol=1e-9)
    assert builtin_network().module.inp.weight.device.type == "cpu"


def test_training_writes_to_the_working_directory_not_the_package(tmp_path, monkeypatch, capsys):
    from phiforge.runtime.manifest import weights_dir

    shipped = {p.name: p.read_bytes() for p in weights_dir().iterdir()}
    monkeypatch.chdir(tmp_path)
    args = ["network", "train", "--steps", "2", "--batch", "8", "--width", "8", "--name", "mine"]
    assert main(args) == 0
    assert (tmp_path / "mine.json").exists() and (tmp_path / "mine.bin").exists()
    assert {p.name: p.read_bytes() for p in weights_dir().iterdir()} == shipped
    (tmp_path / "file").write_text("x")
    assert main([*args, "--out", str(tmp_path / "file")]) == 2  # refused before training
    assert "exists and is not a folder" in capsys.readouterr().err
    assert main(["network", "check", "--store"]) == 2
    assert "the package's shipped files are read-only" in capsys.readouterr().err
