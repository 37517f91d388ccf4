"""
versionload: module reloading with a version history per module, and rollback.

Importing this package changes nothing in ``sys``; `install` puts the import hook in
place. The functions here act on one default `Tracker`:

    versionload.install()                # every import from now on is version 1
    versionload.reload(module)           # run the source on disk; a failure changes nothing
    versionload.rollback(module, to=1)   # restore what version 1 bound
    versionload.history(module)          # the recorded versions, oldest first
    with versionload.serving(): ...      # a unit of work no reload interrupts

Functions that take a module accept the module or its name. Bad input raises a
`VersionLoadError` subclass that is also the stdlib error callers expect (`TypeError`,
`LookupError`, `ImportError`). See also `versionload.plugins` (hot-swapped plugins),
`versionload.fleet` (every process of a deployment, over Redis; imported on its own),
`versionload.testing`, and the ``versionload`` command (``versionload --help``).
"""

from __future__ import annotations

# Imported under private names: every public name of the facade is in __all__.
import os as _os
from collections.abc import Iterable as _Iterable
from types import ModuleType as _ModuleType
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from ._arguments import DEFAULT_MAX_VERSIONS
from ._errors import (
    ChangesetNotFoundError,
    ChangesetNotUndoableError,
    DrainTimeoutError,
    GroupReloadError,
    InvalidArgumentError,
    ModuleNotLoadedError,
    NotAModuleError,
    NotTrackedError,
    ReloadError,
    ReloadRefusedError,
    ServingSectionError,
    SpecNotFoundError,
    VersionLoadError,
    VersionNotFoundError,
)
from ._events import (
    CascadeFailed,
    CascadeReloaded,
    ChangesetApplied,
    ChangesetUndone,
    Event,
    GroupFailed,
    GroupReloaded,
    HistoryEnded,
    ModuleLoaded,
    ModulePatched,
    ModuleReloadDeferred,
    ModuleReloaded,
    ModuleReloadFailed,
    ModuleRolledBack,
    VersionPruned,
)
from ._gate import Section as _Section
from ._graph import ReloadPlan
from ._history import MAX_CHANGESETS
from ._snapshot import Change, Changeset, ModuleVersion, NamespaceDiff
from ._stale import StaleObject, StaleReport
from ._tracker import UNSET as _UNSET
from ._tracker import TrackedModule, Tracker, default_tracker
from ._tracker import Unset as _Unset

if _TYPE_CHECKING:
    import os
    from collections.abc import AsyncIterator, Callable, Collection

    from ._live.watch import FileChange, Watcher

_DEFAULT = default_tracker()


def install(
    *,
    include: str | _Iterable[str] | _Unset | None = _UNSET,
    exclude: str | _Iterable[str] | _Unset | None = _UNSET,
    max_versions: int | _Unset | None = _UNSET,
    allowed_roots: _Iterable[str | _os.PathLike[str]] | _Unset | None = _UNSET,
    drain_timeout: float | _Unset | None = _UNSET,
) -> Tracker:
    """
    Configure the default tracker and put its finder first on ``sys.meta_path``.

    From then on every module that finishes importing (and matches ``include`` and not
    ``exclude``) is recorded as version 1. Calling it again changes only the settings
    passed: those left out keep the values in force (pass None to restore a default).

    Args:
        include: Module-name patterns to track, ``fnmatch`` style (``"app.*"`` covers
            ``app`` and everything below it); None tracks every module.
        exclude: Patterns never to track.
        max_versions: Versions kept per module; None means the default (10).
            Left out, each setting keeps its current value (at first, the default).
        allowed_roots: Directories (or zip files) that `reload` may run code from;
            None allows any origin. See ``docs/security.md``.
        drain_timeout: Seconds a reload or rollback waits for the `serving` sections
            in flight to end (None: forever); see ``docs/gate.md``.

    Returns:
        The default `Tracker`.

    Raises:
        InvalidArgumentError: a pattern is not a string, a root is not a path,
            ``max_versions`` is below 1, or ``drain_timeout`` is negative or not a number.
    """
    _DEFAULT.configure(
        include=include,
        exclude=exclude,
        max_versions=max_versions,
        allowed_roots=allowed_roots,
        drain_timeout=drain_timeout,
    )
    return _DEFAULT.install()


def uninstall() -> None:
    """
    Take the default tracker's finder off ``sys.meta_path``; histories are kept.
    """
    _DEFAULT.uninstall()


