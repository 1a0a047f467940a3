"""The ``phiforge`` command line (:func:`phiforge.cli.main.main`): one module per group of
subcommands, each a thin layer over the public API of ``phiforge.derive`` and
``phiforge.runtime``."""
