"""
The meta-path finder: it finds nothing itself, and sees every load end.

The finder sits first on ``sys.meta_path`` and asks the finders after it for the
spec, so whatever they do (pytest's assertion rewriting, editable installs,
zipimport, namespace packages, frozen and builtin modules) is what happens. It
returns their spec unchanged and never wraps a loader.

For the stdlib's source loader (nearly every import), an `_ImportWatch` gives the
loader two attributes of its own for the length of the import (see
`_source.LoaderWatch`: what the loader reads proves later which bytes ran), and a
weak reference to the import system's module lock tells when the import ended: the
lock is collected once ``_find_and_load`` let go of it. For any other loader, the spec's
class is swapped until ``importlib._bootstrap._load_unlocked`` clears
``spec._initializing`` (the end of execution), and then restored.

Only calls that really import or reload are observed: ``importlib.util.find_spec``,
``pkgutil`` and ``runpy`` get None from this finder and carry on as if it were not
there. The caller is recognised by the code objects on the stack, which costs well
under a microsecond.

A reload by other code (``importlib.reload``, which IPython's autoreload and many
frameworks call) runs no ``_initializing`` step, so for it alone the spec's loader
is replaced by a stand-in until ``importlib._bootstrap._exec`` asks it for
``exec_module``. At that moment the stand-in puts the real loader back into the spec
and the module and hands out the real loader's own ``exec_module``, so the module's
code runs with no frame of ours on the stack (a failing reload's traceback is the
stdlib's). The end is observed when ``_exec``'s ``finally`` reads ``spec.name``; the
exception being handled at that moment tells whether the code raised.
"""

from __future__ import annotations

import importlib
import importlib._bootstrap as _bootstrap
import sys
import time
import weakref
from _thread import get_ident as _get_ident
from collections.abc import Callable, Mapping, Sequence
from importlib.machinery import ModuleSpec
from types import CodeType, FrameType, ModuleType
from typing import Any

from ._events import report_error
from ._snapshot import _SourceDigest
from ._source import (
    ImportProof,
    ImportStart,
    LoaderWatch,
    digest_of_loader_run,
    import_digest,
    import_started,
    note_cache_written,
)

#: Called once a first import ends: ``(spec, module, proof of what ran)`` on success,
#: ``(spec, None, None)`` on failure.
LoadObserver = Callable[[ModuleSpec, "ModuleType | None", ImportProof], None]
#: Called once another tool's ``importlib.reload`` ran the module's code successfully:
#: ``(spec, module, duration_ns, digest of what ran or None when not checked)``.
ReloadObserver = Callable[[ModuleSpec, ModuleType, int, "_SourceDigest | None"], None]

_OBSERVERS = "_versionload_observers"

_FIND_SPEC_CODE: CodeType = _bootstrap._find_spec.__code__  # type: ignore[attr-defined]
_IMPORT_CODE: CodeType = _bootstrap._find_and_load_unlocked.__code__  # type: ignore[attr-defined]
_RELOAD_CODE: CodeType = importlib.reload.__code__

_EXEC_CODE: CodeType = _bootstrap._exec.__code__  # type: ignore[attr-defined]
_RELOAD_END = "_versionload_reload_end"

_IMPORT, _RELOAD, _OTHER = "import", "reload", "other"
_SOURCE_FILE_LOADER = importlib.machinery.SourceFileLoader
_STDLIB_PATH_STATS = _SOURCE_FILE_LOADER.path_stats


class _InitializingWrites:
    """
    The ``_initializing`` attribute of an observing spec class: it sees the writes only.

    It defines ``__set__`` and no ``__get__``, so it is a data descriptor for writes
    while every read (the import system reads the attribute several times per import)
    finds the instance's own ``__dict__`` entry in C, with no Python frame. Before the
    first write a read finds the descriptor itself, which is false, as the
    ``getattr(spec, "_initializing", False)`` of the import system expects.
    """

    __slots__ = ("_base",)

    def __init__(self, base: type[ModuleSpec]) -> None:
        self._base = base

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "False"

    def __delete__(self, spec: ModuleSpec) -> None:
        try:
            del spec.__dict__["_initializing"]
        except KeyError:
            raise AttributeError("_initializing") from None

    def __set__(self, spec: ModuleSpec, value: Any) -> None:
        state = spec.__dict__
        state["_initializing"] = value
        if value:
            return
        original, observers, started = state.pop(_OBSERVERS, (self._base, (), None))
        # Restore the class first: observers and everyone after them see a plain spec.
        spec.__class__ = original
        # _load_unlocked removes the name from sys.modules when execution raised.
        module = sys.modules.get(spec.name)
        loaded = module if isinstance(module, ModuleType) else None
        digest = None
        if loaded is not None:
            try:
                digest = import_digest(spec, started)
            except Exception as error:  # noqa: BLE001 - an import must never fail because of us
                report_error(error, "versionload: inspecting what an import ran failed")
        _tell(observers, spec, loaded, digest)


