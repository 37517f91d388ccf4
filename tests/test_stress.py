"""
Many threads importing, reloading, rolling back, deleting and editing overlapping
modules at once: nothing deadlocks, nothing but the documented errors escapes, and
every history is consistent afterwards.

The default run lasts about a second; the long one (``-m stress``) much longer::

    python3 dev.py test -m stress tests/test_stress.py
"""

from __future__ import annotations

import importlib
import importlib._bootstrap as _bootstrap
import itertools
import os
import random
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

import versionload
from versionload._engine import module_lock

from .helpers import ModuleTree, wait_for

# The import system's own deadlock report: it is how a lock cycle between threads
# importing each other's modules ends, with or without versionload.
_DeadlockError: type[BaseException] = _bootstrap._DeadlockError  # type: ignore[attr-defined]

PLAIN = [f"st_plain{i}" for i in range(5)]
CYCLE = ["st_cyc0", "st_cyc1"]
ALL = PLAIN + CYCLE


# Module code that an edit made fail raises this, with this message.
PLANNED = "planned failure"


def _source(name: str, serial: int, fail: bool) -> str:
    lines = [f"VALUE = {serial}", "marker = object()", "def get():", "    return VALUE"]
    if name in CYCLE:
        # Each imports the other at the top: reloads and re-imports cross locks.
        other = CYCLE[1 - CYCLE.index(name)]
        lines.insert(0, f"import {other}")
    if name == "st_plain1":
        lines.insert(0, "import st_plain0")
    if fail:
        lines.append(f"raise ArithmeticError({PLANNED!r})")
    return "\n".join(lines) + "\n"


def _write_atomically(root: Path, name: str, text: str) -> None:
    target = root / f"{name}.py"
    temporary = root / f".{name}.{threading.get_ident()}.tmp"
    temporary.write_text(text)
    os.replace(temporary, target)
    importlib.invalidate_caches()


class Worker(threading.Thread):
    """
    Runs random operations until ``stop`` is set; keeps any unexpected exception.
    """

    def __init__(
        self,
        seed: int,
        tracker: versionload.Tracker,
        root: Path,
        stop: threading.Event,
        external: bool = False,
    ) -> None:
        super().__init__(name=f"stress-{seed}", daemon=True)
        self.random = random.Random(seed)
        self.tracker = tracker
        self.root = root
        self.stop = stop
        self.unexpected: list[BaseException] = []
        self.counts: Counter[str] = Counter()
        self.serial = itertools.count(seed * 1_000_000)
        self.external = external

    def run(self) -> None:
        operations = [
            self.do_import,
            self.do_reload,
            self.do_reload,
            self.do_rollback,
            self.do_delete,
            self.do_edit,
        ]
        if self.external:
            operations += [self.do_external_reload, self.do_external_reload]
        while not self.stop.is_set():
            operation = self.random.choice(operations)
            name = self.random.choice(ALL)
            try:
                operation(name)
                self.counts[operation.__name__] += 1
            except versionload.VersionLoadError as error:
                cause = error.__cause__
                self.counts[type(error).__name__ + (f" from {type(cause).__name__}" if cause else "")] += 1
                if cause is not None and not _expected_cause(cause):
                    self.unexpected.append(error)
            except ArithmeticError as error:
                if str(error) != PLANNED:
                    self.unexpected.append(error)
                self.counts["module code failed"] += 1
            except ImportError as error:
                # Only importlib.reload raises a plain ImportError here: the module was deleted.
                if not (self.external and "not in sys.modules" in str(error)):
                    self.unexpected.append(error)
                self.counts["importlib.reload of a deleted module"] += 1
            except KeyError as error:
                # importlib.reload itself reads sys.modules[name] after releasing the
                # module lock (CPython 3.11), so a concurrent delete raises there: the
                # stdlib's own race, which versionload's reload does not have.
                if not (self.external and _raised_in_importlib_reload(error)):
                    self.unexpected.append(error)
                self.counts["importlib.reload's own KeyError"] += 1
            except _DeadlockError:
                self.counts["import deadlock detected"] += 1
            except BaseException as error:  # noqa: BLE001 - collected and reported by the test
                self.unexpected.append(error)

    def do_import(self, name: str) -> None:
        importlib.import_module(name)

    def do_reload(self, name: str) -> None:
        self.tracker.reload(name)

    def do_external_reload(self, name: str) -> None:
        module = sys.modules.get(name)
        if module is not None:
            importlib.reload(module)

    def do_rollback(self, name: str) -> None:
        module = sys.modules.get(name)
        if module is None:
            return
        numbers = [v.number for v in self.tracker.history(module)]
        target = self.random.choice([*numbers, None, max(numbers) + 5])
        self.tracker.rollback(module, to=target)

    def do_delete(self, name: str) -> None:
        # Deleting an entry while another thread is still loading it breaks the import
        # system itself (its final sys.modules.pop raises KeyError), so a host deletes
        # under the module's import lock, as the import system does.
        with module_lock(name):
            sys.modules.pop(name, None)

    def do_edit(self, name: str) -> None:
        fail = self.random.random() < 0.1
        _write_atomically(self.root, name, _source(name, next(self.serial), fail))


