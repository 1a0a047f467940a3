"""Torch layer: schedules, model wrappers, phi numerics, the sampling driver.

``from phiforge.runtime import sample`` is the entry point; see :mod:`phiforge.runtime.driver`.
"""

from phiforge.runtime.driver import SampleInfo, sample
from phiforge.runtime.errors import InputError, ModelOutputError
from phiforge.runtime.models import Guidance
from phiforge.runtime.step_search import optimize_steps

__all__ = ["Guidance", "InputError", "ModelOutputError", "SampleInfo", "optimize_steps", "sample"]
