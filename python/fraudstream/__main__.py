"""``python -m fraudstream``: the command-line interface."""

from fraudstream.cli import main

raise SystemExit(main())
