"""``python -m fastrnn``: the ``fastrnn`` command (see :mod:`fastrnn.tools.cli`)."""

import sys

from .tools.cli import main

sys.exit(main())
