"""Bad input at every public entry point: a clear error of the project's own type naming the
parameter (or the file), never a traceback from SymPy, torch, numpy or json, never silence.

One table, one test: each row is (id, a call, a fragment the message must hold). The CLI rows
run ``phiforge.cli.main.main`` and expect exit status 2 with ``phiforge: error:`` (or argparse's
usage error) naming the option; Python rows expect :class:`InputError` (or
:class:`ModelOutputError` for a model's NaN, naming the step and sigma).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from phiforge.cli.main import main
from phiforge.derive.errors import InputError
from phiforge.runtime.errors import ModelOutputError


class CliError(Exception):
    """A CLI run that ended with exit status 2 and a message on stderr."""


DERIVE_3S = ("derive", "singlestep", "-s", "3", "-p", "3", "--nodes", "1/2,1", "--name", "x")
DERIVE_3S += ("--registry", "bad-reg")


def cli(*argv: str) -> Callable[[], None]:
    def call() -> None:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(list(argv))
            except SystemExit as stop:  # argparse's usage errors
                code = stop.code
        if code == 2:
            raise CliError(err.getvalue())
        raise AssertionError(f"phiforge {' '.join(argv)}: exit {code} (silent), {err.getvalue()}")

    return call


# ------------------------------------------------------------------ files the table reads
FILES: dict[str, Path] = {}


@pytest.fixture(autouse=True)
def in_a_scratch_folder(tmp_path, monkeypatch) -> None:
    """Commands that default to the working directory write nothing into the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module", autouse=True)
