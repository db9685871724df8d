"""``python -m robprune ...`` behaves exactly like ``robprune ...`` (and ``torchrun -m robprune`` works)."""

from .cli.main import entry

entry()
