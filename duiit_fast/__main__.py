"""`python -m duiit_fast ...` (and `torchrun ... -m duiit_fast train ...`) is the `duiit` command."""
import sys

from .cli import main

sys.exit(main())
