"""
`Tracker`: the public holder of versionload's state, its import hook, and the one door
to the core.

The module-level functions of ``versionload`` use one default tracker, made here (see
`default_tracker`) so that nothing below the facade has to import the facade back;
tests and applications that want isolated state create their own. The wings
(``versionload._live``, ``versionload._plugins``) use only this module's public methods
to reach the registry, the engine and the graph.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import ParamSpec, TypeVar

import attrs

from . import _arguments as check
from ._engine import module_name, origin_of, record_external_reload, resolve_loaded, resolve_tracked
from ._engine import rollback as _rollback
from ._errors import (
    ChangesetNotUndoableError,
    DrainTimeoutError,
    InvalidArgumentError,
    NotAModuleError,
    VersionLoadError,
)
from ._events import Event, LoadFilter, ModuleReloadDeferred, Subscriber, emit
from ._finder import VersionedFinder, finish_released_imports
from ._fork import renew_after_fork
from ._gate import DEFAULT_DRAIN_TIMEOUT, Gate, Section, normalize_drain_timeout
from ._graph import ReloadPlan, dependencies_of, dependents_of
from ._graph import dependency_map as _dependency_map

# The one order of modules, handed out by the door for the plugin wing's units.
from ._graph import topological_order as topological_order
from ._group import Superseded, cascade_targets, refuse_own, reload_group, restore_states, undo_changeset
from ._inplace import Ledger
from ._registry import Registry
from ._snapshot import Changeset, ModuleVersion, NamespaceDiff, _SourceDigest, compare
from ._source import forget_compiled
from ._stale import StaleReport, stale_report

#: How many times an undo of "the latest" looks again when other threads keep
#: recording newer changesets between its look and its taking the modules' locks.
_UNDO_ATTEMPTS = 20

_P = ParamSpec("_P")
_R = TypeVar("_R")


@attrs.frozen
class TrackedModule:
    """
    A tracked module as its tracker holds it at the moment `Tracker.lookup` was called.

    Attributes:
        name: The module's name.
        module: The module object the history belongs to (it may no longer be the one
            in ``sys.modules``, if something imported the name again since).
        current: The current version (the last one recorded or rolled back to).
        versions: Every kept version, oldest first.

    .. versionadded:: 0.2.0
    """

    name: str
    module: ModuleType = attrs.field(repr=False, eq=False)
    current: ModuleVersion
    versions: tuple[ModuleVersion, ...]


def _public_errors(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """
    Raise versionload's errors from the public method alone, without the frames of
    the engine, the group and the registry below it.

    A caller's traceback then ends where they called us; the error's message and
    its chained cause (the module's own exception, from the module's own frames)
    say what happened. The same idea as CPython's importlib, whose
    ``_call_with_frames_removed`` keeps its machinery out of import tracebacks.
    """

    @functools.wraps(method)
    def public(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except VersionLoadError as error:
            raise error.with_traceback(None)  # noqa: B904 - keep our frames out

    return public


class Unset(enum.Enum):
    """
    The default of a setting not passed to `Tracker.configure` or ``install``: keep it as it is.
    """

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "<unset>"


UNSET = Unset.UNSET


class Tracker:
    """
    Records every load of the modules it tracks, and reloads and rolls them back.

    Args:
        include: Module-name patterns to track (``fnmatch`` style; ``"app.*"`` also
            covers ``app``); None tracks every module.
        exclude: Patterns never to track, even if included.
        max_versions: Versions kept per module (default 10); the oldest are pruned,
            never the current one.
        allowed_roots: Directories (or zip files) that `reload` may run code from; a
            reload of a module whose file, as the finders find it now, lies elsewhere
            (or that has no file) raises `ReloadRefusedError`. None allows any origin.
        drain_timeout: Seconds a reload, rollback or group waits for the sections of
            serving code in flight (see `serving`) to end; None waits forever. When
            they do not end in time, the operation changes nothing and raises
            `DrainTimeoutError`.

    Creating a tracker changes nothing in ``sys``; `install` puts its finder in front
    of ``sys.meta_path``.

    .. versionadded:: 0.1.0
    """

    @_public_errors
    def __init__(
        self,
        *,
        include: str | Iterable[str] | None = None,
        exclude: str | Iterable[str] | None = None,
        max_versions: int | None = None,
        allowed_roots: Iterable[str | os.PathLike[str]] | None = None,
        drain_timeout: float | None = DEFAULT_DRAIN_TIMEOUT,
    ) -> None:
        self._drain_timeout = normalize_drain_timeout(drain_timeout)
        self._registry = Registry(
            include=check.patterns(include, "include"),
            exclude=check.patterns(exclude, "exclude"),
            max_versions=check.max_versions(max_versions),
            allowed_roots=check.allowed_roots(allowed_roots),
            flush_imports=finish_released_imports,
        )
        self._finder = VersionedFinder(
            self._registry.wants,
            self._registry.record_import,
            self._on_external_reload_start,
            self._on_external_reload,
            wanted=self._registry.wanted_cache,
        )
        self._install_lock = threading.Lock()
        renew_after_fork(self, "_install_lock", threading.Lock)
        self._ledger = Ledger()  # states of objects updated in place, per version
        self._gate = Gate()

    def __repr__(self) -> str:
        state = "installed" if self.installed else "not installed"
        return f"<versionload.Tracker {state}, {len(self._registry.names())} modules tracked>"

    # -- the hook -----------------------------------------------------------------------

    @property
    def installed(self) -> bool:
        """
        Whether this tracker's finder is on ``sys.meta_path``.
        """
        return any(finder is self._finder for finder in sys.meta_path)

    @property
    def finder(self) -> VersionedFinder:
        """
        The finder object this tracker puts on ``sys.meta_path``.
        """
        return self._finder

    def install(self) -> Tracker:
        """
        Put this tracker's finder first on ``sys.meta_path``; a second call changes nothing.
        """
        with self._install_lock:
            if not self.installed:
                sys.meta_path.insert(0, self._finder)
        return self

    def uninstall(self) -> None:
        """
        Remove this tracker's finder from ``sys.meta_path``; histories are kept.
        """
        with self._install_lock:
            sys.meta_path[:] = [finder for finder in sys.meta_path if finder is not self._finder]

    @_public_errors
    def configure(
        self,
        *,
        include: str | Iterable[str] | Unset | None = UNSET,
        exclude: str | Iterable[str] | Unset | None = UNSET,
        max_versions: int | Unset | None = UNSET,
        allowed_roots: Iterable[str | os.PathLike[str]] | Unset | None = UNSET,
        drain_timeout: float | Unset | None = UNSET,
    ) -> None:
        """
        Change the settings passed (filters, retention, allowed roots, drain timeout); those not
        passed stay as they are. Fewer versions are pruned at once.

        Passing None explicitly restores a setting's default (track every module,
        exclude none, keep 10 versions, allow any origin). Settings left out are kept,
        so that a second ``install()`` (or ``%load_ext versionload``) cannot lift an
        ``allowed_roots`` restriction or cut the history by accident.

        Raises:
            InvalidArgumentError: a pattern or a root has the wrong type, ``max_versions``
                is below 1, or ``drain_timeout`` is negative or not a number.
        """
        registry = self._registry
        # Check every argument before changing anything.
        new_include = registry.include if include is UNSET else check.patterns(include, "include")
        new_exclude = registry.exclude if exclude is UNSET else check.patterns(exclude, "exclude")
        new_max = registry.max_versions if max_versions is UNSET else check.max_versions(max_versions)
        new_roots = registry.allowed_roots if allowed_roots is UNSET else check.allowed_roots(allowed_roots)
        new_timeout = (
            self._drain_timeout if drain_timeout is UNSET else normalize_drain_timeout(drain_timeout)
        )
        registry.configure(new_include, new_exclude, new_max, allowed_roots=new_roots)
        self._drain_timeout = new_timeout

    @property
    def drain_timeout(self) -> float | None:
        """
        Seconds a change waits for serving sections to end (None: forever); settable.
        """
        return self._drain_timeout

    @drain_timeout.setter
    def drain_timeout(self, value: float | None) -> None:
        self._drain_timeout = normalize_drain_timeout(value)

    def serving(self) -> Section:
        """
        A section of serving code during which none of this tracker's changes is applied.

        Use it as a context manager (``with tracker.serving():``), an async context
        manager (``async with``) or a decorator (``@tracker.serving()``), around a
        unit of work: a request, a task, a hook call. A reload, rollback, cascade or
        `reload_many` waits until the sections in flight have ended and holds new
        ones back meanwhile, so code inside a section sees each module either
        before or after a change, never half-executed. Sections nest, per thread
        (and per asyncio task); a change requested inside a section does not wait
        for the sections its own thread holds. See ``docs/gate.md``.

        .. versionadded:: 0.1.0
        """
        return self._gate.section

    @property
    def sections_in_flight(self) -> int:
        """
        The serving sections in flight right now, over all threads.
        """
        return self._gate.in_flight

    @contextlib.contextmanager
    def drained(self, modules: Iterable[str], *, operation: str) -> Iterator[None]:
        """
        Hold the drain gate closed around a block that changes ``modules`` in several steps.

        The door for wings whose change is more than one tracker call (a plugin
        reload: a group reload, resolving the entry point, checks, maybe a rollback):
        the sections in flight end first, new ones wait until the block is done, and
        the tracker's own reloads and rollbacks inside the block pass straight
        through. Like them, it does not wait for the sections of its own thread.

        Raises:
            DrainTimeoutError: sections did not end within `drain_timeout`; the block
                did not run (a ``module.reload_deferred`` event names ``operation``).
        """
        nested = self._close_gate(operation, tuple(modules))
        try:
            yield
        finally:
            self._gate.reopen(nested)

    def _close_gate(self, operation: str, names: tuple[str, ...]) -> bool:
        """
        Wait for the serving sections to drain before ``operation`` changes ``names``.
        """
        try:
            return self._gate.close(names, self._drain_timeout)
        except DrainTimeoutError as error:
            self._registry.emit_all(
                [
                    ModuleReloadDeferred(
                        module=error.module,
                        modules=error.modules,
                        operation=operation,
                        in_flight=error.in_flight,
                        timeout=error.timeout,
                    )
                ]
            )
            raise

    @property
    def allowed_roots(self) -> tuple[str, ...] | None:
        """
        The resolved directories `reload` may run code from, or None when any origin is allowed.
        """
        return self._registry.allowed_roots

    @property
    def max_versions(self) -> int:
        """
        How many versions each module keeps; setting it prunes at once.
        """
        return self._registry.max_versions

    @max_versions.setter
    @_public_errors
    def max_versions(self, value: int) -> None:
        self._registry.set_max_versions(check.max_versions(value))

    # -- operations ---------------------------------------------------------------------

    @_public_errors
    def track(self, module: ModuleType | str) -> ModuleVersion:
        """
        Adopt an already-imported module: its namespace now becomes a version.

        A module that is already tracked is left alone and its current version returned.

        Raises:
            NotAModuleError: ``module`` is not a module, nor the name of one in ``sys.modules``.
        """
        if isinstance(module, str):
            obj = sys.modules.get(module)
            if not isinstance(obj, ModuleType):
                raise NotAModuleError(module)
            module = obj
        if not isinstance(module, ModuleType):
            raise NotAModuleError(module)
        name = module_name(module)
        history = self._registry.history_of(name, module)
        if history is not None:
            return history.current
        version, _ = self._registry.record(name, module, "adopted", origin_of(module), _SourceDigest())
        return version

    @_public_errors
    def reload(
        self,
        module: ModuleType | str,
        *,
        cascade: bool | str | Iterable[str] = False,
        update: str | None = None,
        prune: bool = False,
        trigger: str | None = None,
    ) -> ModuleType:
        """
        Re-execute the module's current source in its existing namespace.

        Behaves as ``importlib.reload`` (same module object, names not redefined
        survive, references held elsewhere keep the old objects), except that it
        always runs the source on disk, records a new version, and leaves the
        module exactly as it was when the new code fails.

        If the new code defines ``__versionload_migrate__(previous)``, it is called
        once the new code has run, with a read-only mapping of the namespace as it
        was before the reload; if it raises, the reload fails like any other.

        Args:
            cascade: Also reload the modules that depend on this one, each after
                its dependencies, as one atomic group: if any of them fails, all
                are put back and a `GroupReloadError` names the module that failed.
                True reaches the dependents inside this module's own top-level
                package and in the application's own code (not the standard
                library, not installed distributions); a module-name pattern
                (``fnmatch``, as ``include``) or an iterable of them says exactly
                which dependents may be reloaded instead. Dependents imported
                before `install` count too, and are adopted. A dependent that
                cannot be reloaded (an extension module, or refused by
                ``allowed_roots``) fails the cascade before anything runs; `plan`
                shows the group without applying it.
            update: None (or ``"rebind"``): the namespace gets the new objects, as
                ``importlib.reload`` does. ``"in-place"``: functions and classes the
                module defined before keep their identity and take on the new code,
                so references held elsewhere see it; see ``docs/update-modes.md``.
            prune: Run the new code in an emptied namespace, so that names it no
                longer binds are gone afterwards, as after a fresh import (the
                import system's attributes such as ``__name__`` and ``__file__``
                stay, and so do loaded submodules of a package). What
                ``__versionload_migrate__`` binds is kept. A failed reload still
                leaves the module exactly as it was, and a rollback brings the
                pruned names back. Applies to every module of a cascade.
            trigger: What asked for the reload, as its changeset records it (see
                `changesets`); default: the module's name.

        Returns:
            ``sys.modules[name]`` afterwards (the module, unless it replaced itself).

        Raises:
            NotAModuleError: ``module`` is neither a module nor a string.
            InvalidArgumentError: ``cascade`` is not a bool, a pattern or an iterable of
                patterns, ``prune`` is not a bool, or ``update`` is unknown.
            ModuleNotLoadedError: it (or its parent package) is not in ``sys.modules``.
            SpecNotFoundError: no finder finds it any more.
            ReloadRefusedError: its file lies outside the tracker's ``allowed_roots``.
            ReloadError: the new code failed; the original exception is chained.
            GroupReloadError: with ``cascade``, a module of the cascade failed, or a
                dependent cannot be reloaded (then nothing ran).
        """
        reach = check.cascade(cascade)
        check.flag(prune, "prune")
        mode = check.update_mode(update)
        asked_by = check.trigger(trigger)
        if reach is not False:
            plan, targets = cascade_targets(self._registry, module, reach, announce=True)
            names = plan.modules
            nested = self._close_gate("cascade", names)
            try:
                return reload_group(
                    self._registry,
                    self._ledger,
                    targets,
                    update=mode,
                    kind="cascade",
                    prune=prune,
                    asked_by=asked_by,
                )[0]
            finally:
                self._gate.reopen(nested)
        nested = self._close_gate("reload", (resolve_loaded(module)[0],))
        try:
            # A reload of one module is a group of one: the same driver as cascades.
            return reload_group(
                self._registry, self._ledger, [module], update=mode, prune=prune, asked_by=asked_by
            )[0]
        finally:
            self._gate.reopen(nested)

    @_public_errors
    def plan(self, module: ModuleType | str, *, cascade: bool | str | Iterable[str] = False) -> ReloadPlan:
        """
        The modules `reload` would run, in order, without running or adopting any.

        Args:
            cascade: As for `reload`.

        Returns:
            A `ReloadPlan`: the trigger, the modules in the order a reload applies
            them, and those it would adopt because they are not tracked yet.

        Raises:
            NotAModuleError: ``module`` is neither a module nor a string.
            InvalidArgumentError: ``cascade`` is not a bool, a pattern or an iterable of patterns.
            ModuleNotLoadedError: it is not in ``sys.modules``.
            GroupReloadError: a dependent cannot be reloaded, as `reload` would say.

        .. versionadded:: 0.2.0
        """
        reach = check.cascade(cascade)
        if reach is not False:
            return cascade_targets(self._registry, module, reach)[0]
        name, obj = resolve_loaded(module)
        refuse_own((name,))
        adopted = (name,) if self._registry.history_of(name, obj) is None else ()
        return ReloadPlan(trigger=name, modules=(name,), adopted=adopted)

    @_public_errors
    def reload_many(
        self,
        modules: Iterable[ModuleType | str],
        *,
        update: str | None = None,
        prune: bool = False,
        trigger: str | None = None,
    ) -> tuple[ModuleType, ...]:
        """
        Reload several modules, in the order given, as one atomic group: all or none.

        If any module fails, those already reloaded are put back (in-place updates
        reverted, namespaces restored), no version is recorded for any of them, and
        `GroupReloadError` names the one that failed. Emits one event per module
        and a ``cascade.reloaded`` / ``cascade.failed`` event for the group.
        ``prune`` empties each module's namespace before its new code runs (see `reload`).
        The group is one changeset (``trigger``: what asked; default: the first module).

        Returns:
            The modules, in the order given.

        Raises:
            InvalidArgumentError: ``modules`` is not an iterable of modules or names,
                names a module twice, ``update`` is unknown, or ``prune`` is not a bool.
            GroupReloadError: a module of the group failed; all are unchanged.
            ReloadError: as `reload`, for a module that cannot be reloaded at all
                (checked before anything runs).
        """
        targets = check.module_list(modules)
        check.update_mode(update)
        check.flag(prune, "prune")
        asked_by = check.trigger(trigger)
        if not targets:
            return ()
        nested = self._close_gate("many", tuple(resolve_loaded(target)[0] for target in targets))
        try:
            return reload_group(
                self._registry,
                self._ledger,
                targets,
                update=update,
                kind="many",
                prune=prune,
                asked_by=asked_by,
            )
        finally:
            self._gate.reopen(nested)

    @_public_errors
    def dependents(self, module: ModuleType | str, *, transitive: bool = False) -> tuple[str, ...]:
        """
        The tracked modules that depend on ``module`` (import it, or bind names from it).

        Edges come from each module's compiled code (the import statements that run
        when it is imported: at module level and in class bodies, not inside
        functions) and its namespace (modules and classes/functions from other
        modules it binds); see ``docs/update-modes.md``.

        Args:
            transitive: Also the modules that depend on those, and so on.

        Returns:
            Module names, in the order they were first tracked.
        """
        name, _ = self._graph_node(module)
        return dependents_of(_dependency_map(self._registry), name, transitive)

    @_public_errors
    def dependencies(self, module: ModuleType | str, *, transitive: bool = False) -> tuple[str, ...]:
        """
        The tracked modules that ``module`` depends on; the converse of `dependents`.
        """
        name, _ = self._graph_node(module)
        return dependencies_of(_dependency_map(self._registry), name, transitive)

    def _graph_node(self, module: ModuleType | str) -> tuple[str, ModuleType]:
        name, obj, _ = resolve_tracked(self._registry, module)
        return name, obj

    @_public_errors
    def stale(self, module: ModuleType | str) -> StaleReport:
        """
        The live objects that still use code older than the module's current version.

        Functions, classes and instances reachable from other modules' namespaces,
        and frames of running threads executing old code; empty (and false) when
        nothing old is in use. See `StaleReport`.

        Raises:
            NotTrackedError: the module has no history.
        """
        name, obj, history = resolve_tracked(self._registry, module)
        return stale_report(name, obj, history, self._ledger.code_versions(name, history))

    @_public_errors
    def rollback(
        self,
        module: ModuleType | str,
        to: int | None = None,
        *,
        cascade: bool = False,
        trigger: str | None = None,
    ) -> ModuleType:
        """
        Restore the module's namespace exactly as it was at version ``to``.

        Names added since are removed, changed names get their old objects back and
        removed names come back. The history is kept; the next reload gets a new,
        higher number. Functions and classes updated in place since then get back
        the code and attributes they had at version ``to``.

        Args:
            to: The version number; None means the highest version below the current one.
            cascade: Undo the whole changeset that made the module's current version
                (a cascade, a `reload_many`, a plugin reload…), as `undo` does, so that
                every module it changed goes back together; ``to`` must then be None.
            trigger: What asked for the rollback, as its changeset records it;
                default: the module's name.

        Raises:
            NotTrackedError: the module has no history.
            VersionNotFoundError: no such version (or none below the current one).
            InvalidArgumentError: ``to`` is not an int, ``cascade`` is not a bool, or
                both ``to`` and ``cascade`` were given.
            ChangesetNotFoundError: with ``cascade``, no changeset kept made the current version.
            ChangesetNotUndoableError: with ``cascade``, that changeset cannot be undone.
        """
        if to is not None:
            check.version_number(to, "to")  # bad input fails before waiting for the gate
        check.flag(cascade, "cascade")
        asked_by = check.trigger(trigger)
        if cascade:
            if to is not None:
                raise InvalidArgumentError("rollback(cascade=True) undoes a changeset: pass no 'to'")
            name = resolve_tracked(self._registry, module)[0]

            def made_current() -> Changeset:
                # The module's current version then, asked again under its lock.
                _, _, history = resolve_tracked(self._registry, module)
                return self._registry.changeset_to_undo(None, module=name, after=history.current.number)

            self._undo(made_current, asked_by or name, latest=True)
            return resolve_tracked(self._registry, module)[1]
        nested = self._close_gate("rollback", (resolve_tracked(self._registry, module)[0],))
        try:
            return _rollback(
                self._registry, module, to, restore_states(self._registry, self._ledger), asked_by=asked_by
            )
        finally:
            self._gate.reopen(nested)

    def changesets(self) -> tuple[Changeset, ...]:
        """
        The recent changesets of this tracker, oldest first (at most
        ``MAX_CHANGESETS``, the oldest dropped first).

        Each operation that changed modules is one `Changeset`: a reload, a cascade, a
        `reload_many`, an in-place update, a rollback, an undo, a reload by a watcher,
        a plugin host, the control channel or ``importlib.reload``. Its ``undoable``
        says whether `undo` can take it now.

        .. versionadded:: 0.2.0
        """
        return self._registry.changesets()

    @_public_errors
    def undo(self, changeset: int | None = None, *, trigger: str | None = None) -> Changeset:
        """
        Return every module of a changeset to its version before it, as one atomic group.

        Namespaces, module classes and objects updated in place get back exactly what
        they had at those versions; if anything fails, every module is put back as it
        was. The undo waits for serving sections, as every change does, and is itself
        recorded as an ``"undo"`` changeset (which can be undone in turn).

        Args:
            changeset: The id (see `changesets`); None: the latest changeset that is
                not itself undone (after an undo, that is the undo: undoing it again
                re-applies what it undid).
            trigger: What asked for the undo; default: ``"undo <id>"``.

        Returns:
            The ``"undo"`` changeset recorded.

        Raises:
            InvalidArgumentError: ``changeset`` is not an int >= 1 or None.
            ChangesetNotFoundError: no such changeset is kept (a `LookupError`).
            ChangesetNotUndoableError: it was undone already (by another thread too:
                of concurrent undos of one changeset exactly one succeeds), or a version
                it would return a module to was pruned (a `LookupError`); or restoring
                a module failed (the cause), and every module was put back. Nothing changed.

        .. versionadded:: 0.2.0
        """
        wanted = check.changeset_id(changeset)
        asked_by = check.trigger(trigger)
        return self._undo(
            functools.partial(self._registry.changeset_to_undo, wanted), asked_by, latest=wanted is None
        )

    def _undo(self, find: Callable[[], Changeset], asked_by: str | None, *, latest: bool) -> Changeset:
        """
        Undo the changeset ``find`` gives (checked again under its modules' locks).

        With ``latest`` it was found as the latest of something, so ``find`` is asked
        again under those locks too: if another thread recorded a newer changeset
        first, the undo takes that one instead, as it would have done a moment later.
        """
        for _ in range(_UNDO_ATTEMPTS):
            changeset = find()  # bad ids and refusals raise here, before waiting at the gate
            nested = self._close_gate("undo", changeset.modules)
            try:
                return undo_changeset(
                    self._registry, self._ledger, changeset, asked_by=asked_by, find=find if latest else None
                )
            except Superseded:
                continue
            finally:
                self._gate.reopen(nested)
        raise ChangesetNotUndoableError(
            changeset.id,
            f"newer changesets were recorded before each of {_UNDO_ATTEMPTS} tries to undo the latest",
        )

    @_public_errors
    def history(self, module: ModuleType | str) -> tuple[ModuleVersion, ...]:
        """
        The module's versions, oldest first.

        Raises:
            NotTrackedError: the module has no history (see `track`).
            NotAModuleError: ``module`` is neither a module nor a string.
        """
        return resolve_tracked(self._registry, module)[2].versions

    @_public_errors
    def current(self, module: ModuleType | str) -> ModuleVersion:
        """
        The module's current version (the last one recorded or rolled back to).

        Raises:
            NotTrackedError: the module has no history (see `track`).
            NotAModuleError: ``module`` is neither a module nor a string.
        """
        return resolve_tracked(self._registry, module)[2].current

    @_public_errors
    def diff(self, module: ModuleType | str, a: int, b: int) -> NamespaceDiff:
        """
        The names added, removed and changed from version ``a`` to version ``b``.

        Raises:
            NotTrackedError: the module has no history (see `track`).
            VersionNotFoundError: ``a`` or ``b`` is not in the history (or was pruned).
            InvalidArgumentError: ``a`` or ``b`` is not an int.
        """
        check.version_number(a, "a")
        check.version_number(b, "b")
        name, _, history = resolve_tracked(self._registry, module)
        old, new = history.get(a), history.get(b)
        return compare(name, a, old.bindings, b, new.bindings)

    def tracked(self) -> tuple[str, ...]:
        """
        The names of the modules that have a history, in the order they were first tracked.
        """
        return self._registry.names()

    @_public_errors
    def lookup(self, name: str) -> TrackedModule | None:
        """
        The tracked module of that name and its versions, or None if it has no history.

        Unlike `history` and `current`, an untracked name is not an error: this is how
        a front-end asks whether a module is tracked.

        Raises:
            InvalidArgumentError: ``name`` is not a string.

        .. versionadded:: 0.2.0
        """
        found = self._registry.find(check.text(name, "name"))
        if found is None:
            return None
        module, history = found
        return TrackedModule(name, module, history.current, history.versions)

    def dependency_map(self) -> dict[str, tuple[str, ...]]:
        """
        For each tracked module still in ``sys.modules`` (in tracking order), the tracked
        modules it depends on; see `dependents` for where the edges come from.

        .. versionadded:: 0.2.0
        """
        return _dependency_map(self._registry)

    @_public_errors
    def emit(self, event: Event) -> None:
        """
        Send ``event`` to this tracker's subscribers and to structlog, as the tracker's own
        events are sent: a failing subscriber is reported through ``sys.unraisablehook``
        and never raises here.

        For front-ends built on a tracker (the plugin host) whose events belong in the
        same stream.

        Raises:
            InvalidArgumentError: ``event`` is not an `Event`.

        .. versionadded:: 0.2.0
        """
        emit(check.instance(event, Event, "event", "versionload.Event"), self._registry.subscribers)

    @_public_errors
    def forget(self, module: ModuleType | str) -> bool:
        """
        Drop a module's history (its numbers are not reused); True if there was one.
        """
        if isinstance(module, ModuleType):
            module = module_name(module)
        if not isinstance(module, str):
            raise NotAModuleError(module)
        name = module
        forget_compiled(name)
        return self._registry.forget(name)

    def clear(self) -> None:
        """
        Drop every history and restart numbering; the hook stays as it is.
        """
        forget_compiled()
        self._registry.clear()

    @_public_errors
    def subscribe(self, subscriber: Subscriber, *, loads: LoadFilter | None = None) -> None:
        """
        Call ``subscriber(event)`` with each event payload this tracker emits.

        Args:
            loads: Which ``module.loaded`` events the subscriber gets: those for which
                ``loads(name, origin)`` is true (None: all). Every import asks it
                before the event is built, so an import nobody wants stays on the
                hook's cheap path: keep it fast; an error in it counts as true and is
                reported through ``sys.unraisablehook``. Other events are not filtered.

        Raises:
            InvalidArgumentError: ``subscriber`` or ``loads`` is not callable.

        .. versionchanged:: 0.2.0
           ``loads``.
        """
        check.callback(subscriber, "subscriber")
        registry = self._registry
        if loads is None:
            registry.load_filters.pop(subscriber, None)
        else:
            registry.load_filters[subscriber] = check.callback(loads, "loads")
        registry.subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """
        Stop calling ``subscriber``; unknown subscribers are ignored.
        """
        registry = self._registry
        if subscriber in registry.subscribers:
            registry.subscribers.remove(subscriber)
        if subscriber not in registry.subscribers:
            registry.load_filters.pop(subscriber, None)

    # -- finder callbacks -----------------------------------------------------------------

    def _on_external_reload_start(self, module: ModuleType) -> None:
        name = module_name(module)
        if self._registry.history_of(name, module) is None:
            self._registry.record(name, module, "adopted", origin_of(module), _SourceDigest())

    def _on_external_reload(
        self, spec: ModuleSpec, module: ModuleType, duration_ns: int, digest: _SourceDigest | None
    ) -> None:
        record_external_reload(self._registry, spec.name, module, duration_ns, digest)


_DEFAULT = Tracker()


def default_tracker() -> Tracker:
    """
    The tracker that the module-level functions use.
    """
    return _DEFAULT
