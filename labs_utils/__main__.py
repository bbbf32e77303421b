"""``python -m labs_utils inspect|convert``: the toolkit's command line (labs_utils/toolkit/cli.py)."""

import sys

from .toolkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
