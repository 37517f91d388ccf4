"""
Reload and rollback as transactions on a module's namespace.

A reload follows ``importlib.reload`` step by step (same checks, same errors, the
spec found again, the new code run in the existing module dict, ``sys.modules[name]``
returned) with three differences: it compiles the current source rather than
trusting the bytecode cache, it records a version, and when the new code fails it
puts the namespace and the ``sys.modules`` entry back exactly as they were.

Both operations hold the import system's own lock for the module, so they are
serialised with each other and with imports of that module, and a lock cycle with
an import in another thread is reported by the import system's deadlock detection
instead of hanging.
"""

from __future__ import annotations

import contextlib
import gc
import importlib._bootstrap as _bootstrap
import operator
import os
import sys
import threading
import time
import traceback
import types
import warnings
from collections.abc import Callable, Iterable, Mapping, MutableSequence, Sequence
from types import ModuleType, TracebackType
from typing import Any, TypeVar

import attrs

from ._arguments import is_under, version_number
from ._errors import (
    ModuleNotLoadedError,
    NotAModuleError,
    NotTrackedError,
    ReloadError,
    ReloadRefusedError,
    SpecNotFoundError,
)
from ._events import (
    ChangesetApplied,
    Event,
    ModuleReloaded,
    ModuleReloadFailed,
    ModuleRolledBack,
    NamespaceChanged,
    capped,
    wanted,
)
from ._history import ModuleHistory
from ._registry import Registry
from ._snapshot import (
    Change,
    Changeset,
    ChangesetKind,
    ModuleVersion,
    NamespaceDiff,
    _SourceDigest,
    compare,
    compare_versions,
    recent_diff,
    source_digest,
)
from ._source import compile_source, read_source

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_MISSING = object()

# Which modules this thread is reloading right now: a module whose code reloads
# itself gets the module back unchanged, as importlib.reload does.
_reloading = threading.local()


def module_lock(name: str) -> contextlib.AbstractContextManager[None]:
    """
    Hold the import system's re-entrant, deadlock-detecting lock for ``name``.
    """
    # The import system's own context manager, as is: no generator frame around it.
    manager: contextlib.AbstractContextManager[None] = _bootstrap._ModuleLockManager(name)  # type: ignore[attr-defined]
    return manager


def module_locks(names: Iterable[str]) -> contextlib.AbstractContextManager[None]:
    """
    Hold the module locks of ``names``, taken in name order (the one order every
    group takes them in, so two groups cannot wait for each other's).
    """
    ordered = sorted(set(names))
    if len(ordered) == 1:
        return module_lock(ordered[0])  # the usual case, without an ExitStack around it
    return _ModuleLocks(ordered)


class _ModuleLocks:
    """
    Several module locks, taken in the given order on entering and released on leaving.
    """

    def __init__(self, names: list[str]) -> None:
        self._names = names
        self._held = contextlib.ExitStack()

    def __enter__(self) -> None:
        held = self._held
        try:
            for name in self._names:
                held.enter_context(module_lock(name))
        except BaseException:
            held.close()  # those taken before the failure
            raise

    def __exit__(self, *exc_info: object) -> None:
        self._held.close()


# -- resolving arguments ----------------------------------------------------------------


def module_name(module: ModuleType) -> str:
    """
    The name the import system knows the module by: its spec's name, else ``__name__``.
    """
    # The module's own dict, never attribute lookup: a module-level __getattr__
    # (lazy loading) would otherwise run for a missing name, and may raise anything.
    own = vars(module)
    spec = own.get("__spec__")
    name = getattr(spec, "name", None) if spec is not None else None
    if not isinstance(name, str):
        name = own.get("__name__")
    if not isinstance(name, str):
        raise NotAModuleError(module)
    return name


def describe(obj: object, limit: int = 80) -> str:
    """
    ``type: repr`` of any object for an error message, cut to ``limit`` characters of repr.
    """
    try:
        text = repr(obj)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real error
        text = f"<{type(obj).__name__} object with a failing __repr__>"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(obj).__qualname__}: {text}"


def loaded_module(name: str) -> ModuleType:
    """
    The module in ``sys.modules[name]``, with an error that says what is there instead.
    """
    entry = sys.modules.get(name, _MISSING)
    if isinstance(entry, ModuleType):
        return entry
    if entry is _MISSING:
        message = f"module {name!r} not in sys.modules"
    elif entry is None:
        message = f"sys.modules[{name!r}] is None (imports of {name!r} are blocked), not a module"
    else:
        message = f"sys.modules[{name!r}] is not a module but {describe(entry)}"
    raise ModuleNotLoadedError(message, module=name)


