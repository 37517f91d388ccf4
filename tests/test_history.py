"""
Histories are bounded, free what they prune, and end when their module is gone.
"""

from __future__ import annotations

import gc
import hashlib
import importlib
import py_compile
import sys
import time
import weakref
from pathlib import Path
from types import ModuleType

import pytest

import versionload

from .helpers import ModuleTree


def _reload_times(tracker: versionload.Tracker, path: Path, name: str, times: int) -> None:
    module = sys.modules[name]
    for generation in range(times):
        path.write_text(f"class Token:\n    pass\nTOKEN = Token()\nGENERATION = {generation + 2}\n")
        tracker.reload(module)


class TestMaxVersions:
    """
    Pruning to Tracker.max_versions.
    """

    def test_default_is_documented_constant(self) -> None:
        """
        A new tracker keeps DEFAULT_MAX_VERSIONS (10) versions per module.
        """
        assert 10 == versionload.DEFAULT_MAX_VERSIONS
        assert versionload.DEFAULT_MAX_VERSIONS == versionload.Tracker().max_versions

    def test_prunes_oldest(self, tree: ModuleTree) -> None:
        """
        With max_versions=3, five versions leave the newest three.
        """
        tracker = versionload.Tracker(max_versions=3).install()
        path = tree.module("hs_prune", "GENERATION = 1\n")
        import hs_prune  # noqa: F401

        _reload_times(tracker, path, "hs_prune", 4)
        assert [3, 4, 5] == [v.number for v in tracker.history("hs_prune")]
        assert 5 == tracker.current("hs_prune").number

    def test_never_prunes_current(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        Lowering max_versions while an old version is current keeps that version.
        """
        path = tree.module("hs_current", "GENERATION = 1\n")
        import hs_current

        _reload_times(tracker, path, "hs_current", 3)
        tracker.rollback(hs_current, to=1)
        tracker.max_versions = 2
        assert [1, 4] == [v.number for v in tracker.history(hs_current)]
        tracker.max_versions = 1
        assert [1] == [v.number for v in tracker.history(hs_current)]
        assert 1 == tracker.current(hs_current).number
        assert 1 == hs_current.GENERATION

    def test_rolled_back_current_survives_a_reload_prune(self, tree: ModuleTree) -> None:
        """
        A reload after a rollback prunes the oldest versions that are not current.
        """
        tracker = versionload.Tracker(max_versions=2).install()
        path = tree.module("hs_after_rb", "GENERATION = 1\n")
        import hs_after_rb

        _reload_times(tracker, path, "hs_after_rb", 1)
        tracker.rollback(hs_after_rb, to=1)
        _reload_times(tracker, path, "hs_after_rb", 1)
        assert [2, 3] == [v.number for v in tracker.history(hs_after_rb)]

    def test_pruned_events(self, tree: ModuleTree) -> None:
        """
        Each pruned version emits a version.pruned payload naming it and the current version.
        """
        tracker = versionload.Tracker(max_versions=2).install()
        pruned: list[versionload.Event] = []
        tracker.subscribe(
            lambda event: pruned.append(event) if isinstance(event, versionload.VersionPruned) else None
        )
        path = tree.module("hs_events", "GENERATION = 1\n")
        import hs_events  # noqa: F401

        _reload_times(tracker, path, "hs_events", 3)
        assert [
            versionload.VersionPruned(module="hs_events", version=1, current_version=3),
            versionload.VersionPruned(module="hs_events", version=2, current_version=4),
        ] == pruned

    def test_pruned_snapshots_are_freed(self, tree: ModuleTree) -> None:
        """
        An object referenced only by a pruned version is garbage-collected.
        """
        tracker = versionload.Tracker(max_versions=2).install()
        path = tree.module("hs_freed", "class Token:\n    pass\nTOKEN = Token()\n")
        import hs_freed

        first = weakref.ref(hs_freed.TOKEN)
        _reload_times(tracker, path, "hs_freed", 1)
        gc.collect()
        assert first() is not None, "version 1 is still kept"
        _reload_times(tracker, path, "hs_freed", 1)
        gc.collect()
        assert first() is None

    @pytest.mark.parametrize("bad", [0, -1, True, 2.5, "3"])
    def test_invalid_max_versions(self, bad: object) -> None:
        """
        A max_versions below 1 or not an int raises InvalidArgumentError and changes nothing.
        """
        with pytest.raises(versionload.InvalidArgumentError):
            versionload.Tracker(max_versions=bad)  # type: ignore[arg-type]
        tracker = versionload.Tracker(max_versions=4)
        with pytest.raises(versionload.InvalidArgumentError):
            tracker.max_versions = bad  # type: ignore[assignment]
        with pytest.raises(versionload.InvalidArgumentError):
            tracker.configure(max_versions=bad)  # type: ignore[arg-type]
        assert 4 == tracker.max_versions
        with pytest.raises(ValueError):  # noqa: PT011 - the stdlib base is the point
            versionload.install(max_versions=bad)  # type: ignore[arg-type]
        assert not versionload.default_tracker().installed
        assert versionload.DEFAULT_MAX_VERSIONS == versionload.default_tracker().max_versions


def _import_and_drop(tree: ModuleTree, name: str) -> weakref.ref[object]:
    tree.module(name, "def f():\n    return 1\nDATA = [1, 2]\n")
    module = __import__(name)
    del sys.modules[name]
    return weakref.ref(module)


class TestHistoryEnd:
    """
    What happens to a history when its module goes away.
    """

    def test_deleted_module_is_not_kept_alive(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A module deleted from sys.modules is collected despite its history.
        """
        ref = _import_and_drop(tree, "hs_collect")
        gc.collect()
        assert ref() is None

    def test_collected_module_history_ends(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        Once the module is collected its history ends with a module.history_ended event and NotTrackedError.
        """
        events: list[versionload.Event] = []
        tracker.subscribe(events.append)
        _import_and_drop(tree, "hs_ended")
        gc.collect()
        with pytest.raises(versionload.NotTrackedError):
            tracker.history("hs_ended")
        assert "hs_ended" not in tracker.tracked()
        assert [versionload.HistoryEnded(module="hs_ended", last_version=1, reason="collected")] == [
            event for event in events if isinstance(event, versionload.HistoryEnded)
        ]

    def test_history_of_a_queued_import_ends_when_collected(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        An import made while nobody listened, turned into a history by a later call,
        ends that history once its module is collected, and frees it.
        """
        tree.module("hs_queued_end", "class Big:\n    pass\nBIG = Big()\n")
        module = importlib.import_module("hs_queued_end")
        assert "hs_queued_end" in tracker.tracked()
        events: list[versionload.Event] = []
        tracker.subscribe(events.append)
        big = weakref.ref(tracker.history(module)[0].bindings["BIG"])
        del sys.modules["hs_queued_end"]
        del module
        gc.collect()
        assert big() is None
        assert "hs_queued_end" not in tracker.tracked()
        assert [versionload.HistoryEnded(module="hs_queued_end", last_version=1, reason="collected")] == [
            event for event in events if isinstance(event, versionload.HistoryEnded)
        ]

    def test_reimport_starts_new_history_with_continuing_numbers(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        Importing the name again starts a new history whose numbers continue after the old ones.
        """
        path = tree.module("hs_again", "X = 1\n")
        import hs_again

        path.write_text("X = 2\n")
        tracker.reload(hs_again)
        del sys.modules["hs_again"]
        fresh = __import__("hs_again")
        assert fresh is not hs_again
        assert [("import", 3)] == [(v.reason, v.number) for v in tracker.history(fresh)]

    def test_replaced_module_emits_history_ended(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        A new module object under a tracked name ends the old history with reason "replaced".
        """
        events: list[versionload.Event] = []
        tracker.subscribe(events.append)
        tree.module("hs_replaced", "X = 1\n")
        import hs_replaced

        del sys.modules["hs_replaced"]
        __import__("hs_replaced")
        assert [versionload.HistoryEnded(module="hs_replaced", last_version=1, reason="replaced")] == [
            event for event in events if isinstance(event, versionload.HistoryEnded)
        ]
        assert hs_replaced.X == 1

    def test_forget_drops_history(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        forget() drops a history (True), a second time finds nothing (False).
        """
        tree.module("hs_forget", "X = 1\n")
        import hs_forget

        assert tracker.forget(hs_forget)
        assert not tracker.forget("hs_forget")
        with pytest.raises(versionload.NotTrackedError):
            tracker.current(hs_forget)

    def test_forget_rejects_non_modules(self, tracker: versionload.Tracker) -> None:
        """
        forget() of something that is neither a module nor a name raises NotAModuleError.
        """
        with pytest.raises(versionload.NotAModuleError):
            tracker.forget(42)  # type: ignore[arg-type]

    def test_clear_restarts_numbering(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        clear() drops every history; the next record starts at 1 again.
        """
        tree.module("hs_clear", "X = 1\n")
        import hs_clear

        tracker.clear()
        assert () == tracker.tracked()
        assert 1 == tracker.track(hs_clear).number


class TestReadingHistory:
    """
    Tracker.history, Tracker.current and Tracker.track.
    """

    def test_version_fields(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A first import records module, number, reason, origin, names and the source hash.
        """
        import hashlib

        path = tree.module("hs_fields", "X = 1\n")
        import hs_fields

        (version,) = tracker.history(hs_fields)
        assert ("hs_fields", 1, "import", str(path)) == (
            version.module,
            version.number,
            version.reason,
            version.origin,
        )
        assert {"X", "__name__", "__spec__"} <= version.names
        assert hashlib.sha256(b"X = 1\n").hexdigest() == version.source_sha256
        assert version.created_at.tzinfo is not None
        assert version is tracker.current(hs_fields)

    def test_bindings_are_read_only(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A version's bindings cannot be changed through the version.
        """
        tree.module("hs_readonly", "X = 1\n")
        import hs_readonly

        with pytest.raises(TypeError):
            tracker.current(hs_readonly).bindings["X"] = 2  # type: ignore[index]

    def test_track_adopts_once(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        track() records an untracked module as "adopted"; a second call returns the same version.
        """
        tracker.uninstall()
        tree.module("hs_track", "X = 1\n")
        import hs_track

        version = tracker.track(hs_track)
        assert ("adopted", 1) == (version.reason, version.number)
        assert tracker.current(hs_track).source_sha256 is None
        assert version is tracker.track("hs_track")

    @pytest.mark.parametrize("bad", [42, None, "hs_not_loaded_anywhere"])
    def test_track_bad_input(self, tracker: versionload.Tracker, bad: object) -> None:
        """
        track() of a non-module or an unknown name raises NotAModuleError.
        """
        with pytest.raises(versionload.NotAModuleError):
            tracker.track(bad)  # type: ignore[arg-type]
        assert () == tracker.tracked()

    @pytest.mark.parametrize("operation", ["history", "current"])
    def test_untracked_raises(self, tracker: versionload.Tracker, operation: str) -> None:
        """
        history() and current() of an unknown module raise NotTrackedError.
        """
        with pytest.raises(versionload.NotTrackedError):
            getattr(tracker, operation)("hs_nothing_here")
        with pytest.raises(versionload.NotAModuleError):
            getattr(tracker, operation)(3.5)

    def test_hash_of_deleted_source_is_unknown(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A first import's hash asked for after its file was deleted is None, not an error.
        """
        tree.module("hs_nohash", "X = 1\n")
        import hs_nohash

        tree.remove("hs_nohash.py")
        assert tracker.current(hs_nohash).source_sha256 is None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _import_fresh(name: str) -> ModuleType:
    """
    Import ``name`` again as a first import, as a new process would.
    """
    sys.modules.pop(name, None)
    return importlib.import_module(name)


class TestFirstImportHash:
    """
    A first import's source_sha256 is the hash of the bytes that ran, or None.
    """

    def test_compiled_source_is_hashed(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        An import that compiled the source records the hash of that source.
        """
        tree.module("fh_compiled", "VALUE = 'aaa'\n")
        module = importlib.import_module("fh_compiled")

        assert _sha256("VALUE = 'aaa'\n") == tracker.current(module).source_sha256

    @pytest.mark.parametrize("writing", [True, False], ids=["writing", "not-writing"])
    def test_stale_bytecode_never_claims_the_new_source(
        self, tree: ModuleTree, tracker: versionload.Tracker, writing: bool
    ) -> None:
        """
        A first import that ran a stale .pyc (the edit kept size and mtime) does not name the new source.
        """
        sys.dont_write_bytecode = False
        path = tree.module("fh_stale", "VALUE = 'aaa'\n")
        importlib.import_module("fh_stale")
        tree.edit_keeping_stat(path, "VALUE = 'bbb'\n")
        sys.dont_write_bytecode = not writing
        module = _import_fresh("fh_stale")
        assert "aaa" == module.VALUE  # the premise: the stale cache ran

        actual = tracker.current(module).source_sha256

        assert actual in (None, _sha256("VALUE = 'aaa'\n"))

    @pytest.mark.parametrize("writing", [True, False], ids=["writing", "not-writing"])
    def test_bytecode_written_after_the_source_is_proven(
        self, tree: ModuleTree, tracker: versionload.Tracker, writing: bool
    ) -> None:
        """
        A first import that ran a .pyc written well after the source's last change records the hash.
        """
        sys.dont_write_bytecode = False
        tree.module("fh_cached", "VALUE = 'aaa'\n")
        # Far enough apart for any filesystem clock to order the two files.
        time.sleep(0.1)
        importlib.import_module("fh_cached")
        sys.dont_write_bytecode = not writing
        module = _import_fresh("fh_cached")

        assert _sha256("VALUE = 'aaa'\n") == tracker.current(module).source_sha256

    def test_source_changed_after_the_import_is_unknown(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        An edit after the import, even one that puts the old mtime back, makes the hash unknown.
        """
        path = tree.module("fh_later", "VALUE = 'aaa'\n")
        module = importlib.import_module("fh_later")

        tree.edit_keeping_stat(path, "VALUE = 'bbb'\n")

        assert tracker.current(module).source_sha256 is None

    def test_source_changed_while_the_import_runs_is_unknown(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        A module whose file is rewritten while its import runs (keeping size and mtime) names no bytes.
        """
        source = (
            "import os\n"
            "VALUE = 'aaa'\n"
            "_stat = os.stat(__file__)\n"
            "with open(__file__, 'rb') as _f:\n"
            "    _data = _f.read()\n"
            "with open(__file__, 'wb') as _f:\n"
            "    _f.write(_data.replace(b\"'aaa'\", b\"'bbb'\", 1))\n"
            "os.utime(__file__, ns=(_stat.st_atime_ns, _stat.st_mtime_ns))\n"
        )
        path = tree.module("fh_during", source)
        module = importlib.import_module("fh_during")
        assert "aaa" == module.VALUE
        assert "VALUE = 'bbb'" in path.read_text()  # the premise: the file changed under the import

        assert tracker.current(module).source_sha256 is None

    @pytest.mark.parametrize(
        ("mode", "runs", "expected"),
        [
            (py_compile.PycInvalidationMode.CHECKED_HASH, "bbb", _sha256("VALUE = 'bbb'\n")),
            (py_compile.PycInvalidationMode.UNCHECKED_HASH, "aaa", None),
        ],
    )
    def test_hash_based_bytecode(
        self,
        tree: ModuleTree,
        tracker: versionload.Tracker,
        mode: py_compile.PycInvalidationMode,
        runs: str,
        expected: str | None,
    ) -> None:
        """
        A checked hash-based .pyc proves the source it came from; an unchecked stale one names nothing.
        """
        path = tree.module("fh_hashpyc", "VALUE = 'aaa'\n")
        py_compile.compile(str(path), invalidation_mode=mode, doraise=True)
        path.write_text("VALUE = 'bbb'\n")
        module = _import_fresh("fh_hashpyc")
        assert runs == module.VALUE

        assert expected == tracker.current(module).source_sha256
