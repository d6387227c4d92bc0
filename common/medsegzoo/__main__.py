"""``python -m medsegzoo`` is the ``medsegzoo`` command."""

from __future__ import annotations

import sys

from medsegzoo.cli import main

sys.exit(main())