def serving() -> _Section:
    """
    A section of serving code (a request, a task) that no reload or rollback of the
    default tracker interrupts: a context manager, an async context manager and a
    decorator; see `Tracker.serving`.
    """
    return _DEFAULT.serving()


def track(module: _ModuleType | str) -> ModuleVersion:
    """
    Adopt an already-imported module; see `Tracker.track`.
    """
    return _DEFAULT.track(module)


def reload(
    module: _ModuleType | str,
    *,
    cascade: bool | str | _Iterable[str] = False,
    update: str | None = None,
    prune: bool = False,
) -> _ModuleType:
    """
    Reload a module in place and record a new version; see `Tracker.reload`.
    """
    return _DEFAULT.reload(module, cascade=cascade, update=update, prune=prune)


def plan(module: _ModuleType | str, *, cascade: bool | str | _Iterable[str] = False) -> ReloadPlan:
    """
    The modules a reload would run, in order, without running them; see `Tracker.plan`.

    .. versionadded:: 0.2.0
    """
    return _DEFAULT.plan(module, cascade=cascade)


def reload_many(
    modules: _Iterable[_ModuleType | str], *, update: str | None = None, prune: bool = False
) -> tuple[_ModuleType, ...]:
    """
    Reload several modules as one atomic group; see `Tracker.reload_many`.
    """
    return _DEFAULT.reload_many(modules, update=update, prune=prune)


def dependents(module: _ModuleType | str, *, transitive: bool = False) -> tuple[str, ...]:
    """
    The tracked modules that depend on a module; see `Tracker.dependents`.
    """
    return _DEFAULT.dependents(module, transitive=transitive)


def dependencies(module: _ModuleType | str, *, transitive: bool = False) -> tuple[str, ...]:
    """
    The tracked modules a module depends on; see `Tracker.dependencies`.
    """
    return _DEFAULT.dependencies(module, transitive=transitive)


def stale(module: _ModuleType | str) -> StaleReport:
    """
    Live objects still using an older version's code; see `Tracker.stale`.
    """
    return _DEFAULT.stale(module)


def rollback(module: _ModuleType | str, to: int | None = None, *, cascade: bool = False) -> _ModuleType:
    """
    Restore a module's namespace to version ``to``; see `Tracker.rollback`.

    With ``cascade=True``, undo the whole changeset that made its current version.
    """
    return _DEFAULT.rollback(module, to, cascade=cascade)


def changesets() -> tuple[Changeset, ...]:
    """
    The recent changesets of the default tracker, oldest first; see `Tracker.changesets`.

    .. versionadded:: 0.2.0
    """
    return _DEFAULT.changesets()


def undo(changeset: int | None = None) -> Changeset:
    """
    Return every module of a changeset (default: the latest not undone) to its
    version before it, as one atomic group; see `Tracker.undo`.

    .. versionadded:: 0.2.0
    """
    return _DEFAULT.undo(changeset)


def history(module: _ModuleType | str) -> tuple[ModuleVersion, ...]:
    """
    A module's versions, oldest first; see `Tracker.history`.
    """
    return _DEFAULT.history(module)


def current(module: _ModuleType | str) -> ModuleVersion:
    """
    A module's current version; see `Tracker.current`.
    """
    return _DEFAULT.current(module)


def diff(module: _ModuleType | str, a: int, b: int) -> NamespaceDiff:
    """
    What changed between two versions of a module; see `Tracker.diff`.
    """
    return _DEFAULT.diff(module, a, b)


