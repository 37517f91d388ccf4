"""
Fresh locks in a forked child: owns the list of versionload's locks and renews them after ``fork``.

``os.fork`` copies only the thread that called it. A lock that another thread of the
parent held at that moment (the registry's, while that thread imported or reloaded a
module) stays held in the child, by a thread that does not exist there: the child's
first versionload call would wait for it forever. Pre-fork servers and
``multiprocessing`` with the fork start method create exactly this situation.

So every object that owns a lock registers it here, and one ``after_in_child`` hook
(registered once, when this module is first imported) gives each live owner a new
lock in the child. Owners are held weakly: a tracker or registry that is dropped
leaves nothing behind. The data those locks guard is only ever changed in short
critical sections of plain dict and list operations, each of which the interpreter
completes before another thread (or ``fork``) runs.

This module imports nothing from versionload, so any module may use it.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections.abc import Callable, Mapping

#: id(owner) -> (a weak reference to the owner, [(attribute, lock factory), ...])
_owners: dict[int, tuple[weakref.ref[object], list[tuple[str, Callable[[], object]]]]] = {}
# Re-entrant: registering allocates, an allocation may run the garbage collector, and
# the collector may call `forget` (below) for another owner in this very thread.
_owners_lock = threading.RLock()


def renew_after_fork(owner: object, attribute: str, factory: Callable[[], object]) -> None:
    """
    In a forked child, set ``owner.attribute`` to ``factory()`` (a new, unheld lock).

    ``owner`` must support weak references; it is forgotten when it is collected.
    """
    key = id(owner)

    def forget(_: weakref.ref[object]) -> None:
        with _owners_lock:
            entry = _owners.get(key)
            if entry is not None and entry[0]() is None:
                del _owners[key]

    with _owners_lock:
        entry = _owners.get(key)
        if entry is None or entry[0]() is not owner:
            entry = (weakref.ref(owner, forget), [])
            _owners[key] = entry
        entry[1].append((attribute, factory))


def _renew_in_child() -> None:
    global _owners_lock
    # The child has one thread: nothing can race with this, and the lock guarding the
    # list may itself have been held by a thread that is gone.
    _owners_lock = threading.RLock()
    for reference, attributes in list(_owners.values()):
        owner = reference()
        if owner is None:
            continue
        for attribute, factory in attributes:
            setattr(owner, attribute, factory())
    _renew_structlog_locks()


def _renew_structlog_locks() -> None:
    # Every versionload call emits events, and structlog's print loggers write under
    # a per-file lock that structlog does not renew after fork: a parent thread that
    # was writing an event when the fork happened would leave the child's first event
    # (and so its first versionload call) waiting forever. Reinitialise those lock
    # objects in place, so loggers already holding them are fixed as well.
    output = sys.modules.get("structlog._output")
    locks = getattr(output, "WRITE_LOCKS", None)  # a WeakKeyDictionary: file -> lock
    if not isinstance(locks, Mapping):
        return
    for lock in list(locks.values()):
        reinitialise = getattr(lock, "_at_fork_reinit", None)
        if callable(reinitialise):
            reinitialise()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_in_child)
