"""`python -m planqa` runs the CLI."""

import sys

from planqa.cli import main

sys.exit(main())
