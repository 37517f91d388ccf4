"""
The plugin host's event payloads (``plugin.*``), emitted through the tracker's stream.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from .._events import Event


@attrs.frozen
class PluginEvent(Event):
    """
    Base of the plugin events; ``module`` is the entry point's module.

    ``modules`` and ``versions`` are parallel: module names and their version numbers.
    """

    plugin: str
    group: str
    distribution: str | None
    dist_version: str | None
    modules: tuple[str, ...]
    versions: tuple[int, ...]


@attrs.frozen
class PluginDiscovered(PluginEvent):
    """
    An entry point of the group was found (nothing is imported yet).
    """

    event: ClassVar[str] = "plugin.discovered"
    level: ClassVar[str] = "debug"

    value: str


@attrs.frozen
class PluginLoaded(PluginEvent):
    """
    A plugin was imported, resolved and passed its check.
    """

    event: ClassVar[str] = "plugin.loaded"

    version: int


@attrs.frozen
class PluginLoadFailed(PluginEvent):
    """
    An entry point could not be loaded; the plugin is in `PluginHost.errors`.
    """

    event: ClassVar[str] = "plugin.load_failed"
    level: ClassVar[str] = "error"

    error: str


@attrs.frozen
class PluginReloaded(PluginEvent):
    """
    A plugin was reloaded and passed its check.

    ``versions`` are the module versions that run now; ``previous_versions`` (parallel
    to ``modules``) the ones before the reload, and ``ran`` the modules whose new code
    ran. A plugin reload never succeeds without running new code.
    """

    event: ClassVar[str] = "plugin.reloaded"

    version: int
    previous_version: int
    duration_ms: float
    ran: tuple[str, ...] = ()
    previous_versions: tuple[int, ...] = ()


@attrs.frozen
class PluginReloadFailed(PluginEvent):
    """
    A module of the plugin failed to reload, or its entry point no longer resolves.
    """

    event: ClassVar[str] = "plugin.reload_failed"
    level: ClassVar[str] = "error"

    error: str


@attrs.frozen
class PluginCheckFailed(PluginEvent):
    """
    The reloaded plugin failed the host's check.
    """

    event: ClassVar[str] = "plugin.check_failed"
    level: ClassVar[str] = "error"

    error: str


@attrs.frozen
class PluginRolledBack(PluginEvent):
    """
    Every module of the plugin was returned to an earlier state.

    ``reason`` is ``"requested"`` (`PluginHost.rollback`), ``"reload_failed"`` or
    ``"check_failed"``; after an automatic rollback ``version`` equals ``previous_version``.
    """

    event: ClassVar[str] = "plugin.rolled_back"
    level: ClassVar[str] = "warning"

    version: int
    previous_version: int
    reason: str


PLUGIN_EVENT_TYPES: tuple[type[PluginEvent], ...] = (
    PluginDiscovered,
    PluginLoaded,
    PluginLoadFailed,
    PluginReloaded,
    PluginReloadFailed,
    PluginCheckFailed,
    PluginRolledBack,
)