#: The import system's per-module locks, weakly by name, and their class (private to
#: importlib, alike in 3.10 to 3.13; without them every import takes the general path).
_MODULE_LOCKS: dict[str, Callable[[], Any]] | None
_MODULE_LOCK: Any
try:
    _MODULE_LOCKS, _MODULE_LOCK = _bootstrap._module_locks, _bootstrap._ModuleLock  # type: ignore[attr-defined]
except AttributeError:  # pragma: no cover - another implementation of importlib
    _MODULE_LOCKS = _MODULE_LOCK = None


class _ImportWatch(LoaderWatch):
    """
    One first import run by the stdlib's source loader: what the loader reads (see
    `LoaderWatch`), and the end of the import, seen when its module lock is collected.

    ``_find_and_load`` holds the module's lock around the whole import, through a
    manager object that is the lock's only strong owner, and drops it once the module
    ran (or failed) and was bound in its parent. A weak reference to the lock tells
    that moment: no spec, module or lock is changed for it, nothing of ours runs while
    the import does (re-entrant holds of the lock, a module imported again while it
    runs, cost nothing), and no traceback can show a frame of ours. When another thread
    waited for the same module, the lock lives until that thread's import returns too.
    """

    __slots__ = ("more_observers", "observer", "spec", "until")

    spec: ModuleSpec | None
    until: weakref.ref[Any] | None
    observer: LoadObserver | None
    more_observers: list[LoadObserver] | None

    def ended(self, _lock: weakref.ref[Any] | None = None) -> None:
        # The one atomic step that lets exactly one caller (the weak reference's
        # callback or `finish_released_imports`) record the import.
        if _in_flight.pop(id(self), None) is None:
            return
        self.until = None
        proof: bytes | None = self.finish()
        spec, observer, more = self.spec, self.observer, self.more_observers
        if spec is None or observer is None:
            return
        self.spec = self.observer = self.more_observers = None
        # _load_unlocked removes the name from sys.modules when execution raised.
        module = sys.modules.get(spec.name)
        if isinstance(module, ModuleType):
            if self.read_source and not sys.dont_write_bytecode:
                note_cache_written(spec, self)  # after a compile, which costs far more
        else:
            module = proof = None
        try:
            observer(spec, module, proof)
        except Exception as error:  # noqa: BLE001 - an import must never fail because of us
            report_error(error, "versionload: recording an import failed")
        if more:
            _tell(more, spec, module, proof)


_new_watch = object.__new__
#: The watches of imports in progress: a weak reference calls back only while it lives.
_in_flight: dict[int, _ImportWatch] = {}


def finish_released_imports() -> None:
    """
    Record now the imports whose thread let go of their module lock while another
    thread still holds it (one that waited for the module, such as a reload), so that
    nothing that thread does next can come before them.
    """
    if not _in_flight:
        return
    for watch in list(_in_flight.values()):
        # _load_unlocked sets it False in its finally: the module's code has ended
        # (or failed); before the code begins it is True or not there at all.
        if getattr(watch.spec, "_initializing", True) is False:
            watch.ended()


def _watch_import(spec: ModuleSpec, loader: Any, observer: LoadObserver) -> bool:
    """
    Watch the first import of ``spec``, whose loader is the stdlib's source loader, as
    an `_ImportWatch`, or join another tracker's watch of it; False when this way
    cannot see it (a loader somebody changed, a module lock this code does not know).
    """
    own = loader.path_stats
    if getattr(own, "__func__", None) is not _STDLIB_PATH_STATS:
        joined = getattr(own, "__self__", None)
        if type(joined) is not _ImportWatch or joined.spec is not spec:
            return False  # somebody gave the loader a path_stats of its own
        if joined.more_observers is None:
            joined.more_observers = []
        joined.more_observers.append(observer)  # another tracker's finder watches it already
        return True
    if _MODULE_LOCKS is None:
        return False
    ref = _MODULE_LOCKS.get(spec.name)
    lock: Any = ref() if ref is not None else None
    if lock.__class__ is not _MODULE_LOCK or lock.owner != _get_ident():
        return False
    # Built and started without an __init__ or a method frame: this runs for every import.
    watch = _new_watch(_ImportWatch)
    watch.spec = spec
    watch.observer = observer
    watch.more_observers = None
    watch.until = weakref.ref(lock, watch.ended)
    _in_flight[id(watch)] = watch
    watch.loader = loader
    watch.source_stat = None
    watch.read_source = False
    watch.started_ns = time.time_ns()
    loader.path_stats = watch.path_stats
    loader.get_data = watch.get_data
    return True


