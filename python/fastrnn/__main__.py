"""``python -m fastrnn``: the ``fastrnn`` command (see :mod:`fastrnn.cli`)."""

import sys

from .cli import main

sys.exit(main())
