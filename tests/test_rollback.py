"""
`rollback` restores a recorded namespace exactly; `diff` compares two versions.
"""

from __future__ import annotations

import sys
import types

import pytest

import versionload

from .helpers import ModuleTree

# Every test here runs with bytecode writing off and on (see the fixture).
pytestmark = pytest.mark.usefixtures("bytecode")


_V1 = "KEEP = 'same'\nCHANGED = [1]\nREMOVED_LATER = object()\ndef f():\n    return 1\n"
_V2 = "KEEP = 'same'\nCHANGED = [2]\nADDED = 'new'\ndef f():\n    return 2\ndel REMOVED_LATER\n"
_V3 = "KEEP = 'same'\nCHANGED = [3]\nADDED = 'newer'\ndef f():\n    return 3\n"


def _three_versions(tree: ModuleTree, tracker: versionload.Tracker, name: str) -> types.ModuleType:
    path = tree.module(name, _V1)
    module = __import__(name)
    for source in (_V2, _V3):
        path.write_text(source)
        tracker.reload(module)
    return module


class TestRollback:
    """
    Tracker.rollback and versionload.rollback.
    """

    def test_default_target_is_highest_below_current(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        Without ``to``, the module goes back to the highest version below the current one.
        """
        module = _three_versions(tree, tracker, "rb_default")
        assert module is tracker.rollback(module)
        assert 2 == tracker.current(module).number
        assert [2] == module.CHANGED
        tracker.rollback(module)
        assert 1 == tracker.current(module).number
        assert [1] == module.CHANGED

    def test_restores_namespace_exactly(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        Names added since are removed, changed names get the old objects, removed names come back.
        """
        module = _three_versions(tree, tracker, "rb_exact")
        v1 = tracker.history(module)[0]
        tracker.rollback(module, to=1)
        assert sorted(v1.bindings) == sorted(vars(module))
        assert [] == [name for name, value in v1.bindings.items() if vars(module)[name] is not value]
        assert not hasattr(module, "ADDED")
        assert v1.bindings["REMOVED_LATER"] is module.REMOVED_LATER
        assert 1 == module.f()

    def test_history_is_kept_and_next_reload_numbers_higher(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        A rollback moves only the pointer; the next reload gets a number above every recorded one.
        """
        module = _three_versions(tree, tracker, "rb_numbers")
        tracker.rollback(module, to=1)
        assert [1, 2, 3] == [v.number for v in tracker.history(module)]
        assert 1 == tracker.current(module).number
        tracker.reload(module)
        assert [1, 2, 3, 4] == [v.number for v in tracker.history(module)]
        assert 4 == tracker.current(module).number
        assert [3] == module.CHANGED

    def test_roll_forward_to_a_later_version(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        After rolling back, rolling forward to a later number restores that namespace.
        """
        module = _three_versions(tree, tracker, "rb_forward")
        tracker.rollback(module, to=1)
        tracker.rollback(module, to=3)
        assert [3] == module.CHANGED
        assert "newer" == module.ADDED
        assert tracker.history(module)[2].bindings["CHANGED"] is module.CHANGED

    def test_rollback_to_current_undoes_runtime_mutation(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        Rolling back to the current version undoes names rebound, added and deleted at run time.
        """
        module = _three_versions(tree, tracker, "rb_mutation")
        recorded = tracker.current(module)
        module.CHANGED = "patched"
        module.RUNTIME = 1
        del module.KEEP
        tracker.rollback(module, to=recorded.number)
        assert recorded.bindings["CHANGED"] is module.CHANGED
        assert not hasattr(module, "RUNTIME")
        assert "same" == module.KEEP
        assert 3 == tracker.current(module).number

    def test_in_place_mutation_is_not_undone(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A rollback restores bindings, not object contents: a list mutated in place stays mutated.
        """
        module = _three_versions(tree, tracker, "rb_inplace")
        module.CHANGED.append("mutated")
        tracker.rollback(module, to=3)
        assert [3, "mutated"] == module.CHANGED

    def test_by_module_name(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A tracked module's name is accepted in place of the module.
        """
        module = _three_versions(tree, tracker, "rb_byname")
        assert module is tracker.rollback("rb_byname", to=2)
        assert [2] == module.CHANGED

    def test_unknown_version_raises_and_changes_nothing(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        A version that is not in the history raises VersionNotFoundError (a LookupError), touching nothing.
        """
        module = _three_versions(tree, tracker, "rb_unknown")
        before = dict(vars(module))
        for missing in (0, 4, 99, -1):
            with pytest.raises(versionload.VersionNotFoundError) as caught:
                tracker.rollback(module, to=missing)
            assert isinstance(caught.value, LookupError)
            assert missing == caught.value.version
            assert (1, 2, 3) == caught.value.available
        assert before == vars(module)
        assert 3 == tracker.current(module).number

    def test_no_version_below_the_first(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A default rollback from the oldest version raises VersionNotFoundError and changes nothing.
        """
        tree.module("rb_first", "X = 1\n")
        import rb_first

        with pytest.raises(versionload.VersionNotFoundError) as caught:
            tracker.rollback(rb_first)
        assert "module 'rb_first' has no version before version 1 (available: 1)" == str(caught.value)
        assert 1 == tracker.current(rb_first).number
        assert 1 == rb_first.X

    def test_untracked_module_raises_not_tracked(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        Rolling back a module with no history raises NotTrackedError (a LookupError).
        """
        tracker.uninstall()
        tree.module("rb_untracked", "X = 1\n")
        import rb_untracked

        with pytest.raises(versionload.NotTrackedError) as caught:
            tracker.rollback(rb_untracked)
        assert isinstance(caught.value, LookupError)
        assert "rb_untracked" == caught.value.module
        assert () == tracker.tracked()

    def test_unknown_name_raises_not_tracked(self, tracker: versionload.Tracker) -> None:
        """
        A name that no history has raises NotTrackedError.
        """
        with pytest.raises(versionload.NotTrackedError):
            tracker.rollback("rb_no_such_module")

    @pytest.mark.parametrize("bad", ["1", True, 1.0, [1]])
    def test_bad_version_argument_raises_invalid_argument(
        self, tree: ModuleTree, tracker: versionload.Tracker, bad: object
    ) -> None:
        """
        A ``to`` that is not an int (a string, a bool, a float) raises InvalidArgumentError.
        """
        module = _three_versions(tree, tracker, "rb_badarg")
        with pytest.raises(versionload.InvalidArgumentError) as caught:
            tracker.rollback(module, to=bad)  # type: ignore[arg-type]
        assert isinstance(caught.value, TypeError)
        assert 3 == tracker.current(module).number
        assert [3] == module.CHANGED

    @pytest.mark.parametrize("bad", [42, None, object()])
    def test_non_module_raises_not_a_module_error(self, tracker: versionload.Tracker, bad: object) -> None:
        """
        Anything but a module or a name is a NotAModuleError.
        """
        with pytest.raises(versionload.NotAModuleError):
            tracker.rollback(bad)  # type: ignore[arg-type]

    def test_module_level_function(self, tree: ModuleTree, hook: versionload.Tracker) -> None:
        """
        versionload.rollback acts on the default tracker.
        """
        module = _three_versions(tree, hook, "rb_facade")
        assert module is versionload.rollback(module, to=1)
        assert [1] == module.CHANGED
        assert 1 == versionload.current(module).number

    def test_reimported_module_is_a_different_history(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        The old module object, after its name was imported anew, is no longer tracked.
        """
        module = _three_versions(tree, tracker, "rb_old_object")
        del sys.modules["rb_old_object"]
        fresh = __import__("rb_old_object")
        with pytest.raises(versionload.NotTrackedError):
            tracker.rollback(module, to=1)
        assert [4] == [v.number for v in tracker.history(fresh)]


class TestDiff:
    """
    Tracker.diff and versionload.diff.
    """

    def test_added_removed_changed(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        diff(1, 2) lists the names added, removed and bound to different objects, sorted.
        """
        module = _three_versions(tree, tracker, "df_basic")
        result = tracker.diff(module, 1, 2)
        assert ("ADDED",) == result.added
        assert ("REMOVED_LATER",) == result.removed
        assert ("CHANGED", "f") == result.changed
        assert (1, 2) == (result.from_version, result.to_version)
        assert "df_basic" == result.module
        assert result

    def test_reverse_direction(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        diff(2, 1) swaps added and removed.
        """
        module = _three_versions(tree, tracker, "df_reverse")
        result = tracker.diff(module, 2, 1)
        assert ("REMOVED_LATER",) == result.added
        assert ("ADDED",) == result.removed

    def test_same_version_is_empty(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A version compared with itself has no differences and is false.
        """
        module = _three_versions(tree, tracker, "df_same")
        result = tracker.diff(module, 2, 2)
        assert ((), (), ()) == (result.added, result.removed, result.changed)
        assert not result

    def test_equal_plain_values_are_unchanged(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A string re-created equal by the reload does not count as changed.
        """
        module = _three_versions(tree, tracker, "df_values")
        assert "KEEP" not in tracker.diff(module, 1, 3).changed

    def test_unknown_version_raises(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        An unknown version number raises VersionNotFoundError.
        """
        module = _three_versions(tree, tracker, "df_unknown")
        with pytest.raises(versionload.VersionNotFoundError):
            tracker.diff(module, 1, 7)

    @pytest.mark.parametrize(("a", "b"), [("1", 2), (1, None), (True, 2)])
    def test_bad_numbers_raise_invalid_argument(
        self, tree: ModuleTree, tracker: versionload.Tracker, a: object, b: object
    ) -> None:
        """
        Version numbers that are not ints raise InvalidArgumentError.
        """
        module = _three_versions(tree, tracker, "df_bad")
        with pytest.raises(versionload.InvalidArgumentError):
            tracker.diff(module, a, b)  # type: ignore[arg-type]

    def test_untracked_raises(self, tracker: versionload.Tracker) -> None:
        """
        A module with no history raises NotTrackedError.
        """
        with pytest.raises(versionload.NotTrackedError):
            tracker.diff("df_nothing", 1, 2)

    def test_module_level_function(self, tree: ModuleTree, hook: versionload.Tracker) -> None:
        """
        versionload.diff acts on the default tracker.
        """
        module = _three_versions(tree, hook, "df_facade")
        assert ("ADDED",) == versionload.diff(module, 1, 3).added


class TestRollbackPackage:
    """
    Tracker.rollback of a package whose submodules were imported after it was recorded.
    """

    def test_submodule_attributes_survive(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        The import system's binding of an imported submodule on its package survives a rollback.
        """
        path = tree.module("rbp_pkg.__init__", "VALUE = 1\n")
        tree.module("rbp_pkg.sub", "S = 1\n")
        import rbp_pkg.sub

        path.write_text("VALUE = 2\n")
        tracker.reload(rbp_pkg)
        tracker.rollback(rbp_pkg, to=1)
        assert 1 == rbp_pkg.VALUE
        assert sys.modules["rbp_pkg.sub"] is rbp_pkg.sub
        import rbp_pkg.sub as again

        assert again is sys.modules["rbp_pkg.sub"]

    def test_rollback_to_current_keeps_submodules(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        Undoing run-time changes with a rollback to the current version keeps submodule attributes.
        """
        tree.module("rbp_pkg2.sub", "S = 1\n")
        import rbp_pkg2.sub

        rbp_pkg2.PATCHED = True
        tracker.rollback(rbp_pkg2, to=1)
        assert not hasattr(rbp_pkg2, "PATCHED")
        assert 1 == rbp_pkg2.sub.S


class TestDiffValues:
    """
    Tracker.diff's rule for plain values re-created by a reload.
    """

    def test_equal_tuples_unchanged_different_changed(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        Equal tuples and frozensets of plain values are unchanged; a different or longer tuple is changed.
        """
        source = "SAME = (1, 'a', (2.5, None))\nSET = frozenset({1, 2})\nLONGER = (1,)\nOTHER = (1, 2)\n"
        path = tree.module("dfv_tuples", source)
        import dfv_tuples

        path.write_text(
            source.replace("LONGER = (1,)", "LONGER = (1, 2)").replace("OTHER = (1, 2)", "OTHER = (1, 3)")
        )
        tracker.reload(dfv_tuples)
        assert ("LONGER", "OTHER") == tracker.diff(dfv_tuples, 1, 2).changed


class TestRollbackModuleClass:
    """
    Rollback of a module whose code changed the module object's class.
    """

    _SWAP = (
        "import sys, types\n"
        "class {cls}(types.ModuleType):\n"
        "    @property\n"
        "    def answer(self):\n"
        "        return {value}\n"
        "sys.modules[__name__].__class__ = {cls}\n"
    )

    def test_restores_the_class_of_each_version(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        Each version records the module's class, and a rollback gives the module that class back.
        """
        path = tree.module("rbc_mod", "X = 1\n")
        import rbc_mod

        path.write_text(self._SWAP.format(cls="Second", value=2))
        tracker.reload(rbc_mod)
        second = type(rbc_mod)
        path.write_text(self._SWAP.format(cls="Third", value=3))
        tracker.reload(rbc_mod)
        third = type(rbc_mod)

        assert [types.ModuleType, second, third] == [v.module_class for v in tracker.history(rbc_mod)]
        tracker.rollback(rbc_mod, to=1)
        assert types.ModuleType is type(rbc_mod)
        assert not hasattr(rbc_mod, "answer")
        tracker.rollback(rbc_mod, to=2)
        assert second is type(rbc_mod)
        assert 2 == rbc_mod.answer
        tracker.rollback(rbc_mod, to=3)
        assert (third, 3) == (type(rbc_mod), rbc_mod.answer)
