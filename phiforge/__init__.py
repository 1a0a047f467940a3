"""phiforge: derive exponential integrators for diffusion sampling from their order conditions,
emit them as torch modules, and verify the order they claim.

Layers (see DESIGN.md): ``phiforge.derive`` (SymPy mathematics, no torch), ``phiforge.generated``
(modules emitted from the registry), ``phiforge.runtime`` (torch), ``phiforge.cli`` (the
``phiforge`` command, :func:`phiforge.cli.main.main`).
"""

__version__ = "0.1.0"