def resolve_loaded(obj: object) -> tuple[str, ModuleType]:
    """
    A module or a name, for a reload: it must be the module in ``sys.modules``.

    A name under which ``sys.modules`` holds a module known by another name (a
    compatibility alias: ``sys.modules["old"] = new``) stands for that module, under
    its own name: the alias's file never runs in it, and it is never renamed.
    """
    if isinstance(obj, str):
        module = loaded_module(obj)
        name = module_name(module)
        if name != obj and sys.modules.get(name) is not module:
            raise ModuleNotLoadedError(
                f"sys.modules[{obj!r}] is the module {name!r}, which is not in sys.modules "
                f"under its own name, so it cannot be reloaded",
                module=name,
            )
        return name, module
    if not isinstance(obj, ModuleType):
        raise NotAModuleError(obj)
    name = module_name(obj)
    if sys.modules.get(name) is not obj:
        raise ModuleNotLoadedError(f"module {name!r} not in sys.modules", module=name)
    return name, obj


def resolve_tracked(registry: Registry, obj: object) -> tuple[str, ModuleType, ModuleHistory]:
    """
    A module or a name, for reading or rolling back: it must have a history.
    """
    if isinstance(obj, str):
        alias = _aliased(obj)
        if alias is not None:
            # Aliases stand for the module under its own name, as in `resolve_loaded`.
            return alias[0], alias[1], registry.require(*alias)
        found = registry.find(obj)
        if found is None:
            raise NotTrackedError(obj)
        return obj, found[0], found[1]
    if not isinstance(obj, ModuleType):
        raise NotAModuleError(obj)
    name = module_name(obj)
    return name, obj, registry.require(name, obj)


def _aliased(alias: str) -> tuple[str, ModuleType] | None:
    """
    The own name and the module ``sys.modules[alias]``, if that is a module known by another name.
    """
    module = sys.modules.get(alias)
    if not isinstance(module, ModuleType):
        return None
    try:
        name = module_name(module)
    except NotAModuleError:
        return None
    return (name, module) if name != alias else None


# -- namespaces ---------------------------------------------------------------------------


def restore_namespace(namespace: dict[str, object], bindings: Mapping[str, object]) -> None:
    """
    Make ``namespace`` hold exactly ``bindings``.

    Names are rebound before extra names are deleted, so code running in other
    threads never sees a name of ``bindings`` missing; a name bound to the same object
    is left bound to it.
    """
    # One C-level merge: rebinding a name to the object it already holds changes
    # nothing a program can see, and costs less than testing each name in Python
    # (a rollback of a large module was mostly that test). Merging a dict is several
    # times faster than merging a mapping, so a version's read-only view is merged
    # from the dict behind it (only read here), or from a copy of it.
    namespace.update(_dict_behind(bindings) if type(bindings) is types.MappingProxyType else bindings)
    # Every name of ``bindings`` is in the namespace now: any more names are extra.
    if len(namespace) > len(bindings):
        for name in namespace.keys() - bindings.keys():
            namespace.pop(name, None)


def _dict_behind(view: Mapping[str, object]) -> Mapping[str, object]:
    """
    The dict a read-only view shows, to read from without copying it; a copy when it
    cannot be told.
    """
    # A mappingproxy refers to exactly one object, the mapping it shows (its traverse
    # visits only that), so the garbage collector's referents name it, in C.
    found = gc.get_referents(view)
    if len(found) == 1 and type(found[0]) is dict:
        mapping: dict[str, object] = found[0]
        return mapping
    return dict(view)


def restore_class(module: ModuleType, cls: type[ModuleType], *, put_back: bool = False) -> None:
    """
    Give ``module`` back the class ``cls`` if its code assigned it another one.

    With ``put_back`` (undoing a change just made, in a transaction that failed) the
    module's class is not asked: a class whose ``__setattr__`` refuses (a read-only
    module) must not leave the transaction half put back.
    """
    if type(module) is not cls:
        # The code could assign its class, so the same layout check lets us assign back.
        if put_back:
            object.__setattr__(module, "__class__", cls)
        else:
            module.__class__ = cls


#: What the import system binds in a module before its code runs: a pruned reload
#: keeps these (``__doc__`` is reset to None, as in a new module).
_IMPORT_ATTRIBUTES = frozenset(
    {
        "__name__",
        "__doc__",
        "__package__",
        "__loader__",
        "__spec__",
        "__path__",
        "__file__",
        "__cached__",
        "__builtins__",
    }
)


