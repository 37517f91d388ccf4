"""
``python -m versionload``: the same as the ``versionload`` command.
"""

from __future__ import annotations

import sys

from ._live.cli import main

if __name__ == "__main__":
    sys.exit(main())
