"""`python -m ltdd`: the same as the `ltdd` command (handy where the package is not installed)."""

import sys

from ltdd.cli import main

sys.exit(main())
