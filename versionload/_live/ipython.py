"""
The IPython extension: ``%load_ext versionload``.

Before each cell, the tracked modules whose source file changed are reloaded, each
atomically and as a new version (like ``%autoreload``, but a module whose new code
fails keeps its old version, and every reload can be rolled back). Each reload
prints one short line (module, version, changed names); a failed one prints the
error's traceback. Magics (``%vl_help`` lists them):

- ``%vl_mode [plain|in-place|cascade]``: how modules are reloaded, for the rest of
  the session (``in-place`` updates the functions and classes that existing objects
  use, as ``%autoreload 2`` does; ``cascade`` also reloads the modules that import a
  changed one); without an argument, shows the mode;
- ``%vl_history [MODULE]``: the watched modules and their current versions, or one
  module's versions;
- ``%vl_diff MODULE A B``: the names added, removed and changed from version A to B;
- ``%vl_rollback MODULE [N]``: restore version N (default: the one before the current);
- ``%vl_undo [ID]``: undo a changeset (default: the latest not undone), every module
  it changed at once.

Which modules: those whose file lies under the directories of ``sys.path`` outside the
standard library and site-packages (the current directory included). Modules of
those directories imported before the extension was loaded are adopted as version 1.
Changes are found by statting the files of those modules only (your project's, not
everything in ``sys.modules``), once per cell; no thread, so a reload always runs
between cells, in the shell's own thread.

The shell gets the friendly lines only: when nothing handles the standard library's
``versionload`` logger, the extension gives it a `logging.NullHandler` (so Python's
last-resort handler does not print each failure a second time), and takes it away
when unloaded.
"""

from __future__ import annotations

import logging
import sys
import traceback
from types import ModuleType
from typing import Any

from .._errors import VersionLoadError
from .._events import LOGGER_NAME, Event, ModuleReloaded, ModuleReloadFailed
from .._tracker import Tracker, default_tracker
from .watch import FileChange, Watcher, default_roots

_ACTIVE: dict[int, LiveReload] = {}

#: ``%vl_mode`` argument -> the watcher's reload options.
MODES: dict[str, dict[str, Any]] = {
    "plain": {},
    "in-place": {"update": "in-place"},
    "cascade": {"cascade": True},
}


class LiveReload:
    """
    The per-shell state of the extension.
    """

    def __init__(self, shell: Any, tracker: Tracker) -> None:
        self.shell = shell
        self.tracker = tracker
        self.mode = "plain"
        self.watcher = Watcher(tracker, default_roots(), force_polling=True)
        self.watcher.attach()
        self._adopt_loaded()
        self.quieted: logging.Handler | None = None
        logger = logging.getLogger(LOGGER_NAME)
        if not logger.handlers:
            self.quieted = logging.NullHandler()
            logger.addHandler(self.quieted)

    def set_mode(self, mode: str) -> None:
        """
        Reload with ``mode`` from now on: a new watcher with those options replaces the old.
        """
        watcher = Watcher(self.tracker, self.watcher.roots, force_polling=True, **MODES[mode])
        watcher.attach()
        watcher.reindex()
        self.watcher.detach()
        self.watcher, self.mode = watcher, mode

    def _adopt_loaded(self) -> None:
        # Modules of the project imported before %load_ext: without a version 1 they
        # could not be reloaded atomically (there would be nothing to go back to).
        for name, module in list(sys.modules.items()):
            if isinstance(module, ModuleType) and self.watcher.watches(getattr(module, "__file__", None)):
                found = self.tracker.lookup(name)
                if found is None or found.module is not module:
                    self.tracker.track(module)
        self.watcher.reindex()

    def pre_run_cell(self, *_: object) -> None:
        events: list[Event] = []
        self.tracker.subscribe(events.append)
        try:
            changes = self.watcher.poll()
        finally:
            self.tracker.unsubscribe(events.append)
        for change in changes:
            _report(change, events)

    def close(self) -> None:
        self.watcher.detach()
        if self.quieted is not None:
            logging.getLogger(LOGGER_NAME).removeHandler(self.quieted)
            self.quieted = None


def _names(event: ModuleReloaded) -> str:
    shown = [*(f"+{name}" for name in event.added), *event.changed, *(f"-{name}" for name in event.removed)]
    total = event.added_count + event.changed_count + event.removed_count
    if not total:
        return ""
    more = f" and {total - len(shown)} more" if total > len(shown) else ""
    return f": {', '.join(shown)}{more}"


def _report(change: FileChange, events: list[Event]) -> None:
    if change.outcome == "reloaded":
        reloaded = [e for e in events if isinstance(e, ModuleReloaded) and e.module == change.module]
        names = _names(reloaded[-1]) if reloaded else ""
        also = [e.module for e in events if isinstance(e, ModuleReloaded) and e.module != change.module]
        cascade = f" (with {', '.join(also)})" if also else ""
        print(f"versionload: reloaded {change.module} (version {change.version}){names}{cascade}")
    elif change.outcome == "failed":
        where = f" at {change.location}" if change.location else ""
        print(
            f"versionload: reloading {change.module} failed{where}; the previous version keeps running",
            file=sys.stderr,
        )
        failures = [e for e in events if isinstance(e, ModuleReloadFailed) and e.exc_info is not None]
        if failures and failures[-1].exc_info is not None:
            error = failures[-1].exc_info
            print("".join(traceback.format_exception(error)), end="", file=sys.stderr)
        else:
            print(change.error, file=sys.stderr)
    elif change.outcome == "deleted":
        print(f"versionload: {change.path} was deleted; {change.module} keeps running", file=sys.stderr)


