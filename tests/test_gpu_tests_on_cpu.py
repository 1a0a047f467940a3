"""The ``gpu`` tests, run on the CPU through the stand-in plugin ``tests/cuda_on_cpu.py``: CI
has no GPU, and a lent device has minutes, so what can break in those tests without a GPU
(an argument the API no longer takes: the capture test gave deterministic methods an eta, which
they refuse) is caught here. With CUDA present the real ones run."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(torch.cuda.is_available(), reason="the gpu tests run on the device itself")
def test_the_gpu_tests_pass_with_the_cpu_standing_in_for_cuda():
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
               "tests.cuda_on_cpu", "-m", "gpu", "tests"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    passed = int(summary.split(" passed")[0].split()[-1])
    # a module that needs an optional package (diffusers, ...) may count as one skip; every
    # gpu test itself runs
    assert passed >= 12, summary
