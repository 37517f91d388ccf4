"""
A reload that fails leaves the module exactly as it was, and says why.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

import versionload

from .helpers import ModuleTree

# Every test here runs with bytecode writing off and on (see the fixture).
pytestmark = pytest.mark.usefixtures("bytecode")


_ORIGINAL = """
import collections

COUNTER = collections.Counter()
NAME = "original"


def handler():
    return "original"


class Plugin:
    pass
"""


def _import_original(tree: ModuleTree, name: str) -> tuple[Path, ModuleType, dict[str, object]]:
    path = tree.module(name, _ORIGINAL)
    module = __import__(name)
    return path, module, dict(module.__dict__)


def _assert_unchanged(module: ModuleType, before: dict[str, object]) -> None:
    after = module.__dict__
    assert sorted(before) == sorted(after)
    changed = [name for name in before if after[name] is not before[name]]
    assert [] == changed
    assert sys.modules[module.__name__] is module


class TestFailedReload:
    """
    Tracker.reload when the new code cannot run.
    """

    def test_syntax_error_changes_nothing(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        A syntax error raises ReloadError caused by the SyntaxError; namespace and history are as before.
        """
        path, module, before = _import_original(tree, "fl_syntax")
        path.write_text("NAME = 'new'\ndef broken(:\n    pass\n")
        with pytest.raises(versionload.ReloadError) as caught:
            tracker.reload(module)
        cause = caught.value.__cause__
        assert isinstance(cause, SyntaxError)
        assert str(path) == cause.filename
        assert 2 == cause.lineno
        assert isinstance(caught.value, ImportError)
        assert "fl_syntax" == caught.value.name
        _assert_unchanged(module, before)
        assert [1] == [v.number for v in tracker.history(module)]

    def test_module_level_exception_changes_nothing(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        Code that rebinds, adds and deletes names, then raises, leaves the namespace exactly as before.
        """
        path, module, before = _import_original(tree, "fl_raise")
        path.write_text(
            "NAME = 'new'\n"
            "ADDED = 1\n"
            "def handler():\n"
            "    return 'new'\n"
            "del Plugin\n"
            "COUNTER = None\n"
            "raise LookupError('module-level failure')\n"
        )
        with pytest.raises(versionload.ReloadError) as caught:
            tracker.reload(module)
        cause = caught.value.__cause__
        assert LookupError is type(cause)
        assert ("module-level failure",) == cause.args
        _assert_unchanged(module, before)
        assert "original" == module.handler()
        assert [1] == [v.number for v in tracker.history(module)]
        assert 1 == tracker.current(module).number

    def test_import_error_inside_module_code(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A failing import inside the new code is chained, not mistaken for the module itself missing.
        """
        path, module, before = _import_original(tree, "fl_inner_import")
        path.write_text("import fl_no_such_dependency\n")
        with pytest.raises(versionload.ReloadError) as caught:
            tracker.reload(module)
        assert not isinstance(caught.value, versionload.SpecNotFoundError)
        assert isinstance(caught.value.__cause__, ModuleNotFoundError)
        assert "fl_no_such_dependency" == caught.value.__cause__.name
        _assert_unchanged(module, before)

    def test_null_bytes_in_source(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        Source that cannot be compiled at all (a null byte) is a ReloadError and changes nothing.
        """
        path, module, before = _import_original(tree, "fl_null")
        path.write_bytes(b"X = 1\x00\n")
        with pytest.raises(versionload.ReloadError) as caught:
            tracker.reload(module)
        assert isinstance(caught.value.__cause__, (SyntaxError, ValueError))
        _assert_unchanged(module, before)

    def test_deleted_file_changes_nothing(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        A module whose file is gone raises SpecNotFoundError (a ReloadError) and keeps its namespace.
        """
        _, module, before = _import_original(tree, "fl_deleted")
        tree.remove("fl_deleted.py")
        with pytest.raises(versionload.ReloadError) as caught:
            tracker.reload(module)
        assert isinstance(caught.value, versionload.SpecNotFoundError)
        _assert_unchanged(module, before)
        assert [1] == [v.number for v in tracker.history(module)]

    def test_sys_modules_entry_restored_when_replaced(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        Failing code that replaced its sys.modules entry: the module is put back there.
        """
        path, module, before = _import_original(tree, "fl_replaced")
        path.write_text(
            "import sys\nsys.modules[__name__] = object()\nraise RuntimeError('after replacing')\n"
        )
        with pytest.raises(versionload.ReloadError):
            tracker.reload(module)
        _assert_unchanged(module, before)

    def test_sys_modules_entry_restored_when_deleted(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        Failing code that deleted its sys.modules entry: the module is put back there.
        """
        path, module, before = _import_original(tree, "fl_removed")
        path.write_text("import sys\ndel sys.modules[__name__]\nraise RuntimeError('after deleting')\n")
        with pytest.raises(versionload.ReloadError):
            tracker.reload(module)
        _assert_unchanged(module, before)

    def test_keyboard_interrupt_propagates_and_changes_nothing(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        KeyboardInterrupt in the new code propagates as itself, with the namespace put back.
        """
        path, module, before = _import_original(tree, "fl_interrupt")
        path.write_text("NAME = 'new'\nEXTRA = 1\nraise KeyboardInterrupt\n")
        with pytest.raises(KeyboardInterrupt):
            tracker.reload(module)
        _assert_unchanged(module, before)
        assert [1] == [v.number for v in tracker.history(module)]

    def test_system_exit_propagates_and_changes_nothing(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        SystemExit in the new code propagates unwrapped, with the namespace put back.
        """
        path, module, before = _import_original(tree, "fl_exit")
        path.write_text("NAME = 'new'\nraise SystemExit(3)\n")
        with pytest.raises(SystemExit) as caught:
            tracker.reload(module)
        assert 3 == caught.value.code
        _assert_unchanged(module, before)

    def test_cause_traceback_starts_in_module_code(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        The chained exception's traceback starts at the module's own code, with no versionload frames.
        """
        path, module, _ = _import_original(tree, "fl_frames")
        path.write_text("def helper():\n    raise ValueError('deep')\n\nhelper()\n")
        with pytest.raises(versionload.ReloadError) as caught:
            tracker.reload(module)
        frames = traceback.extract_tb(caught.value.__cause__.__traceback__)
        assert [(str(path), "<module>", 4), (str(path), "helper", 2)] == [
            (frame.filename, frame.name, frame.lineno) for frame in frames
        ]

    def test_error_traceback_has_no_versionload_internals(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        The ReloadError's traceback holds at most the one public frame that raised it, no engine frames.
        """
        path, module, _ = _import_original(tree, "fl_own_frames")
        path.write_text("raise ValueError('x')\n")
        with pytest.raises(versionload.ReloadError) as caught:
            tracker.reload(module)
        files = [frame.filename for frame in traceback.extract_tb(caught.value.__traceback__)]
        ours = [Path(name).name for name in files if "versionload" in Path(name).parts[-2:-1]]
        assert ["_tracker.py"] == ours

    @pytest.mark.parametrize(
        "call",
        [
            lambda t: t.configure(max_versions=0),
            lambda t: t.configure(allowed_roots=[3]),
            lambda t: setattr(t, "max_versions", "3"),
            lambda t: t.track(3),
            lambda t: t.reload("fl_nowhere", cascade="yes"),
            lambda t: t.reload_many("fl_not_a_list"),
            lambda t: t.rollback("fl_nowhere", to="1"),
            lambda t: t.lookup(3),
            lambda t: t.emit(3),
            lambda t: t.subscribe(3),
            lambda t: t.forget(3),
        ],
    )
    def test_refused_arguments_have_no_internal_frames(
        self, tracker: versionload.Tracker, call: Callable[[versionload.Tracker], object]
    ) -> None:
        """
        An error about an argument comes from the public method alone, never from the checks below it.
        """
        with pytest.raises(versionload.VersionLoadError) as caught:
            call(tracker)
        files = [frame.filename for frame in traceback.extract_tb(caught.value.__traceback__)]
        ours = [Path(name).name for name in files if "versionload" in Path(name).parts]

        assert ["_tracker.py"] == ours

    def test_reload_works_after_a_failure(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        After a failed reload, fixing the source and reloading records the next number.
        """
        path, module, _ = _import_original(tree, "fl_recover")
        path.write_text("raise RuntimeError\n")
        with pytest.raises(versionload.ReloadError):
            tracker.reload(module)
        path.write_text("NAME = 'fixed'\n")
        tracker.reload(module)
        assert "fixed" == module.NAME
        assert [1, 2] == [v.number for v in tracker.history(module)]

    def test_stdlib_reload_leaves_a_half_executed_module(self, tree: ModuleTree) -> None:
        """
        Demonstration of what versionload avoids: importlib.reload keeps what failing code bound.
        """
        import importlib

        path, module, _ = _import_original(tree, "fl_stdlib_half")
        path.write_text("NAME = 'half'\nraise RuntimeError\n")
        with pytest.raises(RuntimeError):
            importlib.reload(module)
        assert "half" == module.NAME

    def test_untracked_module_is_adopted_even_if_reload_fails(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        An untracked module is adopted before its code runs, so a failed reload leaves only "adopted".
        """
        tracker.uninstall()
        path, module, before = _import_original(tree, "fl_untracked")
        tracker.install()
        path.write_text("NAME = 'new'\nraise RuntimeError\n")
        with pytest.raises(versionload.ReloadError):
            tracker.reload(module)
        _assert_unchanged(module, before)
        assert [("adopted", 1)] == [(v.reason, v.number) for v in tracker.history(module)]
        assert before == dict(tracker.current(module).bindings)


# Module code that gives its module a class of its own (for module properties), then
# optionally fails: ``{fail}`` is empty or a raise statement.
_CLASS_SWAP = """
import sys
import types


class {cls}(types.ModuleType):
    @property
    def answer(self):
        return {value}


sys.modules[__name__].__class__ = {cls}
VALUE = {value}
{fail}
"""


class TestFailedReloadModuleClass:
    """
    A failed reload whose code had changed the module object's class.
    """

    def test_class_put_back_to_module_type(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        Code that sets the module's class and then raises leaves the module a plain ModuleType.
        """
        path, module, before = _import_original(tree, "fl_class")
        path.write_text(_CLASS_SWAP.format(cls="Props", value=2, fail="raise RuntimeError('after the swap')"))
        with pytest.raises(versionload.ReloadError):
            tracker.reload(module)

        assert ModuleType is type(module)
        assert not hasattr(module, "answer")
        _assert_unchanged(module, before)

    def test_a_read_only_class_does_not_stop_the_put_back(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        Code that gives the module a class refusing every assignment (a read-only module)
        and then raises still leaves a plain ModuleType, its namespace as before.
        """
        path, module, before = _import_original(tree, "fl_read_only")
        path.write_text(
            "import sys, types\n\n"
            "class ReadOnly(types.ModuleType):\n"
            "    def __setattr__(self, key, value):\n"
            "        raise AttributeError(f'read-only: {key}')\n\n"
            "sys.modules[__name__].__class__ = ReadOnly\n"
            "raise RuntimeError('after the swap')\n"
        )
        with pytest.raises(versionload.ReloadError, match="after the swap"):
            tracker.reload(module)

        assert ModuleType is type(module)
        _assert_unchanged(module, before)

    def test_class_put_back_to_the_previous_subclass(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        A module whose class was already a subclass gets that very class back.
        """
        path = tree.module("fl_subclass", _CLASS_SWAP.format(cls="First", value=1, fail=""))
        module = __import__("fl_subclass")
        first = type(module)
        before = dict(module.__dict__)
        path.write_text(
            _CLASS_SWAP.format(cls="Second", value=2, fail="raise RuntimeError('after the swap')")
        )
        with pytest.raises(versionload.ReloadError):
            tracker.reload(module)

        assert first is type(module)
        assert 1 == module.answer
        _assert_unchanged(module, before)

    def test_group_puts_back_the_class_of_a_module_that_succeeded(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        When a later module of reload_many fails, an earlier one that changed its class gets it back.
        """
        swapping = tree.module("fl_group_a", "VALUE = 1\n")
        failing, module_b, _ = _import_original(tree, "fl_group_b")
        module_a = __import__("fl_group_a")
        before_a = dict(module_a.__dict__)
        swapping.write_text(_CLASS_SWAP.format(cls="Props", value=2, fail=""))
        failing.write_text("raise RuntimeError('b fails')\n")
        with pytest.raises(versionload.GroupReloadError):
            tracker.reload_many([module_a, module_b])

        assert ModuleType is type(module_a)
        _assert_unchanged(module_a, before_a)
        assert [1] == [v.number for v in tracker.history(module_a)]
