"""
versionload: module reloading with a version history per module, and rollback.

Importing this package changes nothing in ``sys``; `install` puts the import hook in
place. The functions here act on one default `Tracker`.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from ._errors import (
    InvalidArgumentError,
    ModuleNotLoadedError,
    NotAModuleError,
    NotTrackedError,
    ReloadError,
    SpecNotFoundError,
    VersionLoadError,
    VersionNotFoundError,
)
from ._events import (
    Event,
    HistoryEnded,
    ModuleLoaded,
    ModuleReloaded,
    ModuleReloadFailed,
    ModuleRolledBack,
    VersionPruned,
)
from ._registry import DEFAULT_MAX_VERSIONS
from ._snapshot import ModuleVersion, NamespaceDiff
from ._tracker import Tracker

_DEFAULT = Tracker()


def default_tracker() -> Tracker:
    """
    The tracker that the module-level functions use.
    """
    return _DEFAULT


def install(
    *,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    max_versions: int | None = None,
) -> Tracker:
    """
    Configure the default tracker and put its finder first on ``sys.meta_path``.

    From then on every module that finishes importing (and matches ``include`` and not
    ``exclude``) is recorded as version 1. Calling it again changes only the settings.

    Args:
        include: Module-name patterns to track, ``fnmatch`` style (``"app.*"`` covers
            ``app`` and everything below it); None tracks every module.
        exclude: Patterns never to track.
        max_versions: Versions kept per module; None means the default (10).

    Returns:
        The default `Tracker`.

    Raises:
        InvalidArgumentError: a pattern is not a string, or ``max_versions`` is below 1.
    """
    _DEFAULT.configure(include=include, exclude=exclude, max_versions=max_versions)
    return _DEFAULT.install()


def uninstall() -> None:
    """
    Take the default tracker's finder off ``sys.meta_path``; histories are kept.
    """
    _DEFAULT.uninstall()


def track(module: ModuleType | str) -> ModuleVersion:
    """
    Adopt an already-imported module; see `Tracker.track`.
    """
    return _DEFAULT.track(module)


def reload(module: ModuleType | str) -> ModuleType:
    """
    Reload a module in place and record a new version; see `Tracker.reload`.
    """
    return _DEFAULT.reload(module)


def rollback(module: ModuleType | str, to: int | None = None) -> ModuleType:
    """
    Restore a module's namespace to version ``to``; see `Tracker.rollback`.
    """
    return _DEFAULT.rollback(module, to)


def history(module: ModuleType | str) -> tuple[ModuleVersion, ...]:
    """
    A module's versions, oldest first; see `Tracker.history`.
    """
    return _DEFAULT.history(module)


def current(module: ModuleType | str) -> ModuleVersion:
    """
    A module's current version; see `Tracker.current`.
    """
    return _DEFAULT.current(module)


def diff(module: ModuleType | str, a: int, b: int) -> NamespaceDiff:
    """
    What changed between two versions of a module; see `Tracker.diff`.
    """
    return _DEFAULT.diff(module, a, b)


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("versionload")
    raise AttributeError(f"module 'versionload' has no attribute {name!r}")


__all__ = [
    "DEFAULT_MAX_VERSIONS",
    "Event",
    "HistoryEnded",
    "InvalidArgumentError",
    "ModuleLoaded",
    "ModuleNotLoadedError",
    "ModuleReloadFailed",
    "ModuleReloaded",
    "ModuleRolledBack",
    "ModuleVersion",
    "NamespaceDiff",
    "NotAModuleError",
    "NotTrackedError",
    "ReloadError",
    "SpecNotFoundError",
    "Tracker",
    "VersionLoadError",
    "VersionNotFoundError",
    "VersionPruned",
    "current",
    "default_tracker",
    "diff",
    "history",
    "install",
    "reload",
    "rollback",
    "track",
    "uninstall",
]

# Tracebacks and reprs show the public path, not the private module.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("versionload._"):
        _obj.__module__ = __name__
del _name, _obj
