"""``python -m robprune ...`` behaves exactly like ``robprune ...`` (and ``torchrun -m robprune`` works)."""

import os
import sys

from .cli import main
from .distributed import launched_by_torchrun

code = main()
if launched_by_torchrun():
    # main() has left the process group and every file is closed; skipping the interpreter's finalisation keeps
    # the C++ destructors of the communication library (gloo's threads) from running against a torn-down
    # interpreter, which aborted a rank at exit in CI ("terminate called without an active exception")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
