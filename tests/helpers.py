"""
Writing real modules and packages to disk for tests, and editing them as users do.
"""

from __future__ import annotations

import importlib
import os
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path


class ModuleTree:
    """
    A directory on ``sys.path`` where tests write modules and packages.

    ``write({"pkg/__init__.py": "...", "pkg/sub.py": "..."})`` creates the files
    (dedented) and invalidates the import system's caches, so the next import or
    reload sees them.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, relative: str) -> Path:
        return self.root / relative

    def write(self, files: Mapping[str, str]) -> None:
        for relative, source in files.items():
            target = self.root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(source))
        importlib.invalidate_caches()

    def module(self, name: str, source: str) -> Path:
        """
        Write ``name`` (dotted; packages get ``__init__.py`` files) with ``source``.
        """
        parts = name.split(".")
        for depth in range(1, len(parts)):
            init = self.root.joinpath(*parts[:depth], "__init__.py")
            if not init.exists():
                init.parent.mkdir(parents=True, exist_ok=True)
                init.write_text("")
        target = self.root.joinpath(*parts[:-1], parts[-1] + ".py")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        return target

    def edit_keeping_stat(self, path: Path, source: str) -> None:
        """
        Rewrite ``path`` with ``source`` of the same size and the same mtime, as a fast
        editor save within one second does: the ``.pyc`` check cannot see the change.
        """
        old = path.read_bytes()
        new = textwrap.dedent(source).encode()
        assert len(new) == len(old), "the edit must keep the file's size"
        stat = path.stat()
        path.write_bytes(new)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        importlib.invalidate_caches()

    def remove(self, relative: str) -> None:
        (self.root / relative).unlink()
        importlib.invalidate_caches()


def wait_for(predicate: object, timeout: float = 10.0, interval: float = 0.01) -> bool:
    """
    Poll ``predicate()`` until it is true or ``timeout`` seconds pass; return its last value.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()  # type: ignore[operator]
        if value or time.monotonic() > deadline:
            return bool(value)
        time.sleep(interval)
