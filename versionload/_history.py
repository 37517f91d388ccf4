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

    The versions and the current number live together in one tuple that every change
    replaces whole. Readers take no lock: one attribute read gives them a consistent
    pair, whose current version is always among its versions, however many reloads
    and prunes run in other threads meanwhile.
    """

    name: str
    module_ref: weakref.ref[ModuleType]
    _state: tuple[tuple[ModuleVersion, ...], int] = ((), 0)

    def __repr__(self) -> str:
        versions, current = self._state
        return f"<ModuleHistory {self.name} versions={len(versions)} current={current}>"

    @property
    def versions(self) -> tuple[ModuleVersion, ...]:
        return self._state[0]

    @property
    def numbers(self) -> tuple[int, ...]:
        return _numbers(self._state[0])

    @property
    def current_number(self) -> int:
        return self._state[1]

    @current_number.setter
    def current_number(self, number: int) -> None:
        self._state = (self._state[0], number)

    @property
    def current(self) -> ModuleVersion:
        versions, number = self._state
        return _find(self.name, versions, number)

    def get(self, number: int) -> ModuleVersion:
        return _find(self.name, self._state[0], number)

    def before(self, number: int) -> ModuleVersion:
        """
        The highest-numbered version below ``number``.
        """
        versions = self._state[0]
        for version in reversed(versions):
            if version.number < number:
                return version
        raise VersionNotFoundError(self.name, number - 1, _numbers(versions), below=number)

    def append(self, version: ModuleVersion) -> None:
        """
        Add ``version`` as the newest one and make it current.
        """
        self._state = ((*self._state[0], version), version.number)

    def prune(self, max_versions: int) -> list[ModuleVersion]:
        """
        Drop the oldest versions beyond ``max_versions``, never the current one.

        Returns the dropped versions, oldest first.
        """
        versions, current = self._state
        excess = len(versions) - max_versions
        if excess <= 0:
            return []
        pruned: list[ModuleVersion] = []
        kept: list[ModuleVersion] = []
        for version in versions:
            if len(pruned) < excess and version.number != current:
                pruned.append(version)
            else:
                kept.append(version)
        self._state = (tuple(kept), current)
        return pruned


def _numbers(versions: tuple[ModuleVersion, ...]) -> tuple[int, ...]:
    return tuple(v.number for v in versions)


def _find(name: str, versions: tuple[ModuleVersion, ...], number: int) -> ModuleVersion:
    for version in reversed(versions):
        if version.number == number:
            return version
    raise VersionNotFoundError(name, number, _numbers(versions))
