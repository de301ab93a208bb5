"""``python -m lis_gateway`` runs the command-line interface."""

from lis_gateway.cli import main

raise SystemExit(main())
