"""
`PluginHost`: plugins found through entry points, reloaded and rolled back as units.

The errors, records, events and units it works with live beside it (``errors.py``,
``records.py``, ``events.py``, ``units.py``); this module holds the host's operations.

A plugin is an entry point of the host's group. Its *unit* is every loaded module in
the top-level package that holds the entry point's module (one level further down
when that package is a namespace package shared by several distributions): an
upgrade replaces the files of a package, not one module, so the package reloads as
a whole. Plugins whose entry points live in the same unit (two plugins from one
distribution) share that unit: they are reloaded, checked and rolled back together,
and their states share version numbers.

A unit's state is a `PluginVersion`: the version number of each of its modules in
the tracker. Reloading records new module versions and a new plugin version;
rolling back asks the tracker to restore each module to the number recorded.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from importlib.machinery import ModuleSpec
from types import FunctionType, MappingProxyType
from typing import Any, Literal, overload

import attrs
import importlib_metadata

from .. import _arguments as arguments
from .._errors import ReloadError, VersionLoadError
from .._events import Event, report_error
from .._fork import renew_after_fork
from .._tracker import Tracker, default_tracker
from .errors import (
    PluginCheckError,
    PluginError,
    PluginLoadError,
    PluginMovedError,
    PluginNotFoundError,
    PluginReloadError,
    PluginVersionNotFoundError,
)
from .events import (
    PluginCheckFailed,
    PluginDiscovered,
    PluginLoaded,
    PluginLoadFailed,
    PluginReloaded,
    PluginReloadFailed,
    PluginRolledBack,
)
from .records import Plugin, PluginVersion
from .units import (
    Entry,
    State,
    Unit,
    dependency_order,
    distribution_of,
    in_unit,
    source_removed,
    unit_modules,
    unit_root,
)

Check = Callable[[Any], object]
BeforeHook = Callable[["Plugin"], object]
AfterHook = Callable[["Plugin", "Plugin"], object]
HookName = Literal["before_reload", "after_reload", "before_rollback", "after_rollback"]
_HOOK_NAMES: tuple[str, ...] = ("before_reload", "after_reload", "before_rollback", "after_rollback")


class PluginHost:
    """
    Loads the plugins of an entry point group, and reloads and rolls them back.

    Args:
        group: The entry point group, for example ``"myapp.plugins"``.
        tracker: The `versionload.Tracker` that records the plugins' modules; None
            means the default tracker. Its hook need not be installed: the host
            adopts every plugin module it loads.
        check: Called with a plugin's object after it is loaded or reloaded; the
            plugin fails if it raises or returns False (None and other values pass).

    .. versionadded:: 0.1.0
    """

    def __init__(self, group: str, *, tracker: Tracker | None = None, check: Check | None = None) -> None:
        arguments.text(group, "group")
        if check is not None:
            arguments.callback(check, "check")
        if tracker is None:
            tracker = default_tracker()
        self._group = group
        self._tracker = tracker
        self._checks: list[Check] = [] if check is None else [check]
        self._entries: dict[str, Entry] = {}
        self._units: dict[str, Unit] = {}
        self._errors: dict[str, Exception] = {}
        self._hooks: dict[str, list[Callable[..., object]]] = {name: [] for name in _HOOK_NAMES}
        # Serialises operations (load_all, reload, rollback), held while callbacks run.
        # Reads never take it: they use _view, replaced whole after every change, so
        # a worker calling plugins under its own lock cannot deadlock with a
        # before_* callback that waits for that lock.
        self._lock = threading.RLock()
        renew_after_fork(self, "_lock", threading.RLock)
        self._view: Mapping[str, Plugin] = MappingProxyType({})

    def __repr__(self) -> str:
        counts = f"plugins={len(self._entries)} errors={len(self._errors)}"
        return f"<versionload.plugins.PluginHost {self._group!r} {counts}>"

    # -- reading --------------------------------------------------------------------------

    @property
    def group(self) -> str:
        """
        The entry point group this host loads.
        """
        return self._group

    @property
    def tracker(self) -> Tracker:
        """
        The tracker that records the plugins' modules.
        """
        return self._tracker

    @property
    def plugins(self) -> Mapping[str, Plugin]:
        """
        The loaded plugins by name, as they are now (a read-only copy).
        """
        return self._view

    @property
    def errors(self) -> Mapping[str, Exception]:
        """
        The plugins that could not be loaded, by name (a read-only copy).

        Each error is a `PluginLoadError` (the entry point's own exception chained as
        ``__cause__``) or a `PluginCheckError`. An entry point ignored because another
        distribution's plugin has its name is listed as ``"name (from dist version)"``.
        """
        return MappingProxyType(dict(self._errors))

    def __getitem__(self, name: str) -> Plugin:
        plugin = self._view.get(name)
        if plugin is None:
            raise self._not_found(name)
        return plugin

    def __contains__(self, name: object) -> bool:
        return name in self._view

    def __iter__(self) -> Iterator[str]:
        return iter(self._view)

    def __len__(self) -> int:
        return len(self._view)

    def history(self, name: str) -> tuple[PluginVersion, ...]:
        """
        The plugin's recorded states, oldest first.

        Raises:
            PluginNotFoundError: no loaded plugin has that name (a `KeyError`).
        """
        entry = self._require(name)
        return tuple(self._version_of(name, state) for state in tuple(entry.unit.states))

    # -- calling --------------------------------------------------------------------------

    @contextlib.contextmanager
    def using(self, name: str) -> Iterator[Any]:
        """
        Use a plugin's current object for the length of a block, as one section of the gate.

        The block is a section of the tracker's drain gate (`versionload.serving`):
        a reload or rollback of any plugin (or module) of that tracker waits until
        the block has ended, and a block that starts while one is applied waits
        until it is done. The object yielded and every module it uses are therefore
        all of one version, from the first line of the block to the last. Keep the
        object only inside the block: after it, a reload may replace it.

        A reload or rollback started inside the block (an admin command that a
        plugin handles) does not wait for the block itself.

        Raises:
            PluginNotFoundError: no loaded plugin has that name (a `KeyError`).

        .. versionadded:: 0.2.0
        """
        with self._tracker.serving():
            # Read after entering: no change applies between this line and the block's end.
            obj = self[name].obj
            yield obj

    def call(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """
        Call a plugin's current object with the arguments given, as one section of the gate.

        The same as ``with host.using(name) as plugin: return plugin(*args, **kwargs)``:
        the call sees one version of the plugin from start to end. To call a method
        of a plugin object, use `using`.

        Raises:
            PluginNotFoundError: no loaded plugin has that name (a `KeyError`).
            TypeError: the plugin's object is not callable.

        .. versionadded:: 0.2.0
        """
        with self._tracker.serving():
            obj = self[name].obj
            if not callable(obj):
                raise TypeError(
                    f"plugin {name!r} is a {type(obj).__name__} object, which cannot be called; "
                    f"use host.using({name!r}) to reach its attributes"
                )
            return obj(*args, **kwargs)

    # -- hooks ----------------------------------------------------------------------------

    @overload
    def on(self, hook: Literal["before_reload", "before_rollback"], callback: BeforeHook) -> None: ...

    @overload
    def on(self, hook: Literal["after_reload", "after_rollback"], callback: AfterHook) -> None: ...

    def on(self, hook: HookName, callback: Callable[..., object]) -> None:
        """
        Call ``callback`` around every reload or rollback of a plugin.

        ``before_*`` callbacks get the `Plugin` about to change: the host can stop
        handing it work and drain what it is doing. If one raises, nothing changes
        and `PluginError` is raised from its exception. ``after_*`` callbacks get the
        old and the new `Plugin` and run whenever the ``before_*`` ones ran, also
        when the operation failed (then the new is the old record): the host swaps
        the references it holds and resumes. Their exceptions are reported through
        ``sys.unraisablehook`` and change nothing. With several plugins in one unit,
        the callbacks run once for each of them.

        Raises:
            InvalidArgumentError: unknown hook name, or ``callback`` is not callable.
        """
        self._hook_list(hook, callback).append(callback)

    def off(self, hook: HookName, callback: Callable[..., object]) -> None:
        """
        Stop calling ``callback``; unknown callbacks are ignored.
        """
        callbacks = self._hook_list(hook, callback)
        if callback in callbacks:
            callbacks.remove(callback)

    def add_check(self, check: Check) -> None:
        """
        Add a check that every plugin object must pass after a load or reload.
        """
        self._checks.append(arguments.callback(check, "check"))

    def remove_check(self, check: Check) -> None:
        """
        Stop running ``check`` (every copy of it that was added); unknown checks are ignored.

        .. versionadded:: 0.2.0
        """
        self._checks[:] = [each for each in self._checks if each != check]

    def _hook_list(self, hook: str, callback: object) -> list[Callable[..., object]]:
        arguments.choice(hook, _HOOK_NAMES, "hook")
        arguments.callback(callback, "callback")
        return self._hooks[hook]

    # -- loading --------------------------------------------------------------------------

    def load_all(self) -> Mapping[str, Plugin]:
        """
        Discover the group's entry points and load each plugin not loaded yet.

        A plugin that fails (its module is missing or raises on import, its attribute
        does not exist, it fails the check, or its name is taken by another
        distribution) is recorded in `errors` and the others are still loaded.
        Plugins that failed before are tried again.

        Returns:
            Every loaded plugin by name (as `plugins`).
        """
        with self._lock:
            touched: list[Unit] = []
            for entry_point in importlib_metadata.entry_points(group=self._group):
                name = entry_point.name
                if name in self._entries:
                    if self._entries[name].plugin.distribution != distribution_of(entry_point)[0]:
                        self._fail(
                            entry_point,
                            PluginLoadError(
                                f"plugin {name!r}: a second entry point {entry_point.value!r} "
                                f"({_describe_dist(entry_point)}) has the same name and is ignored",
                                plugin=name,
                            ),
                            clash=True,
                        )
                    continue
                self._errors.pop(name, None)
                self._emit(PluginDiscovered(**self._fields(entry_point, ()), value=entry_point.value))
                try:
                    unit = self._load(entry_point)
                except PluginError as error:
                    self._fail(entry_point, error)
                    continue
                if unit not in touched:
                    touched.append(unit)
            for unit in touched:
                # New plugins change the unit (their modules join it): a new state.
                self._record(unit, "load")
                for entry in self._entries_of(unit):
                    is_new = entry.plugin.version == 0
                    entry.plugin = self._resolve(entry, unit)
                    if is_new:
                        self._emit(PluginLoaded(**self._plugin_fields(entry.plugin), version=unit.current))
                self._publish()
            return self.plugins

    def _load(self, entry_point: importlib_metadata.EntryPoint) -> Unit:
        name = entry_point.name
        try:
            obj = entry_point.load()
        except Exception as error:
            raise PluginLoadError(
                f"plugin {name!r} = {entry_point.value!r} ({_describe_dist(entry_point)}) "
                f"could not be loaded: {type(error).__name__}: {error}",
                plugin=name,
            ) from error
        self._run_checks(name, obj, "load")
        root = unit_root(entry_point.module)
        modules = self._adopt(root)
        unit = self._units.get(root)
        if unit is None:
            unit = self._units[root] = Unit(root)
        distribution, dist_version = distribution_of(entry_point)
        self._entries[name] = Entry(
            entry_point,
            unit,
            Plugin(name, self._group, entry_point.value, distribution, dist_version, obj, tuple(modules), 0),
        )
        return unit

    def _adopt(self, root: str) -> list[str]:
        """
        Make sure every module of the unit is tracked; the modules in reload order.
        """
        names = unit_modules(root)
        # Modules imported without the hook are adopted in sys.modules order, which is
        # the order their imports finished: the import system moves each module to the
        # end of sys.modules once its code ran. Adoption order becomes their rank.
        for name in names:
            self._tracker.track(sys.modules[name])
        rank = {name: index for index, name in enumerate(self._tracker.tracked())}
        return dependency_order(names, rank, self._tracker.dependency_map())

    def _fail(
        self, entry_point: importlib_metadata.EntryPoint, error: PluginError, clash: bool = False
    ) -> None:
        key = f"{entry_point.name} ({_describe_dist(entry_point)})" if clash else entry_point.name
        self._errors[key] = error
        self._emit(PluginLoadFailed(**self._fields(entry_point, ()), error=str(error)))

    # -- reload ---------------------------------------------------------------------------

    def reload(self, name: str, *, prune: bool = True) -> Plugin:
        """
        Reload every module of the plugin, resolve its entry point again and check it.

        The modules are reloaded in dependency order (see `dependency_order`); other
        plugins of the same unit are reloaded, resolved and checked with it. The entry
        point is read again from the installed metadata, so the new distribution
        version is recorded. If anything fails, every module of the unit is rolled
        back to the version it had before, modules first imported by the failed
        reload are removed again, and ``host[name]`` is unchanged.

        The whole operation is one change of the tracker's drain gate: it first waits
        for the sections in flight (`using`, `call`, `versionload.serving`, pluggy
        hook calls through a `PluggyBridge`) to end, within the tracker's
        ``drain_timeout``, and holds new ones back until the plugin is reloaded,
        resolved, checked (or rolled back), so no section sees it half-done. A
        reload asked for inside a section does not wait for that section.

        A reload cannot succeed without running new code. When the plugin's package
        is now found somewhere else than where it was loaded from (a wheel replaced
        by an editable install, a new directory on ``sys.path``), its modules run the
        files of the new location (a module the new location lacks stays as it was);
        a rollback returns to the old ones. When the package is no longer found at
        all, or no module of the plugin has a file left to run, the reload fails.
        The entry point must resolve to an object of the new code (see
        ``docs/plugins.md``).

        Args:
            prune: Run each module's new code in an emptied namespace (as a fresh
                import would), so that names the new version no longer defines are
                gone; a rollback brings them back. False keeps them, as
                ``importlib.reload`` does.

        Returns:
            The new `Plugin`.

        Raises:
            PluginNotFoundError: no loaded plugin has that name (a `KeyError`).
            PluginReloadError: a module failed to reload, the entry point no longer
                resolves or resolves to an object of the old code, or no new code
                could run (a `versionload.ReloadError`).
            PluginMovedError: the plugin's package is no longer found on ``sys.path``.
            PluginCheckError: the check raised or returned False.
            PluginError: a ``before_reload`` callback raised; nothing was changed.
            DrainTimeoutError: serving sections did not end in time; nothing was changed.
        """
        arguments.flag(prune, "prune")
        entry = self._require(name)
        # The gate before the host's lock: a thread inside a section that asks for a
        # reload while another reload waits for that section must get through the
        # gate (it does not wait for its own section) rather than wait for the lock.
        with self._tracker.drained(self._unit_names(entry.unit), operation="plugin_reload"), self._lock:
            entry = self._require(name)
            unit = entry.unit
            entries = self._entries_of(unit)
            olds = [e.plugin for e in entries]
            self._before("before_reload", olds, "after_reload")
            news = olds
            try:
                news = self._reload_unit(entry, entries, prune)
            finally:
                self._after("after_reload", olds, news)
            return self._entries[name].plugin

    def _unit_names(self, unit: Unit) -> tuple[str, ...]:
        return tuple(unit_modules(unit.root)) or (unit.root,)

    def _reload_unit(self, requested: Entry, entries: list[Entry], prune: bool) -> list[Plugin]:
        unit = requested.unit
        if self._tracker.max_versions < 2:
            raise PluginReloadError(
                f"plugin {requested.plugin.name!r}: the tracker keeps {self._tracker.max_versions} version "
                f"per module, so a failed reload could not be rolled back; nothing was reloaded",
                plugin=requested.plugin.name,
                module=requested.entry_point.module,
            )
        started = time.perf_counter_ns()
        fresh_points = self._fresh_entry_points(entries)
        modules = self._adopt(unit.root)
        before = {module: self._tracker.current(module).number for module in modules}
        done: list[str] = []
        repointed: dict[str, object] = {}
        try:
            moved = _relocation(requested, unit.root)
            if moved is None:
                # A module whose file the new version dropped has nothing to run; it
                # stays as it was, for code of the old version that may still use it.
                reloadable = [module for module in modules if not source_removed(module)]
            else:
                reloadable = _repoint(modules, unit.root, moved, repointed)
            if not reloadable:
                raise PluginReloadError(
                    f"plugin {requested.plugin.name!r}: none of its modules ({', '.join(modules)}) has a "
                    f"source file left to run, so no new code would run; nothing was reloaded",
                    plugin=requested.plugin.name,
                    module=requested.entry_point.module,
                )
            # One atomic group: if a module fails, the core puts back the ones that
            # already ran and records no version for any of them.
            self._tracker.reload_many(reloadable, prune=prune)
            done = reloadable
            for entry in entries:
                obj = fresh_points[entry.plugin.name].load()
                _refuse_stale(entry.plugin, fresh_points[entry.plugin.name], obj, unit.root)
                self._run_checks(entry.plugin.name, obj, "reload")
        except BaseException as error:
            self._undo(unit, before, done)
            for package, path in repointed.items():
                # The core put back namespaces as they were when it began, after the
                # packages were pointed at the new location: point them back.
                vars(sys.modules[package])["__path__"] = path
            if not isinstance(error, Exception):
                raise  # KeyboardInterrupt and friends, after putting everything back
            failure = self._failure(requested, entries, error)
            for entry in entries:
                fields = self._plugin_fields(entry.plugin)
                if isinstance(failure, PluginCheckError):
                    self._emit(PluginCheckFailed(**fields, error=str(failure)))
                else:
                    self._emit(PluginReloadFailed(**fields, error=str(failure)))
                self._emit(
                    PluginRolledBack(
                        **fields,
                        version=entry.plugin.version,
                        previous_version=entry.plugin.version,
                        reason="check_failed" if isinstance(failure, PluginCheckError) else "reload_failed",
                    )
                )
            if failure is error:
                raise
            raise failure from error
        previous = unit.current
        for entry in entries:
            entry.entry_point = fresh_points[entry.plugin.name]
        self._record(unit, "reload", ran=tuple(done))
        duration_ms = (time.perf_counter_ns() - started) / 1e6
        for entry in entries:
            entry.plugin = self._resolve(entry, unit)
            self._publish()
            self._emit(
                PluginReloaded(
                    **self._plugin_fields(entry.plugin),
                    version=unit.current,
                    previous_version=previous,
                    duration_ms=duration_ms,
                    ran=tuple(done),
                    previous_versions=tuple(before.get(module, 0) for module in entry.plugin.modules),
                )
            )
        return [entry.plugin for entry in entries]

    def _fresh_entry_points(self, entries: list[Entry]) -> dict[str, importlib_metadata.EntryPoint]:
        """
        The entry points as the installed metadata has them now (an upgrade may change them).
        """
        found: dict[str, importlib_metadata.EntryPoint] = {}
        available = importlib_metadata.entry_points(group=self._group)
        for entry in entries:
            name = entry.plugin.name
            matches = [
                ep
                for ep in available
                if ep.name == name and distribution_of(ep)[0] == entry.plugin.distribution
            ]
            if not matches:
                raise PluginReloadError(
                    f"plugin {name!r}: its entry point is no longer installed; nothing was reloaded",
                    plugin=name,
                    module=entry.entry_point.module,
                )
            if not in_unit(matches[0].module, entry.unit.root):
                raise PluginReloadError(
                    f"plugin {name!r}: its entry point now points outside {entry.unit.root!r} "
                    f"({matches[0].value!r}); load it with a new host instead; nothing was reloaded",
                    plugin=name,
                    module=matches[0].module,
                )
            found[name] = matches[0]
        return found

    def _undo(self, unit: Unit, before: Mapping[str, int], done: list[str]) -> None:
        """
        Put every module of the unit back to its version in ``before``.
        """
        for module in reversed(done):
            self._tracker.rollback(module, to=before[module])
        for module in unit_modules(unit.root):
            if module not in before:
                # First imported by the failed reload: the old code never saw it.
                self._tracker.forget(module)
                sys.modules.pop(module, None)

    def _failure(self, requested: Entry, entries: list[Entry], error: Exception) -> PluginError:
        name = requested.plugin.name
        if isinstance(error, PluginError):
            return error
        if isinstance(error, ReloadError):
            return PluginReloadError(
                f"plugin {name!r}: reloading {error.module!r} failed; every module of the plugin "
                f"was rolled back: {error}",
                plugin=name,
                module=error.module,
            )
        return PluginReloadError(
            f"plugin {name!r}: the reloaded entry point does not resolve ({type(error).__name__}: {error}); "
            f"every module of the plugin was rolled back",
            plugin=name,
            module=requested.entry_point.module,
        )

    # -- rollback -------------------------------------------------------------------------

    def rollback(self, name: str, to: int | None = None) -> Plugin:
        """
        Return every module of the plugin to the versions recorded in plugin version ``to``.

        Other plugins of the same unit move with it. Modules first imported after that
        version stay loaded (their parents no longer refer to them).

        Args:
            to: The plugin version; None means the highest one below the current.

        Returns:
            The `Plugin` in that state.

        Raises:
            PluginNotFoundError: no loaded plugin has that name (a `KeyError`).
            PluginVersionNotFoundError: no such version, or a module version it needs was pruned.
            InvalidArgumentError: ``to`` is not an int.
            PluginError: a ``before_rollback`` callback raised; nothing was changed.
            DrainTimeoutError: serving sections did not end in time; nothing was changed.
        """
        if to is not None:
            arguments.version_number(to, "to", "plugin version number")
        entry = self._require(name)
        # Gate first, then the lock: see `reload`. Names a pruning reload removed come
        # back with the module versions (the tracker's rollback restores namespaces).
        with self._tracker.drained(self._unit_names(entry.unit), operation="plugin_rollback"), self._lock:
            entry = self._require(name)
            unit = entry.unit
            target = self._target(name, unit, to)
            for module, number in target.modules.items():
                try:
                    available = {v.number for v in self._tracker.history(module)}
                except VersionLoadError:
                    available = set()
                if number not in available:
                    raise PluginVersionNotFoundError(
                        f"plugin {name!r}: version {target.number} needs version {number} of {module!r}, "
                        f"which is no longer kept (pruned: raise the tracker's max_versions to keep more)",
                        plugin=name,
                    )
            entries = self._entries_of(unit)
            olds = [e.plugin for e in entries]
            self._before("before_rollback", olds, "after_rollback")
            news = olds
            try:
                previous = unit.current
                for module, number in target.modules.items():
                    if self._tracker.current(module).number != number:
                        self._tracker.rollback(module, to=number)
                unit.current = target.number
                for e in entries:
                    e.entry_point = target.entry_points.get(e.plugin.name, e.entry_point)
                    e.plugin = self._resolve(e, unit)
                    self._publish()
                    self._emit(
                        PluginRolledBack(
                            **self._plugin_fields(e.plugin),
                            version=target.number,
                            previous_version=previous,
                            reason="requested",
                        )
                    )
                news = [e.plugin for e in entries]
            finally:
                self._after("after_rollback", olds, news)
            return entry.plugin

    def _target(self, name: str, unit: Unit, to: int | None) -> State:
        numbers = unit.numbers()
        if to is None:
            below = [number for number in numbers if number < unit.current]
            if not below:
                raise PluginVersionNotFoundError(
                    f"plugin {name!r} has no version below {unit.current}", plugin=name
                )
            to = below[-1]
        if to not in numbers:
            shown = ", ".join(map(str, numbers))
            raise PluginVersionNotFoundError(
                f"plugin {name!r} has no version {to} (available: {shown})", plugin=name
            )
        return unit.state(to)

    # -- helpers --------------------------------------------------------------------------

    def _publish(self) -> None:
        self._view = MappingProxyType(
            {name: entry.plugin for name, entry in self._entries.items() if entry.plugin.version}
        )

    def _require(self, name: str) -> Entry:
        entry = self._entries.get(name)
        if entry is None or not entry.plugin.version:
            raise self._not_found(name)
        return entry

    def _not_found(self, name: str) -> PluginNotFoundError:
        known = ", ".join(sorted(self._view)) or "none"
        error = self._errors.get(name)
        hint = f"; it failed to load: {error}" if error is not None else ""
        if not self._entries and not self._errors:
            hint = "; nothing has been loaded yet (load_all() loads the group's plugins)"
        return PluginNotFoundError(
            f"no plugin {name!r} in group {self._group!r} (loaded: {known}){hint}", plugin=name
        )

    def _entries_of(self, unit: Unit) -> list[Entry]:
        return [entry for entry in self._entries.values() if entry.unit is unit]

    def _state(self, unit: Unit, reason: Literal["load", "reload"], ran: tuple[str, ...]) -> State:
        modules = self._adopt(unit.root)
        number = unit.states[-1].number + 1 if unit.states else 1
        return State(
            number,
            reason,
            datetime.now(timezone.utc),
            {module: self._tracker.current(module).number for module in modules},
            {e.plugin.name: e.entry_point for e in self._entries_of(unit)},
            {e.plugin.name: distribution_of(e.entry_point)[1] for e in self._entries_of(unit)},
            ran,
        )

    def _record(self, unit: Unit, reason: Literal["load", "reload"], ran: tuple[str, ...] = ()) -> None:
        unit.states.append(self._state(unit, reason, ran))
        unit.current = unit.states[-1].number

    def _resolve(self, entry: Entry, unit: Unit) -> Plugin:
        """
        The plugin as the unit's current state has it: the object resolved again.
        """
        state = unit.state(unit.current)
        entry_point = entry.entry_point
        return attrs.evolve(
            entry.plugin,
            value=entry_point.value,
            obj=entry_point.load(),
            dist_version=state.dist_versions.get(entry.plugin.name),
            modules=tuple(state.modules),
            version=unit.current,
        )

    def _run_checks(self, name: str, obj: object, stage: str) -> None:
        for check in tuple(self._checks):
            try:
                result = check(obj)
            except Exception as error:
                raise PluginCheckError(
                    f"plugin {name!r} failed its check after {stage}: {type(error).__name__}: {error}",
                    plugin=name,
                ) from error
            if result is False:
                raise PluginCheckError(
                    f"plugin {name!r} failed its check after {stage}: "
                    f"{getattr(check, '__qualname__', repr(check))} returned False",
                    plugin=name,
                )

    def _before(self, hook: str, plugins: list[Plugin], after: str) -> None:
        for callback in tuple(self._hooks[hook]):
            for plugin in plugins:
                try:
                    callback(plugin)
                except Exception as error:
                    self._after(after, plugins, plugins)
                    raise PluginError(
                        f"plugin {plugin.name!r}: {hook} callback {callback!r} raised "
                        f"{type(error).__name__}: {error}; nothing was changed",
                        plugin=plugin.name,
                    ) from error

    def _after(self, hook: str, olds: list[Plugin], news: list[Plugin]) -> None:
        for callback in tuple(self._hooks[hook]):
            for old, new in zip(olds, news, strict=True):
                try:
                    callback(old, new)
                except Exception as error:  # noqa: BLE001 - reported, not swallowed
                    report_error(error, f"versionload: {hook} callback {callback!r} failed for {old.name!r}")

    def _version_of(self, name: str, state: State) -> PluginVersion:
        return PluginVersion(
            plugin=name,
            number=state.number,
            reason=state.reason,
            created_at=state.created_at,
            dist_version=state.dist_versions.get(name),
            modules=state.modules,
            ran=state.ran,
        )

    def _fields(self, entry_point: importlib_metadata.EntryPoint, modules: tuple[str, ...]) -> dict[str, Any]:
        distribution, dist_version = distribution_of(entry_point)
        return {
            "module": entry_point.module,
            "plugin": entry_point.name,
            "group": self._group,
            "distribution": distribution,
            "dist_version": dist_version,
            "modules": modules,
            "versions": tuple(self._module_number(module) for module in modules),
        }

    def _plugin_fields(self, plugin: Plugin) -> dict[str, Any]:
        return {
            "module": plugin.value.partition(":")[0].strip(),
            "plugin": plugin.name,
            "group": plugin.group,
            "distribution": plugin.distribution,
            "dist_version": plugin.dist_version,
            "modules": plugin.modules,
            "versions": tuple(self._module_number(module) for module in plugin.modules),
        }

    def _module_number(self, module: str) -> int:
        try:
            return self._tracker.current(module).number
        except VersionLoadError:
            return 0

    def _emit(self, event: Event) -> None:
        self._tracker.emit(event)


def _refuse_stale(old: Plugin, entry_point: importlib_metadata.EntryPoint, obj: object, root: str) -> None:
    """
    Fail when the entry point resolves to an object of the old code, whatever its type.

    A reload with ``prune=False`` keeps names the new code does not bind
    (``importlib.reload`` semantics), so an entry point whose attribute the new
    version dropped would go on resolving to the old object. The unit's modules ran
    again, so whatever the new version defines in the unit is a new object now (a
    module whose file the new version dropped did not run: what it holds is old code):

    - a function or class whose ``__module__`` is in the unit, or an instance of a
      class defined in the unit, that is *the same object* as before, was not made
      by the new code;
    - an instance of a unit class that is no longer the class its module now holds
      under that name was made by the old code (kept in some other name).

    The same object is accepted when it comes from outside the unit (a re-export of
    a library's function or singleton, which did not change).
    """
    if not entry_point.attr:
        return  # the module itself: it ran again
    defined = isinstance(obj, (type, FunctionType))
    home: object = getattr(obj if defined else type(obj), "__module__", None)
    if not isinstance(home, str) or not in_unit(home, root):
        return
    if obj is old.obj:
        raise AttributeError(
            f"{entry_point.value!r} still resolves to the object of the previous version: "
            f"the new code no longer defines {entry_point.attr!r}"
        )
    if not defined:
        cls = type(obj)
        current: object = sys.modules.get(home)
        for part in cls.__qualname__.split("."):
            current = getattr(current, part, None)
        if current is not None and current is not cls:
            raise AttributeError(
                f"{entry_point.value!r} resolves to an instance of the previous version's "
                f"{cls.__qualname__} (the new code defines a new {cls.__qualname__})"
            )


def _find_now(name: str, path: object) -> ModuleSpec | None:
    """
    Where a fresh import would find ``name`` now (``path``: its parent's search path).
    """
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is not None:
            found: ModuleSpec | None = find_spec(name, path, None)
            if found is not None:
                return found
    return None


def _relocation(requested: Entry, root: str) -> ModuleSpec | None:
    """
    Where the unit's package is found now, when that is not where it was loaded from.

    Reloading runs each module's file again from where the module was loaded; after
    the distribution's files moved (a wheel replaced by an editable install, a new
    directory earlier on ``sys.path``), that would run the old files, or none, while
    the metadata already describes the new ones. The import system's finders are
    asked where the package is now, as a fresh import would. None: it has not moved.

    Raises:
        PluginMovedError: the package is no longer found at all, or not as a file.
    """
    module = sys.modules.get(root)
    loaded = getattr(getattr(module, "__spec__", None), "origin", None)
    if not isinstance(loaded, str) or not os.path.isabs(loaded):
        return None  # built in, frozen or otherwise without a file: nothing to compare
    parent = root.rpartition(".")[0]
    found = _find_now(root, getattr(sys.modules.get(parent), "__path__", None) if parent else None)
    now = getattr(found, "origin", None)
    if found is not None and isinstance(now, str) and os.path.isabs(now):
        if os.path.realpath(now) == os.path.realpath(loaded):
            return None
        return found
    where = "is no longer found on sys.path" if found is None else f"is now {found!r}"
    name = requested.plugin.name
    raise PluginMovedError(
        f"plugin {name!r}: its package {root!r} was loaded from {loaded} but {where}; nothing was reloaded",
        plugin=name,
        module=root,
    )


def _repoint(modules: list[str], root: str, found: ModuleSpec, saved: dict[str, object]) -> list[str]:
    """
    Point the unit's packages at the new location; the modules found there, to reload.

    The reload finds each submodule through its parent package's ``__path__``, and
    the package itself is reloaded after its submodules, so every package's search
    path is set beforehand, from the top down (old paths go into ``saved``). A
    module not found under the new location is left as it was (its file is gone
    from the new version), and so is everything below it.
    """
    reloadable: list[str] = []
    spec_of: dict[str, ModuleSpec | None] = {root: found}
    for name in sorted(modules, key=lambda each: each.count(".")):
        if name != root:
            parent = name.rpartition(".")[0]
            if parent not in saved:
                spec_of[name] = None  # its parent was not moved: do not look in the old place
                continue
            spec_of[name] = _find_now(name, vars(sys.modules[parent]).get("__path__"))
        spec = spec_of[name]
        if spec is None or not spec.has_location:
            continue
        namespace = vars(sys.modules[name])
        if spec.submodule_search_locations is not None and "__path__" in namespace:
            saved[name] = namespace["__path__"]
            namespace["__path__"] = list(spec.submodule_search_locations)
        reloadable.append(name)
    return [name for name in modules if name in reloadable]


def _describe_dist(entry_point: importlib_metadata.EntryPoint) -> str:
    distribution, dist_version = distribution_of(entry_point)
    if distribution is None:
        return "unknown distribution"
    return f"from {distribution} {dist_version}"
