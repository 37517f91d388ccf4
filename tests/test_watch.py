"""
`versionload.watch` and `versionload.awatch`: real files edited on disk, real imports,
and the operating system's notifications (or the polling fallback).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import versionload
from versionload._arguments import resolve_file
from versionload._events import is_library

from .helpers import ModuleTree, wait_for

BACKENDS = [
    pytest.param(
        False,
        id="watchfiles",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("watchfiles") is None, reason="watchfiles not installed"
        ),
    ),
    pytest.param(True, id="polling"),
]


class Recorder:
    """
    Collects the watcher's `FileChange` reports, for bounded waits on them.
    """

    def __init__(self) -> None:
        self.changes: list[Any] = []

    def __call__(self, change: Any) -> None:
        self.changes.append(change)

    def of(self, module: str, outcome: str | None = None) -> list[Any]:
        return [c for c in self.changes if c.module == module and (outcome is None or c.outcome == outcome)]

    def wait(self, module: str, outcome: str, count: int = 1) -> list[Any]:
        assert wait_for(lambda: len(self.of(module, outcome)) >= count), (module, outcome, self.changes)
        return self.of(module, outcome)


@pytest.fixture(name="polling", params=BACKENDS)
def _polling(request: pytest.FixtureRequest) -> bool:
    """
    Run the test with OS notifications (watchfiles) and with the polling fallback.
    """
    return bool(request.param)


@pytest.fixture(name="recorder")
def _recorder() -> Recorder:
    return Recorder()


@pytest.fixture(name="watching")
def _watching(
    tree: ModuleTree, tracker: versionload.Tracker, recorder: Recorder, polling: bool
) -> Iterator[versionload.Watcher]:
    """
    A watcher on the tree's directory, for the fresh tracker, reporting to ``recorder``.
    """
    watcher = versionload.watch(tree.root, tracker=tracker, on_change=recorder, force_polling=polling)
    yield watcher
    watcher.stop()
    assert not watcher.running


def _import(name: str) -> ModuleType:
    return importlib.import_module(name)


class TestWatch:
    def test_reloads_a_changed_module(self, tree, tracker, recorder, bytecode, polling):
        """Editing a tracked module's file reloads it, as a new version, in place."""
        path = tree.module("live_a", "VALUE = 1\ndef get():\n    return VALUE\n")
        module = _import("live_a")
        with versionload.watch(tree.root, tracker=tracker, on_change=recorder, force_polling=polling):
            tree.module("live_a", "VALUE = 2\ndef get():\n    return VALUE * 10\n")
            [change] = recorder.wait("live_a", "reloaded")
        assert (20, 2, str(path)) == (module.get(), change.version, change.path)
        assert sys.modules["live_a"] is module
        assert [1, 2] == [v.number for v in tracker.history(module)]

    def test_module_imported_after_start_is_watched(self, tree, tracker, recorder, watching):
        """A module imported while the watcher runs is indexed through the tracker's events."""
        tree.module("late", "X = 1\n")
        module = _import("late")
        tree.module("late", "X = 22\n")
        recorder.wait("late", "reloaded")
        assert 22 == module.X

    def test_failing_source_keeps_the_old_version(self, tree, tracker, recorder, watching):
        """New source that fails is reported with file and line; the old version keeps running."""
        path = tree.module("fragile", "def f():\n    return 'old'\n")
        module = _import("fragile")
        tree.module("fragile", "def f():\n    return 'new'\nraise RuntimeError('boom')\n")
        [change] = recorder.wait("fragile", "failed")
        assert f"{path}:3" == change.location
        assert "boom" in change.error
        assert "old" == module.f()
        assert 1 == tracker.current(module).number

    @pytest.mark.parametrize(
        "statement",
        ["import sys; sys.exit(3)", "raise KeyboardInterrupt", "raise GeneratorExit"],
        ids=["sys.exit", "KeyboardInterrupt", "GeneratorExit"],
    )
    def test_base_exception_is_a_failed_reload(self, tree, tracker, recorder, watching, statement, bytecode):
        """Module code that raises a BaseException fails its reload, and the watcher goes on watching."""
        tree.module("quitter", "def f():\n    return 'old'\n")
        module = _import("quitter")
        tree.module("quitter", f"def f():\n    return 'new'\n{statement}\n")
        [failed] = recorder.wait("quitter", "failed")
        assert ("old", 1, True) == (module.f(), tracker.current(module).number, watching.running)
        tree.module("quitter", "def f():\n    return 'fixed'\n")
        [reloaded] = recorder.wait("quitter", "reloaded")

        assert ("fixed", 2) == (module.f(), reloaded.version)
        assert failed.error.split("(")[0] in {"SystemExit", "KeyboardInterrupt", "GeneratorExit"}

    def test_syntax_error_location(self, tree, tracker, recorder, watching):
        """A syntax error is reported at the line the compiler names."""
        path = tree.module("typo", "A = 1\n")
        _import("typo")
        tree.module("typo", "A = 1\nB = (\n")
        [change] = recorder.wait("typo", "failed")
        assert change.location.startswith(f"{path}:")
        assert "SyntaxError" in change.error

    def test_deleted_file_is_reported(self, tree, tracker, recorder, watching):
        """Deleting a module's file is reported; the module keeps running and the watcher goes on."""
        tree.module("doomed", "A = 1\n")
        module = _import("doomed")
        tree.remove("doomed.py")
        recorder.wait("doomed", "deleted")
        tree.module("doomed", "A = 2\n")
        recorder.wait("doomed", "reloaded")
        assert 2 == module.A

    def test_unrelated_files_are_ignored(self, tree, tracker, recorder, watching):
        """Files of no tracked module change nothing; a later tracked edit is still handled."""
        tree.module("kept", "A = 1\n")
        _import("kept")
        tree.module("never_imported", "A = 1\n")
        tree.write({"notes.txt": "hello"})
        tree.module("kept", "A = 2\n")
        recorder.wait("kept", "reloaded")
        assert ["kept"] == sorted({c.module for c in recorder.changes})

    def test_only_modules_under_the_roots(self, tree, tmp_path, tracker, recorder, polling):
        """A tracked module outside the watched roots is never reloaded, even when its file changes."""
        watched = tree.root / "watched"
        tree.module("watched.inner", "A = 1\n")
        tree.module("outside", "A = 1\n")
        inner, outside = _import("watched.inner"), _import("outside")
        with versionload.watch(watched, tracker=tracker, on_change=recorder, force_polling=polling):
            tree.module("outside", "A = 2\n")
            tree.module("watched.inner", "A = 2\n")
            recorder.wait("watched.inner", "reloaded")
        assert (2, 1) == (inner.A, outside.A)
        assert [] == recorder.of("outside")

    def test_burst_of_writes_is_one_reload(self, tree, tracker, recorder, watching):
        """Several writes in a burst (as editors save) lead to a single reload of the last content."""
        tree.module("bursty", "A = 0\n")
        module = _import("bursty")
        for value in range(1, 6):
            tree.module("bursty", f"A = {value}\n")
        recorder.wait("bursty", "reloaded")
        tree.module("sentinel_after_burst", "B = 1\n")
        _import("sentinel_after_burst")
        tree.module("sentinel_after_burst", "B = 2\n")
        recorder.wait("sentinel_after_burst", "reloaded")
        assert 5 == module.A
        assert 1 == len(recorder.of("bursty", "reloaded"))

    def test_package_modules_reload_in_load_order(self, tree, tracker, recorder, polling):
        """Two modules changed together are reloaded in the order they were first imported."""
        # The package exists before the watch starts: inotify watches a directory created
        # later only some milliseconds after it appears, and this test is not about that.
        tree.module("pkg_order.first", "A = 1\n")
        tree.module("pkg_order.second", "A = 1\n")
        _import("pkg_order.first")
        _import("pkg_order.second")
        with versionload.watch(tree.root, tracker=tracker, on_change=recorder, force_polling=polling):
            tree.write({"pkg_order/second.py": "A = 2\n", "pkg_order/first.py": "A = 2\n"})
            recorder.wait("pkg_order.second", "reloaded")
            recorder.wait("pkg_order.first", "reloaded")
        order = [c.module for c in recorder.changes if c.outcome == "reloaded"]
        if len(order) == 2:  # one batch: ordered; two batches are ordered by the OS, not by us
            assert ["pkg_order.first", "pkg_order.second"] == order

    def test_polling_fallback_without_watchfiles(self, tree, tracker, recorder, monkeypatch):
        """Without watchfiles importable, the watcher polls, and still reloads."""
        monkeypatch.setitem(sys.modules, "watchfiles", None)  # `import watchfiles` now fails
        tree.module("no_wf", "A = 1\n")
        module = _import("no_wf")
        with versionload.watch(tree.root, tracker=tracker, on_change=recorder) as watcher:
            assert "polling" == watcher.backend
            tree.module("no_wf", "A = 2\n")
            recorder.wait("no_wf", "reloaded")
        assert 2 == module.A

    def test_stop_is_clean(self, tree, tracker, polling):
        """stop() ends the thread and unsubscribes; later edits reload nothing."""
        watcher = versionload.watch(tree.root, tracker=tracker, force_polling=polling)
        assert watcher.running
        watcher.stop()
        assert not watcher.running
        assert watcher._on_event not in tracker._registry.subscribers

    def test_restart_after_stop(self, tree, tracker, recorder, polling):
        """A stopped watcher started again watches again."""
        tree.module("again", "A = 1\n")
        module = _import("again")
        watcher = versionload.watch(tree.root, tracker=tracker, on_change=recorder, force_polling=polling)
        watcher.stop()
        with watcher:
            tree.module("again", "A = 2\n")
            recorder.wait("again", "reloaded")
        assert 2 == module.A


