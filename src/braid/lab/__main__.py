"""``python -m braid.lab ARGS`` is ``braid lab ARGS``."""

import sys

from braid.lab.cli import main

sys.exit(main(sys.argv[1:]))
