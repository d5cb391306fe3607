"""``python -m fastrnn.bench``: the peer benchmark, kept under its documented name.

The code is :mod:`fastrnn.tools.bench` (also run by ``fastrnn bench``).
"""

import sys

from .tools.bench import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
