"""k-diffusion-style sampling functions for every generated ODE method.

``sample_<name>(model, x, sigmas, extra_args=None, callback=None, disable=None, **options)``
follows k-diffusion's convention (Crowson, ``k_diffusion/sampling.py``; peers.md §5.1):
``model(x, sigma_batch, **extra_args)`` returns the denoised x0, ``sigmas`` descend and may end
in 0, and the step to sigma = 0 is ``x = D(x, sigma_last)`` (one model evaluation). A 2-D
``sigmas`` (one row per sample, rows of one length) gives every sample its own grid. Callback
dicts carry x, i, sigma, sigma_hat and denoised. ``options`` go to
:func:`phiforge.runtime.driver.sample` (``warmup``, ``lower_order_final``, ``thresholding``,
``guidance``, ``prediction``, ``restart``, ...); stochastic (SEEDS) methods also take ``eta``,
``s_noise``, ``noise_sampler`` and their nodes (``r``; ``r_1``/``r1``, ``r_2``/``r2``), and use
``extra_args["seed"]`` (removed before the model call) for per-sample noise when given.

The functions are made from the generated modules at import time, one mechanism for all:
``SAMPLERS`` maps each method name to its function.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch

from phiforge.runtime.checks import check_callable, check_flag, check_mapping
from phiforge.runtime.driver import sample
from phiforge.runtime.errors import InputError
from phiforge.runtime.schedules import EDM
from phiforge.runtime.stepping import generated_methods, load_method

__all__ = ["ALIASES", "SAMPLERS", "make_sampler"]

_EDM = EDM()
# node options under the names ComfyUI's seeds_2 / seeds_3 use, and ours
_NODE_ALIASES = {"r": "r", "r_1": "r1", "r_2": "r2", "r1": "r1", "r2": "r2"}
#: the default variants under SEEDS' own names (spec-seeds-restart §2.5-2.6)
ALIASES = {"seeds_2": "seeds_2a", "seeds_3": "seeds_3a"}


def _step_start(
    callback: Callable[[dict[str, Any]], None] | None,
) -> Callable[[dict[str, Any]], None] | None:
    """k-diffusion's callback protocol: ``x`` is the state at ``sigma`` that step ``i`` starts
    from (k-diffusion's samplers call it before they update x); the driver's ``x`` is the state
    the step ends at, its ``x_start`` the one it starts from."""
    if callback is None:
        return None

    def report(event: dict[str, Any]) -> None:
        start = event["x_start"]
        callback({**event, "x": event["x"] if start is None else start})

    return report


def _sigma_table(sigmas: Any) -> torch.Tensor:
    """``sigmas`` (a tensor, array or sequence of numbers; 2-D: one row per sample) as a float64
    CPU tensor, or a clear error naming it."""
    message = "parameter 'sigmas' must be a 1-D sequence of numbers (2-D: one row per sample)"
    if isinstance(sigmas, str | bytes) or sigmas is None:
        raise InputError(f"{message}, got {sigmas!r}")
    try:
        table = torch.as_tensor(sigmas).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise InputError(f"{message}, got {sigmas!r}") from None
    if table.is_complex() or table.dtype == torch.bool:
        raise InputError(f"{message} (real), got dtype {table.dtype}")
    return table.to(torch.float64)


def make_sampler(name: str, registry: Any = None) -> Callable[..., torch.Tensor]:
    """The k-diffusion-style function of the registered method ``name`` (a user's own method:
    its registry folder in ``registry`` or ``PHIFORGE_REGISTRY``)."""
    module = load_method(name, registry)

    def sampler(
        model: Callable[..., torch.Tensor],
        x: torch.Tensor,
        sigmas: Any,
        extra_args: dict[str, Any] | None = None,
        callback: Callable[[dict[str, Any]], None] | None = None,
        disable: bool | None = None,
        **options: Any,
    ) -> torch.Tensor:
        table = _sigma_table(sigmas)
        # 1-D: one grid for the batch; 2-D: a grid per sample (phiforge's extension)
        sigma_list = table if table.ndim == 2 else [float(s) for s in table.reshape(-1)]
        if disable is not None:
            check_flag("disable", disable)
        check_callable("callback", callback, "a function of one dict (called at every step)")
        check_mapping("extra_args", extra_args, "the model's keyword arguments")
        progress = disable is False or (disable is None and sys.stderr.isatty())
        extra = dict(extra_args or {})
        seed = extra.pop("seed", None)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise InputError(
                "extra_args['seed'] must be an integer (sample i draws from seed + i), got "
                f"{seed!r}"
            )
        nodes_given = sorted(alias for alias in _NODE_ALIASES if alias in options)
        parameters = getattr(module, "PARAMETERS", None) or ()
        foreign = [a for a in nodes_given if _NODE_ALIASES[a] not in parameters]
        if foreign:
            own = ", ".join(parameters) if parameters else "none"
            raise InputError(
                f"parameter {foreign[0]!r} is not a node of {module.NAME} (its nodes: {own})"
            )
        if getattr(module, "PARAMETERS", None) is not None:  # node options (SEEDS)
            nodes = {
                key: options.pop(alias)
                for alias, key in _NODE_ALIASES.items()
                if alias in options and key in module.PARAMETERS
            }
            given = options.get("options")
            check_mapping("options", given, "numbers")
            options["options"] = {**(given or {}), **nodes}
            if seed is not None and "noise_sampler" not in options and "seeds" not in options:
                options["seeds"] = [int(seed) + i for i in range(x.shape[0])]
        return sample(
            model,
            x,
            _EDM,
            module,
            sigmas=sigma_list,
            output="edm",
            model_kwargs=extra,
            callback=_step_start(callback),
            progress=progress,
            **options,
        )

    sampler.__name__ = sampler.__qualname__ = f"sample_{module.NAME}"
    sampler.__doc__ = (
        f"{module.__doc__.splitlines()[0]}\n\nk-diffusion-style sampler ({module.NFE_PER_STEP} "
        f"model evaluation(s) per step; see phiforge.runtime.kdiffusion)."
    )
    return sampler


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    name: make_sampler(name) for name in generated_methods()
}
for _alias, _target in ALIASES.items():
    SAMPLERS[_alias] = make_sampler(_target)
    SAMPLERS[_alias].__name__ = SAMPLERS[_alias].__qualname__ = f"sample_{_alias}"

for _name, _function in SAMPLERS.items():
    globals()[_function.__name__] = _function
__all__ += [f.__name__ for f in SAMPLERS.values()]
