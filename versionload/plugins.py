"""
Plugins found through entry points, hot-swapped with automatic rollback.

A `PluginHost` loads every entry point of a group through the versioned import hook,
reloads a plugin's modules as a unit, checks the result and rolls every module back
when the reload or the check fails. `PluggyBridge` keeps a ``pluggy.PluginManager``
registered with the current plugin objects (needs the ``pluggy`` extra).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import contextlib

from ._plugins.errors import (
    PluginCheckError,
    PluginError,
    PluginLoadError,
    PluginMovedError,
    PluginNotFoundError,
    PluginReloadError,
    PluginVersionNotFoundError,
)
from ._plugins.events import (
    PLUGIN_EVENT_TYPES,
    PluginCheckFailed,
    PluginDiscovered,
    PluginEvent,
    PluginLoaded,
    PluginLoadFailed,
    PluginReloaded,
    PluginReloadFailed,
    PluginRolledBack,
)
from ._plugins.host import PluginHost
from ._plugins.pluggy import PluggyBridge
from ._plugins.records import Plugin, PluginVersion
from ._plugins.units import dependency_order

__all__ = [
    "PLUGIN_EVENT_TYPES",
    "PluggyBridge",
    "Plugin",
    "PluginCheckError",
    "PluginCheckFailed",
    "PluginDiscovered",
    "PluginError",
    "PluginEvent",
    "PluginHost",
    "PluginLoadError",
    "PluginLoadFailed",
    "PluginLoaded",
    "PluginMovedError",
    "PluginNotFoundError",
    "PluginReloadError",
    "PluginReloadFailed",
    "PluginReloaded",
    "PluginRolledBack",
    "PluginVersion",
    "PluginVersionNotFoundError",
    "dependency_order",
]

# Tracebacks and reprs show the public path, not the private module.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("versionload._"):
        with contextlib.suppress(AttributeError, TypeError):
            _obj.__module__ = __name__
del _name, _obj
