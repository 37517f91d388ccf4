"""
State migration: ``__versionload_migrate__(previous)`` runs after a reload's new code.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

import pytest

import versionload

from .helpers import ModuleTree

V1 = """
CACHE = {"a": 1, "b": 2}
"""

V2 = """
CACHE = []

def __versionload_migrate__(previous):
    CACHE.extend(sorted(previous["CACHE"].items()))
    global SEEN
    SEEN = previous
"""


def _load(tree: ModuleTree, source: str) -> ModuleType:
    tree.module("stateful", source)
    return importlib.import_module("stateful")


class TestMigrate:
    def test_state_is_carried_over_in_a_new_shape(
        self, tracker: versionload.Tracker, tree: ModuleTree, bytecode: bool
    ) -> None:
        """The hook sees the previous namespace and fills the new structures from it."""
        module = _load(tree, V1)
        tree.module("stateful", V2)
        tracker.reload(module)
        assert [("a", 1), ("b", 2)] == module.CACHE
        assert [("a", 1), ("b", 2)] == tracker.current(module).bindings["CACHE"]

    def test_previous_is_read_only(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """The mapping passed to the hook cannot be changed."""
        module = _load(tree, V1)
        tree.module("stateful", V2)
        tracker.reload(module)
        with pytest.raises(TypeError):
            module.SEEN["CACHE"] = None

    def test_failing_hook_fails_the_reload_atomically(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """A hook that raises makes the reload fail and leaves the namespace and history as they were."""
        module = _load(tree, V1)
        namespace = dict(module.__dict__)
        tree.module(
            "stateful", V2.replace("CACHE.extend", "raise ValueError('cannot migrate'); CACHE.extend")
        )
        with pytest.raises(versionload.ReloadError) as caught:
            tracker.reload(module)
        assert "cannot migrate" in str(caught.value)
        assert namespace == module.__dict__
        assert (1,) == tuple(v.number for v in tracker.history(module))

    def test_failing_hook_undoes_in_place_updates(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """With update='in-place', a failing hook also puts the updated functions back."""
        module = _load(tree, "def f():\n    return 1\n")
        f = module.f
        tree.module(
            "stateful", "def f():\n    return 2\ndef __versionload_migrate__(previous):\n    raise KeyError\n"
        )
        with pytest.raises(versionload.ReloadError):
            tracker.reload(module, update="in-place")
        assert 1 == f()

    def test_hook_the_new_code_no_longer_defines_is_not_called(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """A hook left over from the previous version (names survive reloads) does not run again."""
        module = _load(tree, V1)
        tree.module("stateful", V2)
        tracker.reload(module)
        tree.module("stateful", "CACHE = ['fresh']\n")
        tracker.reload(module)
        assert ["fresh"] == module.CACHE

    def test_failing_hook_in_a_cascade_fails_the_group(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """A dependent's failing hook rolls back the whole cascade, and the error names that dependent."""
        module = _load(tree, V1)
        tree.module("consumer", "from stateful import CACHE\n")
        consumer = importlib.import_module("consumer")
        old_cache = module.CACHE
        tree.module(
            "consumer", "from stateful import CACHE\ndef __versionload_migrate__(previous):\n    1 / 0\n"
        )
        tree.module("stateful", "CACHE = {'new': 1}\n")
        with pytest.raises(versionload.GroupReloadError) as caught:
            tracker.reload(module, cascade=True)
        assert "consumer" == caught.value.module
        assert module.CACHE is old_cache is consumer.CACHE
        assert "__versionload_migrate__" not in sys.modules["consumer"].__dict__
