"""
`ModuleHistory`: the ordered, bounded list of versions of one module object.

Pure data: no locks, no I/O, no events. The tracker owns the locking and decides
when to append, prune or move the current pointer.
"""

from __future__ import annotations

import weakref
from types import ModuleType

import attrs

from ._errors import VersionNotFoundError
from ._snapshot import ModuleVersion


@attrs.define(repr=False)
class ModuleHistory:
    """
    The versions of one module object, oldest first, and which one is current.

    A history belongs to one module *object*: if the name is later bound to a new
    module (deleted from ``sys.modules`` and imported again), a new history starts.
    """

    name: str
    module_ref: weakref.ref[ModuleType]
    _versions: list[ModuleVersion] = attrs.Factory(list)
    current_number: int = 0

    def __repr__(self) -> str:
        return f"<ModuleHistory {self.name} versions={len(self._versions)} current={self.current_number}>"

    @property
    def versions(self) -> tuple[ModuleVersion, ...]:
        return tuple(self._versions)

    @property
    def numbers(self) -> tuple[int, ...]:
        return tuple(v.number for v in self._versions)

    @property
    def current(self) -> ModuleVersion:
        return self.get(self.current_number)

    def get(self, number: int) -> ModuleVersion:
        for version in reversed(self._versions):
            if version.number == number:
                return version
        raise VersionNotFoundError(self.name, number, self.numbers)

    def before(self, number: int) -> ModuleVersion:
        """
        The highest-numbered version below ``number``.
        """
        for version in reversed(self._versions):
            if version.number < number:
                return version
        raise VersionNotFoundError(self.name, number - 1, self.numbers, below=number)

    def append(self, version: ModuleVersion) -> None:
        """
        Add ``version`` as the newest one and make it current.
        """
        self._versions.append(version)
        self.current_number = version.number

    def prune(self, max_versions: int) -> list[ModuleVersion]:
        """
        Drop the oldest versions beyond ``max_versions``, never the current one.

        Returns the dropped versions, oldest first.
        """
        pruned: list[ModuleVersion] = []
        index = 0
        while len(self._versions) > max_versions and index < len(self._versions):
            if self._versions[index].number == self.current_number:
                index += 1
                continue
            pruned.append(self._versions.pop(index))
        return pruned
