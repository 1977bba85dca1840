"""``python -m worker.cli``: the same as the ``extworker`` command."""

import sys

from worker.cli import main

sys.exit(main())