def _expected_cause(cause: BaseException) -> bool:
    """
    What may make a reload fail here: the planned failure, or the import system's
    deadlock report when reloads and imports of the two cyclic modules cross.
    """
    return (isinstance(cause, ArithmeticError) and str(cause) == PLANNED) or isinstance(cause, _DeadlockError)


def _raised_in_importlib_reload(error: BaseException) -> bool:
    frames = list(traceback.walk_tb(error.__traceback__))
    return bool(frames) and frames[-1][0].f_code is importlib.reload.__code__


def _run(
    tree: ModuleTree, threads: int, seconds: float, external: bool = False
) -> tuple[versionload.Tracker, list[Worker], list[object]]:
    for name in ALL:
        _write_atomically(tree.root, name, _source(name, 0, fail=False))
    tracker = versionload.Tracker(include="st_*", max_versions=5).install()
    events: list[object] = []
    tracker.subscribe(events.append)
    stop = threading.Event()
    workers = [Worker(seed, tracker, tree.root, stop, external) for seed in range(threads)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + seconds
    wait_for(lambda: time.monotonic() > deadline, timeout=seconds + 1, interval=0.05)
    stop.set()
    for worker in workers:
        worker.join(timeout=30)
    assert [worker.name for worker in workers if worker.is_alive()] == [], "deadlocked threads"
    if external:
        # A failed importlib.reload leaves a half-run namespace (stdlib semantics, not
        # repaired by versionload), so settle every module with one clean reload first.
        for name in ALL:
            _write_atomically(tree.root, name, _source(name, 0, fail=False))
        for name in ALL:
            if isinstance(sys.modules.get(name), ModuleType):
                tracker.reload(name)
    return tracker, workers, events


def _assert_consistent(tracker: versionload.Tracker, workers: list[Worker], events: list[object]) -> None:
    assert [error for worker in workers for error in worker.unexpected] == []
    totals: Counter[str] = sum((worker.counts for worker in workers), Counter())
    print(dict(totals))
    assert totals["do_reload"] > 0
    assert totals["do_rollback"] > 0
    for name in ALL:
        module = sys.modules.get(name)
        if not isinstance(module, ModuleType):
            continue
        history = tracker.history(module)
        numbers = [v.number for v in history]
        assert all(a < b for a, b in itertools.pairwise(numbers))
        current = tracker.current(module)
        assert set(current.bindings) == set(module.__dict__)
        assert all(current.bindings[k] is v for k, v in module.__dict__.items())
    # No number was ever handed out twice for one name, even across histories.
    recorded = [
        (event.module, event.version)  # type: ignore[attr-defined]
        for event in events
        if isinstance(event, (versionload.ModuleLoaded, versionload.ModuleReloaded))
    ]
    assert [key for key, count in Counter(recorded).items() if count > 1] == []


class TestConcurrentOperations:
    @pytest.mark.timeout(60)
    def test_eight_threads_for_a_second(self, tree: ModuleTree) -> None:
        """Eight threads mixing every operation on shared modules end with consistent histories."""
        tracker, workers, events = _run(tree, threads=8, seconds=1.0)
        _assert_consistent(tracker, workers, events)

    @pytest.mark.timeout(60)
    def test_with_importlib_reload_by_other_code(self, tree: ModuleTree) -> None:
        """The same mix, plus importlib.reload calls as other tools make them, stays consistent."""
        tracker, workers, events = _run(tree, threads=8, seconds=1.0, external=True)
        _assert_consistent(tracker, workers, events)

    @pytest.mark.stress
    @pytest.mark.timeout(300)
    @pytest.mark.parametrize("external", [False, True], ids=["versionload-only", "with-importlib-reload"])
    def test_sixteen_threads_for_thirty_seconds(self, tree: ModuleTree, external: bool) -> None:
        """The same mixes, longer and with more threads."""
        tracker, workers, events = _run(tree, threads=16, seconds=30.0, external=external)
        _assert_consistent(tracker, workers, events)


def _slow_module(tree: ModuleTree, name: str) -> ModuleType:
    """
    Write module ``name``, whose import stops half-way until the returned gate module's
    ``release`` is set (its ``started`` is set once the import got there).
    """
    gate = f"{name}_gate"
    tree.write(
        {
            f"{gate}.py": "import threading\nstarted = threading.Event()\nrelease = threading.Event()\n",
            f"{name}.py": f"import {gate}\n{gate}.started.set()\nassert {gate}.release.wait(20)\nVALUE = 1\n",
        }
    )
    return importlib.import_module(gate)


def _reload_during_import(
    gate: ModuleType, first_import: Callable[[], object], reload: Callable[[], object]
) -> None:
    """
    Run ``first_import`` in a thread until the module is half executed, then ``reload``
    in another, let the import go on, and wait for both to end.
    """
    importer = threading.Thread(target=first_import)
    importer.start()
    assert gate.started.wait(10)
    # The module is in sys.modules, half executed: a reload now must wait for the import.
    reloader = threading.Thread(target=reload)
    reloader.start()
    gate.release.set()
    importer.join(20)
    reloader.join(20)
    assert not importer.is_alive()
    assert not reloader.is_alive()


class TestReloadDuringFirstImport:
    @pytest.mark.timeout(30)
    def test_reload_waits_for_the_first_import_to_finish(self, tree: ModuleTree) -> None:
        """A reload started while another thread is still importing the module runs after that import."""
        gate = _slow_module(tree, "st_slow")
        tracker = versionload.Tracker(include="st_slow").install()
        errors: list[BaseException] = []
        reloaded: list[ModuleType] = []

        def first_import() -> None:
            try:
                importlib.import_module("st_slow")
            except BaseException as error:  # noqa: BLE001 - reported by the test
                errors.append(error)

        def reload() -> None:
            try:
                reloaded.append(tracker.reload("st_slow"))
            except BaseException as error:  # noqa: BLE001 - reported by the test
                errors.append(error)

        _reload_during_import(gate, first_import, reload)
        assert errors == []
        module = sys.modules["st_slow"]
        assert [module] == reloaded
        history = tracker.history(module)
        assert [v.reason for v in history] == ["import", "reload"]
        # The import's version is the finished namespace: the reload did not cut in.
        assert history[0].bindings["VALUE"] == 1
        assert tracker.current(module).bindings == dict(module.__dict__)

    @pytest.mark.timeout(30)
    def test_import_recorded_by_a_waiting_reload_is_announced_unlocked(self, tree: ModuleTree) -> None:
        """
        The load event of an import that a waiting reload records reaches subscribers while no lock is held.
        """
        gate = _slow_module(tree, "st_slow2")
        tracker = versionload.Tracker(include="st_slow2").install()
        answered: list[bool] = []

        def on_event(event: versionload.Event) -> None:
            if isinstance(event, versionload.ModuleLoaded):
                # A subscriber that waits for another thread using the tracker.
                helper = threading.Thread(target=tracker.tracked, daemon=True)
                helper.start()
                helper.join(5)
                answered.append(not helper.is_alive())

        tracker.subscribe(on_event)
        _reload_during_import(
            gate, lambda: importlib.import_module("st_slow2"), lambda: tracker.reload("st_slow2")
        )
        assert [True] == answered

    @pytest.mark.timeout(30)
    def test_rollback_during_first_import_is_not_tracked_yet(self, tree: ModuleTree) -> None:
        """A rollback while the first import still runs raises NotTrackedError and changes nothing."""
        gate = _slow_module(tree, "st_slow2")
        tracker = versionload.Tracker(include="st_slow2").install()
        importer = threading.Thread(target=importlib.import_module, args=("st_slow2",))
        importer.start()
        try:
            assert gate.started.wait(10)
            with pytest.raises(versionload.NotTrackedError):
                tracker.rollback("st_slow2")
        finally:
            gate.release.set()
            importer.join(20)
        module = sys.modules["st_slow2"]
        assert [v.number for v in tracker.history(module)] == [1]
        assert module.VALUE == 1


class TestReloadResult:
    def test_entry_deleted_right_after_the_reload_returns_the_reloaded_module(self, tree: ModuleTree) -> None:
        """A deletion between the end of a reload and its return does not turn success into a KeyError."""
        tree.module("st_gone", "VALUE = 1\n")
        tracker = versionload.Tracker(include="st_gone").install()
        module = importlib.import_module("st_gone")

        # Events are emitted after the module lock is released, exactly where another
        # thread's deletion can land; doing it from a subscriber makes the race certain.
        def delete_on_reload(event: object) -> None:
            if isinstance(event, versionload.ModuleReloaded):
                sys.modules.pop("st_gone", None)

        tracker.subscribe(delete_on_reload)
        assert module is tracker.reload(module)
        assert [v.number for v in tracker.history(module)] == [1, 2]
