"""``python -m miglab``: the command line."""

import sys

from miglab.cli import main

sys.exit(main())
