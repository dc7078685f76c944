"""``python -m app.market.sim``: the built-in exchange as a process of its own (see cli.py)."""

import sys

from app.market.sim.cli import main

sys.exit(main())
