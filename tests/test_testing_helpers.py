"""
The helpers in versionload.testing, used as a user's test suite would.
"""

from __future__ import annotations

import sys

import versionload
from versionload.testing import capture_events, isolated_import_state

from .helpers import ModuleTree


class TestCaptureEvents:
    def test_collects_payloads_of_the_default_tracker(
        self, tree: ModuleTree, hook: versionload.Tracker
    ) -> None:
        """
        Load and reload events of the default tracker arrive as payload objects.
        """
        tree.module("captured_mod", "A = 1\n")
        with capture_events() as events:
            import captured_mod

            tree.module("captured_mod", "A = 2\n")
            versionload.reload(captured_mod)

        assert ["module.loaded", "module.reloaded", "changeset.applied"] == [e.event for e in events]
        assert isinstance(events[1], versionload.ModuleReloaded)
        assert ["A"] == list(events[1].changed)

    def test_stops_collecting_afterwards(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        After the block, the subscriber is gone and events are no longer collected.
        """
        tree.module("after_block", "A = 1\n")
        with capture_events(tracker) as events:
            pass
        import after_block  # noqa: F401

        assert [] == events


class TestIsolatedImportState:
    def test_tracks_inside_and_forgets_outside(self, tree: ModuleTree) -> None:
        """
        Modules imported in the block are tracked there and gone from sys.modules afterwards.
        """
        tree.module("isolated_mod", "A = 1\n")
        meta_path = list(sys.meta_path)
        with isolated_import_state(include="isolated_*") as tracker:
            import isolated_mod

            assert [1] == [v.number for v in tracker.history(isolated_mod)]

        assert "isolated_mod" not in sys.modules
        assert meta_path == sys.meta_path
