"""``python -m robprune ...`` behaves exactly like ``robprune ...`` (and ``torchrun -m robprune`` works)."""

import sys

from .cli import main

sys.exit(main())
