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

`reload_group` is the one driver of the engine's steps: a reload of one module
(plain or in place) is a group of one, which emits no group event and raises the
module's own `ReloadError` rather than a `GroupReloadError`.
"""

from __future__ import annotations

import importlib.machinery
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any, Literal

from ._arguments import UpdateMode, is_under, update_mode
from ._engine import (
    Staged,
    Step,
    _parent_path,
    _reloaded_event,
    _reloading,
    applied_event,
    commit,
    current_or_adopt,
    execute,
    loaded_module,
    module_locks,
    origin_of,
    resolve_loaded,
    restore_versions,
    unstage,
)
from ._errors import (
    ChangesetNotUndoableError,
    GroupReloadError,
    InvalidArgumentError,
    ModuleNotLoadedError,
    ReloadError,
    ReloadRefusedError,
)
from ._events import (
    CascadeFailed,
    CascadeReloaded,
    ChangesetUndone,
    Event,
    GroupFailed,
    GroupReloaded,
    ModulePatched,
    ModuleReloaded,
    because,
    capped,
    current_reason,
    wanted,
)
from ._graph import ReloadPlan, cascade_plan
from ._inplace import Ledger, Patcher
from ._registry import Registry
from ._snapshot import Change, Changeset, ModuleVersion

#: The hook a module defines to carry state over from its previous version.
MIGRATE = "__versionload_migrate__"

_MISSING: Any = object()


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
    asked_by: str | None = None,
) -> tuple[ModuleType, ...]:
    """
    Reload ``targets`` in the given order as one transaction (see the module docstring).

    The modules reloaded are recorded as one ``"reload"`` changeset whose trigger is
    ``asked_by`` (default: the first module's name).
    """
    mode = update_mode(update)
    resolved = [resolve_loaded(target) for target in targets]
    if not resolved:
        return ()
    names = tuple(name for name, _ in resolved)
    refuse_own(names)
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"a module appears more than once in the group: {list(names)!r}")
    trigger = names[0] if kind == "cascade" else None
    in_progress: set[str] = _reloading.__dict__.setdefault("names", set())
    finish = _finisher(mode)
    report = False
    changeset: Changeset | None = None
    started = time.perf_counter_ns()
    events: list[Event] = []
    versions: list[int] = []
    with module_locks(names):
        # A module whose own code reloads it gets it back unchanged, as importlib does.
        active = [(name, module) for name, module in resolved if name not in in_progress]
        for name, module in active:
            if sys.modules.get(name) is not module:
                loaded_module(name)  # says what is there instead, if anything
                raise ModuleNotLoadedError(f"module {name!r} not in sys.modules", module=name)
        paths = {name: _parent_path(name) for name, _ in active}
        staged: list[Staged] = []
        failure: ReloadError | None = None
        # Modules not tracked yet are adopted as they run; the group event names them.
        histories = [registry.history_of(name, module) for name, module in active]
        adopted = tuple(name for (name, _), history in zip(active, histories, strict=True) if history is None)
        in_progress.update(name for name, _ in active)
        try:
            for index, (name, module) in enumerate(active):
                # The first module's history is the one just found; a later one may
                # have been adopted meanwhile by the code of the modules before it.
                first = histories[0] if index == 0 else None
                previous = first.current if first is not None else current_or_adopt(registry, name, module)
                staged.append(execute(registry, name, module, paths[name], previous, finish, prune=prune))
        except BaseException as error:
            for each in reversed(staged):
                _undo(each)
            if kind == "single" or not isinstance(error, ReloadError):
                raise
            failure = error
        finally:
            in_progress.difference_update(name for name, _ in active)
        if failure is None and staged:
            committed = []
            for each in staged:
                version, duration_ns = commit(registry, each)
                versions.append(version.number)
                committed.append((each, version, duration_ns))
                if isinstance(each.finished, Patcher):
                    history = registry.require(each.name, each.module)
                    ledger.record(each.name, history, each.previous.number, version.number, each.finished)
            changeset = registry.record_changeset(
                "reload",
                tuple(
                    Change(each.name, each.previous.number, version.number) for each, version, _ in committed
                ),
                asked_by or names[0],
            )
            # Building the events computes each module's diff: only when somebody listens.
            report = wanted(registry.subscribers, ModuleReloaded.level)
            if report:
                events.extend(_reload_events(committed, changeset.id, trigger))
        # Read while still holding the locks: once they are released another thread
        # may delete an entry, and a group that succeeded must not end in a KeyError.
        result = tuple(sys.modules.get(name, module) for name, module in resolved)
    if failure is not None:
        # Outside the locks: subscribers and log processors are user code.
        failed = active[len(staged)][0]
        undone = tuple(each.name for each in staged)
        _emit_failure(registry, names, trigger, failed, failure, undone, started)
        raise _group_error(names, kind, failed, failure) from failure
    if report and changeset is not None:
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
                    adopted=adopted,
                    changeset_id=changeset.id,
                )
            )
        elif kind == "many":
            events.append(
                GroupReloaded(
                    module=names[0],
                    modules=names,
                    versions=tuple(versions),
                    update=mode,
                    duration_ms=duration_ms,
                    adopted=adopted,
                    changeset_id=changeset.id,
                )
            )
        events.append(applied_event(changeset))
    registry.emit_all(events)
    # A module may have replaced itself in sys.modules while executing.
    return result


def _reload_events(
    committed: list[tuple[Staged, ModuleVersion, int]], changeset_id: int, trigger: str | None
) -> Iterator[Event]:
    for each, version, duration_ns in committed:
        # A cascade's dependents are reloaded because their trigger changed.
        why = "cascade" if trigger is not None and each.name != trigger else None
        yield _reloaded_event(each.previous, version, duration_ns, changeset_id, reason=why)
        if isinstance(each.finished, Patcher):
            yield ModulePatched(
                module=each.name,
                version=version.number,
                patched=capped(each.finished.patched),
                rebound=capped(str(f) for f in each.finished.fallbacks),
                patched_count=len(each.finished.patched),
                rebound_count=len(each.finished.fallbacks),
                reason=why or current_reason(),
                changeset_id=changeset_id,
            )


def _emit_failure(
    registry: Registry,
    names: tuple[str, ...],
    trigger: str | None,
    failed: str,
    error: BaseException,
    undone: tuple[str, ...],
    started: int,
    *,
    ran: bool = True,
) -> None:
    position = names.index(failed)
    cause = error.__cause__ or error
    common: dict[str, Any] = {
        "module": names[0],
        "modules": names,
        "failed": failed,
        "error": repr(cause),
        "undone": undone,
        "skipped": names[position + 1 :] if ran else tuple(n for n in names if n != failed),
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


def cascade_targets(
    registry: Registry,
    target: object,
    patterns: tuple[str, ...] | None = None,
    *,
    announce: bool = False,
) -> tuple[ReloadPlan, list[object]]:
    """
    The plan of a cascade from ``target`` (see `cascade_plan`) and the targets to give
    `reload_group`: ``target`` and its dependents within reach, in order.

    Nothing is adopted or run here. A dependent that cannot be reloaded (no Python
    code: an extension or built-in module; or a file outside ``allowed_roots``)
    fails the whole cascade now, before anything runs, with a `GroupReloadError`
    naming it (its cause a `ReloadRefusedError`); with ``announce`` a
    ``cascade.failed`` event says so too.
    """
    started = time.perf_counter_ns()
    name, module = resolve_loaded(target)
    refuse_own((name,))
    plan = cascade_plan(registry, name, module, patterns)
    for each in plan.modules[1:]:
        refusal = _refusal(registry, each, sys.modules[each])
        if refusal is None:
            continue
        error = GroupReloadError(
            f"cascade reload of {name!r} refused before anything ran: {refusal}; "
            f"all {len(plan.modules)} modules are as they were before",
            module=each,
            modules=plan.modules,
            path=refusal.path,
        )
        if announce:
            _emit_failure(registry, plan.modules, name, each, refusal, (), started, ran=False)
        raise error from refusal
    return plan, [module if each == name else each for each in plan.modules]


def refuse_own(names: Sequence[str]) -> None:
    """
    Raise `ReloadRefusedError` if any of ``names`` is versionload's own module.
    """
    for name in names:
        if is_own_module(name):
            # Its registry, locks and default tracker would be replaced by new, empty
            # ones while the installed finder and every caller keep the old ones.
            raise ReloadRefusedError(
                f"refusing to reload {name!r}: versionload does not reload its own modules", module=name
            )


def is_own_module(name: str) -> bool:
    """
    Whether ``name`` is versionload itself or one of its modules.
    """
    return name == _OWN_PACKAGE or name.startswith(_OWN_PACKAGE + ".")


_OWN_PACKAGE = __name__.partition(".")[0]


def _refusal(registry: Registry, name: str, module: ModuleType) -> ReloadRefusedError | None:
    """
    Why a dependent cannot be reloaded, judged from what it was loaded from; None if it can.
    """
    spec = module.__dict__.get("__spec__")
    loader = getattr(spec, "loader", None)
    origin = origin_of(module)
    if (
        spec is not None
        and getattr(spec, "submodule_search_locations", None) is not None
        and getattr(spec, "origin", None) is None
    ):
        return None  # a namespace package: nothing to execute, nothing to refuse
    why: str | None = None
    if is_own_module(name):
        why = "it is part of versionload, whose state a reload would reset"
    elif spec is None or not getattr(spec, "has_location", False):
        why = "it was not loaded from a file (a built-in or frozen module)"
    elif isinstance(loader, importlib.machinery.ExtensionFileLoader) or (
        isinstance(origin, str) and origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    ):
        why = "it is an extension module"
    elif not any(callable(getattr(loader, each, None)) for each in ("get_code", "exec_module")):
        # What the engine needs to run it again: the code, or the loader's exec_module
        # (import hooks such as pytest's assertion rewriter offer only that).
        why = "its loader can neither give its code nor execute it again"
    if why is not None:
        return ReloadRefusedError(f"{name!r} cannot be reloaded: {why}", module=name, path=origin)
    roots = registry.allowed_roots
    if roots is not None and (origin is None or not is_under(origin, roots)):
        return ReloadRefusedError(
            f"refusing to reload {name!r}: its code at {origin!r} lies outside the allowed roots",
            module=name,
            path=origin,
        )
    return None


def restore_states(registry: Registry, ledger: Ledger) -> Callable[[str, int], Callable[[], None] | None]:
    """
    The rollback step that puts in-place-updated objects back (see `Ledger.restore`);
    it returns what puts them back as they were, for a rollback that fails later.
    """

    def restore(name: str, number: int) -> Callable[[], None] | None:
        if not ledger.has_states(name):
            return None  # nothing of it was ever updated in place (the usual rollback)
        found = registry.find(name)
        if found is None:
            return None
        return ledger.restore(name, found[1], number)

    return restore


class Superseded(Exception):
    """
    Raised by `undo_changeset`, with nothing changed, when the changeset it was asked
    for (found as the latest) is no longer what that question finds once its modules'
    locks are held: the caller asks again.
    """


def undo_changeset(
    registry: Registry,
    ledger: Ledger,
    changeset: Changeset,
    *,
    asked_by: str | None = None,
    find: Callable[[], Changeset] | None = None,
) -> Changeset:
    """
    Return every module of ``changeset`` to its version before it, as one transaction.

    In-place-updated objects get back their states at those versions. Records an
    ``"undo"`` changeset (returned) and emits ``changeset.undone``.

    Check and change are one critical section: under the locks of the changeset's
    modules, which every undo of it takes, it is checked to be undoable still (not
    undone, its versions kept), the modules are restored and the undo is recorded.
    Of several threads undoing one changeset, one succeeds; the others raise
    `ChangesetNotUndoableError` and change nothing. ``find`` is how the changeset
    was found when it was not named (the latest): asked again under the locks, and
    if it finds another one now, `Superseded` is raised with nothing changed.

    Raises:
        ChangesetNotUndoableError: it cannot be undone (now); or restoring a module
            failed, after every module was put back (the error is its cause).
        Superseded: see ``find``.
    """

    def confirm() -> list[Step]:
        if find is not None and find().id != changeset.id:
            raise Superseded(changeset.id)
        return list(registry.undo_targets(changeset))

    def failed(name: str, error: Exception) -> Exception:
        return ChangesetNotUndoableError(
            changeset.id,
            f"restoring {name!r} failed ({error!r}); every module is as it was before the undo",
            name,
        )

    # Every event of an undo says so, whoever asked for it.
    with because("undo"):
        undo = restore_versions(
            registry,
            confirm,
            restore_states(registry, ledger),
            names=changeset.modules,
            kind="undo",
            asked_by=asked_by or f"undo {changeset.id}",
            undoes=changeset.id,
            failed=failed,
        )
        registry.emit_all(
            [
                ChangesetUndone(
                    module=changeset.changes[0].module,
                    changeset_id=changeset.id,
                    kind=changeset.kind,
                    modules=changeset.modules,
                    trigger=undo.trigger,
                    undone_by=undo.id,
                )
            ]
        )
    return undo
