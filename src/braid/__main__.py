"""`python -m braid`: the braid command line."""

from braid.control.cli import main

raise SystemExit(main())
