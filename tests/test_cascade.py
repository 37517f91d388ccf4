"""
Cascade reloads and `reload_many`: order, from-import rebinding, cycles, group atomicity.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

import pytest

import versionload

from .helpers import ModuleTree

JOURNAL = """
ran = []
"""


def _diamond(tree: ModuleTree, base_value: int = 1) -> None:
    """
    app.base <- app.left, app.right <- app.top; each module notes when its code runs.
    """
    tree.write(
        {
            "journal.py": JOURNAL,
            "app/__init__.py": "",
            "app/base.py": f"""
                import journal
                journal.ran.append(__name__)

                def f():
                    return {base_value}
            """,
            "app/left.py": """
                import journal
                from app.base import f
                journal.ran.append(__name__)

                def left():
                    return f() + 10
            """,
            "app/right.py": """
                import journal
                from app.base import f
                journal.ran.append(__name__)
                SNAPSHOT = f()
            """,
            "app/top.py": """
                import journal
                from app.right import SNAPSHOT
                from app.left import left
                journal.ran.append(__name__)

                def top():
                    return left() + SNAPSHOT
            """,
        }
    )


def _load_diamond(tree: ModuleTree) -> ModuleType:
    _diamond(tree)
    importlib.import_module("app.top")
    journal = sys.modules["journal"]
    journal.ran.clear()
    return journal


class TestCascadeReload:
    def test_dependents_reload_after_their_dependencies(
        self, tracker: versionload.Tracker, tree: ModuleTree, bytecode: bool
    ) -> None:
        """The trigger runs first, every module after those it depends on, ties in first-import order."""
        journal = _load_diamond(tree)
        _diamond(tree, base_value=2)
        tracker.reload("app.base", cascade=True)
        # app.top imports app.right first, so app.right finished importing first.
        assert ["app.base", "app.right", "app.left", "app.top"] == journal.ran

    def test_from_imports_pick_up_the_new_objects(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """Names dependents took with from-imports are the new ones, values computed from them too."""
        _load_diamond(tree)
        _diamond(tree, base_value=2)
        base = tracker.reload("app.base", cascade=True)
        assert sys.modules["app.left"].f is base.f
        assert 2 + 10 + 2 == sys.modules["app.top"].top()

    def test_plain_reload_leaves_dependents_stale(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """Without cascade only the module itself runs, and from-imports keep the old objects."""
        journal = _load_diamond(tree)
        old_f = sys.modules["app.base"].f
        _diamond(tree, base_value=2)
        tracker.reload("app.base")
        assert ["app.base"] == journal.ran
        assert sys.modules["app.left"].f is old_f

    def test_returns_the_trigger_module(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """reload(m, cascade=True) returns m, like a plain reload."""
        _load_diamond(tree)
        assert sys.modules["app.base"] is tracker.reload("app.base", cascade=True)

    def test_module_without_dependents_reloads_alone(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """A cascade from a module nobody depends on reloads just that module."""
        journal = _load_diamond(tree)
        tracker.reload("app.top", cascade=True)
        assert ["app.top"] == journal.ran

    def test_one_event_per_module_and_one_for_the_cascade(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """Each module emits module.reloaded, then the group emits cascade.reloaded with the versions."""
        _load_diamond(tree)
        events: list[versionload.Event] = []
        tracker.subscribe(events.append)
        tracker.reload("app.base", cascade=True)
        reloaded = [e.module for e in events if isinstance(e, versionload.ModuleReloaded)]
        assert ["app.base", "app.right", "app.left", "app.top"] == reloaded
        cascade, applied = events[-2:]
        assert isinstance(cascade, versionload.CascadeReloaded)
        assert isinstance(applied, versionload.ChangesetApplied)
        assert ("cascade.reloaded", "app.base", "app.base") == (
            cascade.event,
            cascade.module,
            cascade.trigger,
        )
        assert ("app.base", "app.right", "app.left", "app.top") == cascade.modules
        assert (2, 2, 2, 2) == cascade.versions

    def test_names_re_exported_by_a_package_reach_its_users(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """pkg/__init__ re-exports f from pkg.impl; a user of `from pkg import f` gets the new f."""
        tree.write(
            {
                "reexp/__init__.py": "from .impl import f\n",
                "reexp/impl.py": "def f():\n    return 1\n",
                "reexp_user.py": "from reexp import f\n",
            }
        )
        user = importlib.import_module("reexp_user")
        tree.write({"reexp/impl.py": "def f():\n    return 2\n"})
        events: list[versionload.Event] = []
        tracker.subscribe(events.append)
        tracker.reload("reexp.impl", cascade=True)
        assert 2 == user.f()
        cascade, applied = events[-2:]
        assert isinstance(cascade, versionload.CascadeReloaded)
        assert isinstance(applied, versionload.ChangesetApplied)
        assert ("reexp.impl", "reexp", "reexp_user") == cascade.modules

    def test_untracked_trigger_is_adopted_and_cascades(self, tree: ModuleTree) -> None:
        """A trigger imported before tracking started is adopted, and its tracked dependents follow it."""
        _diamond(tree)
        base = importlib.import_module("app.base")
        tracker = versionload.Tracker().install()
        try:
            left = importlib.import_module("app.left")
            journal = sys.modules["journal"]
            journal.ran.clear()
            tracker.reload(base, cascade=True)
            assert ["app.base", "app.left"] == journal.ran
            assert left.f is base.f
        finally:
            tracker.uninstall()

    def test_facade_cascades_on_the_default_tracker(
        self, hook: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """versionload.reload(m, cascade=True) cascades too."""
        journal = _load_diamond(tree)
        versionload.reload("app.base", cascade=True)
        assert ["app.base", "app.right", "app.left", "app.top"] == journal.ran


def _cycle(tree: ModuleTree, version: int) -> None:
    """
    app.a and app.b import each other; app.c depends on app.b.
    """
    tree.write(
        {
            "journal.py": JOURNAL,
            "app/__init__.py": "",
            "app/a.py": f"""
                import journal
                import app.b
                journal.ran.append(__name__)
                A = {version}

                def from_b():
                    return app.b.B
            """,
            "app/b.py": f"""
                import journal
                import app.a
                journal.ran.append(__name__)
                B = {version}

                def from_a():
                    return app.a.A
            """,
            "app/c.py": """
                import journal
                from app.b import from_a
                journal.ran.append(__name__)
            """,
        }
    )


class TestCascadeCycles:
    def test_cycle_members_reload_once_trigger_first(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """Modules importing each other are each reloaded once, the trigger first, then their dependents."""
        _cycle(tree, 1)
        importlib.import_module("app.a")
        importlib.import_module("app.c")
        journal = sys.modules["journal"]
        journal.ran.clear()
        _cycle(tree, 2)
        tracker.reload("app.a", cascade=True)
        assert ["app.a", "app.b", "app.c"] == journal.ran
        assert (2, 2) == (sys.modules["app.b"].from_a(), sys.modules["app.a"].from_b())

    def test_cycle_from_the_other_side(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """Triggered from the other member, that member goes first."""
        _cycle(tree, 1)
        importlib.import_module("app.a")
        importlib.import_module("app.c")
        journal = sys.modules["journal"]
        journal.ran.clear()
        tracker.reload("app.b", cascade=True)
        assert ["app.b", "app.a", "app.c"] == journal.ran


def _chain(tree: ModuleTree, mid_source: str, base_value: int = 1) -> None:
    tree.write(
        {
            "journal.py": JOURNAL,
            "app/__init__.py": "",
            "app/base.py": f"""
                import journal
                journal.ran.append(__name__)

                def f():
                    return {base_value}
            """,
            "app/mid.py": mid_source,
            "app/top.py": """
                import journal
                from app.mid import g
                journal.ran.append(__name__)
            """,
        }
    )


GOOD_MID = """
import journal
from app.base import f
journal.ran.append(__name__)

