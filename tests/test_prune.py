"""
``reload(..., prune=True)``: the new code runs in an emptied namespace, as a fresh import.
"""

from __future__ import annotations

import sys
import types

import pytest

import versionload
from versionload.testing import capture_events

from .helpers import ModuleTree

_V1 = '''
"""Version one."""
__all__ = ["kept", "old_only"]
kept = [1]


def old_only():
    return "old"


def __getattr__(name):
    return "lazy " + name
'''

_V2 = """
kept = [2]
"""


class TestPrunedReload:
    """
    `Tracker.reload` with ``prune=True``.
    """

    def test_names_the_new_code_does_not_bind_are_gone(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        Old functions, ``__all__`` and a module ``__getattr__`` go; the import system's attributes stay.
        """
        tree.module("pr_basic", _V1)
        import pr_basic

        before = {key: pr_basic.__dict__[key] for key in ("__name__", "__file__", "__spec__", "__loader__")}
        tree.module("pr_basic", _V2)
        tracker.reload(pr_basic, prune=True)
        kept = {key: pr_basic.__dict__[key] for key in ("__name__", "__file__", "__spec__", "__loader__")}
        user_names = sorted(key for key in vars(pr_basic) if not key.startswith("__"))

        assert (["kept"], [2], None) == (user_names, pr_basic.kept, pr_basic.__doc__)
        assert (False, False) == ("__all__" in vars(pr_basic), "__getattr__" in vars(pr_basic))
        assert before == kept
        assert "__builtins__" in vars(pr_basic)

    def test_without_prune_names_survive(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        The default keeps what the new code does not bind, as ``importlib.reload`` does.
        """
        tree.module("pr_default", _V1)
        import pr_default

        tree.module("pr_default", _V2)
        tracker.reload(pr_default)

        assert ("old", "Version one.") == (pr_default.old_only(), pr_default.__doc__)

    @pytest.mark.parametrize(
        "bad",
        ["kept = [2]\nraise RuntimeError('half-way')\n", "kept = [2]\ndef broken(:\n"],
        ids=["raises", "syntax"],
    )
    def test_a_failed_pruned_reload_changes_nothing(
        self, tree: ModuleTree, tracker: versionload.Tracker, bad: str, bytecode: bool
    ) -> None:
        """
        A pruned reload whose code fails leaves every binding as it was.
        """
        tree.module("pr_fail", _V1)
        import pr_fail

        before = dict(vars(pr_fail))
        tree.module("pr_fail", bad)
        with pytest.raises(versionload.ReloadError):
            tracker.reload(pr_fail, prune=True)
        after = vars(pr_fail)

        assert sorted(before) == sorted(after)
        assert [] == [key for key in before if before[key] is not after[key]]
        assert 1 == tracker.current(pr_fail).number

    def test_rollback_restores_the_pruned_names(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        Rolling back a pruned reload brings the very objects back.
        """
        tree.module("pr_back", _V1)
        import pr_back

        old_only = pr_back.old_only
        tree.module("pr_back", _V2)
        tracker.reload(pr_back, prune=True)
        tracker.rollback(pr_back, 1)

        assert (old_only, [1], "Version one.") == (pr_back.old_only, pr_back.kept, pr_back.__doc__)

    def test_events_and_diff_list_pruned_names_as_removed(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        ``module.reloaded`` and `Tracker.diff` name the pruned names as removed.
        """
        tree.module("pr_diff", _V1)
        import pr_diff

        tree.module("pr_diff", _V2)
        with capture_events(tracker) as events:
            tracker.reload(pr_diff, prune=True)
        removed = ("__all__", "__getattr__", "old_only")
        reloaded = [event for event in events if event.event == "module.reloaded"]

        assert removed == tracker.diff(pr_diff, 1, 2).removed
        assert [removed] == [event.removed for event in reloaded]  # type: ignore[attr-defined]

    def test_migration_state_is_carried(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        What ``__versionload_migrate__`` binds from the previous namespace survives the pruning.
        """
        tree.module("pr_migrate", "cache = {'hits': 3}\nstale = 1\n")
        import pr_migrate

        cache = pr_migrate.cache
        tree.module(
            "pr_migrate",
            """
            cache = {}


            def __versionload_migrate__(previous):
                global cache
                cache = previous["cache"]
            """,
        )
        tracker.reload(pr_migrate, prune=True)

        assert (cache, False) == (pr_migrate.cache, hasattr(pr_migrate, "stale"))

    def test_an_old_migration_hook_is_gone_and_does_not_run(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        A hook the new code no longer defines is pruned with the rest.
        """
        tree.module("pr_hook", "X = 1\ndef __versionload_migrate__(previous):\n    raise RuntimeError\n")
        import pr_hook

        tree.module("pr_hook", "X = 2\ndef __versionload_migrate__(previous):\n    pass\n")
        tracker.reload(pr_hook)
        tree.module("pr_hook", "X = 3\n")
        tracker.reload(pr_hook, prune=True)

        assert (3, False) == (pr_hook.X, hasattr(pr_hook, "__versionload_migrate__"))

    def test_loaded_submodules_stay_reachable(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A package keeps its attributes for submodules that are in ``sys.modules``.
        """
        tree.write({"pr_pkg/__init__.py": "A = 1\nB = 1\n", "pr_pkg/sub.py": "S = 1\n"})
        import pr_pkg.sub

        tree.write({"pr_pkg/__init__.py": "A = 2\n"})
        tracker.reload(pr_pkg, prune=True)

        assert (2, False, pr_pkg.sub) == (pr_pkg.A, hasattr(pr_pkg, "B"), sys.modules["pr_pkg.sub"])

    def test_in_place_and_pruned(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        An in-place update keeps the identity of redefined functions and drops the rest.
        """
        tree.module("pr_inplace", "def f():\n    return 1\n\ndef g():\n    return 1\n")
        import pr_inplace

        f = pr_inplace.f
        tree.module("pr_inplace", "def f():\n    return 2\n")
        tracker.reload(pr_inplace, update="in-place", prune=True)

        assert (True, 2, False) == (pr_inplace.f is f, f(), hasattr(pr_inplace, "g"))

    def test_facade(self, tree: ModuleTree, hook: versionload.Tracker) -> None:
        """
        ``versionload.reload(m, prune=True)`` prunes.
        """
        tree.module("pr_facade", "X = 1\nY = 1\n")
        import pr_facade

        tree.module("pr_facade", "X = 2\n")
        versionload.reload(pr_facade, prune=True)

        assert (2, False) == (pr_facade.X, hasattr(pr_facade, "Y"))

    @pytest.mark.parametrize("bad", [1, "yes", None])
    def test_prune_must_be_a_bool(self, tree: ModuleTree, tracker: versionload.Tracker, bad: object) -> None:
        """
        A non-bool ``prune`` raises `InvalidArgumentError` and changes nothing.
        """
        tree.module("pr_arg", "X = 1\n")
        import pr_arg

        for call in (
            lambda: tracker.reload(pr_arg, prune=bad),  # type: ignore[arg-type]
            lambda: tracker.reload_many([pr_arg], prune=bad),  # type: ignore[arg-type]
        ):
            with pytest.raises(versionload.InvalidArgumentError):
                call()

        assert 1 == tracker.current(pr_arg).number


class TestPrunedGroups:
    """
    ``prune=True`` on `reload_many` and cascades applies to every module of the group.
    """

    def _two(self, tree: ModuleTree) -> tuple[types.ModuleType, types.ModuleType]:
        tree.module("pr_base", "VALUE = 1\nOLD = 1\n")
        tree.module("pr_user", "import pr_base\nSEEN = pr_base.VALUE\nOLD = 1\n")
        import pr_base
        import pr_user

        tree.module("pr_base", "VALUE = 2\n")
        tree.module("pr_user", "import pr_base\nSEEN = pr_base.VALUE\n")
        return pr_base, pr_user

    def test_reload_many(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        Both modules lose their old names.
        """
        base, user = self._two(tree)
        tracker.reload_many([base, user], prune=True)

        assert (2, False, False) == (user.SEEN, hasattr(base, "OLD"), hasattr(user, "OLD"))

    def test_cascade(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        The dependents reloaded by a cascade are pruned too.
        """
        base, user = self._two(tree)
        tracker.reload(base, cascade=True, prune=True)

        assert (2, False, False) == (user.SEEN, hasattr(base, "OLD"), hasattr(user, "OLD"))

    def test_a_failed_group_changes_nothing(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        When the second module fails, the first one gets its pruned names back.
        """
        base, user = self._two(tree)
        tree.module("pr_user", "raise RuntimeError('no')\n")
        with pytest.raises(versionload.GroupReloadError):
            tracker.reload_many([base, user], prune=True)

        assert (1, 1, 1) == (base.VALUE, base.OLD, user.OLD)


class TestPrunedWatch:
    """
    A watcher made with ``prune=True`` reloads with pruning.
    """

    def test_watcher_prunes(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        After an edit seen by the watcher, names the file no longer defines are gone.
        """
        tree.module("pr_watched", "X = 1\nY = 1\n")
        import pr_watched

        watcher = versionload.Watcher(tracker, (str(tree.root),), force_polling=True, prune=True)
        watcher.attach()
        tree.module("pr_watched", "X = 22\n")
        changes = watcher.poll()
        watcher.detach()

        assert (["reloaded"], 22, False) == (
            [change.outcome for change in changes],
            pr_watched.X,
            hasattr(pr_watched, "Y"),
        )
