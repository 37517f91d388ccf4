"""
The public API used as an application would use it, for mypy to check (never collected by pytest).

Lines marked ``type: ignore[...]`` are calls the annotations must reject; mypy's
``warn_unused_ignores`` (part of ``strict``) fails if one of them is accepted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from types import ModuleType
from typing import Any

import versionload
from versionload import (
    Event,
    ModuleReloaded,
    ModuleVersion,
    NamespaceDiff,
    ReloadError,
    Tracker,
    VersionLoadError,
)
from versionload.plugins import PluginHost


def on_event(event: Event) -> None:
    if isinstance(event, ModuleReloaded):
        changed: tuple[str, ...] = event.changed
        print(event.module, event.version, event.previous_version, changed)
    print(json.dumps(event.fields()))


def deploy(module: ModuleType) -> ModuleType:
    tracker: Tracker = versionload.install(
        include=["app.*", "plugins.*"], exclude="app.tests.*", max_versions=5
    )
    tracker.subscribe(on_event)
    before: ModuleVersion = versionload.current(module)
    try:
        module = versionload.reload(module)
    except ReloadError as error:
        cause: BaseException | None = error.__cause__
        print("kept", before.number, "because", cause)
        return module
    except VersionLoadError:
        raise
    changes: NamespaceDiff = versionload.diff(module, before.number, versionload.current(module).number)
    added: tuple[str, ...] = changes.added
    if "broken" in added:
        module = versionload.rollback(module, to=before.number)
    tracker.unsubscribe(on_event)
    return module


def inspect_history(name: str) -> list[tuple[int, str, str | None, datetime]]:
    rows: list[tuple[int, str, str | None, datetime]] = []
    for version in versionload.history(name):
        digest: str | None = version.source_sha256
        names: frozenset[str] = version.names
        module_class: type[ModuleType] = version.module_class
        print(module_class.__name__)
        print(len(names), digest, version.origin, dict(version.bindings))
        rows.append((version.number, version.reason, version.origin, version.created_at))
    return rows


def own_tracker() -> None:
    tracker = Tracker(max_versions=3)
    tracker.install()
    tracker.max_versions = 4
    count: int = tracker.max_versions
    adopted: ModuleVersion = tracker.track("json")
    tracked: tuple[str, ...] = tracker.tracked()
    forgotten: bool = tracker.forget("json")
    print(count, adopted, tracked, forgotten, tracker.installed)
    tracker.uninstall()
    tracker.clear()
    versionload.uninstall()
    default: Tracker = versionload.default_tracker()
    print(default)


def front_end(tracker: Tracker, event: Event) -> dict[str, tuple[str, ...]]:
    found: versionload.TrackedModule | None = tracker.lookup("app.views")
    if found is not None:
        module: ModuleType = found.module
        current: ModuleVersion = found.current
        kept: tuple[ModuleVersion, ...] = found.versions
        print(found.name, module, current.number, len(kept))
    tracker.emit(event)
    watcher = versionload.watch("src", tracker=tracker)
    watched: bool = watcher.watches("src/app/views.py")
    watcher.reindex()
    watcher.stop()
    print(watched)
    return tracker.dependency_map()


def plugin_checks(host: PluginHost) -> None:
    def has_name(obj: object) -> bool:
        return hasattr(obj, "name")

    host.add_check(has_name)
    host.remove_check(has_name)


def plugin_calls(host: PluginHost) -> None:
    from versionload.plugins import PluginMovedError, PluginReloadError

    with host.using("greeter") as greeter:
        print(greeter.handle("Ada"))
    answer: object = host.call("shout", "hi")
    try:
        plugin = host.reload("greeter", prune=False)
    except PluginMovedError as moved:
        error: PluginReloadError = moved
        print(error.module)
    else:
        ran: tuple[str, ...] = host.history(plugin.name)[-1].ran
        print(ran, answer)
    host.reload("greeter", prune="no")  # type: ignore[arg-type]


def rejected(module: ModuleType) -> None:
    versionload.reload(42)  # type: ignore[arg-type]
    versionload.rollback(module, to="1")  # type: ignore[arg-type]
    versionload.diff(module, 1, None)  # type: ignore[arg-type]
    versionload.install(max_versions="3")  # type: ignore[arg-type]
    versionload.install("app.*")  # type: ignore[call-arg]
    number: str = versionload.current(module).number  # type: ignore[assignment]
    print(number)


def cascades(module: ModuleType) -> None:
    versionload.reload(module, cascade=True)
    versionload.reload(module, cascade="app.*")
    versionload.reload(module, cascade=["app.*", "tools"])
    plan: versionload.ReloadPlan = versionload.plan(module, cascade=True)
    modules: tuple[str, ...] = plan.modules
    adopted: tuple[str, ...] = plan.adopted
    trigger: str = plan.trigger
    print(modules, adopted, trigger, Tracker().plan("app", cascade=("app.*",)).modules)
    versionload.reload(module, cascade=3)  # type: ignore[arg-type]
    plan.trigger = "other"  # type: ignore[misc]


def serving_requests(module: ModuleType) -> None:
    from versionload import gate

    versionload.install(drain_timeout=5.0)
    with versionload.serving():
        versionload.reload(module, prune=True)

    @versionload.serving()
    def handle(request: str) -> int:
        return len(request)

    length: int = handle("x")
    tracker = Tracker(drain_timeout=None)
    timeout: float | None = tracker.drain_timeout
    in_flight: int = tracker.sections_in_flight
    try:
        versionload.reload_many([module], prune=True)
    except versionload.DrainTimeoutError as error:
        waited: int = error.in_flight
        names: tuple[str, ...] = error.modules
        print(waited, names)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        return [b""]

    wrapped = gate.wsgi(app, tracker=tracker)
    print(length, timeout, in_flight, wrapped)


def fleet_usage(tracker: Tracker) -> None:
    import versionload.fleet

    member: versionload.fleet.Member = versionload.fleet.join(
        "rediss://ops:pw@cache:6380/0", group="web", name="web-1", tracker=tracker
    )
    fleet = versionload.fleet.Fleet("redis://cache:6379/0", group="web")
    infos: tuple[versionload.fleet.MemberInfo, ...] = fleet.members()
    result: versionload.fleet.FleetResult = fleet.reload(["app.a", "app.b"], cascade=True, timeout=5.0)
    failed: Mapping[str, str] = result.failed
    ok: bool = result.ok and fleet.rollback("app.a", to_sha256="0" * 64).ok and fleet.undo(timeout=3).ok
    print(infos, failed, ok, result.applied, result.stragglers, result.rolled_back)
    member.leave()
    fleet.reload("app.a", prune="yes")  # type: ignore[arg-type]
