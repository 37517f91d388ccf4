"""
The public doors that front-ends (the watcher, the control socket, the IPython
extension, the plugin host) use instead of reaching into a tracker's private state.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import attrs
import pytest

import versionload
from versionload.testing import capture_events

from .helpers import ModuleTree


class TestLookup:
    """
    Tracker.lookup: a tracked module's record, or None.
    """

    def test_tracked_module(self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool) -> None:
        """
        lookup() gives the name, the module object, the current version and every kept version.
        """
        path = tree.module("dr_tracked", "X = 1\n")
        import dr_tracked

        path.write_text("X = 2\n")
        tracker.reload(dr_tracked)
        found = tracker.lookup("dr_tracked")

        assert found is not None
        assert ("dr_tracked", 2, (1, 2)) == (
            found.name,
            found.current.number,
            tuple(v.number for v in found.versions),
        )
        assert dr_tracked is found.module
        assert tracker.history(dr_tracked) == found.versions

    def test_after_rollback_current_is_the_restored_version(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        After a rollback, the record's current version is the one rolled back to.
        """
        path = tree.module("dr_rolled", "X = 1\n")
        import dr_rolled

        path.write_text("X = 2\n")
        tracker.reload(dr_rolled)
        tracker.rollback(dr_rolled, to=1)
        found = tracker.lookup("dr_rolled")

        assert found is not None
        assert 1 == found.current.number

    def test_untracked_is_none(self, tracker: versionload.Tracker) -> None:
        """
        A name with no history gives None, not an error.
        """
        assert tracker.lookup("dr_no_such_module") is None

    def test_record_is_frozen(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        The record cannot be changed.
        """
        tree.module("dr_frozen", "X = 1\n")
        import dr_frozen  # noqa: F401

        found = tracker.lookup("dr_frozen")

        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            found.name = "other"  # type: ignore[misc, union-attr]

    def test_not_a_name(self, tracker: versionload.Tracker) -> None:
        """
        A non-string raises InvalidArgumentError.
        """
        with pytest.raises(versionload.InvalidArgumentError, match="name must be a non-empty string"):
            tracker.lookup(42)  # type: ignore[arg-type]


class TestEmit:
    """
    Tracker.emit: an event into the tracker's stream.
    """

    def test_subscribers_get_the_event(self, tracker: versionload.Tracker) -> None:
        """
        Subscribers receive the event exactly as given.
        """
        event = versionload.HistoryEnded("dr_emitted", 3, "forgotten")

        with capture_events(tracker) as events:
            tracker.emit(event)

        assert [event] == events

    def test_failing_subscriber_does_not_raise(self, tracker: versionload.Tracker) -> None:
        """
        A subscriber that raises is reported through sys.unraisablehook; emit() returns normally.
        """
        reported: list[object] = []

        def broken(event: versionload.Event) -> None:
            raise RuntimeError("subscriber broke")

        tracker.subscribe(broken)
        hook, sys.unraisablehook = sys.unraisablehook, reported.append
        try:
            tracker.emit(versionload.HistoryEnded("dr_emitted", 3, "forgotten"))
        finally:
            sys.unraisablehook = hook

        assert 1 == len(reported)

    def test_not_an_event(self, tracker: versionload.Tracker) -> None:
        """
        Something that is not an Event raises InvalidArgumentError.
        """
        with pytest.raises(versionload.InvalidArgumentError, match="event must be"):
            tracker.emit({"event": "module.reloaded"})  # type: ignore[arg-type]


class TestDependencyMap:
    """
    Tracker.dependency_map: the whole graph at once.
    """

    def test_edges_of_every_tracked_module(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        Each tracked module maps to the tracked modules it imports, in tracking order.
        """
        tree.module("dr_base", "X = 1\n")
        tree.module("dr_user", "import dr_base\n")
        importlib.import_module("dr_user")

        edges = tracker.dependency_map()

        assert {"dr_base": (), "dr_user": ("dr_base",)} == {
            name: targets for name, targets in edges.items() if name.startswith("dr_")
        }
        assert ("dr_user",) == tracker.dependents("dr_base")


class TestWatcherDoors:
    """
    Watcher.watches and Watcher.reindex.
    """

    def test_watches_sources_under_the_roots_only(self, tree: ModuleTree, tmp_path: Path) -> None:
        """
        A Python source under the roots is watched; other files and places are not.
        """
        inside = tree.module("dr_inside", "X = 1\n")
        outside = tmp_path / "elsewhere.py"
        outside.write_text("")
        watcher = versionload.Watcher(versionload.Tracker(), (str(tree.root),), force_polling=True)

        assert (True, False, False, False) == (
            watcher.watches(str(inside)),
            watcher.watches(str(outside)),
            watcher.watches(str(tree.root / "data.txt")),
            watcher.watches(None),
        )

    def test_watches_through_a_symlinked_root(self, tree: ModuleTree, tmp_path: Path) -> None:
        """
        A module reached through a symlink to the watched directory is watched.
        """
        inside = tree.module("dr_linked", "X = 1\n")
        link = tmp_path / "link"
        os.symlink(tree.root, link)
        watcher = versionload.Watcher(versionload.Tracker(), (str(tree.root),), force_polling=True)

        assert watcher.watches(str(link / inside.name))

    def test_reindex_picks_up_modules_tracked_behind_its_back(self, tree: ModuleTree) -> None:
        """
        A module adopted while the watcher was detached is watched after reindex().
        """
        tracker = versionload.Tracker()
        watcher = versionload.Watcher(tracker, (str(tree.root),), force_polling=True)
        tree.module("dr_adopted", "X = 1\n")
        import dr_adopted

        tracker.track(dr_adopted)
        before = watcher.watched_modules
        watcher.reindex()

        assert (0, 1) == (before, watcher.watched_modules)
