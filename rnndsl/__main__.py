"""`python -m rnndsl` runs the command line."""

import sys

from rnndsl.cli import main

sys.exit(main())
