"""
`stale`: which live objects still use an older version's code.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType

import pytest

import versionload

from .helpers import ModuleTree, wait_for

V1 = """
import threading

def handler():
    return "v1"

class Model:
    def run(self):
        return "v1"

def spin(started, stop):
    started.set()
    while not stop.wait(0.01):
        pass
"""


def _load(tree: ModuleTree) -> ModuleType:
    tree.module("plugin", V1)
    return importlib.import_module("plugin")


def _consumer(tree: ModuleTree, source: str) -> ModuleType:
    tree.module("consumer", source)
    return importlib.import_module("consumer")


class TestStale:
    def test_empty_and_false_when_nothing_old_is_used(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """Right after a reload nobody holds old objects: the report is empty and false."""
        module = _load(tree)
        tracker.reload(module)
        report = tracker.stale(module)
        assert not report
        assert 0 == len(report)
        assert (2, ()) == (report.current_version, report.objects)

    def test_from_import_of_an_old_function(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """A function another module took before the reload is reported with where it is and its version."""
        module = _load(tree)
        _consumer(tree, "from plugin import handler\n")
        tracker.reload(module)
        report = tracker.stale(module)
        assert (versionload.StaleObject("function", "handler", "consumer.handler", 1),) == report.functions
        assert frozenset({1}) == report.versions

    def test_old_instances_classes_and_subclasses(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """Instances in containers, old classes, and current subclasses of old classes are found."""
        module = _load(tree)
        _consumer(
            tree,
            "import plugin\nREGISTRY = {'m': [plugin.Model()]}\nclass Sub(plugin.Model):\n    pass\n",
        )
        tracker.reload(module)
        report = tracker.stale(module)
        assert (
            versionload.StaleObject("instance", "Model", "consumer.REGISTRY['m'][0]", 1),
        ) == report.instances
        assert (versionload.StaleObject("class", "Model", "consumer.Sub (base of Sub)", 1),) == report.classes
        assert 2 == len(report)

    def test_cascade_leaves_nothing_stale(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """After a cascade the dependents hold the new objects, so nothing is stale."""
        module = _load(tree)
        _consumer(tree, "from plugin import handler, Model\n")
        tracker.reload(module, cascade=True)
        assert not tracker.stale(module)

    def test_in_place_update_leaves_nothing_stale(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """After an in-place update, references held elsewhere run current code, so nothing is stale."""
        module = _load(tree)
        _consumer(tree, "from plugin import handler, Model\nINSTANCE = Model()\n")
        tracker.reload(module, update="in-place")
        assert not tracker.stale(module)

    def test_thread_running_old_code(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """A thread still executing an old function shows up as a frame, until it returns."""
        module = _load(tree)
        started, stop = threading.Event(), threading.Event()
        thread = threading.Thread(target=module.spin, args=(started, stop), name="old-worker")
        thread.start()
        try:
            assert started.wait(10)
            tracker.reload(module)
            frames = tracker.stale(module).frames
            assert ["spin"] == [f.qualname for f in frames]
            assert "old-worker" in frames[0].where
            assert 1 == frames[0].version
        finally:
            stop.set()
            thread.join(10)
        assert wait_for(lambda: not tracker.stale(module).frames)

    def test_old_code_of_an_in_place_function_in_a_frame(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """A frame still running the code an in-place update replaced is reported."""
        module = _load(tree)
        started, stop = threading.Event(), threading.Event()
        thread = threading.Thread(target=module.spin, args=(started, stop))
        thread.start()
        try:
            assert started.wait(10)
            tree.module("plugin", V1.replace("0.01", "0.02"))
            tracker.reload(module, update="in-place")
            assert [("spin", 1)] == [(f.qualname, f.version) for f in tracker.stale(module).frames]
        finally:
            stop.set()
            thread.join(10)

    def test_untracked_module_is_refused(self, tracker: versionload.Tracker) -> None:
        """stale() of a module without history raises NotTrackedError."""
        with pytest.raises(versionload.NotTrackedError):
            tracker.stale("json")

    def test_facade(self, hook: versionload.Tracker, tree: ModuleTree) -> None:
        """versionload.stale reports for the default tracker."""
        module = _load(tree)
        _consumer(tree, "from plugin import handler\n")
        versionload.reload(module)
        assert 1 == len(versionload.stale(module))
