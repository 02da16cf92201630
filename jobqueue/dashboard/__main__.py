"""`python -m jobqueue.dashboard`: see `jobqueue.dashboard._cli`."""

import sys

from ._cli import main

sys.exit(main())