def _tell(
    observers: Sequence[LoadObserver], spec: ModuleSpec, loaded: ModuleType | None, proof: ImportProof
) -> None:
    if loaded is None:
        proof = None
    for observer in observers:
        try:
            observer(spec, loaded, proof)
        except Exception as error:  # noqa: BLE001 - an import must never fail because of us
            report_error(error, "versionload: recording an import failed")


def _observing_class(base: type[ModuleSpec]) -> type[ModuleSpec]:
    """
    A subclass of ``base`` that notices when ``_initializing`` is set to False.
    """
    cached = _OBSERVING_CLASSES.get(base)
    if cached is not None:
        return cached
    namespace = {"_initializing": _InitializingWrites(base), "__module__": base.__module__}
    cls = type(base.__name__, (base,), namespace)
    cls.__qualname__ = base.__qualname__
    _OBSERVING_CLASSES[base] = cls
    return cls


_OBSERVING_CLASSES: dict[type[ModuleSpec], type[ModuleSpec]] = {}


def observe_load(spec: ModuleSpec, observer: LoadObserver) -> None:
    """
    Arrange for ``observer`` to run when the import system finishes loading ``spec``,
    by its spec's class: the way for loads that `_watch_import` cannot watch.
    """
    state = spec.__dict__
    pending = state.get(_OBSERVERS)
    if pending is not None:
        pending[1].append(observer)  # another tracker's finder already observes it
        return
    original = type(spec)
    try:
        spec.__class__ = _observing_class(original)
    except TypeError:
        return  # an exotic spec class (slots, C type): leave the import alone
    # Before the loader runs: afterwards the files tell which bytes it ran.
    started: ImportStart | None = None
    try:
        started = import_started(spec)
    except Exception as error:  # noqa: BLE001 - an import must never fail because of us
        report_error(error, "versionload: inspecting an import failed")
    state[_OBSERVERS] = (original, [observer], started)


def _reload_observing_class(base: type[ModuleSpec]) -> type[ModuleSpec]:
    """
    A subclass of ``base`` that notices ``_exec`` reading ``name`` once the code ran.
    """
    cached = _RELOAD_OBSERVING_CLASSES.get(base)
    if cached is not None:
        return cached

    def _get(self: ModuleSpec) -> Any:
        state = self.__dict__
        try:
            name = state["name"]
        except KeyError:
            raise AttributeError("name") from None
        pending = state.get(_RELOAD_END)
        # Module code reading __spec__.name (relative imports do) must not count.
        if pending is not None and sys._getframe(1).f_code is _EXEC_CODE:
            del state[_RELOAD_END]
            self.__class__ = pending[0]
            pending[1]()
        return name

    def _set(self: ModuleSpec, value: Any) -> None:
        self.__dict__["name"] = value

    cls = type(base.__name__, (base,), {"name": property(_get, _set), "__module__": base.__module__})
    cls.__qualname__ = base.__qualname__
    _RELOAD_OBSERVING_CLASSES[base] = cls
    return cls


_RELOAD_OBSERVING_CLASSES: dict[type[ModuleSpec], type[ModuleSpec]] = {}


class _LoaderStandIn:
    """
    Takes the place of ``spec.loader`` during another tool's ``importlib.reload``.
    """

    def __init__(self, loader: Any, spec: ModuleSpec, module: ModuleType, observer: ReloadObserver) -> None:
        self._vl_loader = loader
        self._vl_spec = spec
        self._vl_module = module
        # Every installed tracker's finder adds its observer to the one stand-in.
        self._vl_observers = [observer]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._vl_loader, name)

    def vl_add_observer(self, observer: ReloadObserver) -> None:
        """
        Also call ``observer`` at the end of this reload (another tracker's finder).
        """
        self._vl_observers.append(observer)

    def __repr__(self) -> str:
        return repr(self._vl_loader)

    @property
    def exec_module(self) -> Any:
        """
        The real loader's ``exec_module``, handed out once everything is put back.
        """
        loader, spec, module = self._vl_loader, self._vl_spec, self._vl_module
        # Put everything back before the module's code can look at it.
        spec.loader = loader
        if module.__dict__.get("__loader__") is self:
            module.__loader__ = loader
        original = type(spec)
        try:
            spec.__class__ = _reload_observing_class(original)
        except TypeError:
            return loader.exec_module  # an exotic spec class: run the reload unobserved
        # Before running: the bytecode cache it runs may be stale for the source on disk.
        digest = digest_of_loader_run(spec)
        handled = sys.exc_info()[1]
        observers = self._vl_observers
        started = time.perf_counter_ns()

        def on_end() -> None:
            # In _exec's finally: an exception other than the one handled before the
            # code ran means the code raised, and importlib.reload re-raises it.
            if sys.exc_info()[1] is not handled:
                return
            duration_ns = time.perf_counter_ns() - started
            for observer in observers:
                try:
                    observer(spec, module, duration_ns, digest)
                except Exception as error:  # noqa: BLE001 - the reload itself succeeded
                    report_error(error, "versionload: recording a reload failed")

        spec.__dict__[_RELOAD_END] = (original, on_end)
        return loader.exec_module


