"""
Live reloading: watch source files and reload exactly the modules whose file changed.

The cost of a change must not depend on how many modules are loaded. So the watcher
never scans modules: it keeps an index from file path to module names, built once
when it starts and then kept up to date by the tracker's own events (a load adds a
file, the end of a history removes it), and the operating system tells it which files
changed (through ``watchfiles``). Handling a change is then one dictionary lookup per
changed file, plus the reload itself.

Without ``watchfiles`` installed the watcher polls instead: it stats the files of the
tracked modules under the watched roots (only those), which is the one place where
the cost grows with the number of watched modules; install the ``watch`` extra to
avoid it.

Reloads go through `Tracker.reload`, so each one is atomic: a module whose new source
fails keeps running its old version, and the core reports the failure with its
location (``module.reload_failed``).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import sys
import sysconfig
import threading
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from importlib.machinery import SOURCE_SUFFIXES
from types import ModuleType
from typing import Any, Literal

import attrs

from .. import _arguments as check
from .._events import (
    Event,
    EventLogger,
    HistoryEnded,
    ModuleLoaded,
    ModuleReloaded,
    ModuleReloadFailed,
    because,
    report_error,
)
from .._fork import renew_after_fork
from .._tracker import Tracker

Outcome = Literal["reloaded", "failed", "deleted", "unchanged"]
Backend = Literal["watchfiles", "polling"]

#: How long a burst of writes must be quiet before it is handled (editors write a file
#: several times per save), and the longest a continuous burst is held back.
DEFAULT_DEBOUNCE = 0.01
_MAX_BURST_MS = 1600
#: Directories whose verdict (under the roots or not) the index keeps.
_DIRECTORY_CACHE_MAX = 4096
_SOURCE_SUFFIXES = tuple(SOURCE_SUFFIXES)
_SEP = os.sep
_FAST_DIRECTORY_KEY = check.FAST_DIRECTORY_KEY
#: How often the polling fallback looks at the files.
POLL_INTERVAL = 0.3


@attrs.frozen
class FileChange:
    """
    What the watcher did about one changed file of one module.

    ``outcome`` is ``"reloaded"`` (``version`` is the new version), ``"failed"`` (the
    old version keeps running; ``error`` and ``location``, ``file:line``, say why),
    ``"deleted"`` (the file is gone; the module keeps running) or ``"unchanged"`` (the
    file was written with the source the current version already runs).

    .. versionadded:: 0.1.0
    """

    module: str
    path: str
    outcome: Outcome
    version: int | None = None
    error: str | None = None
    location: str | None = None


@attrs.define
class WatchCounters:
    """
    Work the watcher did, counted (not timed) so tests can check it does not grow.

    Attributes:
        path_lookups: Index lookups of changed files.
        stat_calls: Files statted (only by polling: the fallback thread, or `Watcher.poll`).
        files_read: Changed files read (to skip writes that changed nothing).
        modules_indexed: Modules added to the path index.
    """

    path_lookups: int = 0
    stat_calls: int = 0
    files_read: int = 0
    modules_indexed: int = 0


def _normalize(path: str) -> str:
    return os.path.normcase(os.path.abspath(path))


def _library_dirs() -> tuple[str, ...]:
    """
    Directories whose modules are never live-reloaded: the standard library,
    site-packages, and versionload itself (reloading it would drop its state).
    """
    paths = sysconfig.get_paths()
    found = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    found.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return tuple(sorted({check.resolve(p) for p in found}))


def default_roots() -> tuple[str, ...]:
    """
    The directories watched when no paths are given: the entries of ``sys.path`` that
    are directories, except the standard library and site-packages.
    """
    libraries = _library_dirs()
    roots: list[str] = []
    for entry in sys.path:
        path = _normalize(entry or os.getcwd())
        if not os.path.isdir(path) or check.is_under(path, libraries):
            continue
        roots.append(path)
    return _outermost(roots)


def _outermost(roots: Iterable[str]) -> tuple[str, ...]:
    # A root inside another root would report each change twice.
    kept: list[str] = []
    resolved: list[str] = []
    for root in sorted(set(roots), key=len):
        if not check.is_under(root, resolved):
            kept.append(root)
            resolved.append(check.resolve(root))
    return tuple(kept)


def check_roots(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None) -> tuple[str, ...]:
    """
    Validate the paths to watch and make them absolute (None: `default_roots`).

    Raises:
        InvalidArgumentError: a path is not a string or path, or is not an existing directory or file.
    """
    if paths is None:
        return default_roots()
    return _outermost(check.watch_paths(paths))


class PathIndex:
    """
    File path to the tracked modules executed from it, for the modules under the roots.

    Kept current by the tracker's events, so it is never rebuilt: a load costs a
    ``realpath`` or two, a change one dictionary lookup.
    """

    def __init__(self, roots: tuple[str, ...], counters: WatchCounters) -> None:
        self.roots = roots
        self._counters = counters
        # Resolved, as `is_under` resolves the paths it compares with them: a module
        # found through a symlinked sys.path entry is recognised.
        self._prefixes = tuple(sorted({check.resolve(root) for root in roots}))
        # A virtual environment inside a watched project is not part of the project.
        self._excluded = tuple(
            lib
            for lib in _library_dirs()
            if any(check.is_under(lib, (root,)) and lib != root for root in self._prefixes)
        )
        # Directory as modules name it -> whether it lies under the roots (resolved).
        self._directories: dict[str, bool] = {}
        self._files: dict[str, bool] = {}
        self._names: dict[str, dict[str, int]] = {}
        self._path_of: dict[str, str] = {}
        self._order = itertools.count()
        self._lock = threading.Lock()
        renew_after_fork(self, "_lock", threading.Lock)

    def key(self, path: str) -> str:
        return check.resolve(path)

    def wants(self, origin: str | None) -> bool:
        return origin is not None and self._wants_file(origin)

    def follows(self, name: str, origin: str | None) -> bool:
        """
        Whether the load of ``name`` from ``origin`` matters to the index: a file it
        wants, or a module it indexed (loaded again from elsewhere, to be dropped).
        """
        # The tracker's load filter: every import asks, so `wants` is inlined and so is
        # `_arguments.directory_key`, keeping a module outside the roots at a dictionary
        # lookup or two.
        if name in self._path_of:
            return True
        if origin is None or not origin.endswith(_SOURCE_SUFFIXES):
            return False
        inside = self._directories.get(
            origin[: origin.rfind(_SEP) + 1] if _FAST_DIRECTORY_KEY else os.path.dirname(origin)
        )
        if inside is False:
            return False
        verdict = self._files.get(origin) if inside else None
        return self._wants_file(origin) if verdict is None else verdict

    def _wants_file(self, origin: str) -> bool:
        if not origin.endswith(_SOURCE_SUFFIXES):
            return False
        # Every import the tracker sees passes here: the directory's verdict is kept,
        # so a module outside the roots costs a dictionary lookup, not a realpath.
        key = check.directory_key(origin)
        inside = self._directories.get(key)
        if inside is None:
            inside = self._under_roots(check.resolve_directory_of(origin))
            if len(self._directories) < _DIRECTORY_CACHE_MAX:
                self._directories[key] = inside
        if not inside:
            return False
        # The file itself may be a symlink that leads out of the roots. Its verdict is
        # kept too: one load asks up to three times (filter, delivery, indexing).
        verdict = self._files.get(origin)
        if verdict is None:
            verdict = self._under_roots(check.resolve_file(origin))
            if len(self._files) < _DIRECTORY_CACHE_MAX:
                self._files[origin] = verdict
        return verdict

    def _under_roots(self, real: str) -> bool:
        return check.lies_under(real, self._prefixes) and not (
            self._excluded and check.lies_under(real, self._excluded)
        )

    def add(self, name: str, origin: str | None) -> str | None:
        """
        Index ``name`` under its file if that is under the roots; returns the file's
        key when it was newly added.
        """
        if origin is None or not self._wants_file(origin):
            if name in self._path_of:
                self.remove(name)
            return None
        # As `_wants_file` resolved it (kept): not a second realpath per load.
        key = check.resolve_file(origin)
        with self._lock:
            old = self._path_of.get(name)
            if old == key:
                return None
            if old is not None:
                self._discard(name, old)
            self._path_of[name] = key
            self._names.setdefault(key, {})[name] = next(self._order)
            self._counters.modules_indexed += 1
        return key

    def remove(self, name: str) -> None:
        with self._lock:
            old = self._path_of.pop(name, None)
            if old is not None:
                self._discard(name, old)

    def _discard(self, name: str, key: str) -> None:
        names = self._names.get(key)
        if names is not None:
            names.pop(name, None)
            if not names:
                del self._names[key]

    def lookup(self, path: str) -> list[tuple[int, str, str]]:
        """
        ``(order, name, key)`` for each module executed from ``path``.
        """
        key = self.key(path)
        with self._lock:
            self._counters.path_lookups += 1
            return [(order, name, key) for name, order in self._names.get(key, {}).items()]

    def paths(self) -> list[str]:
        with self._lock:
            return list(self._names)

    def __len__(self) -> int:
        with self._lock:
            return len(self._path_of)


class Watcher:
    """
    Watches source files and reloads the tracked modules whose file changed.

    Made by `versionload.watch` (started in a background thread) or used by
    `versionload.awatch`. Use it as a context manager, or call `stop`.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        tracker: Tracker,
        roots: tuple[str, ...],
        *,
        cascade: bool | str | Iterable[str] = False,
        update: str | None = None,
        debounce: float = DEFAULT_DEBOUNCE,
        force_polling: bool = False,
        on_change: Callable[[FileChange], object] | None = None,
        prune: bool = False,
    ) -> None:
        debounce = check.seconds(debounce, "debounce", most=10)
        if on_change is not None:
            check.callback(on_change, "on_change")
        self.tracker = tracker
        self.roots = roots
        self.counters = WatchCounters()
        self.backend: Backend = "polling" if force_polling or not _have_watchfiles() else "watchfiles"
        self._reload_options: dict[str, Any] = {}
        reach = check.cascade(cascade)
        if reach is not False:
            self._reload_options["cascade"] = True if reach is None else reach
        if update is not None:
            self._reload_options["update"] = update
        if prune:
            self._reload_options["prune"] = True
        self._debounce = float(debounce)
        self._on_change = on_change
        self._index = PathIndex(roots, self.counters)
        self._failures = threading.local()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._deliver: Callable[[set[str]], None] = self._process_and_report
        self._attached = False
        # File states for polling (the fallback thread, or `poll`): a file is first
        # statted when its module is indexed, so an edit made right after an import
        # is not mistaken for the file's first state.
        self._states: dict[str, tuple[int, int] | None] = {}
        self._logger = EventLogger()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        roots = list(self.roots)
        return f"<versionload.Watcher {state} {self.backend} roots={roots} modules={len(self._index)}>"

    # -- life cycle --------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """
        Whether the watching thread is alive.
        """
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Watcher:
        """
        Index the tracked modules and start watching in a daemon thread.

        Returns once the operating system's watch is in place, so a file written
        after this returns is seen. A stopped watcher can be started again.
        """
        if self._thread is not None:
            return self
        self._stop.clear()
        self._ready.clear()
        self.attach()
        self._thread = threading.Thread(target=self._run, name="versionload-watch", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        self._logger.info(
            "watch.started", roots=list(self.roots), backend=self.backend, modules=len(self._index)
        )
        return self

    def attach(self) -> None:
        """
        Index the tracked modules under the roots and follow the tracker's events,
        without a thread: `poll` then finds the changes (the IPython extension's way).
        """
        if not self._attached:
            self._attached = True
            # Only loads the index wants build an event: an import from outside the
            # roots stays on the hook's cheap path (no event, no history at once).
            self.tracker.subscribe(self._on_event, loads=self._index.follows)
            self.reindex()

    def detach(self) -> None:
        """
        Stop following the tracker's events.
        """
        self._attached = False
        self.tracker.unsubscribe(self._on_event)

    def stop(self, timeout: float | None = 10.0) -> None:
        """
        Stop watching and wait (up to ``timeout`` seconds) for the thread to end.
        """
        self._stop.set()
        self.detach()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if not thread.is_alive() and self._thread is thread:
                self._logger.info("watch.stopped", roots=list(self.roots))
                self._thread = None

    def __enter__(self) -> Watcher:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the index ---------------------------------------------------------------------

    def reindex(self) -> None:
        """
        Index every tracked module under the roots that is not indexed yet.

        Needed only after modules were tracked without the tracker's events reaching
        the watcher (adopted before `attach`, for example); indexing is idempotent.

        .. versionadded:: 0.2.0
        """
        for name in self.tracker.tracked():
            found = self.tracker.lookup(name)
            if found is not None:
                self._add(name, found.current.origin)

    def watches(self, path: str | None) -> bool:
        """
        Whether a module executed from ``path`` would be watched: a Python source file
        under the roots, outside the standard library, site-packages and versionload.

        .. versionadded:: 0.2.0
        """
        return self._index.wants(path)

    def _add(self, name: str, origin: str | None) -> None:
        key = self._index.add(name, origin)
        if key is not None and self.backend == "polling":
            self._states[key] = self._stat(key)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, (ModuleLoaded, ModuleReloaded)):
            self._add(event.module, event.origin)
        elif isinstance(event, HistoryEnded):
            self._index.remove(event.module)
        elif isinstance(event, ModuleReloadFailed):
            self._failures.last = event

    @property
    def watched_modules(self) -> int:
        """
        How many tracked modules have their file under the roots.
        """
        return len(self._index)

    # -- watching ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            if self.backend == "watchfiles":
                self._run_watchfiles()
            else:
                self._run_polling()
        except Exception as error:  # noqa: BLE001 - a dying watcher is reported, not silent
            report_error(error, "versionload: the file watcher stopped")
        finally:
            self._ready.set()

    def _run_watchfiles(self) -> None:
        import watchfiles

        watch_filter = watchfiles.PythonFilter()
        changes = watchfiles.watch(
            *self.roots,
            watch_filter=watch_filter,
            debounce=_MAX_BURST_MS,
            step=max(1, int(self._debounce * 1000)),
            stop_event=self._stop,
            rust_timeout=200,
            yield_on_timeout=True,
            raise_interrupt=False,
        )
        # The first iteration only returns after the watch is set up (with
        # yield_on_timeout, at the latest after rust_timeout): signal readiness then.
        for batch in changes:
            self._ready.set()
            paths = {path for _, path in batch}
            if paths:
                self._deliver(paths)
            if self._stop.is_set():
                break

    def _stat(self, path: str) -> tuple[int, int] | None:
        self.counters.stat_calls += 1
        try:
            st = os.stat(path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _poll_changed(self) -> set[str]:
        changed: set[str] = set()
        for path in self._index.paths():
            state = self._stat(path)
            if self._states.setdefault(path, state) != state:
                changed.add(path)
                self._states[path] = state
        return changed

    def poll(self) -> list[FileChange]:
        """
        Stat the watched modules' files now and reload those that changed since the
        last look (or since their module was indexed); see `process`.
        """
        return self.process(self._poll_changed())

    def _run_polling(self) -> None:
        self._ready.set()
        while not self._stop.wait(POLL_INTERVAL):
            changed = self._poll_changed()
            # Wait for the burst to end: no further change for one debounce period.
            while changed and not self._stop.wait(self._debounce):
                more = self._poll_changed()
                if not more:
                    break
                changed |= more
            if changed and not self._stop.is_set():
                self._deliver(changed)

    # -- handling a change -------------------------------------------------------------

    def _process_and_report(self, paths: set[str]) -> None:
        self.process(paths)

    def process(self, paths: Iterable[str]) -> list[FileChange]:
        """
        Reload the modules executed from ``paths``, in the order they were first
        loaded; files of no watched module are ignored.

        Returns what was done, one `FileChange` per module.
        """
        found: list[tuple[int, str, str]] = []
        for path in set(paths):
            found.extend(self._index.lookup(path))
        results = [self._handle(name, path) for _, name, path in sorted(found)]
        changes = [change for change in results if change is not None]
        if self._on_change is not None:
            for change in changes:
                try:
                    self._on_change(change)
                except Exception as error:  # noqa: BLE001 - reported, the watcher goes on
                    report_error(error, f"versionload: watch callback {self._on_change!r} failed")
        return changes

    def _handle(self, name: str, path: str) -> FileChange | None:
        found = self.tracker.lookup(name)
        if found is None:
            self._index.remove(name)
            return None
        module = found.module
        if sys.modules.get(name) is not module:
            return None  # replaced by a new import: that one has its own history
        self.counters.files_read += 1
        try:
            with open(path, "rb") as file:
                source = file.read()
        except FileNotFoundError:
            self._logger.warning("watch.file_deleted", module=name, path=path)
            return FileChange(name, path, "deleted")
        except OSError as error:
            self._logger.error("watch.file_unreadable", module=name, path=path, error=repr(error))
            return FileChange(name, path, "failed", error=repr(error))
        if hashlib.sha256(source).hexdigest() == found.current.source_sha256:
            return FileChange(name, path, "unchanged", version=found.current.number)
        return self._reload(name, module, path)

    def _reload(self, name: str, module: ModuleType, path: str) -> FileChange:
        self._failures.last = None
        try:
            with because("watcher"):
                self.tracker.reload(module, **self._reload_options, trigger=f"watch:{path}")
        except BaseException as error:
            if isinstance(error, KeyboardInterrupt) and threading.current_thread() is threading.main_thread():
                raise  # Ctrl-C during `poll` in the main thread (IPython) is the user's
            # Module code that calls sys.exit() or raises another BaseException has been
            # undone by the engine like any failure; in the watcher's thread it would
            # otherwise end the thread, and no later edit would ever be reloaded.
            failure: ModuleReloadFailed | None = self._failures.last
            cause = error.__cause__ if error.__cause__ is not None else error
            location = failure.location if failure is not None else None
            return FileChange(name, path, "failed", error=repr(cause), location=location)
        return FileChange(name, path, "reloaded", version=self.tracker.current(module).number)

    # -- async form --------------------------------------------------------------------

    async def changes(self) -> AsyncIterator[list[FileChange]]:
        """
        Watch until stopped, reloading in the event loop's thread; yield each batch.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[set[str] | None] = asyncio.Queue()

        def deliver(paths: set[str]) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, paths)

        self._deliver = deliver
        await loop.run_in_executor(None, self.start)
        stopper = threading.Thread(
            target=lambda: (self._stop.wait(), loop.call_soon_threadsafe(queue.put_nowait, None)),
            daemon=True,
        )
        stopper.start()
        try:
            while True:
                paths = await queue.get()
                if paths is None:
                    return
                changes = self.process(paths)
                if changes:
                    yield changes
        finally:
            self._stop.set()
            await loop.run_in_executor(None, self.stop)


def _have_watchfiles() -> bool:
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        return False
    return True


def make_watcher(
    paths: str | os.PathLike[str] | Collection[str | os.PathLike[str]] | None,
    *,
    cascade: bool | str | Iterable[str],
    update: str | None,
    tracker: Tracker,
    debounce: float,
    force_polling: bool,
    on_change: Callable[[FileChange], object] | None,
    prune: bool = False,
) -> Watcher:
    # Checked once, as a tuple: an iterator of patterns can be read only once.
    reach = check.cascade(cascade)
    check.flag(prune, "prune")
    if update is not None:
        # Checked now: an unknown mode would otherwise fail every reload the watcher starts.
        check.update_mode(update)
    check.instance(tracker, Tracker, "tracker", "versionload.Tracker")
    return Watcher(
        tracker,
        check_roots(paths),
        cascade=True if reach is None else reach,
        update=update,
        debounce=debounce,
        force_polling=force_polling,
        on_change=on_change,
        prune=prune,
    )
