"""`python -m duiit_fast.cli ...`: the `duiit` command."""
import sys

from . import main

sys.exit(main())
