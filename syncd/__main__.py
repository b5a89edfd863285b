"""`python -m syncd` runs the CLI."""

import sys

from syncd.cli import console

sys.exit(console())