def bad_files(tmp_path_factory) -> None:
    from phiforge.derive.registry_folders import default_registry_dir
    from phiforge.runtime.manifest import weights_dir

    root = tmp_path_factory.mktemp("bad")
    record = (default_registry_dir() / "res_2s.json").read_text()
    FILES["junk"] = root / "junk.json"
    FILES["junk"].write_bytes(b"\x00\xff\xfe binary junk \x89PNG")
    FILES["truncated"] = root / "truncated.json"
    FILES["truncated"].write_text(record[: len(record) // 2])
    FILES["record"] = root / "res_2s.json"
    FILES["record"].write_text(record)
    edited = json.loads(record)
    edited["nfe_per_step"] = 3
    FILES["edited_dir"] = root / "edited"
    FILES["edited_dir"].mkdir()
    (FILES["edited_dir"] / "res_9s.json").write_text(json.dumps(edited | {"name": "res_9s"}))
    FILES["renamed_dir"] = root / "renamed"
    FILES["renamed_dir"].mkdir()
    (FILES["renamed_dir"] / "other.json").write_text(record)
    FILES["list_dir"] = root / "list"
    FILES["list_dir"].mkdir()
    (FILES["list_dir"] / "listy.json").write_text("[1, 2, 3]")
    manifests = sorted(weights_dir().glob("*mlp*.json"))
    FILES["network"] = manifests[0]
    mixtures = [p for p in sorted(weights_dir().glob("*.json")) if "mlp" not in p.name]
    FILES["mixture"] = mixtures[0]
    FILES["unet"] = weights_dir() / "patches-unet.json"
    FILES["missing"] = root / "missing.json"
    FILES["dir"] = root
    FILES["empty"] = root / "empty.json"
    FILES["empty"].write_text("")
    # a fitted solver whose hash is right but whose fields are of the wrong types
    from phiforge.runtime.fitted import FittedSolver
    from phiforge.runtime.manifest import content_hash

    solver = FittedSolver([10.0, 1.0, 0.1], [[1.0], [1.0, 0.0]], [[1.0, 0.0]], 1, 2, 1)
    for name, change in (("steps", {"steps": "abc"}), ("format", {"format": True})):
        document = {k: v for k, v in solver.to_dict().items() if k != "hash"} | change
        FILES[f"solver_{name}"] = root / f"solver-{name}.json"
        FILES[f"solver_{name}"].write_text(json.dumps(document | {"hash": content_hash(document)}))


def solver_saved_to(target: object) -> Callable[[], None]:
    """FittedSolver.save to ``target`` (a FILES key names a path of the table)."""

    def call() -> None:
        from phiforge.runtime.fitted import FittedSolver

        solver = FittedSolver([10.0, 1.0, 0.1], [[1.0], [1.0, 0.0]], [[1.0, 0.0]], 1, 2, 1)
        solver.save(FILES[target] if isinstance(target, str) else target)

    return call


def f(name: str) -> str:
    return str(FILES[name])


# ------------------------------------------------------------------ models and tensors
def denoiser():
    from phiforge.runtime.denoisers import builtin_denoiser

    return builtin_denoiser("gmm")


def denoiser_named(name: str):
    from phiforge.runtime.denoisers import builtin_denoiser

    return builtin_denoiser(name)


def x16() -> torch.Tensor:
    return torch.randn(4, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


def nan_model(x, sigma):
    return torch.full_like(x, math.nan)


def run_sample(**kwargs) -> Callable[[], None]:
    def call() -> None:
        from phiforge.runtime import sample

        args = {"model": denoiser(), "x": x16(), "schedule": "vp-linear", "method": "res_2m"}
        args.update(kwargs)
        options = {"nfe": 6, "output": "edm"}
        if not ({"nfe", "steps", "sigmas", "timesteps", "grid"} & set(kwargs)):
            args.update(nfe=6)
        options.pop("nfe")
        sample(**(options | args))

    return call


def kdiff(name: str, sigmas=None, x=None, model=None, **options) -> Callable[[], None]:
    def call() -> None:
        from phiforge.runtime.kdiffusion import SAMPLERS

        sampler = SAMPLERS[name.removeprefix("sample_")]
        grid = (
            torch.tensor([10.0, 2.0, 0.5, 0.0], dtype=torch.float64) if sigmas is None else sigmas
        )
        sampler(model or denoiser(), 10 * x16() if x is None else x, grid, **options)

    return call


def scheduler(**config) -> Callable[[], object]:
    def make():
        pytest.importorskip("diffusers")
        from phiforge.runtime.diffusers_scheduler import PhiforgeScheduler

        return PhiforgeScheduler(**config)

    return make


def sched_call(action: Callable[[object], None], **config) -> Callable[[], None]:
    def call() -> None:
        action(scheduler(**config)())

    return call


def step_past_end(s) -> None:
    s.set_timesteps(3)
    x = torch.randn(1, 4, dtype=torch.float64)
    for t in [*s.timesteps, s.timesteps[-1]]:
        x = s.step(torch.zeros_like(x), t, x).prev_sample


def nan_in_scheduler(s) -> None:
    s.set_timesteps(4)
    x = torch.randn(1, 4, dtype=torch.float64)
    for t in s.timesteps:
        x = s.step(torch.full_like(x, math.nan), t, x).prev_sample


def step_with(**given) -> Callable[[object], None]:
    """One step() of a 4-call run with the arguments in ``given`` replacing good ones."""

    def action(s) -> None:
        s.set_timesteps(4)
        x = torch.randn(2, 3, dtype=torch.float64)
        args = {"model_output": torch.zeros_like(x), "timestep": s.timesteps[0], "sample": x}
        s.step(**(args | given))

    return action


def restart_with(**options):
    from phiforge.runtime.restart import Restart, RestartInterval

    return Restart((RestartInterval(3, 2, 0.1, 2.0),), **options)


def search_steps(**given) -> None:
    from phiforge.runtime import optimize_steps

    args = {"steps": 3, "sigma_start": 10.0, "sigma_end": 0.1, "teacher_steps": 8}
    optimize_steps(lambda x, s: 0.5 * x, x16(), "edm", "res_2m", **(args | given))


def fit_small(**given) -> None:
    from phiforge.runtime import fit_solver

    x = x16()
    fit_solver(lambda x, s: 0.5 * x, x, 0.1 * x, 10.0, 0.1, 3, **({"iterations": 1} | given))


def fit_free_small(**given) -> None:
    from phiforge.runtime import fit_free_solver

    x = x16()
    path = [x * 0.5**i for i in range(5)]
    sigmas = [10.0, 3.0, 1.0, 0.3, 0.1]
    fit_free_solver(lambda x, s: 0.5 * x, x, path, sigmas, 3, **({"iterations": 1} | given))


def derive_api(function: str, *args, **kwargs) -> Callable[[], None]:
    def call() -> None:
        import importlib

        module_name, name = function.rsplit(".", 1)
        result = getattr(importlib.import_module(f"phiforge.{module_name}"), name)(*args, **kwargs)
        if hasattr(result, "__next__"):
            list(result)

    return call


def api(function: str, *args, **kwargs) -> Callable[[], None]:
    return derive_api(function, *args, **kwargs)


def load_record_from(directory: str, name: str) -> Callable[[], None]:
    def call() -> None:
        from phiforge.derive.registry import load_record

        load_record(name, FILES[directory])

    return call


def load_method_from(directory: str, name: str) -> Callable[[], None]:
    def call() -> None:
        from phiforge.runtime.methods import load_method

        load_method(name, registry=FILES[directory])

    return call


def file_loader(function: str, name: str) -> Callable[[], None]:
    def call() -> None:
        api(function, FILES[name])()

    return call


def tableau(**overrides) -> Callable[[], None]:
    def call() -> None:
        import sympy

        from phiforge.derive.phi import phi
        from phiforge.derive.tableau import ExpRKTableau, Z

        half = sympy.Rational(1, 2)
        args = {
            "name": "t",
            "c": [0, half],
            "a": {(2, 1): half * phi(1, half * Z)},
            "b": {1: phi(1, Z) - 2 * phi(2, Z), 2: 2 * phi(2, Z)},
        }
        args.update(overrides)
        ExpRKTableau.from_coefficients(args["name"], args["c"], args["a"], args["b"])

    return call


CASES: list[tuple[str, Callable[[], object], str]] = [
    # --- CLI: conditions, check, show, trees, catalogue
    ("cond-order-0", cli("conditions", "--order", "0"), "--order"),
    ("cond-order-neg", cli("conditions", "--order", "-3"), "--order"),
    ("cond-order-abc", cli("conditions", "--order", "abc"), "--order"),
    ("cond-order-17", cli("conditions", "--order", "17"), "order"),
    ("cond-order-float", cli("conditions", "--order", "2.5"), "--order"),
    ("cond-setting", cli("conditions", "--order", "3", "--setting", "pde"), "--setting"),
    ("cond-kind", cli("conditions", "--order", "3", "--kind", "weak"), "--kind"),
    ("cond-format", cli("conditions", "--order", "3", "--format", "yaml"), "--format"),
    ("cond-json-error", cli("conditions", "--order", "x", "--format", "json"), '"error"'),
    ("check-unknown", cli("check", "dpm_solver_9"), "unknown method"),
    ("check-order-0", cli("check", "res_2s", "--order", "0"), "--order"),
    ("check-order-17", cli("check", "res_2s", "--order", "17"), "order"),
    # the second value won silently
    ("check-param-twice", cli("check", "exprk2", "--param", "c2=1/2", "--param", "c2=1"), "twice"),
    ("derive-fix-twice", cli(*DERIVE_3S, "--fix", "a3_2=0,a3_2=1/2"), "a3_2 twice"),
    ("check-param-noeq", cli("check", "res_2s", "--param", "c2"), "--param"),
    ("check-param-abc", cli("check", "res_2s", "--param", "c2=abc"), "--param"),
    ("check-param-zero", cli("check", "res_2s", "--param", "c2=0"), "c2"),
    ("check-param-many", cli("check", "--param", "c2=1/2"), "--param"),
    ("check-param-unknown", cli("check", "res_2s", "--param", "q=1"), "parameter"),
    ("check-multistep", cli("check", "res_2m"), "multistep"),
    ("check-registry-missing", cli("check", "x", "--registry", "/nonexistent"), "registry"),
    ("check-setting", cli("check", "res_2s", "--setting", "pde"), "--setting"),
    ("show-unknown", cli("show", "nope"), "unknown method"),
    ("show-param", cli("show", "res_3s", "--param", "c2=1/2"), "--param"),
    ("show-format", cli("show", "res_2s", "--format", "text"), "--format"),
    ("show-param-nan", cli("show", "dpm_solver_2", "--param", "r1=nan"), "r1"),
    ("trees-0", cli("trees", "--order", "0"), "--order"),
    ("trees-huge", cli("trees", "--order", "40"), "order"),
    ("catalogue-format", cli("catalogue", "--format", "xml"), "--format"),
    ("no-command", cli(), "COMMAND"),
    ("unknown-command", cli("frobnicate"), "frobnicate"),
    # --- CLI: derive, registry, generate
    (
        "derive-stages-0",
        cli("derive", "singlestep", "-s", "0", "-p", "2", "--nodes", "1/2", "--name", "a"),
        "--stages",
    ),
    (
        "derive-order-0",
        cli("derive", "singlestep", "-s", "2", "-p", "0", "--nodes", "1/2", "--name", "a"),
        "--order",
    ),
    (
        "derive-nodes-abc",
        cli("derive", "singlestep", "-s", "2", "-p", "2", "--nodes", "abc", "--name", "a"),
        "'nodes'",
    ),
    (
        "derive-nodes-sympy",
        cli("derive", "singlestep", "-s", "3", "-p", "3", "--nodes", "abc,1/2", "--name", "a"),
        "'nodes'",
    ),
    (
        "derive-node-2",
        cli("derive", "singlestep", "-s", "3", "-p", "2", "--nodes", "1/2,2", "--name", "a"),
        "node",
    ),
    (
        "derive-node-neg",
        cli("derive", "singlestep", "-s", "2", "-p", "2", "--nodes", "-1/2", "--name", "a"),
        "node",
    ),
    (
        "derive-node-count",
        cli("derive", "singlestep", "-s", "3", "-p", "2", "--nodes", "1/2", "--name", "a"),
        "nodes",
    ),
    (
        "derive-no-nodes",
        cli("derive", "singlestep", "-s", "2", "-p", "2", "--name", "a"),
        "--nodes",
    ),
    (
        "derive-node-grid",
        cli("derive", "singlestep", "-s", "2", "-p", "2", "--node-grid", "x,y", "--name", "a"),
        "node_grid",
    ),
    ("derive-name-empty", cli("derive", "multistep", "-k", "2", "--name", ""), "--name"),
    ("derive-name-dots", cli("derive", "multistep", "-k", "2", "--name", "../x"), "--name"),
    ("derive-name-upper", cli("derive", "multistep", "-k", "2", "--name", "Res"), "--name"),
    ("derive-name-taken", cli("derive", "multistep", "-k", "2", "--name", "res_2m"), "--name"),
    ("derive-k-0", cli("derive", "multistep", "-k", "0", "--name", "a"), "--order"),
    ("derive-k-huge", cli("derive", "multistep", "-k", "50", "--name", "a"), "order"),
    (
        "derive-assumptions",
        cli(
            "derive",
            "singlestep",
            "-s",
            "2",
            "-p",
            "2",
            "--nodes",
            "1/2",
            "--name",
            "a",
            "--assumptions",
            "x",
        ),
        "--assumptions",
    ),
    (
        "derive-impossible",
        cli(
            "derive",
            "singlestep",
            "-s",
            "2",
            "-p",
            "4",
            "--nodes",
            "1/2",
            "--name",
            "zz_impossible",
            "--registry",
            "bad-reg",
        ),
        "order",
    ),
    (
        "derive-registry-file",
        cli("derive", "multistep", "-k", "2", "--name", "a", "--registry", "/etc/hostname"),
        "--registry",
    ),
    ("registry-show-unknown", cli("registry", "show", "nope"), "unknown"),
    ("registry-show-dots", cli("registry", "show", "../x"), "unknown"),
    ("registry-list-missing", cli("registry", "list", "--registry", "/nonexistent"), "registry"),
    (
        "registry-build-unknown",
        cli("registry", "build", "nope", "--registry", "bad-reg"),
        "plan",
    ),
    ("registry-action", cli("registry", "remove"), "remove"),
    ("generate-registry", cli("generate", "--registry", "/nonexistent"), "--registry"),
    ("generate-check-out", cli("generate", "--check", "--out", "/nonexistent"), "--out"),
    ("generate-out-file", cli("generate", "--out", "/etc/hostname"), "--out"),
    # --- CLI: verify
    ("verify-unknown", cli("verify", "nope"), "method"),
    ("verify-steps-same", cli("verify", "res_2m", "--steps", "8", "8", "8"), "--steps"),
    ("verify-steps-two", cli("verify", "res_2m", "--steps", "8", "16"), "--steps"),
    ("verify-steps-0", cli("verify", "res_2m", "--steps", "0", "8", "16"), "--steps"),
    ("verify-nfe-0", cli("verify", "res_2m", "--nfe", "0"), "--nfe"),
    ("verify-problem", cli("verify", "res_2m", "--problem", "mnist"), "--problem"),
    ("verify-spec-kind", cli("verify", "res_2m", "--problem", "gmm:std=1"), "problem"),
    ("verify-spec-key", cli("verify", "res_2m", "--problem", "gaussian:sd=1"), "problem"),
    ("verify-spec-std", cli("verify", "res_2m", "--problem", "gaussian:std=-1"), "std"),
    ("verify-spec-mean", cli("verify", "res_2m", "--problem", "gaussian:mean=nan"), "mean"),
    ("verify-spec-start", cli("verify", "res_2m", "--problem", "gaussian:start=x"), "start"),
    ("verify-spec-sched", cli("verify", "res_2m", "--problem", "gaussian:schedule=v"), "schedule"),
    ("verify-spec-spacing", cli("verify", "res_2m", "--problem", "gaussian:spacing=u"), "spacing"),
    ("verify-spec-twice", cli("verify", "res_2m", "--problem", "gaussian:std=1,std=2"), "problem"),
    ("verify-explore-0", cli("verify", "res_2m", "--explore", "0"), "--explore"),
    ("derive-zero-scalar", cli(*DERIVE_3S, "--zero", "b2"), "zero"),
    ("derive-zero-unknown", cli(*DERIVE_3S, "--setting", "operator", "--zero", "b9"), "zero"),
    ("verify-explore-sde", cli("verify", "seeds_2a", "--explore", "2"), "seeds_2a"),
    ("verify-batch-0", cli("verify", "res_2m", "--batch", "0"), "--batch"),
    ("verify-extend-0", cli("verify", "res_2m", "--extend-to", "0"), "--extend-to"),
    ("verify-plot-proc", cli("verify", "res_2m", "--plot", "/proc/x/v.png"), "--plot"),
    ("verify-plot-dir", cli("verify", "res_2m", "--plot", "/tmp"), "--plot"),
    # matplotlib refused the suffix with a traceback, after the whole study
    ("verify-plot-txt", cli("verify", "res_2m", "--plot", "v.txt"), "'txt' file"),
    ("verify-registry", cli("verify", "res_2m", "--registry", "/nonexistent"), "registry"),
    ("verify-warmup", cli("verify", "res_2m", "--warmup", "none"), "--warmup"),
    ("verify-sde", cli("verify", "seeds_2a", "--steps", "8", "16", "32"), "seeds_2a"),
    # --- CLI: sample
    ("sample-method", cli("sample", "--method", "nope"), "method"),
    ("sample-nfe-0", cli("sample", "--nfe", "0"), "--nfe"),
    ("sample-nfe-abc", cli("sample", "--nfe", "ten"), "--nfe"),
    ("sample-steps-0", cli("sample", "--steps", "0"), "--steps"),
    ("sample-nfe-steps", cli("sample", "--nfe", "10", "--steps", "5"), "--steps"),
    ("sample-denoiser", cli("sample", "--denoiser", "unet9"), "--denoiser"),
    ("sample-schedule", cli("sample", "--schedule", "cosine2"), "--schedule"),
    ("sample-step-schedule", cli("sample", "--step-schedule", "log"), "--step-schedule"),
    ("sample-restart", cli("sample", "--restart", "nope"), "restart"),
    ("sample-restart-spec", cli("sample", "--restart", "1,2"), "restart"),
    ("sample-out-empty", cli("sample", "--out", ""), "--out"),
    ("sample-out-dir", cli("sample", "--out", "/tmp/"), "--out"),
    ("sample-out-proc", cli("sample", "--out", "/proc/x/s.pt"), "--out"),
    # the PNG grid beside the torch file would overwrite it (both were written to x.png)
    ("sample-out-png", cli("sample", "--out", "x.png"), "suffix .png"),
    # an empty text value was read as the option's absence: no Restart, the default folder,
    # the built-in weights, the default problems
    ("sample-restart-empty", cli("sample", "--restart", ""), "'--restart' must not be empty"),
    ("generate-out-empty", cli("generate", "--out", ""), "'--out' must not be empty"),
    ("network-check-empty", cli("network", "check", ""), "'NAME.json' must not be empty"),
    ("verify-problem-empty", cli("verify", "--problem", ""), "'--problem' must not be empty"),
    # a repeated name ran (and printed) twice
    ("verify-method-twice", cli("verify", "res_2m", "res_2m"), "'method' gives res_2m twice"),
    ("registry-build-twice", cli("registry", "build", "res_2s", "res_2s"), "res_2s twice"),
    ("sample-batch-0", cli("sample", "--batch", "0"), "--batch"),
    ("sample-seed-abc", cli("sample", "--seed", "abc"), "--seed"),
    ("sample-fit-steps-0", cli("sample", "--fit-steps", "0"), "--fit-steps"),
    (
        "sample-fit-restart",
        cli("sample", "--fit-steps", "4", "--restart", "a1111-10"),
        "--fit-steps",
    ),
    ("sample-registry", cli("sample", "--registry", "/nonexistent"), "registry"),
    ("sample-fitted-missing", cli("sample", "--fitted", "/nonexistent/f.json"), "fitted"),
    # --- CLI: fit, network, mixture
    ("fit-nfe-1", cli("fit", "--nfe", "1"), "nfe"),
    ("fit-both-only", cli("fit", "--grid-only", "--weights-only"), "--grid-only"),
    ("fit-out-proc", cli("fit", "--out", "/proc/x/f.json"), "--out"),
    ("fit-eta-neg", cli("fit", "--eta", "-1"), "eta"),
    ("fit-order-0", cli("fit", "--order", "0"), "--order"),
    ("fit-history-0", cli("fit", "--history", "0"), "--history"),
    ("fit-base-9", cli("fit", "--base-steps", "9"), "steps"),
    ("fit-order-high", cli("fit", "--order", "5", "--base-steps", "3"), "order"),
    ("fit-denoiser", cli("fit", "--denoiser", "x"), "--denoiser"),
    ("fit-teacher-0", cli("fit", "--teacher-steps", "0"), "--teacher-steps"),
    ("fit-free-order", cli("fit", "--free", "--order", "2"), "--free"),
    ("fit-free-eta", cli("fit", "--free", "--eta", "1"), "--free"),
    ("fit-cycles-alone", cli("fit", "--cycles", "2"), "--cycles"),
    ("fit-compare-unknown", cli("fit", "--compare", "res_3m_pc,foo"), "--compare"),
    ("fit-compare-empty", cli("fit", "--compare", "dpmpp_2m,,"), "--compare"),
    ("fit-compare-twice", cli("fit", "--compare", "dpmpp_2m,dpmpp_2m"), "--compare"),
    ("fit-compare-ode", cli("fit", "--eta", "1", "--compare", "res_3m_pc"), "--compare"),
    ("fit-free-weights-only", cli("fit", "--free", "--weights-only"), "--weights-only"),
    ("fit-free-nfe", cli("fit", "--free", "--nfe", "40", "--teacher-steps", "20"), "teacher"),
    ("fit-teacher-coarse", cli("fit", "--nfe", "10", "--teacher-steps", "4"), "--teacher-steps"),
    ("network-check-missing", cli("network", "check", "/nonexistent.json"), "nonexistent"),
    ("network-train-steps-0", cli("network", "train", "--steps", "0"), "--steps"),
    ("network-train-out", cli("network", "train", "--steps", "1", "--out", "/proc/x"), "--out"),
    ("network-target", cli("network", "train", "--target", "noise"), "--target"),
    ("network-store", cli("network", "check", "--store"), "--store"),
    (
        "network-unet-target",
        cli("network", "train", "--model", "unet", "--target", "data"),
        "--target",
    ),
    ("network-mlp-base", cli("network", "train", "--base", "16", "--steps", "1"), "--base"),
    ("network-model", cli("network", "train", "--model", "vit"), "--model"),
    # --name is a file stem: 'a/b' trained, then a FileNotFoundError; '../x' wrote outside --out;
    # '' fell back to the default name
    ("network-name-folder", cli("network", "train", "--steps", "1", "--name", "a/b"), "--name"),
    ("network-name-up", cli("network", "train", "--steps", "1", "--name", "../x"), "--name"),
    ("network-name-empty", cli("network", "train", "--steps", "1", "--name", ""), "--name"),
    ("mixture-name-json", cli("mixture", "fit", "--name", "m.json"), "--name"),
    # writers: an OS refusal or a non-path was an OSError or TypeError from pathlib
    ("solver-save-folder", solver_saved_to("dir"), "cannot write"),
    ("solver-save-int", solver_saved_to(3), "path"),
    (
        "write-tensors-file",
        api("runtime.manifest.write_tensors", "/proc/version", "n", {}, {}),
        "directory",
    ),
    ("write-tensors-name", api("runtime.manifest.write_tensors", ".", "../x", {}, {}), "name"),
    ("unet-missing", file_loader("runtime.unet.load_unet", "missing"), "missing"),
    ("unet-junk", file_loader("runtime.unet.load_unet", "junk"), "junk"),
    ("unet-network", file_loader("runtime.unet.load_unet", "network"), "U-Net"),
    ("unet-mixture", file_loader("runtime.unet.load_unet", "mixture"), "U-Net"),
    ("unet-device", api("runtime.denoisers.builtin_denoiser", "unet", device="gpu0"), "device"),
    ("unet-size", lambda: denoiser_named("unet")(torch.zeros(2, 3, 16, 16), 1.0), "3072"),
    ("patches-split", api("runtime.images.image_patches", "test", 4), "split"),
    ("patches-count", api("runtime.images.image_patches", "train", 0), "count"),
    # numpy's SeedSequence raised ValueError/TypeError; a huge count tried to allocate it
    ("patches-seed-neg", api("runtime.images.image_patches", "train", 4, 32, -1), "'seed'"),
    ("patches-seed-str", api("runtime.images.image_patches", "train", 4, 32, "x"), "'seed'"),
    ("patches-count-huge", api("runtime.images.image_patches", "train", 10**12), "'count'"),
    # seeds of the lab's training and problems: accepted, then numpy's error mid-run
    ("unet-training-seed", api("runtime.unet.UNetTraining", seed=-1), "'seed'"),
    ("network-training-seed", api("runtime.network.TrainingConfig", seed="x"), "'seed'"),
    ("problem-seed", api("runtime.verification.builtin_problem", "gaussian", seed="x"), "'seed'"),
    ("unet-config-size", api("runtime.unet.UNetConfig", size=30), "size"),
    ("unet-config-groups", api("runtime.unet.UNetConfig", base=12, groups=8), "groups"),
    ("unet-training-ema", api("runtime.unet.UNetTraining", ema=1.0), "ema"),
    ("mixture-fit-0", cli("mixture", "fit", "--components", "0"), "--components"),
    (
        "mixture-fit-out",
        cli("mixture", "fit", "--components", "2", "--out", "/proc/x"),
        "--out",
    ),
    ("mixture-check-missing", cli("mixture", "check", "/nonexistent.json"), "nonexistent"),
    # --- sample()
    ("sample-x-list", run_sample(x=[[0.0] * 64]), "x"),
    ("sample-x-empty", run_sample(x=torch.zeros(0, 64, dtype=torch.float64)), "x"),
    ("sample-x-nan", run_sample(x=torch.full((2, 64), math.nan, dtype=torch.float64)), "x"),
    ("sample-x-int", run_sample(x=torch.zeros(2, 64, dtype=torch.int64)), "x"),
    ("sample-method-unknown", run_sample(method="res_9m"), "method"),
    ("sample-method-int", run_sample(method=3), "method"),
    ("api-sample-nfe-0", run_sample(nfe=0), "nfe"),
    ("sample-nfe-neg", run_sample(nfe=-4), "nfe"),
    ("sample-nfe-float", run_sample(nfe=2.5), "nfe"),
    ("sample-nfe-bool", run_sample(nfe=True), "nfe"),
    ("sample-steps-and-nfe", run_sample(nfe=6, steps=3), "steps"),
    ("api-sample-steps-0", run_sample(steps=0), "steps"),
    ("api-sample-schedule", run_sample(schedule="cosine-9"), "schedule"),
    ("sample-output", run_sample(output="logits"), "output"),
    ("api-sample-step-schedule", run_sample(step_schedule="log"), "step_schedule"),
    ("sample-warmup", run_sample(warmup="none"), "warmup"),
    ("sample-sigmas-up", run_sample(sigmas=[0.1, 1.0, 10.0]), "sigmas"),
    ("sample-sigmas-one", run_sample(sigmas=[10.0]), "sigmas"),
    ("sample-sigmas-nan", run_sample(sigmas=[10.0, math.nan, 0.1]), "sigmas"),
    ("sample-sigmas-rows", run_sample(sigmas=[[10.0, 1.0, 0.1]] * 3), "sigmas"),
    ("sample-t-order", run_sample(t_start=0.1, t_end=0.5), "t_start"),
    ("sample-t-range", run_sample(t_start=2.0), "t_start"),
    ("sample-eta-ode", run_sample(eta=1.0), "eta"),
    ("sample-eta-neg", run_sample(method="res_2m_sde", eta=-1.0), "eta"),
    ("sample-s-noise-nan", run_sample(method="seeds_1", s_noise=math.nan), "s_noise"),
    ("sample-seeds-len", run_sample(method="seeds_1", seeds=[1, 2]), "seeds"),
    ("api-sample-restart", run_sample(restart="nope"), "restart"),
    ("sample-guidance", run_sample(guidance="strong"), "guidance"),
    ("sample-thresholding", run_sample(thresholding="hard"), "thresholding"),
    ("sample-unknown-option", run_sample(frobnicate=1), "frobnicate"),
    ("sample-check-every", run_sample(check_every=0), "check_every"),
    ("sample-capture-cpu", run_sample(capture=True), "capture"),
    ("sample-model-nan", run_sample(model=nan_model), "sigma"),
    ("sample-model-shape", run_sample(model=lambda x, s: x[:1]), "shape"),
    ("sample-options-seeds", run_sample(method="seeds_2a", options={"r": 2.0}), "r"),
    (
        "sample-timesteps-float",
        run_sample(schedule="ddpm", timesteps=[999.5, 500.0]),
        "timesteps",
    ),
    # --- k-diffusion functions
    ("kd-sigmas-up", kdiff("sample_res_2m", sigmas=torch.tensor([0.1, 1.0, 10.0])), "sigmas"),
    ("kd-sigmas-one", kdiff("sample_res_2m", sigmas=torch.tensor([10.0])), "sigmas"),
    (
        "kd-sigmas-nan",
        kdiff("sample_res_2m", sigmas=torch.tensor([10.0, math.nan, 0.0])),
        "sigmas",
    ),
    ("kd-seed-list", kdiff("sample_seeds_2", extra_args={"seed": [1, 2, 3, 4]}), "seed"),
    # a node of another SEEDS variant fell through to sample()'s list of its own parameters
    ("kd-node-of-another", kdiff("sample_seeds_3a", r=0.4), "not a node of seeds_3a"),
    ("kd-seed-str", kdiff("sample_seeds_2", extra_args={"seed": "7"}), "seed"),
    ("kd-eta-ode", kdiff("sample_res_2m", eta=1.0), "eta"),
    ("kd-eta-neg", kdiff("sample_seeds_2", eta=-0.5), "eta"),
    ("kd-x-list", kdiff("sample_res_2m", x=[[1.0] * 64]), "x"),
    ("kd-model-nan", kdiff("sample_res_2m", model=nan_model), "sigma"),
    ("kd-rows", kdiff("sample_res_2m", sigmas=torch.tensor([[10.0, 1.0, 0.0]] * 3)), "sigmas"),
    ("kd-option", kdiff("sample_res_2m", frobnicate=2), "frobnicate"),
    ("kd-node", kdiff("sample_seeds_2", r=1.5), "r"),
    # --- diffusers scheduler
    ("sched-steps-0", sched_call(lambda s: s.set_timesteps(0)), "num_inference_steps"),
    ("sched-ragged", sched_call(lambda s: s.set_timesteps(sigmas=[[1.0, 0.5], [1.0]])), "sigmas"),
    ("sched-3d", sched_call(lambda s: s.set_timesteps(sigmas=[[[1.0, 0.5]]])), "sigmas"),
    ("sched-steps-neg", sched_call(lambda s: s.set_timesteps(-5)), "num_inference_steps"),
    ("sched-steps-float", sched_call(lambda s: s.set_timesteps(2.5)), "num_inference_steps"),
    ("sched-steps-many", sched_call(lambda s: s.set_timesteps(2000)), "num_inference_steps"),
    ("sched-steps-bool", sched_call(lambda s: s.set_timesteps(True)), "num_inference_steps"),
    ("sched-steps-str", sched_call(lambda s: s.set_timesteps("10")), "num_inference_steps"),
    (
        "sched-step-first",
        sched_call(lambda s: s.step(torch.zeros(1), 999, torch.zeros(1))),
        "set_timesteps",
    ),
    ("sched-step-past-end", sched_call(step_past_end), "step"),
    ("sched-nan", sched_call(nan_in_scheduler), "NaN"),
    ("sched-eta-neg", scheduler(method="seeds_2a", eta=-1.0), "eta"),
    ("sched-s-noise-inf", scheduler(method="seeds_2a", s_noise=math.inf), "s_noise"),
    ("sched-method", scheduler(method="nope"), "method"),
    ("sched-prediction", scheduler(prediction_type="score"), "prediction_type"),
    ("sched-warmup", scheduler(warmup="none"), "warmup"),
    ("sched-sigmas-up", sched_call(lambda s: s.set_timesteps(sigmas=[0.1, 1.0, 5.0])), "sigmas"),
    (
        "sched-alpha-index",
        sched_call(lambda s: (s.set_timesteps(4), s.alpha_sigma(99))),
        "index",
    ),
    (
        "sched-begin-index",
        sched_call(lambda s: (s.set_timesteps(4), s.set_begin_index(99))),
        "begin_index",
    ),
    ("sched-flow-match", scheduler(flow_match={"shift": 2.0}), "flow_match"),
    ("sched-registry", scheduler(method="my", registry="/nonexistent"), "registry"),
    # --- the derive API
    ("phi-k-neg", api("derive.phi.phi", -1, 0.5), "k"),
    ("runtime-phi-overflow", api("runtime.phi.phi", 2, 1000.0), "z"),
    ("runtime-phi-k", api("runtime.phi.phi", -2, 0.5), "k"),
    ("runtime-phi-nan", api("runtime.phi.phi_all_float", math.nan, 2), "z"),
    ("api-trees-0", api("derive.trees.trees", 0), "n"),
    ("trees-str", api("derive.trees.trees", "3"), "n"),
    ("trees-up-to-huge", api("derive.trees.trees_up_to", 40), "p"),
    ("stiff-0", api("derive.conditions.stiff_conditions", 0), "p"),
    ("stiff-17", api("derive.conditions.stiff_conditions", 17), "p"),
    ("stiff-setting", api("derive.conditions.stiff_conditions", 3, "pde"), "setting"),
    ("nonstiff-0", api("derive.conditions.nonstiff_conditions", 0), "p"),
    ("classical-0", api("derive.conditions.classical_conditions", 0), "p"),
    ("catalogue-unknown", api("derive.catalogue.catalogue_method", "nope"), "unknown"),
    ("catalogue-param", api("derive.catalogue.catalogue_method", "res_2s", q=1), "q"),
    ("adams-0", api("derive.multistep.exponential_adams", 0), "k"),
    ("adams-bool", api("derive.multistep.exponential_adams", True), "k"),
    ("adams-moulton-0", api("derive.multistep.exponential_adams_moulton", 0), "k"),
    ("published-multistep", api("derive.multistep.published_multistep", "nope"), "nope"),
    ("construct-node-2", api("derive.construct.construct_singlestep", 3, 3, ["2", "1/2"]), "c_2"),
    ("construct-node-neg", api("derive.construct.construct_singlestep", 2, 2, [-0.5]), "c_2"),
    ("construct-node-text", api("derive.construct.construct_singlestep", 3, 3, ["x(", "1"]), "x("),
    ("construct-nodes-str", api("derive.construct.construct_singlestep", 3, 3, "1/2,1"), "nodes"),
    ("construct-stages-40", api("derive.construct.construct_singlestep", 40, 3, [0.5]), "stages"),
    ("operator-node-2", api("derive.construct.construct_operator", 3, 3, ["2", "1/2"]), "c_2"),
    ("operator-node-sym", api("derive.construct.construct_operator", 3, 3, ["c", "1/2"]), "nodes"),
    ("operator-stages-1", api("derive.construct.construct_operator", 1, 2, []), "stages"),
    ("family-unknown", api("derive.catalogue.catalogue_names", "implicit"), "family"),
    ("derive-record-name", api("derive.plan.derive_multistep_record", "../x", 2), "name"),
    ("derive-record-order", api("derive.plan.derive_multistep_record", "a", 0), "order"),
    (
        "derive-single-nodes",
        api("derive.plan.derive_singlestep_record", "a", 3, 2, nodes=[0.5]),
        "nodes",
    ),
    (
        "derive-single-stages",
        api("derive.plan.derive_singlestep_record", "a", 0, 2, nodes=[]),
        "stages",
    ),
    ("tableau-rowsum", tableau(c=[0, 2]), "c"),
    ("tableau-b-missing", tableau(b={1: 0}), "b"),
    ("tableau-implicit", tableau(a={(1, 2): 1}), "a"),
    ("check-tableau-order", derive_api("derive.check.check_tableau", None, 0), "order"),
    # --- registry, records
    ("record-junk", file_loader("derive.registry.load_record", "junk"), "name"),
    ("record-missing", load_record_from("dir", "missing"), "missing"),
    ("record-edited", load_record_from("edited_dir", "res_9s"), "edited by hand"),
    ("record-renamed", load_method_from("renamed_dir", "other"), "differs"),
    ("record-list", load_method_from("list_dir", "listy"), "JSON object"),
    ("load-method-registry", load_method_from("missing", "x"), "registry"),
    ("generate-write-no-out", api("derive.codegen.generate", None, None), "out"),
    # --- fitted solvers, weights, mixtures, built-ins
    ("solver-missing", file_loader("runtime.fitted.load_solver", "missing"), "missing"),
    ("solver-junk", file_loader("runtime.fitted.load_solver", "junk"), "junk"),
    ("solver-truncated", file_loader("runtime.fitted.load_solver", "truncated"), "truncated"),
    ("solver-record", file_loader("runtime.fitted.load_solver", "record"), "res_2s"),
    ("solver-empty", file_loader("runtime.fitted.load_solver", "empty"), "empty"),
    ("solver-dir", file_loader("runtime.fitted.load_solver", "dir"), "bad"),
    ("network-missing", file_loader("runtime.network.load_network", "missing"), "missing"),
    ("network-junk", file_loader("runtime.network.load_network", "junk"), "junk"),
    ("network-record", file_loader("runtime.network.load_network", "record"), "res_2s"),
    ("network-mixture", file_loader("runtime.network.load_network", "mixture"), "not a network"),
    ("mixture-missing", file_loader("runtime.denoisers.load_mixture", "missing"), "missing"),
    ("mixture-junk", file_loader("runtime.denoisers.load_mixture", "junk"), "junk"),
    ("mixture-network", file_loader("runtime.denoisers.load_mixture", "network"), "mlp"),
    ("mixture-truncated", file_loader("runtime.denoisers.load_mixture", "truncated"), "trunc"),
    # a U-Net manifest handed to the other readers names its model (its .bin is float16)
    ("network-unet", file_loader("runtime.network.load_network", "unet"), "'unet' model"),
    ("mixture-unet", file_loader("runtime.denoisers.load_mixture", "unet"), "'unet' model"),
    ("builtin-unknown", api("runtime.denoisers.builtin_denoiser", "unet9"), "denoiser"),
    (
        "builtin-device",
        api("runtime.denoisers.builtin_denoiser", "gmm", device="tpu9"),
        "device",
    ),
    (
        "builtin-cuda",
        api("runtime.denoisers.builtin_denoiser", "gmm", device="cuda:7"),
        "device",
    ),
    ("denoiser-x-int", lambda: denoiser()(torch.zeros(2, 64, dtype=torch.int32), 1.0), "x"),
    ("denoiser-x-dim", lambda: denoiser()(torch.zeros(2, 63), 1.0), "x"),
    ("schedule-unknown", api("runtime.schedules.noise_schedule", "cosine-9"), "schedule"),
    # --- every option's type, where torch, numpy or Python would otherwise raise or accept
    ("sample-callback-int", run_sample(callback=3), "callback"),
    ("sample-progress-str", run_sample(progress="yes"), "progress"),
    ("sample-return-info-tensor", run_sample(return_info=torch.ones(2)), "return_info"),
    ("sample-capture-str", run_sample(capture="no"), "capture"),
    ("sample-final-denoise-str", run_sample(final_denoise="no"), "final_denoise"),
    # the main method's domain was checked, not its starters': res_4m_pc's order-preserving
    # starter res_5s raised ValueError from its coefficient function mid-plan
    (
        "sample-starter-domain",
        run_sample(method="res_4m_pc", prediction="noise", warmup="order-preserving", nfe=24),
        "'res_5s' (a step of res_4m_pc's plan",
    ),
    # flow matching from t = 1 to 0 needs two calls (its two limits): nfe 1 planned 2
    ("sample-flow-nfe-1", run_sample(schedule="flow", method="res_2s", nfe=1), "'nfe'"),
    ("sample-t-start-str", run_sample(t_start="abc"), "t_start"),
    ("sample-t-end-list", run_sample(t_end=[0.1]), "t_end"),
    ("sample-nfe-huge", run_sample(nfe=10**30), "nfe"),
    ("sample-timesteps-str", run_sample(timesteps=["a", "b"]), "timesteps"),
    ("sample-dtype-int", run_sample(dtype=torch.int64), "dtype"),
    ("sample-dtype-str", run_sample(dtype="float32"), "dtype"),
    ("sample-model-kwargs-list", run_sample(model_kwargs=[1, 2]), "model_kwargs"),
    ("sample-options-number", run_sample(method="seeds_2a", options=3), "options"),
    ("sample-seeds-int", run_sample(method="seeds_2a", seeds=5), "seeds"),
    ("sample-seeds-negative", run_sample(method="seeds_2a", seeds=[-1, 0, 1, 2]), "seeds"),
    ("sample-generator-int", run_sample(method="seeds_2a", generator=0), "generator"),
    ("sample-noise-sampler-str", run_sample(method="seeds_2a", noise_sampler="x"), "noise_sampler"),
    ("sample-allocation-multistep", run_sample(allocation="fastest"), "allocation"),
    ("sample-rho-zero", run_sample(rho=0), "rho"),
    ("sample-model-arity", run_sample(model=lambda x: x), "model"),
    ("sample-model-returns-none", run_sample(model=lambda x, s: None), "model"),
    ("sample-model-complex", run_sample(model=lambda x, s: x.to(torch.complex128)), "model"),
    ("kdiff-sigmas-str", kdiff("res_2m", sigmas="abc"), "sigmas"),
    ("kdiff-sigmas-dict", kdiff("res_2m", sigmas={"a": 1}), "sigmas"),
    ("kdiff-callback-int", kdiff("res_2m", callback=1), "callback"),
    ("kdiff-extra-args-list", kdiff("res_2m", extra_args=[1]), "extra_args"),
    ("kdiff-disable-str", kdiff("res_2m", disable="yes"), "disable"),
    ("kdiff-options-list", kdiff("seeds_2", options=[1]), "options"),
    ("sched-beta-schedule", scheduler(beta_schedule="cosine9"), "beta_schedule"),
    ("sched-beta-start-str", scheduler(beta_start="a"), "beta_start"),
    ("sched-train-steps-float", scheduler(num_train_timesteps=2.5), "num_train_timesteps"),
    ("sched-flag-str", scheduler(use_karras_sigmas="yes"), "use_karras_sigmas"),
    ("sched-method-options", scheduler(method="seeds_2a", method_options=[1]), "method_options"),
    ("sched-spacing", scheduler(timestep_spacing="middle"), "timestep_spacing"),
    ("sched-lambda-nan", scheduler(lambda_min_clipped=math.nan), "lambda_min_clipped"),
    ("sched-sigmas-str", sched_call(lambda s: s.set_timesteps(sigmas="abc")), "sigmas"),
    (
        "sched-sigmas-ragged",
        sched_call(lambda s: s.set_timesteps(sigmas=[[3.0, 1.0], [2.0]])),
        "sigmas",
    ),
    (
        "sched-timesteps-range",
        sched_call(lambda s: s.set_timesteps(timesteps=[999, 500, -3])),
        "timesteps",
    ),
    ("sched-device", sched_call(lambda s: s.set_timesteps(4, device="tpu9")), "device"),
    ("sched-mu-unshifted", sched_call(lambda s: s.set_timesteps(4, mu=1.0)), "mu"),
    ("sched-step-output-none", sched_call(step_with(model_output=None)), "model_output"),
    (
        "sched-step-output-shape",
        sched_call(step_with(model_output=torch.zeros(3, 3, dtype=torch.float64))),
        "model_output",
    ),
    ("sched-step-return-dict", sched_call(step_with(return_dict="no")), "return_dict"),
    ("sched-step-threshold-2d", sched_call(step_with(), thresholding=True), "sample"),
    (
        "sched-add-noise-range",
        sched_call(
            lambda s: s.add_noise(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([5e3]))
        ),
        "timesteps",
    ),
    ("derive-catalogue-name-list", api("derive.catalogue.catalogue_method", ["x"]), "unknown"),
    ("derive-published-name-list", api("derive.multistep.published_multistep", ["x"]), "unknown"),
    ("derive-stochastic-name-dict", api("derive.stochastic.stochastic_method", {}), "unknown"),
    ("derive-stage-noise-number", api("derive.stochastic.stage_noise", 0.5), "nodes"),
    ("derive-trees-start", api("derive.trees.trees_up_to", 3, start=2.5), "start"),
    ("derive-read-record-none", api("derive.records.read_record", None), "path"),
    ("mixture-fit-components", cli("mixture", "fit", "--components", "5000"), "components"),
    ("mixture-fit-seed-neg", cli("mixture", "fit", "--seed", "-1"), "--seed"),
    ("mixture-check-rtol-nan", cli("mixture", "check", "--rtol", "nan"), "--rtol"),
    ("network-check-rtol-neg", cli("network", "check", "--rtol", "-1"), "--rtol"),
    ("network-train-width-huge", cli("network", "train", "--width", "9" * 20), "--width"),
    ("solver-path-none", api("runtime.fitted.load_solver", None), "path"),
    ("solver-steps-str", file_loader("runtime.fitted.load_solver", "solver_steps"), "steps"),
    ("solver-format-true", file_loader("runtime.fitted.load_solver", "solver_format"), "format"),
    ("network-path-int", api("runtime.network.load_network", 3), "path"),
    ("builtin-name-list", api("runtime.denoisers.builtin_denoiser", ["gmm"]), "denoiser"),
    (
        "denoiser-sigma-shape",
        lambda: denoiser()(torch.zeros(2, 64, dtype=torch.float64), torch.ones(3)),
        "sigma",
    ),
    ("denoiser-sigma-negative", lambda: denoiser()(torch.zeros(2, 64), -1.0), "sigma"),
    ("restart-intervals-str", api("runtime.restart.Restart", "abc"), "intervals"),
    ("restart-sigma-str", api("runtime.restart.RestartInterval", 3, 2, "a", 2.0), "sigma_min"),
    ("restart-repeats-huge", api("runtime.restart.RestartInterval", 3, 10**30, 0.1, 2), "repeats"),
    (
        "restart-churn-range",
        lambda: restart_with(churn_sigma_min=2.0, churn_sigma_max=1.0),
        "churn_sigma_min",
    ),
    ("restart-snap-str", lambda: restart_with(snap_sigma_max="yes"), "snap_sigma_max"),
    ("restart-main-steps-float", lambda: restart_with(main_steps=2.5), "main_steps"),
    ("restart-method-unknown", lambda: run_sample(restart=restart_with(method="nope"))(), "nope"),
    ("adaptive-max-attempts", api("runtime.adaptive.Adaptive", max_attempts=2.5), "max_attempts"),
    ("adaptive-rtol-bool", api("runtime.adaptive.Adaptive", rtol=True), "rtol"),
    ("guidance-uncond-list", api("runtime.models.Guidance", 2.0, [1]), "uncond_kwargs"),
    ("guidance-scale-bool", api("runtime.models.Guidance", True), "scale"),
    ("steps-search-ends", lambda: search_steps(sigma_start="abc"), "sigma_start"),
    ("steps-search-reference", lambda: search_steps(reference=3.0), "reference"),
    ("steps-search-options", lambda: search_steps(sample_options=[1]), "sample_options"),
    ("fit-sigmas-str", lambda: fit_small(sigmas="abc"), "sigmas"),
    ("fit-sigmas-empty", lambda: fit_small(sigmas=[]), "sigmas"),
    ("fit-extra-args", lambda: fit_small(extra_args=3), "extra_args"),
    ("fit-progress", lambda: fit_small(progress=3), "progress"),
    ("fit-free-extra-args", lambda: fit_free_small(extra_args=3), "extra_args"),
    ("restart-spec", api("runtime.restart.restart_from", "1,2,3"), "restart"),
]


def test_the_table_is_large_and_unique():
    ids = [case[0] for case in CASES]
    assert len(ids) >= 150 and len(set(ids)) == len(ids)


@pytest.mark.parametrize(("call", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gives_a_clear_error(call, fragment):
    with pytest.raises((InputError, ModelOutputError, CliError)) as caught:
        call()
    message = str(caught.value)
    assert fragment.lower() in message.lower(), message
    assert "Traceback" not in message
