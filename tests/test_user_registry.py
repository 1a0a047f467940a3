"""A user's own methods: derived into a folder of theirs, generated there, and accepted by every
reader (check, show, verify, sample, the Python API, the adapters), the package untouched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from phiforge.cli.main import main
from phiforge.derive.errors import InputError
from phiforge.derive.registry_folders import REGISTRY_ENV, default_registry_dir
from phiforge.runtime import load_method, sample
from phiforge.runtime.denoisers import builtin_denoiser
from phiforge.runtime.methods import generated_methods, ode_methods


def _package_digest() -> str:
    """SHA-256 over the package's registry and generated modules."""
    digest = hashlib.sha256()
    generated = Path(load_method("res_2s").__file__).parent
    for folder in (default_registry_dir(), generated):
        for path in sorted(folder.glob("*")):
            if path.is_file():
                digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory) -> Path:
    """A folder holding my2s: RES-2S's construction (c2 = 1/2) under the user's name."""
    folder = tmp_path_factory.mktemp("user") / "methods"
    code = main(
        [
            "derive", "singlestep", "--stages", "2", "--order", "2", "--nodes", "1/2",
            "--name", "my2s", "--registry", str(folder), "--format", "json",
        ]
    )  # fmt: skip
    assert code == 0 and (folder / "my2s.json").is_file()
    return folder


def test_user_method_samples_like_the_package_method_it_equals(user_folder, monkeypatch):
    before = _package_digest()
    module = load_method("my2s", registry=user_folder)
    assert module.NAME == "my2s" and module.NFE_PER_STEP == 2
    assert module.ORDERS["scalar"]["stiff"] == 2
    denoiser = builtin_denoiser("gmm")
    x = torch.randn(8, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ours = sample(denoiser, x, "vp-linear", module, nfe=10, output="edm")
    theirs = sample(denoiser, x, "vp-linear", "res_2s", nfe=10, output="edm")
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-13)
    # through the environment variable, by name, in the API and the k-diffusion functions
    monkeypatch.setenv(REGISTRY_ENV, str(user_folder))
    assert "my2s" in generated_methods() and "my2s" in ode_methods()
    by_name = sample(denoiser, x, "vp-linear", "my2s", nfe=10, output="edm")
    assert torch.equal(by_name, ours)
    from phiforge.runtime.kdiffusion import make_sampler

    sigmas = torch.tensor([80.0, 10.0, 2.0, 0.5, 0.1, 0.0], dtype=torch.float64)
    k_ours = make_sampler("my2s")(denoiser, 80 * x, sigmas)
    k_theirs = make_sampler("res_2s")(denoiser, 80 * x, sigmas)
    assert torch.allclose(k_ours, k_theirs, rtol=0, atol=1e-12)
    assert _package_digest() == before


def test_a_one_stage_method_needs_no_nodes(capsys, tmp_path):
    """-s 1 has no nodes c2..cs to give; the command asked for them (and refused --nodes '').
    The one-stage order-1 method is exponential Euler: equal to the package's exp_euler."""
    code, _, err = run(
        capsys, "derive", "singlestep", "-s", "1", "-p", "1", "--name", "euler1",
        "--registry", str(tmp_path),
    )  # fmt: skip
    assert code == 0, err
    module = load_method("euler1", registry=tmp_path)
    assert module.NFE_PER_STEP == 1 and module.ORDERS["scalar"]["stiff"] == 1
    denoiser = builtin_denoiser("gmm")
    x = torch.randn(4, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    ours = sample(denoiser, x, "vp-linear", module, nfe=6, output="edm")
    theirs = sample(denoiser, x, "vp-linear", "exp_euler", nfe=6, output="edm")
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-13)


