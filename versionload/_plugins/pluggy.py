"""
`PluggyBridge`: keep a ``pluggy.PluginManager`` registered with the current plugin objects.

pluggy reads a plugin's hook implementations when the plugin is registered and keeps
references to those functions, so a reloaded module's new functions are only called
after the plugin is unregistered and registered again. The bridge does that after
every reload and rollback, and checks before a reload is accepted that the new
object would register (its hook implementations match the manager's specs), so a
plugin that pluggy would reject is rolled back like any plugin failing its check.

pluggy is imported only when a bridge is made: it is an optional dependency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import _arguments as arguments

if TYPE_CHECKING:
    import pluggy

    from .host import PluginHost
    from .records import Plugin


class PluggyBridge:
    """
    Registers a host's plugins on a pluggy manager and re-registers them on every change.

    Args:
        host: The `PluginHost` whose plugins are registered, under their entry point names.
        manager: The ``pluggy.PluginManager`` of the framework; its hook specs are not changed.
        validate: Add a check to the host that rejects a reloaded object the manager
            would refuse to register, so it is rolled back instead.

    .. versionadded:: 0.1.0
    """

    def __init__(self, host: PluginHost, manager: pluggy.PluginManager, *, validate: bool = True) -> None:
        import pluggy

        arguments.instance(manager, pluggy.PluginManager, "manager", "pluggy.PluginManager")
        self.host = host
        self.manager = manager
        host.on("after_reload", self._swap)
        host.on("after_rollback", self._swap)
        if validate:
            host.add_check(self.validate)

    def __repr__(self) -> str:
        return f"<versionload.plugins.PluggyBridge {self.host.group!r} -> {self.manager.project_name!r}>"

    def register_all(self) -> list[str]:
        """
        Register every loaded plugin of the host that the manager does not have yet.

        Returns:
            The names registered now.
        """
        registered = []
        for name, plugin in self.host.plugins.items():
            if self.manager.get_plugin(name) is None:
                self.manager.register(plugin.obj, name=name)
                registered.append(name)
        return registered

    def validate(self, obj: Any) -> None:
        """
        Raise what the manager would raise on registering ``obj``, without registering it.

        ``obj`` is registered on a scratch manager that has the same hook specs, so
        pluggy's own validation runs and the real manager never sees the object.

        Raises:
            pluggy.PluginValidationError: a hook implementation does not match its spec.
        """
        import pluggy

        scratch = pluggy.PluginManager(self.manager.project_name)
        seen: set[int] = set()
        for caller in vars(self.manager.hook).values():
            spec = getattr(caller, "spec", None)
            if spec is not None and id(spec.namespace) not in seen:
                seen.add(id(spec.namespace))
                scratch.add_hookspecs(spec.namespace)
        scratch.register(obj, name="candidate")

    def close(self) -> None:
        """
        Stop following the host; plugins stay registered as they are.
        """
        self.host.off("after_reload", self._swap)
        self.host.off("after_rollback", self._swap)
        self.host.remove_check(self.validate)

    def _swap(self, old: Plugin, new: Plugin) -> None:
        if old is new:
            return  # the operation failed: nothing changed
        if self.manager.get_plugin(new.name) is None:
            return  # not registered through this bridge (or unregistered by the framework)
        # Unregister even when the object is the same (a module plugin): pluggy must
        # read the new functions from it.
        self.manager.unregister(name=new.name)
        self.manager.register(new.obj, name=new.name)
