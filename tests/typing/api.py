"""
The public API used as an application would use it, for mypy to check (never collected by pytest).

Lines marked ``type: ignore[...]`` are calls the annotations must reject; mypy's
``warn_unused_ignores`` (part of ``strict``) fails if one of them is accepted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from types import ModuleType

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


def rejected(module: ModuleType) -> None:
    versionload.reload(42)  # type: ignore[arg-type]
    versionload.rollback(module, to="1")  # type: ignore[arg-type]
    versionload.diff(module, 1, None)  # type: ignore[arg-type]
    versionload.install(max_versions="3")  # type: ignore[arg-type]
    versionload.install("app.*")  # type: ignore[call-arg]
    number: str = versionload.current(module).number  # type: ignore[assignment]
    print(number)


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
