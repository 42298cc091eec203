"""`python -m sea_align.organism build|measure ...` = `sea organism build|measure ...`."""

import sys

from sea_align.organism.cli import main

sys.exit(main())
