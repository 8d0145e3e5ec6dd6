"""`python -m embodied_cli`: the same as the `embodied` command."""

import sys

from embodied_cli import main

sys.exit(main())
