"""
`Tracker`: the public holder of versionload's state, and its import hook.

The module-level functions of ``versionload`` use one default tracker; tests and
applications that want isolated state create their own.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from importlib.machinery import ModuleSpec
from types import ModuleType

from ._engine import check_version_number, module_name, origin_of, record_external_reload, resolve_tracked
from ._engine import reload as _reload
from ._engine import rollback as _rollback
from ._errors import NotAModuleError, VersionLoadError
from ._events import Subscriber
from ._finder import VersionedFinder
from ._registry import Registry, normalize_max_versions, normalize_patterns
from ._snapshot import ModuleVersion, NamespaceDiff, _SourceDigest, compare


class Tracker:
    """
    Records every load of the modules it tracks, and reloads and rolls them back.

    Args:
        include: Module-name patterns to track (``fnmatch`` style; ``"app.*"`` also
            covers ``app``); None tracks every module.
        exclude: Patterns never to track, even if included.
        max_versions: Versions kept per module (default 10); the oldest are pruned,
            never the current one.

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
    ) -> None:
        self._registry = Registry(
            include=normalize_patterns(include, "include"),
            exclude=normalize_patterns(exclude, "exclude"),
            max_versions=normalize_max_versions(max_versions),
        )
        self._finder = VersionedFinder(
            self._registry.wants, self._on_load, self._on_external_reload_start, self._on_external_reload
        )
        self._install_lock = threading.Lock()

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
    ) -> None:
        """
        Replace the filters and the retention; fewer versions are pruned at once.
        """
        self._registry.configure(
            normalize_patterns(include, "include"),
            normalize_patterns(exclude, "exclude"),
            normalize_max_versions(max_versions),
        )

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

    def reload(self, module: ModuleType | str) -> ModuleType:
        """
        Re-execute the module's current source in its existing namespace.

        Behaves as ``importlib.reload`` (same module object, names not redefined
        survive, references held elsewhere keep the old objects), except that it
        always runs the source on disk, records a new version, and leaves the
        module exactly as it was when the new code fails.

        Returns:
            ``sys.modules[name]`` afterwards (the module, unless it replaced itself).

        Raises:
            NotAModuleError: ``module`` is neither a module nor a string.
            ModuleNotLoadedError: it (or its parent package) is not in ``sys.modules``.
            SpecNotFoundError: no finder finds it any more.
            ReloadError: the new code failed; the original exception is chained.
        """
        try:
            return _reload(self._registry, module)
        except VersionLoadError as error:
            raise error.with_traceback(None)  # noqa: B904 - keep our frames out

    def rollback(self, module: ModuleType | str, to: int | None = None) -> ModuleType:
        """
        Restore the module's namespace exactly as it was at version ``to``.

        Names added since are removed, changed names get their old objects back and
        removed names come back. The history is kept; the next reload gets a new,
        higher number.

        Args:
            to: The version number; None means the highest version below the current one.

        Raises:
            NotTrackedError: the module has no history.
            VersionNotFoundError: no such version (or none below the current one).
            InvalidArgumentError: ``to`` is not an int.
        """
        try:
            return _rollback(self._registry, module, to)
        except VersionLoadError as error:
            raise error.with_traceback(None)  # noqa: B904 - keep our frames out

    def history(self, module: ModuleType | str) -> tuple[ModuleVersion, ...]:
        """
        The module's versions, oldest first.
        """
        try:
            return resolve_tracked(self._registry, module)[2].versions
        except VersionLoadError as error:
            raise error.with_traceback(None)  # noqa: B904 - keep our frames out

    def current(self, module: ModuleType | str) -> ModuleVersion:
        """
        The module's current version (the last one recorded or rolled back to).
        """
        try:
            return resolve_tracked(self._registry, module)[2].current
        except VersionLoadError as error:
            raise error.with_traceback(None)  # noqa: B904 - keep our frames out

    def diff(self, module: ModuleType | str, a: int, b: int) -> NamespaceDiff:
        """
        The names added, removed and changed from version ``a`` to version ``b``.
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
        """
        self._registry.subscribers.append(subscriber)

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

    def _on_external_reload(self, spec: ModuleSpec, module: ModuleType, duration_ns: int) -> None:
        record_external_reload(self._registry, spec.name, module, duration_ns)
