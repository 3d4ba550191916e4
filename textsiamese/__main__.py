"""``python -m textsiamese``: the ``textsiamese`` command, for when the script is not on PATH."""

import sys

from textsiamese.cli import main

if __name__ == "__main__":
    sys.exit(main())
