"""``python -m rxbus`` runs the command line."""

import sys

from rxbus.cli import main

sys.exit(main())
