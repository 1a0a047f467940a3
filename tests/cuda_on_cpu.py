"""A pytest plugin that runs the ``gpu`` tests on a machine without CUDA: ``x.cuda()``,
``x.to("cuda")`` and ``device="cuda"`` mean the CPU, tensors say they are on CUDA, the CUDA
queries answer as a device would, and a CUDA graph capture (``sample(capture=True)``) is
stood in for by a replay that runs the same program uncaptured. It catches what does not need
a GPU to go wrong in those tests (an argument the API no longer takes, a renamed function)
before a lent device runs them: ``python -m pytest -p tests.cuda_on_cpu -m gpu tests``."""

from __future__ import annotations

from typing import Any

import torch

import phiforge.runtime.checks as checks
import phiforge.runtime.denoisers as denoisers
import phiforge.runtime.driver as driver
from phiforge.runtime.engine import execute

_to = torch.Tensor.to
_check_device = checks.check_device


def _cpu(value: Any) -> Any:
    cuda = (isinstance(value, str) and value.startswith("cuda")) or (
        isinstance(value, torch.device) and value.type == "cuda"
    )
    return "cpu" if cuda else value


def _to_cpu(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    if "device" in kwargs:
        kwargs["device"] = _cpu(kwargs["device"])
    return _to(self, *(_cpu(a) for a in args), **kwargs)


def _device(device: Any, *args: Any, **kwargs: Any) -> torch.device:
    return _check_device(_cpu(device), *args, **kwargs)


def _replayed(program, inputs, evaluate, *, noise=None, warmup=1, check_finite=True):
    """engine.capture's stand-in: every replay runs the program again, uncaptured."""

    def replay(new_inputs):
        return execute(program, list(new_inputs), evaluate, noise=noise, check_finite=check_finite)

    return replay


torch.Tensor.is_cuda = property(lambda self: True)
driver.engine_capture = _replayed
torch.Tensor.to = _to_cpu
torch.Tensor.cuda = lambda self, *args, **kwargs: self
torch.cuda.is_available = lambda: True
torch.cuda.synchronize = lambda *args, **kwargs: None
torch.cuda.set_sync_debug_mode = lambda *args, **kwargs: None
checks.check_device = _device
denoisers.check_device = _device