def prune_namespace(name: str, namespace: dict[str, object]) -> None:
    """
    Empty a module's namespace for a fresh run of its code, as a new module object is.

    Kept: the attributes the import system sets before running a module's code, and
    a package's attributes for its submodules that are in ``sys.modules`` (the import
    system binds them only when a submodule is first loaded, so removing them would
    leave ``pkg.sub`` unreachable). Everything else, user-defined dunders such as
    ``__all__`` or ``__getattr__`` included, must be bound again by the new code.
    The caller restores the namespace from its copy when the new code fails.
    """
    prefix = name + "."
    extra = [
        key
        for key, value in namespace.items()
        if key not in _IMPORT_ATTRIBUTES
        and not (isinstance(value, ModuleType) and sys.modules.get(prefix + key) is value)
    ]
    for key in extra:
        del namespace[key]
    namespace["__doc__"] = None


def _without_own_frames(tb: TracebackType | None) -> TracebackType | None:
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        tb = tb.tb_next
    return tb


def _error_location(error: BaseException, origin: str | None) -> str | None:
    """
    ``file:line`` where the new code failed: the syntax error, or the deepest frame in the module's file.
    """
    if isinstance(error, SyntaxError) and error.filename:
        return f"{error.filename}:{error.lineno}"
    location = None
    for frame, line in traceback.walk_tb(error.__traceback__):
        if origin is not None and frame.f_code.co_filename == origin:
            location = f"{origin}:{line}"
    return location


# -- reload -------------------------------------------------------------------------------
#
# A reload is a transaction of three steps, `execute`, `commit` and `unstage`. One
# driver runs them for every reload, single or grouped: ``_group.reload_group``.


def current_or_adopt(registry: Registry, name: str, module: ModuleType) -> ModuleVersion:
    """
    The module's current version, adopting it first when it has no history.
    """
    history = registry.history_of(name, module)
    if history is None:
        registry.record(name, module, "adopted", origin_of(module), _SourceDigest())
        history = registry.require(name, module)
    return history.current


def _parent_path(name: str) -> MutableSequence[str] | None:
    parent_name = name.rpartition(".")[0]
    if not parent_name:
        return None
    parent = sys.modules.get(parent_name)
    if parent is None:
        raise ModuleNotLoadedError(f"parent {parent_name!r} not in sys.modules", module=parent_name)
    try:
        return parent.__path__
    except AttributeError:
        raise ModuleNotLoadedError(
            f"parent {parent_name!r} of {name!r} is not a package", module=parent_name
        ) from None


def origin_of(module: ModuleType) -> str | None:
    own = vars(module)  # not getattr: see module_name
    spec = own.get("__spec__")
    if spec is not None and getattr(spec, "has_location", False):
        origin = getattr(spec, "origin", None)
        return origin if isinstance(origin, str) else None
    file = own.get("__file__")
    return file if isinstance(file, str) else None


#: Runs after the new code, inside the transaction: ``finish(name, module, before)``.
#: Whatever it returns is kept in `Staged.finished`; if it raises, it must first undo
#: its own changes to objects (the namespace itself is put back by `execute`).
Finish = Callable[[str, ModuleType, Mapping[str, object]], object]


@attrs.frozen(eq=False)
class Staged:
    """
    A module whose new code has run but whose version is not recorded yet.
    """

    name: str
    module: ModuleType
    previous: ModuleVersion
    before: dict[str, object]
    origin: str | None
    sha256: str | None
    started_ns: int
    finished: object = None
    before_class: type[ModuleType] = ModuleType


