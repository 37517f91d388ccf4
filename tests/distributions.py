"""
Installing real distributions into a directory on ``sys.path``, as pip lays them out.

Each distribution gets a ``<name>-<version>.dist-info`` directory with ``METADATA``,
``entry_points.txt`` and ``RECORD``, next to its modules; importlib-metadata finds
them exactly as it finds pip-installed packages. Upgrading rewrites the modules and
renames the ``dist-info`` directory, as ``pip install --upgrade`` does.
"""

from __future__ import annotations

import importlib
import shutil
import textwrap
from collections.abc import Mapping
from pathlib import Path

EntryPoints = Mapping[str, Mapping[str, str]]


class Site:
    """
    A site-packages-like directory that tests install distributions into.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._installed: dict[str, tuple[str, list[str]]] = {}

    def path(self, relative: str) -> Path:
        return self.root / relative

    def install(
        self, name: str, version: str, files: Mapping[str, str], entry_points: EntryPoints | None = None
    ) -> None:
        """
        Write ``files`` (paths relative to the site, dedented) and the distribution's metadata.

        Args:
            entry_points: group -> {entry point name: "module:attr"}.
        """
        if name in self._installed:
            self.uninstall(name)
        for relative, source in files.items():
            target = self.root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(source))
        info = self._info(name, version)
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        lines = []
        for group, points in (entry_points or {}).items():
            lines.append(f"[{group}]")
            lines.extend(f"{point} = {value}" for point, value in points.items())
            lines.append("")
        (info / "entry_points.txt").write_text("\n".join(lines))
        record = [*files, f"{info.name}/METADATA", f"{info.name}/entry_points.txt", f"{info.name}/RECORD"]
        (info / "RECORD").write_text("".join(f"{path},,\n" for path in record))
        self._installed[name] = (version, list(files))
        importlib.invalidate_caches()

    def upgrade(
        self, name: str, version: str, files: Mapping[str, str], entry_points: EntryPoints | None = None
    ) -> None:
        """
        Replace the distribution's files and metadata with a new version's, keeping old
        files that the new version does not list (as an editable checkout would).
        """
        old_version, _ = self._installed[name]
        shutil.rmtree(self._info(name, old_version))
        del self._installed[name]
        self.install(name, version, files, entry_points)

    def uninstall(self, name: str) -> None:
        version, files = self._installed.pop(name)
        shutil.rmtree(self._info(name, version))
        for relative in files:
            (self.root / relative).unlink(missing_ok=True)
        importlib.invalidate_caches()

    def _info(self, name: str, version: str) -> Path:
        return self.root / f"{name.replace('-', '_')}-{version}.dist-info"
