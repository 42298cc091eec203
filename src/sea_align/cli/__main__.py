"""`python -m sea_align.cli` = `sea`."""

import sys

from sea_align.cli import main

sys.exit(main())
