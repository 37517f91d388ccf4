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

import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from types import FunctionType, MappingProxyType
from typing import Any, Literal, overload

import attrs
import importlib_metadata

from .. import _arguments as arguments
from .._errors import ReloadError, VersionLoadError
from .._events import Event, because, report_error
from .._fork import renew_after_fork
from .._tracker import Tracker, default_tracker
from .errors import (
    PluginCheckError,
    PluginError,
    PluginLoadError,
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
        self._emit(PluginLoadFailed(**self._fields(entry_point, ()), error=str(error), exc_info=error))

    # -- reload ---------------------------------------------------------------------------

    def reload(self, name: str) -> Plugin:
        """
        Reload every module of the plugin, resolve its entry point again and check it.

        The modules are reloaded in dependency order (see `dependency_order`); other
        plugins of the same unit are reloaded, resolved and checked with it. The entry
        point is read again from the installed metadata, so the new distribution
        version is recorded. If anything fails, every module of the unit is rolled
        back to the version it had before, modules first imported by the failed
        reload are removed again, and ``host[name]`` is unchanged.

        Returns:
            The new `Plugin`.

        Raises:
            PluginNotFoundError: no loaded plugin has that name (a `KeyError`).
            PluginReloadError: a module failed to reload, or the entry point no longer
                resolves (a `versionload.ReloadError`).
            PluginCheckError: the check raised or returned False.
            PluginError: a ``before_reload`` callback raised; nothing was changed.
        """
        with self._lock:
            entry = self._require(name)
            unit = entry.unit
            entries = self._entries_of(unit)
            olds = [e.plugin for e in entries]
            self._before("before_reload", olds, "after_reload")
            news = olds
            try:
                news = self._reload_unit(entry, entries)
            finally:
                self._after("after_reload", olds, news)
            return self._entries[name].plugin

    def _reload_unit(self, requested: Entry, entries: list[Entry]) -> list[Plugin]:
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
        try:
            # A module whose file the new version dropped has nothing to run; it stays
            # as it was, for code of the old version that may still use it.
            reloadable = [module for module in modules if not source_removed(module)]
            # One atomic group: if a module fails, the core puts back the ones that
            # already ran and records no version for any of them.
            if reloadable:
                self._tracker.reload_many(reloadable)
            done = reloadable
            for entry in entries:
                obj = fresh_points[entry.plugin.name].load()
                _refuse_stale(entry.plugin, fresh_points[entry.plugin.name], obj, unit.root)
                self._run_checks(entry.plugin.name, obj, "reload")
        except BaseException as error:
            with because("check_failed" if isinstance(error, PluginCheckError) else "reload_failed"):
                self._undo(unit, before, done)
            if not isinstance(error, Exception):
                raise  # KeyboardInterrupt and friends, after putting everything back
            failure = self._failure(requested, entries, error)
            for entry in entries:
                fields = self._plugin_fields(entry.plugin)
                if isinstance(failure, PluginCheckError):
                    self._emit(PluginCheckFailed(**fields, error=str(failure), exc_info=failure))
                else:
                    self._emit(PluginReloadFailed(**fields, error=str(failure), exc_info=failure))
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
        self._record(unit, "reload")
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
        """
        if to is not None:
            arguments.version_number(to, "to", "plugin version number")
        with self._lock:
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

    def _state(self, unit: Unit, reason: Literal["load", "reload"]) -> State:
        modules = self._adopt(unit.root)
        number = unit.states[-1].number + 1 if unit.states else 1
        return State(
            number,
            reason,
            datetime.now(timezone.utc),
            {module: self._tracker.current(module).number for module in modules},
            {e.plugin.name: e.entry_point for e in self._entries_of(unit)},
            {e.plugin.name: distribution_of(e.entry_point)[1] for e in self._entries_of(unit)},
        )

    def _record(self, unit: Unit, reason: Literal["load", "reload"]) -> None:
        unit.states.append(self._state(unit, reason))
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
    Fail when the entry point still resolves to the old function or class.

    A reload keeps names the new code does not bind (``importlib.reload`` semantics),
    so an entry point whose attribute the new version dropped would silently go on
    resolving to the old code. Functions and classes defined in the unit are always
    new objects after their module ran again, so the same object means a stale name.
    """
    if entry_point.attr is None or obj is not old.obj or not isinstance(obj, (type, FunctionType)):
        return
    if in_unit(obj.__module__, root):
        raise AttributeError(
            f"{entry_point.value!r} still resolves to the object of the previous version: "
            f"the new code no longer defines {entry_point.attr!r}"
        )


def _describe_dist(entry_point: importlib_metadata.EntryPoint) -> str:
    distribution, dist_version = distribution_of(entry_point)
    if distribution is None:
        return "unknown distribution"
    return f"from {distribution} {dist_version}"
