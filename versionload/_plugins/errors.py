"""
The errors of the plugin host.

Plugin errors hang below versionload's root, `VersionLoadError` (whose own tree
`versionload._errors` draws), and each also derives from the standard exception a
caller of the import system or of a mapping already catches::

    VersionLoadError
    └── PluginError                                   plugin: the entry point's name
        ├── PluginCheckError                          the plugin failed the host's check
        ├── PluginNotFoundError     (KeyError)        no loaded plugin of that name
        ├── PluginLoadError         (ImportError)     an entry point could not be loaded
        ├── PluginReloadError       (ReloadError)     a module of the plugin failed to reload
        │   └── PluginMovedError                      its package is no longer found
        └── PluginVersionNotFoundError (LookupError)  no such plugin version

They keep ``plugin`` (and ``module`` for `PluginReloadError`) through pickling.
"""

from __future__ import annotations

from .._errors import ReloadError, VersionLoadError


class PluginError(VersionLoadError):
    """
    A plugin could not be found, loaded, reloaded, checked or rolled back.

    Attributes:
        plugin: The plugin's (entry point's) name.
    """

    def __init__(self, message: str, *, plugin: str) -> None:
        super().__init__(message)
        self.plugin = plugin

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_plugin_error, (type(self), str(self), self.plugin))


class PluginCheckError(PluginError):
    """
    The reloaded plugin failed the host's check (it raised, or returned False).

    Every module of the plugin was rolled back to the version it had before the
    reload; the check's exception, if any, is chained.
    """


class PluginNotFoundError(PluginError, KeyError):
    """
    The host has no loaded plugin of that name.
    """

    def __str__(self) -> str:
        # KeyError would show the message in quotes.
        return str(self.args[0])


class PluginLoadError(PluginError, ImportError):
    """
    An entry point could not be loaded; the original exception is chained.

    Found in `PluginHost.errors`, never raised by `PluginHost.load_all`.
    """


class PluginReloadError(PluginError, ReloadError):
    """
    Reloading a plugin failed (a module's new code raised, or the entry point no
    longer resolves); every module of the plugin is back at its previous version.
    """

    def __init__(self, message: str, *, plugin: str, module: str) -> None:
        ReloadError.__init__(self, message, module=module)
        self.plugin = plugin

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_reload_error, (type(self), str(self), self.plugin, self.module))


class PluginMovedError(PluginReloadError):
    """
    The plugin's package is no longer found where a fresh import would look.

    Its files were removed (or replaced by something that is not a file) while the
    process ran, and no other copy is on ``sys.path``: a reload would run no new
    code, so nothing was reloaded; ``module`` is the plugin's package. (A package
    found in a new place is reloaded from there.)

    .. versionadded:: 0.2.0
    """


class PluginVersionNotFoundError(PluginError, LookupError):
    """
    The plugin has no such version, or a module version it records was pruned.
    """


def _rebuild_plugin_error(cls: type[PluginError], message: str, plugin: str) -> PluginError:
    return cls(message, plugin=plugin)


def _rebuild_reload_error(
    cls: type[PluginReloadError], message: str, plugin: str, module: str
) -> PluginReloadError:
    return cls(message, plugin=plugin, module=module)
