"""
Reloading several modules as one transaction: `reload_many`, cascades, and the
per-module steps every `Tracker.reload` runs (in-place updates, migrations).

A group holds the import lock of each of its modules (taken in name order) for its
whole run, so no import or reload of a member interleaves with it. It runs each
module's new code in turn; when one fails (its code, its in-place update, or its
``__versionload_migrate__``), the modules that already ran are undone, newest
first: in-place changes reverted from their log, namespaces and ``sys.modules``
entries put back. No version is recorded for any of them. Only when every module
succeeded are their versions recorded, one after another.

An in-place reload of one module without ``cascade`` is a group of one that emits no
group event and raises the module's own `ReloadError`, as the plain engine does; a
plain reload uses the engine itself, with `migrator` as its finishing step.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any, Literal

from ._arguments import UpdateMode, update_mode
from ._engine import (
    Staged,
    _parent_path,
    _reloaded_event,
    _reloading,
    commit,
    current_or_adopt,
    execute,
    loaded_module,
    module_lock,
    resolve_loaded,
    unstage,
)
from ._errors import GroupReloadError, InvalidArgumentError, ModuleNotLoadedError, ReloadError
from ._events import (
    CascadeFailed,
    CascadeReloaded,
    Event,
    GroupFailed,
    GroupReloaded,
    ModulePatched,
    capped,
    current_reason,
)
from ._graph import cascade_order, dependency_map
from ._inplace import Ledger, Patcher
from ._registry import Registry

#: The hook a module defines to carry state over from its previous version.
MIGRATE = "__versionload_migrate__"

_MISSING: Any = object()


def migrator(name: str, module: ModuleType, before: Mapping[str, object]) -> None:
    """
    The finishing step of a plain reload: run the module's migration hook, if any.
    """
    _finish(name, module, before, None)


def _finish(name: str, module: ModuleType, before: Mapping[str, object], patcher: Patcher | None) -> None:
    namespace = module.__dict__
    hook = namespace.get(MIGRATE, _MISSING)
    # Only a hook the new code defined: a name the new code no longer defines
    # survives the reload (as in importlib) and must not run again.
    migrate = hook if hook is not before.get(MIGRATE, _MISSING) and callable(hook) else None
    if patcher is not None:
        patcher.update_namespace(namespace, before)  # undoes itself on error
    if migrate is not None:
        try:
            migrate(before)
        except BaseException:
            if patcher is not None:
                patcher.undo()
            raise


def _finisher(mode: UpdateMode) -> Callable[[str, ModuleType, Mapping[str, object]], Patcher | None]:
    def finish(name: str, module: ModuleType, before: Mapping[str, object]) -> Patcher | None:
        patcher = Patcher(name) if mode == "in-place" else None
        _finish(name, module, before, patcher)
        return patcher

    return finish


def _undo(staged: Staged) -> None:
    if isinstance(staged.finished, Patcher):
        staged.finished.undo()
    unstage(staged)


def reload_group(
    registry: Registry,
    ledger: Ledger,
    targets: Sequence[object],
    *,
    update: object = None,
    kind: Literal["single", "cascade", "many"] = "single",
    prune: bool = False,
) -> tuple[ModuleType, ...]:
    """
    Reload ``targets`` in the given order as one transaction (see the module docstring).
    """
    mode = update_mode(update)
    resolved = [resolve_loaded(target) for target in targets]
    if not resolved:
        return ()
    names = tuple(name for name, _ in resolved)
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"a module appears more than once in the group: {list(names)!r}")
    trigger = names[0] if kind == "cascade" else None
    in_progress: set[str] = _reloading.__dict__.setdefault("names", set())
    finish = _finisher(mode)
    started = time.perf_counter_ns()
    events: list[Event] = []
    versions: list[int] = []
    with contextlib.ExitStack() as locks:
        for name in sorted(names):
            locks.enter_context(module_lock(name))
        # A module whose own code reloads it gets it back unchanged, as importlib does.
        active = [(name, module) for name, module in resolved if name not in in_progress]
        for name, module in active:
            if sys.modules.get(name) is not module:
                loaded_module(name)  # says what is there instead, if anything
                raise ModuleNotLoadedError(f"module {name!r} not in sys.modules", module=name)
        paths = {name: _parent_path(name) for name, _ in active}
        staged: list[Staged] = []
        failure: ReloadError | None = None
        in_progress.update(name for name, _ in active)
        try:
            for name, module in active:
                previous = current_or_adopt(registry, name, module)
                staged.append(execute(registry, name, module, paths[name], previous, finish, prune=prune))
        except BaseException as error:
            for each in reversed(staged):
                _undo(each)
            if kind == "single" or not isinstance(error, ReloadError):
                raise
            failure = error
        finally:
            in_progress.difference_update(name for name, _ in active)
        if failure is None:
            for each in staged:
                version, duration_ns = commit(registry, each)
                versions.append(version.number)
                # A cascade's dependents are reloaded because their trigger changed.
                why = "cascade" if trigger is not None and each.name != trigger else None
                events.append(_reloaded_event(each.previous, version, duration_ns, why))
                if isinstance(each.finished, Patcher):
                    history = registry.require(each.name, each.module)
                    ledger.record(each.name, history, each.previous.number, version.number, each.finished)
                    events.append(
                        ModulePatched(
                            module=each.name,
                            version=version.number,
                            patched=capped(each.finished.patched),
                            rebound=capped(str(f) for f in each.finished.fallbacks),
                            patched_count=len(each.finished.patched),
                            rebound_count=len(each.finished.fallbacks),
                            reason=why or current_reason(),
                        )
                    )
        # Read while still holding the locks: once they are released another thread
        # may delete an entry, and a group that succeeded must not end in a KeyError.
        result = tuple(sys.modules.get(name, module) for name, module in resolved)
    if failure is not None:
        # Outside the locks: subscribers and log processors are user code.
        failed = active[len(staged)][0]
        undone = tuple(each.name for each in staged)
        _emit_failure(registry, names, trigger, failed, failure, undone, started)
        raise _group_error(names, kind, failed, failure) from failure
    duration_ms = (time.perf_counter_ns() - started) / 1e6
    if trigger is not None:
        events.append(
            CascadeReloaded(
                module=names[0],
                trigger=trigger,
                modules=names,
                versions=tuple(versions),
                update=mode,
                duration_ms=duration_ms,
            )
        )
    elif kind == "many":
        events.append(
            GroupReloaded(
                module=names[0], modules=names, versions=tuple(versions), update=mode, duration_ms=duration_ms
            )
        )
    registry.emit_all(events)
    # A module may have replaced itself in sys.modules while executing.
    return result


def _emit_failure(
    registry: Registry,
    names: tuple[str, ...],
    trigger: str | None,
    failed: str,
    error: BaseException,
    undone: tuple[str, ...],
    started: int,
) -> None:
    position = names.index(failed)
    cause = error.__cause__ or error
    common: dict[str, Any] = {
        "module": names[0],
        "modules": names,
        "failed": failed,
        "error": repr(cause),
        "undone": undone,
        "skipped": names[position + 1 :],
        "duration_ms": (time.perf_counter_ns() - started) / 1e6,
        "exc_info": cause,
    }
    event: Event = GroupFailed(**common) if trigger is None else CascadeFailed(trigger=trigger, **common)
    registry.emit_all([event])


def _group_error(names: tuple[str, ...], kind: str, failed: str, error: BaseException) -> GroupReloadError:
    what = f"cascade reload of {names[0]!r}" if kind == "cascade" else "group reload"
    cause = error.__cause__ or error
    return GroupReloadError(
        f"{what} failed in {failed!r} (module {names.index(failed) + 1} of {len(names)}): {cause!r}; "
        f"all {len(names)} modules are as they were before",
        module=failed,
        modules=names,
        path=getattr(error, "path", None),
    )


def cascade_targets(registry: Registry, target: object) -> list[object]:
    """
    ``target`` and the tracked modules that depend on it, in the order to reload them.
    """
    name, module = resolve_loaded(target)
    # An untracked trigger is adopted first, so that it is a node of the graph.
    with module_lock(name):
        current_or_adopt(registry, name, module)
    order = cascade_order(dependency_map(registry), name)
    return [module if each == name else each for each in order]


def restore_states(registry: Registry, ledger: Ledger) -> Callable[[str, int], None]:
    """
    The rollback step that puts in-place-updated objects back (see `Ledger.restore`).
    """

    def restore(name: str, number: int) -> None:
        found = registry.find(name)
        if found is not None:
            ledger.restore(name, found[1], number)

    return restore
