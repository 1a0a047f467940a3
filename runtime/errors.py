"""Exceptions of the runtime layer.

Bad arguments raise :class:`InputError` (a ``ValueError``) whose message names the parameter and
the allowed range; a model that returns NaN or inf raises :class:`ModelOutputError`, naming the
step and the noise level where it happened. Nothing is clamped silently.
"""

from __future__ import annotations

from phiforge.derive.errors import InputError  # one error type for bad input, project-wide

__all__ = ["InputError", "ModelOutputError"]


class ModelOutputError(RuntimeError):
    """The model returned a non-finite value; the message names the step and sigma."""