def execute(
    registry: Registry,
    name: str,
    module: ModuleType,
    path: MutableSequence[str] | None,
    previous: ModuleVersion,
    finish: Finish | None = None,
    *,
    prune: bool = False,
) -> Staged:
    """
    Run the module's new code in its namespace; on failure put it back and raise.

    With ``prune`` the namespace is emptied first (`prune_namespace`), so the names
    the new code does not bind are gone, as after a fresh import.

    The caller holds the module's lock, then either `commit`s the result or, to
    undo a module whose code succeeded, calls `unstage`.
    """
    namespace = module.__dict__
    before = dict(namespace)
    # New code may swap the module's class (``sys.modules[__name__].__class__ = X``,
    # for module properties); that is part of what a failed reload puts back.
    before_class = type(module)
    started = time.perf_counter_ns()
    sha256: str | None = None
    origin = previous.origin
    finished: object = None
    try:
        spec = _bootstrap._find_spec(name, path, module)  # type: ignore[attr-defined]
        if spec is None:
            raise SpecNotFoundError(f"spec not found for the module {name!r}", module=name)
        origin = spec.origin if spec.has_location else None
        roots = registry.allowed_roots
        if roots is not None and (origin is None or not is_under(origin, roots)):
            # Checked before the code is read: a refused module runs nothing new.
            raise ReloadRefusedError(
                f"refusing to reload {name!r}: its code at {origin!r} lies outside the allowed roots",
                module=name,
                path=origin,
            )
        source = read_source(spec)
        # Known before compiling, so a failure event names the bytes that failed too.
        sha256 = source.sha256 if source is not None else None
        fresh = compile_source(spec, source)
        module.__spec__ = spec
        _bootstrap._init_module_attrs(spec, module, override=True)
        if prune:
            prune_namespace(name, namespace)
        loader = spec.loader
        if fresh.code is not None:
            exec(fresh.code, namespace)
        elif loader is None:
            if spec.submodule_search_locations is None:
                raise ImportError("missing loader", name=name)
            # A namespace package: nothing to execute.
        elif hasattr(loader, "exec_module"):
            loader.exec_module(module)
        else:
            message = f"{loader!r}.exec_module() not found; falling back to load_module()"
            warnings.warn(message, ImportWarning, stacklevel=2)
            loader.load_module(name)
        if finish is not None:
            finished = finish(name, module, types.MappingProxyType(before))
    except BaseException as error:
        # Put everything back before anyone can observe the half-executed module.
        restore_class(module, before_class, put_back=True)
        restore_namespace(namespace, before)
        if sys.modules.get(name, _MISSING) is not module:
            sys.modules[name] = module
        duration_ns = time.perf_counter_ns() - started
        location = _error_location(error, origin)
        # Before the event: the logged traceback starts in the user's code too.
        error.__traceback__ = _without_own_frames(error.__traceback__)
        registry.emit_all(
            [
                ModuleReloadFailed(
                    module=name,
                    previous_version=previous.number,
                    origin=origin,
                    source_sha256=sha256,
                    duration_ms=duration_ns / 1e6,
                    error=repr(error),
                    location=location,
                    exc_info=error,
                )
            ]
        )
        if not isinstance(error, Exception):
            raise  # KeyboardInterrupt and friends propagate, with nothing half-done
        if isinstance(error, ReloadError):
            raise error.with_traceback(None) from None
        raise ReloadError(
            f"reloading {name!r} failed, the module is unchanged: {error!r}", module=name, path=origin
        ) from error
    return Staged(name, module, previous, before, origin, sha256, started, finished, before_class)


def unstage(staged: Staged) -> None:
    """
    Put back the namespace, class and ``sys.modules`` entry a successful `execute` changed.
    """
    restore_class(staged.module, staged.before_class, put_back=True)
    restore_namespace(staged.module.__dict__, staged.before)
    if sys.modules.get(staged.name, _MISSING) is not staged.module:
        sys.modules[staged.name] = staged.module


def commit(registry: Registry, staged: Staged) -> tuple[ModuleVersion, int]:
    """
    Record a staged module's namespace as its new version; returns it and the duration.
    """
    name, module = staged.name, staged.module
    # As in importlib: move the entry to the end of sys.modules, for clean-up order.
    current = sys.modules.pop(name, module)
    sys.modules[name] = current
    duration_ns = time.perf_counter_ns() - staged.started_ns
    version, _ = registry.record(name, module, "reload", staged.origin, _SourceDigest(staged.sha256))
    return version, duration_ns


_Change = TypeVar("_Change", bound=NamespaceChanged)


def _change_event(
    kind: type[_Change],
    changes: NamespaceDiff,
    version: ModuleVersion,
    duration_ns: int,
    changeset_id: int | None = None,
    **extra: Any,
) -> _Change:
    """
    The event of the move ``changes`` (from version ``changes.from_version``), after
    which ``version`` is current.
    """
    return kind(
        module=version.module,
        version=version.number,
        previous_version=changes.from_version,
        origin=version.origin,
        source_sha256=version.source_sha256,
        duration_ms=duration_ns / 1e6,
        added=capped(changes.added),
        removed=capped(changes.removed),
        changed=capped(changes.changed),
        added_count=len(changes.added),
        removed_count=len(changes.removed),
        changed_count=len(changes.changed),
        changeset_id=changeset_id,
        **extra,
    )


