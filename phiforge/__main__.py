"""``python -m phiforge`` runs the command line."""

from phiforge.cli.main import main

raise SystemExit(main())
