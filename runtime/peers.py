"""Optional peers, loaded only when installed: used by parity tests and benchmarks.

k-diffusion's package ``__init__`` imports its training stack (torchvision, CLIP, ...); only
``k_diffusion/sampling.py`` is needed for sampler parity. :func:`kdiffusion_sampling` loads that
file alone, with stand-ins for the imports that sampling does not use (peers.md §5.4).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from types import ModuleType

__all__ = ["diffusers_available", "kdiffusion_sampling"]


def kdiffusion_sampling() -> ModuleType | None:
    """``k_diffusion.sampling`` if k-diffusion (and torchsde, torchdiffeq) are installed."""
    if "k_diffusion.sampling" in sys.modules:
        return sys.modules["k_diffusion.sampling"]
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or spec.submodule_search_locations is None:
        return None
    for dependency in ("torchsde", "torchdiffeq", "scipy"):
        if importlib.util.find_spec(dependency) is None:
            return None
    location = next(iter(spec.submodule_search_locations))
    package = types.ModuleType("k_diffusion")
    package.__path__ = [location]
    package.__spec__ = spec
    utils = types.ModuleType("k_diffusion.utils")

    def append_dims(x, target_dims):
        return x[(...,) + (None,) * (target_dims - x.ndim)]

    utils.append_dims = append_dims
    package.utils = utils
    sys.modules.setdefault("k_diffusion", package)
    sys.modules.setdefault("k_diffusion.utils", utils)
    module_spec = importlib.util.spec_from_file_location(
        "k_diffusion.sampling", f"{location}/sampling.py"
    )
    module = importlib.util.module_from_spec(module_spec)
    sys.modules["k_diffusion.sampling"] = module
    module_spec.loader.exec_module(module)
    return module


def diffusers_available() -> bool:
    return importlib.util.find_spec("diffusers") is not None