def _reloaded_event(
    previous: ModuleVersion,
    version: ModuleVersion,
    duration_ns: int,
    changeset_id: int | None = None,
    *,
    reason: str | None = None,
) -> ModuleReloaded:
    extra = {} if reason is None else {"reason": reason}
    return _change_event(
        ModuleReloaded, compare_versions(previous, version), version, duration_ns, changeset_id, **extra
    )


def record_external_reload(
    registry: Registry, name: str, module: ModuleType, duration_ns: int, digest: _SourceDigest | None = None
) -> None:
    """
    Record a reload that other code ran with ``importlib.reload``, once it succeeded.

    ``digest`` is what ran when the finder could check it (see `digest_of_loader_run`).
    """
    history = registry.history_of(name, module)
    if history is None:
        return
    previous = history.current
    origin = origin_of(module)
    if digest is None:
        digest = source_digest(origin, time.time_ns())
    version, _ = registry.record(name, module, "reload", origin, digest)
    changeset = registry.record_changeset(
        "reload", (Change(name, previous.number, version.number),), "importlib.reload"
    )
    if wanted(registry.subscribers, ModuleReloaded.level):
        registry.emit_all(
            [_reloaded_event(previous, version, duration_ns, changeset.id), applied_event(changeset)]
        )


# -- rollback -----------------------------------------------------------------------------


def _with_imported_submodules(
    name: str,
    bindings: Mapping[str, object],
    live: Mapping[str, object],
    extra_names: Iterable[str] | None = None,
) -> Mapping[str, object]:
    """
    ``bindings`` plus the package's attributes for submodules that are in ``sys.modules``.

    The import system binds ``pkg.sub`` on the package after the package's own version
    was recorded, and never again while ``pkg.sub`` stays imported: removing it would
    leave ``pkg.sub`` unreachable as an attribute. ``extra_names``, when the caller
    knows them, are the names of ``live`` that ``bindings`` lacks.
    """
    if extra_names is None:
        if live.keys() <= bindings.keys():
            return bindings  # the usual case, decided in C
        extra_names = live.keys() - bindings.keys()
    extra = {
        key: value
        for key in extra_names
        if isinstance(value := live[key], ModuleType) and sys.modules.get(f"{name}.{key}") is value
    }
    return {**bindings, **extra} if extra else bindings


#: One module of a rollback: its name, the module object, and the version to return it
#: to (its number, or the version itself; None: the one before its current version).
Step = tuple[str, ModuleType, "int | ModuleVersion | None"]

#: How a rollback's ``restore`` step is undone: called to put back what it changed.
Revert = Callable[[], None]


def rollback(
    registry: Registry,
    obj: object,
    to: object,
    restore: Callable[[str, int], Revert | None] | None = None,
    *,
    asked_by: str | None = None,
) -> ModuleType:
    """
    Restore the namespace of version ``to`` (default: the one before the current).

    ``restore(name, number)`` runs right after the namespace is restored, under the
    module's lock, to restore the state of objects updated in place (see `restore_versions`). Recorded as a
    ``"rollback"`` changeset asked for by ``asked_by`` (default: the module's name).
    """
    if to is not None:
        version_number(to, "to")
    if isinstance(obj, ModuleType):
        # Its history is required under its lock, in `restore_versions`.
        name, module = module_name(obj), obj
    else:
        name, module, _ = resolve_tracked(registry, obj)
    restore_versions(
        registry, [(name, module, to if isinstance(to, int) else None)], restore, asked_by=asked_by
    )
    return module