class TestWatchOptions:
    def test_cascade_and_update_passed_only_when_asked(self, tree):
        """The watcher passes cascade (patterns as a tuple) and update on, and names the file as trigger."""
        calls: list[dict[str, Any]] = []

        class Recording(versionload.Tracker):
            def reload(self, module, *, cascade=False, update=None, prune=False, trigger=None):  # type: ignore[override]
                calls.append({"cascade": cascade, "update": update, "trigger": trigger})
                return super().reload(module)

        patterns = (pattern for pattern in ["opt_*"])  # an iterator: read once, kept as a tuple
        for options in ({}, {"cascade": True, "update": "in-place"}, {"cascade": patterns}):
            tracker = Recording().install()
            name = f"opt_{len(calls)}"
            tree.module(name, "A = 1\n")
            _import(name)
            seen = Recorder()
            with versionload.watch(tree.root, tracker=tracker, on_change=seen, **options):
                tree.module(name, "A = 2\n")
                seen.wait(name, "reloaded")
            tracker.uninstall()
        assert [
            {"cascade": False, "update": None, "trigger": f"watch:{tree.root / 'opt_0.py'}"},
            {"cascade": True, "update": "in-place", "trigger": f"watch:{tree.root / 'opt_1.py'}"},
            {"cascade": ("opt_*",), "update": None, "trigger": f"watch:{tree.root / 'opt_2.py'}"},
        ] == calls

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"paths": "/no/such/dir/anywhere"}, "no such file"),
            ({"paths": [3]}, "paths must be"),
            ({"paths": []}, "paths is empty"),
            ({"cascade": 1}, "cascade"),
            ({"cascade": [""]}, "cascade"),
            ({"update": 3}, "update"),
            ({"update": "sideways"}, "update must be None, 'rebind' or 'in-place', got 'sideways'"),
            ({"debounce": 0}, "debounce"),
            ({"tracker": object()}, "tracker"),
            ({"on_change": 3}, "on_change"),
        ],
    )
    def test_bad_arguments(self, tree, kwargs, match):
        """Bad arguments raise InvalidArgumentError (also a ValueError) before anything starts."""
        kwargs.setdefault("paths", tree.root)
        with pytest.raises(versionload.InvalidArgumentError, match=match) as info:
            versionload.watch(**kwargs)
        assert isinstance(info.value, ValueError)

    def test_default_roots_skip_the_standard_library(self, tree):
        """With no paths, sys.path directories are watched except the standard library and site-packages."""
        from versionload._live.watch import default_roots

        roots = default_roots()
        assert str(tree.root) in roots
        assert not any(Path(root) == Path(importlib.__file__).parent.parent for root in roots)

    def test_import_does_not_load_watchfiles(self):
        """Importing versionload imports neither watchfiles nor the watcher module."""
        code = (
            "import sys, versionload; "
            "print(sorted(m for m in ('watchfiles', 'versionload._live.watch') if m in sys.modules))"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert "[]" == result.stdout.strip()


class TestWatchFollowsLoads:
    """
    The watcher asks for the loads of its files only, and still sees its modules leave.
    """

    def test_module_loaded_again_from_outside_the_roots_is_dropped(
        self, tree: ModuleTree, tracker: versionload.Tracker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        A watched module imported anew from outside the roots is no longer watched.
        """
        tree.write(
            {"inside/wt_follow.py": "WHERE = 'inside'\n", "outside/wt_follow.py": "WHERE = 'outside'\n"}
        )
        monkeypatch.syspath_prepend(str(tree.path("inside")))
        first = _import("wt_follow")
        watcher = versionload.watch(tree.path("inside"), tracker=tracker, force_polling=True)
        try:
            assert 1 == watcher.watched_modules
            del sys.modules["wt_follow"]
            monkeypatch.syspath_prepend(str(tree.path("outside")))
            importlib.invalidate_caches()
            second = _import("wt_follow")

            assert ("inside", "outside") == (first.WHERE, second.WHERE)
            assert 0 == watcher.watched_modules
        finally:
            watcher.stop()


class TestWatchCost:
    @staticmethod
    def _work_for_one_change(tree: ModuleTree, tracker: versionload.Tracker, count: int) -> tuple[int, ...]:
        package = f"many{count}"
        tree.write(
            {f"{package}/__init__.py": "", **{f"{package}/m{i}.py": f"A = {i}\n" for i in range(count)}}
        )
        for i in range(count):
            _import(f"{package}.m{i}")
        seen = Recorder()
        with versionload.watch(tree.root / package, tracker=tracker, on_change=seen) as watcher:
            indexed = watcher.counters.modules_indexed
            assert count <= watcher.watched_modules
            before = (watcher.counters.path_lookups, watcher.counters.stat_calls, watcher.counters.files_read)
            tree.write({f"{package}/m0.py": "A = 'changed'\n"})
            seen.wait(f"{package}.m0", "reloaded")
            after = (watcher.counters.path_lookups, watcher.counters.stat_calls, watcher.counters.files_read)
            assert indexed == watcher.counters.modules_indexed  # no rebuild of the index
        return tuple(b - a for a, b in zip(before, after, strict=True))

    @pytest.mark.skipif(importlib.util.find_spec("watchfiles") is None, reason="watchfiles not installed")
    def test_work_per_change_does_not_grow_with_loaded_modules(self, tree, tracker):
        """One change costs the same lookups, stats and reads with 10 or 3000 loaded, unchanged modules."""
        small = self._work_for_one_change(tree, tracker, 10)
        large = self._work_for_one_change(tree, tracker, 3000)
        assert small == large
        assert (1, 0, 1) == large


class TestAwatch:
    def test_async_iterator_reloads_in_the_loop(self, tree, tracker, polling):
        """awatch yields batches of changes; the reload runs in the event loop's thread."""
        tree.module("async_mod", "A = 1\n")
        module = _import("async_mod")

        async def scenario() -> list[Any]:
            async def keep_editing() -> None:
                # The watcher starts on the first iteration; rewriting until it is seen
                # makes the test independent of when exactly that is.
                while True:
                    tree.module("async_mod", "A = 2\n")
                    await asyncio.sleep(0.2)

            editor = asyncio.ensure_future(keep_editing())
            try:
                async for batch in versionload.awatch(tree.root, tracker=tracker, force_polling=polling):
                    if any(c.outcome == "reloaded" for c in batch):
                        return batch
            finally:
                editor.cancel()
            return []

        batch = asyncio.run(asyncio.wait_for(scenario(), 20))
        assert ["async_mod"] == [c.module for c in batch if c.outcome == "reloaded"]
        assert 2 == module.A


class TestWatchResolvesOncePerDirectory:
    """
    The watcher's index resolves a module's file from its directory's kept answer
    (`_arguments.resolve_file`): through symlinks it gives what ``realpath`` gives.
    """

    def test_module_under_a_symlinked_directory_is_indexed_under_its_real_path(
        self, tree: ModuleTree, tracker: versionload.Tracker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """
        Imported through a symlink to a directory under the root, a module is watched,
        keyed by its real file, and is no library module.
        """
        tree.write({"real/wt_linked_dir/__init__.py": "", "real/wt_linked_dir/mod.py": "X = 1\n"})
        link = tmp_path / "linked"
        link.symlink_to(tree.path("real"))
        monkeypatch.syspath_prepend(str(link))
        watcher = versionload.watch(tree.path("real"), tracker=tracker, force_polling=True)
        try:
            module = _import("wt_linked_dir.mod")
            origin = module.__spec__.origin
            assert origin.startswith(str(link))
            assert 2 == watcher.watched_modules
            real = os.path.realpath(origin)
            assert [real] == [path for path in watcher._index.paths() if path.endswith("mod.py")]
            assert (real, False) == (resolve_file(origin), is_library(origin))
        finally:
            watcher.stop()

    def test_module_file_that_is_a_symlink_is_judged_by_its_target(
        self, tree: ModuleTree, tracker: versionload.Tracker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """
        A module file that is itself a symlink: to a file under the root, it is watched
        and keyed by the target; to a file outside, it is not watched.
        """
        tree.write({"root/wt_target.py": "X = 1\n"})
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "wt_far.py").write_text("X = 2\n")
        (tree.path("root") / "wt_near_link.py").symlink_to(tree.path("root/wt_target.py"))
        (tree.path("root") / "wt_far_link.py").symlink_to(outside / "wt_far.py")
        importlib.invalidate_caches()
        monkeypatch.syspath_prepend(str(tree.path("root")))
        watcher = versionload.watch(tree.path("root"), tracker=tracker, force_polling=True)
        try:
            near = _import("wt_near_link")
            far = _import("wt_far_link")

            assert [os.path.realpath(tree.path("root/wt_target.py"))] == watcher._index.paths()
            for module in (near, far):
                origin = module.__spec__.origin
                assert os.path.normcase(os.path.realpath(origin)) == resolve_file(origin)
            assert not watcher.watches(far.__spec__.origin)
        finally:
            watcher.stop()
