"""``python -m textsiamese.cli``."""

import sys

from textsiamese.cli import main

sys.exit(main())