def test_generated_file_of_the_record_is_used_and_equals_the_rendering(user_folder, capsys):
    rendered = load_method("my2s", registry=user_folder)
    code, _, _ = run(capsys, "generate", "--registry", str(user_folder))
    path = user_folder / "generated" / "my2s.py"
    assert code == 0 and path.is_file()
    code, out, _ = run(capsys, "generate", "--registry", str(user_folder), "--check")
    assert code == 0 and "up to date" in out
    from phiforge.runtime import methods

    methods._USER_MODULES.clear()
    from_file = load_method("my2s", registry=user_folder)
    assert from_file.__file__ == str(path) and from_file.RECORD_HASH == rendered.RECORD_HASH
    program = from_file.program(0.0, 0.3, -1.0)
    assert program.calls == rendered.program(0.0, 0.3, -1.0).calls


def test_cli_readers_accept_the_user_folder(user_folder, capsys, tmp_path):
    code, out, _ = run(capsys, "show", "my2s", "--registry", str(user_folder), "--format", "json")
    assert code == 0 and json.loads(out)["nodes"] == ["0", "1/2"]
    code, out, _ = run(capsys, "check", "my2s", "--registry", str(user_folder), "--format", "json")
    assert code == 0 and json.loads(out)["stiff_order"] == 2
    code, _, err = run(capsys, "show", "my2s")
    assert code == 2 and "unknown method 'my2s'" in err and "--registry DIR" in err
    code, out, _ = run(capsys, "registry", "show", "my2s", "--registry", str(user_folder))
    assert code == 0 and "stiff_order: 2" in out
    out_file = tmp_path / "deep" / "s.pt"
    code, out, _ = run(
        capsys, "sample", "--method", "my2s", "--registry", str(user_folder), "--nfe", "6",
        "--batch", "4", "--out", str(out_file), "--format", "json",
    )  # fmt: skip
    assert code == 0 and json.loads(out)["method"] == "my2s" and out_file.is_file()
    code, out, _ = run(
        capsys, "verify", "my2s", "--registry", str(user_folder), "--problem", "gaussian",
        "--steps", "16", "32", "64", "--nfe", "6", "--batch", "4", "--format", "json",
    )  # fmt: skip
    (study,) = json.loads(out)["problems"][0]["methods"]
    assert code == 0 and study["name"] == "my2s" and abs(study["observed_order"] - 2) < 0.2


def test_names_and_folders_are_checked(user_folder, capsys, tmp_path, monkeypatch):
    for name in ("", "../x", "My", "res 2", "9a"):
        code, _, err = run(
            capsys, "derive", "multistep", "--order", "2", "--name", name,
            "--registry", str(tmp_path),
        )  # fmt: skip
        assert code == 2 and "parameter '--name'" in err, name
    code, _, err = run(
        capsys, "derive", "multistep", "--order", "2", "--name", "res_2m",
        "--registry", str(tmp_path),
    )  # fmt: skip
    assert code == 2 and "already registered" in err
    clash = tmp_path / "clash"
    clash.mkdir()
    (clash / "res_2s.json").write_text((user_folder / "my2s.json").read_text())
    with pytest.raises(InputError, match="registered twice"):
        load_method("res_2s", registry=clash)
    with pytest.raises(InputError, match=r"parameter 'registry'.*does not exist"):
        load_method("my2s", registry=tmp_path / "missing")
    monkeypatch.setenv(REGISTRY_ENV, str(tmp_path / "missing"))
    code, _, err = run(capsys, "sample", "--method", "res_2m", "--nfe", "4")
    assert code == 2 and REGISTRY_ENV in err
    monkeypatch.delenv(REGISTRY_ENV)
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    (renamed / "other.json").write_text((user_folder / "my2s.json").read_text())
    with pytest.raises(InputError, match="differs from the record's name 'my2s'"):
        load_method("other", registry=renamed)


def test_default_output_is_the_working_directory(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    before = _package_digest()
    code, _, _ = run(capsys, "derive", "multistep", "--order", "2", "--name", "mine")
    assert code == 0 and (tmp_path / "registry" / "mine.json").is_file()
    code, _, err = run(capsys, "generate", "--check")
    assert code == 2 and "parameter '--out'" in err  # no ./generated to compare with
    code, _, _ = run(capsys, "generate", "--registry", "registry")
    assert code == 0 and (tmp_path / "registry" / "generated" / "mine.py").is_file()
    assert _package_digest() == before
