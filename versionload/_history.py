"""
`ModuleHistory`: the ordered, bounded list of versions of one module object; and
`ChangesetLog`: the bounded list of a tracker's changesets.

Pure data: no locks, no I/O, no events. The tracker owns the locking and decides
when to append, prune or move the current pointer.
"""

from __future__ import annotations

import collections
import weakref
from datetime import datetime
from types import ModuleType

import attrs

from ._errors import VersionNotFoundError
from ._snapshot import Change, Changeset, ChangesetKind, ModuleVersion

#: How many changesets a tracker keeps; older ones are dropped, oldest first.
MAX_CHANGESETS = 100


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


@attrs.define(repr=False)
class ChangesetLog:
    """
    The most recent changesets of one tracker, oldest first, and which were undone.

    Ids only go up, also across `clear`: an id never names two changesets.
    """

    limit: int = MAX_CHANGESETS
    _entries: collections.deque[Changeset] = attrs.Factory(collections.deque)
    _undone_by: dict[int, int] = attrs.Factory(dict)
    _last_id: int = 0

    def __repr__(self) -> str:
        return f"<ChangesetLog changesets={len(self._entries)} last={self._last_id}>"

    def add(
        self,
        kind: ChangesetKind,
        changes: tuple[Change, ...],
        trigger: str,
        created_at: datetime,
        undoes: int | None = None,
    ) -> Changeset:
        self._last_id += 1
        changeset = Changeset(self._last_id, kind, created_at, changes, trigger, undoes=undoes)
        if undoes is not None and self.holds(undoes):
            self._undone_by[undoes] = changeset.id
        # After the look above: an undo of a changeset dropped meanwhile marks nothing.
        self._entries.append(changeset)
        while len(self._entries) > self.limit:
            dropped = self._entries.popleft()
            self._undone_by.pop(dropped.id, None)
        return changeset

    def entries(self) -> tuple[Changeset, ...]:
        """
        The changesets kept, oldest first, with ``undone_by`` filled in.
        """
        undone = self._undone_by
        return tuple(
            attrs.evolve(each, undone_by=undone[each.id], undoable=False) if each.id in undone else each
            for each in self._entries
        )

    def latest(self, *, module: str | None = None, after: int | None = None) -> Changeset | None:
        """
        The newest changeset not undone (an undo counts: undoing it re-applies); or, given ``module``
        and ``after``, the newest that made ``after`` the current version of ``module``.
        """
        for each in reversed(self._entries):
            if module is None:
                if each.id not in self._undone_by:
                    return each
            elif any(change.module == module and change.after == after for change in each.changes):
                return each
        return None

    def undone_by(self, changeset_id: int) -> int | None:
        """
        The id of the undo that undid changeset ``changeset_id``, if one did.
        """
        return self._undone_by.get(changeset_id)

    def holds(self, changeset_id: int) -> bool:
        """
        Whether changeset ``changeset_id`` is still kept (ids only go up: the oldest is first).
        """
        entries = self._entries
        return bool(entries) and entries[0].id <= changeset_id <= self._last_id

    def clear(self) -> None:
        self._entries.clear()
        self._undone_by.clear()