def load_ipython_extension(shell: Any) -> None:
    """
    Install the hook, reload changed modules before each cell, and add the magics.
    """
    if id(shell) in _ACTIVE:
        return
    # What versionload.install() does: the default settings, the hook in place.
    tracker = default_tracker()
    tracker.configure()
    live = LiveReload(shell, tracker.install())
    _ACTIVE[id(shell)] = live
    shell.events.register("pre_run_cell", live.pre_run_cell)
    for name, function in MAGICS.items():
        shell.register_magic_function(_bind(function, live), magic_kind="line", magic_name=name)


def unload_ipython_extension(shell: Any) -> None:
    """
    Stop reloading before each cell (the magics stay; histories are kept).
    """
    live = _ACTIVE.pop(id(shell), None)
    if live is not None:
        shell.events.unregister("pre_run_cell", live.pre_run_cell)
        live.close()


def _bind(function: Any, live: LiveReload) -> Any:
    def magic(line: str) -> None:
        from IPython.core.error import UsageError

        try:
            function(live, line.split())
        except VersionLoadError as error:
            raise UsageError(str(error)) from None

    magic.__doc__ = function.__doc__
    return magic


def _usage(message: str) -> Exception:
    from IPython.core.error import UsageError

    return UsageError(message)


def _number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _usage(f"expected a version number, got {text!r}") from None


def _history(live: LiveReload, args: list[str]) -> None:
    """
    %vl_history [MODULE]: the watched modules and their versions, or one module's versions.
    """
    if len(args) > 1:
        raise _usage("usage: %vl_history [MODULE]")
    if not args:
        shown = 0
        for name in live.tracker.tracked():
            found = live.tracker.lookup(name)
            if found is not None and live.watcher.watches(found.current.origin):
                print(f"{name}: version {found.current.number} ({len(found.versions)} kept)")
                shown += 1
        if not shown:
            print("no watched modules yet: import a module of your project")
        return
    current = live.tracker.current(args[0]).number
    for version in live.tracker.history(args[0]):
        marker = "*" if version.number == current else " "
        sha = (version.source_sha256 or "-")[:12]
        print(
            f"{marker} {version.number:>3}  {version.reason:<8} {version.created_at:%H:%M:%S}  source {sha}"
        )


def _diff(live: LiveReload, args: list[str]) -> None:
    """
    %vl_diff MODULE A B: the names added, removed and changed from version A to version B.
    """
    if len(args) != 3:
        raise _usage("usage: %vl_diff MODULE A B")
    changes = live.tracker.diff(args[0], _number(args[1]), _number(args[2]))
    print(f"{changes.module}: version {changes.from_version} -> {changes.to_version}")
    if not changes:
        print("  no changes")
    for label, names in (
        ("added", changes.added),
        ("removed", changes.removed),
        ("changed", changes.changed),
    ):
        if names:
            print(f"  {label}: {', '.join(names)}")


def _rollback(live: LiveReload, args: list[str]) -> None:
    """
    %vl_rollback MODULE [N]: restore version N (default: the one before the current).
    """
    if len(args) not in (1, 2):
        raise _usage("usage: %vl_rollback MODULE [N]")
    previous = live.tracker.current(args[0]).number
    to = _number(args[1]) if len(args) == 2 else None
    live.tracker.rollback(args[0], to, trigger="ipython")
    now = live.tracker.current(args[0]).number
    print(f"versionload: rolled {args[0]} back to version {now} (was {previous})")


def _undo(live: LiveReload, args: list[str]) -> None:
    """
    %vl_undo [ID]: undo changeset ID (default: the latest not undone), all its modules at once.
    """
    if len(args) > 1:
        raise _usage("usage: %vl_undo [ID]")
    wanted = None
    if args:
        try:
            wanted = int(args[0])
        except ValueError:
            raise _usage(f"expected a changeset id, got {args[0]!r}") from None
    undo = live.tracker.undo(wanted, trigger="ipython")
    moved = ", ".join(f"{c.module} {c.before} -> {c.after}" for c in undo.changes)
    print(f"versionload: undid changeset {undo.undoes} ({moved})")


def _mode(live: LiveReload, args: list[str]) -> None:
    """
    %vl_mode [plain|in-place|cascade]: how changed modules are reloaded from now on.
    """
    if len(args) > 1 or (args and args[0] not in MODES):
        raise _usage(f"usage: %vl_mode [{'|'.join(MODES)}]")
    if args:
        live.set_mode(args[0])
    print(f"versionload: reload mode {live.mode}")


def _help(live: LiveReload, args: list[str]) -> None:
    """
    %vl_help: the versionload magics.
    """
    print(f"versionload reloads changed modules before each cell (mode: {live.mode}).")
    for function in MAGICS.values():
        print(f"  {(function.__doc__ or '').strip().splitlines()[0]}")


MAGICS = {
    "vl_mode": _mode,
    "vl_history": _history,
    "vl_diff": _diff,
    "vl_rollback": _rollback,
    "vl_undo": _undo,
    "vl_help": _help,
}
