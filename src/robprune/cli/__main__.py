"""``python -m robprune.cli``: the same as ``robprune``."""

import sys

from .main import main

sys.exit(main())