def restore_versions(
    registry: Registry,
    steps: Sequence[Step] | Callable[[], Sequence[Step]],
    restore: Callable[[str, int], Revert | None] | None = None,
    *,
    names: Sequence[str] = (),
    kind: ChangesetKind = "rollback",
    asked_by: str | None = None,
    undoes: int | None = None,
    failed: Callable[[str, Exception], Exception] | None = None,
) -> Changeset:
    """
    Return several modules to recorded versions as one transaction: all or none.

    Takes every module's lock in name order, then restores each in the order given
    (namespace, class, and through ``restore`` the objects updated in place; it
    returns how to put them back). If anything fails, the modules already restored
    are put back, newest first, and the error propagates (``failed(name, error)``,
    when given, makes the error raised from it). Records one changeset of ``kind``
    and emits the events.

    ``steps`` may be a function that gives them, called first under the locks of
    ``names``: for a check that must hold in the same critical section that applies
    and records the change, such as an undo's that its changeset is not undone yet.
    If it raises, nothing changed.
    """
    started = time.perf_counter_ns()
    with module_locks(names if callable(steps) else [name for name, _, _ in steps]):
        if callable(steps):
            steps = steps()
        # Every target is looked up before anything changes: a missing one changes nothing.
        plan = []
        for name, module, to in steps:
            history = registry.require(name, module)
            current = history.current
            if isinstance(to, ModuleVersion):
                target = to
            else:
                target = history.get(to) if to is not None else history.before(current.number)
            plan.append((name, module, history, current, target))
        # The events' diffs are computed only when somebody would receive them.
        report = wanted(registry.subscribers, ModuleRolledBack.level)
        done: list[tuple[str, ModuleType, ModuleHistory, int, Mapping[str, object], type[ModuleType]]] = []
        # What puts back the objects each ``restore`` changed, by module (none, usually).
        reverts: dict[str, Revert] = {}
        moved = []
        try:
            for name, module, history, current, target in plan:
                live_class = type(module)
                # Still exactly the current version (no name rebound since)? Then the
                # event's diff is the one between the two versions, often known already,
                # and the version's bindings are what the namespace holds: no copy.
                exact = report and _holds_exactly(module.__dict__, current.bindings)
                live: Mapping[str, object] = current.bindings if exact else dict(module.__dict__)
                known = recent_diff(current, target) if exact else None
                bindings = _with_imported_submodules(
                    name, target.bindings, live, None if known is None else known.removed
                )
                done.append((name, module, history, current.number, live, live_class))
                restore_class(module, target.module_class)
                restore_namespace(module.__dict__, bindings)
                if restore is not None and (revert := restore(name, target.number)) is not None:
                    reverts[name] = revert
                registry.set_current(history, target.number)
                moved.append((current, live, target, bindings, exact, known))
        except BaseException as error:
            for name, module, history, number, live, live_class in reversed(done):
                # The objects the restore step changed get their states just before
                # back (a failed restore step put back its own); then the class,
                # without asking it (see `restore_class`), and the namespace.
                revert = reverts.get(name)
                if revert is not None:
                    revert()
                restore_class(module, live_class, put_back=True)
                restore_namespace(module.__dict__, live)
                registry.set_current(history, number)
            if failed is None or not done or not isinstance(error, Exception):
                raise
            raise failed(done[-1][0], error) from error
        changeset = registry.record_changeset(
            kind,
            tuple(Change(current.module, current.number, target.number) for current, _, target, *_ in moved),
            asked_by or plan[0][0],
            undoes,
        )
        duration_ns = time.perf_counter_ns() - started
    events: list[Event] = []
    if report:
        events.extend(
            _change_event(
                ModuleRolledBack,
                # The two versions' diff (usually the reload's, read backwards, found
                # above already) when the namespace held the current version and got
                # the target's as recorded.
                (known if known is not None else compare_versions(current, target))
                if exact and bindings is target.bindings
                else compare(target.module, current.number, live, target.number, bindings),
                target,
                duration_ns,
                changeset.id,
                version_reason=target.reason,
            )
            for current, live, target, bindings, exact, known in moved
        )
    if wanted(registry.subscribers, ChangesetApplied.level):
        events.append(applied_event(changeset))
    registry.emit_all(events)
    return changeset


def _holds_exactly(namespace: dict[str, object], bindings: Mapping[str, object]) -> bool:
    """
    Whether ``namespace`` binds the very objects of ``bindings``, no more names and no fewer.

    Identity only, in C: a value's own ``__eq__`` is never called.
    """
    if len(namespace) != len(bindings):
        return False
    if list(namespace) == list(bindings):
        # The usual case: the same names in the same order, compared pairwise.
        return all(map(operator.is_, namespace.values(), bindings.values()))
    # Two or more names here (one or none would have been in the same order).
    return namespace.keys() == bindings.keys() and all(
        map(operator.is_, namespace.values(), operator.itemgetter(*namespace)(bindings))
    )


def applied_event(changeset: Changeset) -> ChangesetApplied:
    """
    The ``changeset.applied`` event of a changeset just recorded.
    """
    return ChangesetApplied(
        module=changeset.changes[0].module,
        changeset_id=changeset.id,
        kind=changeset.kind,
        modules=changeset.modules,
        trigger=changeset.trigger,
    )
