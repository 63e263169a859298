"""``python -m miglab.cli``."""

import sys

from miglab.cli import main

sys.exit(main())
