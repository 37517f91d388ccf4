"""
Edit this file while ``app.py`` runs: the next tick uses the new code.
"""

from __future__ import annotations


def message() -> str:
    return "hello from version 1"