def g():
    return f()
"""

BROKEN_MID = """
import journal
from app.base import f
journal.ran.append(__name__)
raise RuntimeError("mid is broken")
"""


class TestCascadeAtomicity:
    def _load(self, tree: ModuleTree) -> ModuleType:
        _chain(tree, GOOD_MID)
        importlib.import_module("app.top")
        journal = sys.modules["journal"]
        journal.ran.clear()
        _chain(tree, BROKEN_MID, base_value=2)
        return journal

    @pytest.mark.parametrize("update", [None, "in-place"])
    def test_failure_in_the_middle_puts_every_module_back(
        self, tracker: versionload.Tracker, tree: ModuleTree, update: str | None, bytecode: bool
    ) -> None:
        """When a dependent fails, the trigger that already reloaded is back at its old code and namespace."""
        journal = self._load(tree)
        base = sys.modules["app.base"]
        old_f = base.f
        namespaces = {name: dict(sys.modules[name].__dict__) for name in ("app.base", "app.mid", "app.top")}
        with pytest.raises(versionload.GroupReloadError):
            tracker.reload("app.base", cascade=True, update=update)
        assert ["app.base", "app.mid"] == journal.ran  # top was never attempted
        for name, namespace in namespaces.items():
            assert namespace == sys.modules[name].__dict__
        assert base.f is old_f
        assert 1 == old_f()

    def test_no_version_is_recorded(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """A failed cascade records no version for any module of the group."""
        self._load(tree)
        with pytest.raises(versionload.GroupReloadError):
            tracker.reload("app.base", cascade=True)
        assert [(1,), (1,), (1,)] == [
            tuple(v.number for v in tracker.history(n)) for n in ("app.base", "app.mid", "app.top")
        ]
        assert 1 == tracker.current("app.base").number

    def test_error_names_the_failing_module(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """The error says which module failed, chains its error, and is a ReloadError (an ImportError)."""
        self._load(tree)
        with pytest.raises(versionload.GroupReloadError) as caught:
            tracker.reload("app.base", cascade=True)
        error = caught.value
        assert isinstance(error, versionload.ReloadError)
        assert isinstance(error, ImportError)
        assert "app.mid" == error.module
        assert ("app.base", "app.mid", "app.top") == error.modules
        assert "'app.mid'" in str(error)
        assert "mid is broken" in str(error)
        assert isinstance(error.__cause__, versionload.ReloadError)

    def test_failure_events(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """The failing module emits module.reload_failed and the group cascade.failed with what was undone."""
        self._load(tree)
        events: list[versionload.Event] = []
        tracker.subscribe(events.append)
        with pytest.raises(versionload.GroupReloadError):
            tracker.reload("app.base", cascade=True)
        assert ["module.reload_failed", "cascade.failed"] == [e.event for e in events]
        failed = events[-1]
        assert isinstance(failed, versionload.CascadeFailed)
        assert ("app.mid", ("app.base",), ("app.top",)) == (failed.failed, failed.undone, failed.skipped)
        assert "mid is broken" in failed.error

    def test_group_succeeds_once_fixed(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """After the failure, fixing the module lets the same cascade go through."""
        self._load(tree)
        with pytest.raises(versionload.GroupReloadError):
            tracker.reload("app.base", cascade=True)
        _chain(tree, GOOD_MID, base_value=2)
        tracker.reload("app.base", cascade=True)
        assert 2 == sys.modules["app.top"].g()


class TestReloadMany:
    def test_reloads_in_the_given_order(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """The modules run in the order given and come back in that order."""
        journal = _load_diamond(tree)
        right, left = sys.modules["app.right"], sys.modules["app.left"]
        assert (right, left) == tracker.reload_many(["app.right", left])
        assert ["app.right", "app.left"] == journal.ran

    def test_all_or_none(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """If the second module fails, the first is put back and no version is recorded."""
        _chain(tree, GOOD_MID)
        importlib.import_module("app.top")
        base = sys.modules["app.base"]
        old_f = base.f
        _chain(tree, BROKEN_MID, base_value=2)
        with pytest.raises(versionload.GroupReloadError) as caught:
            tracker.reload_many(["app.base", "app.mid"])
        assert "app.mid" == caught.value.module
        assert base.f is old_f
        assert 1 == tracker.current(base).number

    def test_emits_a_group_event(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """A successful group emits group.reloaded (not a cascade event without a trigger)."""
        _load_diamond(tree)
        events: list[versionload.Event] = []
        tracker.subscribe(events.append)
        tracker.reload_many(["app.left", "app.right"])
        group = next(e for e in events if isinstance(e, versionload.GroupReloaded))

        assert isinstance(events[-1], versionload.ChangesetApplied)
        assert ("group.reloaded", ("app.left", "app.right")) == (group.event, group.modules)
        assert [] == [e for e in events if isinstance(e, versionload.CascadeReloaded)]

    def test_duplicates_are_refused(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """Naming a module twice raises InvalidArgumentError before anything runs."""
        journal = _load_diamond(tree)
        with pytest.raises(versionload.InvalidArgumentError):
            tracker.reload_many(["app.left", sys.modules["app.left"]])
        assert [] == journal.ran

    def test_a_bare_name_is_refused(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """A single string (not a list of names) raises InvalidArgumentError, a TypeError."""
        _load_diamond(tree)
        with pytest.raises(TypeError):
            tracker.reload_many("app.left")  # type: ignore[arg-type]

    def test_unloaded_module_changes_nothing(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """A name not in sys.modules raises ModuleNotLoadedError before any module runs."""
        journal = _load_diamond(tree)
        with pytest.raises(versionload.ModuleNotLoadedError):
            tracker.reload_many(["app.left", "app.nowhere"])
        assert [] == journal.ran

    def test_empty_group_does_nothing(self, tracker: versionload.Tracker) -> None:
        """An empty group returns an empty tuple and emits nothing."""
        events: list[versionload.Event] = []
        tracker.subscribe(events.append)
        assert () == tracker.reload_many([])
        assert [] == events

    def test_facade(self, hook: versionload.Tracker, tree: ModuleTree) -> None:
        """versionload.reload_many reloads on the default tracker."""
        journal = _load_diamond(tree)
        versionload.reload_many(["app.top"])
        assert ["app.top"] == journal.ran


class TestReloadArguments:
    @pytest.mark.parametrize("update", ["inplace", 1, "IN-PLACE"])
    def test_unknown_update_mode_is_refused(
        self, tracker: versionload.Tracker, tree: ModuleTree, update: object
    ) -> None:
        """An unknown update mode raises InvalidArgumentError and runs nothing."""
        journal = _load_diamond(tree)
        with pytest.raises(versionload.InvalidArgumentError):
            tracker.reload("app.base", update=update)  # type: ignore[arg-type]
        assert [] == journal.ran

    def test_cascade_must_be_a_bool(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """cascade=1 raises InvalidArgumentError rather than guessing."""
        _load_diamond(tree)
        with pytest.raises(versionload.InvalidArgumentError):
            tracker.reload("app.base", cascade=1)  # type: ignore[arg-type]

    def test_rebind_is_the_default(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """update='rebind' is the plain reload: the namespace gets new function objects."""
        _load_diamond(tree)
        old_f = sys.modules["app.base"].f
        tracker.reload("app.base", update="rebind")
        assert sys.modules["app.base"].f is not old_f


class TestGroupErrors:
    def test_group_error_pickles(self) -> None:
        """GroupReloadError survives pickling with its module and group (it crosses process boundaries)."""
        import pickle

        error = versionload.GroupReloadError("failed", module="app.mid", modules=("app.base", "app.mid"))
        copy = pickle.loads(pickle.dumps(error))
        assert ("failed", "app.mid", ("app.base", "app.mid")) == (str(copy), copy.module, copy.modules)


class TestConcurrentCascades:
    def test_overlapping_cascades_in_threads_all_complete(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """Cascades from different modules of one package, run in parallel threads, all finish."""
        import threading

        _load_diamond(tree)
        errors: list[BaseException] = []

        def work(name: str) -> None:
            try:
                for _ in range(5):
                    tracker.reload(name, cascade=True)
            except BaseException as error:  # noqa: BLE001 - reported by the assertion below
                errors.append(error)

        threads = [threading.Thread(target=work, args=(n,)) for n in ("app.base", "app.left", "app.right")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert [] == errors
        assert not any(thread.is_alive() for thread in threads)
        top = sys.modules["app.top"]
        assert top.left is sys.modules["app.left"].left
        assert 1 + 10 + 1 == top.top()


class TestWithTheWatcher:
    def test_watcher_cascades_and_updates_in_place(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """versionload.watch(cascade=True, update='in-place') reloads the dependents of a changed file."""
        from .helpers import wait_for

        tree.write(
            {
                "shopw/__init__.py": "",
                "shopw/prices.py": "def price(n):\n    return n * 10\n",
                "shopw/cart.py": "from shopw.prices import price\nTOTAL = price(3)\n",
            }
        )
        prices = importlib.import_module("shopw.prices")
        cart = importlib.import_module("shopw.cart")
        held = prices.price
        changes: list[object] = []
        with versionload.watch(
            tree.root,
            tracker=tracker,
            cascade=True,
            update="in-place",
            force_polling=True,
            on_change=changes.append,
        ):
            tree.write({"shopw/prices.py": "def price(n):\n    return n * 12\n"})
            assert wait_for(lambda: cart.TOTAL == 36)
        assert held is prices.price is cart.price
        assert 12 == held(1)