def _caller() -> str:
    """
    What the import system is doing that made it ask our finder.
    """
    try:
        frame: FrameType | None = sys._getframe(2)
    except ValueError:  # called directly from a very shallow stack
        return _OTHER
    # Several trackers' finders asking one another: skip their find_spec frames.
    while frame is not None and frame.f_code is _FINDER_CODE:
        frame = frame.f_back
    if frame is None or frame.f_code is not _FIND_SPEC_CODE:
        return _OTHER
    frame = frame.f_back
    code = frame.f_code if frame is not None else None
    if code is _IMPORT_CODE:
        return _IMPORT
    if code is _RELOAD_CODE:
        return _RELOAD
    return _OTHER


class VersionedFinder:
    """
    A ``sys.meta_path`` finder that lets the other finders find, and observes loads.

    Args:
        wants: Whether a module name is tracked (the include/exclude filters).
        on_load: Called when a first import of a wanted module ends.
        on_reload_start: Called before another tool's ``importlib.reload`` of a
            wanted module runs its code (to adopt a module not yet tracked).
        on_reload: Called after such a reload ran the module's code successfully.
    """

    def __init__(
        self,
        wants: Callable[[str], bool],
        on_load: LoadObserver,
        on_reload_start: Callable[[ModuleType], None],
        on_reload: ReloadObserver,
        *,
        wanted: Mapping[str, bool] | None = None,
    ) -> None:
        self._wants = wants
        self._wanted: Mapping[str, bool] = {} if wanted is None else wanted
        self._on_load = on_load
        self._on_reload_start = on_reload_start
        self._on_reload = on_reload

    def __repr__(self) -> str:
        return "<versionload.VersionedFinder>"

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        # Every import of the process comes here first, so the usual case (a wanted
        # name, imported by the import system, found by the stdlib's finder and loaded
        # by its source loader) runs in this one frame and `_watch_import`.
        wanted = self._wanted.get(fullname)
        if wanted is None:
            wanted = self._wants(fullname)
        if not wanted:
            return None
        asking = sys._getframe(1)
        back = asking.f_back
        if asking.f_code is _FIND_SPEC_CODE and back is not None and back.f_code is _IMPORT_CODE:
            caller = _IMPORT
        else:
            caller = _caller()
            if caller is _OTHER or (caller is _RELOAD and not isinstance(target, ModuleType)):
                return None
        # Ask the finders after this one, as _find_spec would (it holds the import lock).
        spec: ModuleSpec | None = None
        seen_self = False
        for finder in list(sys.meta_path):
            if not seen_self:
                seen_self = finder is self
                continue
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                return None  # a legacy finder: let _find_spec handle the rest itself
            spec = find_spec(fullname, path, target)
            if spec is not None:
                break
        if spec is None:
            return None
        if caller is _IMPORT:
            # If a parent's import already imported this name, _find_spec hands out
            # the existing module's spec and our spec is never loaded. A legacy loader
            # (load_module only) is loaded without the _initializing step, so an observer
            # would stay on its spec for good: such modules are adopted on first reload.
            if fullname not in sys.modules:
                loader = spec.loader
                if type(loader) is _SOURCE_FILE_LOADER and _watch_import(spec, loader, self._on_load):
                    return spec
                if loader is None or hasattr(loader, "exec_module"):
                    observe_load(spec, self._on_load)
            return spec
        assert target is not None
        stand_in: object = spec.loader
        if isinstance(stand_in, _LoaderStandIn):
            # A later tracker's finder made it; checked first, since looking up its
            # exec_module would start the reload's observation.
            self._on_reload_start(target)
            stand_in.vl_add_observer(self._on_reload)
            return spec
        real_loader = spec.loader
        if real_loader is None or not hasattr(real_loader, "exec_module"):
            return spec
        self._on_reload_start(target)
        spec.loader = _LoaderStandIn(real_loader, spec, target, self._on_reload)  # type: ignore[assignment]
        return spec


_FINDER_CODE: CodeType = VersionedFinder.find_spec.__code__
