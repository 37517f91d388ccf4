"""
Long runs of reloads, rollbacks and module deletions: memory stays flat, and the
tracker keeps nothing alive that the program has let go of.

The default run does 1,000 cycles; the long one (``-m stress``) 10,000::

    python3 dev.py test -m stress tests/test_leaks.py
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
import tracemalloc
import weakref
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest
import structlog

import versionload
from versionload import _source

from .helpers import ModuleTree


@pytest.fixture(autouse=True)
def _quiet_logging() -> None:
    """
    Keep structlog's whole pipeline running, but render into nothing: captured output
    would otherwise grow with every event and look like a leak.
    """
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())


#: Only memory that versionload's own code allocated and still holds is measured: the
#: interpreter's caches (the interned-string table, the method cache) and pytest's state
#: grow by themselves in a long session, in steps of up to megabytes, and are not ours.
_OWN_CODE = [tracemalloc.Filter(True, os.path.join(os.path.dirname(versionload.__file__), "*"))]


@pytest.fixture(name="traced")
def _traced() -> Iterator[Callable[[], int]]:
    """
    Start tracemalloc; yields a function returning, after a full collection, the size of
    the live blocks that versionload's own code allocated.
    """
    tracemalloc.start()

    def measure() -> int:
        gc.collect()
        snapshot = tracemalloc.take_snapshot().filter_traces(_OWN_CODE)
        return sum(stat.size for stat in snapshot.statistics("filename"))

    yield measure
    tracemalloc.stop()


def _growth_per_half(traced: Callable[[], int], half: Callable[[], None]) -> tuple[int, int]:
    """
    Traced growth over each of two equal runs of ``half``.

    One-off allocations (a dict of the interpreter's that resizes, a cache that fills)
    land in one run or the other; a leak grows in both.
    """
    start = traced()
    half()
    middle = traced()
    half()
    return middle - start, traced() - middle


def _assert_flat(grown: tuple[int, int], per_half: int) -> None:
    # 24 KiB per half: a leak of 48 bytes per operation shows in both halves at 500
    # operations per half (default run), of 5 bytes at 5,000 (the stress run).
    limit = 24 * 1024
    assert min(grown) < limit, f"grew {grown} bytes in each half of {per_half} operations"


def _cycles(tracker: versionload.Tracker, module: ModuleType, count: int) -> None:
    for _ in range(count):
        tracker.reload(module)
        tracker.rollback(module)


class TestReloadRollbackCycles:
    @pytest.mark.parametrize(
        "cycles", [1_000, pytest.param(10_000, marks=pytest.mark.stress, id="10000-stress")]
    )
    def test_memory_stays_flat(
        self, tree: ModuleTree, tracker: versionload.Tracker, traced: Callable[[], int], cycles: int
    ) -> None:
        """Thousands of reload+rollback cycles leave traced memory flat: the second half keeps nothing."""
        tree.module("lk_mod", "VALUE = list(range(100))\ndef get():\n    return VALUE\n")
        module = importlib.import_module("lk_mod")
        # Warm up: fill the history to max_versions and every cache on the way.
        _cycles(tracker, module, 50)
        grown = _growth_per_half(traced, lambda: _cycles(tracker, module, cycles // 2))
        print(f"{cycles} cycles: traced memory grew {grown} bytes per half")
        history = tracker.history(module)
        assert len(history) <= tracker.max_versions
        assert history[-1].number == 1 + 50 + cycles
        _assert_flat(grown, cycles // 2)

    def test_pruned_versions_are_freed(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """Objects that only pruned versions referred to are garbage once pruned."""
        tree.module("lk_pruned", "class Payload:\n    pass\nPAYLOAD = Payload()\n")
        module = importlib.import_module("lk_pruned")
        first = weakref.ref(module.PAYLOAD)
        tracker.max_versions = 2
        tracker.reload(module)
        tracker.reload(module)
        gc.collect()
        assert first() is None
        assert [v.number for v in tracker.history(module)] == [2, 3]


class TestDeletedModules:
    @pytest.mark.parametrize("count", [200, pytest.param(2_000, marks=pytest.mark.stress, id="2000-stress")])
    def test_deleted_modules_are_collected_and_forgotten(
        self, tree: ModuleTree, tracker: versionload.Tracker, count: int
    ) -> None:
        """Modules deleted from sys.modules and dropped by the program leave no reference and no history."""
        refs = []
        for index in range(count):
            name = f"lk_gone{index}"
            tree.module(name, "VALUE = 1\ndef get():\n    return VALUE\n")
            module = importlib.import_module(name)
            tracker.reload(module)
            tracker.rollback(module)
            refs.append(weakref.ref(module))
            del sys.modules[name]
            del module
        gc.collect()
        assert [ref for ref in refs if ref() is not None] == []
        assert [name for name in tracker.tracked() if name.startswith("lk_gone")] == []

    def test_discarded_first_imports_are_freed_without_another_call(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        Modules imported and dropped free what they bound although nothing calls versionload meanwhile.
        """
        refs = []
        for index in range(500):
            name = f"lk_queued{index}"
            tree.module(name, "class Big:\n    pass\nBIG = Big()\nBIG.payload = bytes(10_000)\n")
            module = importlib.import_module(name)
            refs.append(weakref.ref(module.BIG))
            del sys.modules[name]
            del module

        gc.collect()

        assert [] == [ref for ref in refs if ref() is not None]
        # The histories they would have had ended all the same.
        assert [] == [name for name in tracker.tracked() if name.startswith("lk_queued")]

    def test_collected_module_history_is_freed_at_once(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        A collected module's versions are freed at once; its history_ended event comes with the next call.
        """
        events: list[versionload.Event] = []
        tracker.subscribe(events.append)
        tree.module("lk_ended", "class Big:\n    pass\nBIG = Big()\n")
        module = importlib.import_module("lk_ended")
        tracker.reload(module)
        refs = [weakref.ref(version.bindings["BIG"]) for version in tracker.history(module)]
        del sys.modules["lk_ended"]
        del module

        gc.collect()

        assert [None, None] == [ref() for ref in refs]
        assert "lk_ended" not in tracker.tracked()
        assert [versionload.HistoryEnded(module="lk_ended", last_version=2, reason="collected")] == [
            event for event in events if isinstance(event, versionload.HistoryEnded)
        ]

    def test_reimporting_the_same_name_keeps_memory_flat(
        self, tree: ModuleTree, tracker: versionload.Tracker, traced: Callable[[], int]
    ) -> None:
        """Deleting and re-importing one name a thousand times leaves no history behind and flat memory."""
        tree.module("lk_again", "VALUE = list(range(100))\n")

        def once() -> None:
            importlib.import_module("lk_again")
            del sys.modules["lk_again"]

        def many() -> None:
            for _ in range(500):
                once()

        for _ in range(50):
            once()
        grown = _growth_per_half(traced, many)
        print(f"1,000 re-imports: traced memory grew {grown} bytes per half")
        assert "lk_again" not in tracker.tracked()
        _assert_flat(grown, 500)

    def test_self_referencing_module_is_released_by_forget(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """A module that binds itself stays alive through its versions until its history is forgotten."""
        tree.module("lk_self", "import sys\nTHIS = sys.modules[__name__]\n")
        ref = weakref.ref(importlib.import_module("lk_self"))
        del sys.modules["lk_self"]
        gc.collect()
        # Its version 1 holds THIS, the module itself: rollback must be able to restore it.
        assert ref() is not None
        assert tracker.forget("lk_self")
        gc.collect()
        assert ref() is None


def _compiled_paths(name_prefix: str) -> list[str]:
    """
    The source paths of ``name_prefix*`` modules whose code the compile cache holds.
    """
    return sorted(
        path
        for path, entry in list(_source._compiled.items())
        if os.path.basename(path).startswith(name_prefix)
    )


class TestCompileCache:
    def test_code_of_collected_modules_is_freed(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        The code that reloads compiled is freed once the modules are dropped by the program.
        """
        refs = []
        for index in range(50):
            name = f"lk_code{index}"
            tree.module(name, "def get():\n    return 1\n")
            module = importlib.import_module(name)
            tracker.reload(module)
            # The function's code is a constant of the module's code that the reload compiled.
            refs.append(weakref.ref(module.get.__code__))
            del sys.modules[name]
            del module

        gc.collect()

        assert [] == [ref for ref in refs if ref() is not None]
        assert [] == _compiled_paths("lk_code")

    def test_forgotten_module_leaves_no_code(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        Forgetting a module's history drops its code from the compile cache too.
        """
        tree.module("lk_forgotten", "X = 1\n")
        module = importlib.import_module("lk_forgotten")
        tracker.reload(module)
        assert 1 == len(_compiled_paths("lk_forgotten"))  # the premise: the reload's code is kept

        tracker.forget(module)

        assert [] == _compiled_paths("lk_forgotten")

    def test_entries_are_bounded(
        self, tree: ModuleTree, tracker: versionload.Tracker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        The cache keeps the code of at most COMPILE_CACHE_MAX_ENTRIES files, the most recently used.
        """
        monkeypatch.setattr(_source, "COMPILE_CACHE_MAX_ENTRIES", 10)
        modules = []
        for index in range(25):
            tree.module(f"lk_many{index:02}", "X = 1\n")
            modules.append(importlib.import_module(f"lk_many{index:02}"))
            tracker.reload(modules[-1])
        tracker.reload(modules[3])  # used again: kept

        actual = [os.path.basename(path) for path in _compiled_paths("lk_many")]

        assert [f"lk_many{index:02}.py" for index in [3, *range(16, 25)]] == actual

    def test_source_bytes_are_bounded(
        self, tree: ModuleTree, tracker: versionload.Tracker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        The cache keeps code compiled from at most COMPILE_CACHE_MAX_SOURCE_BYTES of source.
        """
        monkeypatch.setattr(_source, "COMPILE_CACHE_MAX_SOURCE_BYTES", 10_000)
        source = "X = 1\n" + "# padding\n" * 300  # about 3 kB
        modules = []
        for index in range(10):
            tree.module(f"lk_bytes{index}", source)
            modules.append(importlib.import_module(f"lk_bytes{index}"))
            tracker.reload(modules[-1])

        actual = [os.path.basename(path) for path in _compiled_paths("lk_bytes")]

        assert ["lk_bytes7.py", "lk_bytes8.py", "lk_bytes9.py"] == actual
