"""
`Tracker`: the public holder of versionload's state, and its import hook.

The module-level functions of ``versionload`` use one default tracker; tests and
applications that want isolated state create their own.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable
from importlib.machinery import ModuleSpec
from types import ModuleType

from ._engine import check_version_number, module_name, origin_of, record_external_reload, resolve_tracked
from ._engine import reload as _reload
from ._engine import rollback as _rollback
from ._errors import InvalidArgumentError, NotAModuleError, VersionLoadError
from ._events import Event, Subscriber
from ._events import emit as _emit
from ._finder import VersionedFinder
from ._graph import dependencies_of, dependency_map, dependents_of
from ._group import cascade_targets, check_update, migrator, names_of, reload_group, restore_states
from ._inplace import Ledger
from ._registry import Registry, normalize_max_versions, normalize_patterns, normalize_roots
from ._snapshot import ModuleVersion, NamespaceDiff, _SourceDigest, compare
from ._stale import StaleReport, stale_report


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

    Creating a tracker changes nothing in ``sys``; `install` puts its finder in front
    of ``sys.meta_path``.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        *,
        include: str | Iterable[str] | None = None,
        exclude: str | Iterable[str] | None = None,
        max_versions: int | None = None,
        allowed_roots: Iterable[str | os.PathLike[str]] | None = None,
    ) -> None:
        self._registry = Registry(
            include=normalize_patterns(include, "include"),
            exclude=normalize_patterns(exclude, "exclude"),
            max_versions=normalize_max_versions(max_versions),
            allowed_roots=normalize_roots(allowed_roots),
        )
        self._finder = VersionedFinder(
            self._registry.wants, self._on_load, self._on_external_reload_start, self._on_external_reload
        )
        self._install_lock = threading.Lock()
        self._ledger = Ledger()  # states of objects updated in place, per version

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

    def configure(
        self,
        *,
        include: str | Iterable[str] | None = None,
        exclude: str | Iterable[str] | None = None,
        max_versions: int | None = None,
        allowed_roots: Iterable[str | os.PathLike[str]] | None = None,
    ) -> None:
        """
        Replace the filters, the retention and the allowed roots; fewer versions are pruned at once.

        Raises:
            InvalidArgumentError: a pattern or a root has the wrong type, or ``max_versions`` is below 1.
        """
        self._registry.configure(
            normalize_patterns(include, "include"),
            normalize_patterns(exclude, "exclude"),
            normalize_max_versions(max_versions),
            allowed_roots=normalize_roots(allowed_roots),
        )

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
    def max_versions(self, value: int) -> None:
        self._registry.set_max_versions(normalize_max_versions(value))

    # -- operations ---------------------------------------------------------------------

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

    def reload(
        self, module: ModuleType | str, *, cascade: bool = False, update: str | None = None
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
            cascade: Also reload every tracked module that depends on this one, each
                after its dependencies (see `dependents`), as one atomic group: if
                any of them fails, all are put back and a `GroupReloadError` names
                the module that failed.
            update: None (or ``"rebind"``): the namespace gets the new objects, as
                ``importlib.reload`` does. ``"in-place"``: functions and classes the
                module defined before keep their identity and take on the new code,
                so references held elsewhere see it; see ``docs/update-modes.md``.

        Returns:
            ``sys.modules[name]`` afterwards (the module, unless it replaced itself).

        Raises:
            NotAModuleError: ``module`` is neither a module nor a string.
            InvalidArgumentError: ``cascade`` is not a bool, or ``update`` is unknown.
            ModuleNotLoadedError: it (or its parent package) is not in ``sys.modules``.
            SpecNotFoundError: no finder finds it any more.
            ReloadRefusedError: its file lies outside the tracker's ``allowed_roots``.
            ReloadError: the new code failed; the original exception is chained.
            GroupReloadError: with ``cascade``, a module of the cascade failed.
        """
        try:
            if not isinstance(cascade, bool):
                raise InvalidArgumentError(f"cascade must be a bool, got {cascade!r}")
            mode = check_update(update)
            if cascade:
                targets = cascade_targets(self._registry, module)
                return reload_group(self._registry, self._ledger, targets, update=mode, kind="cascade")[0]
            if mode == "in-place":
                return reload_group(self._registry, self._ledger, [module], update=mode)[0]
            return _reload(self._registry, module, migrator)
        except VersionLoadError as error:
            raise error.with_traceback(None)  # noqa: B904 - keep our frames out

    def reload_many(
        self, modules: Iterable[ModuleType | str], *, update: str | None = None
    ) -> tuple[ModuleType, ...]:
        """
        Reload several modules, in the order given, as one atomic group: all or none.

        If any module fails, those already reloaded are put back (in-place updates
        reverted, namespaces restored), no version is recorded for any of them, and
        `GroupReloadError` names the one that failed. Emits one event per module
        and a ``cascade.reloaded`` / ``cascade.failed`` event for the group.

        Returns:
            The modules, in the order given.

        Raises:
            InvalidArgumentError: ``modules`` is not an iterable of modules or names,
                names a module twice, or ``update`` is unknown.
            GroupReloadError: a module of the group failed; all are unchanged.
            ReloadError: as `reload`, for a module that cannot be reloaded at all
                (checked before anything runs).
        """
        try:
            return reload_group(self._registry, self._ledger, names_of(modules), update=update, kind="many")
        except VersionLoadError as error:
            raise error.with_traceback(None)  # noqa: B904 - keep our frames out

    def dependents(self, module: ModuleType | str, *, transitive: bool = False) -> tuple[str, ...]:
        """
        The tracked modules that depend on ``module`` (import it, or bind names from it).

        Edges come from each module's compiled code (every import statement, also
        inside functions) and its namespace (modules and classes/functions from
        other modules it binds); see ``docs/update-modes.md``.

        Args:
            transitive: Also the modules that depend on those, and so on.

        Returns:
            Module names, in the order they were first tracked.
        """
        try:
            name, _ = self._graph_node(module)
            return dependents_of(dependency_map(self._registry), name, transitive)
        except VersionLoadError as error:
            raise error.with_traceback(None)  # noqa: B904 - keep our frames out

    def dependencies(self, module: ModuleType | str, *, transitive: bool = False) -> tuple[str, ...]:
        """
        The tracked modules that ``module`` depends on; the converse of `dependents`.
        """
        try:
            name, _ = self._graph_node(module)
            return dependencies_of(dependency_map(self._registry), name, transitive)
        except VersionLoadError as error:
            raise error.with_traceback(None)  # noqa: B904 - keep our frames out

    def _graph_node(self, module: ModuleType | str) -> tuple[str, ModuleType]:
        name, obj, _ = resolve_tracked(self._registry, module)
        return name, obj

    def stale(self, module: ModuleType | str) -> StaleReport:
        """
        The live objects that still use code older than the module's current version.

        Functions, classes and instances reachable from other modules' namespaces,
        and frames of running threads executing old code; empty (and false) when
        nothing old is in use. See `StaleReport`.

        Raises:
            NotTrackedError: the module has no history.
        """
        try:
            name, obj, history = resolve_tracked(self._registry, module)
            return stale_report(name, obj, history, self._ledger.code_versions(name, history))
        except VersionLoadError as error:
            raise error.with_traceback(None)  # noqa: B904 - keep our frames out

    def rollback(self, module: ModuleType | str, to: int | None = None) -> ModuleType:
        """
        Restore the module's namespace exactly as it was at version ``to``.

        Names added since are removed, changed names get their old objects back and
        removed names come back. The history is kept; the next reload gets a new,
        higher number. Functions and classes updated in place since then get back
        the code and attributes they had at version ``to``.

        Args:
            to: The version number; None means the highest version below the current one.

        Raises:
            NotTrackedError: the module has no history.
            VersionNotFoundError: no such version (or none below the current one).
            InvalidArgumentError: ``to`` is not an int.
        """
        try:
            return _rollback(self._registry, module, to, restore_states(self._registry, self._ledger))
        except VersionLoadError as error:
            raise error.with_traceback(None)  # noqa: B904 - keep our frames out

    def history(self, module: ModuleType | str) -> tuple[ModuleVersion, ...]:
        """
        The module's versions, oldest first.

        Raises:
            NotTrackedError: the module has no history (see `track`).
            NotAModuleError: ``module`` is neither a module nor a string.
        """
        try:
            return resolve_tracked(self._registry, module)[2].versions
        except VersionLoadError as error:
            raise error.with_traceback(None)  # noqa: B904 - keep our frames out

    def current(self, module: ModuleType | str) -> ModuleVersion:
        """
        The module's current version (the last one recorded or rolled back to).

        Raises:
            NotTrackedError: the module has no history (see `track`).
            NotAModuleError: ``module`` is neither a module nor a string.
        """
        try:
            return resolve_tracked(self._registry, module)[2].current
        except VersionLoadError as error:
            raise error.with_traceback(None)  # noqa: B904 - keep our frames out

    def diff(self, module: ModuleType | str, a: int, b: int) -> NamespaceDiff:
        """
        The names added, removed and changed from version ``a`` to version ``b``.

        Raises:
            NotTrackedError: the module has no history (see `track`).
            VersionNotFoundError: ``a`` or ``b`` is not in the history (or was pruned).
            InvalidArgumentError: ``a`` or ``b`` is not an int.
        """
        try:
            check_version_number(a, "a")
            check_version_number(b, "b")
            name, _, history = resolve_tracked(self._registry, module)
            old, new = history.get(a), history.get(b)
            return compare(name, a, old.bindings, b, new.bindings)
        except VersionLoadError as error:
            raise error.with_traceback(None)  # noqa: B904 - keep our frames out

    def tracked(self) -> tuple[str, ...]:
        """
        The names of the modules that have a history, in the order they were first tracked.
        """
        return self._registry.names()

    def forget(self, module: ModuleType | str) -> bool:
        """
        Drop a module's history (its numbers are not reused); True if there was one.
        """
        if isinstance(module, ModuleType):
            module = module_name(module)
        if not isinstance(module, str):
            raise NotAModuleError(module)
        name = module
        return self._registry.forget(name)

    def clear(self) -> None:
        """
        Drop every history and restart numbering; the hook stays as it is.
        """
        self._registry.clear()

    def subscribe(self, subscriber: Subscriber) -> None:
        """
        Call ``subscriber(event)`` with each event payload this tracker emits.

        Raises:
            InvalidArgumentError: ``subscriber`` is not callable.
        """
        if not callable(subscriber):
            raise InvalidArgumentError(f"subscriber must be callable, got {subscriber!r}")
        self._registry.subscribers.append(subscriber)

    def emit(self, event: Event) -> None:
        """
        Send an event payload to this tracker's subscribers and to the ``versionload`` logger.

        For the wings (the fleet, front-ends) that report their own events through the
        tracker they act on; never raises (see ``docs/events.md``).
        """
        if not isinstance(event, Event):
            raise InvalidArgumentError(f"expected an event payload, got {type(event).__name__}")
        _emit(event, self._registry.subscribers)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """
        Stop calling ``subscriber``; unknown subscribers are ignored.
        """
        subscribers = self._registry.subscribers
        if subscriber in subscribers:
            subscribers.remove(subscriber)

    # -- finder callbacks -----------------------------------------------------------------

    def _on_load(self, spec: ModuleSpec, module: ModuleType | None) -> None:
        if module is None:
            return  # the import failed, or put something that is not a module in sys.modules
        origin = spec.origin if spec.has_location else None
        self._registry.record_import(spec.name, module, origin)

    def _on_external_reload_start(self, module: ModuleType) -> None:
        name = module_name(module)
        if self._registry.history_of(name, module) is None:
            self._registry.record(name, module, "adopted", origin_of(module), _SourceDigest())

    def _on_external_reload(
        self, spec: ModuleSpec, module: ModuleType, duration_ns: int, digest: _SourceDigest | None
    ) -> None:
        record_external_reload(self._registry, spec.name, module, duration_ns, digest)
