"""
Process state: which modules are tracked, and the history of each.

Never reload this module (or anything in versionload): the state below would be
replaced by empty state while finders and histories still point at the old one.

The registry lock guards only these dictionaries and is never held while user code
runs (module code, subscribers, log processors), so it cannot take part in a
deadlock with the import system's module locks.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any, cast

import attrs

from ._arguments import DEFAULT_MAX_VERSIONS, name_matches
from ._errors import ChangesetNotFoundError, ChangesetNotUndoableError, NotTrackedError
from ._events import (
    Event,
    HistoryEnded,
    LibraryModuleLoaded,
    LoadFilter,
    ModuleLoaded,
    Subscriber,
    VersionPruned,
    _load_log_filter,
    asks,
    debug_wanted,
    emit,
    is_library,
    logs,
    logs_debug,
    report_error,
)
from ._fork import renew_after_fork
from ._history import ChangesetLog, ModuleHistory
from ._snapshot import (
    Change,
    Changeset,
    ChangesetKind,
    ModuleVersion,
    Reason,
    _SourceDigest,
    make_version,
    source_digest,
)
from ._source import ImportProof, digest_of_run

#: A first import not yet made into a history takes this many consecutive items of
#: ``Registry._pending``: its spec, a weak reference to the module, the namespace copy,
#: when, and what proves which bytes ran.
_PENDING_FIELDS = 5

#: A load event's level, whether the logging shows it, and the subscribers it goes to
#: (see `Registry._load_level`).
_Load = tuple[str, bool, list[Subscriber]]


def _is_alias(spec: ModuleSpec, namespace: dict[str, object]) -> bool:
    """
    Whether the import's code put another module under its name (a compatibility
    alias): that module's history lives under its own name, and the name stands for it.
    """
    own_spec = namespace.get("__spec__")
    return own_spec is not spec and getattr(own_spec, "name", spec.name) != spec.name


def _digest_of(spec: ModuleSpec, proof: ImportProof, origin: str | None, recorded_ns: int) -> _SourceDigest:
    if isinstance(proof, _SourceDigest):
        return proof
    if proof is not None:
        return digest_of_run(spec, proof)
    # Without a proof, the source file is hashed later if it was not modified after recording.
    return source_digest(origin, recorded_ns)


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return name_matches(name, patterns)


class _ModuleRef(weakref.ref):  # type: ignore[type-arg]
    """
    A weak reference to a tracked module that knows the name it is tracked under.

    One per module, made when its import is queued: the history made from the queue
    keeps the same reference, whose one callback (the registry's) ends either. A
    closure per module would cost three cells and a function more, which the garbage
    collector then traverses for as long as the module lives.
    """

    __slots__ = ("name",)
    name: str


@attrs.define(repr=False, eq=False)
class Registry:
    """
    The tracked modules of one tracker, by name, and their histories.
    """

    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None
    max_versions: int = DEFAULT_MAX_VERSIONS
    #: Reloads run only code whose file lies under one of these (resolved) paths; None allows all.
    allowed_roots: tuple[str, ...] | None = None
    subscribers: list[Subscriber] = attrs.Factory(list)
    #: Subscriber -> which loads it wants ``(name, origin) -> bool``; absent: every load.
    load_filters: dict[Subscriber, LoadFilter] = attrs.Factory(dict)
    _histories: dict[str, ModuleHistory] = attrs.Factory(dict)
    _last_number: dict[str, int] = attrs.Factory(dict)
    #: Whether each name is wanted, by the filters above; the finder reads it directly.
    #: Never replaced, only cleared (with ``_filters_changed`` bumped) when they change.
    wanted_cache: dict[str, bool] = attrs.Factory(dict)
    _filters_changed: int = 0
    _collected: list[tuple[str, weakref.ref[ModuleType]]] = attrs.Factory(list)
    #: Histories already dropped because their module was collected, whose
    #: ``module.history_ended`` events the next operation emits: (name, last version).
    _ended: list[tuple[str, int]] = attrs.Factory(list)
    _pending: list[object] = attrs.Factory(list)
    #: Events made while this registry's lock was held by the thread that made them (an
    #: import recorded from inside an operation): the operation emits them once unlocked.
    _deferred: list[Event] = attrs.Factory(list)
    #: Called before the queue is read: records imports that ended but are not yet seen ended.
    flush_imports: Callable[[], None] | None = None
    _changesets: ChangesetLog = attrs.Factory(ChangesetLog)
    _lock: threading.RLock = attrs.Factory(threading.RLock)
    #: The callback of every `_ModuleRef` this registry makes (see `_release_dead`).
    _module_collected: Callable[[weakref.ref[ModuleType]], None] | None = None

    def __attrs_post_init__(self) -> None:
        # Weakly: a module outliving a discarded registry must not keep it alive.
        this = weakref.ref(self)

        def on_collected(ref: weakref.ref[ModuleType]) -> None:
            registry = this()
            if registry is not None:
                registry.note_collected(cast("_ModuleRef", ref).name, ref)

        self._module_collected = on_collected
        renew_after_fork(self, "_lock", threading.RLock)

    def __repr__(self) -> str:
        return f"<Registry modules={len(self._histories)}>"

    # -- filters -------------------------------------------------------------------

    def configure(
        self,
        include: tuple[str, ...] | None,
        exclude: tuple[str, ...] | None,
        max_versions: int,
        *,
        allowed_roots: tuple[str, ...] | None = None,
    ) -> None:
        with self._lock:
            self.include, self.exclude = include, exclude
            self.allowed_roots = allowed_roots
            self._filters_changed += 1
            self.wanted_cache.clear()
        self.set_max_versions(max_versions)

    def wants(self, name: str) -> bool:
        """
        Whether imports of ``name`` are recorded (cached: the finder asks on every import).
        """
        cache = self.wanted_cache
        wanted = cache.get(name)
        if wanted is None:
            changed = self._filters_changed
            wanted = (self.include is None or _matches(name, self.include)) and not (
                self.exclude is not None and _matches(name, self.exclude)
            )
            cache[name] = wanted
            if changed != self._filters_changed:
                # configure() ran meanwhile: the answer may be the old filters'.
                cache.pop(name, None)
        return wanted

    # -- reading -------------------------------------------------------------------

    def names(self) -> tuple[str, ...]:
        events: list[Event] = []
        with self._lock:
            self._forget_collected(events)
            names = tuple(self._histories)
        self.emit_all(events)
        return names

    def find(self, name: str) -> tuple[ModuleType, ModuleHistory] | None:
        """
        The live module tracked under ``name`` and its history, or None.
        """
        # Histories of collected modules end here too, and their events are emitted.
        events: list[Event] = []
        with self._lock:
            self._forget_collected(events)
            history = self._histories.get(name)
            module = history.module_ref() if history is not None else None
        self.emit_all(events)
        if history is None or module is None:
            return None
        return module, history

    def history_of(self, name: str, module: ModuleType) -> ModuleHistory | None:
        """
        The history of this very module object, or None if it is not tracked.
        """
        found = self.find(name)
        if found is None or found[0] is not module:
            return None
        return found[1]

    def require(self, name: str, module: ModuleType) -> ModuleHistory:
        history = self.history_of(name, module)
        if history is None:
            raise NotTrackedError(name)
        return history

    # -- writing -------------------------------------------------------------------

    def record_import(self, spec: ModuleSpec, module: ModuleType | None, proof: ImportProof) -> None:
        """
        Record the first import of ``module`` (found by ``spec``) as version 1 (or the
        next number); ``proof`` is what the finder found out about the bytes that ran.

        This runs for every import the hook sees, so when nobody listens for load
        events it only copies the namespace and queues it; the next operation on
        the registry turns the queue into histories, in order, before it looks at
        anything. What anybody can observe is the same as recording at once. The
        queue holds the module weakly: once it is collected, its entry (and the
        namespace copy, which may bind large objects) is dropped at once.
        """
        if module is None:
            return  # the import failed, or put something that is not a module in sys.modules
        # A load event is at DEBUG or the lower TRACE: without DEBUG logging and without
        # subscribers nobody wants one, which is the common case and costs one check.
        if self.subscribers or logs_debug():
            # Who wants the event is decided first: most imports under a watcher or the
            # run command's logging are wanted by nobody and are queued as if unheard.
            origin = spec.origin if spec.has_location else None
            load = self._load_level(spec.name, origin)
            if load is not None:
                self._record_import_now(spec, module, proof, origin, load)
                return
        # One list.extend is atomic, so no lock on the import path; and a flat list
        # rather than a tuple per entry leaves one object fewer per import for the
        # garbage collector to traverse. dict.copy() is never slower than dict(), and
        # several times faster for a namespace whose table has holes (os's: 2 µs vs 11 µs).
        ref = _ModuleRef(module, self._module_collected)
        ref.name = spec.name
        self._pending.extend((spec, ref, module.__dict__.copy(), time.time_ns(), proof))
        if self._collected:
            # A module died while the lock was busy: release what it kept now.
            self._release_dead()

    def _record_import_now(
        self,
        spec: ModuleSpec,
        module: ModuleType,
        proof: ImportProof,
        origin: str | None,
        load: _Load,
    ) -> None:
        """
        Record the import at once, with its load event (``load``: see `_load_level`).
        """
        recorded_ns = time.time_ns()
        if _is_alias(spec, vars(module)):
            return
        self._record(spec.name, module, "import", origin, _digest_of(spec, proof, origin, recorded_ns), load)

    def _load_level(self, name: str, origin: str | None) -> _Load | None:
        """
        The level of a load event for module ``name`` from ``origin``, whether the
        logging shows it and the subscribers that want it, or None when nobody would
        receive it. Without include
        patterns every import is tracked: the standard library's and installed
        packages' loads go below DEBUG, so that DEBUG shows the program's own.

        Asked on every import the hook sees while somebody listens for debug events,
        so it is written out in one frame (what `_events.logs_load` and `_events.asks`
        say, for each subscriber and for the logging): a load nobody wants costs each
        load filter's call (and a cached level check unless the logging's filter
        declined it), and no look at the path.
        """
        # The subscribers that want it, asked once: the event goes to these.
        receivers: list[Subscriber] | None = None
        subscribers = self.subscribers
        if subscribers:
            filters = self.load_filters
            for subscriber in tuple(subscribers):
                wants = filters.get(subscriber)
                if wants is not None:
                    try:
                        if not wants(name, origin):
                            continue
                    except Exception as error:  # noqa: BLE001 - user code must not fail an import
                        report_error(error, f"versionload: load filter {wants!r} failed")
                if receivers is None:
                    receivers = []
                receivers.append(subscriber)
        # The logging: the process's load filter first (where one is set, as by `run`,
        # it declines most loads, and the level check is then not needed), then its level.
        if _load_log_filter:
            only = _load_log_filter[0]
            try:
                logged = bool(only(name, origin))
            except Exception as error:  # noqa: BLE001 - user code must not fail an import
                report_error(error, f"versionload: load filter {only!r} failed")
                logged = True
            logged = logged and logs_debug()
        else:
            logged = logs_debug()
        if receivers is None and not logged:
            return None
        if self.include is None and is_library(origin):
            # Below DEBUG: shown only if the logging lets TRACE through too.
            logged = logged and logs("trace")
            return ("trace", logged, receivers or []) if receivers or logged else None
        return "debug", logged, receivers or []

    def receivers(self, event: Event) -> list[Subscriber]:
        """
        The subscribers ``event`` goes to: all of them, except that a load event skips
        those whose load filter declines it.
        """
        filters = self.load_filters
        if not filters or not isinstance(event, ModuleLoaded):
            return self.subscribers
        return [
            subscriber
            for subscriber in tuple(self.subscribers)
            if (wants := filters.get(subscriber)) is None or asks(wants, event.module, event.origin)
        ]

    def record(
        self,
        name: str,
        module: ModuleType,
        reason: Reason,
        origin: str | None,
        digest: _SourceDigest,
    ) -> tuple[ModuleVersion, int | None]:
        """
        Record the module's namespace now as its next version and make it current.

        Returns the version and the number that was current before (None when this
        starts a new history). Emits load and prune events, never while locked.
        """
        load = self._load_level(name, origin) if reason != "reload" else None
        return self._record(name, module, reason, origin, digest, load)

    def _record(
        self,
        name: str,
        module: ModuleType,
        reason: Reason,
        origin: str | None,
        digest: _SourceDigest,
        load: _Load | None,
    ) -> tuple[ModuleVersion, int | None]:
        # `record`, with the load event's level and whether it is logged decided (None:
        # no load event), once: an import decided it before it came here.
        events: list[Event] = []
        created_ns = time.time_ns()
        with self._lock:
            self._forget_collected(events)
            version, previous, pruned = self._append(
                name, module, reason, origin, digest, created_ns, dict(module.__dict__), events
            )
        number = version.number
        if pruned and debug_wanted(self.subscribers):
            # Debug events: built only for somebody who receives them.
            events.extend(
                VersionPruned(module=name, version=v.number, current_version=number) for v in pruned
            )
        loaded: Event | None = None
        if load is not None:
            level, logged, receivers = load
            kind = LibraryModuleLoaded if level == "trace" else ModuleLoaded
            loaded = kind(
                module=name,
                version=number,
                reason=reason,
                origin=origin,
                # Hashing reads the file: do it only for a log line that shows it,
                # not for subscribers (a watcher would pay a read per import).
                source_sha256=version.source_sha256 if logged else version.known_source_sha256,
                names=len(version.bindings),
            )
            events.append(loaded)
        lock = self._lock
        if loaded is None or lock._is_owned():  # type: ignore[attr-defined]
            self.emit_all(events)
        else:
            # Emitted now (not deferred): the load event goes where `_load_level` found
            # it wanted, without asking the filters and the logging a second time.
            self.emit_all(events[:-1])
            emit(loaded, receivers, logged=logged)
        return version, previous

    def _append(
        self,
        name: str,
        module: ModuleType,
        reason: Reason,
        origin: str | None,
        digest: _SourceDigest,
        created_ns: int,
        namespace: dict[str, object],
        events: list[Event] | None,
        ref: _ModuleRef | None = None,
    ) -> tuple[ModuleVersion, int | None, list[ModuleVersion]]:
        # Called with the lock held; ``namespace`` is a copy the version may keep, and
        # ``ref`` a live `_ModuleRef` to ``module`` the history may keep (a queued import's).
        history = self._histories.get(name)
        if history is not None and history.module_ref() is not module:
            if events is not None:
                last = history.current_number
                events.append(HistoryEnded(module=name, last_version=last, reason="replaced"))
            history = None
        previous = history.current_number if history is not None else None
        if history is None:
            if ref is None:
                ref = _ModuleRef(module, self._module_collected)
                ref.name = name
            history = ModuleHistory(name, ref)
            self._histories[name] = history
        number = self._last_number.get(name, 0) + 1
        self._last_number[name] = number
        version = make_version(
            name, number, reason, namespace, origin, digest, created_ns, copy=False, module_class=type(module)
        )
        history.append(version)
        return version, previous, history.prune(self.max_versions)

    def _materialize(self) -> None:
        """
        Turn the queued first imports into histories, oldest first (lock held).

        They were queued because nobody listened for debug events, so the debug
        events recording them would have made (a history replaced, or ended by
        the module's collection before anybody looked) are not made now either.
        """
        if self.flush_imports is not None:
            self.flush_imports()
        pending = self._pending
        # Imports in other threads only ever extend the list at its end.
        count = len(pending) // _PENDING_FIELDS * _PENDING_FIELDS
        if not count:
            return
        entries = pending[:count]
        del pending[:count]
        # The first import of a name makes its history here, holding its one version,
        # without `_append`'s look for a history to replace (a queue of thousands is
        # turned into histories at once, at the first operation after a large import).
        histories, last_number = self._histories, self._last_number
        # The queue's items in fives: spec, module reference, namespace copy, when, proof.
        items: Iterator[Any] = iter(entries)
        queued: Iterator[tuple[ModuleSpec, _ModuleRef, dict[str, object], int, ImportProof]]
        queued = zip(items, items, items, items, items, strict=False)
        for spec, ref, namespace, recorded_ns, proof in queued:
            if _is_alias(spec, namespace):
                continue
            name = spec.name
            module = ref()
            if module is None:
                # Its version number was taken all the same: numbers never repeat.
                last_number[name] = last_number.get(name, 0) + 1
                continue
            origin = spec.origin if spec.has_location else None
            digest = _digest_of(spec, proof, origin, recorded_ns)
            if name in histories:
                self._append(name, module, "import", origin, digest, recorded_ns, namespace, None, ref)
                continue
            number = last_number.get(name, 0) + 1
            last_number[name] = number
            version = make_version(
                name,
                number,
                "import",
                namespace,
                origin,
                digest,
                recorded_ns,
                copy=False,
                module_class=type(module),
            )
            histories[name] = ModuleHistory(name, ref, ((version,), number))

    def set_current(self, history: ModuleHistory, number: int) -> None:
        with self._lock:
            history.current_number = number

    def set_max_versions(self, max_versions: int) -> None:
        events: list[Event] = []
        with self._lock:
            self._forget_collected(events)
            self.max_versions = max_versions
            for name, history in self._histories.items():
                events.extend(
                    VersionPruned(module=name, version=v.number, current_version=history.current_number)
                    for v in history.prune(max_versions)
                )
        self.emit_all(events)

    def forget(self, name: str) -> bool:
        """
        Drop the history of ``name``; numbering continues if it is tracked again.
        """
        events: list[Event] = []
        with self._lock:
            self._forget_collected(events)
            history = self._histories.pop(name, None)
        if history is not None:
            events.append(HistoryEnded(module=name, last_version=history.current_number, reason="forgotten"))
        self.emit_all(events)
        return history is not None

    def clear(self) -> None:
        with self._lock:
            self._changesets.clear()
            self._histories.clear()
            self._last_number.clear()
            self._collected.clear()
            self._ended.clear()
            self._pending.clear()

    # -- changesets ----------------------------------------------------------------

    def record_changeset(
        self, kind: ChangesetKind, changes: tuple[Change, ...], trigger: str, undoes: int | None = None
    ) -> Changeset:
        """
        Record one operation's changes as the next changeset (called under the module locks).
        """
        created_at = datetime.now(timezone.utc)
        with self._lock:
            return self._changesets.add(kind, changes, trigger, created_at, undoes)

    def changesets(self) -> tuple[Changeset, ...]:
        """
        The changesets kept, oldest first, each saying whether it can be undone now.
        """
        events: list[Event] = []
        with self._lock:
            self._forget_collected(events)
            listed = tuple(
                attrs.evolve(each, undoable=False)
                if each.undoable and self._undo_blocker(each) is not None
                else each
                for each in self._changesets.entries()
            )
        self.emit_all(events)
        return listed

    def changeset_to_undo(
        self, wanted: int | None, *, module: str | None = None, after: int | None = None
    ) -> Changeset:
        """
        The changeset ``wanted`` (None: the latest not undone, or the one that made
        ``after`` current for ``module``), checked to be undoable now.

        Raises:
            ChangesetNotFoundError: no such changeset is kept.
            ChangesetNotUndoableError: it was undone, or a version it needs is gone.
        """
        events: list[Event] = []
        with self._lock:
            self._forget_collected(events)
            entries = self._changesets.entries()
            if wanted is None:
                found = self._changesets.latest(module=module, after=after)
                if found is not None:
                    found = next(each for each in entries if each.id == found.id)
            else:
                found = next((each for each in entries if each.id == wanted), None)
            blocker = self._undo_blocker(found) if found is not None else None
        # Outside the lock: subscribers are user code.
        self.emit_all(events)
        if found is None:
            raise ChangesetNotFoundError(wanted, tuple(each.id for each in entries))
        if found.undone_by is not None:
            raise ChangesetNotUndoableError(found.id, f"it was undone by changeset {found.undone_by}")
        if blocker is not None:
            raise ChangesetNotUndoableError(found.id, blocker[1], blocker[0])
        return found

    def undo_targets(self, changeset: Changeset) -> list[tuple[str, ModuleType, ModuleVersion]]:
        """
        For each module of ``changeset``, newest first: its live module and the version
        it had before the changeset; checked, in one look, to be undoable now.

        Called under the module locks of every module of ``changeset`` (which every
        undo of it takes): no other undo of it can record itself until they are
        released, so the undo that passes this check is the only one that does.

        Raises:
            ChangesetNotUndoableError: it was undone, dropped from the list, or a
                version it needs is gone.
        """
        events: list[Event] = []
        targets: list[tuple[str, ModuleType, ModuleVersion]] = []
        with self._lock:
            self._forget_collected(events)
            undone = self._changesets.undone_by(changeset.id)
            kept = undone is None and self._changesets.holds(changeset.id)
            blocker = self._undo_blocker(changeset) if kept else None
            if kept and blocker is None:
                firsts: dict[str, int] = {}
                for change in changeset.changes:
                    firsts.setdefault(change.module, change.before)
                # Newest first, the reverse of the order applied. The versions are taken
                # here, under the lock that a prune takes too: none can vanish from now on.
                for name, before in reversed(firsts.items()):
                    history = self._histories[name]
                    module = history.module_ref()
                    assert module is not None  # checked by `_undo_blocker`, under this lock
                    targets.append((name, module, history.get(before)))
        self.emit_all(events)
        if undone is not None:
            raise ChangesetNotUndoableError(changeset.id, f"it was undone by changeset {undone}")
        if not kept:
            raise ChangesetNotUndoableError(changeset.id, "it was dropped from the list of changesets")
        if blocker is not None:
            raise ChangesetNotUndoableError(changeset.id, blocker[1], blocker[0])
        return targets

    def _undo_blocker(self, changeset: Changeset) -> tuple[str, str] | None:
        # Lock held. What stands in the way of returning every module to its version before.
        for change in changeset.changes:
            history = self._histories.get(change.module)
            if history is None or history.module_ref() is None:
                return change.module, f"module {change.module!r} is no longer tracked"
            if change.before not in history.numbers:
                return (
                    change.module,
                    f"version {change.before} of {change.module!r} was pruned "
                    f"(kept: {', '.join(map(str, history.numbers))})",
                )
        return None

    def emit_all(self, events: list[Event]) -> None:
        if not events:
            return
        lock = self._lock
        if lock._is_owned():  # type: ignore[attr-defined]
            # Never to subscribers or log handlers while locked: the operation that
            # holds the lock emits them when it lets go (see `_forget_collected`).
            self._deferred.extend(events)
            return
        if not self.subscribers:
            events = [event for event in events if event.level not in ("debug", "trace") or logs(event.level)]
        for event in events:
            emit(event, self.receivers(event))

    # -- collection ----------------------------------------------------------------

    def note_collected(self, name: str, ref: weakref.ref[ModuleType]) -> None:
        """
        Called by the `_ModuleRef` of a collected module: its history (if it has one
        under ``name`` with that very reference) ends, and its queued import is dropped.
        """
        self._collected.append((name, ref))
        self._release_dead()

    def _release_dead(self) -> None:
        """
        Drop the queued imports and the histories of modules that were collected, at
        once if the lock is free, so that what their namespaces bound is freed without
        waiting for the next operation; their events wait for that operation.

        Runs inside the garbage collector (a weak-reference callback) or on the import
        path, so it never waits: when this thread is in the middle of an operation, or
        another thread holds the lock, the next import or operation does it instead.
        """
        lock = self._lock
        if lock._is_owned() or not lock.acquire(blocking=False):  # type: ignore[attr-defined]
            return
        try:
            self._materialize()
            self._drop_collected()
        finally:
            lock.release()

    def _drop_collected(self) -> None:
        # Lock held. Deleting a history may collect more modules: the loop takes them too.
        while self._collected:
            name, ref = self._collected.pop()
            history = self._histories.get(name)
            if history is not None and history.module_ref is ref:
                del self._histories[name]
                self._ended.append((name, history.current_number))

    def _forget_collected(self, events: list[Event] | None = None) -> None:
        # Every operation starts here (lock held), so queued imports are histories by now.
        self._materialize()
        # Only when there is something to do: every operation passes here.
        if self._collected:
            self._drop_collected()
        ended = self._ended
        if ended:
            if events is not None:
                events.extend(
                    HistoryEnded(module=name, last_version=last, reason="collected") for name, last in ended
                )
            ended.clear()
        deferred = self._deferred
        if deferred and events is not None:
            events.extend(deferred)
            deferred.clear()
