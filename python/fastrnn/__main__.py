"""``python -m fastrnn``: the self-check (see :mod:`fastrnn._selfcheck`)."""

import sys

from ._selfcheck import main

sys.exit(main())
