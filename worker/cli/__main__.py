"""``python -m worker.cli``: the same as the ``extworker`` command."""

import sys

from . import main

sys.exit(main())