def watch(
    paths: str | os.PathLike[str] | Collection[str | os.PathLike[str]] | None = None,
    *,
    cascade: bool | str | _Iterable[str] = False,
    update: str | None = None,
    tracker: Tracker | None = None,
    debounce: float = 0.01,
    force_polling: bool = False,
    on_change: Callable[[FileChange], object] | None = None,
    prune: bool = False,
) -> Watcher:
    """
    Reload tracked modules when their source files change, from a background thread.

    Only modules whose file lies under ``paths`` are reloaded (None: the ``sys.path``
    directories outside the standard library and site-packages). Each reload is
    atomic: a module whose new source fails keeps its old version, and the failure is
    reported with its file and line. Uses ``watchfiles`` (the ``watch`` extra) when
    installed, else polls the watched modules' files.

    Args:
        paths: Directories (or files) to watch.
        cascade: Reload the modules that depend on a changed one too: True for the
            default reach, or module-name patterns (see `Tracker.reload`).
        update: The reload's update mode (for example ``"in-place"``).
        tracker: The tracker whose modules are reloaded; None means the default one.
        debounce: Seconds a burst of writes must be quiet before it is handled
            (watchfiles' ``step``; default 0.01: a save runs as new code in about 15 ms).
        force_polling: Poll even when ``watchfiles`` is available.
        on_change: Called with a `FileChange` for each module the watcher handled.
        prune: Reload with ``prune=True``: names the new code no longer binds are
            dropped (see `Tracker.reload`).

    Returns:
        The running `Watcher`; call ``stop()`` or use it as a context manager.

    Raises:
        InvalidArgumentError: a path does not exist, or an option has the wrong type.
    """
    from ._live.watch import make_watcher

    return make_watcher(
        paths,
        cascade=cascade,
        update=update,
        tracker=_DEFAULT if tracker is None else tracker,
        debounce=debounce,
        force_polling=force_polling,
        on_change=on_change,
        prune=prune,
    ).start()


def awatch(
    paths: str | os.PathLike[str] | Collection[str | os.PathLike[str]] | None = None,
    *,
    cascade: bool | str | _Iterable[str] = False,
    update: str | None = None,
    tracker: Tracker | None = None,
    debounce: float = 0.01,
    force_polling: bool = False,
    prune: bool = False,
) -> AsyncIterator[list[FileChange]]:
    """
    The async form of `watch`: reloads run in the event loop's thread, and each batch
    of handled changes is yielded as a list of `FileChange`; closing the iterator stops it.

    Raises:
        InvalidArgumentError: as `watch`.
    """
    from ._live.watch import make_watcher

    return make_watcher(
        paths,
        cascade=cascade,
        update=update,
        tracker=_DEFAULT if tracker is None else tracker,
        debounce=debounce,
        force_polling=force_polling,
        on_change=None,
        prune=prune,
    ).changes()


def load_ipython_extension(ipython: _Any) -> None:
    """
    ``%load_ext versionload``: reload changed modules before each cell; add the magics.
    """
    from ._live.ipython import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: _Any) -> None:
    """
    ``%unload_ext versionload``: stop reloading before each cell.
    """
    from ._live.ipython import unload_ipython_extension as unload

    unload(ipython)


def __getattr__(name: str) -> _Any:
    if name in {"FileChange", "Watcher", "WatchCounters"}:
        # Imported on first use, so that importing versionload stays light.
        from ._live import watch as _watch

        return getattr(_watch, name)
    if name == "gate":
        # The middleware submodule, imported on first use.
        import importlib

        return importlib.import_module(f"{__name__}.gate")
    if name == "__version__":
        from importlib.metadata import version

        return version("versionload")
    raise AttributeError(f"module 'versionload' has no attribute {name!r}")


__all__ = [
    "CascadeFailed",
    "CascadeReloaded",
    "Change",
    "Changeset",
    "ChangesetApplied",
    "ChangesetNotFoundError",
    "ChangesetNotUndoableError",
    "ChangesetUndone",
    "DEFAULT_MAX_VERSIONS",
    "DrainTimeoutError",
    "Event",
    "GroupFailed",
    "GroupReloadError",
    "GroupReloaded",
    "HistoryEnded",
    "InvalidArgumentError",
    "MAX_CHANGESETS",
    "ModuleLoaded",
    "ModuleNotLoadedError",
    "ModulePatched",
    "ModuleReloadDeferred",
    "ModuleReloadFailed",
    "ModuleReloaded",
    "ModuleRolledBack",
    "ModuleVersion",
    "NamespaceDiff",
    "NotAModuleError",
    "NotTrackedError",
    "ReloadError",
    "ReloadPlan",
    "ReloadRefusedError",
    "ServingSectionError",
    "SpecNotFoundError",
    "StaleObject",
    "StaleReport",
    "TrackedModule",
    "Tracker",
    "VersionLoadError",
    "VersionNotFoundError",
    "VersionPruned",
    "awatch",
    "changesets",
    "current",
    "default_tracker",
    "dependencies",
    "dependents",
    "diff",
    "history",
    "install",
    "plan",
    "reload",
    "reload_many",
    "rollback",
    "serving",
    "stale",
    "track",
    "undo",
    "uninstall",
    "watch",
]

# Tracebacks and reprs show the public path, not the private module.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("versionload._"):
        _obj.__module__ = __name__
del _name, _obj
