"""
`PluggyBridge`: keep a ``pluggy.PluginManager`` registered with the current plugin objects.

pluggy reads a plugin's hook implementations when the plugin is registered and keeps
references to those functions, so a reloaded module's new functions are only called
after the plugin is unregistered and registered again. The bridge does that after
every reload and rollback, and checks before a reload is accepted that the new
object would register (its hook implementations match the manager's specs), so a
plugin that pluggy would reject is rolled back like any plugin failing its check.
Hook implementations the new version no longer defines are gone with the old
registration (the host prunes reloaded modules by default, so no old function
survives in a module plugin's namespace).

Every hook call of the manager is a section of the host's drain gate, through
pluggy's own ``add_hookcall_monitoring``: a reload waits for the hook calls in
flight and holds new ones back until the plugins are re-registered, so a hook call
never reaches a half-reloaded plugin, nor a mix of old and new implementations.

pluggy replays the calls of a *historic* hook to every implementation registered
later. A re-registration after a reload or rollback is not a new plugin, so the
bridge keeps pluggy from replaying them then, unless asked (``replay_historic``).

pluggy is imported only when a bridge is made: it is an optional dependency.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
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
        replay_historic: Whether re-registering a plugin after a reload or rollback
            replays the historic hook calls made so far to its new implementations
            (what pluggy does for a newly registered plugin). False: each historic
            call reaches a plugin once, when it is first registered.
        gate: Make every hook call of the manager a section of the host tracker's
            drain gate (see `versionload.serving`).

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0 ``replay_historic`` and ``gate``; hook calls are sections.
    """

    def __init__(
        self,
        host: PluginHost,
        manager: pluggy.PluginManager,
        *,
        validate: bool = True,
        replay_historic: bool = False,
        gate: bool = True,
    ) -> None:
        import pluggy

        arguments.instance(manager, pluggy.PluginManager, "manager", "pluggy.PluginManager")
        arguments.flag(validate, "validate")
        arguments.flag(replay_historic, "replay_historic")
        arguments.flag(gate, "gate")
        self.host = host
        self.manager = manager
        self.replay_historic = replay_historic
        # Per thread: the sections this bridge entered for hook calls still running,
        # and the object being re-registered without replay (None: not registering).
        self._local = threading.local()
        self._gate = gate
        self._open = True
        # Also without the gate: the monitor is how replays are held back. It is never
        # taken off again: pluggy's undo would also drop every monitor added after it
        # (a framework's tracing), so `close` makes it inert instead.
        manager.add_hookcall_monitoring(self._before_call, self._after_call)
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
        Stop following the host, and stop making hook calls sections; plugins stay registered as they are.
        """
        self.host.off("after_reload", self._swap)
        self.host.off("after_rollback", self._swap)
        self.host.remove_check(self.validate)
        # Hook calls in flight still leave the sections they entered (see _after_call).
        self._open = False

    # -- hook calls as sections -----------------------------------------------------------

    def _before_call(self, hook_name: str, hook_impls: Sequence[Any], kwargs: Mapping[str, object]) -> None:
        registering = getattr(self._local, "registering", None)
        # pluggy replays a historic hook to an implementation being registered by
        # calling it through the monitored path with a list made for that one replay
        # (``[hookimpl]``); emptying that list makes the replay call no implementation.
        # Normal calls get a copy of the hook's list and never happen while this
        # thread registers.
        if (
            registering is not None
            and isinstance(hook_impls, list)
            and hook_impls
            and all(getattr(impl, "plugin", None) is registering for impl in hook_impls)
        ):
            hook_impls.clear()
        section = None
        if self._gate and self._open:
            section = self.host.tracker.serving()
            section.__enter__()
        # One entry per call, pushed once entered (None for a call that is not a
        # section): `_after_call` pops it, also when the hook raised (pluggy calls
        # ``after`` with the failed outcome), so nested calls stay balanced.
        self._stack().append(section)

    def _after_call(
        self, outcome: object, hook_name: str, hook_impls: Sequence[Any], kwargs: Mapping[str, object]
    ) -> None:
        stack = self._stack()
        section = stack.pop() if stack else None
        if section is not None:
            section.__exit__(None, None, None)

    def _stack(self) -> list[Any]:
        try:
            stack: list[Any] = self._local.sections
        except AttributeError:
            stack = self._local.sections = []
        return stack

    # -- re-registering ---------------------------------------------------------------------

    def _swap(self, old: Plugin, new: Plugin) -> None:
        if old is new:
            return  # the operation failed: nothing changed
        if self.manager.get_plugin(new.name) is None:
            return  # not registered through this bridge (or unregistered by the framework)
        # Unregister even when the object is the same (a module plugin): pluggy must
        # read the new functions from it, and drops the ones the new version lacks.
        self.manager.unregister(name=new.name)
        if self.replay_historic:
            self.manager.register(new.obj, name=new.name)
            return
        self._local.registering = new.obj
        try:
            self.manager.register(new.obj, name=new.name)
        finally:
            self._local.registering = None
