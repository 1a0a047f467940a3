"""``python -m phiforge`` runs the command line."""

from phiforge.main import main

raise SystemExit(main())
