"""Torch layer: schedules, model wrappers, phi numerics, the sampling driver.

``from phiforge.runtime import sample`` is the entry point; see :mod:`phiforge.runtime.driver`.
"""

from phiforge.runtime.driver import SampleInfo, sample
from phiforge.runtime.errors import InputError, ModelOutputError
from phiforge.runtime.fitted import FittedSolver, fit_solver, load_solver
from phiforge.runtime.fitted_free import fit_free_solver, teacher_states
from phiforge.runtime.methods import generated_methods, load_method
from phiforge.runtime.models import Guidance
from phiforge.runtime.run_options import Grid, Noise, Wrapper
from phiforge.runtime.step_search import optimize_steps

__all__ = [
    "FittedSolver",
    "Grid",
    "Guidance",
    "InputError",
    "ModelOutputError",
    "Noise",
    "SampleInfo",
    "Wrapper",
    "fit_free_solver",
    "fit_solver",
    "generated_methods",
    "load_method",
    "load_solver",
    "optimize_steps",
    "sample",
    "teacher_states",
]
