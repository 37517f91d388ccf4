"""
MkDocs hooks for the documentation site (see ``hooks:`` in mkdocs.yml).

The docstrings mark API additions with the reST directive ``.. versionadded:: X``,
which Python's own tools understand; Markdown would show it verbatim, so it is
rendered here as a short note.
"""

from __future__ import annotations

import re
from typing import Any

_VERSION_ADDED = re.compile(r"<p>\.\. versionadded:: ([^<\s]+)</p>")


def on_page_content(html: str, **kwargs: Any) -> str:
    return _VERSION_ADDED.sub(r'<p class="version-added"><em>New in version \1.</em></p>', html)
