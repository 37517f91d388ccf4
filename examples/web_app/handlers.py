"""
What the web app answers. Edit this file while ``serve.py`` runs.

``A`` and ``B`` are bound at different lines, with a pause between them (a module
that takes a moment to run, as one that builds tables or reads files does), and
``answer`` calls a helper defined further down. Without the gate a request that
arrives during a reload can see ``A`` new and ``B`` old, or no ``helper`` at all;
with ``versionload.gate`` it never does.
"""

from __future__ import annotations

import time

A = 1
time.sleep(0.05)
B = 1


def answer() -> str:
    return f"{A},{B},{helper()}"


def helper() -> int:
    return 1
