"""The one exception type of the derive layer.

Every public entry point raises :class:`InputError` (a ``ValueError``) for bad input, with a
message that names the parameter and the allowed range, never a traceback from SymPy internals.
"""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad input to a public entry point; the message names the parameter."""
